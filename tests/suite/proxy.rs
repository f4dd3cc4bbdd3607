//! Running behind a load balancer: the quiet health-check path, PROXY
//! protocol listeners, and forwarding fields from trusted proxies.

use std::time::Duration;

use crate::common::*;
use crate::systemd::Activated;

/// `health_path` is answered 200 before the document root is looked at (a
/// file of that name is not served) and writes no access-log line; any
/// other path is served and logged as before.
#[test]
fn health_path_answers_200_without_the_root_or_a_log_line() {
    let s = TestServer::builder().config("health_path = \"/healthz\"").start();
    s.write_file("healthz", b"the file, not the health check");
    let mut c = s.connect();
    c.send_request("GET", "/healthz", &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(!r.body_str().contains("the file"), "served the file: {}", r.body_str());
    c.send_request("HEAD", "/healthz?from=lb", &[]);
    assert_eq!(c.read_head_response().status, 200);
    c.send_request("GET", "/after", &["Connection: close"]);
    assert_eq!(c.read_response().status, 404);
    c.expect_closed();
    let lines = s.wait_for_lines(1, Duration::from_secs(5), |l| parse_clf(l).is_some());
    // The 404 is logged after both health checks on the same connection:
    // once it is there, a health-check line would be too.
    let logged: Vec<String> =
        s.lines().iter().filter_map(|l| parse_clf(l)).map(|c| c.request.to_string()).collect();
    assert_eq!(logged, ["GET /after HTTP/1.1"], "access log: {lines:?}");
}

/// Off by default: the path is an ordinary file path.
#[test]
fn health_path_is_off_by_default() {
    let s = TestServer::start();
    s.write_file("healthz", b"plain file");
    assert_eq!(s.get("/healthz").body_str(), "plain file");
}

/// A plain listener on 127.0.0.2 and a PROXY listener on 127.0.0.1, with
/// `trusted` as `trusted_proxies`.
fn proxy_server(trusted: &str, extra: &[&str]) -> TestServer {
    let mut b = TestServer::builder()
        .config_listen(&["127.0.0.2:0"])
        .proxy_listen(&["127.0.0.1:0"])
        .config(&format!("trusted_proxies = [{}]", toml_str(trusted)));
    for line in extra {
        b = b.config(line);
    }
    let s = b.start();
    s.write_file("a.txt", b"hello");
    s
}

fn proxy_addr(s: &TestServer) -> std::net::SocketAddr {
    *s.addrs().iter().find(|a| a.ip().to_string() == "127.0.0.1").expect("the PROXY listener")
}

/// The clients the access log names, in order.
fn logged_hosts(s: &TestServer, n: usize) -> Vec<String> {
    s.wait_for_lines(n, Duration::from_secs(5), |l| parse_clf(l).is_some());
    s.lines().iter().filter_map(|l| parse_clf(l)).map(|c| c.host.to_string()).collect()
}

const GET_A: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// A v2 header (PROXY command, TCP over IPv4) naming `src` as the client.
fn v2_header(src: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1, 0x12, 0x67, 0, 80]);
    h
}

/// v1 and v2 headers from a trusted proxy: the address they name is the
/// one logged, and the request sent in the same segment as the header is
/// answered (the bytes after the header are kept for the parser).
#[test]
fn proxy_header_v1_and_v2_name_the_logged_client() {
    let s = proxy_server("127.0.0.1/32", &[]);
    let mut c = Conn::connect(proxy_addr(&s));
    let mut bytes = b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n".to_vec();
    bytes.extend_from_slice(GET_A);
    c.send(&bytes);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "hello"));
    c.expect_closed();

    let mut c = Conn::connect(proxy_addr(&s));
    let mut bytes = v2_header([198, 51, 100, 9]);
    bytes.extend_from_slice(GET_A);
    c.send(&bytes);
    assert_eq!(c.read_response().status, 200);
    c.expect_closed();

    // A v2 LOCAL header (a proxy's own health check) names nobody: the peer is logged.
    let mut c = Conn::connect(proxy_addr(&s));
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    bytes.extend_from_slice(GET_A);
    c.send(&bytes);
    assert_eq!(c.read_response().status, 200);
    c.expect_closed();

    // The plain listener beside it takes plain requests.
    let mut c = Conn::connect(s.addrs()[0]);
    c.send(GET_A);
    assert_eq!(c.read_response().status, 200);
    c.expect_closed();

    assert_eq!(logged_hosts(&s, 4), ["192.0.2.7", "198.51.100.9", "127.0.0.1", "127.0.0.1"]);
}

/// An IPv4 client that a dual-stack proxy names as `::ffff:a.b.c.d` is
/// logged as that IPv4 address, from a v1 header as from a v2 one.
#[test]
fn proxy_header_ipv4_mapped_source_is_logged_as_ipv4() {
    let s = proxy_server("127.0.0.1", &[]);
    let mut c = Conn::connect(proxy_addr(&s));
    c.send(&[b"PROXY TCP6 ::ffff:9.9.9.8 ::1 4711 80\r\n".as_slice(), GET_A].concat());
    assert_eq!(c.read_response().status, 200);
    c.expect_closed();

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend_from_slice(&"::ffff:9.9.9.7".parse::<std::net::Ipv6Addr>().unwrap().octets());
    v2.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v2.extend_from_slice(&[0x12, 0x67, 0, 80]);
    let mut c = Conn::connect(proxy_addr(&s));
    c.send(&[v2.as_slice(), GET_A].concat());
    assert_eq!(c.read_response().status, 200);
    c.expect_closed();

    assert_eq!(logged_hosts(&s, 2), ["9.9.9.8", "9.9.9.7"]);
}

/// A v1 header split across reads is read whole, wherever it is split:
/// after the source port's space, what has come reads as an empty
/// destination port, and the connection must wait for the rest, not close.
#[test]
fn proxy_header_v1_split_after_a_separator_is_read_whole() {
    let s = proxy_server("127.0.0.1", &[]);
    let mut c = Conn::connect(proxy_addr(&s));
    c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 ");
    c.expect_open_and_quiet(Duration::from_millis(500));
    c.send(&[b"80\r\n".as_slice(), GET_A].concat());
    assert_eq!(c.read_response().status, 200);
    c.expect_closed();
    assert_eq!(logged_hosts(&s, 1), ["192.0.2.7"]);
}

/// From an address outside `trusted_proxies`, and for a connection that does
/// not start with a PROXY header, the connection is closed unanswered.
#[test]
fn proxy_listener_closes_untrusted_peers_and_headerless_connections() {
    let s = proxy_server("192.0.2.1", &[]);
    let mut c = Conn::connect(proxy_addr(&s));
    let mut bytes = b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n".to_vec();
    bytes.extend_from_slice(GET_A);
    c.send(&bytes);
    c.expect_closed();

    let s = proxy_server("127.0.0.1", &[]);
    let mut c = Conn::connect(proxy_addr(&s));
    c.send(GET_A);
    c.expect_closed();
    assert_eq!(logged_hosts(&s, 0), Vec::<String>::new());
}

/// A header that does not arrive within `proxy_timeout` closes the
/// connection then, long before `header_timeout`.
#[test]
fn proxy_header_has_its_own_short_deadline() {
    let s = proxy_server("127.0.0.1", &["proxy_timeout = 0.3", "header_timeout = 30"]);
    let mut c = Conn::connect(proxy_addr(&s));
    let started = std::time::Instant::now();
    c.send(b"PROXY TCP4 192.0.2.7");
    c.expect_closed();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "closed after {took:?}");
}

/// `proxy_listen` without `trusted_proxies` would close every connection:
/// the configuration is refused.
#[test]
fn proxy_listen_needs_trusted_proxies() {
    let dir = TempDir::new("proxy-untrusted");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "proxy_listen = [\"127.0.0.1:0\"]\n").unwrap();
    let out = run(server_command().arg("--check-config").arg("--config").arg(&cfg), Duration::from_secs(10));
    assert!(!out.success() && out.stderr.contains("trusted_proxies"), "{}", out.describe());
}

/// Under socket activation, a socket named `proxy` (`LISTEN_FDNAMES`) is a
/// PROXY listener: the client its header names is served and logged.
#[test]
fn inherited_proxy_socket_names_the_logged_client() {
    let trusted = ["trusted_proxies = [\"127.0.0.1\"]"];
    let mut srv = Activated::launch("proxy-inherited", "self", &[], Some("proxy"), &trusted);
    let mut c = Conn::connect(([127, 0, 0, 1], srv.port).into());
    let mut bytes = v2_header([192, 0, 2, 9]);
    bytes.extend_from_slice(b"GET /x.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.send(&bytes);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "activated\n"), "stderr:\n{}", srv.log.text());
    let line = srv.log.wait_line(0, Duration::from_secs(5), |l| parse_clf(l).is_some());
    let host = line.as_deref().and_then(parse_clf).map(|c| c.host.to_string());
    assert_eq!(host.as_deref(), Some("192.0.2.9"), "stderr:\n{}", srv.log.text());
    assert!(srv.running());
}

/// A reload that drops `trusted_proxies` while an inherited `proxy` socket
/// serves is refused, and the old configuration keeps serving.
#[test]
fn reload_keeps_trusted_proxies_for_an_inherited_proxy_socket() {
    let trusted = ["trusted_proxies = [\"127.0.0.1\"]"];
    let mut srv = Activated::launch("proxy-inherited-reload", "self", &[], Some("proxy"), &trusted);
    let up = srv.log.wait_line(0, STARTUP_TIMEOUT, |l| parse_listening_line(l).is_some());
    assert!(up.is_some(), "not started; stderr:\n{}", srv.log.text());
    let cfg = srv.dir.path().join("forkhttpd.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace(trusted[0], "")).unwrap();
    let from = srv.log.len();
    send_signal(srv.child.id(), "HUP");
    let line = srv.log.wait_line(from, Duration::from_secs(10), |l| l.contains("reload failed"));
    assert!(line.is_some_and(|l| l.contains("needs trusted_proxies")), "stderr:\n{}", srv.log.text());
    let mut c = Conn::connect(([127, 0, 0, 1], srv.port).into());
    let mut bytes = v2_header([192, 0, 2, 9]);
    bytes.extend_from_slice(b"GET /x.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.send(&bytes);
    assert_eq!(c.read_response().status, 200, "stderr:\n{}", srv.log.text());
    assert!(srv.running());
}

/// An inherited `proxy` socket without `trusted_proxies` would close every
/// connection: start-up and `--check-config` refuse it, naming the key.
#[test]
fn inherited_proxy_socket_needs_trusted_proxies() {
    for args in [&[] as &[&str], &["--check-config"]] {
        let mut srv = Activated::launch("proxy-inherited-untrusted", "self", args, Some("proxy"), &[]);
        let status = wait_child(&mut srv.child, Duration::from_secs(10));
        srv.log.wait_eof(Duration::from_secs(5));
        let text = srv.log.text();
        assert!(
            status.is_some_and(|s| !s.success()) && text.contains("needs trusted_proxies"),
            "{args:?}: {status:?}; stderr:\n{text}"
        );
    }
}

/// On a plain listener, `X-Forwarded-For` from a trusted proxy names the
/// logged client (the rightmost untrusted address); from anyone else it is
/// ignored. With `real_ip_header = "Forwarded"` only `Forwarded` is read.
#[test]
fn forwarding_fields_are_believed_only_from_trusted_proxies() {
    let s = TestServer::builder().config("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]").start();
    s.write_file("a.txt", b"a");
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &["X-Forwarded-For: 6.6.6.6, 203.0.113.5, 10.1.2.3"]);
    assert_eq!(c.read_response().status, 200);
    c.send_request("GET", "/a.txt", &["Forwarded: for=6.6.6.6", "Connection: close"]);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(logged_hosts(&s, 2), ["203.0.113.5", "127.0.0.1"]);

    let s = TestServer::builder()
        .config("trusted_proxies = [\"127.0.0.1\"]")
        .config("real_ip_header = \"Forwarded\"")
        .start();
    s.write_file("a.txt", b"a");
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &["Forwarded: for=\"[2001:db8::5]:4711\"", "X-Forwarded-For: 6.6.6.6"]);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(logged_hosts(&s, 1), ["2001:db8::5"]);

    let s = TestServer::builder().config("trusted_proxies = [\"192.0.2.1\"]").start();
    s.write_file("a.txt", b"a");
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &["X-Forwarded-For: 203.0.113.5"]);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(logged_hosts(&s, 1), ["127.0.0.1"]);
}

/// A `Forwarded` pair with a multibyte character across its fifth byte
/// (`abcé`) ends the walk, so the peer is logged; it used to abort the child
/// while logging. The requests pipelined behind it are answered and logged.
#[test]
fn forwarded_multibyte_pair_keeps_the_connection_and_its_log() {
    let s = TestServer::builder()
        .config("trusted_proxies = [\"127.0.0.1\"]")
        .config("real_ip_header = \"Forwarded\"")
        .start();
    s.write_file("a.txt", b"a");
    let request = |forwarded: &str, close: &str| {
        format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nForwarded: {forwarded}\r\n{close}\r\n")
    };
    let pipelined = [
        request("abcé", ""),
        request("for=192.0.2.60", ""),
        request("abcé;for=192.0.2.61", "Connection: close\r\n"),
    ]
    .concat();
    let mut c = s.connect();
    c.send(pipelined.as_bytes());
    for i in 0..3 {
        assert_eq!(c.read_response().status, 200, "response {i}");
    }
    c.expect_closed();
    assert_eq!(logged_hosts(&s, 3), ["127.0.0.1", "192.0.2.60", "192.0.2.61"]);
}
