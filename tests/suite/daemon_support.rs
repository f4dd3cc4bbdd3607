//! A launcher for the daemon-feature tests (`daemon`, `signals`, `systemd`).
//!
//! Unlike `common::TestServer` it lets a test choose the environment, extra
//! command-line arguments and the config file's full contents, rewrite the
//! config file while the server runs (for `SIGHUP`), wait for its exit status,
//! and clean up daemonized servers through their pid file.  Every wait is
//! bounded in time; every process started here (directly, or indirectly as a
//! daemon or a serving child) is SIGKILLed by pid on drop.

#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{Conn, Response, TempDir, children_of, parse_listening_line, toml_str};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_forkhttpd");
/// How long a server may take to report its listeners.
pub const STARTUP: Duration = Duration::from_secs(10);

/// Environment variables that would change the server's behaviour if the
/// test run itself happens to be under systemd.
const SYSTEMD_VARS: [&str; 6] =
    ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "INVOCATION_ID", "JOURNAL_STREAM"];

/// A `Command` for the binary with the systemd variables removed.
pub fn command() -> Command {
    let mut c = Command::new(BIN);
    for v in SYSTEMD_VARS {
        c.env_remove(v);
    }
    c.stdin(Stdio::null());
    c
}

/// Removes the systemd variables from any command (e.g. the python launcher).
pub fn scrub_env(c: &mut Command) {
    for v in SYSTEMD_VARS {
        c.env_remove(v);
    }
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
    /// `None` if it did not exit within the timeout (it was then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn describe(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdout and stderr captured) until it exits or `timeout`
/// passes (then it is SIGKILLed).  Output is whatever arrived by then.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let out = Lines::drain(child.stdout.take().unwrap());
    let err = Lines::drain(child.stderr.take().unwrap());
    let status = wait_child(&mut child, timeout);
    let elapsed = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The pipes may be held open by a grandchild (a daemon); never block on them.
    out.wait_eof(Duration::from_millis(500));
    err.wait_eof(Duration::from_millis(500));
    Output { status, stdout: out.text(), stderr: err.text(), elapsed }
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

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// Fields of `/proc/PID/stat` after the command name.
#[derive(Debug, Clone)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    pub tty_nr: i64,
}

pub fn proc_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn self_stat() -> Stat {
    parse_stat(&fs::read_to_string("/proc/self/stat").unwrap()).unwrap()
}

fn parse_stat(s: &str) -> Option<Stat> {
    let close = s.rfind(')')?;
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        tty_nr: f.get(4)?.parse().ok()?,
    })
}

/// Whether `pid` no longer runs (no such process, or a zombie).
pub fn is_gone(pid: u32) -> bool {
    match proc_stat(pid) {
        None => true,
        Some(st) => st.state == 'Z' || st.state == 'X',
    }
}

/// Polls until `pid` is gone; returns whether it went within `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    crate::common::poll_until(timeout, || is_gone(pid))
}

/// Whether `/proc/PID/cmdline` names the forkhttpd binary (guards against
/// killing a recycled pid).
pub fn is_forkhttpd(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| crate::common::contains(&c, b"forkhttpd"))
        .unwrap_or(false)
}

/// The numbers on a `/proc/PID/status` line such as `Uid:` or `Groups:`.
pub fn status_ids(pid: u32, key: &str) -> Option<Vec<u32>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line[key.len()..].split_whitespace().filter_map(|x| x.parse().ok()).collect())
}

/// `(uid, gid)` of a user from `/etc/passwd`.
pub fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[0] == user { Some((f[2].parse().ok()?, f[3].parse().ok()?)) } else { None }
    })
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// SIGKILLs `pid` and its direct children, if `pid` is a forkhttpd process.
pub fn kill_tree(pid: u32) {
    if pid <= 1 || !is_forkhttpd(pid) {
        return;
    }
    let kids = children_of(pid);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    for k in kids {
        if is_forkhttpd(k.pid) {
            let _ = kill(Pid::from_raw(k.pid as i32), Signal::SIGKILL);
        }
    }
}

pub fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

// ---------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------

/// Builds a config file: `listen`, `root`, then raw extra lines.
pub fn config_text(listen: &[String], root: &Path, extra: &[String]) -> String {
    let quoted: Vec<String> = listen.iter().map(|a| toml_str(a)).collect();
    let mut text = format!("listen = [{}]\nroot = {}\n", quoted.join(", "), toml_str(root.to_str().unwrap()));
    for l in extra {
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// Writes `contents` to `path` atomically (write a temp file, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Creates a world-readable docroot directory with the given files.
pub fn make_root(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    for (name, data) in files {
        let p = dir.join(name);
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir.to_path_buf()
}

// ---------------------------------------------------------------------------
// A foreground server
// ---------------------------------------------------------------------------

pub struct Builder {
    name: String,
    listen: Vec<String>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    expect_listeners: Option<usize>,
}

impl Builder {
    /// The config file's `listen` list (default `["127.0.0.1:0"]`).
    pub fn listen(mut self, addrs: &[&str]) -> Builder {
        self.listen = addrs.iter().map(|s| s.to_string()).collect();
        self
    }

    /// A raw line for the config file.
    pub fn config(mut self, line: &str) -> Builder {
        self.extra.push(line.to_string());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Builder {
        self.env.push((k.into(), v.into()));
        self
    }

    /// An extra command-line argument (after `--config FILE`).
    pub fn arg(mut self, a: &str) -> Builder {
        self.args.push(a.into());
        self
    }

    /// A file in the docroot.
    pub fn file(mut self, name: &str, data: &[u8]) -> Builder {
        self.files.push((name.into(), data.to_vec()));
        self
    }

    /// How many `listening on` lines to wait for (default: the listen count).
    pub fn expect_listeners(mut self, n: usize) -> Builder {
        self.expect_listeners = Some(n);
        self
    }

    /// Writes the config and root, spawns the server, and returns without
    /// waiting for anything.
    pub fn spawn(self) -> Server {
        let dir = TempDir::new(&self.name);
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let root = dir.path().join("root");
        let files: Vec<(&str, &[u8])> = self.files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        make_root(&root, &files);
        let cfg = dir.path().join("forkhttpd.toml");
        fs::write(&cfg, config_text(&self.listen, &root, &self.extra)).unwrap();
        let mut cmd = command();
        cmd.arg("--config").arg(&cfg).args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn forkhttpd");
        let log = Lines::drain(child.stderr.take().unwrap());
        Server {
            pid: child.id(),
            child: Some(child),
            status: None,
            log,
            addrs: Vec::new(),
            dir,
            root,
            cfg,
            listen: self.listen,
            extra: self.extra,
        }
    }

    /// Spawns the server and waits for its `listening on` lines and its
    /// `started` line (only then are its signal handlers in place).
    pub fn start(self) -> Server {
        let n = self.expect_listeners.unwrap_or(self.listen.len());
        let mut s = self.spawn();
        s.addrs = s.wait_listeners(0, n);
        s.wait_started();
        s
    }
}

pub struct Server {
    pid: u32,
    child: Option<Child>,
    status: Option<ExitStatus>,
    pub log: Arc<Lines>,
    pub addrs: Vec<SocketAddr>,
    pub dir: TempDir,
    pub root: PathBuf,
    pub cfg: PathBuf,
    pub listen: Vec<String>,
    pub extra: Vec<String>,
}

impl Server {
    pub fn builder(name: &str) -> Builder {
        Builder {
            name: name.to_string(),
            listen: vec!["127.0.0.1:0".to_string()],
            extra: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
            files: Vec::new(),
            expect_listeners: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn stderr(&self) -> String {
        self.log.text()
    }

    /// Waits for `n` `listening on` lines at index >= `from`.
    pub fn wait_listeners(&mut self, from: usize, n: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + STARTUP;
        loop {
            let addrs: Vec<SocketAddr> =
                self.log.snapshot().iter().skip(from).filter_map(|l| parse_listening_line(l)).collect();
            if addrs.len() >= n {
                return addrs;
            }
            if !self.is_running() {
                thread::sleep(Duration::from_millis(100));
                panic!("forkhttpd exited during startup with {:?}; stderr:\n{}", self.status, self.stderr());
            }
            if Instant::now() >= deadline {
                panic!(
                    "forkhttpd did not report {n} 'listening on' line(s) within {STARTUP:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            self.log.wait_from(self.log.len(), 1, Duration::from_millis(50), |_| true);
        }
    }

    /// Waits for the start line (`... started ...`).
    pub fn wait_started(&mut self) {
        if self.log.wait_line(0, STARTUP, |l| l.contains("started")).is_none() {
            panic!(
                "no 'started' line within {STARTUP:?} (running: {}); stderr:\n{}",
                self.is_running(),
                self.stderr()
            );
        }
    }

    /// Proves the accept loop runs (so the signal handlers are installed):
    /// one request on a fresh connection gets any response.
    pub fn wait_serving(&self) {
        let mut c = Conn::connect(self.addr());
        c.send_request("HEAD", "/", &["Connection: close"]);
        let _ = c.read_head_response();
    }

    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            signal(self.pid, sig);
        }
    }

    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.as_mut().unwrap().try_wait().unwrap() {
            Some(st) => {
                self.status = Some(st);
                false
            }
            None => true,
        }
    }

    /// Waits for the server to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.status {
            return Some(st);
        }
        let st = wait_child(self.child.as_mut().unwrap(), timeout);
        self.status = st;
        st
    }

    /// Rewrites the config file (listen list, root, extra lines).
    pub fn rewrite_config(&self, listen: &[String], root: &Path, extra: &[String]) {
        write_atomic(&self.cfg, config_text(listen, root, extra).as_bytes());
    }

    /// The listen list naming the actually bound addresses (so that a reload
    /// keeps the same sockets).
    pub fn bound_listen(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.to_string()).collect()
    }

    /// `GET path` with `Connection: close` on a new connection to `addr`.
    pub fn get_at(&self, addr: SocketAddr, path: &str) -> Response {
        get(addr, path)
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr(), path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            kill_tree(self.pid);
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        } else {
            // The server is gone; any child it left behind is an orphan we
            // still own. (Already-reparented children cannot be found by
            // parent pid any more; the tests that care check them by pid.)
        }
    }
}

/// `GET path` with `Connection: close` on a new connection to `addr`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut c = Conn::connect(addr);
    c.send_request("GET", path, &["Connection: close"]);
    c.read_response()
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

// ---------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------

/// Connects to `dst` from source address `src` (bind before connect).
pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst))?;
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(crate::common::IO_TIMEOUT))?;
    s.set_write_timeout(Some(crate::common::IO_TIMEOUT))?;
    Ok(s)
}

/// Sends `req` on `s` and reads until the server closes (bounded by the
/// socket's read timeout); returns everything received.
pub fn request_to_close(s: &mut TcpStream, req: &[u8]) -> io::Result<Vec<u8>> {
    s.write_all(req)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 16384];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, "no close within 10 s"))
}

/// Whether a TCP connect to `addr` is refused right now.
pub fn connect_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
    }
}

/// Sends a GET for `path` on a raw stream and reads the response head;
/// returns (status, content-length, body bytes already read past the head).
pub fn start_download(s: &mut TcpStream, path: &str) -> (u16, u64, Vec<u8>) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send GET");
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = crate::common::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 65536, "response head too large");
        let n = s.read(&mut tmp).expect("read response head");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let len: u64 = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    (status, len, buf[head_end..].to_vec())
}
