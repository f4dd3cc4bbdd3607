//! HTTPS session resumption by tickets whose keys the parent owns: a
//! session resumes on the child of a later connection (TLS 1.3 and 1.2),
//! after a reload, and after one key rotation but not two; and with
//! `openssl s_client -sess_out` / `-sess_in`.

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustls::{ClientConfig, HandshakeKind};

use crate::common::*;
use crate::tls::{VALID, https_server};

/// The page every test fetches.
const PAGE: &[u8] = b"resumed\n";

/// A server with a certificate for `default.test` and `extra` config lines.
fn server(certs: &TempDir, ca: &TestCa, extra: &[String]) -> TestServer {
    let cert = ca.issue(certs.path(), "default", &["default.test"], VALID);
    https_server(&cert, extra, &[("index.html", PAGE)])
}

/// Fetches `/` on a new connection made with `config`, to the end of the
/// session (a TLS 1.3 ticket comes after the handshake, with the
/// response); returns how the handshake went.
fn fetch(s: &TestServer, config: &Arc<ClientConfig>) -> HandshakeKind {
    let mut c = TlsConn::connect(s.addr(), "default.test", Arc::clone(config)).unwrap();
    c.send_request("GET", "/", "default.test", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (200, PAGE), "{r:?}");
    assert!(c.read_to_close_notify(), "the session ends with close_notify");
    c.handshake_kind().expect("a finished handshake")
}

#[test]
fn a_session_resumes_on_the_child_of_a_later_connection_over_tls13_and_tls12() {
    let certs = TempDir::new("tls_tickets");
    let ca = TestCa::new();
    let s = server(&certs, &ca, &[]);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = ca.client_config_with(&[version], session_store());
        assert_eq!(fetch(&s, &config), HandshakeKind::Full, "{version:?}: the first connection");
        // Each connection is served by a child of its own, forked after
        // the previous one's ticket was sealed by another child.
        assert_eq!(fetch(&s, &config), HandshakeKind::Resumed, "{version:?}: the second connection");
        assert_eq!(fetch(&s, &config), HandshakeKind::Resumed, "{version:?}: the third connection");
    }
    // A client without the ticket gets a full handshake.
    assert_eq!(fetch(&s, &ca.client_config()), HandshakeKind::Full);
}

#[test]
fn a_ticket_from_before_a_reload_still_resumes() {
    let certs = TempDir::new("tls_tickets");
    let ca = TestCa::new();
    let mut s = server(&certs, &ca, &[]);
    let config = ca.client_config();
    assert_eq!(fetch(&s, &config), HandshakeKind::Full);
    s.signal(Signal::SIGHUP);
    let reloaded = s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains("configuration reloaded"));
    assert_eq!(reloaded.len(), 1, "stderr:\n{}", s.stderr());
    assert_eq!(fetch(&s, &config), HandshakeKind::Resumed, "the reload kept the ticket keys");
}

/// The rotation period of the rotation test, in seconds.
const PERIOD: u64 = 4;

/// With a short `tls_ticket_rotation`, a ticket sealed mid-period still
/// resumes after the next rotation (the previous key is kept) and no
/// longer after the one after (its key is gone). The rotations are read
/// from the log; a round whose steps the machine was too slow to place
/// (a step past its window) is started again, three rounds at most.
#[test]
fn a_ticket_resumes_after_one_key_rotation_but_not_after_two() {
    let certs = TempDir::new("tls_tickets");
    let ca = TestCa::new();
    let s = server(&certs, &ca, &[format!("tls_ticket_rotation = {PERIOD}")]);
    let period = Duration::from_secs(PERIOD);
    let log = s.log();
    let rotated = |l: &str| l.contains("session-ticket key rotated");
    // Waits for a rotation's line after line `from`; returns the count
    // of lines by then (where to look for the next one).
    let wait_rotation = |from: usize| {
        let line = log.wait_line(from, 2 * period + Duration::from_secs(5), rotated);
        assert!(line.is_some(), "the key rotates every {PERIOD} s; stderr:\n{}", s.stderr());
        log.len()
    };
    let rotated_since = |from: usize| log.snapshot()[from..].iter().any(|l| rotated(l));
    let slack = Duration::from_millis(500);
    for round in 1..=3 {
        let mark = wait_rotation(log.len());
        let first = Instant::now();
        // Mid-period, well clear of both rotations around it.
        thread::sleep(period * 5 / 8);
        let issued = Instant::now();
        let (a, b) = (ca.client_config(), ca.client_config());
        assert_eq!(fetch(&s, &a), HandshakeKind::Full);
        assert_eq!(fetch(&s, &b), HandshakeKind::Full);
        if rotated_since(mark) || first.elapsed() + slack >= period {
            eprintln!("round {round}: the tickets were sealed too close to the next rotation");
            continue;
        }
        let mark = wait_rotation(mark);
        let second = Instant::now();
        let resumed = fetch(&s, &a);
        if rotated_since(mark) || second.elapsed() + slack >= period {
            eprintln!("round {round}: the first check came too close to the second rotation");
            continue;
        }
        assert_eq!(resumed, HandshakeKind::Resumed, "one rotation on, the previous key opens the ticket");
        wait_rotation(mark);
        // The client drops a ticket past its announced lifetime (two
        // periods, counted in whole seconds); offered before then, only
        // the server's refusal makes the handshake a full one.
        if issued.elapsed() + Duration::from_secs(1) + slack >= 2 * period {
            eprintln!("round {round}: the second check came too late for the client to offer the ticket");
            continue;
        }
        assert_eq!(fetch(&s, &b), HandshakeKind::Full, "two rotations on, the ticket's key is gone");
        return;
    }
    panic!("no round fitted its timing in three; stderr:\n{}", s.stderr());
}

#[test]
fn openssl_resumes_a_saved_session_on_a_new_connection() {
    if missing_tool("openssl") {
        return;
    }
    let certs = TempDir::new("tls_tickets");
    let ca = TestCa::new();
    let s = server(&certs, &ca, &[]);
    let ca_file = certs.path().join("ca.pem");
    fs::write(&ca_file, ca.pem()).unwrap();
    let session = certs.path().join("session.pem");
    for (version, saved) in [("-tls1_3", "tls13"), ("-tls1_2", "tls12")] {
        let session = session.with_extension(saved);
        // The request on stdin, and -ign_eof: s_client reads on to the
        // server's close, so a TLS 1.3 ticket (sent after the handshake)
        // is in before the session is saved.
        let s_client = |sess: &str| {
            let script = "printf 'GET / HTTP/1.1\\r\\nHost: default.test\\r\\nConnection: close\\r\\n\\r\\n' \
                          | openssl s_client -ign_eof \"$@\"";
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script, "sh", "-connect", &s.addr().to_string(), "-servername", "default.test"])
                .args([version, "-verify_return_error", "-verify_hostname", "default.test", "-CAfile"])
                .arg(&ca_file)
                .arg(sess)
                .arg(&session);
            run(&mut cmd, Duration::from_secs(15))
        };
        let first = s_client("-sess_out");
        assert!(first.stdout.contains("New, TLS"), "{version}: {}", first.describe());
        assert!(first.stdout.contains("resumed"), "{version}: the page: {}", first.describe());
        assert!(fs::metadata(&session).is_ok_and(|m| m.len() > 0), "{version}: a session was saved");
        let second = s_client("-sess_in");
        assert!(second.stdout.contains("Reused, TLS"), "{version}: {}", second.describe());
    }
}
