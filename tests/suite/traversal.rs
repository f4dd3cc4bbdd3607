//! Path traversal and symlink containment.
//!
//! Layout: `<tmp>/secret.txt` ("TOPSECRET") beside the docroot `<tmp>/root`.
//! Requests are sent as raw bytes so no client-side normalisation happens.

use std::fs;
use std::time::Duration;

use crate::common::*;

const SECRET: &[u8] = b"TOPSECRET";

fn setup() -> TestServer {
    let s = TestServer::start();
    fs::write(s.base().join("secret.txt"), b"TOPSECRET\n").unwrap();
    s.write_file("a.txt", b"inside a");
    s.write_file("sub/b.txt", b"inside sub/b");
    s.symlink(s.base().join("secret.txt"), "link.txt");
    s.symlink(s.base(), "linkdir");
    s.symlink(s.root().join("a.txt"), "alias.txt");
    s.symlink("a.txt", "rel-alias.txt");
    s.symlink("sub", "sublink");
    s
}

/// Send `GET <target>` raw on a fresh connection; return the status and every
/// byte received until the server closed.
fn probe(s: &TestServer, target: &[u8]) -> (u16, Vec<u8>) {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut c = s.connect();
    c.send_lossy(&req);
    let r = c.read_response();
    let (_, closed) = c.read_until_close(Duration::from_secs(10));
    assert!(closed.is_some(), "no close after Connection: close for {:?}", String::from_utf8_lossy(target));
    (r.status, c.received().to_vec())
}

/// Check that each target is answered with status `want` on a fresh
/// [`setup`] server; report all mismatches at once.
fn check_targets(want: u16, targets: &[&str]) {
    let s = setup();
    let mut failures = Vec::new();
    for target in targets {
        let (status, raw) = probe(&s, target.as_bytes());
        if contains(&raw, SECRET) {
            failures.push(format!("{target}: LEAKED the secret (status {status})"));
        } else if status == 200 {
            failures.push(format!("{target}: status 200 (expected {want})"));
        } else if status != want {
            failures.push(format!("{target}: status {status}, expected {want}"));
        }
    }
    assert!(failures.is_empty(), "traversal failures:\n  {}", failures.join("\n  "));
}

#[test]
fn positive_controls_are_served() {
    let s = setup();
    assert_eq!(fs::read(s.base().join("secret.txt")).unwrap(), b"TOPSECRET\n");
    for (p, body) in [("/a.txt", &b"inside a"[..]), ("/sub/b.txt", b"inside sub/b")] {
        let r = s.get(p);
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.body, body, "{p}");
    }
}

#[test]
fn dotdot_above_root_is_400() {
    check_targets(
        400,
        &[
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/.%2e/secret.txt",
            "/sub/../../secret.txt",
            "/sub/%2e%2e/%2e%2e/secret.txt",
            "/..",
            "/../",
            "http://localhost/../secret.txt",
        ],
    );
}

#[test]
fn encoded_slash_is_400() {
    check_targets(
        400,
        &[
            "/%2e%2e%2fsecret.txt",
            "/..%2fsecret.txt",
            "/..%2Fsecret.txt",
            "/sub/..%2f..%2fsecret.txt",
            // Even an innocent encoded slash is rejected.
            "/sub%2fb.txt",
        ],
    );
}

#[test]
fn encoded_nul_is_400() {
    check_targets(400, &["/a.txt%00.html", "/a.txt%00"]);
}

#[test]
fn backslash_is_400() {
    check_targets(
        400,
        &["/..%5csecret.txt", "/..%5Csecret.txt", "/sub%5c..%5c..%5csecret.txt", "/..\\secret.txt"],
    );
}

#[test]
fn double_encoding_is_not_decoded_twice() {
    check_targets(404, &["/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt"]);
}

#[test]
fn double_slash_does_not_escape_root() {
    let s = setup();
    for target in ["//etc/passwd", "///etc/passwd", "/sub//../../etc/passwd"] {
        let (status, raw) = probe(&s, target.as_bytes());
        assert!(!contains(&raw, b"root:"), "{target} served /etc/passwd");
        assert!(!contains(&raw, SECRET), "{target} leaked");
        assert_ne!(status, 200, "{target}");
        assert!(status == 404 || status == 400, "{target}: expected 404 (or 400), got {status}");
    }
}

#[test]
fn symlink_out_of_root_is_403() {
    check_targets(403, &["/link.txt", "/linkdir/secret.txt", "/linkdir/"]);
}

#[test]
fn symlink_inside_root_is_served() {
    let s = setup();
    for p in ["/alias.txt", "/rel-alias.txt"] {
        let r = s.get(p);
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.body, b"inside a", "{p}");
    }
    let r = s.get("/sublink/b.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"inside sub/b");
}

/// A regular file named with a trailing slash is not served (nginx and
/// Apache answer 404; serving it would break its relative links).
#[test]
fn file_with_trailing_slash_is_404() {
    let s = setup();
    for p in ["/a.txt/", "/sub/b.txt/", "/alias.txt/", "/sublink/b.txt/", "/a.txt/."] {
        let (status, raw) = probe(&s, p.as_bytes());
        assert_eq!(status, 404, "{p}: {}", String::from_utf8_lossy(&raw));
    }
    assert_eq!(s.get("/a.txt").status, 200);
}

/// Everything beneath a link that leaves the root gets the same answer,
/// whether the target exists or not: the link is no oracle for what exists
/// outside. A link to an absolute path inside the root still works, and
/// beneath it a missing file is a plain 404.
#[test]
fn outward_link_is_no_oracle() {
    let s = setup();
    s.symlink("/etc", "etc");
    s.symlink(s.root().join("sub"), "abs-sub");
    for p in [
        "/etc/passwd",
        "/etc/shadow",
        "/etc/nonexistent",
        "/etc/nonexistent/deeper",
        "/etc/passwd/x",
        "/linkdir/secret.txt",
        "/linkdir/missing.txt",
        "/linkdir/no/such/dir",
    ] {
        let (status, raw) = probe(&s, p.as_bytes());
        assert_eq!(status, 403, "{p}: {}", String::from_utf8_lossy(&raw));
        assert!(!contains(&raw, SECRET) && !contains(&raw, b"root:"), "{p} leaked");
    }
    let r = s.get("/abs-sub/b.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, b"inside sub/b".as_slice()));
    assert_eq!(s.get("/abs-sub/missing.txt").status, 404);
    // A dangling link: missing inside the root is 404, outside 403.
    s.symlink(s.root().join("gone.txt"), "dangling-in.txt");
    s.symlink(s.base().join("gone.txt"), "dangling-out.txt");
    assert_eq!(s.get("/dangling-in.txt").status, 404);
    assert_eq!(s.get("/dangling-out.txt").status, 403);
}
