//! Content types: the built-in table, `mime_types` files in
//! `/etc/mime.types` format, the `mime` overrides, `default_type` and
//! `charset`, as the real server sends them (and re-reads them on SIGHUP).

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::*;

/// The `Content-Type` of `GET path` on a fresh connection.
fn content_type(s: &TestServer, path: &str) -> String {
    let r = s.get(path);
    assert_eq!(r.status, 200, "GET {path}");
    r.header("content-type").unwrap_or_else(|| panic!("GET {path}: no Content-Type")).to_string()
}

#[test]
fn built_in_table_and_defaults() {
    let s = TestServer::start();
    for f in ["a.html", "a.CSS", "a.png", "a.json", "README"] {
        s.write_file(f, b"x");
    }
    assert_eq!(content_type(&s, "/a.html"), "text/html; charset=utf-8");
    assert_eq!(content_type(&s, "/a.CSS"), "text/css; charset=utf-8");
    assert_eq!(content_type(&s, "/a.png"), "image/png");
    assert_eq!(content_type(&s, "/a.json"), "application/json");
    assert_eq!(content_type(&s, "/README"), "application/octet-stream");
}

#[test]
fn overrides_default_type_and_charset() {
    let s = TestServer::builder()
        .config(r#"mime = { log = "text/x-log", PNG = "image/x-png", csv = "text/csv; header=present" }"#)
        .config(r#"default_type = "text/plain""#)
        .config(r#"charset = "iso-8859-1""#)
        .start();
    for f in ["a.log", "a.png", "a.csv", "a.html", "README", "a.woff2"] {
        s.write_file(f, b"x");
    }
    assert_eq!(content_type(&s, "/a.log"), "text/x-log; charset=iso-8859-1");
    assert_eq!(content_type(&s, "/a.png"), "image/x-png");
    assert_eq!(content_type(&s, "/a.csv"), "text/csv; header=present");
    assert_eq!(content_type(&s, "/a.html"), "text/html; charset=iso-8859-1");
    assert_eq!(content_type(&s, "/README"), "text/plain; charset=iso-8859-1");
    assert_eq!(content_type(&s, "/a.woff2"), "font/woff2");
}

#[test]
fn empty_charset_adds_none() {
    let s = TestServer::builder().config(r#"charset = """#).start();
    s.write_file("a.txt", b"x");
    assert_eq!(content_type(&s, "/a.txt"), "text/plain");
}

#[test]
fn mime_types_files_in_order_then_overrides_and_reread_on_reload() {
    let dir = TempDir::new("mime-types-files");
    let first = dir.path().join("first.types");
    let second = dir.path().join("second.types");
    fs::write(&first, "# a comment\napplication/x-foo\tfoo bar\nimage/x-first png\n").unwrap();
    fs::write(&second, "application/x-second bar  # later file wins\ntext/x-over over\n").unwrap();
    let mut s = TestServer::builder()
        .config(&format!(
            "mime_types = [{}, {}]",
            toml_str(first.to_str().unwrap()),
            toml_str(second.to_str().unwrap())
        ))
        .config(r#"mime = { over = "application/x-config" }"#)
        .start();
    for f in ["a.foo", "a.BAR", "a.png", "a.over"] {
        s.write_file(f, b"x");
    }
    assert_eq!(content_type(&s, "/a.foo"), "application/x-foo");
    assert_eq!(content_type(&s, "/a.BAR"), "application/x-second");
    assert_eq!(content_type(&s, "/a.png"), "image/x-first");
    assert_eq!(content_type(&s, "/a.over"), "application/x-config");

    // Built once per configuration: a reload reads the files again.
    fs::write(&first, "application/x-foo-2 foo\n").unwrap();
    let from = s.lines().len();
    s.signal(Signal::SIGHUP);
    let reloaded = s.wait_for_lines(1, Duration::from_secs(5), |l| l.contains("configuration reloaded"));
    assert!(!reloaded.is_empty(), "no reload line after SIGHUP (from line {from}): {:?}", s.lines());
    assert!(
        poll_until(Duration::from_secs(5), || content_type(&s, "/a.foo") == "application/x-foo-2"),
        "the reloaded mime_types file was not used"
    );
    assert_eq!(content_type(&s, "/a.png"), "image/png");
}

#[test]
fn bad_mime_settings_are_refused_with_their_key() {
    let dir = TempDir::new("mime-bad");
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x")]);
    let missing = dir.path().join("missing.types");
    let cases: &[(String, &str)] = &[
        (format!("mime_types = [{}]", toml_str(missing.to_str().unwrap())), "mime_types"),
        (r#"mime = { ".png" = "image/png" }"#.to_string(), "mime"),
        (r#"mime = { png = "image" }"#.to_string(), "mime"),
        ("default_type = \"text/plain\\r\\nX-Evil: 1\"".to_string(), "default_type"),
        (r#"charset = "utf 8""#.to_string(), "charset"),
    ];
    for (line, key) in cases {
        let cfg = dir.path().join("forkhttpd.toml");
        fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &[line])).unwrap();
        let out = run(
            server_command().args(["--check-config", "--no-bind", "--config"]).arg(&cfg),
            Duration::from_secs(10),
        );
        assert_eq!(out.code(), Some(1), "{line}: {}", out.describe());
        assert!(out.stderr.contains(&format!("key `{key}`")), "{line}: {}", out.describe());
    }
}
