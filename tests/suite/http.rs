//! Core HTTP semantics: file serving, headers, HEAD, directories, error
//! responses, listeners and process lifecycle.

use std::fs;
use std::time::{Duration, UNIX_EPOCH};

use crate::common::*;

const REQ_END: &str = "\r\n\r\n";

/// Sends `METHOD path` on a fresh connection and reads the response; the
/// connection must then be closed if the response says `Connection: close`,
/// and otherwise still serve `GET /a.txt`.
fn request_then_probe(s: &TestServer, method: &str, path: &str) -> Response {
    let mut c = s.connect();
    c.send_request(method, path, &[]);
    let r = c.read_response();
    assert_close_consistent(&mut c, &r, "/a.txt");
    r
}

fn assert_success_headers(resp: &Response, len: usize) {
    let date = resp.header("date").expect("Date header");
    let t = parse_http_date(date).unwrap_or_else(|| panic!("Date is not an IMF-fixdate: {date:?}"));
    assert!((t - now_secs()).abs() <= 120, "Date {date:?} is far from the current time");
    assert_eq!(resp.header("server"), Some("forkhttpd"), "Server header");
    assert_eq!(resp.header_count("server"), 1, "exactly one Server header");
    assert_eq!(resp.header("content-length"), Some(len.to_string().as_str()), "Content-Length");
    assert_eq!(resp.header_count("content-length"), 1);
    let lm = resp.header("last-modified").expect("Last-Modified header");
    assert!(parse_http_date(lm).is_some(), "Last-Modified is not an IMF-fixdate: {lm:?}");
    assert_eq!(resp.header("accept-ranges"), Some("bytes"), "Accept-Ranges");
    let etag = resp.header("etag").expect("ETag header");
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "ETag is not a strong tag: {etag:?}"
    );
}

#[test]
fn harness_date_helpers_roundtrip() {
    // Self-check of the test harness (RFC 9110 example date).
    assert_eq!(format_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
    assert_eq!(parse_http_date("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    assert_eq!(parse_clf_time("06/Nov/1994:09:49:37 +0100"), Some(784111777));
    assert!(
        parse_clf(
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"a \\\"b\\\"\""
        )
        .is_some()
    );
    assert!(parse_clf("127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET / HTTP/1.1\" 200 5 \"-\"").is_none());
}

#[test]
fn get_small_file_exact_body_and_headers() {
    let s = TestServer::start();
    s.write_file("a.txt", b"hello, world\n");
    let mut c = s.connect();
    c.send(format!("GET /a.txt HTTP/1.1\r\nHost: localhost{REQ_END}").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_success_headers(&r, 13);
}

#[test]
fn get_one_mebibyte_file_byte_exact() {
    let s = TestServer::start();
    let data = pseudo_random_bytes(1 << 20, 42);
    s.write_file("big.bin", &data);
    let mut c = s.connect();
    c.send_request("GET", "/big.bin", &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "1 MiB body differs from the file");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_success_headers(&r, data.len());
    // Still usable afterwards (keep-alive) and nothing extra was sent.
    c.send_request("GET", "/big.bin", &["Connection: close"]);
    let r2 = c.read_response();
    assert!(r2.body == data);
    c.expect_closed();
}

#[test]
fn content_types_by_extension() {
    let s = TestServer::start();
    let cases: &[(&str, &str)] = &[
        ("index.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("notes.txt", "text/plain; charset=utf-8"),
        ("pic.png", "image/png"),
        ("blob.qqqz", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ];
    for (name, _) in cases {
        s.write_file(name, format!("content of {name}").as_bytes());
    }
    let mut c = s.connect();
    for (name, ct) in cases {
        c.send_request("GET", &format!("/{name}"), &[]);
        let r = c.read_response();
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(*ct), "Content-Type of {name}");
        assert_eq!(r.body, format!("content of {name}").as_bytes());
    }
}

#[test]
fn last_modified_reflects_file_mtime() {
    let s = TestServer::start();
    let p = s.write_file("old.txt", b"old\n");
    let f = fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000)).unwrap();
    drop(f);
    let r = s.get("/old.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("last-modified"), Some("Sun, 09 Sep 2001 01:46:40 GMT"));
}

#[test]
fn head_has_get_headers_and_no_body() {
    let s = TestServer::start();
    let a = pseudo_random_bytes(5000, 7);
    s.write_file("a.bin", &a);
    s.write_file("b.txt", b"the second file\n");

    let get = s.get("/a.bin");
    assert_eq!(get.status, 200);

    let mut c = s.connect();
    // HEAD and a GET pipelined in one write: if the HEAD response carried a
    // body, the GET response would be corrupted.
    c.send(
        b"HEAD /a.bin HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /b.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    for name in ["content-type", "content-length", "last-modified", "etag", "accept-ranges", "server"] {
        assert_eq!(head.header(name), get.header(name), "HEAD vs GET {name}");
    }
    assert_eq!(head.header("content-length"), Some("5000"));
    assert!(head.header("date").is_some());
    let next = c.read_response();
    assert_eq!(next.status, 200, "response after HEAD");
    assert_eq!(next.body, b"the second file\n");
    c.expect_closed();
}

#[test]
fn head_alone_sends_no_body_bytes() {
    let s = TestServer::start();
    s.write_file("a.txt", b"0123456789");
    let mut c = s.connect();
    c.send_request("HEAD", "/a.txt", &[]);
    let r = c.read_head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"));
    c.expect_open_and_quiet(Duration::from_millis(500));
}

#[test]
fn query_string_is_ignored() {
    let s = TestServer::start();
    s.write_file("a.txt", b"AAA");
    let r = s.get("/a.txt?x=1&y=%2e%2e");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"AAA");
}

#[test]
fn absolute_form_target_is_served() {
    let s = TestServer::start();
    s.write_file("a.txt", b"absolute");
    let mut c = s.connect();
    c.send(b"GET http://localhost/a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"absolute");
}

#[test]
fn percent_encoded_names_are_decoded() {
    let s = TestServer::start();
    s.write_file("with space.txt", b"spaced");
    let r = s.get("/with%20space.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"spaced");
}

#[test]
fn directory_without_slash_redirects() {
    let s = TestServer::start();
    s.mkdir("dir");
    s.write_file("dir/index.html", b"<p>dir index</p>");
    s.write_file("a.txt", b"a");
    for (path, location) in [("/dir", "/dir/"), ("/dir?x=1", "/dir/?x=1")] {
        let r = request_then_probe(&s, "GET", path);
        assert_eq!(r.status, 301, "GET {path}");
        assert_eq!(r.header("location"), Some(location), "GET {path}");
    }
}

#[test]
fn directory_index_is_served() {
    let s = TestServer::start();
    s.write_file("dir/index.html", b"<p>dir index</p>");
    s.write_file("index.html", b"<p>top index</p>");
    let r = s.get("/dir/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>dir index</p>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>top index</p>");
}

#[test]
fn configured_index_names_are_tried_in_order() {
    let s = TestServer::builder().config("index = [\"missing.html\", \"home.htm\", \"index.html\"]").start();
    s.write_file("d/home.htm", b"home");
    s.write_file("d/index.html", b"index");
    let r = s.get("/d/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"home");
}

#[test]
fn directory_without_index_is_403() {
    let s = TestServer::start();
    s.mkdir("empty");
    s.write_file("empty/not-an-index.txt", b"x");
    s.write_file("a.txt", b"a");
    let r = request_then_probe(&s, "GET", "/empty/");
    assert_error_page(&r, 403);
    assert!(!r.body_str().contains("not-an-index"), "directory listing must not be produced");
}

#[test]
fn missing_file_is_404() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    let r = request_then_probe(&s, "GET", "/nope.txt");
    assert_error_page(&r, 404);
    assert_eq!(r.header("server"), Some("forkhttpd"));
}

#[test]
fn head_of_missing_file_is_404_without_body() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    let mut c = s.connect();
    c.send_request("HEAD", "/nope.txt", &[]);
    let r = c.read_head_response();
    assert_eq!(r.status, 404);
    if !r.connection_has("close") {
        // No body bytes may follow; the next response must parse cleanly.
        c.send_request("GET", "/a.txt", &["Connection: close"]);
        let n = c.read_response();
        assert_eq!(n.status, 200);
        assert_eq!(n.body, b"a");
    } else {
        c.expect_closed();
    }
}

#[test]
fn malformed_request_line_is_400_and_closes() {
    let s = TestServer::start();
    expect_error_and_close(s.addr(), b"GARBAGE\r\n\r\n", 400);
    expect_error_and_close(s.addr(), b"GET /a.txt\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn unsupported_http_version_is_505() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/3.0", "HTTP/0.9"] {
        expect_error(s.addr(), format!("GET /a.txt {v}\r\nHost: localhost\r\n\r\n").as_bytes(), 505);
    }
}

#[test]
fn http11_without_host_is_400() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    expect_error_and_close(s.addr(), b"GET /a.txt HTTP/1.1\r\n\r\n", 400);
    // HTTP/1.0 does not require Host.
    let mut c = s.connect();
    c.send(b"GET /a.txt HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"a");
}

fn assert_allow(r: &Response) {
    let allow = r.header("allow").expect("Allow header");
    let mut methods: Vec<String> = allow.split(',').map(|m| m.trim().to_string()).collect();
    methods.sort();
    assert_eq!(methods, ["GET", "HEAD", "OPTIONS"], "Allow: {allow:?}");
}

#[test]
fn other_methods_are_405_with_allow() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    for m in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT"] {
        let r = request_then_probe(&s, m, "/a.txt");
        assert_error_page(&r, 405);
        assert_allow(&r);
    }
    // CONNECT in its usual authority-form is still "method not allowed".
    let mut c = s.connect();
    c.send(b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 405, "authority-form CONNECT");
    assert_allow(&r);
    // The file was not modified/deleted by any of the above.
    assert_eq!(fs::read(s.root().join("a.txt")).unwrap(), b"a");
}

/// RFC 9110 9.3.7: a response to OPTIONS with no content sends
/// `Content-Length: 0`; a `204` without a length made clients that do not
/// special-case `204` wait for the connection to close.
#[test]
fn options_is_200_with_allow_and_a_zero_length() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    let mut c = s.connect();
    for target in ["/", "*", "/a.txt", "/no/such/path"] {
        c.send_request("OPTIONS", target, &[]);
        let r = c.read_response();
        assert_eq!(r.status, 200, "OPTIONS {target}");
        assert_allow(&r);
        assert_eq!(r.header("content-length"), Some("0"), "OPTIONS {target}");
        assert!(r.body.is_empty());
    }
    // No body bytes: the connection carries on cleanly.
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    let n = c.read_response();
    assert_eq!(n.status, 200);
    assert_eq!(n.body, b"a");
    c.expect_closed();
}

#[test]
fn unknown_method_is_501() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    let r = request_then_probe(&s, "BREW", "/a.txt");
    assert_error_page(&r, 501);
}

#[test]
fn dotfiles_are_hidden_but_well_known_is_served() {
    let s = TestServer::start();
    s.write_file(".hidden", b"HIDDEN-CONTENT");
    s.write_file(".git/config", b"[core]\nGITCONFIG\n");
    s.write_file("sub/.env", b"DOTENV");
    s.write_file(".well-known/x.txt", b"well known");
    for p in ["/.hidden", "/.git/config", "/.git/", "/sub/.env", "/%2ehidden"] {
        let mut c = s.connect();
        c.send_request("GET", p, &["Connection: close"]);
        let r = c.read_response();
        assert_error_page(&r, 404);
        let _ = c.read_until_close(Duration::from_secs(5));
        let all = c.received();
        for secret in [&b"HIDDEN-CONTENT"[..], b"GITCONFIG", b"DOTENV"] {
            assert!(!contains(all, secret), "{p} leaked dotfile content");
        }
    }
    let r = s.get("/.well-known/x.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"well known");
}

// ---------------------------------------------------------------------------
// Listeners and lifecycle
// ---------------------------------------------------------------------------

#[test]
fn listen_on_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        crate::common::skip("cannot bind [::1] on this machine");
        return;
    }
    let s = TestServer::builder().no_config_file().listen("[::1]:0").start();
    assert!(s.addr().is_ipv6(), "bound address {}", s.addr());
    assert!(s.addr().ip().is_loopback());
    assert_ne!(s.addr().port(), 0);
    s.write_file("a.txt", b"over v6");
    let r = s.get("/a.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"over v6");
}

#[test]
fn two_listeners_both_serve() {
    let s = TestServer::builder().no_config_file().listen("127.0.0.1:0").listen("127.0.0.2:0").start();
    let addrs = s.addrs().to_vec();
    assert_eq!(addrs.len(), 2, "listening lines: {addrs:?}");
    assert_ne!(addrs[0], addrs[1]);
    s.write_file("a.txt", b"both");
    for a in addrs {
        let mut c = Conn::connect(a);
        c.send_request("GET", "/a.txt", &["Connection: close"]);
        let r = c.read_response();
        assert_eq!(r.status, 200, "via {a}");
        assert_eq!(r.body, b"both");
    }
}

/// More listeners than the parent watches from its array on the stack
/// (8): every one is polled and serves, the last as well as the first.
#[test]
fn twelve_listeners_all_serve() {
    let listen: Vec<String> = (1..=12).map(|i| format!("127.0.0.{i}:0")).collect();
    let listen: Vec<&str> = listen.iter().map(String::as_str).collect();
    let s = TestServer::builder().config_listen(&listen).start();
    assert_eq!(s.addrs().len(), 12, "listening lines: {:?}", s.addrs());
    s.write_file("a.txt", b"all");
    for &a in s.addrs().iter().rev() {
        let mut c = Conn::connect(a);
        c.send_request("GET", "/a.txt", &["Connection: close"]);
        let r = c.read_response();
        assert_eq!(r.status, 200, "via {a}");
        assert_eq!(r.body, b"all");
    }
}

#[test]
fn config_file_listen_list_with_two_entries() {
    let s = TestServer::builder().config_listen(&["127.0.0.1:0", "127.0.0.2:0"]).start();
    assert_eq!(s.addrs().len(), 2);
    assert_ne!(s.addrs()[0], s.addrs()[1]);
    s.write_file("a.txt", b"x");
    for &a in s.addrs() {
        let mut c = Conn::connect(a);
        c.send_request("GET", "/a.txt", &["Connection: close"]);
        assert_eq!(c.read_response().status, 200, "via {a}");
    }
}

#[test]
fn sigterm_exits_zero() {
    let mut s = TestServer::start();
    s.write_file("a.txt", b"x");
    assert_eq!(s.get("/a.txt").status, 200);
    let st = s.terminate(Duration::from_secs(5)).expect("server did not exit within 5 s of SIGTERM");
    assert!(st.success(), "exit status after SIGTERM: {st}");
}

#[test]
fn sigterm_with_idle_client_connected_exits_zero() {
    let mut s = TestServer::start();
    s.write_file("a.txt", b"x");
    let mut c = s.connect();
    c.send_request("GET", "/a.txt", &[]);
    assert_eq!(c.read_response().status, 200);
    let st = s.terminate(Duration::from_secs(5)).expect("server did not exit within 5 s of SIGTERM");
    assert!(st.success(), "exit status after SIGTERM: {st}");
    drop(c);
}

#[test]
fn unknown_config_key_is_an_error() {
    let dir = TempDir::new("unknown_config_key");
    let root = make_root(&dir.path().join("root"), &[]);
    let cfg = dir.path().join("bad.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &["no_such_key = 1"])).unwrap();
    let out = run(server_command().arg("--config").arg(&cfg), Duration::from_secs(5));
    let status = out.status.expect("server kept running with an unknown config key");
    assert!(!status.success(), "unknown key must be an error, got {status}");
}

#[test]
fn file_modified_before_1970_is_served_without_last_modified() {
    // An HTTP date cannot express it; formatting one used to abort the child,
    // leaving the client with no reply at all.
    let s = TestServer::start();
    let path = s.write_file("old.txt", b"old\n");
    let old = UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400);
    fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
    let mut c = s.connect();
    c.send(format!("GET /old.txt HTTP/1.1\r\nHost: localhost{REQ_END}").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"old\n");
    assert_eq!(r.header("last-modified"), None);
    assert_close_consistent(&mut c, &r, "/old.txt");
}

#[test]
fn file_modified_in_year_10000_is_served_without_last_modified() {
    // ext4 clamps such a time to 2446; tmpfs keeps it, so the root is there.
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        crate::common::skip("no /dev/shm to keep a year-10000 modification time");
        return;
    }
    let dir = shm.join(format!("forkhttpd-test-{}-y10k", std::process::id()));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    let root = make_root(&dir.join("root"), &[("future.txt", b"future\n")]);
    chmod(&dir, 0o755);
    let future = UNIX_EPOCH + Duration::from_secs(253_402_300_800 + 86_400);
    let path = root.join("future.txt");
    fs::File::options().write(true).open(&path).unwrap().set_modified(future).unwrap();
    if fs::metadata(&path).unwrap().modified().unwrap() < future {
        crate::common::skip("/dev/shm does not keep a year-10000 modification time");
        return;
    }
    let cfg = dir.join("forkhttpd.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &[] as &[&str])).unwrap();
    let mut server = Proc::spawn(server_command().arg("--config").arg(&cfg));
    let addr = server.wait_listeners(0, 1)[0];
    let mut c = Conn::connect(addr);
    c.send(format!("GET /future.txt HTTP/1.1\r\nHost: localhost{REQ_END}").as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"future\n");
    assert_eq!(r.header("last-modified"), None);
    assert_close_consistent(&mut c, &r, "/future.txt");
}
