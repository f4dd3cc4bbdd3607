//! What goes over the wire, seen through strace: a small file's body goes
//! out in the same `send` as the head; a larger one with `sendfile(2)`, not
//! through a user-space copy, after a head sent with `MSG_MORE` so that the
//! two share a segment.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TempDir, children_of, parse_listening_line, poll_until, send_signal};

/// A file larger than the server copies behind its head.
const LARGE: usize = 64 * 1024;

/// Runs the server under `strace -f`, fetches a small and a large file,
/// stops the server, and returns strace's record of sendto/sendfile calls.
fn trace_one_request(dir: &TempDir) -> Option<String> {
    if Command::new("strace").arg("-V").output().is_err() {
        crate::common::skip("strace is not installed");
        return None;
    }
    if crate::common::cannot_inspect_server() {
        return None;
    }
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("small.txt"), b"a small body that fits in one segment\n").unwrap();
    std::fs::write(root.join("large.bin"), vec![b'x'; LARGE]).unwrap();
    let trace = dir.path().join("trace.txt");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-s", "4096", "-e", "trace=sendto,sendfile,write,writev", "-o"])
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
        for path in ["/small.txt", "/large.bin"] {
            let mut c = crate::common::Conn::connect(addr);
            c.send_request("GET", path, &["Connection: close"]);
            let r = c.read_response();
            assert_eq!(r.status, 200, "GET {path}");
            c.expect_closed();
        }
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
fn small_bodies_share_the_heads_send_and_large_ones_go_by_sendfile() {
    let dir = TempDir::new("wire_msg_more");
    let Some(trace) = trace_one_request(&dir) else { return };
    let lines: Vec<&str> = trace.lines().collect();
    let heads: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("sendto(") && lines[i].contains("HTTP/1.1 200 OK"))
        .collect();
    let [small, large] = heads[..] else {
        panic!("want two sendto calls of a 200 head in the trace:\n{trace}");
    };
    assert!(
        lines[small].contains("a small body that fits") && !lines[small].contains("MSG_MORE"),
        "the small body was not sent in the head's send: {}",
        lines[small]
    );
    assert!(
        lines[large].contains("MSG_MORE"),
        "the large file's head was sent without MSG_MORE: {}",
        lines[large]
    );
    let pid = lines[large].split_whitespace().next().unwrap();
    let body = lines[large + 1..]
        .iter()
        .find(|l| {
            l.starts_with(pid) && (l.contains("sendfile(") || l.contains("write") || l.contains("sendto("))
        })
        .unwrap_or_else(|| panic!("nothing sent after the large file's head by {pid}:\n{trace}"));
    assert!(body.contains("sendfile("), "the large body did not go out with sendfile: {body}");
}
