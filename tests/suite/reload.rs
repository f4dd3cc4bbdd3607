//! The listeners across a `SIGHUP`: connections queued on a listener the
//! reload removes are served, not reset; an address can be widened to the
//! wildcard on the same port (and narrowed back); a failed widening keeps
//! the old address; the reload's log line says what it did.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{
    Conn, TempDir, TestServer, connect_refused, get_close, line_containing, poll_until, proc_stat, toml_str,
};

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
        crate::common::skip("no IPv6 loopback");
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
        crate::common::skip(&format!("cannot bind 127.0.0.2:{port}"));
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
        crate::common::skip("no IPv6 loopback");
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

/// What a reload does not apply is said, naming the key: a new `pid_file`,
/// and `error_log` moved from a file to stderr (the warning goes where
/// daemon messages still go: the file).
#[test]
fn reload_warns_about_pid_file_and_error_log_changes_it_does_not_apply() {
    let dir = TempDir::new("reload_restart_keys");
    let pid = |name: &str| format!("pid_file = {}", toml_str(dir.path().join(name).to_str().unwrap()));
    let mut srv = TestServer::builder().config(&pid("a.pid")).start();
    let from = srv.log().len();
    srv.rewrite_config(&srv.bound_listen(), srv.root(), &[pid("b.pid")]);
    srv.signal(Signal::SIGHUP);
    let line = reload_line(&mut srv, from);
    let warned = srv.log().wait_line(from, Duration::from_secs(5), |l| l.contains("pid_file changed"));
    assert!(
        warned.is_some_and(|l| l.contains("a.pid") && l.contains("b.pid") && l.contains("restart")),
        "no warning about the pid_file change ({line}); stderr:\n{}",
        srv.stderr()
    );

    let error_log = dir.path().join("error.log");
    let file = format!("error_log = {}", toml_str(error_log.to_str().unwrap()));
    let mut srv = TestServer::builder().config(&file).start();
    srv.rewrite_config(&srv.bound_listen(), srv.root(), &["error_log = \"stderr\"".to_string()]);
    srv.signal(Signal::SIGHUP);
    let warned = || line_containing(&error_log, "error_log changed");
    assert!(
        poll_until(Duration::from_secs(5), || warned().is_some()),
        "no warning about the error_log change in {}: {:?}",
        error_log.display(),
        std::fs::read_to_string(&error_log)
    );
    let line = warned().unwrap();
    assert!(line.contains("\"stderr\"") && line.contains("restart"), "{line}");
}

/// A reload whose `proxy_listen` names a `listen` socket another way
/// (`localhost:P` beside the bound `127.0.0.1:P`) is refused: the old
/// configuration stays, and the listener stays plain.
#[test]
fn reload_refuses_a_proxy_listen_naming_a_listen_socket() {
    let mut srv =
        TestServer::builder().config("trusted_proxies = [\"127.0.0.1\"]").file("x.txt", b"x\n").start();
    let from = srv.log().len();
    let proxy = format!("localhost:{}", srv.addr().port());
    let extra =
        [format!("proxy_listen = [{}]", toml_str(&proxy)), "trusted_proxies = [\"127.0.0.1\"]".into()];
    srv.rewrite_config(&srv.bound_listen(), srv.root(), &extra);
    srv.signal(Signal::SIGHUP);
    let failed = srv.log().wait_line(from, Duration::from_secs(5), |l| l.contains("reload failed"));
    assert!(
        failed.is_some_and(|l| l.contains("proxy_listen") && l.contains(&proxy)),
        "the reload must fail naming proxy_listen; stderr:\n{}",
        srv.stderr()
    );
    assert_eq!(get_close(srv.addr(), "/x.txt").status, 200, "the plain listener no longer serves plain HTTP");
}
