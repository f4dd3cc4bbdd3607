//! ACME's HTTP-01 challenge and HTTPS-only sites: challenge tokens served
//! from `acme_webroot` for every site, over plain HTTP, ahead of the
//! redirect, fallback and error pages; the `308` of `https_redirect` with
//! host, path and query kept; `Strict-Transport-Security` over HTTPS only.

use std::fs;

use crate::common::*;

/// A year the test certificate is valid until.
const VALID: (i32, u8, u8) = (2045, 1, 1);

/// A token as Let's Encrypt makes them: 43 base64url characters.
const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";

/// An ACME webroot, as certbot's `--webroot -w` leaves it during a
/// challenge: the token file beneath `.well-known/acme-challenge/`.
fn webroot() -> TempDir {
    let dir = TempDir::new("acme_webroot");
    let challenges = dir.path().join(".well-known/acme-challenge");
    fs::create_dir_all(&challenges).unwrap();
    fs::write(challenges.join(TOKEN), format!("{TOKEN}.thumbprint")).unwrap();
    // A name that is no token, which must not be served even though it is there.
    fs::write(challenges.join("notes.txt"), "not a token").unwrap();
    dir
}

fn get_with_host(s: &TestServer, target: &str, host: &str) -> Response {
    let mut c = s.connect();
    c.send(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response()
}

#[test]
fn challenge_is_served_before_redirect_fallback_and_error_pages() {
    let acme = webroot();
    let s = TestServer::builder()
        .config(&format!("acme_webroot = {:?}", acme.path().to_str().unwrap()))
        .config("https_redirect = true")
        .config("fallback = \"/index.html\"")
        .config("error_pages = { 404 = \"/404.html\" }")
        .file("index.html", b"the app\n")
        .file("404.html", b"custom 404\n")
        .dir("sites/b")
        .config("[[site]]\nhosts = [\"b.test\"]\nroot = \"sites/b\"\nhttps_redirect = true")
        .start();
    // The same token for the default site and for a [[site]] of its own root.
    for host in ["a.test", "b.test"] {
        let r = get_with_host(&s, &format!("/.well-known/acme-challenge/{TOKEN}"), host);
        assert_eq!(r.status, 200, "{host}: {r:?}");
        assert_eq!(r.body_str(), format!("{TOKEN}.thumbprint"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let r = get_with_host(&s, "/", host);
        assert_eq!((r.status, r.header("location")), (308, Some(format!("https://{host}/").as_str())));
    }
    // A missing token, a name that is not one, and the directory itself:
    // the built-in 404, neither the fallback, the site's page nor a redirect.
    for target in [
        "/.well-known/acme-challenge/missingToken",
        "/.well-known/acme-challenge/notes.txt",
        "/.well-known/acme-challenge/",
        &format!("/.well-known/acme-challenge/{TOKEN}/x"),
    ] {
        let r = get_with_host(&s, target, "a.test");
        assert_eq!(r.status, 404, "{target}: {r:?}");
        assert!(r.body_str().contains("404 Not Found"), "{target}: {}", r.body_str());
        assert_eq!(r.header("location"), None, "{target}");
    }
}

#[test]
fn https_redirect_keeps_host_path_and_query() {
    let s = TestServer::builder()
        .config("https_redirect = true")
        .config("https_port = 8443")
        .file("index.html", b"the app\n")
        .start();
    let table = [
        ("/a/b?x=1&y=%20", "a.test:8080", "https://a.test:8443/a/b?x=1&y=%20"),
        ("/", "A.Test", "https://A.Test:8443/"),
        ("http://b.test:80/p?q", "b.test", "https://b.test:8443/p?q"),
    ];
    for (target, host, want) in table {
        let r = get_with_host(&s, target, host);
        assert_eq!((r.status, r.header("location")), (308, Some(want)), "{target} {host}: {r:?}");
        assert_eq!(r.header("strict-transport-security"), None, "never over plain HTTP");
    }
    // Without an ACME webroot the challenge path is redirected like any other.
    let r = get_with_host(&s, "/.well-known/acme-challenge/tok", "a.test");
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("https://a.test:8443/.well-known/acme-challenge/tok"))
    );
}

#[test]
fn hsts_goes_out_over_tls_only() {
    let certs = TempDir::new("acme_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let mut b = TestServer::builder()
        .config("tls_listen = [\"127.0.0.2:0\"]")
        .config("hsts = 600")
        .config("https_redirect = true")
        .expect_listeners(2)
        .file("index.html", b"the app\n");
    for line in cert.config_lines() {
        b = b.config(&line);
    }
    let s = b.start();
    let (plain, https) = (s.addrs()[0], s.addrs()[1]);
    let r = get_close(plain, "/");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.header("strict-transport-security"), None, "never over plain HTTP");
    let mut c = TlsConn::connect(https, "default.test", ca.client_config()).unwrap();
    c.send_request("GET", "/", "default.test", &[]);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "the app\n"), "not redirected over HTTPS");
    assert_eq!(r.header("strict-transport-security"), Some("max-age=600"));
    c.send_request("GET", "/missing", "default.test", &[]);
    let r = c.read_response();
    assert_eq!((r.status, r.header("strict-transport-security")), (404, Some("max-age=600")));
}
