//! The server under test: `TestServer` and its `Builder`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::process::current_test_name;
use super::{
    Conn, Proc, ProcInfo, Response, TempDir, children_of, config_text, get_close, send_signal,
    server_command, toml_str,
};

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
