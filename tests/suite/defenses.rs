//! Defaults that defend: deferred accept, the per-address cap.

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use forkhttpd::listener::DEFER_ACCEPT_SECS;
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
/// IPv4 address it is, not as `::ffff:127.0.0.1`: 16 connections through
/// an IPv4 listener and 16 through a dual-stack one fill 127.0.0.1's 32,
/// so a 33rd through either gets the parent's `503`, while 127.0.0.2 is
/// still served through the dual-stack socket.
#[test]
fn ipv4_mapped_clients_count_as_ipv4() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("skipped: no IPv6 on this machine (cannot bind [::]:0)");
        return;
    }
    if missing_tool("python3") {
        return;
    }
    let dir = TempDir::new("defenses-mapped");
    let root = make_root(&dir.path().join("root"), &[("a.txt", b"mapped")]);
    let cfg = dir.path().join("forkhttpd.toml");
    std::fs::write(&cfg, config_text(&[] as &[&str], &root, &["error_log = \"stderr\""])).unwrap();
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
    let mut other = connect_from([127, 0, 0, 2], mapped);
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

/// `TCP_DEFER_ACCEPT` is time-bounded: a connection that never sends a
/// byte is not held forever. The kernel queues it for `accept` once the
/// defer period (`DEFER_ACCEPT_SECS`, 10 s, rounded up to the SYN-ACK
/// retransmission steps 1+2+4+8 = 15 s) has passed; then the child's
/// `header_timeout` closes it. So it costs no fork for the defer period and
/// is closed by the server well within 30 s.
#[test]
fn silent_connection_is_closed_in_the_end() {
    let deferred = Duration::from_secs(DEFER_ACCEPT_SECS.into());
    let s = TestServer::builder().config("header_timeout = 2").start();
    let mut silent = s.connect();
    let (got, closed) = silent.read_until_close(Duration::from_secs(35));
    let Some(after) = closed else {
        panic!("a silent connection was still open after 35 s; server stderr: {:?}", s.lines())
    };
    assert!(got.is_empty(), "a silent connection was sent {:?}", String::from_utf8_lossy(&got));
    assert!(
        after >= deferred && after < Duration::from_secs(30),
        "a silent connection was closed after {after:?}: expected after the defer period \
         ({deferred:?}, rounded to 15 s) plus header_timeout (2 s)"
    );
}
