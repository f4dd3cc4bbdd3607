//! Validators and conditional requests (RFC 9110 13) on the wire: `ETag`
//! and `Last-Modified` on file responses, `304` and `412` in the order of
//! 13.2.2, and `curl -z` as a real client.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// Sun, 13 Sep 2020 12:26:40 GMT, with some nanoseconds.
const MTIME: Duration = Duration::new(1_600_000_000, 123_456_789);
const LAST_MODIFIED: &str = "Sun, 13 Sep 2020 12:26:40 GMT";
const EARLIER: &str = "Sun, 13 Sep 2020 12:26:39 GMT";
const LATER: &str = "Sun, 13 Sep 2020 12:26:41 GMT";
const BODY: &[u8] = b"conditional body\n";

/// A server with `/c.txt` (`BODY`, modified at `MTIME`).
fn server() -> TestServer {
    let s = TestServer::start();
    let path = s.write_file("c.txt", BODY);
    set_mtime(&path, UNIX_EPOCH + MTIME);
    s
}

fn set_mtime(path: &std::path::Path, t: SystemTime) {
    File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

/// `GET /c.txt` with the given extra field lines, on a fresh connection.
fn get(s: &TestServer, extra: &[&str]) -> Response {
    let mut c = s.connect();
    c.send_request("GET", "/c.txt", extra);
    c.read_response()
}

fn etag_of(s: &TestServer) -> String {
    let r = get(s, &[]);
    assert_eq!(r.status, 200);
    r.header("etag").expect("ETag on a 200").to_string()
}

#[test]
fn file_responses_carry_a_strong_etag_and_last_modified() {
    let s = server();
    let r = get(&s, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("last-modified"), Some(LAST_MODIFIED));
    let tag = r.header("etag").expect("ETag").to_string();
    assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2, "strong tag: {tag:?}");
    assert!(tag[1..tag.len() - 1].bytes().all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'.'), "{tag}");
    assert_eq!(r.header_count("etag"), 1);
    // Stable while the file is unchanged, also for HEAD.
    let mut c = s.connect();
    c.send_request("HEAD", "/c.txt", &[]);
    assert_eq!(c.read_head_response().header("etag"), Some(tag.as_str()));
    // A change of one nanosecond, with the same size and date to the second,
    // is a new tag.
    set_mtime(&s.root().join("c.txt"), UNIX_EPOCH + MTIME + Duration::from_nanos(1));
    let r = get(&s, &[]);
    assert_eq!(r.header("last-modified"), Some(LAST_MODIFIED));
    assert_ne!(r.header("etag"), Some(tag.as_str()), "the tag must see nanoseconds");
    // A replaced file (another inode) with the same bytes and times is the
    // same representation: the same tag, as a replica's copy gets.
    let tag = r.header("etag").unwrap().to_string();
    let path = s.root().join("c.txt");
    let tmp = s.root().join("c.txt.new");
    fs::write(&tmp, BODY).unwrap();
    set_mtime(&tmp, UNIX_EPOCH + MTIME + Duration::from_nanos(1));
    fs::rename(&tmp, &path).unwrap();
    assert_eq!(get(&s, &[]).header("etag"), Some(tag.as_str()));
}

#[test]
fn a_copy_on_another_server_has_the_same_etag_and_no_inode_shows() {
    // Two replicas behind a load balancer: the same bytes and modification
    // time in two roots, on two servers. Their inodes differ; the tags must
    // not, or `If-None-Match` and `If-Range` fail from one node to the other.
    let (a, b) = (server(), server());
    let ino = |s: &TestServer| fs::metadata(s.root().join("c.txt")).unwrap().ino();
    assert_ne!(ino(&a), ino(&b));
    let tag = etag_of(&a);
    assert_eq!(etag_of(&b), tag);
    // Exactly size and nanosecond time, so no device or inode number.
    let want = format!("\"{:x}-{:x}.{:x}\"", BODY.len(), MTIME.as_secs(), MTIME.subsec_nanos());
    assert_eq!(tag, want);
    // The tag one node gave validates on the other.
    let r = get(&b, &[&format!("If-None-Match: {tag}")]);
    assert_eq!(r.status, 304, "{r:?}");
}

#[test]
fn a_modification_time_in_the_future_is_sent_as_the_date() {
    let s = server();
    let future = SystemTime::now() + Duration::from_secs(86_400);
    set_mtime(&s.root().join("c.txt"), future);
    let r = get(&s, &[]);
    assert_eq!(r.status, 200);
    let date = r.header("date").expect("Date").to_string();
    let last_modified = r.header("last-modified").expect("Last-Modified").to_string();
    // RFC 9110 8.8.2.1: never later than `Date`; the server's clock is ours.
    assert_eq!(last_modified, date, "{r:?}");
    assert!(parse_http_date(&date).unwrap() < future.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64);
}

#[test]
fn if_none_match_gives_a_304_with_the_fields_of_the_200() {
    let s = server();
    let tag = etag_of(&s);
    let mut c = s.connect();
    // The 304 has no body: the pipelined GET's response must follow at once.
    c.send(
        format!(
            "GET /c.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {tag}\r\n\r\n\
             GET /c.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 304);
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    // Every field of the 200 but those describing its body; the site's
    // fields too (here the default `nosniff`).
    assert_eq!(
        names,
        ["date", "server", "last-modified", "etag", "x-content-type-options"],
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    assert_eq!(r.header("last-modified"), Some(LAST_MODIFIED));
    let next = c.read_response();
    assert_eq!((next.status, next.body.as_slice()), (200, BODY));
    c.expect_closed();
    let text = String::from_utf8_lossy(c.received()).into_owned();
    assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\nDate: "), "{text}");

    let weak = format!("W/{tag}");
    let list = format!("\"nope\", {weak}");
    for (line, want) in [
        (format!("If-None-Match: {weak}"), 304),
        (format!("If-None-Match: {list}"), 304),
        ("If-None-Match: *".to_string(), 304),
        ("If-None-Match: \"nope\", \"other\"".to_string(), 200),
        (format!("If-None-Match: {tag} junk"), 200),
    ] {
        let r = get(&s, &[&line]);
        assert_eq!(r.status, want, "{line}");
        assert_eq!(r.body, if want == 200 { BODY } else { b"" }, "{line}");
    }
    // The tags of a list may come on several lines.
    let r = get(&s, &["If-None-Match: \"nope\"", &format!("If-None-Match: {tag}")]);
    assert_eq!(r.status, 304);
    // HEAD too.
    let mut c = s.connect();
    c.send_request("HEAD", "/c.txt", &[&format!("If-None-Match: {tag}")]);
    assert_eq!(c.read_head_response().status, 304);
}

#[test]
fn if_modified_since_unless_if_none_match_or_invalid() {
    let s = server();
    let tag = etag_of(&s);
    let table: Vec<(Vec<String>, u16)> = vec![
        (vec![format!("If-Modified-Since: {LAST_MODIFIED}")], 304),
        (vec![format!("If-Modified-Since: {LATER}")], 304),
        (vec![format!("If-Modified-Since: {EARLIER}")], 200),
        // The obsolete date forms are HTTP dates too.
        (vec!["If-Modified-Since: Sunday, 13-Sep-20 12:26:40 GMT".into()], 304),
        (vec!["If-Modified-Since: Sun Sep 13 12:26:40 2020".into()], 304),
        // Ignored: an invalid date, a date on two lines, or with If-None-Match.
        (vec!["If-Modified-Since: 13 Sep 2020".into()], 200),
        (vec![format!("If-Modified-Since: {LATER}"), format!("If-Modified-Since: {LATER}")], 200),
        (vec!["If-None-Match: \"nope\"".into(), format!("If-Modified-Since: {LATER}")], 200),
        (vec![format!("If-None-Match: {tag}"), format!("If-Modified-Since: {EARLIER}")], 304),
    ];
    for (lines, want) in table {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let r = get(&s, &lines);
        assert_eq!(r.status, want, "{lines:?}");
        if want == 304 {
            assert_eq!(r.header("content-length"), None, "{lines:?}");
        } else {
            assert_eq!(r.body, BODY, "{lines:?}");
        }
    }
}

#[test]
fn if_match_and_if_unmodified_since_give_412_before_304() {
    let s = server();
    let tag = etag_of(&s);
    let weak = format!("W/{tag}");
    let table: Vec<(Vec<String>, u16)> = vec![
        (vec![format!("If-Match: {tag}")], 200),
        (vec!["If-Match: *".into()], 200),
        (vec![format!("If-Match: \"a\", {tag}")], 200),
        (vec!["If-Match: \"a\"".into(), format!("If-Match: {tag}")], 200),
        // Strong comparison: a weak tag never matches.
        (vec![format!("If-Match: {weak}")], 412),
        (vec!["If-Match: \"nope\"".into()], 412),
        (vec![format!("If-Unmodified-Since: {LAST_MODIFIED}")], 200),
        (vec![format!("If-Unmodified-Since: {EARLIER}")], 412),
        (vec!["If-Unmodified-Since: not a date".into()], 200),
        // Step 2 only without If-Match.
        (vec![format!("If-Match: {tag}"), format!("If-Unmodified-Since: {EARLIER}")], 200),
        // 412 comes before 304.
        (vec!["If-Match: \"nope\"".into(), format!("If-None-Match: {tag}")], 412),
        (vec![format!("If-Unmodified-Since: {EARLIER}"), format!("If-None-Match: {tag}")], 412),
        (vec![format!("If-Match: {tag}"), format!("If-None-Match: {tag}")], 304),
        // And before Range.
        (vec!["If-Match: \"nope\"".into(), "Range: bytes=0-1".into()], 412),
    ];
    for (lines, want) in table {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let r = get(&s, &lines);
        assert_eq!(r.status, want, "{lines:?}");
        match want {
            200 => assert_eq!(r.body, BODY, "{lines:?}"),
            412 => {
                assert!(r.body_str().contains("412 Precondition Failed"), "{lines:?}");
                assert_eq!(r.header("etag"), None);
            }
            _ => assert!(r.body.is_empty()),
        }
    }
    // The connection stays usable after a 412.
    let mut c = s.connect();
    c.send_request("GET", "/c.txt", &["If-Match: \"nope\""]);
    let r = c.read_response();
    assert_eq!(r.status, 412);
    assert_close_consistent(&mut c, &r, "/c.txt");
}

#[test]
fn curl_z_revalidates_by_date() {
    if missing_tool("curl") {
        return;
    }
    let s = server();
    let url = format!("http://{}/c.txt", s.addr());
    let out_dir = TempDir::new("curl-z");
    let out = out_dir.path().join("out");
    let headers = out_dir.path().join("headers");
    for (date, want_status, want_body) in
        [(LAST_MODIFIED, "304 Not Modified", &b""[..]), (EARLIER, "200 OK", BODY)]
    {
        let _ = fs::remove_file(&out);
        let r = run_tool(
            Command::new("curl").args(["-sS", "-z", date, "-o"]).arg(&out).arg("-D").arg(&headers).arg(&url),
            Duration::from_secs(20),
        );
        assert!(r.success(), "{}", r.describe());
        // curl reports a 304 of its own when a 200 is older than -z: read
        // what the server sent.
        let head = fs::read_to_string(&headers).unwrap();
        assert!(head.starts_with(&format!("HTTP/1.1 {want_status}\r\n")), "curl -z {date}: {head}");
        assert_eq!(fs::read(&out).unwrap_or_default(), want_body, "curl -z {date}");
    }
}
