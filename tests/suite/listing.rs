//! Directory listings (`listing = true`): the page's order, escaping and
//! links as a browser follows them, hidden dotfiles, the directory's own
//! validators, and a bounded answer for a directory of 100,000 entries.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::common::*;

fn listing_server() -> TestServer {
    TestServer::builder().config("listing = true").start()
}

/// The rows of a listing page: one line per entry, each starting `<tr>`.
fn rows(body: &str) -> Vec<&str> {
    body.lines().filter(|l| l.starts_with("<tr>")).collect()
}

/// The `href` of a row.
fn href(row: &str) -> &str {
    row.split_once("href=\"").and_then(|(_, r)| r.split_once('"')).map(|(h, _)| h).unwrap()
}

#[test]
fn off_by_default() {
    let s = TestServer::start();
    s.write_file("d/a.txt", b"a");
    let r = s.get("/d/");
    assert_eq!(r.status, 403);
    assert!(!r.body_str().contains("a.txt"));
}

#[test]
fn lists_directories_first_sorted_without_dotfiles() {
    let s = listing_server();
    s.write_file("d/b.txt", b"bb");
    s.write_file("d/a.txt", &[b'x'; 1536]);
    s.write_file("d/.secret", b"s");
    s.write_file("d/zdir/x", b"x");
    s.write_file("d/.git/config", b"x");
    s.mkdir("d/adir");
    let r = s.get("/d/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let body = r.body_str();
    assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
    assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
    assert!(body.contains("<title>Index of /d/</title>"), "{body}");
    assert!(!body.contains("secret") && !body.contains(".git"), "dotfiles are hidden: {body}");
    let hrefs: Vec<&str> = rows(&body).iter().map(|r| href(r)).collect();
    assert_eq!(hrefs, ["../", "adir/", "zdir/", "a.txt", "b.txt"], "{body}");
    let a = rows(&body).into_iter().find(|r| r.contains("a.txt")).unwrap();
    assert!(a.contains(">1.5 KiB<") && a.contains(">1536<"), "human and exact size: {a}");
    let mtime = fs::metadata(s.root().join("d/a.txt")).unwrap().mtime();
    let (y, m, d) = civil_from_days(mtime.div_euclid(86_400));
    let secs = mtime.rem_euclid(86_400);
    let when = format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60);
    assert!(a.contains(&format!("<td>{when}</td>")), "modification time {when}: {a}");
}

#[test]
fn names_are_escaped_and_links_lead_to_the_files() {
    let s = listing_server();
    let names: &[&[u8]] =
        &[b"a&b <c>.txt", b"100%\"q'.txt", b"x:y?z#w.txt", b"caf\xc3\xa9.txt", b"raw\xff.bin"];
    for (i, name) in names.iter().enumerate() {
        let path = s.root().join("e").join(std::ffi::OsStr::from_bytes(name));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("file {i}")).unwrap();
    }
    let body = s.get("/e/").body_str();
    assert!(body.contains(">a&amp;b &lt;c&gt;.txt</a>"), "{body}");
    assert!(body.contains(">100%&quot;q&#39;.txt</a>"), "{body}");
    assert!(!body.contains("<c>"), "{body}");
    let rows = rows(&body);
    assert_eq!(rows.len(), names.len() + 1, "{body}");
    for row in &rows[1..] {
        let link = href(row);
        assert!(link.bytes().all(|b| b.is_ascii_alphanumeric() || b"%-._~".contains(&b)), "{link}");
        // What a browser does: resolve the link against the page's URL.
        let r = s.get(&format!("/e/{link}"));
        assert_eq!(r.status, 200, "GET /e/{link}");
        assert!(r.body_str().starts_with("file "), "GET /e/{link}");
    }
    let parent = s.get("/e/../");
    assert_eq!(parent.status, 200);
    assert!(parent.body_str().contains("href=\"e/\""));
}

#[test]
fn index_file_wins_over_the_listing_and_head_matches_get() {
    let s = listing_server();
    s.write_file("i/index.html", b"<p>index</p>");
    s.write_file("i/other.txt", b"x");
    assert_eq!(s.get("/i/").body, b"<p>index</p>");

    s.write_file("l/x.txt", b"x");
    let mut c = s.connect();
    c.send_request("GET", "/l/", &[]);
    let get = c.read_response();
    c.send_request("HEAD", "/l/", &[]);
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    for h in ["content-type", "content-length", "last-modified", "etag"] {
        assert_eq!(head.header(h), get.header(h), "{h}");
    }
    let mut rest = Vec::new();
    let (mut stream, buffered) = c.into_parts();
    assert!(buffered.is_empty(), "HEAD sent a body: {buffered:?}");
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    assert!(rest.is_empty(), "HEAD sent a body: {rest:?}");
}

#[test]
fn validators_come_from_the_directory() {
    let s = listing_server();
    let dir = s.mkdir("v");
    s.write_file("v/a.txt", b"a");
    let first = s.get("/v/");
    let meta = fs::metadata(&dir).unwrap();
    assert_eq!(first.header("last-modified"), Some(format_http_date(meta.mtime()).as_str()));
    let etag = first.header("etag").expect("ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");
    assert_eq!(s.get("/v/").header("etag"), Some(etag.as_str()), "stable while the directory is unchanged");
    s.write_file("v/b.txt", b"b");
    let changed = s.get("/v/");
    assert!(changed.body_str().contains("b.txt"));
    assert_ne!(changed.header("etag"), Some(etag.as_str()), "a new entry changes the ETag");
}

#[test]
fn a_directory_of_100000_entries_answers_bounded() {
    let s = listing_server();
    let dir = s.mkdir("big");
    for i in 0..100_000 {
        fs::File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    s.mkdir("big/zz-dir");
    let started = Instant::now();
    let r = s.get("/big/");
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    let body = r.body_str();
    let rows = rows(&body);
    // The parent link, then the first 10,000 in listing order: the directory first.
    assert_eq!(rows.len(), 1 + 10_000);
    assert_eq!(href(rows[1]), "zz-dir/");
    assert_eq!(href(rows[2]), "f000000");
    assert_eq!(href(rows[10_000]), "f009998");
    assert!(body.contains("90001 more entries not listed"), "{}", &body[body.len().saturating_sub(300)..]);
    assert!(body.len() < 4 << 20, "page of {} bytes", body.len());
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn readable_with_curl() {
    if missing_tool("curl") {
        return;
    }
    let s = listing_server();
    s.write_file("c/hello.txt", b"hello");
    let url = format!("http://{}/c/", s.addr());
    let out =
        run_tool(std::process::Command::new("curl").args(["-sS", "--fail", &url]), Duration::from_secs(20));
    assert!(out.success(), "{}", out.describe());
    let line = out.stdout.lines().find(|l| l.contains("hello.txt")).expect("a line for hello.txt");
    assert!(line.contains(">5 B<") && line.contains(">5<"), "{line}");
}
