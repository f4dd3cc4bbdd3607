//! Request size limits, request bodies and garbage input.

use std::time::Duration;

use crate::common::*;

fn server() -> TestServer {
    let s = TestServer::start();
    s.write_file("a.txt", b"file A");
    s
}

fn assert_still_serving(s: &mut TestServer) {
    assert!(s.is_running(), "server process died");
    let r = s.get("/a.txt");
    assert_eq!(r.status, 200, "server no longer serves");
    assert_eq!(r.body, b"file A");
}

#[test]
fn huge_header_is_431() {
    let mut s = server();
    let req = format!("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "b".repeat(10_000));
    expect_error(s.addr(), req.as_bytes(), 431);
    assert_still_serving(&mut s);
}

#[test]
fn many_headers_over_limit_are_431() {
    let s = server();
    let mut req = String::from("GET /a.txt HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(50)));
    }
    req.push_str("\r\n");
    assert!(req.len() > 8192);
    let mut c = s.connect();
    c.send_lossy(req.as_bytes());
    let r = c.read_response();
    assert_error_page(&r, 431);
}

#[test]
fn huge_url_is_414() {
    let mut s = server();
    let req = format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "u".repeat(10_000));
    expect_error(s.addr(), req.as_bytes(), 414);
    assert_still_serving(&mut s);
}

#[test]
fn request_under_default_limit_is_accepted() {
    let s = server();
    // About 7 KB of head: must be accepted with the default 8192 limit.
    let req = format!(
        "GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(7_000)
    );
    let mut c = s.connect();
    c.send(req.as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"file A");
}

#[test]
fn configured_max_header_bytes_is_enforced() {
    let s = TestServer::builder().config("max_header_bytes = 1024").start();
    s.write_file("a.txt", b"file A");
    // Fits.
    let mut c = s.connect();
    c.send(
        format!("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n", "p".repeat(600)).as_bytes(),
    );
    assert_eq!(c.read_response().status, 200);
    // Header too big.
    let mut c = s.connect();
    c.send_lossy(
        format!("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n", "p".repeat(2000)).as_bytes(),
    );
    assert_error_page(&c.read_response(), 431);
    // URL too long.
    let mut c = s.connect();
    c.send_lossy(format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "u".repeat(2000)).as_bytes());
    assert_error_page(&c.read_response(), 414);
}

#[test]
fn get_with_content_length_body_is_400_and_closes() {
    let s = server();
    expect_error_and_close(
        s.addr(),
        b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
        400,
    );
}

#[test]
fn get_with_chunked_body_is_400_and_closes() {
    let s = server();
    expect_error_and_close(
        s.addr(),
        b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn content_length_and_transfer_encoding_is_400_and_closes() {
    let s = server();
    expect_error_and_close(
        s.addr(),
        b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn smuggled_request_in_body_is_not_served() {
    // If the body were ignored but the connection kept, the "body" would be
    // parsed as a second request.
    let s = server();
    s.write_file("smuggled.txt", b"SMUGGLED");
    let smuggled = b"GET /smuggled.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut req =
        format!("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n", smuggled.len())
            .into_bytes();
    req.extend_from_slice(smuggled);
    let raw = send_raw(s.addr(), &req);
    assert!(!contains(&raw, b"SMUGGLED"), "{}", String::from_utf8_lossy(&raw));
    assert!(raw.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&raw));
}

fn first_status(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    let mut parts = text.split(' ');
    let v = parts.next()?;
    if !v.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[test]
fn garbage_input_never_crashes_the_server() {
    let mut s = TestServer::builder().config("header_timeout = 2").config("keepalive_timeout = 2").start();
    s.write_file("a.txt", b"file A");
    let mut binary = pseudo_random_bytes(600, 99);
    binary.extend_from_slice(b"\r\n\r\n");
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("random binary", binary),
        ("NUL bytes", b"\0\0\0\0\0\r\n\r\n".to_vec()),
        ("NUL in request line", b"GET /a\0.txt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("only CRLFCRLF", b"\r\n\r\n".to_vec()),
        ("very long method", format!("{} / HTTP/1.1\r\nHost: x\r\n\r\n", "A".repeat(5000)).into_bytes()),
        ("header without colon", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec()),
        (
            "TLS client hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x01\x02\x03\r\n\r\n".to_vec(),
        ),
        ("bare LF soup", b"\n\n\n\n\n\n".to_vec()),
        ("high bytes", vec![0xff; 300]),
    ];
    for (name, input) in &inputs {
        let mut c = s.connect();
        c.send_lossy(input);
        let (_, closed) = c.read_until_close(Duration::from_secs(8));
        let raw = c.received().to_vec();
        if raw.is_empty() {
            assert!(closed.is_some(), "{name}: no response and no close within 8 s");
        } else {
            let status = first_status(&raw).unwrap_or_else(|| {
                panic!("{name}: not an HTTP response: {:?}", String::from_utf8_lossy(&raw))
            });
            assert!(
                (400..500).contains(&status) || status == 501,
                "{name}: expected a 4xx (or 501), got {status}"
            );
        }
        assert_still_serving(&mut s);
    }
}
