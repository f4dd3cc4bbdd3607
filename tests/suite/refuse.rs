//! The parent's own `503` (per-address cap, failed fork): it arrives
//! intact and is followed by a clean end of stream, and the parent never
//! reads a byte of what the client sent (seen through strace).

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{
    BIN, Conn, Lines, TempDir, assert_error_page, children_of, chmod, config_text, make_root, poll_until,
    scrub_env, send_signal,
};

/// The socket descriptors `pid` holds (`socket:[inode]` targets).
fn sockets_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn per_address_503_is_written_without_reading_the_request() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        crate::common::skip("strace is not installed");
        return;
    }
    let dir = TempDir::new("refuse_no_read");
    chmod(dir.path(), 0o755);
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x\n")]);
    let cfg = dir.path().join("forkhttpd.toml");
    // max_children = 2: from one child busy, the cap of 1 applies.
    let extra = ["max_children_per_ip = 1", "max_children = 2", "header_timeout = 30", "shutdown_grace = 1"];
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &extra)).unwrap();
    let trace = dir.path().join("trace.txt");
    // -yy names each descriptor (TCP:[...] for a client socket); every
    // system call that reads from a descriptor is traced.
    let mut strace = scrub_env(&mut Command::new("strace"))
        .args(["-f", "-qq", "-yy", "-e", "trace=read,readv,pread64,preadv,recvfrom,recvmsg,recvmmsg", "-o"])
        .arg(&trace)
        .args([BIN, "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strace");
    let log = Lines::drain(strace.stderr.take().unwrap());
    let listening = log.wait_line(0, Duration::from_secs(10), |l| l.contains("listening on"));
    let addr = listening.and_then(|l| crate::common::parse_listening_line(&l));
    let server = children_of(strace.id()).first().map(|p| p.pid);

    let checked = std::panic::catch_unwind(|| {
        let addr = addr.expect("the server under strace did not report its address");
        let server = server.expect("no server process under strace");
        // The one connection 127.0.0.1 may have: a child waits for its request.
        // (One byte sent: a silent connection is not accepted yet, TCP_DEFER_ACCEPT.)
        let mut held = Conn::connect(addr);
        held.send(b"G");
        assert!(
            poll_until(Duration::from_secs(5), || !children_of(server).is_empty()),
            "no child for the first connection"
        );
        let sockets_before = sockets_of(server);
        // The second: a request and 64 KiB more that the parent must leave unread.
        let mut second = Conn::connect(addr);
        second.send(b"GET /x.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
        second.send(&vec![b'a'; 64 << 10]);
        let r = second.read_response();
        assert_error_page(&r, 503);
        let mut rest = Vec::new();
        let end = second.stream.read_to_end(&mut rest);
        assert!(
            matches!(end, Ok(0)),
            "after the 503, the parent must end the stream cleanly (FIN, not a reset): {end:?}, {rest:?}"
        );
        // The parent closes its unread socket itself, soon.
        assert!(
            poll_until(Duration::from_secs(5), || sockets_of(server) <= sockets_before),
            "the parent still holds the refused connection's socket ({} sockets, {sockets_before} before)",
            sockets_of(server)
        );
        server
    });
    if let Some(server) = server {
        send_signal(server, "TERM");
    }
    if !poll_until(Duration::from_secs(10), || strace.try_wait().ok().flatten().is_some()) {
        if let Some(server) = server {
            send_signal(server, "KILL");
        }
        let _ = strace.kill();
        let _ = strace.wait();
        panic!("the server under strace did not stop on SIGTERM; stderr:\n{}", log.text());
    }
    let server = match checked {
        Ok(pid) => pid,
        Err(panic) => std::panic::resume_unwind(panic),
    };

    let trace = fs::read_to_string(&trace).unwrap();
    let prefix = format!("{server} ");
    let reads: Vec<&str> = trace.lines().filter(|l| l.starts_with(&prefix) && l.contains("<TCP")).collect();
    assert!(reads.is_empty(), "the parent ({server}) read from a client socket:\n{}", reads.join("\n"));
    assert!(
        trace.lines().any(|l| !l.starts_with(&prefix) && l.contains("<TCP")),
        "the trace shows no child reading its client either: is strace -yy naming sockets?\n{trace}"
    );
}
