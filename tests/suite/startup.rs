//! Start-up and `--check-config` agree: relative paths keep their meaning
//! after `--daemon` and across reloads, group 0 is refused like uid 0,
//! durations have a floor, `--check-config` runs start-up's checks (binding,
//! the access log, the `openat2` probe), and a root the server cannot serve
//! stops it before it says "listening".

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{
    Output, PidFileGuard, TempDir, TestServer, chmod, config_text, get_close, is_root, make_root,
    parse_listening_line, poll_until, run, run_waiting, server_command, signal, toml_str, wait_gone,
};

const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `text` as `<dir>/forkhttpd.toml` and runs `--check-config` (plus
/// `extra`) on it from `dir`.
fn check(dir: &TempDir, text: &str, extra: &[&str]) -> Output {
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, text).unwrap();
    run(
        server_command().arg("--check-config").arg("--config").arg(&cfg).args(extra).current_dir(dir.path()),
        RUN_TIMEOUT,
    )
}

fn assert_ok(out: &Output) {
    assert_eq!(out.code(), Some(0), "expected the check to pass; {}", out.describe());
    assert!(out.stdout.contains("configuration OK"), "{}", out.describe());
}

fn assert_rejected(out: &Output, needles: &[&str]) {
    assert_eq!(out.code(), Some(1), "expected the check to fail; {}", out.describe());
    assert!(!out.stdout.contains("configuration OK"), "{}", out.describe());
    for n in needles {
        assert!(out.stderr.contains(n), "stderr should mention {n:?}; {}", out.describe());
    }
}

/// A config for `dir` with a fresh root, loopback port 0, and `extra` lines
/// (line 1: listen, line 2: root, line 3 on: `extra`).
fn text(dir: &TempDir, extra: &[&str]) -> String {
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x")]);
    config_text(&["127.0.0.1:0"], &root, extra)
}

// ---------------------------------------------------------------------------
// 16.4: relative paths resolved once, against the start directory
// ---------------------------------------------------------------------------

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// Removes a directory this test created at the top of the filesystem.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// GETs `/which.txt` from `addr` until its `Server` header is (or is not)
/// versioned, bounded; returns the last body and whether the state came.
fn wait_server_header(addr: SocketAddr, versioned: bool) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let came = poll_until(Duration::from_secs(5), || {
        let r = get_close(addr, "/which.txt");
        body = r.body.clone();
        r.header("server").is_some_and(|s| s.contains('/') == versioned)
    });
    (body, came)
}

/// `--daemon` changes directory to `/`; a reload must still read the
/// relative `root`, `access_log`, `pid_file` and `--config` against the
/// directory the server was started from. As root, a decoy directory of the
/// same name is created at `/`: a reload must not switch to it.
#[test]
fn daemon_reload_keeps_relative_paths_against_the_start_directory() {
    let dir = TempDir::new("relative_daemon");
    chmod(dir.path(), 0o755);
    let name = format!("forkhttpd-relroot-{}-{}", std::process::id(), UNIQUE.fetch_add(1, Ordering::SeqCst));
    make_root(&dir.path().join(&name), &[("which.txt", b"the start directory's root\n")]);
    let config = |server_version: bool| {
        format!(
            "listen = [\"127.0.0.1:0\"]\nroot = {}\npid_file = \"run/forkhttpd.pid\"\n\
             access_log = \"logs/access.log\"\nerror_log = \"logs/error.log\"\n\
             server_version = {server_version}\nshutdown_grace = 2\n",
            toml_str(&name)
        )
    };
    fs::create_dir(dir.path().join("run")).unwrap();
    fs::create_dir(dir.path().join("logs")).unwrap();
    fs::write(dir.path().join("forkhttpd.toml"), config(false)).unwrap();
    let pid_file = dir.path().join("run/forkhttpd.pid");
    let guard = PidFileGuard::new(&pid_file);

    let out = run_waiting(
        server_command().args(["--daemon", "--config", "forkhttpd.toml"]).current_dir(dir.path()),
        RUN_TIMEOUT,
        Duration::from_secs(1),
    );
    assert_eq!(out.code(), Some(0), "daemon start: {}", out.describe());
    let addr = out.stderr.lines().find_map(parse_listening_line).expect("a 'listening on' line");
    assert!(poll_until(Duration::from_secs(2), || guard.read().is_some()), "no pid file at {pid_file:?}");
    let (_, pid) = guard.read().unwrap();
    let (body, _) = wait_server_header(addr, false);
    assert_eq!(body, b"the start directory's root\n");

    // Reload 1: the file changes; the relative paths must still resolve.
    fs::write(dir.path().join("forkhttpd.toml"), config(true)).unwrap();
    signal(pid, Signal::SIGHUP);
    let (body, reloaded) = wait_server_header(addr, true);
    assert!(reloaded, "the reload did not apply (relative root resolved against / after --daemon?)");
    assert_eq!(body, b"the start directory's root\n");
    let log = dir.path().join("logs/access.log");
    assert!(
        poll_until(Duration::from_secs(3), || fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("which.txt"))),
        "the relative access log {log:?} got no lines after the reload"
    );

    // Reload 2, as root: a directory of the same name now exists at `/`.
    if is_root() {
        let decoy = Path::new("/").join(&name);
        let _cleanup = RemoveOnDrop(decoy.clone());
        make_root(&decoy, &[("which.txt", b"the decoy at /\n")]);
        fs::write(dir.path().join("forkhttpd.toml"), config(false)).unwrap();
        signal(pid, Signal::SIGHUP);
        let (body, reloaded) = wait_server_header(addr, false);
        assert!(reloaded, "the second reload did not apply");
        assert_eq!(body, b"the start directory's root\n", "a reload switched the root to {decoy:?}");
    } else {
        crate::common::skip("the decoy at /: creating a directory at / needs root");
    }

    signal(pid, Signal::SIGTERM);
    assert!(wait_gone(pid, Duration::from_secs(5)), "daemon {pid} did not stop");
    assert!(poll_until(Duration::from_secs(2), || !pid_file.exists()), "relative pid file not removed");
}

/// `--root` given relative is resolved against the start directory too (a
/// foreground server; the daemon case shares the code).
#[test]
fn relative_root_override_names_the_start_directory() {
    let dir = TempDir::new("relative_root_flag");
    make_root(&dir.path().join("site"), &[("x.txt", b"x")]);
    let out = run(
        server_command().args(["--check-config", "--no-bind", "--root", "site"]).current_dir(dir.path()),
        RUN_TIMEOUT,
    );
    assert_ok(&out);
}

// ---------------------------------------------------------------------------
// 16.5: group 0 is refused like uid 0
// ---------------------------------------------------------------------------

#[test]
fn group_root_is_refused_without_allow_root() {
    if !is_root() {
        crate::common::skip("user and group apply only when started as root");
        return;
    }
    let dir = TempDir::new("group_root");
    let out = check(&dir, &text(&dir, &["user = \"nobody\"", "group = \"root\""]), &["--no-bind"]);
    assert_rejected(&out, &["key `group`", "line 4", "gid 0", "allow_root"]);

    // The server itself refuses it too, before listening.
    let mut srv = TestServer::builder()
        .name("group_root_start")
        .config("user = \"nobody\"")
        .config("group = \"root\"")
        .spawn();
    let st = srv.wait_exit(Duration::from_secs(5));
    assert!(matches!(st.and_then(|s| s.code()), Some(c) if c != 0), "started with group root: {st:?}");
    srv.log().wait_eof(Duration::from_secs(1));
    assert!(srv.stderr().contains("gid 0"), "stderr:\n{}", srv.stderr());
    assert!(!srv.stderr().contains("listening on"), "stderr:\n{}", srv.stderr());

    // allow_root = true lets it through, as for uid 0.
    let out = check(
        &dir,
        &text(&dir, &["user = \"nobody\"", "group = \"root\"", "allow_root = true"]),
        &["--no-bind"],
    );
    assert_ok(&out);
}

/// The privileged system groups (`shadow` reads the password hashes,
/// `disk` the raw disks) are refused like group root, by `--check-config`
/// and at start, naming the key; `allow_root` lets them through, and the
/// group a web server is meant to run as (`www-data`, gid 33, below the
/// system range's bound of 100) is accepted and serves.
#[test]
fn privileged_system_groups_are_refused_and_www_data_is_not() {
    if !is_root() {
        crate::common::skip("user and group apply only when started as root");
        return;
    }
    for group in ["shadow", "disk"] {
        let dir = TempDir::new(&format!("group_{group}"));
        let line = format!("group = \"{group}\"");
        let out = check(&dir, &text(&dir, &["user = \"nobody\"", &line]), &["--no-bind"]);
        assert_rejected(&out, &["key `group`", "line 4", "privileged system group", group]);
        let mut srv = TestServer::builder()
            .name(&format!("group_{group}_start"))
            .config("user = \"nobody\"")
            .config(&line)
            .spawn();
        let st = srv.wait_exit(Duration::from_secs(5));
        assert!(matches!(st.and_then(|s| s.code()), Some(c) if c != 0), "started with group {group}: {st:?}");
        srv.log().wait_eof(Duration::from_secs(1));
        assert!(srv.stderr().contains("privileged system group"), "stderr:\n{}", srv.stderr());
        assert!(!srv.stderr().contains("listening on"), "stderr:\n{}", srv.stderr());
        let out =
            check(&dir, &text(&dir, &["user = \"nobody\"", &line, "allow_root = true"]), &["--no-bind"]);
        assert_ok(&out);
    }
    let dir = TempDir::new("group_www_data");
    assert_ok(&check(&dir, &text(&dir, &["user = \"nobody\"", "group = \"www-data\""]), &["--no-bind"]));
    let srv = TestServer::builder()
        .name("group_www_data_start")
        .config("user = \"nobody\"")
        .config("group = \"www-data\"")
        .file("x.txt", b"x")
        .start();
    assert_eq!(get_close(srv.addr(), "/x.txt").status, 200);
}

// ---------------------------------------------------------------------------
// 16.10: duration floor, and --check-config runs start-up's checks
// ---------------------------------------------------------------------------

#[test]
fn durations_below_a_millisecond_are_refused() {
    let dir = TempDir::new("duration_floor");
    for key in ["header_timeout", "keepalive_timeout", "send_timeout", "shutdown_grace"] {
        for bad in ["1e-10", "0.0009", "0"] {
            let out = check(&dir, &text(&dir, &[&format!("{key} = {bad}")]), &["--no-bind"]);
            assert_rejected(&out, &[&format!("key `{key}`"), "line 3", "forkhttpd.toml", "1 ms"]);
        }
        assert_ok(&check(&dir, &text(&dir, &[&format!("{key} = 0.001")]), &["--no-bind"]));
    }
}

#[test]
fn check_config_refuses_a_port_in_use_and_leaves_a_free_one_free() {
    let dir = TempDir::new("check_port");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let root = make_root(&dir.path().join("root"), &[]);
    let busy = config_text(&[addr.to_string()], &root, &[] as &[&str]);
    assert_rejected(&check(&dir, &busy, &[]), &["cannot listen on", &addr.to_string()]);
    // --no-bind: the port is someone else's on purpose (a running server, systemd).
    assert_ok(&check(&dir, &busy, &["--no-bind"]));
    assert_eq!(held.local_addr().unwrap(), addr, "our listener was disturbed");

    // A free port passes, and is free again afterwards (bound, then closed).
    drop(held);
    assert_ok(&check(&dir, &busy, &[]));
    TcpListener::bind(addr).expect("the port must be free after --check-config");
}

/// Under socket activation (LISTEN_FDS for this very process) the `listen`
/// key does not apply: the check binds nothing (and adopts nothing). For
/// another process's LISTEN_PID it binds as usual.
#[test]
fn check_config_under_socket_activation_does_not_bind() {
    let dir = TempDir::new("check_activated");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let root = make_root(&dir.path().join("root"), &[]);
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, config_text(&[addr.to_string()], &root, &[] as &[&str])).unwrap();
    let activated = |listen_pid: &str| {
        let mut sh = Command::new("/bin/sh");
        crate::common::scrub_env(&mut sh);
        // `exec` keeps the shell's pid, so $$ is the server's pid.
        sh.arg("-c")
            .arg(format!("LISTEN_PID={listen_pid} LISTEN_FDS=1 exec \"$0\" --check-config --config \"$1\""))
            .arg(crate::common::BIN)
            .arg(&cfg);
        run(&mut sh, RUN_TIMEOUT)
    };
    assert_ok(&activated("$$"));
    assert_rejected(&activated("1"), &["cannot listen on", &addr.to_string()]);
}

#[test]
fn check_config_refuses_an_ipv4_mapped_listen_address() {
    let dir = TempDir::new("check_mapped");
    let root = make_root(&dir.path().join("root"), &[]);
    let mapped = config_text(&["[::ffff:127.0.0.1]:0"], &root, &[] as &[&str]);
    for extra in [&[][..], &["--no-bind"][..]] {
        assert_rejected(
            &check(&dir, &mapped, extra),
            &["key `listen`", "line 1", "IPv4-mapped", "127.0.0.1:0"],
        );
    }
}

/// `proxy_listen` addresses are bound by start-up like `listen` ones, so
/// the check binds them too: a busy one fails it, `--no-bind` skips it.
#[test]
fn check_config_refuses_a_proxy_listen_port_in_use() {
    let dir = TempDir::new("check_proxy_port");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let busy = text(
        &dir,
        &[&format!("proxy_listen = [{}]", toml_str(&addr.to_string())), "trusted_proxies = [\"127.0.0.1\"]"],
    );
    assert_rejected(&check(&dir, &busy, &[]), &["cannot listen on", &addr.to_string()]);
    assert_ok(&check(&dir, &busy, &["--no-bind"]));
    assert_eq!(held.local_addr().unwrap(), addr, "our listener was disturbed");
}

/// An IPv4-mapped `proxy_listen` address is refused by name, as in `listen`:
/// by the check (with or without binding) and at start, before listening.
#[test]
fn an_ipv4_mapped_proxy_listen_address_is_refused() {
    let dir = TempDir::new("check_proxy_mapped");
    let mapped =
        text(&dir, &["proxy_listen = [\"[::ffff:127.0.0.1]:0\"]", "trusted_proxies = [\"127.0.0.1\"]"]);
    let needles = ["key `proxy_listen`", "line 3", "IPv4-mapped", "127.0.0.1:0"];
    for extra in [&[][..], &["--no-bind"][..]] {
        assert_rejected(&check(&dir, &mapped, extra), &needles);
    }
    let cfg = dir.path().join("forkhttpd.toml");
    let out = run(server_command().arg("--config").arg(&cfg).current_dir(dir.path()), RUN_TIMEOUT);
    assert_eq!(out.code(), Some(1), "started with a mapped proxy_listen address; {}", out.describe());
    assert!(!out.stderr.contains("listening on"), "said 'listening' before failing; {}", out.describe());
    for n in needles {
        assert!(out.stderr.contains(n), "stderr should mention {n:?}; {}", out.describe());
    }
}

/// A `proxy_listen` address written otherwise than a `listen` one
/// (`localhost:P` or `127.0.0.1:0P` beside `127.0.0.1:P`) names the same
/// socket, which would be bound once, plain: the check (binding or not)
/// and start-up refuse it, naming the key, before listening. The port is
/// held here, so nothing else can be listening on it.
#[test]
fn proxy_listen_resolving_to_a_listen_address_is_refused() {
    let dir = TempDir::new("check_proxy_same_socket");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let root = make_root(&dir.path().join("root"), &[("x.txt", b"x")]);
    let cfg = dir.path().join("forkhttpd.toml");
    for proxy in [format!("localhost:{port}"), format!("127.0.0.1:0{port}")] {
        let extra =
            [format!("proxy_listen = [{}]", toml_str(&proxy)), "trusted_proxies = [\"127.0.0.1\"]".into()];
        let text = config_text(&[format!("127.0.0.1:{port}")], &root, &extra);
        let needles = ["key `proxy_listen`", "line 3", &proxy, "either plain or PROXY"];
        for extra in [&[][..], &["--no-bind"][..]] {
            assert_rejected(&check(&dir, &text, extra), &needles);
        }
        let out = run(server_command().arg("--config").arg(&cfg).current_dir(dir.path()), RUN_TIMEOUT);
        assert_eq!(out.code(), Some(1), "{proxy}: started; {}", out.describe());
        assert!(!out.stderr.contains("listening on"), "said 'listening' before failing; {}", out.describe());
        for n in needles {
            assert!(out.stderr.contains(n), "stderr should mention {n:?}; {}", out.describe());
        }
    }
    assert_eq!(held.local_addr().unwrap().port(), port, "our listener was disturbed");
}

#[test]
fn check_config_checks_the_access_log_like_start_up() {
    let dir = TempDir::new("check_access_log");
    let with_log = |p: &Path| text(&dir, &[&format!("access_log = {}", toml_str(p.to_str().unwrap()))]);

    // A file in a missing directory.
    let missing = dir.path().join("no-such-dir/access.log");
    assert_rejected(
        &check(&dir, &with_log(&missing), &["--no-bind"]),
        &[missing.to_str().unwrap(), "does not exist"],
    );

    // A directory.
    let a_dir = dir.path().join("a-dir");
    fs::create_dir(&a_dir).unwrap();
    assert_rejected(&check(&dir, &with_log(&a_dir), &["--no-bind"]), &[a_dir.to_str().unwrap(), "directory"]);

    // A FIFO (no reader: the check must neither hang nor accept it).
    let fifo = dir.path().join("fifo.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let out = check(&dir, &with_log(&fifo), &["--no-bind"]);
    assert!(out.elapsed < Duration::from_secs(5), "the check hung on a FIFO; {}", out.describe());
    assert_rejected(&out, &[fifo.to_str().unwrap(), "not a regular file"]);

    // A symbolic link (to a file that exists).
    let target = dir.path().join("target.log");
    fs::write(&target, b"").unwrap();
    let link = dir.path().join("link.log");
    symlink(&target, &link).unwrap();
    assert_rejected(
        &check(&dir, &with_log(&link), &["--no-bind"]),
        &[link.to_str().unwrap(), "symbolic link"],
    );

    // A file in a directory the checking user may not write (only
    // meaningful when not root: root may write anywhere).
    if !is_root() {
        let ro = dir.path().join("read-only");
        fs::create_dir(&ro).unwrap();
        chmod(&ro, 0o555);
        let f = ro.join("access.log");
        assert_rejected(&check(&dir, &with_log(&f), &["--no-bind"]), &[f.to_str().unwrap(), "cannot create"]);
    }

    // An existing regular file, and a new one in an existing directory: OK,
    // and the new one is not created by the check.
    assert_ok(&check(&dir, &with_log(&target), &["--no-bind"]));
    let fresh = dir.path().join("fresh.log");
    assert_ok(&check(&dir, &with_log(&fresh), &["--no-bind"]));
    assert!(!fresh.exists(), "--check-config created the access log {fresh:?}");
}

#[test]
fn check_config_refuses_a_pid_file_in_a_missing_directory() {
    let dir = TempDir::new("check_pid_file");
    let pid = dir.path().join("no-such-dir/forkhttpd.pid");
    let out = check(
        &dir,
        &text(&dir, &[&format!("pid_file = {}", toml_str(pid.to_str().unwrap()))]),
        &["--no-bind"],
    );
    assert_rejected(&out, &["pid file", pid.to_str().unwrap(), "does not exist"]);
}

/// A pid file path that start-up refuses (a symbolic link, a FIFO, a
/// directory) fails the check too, promptly (a FIFO must not hang it),
/// and nothing is written through the link.
#[test]
fn check_config_refuses_a_pid_file_start_up_refuses() {
    let dir = TempDir::new("check_pid_kind");
    let pid = dir.path().join("forkhttpd.pid");
    let cfg = text(&dir, &[&format!("pid_file = {}", toml_str(pid.to_str().unwrap()))]);
    let target = dir.path().join("target");
    fs::write(&target, b"precious\n").unwrap();
    symlink(&target, &pid).unwrap();
    assert_rejected(
        &check(&dir, &cfg, &["--no-bind"]),
        &["pid file", pid.to_str().unwrap(), "symbolic link"],
    );
    assert_eq!(fs::read(&target).unwrap(), b"precious\n", "the link's target was written");

    fs::remove_file(&pid).unwrap();
    nix::unistd::mkfifo(&pid, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let out = check(&dir, &cfg, &["--no-bind"]);
    assert!(out.elapsed < Duration::from_secs(5), "the check hung on a FIFO; {}", out.describe());
    assert_rejected(&out, &["pid file", pid.to_str().unwrap(), "not a regular file"]);

    fs::remove_file(&pid).unwrap();
    fs::create_dir(&pid).unwrap();
    assert_rejected(
        &check(&dir, &cfg, &["--no-bind"]),
        &["pid file", pid.to_str().unwrap(), "is a directory"],
    );

    // A regular file (one a stopped server left behind) is fine.
    fs::remove_dir(&pid).unwrap();
    fs::write(&pid, b"1\n").unwrap();
    assert_ok(&check(&dir, &cfg, &["--no-bind"]));
}

/// The pid file is written in the foreground too (the config comment and
/// forkhttpd.toml(5) say so), and removed at a graceful stop.
#[test]
fn pid_file_is_written_in_the_foreground_too() {
    let dir = TempDir::new("pid_fg");
    let pid_file = dir.path().join("fg.pid");
    let mut srv = TestServer::builder()
        .name("pid_fg")
        .config(&format!("pid_file = {}", toml_str(pid_file.to_str().unwrap())))
        .config("shutdown_grace = 2")
        .start();
    let text = fs::read_to_string(&pid_file).expect("a pid file in the foreground");
    assert_eq!(text, format!("{}\n", srv.pid()));
    srv.signal(Signal::SIGTERM);
    assert!(srv.wait_exit(Duration::from_secs(5)).is_some());
    assert!(!pid_file.exists(), "the pid file outlived the server");
}

/// Symlinks inside the root mean what forkhttpd(8) says, with and without
/// `chroot`: without it an absolute target is a path on the host (served
/// only if it lies inside the root) and a relative one that climbs out is
/// refused; in a chroot the root is `/`, so an absolute target is read
/// beneath the root and a climb stops at the root, as `..` does at `/`.
/// Relative links that stay inside mean the same in both.
#[test]
fn symlinks_inside_the_root_with_and_without_chroot() {
    if !is_root() {
        crate::common::skip("chroot needs root");
        return;
    }
    for chroot in [false, true] {
        let srv = TestServer::builder()
            .name(if chroot { "links_chroot" } else { "links_plain" })
            .config("user = \"nobody\"")
            .config(&format!("chroot = {chroot}"))
            .file("a.txt", b"a\n")
            .start();
        let host_a = fs::canonicalize(srv.root().join("a.txt")).unwrap();
        symlink(&host_a, srv.root().join("host-path.txt")).unwrap();
        symlink("/a.txt", srv.root().join("root-path.txt")).unwrap();
        // `<dir>/forkhttpd.toml` (the config) lies beside the root; a file of
        // the same name inside it tells which one a climbing link reached.
        fs::write(srv.root().join("forkhttpd.toml"), b"inside\n").unwrap();
        symlink("../forkhttpd.toml", srv.root().join("climb.txt")).unwrap();
        symlink("a.txt", srv.root().join("relative.txt")).unwrap();
        let status = |p: &str| srv.get(p).status;
        assert_eq!(status("/relative.txt"), 200, "relative link, chroot = {chroot}");
        if chroot {
            assert_eq!(status("/root-path.txt"), 200, "/a.txt in a chroot is the root's a.txt");
            let climb = srv.get("/climb.txt");
            assert_eq!((climb.status, climb.body.as_slice()), (200, &b"inside\n"[..]), "a climb stops at /");
            assert_eq!(status("/host-path.txt"), 404, "a host path does not exist in the chroot");
        } else {
            assert_eq!(status("/host-path.txt"), 200, "a host path inside the root is served");
            assert_ne!(status("/root-path.txt"), 200, "/a.txt is the host's, outside the root");
            assert_eq!(status("/climb.txt"), 403, "a climb out of the root is refused");
        }
    }
}

// ---------------------------------------------------------------------------
// 14.2: openat2 refused by a seccomp filter
// ---------------------------------------------------------------------------

/// `server_command()` that runs the binary under a seccomp filter making
/// `openat2(2)` fail with `errno`, as systemd's `RestrictSUIDSGID=yes` does
/// (with `ENOSYS`).
fn without_openat2(errno: i32) -> Command {
    let mut cmd = server_command();
    seccomp::deny_openat2(&mut cmd, errno);
    cmd
}

#[test]
fn openat2_refused_by_seccomp_fails_check_config_and_start_before_listening() {
    for errno in [libc::ENOSYS, libc::EPERM] {
        let dir = TempDir::new("no_openat2");
        let cfg = dir.path().join("forkhttpd.toml");
        fs::write(&cfg, text(&dir, &[])).unwrap();

        let out = run(without_openat2(errno).arg("--check-config").arg("--config").arg(&cfg), RUN_TIMEOUT);
        assert_rejected(&out, &["openat2(2) is not available", "seccomp", "RestrictSUIDSGID="]);

        let out = run(without_openat2(errno).arg("--config").arg(&cfg), RUN_TIMEOUT);
        assert!(matches!(out.code(), Some(c) if c != 0), "started without openat2; {}", out.describe());
        assert!(out.stderr.contains("seccomp"), "{}", out.describe());
        assert!(!out.stderr.contains("listening on"), "said 'listening' before failing; {}", out.describe());

        // Without the filter the same config is fine (the filter is the cause).
        assert_ok(&run(server_command().arg("--check-config").arg("--config").arg(&cfg), RUN_TIMEOUT));
    }
}

/// The one `unsafe` of the test suite: installing a seccomp filter in the
/// spawned process between `fork` and `exec` (the server's own crate keeps
/// `unsafe` to `src/sys.rs`; this is test scaffolding that plays the part
/// of systemd).
#[allow(unsafe_code)]
mod seccomp {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    /// `struct seccomp_data`: `nr` at offset 0, `arch` at offset 4.
    const NR_OFFSET: u32 = 0;
    const ARCH_OFFSET: u32 = 4;

    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
    }

    fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k }
    }

    /// Makes `cmd` start with a filter under which `openat2` returns
    /// `errno` and every other call (and any other architecture) is allowed.
    pub fn deny_openat2(cmd: &mut Command, errno: i32) {
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        let program: Vec<libc::sock_filter> = vec![
            stmt(load, ARCH_OFFSET),
            jeq(AUDIT_ARCH, 0, 3), // another ABI: allow (to the last instruction)
            stmt(load, NR_OFFSET),
            jeq(libc::SYS_openat2 as u32, 0, 1),
            stmt(ret, libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)),
            stmt(ret, libc::SECCOMP_RET_ALLOW),
        ];
        // SAFETY: the closure runs in the forked child before exec and
        // calls only `prctl`, which is async-signal-safe; `program` is moved
        // into the closure and outlives both calls; `fprog` points at it
        // with its exact length. `PR_SET_NO_NEW_PRIVS` first lets the filter
        // be installed without CAP_SYS_ADMIN.
        unsafe {
            cmd.pre_exec(move || {
                let fprog =
                    libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
