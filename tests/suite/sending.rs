//! The send path: `send_timeout` as a real deadline, the minimum transfer
//! rate, and the access-log line of a response cut short.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt};

use crate::common::ReadRetrying;
use crate::common::*;

/// Size of the file the stalled clients ask for: far more than any socket
/// buffers can hold.
const BIG: usize = 32 << 20;

/// Connects to `to` with a small receive buffer, so the server's sends stop
/// making progress soon after the client stops reading.
fn connect_small_window(to: SocketAddr) -> Conn {
    let fd: OwnedFd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    let SocketAddr::V4(to) = to else { panic!("{to} is not IPv4") };
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).unwrap();
    Conn::from_stream(TcpStream::from(fd))
}

fn server(extra: &[&str]) -> TestServer {
    let mut b = TestServer::builder();
    for line in extra {
        b = b.config(line);
    }
    let s = b.start();
    write_big_file(&s.root().join("big.bin"), BIG);
    s
}

/// The children serving connections (not yet exited).
fn serving(s: &TestServer) -> Vec<ProcInfo> {
    s.children().into_iter().filter(|p| p.state != 'Z').collect()
}

/// Asks for the big file and waits until a child serves it. Returns the
/// connection and when the child was first seen.
fn request_big(s: &TestServer) -> (Conn, Instant) {
    let mut c = connect_small_window(s.addr());
    c.send_request("GET", "/big.bin", &["Connection: close"]);
    assert!(poll_until(Duration::from_secs(5), || !serving(s).is_empty()), "no child for the connection");
    (c, Instant::now())
}

/// The access-log line for `/big.bin` (the log goes to stderr in tests).
fn big_log_line(s: &TestServer, timeout: Duration) -> Option<String> {
    s.wait_for_lines(1, timeout, |l| l.contains("\"GET /big.bin HTTP/1.1\"")).into_iter().next()
}

/// The status and byte count of an access-log line.
fn status_and_bytes(line: &str) -> (u16, u64) {
    let after = line.split("\" ").nth(1).unwrap_or_else(|| panic!("no status in {line:?}"));
    let mut f = after.split(' ');
    (f.next().unwrap().parse().unwrap(), f.next().unwrap().parse().unwrap())
}

/// Asserts that the cut response to `/big.bin` was logged as a 200 with
/// some but not all of its bytes.
fn assert_cut_logged(s: &TestServer) {
    let line = big_log_line(s, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no access-log line for the cut response: {:?}", s.lines()));
    let (status, bytes) = status_and_bytes(&line);
    assert_eq!(status, 200, "{line}");
    assert!(bytes > 0 && bytes < BIG as u64, "a cut response must log the body bytes sent: {line}");
}

/// A client that resets the connection mid-download: the response is
/// logged with the bytes that went out, as nginx does.
#[test]
fn reset_mid_download_is_logged_with_bytes_sent() {
    let s = server(&[]);
    let mut c = s.connect();
    c.send_request("GET", "/big.bin", &["Connection: close"]);
    let mut buf = vec![0u8; 64 << 10];
    let mut read = 0;
    while read < 256 << 10 {
        read += c.stream.read_retrying(&mut buf).expect("reading the start of the body");
    }
    // Closing with unread data sends a reset.
    drop(c);
    assert_cut_logged(&s);
}

/// A client that stops reading is dropped `send_timeout` after its last
/// progress, not several times that: with `SO_SNDTIMEO`, one blocking
/// `sendfile` waited the timeout once per internal step.
#[test]
fn send_timeout_is_a_real_deadline() {
    let s = server(&["send_timeout = 2", "min_send_rate = 0"]);
    let (_c, seen) = request_big(&s);
    assert!(
        poll_until(Duration::from_secs(10), || serving(&s).is_empty()),
        "child still serving a stalled client 10 s after send_timeout = 2"
    );
    let lived = seen.elapsed();
    assert!(
        lived >= Duration::from_millis(1500) && lived < Duration::from_millis(3200),
        "a stalled client was dropped after {lived:?}, with send_timeout = 2"
    );
}

/// A client reading a byte a second keeps making progress, so
/// `send_timeout` never fires; the minimum rate drops it, and the access
/// log records the response with the bytes actually sent.
#[test]
fn slow_reader_is_dropped_by_min_send_rate() {
    let s = server(&["send_timeout = 30", "min_send_rate = 65536", "min_send_rate_grace = 1"]);
    let (mut c, seen) = request_big(&s);
    let mut byte = [0u8; 1];
    let mut read = 0usize;
    while !serving(&s).is_empty() && seen.elapsed() < Duration::from_secs(15) {
        match c.stream.read_retrying(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        poll_until(Duration::from_secs(2), || serving(&s).is_empty()),
        "a client reading a byte a second still held a process after {:?} ({read} bytes read)",
        seen.elapsed()
    );
    assert!(seen.elapsed() < Duration::from_secs(15), "dropped only after {:?}", seen.elapsed());
    assert_cut_logged(&s);
}

/// Splits what a client received on a `Connection: close` request for
/// `/big.bin` into the status and the body bytes.
fn status_and_body(received: &[u8]) -> (u16, &[u8]) {
    let end =
        find(received, b"\r\n\r\n").unwrap_or_else(|| panic!("no response head in {} bytes", received.len()));
    let status = std::str::from_utf8(&received[9..12]).ok().and_then(|s| s.parse().ok());
    (status.unwrap_or_else(|| panic!("bad status line in {:?}", &received[..end])), &received[end + 4..])
}

/// A client that stops reading is cut by `send_timeout`, and the response
/// is logged with the body bytes that went out: exactly what the client
/// then finds in its socket (the kernel still delivers what the server
/// had queued before it closed), some but not all of the file.
#[test]
fn send_timeout_cut_is_logged_with_bytes_sent() {
    let s = server(&["send_timeout = 1", "min_send_rate = 0"]);
    let (mut c, _) = request_big(&s);
    assert!(
        poll_until(Duration::from_secs(10), || serving(&s).is_empty()),
        "child still serving a stalled client 10 s after send_timeout = 1"
    );
    assert_cut_logged(&s);
    let (received, closed) = c.read_until_close(IO_TIMEOUT);
    assert!(closed.is_some(), "the cut connection was not closed");
    let (status, body) = status_and_body(&received);
    assert_eq!(status, 200);
    let expected = std::fs::read(s.root().join("big.bin")).unwrap();
    assert!(body == &expected[..body.len()], "the bytes before the cut are not the file's");
    let line = big_log_line(&s, Duration::ZERO).unwrap();
    assert_eq!(status_and_bytes(&line).1, body.len() as u64, "logged vs received body bytes: {line}");
}

/// A file that shrinks while it is being sent ends the response (its
/// `Content-Length` can no longer be met) after the bytes the file still
/// has; the access log says exactly those bytes.
#[test]
fn file_shrinking_mid_send_is_logged_with_bytes_sent() {
    const KEPT: usize = 16 << 20;
    let s = server(&[]);
    let path = s.root().join("big.bin");
    let expected = std::fs::read(&path).unwrap();
    let mut c = connect_small_window(s.addr());
    c.send_request("GET", "/big.bin", &["Connection: close"]);
    // The small window holds the server back far below KEPT.
    let mut start = vec![0u8; 64 << 10];
    c.stream.read_exact(&mut start).expect("reading the start of the response");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(KEPT as u64).unwrap();
    let (rest, closed) = c.read_until_close(Duration::from_secs(20));
    assert!(closed.is_some(), "the connection stayed open after the file shrank");
    let received = [start, rest].concat();
    let (status, body) = status_and_body(&received);
    assert_eq!(status, 200);
    assert_eq!(body.len(), KEPT, "body bytes received after the file shrank to {KEPT}");
    assert!(body == &expected[..KEPT], "the bytes sent are not the file's");
    let line = big_log_line(&s, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no access-log line for the shrunk file: {:?}", s.lines()));
    assert_eq!(status_and_bytes(&line), (200, KEPT as u64), "{line}");
}

/// A client reading steadily, far above `min_send_rate`, is never dropped,
/// however long the response: the kernel used to take megabytes at once and
/// report room again only after a third of that had drained, so a client
/// reading 128 KiB/s showed the server no progress for ten seconds and more
/// and was cut by the rate rule (or `send_timeout`) at once.
#[test]
fn steady_reader_above_min_send_rate_is_not_dropped() {
    const RATE: usize = 128 << 10;
    const READING: Duration = Duration::from_secs(8);
    let s = server(&["send_timeout = 3", "min_send_rate = 1024", "min_send_rate_grace = 2"]);
    let expected = std::fs::read(s.root().join("big.bin")).unwrap();
    let mut c = s.connect();
    c.send_request("GET", "/big.bin", &["Connection: close"]);
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    while start.elapsed() < READING {
        let n = c.stream.read_retrying(&mut buf).expect("reading the response");
        assert!(n > 0, "the server closed after {} bytes, {:?} in", got.len(), start.elapsed());
        got.extend_from_slice(&buf[..n]);
        // Hold the pace: sleep until this many bytes are due.
        let due = start + Duration::from_secs_f64(got.len() as f64 / RATE as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    assert!(
        !serving(&s).is_empty() && big_log_line(&s, Duration::ZERO).is_none(),
        "a client reading {RATE} B/s was dropped with min_send_rate = 1024 and send_timeout = 3: {:?}",
        big_log_line(&s, Duration::ZERO)
    );
    let (status, body) = status_and_body(&got);
    assert_eq!(status, 200);
    assert!(body == &expected[..body.len()], "the bytes read are not the file's");
}
