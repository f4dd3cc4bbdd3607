//! Range requests (RFC 9110 14) on the wire: `206` with `Content-Range`,
//! `multipart/byteranges`, `416`, ranges that are ignored, `If-Range`, and
//! real clients (`curl -r`, `wget -c`, Python's `http.client` with
//! `email.parser` reading a multipart body).

use std::fs;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// 100 bytes: `0123456789` ten times, with the tens digit changed so that
/// every slice is recognisable: byte `i` is `b'a' + i / 10` when `i % 10 == 0`.
fn hundred() -> Vec<u8> {
    (0..100u8).map(|i| if i % 10 == 0 { b'a' + i / 10 } else { b'0' + i % 10 }).collect()
}

fn server() -> TestServer {
    let s = TestServer::start();
    s.write_file("h.txt", &hundred());
    s
}

fn get(s: &TestServer, extra: &[&str]) -> Response {
    let mut c = s.connect();
    c.send_request("GET", "/h.txt", extra);
    c.read_response()
}

#[test]
fn one_range_is_a_206_with_exactly_those_bytes() {
    let s = server();
    let data = hundred();
    for (range, first, last) in [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, 99),
        ("bytes=-5", 95, 99),
        ("bytes=90-1000", 90, 99),
        ("bytes=-1000", 0, 99),
        ("BYTES=42-42", 42, 42),
        // Overlapping and adjacent ranges coalesce into one.
        ("bytes=0-4,5-9", 0, 9),
        ("bytes=20-29,10-25", 10, 29),
    ] {
        let r = get(&s, &[&format!("Range: {range}")]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.reason, "Partial Content");
        assert_eq!(r.header("content-range"), Some(format!("bytes {first}-{last}/100").as_str()), "{range}");
        assert_eq!(r.header("content-length"), Some((last - first + 1).to_string().as_str()), "{range}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
        assert_eq!(r.body, &data[first..=last], "{range}");
    }
}

#[test]
fn files_advertise_byte_ranges() {
    let s = server();
    let r = get(&s, &[]);
    assert_eq!((r.status, r.header("accept-ranges")), (200, Some("bytes")));
}

#[test]
fn an_unsatisfiable_set_is_416_with_the_length() {
    let s = server();
    for range in ["bytes=100-", "bytes=100-200,500-", "bytes=-0"] {
        let mut c = s.connect();
        c.send_request("GET", "/h.txt", &[&format!("Range: {range}")]);
        let r = c.read_response();
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(r.reason, "Range Not Satisfiable");
        assert_eq!(r.header("content-range"), Some("bytes */100"), "{range}");
        assert!(r.body_str().contains("416 Range Not Satisfiable"));
        assert_close_consistent(&mut c, &r, "/h.txt");
    }
    s.write_file("empty", b"");
    let mut c = s.connect();
    c.send_request("GET", "/empty", &["Range: bytes=0-"]);
    let r = c.read_response();
    assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */0")));
}

#[test]
fn an_invalid_range_or_another_unit_gets_the_whole_file() {
    let s = server();
    for range in [
        "bytes=9-0",
        "bytes=abc",
        "bytes=",
        "bytes 0-9",
        "items=0-9",
        "bytes=0-9;x",
        // Abuse: ranges adding up to more than the file, or too many of them.
        "bytes=0-,0-",
        "bytes=0-60,40-99",
        &format!("bytes={}", (0..101).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(",")),
    ] {
        let r = get(&s, &[&format!("Range: {range}")]);
        assert_eq!(r.status, 200, "{range}");
        assert_eq!(r.header("content-range"), None);
        assert_eq!(r.body, hundred(), "{range}");
    }
    // Range on two lines is not one valid field.
    let r = get(&s, &["Range: bytes=0-1", "Range: bytes=5-6"]);
    assert_eq!(r.status, 200);
}

/// The parts of a multipart/byteranges body, split by its boundary
/// exactly as RFC 2046 frames them: (part header lines, part bytes).
fn split_multipart(r: &Response) -> Vec<(Vec<String>, Vec<u8>)> {
    let ct = r.header("content-type").expect("Content-Type");
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap_or_else(|| panic!("{ct}"));
    assert!(!boundary.is_empty() && boundary.len() <= 70, "{boundary}");
    let body = &r.body;
    let open = format!("--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--\r\n");
    assert!(body.starts_with(open.as_bytes()), "{}", r.body_str());
    assert!(body.ends_with(close.as_bytes()), "{}", r.body_str());
    let inner = &body[open.len()..body.len() - close.len()];
    let delimiter = format!("\r\n--{boundary}\r\n");
    let mut parts = Vec::new();
    let mut rest = inner;
    loop {
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("part head end");
        let head = String::from_utf8(rest[..head_end].to_vec()).unwrap();
        assert!(!head.contains(boundary), "the boundary occurs in a part head: {head}");
        let lines: Vec<String> = head.split("\r\n").map(str::to_string).collect();
        let range =
            lines.iter().find_map(|l| l.strip_prefix("Content-Range: bytes ")).expect("Content-Range");
        let (span, _) = range.split_once('/').unwrap();
        let (first, last) = span.split_once('-').unwrap();
        let len = last.parse::<usize>().unwrap() - first.parse::<usize>().unwrap() + 1;
        let data = rest[head_end + 4..head_end + 4 + len].to_vec();
        rest = &rest[head_end + 4 + len..];
        parts.push((lines, data));
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(delimiter.as_bytes()).expect("delimiter after a part");
    }
    parts
}

#[test]
fn several_ranges_are_multipart_byteranges_of_exact_length() {
    let s = server();
    let data = hundred();
    let mut c = s.connect();
    // Out of order, with an overlap and a suffix; the exact Content-Length
    // is checked by the pipelined request that follows on the same connection.
    c.send(
        b"GET /h.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=50-54, 0-3,2-5, -3\r\n\r\n\
          GET /h.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=1-1\r\nConnection: close\r\n\r\n",
    );
    let r = c.read_response();
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), None);
    assert!(r.header("etag").is_some() && r.header("accept-ranges") == Some("bytes"));
    let parts = split_multipart(&r);
    // In the order asked (RFC 9110 14.6), the coalesced `0-3,2-5` where `0-3` was.
    let want = [(50, 54), (0, 5), (97, 99)];
    assert_eq!(parts.len(), want.len());
    for ((lines, bytes), (first, last)) in parts.iter().zip(want) {
        assert_eq!(
            lines,
            &[
                "Content-Type: text/plain; charset=utf-8".to_string(),
                format!("Content-Range: bytes {first}-{last}/100")
            ]
        );
        assert_eq!(bytes, &data[first..=last]);
    }
    let next = c.read_response();
    assert_eq!((next.status, next.body.as_slice()), (206, &data[1..2]));
    c.expect_closed();
}

#[test]
fn multipart_parts_come_in_the_order_asked() {
    let s = server();
    let data = hundred();
    for (range, want) in [
        ("bytes=5-,0-0", &[(5, 99), (0, 0)][..]),
        ("bytes=-3, 40-49, 10-19, 20-29, 45-46", &[(97, 99), (40, 49), (10, 29)]),
    ] {
        let r = get(&s, &[&format!("Range: {range}")]);
        assert_eq!(r.status, 206, "{range}");
        let got: Vec<(usize, usize, Vec<u8>)> = split_multipart(&r)
            .into_iter()
            .map(|(lines, bytes)| {
                let span = lines[1].strip_prefix("Content-Range: bytes ").unwrap().split_once('/').unwrap().0;
                let (first, last) = span.split_once('-').unwrap();
                (first.parse().unwrap(), last.parse().unwrap(), bytes)
            })
            .collect();
        let want: Vec<(usize, usize, Vec<u8>)> =
            want.iter().map(|&(first, last)| (first, last, data[first..=last].to_vec())).collect();
        assert_eq!(got, want, "{range}");
    }
}

#[test]
fn multipart_parts_of_a_large_file_are_byte_exact() {
    let s = TestServer::start();
    let data = pseudo_random_bytes(3 << 20, 7);
    s.write_file("big.bin", &data);
    let spans = [(0usize, 65_535usize), (1 << 20, (2 << 20) + 12_345), ((3 << 20) - 10, (3 << 20) - 1)];
    let spec: Vec<String> = spans.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    let mut c = s.connect();
    c.send_request("GET", "/big.bin", &[&format!("Range: bytes={}", spec.join(","))]);
    let r = c.read_response();
    assert_eq!(r.status, 206);
    let parts = split_multipart(&r);
    assert_eq!(parts.len(), 3);
    for ((lines, bytes), (first, last)) in parts.iter().zip(spans) {
        assert_eq!(lines[1], format!("Content-Range: bytes {first}-{last}/{}", data.len()));
        assert!(bytes == &data[first..=last], "part {first}-{last} differs");
    }
}

#[test]
fn head_with_range_gets_the_head_of_the_206() {
    let s = server();
    for range in ["bytes=0-9", "bytes=0-1,5-6", "bytes=500-"] {
        let mut c = s.connect();
        c.send_request("GET", "/h.txt", &[&format!("Range: {range}")]);
        let get = c.read_response();
        // HEAD, then a pipelined GET: a body after the HEAD would corrupt it.
        c.send(
            format!(
                "HEAD /h.txt HTTP/1.1\r\nHost: x\r\nRange: {range}\r\n\r\n\
                 GET /h.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let head = c.read_head_response();
        assert_eq!(head.status, get.status, "{range}");
        for name in ["content-type", "content-length", "content-range", "etag", "accept-ranges"] {
            assert_eq!(head.header(name), get.header(name), "HEAD vs GET {name} for {range}");
        }
        assert_eq!(c.read_response().body, hundred());
        c.expect_closed();
    }
}

/// Sets the modification time of `path`.
fn set_mtime(path: &std::path::Path, t: SystemTime) {
    fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn if_range_serves_the_range_only_for_the_current_file() {
    let s = server();
    // Modified long ago, so its date is a strong validator too.
    set_mtime(&s.root().join("h.txt"), SystemTime::now() - Duration::from_secs(3600));
    let full = get(&s, &[]);
    let tag = full.header("etag").unwrap().to_string();
    let date = full.header("last-modified").unwrap().to_string();
    let earlier = format_http_date(parse_http_date(&date).unwrap() - 1);
    for (if_range, want) in [
        (tag.clone(), 206),
        (format!("W/{tag}"), 200),
        ("\"stale\"".to_string(), 200),
        (date.clone(), 206),
        (earlier, 200),
        ("garbage".to_string(), 200),
    ] {
        let r = get(&s, &["Range: bytes=0-9", &format!("If-Range: {if_range}")]);
        assert_eq!(r.status, want, "If-Range: {if_range}");
        assert_eq!(r.body.len(), if want == 206 { 10 } else { 100 }, "If-Range: {if_range}");
    }
    // Without Range, If-Range changes nothing.
    assert_eq!(get(&s, &["If-Range: \"stale\""]).status, 200);
}

#[test]
fn an_if_range_date_fails_for_a_file_modified_within_the_second() {
    // A file rewritten within the second its `Last-Modified` names may be
    // rewritten again within it: its date is weak (RFC 9110 8.8.2.2), and
    // a resumed download would splice two versions. Only a reply read back
    // within a second of the modification shows the rule; a slower round
    // is tried again, a bounded number of times.
    let s = server();
    let path = s.root().join("h.txt");
    for _ in 0..10 {
        let modified = SystemTime::now();
        set_mtime(&path, modified);
        let secs = modified.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let date = format_http_date(secs as i64);
        let r = get(&s, &["Range: bytes=0-9", &format!("If-Range: {date}")]);
        if SystemTime::now() >= modified + Duration::from_secs(1) {
            continue;
        }
        assert_eq!(r.header("last-modified"), Some(date.as_str()));
        assert_eq!((r.status, r.body), (200, hundred()), "If-Range: {date} a moment after the change");
        return;
    }
    panic!("no request was answered within a second of the file's change");
}

#[test]
fn curl_r_fetches_a_range() {
    if missing_tool("curl") {
        return;
    }
    let s = server();
    let url = format!("http://{}/h.txt", s.addr());
    for (range, want) in [("0-9", &hundred()[..10]), ("95-", &hundred()[95..])] {
        let out = run_tool(
            Command::new("curl").args(["-sS", "-r", range, "-w", "\n%{http_code}", &url]),
            Duration::from_secs(20),
        );
        assert!(out.success(), "{}", out.describe());
        let (body, code) = out.stdout.rsplit_once('\n').unwrap();
        assert_eq!((body.as_bytes(), code), (want, "206"), "curl -r {range}");
    }
}

#[test]
fn wget_c_resumes_a_partial_download() {
    if missing_tool("wget") {
        return;
    }
    let s = TestServer::start();
    let data = pseudo_random_bytes(300_000, 11);
    s.write_file("dl.bin", &data);
    let dir = TempDir::new("wget-c");
    let part = dir.path().join("dl.bin");
    fs::write(&part, &data[..123_456]).unwrap();
    let out = run_tool(
        Command::new("wget")
            .args(["-c", "-q", "--tries=1", "--no-config"])
            .arg(format!("http://{}/dl.bin", s.addr()))
            .current_dir(dir.path()),
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.describe());
    assert!(fs::read(&part).unwrap() == data, "the resumed file differs from the original");
    // It asked for the rest only, and got it as a 206.
    let lines = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("GET /dl.bin"));
    let line = parse_clf(&lines[0]).unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!((line.status, line.bytes.as_str()), (206, (300_000 - 123_456).to_string().as_str()));
}

/// Python's own MIME parser (the standard library's `email` package) reads
/// the multipart body that `http.client` receives.
const PYTHON_MULTIPART: &str = r#"
import email.parser, email.policy, http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=20)
conn.request("GET", "/h.txt", headers={"Range": "bytes=0-4,20-24,-3"})
resp = conn.getresponse()
body = resp.read()
assert resp.status == 206, resp.status
assert int(resp.getheader("Content-Length")) == len(body)
head = "Content-Type: " + resp.getheader("Content-Type") + "\r\n\r\n"
msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head.encode() + body)
assert msg.get_content_type() == "multipart/byteranges", msg.get_content_type()
for part in msg.iter_parts():
    print(part["Content-Range"], part.get_payload(decode=True).decode())
"#;

#[test]
fn python_http_client_reads_the_multipart_body() {
    if missing_tool("python3") {
        return;
    }
    let s = server();
    let out = run_tool(
        Command::new("python3")
            .args(["-c", PYTHON_MULTIPART])
            .arg(s.addr().ip().to_string())
            .arg(s.addr().port().to_string()),
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.describe());
    let data = String::from_utf8(hundred()).unwrap();
    let want = format!(
        "bytes 0-4/100 {}\nbytes 20-24/100 {}\nbytes 97-99/100 {}",
        &data[..5],
        &data[20..25],
        &data[97..]
    );
    assert_eq!(out.stdout, want, "{}", out.describe());
}
