//! Attacks as a hostile client would make them, on loopback and bounded in
//! time: slowloris from many addresses, and many clients resetting
//! mid-download. (The slow reader is in `sending.rs`, the per-address cap
//! in `defenses.rs`.)

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};

use crate::common::ReadRetrying;
use crate::common::*;

/// A TCP connection to `to` from the loopback address `from` (bound before
/// connecting, so each address has its own per-address count).
fn stream_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let fd: OwnedFd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0))).unwrap();
    let SocketAddr::V4(to) = to else { panic!("{to} is not IPv4") };
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    TcpStream::from(fd)
}

/// Live (not zombie) children of the server.
fn live_children(s: &TestServer) -> usize {
    s.children().iter().filter(|p| p.state != 'Z').count()
}

/// One `GET /a.txt` from 127.0.0.2 on a fresh connection to `to`: how long
/// from the connect until the whole response was in.
fn timed_get(to: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut c = Conn::from_stream(stream_from(Ipv4Addr::new(127, 0, 0, 2), to));
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = c.read_response();
    let took = start.elapsed();
    assert_eq!((r.status, r.body.as_slice()), (200, b"fresh".as_slice()));
    took
}

/// Slowloris: 300 connections, spread over 127.0.0.10..=30 (under the
/// per-address cap), each trickling header bytes. Meanwhile each of five
/// fresh clients from 127.0.0.2 is served within 100 ms, and every one of
/// the 300 gets its 408 and is closed by the header deadline, counted from
/// its first byte. The deadline leaves room for forking the 300 on a loaded
/// machine: the fresh clients are timed while all 300 are held, never
/// beside the first of them being cut off (which a 3 s deadline allowed
/// when forking them took that long).
#[test]
fn slowloris_is_cut_off_and_others_are_served() {
    const N: usize = 300;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(6);
    let s = TestServer::builder().config(&format!("header_timeout = {}", HEADER_TIMEOUT.as_secs())).start();
    s.write_file("a.txt", b"fresh");
    let mut conns = Vec::with_capacity(N);
    let opening = Instant::now();
    for i in 0..N {
        let from = Ipv4Addr::new(127, 0, 0, 10 + (i % 21) as u8);
        let mut st = stream_from(from, s.addr());
        st.write_all(b"GET /a.txt HTTP/1.1\r\nX-Slow: ").unwrap();
        st.set_nonblocking(true).unwrap();
        conns.push((st, Instant::now(), Vec::new(), None::<Duration>));
    }
    assert!(
        poll_until(Duration::from_secs(10), || live_children(&s) >= N),
        "only {} children for {N} slow connections",
        live_children(&s)
    );
    eprintln!("{N} slow connections held by their children {:?} after the first connect", opening.elapsed());
    let addr = s.addr();
    let times: Vec<Duration> = unstarved(|| (0..5).map(|_| timed_get(addr)).collect());
    eprintln!("fresh clients served in {times:?}");
    // Each slow connection still open with nothing to read: all were held.
    let cut: Vec<String> = conns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.0.peek(&mut [0u8; 1]) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            other => Some(format!("#{i}: {other:?} after {:?}", c.1.elapsed())),
        })
        .collect();
    assert!(
        cut.is_empty(),
        "{} slow connections were cut off while the fresh clients were timed: {:?}",
        cut.len(),
        &cut[..cut.len().min(5)]
    );
    assert!(
        times.iter().all(|t| *t < Duration::from_millis(100)),
        "a fresh client waited {times:?} beside {N} slow ones (each must be served within 100 ms)"
    );
    // Trickle a byte to each every 250 ms until all are closed.
    let until = Instant::now() + HEADER_TIMEOUT + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while conns.iter().any(|c| c.3.is_none()) && Instant::now() < until {
        for (st, opened, got, closed) in conns.iter_mut().filter(|c| c.3.is_none()) {
            let _ = st.write(b"a");
            loop {
                match st.read_retrying(&mut buf) {
                    Ok(0) => *closed = Some(opened.elapsed()),
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => *closed = Some(opened.elapsed()),
                }
                break;
            }
        }
        thread::sleep(Duration::from_millis(250));
    }
    let mut late = Vec::new();
    for (i, (_, _, got, closed)) in conns.iter().enumerate() {
        let ok408 = got.starts_with(b"HTTP/1.1 408 ");
        match closed {
            Some(t) if ok408 && *t >= HEADER_TIMEOUT - Duration::from_millis(300) => {
                // Slack for forking 300 children on a loaded machine.
                if *t > HEADER_TIMEOUT + Duration::from_secs(3) {
                    late.push(format!("#{i}: closed after {t:?}"));
                }
            }
            other => late.push(format!("#{i}: closed {other:?}, got {:?}", String::from_utf8_lossy(got))),
        }
    }
    assert!(
        late.is_empty(),
        "{} of {N} slow connections not cut off at {HEADER_TIMEOUT:?}: {:?}",
        late.len(),
        &late[..late.len().min(5)]
    );
    assert!(
        poll_until(Duration::from_secs(10), || s.children().is_empty()),
        "children left: {:?}",
        s.children()
    );
}

/// 200 clients reset their connections in the middle of a large download
/// while another client downloads the same file again and again, from
/// before the first reset until after the last: every copy is byte-exact,
/// the server goes on serving, and every child is gone afterwards.
#[test]
fn resets_mid_download_do_not_affect_others() {
    const LEN: usize = 8 << 20;
    const MAX_COPIES: usize = 500;
    let s = TestServer::start();
    let path = s.root().join("big.bin");
    write_big_file(&path, LEN);
    let expected = std::sync::Arc::new(std::fs::read(&path).unwrap());
    let addr = s.addr();
    let storm_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (over, copy) = (storm_over.clone(), expected.clone());
    let good = thread::spawn(move || {
        let mut copies = 0;
        // Checked before each copy, so the last one starts after the storm.
        while copies < MAX_COPIES {
            let done = over.load(std::sync::atomic::Ordering::SeqCst);
            let mut c = Conn::connect(addr);
            c.send_request("GET", "/big.bin", &["Connection: close"]);
            let r = c.read_response();
            assert_eq!(r.status, 200, "copy {copies}");
            assert!(r.body == *copy, "copy {copies} differs ({} bytes of {LEN})", r.body.len());
            copies += 1;
            if done {
                return Some(copies);
            }
        }
        None
    });
    let resetters: Vec<_> = (0..8)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..25 {
                    let from = Ipv4Addr::new(127, 0, 0, 40 + t);
                    let mut st = stream_from(from, addr);
                    st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    st.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                    let mut buf = vec![0u8; 16 << 10];
                    let mut read = 0;
                    // A different point in the body each time.
                    while read < (1 + i) * 8192 {
                        match st.read_retrying(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => read += n,
                        }
                    }
                    // Linger 0: close with a reset.
                    nix::sys::socket::setsockopt(
                        &st,
                        nix::sys::socket::sockopt::Linger,
                        &nix::libc::linger { l_onoff: 1, l_linger: 0 },
                    )
                    .unwrap();
                    drop(st);
                }
            })
        })
        .collect();
    for r in resetters {
        r.join().unwrap();
    }
    storm_over.store(true, std::sync::atomic::Ordering::SeqCst);
    let copies = good.join().expect("a download beside the resets failed");
    let copies = copies.unwrap_or_else(|| panic!("{MAX_COPIES} downloads did not outlast the storm"));
    eprintln!("{copies} byte-exact downloads during the storm");
    let r = s.get("/big.bin");
    assert!(r.status == 200 && r.body == *expected, "not serving normally after the resets");
    assert!(
        poll_until(Duration::from_secs(10), || s.children().is_empty()),
        "children left: {:?}",
        s.children()
    );
}
