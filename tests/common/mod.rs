//! Shared harness for the forkhttpd integration tests.
//!
//! Every test starts the real `forkhttpd` binary on loopback (port 0) with its
//! own temporary document root, and talks to it over real TCP sockets.  All
//! reads carry timeouts so that a hung server fails a test instead of hanging
//! the suite, and every loop is bounded in both iterations and time.

#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_forkhttpd");
/// Read/write timeout used on every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for the server to report its listening sockets.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on a response head we are willing to buffer.
const MAX_HEAD: usize = 64 * 1024;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------
// Temporary directories and files
// ---------------------------------------------------------------------------

/// A unique directory under `std::env::temp_dir()`, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let clean: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(60).collect();
        let path =
            std::env::temp_dir().join(format!("forkhttpd-test-{}-{}-{}", std::process::id(), n, clean));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks, so links pointing outside
        // the directory are removed, not their targets.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Name of the current test (the libtest thread name), used for temp dirs.
fn current_test_name() -> String {
    thread::current().name().unwrap_or("forkhttpd").to_string()
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Creates a world-readable docroot directory with the given files.
pub fn make_root(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    chmod(dir, 0o755);
    for (name, data) in files {
        let p = dir.join(name);
        fs::write(&p, data).unwrap();
        chmod(&p, 0o644);
    }
    dir.to_path_buf()
}

/// Quote a string as a TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds a config file: `listen` (left out when `listen` is empty, for a
/// command line that names the addresses), `root`, then raw extra lines.
pub fn config_text(listen: &[impl AsRef<str>], root: &Path, extra: &[impl AsRef<str>]) -> String {
    let mut text = String::new();
    if !listen.is_empty() {
        let quoted: Vec<String> = listen.iter().map(|a| toml_str(a.as_ref())).collect();
        text.push_str(&format!("listen = [{}]\n", quoted.join(", ")));
    }
    text.push_str(&format!("root = {}\n", toml_str(root.to_str().unwrap())));
    for line in extra {
        text.push_str(line.as_ref());
        text.push('\n');
    }
    text
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// Environment variables that would change the server's behaviour if the
/// test run itself happens to be under systemd (socket activation, notify
/// socket, syslog for daemon messages).
const SYSTEMD_VARS: [&str; 6] =
    ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "INVOCATION_ID", "JOURNAL_STREAM"];

/// The variable that marks every process a test starts with the test's
/// name (see `started_by_this_test`).
const TEST_MARK: &str = "FORKHTTPD_TEST";

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
/// the test is reported as skipped and should return).
pub fn missing_tool(name: &str) -> bool {
    let missing = !have_tool(name);
    if missing {
        eprintln!("skipped: {name} not found");
    }
    missing
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

// ---------------------------------------------------------------------------
// Captured output
// ---------------------------------------------------------------------------

/// Lines read from a pipe by a background thread.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<Vec<String>>,
    cond: Condvar,
    eof: Mutex<bool>,
}

impl Lines {
    /// Starts a thread that reads `r` line by line into a new `Lines`.
    pub fn drain(r: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let l2 = Arc::clone(&lines);
        thread::spawn(move || {
            let mut reader = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
                        l2.lines.lock().unwrap().push(line);
                        l2.cond.notify_all();
                    }
                }
            }
            *l2.eof.lock().unwrap() = true;
            l2.cond.notify_all();
        });
        lines
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    pub fn is_eof(&self) -> bool {
        *self.eof.lock().unwrap()
    }

    /// Waits until at least `n` lines with index >= `from` satisfy `pred`;
    /// returns those lines (fewer than `n` on timeout).
    pub fn wait_from(
        &self,
        from: usize,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lock().unwrap();
        loop {
            let matching: Vec<String> = guard.iter().skip(from).filter(|l| pred(l)).cloned().collect();
            let now = Instant::now();
            if matching.len() >= n || now >= deadline {
                return matching;
            }
            guard =
                self.cond.wait_timeout(guard, (deadline - now).min(Duration::from_millis(100))).unwrap().0;
        }
    }

    /// Waits for the first line (index >= `from`) satisfying `pred`.
    pub fn wait_line(&self, from: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_from(from, 1, timeout, pred).into_iter().next()
    }

    /// Waits up to `timeout` for the next line (or EOF).
    pub fn wait_more(&self, timeout: Duration) {
        let guard = self.lines.lock().unwrap();
        let _ = self.cond.wait_timeout(guard, timeout).unwrap();
    }

    /// Waits until the pipe reaches EOF; returns whether it did.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.eof.lock().unwrap();
        loop {
            if *guard {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self.cond.wait_timeout(guard, (deadline - now).min(Duration::from_millis(50))).unwrap().0;
        }
    }
}

/// The result of running a short-lived command to completion.
pub struct Output {
    pub pid: u32,
    /// `None` if it did not exit within the timeout (it was then killed).
    pub status: Option<ExitStatus>,
    /// The lines of stdout and of stderr, each joined with `\n`.
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Whether both pipes reached EOF, i.e. no process left behind (such as
    /// a daemon) still holds them.
    pub released: bool,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn describe(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdout and stderr captured) until it exits or `timeout`
/// passes (then it is SIGKILLed).  The pipes may be held open by a
/// grandchild (a daemon), so they are waited for at most `pipe_wait` each
/// after the exit; the output is whatever arrived by then.
pub fn run_waiting(cmd: &mut Command, timeout: Duration, pipe_wait: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let out = Lines::drain(child.stdout.take().unwrap());
    let err = Lines::drain(child.stderr.take().unwrap());
    let status = wait_child(&mut child, timeout);
    let elapsed = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let released = out.wait_eof(pipe_wait) & err.wait_eof(pipe_wait);
    Output { pid: child.id(), status, stdout: out.text(), stderr: err.text(), elapsed, released }
}

/// [`run_waiting`] with half a second for the pipes.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_waiting(cmd, timeout, Duration::from_millis(500))
}

/// Runs a helper tool to completion; panics if it does not finish within
/// `timeout`.
pub fn run_tool(cmd: &mut Command, timeout: Duration) -> Output {
    let out = run_waiting(cmd, timeout, timeout);
    assert!(out.status.is_some(), "{cmd:?} did not finish within {timeout:?}");
    out
}

/// A process started by a test with its stderr collected line by line;
/// SIGTERMed (then SIGKILLed) and reaped on drop.
pub struct Proc {
    child: Child,
    pub log: Arc<Lines>,
    /// The program and its arguments, for messages.
    what: String,
}

impl Proc {
    /// Spawns `cmd` with stdin and stdout on /dev/null.
    pub fn spawn(cmd: &mut Command) -> Proc {
        let what = format!("{:?} {:?}", cmd.get_program(), cmd.get_args().collect::<Vec<_>>());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let log = Lines::drain(child.stderr.take().unwrap());
        Proc { child, log, what }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A snapshot of all stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.snapshot()
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// SIGTERM and wait up to `timeout`; SIGKILL if it does not exit.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        terminate_child(&mut self.child, timeout)
    }

    /// SIGKILL (if still running) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` until `found` picks something out of the stderr
    /// lines.  Returns `Err(status)` if the process exits first, `Ok(None)`
    /// on timeout.
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        found: impl Fn(&[String]) -> Option<T>,
    ) -> Result<Option<T>, ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = found(&self.lines()) {
                return Ok(Some(t));
            }
            if let Some(st) = self.exited() {
                // Let the drain thread collect the last lines (without
                // blocking on a pipe that a process left behind still holds).
                self.log.wait_eof(Duration::from_secs(1));
                return found(&self.lines()).map(Some).ok_or(st);
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.log.wait_more(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for a line matching `pred`. Returns `Err(status)`
    /// if the process exits first, `Ok(None)` on timeout.
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, ExitStatus> {
        self.wait_for(timeout, |lines| lines.iter().find(|l| pred(l)).cloned())
    }

    /// Waits up to [`STARTUP_TIMEOUT`] for `n` `listening on` lines from
    /// index `from` on; panics (with the stderr so far) if the process exits
    /// first or the time runs out.
    pub fn wait_listeners(&mut self, from: usize, n: usize) -> Vec<SocketAddr> {
        let found = |lines: &[String]| {
            let addrs: Vec<SocketAddr> =
                lines.iter().skip(from).filter_map(|l| parse_listening_line(l)).collect();
            (addrs.len() >= n).then_some(addrs)
        };
        match self.wait_for(STARTUP_TIMEOUT, found) {
            Ok(Some(addrs)) => addrs,
            Err(status) => {
                panic!("{} exited during startup with {status}; stderr:\n{}", self.what, self.log.text())
            }
            Ok(None) => panic!(
                "{} did not report {n} 'listening on' line(s) within {STARTUP_TIMEOUT:?}; stderr:\n{}",
                self.what,
                self.log.text()
            ),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

pub struct Builder {
    name: String,
    config: Vec<String>,
    cli_listen: Vec<String>,
    config_listen: Option<Vec<String>>,
    use_config: bool,
    dirs: Vec<String>,
    proxy_listen: Vec<String>,
}

impl Builder {
    /// Replace the config file's `listen` list (default `["127.0.0.1:0"]`).
    pub fn config_listen(mut self, addrs: &[&str]) -> Builder {
        self.config_listen = Some(addrs.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Add a raw line to the generated TOML config file.
    pub fn config(mut self, line: &str) -> Builder {
        self.config.push(line.to_string());
        self
    }

    /// Set the config file's `proxy_listen` list; its listeners come after
    /// the plain ones in `addrs()`.
    pub fn proxy_listen(mut self, addrs: &[&str]) -> Builder {
        self.proxy_listen = addrs.iter().map(|s| s.to_string()).collect();
        let quoted: Vec<String> = self.proxy_listen.iter().map(|a| toml_str(a)).collect();
        self.config.push(format!("proxy_listen = [{}]", quoted.join(", ")));
        self
    }

    /// Pass `--listen ADDR` on the command line.  When any CLI listen address
    /// is given, the generated config file has no `listen` key.
    pub fn listen(mut self, addr: &str) -> Builder {
        self.cli_listen.push(addr.to_string());
        self
    }

    /// Run without `--config`: only `--root` and `--listen` on the command
    /// line (requires at least one `listen`).
    pub fn no_config_file(mut self) -> Builder {
        self.use_config = false;
        self
    }

    /// Create a directory (and parents) relative to the temp base before
    /// the server starts (such as a `[[site]]` root the config names).
    pub fn dir(mut self, rel: &str) -> Builder {
        self.dirs.push(rel.to_string());
        self
    }

    pub fn name(mut self, name: &str) -> Builder {
        self.name = name.to_string();
        self
    }

    pub fn start(self) -> TestServer {
        let dir = TempDir::new(&self.name);
        let root = dir.path().join("root");
        fs::create_dir_all(&root).expect("create docroot");
        for d in &self.dirs {
            fs::create_dir_all(dir.path().join(d)).expect("create directory");
        }

        let mut args: Vec<String> = Vec::new();
        let mut expected_listeners = self.cli_listen.len().max(1);
        if self.use_config {
            let mut listen = Vec::new();
            if self.cli_listen.is_empty() {
                listen = self.config_listen.clone().unwrap_or_else(|| vec!["127.0.0.1:0".to_string()]);
                expected_listeners = listen.len();
            }
            let cfg = dir.path().join("forkhttpd.toml");
            fs::write(&cfg, config_text(&listen, &root, &self.config)).expect("write config");
            args.push("--config".into());
            args.push(cfg.to_str().unwrap().into());
        } else {
            assert!(!self.cli_listen.is_empty(), "no_config_file() needs at least one listen()");
            assert!(self.config.is_empty(), "config() lines given but no_config_file() requested");
            args.push("--root".into());
            args.push(root.to_str().unwrap().into());
        }
        for l in &self.cli_listen {
            args.push("--listen".into());
            args.push(l.clone());
        }

        let mut proc = Proc::spawn(server_command().args(&args).current_dir(dir.path()));
        let addrs = proc.wait_listeners(0, expected_listeners + self.proxy_listen.len());
        TestServer { proc, addrs, dir, root }
    }
}

pub struct TestServer {
    proc: Proc,
    addrs: Vec<SocketAddr>,
    dir: TempDir,
    root: PathBuf,
}

impl TestServer {
    pub fn builder() -> Builder {
        Builder {
            name: current_test_name(),
            config: Vec::new(),
            cli_listen: Vec::new(),
            config_listen: None,
            use_config: true,
            dirs: Vec::new(),
            proxy_listen: Vec::new(),
        }
    }

    /// Start a server with the default test configuration.
    pub fn start() -> TestServer {
        TestServer::builder().start()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The document root (`<tmp>/root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The temp directory containing the docroot (`<tmp>`).
    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file relative to the docroot, creating parent directories.
    pub fn write_file(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let p = self.root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, contents).unwrap();
        p
    }

    /// Create a directory (and parents) relative to the docroot.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// Create a symlink at `rel` (relative to the docroot) pointing at `target`.
    pub fn symlink(&self, target: impl AsRef<Path>, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        std::os::unix::fs::symlink(target.as_ref(), &p).unwrap();
        p
    }

    /// A snapshot of all stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.proc.lines()
    }

    /// Wait (up to `timeout`) until at least `n` stderr lines satisfy `pred`;
    /// returns the matching lines (possibly fewer than `n` on timeout).
    pub fn wait_for_lines(&self, n: usize, timeout: Duration, pred: impl Fn(&str) -> bool) -> Vec<String> {
        self.proc.log.wait_from(0, n, timeout, pred)
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr())
    }

    /// One `GET path` on a fresh connection with `Connection: close`.
    pub fn get(&self, path: &str) -> Response {
        get_close(self.addr(), path)
    }

    /// Direct children of the server process (pid, state).
    pub fn children(&self) -> Vec<ProcInfo> {
        children_of(self.pid())
    }

    /// Is the server process still running (not exited)?
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Send a signal (such as `"HUP"`) to the server process.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }

    /// SIGTERM the server and wait up to `timeout` for it to exit.
    /// Returns `None` if it did not exit in time (it is then SIGKILLed and
    /// reaped).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.stop(timeout)
    }
}

/// Parse a `... listening on ADDR` line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let idx = line.find("listening on ")?;
    let rest = &line[idx + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------
// /proc helpers
// ---------------------------------------------------------------------------

/// Fields of `/proc/PID/stat` after the command name.
#[derive(Debug, Clone)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    pub tty_nr: i64,
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
}

pub fn proc_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn self_stat() -> Stat {
    parse_stat(&fs::read_to_string("/proc/self/stat").unwrap()).unwrap()
}

fn parse_stat(s: &str) -> Option<Stat> {
    let close = s.rfind(')')?;
    // f[0] is field 3 of proc_pid_stat(5) (state).
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        tty_nr: f.get(4)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}

#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub state: char,
}

/// What process `pid` is doing, for a failure message: its state, the
/// kernel function it sleeps in, the system call it is in, and its pending
/// and blocked signals (so a parent stuck outside its wait, or with a
/// signal pending, shows as such).
pub fn process_report(pid: u32) -> String {
    let read = |what: &str| fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let status = read("status");
    let field = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map_or("?", str::trim).to_string()
    };
    let syscall = read("syscall");
    format!(
        "pid {pid}: state {}, wchan {}, syscall {}, SigPnd {}, ShdPnd {}, SigBlk {}",
        field("State"),
        read("wchan"),
        syscall.split_whitespace().next().unwrap_or("?"),
        field("SigPnd"),
        field("ShdPnd"),
        field("SigBlk")
    )
}

/// The number of connections waiting in the accept queue of the IPv4 TCP
/// listener on `addr` (the `rx_queue` of its `/proc/net/tcp` line), if
/// there is such a listener in this network namespace.
pub fn accept_queue(addr: SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else { return None };
    let local = format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port());
    fs::read_to_string("/proc/net/tcp").ok()?.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // f[1] local address, f[3] state (0A: LISTEN), f[4] tx_queue:rx_queue.
        if f.get(1) != Some(&local.as_str()) || f.get(3) != Some(&"0A") {
            return None;
        }
        u32::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()
    })
}

/// All processes whose parent is `ppid`, read from `/proc/<pid>/stat`.
pub fn children_of(ppid: u32) -> Vec<ProcInfo> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
        .filter(|(_, st)| st.ppid == ppid)
        .map(|(pid, st)| ProcInfo { pid, state: st.state })
        .collect()
}

/// Polls the children of `ppid` until `done` accepts them or `timeout`
/// passes; returns the last list read.
pub fn wait_children(ppid: u32, timeout: Duration, done: impl Fn(&[ProcInfo]) -> bool) -> Vec<ProcInfo> {
    let mut kids = Vec::new();
    poll_until(timeout, || {
        kids = children_of(ppid);
        done(&kids)
    });
    kids
}

/// The numbers on the line starting with `key` (such as `Uid:` or
/// `Groups:`) of a `/proc/PID/status` text.
pub fn status_line_ids(status: &str, key: &str) -> Option<Vec<u32>> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    Some(line[key.len()..].split_whitespace().filter_map(|x| x.parse().ok()).collect())
}

/// The numbers on a `/proc/PID/status` line such as `Uid:` or `Groups:`.
pub fn status_ids(pid: u32, key: &str) -> Option<Vec<u32>> {
    status_line_ids(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?, key)
}

// ---------------------------------------------------------------------------
// Raw HTTP client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header names are lower-cased; order preserved.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).count()
    }

    /// Whether a `Connection` header lists the given token.
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that buffers received bytes, so pipelined responses
/// can be read one at a time.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Every byte ever received on this connection.
    received: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn::from_stream(
            TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}")),
        )
    }

    /// Wraps an already connected stream (setting the usual timeouts).
    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        Conn { stream, buf: Vec::new(), received: Vec::new() }
    }

    /// The stream, and the bytes received on it but not consumed yet (such as
    /// the start of a body after [`Conn::read_head_response`]).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Write all bytes; panics on error.
    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap_or_else(|e| panic!("write to server: {e}"));
    }

    /// Write all bytes, ignoring errors (the server may already have closed).
    pub fn send_lossy(&mut self, data: &[u8]) {
        let _ = self.stream.write_all(data);
    }

    /// Send `METHOD path HTTP/1.1` with Host and the given extra header lines
    /// (each without CRLF).
    pub fn send_request(&mut self, method: &str, path: &str, extra: &[&str]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for h in extra {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send(req.as_bytes());
    }

    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Read more bytes into the buffer. Ok(0) means EOF (or reset).
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16384];
        match self.stream.read_retrying(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                self.received.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Read one response to a GET-like request (body per Content-Length).
    pub fn read_response(&mut self) -> Response {
        self.read_response_for(false)
    }

    /// Read one response to a HEAD request (no body regardless of headers).
    pub fn read_head_response(&mut self) -> Response {
        self.read_response_for(true)
    }

    pub fn read_response_for(&mut self, head_request: bool) -> Response {
        match self.try_read_response(head_request) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("server closed the connection without sending a response"),
            Err(e) => panic!(
                "reading response failed: {e}; received so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Read one response, or `None` if the connection was closed before any
    /// byte of a response arrived.
    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Option<Response>> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::other("response head too large"));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a response head",
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line: {status_line:?}")))?;
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::other(format!("bad status line: {status_line:?}")));
        }
        let reason = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        for line in lines {
            let (n, v) =
                line.split_once(':').ok_or_else(|| io::Error::other(format!("bad header line: {line:?}")))?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        self.buf.drain(..head_end);
        let mut resp = Response { version, status, reason, headers, body: Vec::new() };

        let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            return Ok(Some(resp));
        }
        if resp.header("transfer-encoding").is_some() {
            return Err(io::Error::other(
                "unexpected Transfer-Encoding in response (server never sends chunked)",
            ));
        }
        match resp.header("content-length") {
            Some(cl) => {
                let len: usize =
                    cl.parse().map_err(|_| io::Error::other(format!("bad Content-Length {cl:?}")))?;
                while self.buf.len() < len {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("connection closed after {} of {len} body bytes", self.buf.len()),
                        ));
                    }
                }
                resp.body = self.buf.drain(..len).collect();
            }
            None => {
                // Delimited by close.
                while self.fill()? > 0 {}
                resp.body = std::mem::take(&mut self.buf);
            }
        }
        Ok(Some(resp))
    }

    /// Assert that the server closes the connection without sending any
    /// further bytes (EOF or reset within IO_TIMEOUT).
    pub fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected extra bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match self.fill() {
            Ok(0) => {}
            Ok(_) => panic!(
                "expected the server to close, but got more bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!("expected the server to close the connection, but read failed: {e}"),
        }
    }

    /// Assert the connection is still open and no unsolicited bytes arrive
    /// within `wait`.
    pub fn expect_open_and_quiet(&mut self, wait: Duration) {
        assert!(self.buf.is_empty(), "unexpected extra bytes: {:?}", String::from_utf8_lossy(&self.buf));
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let r = self.fill();
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        match r {
            Ok(0) => panic!("server closed the connection unexpectedly"),
            Ok(_) => panic!("unexpected extra bytes from server: {:?}", String::from_utf8_lossy(&self.buf)),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Read until EOF/reset or until `max` elapses. Returns the bytes read
    /// (including any buffered ones) and `Some(elapsed)` if the connection was
    /// closed, `None` if `max` elapsed first.
    pub fn read_until_close(&mut self, max: Duration) -> (Vec<u8>, Option<Duration>) {
        let start = Instant::now();
        loop {
            let now = Instant::now();
            let left = (start + max).saturating_duration_since(now);
            if left.is_zero() {
                return (std::mem::take(&mut self.buf), None);
            }
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.fill() {
                Ok(0) => {
                    self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    return (std::mem::take(&mut self.buf), Some(start.elapsed()));
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Send `data` and read until the server closes; see [`send_raw`].
    /// Returns every byte received on the connection.
    pub fn send_until_close(&mut self, data: &[u8]) -> Vec<u8> {
        self.send_lossy(data);
        let (bytes, closed) = self.read_until_close(IO_TIMEOUT);
        assert!(
            closed.is_some(),
            "server did not close the connection within {IO_TIMEOUT:?} after {:?}; got {:?}",
            String::from_utf8_lossy(&data[..data.len().min(200)]),
            String::from_utf8_lossy(&bytes)
        );
        self.received.clone()
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Connect, send `data`, and read until the server closes (EOF or reset).
/// Panics if the server does not close within IO_TIMEOUT.  Write errors are
/// ignored: the server may legitimately close before reading everything.
pub fn send_raw(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    Conn::connect(addr).send_until_close(data)
}

/// `GET path` with `Connection: close` on a new connection to `addr`.
pub fn get_close(addr: SocketAddr, path: &str) -> Response {
    let mut c = Conn::connect(addr);
    c.send_request("GET", path, &["Connection: close"]);
    c.read_response()
}

/// `GET path` on a new connection to `addr`: the answer must be a 200 that
/// keeps the connection open.  Returns the connection and the response.
pub fn get_keepalive(addr: SocketAddr, path: &str) -> (Conn, Response) {
    let mut c = Conn::connect(addr);
    c.send_request("GET", path, &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    assert!(!r.connection_has("close"), "expected keep-alive after GET {path}: {r:?}");
    (c, r)
}

/// Assert the properties every error page must have.
pub fn assert_error_page(resp: &Response, status: u16) {
    assert_eq!(
        resp.status,
        status,
        "expected status {status}, got {} {} (headers {:?}, body {:?})",
        resp.status,
        resp.reason,
        resp.headers,
        resp.body_str()
    );
    assert_eq!(resp.header("content-type"), Some("text/html; charset=utf-8"), "error {status} Content-Type");
    let cl: usize = resp
        .header("content-length")
        .unwrap_or_else(|| panic!("error {status} has no Content-Length"))
        .parse()
        .expect("numeric Content-Length");
    assert_eq!(cl, resp.body.len(), "error {status} Content-Length vs body");
    assert!(!resp.body.is_empty(), "error {status} has an empty body");
    let body = resp.body_str().to_ascii_lowercase();
    assert!(
        body.contains("<html") || body.contains("<!doctype html"),
        "error {status} body is not HTML: {body:?}"
    );
}

/// Send one request on a fresh connection (write errors ignored: the server
/// may answer before reading it all); expect `status` as an error page and,
/// if it says `Connection: close`, an actual close.
pub fn expect_error(addr: SocketAddr, request: &[u8], status: u16) -> Response {
    let mut c = Conn::connect(addr);
    c.send_lossy(request);
    let resp = c.read_response();
    assert_error_page(&resp, status);
    if resp.connection_has("close") {
        c.expect_closed();
    }
    resp
}

/// [`expect_error`], and the error must carry `Connection: close`.
pub fn expect_error_and_close(addr: SocketAddr, request: &[u8], status: u16) -> Response {
    let resp = expect_error(addr, request, status);
    assert!(
        resp.connection_has("close"),
        "error {status} for {:?} must carry Connection: close; headers {:?}",
        String::from_utf8_lossy(&request[..request.len().min(120)]),
        resp.headers
    );
    resp
}

// ---------------------------------------------------------------------------
// Data helpers
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write a large file of `len` bytes (pattern data) at `path`.
pub fn write_big_file(path: &Path, len: usize) {
    let chunk = pseudo_random_bytes(1 << 20, 0xB16);
    let mut f = fs::File::create(path).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

// ---------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // day 0 = 1970-01-01 (Thu)

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Format seconds since the epoch as an IMF-fixdate.
pub fn format_http_date(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parse a strict IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split(' ').collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let wd = parts[0].strip_suffix(',')?;
    if parts[1].len() != 2 || parts[3].len() != 4 || parts[4].len() != 8 {
        return None;
    }
    let d: u32 = parts[1].parse().ok()?;
    let m = MONTHS.iter().position(|x| *x == parts[2])? as u32 + 1;
    let y: i64 = parts[3].parse().ok()?;
    let t: Vec<&str> = parts[4].split(':').collect();
    if t.len() != 3 || t.iter().any(|x| x.len() != 2) {
        return None;
    }
    let (hh, mm, ss): (i64, i64, i64) = (t[0].parse().ok()?, t[1].parse().ok()?, t[2].parse().ok()?);
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if WEEKDAYS[days.rem_euclid(7) as usize] != wd {
        return None;
    }
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

// ---------------------------------------------------------------------------
// Combined Log Format
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ClfLine {
    pub host: String,
    pub ident: String,
    pub user: String,
    pub time: String,
    pub request: String,
    pub status: u16,
    pub bytes: String,
    pub referer: String,
    pub user_agent: String,
}

fn take_token(s: &str) -> Option<(&str, &str)> {
    let i = s.find(' ')?;
    Some((&s[..i], &s[i + 1..]))
}

/// Parse a quoted string with backslash escapes; returns (content, rest).
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((out, &s[i + 1..]));
        } else {
            out.push(c);
        }
    }
    None
}

/// Parse a complete Combined Log Format line (the whole line must match).
pub fn parse_clf(line: &str) -> Option<ClfLine> {
    let (host, rest) = take_token(line)?;
    let (ident, rest) = take_token(rest)?;
    let (user, rest) = take_token(rest)?;
    let rest = rest.strip_prefix('[')?;
    let close = rest.find(']')?;
    let time = &rest[..close];
    let rest = rest[close + 1..].strip_prefix(' ')?;
    let (request, rest) = take_quoted(rest)?;
    let rest = rest.strip_prefix(' ')?;
    let (status, rest) = take_token(rest)?;
    let (bytes, rest) = take_token(rest)?;
    let (referer, rest) = take_quoted(rest)?;
    let rest = rest.strip_prefix(' ')?;
    let (user_agent, rest) = take_quoted(rest)?;
    if !rest.is_empty() || host.is_empty() {
        return None;
    }
    let status: u16 = status.parse().ok()?;
    if !(100..=599).contains(&status) {
        return None;
    }
    if bytes != "-" && bytes.parse::<u64>().is_err() {
        return None;
    }
    parse_clf_time(time)?;
    Some(ClfLine {
        host: host.into(),
        ident: ident.into(),
        user: user.into(),
        time: time.into(),
        request,
        status,
        bytes: bytes.into(),
        referer,
        user_agent,
    })
}

/// Parse `26/Nov/2026:17:39:36 +0000` into seconds since the epoch (UTC).
pub fn parse_clf_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let d: u32 = t.get(0..2)?.parse().ok()?;
    let m = MONTHS.iter().position(|x| *x == t.get(3..6).unwrap_or(""))? as u32 + 1;
    let y: i64 = t.get(7..11)?.parse().ok()?;
    let hms: Vec<&str> = t.get(12..20)?.split(':').collect();
    if hms.len() != 3 || hms.iter().any(|x| x.len() != 2) {
        return None;
    }
    let (hh, mm, ss): (i64, i64, i64) = (hms[0].parse().ok()?, hms[1].parse().ok()?, hms[2].parse().ok()?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let oh: i64 = t.get(22..24)?.parse().ok()?;
    let om: i64 = t.get(24..26)?.parse().ok()?;
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 || om > 59 {
        return None;
    }
    let local = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
    Some(local - sign * (oh * 3600 + om * 60))
}

/// `read` that takes `EINTR` for what it is, a read to try again: a socket
/// read with a timeout (`SO_RCVTIMEO`) fails with it, handler or not, when
/// the process is stopped and resumed or frozen and thawed, and the
/// machine's own tooling has done that to a running suite. The timeout
/// starts again after such a retry.
pub trait ReadRetrying {
    /// Reads as [`Read::read`] does, retrying while interrupted.
    fn read_retrying(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl<R: Read> ReadRetrying for R {
    fn read_retrying(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// The first line of the file at `path` that contains `needle`, if the
/// file can be read and has one.
pub fn line_containing(path: &Path, needle: &str) -> Option<String> {
    fs::read_to_string(path).ok()?.lines().find(|l| l.contains(needle)).map(str::to_string)
}

/// Poll `cond` every 50 ms until it returns true or `timeout` elapses.
/// Returns whether it became true.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// After reading an error response on `c`: if it says `Connection: close`
/// the server must actually close; otherwise the connection must still be
/// usable for a follow-up `GET probe_path` (which must return 200).
pub fn assert_close_consistent(c: &mut Conn, resp: &Response, probe_path: &str) {
    if resp.connection_has("close") {
        c.expect_closed();
    } else {
        c.send_request("GET", probe_path, &["Connection: close"]);
        let next = c.read_response();
        assert_eq!(
            next.status, 200,
            "after a {} without Connection: close the connection should stay usable",
            resp.status
        );
    }
}
