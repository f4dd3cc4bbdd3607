//! Log sinks that fail: a stderr nobody reads, a log file at its size limit.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::ReadRetrying;
use crate::common::*;

/// A server process started with a stderr of the test's choosing; killed
/// (SIGKILL: a frozen one answers nothing else) and reaped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `from` (non-blocking) until a line tells the listening address,
/// for up to 10 s.
fn read_listening_addr(from: &mut File) -> SocketAddr {
    let mut text = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match from.read_retrying(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("read stderr: {e}"),
        }
        if let Some(addr) = String::from_utf8_lossy(&text).lines().find_map(parse_listening_line) {
            return addr;
        }
    }
    panic!("no listening line; stderr:\n{}", String::from_utf8_lossy(&text));
}

/// A stderr pipe that is full and never read (a terminal paused with
/// Ctrl-S, a stuck log driver) must not freeze the server under the default
/// config, where the access log goes to stderr too: children serve and exit
/// within their bounds, the parent keeps accepting past `max_children`
/// turns and answers SIGTERM.
#[test]
fn full_stderr_pipe_does_not_freeze_the_server() {
    let dir = TempDir::new("full_stderr");
    let root = make_root(&dir.path().join("root"), &[("a.txt", b"still serving")]);
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &["max_children = 2"])).unwrap();

    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // The test fills the pipe through a description of its own, so the
    // server's stays blocking, as a launcher's pipe would be.
    let mut filler = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", write_end.as_raw_fd()))
        .unwrap();
    let mut reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", read_end.as_raw_fd()))
        .unwrap();
    drop(read_end);
    let mut cmd = server_command();
    cmd.arg("--config").arg(&cfg).stdin(Stdio::null()).stdout(Stdio::null());
    let server = Server(cmd.stderr(Stdio::from(write_end)).spawn().unwrap());
    let pid = server.0.id();
    let addr = read_listening_addr(&mut reader);
    let chunk = [b'#'; 4096];
    let mut filled = 0;
    loop {
        match filler.write(&chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("fill the pipe: {e}"),
        }
    }
    assert!(filled > 0);

    // More connections than max_children, one after another: each child
    // must end (and be reaped) for the next to be accepted.
    for i in 0..6 {
        let r = get_close(addr, "/a.txt");
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.body, b"still serving");
    }
    let kids = wait_children(pid, Duration::from_secs(5), |k| k.is_empty());
    assert!(kids.is_empty(), "children still running with stderr full: {kids:?}");

    let mut server = server;
    send_signal(pid, "TERM");
    let status = wait_child(&mut server.0, Duration::from_secs(5));
    assert!(status.is_some(), "the server did not answer SIGTERM with stderr full");
    drop(reader);
}

/// A refused path is logged with the bytes the client chose escaped as in
/// the access log: a file name with a newline and an ESC beneath a link
/// that leaves the root can neither start a forged line nor drive the
/// terminal reading the log.
#[test]
fn refused_path_cannot_forge_a_daemon_log_line() {
    let s = TestServer::start();
    let outside = s.base().join("outside");
    fs::create_dir_all(&outside).unwrap();
    // Children run as nobody: they must be able to find the file to refuse it.
    chmod(s.base(), 0o755);
    fs::write(outside.join("x\nforkhttpd[1]: error: FORGED \u{1b}[2J"), b"secret").unwrap();
    s.symlink(&outside, "out");
    let r = get_close(s.addr(), "/out/x%0Aforkhttpd%5B1%5D:%20error:%20FORGED%20%1B%5B2J");
    assert_ne!(r.status, 200, "{r:?}");
    let refused = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("resolves outside"));
    assert_eq!(refused.len(), 1, "no refusal logged; stderr:\n{}", s.lines().join("\n"));
    assert!(refused[0].contains("x\\x0Aforkhttpd[1]: error: FORGED \\x1B[2J"), "{}", refused[0]);
    for line in s.lines() {
        assert!(!line.starts_with("forkhttpd[1]"), "forged line: {line:?}");
        assert!(!line.contains('\u{1b}'), "raw ESC in the log: {line:?}");
    }
}

/// A client repeating a request that the server refuses and reports (a
/// path beneath a link that leaves the root) gets every answer and every
/// access-log line, but the daemon log gets one warning, not one per
/// request: warnings a client causes are limited across the whole server.
#[test]
fn refused_paths_warn_once_not_once_per_request() {
    const N: usize = 20;
    let s = TestServer::start();
    let outside = s.base().join("outside");
    fs::create_dir_all(&outside).unwrap();
    chmod(s.base(), 0o755);
    fs::write(outside.join("x"), b"secret").unwrap();
    s.symlink(&outside, "out");
    for i in 0..N {
        assert_eq!(get_close(s.addr(), "/out/x").status, 403, "request {i}");
    }
    let logged = s.wait_for_lines(N, Duration::from_secs(5), |l| l.contains("\"GET /out/x HTTP/1.1\" 403"));
    assert_eq!(logged.len(), N, "access-log lines; stderr:\n{}", s.lines().join("\n"));
    let warned = s.lines().into_iter().filter(|l| l.contains("resolves outside")).count();
    assert_eq!(warned, 1, "daemon warnings for {N} refused requests; stderr:\n{}", s.lines().join("\n"));
}

/// Starts the server with its file-size limit at 512 bytes (soft, so the
/// test can raise it), logging to `log`. Returns it and its address.
fn start_with_small_fsize(dir: &TempDir, log: &std::path::Path) -> (Proc, SocketAddr) {
    let root = make_root(&dir.path().join("root"), &[("a.txt", b"disk full")]);
    let cfg = dir.path().join("forkhttpd.toml");
    let extra = [format!("access_log = {}", toml_str(log.to_str().unwrap()))];
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &extra)).unwrap();
    let mut cmd = std::process::Command::new("sh");
    scrub_env(&mut cmd).args(["-c", "ulimit -S -f 1 && exec \"$0\" --config \"$1\"", BIN]).arg(&cfg);
    let mut server = Proc::spawn(&mut cmd);
    let addr = server.wait_listeners(0, 1)[0];
    (server, addr)
}

/// A log that keeps failing (here a file at its size limit) is reported
/// once for the whole server, not once per connection: every connection is
/// a new child, so the bound must hold across processes.
#[test]
fn failing_access_log_is_reported_once_across_connections() {
    let dir = TempDir::new("failing_access_log_server");
    let log = dir.path().join("access.log");
    fs::write(&log, [b'#'; 1024]).unwrap();
    let (mut server, addr) = start_with_small_fsize(&dir, &log);
    for i in 0..6 {
        let r = get_close(addr, "/a.txt");
        assert_eq!(r.status, 200, "request {i}");
    }
    let warned = server.wait_line(Duration::from_secs(5), |l| l.contains("access log:"));
    assert!(matches!(warned, Ok(Some(_))), "no warning; stderr:\n{}", server.lines().join("\n"));
    // Every child has logged (or failed to) once none is left.
    let kids = wait_children(server.pid(), Duration::from_secs(5), |k| k.is_empty());
    assert!(kids.is_empty(), "{kids:?}");
    let all: Vec<String> = server.lines().into_iter().filter(|l| l.contains("access log:")).collect();
    assert_eq!(all.len(), 1, "expected one warning for six connections: {all:?}");
    assert!(all[0].contains("File too large"), "{}", all[0]);
}

/// A line cut short by the file-size limit is not glued to the next line
/// written once there is room again: the next line starts on a line of its
/// own.
#[test]
fn line_cut_by_a_full_log_is_not_glued_to_the_next() {
    if ["prlimit", "setpriv"].into_iter().any(missing_tool) {
        return;
    }
    let dir = TempDir::new("torn_access_log");
    let log = dir.path().join("access.log");
    // 400 bytes of 512: the next line (with its long User-Agent) is cut.
    fs::write(&log, format!("{}\n", "#".repeat(399))).unwrap();
    let (server, addr) = start_with_small_fsize(&dir, &log);
    let ua = format!("User-Agent: {}", "u".repeat(200));
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/a.txt", &[&ua, "Connection: close"]);
    assert_eq!(c.read_response().status, 200);
    assert!(
        poll_until(Duration::from_secs(5), || fs::metadata(&log).is_ok_and(|m| m.len() == 512)),
        "the first line was not cut at the limit"
    );
    // Children inherit their limits from the spawner, forked from the
    // parent (as systemd's LimitFSIZE= reaches both). The spawner runs as
    // the serving user: its limits are changed by that user (root may
    // lack CAP_SYS_RESOURCE).
    for pid in std::iter::once(server.pid()).chain(spawners_of(server.pid())) {
        let id = |key| status_ids(pid, key).and_then(|ids| ids.first().copied()).unwrap_or(0).to_string();
        let (uid, gid) = (id("Uid:"), id("Gid:"));
        let raised = run_tool(
            scrub_env(&mut std::process::Command::new("setpriv"))
                .args(["--reuid", &uid, "--regid", &gid, "--clear-groups", "--", "prlimit"])
                .arg(format!("--pid={pid}"))
                .arg("--fsize=unlimited"),
            Duration::from_secs(5),
        );
        assert!(raised.success(), "{}", raised.describe());
    }
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/a.txt?after", &["Connection: close"]);
    assert_eq!(c.read_response().status, 200);
    let mut text = String::new();
    poll_until(Duration::from_secs(5), || {
        text = fs::read_to_string(&log).unwrap_or_default();
        text.contains("?after")
    });
    let last = text.lines().last().unwrap_or_default();
    assert!(
        parse_clf(last).is_some_and(|l| l.request == "GET /a.txt?after HTTP/1.1"),
        "the line after the cut one is not a line of its own: {last:?}"
    );
    assert!(text.ends_with('\n'));
}
