//! Defaults that defend: deferred accept, the per-address cap, the
//! daemon log rate-limited against a client that crashes children.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

use forkhttpd::listener::DEFER_ACCEPT_SECS;
use nix::sys::signal::Signal;

use crate::common::*;

/// A client that connects and sends nothing costs no fork: the listener
/// has `TCP_DEFER_ACCEPT`, so the kernel does not even queue it for
/// `accept` until data arrives or the defer period ends; then it is served
/// as usual.
#[test]
fn silent_connection_costs_no_fork() {
    let s = TestServer::start();
    s.write_file("a.txt", b"deferred");
    let connected = Instant::now();
    let mut silent: Vec<Conn> = (0..3).map(|_| s.connect()).collect();
    // Measured from before the connects, so a slow test thread can only
    // make the fork look later, never earlier, than it was. (The kernel's
    // retransmission rounds make the period at most about twice as long.)
    let forked =
        poll_until(Duration::from_secs(u64::from(DEFER_ACCEPT_SECS) * 2 + 3), || !s.children().is_empty());
    let after = connected.elapsed();
    assert!(forked, "a silent connection was never accepted (the defer period is {DEFER_ACCEPT_SECS} s)");
    assert!(
        after >= Duration::from_millis(u64::from(DEFER_ACCEPT_SECS) * 1000 - 100),
        "a connection that sent nothing got a child after {after:?}, within the defer period \
         ({DEFER_ACCEPT_SECS} s): {:?}",
        s.children()
    );
    let c = &mut silent[0];
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"deferred");
}

/// The server's IPv4 address, to connect to from another loopback address.
fn v4(addr: SocketAddr) -> SocketAddrV4 {
    let SocketAddr::V4(a) = addr else { panic!("{addr} is not IPv4") };
    a
}

/// Connects to `to` from 127.0.0.2.
fn from_other_address(to: SocketAddr) -> Conn {
    connect_from(Ipv4Addr::new(127, 0, 0, 2), v4(to)).expect("connect from 127.0.0.2 (bind before connect)")
}

/// Under pressure one address holds at most half the server: with the
/// default cap (32, from half of `max_children` busy), 100 connections from
/// 127.0.0.1 to a `max_children = 64` server get 32 children, and the other
/// 68 a `503` from the parent, while another address is still served.
#[test]
fn one_address_holds_at_most_half_of_a_busy_server() {
    let s = TestServer::builder().config("max_children = 64").config("keepalive_timeout = 60").start();
    s.write_file("a.txt", b"capped");
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for i in 0..100 {
        let mut c = s.connect();
        c.send_request("GET", "/a.txt", &[]);
        let r = c.read_response();
        match r.status {
            200 => held.push(c),
            503 => {
                assert!(r.header("Retry-After").is_some(), "connection {i}: {r:?}");
                refused.push(r);
            }
            _ => panic!("connection {i} from 127.0.0.1: {r:?}"),
        }
    }
    assert_eq!(
        (held.len(), refused.len()),
        (32, 68),
        "of 100 connections from one address to a 64-child server, (served, refused)"
    );
    assert_eq!(s.children().len(), 32, "children serving 127.0.0.1");
    // The parent logs its own 503, with the body it sent and no request
    // line (it never reads the request).
    let logged = s.wait_for_lines(68, Duration::from_secs(5), |l| {
        l.starts_with("127.0.0.1 - - [") && l.contains(&format!("\"\" 503 {} ", refused[0].body.len()))
    });
    assert_eq!(logged.len(), 68, "access-log lines for the parent's 503s: {:?}", s.lines());
    let mut other = from_other_address(s.addr());
    other.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = other.read_response();
    assert_eq!(r.status, 200, "another address: {r:?}");
    drop(held);
}

/// While the server has room, one address may hold more children than
/// `max_children_per_ip`: an office or a carrier behind one address, or a
/// benchmark, is not refused. (2 here, and 10 held: the server's default
/// 512 children are far from busy.)
#[test]
fn per_address_cap_spares_a_server_with_room() {
    let s = TestServer::builder().config("max_children_per_ip = 2").config("keepalive_timeout = 60").start();
    s.write_file("a.txt", b"room");
    let held: Vec<Conn> = (0..10)
        .map(|i| {
            let mut c = s.connect();
            c.send_request("GET", "/a.txt", &[]);
            let r = c.read_response();
            assert_eq!(r.status, 200, "connection {i} from one address, with room to spare: {r:?}");
            c
        })
        .collect();
    assert_eq!(s.children().len(), 10, "children serving 127.0.0.1");
    drop(held);
}

/// `ab -k -c 100 -n 20000` from one address, with the default limits: 100
/// keep-alive connections open at once, 20,000 requests in all, and not
/// one `503` (nor anything but a `200`).
#[test]
fn a_benchmark_from_one_address_is_not_refused() {
    const CONNECTIONS: usize = 100;
    const REQUESTS: usize = 20_000;
    // Only so that on a slow machine the first connections are not closed
    // idle (5 s by default) while the last ones are opened.
    let s = TestServer::builder().config("keepalive_timeout = 60").start();
    s.write_file("a.txt", b"benchmark");
    let addr = s.addr();
    // All 100 open and served at once before the rest of the load, so that
    // 100 children from one address are live together.
    let conns: Vec<(usize, Conn, u16)> = (0..CONNECTIONS)
        .map(|i| {
            let mut c = Conn::connect(addr);
            c.send_request("GET", "/a.txt", &[]);
            let status = c.read_response().status;
            (i, c, status)
        })
        .collect();
    let statuses: Vec<(usize, u16)> = thread::scope(|scope| {
        let workers: Vec<_> = conns
            .into_iter()
            .map(|(i, mut c, first)| {
                scope.spawn(move || {
                    let mut seen = vec![(i, first)];
                    // A refused connection is closed: nothing more goes on it.
                    for _ in 1..REQUESTS / CONNECTIONS {
                        if seen.last().is_some_and(|&(_, st)| st != 200) {
                            break;
                        }
                        c.send_request("GET", "/a.txt", &[]);
                        seen.push((i, c.read_response().status));
                    }
                    seen
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a client thread panicked")).collect()
    });
    let bad: Vec<&(usize, u16)> = statuses.iter().filter(|(_, st)| *st != 200).collect();
    assert!(
        bad.is_empty(),
        "{} of {} requests were not answered 200 (connection, status): {:?}",
        bad.len(),
        statuses.len(),
        &bad[..bad.len().min(10)]
    );
    assert_eq!(statuses.len(), REQUESTS);
}

/// Execs argv[1:] with two listening sockets passed by socket activation:
/// fd 3 on 127.0.0.1 (IPv4) and fd 4 a dual-stack `[::]` socket
/// (`IPV6_V6ONLY` off, as systemd's `BindIPv6Only=both` makes it), whose
/// IPv4 clients show up as `::ffff:a.b.c.d`. The server logs both as
/// `listening on`.
const PY_DUAL_STACK: &str = "import os,socket,sys
v4=socket.socket(socket.AF_INET)
v4.bind(('127.0.0.1',0))
v4.listen(128)
v6=socket.socket(socket.AF_INET6)
v6.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)
v6.bind(('::',0))
v6.listen(128)
a,b=os.dup(v4.fileno()),os.dup(v6.fileno())
os.dup2(a,3)
os.dup2(b,4)
os.environ['LISTEN_FDS']='2'
os.environ['LISTEN_PID']=str(os.getpid())
os.execv(sys.argv[1],sys.argv[1:])
";

/// An IPv4 client of a dual-stack socket is counted (and logged) as the
/// IPv4 address it is, not as `::ffff:127.0.0.1`: on a `max_children = 64`
/// server, 16 connections through an IPv4 listener and 16 through a
/// dual-stack one fill 127.0.0.1's 32 and put the server at half busy, so a
/// 33rd through either gets the parent's `503`, while 127.0.0.2 is still
/// served through the dual-stack socket.
#[test]
fn ipv4_mapped_clients_count_as_ipv4() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        crate::common::skip("no IPv6 on this machine (cannot bind [::]:0)");
        return;
    }
    if missing_tool("python3") {
        return;
    }
    let dir = TempDir::new("defenses-mapped");
    let root = make_root(&dir.path().join("root"), &[("a.txt", b"mapped")]);
    let cfg = dir.path().join("forkhttpd.toml");
    std::fs::write(
        &cfg,
        config_text(
            &[] as &[&str],
            &root,
            &["error_log = \"stderr\"", "max_children = 64", "keepalive_timeout = 60"],
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("python3");
    scrub_env(&mut cmd).args(["-c", PY_DUAL_STACK, BIN, "--config"]).arg(&cfg).current_dir(dir.path());
    let mut p = Proc::spawn(&mut cmd);
    let addrs = p.wait_listeners(0, 2);
    let v4 = *addrs.iter().find(|a| a.is_ipv4()).unwrap_or_else(|| panic!("no IPv4 listener in {addrs:?}"));
    let dual = addrs.iter().find(|a| a.is_ipv6()).unwrap_or_else(|| panic!("no IPv6 listener in {addrs:?}"));
    // The dual-stack socket reached over IPv4 on loopback.
    let mapped = SocketAddr::from(([127, 0, 0, 1], dual.port()));

    let held: Vec<Conn> = (0..32)
        .map(|i| {
            let (c, r) = get_keepalive(if i % 2 == 0 { v4 } else { mapped }, "/a.txt");
            assert_eq!(r.body, b"mapped", "connection {i}");
            c
        })
        .collect();
    for to in [mapped, v4] {
        let mut over = Conn::connect(to);
        over.send_request("GET", "/a.txt", &["Connection: close"]);
        let r = over.read_response();
        assert_eq!(r.status, 503, "a 33rd connection from 127.0.0.1, to {to}: {r:?}");
    }
    let mut other = from_other_address(mapped);
    other.send_request("GET", "/a.txt", &["Connection: close"]);
    let r = other.read_response();
    assert_eq!(r.status, 200, "127.0.0.2 through the dual-stack socket: {r:?}");
    let served = p.log.wait_line(0, Duration::from_secs(3), |l| l.starts_with("127.0.0.2 - - ["));
    assert!(served.is_some(), "no access-log line for 127.0.0.2 as IPv4: {:?}", p.lines());
    let lines = p.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("::ffff:")),
        "a mapped address was logged as IPv6: {lines:?}"
    );
    drop(held);
}

/// A client that connects and never sends a byte is closed within
/// `header_timeout` plus 2 s of its connect, the kernel's deferred accept
/// included (the defer period is one SYN-ACK retransmission round, about
/// 1 s; then the child's `header_timeout` runs), and not before
/// `header_timeout`. Seen from a bare socket: the time from `connect` to
/// the end of the stream (or a reset), with nothing received.
#[test]
fn silent_connection_is_closed_within_header_timeout() {
    let header_timeout = Duration::from_secs(1);
    let allowed = header_timeout + Duration::from_secs(2);
    let s = TestServer::builder().config(&format!("header_timeout = {}", header_timeout.as_secs())).start();
    let start = Instant::now();
    let mut silent = std::net::TcpStream::connect(s.addr()).expect("connect");
    // Read on well past `allowed`, so that a failure says how long it took.
    let give_up = start + Duration::from_secs(30);
    let mut got = Vec::new();
    let closed_after = loop {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        silent.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 512];
        match silent.read_retrying(&mut buf) {
            Ok(0) => break Some(start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Some(start.elapsed()),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read from a silent connection: {e}"),
        }
    };
    let Some(after) = closed_after else {
        panic!("a silent connection was still open after 30 s; server stderr: {:?}", s.lines())
    };
    assert!(got.is_empty(), "a silent connection was sent {:?}", String::from_utf8_lossy(&got));
    assert!(
        after >= header_timeout && after <= allowed,
        "a silent connection was closed {after:?} after its connect: expected within header_timeout \
         ({header_timeout:?}) plus 2 s, the deferred accept included"
    );
}

/// A child killed by a signal (a crash a client's request can cause each
/// time) is warned about at most once a minute, as the other
/// client-caused warnings are: six children killed in a row give one
/// "killed by" line, not six.
#[test]
fn children_killed_by_a_signal_are_warned_about_once() {
    const KILLED: usize = 6;
    let s = TestServer::builder().config("keepalive_timeout = 60").start();
    s.write_file("a.txt", b"crash");
    for i in 0..KILLED {
        let (_conn, _) = get_keepalive(s.addr(), "/a.txt");
        let kids = wait_children(s.pid(), Duration::from_secs(5), |k| k.len() == 1);
        assert_eq!(kids.len(), 1, "round {i}: the one serving child");
        // SIGALRM ends a child (its default action) without a core dump
        // (SIGUSR2 is the parent's ask to give an idle connection back).
        signal(kids[0].pid, Signal::SIGALRM);
        // Gone from the process table: reaped by the parent, which logs then.
        let left = wait_children(s.pid(), Duration::from_secs(5), <[ProcInfo]>::is_empty);
        assert!(left.is_empty(), "round {i}: child {} not reaped", kids[0].pid);
    }
    let killed = |l: &str| l.contains("killed by SIGALRM");
    let first = s.wait_for_lines(1, Duration::from_secs(5), killed);
    assert_eq!(first.len(), 1, "no warning for a child killed by a signal: {:?}", s.lines());
    let all: Vec<String> = s.lines().into_iter().filter(|l| killed(l)).collect();
    assert_eq!(all.len(), 1, "{KILLED} children killed in a row: expected one warning, got {all:?}");
}
