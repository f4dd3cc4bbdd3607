//! Sites (name-based virtual hosts) on the real binary: the `Host` (or an
//! absolute-form target) picks the site, each site serves beneath its own
//! root (opened by the parent, inherited by children), errors inside a site
//! name it and its line, `--check-config` and `SIGHUP` see every site; and
//! the per-site `index` and `fallback` rules.

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::*;

/// A `[[site]]` table's lines for `hosts` served from `<tmp>/sites/DIR`.
/// Roots must exist at start: `sites_server` creates them.
fn site_table(hosts: &[&str], dir: &str, extra: &[&str]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| toml_str(h)).collect();
    let mut t = format!("[[site]]\nhosts = [{}]\nroot = \"sites/{dir}\"\n", hosts.join(", "));
    for line in extra {
        t.push_str(line);
        t.push('\n');
    }
    t
}

/// Starts a server whose config ends with `tables`, after creating the
/// site roots `dirs` (relative roots resolve against the server's start
/// directory, the test's temporary base).
fn sites_server(dirs: &[&str], top: &[&str], tables: &[String]) -> TestServer {
    let mut b = TestServer::builder();
    for line in top {
        b = b.config(line);
    }
    for t in tables {
        b = b.config(t);
    }
    for d in dirs {
        b = b.dir(&format!("sites/{d}"));
    }
    b.start()
}

/// `GET path` with `Host: host` on a new connection (closed after).
fn get_host(s: &TestServer, host: &str, path: &str) -> Response {
    let mut c = s.connect();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
    c.read_response()
}

fn write(s: &TestServer, rel: &str, data: &[u8]) {
    let p = s.base().join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

#[test]
fn the_host_picks_the_site_and_its_root() {
    let s = sites_server(
        &["a", "b"],
        &[],
        &[site_table(&["a.example", "alias.example"], "a", &[]), site_table(&["*.b.example"], "b", &[])],
    );
    s.write_file("who.txt", b"default");
    write(&s, "sites/a/who.txt", b"site a");
    write(&s, "sites/b/who.txt", b"site b");
    let table: &[(&str, &[u8])] = &[
        ("a.example", b"site a"),
        ("A.EXAMPLE", b"site a"),
        ("a.example.", b"site a"),
        ("a.example:8080", b"site a"),
        ("Alias.Example.:80", b"site a"),
        ("www.b.example", b"site b"),
        ("x.y.B.example", b"site b"),
        // A wildcard needs a label before its suffix.
        ("b.example", b"default"),
        ("unknown.example", b"default"),
        ("127.0.0.1", b"default"),
    ];
    for (host, want) in table {
        let r = get_host(&s, host, "/who.txt");
        assert_eq!(r.status, 200, "Host: {host}");
        assert_eq!(r.body, *want, "Host: {host}");
    }
    // The absolute-form authority wins over Host (RFC 9112 3.2.2).
    let mut c = s.connect();
    c.send(b"GET http://a.example/who.txt HTTP/1.1\r\nHost: www.b.example\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_response().body, b"site a");
    // HTTP/1.0 without Host: the default site.
    let mut c = s.connect();
    c.send(b"GET /who.txt HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response().body, b"default");
    // The site is chosen per request, also on one kept-alive connection.
    let mut c = s.connect();
    for (host, want) in [("a.example", &b"site a"[..]), ("q.b.example", b"site b"), ("none", b"default")] {
        c.send(format!("GET /who.txt HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        let r = c.read_response();
        assert_eq!(r.body, want, "keep-alive, Host: {host}");
    }
}

#[test]
fn a_host_that_is_not_one_host_is_400_and_honest_ones_are_served() {
    // RFC 9112 3.2: an invalid Host is a 400, as nginx answers; and
    // userinfo in a target is an error (RFC 9110 4.2.4), not a way to
    // name another site than a reader of the log or a proxy would see.
    let s = sites_server(
        &["a", "b"],
        &[],
        &[site_table(&["a.test", "[::1]"], "a", &[]), site_table(&["b.test"], "b", &[])],
    );
    s.write_file("x", b"default");
    write(&s, "sites/a/x", b"site a");
    write(&s, "sites/b/x", b"site b");
    let refused: &[&[u8]] = &[
        b"GET /x HTTP/1.1\r\nHost: b.test, a.test\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: b.test,a.test\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: b.test a.test\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: ..\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a..test\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a.test@b.test\r\n\r\n",
        b"GET /x HTTP/1.0\r\nHost: a.test:80x\r\n\r\n",
        b"GET http://a.test@b.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n",
        b"GET http://a.test:80@b.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n",
        b"GET http://b.test/x HTTP/1.1\r\nHost: b.test a.test\r\n\r\n",
    ];
    for request in refused {
        expect_error_and_close(s.addr(), request, 400);
    }
    let port = s.addr().port();
    let served: &[(String, &[u8])] = &[
        ("a.test.".into(), b"site a"),
        (format!("a.test:{port}"), b"site a"),
        (format!("[::1]:{port}"), b"site a"),
        ("B.Test".into(), b"site b"),
        (format!("localhost:{port}"), b"default"),
        (format!("127.0.0.1:{port}"), b"default"),
        ("".into(), b"default"),
    ];
    for (host, want) in served {
        let r = get_host(&s, host, "/x");
        assert_eq!((r.status, r.body.as_slice()), (200, *want), "Host: {host:?}");
    }
    let mut c = s.connect();
    c.send(b"GET http://b.test:80/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    assert_eq!(c.read_response().body, b"site b");
}

#[test]
fn a_site_serves_only_beneath_its_own_root() {
    let s = sites_server(&["a"], &[], &[site_table(&["a.example"], "a", &[])]);
    s.write_file("secret.txt", b"default root only");
    write(&s, "sites/a/ok.txt", b"ok");
    let outside = s.root().join("secret.txt");
    std::os::unix::fs::symlink(&outside, s.base().join("sites/a/abs-link.txt")).unwrap();
    std::os::unix::fs::symlink("../../root/secret.txt", s.base().join("sites/a/rel-link.txt")).unwrap();
    assert_eq!(get_host(&s, "a.example", "/ok.txt").body, b"ok");
    // The default site's files are not the site's.
    assert_error_page(&get_host(&s, "a.example", "/secret.txt"), 404);
    // Links and climbs out of the site's root are refused, as for the default root.
    assert_error_page(&get_host(&s, "a.example", "/abs-link.txt"), 403);
    assert_error_page(&get_host(&s, "a.example", "/rel-link.txt"), 403);
    let mut c = s.connect();
    c.send(b"GET /../root/secret.txt HTTP/1.1\r\nHost: a.example\r\n\r\n");
    let r = c.read_response();
    assert_error_page(&r, 400);
    assert!(!r.body_str().contains("default root only"));
    // And the default site still serves its own.
    assert_eq!(get_host(&s, "other", "/secret.txt").body, b"default root only");
}

#[test]
fn each_site_has_its_own_index_names_and_the_default_tries_index_htm() {
    let s = sites_server(
        &["a"],
        &[],
        &[site_table(&["a.example"], "a", &["index = [\"start.html\", \"index.html\"]"])],
    );
    s.write_file("d/index.htm", b"htm index");
    write(&s, "sites/a/d/start.html", b"start");
    write(&s, "sites/a/d/index.html", b"html");
    write(&s, "sites/a/e/index.htm", b"not an index here");
    // The default site's default: index.html, then index.htm.
    assert_eq!(get_host(&s, "x", "/d/").body, b"htm index");
    assert_eq!(get_host(&s, "a.example", "/d/").body, b"start");
    assert_error_page(&get_host(&s, "a.example", "/e/"), 403);
}

#[test]
fn fallback_serves_the_file_for_missing_paths_only() {
    let s = sites_server(&["a"], &[], &[site_table(&["spa.example"], "a", &["fallback = \"/app.html\""])]);
    write(&s, "sites/a/app.html", b"<p>app</p>");
    write(&s, "sites/a/real.txt", b"real");
    write(&s, "sites/a/.env", b"SECRET");
    write(&s, "sites/a/noindex/x.txt", b"x");
    let r = get_host(&s, "spa.example", "/users/42/profile");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<p>app</p>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(get_host(&s, "spa.example", "/real.txt").body, b"real");
    let mut c = s.connect();
    c.send(b"HEAD /deep/link HTTP/1.1\r\nHost: spa.example\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!((r.status, r.header("content-length")), (200, Some("10")));
    // Refused paths never fall back: a climb (400), a dotfile (404), a
    // directory without index (403), another method (405).
    let mut c = s.connect();
    c.send(b"GET /a/../../x HTTP/1.1\r\nHost: spa.example\r\n\r\n");
    assert_error_page(&c.read_response(), 400);
    let r = get_host(&s, "spa.example", "/.env");
    assert_error_page(&r, 404);
    assert!(!r.body_str().contains("app") && !r.body_str().contains("SECRET"));
    assert_error_page(&get_host(&s, "spa.example", "/noindex/"), 403);
    let mut c = s.connect();
    c.send(b"DELETE /missing HTTP/1.1\r\nHost: spa.example\r\nConnection: close\r\n\r\n");
    assert_error_page(&c.read_response(), 405);
    // Off by default: the default site answers 404.
    assert_error_page(&get_host(&s, "other", "/users/42/profile"), 404);
}

/// A fallback that cannot be served (missing, or a link out of the root)
/// leaves the 404 as it was: no 403, no 500.
#[test]
fn an_unservable_fallback_leaves_the_404() {
    let s = sites_server(
        &["a", "b"],
        &[],
        &[
            site_table(&["gone.example"], "a", &["fallback = \"/gone.html\""]),
            site_table(&["link.example"], "b", &["fallback = \"/out.html\""]),
        ],
    );
    s.write_file("secret.html", b"SECRET");
    std::os::unix::fs::symlink(s.root().join("secret.html"), s.base().join("sites/b/out.html")).unwrap();
    assert_error_page(&get_host(&s, "gone.example", "/x"), 404);
    let r = get_host(&s, "link.example", "/x");
    assert_error_page(&r, 404);
    assert!(!r.body_str().contains("SECRET"));
}

/// Runs `--check-config --no-bind` on `text` written as `<dir>/c.toml`,
/// with `sites/a` and `sites/b` present.
fn check(text: &str) -> Output {
    let dir = TempDir::new("sites-check");
    fs::create_dir_all(dir.path().join("www")).unwrap();
    fs::create_dir_all(dir.path().join("sites/a")).unwrap();
    fs::create_dir_all(dir.path().join("sites/b")).unwrap();
    let cfg = dir.path().join("c.toml");
    fs::write(&cfg, text).unwrap();
    run(
        server_command().args(["--check-config", "--no-bind", "--config"]).arg(&cfg).current_dir(dir.path()),
        Duration::from_secs(20),
    )
}

#[test]
fn config_errors_in_a_site_name_the_site_and_the_line() {
    let ok = "root = \"www\"\n[[site]]\nhosts = [\"a.example\"]\nroot = \"sites/a\"\n";
    let out = check(ok);
    assert!(out.success(), "{}", out.describe());
    let text = format!(
        "{ok}# index = [\"also not this line\"]\n[[site]]\nhosts = [\"b.example\"]\nroot = \"sites/b\"\n\
         index = [\"../x\"]\n"
    );
    let out = check(&text);
    assert!(!out.success());
    let said = out.describe();
    assert!(
        said.contains("line 9") && said.contains("[[site]] #2 (b.example)") && said.contains("key `index`"),
        "{said}"
    );
    // An unknown key inside a site: the toml error's own span.
    let out = check(&format!("{ok}\n\nlistng = true\n"));
    let said = out.describe();
    assert!(!out.success() && said.contains("line 7") && said.contains("[[site]] #1"), "{said}");
}

#[test]
fn every_site_root_is_opened_at_start_and_by_check_config() {
    let text = "root = \"www\"\n[[site]]\nhosts = [\"a.example\"]\nroot = \"sites/a\"\n\
                [[site]]\nhosts = [\"c.example\"]\nroot = \"sites/missing\"\n";
    let out = check(text);
    assert!(!out.success() && out.describe().contains("sites/missing"), "{}", out.describe());
    // A root that is a file, not a directory.
    let dir = TempDir::new("sites-start");
    fs::create_dir_all(dir.path().join("www")).unwrap();
    fs::write(dir.path().join("file"), b"x").unwrap();
    let cfg = dir.path().join("c.toml");
    fs::write(
        &cfg,
        "listen = [\"127.0.0.1:0\"]\nroot = \"www\"\n[[site]]\nhosts = [\"a.example\"]\nroot = \"file\"\n",
    )
    .unwrap();
    let out =
        run(server_command().arg("--config").arg(&cfg).current_dir(dir.path()), Duration::from_secs(20));
    assert!(!out.success(), "started with a site root that is a file: {}", out.describe());
    assert!(out.describe().contains("file"), "{}", out.describe());
}

#[test]
fn sighup_rereads_the_sites() {
    let mut s = sites_server(&["a", "b"], &[], &[site_table(&["a.example"], "a", &[])]);
    write(&s, "sites/a/who.txt", b"site a");
    write(&s, "sites/b/who.txt", b"site b");
    assert_eq!(get_host(&s, "a.example", "/who.txt").body, b"site a");
    assert_error_page(&get_host(&s, "b.example", "/who.txt"), 404);
    let cfg = s.base().join("forkhttpd.toml");
    let text = fs::read_to_string(&cfg).unwrap();
    let text = text.replace(
        "hosts = [\"a.example\"]\nroot = \"sites/a\"",
        "hosts = [\"b.example\"]\nroot = \"sites/b\"",
    );
    fs::write(&cfg, format!("{text}{}", site_table(&["a.example"], "b", &[]))).unwrap();
    let from = s.lines().len();
    s.signal(Signal::SIGHUP);
    let done = s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains("configuration reloaded"));
    assert!(!done.is_empty(), "no reload line after {from}: {:?}", s.lines());
    assert_eq!(get_host(&s, "b.example", "/who.txt").body, b"site b");
    assert_eq!(get_host(&s, "a.example", "/who.txt").body, b"site b");
    // A reload whose new site root is missing is refused; the sites stay.
    fs::write(&cfg, format!("{text}{}", site_table(&["a.example"], "gone", &[]))).unwrap();
    s.signal(Signal::SIGHUP);
    let failed = s.wait_for_lines(1, Duration::from_secs(10), |l| l.contains("reload failed"));
    assert!(failed.iter().any(|l| l.contains("sites/gone")), "{failed:?}");
    assert_eq!(get_host(&s, "a.example", "/who.txt").body, b"site b");
}

#[test]
fn site_roots_survive_the_childs_descriptor_cleanup() {
    // Many sites: every root descriptor must reach the child (close_all_except
    // keeps them), whatever its number.
    let names: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let dirs: Vec<&str> = names.iter().map(String::as_str).collect();
    let tables: Vec<String> = names.iter().map(|n| site_table(&[&format!("{n}.example")], n, &[])).collect();
    let s = sites_server(&dirs, &[], &tables);
    for n in &names {
        write(&s, &format!("sites/{n}/who.txt"), n.as_bytes());
    }
    for n in &names {
        let r = get_host(&s, &format!("{n}.example"), "/who.txt");
        assert_eq!((r.status, r.body_str()), (200, n.clone()));
    }
}
