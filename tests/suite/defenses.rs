//! Defaults that defend: deferred accept, the per-address cap.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};

use crate::common::*;

/// A client that connects and sends nothing costs no fork: the listener
/// has `TCP_DEFER_ACCEPT`, so the kernel does not even queue it for
/// `accept` until data arrives; then it is served as usual.
#[test]
fn silent_connection_costs_no_fork() {
    let s = TestServer::start();
    s.write_file("a.txt", b"deferred");
    let mut silent: Vec<Conn> = (0..3).map(|_| s.connect()).collect();
    // Long enough for the parent to have accepted and forked many times
    // over, were the connections queued.
    let forked = poll_until(Duration::from_millis(700), || !s.children().is_empty());
    assert!(!forked, "a connection that sent nothing got a child: {:?}", s.children());
    let c = &mut silent[0];
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"deferred");
}

/// Connects to `to` from the loopback address `from`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> Conn {
    let fd: OwnedFd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::new(from[0], from[1], from[2], from[3], 0))
        .unwrap();
    let SocketAddr::V4(to) = to else { panic!("{to} is not IPv4") };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to)).unwrap();
    Conn::from_stream(TcpStream::from(fd))
}

/// By default one address holds at most 32 connections: the 33rd gets a
/// `503` from the parent, while another address is still served.
#[test]
fn per_address_cap_is_on_by_default() {
    let s = TestServer::start();
    s.write_file("a.txt", b"capped");
    let held: Vec<Conn> = (0..32)
        .map(|i| {
            let (c, r) = get_keepalive(s.addr(), "/a.txt");
            assert_eq!(r.body, b"capped", "connection {i}");
            c
        })
        .collect();
    let mut over = s.connect();
    over.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = over.read_response();
    assert_eq!(r.status, 503, "the 33rd connection from one address: {r:?}");
    assert!(r.header("Retry-After").is_some(), "{r:?}");
    // The parent logs its own 503, with the body it sent and no request
    // line (it never reads the request).
    let logged = s.wait_for_lines(1, Duration::from_secs(3), |l| {
        l.starts_with("127.0.0.1 - - [") && l.contains(&format!("\"\" 503 {} ", r.body.len()))
    });
    assert_eq!(logged.len(), 1, "no access-log line for the parent's 503: {:?}", s.lines());
    let mut other = connect_from([127, 0, 0, 2], s.addr());
    other.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = other.read_response();
    assert_eq!(r.status, 200, "another address: {r:?}");
    drop(held);
}
