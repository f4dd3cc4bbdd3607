//! Certificates that renew themselves: a certificate and key replaced on
//! disk (written beside, renamed over, as ACME clients do) are served
//! without a signal; a broken replacement keeps the previous pair, is
//! reported once, and the next good one is loaded; a certificate near its
//! end is warned about in systemd's `STATUS=`.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::common::*;
use crate::systemd::recv_until;
use crate::tls::{VALID, der_of, https_server};

/// Looks at the files five times a second, so a test waits little.
fn watched() -> Vec<String> {
    vec!["tls_watch_interval = 0.2".to_string()]
}

/// Renames `from`'s certificate and key over `to`'s, key first.
fn rename_over(from: &CertFiles, to: &CertFiles) {
    fs::rename(&from.key, &to.key).unwrap();
    fs::rename(&from.cert, &to.cert).unwrap();
}

/// The certificate a new connection asking for `default.test` is served.
fn served(addr: std::net::SocketAddr, ca: &TestCa) -> Vec<u8> {
    TlsConn::connect(addr, "default.test", ca.client_config()).unwrap().peer_leaf()
}

#[test]
fn a_renewed_certificate_is_served_without_a_signal() {
    let certs = TempDir::new("renewal");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let s = https_server(&cert, &watched(), &[("index.html", b"renewed\n")]);
    assert!(served(s.addr(), &ca) == der_of(&cert), "the first certificate at first");
    let renewed = ca.issue(certs.path(), "renewed", &["default.test"], VALID);
    let want = der_of(&renewed);
    rename_over(&renewed, &cert);
    let seen = poll_until(Duration::from_secs(10), || served(s.addr(), &ca) == want);
    assert!(seen, "the renewed certificate is not served within 10 s; stderr:\n{}", s.stderr());
    let logged = s.wait_for_lines(1, Duration::from_secs(5), |l| {
        l.contains("certificate file") && l.contains("changed: reloading")
    });
    assert!(!logged.is_empty(), "the change is logged; stderr:\n{}", s.stderr());
    let mut c = TlsConn::connect(s.addr(), "default.test", ca.client_config()).unwrap();
    c.send_request("GET", "/", "default.test", &[]);
    assert_eq!(c.read_response().body_str(), "renewed\n");
}

#[test]
fn a_broken_renewal_keeps_the_certificate_and_is_reported_once() {
    let certs = TempDir::new("renewal");
    let ca = TestCa::new();
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    let first = der_of(&cert);
    let s = https_server(&cert, &watched(), &[]);
    // A key that belongs to another certificate, renamed into place.
    let other = ca.issue(certs.path(), "other", &["default.test"], VALID);
    fs::rename(&other.key, &cert.key).unwrap();
    let failed = s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains("reload failed"));
    assert_eq!(failed.len(), 1, "the broken pair is reported; stderr:\n{}", s.stderr());
    assert!(failed[0].contains("does not match"), "{}", failed[0]);
    // Ten more looks at the files: nothing changed, nothing is retried.
    std::thread::sleep(Duration::from_secs(2));
    let failures = s.lines().iter().filter(|l| l.contains("reload failed")).count();
    assert_eq!(failures, 1, "reported once, not at every look; stderr:\n{}", s.stderr());
    assert!(served(s.addr(), &ca) == first, "the previous certificate is served");
    // The next change, a whole pair, is loaded.
    let fixed = ca.issue(certs.path(), "fixed", &["default.test"], VALID);
    let want = der_of(&fixed);
    rename_over(&fixed, &cert);
    let seen = poll_until(Duration::from_secs(10), || served(s.addr(), &ca) == want);
    assert!(seen, "a good pair after a broken one is served; stderr:\n{}", s.stderr());
}

#[test]
fn a_certificate_near_its_end_is_in_the_status_line() {
    let certs = TempDir::new("renewal");
    let ca = TestCa::new();
    // Valid until midnight six days on: five whole days and some hours left.
    let (y, m, d) = civil_from_days(now_secs().div_euclid(86_400) + 6);
    let cert = ca.issue(certs.path(), "default", &["default.test"], (y as i32, m as u8, d as u8));
    let path = certs.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut b = TestServer::builder()
        .config_listen(&[])
        .config("listen = []")
        .config("tls_listen = [\"127.0.0.1:0\"]")
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .expect_listeners(1);
    for line in cert.config_lines() {
        b = b.config(&line);
    }
    let s = b.start();
    let msgs = recv_until(&sock, "READY=1", Duration::from_secs(5))
        .unwrap_or_else(|m| panic!("no READY=1 within 5 s; got {m:?}; stderr:\n{}", s.stderr()));
    let want =
        format!("STATUS=serving; certificate {} of default site expires in 5 days", cert.cert.display());
    assert!(
        msgs.iter().any(|m| m.lines().any(|l| l == "READY=1") && m.lines().any(|l| l == want)),
        "READY=1 without {want:?}: {msgs:?}"
    );
}
