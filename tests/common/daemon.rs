//! A second server launcher, for the daemon-feature tests (`daemon`,
//! `logfiles`, `reload`, `signals`, `startup`, `systemd`), with the helpers
//! those tests share.
//!
//! Unlike `common::TestServer` it lets a test choose the environment, extra
//! command-line arguments and the config file's full contents, rewrite the
//! config file while the server runs (for `SIGHUP`), wait for its exit status,
//! and clean up daemonized servers through their pid file.  Its `listen` is
//! the config file's list (`TestServer`'s is `--listen`), its `start` also
//! waits for the `started` line, and its `spawn` waits for nothing.  Every
//! wait is bounded in time; every process started here (directly, or
//! indirectly as a daemon or a serving child) is SIGKILLed by pid on drop,
//! where `TestServer` SIGTERMs its server first.  Its names clash with
//! `TestServer`'s, so it is not re-exported: tests name it
//! `crate::common::daemon`.

#![allow(dead_code)]

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{
    Conn, Lines, Proc, STARTUP_TIMEOUT, TempDir, children_of, chmod, config_text, make_root, proc_stat,
    send_signal, server_command, started_by_this_test,
};

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// Whether `pid` no longer runs (no such process, or a zombie).
pub fn is_gone(pid: u32) -> bool {
    match proc_stat(pid) {
        None => true,
        Some(st) => st.state == 'Z' || st.state == 'X',
    }
}

/// Polls until `pid` is gone; returns whether it went within `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    super::poll_until(timeout, || is_gone(pid))
}

/// Whether `/proc/PID/cmdline` names the forkhttpd binary (guards against
/// killing a recycled pid).
pub fn is_forkhttpd(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).map(|c| super::contains(&c, b"forkhttpd")).unwrap_or(false)
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

// ---------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------

/// Writes `contents` to `path` atomically (write a temp file, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
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
        chmod(dir.path(), 0o755);
        let root = dir.path().join("root");
        let files: Vec<(&str, &[u8])> = self.files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        make_root(&root, &files);
        let cfg = dir.path().join("forkhttpd.toml");
        fs::write(&cfg, config_text(&self.listen, &root, &self.extra)).unwrap();
        let mut cmd = server_command();
        cmd.arg("--config").arg(&cfg).args(&self.args).current_dir(dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(&mut cmd);
        Server {
            log: Arc::clone(&proc.log),
            proc,
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
    proc: Proc,
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
        self.proc.pid()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn stderr(&self) -> String {
        self.log.text()
    }

    /// Waits for `n` `listening on` lines at index >= `from`.
    pub fn wait_listeners(&mut self, from: usize, n: usize) -> Vec<SocketAddr> {
        self.proc.wait_listeners(from, n)
    }

    /// Waits for the start line (`... started ...`).
    pub fn wait_started(&mut self) {
        if self.log.wait_line(0, STARTUP_TIMEOUT, |l| l.contains("started")).is_none() {
            panic!(
                "no 'started' line within {STARTUP_TIMEOUT:?} (running: {}); stderr:\n{}",
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

    /// Sends `sig` to the server unless it has exited.
    pub fn signal(&mut self, sig: Signal) {
        if self.is_running() {
            signal(self.pid(), sig);
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Waits for the server to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(timeout)
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

    pub fn get(&self, path: &str) -> super::Response {
        super::get_close(self.addr(), path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // (A child the server left behind after exiting has been reparented
        // and cannot be found by parent pid; the tests that care check such
        // children by pid.)
        if self.is_running() {
            kill_tree(self.pid());
            self.proc.kill();
        }
    }
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
pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<Conn> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst))?;
    Ok(Conn::from_stream(TcpStream::from(fd)))
}

/// Whether a TCP connect to `addr` is refused right now.
pub fn connect_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
    }
}
