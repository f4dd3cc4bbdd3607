//! systemd integration without systemd: socket activation (`LISTEN_FDS`,
//! `LISTEN_PID`) through a python3 launcher that execs the server, and
//! `sd_notify` messages on a test `NOTIFY_SOCKET`, the watchdog's among them.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::{
    BIN, Lines, STARTUP_TIMEOUT, TempDir, TestServer, config_text, get_close, kill_tree, make_root,
    parse_listening_line, poll_until, proc_stat, scrub_env,
};

// ---------------------------------------------------------------------------
// Socket activation
// ---------------------------------------------------------------------------

/// Binds a listener, prints its port, moves it to fd 3, sets LISTEN_FDS=1 and
/// LISTEN_PID (its own pid, which the exec'd server keeps, unless argv[1] is
/// a number to use instead), then execs argv[2:].
const PY_ACTIVATE: &str = "import os,socket,sys
s=socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0))
s.listen(128)
print(s.getsockname()[1], flush=True)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ['LISTEN_FDS'] = '1'
os.environ['LISTEN_PID'] = sys.argv[1] if sys.argv[1] != 'self' else str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
";

/// A server started through the python launcher.
pub(crate) struct Activated {
    pub(crate) child: Child,
    /// The port python bound and passed as fd 3.
    pub(crate) port: u16,
    /// The server's stderr.
    pub(crate) log: Arc<Lines>,
    /// Holds the configuration file `forkhttpd.toml` and the root.
    pub(crate) dir: TempDir,
}

impl Activated {
    fn start(name: &str, listen_pid: &str, listen: &str) -> Activated {
        Activated::launch(name, listen_pid, &["--listen", listen], None, &[])
    }

    /// Starts the server with `args` (after `--config`) through the
    /// launcher, with `fd_name` as `LISTEN_FDNAMES` if given and `extra`
    /// lines in its configuration.
    pub(crate) fn launch(
        name: &str,
        listen_pid: &str,
        args: &[&str],
        fd_name: Option<&str>,
        extra: &[&str],
    ) -> Activated {
        let dir = TempDir::new(name);
        let root = make_root(&dir.path().join("root"), &[("x.txt", b"activated\n")]);
        let cfg = dir.path().join("forkhttpd.toml");
        let lines = ["error_log = \"stderr\"", "shutdown_grace = 2"].iter().chain(extra);
        fs::write(&cfg, config_text(&[] as &[&str], &root, &lines.collect::<Vec<_>>())).unwrap();
        let mut cmd = Command::new("python3");
        scrub_env(&mut cmd);
        if let Some(n) = fd_name {
            cmd.env("LISTEN_FDNAMES", n);
        }
        cmd.arg("-c")
            .arg(PY_ACTIVATE)
            .arg(listen_pid)
            .arg(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn python3");
        let out = Lines::drain(child.stdout.take().unwrap());
        let log = Lines::drain(child.stderr.take().unwrap());
        let port_line = out.wait_line(0, Duration::from_secs(10), |_| true);
        let port: u16 = port_line.as_deref().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| {
            panic!("python launcher printed no port ({port_line:?}); stderr:\n{}", log.text())
        });
        Activated { child, port, log, dir }
    }

    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if self.running() {
            kill_tree(self.child.id());
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn socket_activation_uses_the_inherited_socket() {
    // --listen names a port we hold: binding it would fail, so serving at
    // all proves the inherited socket was used instead.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_addr = held.local_addr().unwrap();
    let mut srv = Activated::start("activation", "self", &held_addr.to_string());
    let addr: SocketAddr = ([127, 0, 0, 1], srv.port).into();

    let r = get_close(addr, "/x.txt");
    assert_eq!(r.status, 200, "GET on the inherited socket: {r:?}");
    assert_eq!(r.body, b"activated\n");
    assert!(srv.running(), "server exited; stderr:\n{}", srv.log.text());
    let text = srv.log.text();
    assert!(
        !text.contains("cannot listen on"),
        "the --listen address must be ignored with inherited sockets; stderr:\n{text}"
    );
    assert!(
        !srv.log.snapshot().iter().any(|l| parse_listening_line(l) == Some(held_addr)),
        "the server claims to listen on the --listen address {held_addr}; stderr:\n{text}"
    );
    // A second request: the listener keeps working (not a one-shot accept).
    assert_eq!(get_close(addr, "/x.txt").status, 200);
    drop(held);
}

#[test]
fn socket_activation_ignores_fds_meant_for_another_pid() {
    let mut srv = Activated::start("activation_other_pid", "1", "127.0.0.1:0");
    let line = srv.log.wait_line(0, STARTUP_TIMEOUT, |l| parse_listening_line(l).is_some());
    let Some(line) = line else {
        panic!(
            "no 'listening on' line (LISTEN_PID=1 must be ignored and --listen bound); running: {}; stderr:\n{}",
            srv.running(),
            srv.log.text()
        )
    };
    let addr = parse_listening_line(&line).unwrap();
    assert_ne!(
        addr.port(),
        srv.port,
        "the server used the inherited socket although LISTEN_PID is not its pid"
    );
    let r = get_close(addr, "/x.txt");
    assert_eq!(r.status, 200, "GET on its own --listen socket: {r:?}");
    assert_eq!(r.body, b"activated\n");
}

// ---------------------------------------------------------------------------
// sd_notify
// ---------------------------------------------------------------------------

/// Receives datagrams until one has a line equal to `want`, for up to
/// `timeout`. Returns every message received (Ok if `want` was seen).
pub(crate) fn recv_until(
    sock: &UnixDatagram,
    want: &str,
    timeout: Duration,
) -> Result<Vec<String>, Vec<String>> {
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline && got.len() < 100 {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                got.push(msg);
                if hit {
                    return Ok(got);
                }
            }
            Err(e) if crate::common::is_timeout(&e) => {}
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
    Err(got)
}

/// Whether one of `msgs` carries both `READY=1` and the line `status`.
fn ready_with_status(msgs: &[String], status: &str) -> bool {
    msgs.iter().any(|m| m.lines().any(|l| l == "READY=1") && m.lines().any(|l| l == status))
}

fn notify_server(name: &str, notify_socket: &str) -> TestServer {
    TestServer::builder()
        .name(name)
        .config("error_log = \"stderr\"")
        .config("shutdown_grace = 2")
        .env("NOTIFY_SOCKET", notify_socket)
        .file("x.txt", b"notify\n")
        .start()
}

#[test]
fn notify_socket_ready_reloading_stopping() {
    let dir = TempDir::new("notify_path");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut srv = notify_server("notify", path.to_str().unwrap());

    let msgs = recv_until(&sock, "READY=1", Duration::from_secs(5))
        .unwrap_or_else(|m| panic!("no READY=1 within 5 s of start; got {m:?}; stderr:\n{}", srv.stderr()));
    assert!(
        !msgs.iter().any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "STOPPING=1 before READY=1: {msgs:?}"
    );
    // The status travels in READY's own datagram, so systemd has it by the
    // time it reports the service started.
    assert!(ready_with_status(&msgs, "STATUS=serving"), "READY=1 without STATUS=serving: {msgs:?}");
    assert_eq!(srv.get("/x.txt").status, 200, "ready means serving");

    srv.signal(Signal::SIGHUP);
    let msgs = recv_until(&sock, "READY=1", Duration::from_secs(5))
        .unwrap_or_else(|m| panic!("no READY=1 after SIGHUP; got {m:?}; stderr:\n{}", srv.stderr()));
    // Every line of every message since the SIGHUP, in order.
    let lines: Vec<&str> = msgs.iter().flat_map(|m| m.lines()).collect();
    let reloading = lines.iter().position(|l| *l == "RELOADING=1");
    let ready = lines.iter().rposition(|l| *l == "READY=1");
    assert!(
        matches!((reloading, ready), (Some(a), Some(b)) if a < b),
        "SIGHUP must send RELOADING=1 and then READY=1; got {msgs:?}"
    );
    assert!(
        ready_with_status(&msgs, "STATUS=serving; configuration reloaded"),
        "a good reload's READY=1 must say so: {msgs:?}"
    );

    // A broken config: systemd's status line says the old one serves on.
    let extra: Vec<String> =
        srv.config_lines().iter().cloned().chain(["no_such_key_in_notify_test = 1".into()]).collect();
    srv.rewrite_config(&srv.bound_listen(), srv.root(), &extra);
    srv.signal(Signal::SIGHUP);
    let msgs = recv_until(&sock, "READY=1", Duration::from_secs(5))
        .unwrap_or_else(|m| panic!("no READY=1 after a failed reload; got {m:?}; stderr:\n{}", srv.stderr()));
    assert!(
        ready_with_status(&msgs, "STATUS=serving the previous configuration: reload failed (see the log)"),
        "a failed reload's READY=1 must say so: {msgs:?}"
    );
    assert_eq!(srv.get("/x.txt").status, 200, "the previous configuration serves on");

    srv.signal(Signal::SIGTERM);
    recv_until(&sock, "STOPPING=1", Duration::from_secs(5))
        .unwrap_or_else(|m| panic!("no STOPPING=1 after SIGTERM; got {m:?}; stderr:\n{}", srv.stderr()));
    assert!(srv.wait_exit(Duration::from_secs(5)).is_some(), "server did not stop");
}

#[test]
fn notify_socket_abstract_namespace() {
    let name = format!(
        "forkhttpd-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let srv = notify_server("notify_abstract", &format!("@{name}"));
    recv_until(&sock, "READY=1", Duration::from_secs(5)).unwrap_or_else(|m| {
        panic!("no READY=1 on the abstract socket @{name}; got {m:?}; stderr:\n{}", srv.stderr())
    });
    assert_eq!(srv.get("/x.txt").status, 200);
}

/// The `WATCHDOG=1` datagrams received on `sock` within `window` (each
/// wait for one bounded by the window; other states are skipped).
fn watchdog_pings(sock: &UnixDatagram, window: Duration) -> usize {
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; 4096];
    let mut pings = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => pings += usize::from(buf[..n].split(|&b| b == b'\n').any(|l| l == b"WATCHDOG=1")),
            Err(e) if crate::common::is_timeout(&e) => break,
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
    pings
}

/// With `WATCHDOG_USEC` (systemd's `WatchdogSec=`; 400 ms here), the
/// parent's loop sends `WATCHDOG=1` every 200 ms (half the timeout), and
/// none while the parent is stopped, so that systemd notices and restarts
/// it; once continued, it pings again.
#[test]
fn watchdog_pings_while_the_loop_runs_and_not_while_stopped() {
    let dir = TempDir::new("notify_watchdog");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut srv = TestServer::builder()
        .config("error_log = \"stderr\"")
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .env("WATCHDOG_USEC", "400000")
        .start();
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(5)).unwrap_or_else(|m| {
        panic!("no WATCHDOG=1 within 5 s of start; got {m:?}; stderr:\n{}", srv.stderr())
    });
    // Every 200 ms: about ten in two seconds, and never more than one per
    // interval (late wake-ups only make fewer).
    let pings = watchdog_pings(&sock, Duration::from_secs(2));
    assert!((3..=11).contains(&pings), "{pings} WATCHDOG=1 in 2 s, every 200 ms expected");

    srv.signal(Signal::SIGSTOP);
    let pid = srv.pid();
    assert!(
        poll_until(Duration::from_secs(5), || proc_stat(pid).is_some_and(|s| s.state == 'T')),
        "the server did not stop"
    );
    // What it sent before it stopped.
    sock.set_nonblocking(true).unwrap();
    while sock.recv(&mut [0u8; 4096]).is_ok() {}
    sock.set_nonblocking(false).unwrap();
    let pings = watchdog_pings(&sock, Duration::from_secs(1));
    assert_eq!(pings, 0, "a stopped parent's pings must stop: {pings} in 1 s, over twice the timeout");

    srv.signal(Signal::SIGCONT);
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(5))
        .unwrap_or_else(|m| panic!("no WATCHDOG=1 after SIGCONT; got {m:?}; stderr:\n{}", srv.stderr()));
}
