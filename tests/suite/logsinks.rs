//! Log sinks that fail: a stderr nobody reads, a log file at its size limit.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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
        match from.read(&mut buf) {
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
