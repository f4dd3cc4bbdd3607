//! The listeners across a `SIGHUP`: connections queued on a listener the
//! reload removes are served, not reset; an address can be widened to the
//! wildcard on the same port (and narrowed back); a failed widening keeps
//! the old address; the reload's log line says what it did.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{Conn, TestServer, connect_refused, get_close, poll_until, proc_stat};

/// Waits for the reload's `configuration reloaded` line after index `from`.
fn reload_line(srv: &mut TestServer, from: usize) -> String {
    match srv.log().wait_line(from, Duration::from_secs(5), |l| l.contains("configuration reloaded")) {
        Some(l) => l,
        None => panic!(
            "no 'configuration reloaded' line within 5 s of SIGHUP (running: {}); stderr:\n{}",
            srv.is_running(),
            srv.stderr()
        ),
    }
}

fn reload_with(srv: &mut TestServer, listen: &[String]) -> String {
    let from = srv.log().len();
    srv.rewrite_config(listen, srv.root(), srv.config_lines());
    srv.signal(Signal::SIGHUP);
    reload_line(srv, from)
}

#[test]
fn queued_connections_on_a_removed_listener_are_served() {
    let mut srv = TestServer::builder()
        .name("reload_handover")
        .config_listen(&["127.0.0.1:0", "127.0.0.2:0"])
        .config("shutdown_grace = 2")
        .file("x.txt", b"handed over\n")
        .start();
    let removed = *srv.addrs().iter().find(|a| a.ip() == std::net::IpAddr::from([127, 0, 0, 2])).unwrap();
    srv.wait_serving();

    // Stopped, the parent accepts nothing: these wait in the kernel's queue.
    srv.signal(Signal::SIGSTOP);
    let pid = srv.pid();
    assert!(
        poll_until(Duration::from_secs(5), || proc_stat(pid).is_some_and(|s| s.state == 'T')),
        "the server did not stop on SIGSTOP"
    );
    let mut queued: Vec<Conn> = (0..6)
        .map(|_| {
            let mut c = Conn::connect(removed);
            c.send_request("GET", "/x.txt", &["Connection: close"]);
            c
        })
        .collect();
    let from = srv.log().len();
    srv.rewrite_config(&["127.0.0.1:0".to_string()], srv.root(), srv.config_lines());
    // The SIGHUP is pending when the parent resumes: its wait ends with the
    // signal, and the reload runs before any accept.
    srv.signal(Signal::SIGHUP);
    srv.signal(Signal::SIGCONT);
    for (i, c) in queued.iter_mut().enumerate() {
        let r = c.try_read_response(false);
        assert!(
            matches!(&r, Ok(Some(r)) if r.status == 200 && r.body == b"handed over\n"),
            "connection {i}, queued on {removed} when a reload removed it, got {r:?}; stderr:\n{}",
            srv.stderr()
        );
    }
    let line = reload_line(&mut srv, from);
    assert!(
        line.contains(&format!("removed {removed} (6 queued connection(s) handed over)")),
        "the reload line must say what was removed and handed over: {line:?}"
    );
    assert!(connect_refused(removed), "{removed} is still listening after its removal");
}

#[test]
fn widening_to_the_wildcard_on_the_same_port_and_back() {
    let mut srv =
        TestServer::builder().name("reload_widen").config("shutdown_grace = 2").file("x.txt", b"w\n").start();
    srv.wait_serving();
    let port = srv.addr().port();
    let narrow: SocketAddr = ([127, 0, 0, 1], port).into();
    let other: SocketAddr = ([127, 0, 0, 2], port).into();
    assert!(connect_refused(other), "{other} answers before widening");

    let line = reload_with(&mut srv, &[format!("0.0.0.0:{port}")]);
    assert!(!srv.stderr().contains("cannot listen on"), "widening failed; stderr:\n{}", srv.stderr());
    assert_eq!(get_close(other, "/x.txt").status, 200, "{other} is not served after widening to 0.0.0.0");
    assert_eq!(get_close(narrow, "/x.txt").status, 200, "{narrow} is not served after widening");
    assert!(
        line.contains(&format!("added 0.0.0.0:{port}")) && line.contains(&format!("removed {narrow}")),
        "the reload line must name the added and removed addresses: {line:?}; stderr:\n{}",
        srv.stderr()
    );

    let line = reload_with(&mut srv, &[narrow.to_string()]);
    assert!(
        line.contains(&format!("added {narrow}")) && line.contains(&format!("removed 0.0.0.0:{port}")),
        "the reload line must name the added and removed addresses: {line:?}"
    );
    assert_eq!(get_close(narrow, "/x.txt").status, 200, "{narrow} is not served after narrowing");
    assert!(connect_refused(other), "{other} still answers after narrowing back");
}

#[test]
fn widening_ipv6_loopback_to_the_wildcard() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let mut srv = TestServer::builder()
        .name("reload_widen6")
        .config_listen(&["[::1]:0"])
        .config("shutdown_grace = 2")
        .file("x.txt", b"w6\n")
        .start();
    let port = srv.addr().port();
    let line = reload_with(&mut srv, &[format!("[::]:{port}")]);
    assert!(
        line.contains(&format!("added [::]:{port}")) && line.contains(&format!("removed [::1]:{port}")),
        "the reload line must name the added and removed addresses: {line:?}; stderr:\n{}",
        srv.stderr()
    );
    assert_eq!(get_close(srv.addr(), "/x.txt").status, 200, "[::1]:{port} is not served after widening");
}

#[test]
fn failed_widening_keeps_the_old_address_and_says_so() {
    let mut srv = TestServer::builder()
        .name("reload_widen_fail")
        .config("shutdown_grace = 2")
        .file("x.txt", b"f\n")
        .start();
    srv.wait_serving();
    let port = srv.addr().port();
    // Another socket on the same port, another loopback address: the
    // wildcard cannot be bound beside it.
    let Ok(_blocker) = TcpListener::bind(("127.0.0.2", port)) else {
        eprintln!("skipped: cannot bind 127.0.0.2:{port}");
        return;
    };
    let line = reload_with(&mut srv, &[format!("0.0.0.0:{port}")]);
    assert!(
        line.contains("could not be bound")
            && line.contains(&format!("failed 0.0.0.0:{port}"))
            && line.contains(&format!("restored 127.0.0.1:{port}")),
        "the reload line must say the wildcard failed and the old address stayed: {line:?}; stderr:\n{}",
        srv.stderr()
    );
    assert_eq!(get_close(srv.addr(), "/x.txt").status, 200, "the old address is not served any more");
}

/// The usual spelling of a scoped IPv6 address names the interface. `::1`
/// ignores the scope, so `[::1%lo]` is a real address to listen on here.
#[test]
fn ipv6_scope_may_name_the_interface() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let srv = TestServer::builder()
        .name("scope_name")
        .config_listen(&["[::1%lo]:0"])
        .file("x.txt", b"lo\n")
        .start();
    assert!(srv.addr().is_ipv6(), "listening on {}", srv.addr());
    assert_eq!(get_close(srv.addr(), "/x.txt").status, 200);

    let bad = TestServer::builder().name("scope_bad").config_listen(&["[::1%nosuchif9]:0"]).spawn();
    let mut bad = bad;
    let status = bad.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| !s.success()), "an unknown interface must stop the start: {status:?}");
    // The exit can be seen before the thread draining stderr has read the
    // last line: wait for the end of the stream first.
    bad.log().wait_eof(Duration::from_secs(5));
    assert!(
        bad.stderr().contains("no network interface named \"nosuchif9\""),
        "the error must name the interface; stderr:\n{}",
        bad.stderr()
    );
}
