//! What goes over the wire, seen through strace: the response head is sent
//! with `MSG_MORE` so that it shares a segment with the body, and the body
//! goes out with `sendfile(2)`, not through a user-space copy.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TempDir, children_of, parse_listening_line, poll_until, send_signal};

/// Runs the server under `strace -f`, fetches a small file, stops the
/// server, and returns strace's record of sendto/sendfile calls.
fn trace_one_request(dir: &TempDir) -> Option<String> {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed");
        return None;
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("small.txt"), b"a small body that fits in one segment\n").unwrap();
    let trace = dir.path().join("trace.txt");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=sendto,sendfile,write,writev", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_forkhttpd"))
        .args(["--listen", "127.0.0.1:0", "--root"])
        .arg(&root)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strace");
    let mut stderr = BufReader::new(strace.stderr.take().unwrap());
    let start = Instant::now();
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() && start.elapsed() < Duration::from_secs(10) {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        addr = parse_listening_line(line.trim_end());
    }
    let addr = addr.expect("server under strace did not report its address");
    // Keep draining stderr (access log lines) so the server never blocks on it.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stderr.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });

    let server = children_of(strace.id()).first().map(|p| p.pid).expect("server process under strace");
    // Stop the server (and so strace) even when the request fails.
    let fetched = std::panic::catch_unwind(|| {
        let mut c = crate::common::Conn::connect(addr);
        c.send_request("GET", "/small.txt", &["Connection: close"]);
        let r = c.read_response();
        assert_eq!(r.status, 200);
        c.expect_closed();
    });
    send_signal(server, "TERM");
    if !poll_until(Duration::from_secs(10), || strace.try_wait().ok().flatten().is_some()) {
        send_signal(server, "KILL");
        let _ = strace.kill();
        let _ = strace.wait();
        panic!("the server under strace did not stop on SIGTERM");
    }
    if let Err(panic) = fetched {
        std::panic::resume_unwind(panic);
    }
    Some(std::fs::read_to_string(&trace).unwrap())
}

#[test]
fn head_is_sent_with_msg_more_and_body_with_sendfile() {
    let dir = TempDir::new("wire_msg_more");
    let Some(trace) = trace_one_request(&dir) else { return };
    let lines: Vec<&str> = trace.lines().collect();
    let head = lines
        .iter()
        .position(|l| l.contains("sendto(") && l.contains("HTTP/1.1 200 OK"))
        .unwrap_or_else(|| panic!("no sendto of the 200 head in the trace:\n{trace}"));
    assert!(lines[head].contains("MSG_MORE"), "the head was sent without MSG_MORE: {}", lines[head]);
    let pid = lines[head].split_whitespace().next().unwrap();
    let body = lines[head + 1..]
        .iter()
        .find(|l| l.starts_with(pid) && (l.contains("sendfile(") || l.contains("write")))
        .unwrap_or_else(|| panic!("nothing sent after the head by {pid}:\n{trace}"));
    assert!(body.contains("sendfile("), "the body did not go out with sendfile: {body}");
}
