//! Certificates that renew themselves: a certificate and key replaced on
//! disk (written beside, renamed over, as ACME clients do) are served
//! without a signal; a broken replacement keeps the previous pair, is
//! reported once, and the next good one is loaded; a certificate near its
//! end is warned about in systemd's `STATUS=`. certbot's layout, links
//! re-pointed into an archive, is followed and watched; a link to a file
//! another account could change is refused.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::systemd::recv_until;
use crate::tls::{VALID, check_pair, der_of, https_server};

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

/// Files `issued` as certbot keeps version `n` of lineage `name` under
/// `base`: copied into `archive/NAME/` as `fullchain{n}.pem` and
/// `privkey{n}.pem`, and `live/NAME/fullchain.pem` and `privkey.pem`
/// (re-)pointed at them by relative links, removed and made again as
/// certbot does. Returns the `live/` paths.
fn certbot_version(base: &Path, name: &str, n: u32, issued: &CertFiles) -> CertFiles {
    let archive = base.join("archive").join(name);
    let live = base.join("live").join(name);
    for dir in [&archive, &live] {
        fs::create_dir_all(dir).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let files = CertFiles { cert: live.join("fullchain.pem"), key: live.join("privkey.pem") };
    for (from, kind, link) in [(&issued.cert, "fullchain", &files.cert), (&issued.key, "privkey", &files.key)]
    {
        fs::copy(from, archive.join(format!("{kind}{n}.pem"))).unwrap();
        let _ = fs::remove_file(link);
        symlink(format!("../../archive/{name}/{kind}{n}.pem"), link).unwrap();
    }
    files
}

#[test]
fn certbots_live_links_are_followed_and_a_renewal_behind_them_is_served() {
    let certs = TempDir::new("renewal");
    let ca = TestCa::new();
    let first = ca.issue(certs.path(), "first", &["default.test"], VALID);
    let live = certbot_version(certs.path(), "default.test", 1, &first);
    // The config names a link to certbot's link, so the link named stays
    // the same at the renewal: only what it leads to changes.
    let named = CertFiles { cert: certs.path().join("cert.pem"), key: certs.path().join("key.pem") };
    symlink(&live.cert, &named.cert).unwrap();
    symlink(&live.key, &named.key).unwrap();
    let s = https_server(&named, &watched(), &[("index.html", b"linked\n")]);
    assert!(served(s.addr(), &ca) == der_of(&first), "the certificate behind the links at first");
    let renewed = ca.issue(certs.path(), "renewed", &["default.test"], VALID);
    certbot_version(certs.path(), "default.test", 2, &renewed);
    let want = der_of(&renewed);
    let seen = poll_until(Duration::from_secs(10), || served(s.addr(), &ca) == want);
    assert!(seen, "the renewal behind certbot's links is not served within 10 s; stderr:\n{}", s.stderr());
}

#[test]
fn a_link_to_a_file_another_account_can_change_is_refused() {
    let dir = TempDir::new("renewal_link");
    let ca = TestCa::new();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    let issued = ca.issue(&open, "default", &["default.test"], VALID);
    let linked = CertFiles { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
    symlink(&issued.cert, &linked.cert).unwrap();
    symlink(&issued.key, &linked.key).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    let out = check_pair(&dir, &linked, &linked);
    assert!(out.success(), "a link into a directory only root can change: {}", out.describe());
    // Anyone may now swap the file the link leads to.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let out = check_pair(&dir, &linked, &linked);
    assert!(!out.success() && out.stderr.contains("world-writable"), "{}", out.describe());
    // A loop of links ends.
    fs::remove_file(&linked.cert).unwrap();
    symlink(&linked.cert, &linked.cert).unwrap();
    let out = check_pair(&dir, &linked, &linked);
    assert!(!out.success() && out.stderr.contains("symbolic links"), "{}", out.describe());
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
