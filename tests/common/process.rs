//! Starting, marking, signalling and reaping the processes a test starts (daemons too).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{BIN, children_of, contains, is_forkhttpd, skip};

/// Environment variables that would change the server's behaviour if the
/// test run itself happens to be under systemd (socket activation, notify
/// socket, syslog for daemon messages).
const SYSTEMD_VARS: [&str; 6] =
    ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "INVOCATION_ID", "JOURNAL_STREAM"];

/// The variable that marks every process a test starts with the test's
/// name (see `started_by_this_test`).
const TEST_MARK: &str = "FORKHTTPD_TEST";

/// Name of the current test (the libtest thread name), used for temp dirs.
pub(super) fn current_test_name() -> String {
    thread::current().name().unwrap_or("forkhttpd").to_string()
}

/// Removes the systemd variables from any command (e.g. a launcher that
/// execs the server), and marks it as this test's.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for v in SYSTEMD_VARS {
        cmd.env_remove(v);
    }
    cmd.env(TEST_MARK, current_test_name())
}

/// Whether `pid` is a process this test started (or one of their
/// children): its environment holds this test's mark. A pid read from a
/// pid file or a log may name a process long gone, and with the suite
/// forking thousands of processes, pids wrap (pid_max 32768) and that pid
/// may now be another test's server or child: killing it by pid alone
/// once reset another test's connection.
pub fn started_by_this_test(pid: u32) -> bool {
    let mark = format!("{TEST_MARK}={}\0", current_test_name());
    fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| contains(&env, mark.as_bytes()))
}

/// A `Command` for the binary under test, with the systemd variables removed
/// and stdin from /dev/null.
pub fn server_command() -> Command {
    let mut c = Command::new(BIN);
    scrub_env(&mut c);
    c.stdin(Stdio::null());
    c
}

/// Sends the signal named `sig` (such as `"TERM"`) to `pid`; errors (such as
/// the process being gone already) are ignored.
pub fn send_signal(pid: u32, sig: &str) {
    let signal: Signal = format!("SIG{sig}").parse().unwrap_or_else(|_| panic!("unknown signal {sig:?}"));
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether an executable named `name` is on PATH (or in the sbin dirs).
pub fn have_tool(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .any(|p| fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// For tests that need an external tool: whether `name` is missing (then
/// the test is reported as skipped, see `skip`, and should return).
pub fn missing_tool(name: &str) -> bool {
    let missing = !have_tool(name);
    if missing {
        skip(&format!("{name} not found"));
    }
    missing
}

/// For tests that look into the server's processes (their descriptors,
/// wait channel, or memory, as strace reads it): whether this test process
/// cannot (then the test is reported as skipped and should return). The
/// server makes itself non-dumpable, which closes all of that even to its
/// own account: it takes `CAP_SYS_PTRACE` (root has it). The skip goes
/// through `skip`, which fails it in CI.
pub fn cannot_inspect_server() -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
    let can = effective
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .is_some_and(|caps| caps >> CAP_SYS_PTRACE & 1 == 1);
    if can {
        return false;
    }
    skip("looking into the non-dumpable server's processes takes CAP_SYS_PTRACE, which this run lacks");
    true
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERMs `child` and waits up to `timeout` for it to exit.  Returns
/// `None` if it did not exit in time (it is then SIGKILLed and reaped).
pub fn terminate_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    if let Some(st) = child.try_wait().unwrap() {
        return Some(st);
    }
    send_signal(child.id(), "TERM");
    if let Some(st) = wait_child(child, timeout) {
        return Some(st);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `(uid, gid)` of a user from `/etc/passwd`.
pub fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == user { Some((f[2].parse().ok()?, f[3].parse().ok()?)) } else { None }
    })
}

/// SIGKILLs `pid` and its direct children, if `pid` is a forkhttpd process
/// this test started (not another test's that took a reused pid).
pub fn kill_tree(pid: u32) {
    if pid <= 1 || !is_forkhttpd(pid) || !started_by_this_test(pid) {
        return;
    }
    let kids = children_of(pid);
    send_signal(pid, "KILL");
    for k in kids {
        if is_forkhttpd(k.pid) && started_by_this_test(k.pid) {
            send_signal(k.pid, "KILL");
        }
    }
}

/// Sends `sig` to `pid`; panics if that fails.
pub fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// Kills, on drop, the daemon named by a pid file (and its children).
pub struct PidFileGuard {
    pub path: PathBuf,
    seen: Mutex<Vec<u32>>,
}

impl PidFileGuard {
    pub fn new(path: &Path) -> PidFileGuard {
        PidFileGuard { path: path.to_path_buf(), seen: Mutex::new(Vec::new()) }
    }

    /// Reads the pid file (remembering the pid for cleanup).
    pub fn read(&self) -> Option<(String, u32)> {
        let text = fs::read_to_string(&self.path).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        self.seen.lock().unwrap().push(pid);
        Some((text, pid))
    }
}

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        let _ = self.read();
        for pid in self.seen.lock().unwrap().iter() {
            kill_tree(*pid);
        }
    }
}
