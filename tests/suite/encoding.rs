//! Precompressed siblings (`precompressed = true`): the best `FILE.br`,
//! `FILE.zst` or `FILE.gz` the client's `Accept-Encoding` takes, with
//! `Content-Encoding`, the original's type, the sibling's own validators,
//! `Vary: Accept-Encoding` on every file response, the same checks as any
//! file, and `curl --compressed` as a real client.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::*;

fn server() -> TestServer {
    let s = TestServer::builder().config("precompressed = true").start();
    s.write_file("app.js", b"identity body");
    s.write_file("app.js.br", b"brotli body");
    s.write_file("app.js.zst", b"zstd body");
    s.write_file("app.js.gz", b"gzip body");
    s
}

fn get(s: &TestServer, path: &str, accept: Option<&str>) -> Response {
    let mut c = s.connect();
    let header = accept.map(|a| format!("Accept-Encoding: {a}"));
    let extra: Vec<&str> = header.iter().map(String::as_str).collect();
    c.send_request("GET", path, &extra);
    c.read_response()
}

#[test]
fn the_best_accepted_sibling_is_served() {
    let s = server();
    let table: &[(Option<&str>, &str, Option<&str>)] = &[
        (None, "identity body", None),
        (Some("gzip"), "gzip body", Some("gzip")),
        (Some("gzip, deflate, br, zstd"), "brotli body", Some("br")),
        (Some("zstd, gzip"), "zstd body", Some("zstd")),
        (Some("br;q=0.5, gzip"), "gzip body", Some("gzip")),
        (Some("br;q=0, zstd;q=0, gzip"), "gzip body", Some("gzip")),
        (Some("*;q=0.1, identity;q=0.5"), "identity body", None),
        (Some("identity"), "identity body", None),
        (Some("deflate"), "identity body", None),
    ];
    for (accept, body, coding) in table {
        let r = get(&s, "/app.js", *accept);
        assert_eq!(r.status, 200, "{accept:?}");
        assert_eq!(r.body_str(), *body, "Accept-Encoding: {accept:?}");
        assert_eq!(r.header("content-encoding"), *coding, "Accept-Encoding: {accept:?}");
        assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"), "{accept:?}");
        assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "Accept-Encoding: {accept:?}");
    }
}

#[test]
fn a_sibling_has_its_own_validators() {
    let s = server();
    let gz = s.root().join("app.js.gz");
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options().write(true).open(&gz).unwrap().set_modified(old).unwrap();
    let plain = get(&s, "/app.js", None);
    let zipped = get(&s, "/app.js", Some("gzip"));
    assert_eq!(zipped.header("last-modified"), Some(format_http_date(1_000_000_000).as_str()));
    let plain_mtime = fs::metadata(s.root().join("app.js")).unwrap().mtime();
    assert_eq!(plain.header("last-modified"), Some(format_http_date(plain_mtime).as_str()));
    let (plain_tag, zipped_tag) = (plain.header("etag"), zipped.header("etag"));
    assert!(plain_tag.is_some() && zipped_tag.is_some(), "{plain:?}\n{zipped:?}");
    assert_ne!(zipped_tag, plain_tag, "a sibling's tag is its own, not the original's");
}

#[test]
fn a_siblings_tag_differs_even_with_the_originals_size_and_time() {
    // `gzip -k` keeps the original's time; a small file's sibling can have
    // its size too. The tag names the coding, so the two never share one.
    let s = TestServer::builder().config("precompressed = true").start();
    let old = SystemTime::UNIX_EPOCH + Duration::new(1_000_000_000, 5);
    for (name, body) in [("same.txt", b"eleven byte"), ("same.txt.gz", b"ELEVEN BYTE")] {
        let path = s.write_file(name, body);
        fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
    }
    let plain = get(&s, "/same.txt", None);
    let zipped = get(&s, "/same.txt", Some("gzip"));
    assert_eq!(
        (zipped.header("content-encoding"), zipped.body_str().as_str()),
        (Some("gzip"), "ELEVEN BYTE")
    );
    let (plain_tag, zipped_tag) = (plain.header("etag").unwrap(), zipped.header("etag").unwrap());
    assert_ne!(plain_tag, zipped_tag);
    assert_eq!(zipped_tag, "\"b-3b9aca00.5-gzip\"");
    // Each validates only its own representation.
    let r = get_gzip_if_none_match(&s, plain_tag);
    assert_eq!(r.status, 200, "{r:?}");
    let r = get_gzip_if_none_match(&s, zipped_tag);
    assert_eq!(r.status, 304, "{r:?}");
}

/// `GET /same.txt` accepting gzip, if none of `tags` matches.
fn get_gzip_if_none_match(s: &TestServer, tags: &str) -> Response {
    let mut c = s.connect();
    c.send_request("GET", "/same.txt", &["Accept-Encoding: gzip", &format!("If-None-Match: {tags}")]);
    c.read_response()
}

#[test]
fn a_siblings_304_keeps_vary_and_the_sites_cache_control() {
    let s = TestServer::builder()
        .config("precompressed = true")
        .config(r#"header_rules = [{ path = "/", headers = { "Cache-Control" = "max-age=60" } }]"#)
        .start();
    s.write_file("app.js", b"identity body");
    s.write_file("app.js.gz", b"gzip body");
    let zipped = get(&s, "/app.js", Some("gzip"));
    assert_eq!((zipped.status, zipped.body_str().as_str()), (200, "gzip body"));
    let tag = zipped.header("etag").unwrap().to_string();
    let mut c = s.connect();
    // The 304 has no body: the pipelined GET's response must follow at once.
    c.send(
        format!(
            "GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nIf-None-Match: {tag}\r\n\r\n\
             GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 304, "{r:?}");
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{r:?}");
    assert_eq!(r.header("cache-control"), Some("max-age=60"), "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    let next = c.read_response();
    assert_eq!((next.status, next.body_str().as_str()), (200, "identity body"));
}

#[test]
fn off_by_default_and_no_vary_then() {
    let s = TestServer::start();
    s.write_file("a.css", b"plain");
    s.write_file("a.css.gz", b"zipped");
    let r = get(&s, "/a.css", Some("gzip"));
    assert_eq!(r.body_str(), "plain");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
}

#[test]
fn vary_on_files_without_siblings_and_index_files_too() {
    let s = server();
    s.write_file("solo.txt", b"solo");
    s.write_file("d/index.html", b"<p>i</p>");
    s.write_file("d/index.html.gz", b"zipped index");
    let r = get(&s, "/solo.txt", None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = get(&s, "/d/", Some("gzip"));
    assert_eq!(r.body_str(), "zipped index");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(get(&s, "/nothing", Some("gzip")).header("vary"), None, "not on a 404");
}

#[test]
fn siblings_get_the_checks_of_any_file() {
    let s = TestServer::builder().config("precompressed = true").start();
    let outside = s.base().join("outside.gz");
    fs::write(&outside, b"secret from outside the root").unwrap();
    s.write_file("a.txt", b"a plain");
    s.symlink(&outside, "a.txt.gz");
    s.write_file("b.txt", b"b plain");
    s.symlink("../outside.gz", "b.txt.gz");
    s.write_file("c.txt", b"c plain");
    s.mkdir("c.txt.br");
    s.write_file("d.txt", b"d plain");
    s.write_file("real.gz", b"inside");
    s.symlink("real.gz", "d.txt.gz");
    for (path, body) in
        [("/a.txt", "a plain"), ("/b.txt", "b plain"), ("/c.txt", "c plain"), ("/d.txt", "inside")]
    {
        let r = get(&s, path, Some("br, gzip"));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body_str(), body, "{path}");
    }
}

#[test]
fn curl_compressed_decodes_the_gzip_sibling() {
    if missing_tool("curl") || missing_tool("gzip") {
        return;
    }
    let s = TestServer::builder().config("precompressed = true").start();
    let text = "the original text\n".repeat(50);
    let path = s.write_file("page.html", text.as_bytes());
    let out = run_tool(Command::new("gzip").args(["-k", "-9"]).arg(&path), Duration::from_secs(20));
    assert!(out.success(), "{}", out.describe());
    let url = format!("http://{}/page.html", s.addr());
    let out = run_tool(
        Command::new("curl").args(["-sS", "--fail", "--compressed", "-D", "/dev/stderr", &url]),
        Duration::from_secs(20),
    );
    assert!(out.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim_end(), text.trim_end(), "curl decoded the gzip sibling to the original");
    let headers = out.stderr.to_ascii_lowercase();
    assert!(headers.contains("content-encoding: gzip"), "{headers}");
    assert!(headers.contains("vary: accept-encoding"), "{headers}");
}
