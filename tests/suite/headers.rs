//! Response headers and error pages on the real binary: `nosniff`, the
//! fields for every response, the rules by path prefix or glob (for `2xx`
//! and `3xx` only), their validation at load, custom error pages, and the
//! `Location` of a directory redirect.

use std::fs;
use std::time::Duration;

use crate::common::*;

fn get(s: &TestServer, path: &str) -> Response {
    get_close(s.addr(), path)
}

#[test]
fn nosniff_is_on_every_response_by_default() {
    let s = TestServer::start();
    s.write_file("a.txt", b"a");
    s.mkdir("d");
    let mut responses = vec![get(&s, "/a.txt"), get(&s, "/missing"), get(&s, "/d")];
    let mut c = s.connect();
    c.send_request("OPTIONS", "*", &["Connection: close"]);
    responses.push(c.read_response());
    responses.push(expect_error(s.addr(), b"GET /a.txt HTTP/1.1\r\n\r\n", 400));
    for r in &responses {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{} {:?}", r.status, r.headers);
        assert_eq!(r.header_count("x-content-type-options"), 1);
        // Connection stays the last field.
        if r.header("connection").is_some() {
            assert_eq!(r.headers.last().unwrap().0, "connection", "{:?}", r.headers);
        }
    }
    let s = TestServer::builder().config("nosniff = false").start();
    s.write_file("a.txt", b"a");
    assert_eq!(get(&s, "/a.txt").header("x-content-type-options"), None);
}

#[test]
fn header_rules_by_prefix_and_glob_on_successes_only() {
    let s = TestServer::builder()
        .config("headers = { \"Cache-Control\" = \"no-cache\", \"X-Frame-Options\" = \"DENY\" }")
        .config(
            "header_rules = [\
             { path = \"/assets/\", headers = { \"Cache-Control\" = \"public, max-age=31536000, immutable\" } },\
             { path = \"/fonts/*.woff2\", headers = { \"Access-Control-Allow-Origin\" = \"*\" } }]",
        )
        .start();
    s.write_file("assets/app.js", b"js");
    s.write_file("assets/sub/index.html", b"sub");
    s.write_file("fonts/a.woff2", b"font");
    s.write_file("fonts/a.woff", b"old font");
    s.write_file("fonts/x/b.woff2", b"deeper");
    s.write_file("page.html", b"page");

    let r = get(&s, "/assets/app.js");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(r.header_count("cache-control"), 1, "the rule replaces the field for every response");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // A percent-encoded path is matched decoded and normalised.
    let r = get(&s, "/%61ssets/./app.js");
    assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
    // The redirect of /assets/sub (3xx) carries the rule too, its 200 as well.
    let r = get(&s, "/assets/sub");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
    // An error under the prefix does not: a 404 must never become immutable.
    let r = get(&s, "/assets/missing.js");
    assert_error_page(&r, 404);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));

    assert_eq!(get(&s, "/fonts/a.woff2").header("access-control-allow-origin"), Some("*"));
    assert_eq!(get(&s, "/fonts/a.woff").header("access-control-allow-origin"), None);
    assert_eq!(get(&s, "/fonts/x/b.woff2").header("access-control-allow-origin"), None);
    let r = get(&s, "/page.html");
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("access-control-allow-origin"), None);
    // OPTIONS serves no path: no rule's fields, only those for every
    // response (where a CORS preflight's belong).
    let mut c = s.connect();
    c.send_request("OPTIONS", "/fonts/a.woff2", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
    assert_eq!((r.header("cache-control"), r.header("x-frame-options")), (Some("no-cache"), Some("DENY")));
}

/// `METHOD path` with `Host: host` on a new connection (closed after).
fn request(s: &TestServer, method: &str, host: &str, path: &str) -> Response {
    let mut c = s.connect();
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response()
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The README's `[[site]]` example, as it is written there, with its root
/// moved to `sites/example`: a missing script must not be answered with
/// the HTML shell marked immutable for a year.
#[test]
fn the_readme_spa_example_keeps_its_asset_rule_off_the_fallback() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start =
        readme.find("```toml\n[[site]]\n").expect("the README's [[site]] example") + "```toml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    assert!(example.contains("fallback = \"/index.html\"") && example.contains(IMMUTABLE), "{example}");
    let root = "root = \"/srv/example.org\"";
    assert!(example.contains(root), "{example}");
    let s = TestServer::builder()
        .dir("sites/example")
        .config(&example.replace(root, "root = \"sites/example\""))
        .start();
    let site = s.base().join("sites/example");
    fs::create_dir_all(site.join("assets")).unwrap();
    fs::create_dir_all(site.join("fonts")).unwrap();
    fs::write(site.join("index.html"), b"<html>shell</html>").unwrap();
    fs::write(site.join("404.html"), b"custom 404").unwrap();
    fs::write(site.join("assets/app.1111.js"), b"js").unwrap();
    fs::write(site.join("fonts/a.woff2"), b"font").unwrap();

    // The asset that exists: the rule of its path.
    let r = request(&s, "GET", "example.org", "/assets/app.1111.js");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"js"[..]));
    assert_eq!(r.header("cache-control"), Some(IMMUTABLE));
    // One that does not: the shell, with the rules of /index.html (none).
    for host in ["example.org", "www.example.org", "cdn.example.org"] {
        let r = request(&s, "GET", host, "/assets/app.2222.js");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"<html>shell</html>"[..]), "{host}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(
            r.header("cache-control"),
            None,
            "{host}: the HTML shell must not be cached as the script"
        );
    }
    let r = request(&s, "GET", "example.org", "/fonts/b.woff2");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
    assert_eq!(
        request(&s, "GET", "example.org", "/fonts/a.woff2").header("access-control-allow-origin"),
        Some("*")
    );
    // OPTIONS serves no path: no rule.
    let r = request(&s, "OPTIONS", "example.org", "/assets/app.1111.js");
    assert_eq!((r.status, r.header("cache-control")), (200, None));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    // A refused path (a dotfile) never falls back: the custom 404 page,
    // without the rule.
    let r = request(&s, "GET", "example.org", "/assets/.env");
    assert_eq!((r.status, r.body.as_slice(), r.header("cache-control")), (404, &b"custom 404"[..], None));
}

/// A fallback gets the rules of its own path; an error page none, even
/// where a rule matches its path; OPTIONS (a path or `*`) only the fields
/// for every response.
#[test]
fn a_reply_gets_the_rules_of_what_it_serves() {
    let s = TestServer::builder()
        .config("fallback = \"/index.html\"")
        .config("error_pages = { 404 = \"/assets/404.html\" }")
        .config("headers = { \"X-Every\" = \"1\" }")
        .config(&format!(
            "header_rules = [\
             {{ path = \"/assets/\", headers = {{ \"Cache-Control\" = \"{IMMUTABLE}\" }} }},\
             {{ path = \"/*.html\", headers = {{ \"Cache-Control\" = \"no-cache\", \"X-Html\" = \"1\" }} }}]"
        ))
        .start();
    s.write_file("index.html", b"shell");
    s.write_file("assets/404.html", b"custom 404");
    s.write_file("assets/app.js", b"js");

    for path in ["/assets/missing.js", "/deep/link"] {
        let r = get(&s, path);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"shell"[..]), "{path}");
        assert_eq!((r.header("cache-control"), r.header("x-html")), (Some("no-cache"), Some("1")), "{path}");
        assert_eq!(r.header_count("cache-control"), 1);
    }
    // HEAD and a revalidation of the fallback (304) get them too.
    let mut c = s.connect();
    c.send_request("HEAD", "/assets/missing.js", &[]);
    let r = c.read_head_response();
    assert_eq!((r.status, r.header("cache-control")), (200, Some("no-cache")));
    let etag = r.header("etag").expect("the fallback's ETag").to_string();
    c.send_request("GET", "/assets/missing.js", &[&format!("If-None-Match: {etag}"), "Connection: close"]);
    let r = c.read_head_response();
    assert_eq!((r.status, r.header("cache-control")), (304, Some("no-cache")));
    // The page of an error gets no rule, though one matches its path.
    let r = get(&s, "/assets/.hidden");
    assert_eq!((r.status, r.body.as_slice()), (404, &b"custom 404"[..]));
    assert_eq!((r.header("cache-control"), r.header("x-every")), (None, Some("1")));
    // The file itself still gets its rule.
    assert_eq!(get(&s, "/assets/app.js").header("cache-control"), Some(IMMUTABLE));
    for target in ["/assets/app.js", "/index.html", "*"] {
        let mut c = s.connect();
        c.send_request("OPTIONS", target, &["Connection: close"]);
        let r = c.read_response();
        assert_eq!((r.status, r.header("x-every")), (200, Some("1")), "{target}");
        assert_eq!((r.header("cache-control"), r.header("x-html")), (None, None), "{target}");
    }
}

/// A glob that made the old backtracking matcher take minutes of CPU for
/// one request (its four `**` each tried every position) is matched
/// against a path of 3 KB that exists (a 200, which rules apply to); and
/// OPTIONS and a fallback with a 7 KB path are answered as promptly.
#[test]
fn a_hostile_path_against_a_glob_is_answered_promptly() {
    let s = TestServer::builder()
        .config("fallback = \"/index.html\"")
        .config("header_rules = [{ path = \"/**/a/**/a/**/a/**/b\", headers = { \"X-Glob\" = \"1\" } }]")
        .start();
    s.write_file("index.html", b"shell");
    let deep = format!("{}x.txt", "a/".repeat(1500));
    s.write_file(&deep, b"deep");
    let long = format!("/{}x", "a/".repeat(3500));
    let bound = Duration::from_secs(5);
    let requests = [("GET", format!("/{deep}")), ("OPTIONS", long.clone()), ("GET", long)];
    for (method, target) in &requests {
        let started = std::time::Instant::now();
        let mut c = s.connect();
        c.send_request(method, target, &["Connection: close"]);
        let r = c.read_response();
        let took = started.elapsed();
        assert_eq!((r.status, r.header("x-glob")), (200, None), "{method} of {} bytes", target.len());
        assert!(took < bound, "{method} of {} bytes took {took:?}", target.len());
    }
    // The rule still matches where it should.
    s.write_file("x/a/y/a/z/a/w/b", b"b");
    assert_eq!(get(&s, "/x/a/y/a/z/a/w/b").header("x-glob"), Some("1"));
}

#[test]
fn header_rules_are_per_site() {
    let s = TestServer::builder()
        .dir("sites/a")
        .config(
            "[[site]]\nhosts = [\"a.example\"]\nroot = \"sites/a\"\nnosniff = false\n\
                 headers = { \"X-Site\" = \"a\" }",
        )
        .start();
    s.write_file("f.txt", b"default");
    fs::write(s.base().join("sites/a/f.txt"), b"a").unwrap();
    let r = get(&s, "/f.txt");
    assert_eq!((r.header("x-site"), r.header("x-content-type-options")), (None, Some("nosniff")));
    let mut c = s.connect();
    c.send(b"GET /f.txt HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.body, b"a");
    assert_eq!((r.header("x-site"), r.header("x-content-type-options")), (Some("a"), None));
}

/// `--check-config --no-bind` on `extra` (after a root line).
fn check(extra: &str) -> Output {
    let dir = TempDir::new("headers-check");
    fs::create_dir_all(dir.path().join("www")).unwrap();
    let cfg = dir.path().join("c.toml");
    fs::write(&cfg, format!("root = \"www\"\n{extra}")).unwrap();
    run(
        server_command().args(["--check-config", "--no-bind", "--config"]).arg(&cfg).current_dir(dir.path()),
        Duration::from_secs(20),
    )
}

#[test]
fn header_names_and_values_are_validated_at_load() {
    let table: &[(&str, &str)] = &[
        ("headers = { \"X-A\" = \"1\\r\\nSet-Cookie: evil=1\" }", "control character"),
        ("headers = { \"X-A\" = \"1\\n\" }", "control character"),
        ("headers = { \"X A\" = \"1\" }", "not a valid field name"),
        ("headers = { \"X-A:\" = \"1\" }", "not a valid field name"),
        ("headers = { \"Content-Length\" = \"0\" }", "set by the server"),
        ("headers = { \"Transfer-Encoding\" = \"chunked\" }", "set by the server"),
        ("header_rules = [{ path = \"/a/\", headers = { \"X\" = \"a\\u0000b\" } }]", "control character"),
        ("header_rules = [{ path = \"a/\", headers = { \"X\" = \"1\" } }]", "must start with '/'"),
        ("header_rules = [{ path = \"/a/\", headers = {} }]", "at least one header"),
        ("error_pages = { 302 = \"/x.html\" }", "not an error status"),
        ("error_pages = { 404 = \"/../x.html\" }", "climbs out"),
    ];
    for (line, what) in table {
        let out = check(&format!("\n{line}\n"));
        let said = out.describe();
        assert!(!out.success() && said.contains("line 3") && said.contains(what), "{line}\n=> {said}");
    }
    let out = check("headers = { \"X-Ok\" = \"a, b; c=\\\"d\\\"\" }\n");
    assert!(out.success(), "{}", out.describe());
}

#[test]
fn custom_error_pages_keep_the_status_and_have_no_validators() {
    let s = TestServer::builder()
        .config("error_pages = { 404 = \"/errors/404.html\", 403 = \"/errors/403.txt\", 405 = \"/errors/405.html\" }")
        .start();
    s.write_file("errors/404.html", b"<h1>custom not found</h1>");
    s.write_file("errors/403.txt", b"custom forbidden");
    s.write_file("errors/405.html", b"no such method here");
    s.mkdir("noindex");
    let r = get(&s, "/missing");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"<h1>custom not found</h1>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("25"));
    assert_eq!((r.header("last-modified"), r.header("etag")), (None, None));
    let r = get(&s, "/noindex/");
    assert_eq!((r.status, r.body.as_slice()), (403, &b"custom forbidden"[..]));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // The 405 answered without a file gets its page too.
    let mut c = s.connect();
    c.send_request("DELETE", "/x", &["Connection: close"]);
    let r = c.read_response();
    assert_eq!((r.status, r.body.as_slice()), (405, &b"no such method here"[..]));
    assert!(r.header("allow").is_some());
    // HEAD: the page's length, no body, and the connection carries on.
    let mut c = s.connect();
    c.send_request("HEAD", "/missing", &[]);
    let r = c.read_head_response();
    assert_eq!((r.status, r.header("content-length")), (404, Some("25")));
    s.write_file("a.txt", b"a");
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    assert_eq!(c.read_response().body, b"a");
    // A status without a page keeps the built-in one.
    let r = expect_error(s.addr(), b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    assert!(r.body_str().contains("400 Bad Request"));
}

#[test]
fn a_missing_or_unsafe_error_page_falls_back_to_the_built_in_one() {
    let s =
        TestServer::builder().config("error_pages = { 404 = \"/404.html\", 403 = \"/dir.html\" }").start();
    let secret = s.base().join("outside.html");
    fs::write(&secret, b"OUTSIDE THE ROOT").unwrap();
    // 404: the page is a symlink out of the root (refused, so built-in).
    s.symlink(&secret, "404.html");
    let r = get(&s, "/missing");
    assert_error_page(&r, 404);
    assert!(r.body_str().contains("404 Not Found") && !r.body_str().contains("OUTSIDE"));
    // 403: the page is a directory.
    s.mkdir("dir.html");
    s.mkdir("noindex");
    let r = get(&s, "/noindex/");
    assert_error_page(&r, 403);
    assert!(r.body_str().contains("403 Forbidden"));
    // Missing altogether.
    fs::remove_file(s.root().join("404.html")).unwrap();
    assert!(get(&s, "/missing").body_str().contains("404 Not Found"));
}

#[test]
fn a_directory_redirect_keeps_the_query_percent_encoded() {
    let s = TestServer::start();
    s.write_file("dir/index.html", b"i");
    let mut c = s.connect();
    c.send("GET /dir?a=\"<b>\"&c=%20&d=é|x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dir/?a=%22%3Cb%3E%22&c=%20&d=%C3%A9%7Cx"));
    let raw = String::from_utf8_lossy(c.received()).into_owned();
    let loc_line = raw.lines().find(|l| l.to_ascii_lowercase().starts_with("location:")).unwrap();
    assert!(loc_line.bytes().all(|b| (0x21..0x7f).contains(&b) || b == b' '), "{loc_line:?}");
    // An encoded segment stays encoded; a plain query is kept as it is.
    let r = get(&s, "/d%69r?x=1&y");
    assert_eq!(r.header("location"), Some("/dir/?x=1&y"));
}
