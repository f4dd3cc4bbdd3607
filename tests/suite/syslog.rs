//! Daemon messages and access lines through syslog: ident `forkhttpd`,
//! facility `daemon`, a level per message, and each process's own pid.
//!
//! The machine may run no syslog daemon, so each test runs the server in a
//! private mount namespace (`unshare --mount`, root only) where the test's
//! own datagram socket is mounted at `/run/syslog`, one of the paths the
//! server's syslog client tries. Nothing outside that namespace changes.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    Conn, TempDir, children_of, parse_listening_line, poll_until, send_signal, toml_str, wait_child,
};

/// `<PRI>` for facility daemon (3) at `info` (6) and `warning` (4).
const DAEMON_INFO: &str = "<30>";
const DAEMON_WARNING: &str = "<28>";

/// A fake syslog socket, and the server running against it.
struct Fixture {
    dir: TempDir,
    syslog: UnixDatagram,
}

impl Fixture {
    /// `None` (with the reason printed) where the namespace trick cannot work.
    fn new(name: &str) -> Option<Fixture> {
        if !nix::unistd::geteuid().is_root() {
            crate::common::skip("needs root to mount a fake syslog socket in a private namespace");
            return None;
        }
        if Command::new("unshare").arg("--version").output().is_err() {
            crate::common::skip("unshare is not installed");
            return None;
        }
        let dir = TempDir::new(name);
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("root/a.txt"), b"syslog\n").unwrap();
        std::fs::write(dir.path().join("outside.txt"), b"outside\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), dir.path().join("root/escape.txt"))
            .unwrap();
        let sock = dir.path().join("syslog.sock");
        let syslog = UnixDatagram::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        syslog.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Some(Fixture { dir, syslog })
    }

    /// Starts the server with `config` (listen and root added) and `args`,
    /// with the fake socket mounted at /run/syslog in its mount namespace.
    fn spawn(&self, config: &str, args: &[&str]) -> Child {
        let mount = format!(
            "touch /run/syslog && mount --bind {} /run/syslog",
            shell_quote(&self.dir.path().join("syslog.sock"))
        );
        self.spawn_with(config, args, &mount)
    }

    /// Starts the server as `spawn` does, but where no syslog socket can be
    /// reached: /run is empty, and a real /dev/log is covered by /dev/null.
    fn spawn_without_syslog(&self, config: &str, args: &[&str]) -> Child {
        self.spawn_with(config, args, "{ [ ! -S /dev/log ] || mount --bind /dev/null /dev/log; }")
    }

    fn spawn_with(&self, config: &str, args: &[&str], mount: &str) -> Child {
        let root = self.dir.path().join("root");
        let conf = self.dir.path().join("forkhttpd.toml");
        let text =
            format!("listen = [\"127.0.0.1:0\"]\nroot = {}\n{config}\n", toml_str(&root.to_string_lossy()));
        std::fs::write(&conf, text).unwrap();
        let script = format!(
            "mount -t tmpfs forkhttpd-test /run && {mount} && exec {} --config {} {}",
            shell_quote(Path::new(env!("CARGO_BIN_EXE_forkhttpd"))),
            shell_quote(&conf),
            args.join(" ")
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start unshare")
    }

    /// Syslog datagrams received until `want` matches one or `timeout`.
    fn wait_for(
        &self,
        got: &mut Vec<String>,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < timeout {
            if let Some(m) = got.iter().find(|m| want(m)) {
                return Some(m.clone());
            }
            if let Ok(n) = self.syslog.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got.iter().find(|m| want(m)).cloned()
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}

/// Reads the child's stderr until a `listening on` line; returns the address
/// and every line read.
fn read_address(child: &mut Child) -> (std::net::SocketAddr, Vec<String>) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end().to_string();
        lines.push(line.clone());
        if let Some(addr) = parse_listening_line(&line) {
            std::thread::spawn(move || {
                let mut sink = String::new();
                while stderr.read_line(&mut sink).unwrap_or(0) > 0 {
                    sink.clear();
                }
            });
            return (addr, lines);
        }
    }
    panic!("no listening line; stderr: {lines:?}");
}

/// Stops the server with `pid` when dropped, even when a test fails:
/// SIGTERM, then SIGKILL if it is still there after 10 s.
struct Stopper {
    pid: u32,
    child: Option<Child>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        let gone = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
        send_signal(self.pid, "TERM");
        let stopped = match self.child.as_mut() {
            Some(c) => poll_until(Duration::from_secs(10), || c.try_wait().ok().flatten().is_some()),
            None => poll_until(Duration::from_secs(10), || gone(self.pid)),
        };
        if !stopped {
            send_signal(self.pid, "KILL");
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
    }
}

#[test]
fn foreground_daemon_messages_go_to_syslog_with_each_process_pid() {
    let Some(fx) = Fixture::new("syslog_foreground") else { return };
    let mut server = fx.spawn("error_log = \"syslog\"\naccess_log = \"off\"", &[]);
    let pid = server.id();
    let (addr, _) = read_address(&mut server);
    let _stopper = Stopper { pid, child: Some(server) };
    let mut got = Vec::new();
    let started = fx.wait_for(&mut got, Duration::from_secs(5), |m| m.contains("started"));
    let started = started.unwrap_or_else(|| panic!("no start line on syslog; got {got:?}"));
    assert!(started.starts_with(DAEMON_INFO), "start line not daemon.info: {started}");
    assert!(started.contains(&format!("forkhttpd[{pid}]: ")), "start line without ident[pid]: {started}");

    // A child's own message: a symlink out of the root is refused and logged
    // at warning level by the child, with the child's pid.
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/escape.txt", &["Connection: close"]);
    assert_eq!(c.read_response().status, 403);
    let refused = fx.wait_for(&mut got, Duration::from_secs(5), |m| m.contains("outside the document root"));
    let refused = refused.unwrap_or_else(|| panic!("no child warning on syslog; got {got:?}"));
    assert!(refused.starts_with(DAEMON_WARNING), "child message not daemon.warning: {refused}");
    let child_pid = crate::common::logged_pid(&refused).unwrap_or_else(|| panic!("no pid in {refused}"));
    assert_ne!(child_pid, pid, "the child's message carries the parent's pid: {refused}");
}

#[test]
fn daemonized_server_logs_to_syslog_and_access_log_can_go_there_too() {
    let Some(fx) = Fixture::new("syslog_daemon") else { return };
    let pid_file = fx.dir.path().join("forkhttpd.pid");
    let config = format!("pid_file = {}\naccess_log = \"syslog\"", toml_str(&pid_file.to_string_lossy()));
    let mut launcher = fx.spawn(&config, &["--daemon"]);
    let (addr, _) = read_address(&mut launcher);
    assert!(
        poll_until(Duration::from_secs(5), || launcher.try_wait().ok().flatten().is_some()),
        "the launching process did not exit"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let _stopper = Stopper { pid, child: None };
    let mut got = Vec::new();
    let started = fx.wait_for(&mut got, Duration::from_secs(5), |m| m.contains("started"));
    let started = started.unwrap_or_else(|| panic!("no start line on syslog after detaching; got {got:?}"));
    assert!(
        started.starts_with(DAEMON_INFO) && started.contains(&format!("forkhttpd[{pid}]: ")),
        "{started}"
    );
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/a.txt", &["Connection: close", "User-Agent: syslog-test"]);
    assert_eq!(c.read_response().status, 200);
    let access = fx.wait_for(&mut got, Duration::from_secs(5), |m| m.contains("\"GET /a.txt HTTP/1.1\" 200"));
    let access = access.unwrap_or_else(|| panic!("no access line on syslog; got {got:?}"));
    assert!(access.starts_with(DAEMON_INFO) && access.contains("\"syslog-test\""), "{access}");
}

/// A syslog receiver that never reads: its queue fills after a few
/// messages. The parent must not block on a full queue (it drops and
/// counts), and a child waits only a moment before dropping its line: the
/// server keeps serving, children exit, SIGTERM is answered at once. Once
/// the receiver reads again, the parent's next message is followed by the
/// count of those it dropped, and only the parent reports that count: a
/// child, which inherits the parent's connection at fork, counts its own.
#[test]
fn stalled_syslog_receiver_blocks_neither_parent_nor_children() {
    let Some(fx) = Fixture::new("syslog_stalled") else { return };
    let mut server = fx.spawn("error_log = \"syslog\"\naccess_log = \"syslog\"\nshutdown_grace = 1", &[]);
    let pid = server.id();
    let (addr, _) = read_address(&mut server);
    let mut stopper = Stopper { pid, child: Some(server) };
    // net.unix.max_dgram_qlen (10 by default) datagrams fill the queue;
    // twenty more lines are dropped.
    let qlen: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(10);
    for i in 0..qlen + 20 {
        let mut c = Conn::connect(addr);
        c.send_request("GET", "/a.txt", &["Connection: close"]);
        assert_eq!(c.read_response().status, 200, "request {i}");
    }
    assert!(
        poll_until(Duration::from_secs(5), || children_of(pid).is_empty()),
        "children still running 5 s after responding: they block on the full syslog queue: {:?}",
        children_of(pid)
    );
    // Each reload's messages are dropped by the parent, and counted.
    for _ in 0..5 {
        send_signal(pid, "HUP");
    }
    // The parent handles the signals pending when this connection arrives
    // before it accepts it (`Signals::poll`): once it is answered, every
    // reload is over, and none of their messages can reach the drain below.
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/a.txt", &["Connection: close"]);
    assert_eq!(c.read_response().status, 200, "the parent stopped serving after reloads");

    let mut buf = [0u8; 4096];
    let mut drained = Vec::new();
    while let Ok(n) = fx.syslog.recv(&mut buf) {
        drained.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let parent_tag = format!("forkhttpd[{pid}]: ");

    // A child's first message gets through, not followed by a count: the
    // child dropped nothing (the parent did).
    let mut c = Conn::connect(addr);
    c.send_request("GET", "/escape.txt", &["Connection: close"]);
    assert_eq!(c.read_response().status, 403);
    let mut got = Vec::new();
    let refused = fx.wait_for(&mut got, Duration::from_secs(5), |m| m.contains("outside the document root"));
    assert!(refused.is_some(), "no child warning on syslog; got {got:?}");
    assert!(poll_until(Duration::from_secs(5), || children_of(pid).is_empty()), "the 403's child still runs");

    // The parent's next message is followed by the count of those dropped.
    send_signal(pid, "USR1");
    let is_note = |m: &str| m.contains("syslog messages were dropped");
    let note = fx.wait_for(&mut got, Duration::from_secs(5), |m| is_note(m) && m.contains(&parent_tag));
    let late: Vec<&String> = drained.iter().chain(&got).filter(|m| m.contains("reload")).collect();
    assert!(
        late.is_empty(),
        "reload messages were sent after the queue had room again: the parent reloaded after it \
         accepted a connection made after the SIGHUPs (signals pending while a listener was ready \
         waited for the accept): {late:?}"
    );
    assert!(
        note.is_some(),
        "no count of dropped messages from the parent; got {got:?}; the drain read {drained:?}"
    );
    let foreign: Vec<&String> = got.iter().filter(|m| is_note(m) && !m.contains(&parent_tag)).collect();
    assert!(foreign.is_empty(), "a child reported the parent's dropped messages as its own: {foreign:?}");

    send_signal(pid, "TERM");
    let child = stopper.child.as_mut().unwrap();
    assert!(
        wait_child(child, Duration::from_secs(5)).is_some(),
        "the parent did not exit within 5 s of SIGTERM"
    );
}

/// `--daemon` where syslog cannot be reached (and no `error_log` file):
/// every later daemon message would be lost, so it refuses to detach.
#[test]
fn daemon_without_a_reachable_syslog_refuses_to_detach() {
    let Some(fx) = Fixture::new("syslog_unreachable_daemon") else { return };
    let pid_file = fx.dir.path().join("forkhttpd.pid");
    let config = format!("pid_file = {}\naccess_log = \"off\"", toml_str(&pid_file.to_string_lossy()));
    let mut launcher = fx.spawn_without_syslog(&config, &["--daemon"]);
    let status = wait_child(&mut launcher, Duration::from_secs(10));
    if status.is_none() {
        let _ = launcher.kill();
        let _ = launcher.wait();
        panic!("the launcher did not exit within 10 s");
    }
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(launcher.stderr.as_mut().unwrap(), &mut stderr);
    if let Ok(text) = std::fs::read_to_string(&pid_file)
        && let Ok(pid) = text.trim().parse::<u32>()
    {
        let _stopper = Stopper { pid, child: None };
        panic!("the server detached with no log target (pid {pid}); stderr:\n{stderr}");
    }
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "the launcher must fail (status {status:?}); stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("refusing to detach") && stderr.contains("syslog") && stderr.contains("error_log"),
        "the refusal should say why and what to do; stderr:\n{stderr}"
    );
}

/// Runs `fx`'s server as `spawn` would (with `args`, where syslog is
/// reachable or not) and returns its exit status and stderr.
fn run_to_exit(mut child: Child) -> (Option<std::process::ExitStatus>, String) {
    let status = wait_child(&mut child, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr);
    (status, stderr)
}

/// `--check-config` refuses what start-up refuses where syslog cannot be
/// reached: `access_log = "syslog"`, and with `--daemon` the default
/// `error_log` (syslog once detached); each says syslog is not reachable
/// and where it looked (not "cannot open log file /dev/log"). With the
/// fake syslog socket in place both pass.
#[test]
fn check_config_refuses_syslog_targets_start_up_cannot_reach() {
    let Some(fx) = Fixture::new("syslog_unreachable_check") else { return };
    let unreachable = ["syslog is not reachable", "/dev/log", "/var/run/syslog"];
    let cases: [(&str, &[&str], &str); 3] = [
        ("access_log = \"syslog\"", &["--check-config", "--no-bind"], "access_log = \"syslog\""),
        ("access_log = \"syslog\"", &[], "access_log = \"syslog\""),
        ("access_log = \"off\"", &["--check-config", "--no-bind", "--daemon"], "refusing to detach"),
    ];
    for (config, args, says) in cases {
        let (status, stderr) = run_to_exit(fx.spawn_without_syslog(config, args));
        let needles: Vec<&str> = unreachable.iter().copied().chain([says]).collect();
        assert!(
            status.is_some_and(|s| s.code() == Some(1))
                && needles.iter().all(|n| stderr.contains(n))
                && !stderr.contains("cannot open log file"),
            "{config} {args:?}: the check must fail saying {needles:?} (status {status:?}); stderr:\n{stderr}"
        );
        if args.is_empty() {
            continue;
        }
        let (status, stderr) = run_to_exit(fx.spawn(config, args));
        assert!(
            status.is_some_and(|s| s.success()),
            "{config} {args:?}: with syslog reachable the check passes (status {status:?}); stderr:\n{stderr}"
        );
    }
}
