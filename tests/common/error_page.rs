//! Assertions on error responses: the page every error must be, and the close that must follow.

use std::net::SocketAddr;

use super::{Conn, Response};

/// Assert the properties every error page must have.
pub fn assert_error_page(resp: &Response, status: u16) {
    assert_eq!(
        resp.status,
        status,
        "expected status {status}, got {} {} (headers {:?}, body {:?})",
        resp.status,
        resp.reason,
        resp.headers,
        resp.body_str()
    );
    assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"), "error {status} Content-Type");
    let cl: usize = resp
        .header("content-length")
        .unwrap_or_else(|| panic!("error {status} has no Content-Length"))
        .parse()
        .expect("numeric Content-Length");
    assert_eq!(cl, resp.body.len(), "error {status} Content-Length vs body");
    assert!(!resp.body.is_empty(), "error {status} has an empty body");
    let body = resp.body_str().to_ascii_lowercase();
    assert!(
        body.contains("<html") || body.contains("<!doctype html"),
        "error {status} body is not HTML: {body:?}"
    );
}

/// Send one request on a fresh connection (write errors ignored: the server
/// may answer before reading it all); expect `status` as an error page and,
/// if it says `Connection: close`, an actual close.
pub fn expect_error(addr: SocketAddr, request: &[u8], status: u16) -> Response {
    let mut c = Conn::connect(addr);
    c.send_lossy(request);
    let resp = c.read_response();
    assert_error_page(&resp, status);
    if resp.connection_has("close") {
        c.expect_closed();
    }
    resp
}

/// [`expect_error`], and the error must carry `Connection: close`.
pub fn expect_error_and_close(addr: SocketAddr, request: &[u8], status: u16) -> Response {
    let resp = expect_error(addr, request, status);
    assert!(
        resp.connection_has("close"),
        "error {status} for {:?} must carry Connection: close; headers {:?}",
        String::from_utf8_lossy(&request[..request.len().min(120)]),
        resp.headers
    );
    resp
}

/// After reading an error response on `c`: if it says `Connection: close`
/// the server must actually close; otherwise the connection must still be
/// usable for a follow-up `GET probe_path` (which must return 200).
pub fn assert_close_consistent(c: &mut Conn, resp: &Response, probe_path: &str) {
    if resp.connection_has("close") {
        c.expect_closed();
    } else {
        c.send_request("GET", probe_path, &["Connection: close"]);
        let next = c.read_response();
        assert_eq!(
            next.status, 200,
            "after a {} without Connection: close the connection should stay usable",
            resp.status
        );
    }
}
