//! Idle keep-alive given back under pressure
//! (`keepalive_give_back_from_percent`): at `max_children`, children idle
//! between requests are asked to close so that newcomers are served, and
//! none is cut in the middle of a response.

use std::io::Read;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::*;
use crate::status::metric;

/// With `max_children = 64` and 64 idle keep-alive connections, each of 20
/// new clients is served within 100 ms; every idle connection the server
/// closed had its whole last response, then a clean end.
#[test]
fn newcomers_are_served_at_once_when_idle_connections_fill_the_server() {
    let s = TestServer::builder()
        .config("max_children = 64")
        .config("max_children_per_ip = 0")
        .config("keepalive_timeout = 30")
        .config("status_path = \"/server-status\"")
        .file("a.txt", b"file A\n")
        .start();
    let mut idle = Vec::new();
    for i in 0..64 {
        let (c, r) = get_keepalive(s.addr(), &format!("/a.txt?idle={i}"));
        assert_eq!(r.body, b"file A\n");
        idle.push(c);
    }
    // Each newcomer stays too (a browser keeps its connection): each needs
    // a slot an idle one gives back. Timed from its connect to its whole
    // response, by a client the machine's load cannot hold up (`unstarved`).
    let addr = s.addr();
    let (_newcomers, took) = unstarved(|| {
        let mut newcomers = Vec::new();
        let mut took = Vec::new();
        for i in 0..20 {
            let start = Instant::now();
            let mut c = Conn::connect(addr);
            c.send_request("GET", &format!("/a.txt?new={i}"), &[]);
            let r = c.read_response();
            took.push(start.elapsed());
            assert_eq!(r.status, 200, "newcomer {i}: {r:?}");
            assert_eq!(r.body, b"file A\n");
            newcomers.push(c);
        }
        (newcomers, took)
    });
    eprintln!("20 newcomers served in {took:?}");
    for (i, t) in took.iter().enumerate() {
        assert!(*t < Duration::from_millis(100), "newcomer {i} waited {t:?}: {took:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut closed = 0;
    for (i, c) in idle.iter_mut().enumerate() {
        let (rest, end) = c.read_until_close(Duration::from_millis(20));
        // Whatever the server did, nothing came after the whole response
        // each client read: no second response, no partial bytes.
        assert!(rest.is_empty(), "idle connection {i} got {:?}", String::from_utf8_lossy(&rest));
        if end.is_some() {
            closed += 1;
        }
    }
    let metrics = get_close(s.addr(), "/server-status?format=prometheus").body_str();
    let given_back = metric(&metrics, "forkhttpd_idle_given_back_total");
    eprintln!("{closed} idle connections given back, {given_back} asked");
    assert!(closed >= 20, "only {closed} idle connections were closed for 20 newcomers");
    assert!(given_back >= closed as u64, "{given_back} asked, {closed} closed");
    assert_eq!(metric(&metrics, "forkhttpd_refusals_total{cause=\"max_children\"}"), 0, "{metrics}");
}

/// With giving back off, the same newcomer waits: the test above can fail.
#[test]
fn without_giving_back_a_newcomer_waits_for_an_idle_one() {
    let s = TestServer::builder()
        .config("max_children = 4")
        .config("max_children_per_ip = 0")
        .config("keepalive_timeout = 1")
        .config("keepalive_give_back_from_percent = 0")
        .file("a.txt", b"file A\n")
        .start();
    let _idle: Vec<_> = (0..4).map(|_| get_keepalive(s.addr(), "/a.txt").0).collect();
    let start = Instant::now();
    let r = get_close(s.addr(), "/a.txt");
    assert_eq!(r.status, 200);
    assert!(start.elapsed() > Duration::from_millis(500), "served after {:?}", start.elapsed());
}

/// The ask arriving in the middle of a response does not cut it: the
/// child finishes it, whole, and closes at its next wait for a request.
#[test]
fn a_child_asked_mid_response_finishes_it() {
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let s = TestServer::builder().config("keepalive_timeout = 30").start();
    s.write_file("big.bin", &big);
    let mut c = s.connect();
    c.send_request("GET", "/big.bin", &[]);
    // Unread, the response fills the socket buffers: the child waits to send.
    std::thread::sleep(Duration::from_millis(300));
    let children = s.children();
    assert_eq!(children.len(), 1, "{children:?}");
    let child = Pid::from_raw(children[0].pid as i32);
    kill(child, Signal::SIGUSR2).expect("signal the child");
    std::thread::sleep(Duration::from_millis(100));
    kill(child, Signal::SIGUSR2).expect("the child lives on after the ask");
    let (mut stream, mut got) = c.into_parts();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut buf = vec![0; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("after {} bytes: {e}", got.len()),
        }
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&got[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.to_ascii_lowercase().contains(&format!("content-length: {}", big.len())), "{head}");
    assert!(got[head_end..] == big[..], "the body, whole: {} of {} bytes", got.len() - head_end, big.len());
    assert!(start.elapsed() < Duration::from_secs(5), "closed at its next wait, not at keepalive_timeout");
}

/// At `max_children` with every child busy, a newcomer waits; once one of
/// them turns idle (its client read the response and keeps the
/// connection), the parent notices without any child exiting, asks it to
/// close, and serves the newcomer, long before `keepalive_timeout`.
#[test]
fn a_child_turning_idle_at_the_cap_is_asked_back() {
    let big = vec![b'y'; 8 << 20];
    let s = TestServer::builder()
        .config("max_children = 2")
        .config("max_children_per_ip = 0")
        .config("keepalive_timeout = 30")
        .start();
    s.write_file("big.bin", &big);
    let mut busy: Vec<Conn> = (0..2)
        .map(|_| {
            let mut c = s.connect();
            c.send_request("GET", "/big.bin", &[]);
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut newcomer = s.connect();
    newcomer.send_request("GET", "/big.bin", &["Range: bytes=0-9", "Connection: close"]);
    newcomer.stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(newcomer.stream.read(&mut byte), Err(ref e) if is_timeout(e)),
        "served while both children were busy sending"
    );
    let r = busy[0].read_response();
    assert_eq!(r.body.len(), big.len());
    let idle_since = Instant::now();
    newcomer.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = newcomer.read_response();
    assert_eq!(r.status, 206, "{r:?}");
    let waited = idle_since.elapsed();
    assert!(waited < Duration::from_secs(2), "the newcomer waited {waited:?} after a child went idle");
    let (rest, end) = busy[0].read_until_close(Duration::from_secs(5));
    assert!(
        rest.is_empty() && end.is_some(),
        "the idle one was closed cleanly: {} bytes, {end:?}",
        rest.len()
    );
    let r = busy[1].read_response();
    assert_eq!(r.body.len(), big.len(), "the other, still busy, was not cut");
}
