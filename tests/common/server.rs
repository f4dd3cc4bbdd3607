//! The server under test: `TestServer` and its `Builder`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::process::current_test_name;
use super::{
    Conn, Lines, Proc, ProcInfo, Response, STARTUP_TIMEOUT, TempDir, children_of, chmod, config_text,
    get_close, kill_tree, make_root, server_command, signal, toml_str, write_atomic,
};

/// What to start: the config file's lines and listen list, command line,
/// environment, and docroot files.
pub struct Builder {
    name: String,
    config: Vec<String>,
    cli_listen: Vec<String>,
    config_listen: Option<Vec<String>>,
    use_config: bool,
    dirs: Vec<String>,
    proxy_listen: Vec<String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    expect_listeners: Option<usize>,
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

    /// Set an environment variable for the server.
    pub fn env(mut self, k: &str, v: &str) -> Builder {
        self.env.push((k.into(), v.into()));
        self
    }

    /// An extra command-line argument (after `--config FILE` or `--root`,
    /// and the `--listen` options).
    pub fn arg(mut self, a: &str) -> Builder {
        self.args.push(a.into());
        self
    }

    /// A file in the docroot, written before the server starts.
    pub fn file(mut self, name: &str, data: &[u8]) -> Builder {
        self.files.push((name.into(), data.to_vec()));
        self
    }

    /// How many `listening on` lines `start` waits for (default: one per
    /// listen address, plus the `proxy_listen` ones).
    pub fn expect_listeners(mut self, n: usize) -> Builder {
        self.expect_listeners = Some(n);
        self
    }

    /// The config file's `listen` list: none when the command line names
    /// the addresses.
    fn written_listen(&self) -> Vec<String> {
        if self.cli_listen.is_empty() {
            self.config_listen.clone().unwrap_or_else(|| vec!["127.0.0.1:0".to_string()])
        } else {
            Vec::new()
        }
    }

    /// How many `listening on` lines the server should print.
    fn listener_count(&self) -> usize {
        let plain = if self.use_config && self.cli_listen.is_empty() {
            self.written_listen().len()
        } else {
            self.cli_listen.len().max(1)
        };
        self.expect_listeners.unwrap_or(plain + self.proxy_listen.len())
    }

    /// Writes the config and root, spawns the server, and returns without
    /// waiting for anything.
    pub fn spawn(self) -> TestServer {
        let dir = TempDir::new(&self.name);
        chmod(dir.path(), 0o755);
        let root = dir.path().join("root");
        let files: Vec<(&str, &[u8])> = self.files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        make_root(&root, &files);
        for d in &self.dirs {
            fs::create_dir_all(dir.path().join(d)).expect("create directory");
        }

        let cfg = dir.path().join("forkhttpd.toml");
        let listen = self.written_listen();
        let mut cmd = server_command();
        if self.use_config {
            fs::write(&cfg, config_text(&listen, &root, &self.config)).expect("write config");
            cmd.arg("--config").arg(&cfg);
        } else {
            assert!(!self.cli_listen.is_empty(), "no_config_file() needs at least one listen()");
            assert!(self.config.is_empty(), "config() lines given but no_config_file() requested");
            cmd.arg("--root").arg(&root);
        }
        for l in &self.cli_listen {
            cmd.arg("--listen").arg(l);
        }
        cmd.args(&self.args).current_dir(dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(&mut cmd);
        TestServer { proc, addrs: Vec::new(), dir, root, cfg, listen, config: self.config }
    }

    /// Spawns the server and waits for its `listening on` lines and its
    /// `started` line (only then are its signal handlers in place).
    pub fn start(self) -> TestServer {
        let n = self.listener_count();
        let mut s = self.spawn();
        s.addrs = s.wait_listeners(0, n);
        s.wait_started();
        s
    }
}

/// A forkhttpd in its own temp dir (config file, `root/`), with its stderr
/// collected; SIGKILLed with its serving children on drop.
pub struct TestServer {
    proc: Proc,
    addrs: Vec<SocketAddr>,
    dir: TempDir,
    root: PathBuf,
    /// The config file (`<tmp>/forkhttpd.toml`), and its `listen` list and
    /// other lines as written.
    cfg: PathBuf,
    listen: Vec<String>,
    config: Vec<String>,
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
            env: Vec::new(),
            args: Vec::new(),
            files: Vec::new(),
            expect_listeners: None,
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

    /// Sends `sig` to the server unless it has exited.
    pub fn signal(&mut self, sig: Signal) {
        if self.is_running() {
            signal(self.pid(), sig);
        }
    }

    /// SIGTERM the server and wait up to `timeout` for it to exit.
    /// Returns `None` if it did not exit in time (it is then SIGKILLed and
    /// reaped).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.stop(timeout)
    }

    /// The server's stderr lines.
    pub fn log(&self) -> &Lines {
        &self.proc.log
    }

    /// All of stderr so far, one string.
    pub fn stderr(&self) -> String {
        self.proc.log.text()
    }

    /// Waits for `n` `listening on` lines at index >= `from`.
    pub fn wait_listeners(&mut self, from: usize, n: usize) -> Vec<SocketAddr> {
        self.proc.wait_listeners(from, n)
    }

    /// Waits for the start line (`... started ...`).
    pub fn wait_started(&mut self) {
        if self.proc.log.wait_line(0, STARTUP_TIMEOUT, |l| l.contains("started")).is_none() {
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
        let mut c = self.connect();
        c.send_request("HEAD", "/", &["Connection: close"]);
        let _ = c.read_head_response();
    }

    /// Waits for the server to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(timeout)
    }

    /// The config file.
    pub fn cfg(&self) -> &Path {
        &self.cfg
    }

    /// The config file's `listen` list as written at start.
    pub fn config_listen(&self) -> &[String] {
        &self.listen
    }

    /// The config file's other lines as written at start.
    pub fn config_lines(&self) -> &[String] {
        &self.config
    }

    /// Rewrites the config file (listen list, root, other lines).
    pub fn rewrite_config(&self, listen: &[String], root: &Path, extra: &[String]) {
        write_atomic(&self.cfg, config_text(listen, root, extra).as_bytes());
    }

    /// The listen list naming the actually bound addresses (so that a reload
    /// keeps the same sockets).
    pub fn bound_listen(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.to_string()).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // SIGKILL, children too: the test is over, and a graceful stop
        // could leave a stuck child behind. (A child the server left behind
        // after exiting has been reparented and cannot be found by parent
        // pid; the tests that care check such children by pid.)
        if self.is_running() {
            kill_tree(self.pid());
            self.proc.kill();
        }
    }
}

/// Parse a `... listening on ADDR` line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let idx = line.find("listening on ")?;
    let rest = &line[idx + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}
