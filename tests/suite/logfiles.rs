//! The files the parent opens by path (the access log, the config) cannot
//! be used against it: a symbolic link swapped in is not followed, a FIFO
//! does not freeze it, and as root it writes logs only in a directory the
//! account children run as cannot change.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, chown, mkfifo};

use crate::common::{
    Conn, Proc, STARTUP_TIMEOUT, TempDir, config_text, is_root, make_root, passwd_ids, send_signal,
    server_command, toml_str,
};

/// How long a server that must not block gets to answer SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// A directory with a docroot, a `logs` directory and a config file whose
/// access log is `logs/access.log`.
struct Site {
    dir: TempDir,
    root: PathBuf,
    logs: PathBuf,
    cfg: PathBuf,
}

impl Site {
    fn new(name: &str) -> Site {
        let dir = TempDir::new(name);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = make_root(&dir.path().join("root"), &[("a.txt", b"served\n")]);
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        fs::set_permissions(&logs, fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = dir.path().join("forkhttpd.toml");
        let site = Site { dir, root, logs, cfg };
        site.write_config(&site.access_log());
        site
    }

    fn access_log(&self) -> PathBuf {
        self.logs.join("access.log")
    }

    fn write_config(&self, access_log: &std::path::Path) {
        let extra = [
            format!("access_log = {}", toml_str(access_log.to_str().unwrap())),
            "user = \"nobody\"".to_string(),
            "shutdown_grace = 1".to_string(),
        ];
        fs::write(&self.cfg, config_text(&["127.0.0.1:0"], &self.root, &extra)).unwrap();
    }

    fn spawn(&self) -> Proc {
        Proc::spawn(server_command().arg("--config").arg(&self.cfg).current_dir(self.dir.path()))
    }

    /// Spawns the server and waits until it has started.
    fn start(&self) -> (Proc, std::net::SocketAddr) {
        let mut p = self.spawn();
        let addr = p.wait_listeners(0, 1)[0];
        let started = p.wait_line(STARTUP_TIMEOUT, |l| l.contains("started"));
        assert!(matches!(started, Ok(Some(_))), "no start line; stderr:\n{}", p.lines().join("\n"));
        (p, addr)
    }
}

fn get(addr: std::net::SocketAddr, ua: &str) -> u16 {
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/a.txt", &["Connection: close", &format!("User-Agent: {ua}")]);
    c.read_response().status
}

/// Waits for a stderr line containing every one of `needles`.
fn expect_line(p: &mut Proc, needles: &[&str]) -> String {
    match p.wait_line(STOP_BOUND, |l| needles.iter().all(|n| l.contains(n))) {
        Ok(Some(l)) => l,
        other => panic!("no line with {needles:?} ({other:?}); stderr:\n{}", p.lines().join("\n")),
    }
}

/// The server serves and then stops promptly on SIGTERM: it is not stuck.
fn assert_alive_and_stoppable(p: &mut Proc, addr: std::net::SocketAddr) {
    assert_eq!(get(addr, "still-serving"), 200, "the server stopped serving");
    send_signal(p.pid(), "TERM");
    let st = p.wait_exit(STOP_BOUND);
    p.log.wait_eof(Duration::from_secs(1));
    assert!(st.is_some(), "no exit within {STOP_BOUND:?} of SIGTERM; stderr:\n{}", p.lines().join("\n"));
}

/// The access log path is swapped for a link to a file the parent may
/// write (as root: any file); SIGUSR1 must not write through it.
#[test]
fn symlink_swapped_in_for_the_access_log_is_not_followed_on_reopen() {
    let site = Site::new("log_symlink_reopen");
    let (mut p, addr) = site.start();
    assert_eq!(get(addr, "before-swap"), 200);
    let victim = site.dir.path().join("victim");
    fs::write(&victim, b"precious\n").unwrap();
    let rotated = site.logs.join("access.log.1");
    fs::rename(site.access_log(), &rotated).unwrap();
    symlink(&victim, site.access_log()).unwrap();
    send_signal(p.pid(), "USR1");
    expect_line(&mut p, &["access.log", "symbolic link"]);
    assert_eq!(get(addr, "evil:x:0:0::/root:/bin/sh"), 200);
    assert!(
        crate::common::poll_until(STOP_BOUND, || {
            fs::read_to_string(&rotated).is_ok_and(|t| t.contains("evil:x:0:0"))
        }),
        "the line after the refused reopen did not go to the previous log: {:?}",
        fs::read_to_string(&rotated)
    );
    assert_eq!(fs::read(&victim).unwrap(), b"precious\n", "the link's target was written");
    assert_alive_and_stoppable(&mut p, addr);
}

/// A dangling link: neither start-up nor a reopen creates its target.
#[test]
fn dangling_symlink_creates_no_file() {
    let site = Site::new("log_dangling");
    let target = site.dir.path().join("created-through-link");
    symlink(&target, site.access_log()).unwrap();
    let mut p = site.spawn();
    let st = p.wait_exit(STOP_BOUND);
    p.log.wait_eof(Duration::from_secs(1));
    assert!(
        st.is_some_and(|s| !s.success()),
        "start-up through a dangling log link must fail ({st:?}); stderr:\n{}",
        p.lines().join("\n")
    );
    assert!(p.lines().iter().any(|l| l.contains("symbolic link")), "stderr:\n{}", p.lines().join("\n"));
    assert!(!target.exists(), "start-up created the link's target");

    fs::remove_file(site.access_log()).unwrap();
    let (mut p, addr) = site.start();
    fs::remove_file(site.access_log()).unwrap();
    symlink(&target, site.access_log()).unwrap();
    send_signal(p.pid(), "USR1");
    expect_line(&mut p, &["access.log", "symbolic link"]);
    assert!(!target.exists(), "the reopen created the link's target");
    assert_alive_and_stoppable(&mut p, addr);
}

/// A FIFO as the access log at start-up: refused at once, not a hang in
/// open(2) with the port already bound.
#[test]
fn fifo_access_log_at_start_is_refused_without_blocking() {
    let site = Site::new("log_fifo_start");
    mkfifo(&site.access_log(), Mode::from_bits_truncate(0o644)).unwrap();
    let mut p = site.spawn();
    let st = p.wait_exit(STOP_BOUND);
    p.log.wait_eof(Duration::from_secs(1));
    assert!(
        st.is_some_and(|s| !s.success()),
        "start-up with a FIFO access log must fail promptly ({st:?}); stderr:\n{}",
        p.lines().join("\n")
    );
    assert!(
        p.lines().iter().any(|l| l.contains("access.log") && l.contains("not a regular file")),
        "stderr:\n{}",
        p.lines().join("\n")
    );
}

/// A FIFO swapped in for the access log: SIGUSR1 neither blocks the
/// parent nor stops the old log.
#[test]
fn fifo_swapped_in_for_the_access_log_does_not_freeze_the_parent() {
    let site = Site::new("log_fifo_reopen");
    let (mut p, addr) = site.start();
    fs::remove_file(site.access_log()).unwrap();
    mkfifo(&site.access_log(), Mode::from_bits_truncate(0o644)).unwrap();
    send_signal(p.pid(), "USR1");
    expect_line(&mut p, &["access.log", "not a regular file"]);
    assert_alive_and_stoppable(&mut p, addr);
}

/// A FIFO in place of the config file: SIGHUP is refused as a bad config,
/// without blocking the parent.
#[test]
fn fifo_config_on_reload_does_not_freeze_the_parent() {
    let site = Site::new("config_fifo_reload");
    let (mut p, addr) = site.start();
    fs::remove_file(&site.cfg).unwrap();
    mkfifo(&site.cfg, Mode::from_bits_truncate(0o644)).unwrap();
    send_signal(p.pid(), "HUP");
    expect_line(&mut p, &["reload failed", "not a regular file"]);
    assert_alive_and_stoppable(&mut p, addr);
}

/// The three ways the account children run as can change a directory.
fn make_changeable_by_nobody(dir: &std::path::Path, how: usize) {
    let (uid, gid) = passwd_ids("nobody").expect("user nobody");
    match how {
        0 => chown(dir, Some(Uid::from_raw(uid)), None).unwrap(),
        1 => {
            chown(dir, None, Some(Gid::from_raw(gid))).unwrap();
            fs::set_permissions(dir, fs::Permissions::from_mode(0o775)).unwrap();
        }
        _ => fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap(),
    }
}

/// As root, with children running as nobody: a log directory nobody can
/// change (owner, group-writable by its group, world-writable) is refused
/// at start-up, naming the directory and why.
#[test]
fn root_refuses_a_log_directory_the_serving_user_can_change_at_start() {
    if !is_root() {
        crate::common::skip("the log directory check applies only when started as root");
        return;
    }
    for (how, why) in
        ["account children run as", "group children run as", "world-writable"].iter().enumerate()
    {
        let site = Site::new(&format!("log_dir_start_{how}"));
        make_changeable_by_nobody(&site.logs, how);
        let mut p = site.spawn();
        let st = p.wait_exit(STOP_BOUND);
        p.log.wait_eof(Duration::from_secs(1));
        assert!(
            st.is_some_and(|s| !s.success()),
            "case {how}: start-up must fail ({st:?}); stderr:\n{}",
            p.lines().join("\n")
        );
        let logs = site.logs.to_str().unwrap();
        assert!(
            p.lines().iter().any(|l| l.contains(logs) && l.contains(why)),
            "case {how}: the refusal should name {logs} and say {why:?}; stderr:\n{}",
            p.lines().join("\n")
        );
        assert!(!site.access_log().exists(), "case {how}: the log was created anyway");
    }
}

/// `--check-config` refuses what start-up refuses: the same changeable
/// log directory fails the check, naming it, and creates no log.
#[test]
fn check_config_refuses_a_log_directory_the_serving_user_can_change() {
    if !is_root() {
        crate::common::skip("the log directory check applies only when started as root");
        return;
    }
    let site = Site::new("log_dir_check_config");
    make_changeable_by_nobody(&site.logs, 0);
    let out = crate::common::run(
        server_command().args(["--check-config", "--no-bind", "--config"]).arg(&site.cfg),
        STOP_BOUND,
    );
    let logs = site.logs.to_str().unwrap();
    assert!(!out.success() && out.stderr.contains(logs), "--check-config: {}", out.describe());
    assert!(!site.access_log().exists(), "the check created the log");
}

/// The same check on SIGHUP (a new log path in a changeable directory) and
/// on SIGUSR1 (the directory made changeable after start): refused with a
/// message, the previous log kept.
#[test]
fn root_refuses_a_log_directory_the_serving_user_can_change_at_reload() {
    if !is_root() {
        crate::common::skip("the log directory check applies only when started as root");
        return;
    }
    let site = Site::new("log_dir_reload");
    let (mut p, addr) = site.start();
    let bad = site.dir.path().join("bad-logs");
    fs::create_dir(&bad).unwrap();
    make_changeable_by_nobody(&bad, 0);
    site.write_config(&bad.join("access.log"));
    send_signal(p.pid(), "HUP");
    expect_line(&mut p, &["reload failed", bad.to_str().unwrap(), "account children run as"]);
    assert!(!bad.join("access.log").exists(), "the reload created a log in the refused directory");

    site.write_config(&site.access_log());
    make_changeable_by_nobody(&site.logs, 2);
    fs::rename(site.access_log(), site.logs.join("access.log.1")).unwrap();
    send_signal(p.pid(), "USR1");
    expect_line(&mut p, &[site.logs.to_str().unwrap(), "world-writable"]);
    assert!(!site.access_log().exists(), "the reopen created a log in the refused directory");
    assert_eq!(get(addr, "after-refusal"), 200);
    assert!(
        crate::common::poll_until(STOP_BOUND, || {
            fs::read_to_string(site.logs.join("access.log.1")).is_ok_and(|t| t.contains("after-refusal"))
        }),
        "the previous log is no longer written"
    );
    assert_alive_and_stoppable(&mut p, addr);
}

/// An `error_log` file gets the daemon messages and, like the access log,
/// is reopened by path on SIGUSR1 (never through a link).
#[test]
fn error_log_file_is_written_and_reopened_on_sigusr1() {
    let site = Site::new("error_log_reopen");
    let error_log = site.logs.join("error.log");
    let text = fs::read_to_string(&site.cfg).unwrap();
    fs::write(&site.cfg, format!("{text}error_log = {}\n", toml_str(error_log.to_str().unwrap()))).unwrap();
    let mut p = site.spawn();
    let addr = p.wait_listeners(0, 1)[0];
    let has = |path: &std::path::Path, what: &str| fs::read_to_string(path).is_ok_and(|t| t.contains(what));
    assert!(
        crate::common::poll_until(STOP_BOUND, || has(&error_log, "started: pid")),
        "no start line in {}: {:?}",
        error_log.display(),
        fs::read_to_string(&error_log)
    );
    let rotated = site.logs.join("error.log.1");
    fs::rename(&error_log, &rotated).unwrap();
    send_signal(p.pid(), "USR1");
    assert!(
        crate::common::poll_until(STOP_BOUND, || has(&error_log, "reopened log files")),
        "the reopen did not create a new error log: {:?}",
        fs::read_to_string(&error_log)
    );

    let victim = site.dir.path().join("victim");
    fs::write(&victim, b"precious\n").unwrap();
    fs::rename(&error_log, &rotated).unwrap();
    symlink(&victim, &error_log).unwrap();
    send_signal(p.pid(), "USR1");
    assert!(
        crate::common::poll_until(STOP_BOUND, || has(&rotated, "error.log: is a symbolic link")),
        "the refused reopen was not logged to the previous error log: {:?}",
        fs::read_to_string(&rotated)
    );
    assert_eq!(fs::read(&victim).unwrap(), b"precious\n", "the link's target was written");
    assert_alive_and_stoppable(&mut p, addr);
}

/// A child's own daemon messages reach the `error_log` file too: the child
/// keeps the file's descriptor through its descriptor cleanup (it used to
/// close it, and the warning fell back to stderr). The refused request is
/// the server's first, so the once-a-minute limit on client warnings lets
/// its warning through.
#[test]
fn children_write_their_warnings_to_the_error_log_file() {
    let site = Site::new("error_log_child");
    let error_log = site.logs.join("error.log");
    let outside = site.dir.path().join("outside.txt");
    fs::write(&outside, b"not for clients\n").unwrap();
    symlink(&outside, site.root.join("escape.txt")).unwrap();
    let text = fs::read_to_string(&site.cfg).unwrap();
    fs::write(&site.cfg, format!("{text}error_log = {}\n", toml_str(error_log.to_str().unwrap()))).unwrap();
    let mut p = site.spawn();
    let addr = p.wait_listeners(0, 1)[0];
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/escape.txt", &["Connection: close"]);
    assert_eq!(c.read_response().status, 403, "a link out of the root must be refused");
    let warning = || crate::common::line_containing(&error_log, "outside the document root");
    assert!(
        crate::common::poll_until(STOP_BOUND, || warning().is_some()),
        "the child's warning is not in {}: {:?}; stderr:\n{}",
        error_log.display(),
        fs::read_to_string(&error_log),
        p.lines().join("\n")
    );
    let line = warning().unwrap();
    assert!(line.contains(": warn: refused /escape.txt"), "not the child's warning line: {line}");
    let pid = crate::common::logged_pid(&line).unwrap_or_else(|| panic!("no pid in {line}"));
    assert_ne!(pid, p.pid(), "the warning carries the parent's pid, not a child's: {line}");
    assert_alive_and_stoppable(&mut p, addr);
}

/// The server on `site`'s config, started as nobody (parent and children
/// one ordinary account, as the shipped unit runs it).
fn spawn_as_nobody(site: &Site) -> Proc {
    let (uid, gid) = passwd_ids("nobody").expect("user nobody");
    let mut cmd = std::process::Command::new("setpriv");
    crate::common::scrub_env(&mut cmd)
        .args(["--reuid", &uid.to_string(), "--regid", &gid.to_string(), "--clear-groups", "--"])
        .arg(crate::common::BIN)
        .arg("--config")
        .arg(&site.cfg)
        .current_dir(site.dir.path());
    Proc::spawn(&mut cmd)
}

/// The shipped systemd unit's case: every process runs as one ordinary
/// account that owns the log directory and the config. The ownership
/// checks are for a root parent only, so this starts, logs, reopens and
/// reloads.
#[test]
fn unprivileged_server_logs_in_a_directory_it_owns() {
    if !is_root() {
        crate::common::skip("needs root to run the server as nobody");
        return;
    }
    if crate::common::missing_tool("setpriv") {
        return;
    }
    let site = Site::new("log_dir_own_user");
    make_changeable_by_nobody(&site.logs, 0);
    let (uid, gid) = passwd_ids("nobody").expect("user nobody");
    chown(&site.cfg, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).unwrap();
    let mut p = spawn_as_nobody(&site);
    let addr = p.wait_listeners(0, 1)[0];
    assert_eq!(get(addr, "as-nobody"), 200);
    let rotated = site.logs.join("access.log.1");
    assert!(
        crate::common::poll_until(STOP_BOUND, || {
            fs::read_to_string(site.access_log()).is_ok_and(|t| t.contains("as-nobody"))
        }),
        "no access line; stderr:\n{}",
        p.lines().join("\n")
    );
    fs::rename(site.access_log(), &rotated).unwrap();
    send_signal(p.pid(), "USR1");
    expect_line(&mut p, &["reopened log files"]);
    assert_eq!(get(addr, "after-reopen"), 200);
    assert!(
        crate::common::poll_until(STOP_BOUND, || {
            fs::read_to_string(site.access_log()).is_ok_and(|t| t.contains("after-reopen"))
        }),
        "the reopened log got no line; stderr:\n{}",
        p.lines().join("\n")
    );
    send_signal(p.pid(), "HUP");
    expect_line(&mut p, &["configuration reloaded"]);
    assert_alive_and_stoppable(&mut p, addr);
}

/// Started as an ordinary account (nobody, as the shipped unit starts it
/// as its own), the server still refuses a log directory, or a config
/// directory, that another unprivileged user owns: that user could swap
/// the log for a link or rewrite the config as surely as under a root
/// parent.
#[test]
fn unprivileged_server_refuses_directories_another_user_owns() {
    if !is_root() {
        crate::common::skip("needs root to run the server as nobody");
        return;
    }
    if crate::common::missing_tool("setpriv") {
        return;
    }
    let (uid, gid) = passwd_ids("nobody").expect("user nobody");
    let as_nobody = |site: &Site| {
        let mut p = spawn_as_nobody(site);
        let st = p.wait_exit(STOP_BOUND);
        p.log.wait_eof(Duration::from_secs(1));
        (st, p.lines().join("\n"))
    };
    let owner = format!("owned by uid {OTHER}, neither root nor this server's own uid {uid}");
    // The log exists, nobody's: nobody could append to it, and the other
    // user could replace it with a link.
    let site = Site::new("unpriv_log_dir_other");
    fs::write(site.access_log(), b"").unwrap();
    chown(&site.access_log(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).unwrap();
    chown(&site.logs, Some(Uid::from_raw(OTHER)), None).unwrap();
    let (st, err) = as_nobody(&site);
    let logs = site.logs.to_str().unwrap();
    assert!(
        st.is_some_and(|s| !s.success()) && err.lines().any(|l| l.contains(logs) && l.contains(&owner)),
        "log directory: start-up as nobody must fail naming {logs} ({st:?}); stderr:\n{err}"
    );
    let mut site = Site::new("unpriv_config_dir_other");
    let conf = config_in_own_directory(&mut site);
    chown(&conf, Some(Uid::from_raw(OTHER)), None).unwrap();
    let (st, err) = as_nobody(&site);
    let conf = conf.to_str().unwrap();
    assert!(
        st.is_some_and(|s| !s.success()) && err.lines().any(|l| l.contains(conf) && l.contains(&owner)),
        "config directory: start-up as nobody must fail naming {conf} ({st:?}); stderr:\n{err}"
    );
}

/// Moves the site's config file into a new directory `conf/` (root's, mode
/// 0755) and points the site at it.
fn config_in_own_directory(site: &mut Site) -> PathBuf {
    let conf = site.dir.path().join("conf");
    fs::create_dir(&conf).unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o755)).unwrap();
    let moved = conf.join("forkhttpd.toml");
    fs::rename(&site.cfg, &moved).unwrap();
    site.cfg = moved;
    conf
}

/// Start-up and `--check-config --no-bind` with the site's config both
/// fail, naming `needles`.
fn start_and_check_refuse(site: &Site, case: &str, needles: &[&str]) {
    let mut p = site.spawn();
    let st = p.wait_exit(STOP_BOUND);
    p.log.wait_eof(Duration::from_secs(1));
    let said = |l: &String| needles.iter().all(|n| l.contains(n));
    assert!(
        st.is_some_and(|s| !s.success()) && p.lines().iter().any(said),
        "{case}: start-up must fail saying {needles:?} ({st:?}); stderr:\n{}",
        p.lines().join("\n")
    );
    let out = crate::common::run(
        server_command().args(["--check-config", "--no-bind", "--config"]).arg(&site.cfg),
        STOP_BOUND,
    );
    assert!(
        !out.success() && needles.iter().all(|n| out.stderr.contains(n)),
        "{case}: --check-config must refuse it too: {}",
        out.describe()
    );
}

/// As root, with children running as nobody: a config file, or a
/// `mime_types` file, that nobody could have written (it owns the file or
/// its directory, or may write the file) is refused at start-up and by
/// `--check-config`: what it says decides what children run as.
#[test]
fn root_refuses_a_config_the_serving_user_can_change() {
    if !is_root() {
        crate::common::skip("the config ownership check applies only when started as root");
        return;
    }
    let (uid, gid) = passwd_ids("nobody").expect("user nobody");
    let nobody = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    // The directory holding the config is nobody's.
    let mut site = Site::new("config_dir_nobody");
    let conf = config_in_own_directory(&mut site);
    chown(&conf, nobody.0, None).unwrap();
    // Before the config is read, the server does not know nobody is the
    // account children run as: it names the owner.
    let owner = format!("owned by uid {uid}");
    start_and_check_refuse(&site, "directory", &[conf.to_str().unwrap(), &owner]);
    // The config file itself is nobody's, or anyone may write it.
    let site = Site::new("config_file_nobody");
    chown(&site.cfg, nobody.0, nobody.1).unwrap();
    start_and_check_refuse(&site, "owner", &[site.cfg.to_str().unwrap(), &owner]);
    let site = Site::new("config_file_world_writable");
    fs::set_permissions(&site.cfg, fs::Permissions::from_mode(0o666)).unwrap();
    start_and_check_refuse(&site, "mode", &[site.cfg.to_str().unwrap(), "world-writable"]);
    // A mime_types file nobody owns.
    let site = Site::new("mime_types_nobody");
    let types = site.dir.path().join("mime.types");
    fs::write(&types, "text/x-evil html\n").unwrap();
    chown(&types, nobody.0, None).unwrap();
    let text = fs::read_to_string(&site.cfg).unwrap();
    fs::write(&site.cfg, format!("{text}mime_types = [{}]\n", toml_str(types.to_str().unwrap()))).unwrap();
    start_and_check_refuse(&site, "mime_types", &["mime_types", types.to_str().unwrap(), &owner]);
}

/// A uid and gid of no account here, standing for any unprivileged user
/// other than root, the server's own and the one children run as: the
/// rule is about every such account, named or not.
const OTHER: u32 = 61234;

/// As root, with children running as nobody: a config, its directory or a
/// `mime_types` file that another unprivileged user can change (owns, or
/// may write as a group) is refused at start-up and by `--check-config`.
/// That user could make children run as root as surely as nobody could.
#[test]
fn root_refuses_a_config_another_user_can_change() {
    if !is_root() {
        crate::common::skip("chown needs root");
        return;
    }
    let other = (Some(Uid::from_raw(OTHER)), Some(Gid::from_raw(OTHER)));
    let owner = format!("owned by uid {OTHER}, neither root nor this server's own uid 0");
    let mut site = Site::new("config_dir_other");
    let conf = config_in_own_directory(&mut site);
    chown(&conf, other.0, None).unwrap();
    start_and_check_refuse(&site, "directory", &[conf.to_str().unwrap(), &owner]);
    let site = Site::new("config_file_other");
    chown(&site.cfg, other.0, None).unwrap();
    start_and_check_refuse(&site, "owner", &[site.cfg.to_str().unwrap(), &owner]);
    let site = Site::new("config_file_other_group");
    chown(&site.cfg, None, other.1).unwrap();
    fs::set_permissions(&site.cfg, fs::Permissions::from_mode(0o664)).unwrap();
    start_and_check_refuse(
        &site,
        "group",
        &[site.cfg.to_str().unwrap(), &format!("writable by group {OTHER}")],
    );
    let site = Site::new("mime_types_other");
    let types = site.dir.path().join("mime.types");
    fs::write(&types, "text/x-evil html\n").unwrap();
    chown(&types, other.0, None).unwrap();
    let text = fs::read_to_string(&site.cfg).unwrap();
    fs::write(&site.cfg, format!("{text}mime_types = [{}]\n", toml_str(types.to_str().unwrap()))).unwrap();
    start_and_check_refuse(&site, "mime_types", &["mime_types", types.to_str().unwrap(), &owner]);
}

/// As root, with children running as nobody: a log directory another
/// unprivileged user owns (who could swap the log for a link to a root
/// file), or may write as a group, an access log or a pid file that user
/// owns, are refused at start-up and by `--check-config`; no log is made.
#[test]
fn root_refuses_log_and_pid_files_another_user_can_change() {
    if !is_root() {
        crate::common::skip("chown needs root");
        return;
    }
    let other = (Some(Uid::from_raw(OTHER)), Some(Gid::from_raw(OTHER)));
    let owner = format!("owned by uid {OTHER}");
    let site = Site::new("log_dir_other");
    chown(&site.logs, other.0, None).unwrap();
    start_and_check_refuse(&site, "log directory", &[site.logs.to_str().unwrap(), &owner]);
    assert!(!site.access_log().exists(), "the log was created in a directory uid {OTHER} owns");
    let site = Site::new("log_dir_other_group");
    chown(&site.logs, None, other.1).unwrap();
    fs::set_permissions(&site.logs, fs::Permissions::from_mode(0o775)).unwrap();
    start_and_check_refuse(
        &site,
        "log group",
        &[site.logs.to_str().unwrap(), &format!("writable by group {OTHER}")],
    );
    assert!(!site.access_log().exists(), "the log was created in a directory group {OTHER} may write");
    let site = Site::new("log_file_other");
    fs::write(site.access_log(), b"").unwrap();
    chown(&site.access_log(), other.0, None).unwrap();
    start_and_check_refuse(&site, "log file", &[site.access_log().to_str().unwrap(), &owner]);
    assert_eq!(fs::read(site.access_log()).unwrap(), b"", "the refused log was written");
    let site = Site::new("pid_file_other");
    let pid = site.dir.path().join("forkhttpd.pid");
    fs::write(&pid, b"").unwrap();
    chown(&pid, other.0, None).unwrap();
    let text = fs::read_to_string(&site.cfg).unwrap();
    fs::write(&site.cfg, format!("{text}pid_file = {}\n", toml_str(pid.to_str().unwrap()))).unwrap();
    start_and_check_refuse(&site, "pid file", &[pid.to_str().unwrap(), &owner]);
    assert_eq!(fs::read(&pid).unwrap(), b"", "the refused pid file was written");
}

/// The attack: the account children run as owns the config's directory
/// after start-up and rewrites the config to serve as root. SIGHUP refuses
/// it before reading it, and children still run as nobody.
#[test]
fn reload_refuses_a_config_the_serving_user_rewrote() {
    if !is_root() {
        crate::common::skip("the config ownership check applies only when started as root");
        return;
    }
    let (uid, _) = passwd_ids("nobody").expect("user nobody");
    let mut site = Site::new("config_rewritten_by_nobody");
    let conf = config_in_own_directory(&mut site);
    let (mut p, addr) = site.start();
    chown(&conf, Some(Uid::from_raw(uid)), None).unwrap();
    let text = fs::read_to_string(&site.cfg).unwrap().replace("user = \"nobody\"", "user = \"root\"");
    fs::write(&site.cfg, format!("{text}allow_root = true\n")).unwrap();
    send_signal(p.pid(), "HUP");
    expect_line(&mut p, &["reload failed", conf.to_str().unwrap(), "account children run as"]);
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/a.txt", &["User-Agent: after-rewrite"]);
    assert_eq!(c.read_response().status, 200);
    let children = crate::common::children_of(p.pid());
    assert!(!children.is_empty(), "no child holds the kept-alive connection");
    for child in children {
        let ids = crate::common::status_ids(child.pid, "Uid");
        assert!(ids.as_ref().is_some_and(|ids| ids.iter().all(|&i| i == uid)), "child runs as {ids:?}");
    }
    drop(c);
    assert_alive_and_stoppable(&mut p, addr);
}

/// A symbolic link as the config file is not followed, whoever starts the
/// server: not at start-up, not by `--check-config`, not on SIGHUP.
#[test]
fn symlinked_config_is_refused() {
    let mut site = Site::new("config_symlink");
    let real = site.dir.path().join("real.toml");
    fs::rename(&site.cfg, &real).unwrap();
    symlink(&real, &site.cfg).unwrap();
    start_and_check_refuse(&site, "link", &[site.cfg.to_str().unwrap(), "symbolic link"]);

    let link = std::mem::replace(&mut site.cfg, real.clone());
    let (mut p, addr) = site.start();
    fs::remove_file(&link).unwrap();
    fs::rename(&real, &link).unwrap();
    symlink(&link, &real).unwrap();
    send_signal(p.pid(), "HUP");
    expect_line(&mut p, &["reload failed", real.to_str().unwrap(), "symbolic link"]);
    assert_alive_and_stoppable(&mut p, addr);
}
