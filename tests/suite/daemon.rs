//! Daemon features: the command line (`--check-config`, `--version`,
//! `--help`), `--daemon` with a pid file, start-up failures before
//! detaching, privilege drop, and the per-IP connection limit.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{
    Conn, Output, PidFileGuard, TempDir, TestServer, children_of, config_text, connect_from, get_close,
    get_keepalive, is_forkhttpd, is_gone, is_root, kill_tree, make_root, parse_listening_line, passwd_ids,
    poll_until, proc_stat, run, run_waiting, self_stat, server_command, signal, status_ids, toml_str,
    wait_children, wait_gone,
};

const RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// A held loopback port: nothing else can bind it while this lives.
fn held_port() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Writes `text` as `<dir>/forkhttpd.toml` and runs `--check-config` on it.
fn check_config(dir: &TempDir, text: &str, extra: &[&str]) -> Output {
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(&cfg, text).unwrap();
    run(
        server_command().arg("--check-config").arg("--config").arg(&cfg).args(extra).current_dir(dir.path()),
        RUN_TIMEOUT,
    )
}

/// Asserts a `--check-config` run rejected the file: exit 1, no "OK", and
/// stderr containing each of `needles`.
fn assert_rejected(out: &Output, needles: &[&str]) {
    assert_eq!(out.code(), Some(1), "invalid config must exit 1; {}", out.describe());
    assert!(!out.stdout.contains("configuration OK"), "invalid config reported OK; {}", out.describe());
    for n in needles {
        assert!(out.stderr.contains(n), "stderr should mention {n:?}; {}", out.describe());
    }
}

fn root_line(dir: &TempDir) -> String {
    let root = dir.path().join("root");
    make_root(&root, &[("x.txt", b"x")]);
    format!("root = {}", toml_str(root.to_str().unwrap()))
}

/// Runs `--check-config` on a valid file with `bad` as its third line, and
/// asserts it is rejected naming each of `needles`.
fn assert_third_line_rejected(name: &str, bad: &str, needles: &[&str]) {
    let dir = TempDir::new(name);
    let text = format!("listen = [\"127.0.0.1:0\"]\n{}\n{bad}\n", root_line(&dir));
    assert_rejected(&check_config(&dir, &text, &[]), needles);
}

// ---------------------------------------------------------------------------
// --check-config
// ---------------------------------------------------------------------------

#[test]
fn check_config_no_bind_valid_file_is_ok_and_binds_nothing() {
    let dir = TempDir::new("check_config_valid");
    // A port we hold: binding it would fail, so success proves no bind.
    let (held, addr) = held_port();
    let text = format!(
        "listen = [\"{addr}\"]\n{}\nmax_children = 4\nheader_timeout = 2.5\nshutdown_grace = 5\n",
        root_line(&dir)
    );
    let out = check_config(&dir, &text, &["--no-bind"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("configuration OK"),
        "stdout should say 'configuration OK'; {}",
        out.describe()
    );
    assert!(out.elapsed < Duration::from_secs(5), "check-config took {:?}", out.elapsed);
    // Our listener is untouched and still ours.
    assert_eq!(held.local_addr().unwrap(), addr);
}

#[test]
fn check_config_unknown_key_names_key_and_line() {
    assert_third_line_rejected("check_config_unknown", "bogus = 1", &["bogus", "line 3"]);
}

#[test]
fn check_config_wrong_type_names_key() {
    assert_third_line_rejected("check_config_type", "max_children = \"x\"", &["max_children"]);
}

#[test]
fn check_config_bad_value_names_key() {
    assert_third_line_rejected("check_config_value", "header_timeout = -1", &["header_timeout"]);
}

#[test]
fn check_config_missing_root_names_path() {
    let dir = TempDir::new("check_config_noroot");
    let missing = dir.path().join("no-such-root-dir");
    let text = config_text(&["127.0.0.1:0"], &missing, &[] as &[&str]);
    let out = check_config(&dir, &text, &[]);
    assert_rejected(&out, &[missing.to_str().unwrap()]);
}

#[test]
fn check_config_unknown_user_names_user() {
    assert_third_line_rejected("check_config_user", "user = \"no-such-user-xyz\"", &["no-such-user-xyz"]);
}

#[test]
fn check_config_empty_file_with_root_flag_is_ok() {
    let dir = TempDir::new("check_config_empty");
    let root = make_root(&dir.path().join("root"), &[]);
    let out = check_config(&dir, "", &["--root", root.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("configuration OK"), "{}", out.describe());
}

#[test]
fn check_config_shipped_file_is_ok() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let shipped = format!("{manifest}/config/forkhttpd.toml");
    // 1. As shipped, from the repository root (its `root = "www"` is relative).
    // (--no-bind: this checks the file; its 127.0.0.1:8080 may be in use here.)
    let out = run(
        server_command().args(["--check-config", "--no-bind", "--config", &shipped]).current_dir(manifest),
        RUN_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "shipped config from {manifest}: {}", out.describe());
    assert!(out.stdout.contains("configuration OK"), "{}", out.describe());
    // 2. From elsewhere, with --root overriding the relative root.
    let dir = TempDir::new("check_config_shipped");
    let root = make_root(&dir.path().join("root"), &[]);
    let out = run(
        server_command()
            .args(["--check-config", "--no-bind", "--config", &shipped, "--root"])
            .arg(&root)
            .current_dir(dir.path()),
        RUN_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "shipped config + --root: {}", out.describe());
    assert!(out.stdout.contains("configuration OK"), "{}", out.describe());
}

// ---------------------------------------------------------------------------
// --version / --help
// ---------------------------------------------------------------------------

#[test]
fn version_and_help() {
    let out = run(server_command().arg("--version"), RUN_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let want = format!("forkhttpd {}", env!("CARGO_PKG_VERSION"));
    assert!(out.stdout.contains(&want), "--version should print {want:?}; {}", out.describe());

    let out = run(server_command().arg("--help"), RUN_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    for flag in ["--daemon", "--check-config", "--foreground", "--config"] {
        assert!(out.stdout.contains(flag), "--help should mention {flag}; {}", out.describe());
    }
}

// ---------------------------------------------------------------------------
// --daemon
// ---------------------------------------------------------------------------

struct DaemonSetup {
    dir: TempDir,
    cfg: PathBuf,
    pid_file: PathBuf,
    access_log: PathBuf,
}

fn daemon_setup(name: &str, listen: &str) -> DaemonSetup {
    let dir = TempDir::new(name);
    let root = make_root(&dir.path().join("root"), &[("hello.txt", b"hello from the daemon\n")]);
    let pid_file = dir.path().join("forkhttpd.pid");
    let access_log = dir.path().join("access.log");
    let cfg = dir.path().join("forkhttpd.toml");
    fs::write(
        &cfg,
        config_text(
            &[listen.to_string()],
            &root,
            &[
                format!("pid_file = {}", toml_str(pid_file.to_str().unwrap())),
                format!("access_log = {}", toml_str(access_log.to_str().unwrap())),
                format!("error_log = {}", toml_str(dir.path().join("error.log").to_str().unwrap())),
                "shutdown_grace = 5".to_string(),
                "keepalive_timeout = 2".to_string(),
            ],
        ),
    )
    .unwrap();
    DaemonSetup { dir, cfg, pid_file, access_log }
}

/// Runs `forkhttpd --daemon --config cfg`; waits (bounded) for the launcher,
/// then up to a second for the pipes: the daemon itself should have let go
/// of them (`Output::released`).
fn launch_daemon(cfg: &Path, cwd: &Path) -> Output {
    run_waiting(
        server_command().arg("--daemon").arg("--config").arg(cfg).current_dir(cwd),
        Duration::from_secs(10),
        Duration::from_millis(1000),
    )
}

#[test]
fn daemon_mode_detaches_serves_and_stops_on_sigterm() {
    let s = daemon_setup("daemon_mode", "127.0.0.1:0");
    let guard = PidFileGuard::new(&s.pid_file);
    let out = launch_daemon(&s.cfg, s.dir.path());

    assert_eq!(out.code(), Some(0), "the launcher must exit 0 once the daemon is ready; {}", out.describe());
    assert!(out.elapsed < Duration::from_secs(5), "the launcher took {:?} to exit", out.elapsed);
    assert!(
        out.released,
        "the daemon keeps the launcher's stdout/stderr pipes open (it must redirect them, e.g. to /dev/null)"
    );
    let addr: SocketAddr = out.stderr.lines().find_map(parse_listening_line).unwrap_or_else(|| {
        panic!("the launcher did not print 'listening on ADDR' before exiting; {}", out.describe())
    });

    // The pid file: a decimal pid and a newline, naming a live detached process.
    assert!(
        poll_until(Duration::from_secs(2), || guard.read().is_some()),
        "no readable pid file at {} after the launcher exited",
        s.pid_file.display()
    );
    let (text, pid) = guard.read().unwrap();
    assert!(
        text.ends_with('\n')
            && text.trim_end_matches('\n').chars().all(|c| c.is_ascii_digit())
            && text.matches('\n').count() == 1,
        "pid file must be a decimal number and a newline, got {text:?}"
    );
    assert_ne!(pid, out.pid, "the daemon must not be the launched process");
    let st = proc_stat(pid).unwrap_or_else(|| panic!("pid {pid} from the pid file is not running"));
    assert!(!is_gone(pid), "daemon pid {pid} is not alive ({st:?})");
    assert!(is_forkhttpd(pid), "pid {pid} is not a forkhttpd process");
    let me = self_stat();
    assert_ne!(st.ppid, std::process::id(), "the daemon's parent must not be the test process");
    assert_ne!(
        st.session, me.session,
        "the daemon must be in its own session (setsid); daemon {st:?}, test {me:?}"
    );
    assert_eq!(st.tty_nr, 0, "the daemon must have no controlling terminal: {st:?}");

    // Daemon messages after detaching go to the error_log file.
    let error_log = s.dir.path().join("error.log");
    assert!(
        poll_until(Duration::from_secs(3), || {
            fs::read_to_string(&error_log).is_ok_and(|t| t.contains(&format!("started: pid {pid},")))
        }),
        "error log {} never got the start line; contents: {:?}",
        error_log.display(),
        fs::read_to_string(&error_log)
    );

    // It serves, and logs to the access log file.
    let resp = get_close(addr, "/hello.txt");
    assert_eq!(resp.status, 200, "GET from the daemon: {resp:?}");
    assert_eq!(resp.body, b"hello from the daemon\n");
    assert!(
        poll_until(Duration::from_secs(3), || {
            fs::read_to_string(&s.access_log).map(|t| t.contains("GET /hello.txt")).unwrap_or(false)
        }),
        "access log {} never got the request line; contents: {:?}",
        s.access_log.display(),
        fs::read_to_string(&s.access_log)
    );

    // A second daemon with the same pid file is refused.
    let s2dir = TempDir::new("daemon_mode_second");
    let out2 = launch_daemon(&s.cfg, s2dir.path());
    if let Some((_, p2)) = guard.read()
        && p2 != pid
    {
        panic!("the second daemon overwrote the pid file with {p2} (first was {pid})");
    }
    assert!(
        matches!(out2.code(), Some(c) if c != 0),
        "a second daemon with the same pid file must be refused; {}",
        out2.describe()
    );
    let pf = s.pid_file.to_str().unwrap();
    assert!(
        out2.stderr.contains(pf) || out2.stderr.contains("pid file") || out2.stderr.contains("pid_file"),
        "the refusal should mention the pid file; {}",
        out2.describe()
    );
    assert!(!is_gone(pid), "the first daemon died when a second was started");
    assert_eq!(get_close(addr, "/hello.txt").status, 200, "first daemon stopped serving");

    // SIGTERM: exits promptly and removes its pid file.
    signal(pid, Signal::SIGTERM);
    assert!(wait_gone(pid, Duration::from_secs(5)), "daemon {pid} still running 5 s after SIGTERM");
    assert!(
        poll_until(Duration::from_secs(2), || !s.pid_file.exists()),
        "pid file {} not removed after the daemon stopped",
        s.pid_file.display()
    );
}

/// Detached, a child's own warning reaches the `error_log` file, not the
/// `/dev/null` that is its stderr. The refused request is the daemon's
/// first, so the once-a-minute limit on client warnings lets it through.
#[test]
fn daemon_children_write_their_warnings_to_the_error_log_file() {
    let s = daemon_setup("daemon_child_warning", "127.0.0.1:0");
    let guard = PidFileGuard::new(&s.pid_file);
    let outside = s.dir.path().join("outside.txt");
    fs::write(&outside, b"not for clients\n").unwrap();
    std::os::unix::fs::symlink(&outside, s.dir.path().join("root/escape.txt")).unwrap();
    let out = launch_daemon(&s.cfg, s.dir.path());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let addr: SocketAddr = out.stderr.lines().find_map(parse_listening_line).expect("a listening line");
    assert!(poll_until(Duration::from_secs(2), || guard.read().is_some()), "no pid file");
    let (_, pid) = guard.read().unwrap();
    assert_eq!(get_close(addr, "/escape.txt").status, 403, "a link out of the root must be refused");
    let error_log = s.dir.path().join("error.log");
    let warning = || crate::common::line_containing(&error_log, "outside the document root");
    assert!(
        poll_until(Duration::from_secs(3), || warning().is_some()),
        "the child's warning is not in {}: {:?}",
        error_log.display(),
        fs::read_to_string(&error_log)
    );
    let line = warning().unwrap();
    assert!(line.contains("]: warn: refused /escape.txt"), "not the child's warning line: {line}");
    assert!(!line.contains(&format!("forkhttpd[{pid}]")), "the warning carries the daemon's pid: {line}");
    signal(pid, Signal::SIGTERM);
    assert!(wait_gone(pid, Duration::from_secs(5)), "daemon {pid} still running 5 s after SIGTERM");
}

/// The pids in the "started: pid N" lines of the error logs `names` in `dir`.
fn started_pids(dir: &Path, names: &[&str]) -> Vec<u32> {
    names
        .iter()
        .filter_map(|n| fs::read_to_string(dir.join(n)).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.split("started: pid ").nth(1)?.split(',').next()?.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// SIGKILLs, on drop, every daemon whose start line is in the error logs.
struct KillStarted<'a>(&'a Path, &'a [&'a str]);

impl Drop for KillStarted<'_> {
    fn drop(&mut self) {
        for pid in started_pids(self.0, self.1) {
            kill_tree(pid);
        }
    }
}

/// A copy of the setup's config with its own error log, `name`.
fn second_config(s: &DaemonSetup, name: &str) -> PathBuf {
    let cfg = s.dir.path().join(format!("{name}.toml"));
    let text = fs::read_to_string(&s.cfg).unwrap().replace("error.log", &format!("{name}.log"));
    fs::write(&cfg, text).unwrap();
    cfg
}

/// Two `--daemon` starts at the same moment with one pid file: the lock
/// on it lets exactly one run; the other says why it failed, and its exit
/// leaves the winner's pid file alone.
#[test]
fn concurrent_daemon_starts_with_one_pid_file_run_exactly_one() {
    let s = daemon_setup("daemon_race", "127.0.0.1:0");
    let guard = PidFileGuard::new(&s.pid_file);
    let _kill = KillStarted(s.dir.path(), &["error.log", "second.log"]);
    let cfg2 = second_config(&s, "second");
    let (a, b) = thread::scope(|scope| {
        let a = scope.spawn(|| launch_daemon(&s.cfg, s.dir.path()));
        let b = scope.spawn(|| launch_daemon(&cfg2, s.dir.path()));
        (a.join().unwrap(), b.join().unwrap())
    });
    // Let any daemon that did start write its start line.
    thread::sleep(Duration::from_millis(300));
    let running = started_pids(s.dir.path(), &["error.log", "second.log"]);
    assert_eq!(running.len(), 1, "exactly one daemon must run, got pids {running:?}");
    let (winner, loser) = if a.code() == Some(0) { (&a, &b) } else { (&b, &a) };
    assert_eq!(winner.code(), Some(0), "one start must succeed; {}", winner.describe());
    assert_eq!(loser.code(), Some(1), "the other must fail; {}", loser.describe());
    assert!(
        loser.stderr.contains("locked by a running forkhttpd") && loser.stderr.contains("pid file"),
        "the loser should say the pid file is locked; {}",
        loser.describe()
    );
    let pid = running[0];
    assert_eq!(guard.read().map(|(_, p)| p), Some(pid), "the pid file must name the running daemon");
    signal(pid, Signal::SIGTERM);
    assert!(wait_gone(pid, Duration::from_secs(5)), "daemon {pid} still running 5 s after SIGTERM");
    assert!(!s.pid_file.exists(), "the winner did not remove its pid file");
}

/// The locked pid file's descriptor stays in the parent: a serving child
/// (which may outlive the parent for a moment, or run as another user)
/// holds no descriptor of it, so it can neither write it nor keep the lock.
#[test]
fn serving_children_hold_no_descriptor_of_the_pid_file() {
    if crate::common::cannot_inspect_server() {
        return;
    }
    let srv = TestServer::builder()
        .name("pid_fd_child")
        .config("pid_file = \"forkhttpd.pid\"")
        .config("keepalive_timeout = 10")
        .file("x.txt", b"x")
        .start();
    let pid_file = srv.base().join("forkhttpd.pid");
    let held = |pid: u32| {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.flatten().any(|e| fs::read_link(e.path()).is_ok_and(|t| t == pid_file)))
            .unwrap_or(false)
    };
    assert!(held(srv.pid()), "the parent should hold its pid file open (for the lock)");
    let (_c, resp) = get_keepalive(srv.addr(), "/x.txt");
    assert_eq!(resp.status, 200);
    let kids = wait_children(srv.pid(), Duration::from_secs(3), |k| !k.is_empty());
    let child = kids.first().expect("a serving child").pid;
    assert!(!held(child), "serving child {child} holds a descriptor of the pid file");
}

/// A server whose pid file was removed and taken by a second server does
/// not delete the second server's file when it stops.
#[test]
fn stopping_a_server_the_pid_file_no_longer_names_leaves_the_file() {
    let s = daemon_setup("daemon_pid_owner", "127.0.0.1:0");
    let guard = PidFileGuard::new(&s.pid_file);
    let _kill = KillStarted(s.dir.path(), &["error.log", "second.log"]);
    let out = launch_daemon(&s.cfg, s.dir.path());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let (_, first) = guard.read().expect("the first daemon's pid file");
    fs::remove_file(&s.pid_file).unwrap();
    let out = launch_daemon(&second_config(&s, "second"), s.dir.path());
    assert_eq!(out.code(), Some(0), "a start with the pid file gone must succeed; {}", out.describe());
    let (_, second) = guard.read().expect("the second daemon's pid file");
    assert_ne!(first, second);

    signal(first, Signal::SIGTERM);
    assert!(wait_gone(first, Duration::from_secs(5)), "daemon {first} still running 5 s after SIGTERM");
    assert_eq!(
        guard.read().map(|(_, p)| p),
        Some(second),
        "stopping the first daemon removed or changed the second one's pid file"
    );
    signal(second, Signal::SIGTERM);
    assert!(wait_gone(second, Duration::from_secs(5)), "daemon {second} still running 5 s after SIGTERM");
    assert!(!s.pid_file.exists(), "the second daemon did not remove its pid file");
}

/// A pid file path that is a link (to a file the daemon may write) or a
/// FIFO is refused at once: nothing is written through the link, and the
/// FIFO does not block the start.
#[test]
fn pid_file_that_is_a_link_or_a_fifo_is_refused() {
    // No PidFileGuard: reading the FIFO would block it.
    let s = daemon_setup("daemon_pid_link", "127.0.0.1:0");
    let _kill = KillStarted(s.dir.path(), &["error.log"]);
    let victim = s.dir.path().join("victim");
    fs::write(&victim, b"precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, &s.pid_file).unwrap();
    let out = launch_daemon(&s.cfg, s.dir.path());
    assert_eq!(out.code(), Some(1), "a linked pid file must be refused; {}", out.describe());
    assert!(out.stderr.contains("symbolic link"), "{}", out.describe());
    assert_eq!(fs::read(&victim).unwrap(), b"precious\n", "the link's target was written");
    assert!(fs::symlink_metadata(&s.pid_file).unwrap().file_type().is_symlink(), "the link was replaced");

    fs::remove_file(&s.pid_file).unwrap();
    nix::unistd::mkfifo(&s.pid_file, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let out = launch_daemon(&s.cfg, s.dir.path());
    assert!(
        out.code() == Some(1) && out.elapsed < Duration::from_secs(5),
        "a FIFO pid file must be refused promptly; {}",
        out.describe()
    );
    assert!(out.stderr.contains("not a regular file"), "{}", out.describe());
    fs::remove_file(&s.pid_file).unwrap();
}

/// `--check-config --daemon` checks what `--daemon` would refuse: an
/// `error_log` on stderr fails the check with start-up's words; the same
/// file passes in the foreground and with an `error_log` file.
#[test]
fn check_config_with_daemon_refuses_error_log_on_stderr() {
    let dir = TempDir::new("check_daemon_stderr");
    let text = format!("listen = [\"127.0.0.1:0\"]\n{}\nerror_log = \"stderr\"\n", root_line(&dir));
    let out = check_config(&dir, &text, &["--no-bind", "--daemon"]);
    assert_rejected(&out, &["refusing to detach", "error_log = \"stderr\""]);
    let out = check_config(&dir, &text, &["--no-bind"]);
    assert!(out.success() && out.stdout.contains("configuration OK"), "{}", out.describe());
    let file = toml_str(dir.path().join("error.log").to_str().unwrap());
    let text = text.replace("\"stderr\"", &file);
    let out = check_config(&dir, &text, &["--no-bind", "--daemon"]);
    assert!(out.success() && out.stdout.contains("configuration OK"), "{}", out.describe());
    assert!(!dir.path().join("error.log").exists(), "the check created the error log");
}

/// `--daemon` with `error_log = "stderr"` would send every later daemon
/// message to /dev/null: refused before detaching.
#[test]
fn daemon_with_error_log_on_stderr_is_refused() {
    let s = daemon_setup("daemon_stderr_log", "127.0.0.1:0");
    let guard = PidFileGuard::new(&s.pid_file);
    let text = fs::read_to_string(&s.cfg).unwrap();
    let text: String =
        text.lines().filter(|l| !l.starts_with("error_log")).map(|l| format!("{l}\n")).collect();
    fs::write(&s.cfg, text + "error_log = \"stderr\"\n").unwrap();
    let out = launch_daemon(&s.cfg, s.dir.path());
    if let Some((_, pid)) = guard.read() {
        panic!("the daemon detached with its messages going to /dev/null (pid {pid}); {}", out.describe());
    }
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("refusing to detach") && out.stderr.contains("error_log"),
        "the refusal should say why and what to set; {}",
        out.describe()
    );
}

#[test]
fn daemon_startup_failure_is_reported_before_detaching() {
    let (_held, addr) = held_port();
    let s = daemon_setup("daemon_bind_fail", &addr.to_string());
    let guard = PidFileGuard::new(&s.pid_file);
    let out = launch_daemon(&s.cfg, s.dir.path());
    assert!(
        out.status.is_some() && out.elapsed < Duration::from_secs(5),
        "the launcher must exit within 5 s; {}",
        out.describe()
    );
    assert!(
        matches!(out.code(), Some(c) if c != 0),
        "a daemon that cannot bind must make the launcher fail; {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("cannot listen on"),
        "stderr should say 'cannot listen on'; {}",
        out.describe()
    );
    thread::sleep(Duration::from_millis(200));
    assert!(
        guard.read().is_none() && !s.pid_file.exists(),
        "a pid file was left behind at {}",
        s.pid_file.display()
    );
}

/// With `error_log` a file, a start that fails for want of descriptors
/// (`ulimit -n`, before or after detaching) prints its reason on the
/// terminal, not only in the file; and the `listening on` lines are in the
/// file too. Each limit from 10 to 24 is tried: some fail before binding,
/// some after, the rest start (and are stopped again).
#[test]
fn daemon_start_failures_reach_the_terminal_and_listening_lines_the_log() {
    let s = daemon_setup("daemon_fd_limits", "127.0.0.1:0");
    let guard = PidFileGuard::new(&s.pid_file);
    let error_log = s.dir.path().join("error.log");
    let (mut failed_after_listening, mut started) = (0, 0);
    for limit in 10..=24 {
        let script = format!("ulimit -n {limit} && exec \"$0\" --daemon --config \"$1\"");
        let mut cmd = std::process::Command::new("sh");
        crate::common::scrub_env(&mut cmd).arg("-c").arg(script).arg(crate::common::BIN).arg(&s.cfg);
        let out = run_waiting(cmd.current_dir(s.dir.path()), RUN_TIMEOUT, Duration::from_millis(1000));
        let listening = out.stderr.lines().find_map(parse_listening_line);
        if let Some(addr) = listening {
            let logged = fs::read_to_string(&error_log).unwrap_or_default();
            assert!(
                logged.contains(&format!("listening on {addr}")),
                "limit {limit}: 'listening on {addr}' is not in the error log: {logged:?}"
            );
        }
        if out.code() == Some(0) {
            started += 1;
            assert!(
                poll_until(Duration::from_secs(2), || guard.read().is_some()),
                "limit {limit}: no pid file"
            );
            let (_, pid) = guard.read().unwrap();
            signal(pid, Signal::SIGTERM);
            assert!(wait_gone(pid, RUN_TIMEOUT), "limit {limit}: the daemon did not stop");
            continue;
        }
        assert_eq!(out.code(), Some(1), "limit {limit}: {}", out.describe());
        assert!(
            out.stderr.lines().any(|l| l.contains(": error: ")),
            "limit {limit}: the launcher failed without saying why on the terminal; {}",
            out.describe()
        );
        failed_after_listening += usize::from(listening.is_some());
    }
    assert!(
        failed_after_listening > 0 && started > 0,
        "the limits tried cover no failure after binding ({failed_after_listening}) or no start ({started})"
    );
}

// ---------------------------------------------------------------------------
// Privilege drop (root only)
// ---------------------------------------------------------------------------

#[test]
fn privilege_drop_children_run_as_nobody() {
    if !is_root() {
        crate::common::skip("privilege drop needs root (geteuid() != 0)");
        return;
    }
    let (nobody_uid, nobody_gid) = passwd_ids("nobody").expect("user nobody in /etc/passwd");
    let mut srv = TestServer::builder()
        .name("privdrop")
        .config("user = \"nobody\"")
        .config("keepalive_timeout = 10")
        .config("shutdown_grace = 5")
        .file("x.txt", b"served by nobody\n")
        .start();

    let (mut c, resp) = get_keepalive(srv.addr(), "/x.txt");
    assert_eq!(resp.body, b"served by nobody\n");

    let kids = wait_children(srv.pid(), Duration::from_secs(3), |k| !k.is_empty());
    assert!(!kids.is_empty(), "no serving child found under {}", srv.pid());
    let child = kids[0].pid;
    let uids = status_ids(child, "Uid:").expect("child Uid line");
    let gids = status_ids(child, "Gid:").expect("child Gid line");
    let groups = status_ids(child, "Groups:").unwrap_or_default();
    assert_eq!(uids, vec![nobody_uid; 4], "child {child}: real/effective/saved/fs uid must all be nobody's");
    assert_eq!(gids, vec![nobody_gid; 4], "child {child}: gids must all be nobody's primary group");
    assert!(!groups.contains(&0), "child {child} keeps supplementary group 0: {groups:?}");
    let parent_uids = status_ids(srv.pid(), "Uid:").expect("parent Uid line");
    assert_eq!(parent_uids, vec![0; 4], "the parent stays root");

    // The connection still works after the drop.
    c.send_request("GET", "/x.txt", &["Connection: close"]);
    assert_eq!(c.read_response().status, 200);
    drop(c);
    srv.signal(Signal::SIGTERM);
    assert!(srv.wait_exit(Duration::from_secs(6)).is_some());
}

/// Started as root, the parent binds a port below 1024 itself; the child
/// that serves it still runs as nobody.
#[test]
fn root_binds_a_low_port_and_children_still_drop() {
    if !is_root() {
        crate::common::skip("binding a port below 1024 needs root");
        return;
    }
    // A free privileged port on loopback (checked, then released for the server).
    let Some(port) = (900..1024u16).find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok()) else {
        crate::common::skip("no free port in 900..1024 on 127.0.0.1");
        return;
    };
    let addr = format!("127.0.0.1:{port}");
    let (nobody_uid, _) = passwd_ids("nobody").expect("user nobody in /etc/passwd");
    let srv = TestServer::builder()
        .name("low_port")
        .config_listen(&[&addr])
        .config("user = \"nobody\"")
        .config("keepalive_timeout = 10")
        .file("x.txt", b"low port\n")
        .start();
    assert_eq!(srv.addr().port(), port);
    let (_c, resp) = get_keepalive(srv.addr(), "/x.txt");
    assert_eq!(resp.body, b"low port\n");
    let kids = wait_children(srv.pid(), Duration::from_secs(3), |k| !k.is_empty());
    let child = kids.first().expect("a serving child").pid;
    assert_eq!(status_ids(child, "Uid:").expect("child Uid line"), vec![nobody_uid; 4]);
}

/// With `chroot = true` each child's root directory is the document root.
#[test]
fn chroot_confines_each_child_to_the_document_root() {
    if !is_root() {
        crate::common::skip("chroot needs root");
        return;
    }
    let srv = TestServer::builder()
        .name("chroot")
        .config("user = \"nobody\"")
        .config("chroot = true")
        .config("keepalive_timeout = 10")
        .file("x.txt", b"chrooted\n")
        .start();
    let (_c, resp) = get_keepalive(srv.addr(), "/x.txt");
    assert_eq!(resp.body, b"chrooted\n");
    let kids = wait_children(srv.pid(), Duration::from_secs(3), |k| !k.is_empty());
    let child = kids.first().expect("a serving child").pid;
    let child_root = fs::read_link(format!("/proc/{child}/root")).expect("read /proc/CHILD/root");
    assert_eq!(child_root, fs::canonicalize(srv.root()).unwrap(), "the child's / is not the document root");
    let parent_root = fs::read_link(format!("/proc/{}/root", srv.pid())).expect("read /proc/PID/root");
    assert_eq!(parent_root, Path::new("/"), "the parent must not be chrooted");
}

#[test]
fn serving_as_root_without_allow_root_is_refused() {
    if !is_root() {
        crate::common::skip("the allow_root check applies only when started as root");
        return;
    }
    let mut srv = TestServer::builder()
        .name("allow_root")
        .config("user = \"root\"")
        .config("allow_root = false")
        .spawn();
    let st = srv.wait_exit(Duration::from_secs(5));
    assert!(
        matches!(st.and_then(|s| s.code()), Some(c) if c != 0),
        "user = \"root\" without allow_root must be refused at start (status {st:?}); stderr:\n{}",
        srv.stderr()
    );
    srv.log().wait_eof(Duration::from_secs(1));
    assert!(
        srv.stderr().contains("allow_root"),
        "the refusal should mention allow_root; stderr:\n{}",
        srv.stderr()
    );
}

// ---------------------------------------------------------------------------
// max_children_per_ip
// ---------------------------------------------------------------------------

/// Under pressure (here `max_children = 4`, so from 2 children busy) an
/// address at `max_children_per_ip` gets the parent's `503`; another
/// address is still served, and a slot freed is the address's again.
#[test]
fn max_children_per_ip_limits_one_address() {
    let srv = TestServer::builder()
        .name("per_ip")
        .config("max_children_per_ip = 2")
        .config("max_children = 4")
        .config("keepalive_timeout = 10")
        .config("shutdown_grace = 2")
        .file("x.txt", b"per-ip\n")
        .start();
    let std::net::SocketAddr::V4(addr4) = srv.addr() else { panic!("expected an IPv4 listener") };

    // Two idle keep-alive connections from 127.0.0.1, each with a live child.
    let mut held: Vec<Conn> = (0..2).map(|_| get_keepalive(srv.addr(), "/x.txt").0).collect();
    assert!(
        poll_until(Duration::from_secs(2), || children_of(srv.pid()).len() >= 2),
        "expected two serving children"
    );

    // The third from the same address: 503 with Retry-After, then closed.
    let mut third = Conn::connect(srv.addr());
    third.send_lossy(b"GET /x.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let r = third.read_response();
    assert_eq!(r.status, 503, "third connection from 127.0.0.1: {r:?}");
    assert!(r.header("retry-after").is_some(), "503 must carry Retry-After: {r:?}");
    third.expect_closed();

    // Another source address is not affected.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr4)
        .expect("connect from 127.0.0.2 (bind before connect)");
    let bytes =
        other.send_until_close(b"GET /x.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(
        bytes.starts_with(b"HTTP/1.1 200"),
        "a connection from 127.0.0.2 must be served: {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );

    // Closing one of the two frees a slot for 127.0.0.1 again.
    drop(held.pop());
    let mut last = None;
    let ok = poll_until(Duration::from_secs(3), || {
        let mut c = Conn::connect(srv.addr());
        c.send_lossy(b"GET /x.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let r = c.try_read_response(false).ok().flatten();
        let status = r.as_ref().map(|r| r.status);
        last = r;
        status == Some(200)
    });
    assert!(ok, "after closing one connection a new one from 127.0.0.1 should be served; last: {last:?}");
    drop(held);
}
