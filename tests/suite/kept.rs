//! A connection keeps the files it served open for its next requests
//! (`file::KeptFiles`): a file asked for again costs one `fstatat`, not an
//! `openat2`. Whatever changes the file or what its path names between two
//! requests on one connection, the next answer is the one a fresh lookup
//! gives: new content, a refusal, a 404.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// `GET path` on the kept-alive connection `c`: status and body.
fn get(c: &mut Conn, path: &str) -> (u16, Vec<u8>) {
    c.send_request("GET", path, &[]);
    let r = c.read_response();
    (r.status, r.body)
}

#[test]
fn a_replaced_or_rewritten_file_is_served_anew() {
    let s = TestServer::start();
    s.write_file("a.txt", b"first");
    let mut c = Conn::connect(s.addr());
    assert_eq!(get(&mut c, "/a.txt"), (200, b"first".to_vec()));
    assert_eq!(get(&mut c, "/a.txt"), (200, b"first".to_vec()), "asked again, unchanged");

    // Replaced by rename (another inode), as deploy tools do.
    s.write_file("a.tmp", b"other");
    fs::rename(s.root().join("a.tmp"), s.root().join("a.txt")).unwrap();
    assert_eq!(get(&mut c, "/a.txt"), (200, b"other".to_vec()), "after a rename over it");

    // Rewritten in place, longer.
    fs::write(s.root().join("a.txt"), b"third, longer").unwrap();
    assert_eq!(get(&mut c, "/a.txt"), (200, b"third, longer".to_vec()), "after a rewrite");
    let etag = |c: &mut Conn| {
        c.send_request("HEAD", "/a.txt", &[]);
        c.read_head_response().header("etag").map(str::to_string)
    };
    let before = etag(&mut c);
    fs::write(s.root().join("a.txt"), b"fourth").unwrap();
    assert_ne!(etag(&mut c), before, "the entity tag of a rewritten file must change");
}

#[test]
fn a_file_made_unreadable_removed_or_linked_away_is_refused() {
    let s = TestServer::start();
    chmod(s.base(), 0o755);
    let outside = s.base().join("outside.txt");
    fs::write(&outside, b"secret").unwrap();
    for (name, change, want) in [
        ("mode.txt", "chmod 000", 403),
        ("gone.txt", "removed", 404),
        ("link.txt", "a link out of the root", 403),
    ] {
        let path = s.write_file(name, b"public");
        let target = format!("/{name}");
        let mut c = Conn::connect(s.addr());
        assert_eq!(get(&mut c, &target), (200, b"public".to_vec()));
        match change {
            "chmod 000" => fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap(),
            "removed" => fs::remove_file(&path).unwrap(),
            _ => {
                fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink(&outside, &path).unwrap();
            }
        }
        let (status, body) = get(&mut c, &target);
        assert_eq!(status, want, "{name} {change}: got {:?}", String::from_utf8_lossy(&body));
        assert!(!body.windows(6).any(|w| w == b"public" || w == b"secret"), "{name}: {body:?}");
    }
}

/// Under strace: three requests for one file on one connection open it
/// once; the two others cost an `fstatat` each.
#[test]
fn a_file_asked_for_again_is_not_opened_again() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    if !have_tool("strace") {
        crate::common::skip("strace is not installed");
        return;
    }
    let dir = TempDir::new("kept_strace");
    let root = make_root(&dir.path().join("root"), &[("k.txt", b"kept")]);
    chmod(dir.path(), 0o755);
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, config_text(&["127.0.0.1:0"], &root, &["access_log = \"off\""])).unwrap();
    let trace = dir.path().join("trace");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=openat2,newfstatat,fstatat64,statx", "-o"])
        .arg(&trace)
        .arg(BIN)
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null());
    let mut server = Proc::spawn(scrub_env(&mut cmd));
    let addr = server.wait_listeners(0, 1)[0];
    let mut c = Conn::connect(addr);
    for _ in 0..3 {
        assert_eq!(get(&mut c, "/k.txt"), (200, b"kept".to_vec()));
    }
    drop(c);
    let pid = children_of(server.pid()).first().map(|p| p.pid).expect("the server under strace");
    send_signal(pid, "TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some(), "the server under strace did not stop");
    let trace = fs::read_to_string(&trace).unwrap();
    let opens = trace.lines().filter(|l| l.contains("openat2(") && l.contains("\"k.txt\"")).count();
    let stats = trace.lines().filter(|l| l.contains("fstatat") && l.contains("\"k.txt\"")).count();
    assert_eq!((opens, stats), (1, 2), "openat2 and fstatat calls for k.txt:\n{trace}");
}
