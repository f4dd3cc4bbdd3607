//! Signals: `SIGHUP` reload (bad config, new root, changed listeners),
//! `SIGTERM` graceful stop (slow download, idle keep-alive, grace expiry),
//! `SIGQUIT` fast stop, `SIGUSR1` access-log reopen.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::ReadRetrying;
use crate::common::{
    Conn, TempDir, TestServer, children_of, chmod, connect_refused, get_close, get_keepalive, make_root,
    parse_listening_line, poll_until, toml_str, wait_children, wait_gone, write_atomic, write_big_file,
};

const BIG: usize = 32 << 20;
const MIB: usize = 1 << 20;

fn contains_reloaded(l: &str) -> bool {
    l.contains("configuration reloaded")
}

/// Waits for a `configuration reloaded` line after index `from`.
fn wait_reloaded(srv: &mut TestServer, from: usize) {
    let seen = srv.log().wait_line(from, Duration::from_secs(5), contains_reloaded).is_some();
    assert!(
        seen,
        "no 'configuration reloaded' line within 5 s of SIGHUP (server running: {}); stderr:\n{}",
        srv.is_running(),
        srv.stderr()
    );
}

// ---------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------

#[test]
fn sighup_with_broken_config_keeps_serving_old_config() {
    let mut srv = TestServer::builder()
        .name("hup_broken")
        .config("shutdown_grace = 2")
        .file("x.txt", b"old root\n")
        .start();
    assert_eq!(srv.get("/x.txt").body, b"old root\n");

    let from = srv.log().len();
    write_atomic(srv.cfg(), b"this is not toml\n");
    srv.signal(Signal::SIGHUP);
    let line = srv.log().wait_line(from, Duration::from_secs(5), |l| {
        l.contains("reload") && (l.contains(": error:") || l.contains(": warn:"))
    });
    let Some(line) = line else {
        panic!(
            "no error/warn line mentioning 'reload' after SIGHUP with a broken config; stderr:\n{}",
            srv.stderr()
        )
    };
    let since: String = srv.log().snapshot()[from..].join("\n");
    assert!(
        since.contains("line 1") || since.contains(srv.cfg().to_str().unwrap()),
        "the reload failure should carry the config error (its line or the file); got {line:?}; stderr since SIGHUP:\n{since}"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(srv.is_running(), "server died on a broken reload; stderr:\n{}", srv.stderr());
    assert!(
        !srv.log().snapshot()[from..].iter().any(|l| contains_reloaded(l)),
        "a broken config must not be reported as reloaded; stderr:\n{}",
        srv.stderr()
    );
    let r = srv.get("/x.txt");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"old root\n", "must keep serving the old root");

    // Fixed file: the next SIGHUP reloads.
    let from = srv.log().len();
    srv.rewrite_config(srv.config_listen(), srv.root(), srv.config_lines());
    srv.signal(Signal::SIGHUP);
    wait_reloaded(&mut srv, from);
    assert!(srv.is_running());
    assert_eq!(srv.get("/x.txt").body, b"old root\n");
}

#[test]
fn sighup_with_new_root_serves_it_to_new_connections_only() {
    let mut srv = TestServer::builder()
        .name("hup_root")
        .config("keepalive_timeout = 10")
        .config("shutdown_grace = 2")
        .file("x.txt", b"content A\n")
        .start();
    let root_b = make_root(&srv.base().join("root-b"), &[("x.txt", b"content B\n")]);

    // A keep-alive connection opened before the reload.
    let mut old = Conn::connect(srv.addr());
    old.send_request("GET", "/x.txt", &[]);
    let r = old.read_response();
    assert_eq!(r.body, b"content A\n");
    assert!(!r.connection_has("close"), "expected keep-alive: {r:?}");

    let from = srv.log().len();
    srv.rewrite_config(srv.config_listen(), &root_b, srv.config_lines());
    srv.signal(Signal::SIGHUP);
    wait_reloaded(&mut srv, from);

    let r = srv.get("/x.txt");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_str(), "content B\n", "a new connection after the reload must see the new root");

    old.send_request("GET", "/x.txt", &["Connection: close"]);
    let r = old.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_str(), "content A\n", "a connection opened before the reload keeps the old root");
}

#[test]
fn sighup_with_changed_listen_list() {
    let mut srv = TestServer::builder()
        .name("hup_listen")
        .config("shutdown_grace = 2")
        .file("x.txt", b"listen\n")
        .start();
    srv.wait_serving();
    let first = srv.addr();

    // Add a second address (the first entry stays exactly as written).
    let from = srv.log().len();
    let mut listen = srv.config_listen().to_vec();
    listen.push("127.0.0.2:0".to_string());
    srv.rewrite_config(&listen, srv.root(), srv.config_lines());
    srv.signal(Signal::SIGHUP);
    wait_reloaded(&mut srv, from);
    let line = srv
        .log()
        .wait_line(from, Duration::from_secs(3), |l| parse_listening_line(l).is_some_and(|a| a != first));
    let Some(line) = line else {
        panic!("no new 'listening on' line after adding a listener; stderr:\n{}", srv.stderr())
    };
    let second: SocketAddr = parse_listening_line(&line).unwrap();
    assert_eq!(second.ip(), std::net::IpAddr::from([127, 0, 0, 2]), "unexpected new listener {line:?}");
    assert_eq!(get_close(second, "/x.txt").status, 200, "new listener");
    assert_eq!(get_close(first, "/x.txt").status, 200, "old listener");

    // A new address that cannot be bound: logged, not fatal.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_addr = held.local_addr().unwrap();
    let from = srv.log().len();
    let mut listen = srv.config_listen().to_vec();
    listen.push(held_addr.to_string());
    srv.rewrite_config(&listen, srv.root(), srv.config_lines());
    srv.signal(Signal::SIGHUP);
    assert!(
        srv.log().wait_line(from, Duration::from_secs(5), |l| l.contains("cannot listen on")).is_some(),
        "no 'cannot listen on' line after reloading with a busy address {held_addr}; stderr:\n{}",
        srv.stderr()
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        srv.is_running(),
        "a reload with an unbindable address must not be fatal; stderr:\n{}",
        srv.stderr()
    );
    let r = get_close(first, "/x.txt");
    assert_eq!(r.status, 200, "keeps serving on {first}: {r:?}");
    drop(held);
}

/// The reloaded list names the address the server already listens on, but
/// spelled differently from the original entry (`127.0.0.1:PORT` instead of
/// `127.0.0.1:0`); it must keep serving there (the socket it already holds
/// is that address: binding it anew can only fail with EADDRINUSE).
#[test]
fn sighup_listen_list_naming_the_bound_address_keeps_it() {
    let mut srv = TestServer::builder()
        .name("hup_listen_respelled")
        .config("shutdown_grace = 2")
        .file("x.txt", b"respelled\n")
        .start();
    srv.wait_serving();
    let first = srv.addr();

    let from = srv.log().len();
    srv.rewrite_config(&[first.to_string(), "127.0.0.2:0".to_string()], srv.root(), srv.config_lines());
    srv.signal(Signal::SIGHUP);
    wait_reloaded(&mut srv, from);
    assert!(srv.is_running());
    let since = srv.log().snapshot()[from..].join("\n");
    assert!(
        !since.contains("cannot listen on"),
        "reloading with the address the server already listens on ({first}) must not fail to bind it; stderr since SIGHUP:\n{since}"
    );
    let mut c = Conn::connect(first);
    c.send_request("GET", "/x.txt", &["Connection: close"]);
    let r = c.try_read_response(false);
    assert!(
        matches!(&r, Ok(Some(r)) if r.status == 200),
        "{first} is in the reloaded listen list but is not served any more: {r:?}; stderr since SIGHUP:\n{since}"
    );
}

/// The start line announces a running server: a SIGHUP sent the moment it
/// appears must be handled as a reload, not kill the process (the default
/// action of SIGHUP) because the handlers are installed only afterwards.
#[test]
fn sighup_right_after_the_start_line_is_a_reload() {
    for attempt in 1..=10 {
        let mut srv = TestServer::builder().name("hup_early").config("shutdown_grace = 1").spawn();
        srv.wait_started();
        srv.signal(Signal::SIGHUP);
        let reloaded = srv.log().wait_line(0, Duration::from_secs(3), contains_reloaded).is_some();
        let status = if srv.is_running() { None } else { srv.wait_exit(Duration::ZERO) };
        assert!(
            reloaded && status.is_none(),
            "attempt {attempt}: SIGHUP right after the 'started' line: reloaded = {reloaded}, exit status = {status:?} (killed by signal {:?}); stderr:\n{}",
            status.and_then(|s| s.signal()),
            srv.stderr()
        );
    }
}

// ---------------------------------------------------------------------------
// SIGTERM / SIGQUIT
// ---------------------------------------------------------------------------

/// Reads a body of `len` bytes slowly (256 KiB, then a 30 ms pause); sends
/// on `progress` once `notify_at` bytes have arrived.  Returns the bytes and
/// when the last one arrived; stops early at EOF or after 30 s.
fn slow_read(
    mut s: TcpStream,
    mut body: Vec<u8>,
    len: usize,
    notify_at: usize,
    progress: mpsc::Sender<()>,
) -> (Vec<u8>, Instant, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut notified = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut err = None;
    'outer: while body.len() < len && Instant::now() < deadline {
        let mut this_round = 0;
        while this_round < 256 * 1024 && body.len() < len {
            match s.read_retrying(&mut buf) {
                Ok(0) => break 'outer,
                Ok(n) => {
                    body.extend_from_slice(&buf[..n]);
                    this_round += n;
                }
                Err(e) => {
                    err = Some(e.to_string());
                    break 'outer;
                }
            }
        }
        if !notified && body.len() >= notify_at {
            notified = true;
            let _ = progress.send(());
        }
        thread::sleep(Duration::from_millis(30));
    }
    (body, Instant::now(), err)
}

/// Starts a slow download of `path` in a thread; returns after the first
/// MiB has arrived.
fn slow_download_after_first_mib(
    addr: SocketAddr,
    path: &str,
    expect_len: usize,
) -> thread::JoinHandle<(Vec<u8>, Instant, Option<String>)> {
    let mut c = Conn::connect(addr);
    c.send_request("GET", path, &["Connection: close"]);
    let head = c.read_head_response();
    assert_eq!(head.status, 200, "GET {path}");
    let len: Option<usize> = head.header("content-length").and_then(|v| v.parse().ok());
    assert_eq!(len, Some(expect_len), "Content-Length of {path}");
    let (s, prefix) = c.into_parts();
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || slow_read(s, prefix, expect_len, MIB, tx));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the first MiB of the download did not arrive within 10 s");
    h
}

fn big_file_server(name: &str, grace: &str) -> (TestServer, PathBuf) {
    let srv = TestServer::builder()
        .name(name)
        .config(&format!("shutdown_grace = {grace}"))
        .config("keepalive_timeout = 30")
        .start();
    let p = srv.root().join("big.bin");
    write_big_file(&p, BIG);
    (srv, p)
}

#[test]
fn sigterm_lets_a_slow_download_finish() {
    let (mut srv, path) = big_file_server("term_slow", "8");
    let addr = srv.addr();
    let dl = slow_download_after_first_mib(addr, "/big.bin", BIG);

    let t0 = Instant::now();
    srv.signal(Signal::SIGTERM);
    // New connections are refused within about a second.
    let refused = poll_until(Duration::from_millis(1500), || connect_refused(addr));
    assert!(refused, "connections to {addr} still accepted 1.5 s after SIGTERM");

    let (body, done, err) = dl.join().expect("download thread");
    assert!(
        body.len() == BIG,
        "the download was cut after SIGTERM: {} of {BIG} bytes (error: {err:?}); stderr:\n{}",
        body.len(),
        srv.stderr()
    );
    assert!(
        done.duration_since(t0) > Duration::from_millis(500),
        "test invalid: the download finished too soon after SIGTERM to prove anything"
    );
    let want = fs::read(&path).unwrap();
    assert!(body == want, "the downloaded bytes differ from the file");

    let st = srv.wait_exit(Duration::from_secs(5));
    let Some(st) = st else {
        panic!("server still running 5 s after the download finished; stderr:\n{}", srv.stderr())
    };
    assert_eq!(st.code(), Some(0), "graceful stop must exit 0; stderr:\n{}", srv.stderr());
}

#[test]
fn sigterm_closes_idle_keepalive_connections_promptly() {
    let mut srv = TestServer::builder()
        .name("term_idle")
        .config("shutdown_grace = 8")
        .config("keepalive_timeout = 30")
        .file("x.txt", b"idle\n")
        .start();
    let (mut c, _) = get_keepalive(srv.addr(), "/x.txt");

    srv.signal(Signal::SIGTERM);
    let (extra, closed) = c.read_until_close(Duration::from_secs(4));
    match closed {
        Some(t) => assert!(t <= Duration::from_secs(2), "idle keep-alive connection closed only after {t:?}"),
        None => panic!("idle keep-alive connection still open 4 s after SIGTERM"),
    }
    assert!(extra.is_empty(), "unexpected bytes: {:?}", String::from_utf8_lossy(&extra));
    let st = srv.wait_exit(Duration::from_secs(3));
    assert!(
        st.is_some_and(|s| s.code() == Some(0)),
        "server should exit 0 soon after its last connection closed: {st:?}; stderr:\n{}",
        srv.stderr()
    );
}

#[test]
fn sigterm_kills_children_after_the_grace_period() {
    let (mut srv, _path) = big_file_server("term_grace", "1");
    let mut c = Conn::connect(srv.addr());
    c.send_request("GET", "/big.bin", &["Connection: close"]);
    let kids = wait_children(srv.pid(), Duration::from_secs(3), |k| !k.is_empty());
    assert!(!kids.is_empty(), "no serving child");
    // Give the child time to fill the socket buffers and block.
    thread::sleep(Duration::from_millis(300));

    srv.signal(Signal::SIGTERM);
    let st = srv.wait_exit(Duration::from_secs(3));
    assert!(
        st.is_some(),
        "server still running 3 s after SIGTERM with shutdown_grace = 1; stderr:\n{}",
        srv.stderr()
    );
    for k in &kids {
        assert!(wait_gone(k.pid, Duration::from_millis(500)), "child {} survived the grace period", k.pid);
    }
    // The client sees the transfer cut.
    let (bytes, closed) = c.read_until_close(Duration::from_secs(10));
    assert!(closed.is_some(), "connection not closed after the child was killed");
    assert!(bytes.len() < BIG, "the whole file arrived although the client never read during the grace");
}

#[test]
fn sigquit_stops_fast_and_cuts_downloads() {
    let (mut srv, _path) = big_file_server("quit", "8");
    let dl = slow_download_after_first_mib(srv.addr(), "/big.bin", BIG);
    let kids = children_of(srv.pid());
    assert!(!kids.is_empty(), "no serving child during the download");

    let t0 = Instant::now();
    srv.signal(Signal::SIGQUIT);
    let st = srv.wait_exit(Duration::from_secs(2));
    assert!(st.is_some(), "server still running 2 s after SIGQUIT; stderr:\n{}", srv.stderr());
    let stopped = t0.elapsed();
    for k in &kids {
        assert!(wait_gone(k.pid, Duration::from_millis(500)), "child {} still running after SIGQUIT", k.pid);
    }
    let (body, _, _) = dl.join().expect("download thread");
    assert!(
        body.len() < BIG,
        "SIGQUIT must cut the download, but all {BIG} bytes arrived (server stopped after {stopped:?})"
    );
    // It says it does not wait, not that connections get "up to 0ns".
    srv.log().wait_eof(Duration::from_secs(2));
    let said = srv.lines().into_iter().find(|l| l.contains("SIGQUIT: stopping"));
    assert!(
        said.as_ref().is_some_and(|l| l.contains("without waiting") && !l.contains("0ns")),
        "the stop line: {said:?}"
    );
}

// ---------------------------------------------------------------------------
// SIGUSR1
// ---------------------------------------------------------------------------

fn file_has(p: &std::path::Path, needle: &str) -> bool {
    fs::read_to_string(p).map(|t| t.contains(needle)).unwrap_or(false)
}

#[test]
fn sigusr1_reopens_the_access_log() {
    let dir = TempDir::new("usr1_logdir");
    chmod(dir.path(), 0o755);
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let mut srv = TestServer::builder()
        .name("usr1")
        .config(&format!("access_log = {}", toml_str(log.to_str().unwrap())))
        .config("shutdown_grace = 2")
        .file("first.txt", b"1\n")
        .file("second.txt", b"2\n")
        .start();

    assert_eq!(srv.get("/first.txt").status, 200);
    assert!(
        poll_until(Duration::from_secs(3), || file_has(&log, "/first.txt")),
        "the first request never reached {}",
        log.display()
    );
    fs::rename(&log, &rotated).unwrap();

    let from = srv.log().len();
    srv.signal(Signal::SIGUSR1);
    assert!(
        srv.log().wait_line(from, Duration::from_secs(5), |l| l.contains("reopened")).is_some(),
        "no 'reopened' line after SIGUSR1; stderr:\n{}",
        srv.stderr()
    );
    assert_eq!(srv.get("/second.txt").status, 200);
    assert!(
        poll_until(Duration::from_secs(3), || file_has(&log, "/second.txt")),
        "after SIGUSR1 the request was not logged to a new {} (exists: {}); rotated file: {:?}",
        log.display(),
        log.exists(),
        fs::read_to_string(&rotated)
    );
    assert!(!file_has(&rotated, "/second.txt"), "the request after SIGUSR1 went to the rotated file too");
    assert!(file_has(&rotated, "/first.txt"));
    assert!(!file_has(&log, "/first.txt"));
}
