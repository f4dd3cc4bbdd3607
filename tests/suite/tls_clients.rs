//! Over TLS as over plain HTTP: validators and conditional requests,
//! precompressed siblings and directory listings (a rustls client), and
//! two more real clients, wget and python-requests, trusting only the
//! test CA.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::tls::{VALID, https_server};

/// An HTTPS-only server with listings and precompressed siblings on, for
/// `default.test` and 127.0.0.1 by one certificate; and the CA's file.
fn server(certs: &TempDir, ca: &TestCa) -> (TestServer, PathBuf) {
    let cert = ca.issue(certs.path(), "default", &["default.test", "127.0.0.1"], VALID);
    let ca_file = certs.path().join("ca.pem");
    fs::write(&ca_file, ca.pem()).unwrap();
    let extra = ["listing = true".to_string(), "precompressed = true".to_string()];
    let files: &[(&str, &[u8])] = &[
        ("index.html", b"hello from the tls clients test\n"),
        ("app.js", b"identity body"),
        ("app.js.gz", b"gzip body"),
    ];
    let s = https_server(&cert, &extra, files);
    s.write_file("list/first.txt", b"1");
    s.write_file("list/second.txt", b"2");
    (s, ca_file)
}

#[test]
fn validators_precompressed_files_and_listings_work_over_tls() {
    let certs = TempDir::new("tls_clients");
    let ca = TestCa::new();
    let (s, _) = server(&certs, &ca);
    let mut c = TlsConn::connect(s.addr(), "default.test", ca.client_config()).unwrap();

    c.send_request("GET", "/app.js", "default.test", &[]);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "identity body"));
    let etag = r.header("ETag").expect("an ETag over TLS").to_string();
    let modified = r.header("Last-Modified").expect("a Last-Modified over TLS").to_string();

    let if_none_match = format!("If-None-Match: {etag}");
    c.send_request("GET", "/app.js", "default.test", &[&if_none_match]);
    let r = c.read_response();
    assert_eq!(r.status, 304, "If-None-Match with the current ETag");
    assert!(r.body.is_empty());
    let if_modified = format!("If-Modified-Since: {modified}");
    c.send_request("GET", "/app.js", "default.test", &[&if_modified]);
    assert_eq!(c.read_response().status, 304, "If-Modified-Since its own Last-Modified");
    c.send_request("GET", "/app.js", "default.test", &["If-None-Match: \"other\""]);
    assert_eq!(c.read_response().status, 200, "another ETag gets the body");

    c.send_request("GET", "/app.js", "default.test", &["Accept-Encoding: gzip"]);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "gzip body"));
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert!(r.header("Vary").is_some_and(|v| v.contains("Accept-Encoding")), "Vary: {:?}", r.header("Vary"));

    c.send_request("GET", "/list/", "default.test", &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    let page = r.body_str();
    let (first, second) = (page.find("first.txt"), page.find("second.txt"));
    assert!(first.is_some() && first < second, "the listing names both files in order:\n{page}");
}

#[test]
fn wget_fetches_over_tls_trusting_the_test_ca() {
    if missing_tool("wget") {
        return;
    }
    let certs = TempDir::new("tls_clients");
    let ca = TestCa::new();
    let (s, ca_file) = server(&certs, &ca);
    let url = format!("https://127.0.0.1:{}/", s.addr().port());
    let out = run(
        Command::new("wget")
            .args(["--quiet", "--tries=1", "--timeout=10", "--output-document=-", "--ca-certificate"])
            .arg(&ca_file)
            .arg(&url),
        Duration::from_secs(15),
    );
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim_end(), "hello from the tls clients test");
    // The same client refuses a server its CA file does not vouch for: the
    // check above is the CA's doing, not a lax client.
    let stranger = TempDir::new("tls_clients_stranger");
    let other = stranger.path().join("other-ca.pem");
    fs::write(&other, TestCa::new().pem()).unwrap();
    let refused = run(
        Command::new("wget")
            .args(["--quiet", "--tries=1", "--timeout=10", "--output-document=-", "--ca-certificate"])
            .arg(&other)
            .arg(&url),
        Duration::from_secs(15),
    );
    assert!(!refused.success(), "wget must refuse a certificate of another CA");
}

#[test]
fn python_requests_fetches_over_tls_with_keep_alive() {
    if missing_tool("python3") {
        return;
    }
    let probe = run(Command::new("python3").args(["-c", "import requests"]), Duration::from_secs(15));
    if !probe.success() {
        skip("python3's requests module is missing (apt-get install python3-requests)");
        return;
    }
    let certs = TempDir::new("tls_clients");
    let ca = TestCa::new();
    let (s, ca_file) = server(&certs, &ca);
    // One session: both requests on one kept-alive connection (urllib3's
    // pool counts the connections it opened), the second a range of the
    // identity body (requests asks for gzip by default, and gets the
    // precompressed sibling).
    let script = r#"
import sys, requests
base, ca = sys.argv[1], sys.argv[2]
with requests.Session() as s:
    a = s.get(base + "/", verify=ca, timeout=10)
    b = s.get(base + "/app.js", verify=ca, timeout=10, headers={"Range": "bytes=9-12", "Accept-Encoding": "identity"})
    print(a.status_code, a.text.strip())
    print(b.status_code, b.headers.get("Content-Range"), b.text)
    pools = s.get_adapter(base).poolmanager.pools
    print(sum(pools[key].num_connections for key in pools.keys()))
"#;
    let base = format!("https://127.0.0.1:{}", s.addr().port());
    let out =
        run(Command::new("python3").args(["-c", script]).arg(&base).arg(&ca_file), Duration::from_secs(30));
    assert!(out.success(), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["200 hello from the tls clients test", "206 bytes 9-12/13 body", "1"],
        "two responses on one connection"
    );
}
