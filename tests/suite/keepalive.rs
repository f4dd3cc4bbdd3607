//! Persistent connections, pipelining and connection deadlines.

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use crate::common::ReadRetrying;
use crate::common::*;

fn server_with_files(extra_config: &[&str]) -> TestServer {
    let mut b = TestServer::builder();
    for line in extra_config {
        b = b.config(line);
    }
    let s = b.start();
    s.write_file("a.txt", b"file A\n");
    s.write_file("b.txt", b"file B, a bit longer\n");
    s.write_file("c.txt", b"C");
    s
}

#[test]
fn http11_keeps_alive_by_default() {
    let s = server_with_files(&[]);
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &[]);
    let r1 = c.read_response();
    assert_eq!(r1.status, 200);
    assert_eq!(r1.body, b"file A\n");
    assert!(!r1.connection_has("close"), "HTTP/1.1 default must keep alive");
    c.send_request("GET", "/b.txt", &[]);
    let r2 = c.read_response();
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body, b"file B, a bit longer\n");
    assert!(!r2.connection_has("close"));
    c.expect_open_and_quiet(Duration::from_millis(300));
}

#[test]
fn connection_close_is_honoured() {
    let s = server_with_files(&[]);
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.connection_has("close"), "headers {:?}", r.headers);
    c.expect_closed();
}

#[test]
fn http10_closes_by_default() {
    let s = server_with_files(&[]);
    let mut c = s.connect();
    c.send(b"GET /a.txt HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"file A\n");
    assert!(!r.connection_has("keep-alive"), "HTTP/1.0 without keep-alive must not be kept alive");
    c.expect_closed();
}

#[test]
fn http10_keep_alive_is_honoured() {
    let s = server_with_files(&[]);
    let mut c = s.connect();
    c.send(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(
        r.connection_has("keep-alive"),
        "HTTP/1.0 keep-alive response must say Connection: keep-alive; headers {:?}",
        r.headers
    );
    c.send(b"GET /b.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"file B, a bit longer\n");
    // And a final 1.0 request without keep-alive closes.
    c.send(b"GET /c.txt HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.body, b"C");
    c.expect_closed();
}

#[test]
fn pipelined_requests_answered_in_order() {
    let s = server_with_files(&[]);
    let mut c = s.connect();
    c.send(
        b"GET /b.txt HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /c.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let bodies: Vec<Vec<u8>> = (0..3).map(|_| c.read_response().body).collect();
    assert_eq!(bodies, vec![b"file B, a bit longer\n".to_vec(), b"file A\n".to_vec(), b"C".to_vec()]);
    c.expect_closed();
}

#[test]
fn pipelined_with_error_in_the_middle() {
    let s = server_with_files(&[]);
    let mut c = s.connect();
    c.send(
        b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /c.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let r1 = c.read_response();
    assert_eq!(r1.body, b"file A\n");
    let r2 = c.read_response();
    assert_eq!(r2.status, 404);
    if !r2.connection_has("close") {
        let r3 = c.read_response();
        assert_eq!(r3.status, 200);
        assert_eq!(r3.body, b"C");
    }
    c.expect_closed();
}

#[test]
fn max_requests_per_connection_closes_after_limit() {
    let s = server_with_files(&["max_requests_per_connection = 3"]);
    let mut c = s.connect();
    for i in 1..=3 {
        c.send_request("GET", "/a.txt", &[]);
        let r = c.read_response();
        assert_eq!(r.status, 200, "request {i}");
        if i < 3 {
            assert!(!r.connection_has("close"), "request {i} closed early");
        } else {
            assert!(
                r.connection_has("close"),
                "request {i} (the limit) must carry Connection: close; headers {:?}",
                r.headers
            );
        }
    }
    c.expect_closed();
}

#[test]
fn max_requests_limit_applies_to_pipelined_requests() {
    let s = server_with_files(&["max_requests_per_connection = 2"]);
    let mut c = s.connect();
    c.send(
        b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /b.txt HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /c.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    let r1 = c.read_response();
    assert_eq!(r1.body, b"file A\n");
    let r2 = c.read_response();
    assert_eq!(r2.body, b"file B, a bit longer\n");
    assert!(r2.connection_has("close"));
    c.expect_closed();
}

#[test]
fn idle_keepalive_connection_is_closed() {
    let s = server_with_files(&["keepalive_timeout = 1"]);
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.connection_has("close"));
    let (extra, closed) = c.read_until_close(Duration::from_secs(8));
    let elapsed = closed.expect("idle keep-alive connection was not closed within 8 s");
    assert!(
        extra.is_empty() || String::from_utf8_lossy(&extra).starts_with("HTTP/1.1 408"),
        "unexpected bytes on idle close: {:?}",
        String::from_utf8_lossy(&extra)
    );
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed <= Duration::from_millis(3500),
        "idle connection closed after {elapsed:?}, expected ~1 s"
    );
}

#[test]
fn fractional_keepalive_timeout() {
    let s = server_with_files(&["keepalive_timeout = 0.5"]);
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &[]);
    assert_eq!(c.read_response().status, 200);
    let (_, closed) = c.read_until_close(Duration::from_secs(6));
    let elapsed = closed.expect("idle keep-alive connection was not closed");
    assert!(elapsed <= Duration::from_millis(2500), "keepalive_timeout = 0.5 closed after {elapsed:?}");
}

#[test]
fn keepalive_connection_survives_within_timeout() {
    let s = server_with_files(&["keepalive_timeout = 3"]);
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &[]);
    assert_eq!(c.read_response().status, 200);
    c.expect_open_and_quiet(Duration::from_millis(1000));
    c.send_request("GET", "/c.txt", &[]);
    assert_eq!(c.read_response().body, b"C");
}

/// Slowloris: one byte per second; the header deadline must cut it off.
#[test]
fn header_deadline_cuts_off_slow_client() {
    let s = server_with_files(&["header_timeout = 2"]);
    let request = b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
    let mut stream = std::net::TcpStream::connect(s.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut received = Vec::new();
    let mut closed_at = None;
    'outer: for &byte in request.iter() {
        if stream.write_all(&[byte]).is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        // The read doubles as the one-second pause between bytes.
        loop {
            let mut buf = [0u8; 4096];
            match stream.read_retrying(&mut buf) {
                Ok(0) => {
                    closed_at = Some(start.elapsed());
                    break 'outer;
                }
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => break,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    closed_at = Some(start.elapsed());
                    break 'outer;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        if start.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let elapsed = closed_at.unwrap_or_else(|| {
        panic!(
            "slow client was never cut off (sent the whole request over {:?}); got {:?}",
            start.elapsed(),
            String::from_utf8_lossy(&received)
        )
    });
    if !received.is_empty() {
        let text = String::from_utf8_lossy(&received);
        assert!(
            text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.0 408"),
            "only a 408 may be sent to a slow client, got {text:?}"
        );
        let head = text.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
        assert!(
            head.contains("\r\nconnection: close"),
            "a 408 that closes must say Connection: close: {head:?}"
        );
    }
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed <= Duration::from_secs(5),
        "header deadline fired after {elapsed:?}, expected ~2 s"
    );
}

/// A client that asks for a huge file and never reads: the child must give
/// up after send_timeout and exit.
#[test]
fn send_timeout_drops_stalled_reader() {
    let s = server_with_files(&["send_timeout = 2"]);
    write_big_file(&s.root().join("huge.bin"), 64 << 20);
    let pid = s.pid();
    let baseline: Vec<u32> = children_of(pid).iter().map(|p| p.pid).collect();
    let serving = || -> Vec<ProcInfo> {
        children_of(pid).into_iter().filter(|p| p.state != 'Z' && !baseline.contains(&p.pid)).collect()
    };
    let mut c = s.connect();
    c.send_request("GET", "/huge.bin", &[]);
    // Never read. First make sure a child is actually serving us.
    assert!(
        poll_until(Duration::from_secs(5), || !serving().is_empty()),
        "no child process appeared for the connection"
    );
    let start = Instant::now();
    let gone = poll_until(Duration::from_secs(12), || serving().is_empty());
    assert!(
        gone,
        "child still alive {:?} after the client stalled (send_timeout = 2): {:?}",
        start.elapsed(),
        serving()
    );
    // The connection must be dead from the server side: draining it now must
    // end (EOF/reset) rather than deliver the whole 64 MiB.
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    c.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let drain_start = Instant::now();
    while drain_start.elapsed() < Duration::from_secs(10) {
        match c.stream.read_retrying(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("draining stalled connection: {e} after {total} bytes"),
        }
    }
    assert!(total < 64 << 20, "the whole file was delivered despite the stalled reader");
}

/// A stray CRLF after a request (pipelined behind it, or sent after the
/// response) is an empty line before the next request, which RFC 9112 2.2
/// says to ignore: the idle connection is closed quietly at
/// `keepalive_timeout`, not answered `408` at `header_timeout`.
#[test]
fn stray_crlf_after_a_request_starts_no_head_clock() {
    let s = server_with_files(&["keepalive_timeout = 0.5", "header_timeout = 4"]);
    for separate in [false, true] {
        let mut c = s.connect();
        let stray = if separate { "" } else { "\r\n" };
        c.send(format!("GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n{stray}").as_bytes());
        assert_eq!(c.read_response().body, b"file A\n");
        if separate {
            c.send(b"\r\n");
        }
        let start = Instant::now();
        c.expect_closed();
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_secs(3),
            "a connection idle after a stray CRLF (separate: {separate}) was closed after {waited:?}, \
             not at keepalive_timeout"
        );
    }
    assert!(!s.lines().iter().any(|l| l.contains("\" 408 ")), "a 408 was logged: {:?}", s.lines());
}

/// An idle keep-alive child, after two requests for a small file logged
/// to stderr (the default access log), has written no page of its parent's loader, C library or static data: it
/// allocated nothing (malloc's state is in the C library's data), took no
/// lock in a static, and was forked without glibc's reset of the loader's
/// locks. Each such page would be copied into every child (`Private_Dirty`
/// in its `smaps`): 500 idle clients (scenario d of benches/run.sh) would
/// cost 500 copies of each.
#[test]
fn an_idle_child_copies_no_library_or_static_data() {
    if !is_root() {
        skip("reading a non-dumpable child's smaps takes root");
        return;
    }
    let s = server_with_files(&["keepalive_timeout = 10"]);
    let mut c = s.connect();
    for path in ["/a.txt", "/b.txt"] {
        c.send_request("GET", path, &[]);
        assert_eq!(c.read_response().status, 200);
    }
    // The child logs each request after its reply (to stderr, the default
    // access log): idle means after the second line.
    s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains("GET /b.txt"));
    let kids = s.children();
    assert_eq!(kids.len(), 1, "one child per connection: {kids:?}");
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", kids[0].pid)).expect("child's smaps");
    let bin = std::fs::canonicalize(BIN).expect("binary path");
    let watched =
        |path: &str| path == bin.to_string_lossy() || path.contains("/ld-linux") || path.contains("/libc.so");
    let mut mapping: Option<String> = None;
    let mut checked = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
            let writable = fields.get(1).is_some_and(|p| p.contains('w'));
            mapping = fields.get(5).filter(|p| writable && watched(p)).map(|p| p.to_string());
            checked += usize::from(mapping.is_some());
        } else if let (Some(name), ["Private_Dirty:", kb, "kB"]) = (&mapping, fields.as_slice()) {
            assert_eq!(*kb, "0", "the child copied {kb} KiB of {name}'s writable data");
        }
    }
    assert!(checked >= 1, "no writable mapping of the binary or its libraries in:\n{smaps}");
}
