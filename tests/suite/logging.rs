//! Access log in Combined Log Format: stderr, file, and off.

use std::collections::HashSet;
use std::fs;
use std::thread;
use std::time::Duration;

use crate::common::*;

fn is_clf(line: &str) -> bool {
    parse_clf(line).is_some()
}

fn find_line<'a>(lines: &'a [String], request: &str) -> Option<&'a String> {
    lines.iter().find(|l| parse_clf(l).is_some_and(|c| c.request == request))
}

#[test]
fn access_log_line_per_request_to_stderr() {
    let s = TestServer::start();
    s.write_file("a.txt", b"0123456789");
    let mut c = s.connect();
    c.send_request(
        "GET",
        "/a.txt?x=1",
        &["Referer: http://example.test/from", "User-Agent: forkhttpd-tests/1.0 (log check)"],
    );
    let r1 = c.read_response();
    assert_eq!(r1.status, 200);
    c.send_request("GET", "/missing.txt", &[]);
    let r2 = c.read_response();
    assert_eq!(r2.status, 404);
    c.send_request("HEAD", "/a.txt", &["Connection: close"]);
    let r3 = c.read_head_response();
    assert_eq!(r3.status, 200);
    c.expect_closed();

    let lines = s.wait_for_lines(3, Duration::from_secs(5), is_clf);
    assert_eq!(lines.len(), 3, "expected exactly 3 access-log lines; stderr was:\n{}", s.lines().join("\n"));

    let l1 =
        parse_clf(find_line(&lines, "GET /a.txt?x=1 HTTP/1.1").expect("line for GET /a.txt?x=1")).unwrap();
    assert_eq!(l1.host, "127.0.0.1");
    assert_eq!(l1.ident, "-");
    assert_eq!(l1.user, "-");
    assert_eq!(l1.status, 200);
    assert_eq!(l1.bytes, "10");
    assert_eq!(l1.referer, "http://example.test/from");
    assert_eq!(l1.user_agent, "forkhttpd-tests/1.0 (log check)");
    let t = parse_clf_time(&l1.time).unwrap();
    assert!((t - now_secs()).abs() <= 300, "log time {:?} is off", l1.time);

    let l2 = parse_clf(find_line(&lines, "GET /missing.txt HTTP/1.1").expect("line for the 404")).unwrap();
    assert_eq!(l2.status, 404);
    assert_eq!(l2.bytes, r2.body.len().to_string(), "bytes of the 404 page");
    assert_eq!(l2.referer, "-");
    assert_eq!(l2.user_agent, "-");

    let l3 = parse_clf(find_line(&lines, "HEAD /a.txt HTTP/1.1").expect("line for HEAD")).unwrap();
    assert_eq!(l3.status, 200);
    assert!(l3.bytes == "0" || l3.bytes == "-", "HEAD sends no body, logged bytes {:?}", l3.bytes);
}

#[test]
fn quotes_in_user_agent_do_not_break_the_log_line() {
    let s = TestServer::start();
    s.write_file("a.txt", b"x");
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &["User-Agent: evil\" 200 999 \"injected", "Connection: close"]);
    assert_eq!(c.read_response().status, 200);
    let lines = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("GET /a.txt HTTP/1.1"));
    assert_eq!(lines.len(), 1, "stderr:\n{}", s.lines().join("\n"));
    let parsed =
        parse_clf(&lines[0]).unwrap_or_else(|| panic!("log line is not well-formed CLF: {:?}", lines[0]));
    assert_eq!(parsed.status, 200);
    assert_eq!(parsed.bytes, "1");
    assert!(parsed.user_agent.contains("evil"));
    assert!(parsed.user_agent.contains("injected"));
}

#[test]
fn access_log_file_concurrent_lines_are_not_interleaved() {
    let tmp = TempDir::new("access_log_file");
    let log_path = tmp.path().join("access.log");
    let s = TestServer::builder()
        .config(&format!("access_log = {}", toml_str(log_path.to_str().unwrap())))
        .config("max_children_per_ip = 0")
        .start();
    s.write_file("a.txt", b"logged file");
    let addr = s.addr();
    // Long request lines, referers and user agents (each below what the
    // server may truncate in the log) make each line ~1.5 KB, so a line
    // written with more than one write() would very likely interleave.
    let pad = "x".repeat(400);
    let query = "q".repeat(600);
    let referer = format!("Referer: http://example.test/{}", "r".repeat(400));
    thread::scope(|scope| {
        for t in 0..50 {
            let pad = &pad;
            let query = &query;
            let referer = &referer;
            scope.spawn(move || {
                let mut c = Conn::connect(addr);
                for i in 0..10 {
                    let ua = format!("User-Agent: client-{t}-req-{i}-{pad}");
                    let mut extra: Vec<&str> = vec![ua.as_str(), referer.as_str()];
                    if i == 9 {
                        extra.push("Connection: close");
                    }
                    c.send_request("GET", &format!("/a.txt?{query}"), &extra);
                    let r = c.read_response();
                    assert_eq!(r.status, 200);
                    assert_eq!(r.body, b"logged file");
                }
            });
        }
    });

    let read_lines = || -> Vec<String> {
        fs::read_to_string(&log_path).unwrap_or_default().lines().map(str::to_string).collect()
    };
    poll_until(Duration::from_secs(10), || read_lines().len() >= 500);
    thread::sleep(Duration::from_millis(300));
    let text = fs::read_to_string(&log_path).expect("access log file exists");
    assert!(text.ends_with('\n'), "last log line is not terminated");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 500, "access log line count");
    let mut seen = HashSet::new();
    for (n, line) in lines.iter().enumerate() {
        let p = parse_clf(line).unwrap_or_else(|| {
            panic!("line {} is not well-formed CLF: {:?}", n + 1, &line[..line.len().min(300)])
        });
        assert_eq!(p.request, format!("GET /a.txt?{query} HTTP/1.1"));
        assert_eq!(p.referer, referer["Referer: ".len()..]);
        assert_eq!(p.status, 200);
        assert_eq!(p.bytes, "11");
        let id = p
            .user_agent
            .strip_suffix(pad.as_str())
            .unwrap_or_else(|| panic!("line {}: user agent mangled", n + 1))
            .to_string();
        assert!(seen.insert(id.clone()), "duplicate line for {id}");
    }
    assert_eq!(seen.len(), 500);
    // Nothing of the access log went to stderr.
    let on_stderr = s.lines().iter().filter(|l| is_clf(l)).count();
    assert_eq!(on_stderr, 0, "access lines also written to stderr");
}

#[test]
fn access_log_off_writes_nothing() {
    let s = TestServer::builder().config("access_log = \"off\"").start();
    s.write_file("a.txt", b"quiet");
    for p in ["/a.txt", "/missing"] {
        let r = s.get(p);
        assert!(r.status == 200 || r.status == 404);
    }
    // Wait long enough that a line, had one been written, would have been
    // collected (access_log_line_per_request_to_stderr is the positive control).
    let lines = s.wait_for_lines(1, Duration::from_millis(1500), |l| is_clf(l) || l.contains("GET /a.txt"));
    assert!(lines.is_empty(), "access log is off but got {lines:?}");
    assert!(
        !s.root().join("off").exists() && !s.base().join("off").exists(),
        "\"off\" was treated as a file name"
    );
}

/// A log file that cannot be written (here a regular file past the
/// server's file-size limit: every append fails with EFBIG, and SIGXFSZ,
/// which the server ignores by its own choice, kills nobody) does not stop
/// requests being served, and the failure is reported once per connection,
/// not once per request.
#[test]
fn failing_access_log_is_reported_once_per_connection() {
    let dir = TempDir::new("failing_access_log");
    let root = make_root(&dir.path().join("root"), &[("a.txt", b"disk full")]);
    let log = dir.path().join("access.log");
    // 1 KiB already written; `ulimit -f 1` allows 512 bytes.
    fs::write(&log, [b'#'; 1024]).unwrap();
    let cfg = dir.path().join("forkhttpd.toml");
    let extra = [format!("access_log = {}", toml_str(log.to_str().unwrap()))];
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &extra)).unwrap();
    let mut cmd = std::process::Command::new("sh");
    scrub_env(&mut cmd).args(["-c", "ulimit -f 1 && exec \"$0\" --config \"$1\"", BIN]).arg(&cfg);
    let mut server = Proc::spawn(&mut cmd);
    let addr = server.wait_listeners(0, 1)[0];
    let mut c = Conn::connect(addr);
    for i in 0..5 {
        let close: &[&str] = if i == 4 { &["Connection: close"] } else { &[] };
        c.send_request("GET", "/a.txt", close);
        let r = c.read_response();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.body, b"disk full");
    }
    c.expect_closed();
    let warned = server.wait_line(Duration::from_secs(5), |l| l.contains("access log:"));
    assert!(
        matches!(warned, Ok(Some(_))),
        "no warning about the failing access log; stderr:\n{}",
        server.lines().join("\n")
    );
    thread::sleep(Duration::from_millis(300));
    let all: Vec<String> = server.lines().into_iter().filter(|l| l.contains("access log:")).collect();
    assert_eq!(all.len(), 1, "expected one warning for five failed writes: {all:?}");
    assert!(all[0].contains("File too large"), "{}", all[0]);
}
