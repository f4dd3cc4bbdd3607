//! Many clients at once, child reaping, and clients that vanish mid-transfer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::ReadRetrying;
use crate::common::*;

#[test]
fn hundred_clients_ten_requests_each() {
    // A hundred clients from one address: over the default per-address cap.
    let s = TestServer::builder().config("max_children_per_ip = 0").start();
    let sizes = [1usize, 100, 1000, 4095, 4096, 10_000, 65_536, 100_001, 200_000, 7];
    let files: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("f{i}.bin"), pseudo_random_bytes(n, 1000 + i as u64)))
        .collect();
    for (name, data) in &files {
        s.write_file(name, data);
    }
    let ok = AtomicUsize::new(0);
    let addr = s.addr();
    thread::scope(|scope| {
        for t in 0..100usize {
            let files = &files;
            let ok = &ok;
            scope.spawn(move || {
                let mut c = Conn::connect(addr);
                for i in 0..10usize {
                    let (name, data) = &files[(t + i) % files.len()];
                    let last = i == 9;
                    let extra: &[&str] = if last { &["Connection: close"] } else { &[] };
                    c.send_request("GET", &format!("/{name}"), extra);
                    let r = c.read_response();
                    assert_eq!(r.status, 200, "client {t} request {i}");
                    assert!(r.body == *data, "client {t} request {i}: body of {name} differs");
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                c.expect_closed();
            });
        }
    });
    assert_eq!(ok.load(Ordering::SeqCst), 1000);
}

#[test]
fn stalled_client_does_not_block_others() {
    let s = TestServer::start();
    s.write_file("a.txt", b"A");
    // Half a request line, then nothing.
    let mut stalled = s.connect();
    stalled.send(b"GET /a.tx");
    let mut idle = s.connect();
    for _ in 0..5 {
        let r = s.get("/a.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"A");
    }
    stalled.send(b"t HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(stalled.read_response().body, b"A");
    idle.send_request("GET", "/a.txt", &[]);
    assert_eq!(idle.read_response().body, b"A");
}

#[test]
fn no_zombies_after_many_connections() {
    let s = TestServer::start();
    s.write_file("a.txt", b"zombie check");
    let pid = s.pid();
    let baseline: Vec<u32> = children_of(pid).iter().map(|p| p.pid).collect();
    for i in 0..300 {
        let mut c = s.connect();
        c.send_request("GET", "/a.txt", &["Connection: close"]);
        // Its rare failures were this test's own read failing with EINTR
        // (the whole test process stopped and resumed from outside: a
        // socket read with a timeout fails so even without a handler), now
        // retried in `Conn`. Should it fail otherwise, say whether the
        // connection still waited to be accepted (the parent did not
        // accept) or had a child (the child did not answer), and what each
        // process was doing.
        let asked = Instant::now();
        let r = match c.try_read_response(false) {
            Ok(Some(r)) => r,
            other => panic!(
                "connection {i}: {:?} after {:?}; {:?} connection(s) waiting in the accept queue; \
                 server {}; children {:?}; server stderr (last 20 lines):\n{}",
                other.map(|r| r.map(|r| r.status)),
                asked.elapsed(),
                accept_queue(s.addr()),
                process_report(pid),
                s.children().iter().map(|p| process_report(p.pid)).collect::<Vec<_>>(),
                s.lines().iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n")
            ),
        };
        assert_eq!(r.status, 200, "connection {i}");
        assert_eq!(r.body, b"zombie check");
        c.expect_closed();
    }
    let new_children =
        || -> Vec<ProcInfo> { children_of(pid).into_iter().filter(|p| !baseline.contains(&p.pid)).collect() };
    poll_until(Duration::from_secs(5), || new_children().is_empty());
    let zombies: Vec<ProcInfo> = new_children().into_iter().filter(|p| p.state == 'Z').collect();
    assert!(zombies.is_empty(), "{} unreaped zombie children of {pid}: {:?}", zombies.len(), zombies);
    // The server must still be healthy.
    assert_eq!(s.get("/a.txt").status, 200);
}

#[test]
fn client_disconnect_mid_transfer_does_not_hurt_server() {
    let mut s = TestServer::start();
    write_big_file(&s.root().join("huge.bin"), 64 << 20);
    s.write_file("a.txt", b"still here");
    let pid = s.pid();
    let baseline: Vec<u32> = children_of(pid).iter().map(|p| p.pid).collect();
    for round in 0..3 {
        let mut c = s.connect();
        c.send_request("GET", "/huge.bin", &[]);
        let mut got = 0usize;
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while got < 16 * 1024 && start.elapsed() < Duration::from_secs(10) {
            match c.stream.read_retrying(&mut buf) {
                Ok(0) => panic!("round {round}: server closed after {got} bytes"),
                Ok(n) => got += n,
                Err(e) => panic!("round {round}: read failed after {got} bytes: {e}"),
            }
        }
        assert!(got >= 16 * 1024, "round {round}: only {got} bytes");
        drop(c); // close with lots of unread data: the server gets EPIPE/RST
        let r = s.get("/a.txt");
        assert_eq!(r.status, 200, "round {round}: next connection");
        assert_eq!(r.body, b"still here");
        assert!(s.is_running(), "server died after round {round}");
    }
    // Children serving the dead clients must go away too.
    let running = || -> Vec<ProcInfo> {
        children_of(pid).into_iter().filter(|p| p.state != 'Z' && !baseline.contains(&p.pid)).collect()
    };
    assert!(
        poll_until(Duration::from_secs(10), || running().is_empty()),
        "children still running after their clients vanished: {:?}",
        running()
    );
}
