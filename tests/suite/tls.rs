//! HTTPS: pages, keep-alive, pipelining, ranges and large files over TLS
//! with a rustls client and with curl; the certificate each SNI name
//! gets; `421` for a host of another site; clients that do not complete a
//! handshake; `--check-config` on certificate pairs; PROXY then TLS.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::common::*;

/// A certificate's DER, read back from its PEM file.
pub(crate) fn der_of(files: &CertFiles) -> Vec<u8> {
    CertificateDer::from_pem_file(&files.cert).unwrap().to_vec()
}

/// A year every certificate that should be valid is valid until.
pub(crate) const VALID: (i32, u8, u8) = (2045, 1, 1);

/// An HTTPS-only server (`tls_listen`, `listen = []`: the harness leaves
/// an empty list out, and the built-in default would listen) with the default
/// certificate `cert` and the `extra` config lines.
pub(crate) fn https_server(cert: &CertFiles, extra: &[String], files: &[(&str, &[u8])]) -> TestServer {
    let mut b = TestServer::builder()
        .config_listen(&[])
        .config("listen = []")
        .config("tls_listen = [\"127.0.0.1:0\"]")
        .expect_listeners(1);
    for line in cert.config_lines() {
        b = b.config(&line);
    }
    for line in extra {
        b = b.config(line);
    }
    for (name, data) in files {
        b = b.file(name, data);
    }
    b.start()
}

/// Bytes that differ from their neighbours, so a misplaced chunk shows.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn a_page_over_tls_with_alpn_keepalive_and_pipelining() {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &[], &[("index.html", b"hello over tls\n"), ("a.txt", b"AAA")]);
    let mut c = TlsConn::connect(s.addr(), "default.test", ca.client_config()).unwrap();
    assert_eq!(c.alpn().as_deref(), Some(&b"http/1.1"[..]), "ALPN agrees on http/1.1");
    c.send_request("GET", "/", "default.test", &[]);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello over tls\n"));
    // Kept alive; then two requests in one write, answered in order.
    c.send(b"GET /a.txt HTTP/1.1\r\nHost: default.test\r\n\r\nGET / HTTP/1.1\r\nHost: default.test\r\n\r\n");
    let first = c.read_response();
    assert_eq!((first.status, first.body_str().as_str()), (200, "AAA"));
    c.send_request("GET", "/missing", "default.test", &["Connection: close"]);
    let second = c.read_response();
    assert_eq!((second.status, second.body_str().as_str()), (200, "hello over tls\n"));
    let missing = c.read_response();
    assert_eq!(missing.status, 404);
    assert!(c.read_to_close_notify(), "the server ends the session with close_notify");
}

#[test]
fn a_range_and_a_large_file_are_byte_exact() {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let big = patterned(1536 * 1024 + 77);
    let small = patterned(12 * 1024);
    let s = https_server(&cert, &[], &[("big.bin", &big), ("small.bin", &small)]);
    let mut c = TlsConn::connect(s.addr(), "default.test", ca.client_config()).unwrap();
    c.send_request("GET", "/big.bin", "default.test", &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.body == big, "1.5 MiB body: {} bytes, want {}", r.body.len(), big.len());
    c.send_request("GET", "/big.bin", "default.test", &["Range: bytes=100000-1200000"]);
    let r = c.read_response();
    assert_eq!(r.status, 206);
    assert!(r.body == big[100_000..=1_200_000], "range body of {} bytes", r.body.len());
    // A body small enough to go in one record with its head.
    c.send_request("GET", "/small.bin", "default.test", &["Range: bytes=10-"]);
    let r = c.read_response();
    assert_eq!(r.status, 206);
    assert!(r.body == small[10..], "small range of {} bytes", r.body.len());
}

/// Sites `a.test` and `*.b.test` with certificates of their own, and the
/// default certificate for `default.test`, `unknown.test` and 127.0.0.1.
struct Sites {
    _certs: TempDir,
    ca: TestCa,
    default: CertFiles,
    a: CertFiles,
    b: CertFiles,
    server: TestServer,
}

fn sites() -> Sites {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let default = ca.issue(certs.path(), "default", &["default.test", "unknown.test", "127.0.0.1"], VALID);
    let a = ca.issue(certs.path(), "a", &["a.test"], VALID);
    let b = ca.issue(certs.path(), "b", &["*.b.test"], VALID);
    for site in ["a", "b"] {
        fs::create_dir_all(certs.path().join(site)).unwrap();
        fs::write(certs.path().join(site).join("index.html"), format!("site {site}\n")).unwrap();
    }
    let site_lines = |name: &str, host: &str, files: &CertFiles| {
        let [cert, key] = files.config_lines();
        let root = certs.path().join(name);
        format!("[[site]]\nhosts = [\"{host}\"]\nroot = {:?}\n{cert}\n{key}", root.to_str().unwrap())
    };
    // The tables come last: every line after them is theirs.
    let extra = [site_lines("a", "a.test", &a), site_lines("b", "*.b.test", &b)];
    let server = https_server(&default, &extra, &[("index.html", b"default site\n")]);
    Sites { _certs: certs, ca, default, a, b, server }
}

#[test]
fn sni_picks_each_sites_certificate_and_the_default_otherwise() {
    let s = sites();
    let addr = s.server.addr();
    let leaf = |name: &str| TlsConn::connect(addr, name, s.ca.client_config()).unwrap().peer_leaf();
    assert!(leaf("a.test") == der_of(&s.a), "a.test gets site a's certificate");
    assert!(leaf("www.b.test") == der_of(&s.b), "a wildcard site's name gets its certificate");
    assert!(leaf("unknown.test") == der_of(&s.default), "a name no site has gets the default");
    // An IP address is never sent as SNI: no name at all.
    assert!(leaf("127.0.0.1") == der_of(&s.default), "no SNI gets the default");
    let mut c = TlsConn::connect(addr, "a.test", s.ca.client_config()).unwrap();
    c.send_request("GET", "/", "a.test", &[]);
    assert_eq!(c.read_response().body_str(), "site a\n");
}

#[test]
fn a_host_naming_another_site_than_sni_is_misdirected() {
    let s = sites();
    let mut c = TlsConn::connect(s.server.addr(), "a.test", s.ca.client_config()).unwrap();
    c.send_request("GET", "/", "www.b.test", &[]);
    let r = c.read_response();
    assert_eq!(r.status, 421, "{r:?}");
    assert!(r.body_str().contains("421 Misdirected Request"));
    // The connection stays usable for its own site, and for a host no
    // site names (the default site, as over plain HTTP).
    c.send_request("GET", "/", "a.test", &[]);
    assert_eq!(c.read_response().body_str(), "site a\n");
    c.send_request("GET", "/", "elsewhere.test", &[]);
    assert_eq!(c.read_response().body_str(), "default site\n");
    // Without SNI, any host is served.
    let mut c = TlsConn::connect(s.server.addr(), "127.0.0.1", s.ca.client_config()).unwrap();
    c.send_request("GET", "/", "www.b.test", &[]);
    assert_eq!(c.read_response().body_str(), "site b\n");
}

#[test]
fn plain_http_to_the_tls_port_is_closed_without_an_http_reply() {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &["header_timeout = 2".to_string()], &[]);
    let mut c = Conn::connect(s.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: default.test\r\n\r\n");
    let (got, closed) = c.read_until_close(Duration::from_secs(4));
    let elapsed = closed.expect("closed within header_timeout + 2 s");
    assert!(!got.windows(5).any(|w| w == b"HTTP/"), "no HTTP reply: {:?}", String::from_utf8_lossy(&got));
    assert!(elapsed < Duration::from_secs(4), "closed after {elapsed:?}");
    let warned = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("TLS handshake failed"));
    assert_eq!(warned.len(), 1, "the failure is logged; stderr:\n{}", s.stderr());
}

#[test]
fn a_trickling_handshake_is_closed_within_header_timeout() {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &["header_timeout = 2".to_string()], &[]);
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    // A handshake record header announcing 512 bytes, then a byte at a time.
    sock.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    let start = Instant::now();
    let mut closed = None;
    while start.elapsed() < Duration::from_secs(6) {
        let _ = sock.write_all(&[0x01]);
        let mut buf = [0u8; 64];
        match std::io::Read::read(&mut sock, &mut buf) {
            Ok(0) => {
                closed = Some(start.elapsed());
                break;
            }
            Ok(_) => {} // an alert, before the close
            Err(e) if is_timeout(&e) => {}
            Err(_) => {
                closed = Some(start.elapsed());
                break;
            }
        }
    }
    let elapsed = closed.expect("a trickling handshake is closed");
    assert!(elapsed >= Duration::from_millis(1800), "closed after {elapsed:?}: before header_timeout");
    assert!(elapsed < Duration::from_millis(3500), "closed after {elapsed:?}: long after header_timeout");
    let warned =
        s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("did not complete its TLS handshake"));
    assert_eq!(warned.len(), 1, "the timeout is logged; stderr:\n{}", s.stderr());
}

/// Runs `--check-config --no-bind` on an HTTPS config with `cert` as the
/// default certificate and `key` as its key.
pub(crate) fn check_pair(dir: &TempDir, cert: &CertFiles, key: &CertFiles) -> Output {
    let root = dir.path().join("root");
    make_root(&root, &[("x.txt", b"x")]);
    let text = format!(
        "listen = []\ntls_listen = [\"127.0.0.1:0\"]\nroot = {}\ntls_certificate = {}\ntls_key = {}\n",
        toml_str(root.to_str().unwrap()),
        toml_str(cert.cert.to_str().unwrap()),
        toml_str(key.key.to_str().unwrap()),
    );
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, text).unwrap();
    run(
        server_command().arg("--check-config").arg("--no-bind").arg("--config").arg(&cfg),
        Duration::from_secs(10),
    )
}

#[test]
fn check_config_refuses_a_mismatched_key_and_an_expired_certificate_and_warns_of_one_ending() {
    let dir = TempDir::new("tls_check");
    let ca = TestCa::new();
    let good = ca.issue(dir.path(), "good", &["default.test"], VALID);
    let other = ca.issue(dir.path(), "other", &["default.test"], VALID);
    let expired = ca.issue(dir.path(), "expired", &["default.test"], (2001, 1, 1));
    let out = check_pair(&dir, &good, &good);
    assert!(out.success() && out.stdout.contains("configuration OK"), "{}", out.describe());
    let out = check_pair(&dir, &good, &other);
    assert!(!out.success() && out.stderr.contains("does not match"), "{}", out.describe());
    assert!(out.stderr.contains("other.key"), "names the key file: {}", out.describe());
    let out = check_pair(&dir, &expired, &expired);
    assert!(!out.success() && out.stderr.contains("expired"), "{}", out.describe());
    // Within 14 days of its end: accepted, with a warning.
    let (y, m, d) = civil_from_days(now_secs() / 86_400 + 7);
    let ending = ca.issue(dir.path(), "ending", &["default.test"], (y as i32, m as u8, d as u8));
    let out = check_pair(&dir, &ending, &ending);
    assert!(out.success() && out.stderr.contains("expires"), "{}", out.describe());
    assert!(!check_pair(&dir, &good, &good).stderr.contains("expire"), "no warning for a distant end");
    // A key that is no PEM key at all.
    fs::write(&other.key, "not a key\n").unwrap();
    let out = check_pair(&dir, &good, &other);
    assert!(!out.success() && out.stderr.contains("private key"), "{}", out.describe());
}

#[test]
fn check_config_warns_of_a_site_certificate_that_does_not_name_its_hosts() {
    let dir = TempDir::new("tls_names");
    let ca = TestCa::new();
    let default = ca.issue(dir.path(), "default", &["default.test"], VALID);
    let wrong = ca.issue(dir.path(), "wrong", &["other.test", "*.b.test"], VALID);
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x")]);
    let [cert, key] = default.config_lines();
    let [site_cert, site_key] = wrong.config_lines();
    let root = toml_str(root.to_str().unwrap());
    let text = format!(
        "listen = []\ntls_listen = [\"127.0.0.1:0\"]\nroot = {root}\n{cert}\n{key}\n\
         [[site]]\nhosts = [\"a.test\", \"*.b.test\", \"*.c.test\"]\nroot = {root}\n{site_cert}\n{site_key}\n"
    );
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, text).unwrap();
    let out = run(
        server_command().arg("--check-config").arg("--no-bind").arg("--config").arg(&cfg),
        Duration::from_secs(10),
    );
    assert!(out.success(), "a warning, not an error: {}", out.describe());
    for host in ["\"a.test\"", "\"*.c.test\""] {
        assert!(out.stderr.contains(&format!("does not name its host {host}")), "{host}: {}", out.describe());
    }
    assert!(!out.stderr.contains("\"*.b.test\""), "a wildcard the certificate has: {}", out.describe());
}

#[test]
fn an_https_listener_needs_a_certificate() {
    let dir = TempDir::new("tls_nocert");
    let root = dir.path().join("root");
    make_root(&root, &[("x.txt", b"x")]);
    let text =
        format!("listen = []\ntls_listen = [\"127.0.0.1:0\"]\nroot = {}\n", toml_str(root.to_str().unwrap()));
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, text).unwrap();
    let out = run(
        server_command().arg("--check-config").arg("--no-bind").arg("--config").arg(&cfg),
        Duration::from_secs(10),
    );
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("tls_listen") && out.stderr.contains("tls_certificate"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_broken_certificate_on_reload_keeps_the_previous_one() {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let served = der_of(&cert);
    let mut s = https_server(&cert, &[], &[("index.html", b"still here\n")]);
    // A key that matches another certificate.
    let other = ca.issue(certs.path(), "other", &["default.test"], VALID);
    fs::copy(&other.key, &cert.key).unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    let failed = s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains("reload failed"));
    assert_eq!(failed.len(), 1, "stderr:\n{}", s.stderr());
    assert!(failed[0].contains("does not match"), "{}", failed[0]);
    let mut c = TlsConn::connect(s.addr(), "default.test", ca.client_config()).unwrap();
    assert!(c.peer_leaf() == served, "the previous certificate is served");
    c.send_request("GET", "/", "default.test", &[]);
    assert_eq!(c.read_response().body_str(), "still here\n");
}

#[test]
fn proxy_then_tls_names_the_client_from_the_header() {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let extra =
        ["proxy_tls_listen = [\"127.0.0.1:0\"]".to_string(), "trusted_proxies = [\"127.0.0.1\"]".to_string()];
    let mut b = TestServer::builder().config_listen(&[]).config("listen = []").expect_listeners(1);
    for line in cert.config_lines().iter().chain(&extra) {
        b = b.config(line);
    }
    let s = b.file("index.html", b"proxied\n").start();
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n").unwrap();
    let mut c = TlsConn::over(sock, "default.test", ca.client_config()).unwrap();
    c.send_request("GET", "/", "default.test", &[]);
    assert_eq!(c.read_response().body_str(), "proxied\n");
    let logged =
        s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("192.0.2.7") && l.contains("GET /"));
    assert_eq!(logged.len(), 1, "the access log names the client; stderr:\n{}", s.stderr());
}

#[test]
fn curl_fetches_a_page_over_tls() {
    if missing_tool("curl") {
        return;
    }
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let ca_file = certs.path().join("ca.pem");
    fs::write(&ca_file, ca.pem()).unwrap();
    let s = https_server(&cert, &[], &[("index.html", b"hello curl\n")]);
    let port = s.addr().port();
    let addr: SocketAddr = s.addr();
    let out = run(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&ca_file)
            .arg("--resolve")
            .arg(format!("default.test:{port}:{}", addr.ip()))
            .arg(format!("https://default.test:{port}/")),
        Duration::from_secs(15),
    );
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim_end(), "hello curl");
}

#[test]
fn the_parents_refusal_writes_nothing_on_a_tls_connection() {
    let certs = TempDir::new("tls_certs");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    // max_children = 2: from one child busy, the cap of 1 per address applies.
    let extra = ["max_children_per_ip = 1".to_string(), "max_children = 2".to_string()];
    let s = https_server(&cert, &extra, &[("index.html", b"busy\n")]);
    let mut held = TlsConn::connect(s.addr(), "default.test", ca.client_config()).unwrap();
    held.send_request("GET", "/", "default.test", &[]);
    assert_eq!(held.read_response().body_str(), "busy\n");
    let mut refused = Conn::connect(s.addr());
    // A ClientHello's first bytes, as a client would send.
    refused.send_lossy(&[0x16, 0x03, 0x01, 0x00, 0x05]);
    let (got, closed) = refused.read_until_close(Duration::from_secs(5));
    assert!(closed.is_some(), "the refused connection is closed");
    assert!(got.is_empty(), "nothing written on a TLS connection: {:?}", String::from_utf8_lossy(&got));
    let logged = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("\" 503 0 "));
    assert_eq!(logged.len(), 1, "logged as a 503 of no bytes; stderr:\n{}", s.stderr());
}
