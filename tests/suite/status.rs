//! The status page and metrics (`status_path`): who may read them, what
//! they say, and the scoreboard behind them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::common::*;

const PATH: &str = "/server-status";

fn status_server(extra: &[&str]) -> TestServer {
    let mut b = TestServer::builder()
        .config(&format!("status_path = \"{PATH}\""))
        .config("status_allow = [\"127.0.0.1\"]")
        .file("a.txt", b"file A\n");
    for line in extra {
        b = b.config(line);
    }
    b.start()
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 listener expected"),
    }
}

/// The value of the series `series` (name and labels, as written) in a
/// Prometheus text body.
pub fn metric(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
}

/// The metrics, read on `c` (kept alive).
fn metrics_on(c: &mut Conn) -> String {
    c.send_request("GET", &format!("{PATH}?format=prometheus"), &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    r.body_str()
}

/// From an address outside `status_allow` the path is an ordinary one
/// (404: no such file); from an allowed one, the page, uncached.
#[test]
fn only_allowed_addresses_get_the_page() {
    let s = status_server(&[]);
    let dst = v4(s.addr());
    let mut outsider = connect_from(Ipv4Addr::new(127, 0, 0, 2), dst).expect("connect from 127.0.0.2");
    outsider.send_request("GET", PATH, &["Connection: close"]);
    let r = outsider.read_response();
    assert_eq!(r.status, 404, "from 127.0.0.2: {r:?}");
    assert!(!r.body_str().contains("Scoreboard"));
    let mut outsider = connect_from(Ipv4Addr::new(127, 0, 0, 2), dst).unwrap();
    outsider.send_request("GET", &format!("{PATH}?format=prometheus"), &["Connection: close"]);
    assert_eq!(outsider.read_response().status, 404);

    let mut insider = connect_from(Ipv4Addr::LOCALHOST, dst).unwrap();
    insider.send_request("GET", PATH, &["Connection: close"]);
    let r = insider.read_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let page = r.body_str();
    assert!(page.contains("<h1>forkhttpd status</h1>") && page.contains("Scoreboard"), "{page}");
    // HEAD: the head alone.
    let mut c = s.connect();
    c.send_request("HEAD", PATH, &["Connection: close"]);
    let r = c.read_head_response();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

/// Off by default: the path is the site's.
#[test]
fn off_by_default() {
    let s = TestServer::builder().start();
    assert_eq!(s.get(PATH).status, 404);
    assert_eq!(s.get(&format!("{PATH}?format=prometheus")).status, 404);
}

/// The counters move by exactly what the test did.
#[test]
fn counters_count_what_was_done() {
    let s = status_server(&["max_children_per_ip = 0"]);
    let mut watcher = s.connect();
    let before = metrics_on(&mut watcher);
    let mut c = s.connect();
    let mut body_bytes = 0;
    for _ in 0..3 {
        c.send_request("GET", "/missing", &[]);
        assert_eq!(c.read_response().status, 404);
    }
    for _ in 0..2 {
        c.send_request("GET", "/a.txt", &[]);
        let r = c.read_response();
        assert_eq!(r.status, 200);
        body_bytes += r.body.len();
    }
    drop(c);
    for _ in 0..4 {
        assert_eq!(get_close(s.addr(), "/a.txt").status, 200);
    }
    // A child counts a response once it is sent, so the last may land
    // just after its client has read it: read again until it has. Each
    // metrics response before the last is a 2xx too.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut reads = 1;
    let after = loop {
        let after = metrics_on(&mut watcher);
        let twos = metric(&after, "forkhttpd_requests_total{class=\"2xx\"}");
        if twos - metric(&before, "forkhttpd_requests_total{class=\"2xx\"}") >= 6 + reads
            || Instant::now() > deadline
        {
            break after;
        }
        reads += 1;
    };
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(delta("forkhttpd_requests_total{class=\"4xx\"}"), 3);
    // The 2xx: two and four files, and the metrics responses before this one.
    assert_eq!(delta("forkhttpd_requests_total{class=\"2xx\"}"), 6 + reads);
    assert_eq!(delta("forkhttpd_requests_total{class=\"5xx\"}"), 0);
    assert_eq!(delta("forkhttpd_connections_accepted_total"), 5);
    assert!(delta("forkhttpd_sent_bytes_total") > body_bytes as u64 + 6 * 7);
    assert_eq!(metric(&after, "forkhttpd_generation"), 1);
    // The watcher's own child, and any closing child not reaped yet.
    assert!(metric(&after, "forkhttpd_children{state=\"sending\"}") >= 1, "{after}");
    for line in ["# TYPE forkhttpd_requests_total counter", "# TYPE forkhttpd_children gauge"] {
        assert!(after.contains(line), "{line} missing:\n{after}");
    }
}

/// A reload counts, the generation goes up, and a new `max_children`
/// shows (a new board: the slots of children forked before it still read).
#[test]
fn a_reload_counts_and_keeps_the_old_childrens_slots() {
    let mut s = status_server(&["max_children = 8"]);
    let (mut held, _) = get_keepalive(s.addr(), "/a.txt?before-reload");
    let extra = [
        format!("status_path = \"{PATH}\""),
        "status_allow = [\"127.0.0.1\"]".to_string(),
        "max_children = 9".to_string(),
    ];
    s.rewrite_config(s.config_listen(), s.root(), &extra);
    s.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = get_close(s.addr(), &format!("{PATH}?format=prometheus")).body_str();
        if metric(&body, "forkhttpd_reloads_total") == 1 || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(metric(&body, "forkhttpd_reloads_total"), 1);
    assert_eq!(metric(&body, "forkhttpd_generation"), 2);
    assert_eq!(metric(&body, "forkhttpd_max_children"), 9);
    let page = get_close(s.addr(), PATH).body_str();
    assert!(page.contains("GET /a.txt?before-reload HTTP/1.1"), "the old board's slot:\n{page}");
    held.send_request("GET", "/a.txt", &["Connection: close"]);
    assert_eq!(held.read_response().status, 200);
}

/// The row of `page`'s scoreboard whose request line is `line`.
fn row<'a>(page: &'a str, line: &str) -> &'a str {
    page.split("<tr>").find(|r| r.contains(&format!("<code>{line}</code>"))).unwrap_or_else(|| {
        panic!("no scoreboard row for {line:?} in:\n{page}");
    })
}

/// A held keep-alive connection shows idle with its last request line, a
/// child stalled in a response shows sending, one with half a head
/// reading; and what a client sent is escaped.
#[test]
fn the_scoreboard_shows_each_childs_state_and_request() {
    let big = vec![b'x'; 16 << 20];
    let s = status_server(&["max_children_per_ip = 0"]);
    s.write_file("big.bin", &big);
    let (_idle, _) = get_keepalive(s.addr(), "/a.txt?held=1&x=%3Cb%3E");
    let mut stalled = s.connect();
    // Not read: the child waits for room in the socket, mid-response.
    stalled.send_request("GET", "/big.bin", &[]);
    let mut half = s.connect();
    half.send(b"GET /half HTTP/1.1\r\nHo");
    std::thread::sleep(Duration::from_millis(300));
    let page = get_close(s.addr(), PATH).body_str();
    let idle = row(&page, "GET /a.txt?held=1&amp;x=%3Cb%3E HTTP/1.1");
    assert!(idle.contains(">idle<") && idle.contains("127.0.0.1") && idle.contains("default site"), "{idle}");
    let sending = row(&page, "GET /big.bin HTTP/1.1");
    assert!(sending.contains(">sending<"), "{sending}");
    let reading = page.split("<tr>").filter(|r| r.contains(">reading<")).count();
    assert!(reading >= 1, "the half head's child reads:\n{page}");
    let metrics = get_close(s.addr(), &format!("{PATH}?format=prometheus")).body_str();
    assert_eq!(metric(&metrics, "forkhttpd_children{state=\"idle\"}"), 1, "{metrics}");
    assert!(metric(&metrics, "forkhttpd_children{state=\"sending\"}") >= 1);
    assert_eq!(metric(&metrics, "forkhttpd_children{state=\"reading\"}"), 1);
}
