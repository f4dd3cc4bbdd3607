//! The configuration: the TOML file, the command-line overrides, the built-in
//! defaults, and their validation into one immutable `Config`.
//!
//! Runs in: parent, before the accept loop and again on `SIGHUP`. Children
//! receive the `Config` for free through `fork`; nothing is parsed after it.
//!
//! The file is TOML read with `serde` (`deny_unknown_fields`), so a typo is an
//! error that names the key and the line instead of a silently ignored
//! setting. Every key is optional, and an empty file means the defaults below,
//! which are the values written in the shipped `config/forkhttpd.toml`.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::geteuid;
use serde::Deserialize;

use crate::error::StartupError;
use crate::privileges::Identity;

/// Default listen address: loopback only, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `listen(2)` backlog. busybox httpd's 9 overflows under load and
/// costs a one-second SYN retransmit; 1024 absorbs bursts while children start.
pub const DEFAULT_BACKLOG: i32 = 1024;
/// Default document root, relative to the directory the server was started from.
pub const DEFAULT_ROOT: &str = "www";
/// Default account for children when started as root: present on every
/// Unix system, owns nothing.
pub const DEFAULT_USER: &str = "nobody";
/// Default cap on live children; at the cap the parent stops accepting.
pub const DEFAULT_MAX_CHILDREN: usize = 512;
/// Default time for a whole request head, from its first byte (seconds).
pub const DEFAULT_HEADER_TIMEOUT: f64 = 10.0;
/// Default idle time allowed between keep-alive requests (seconds).
pub const DEFAULT_KEEPALIVE_TIMEOUT: f64 = 5.0;
/// Default time a client may accept no response bytes before it is dropped (seconds).
pub const DEFAULT_SEND_TIMEOUT: f64 = 30.0;
/// Default time a graceful stop lets responses in flight finish (seconds).
pub const DEFAULT_SHUTDOWN_GRACE: f64 = 10.0;
/// Default largest request head in bytes; larger → 431 (or 414).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8192;
/// Default number of requests served on one connection before it is closed.
pub const DEFAULT_MAX_REQUESTS: u32 = 1000;

/// Longest accepted timeout: a day. Longer values are almost surely typos
/// and would overflow `poll`'s millisecond argument arithmetic anyway.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// Shortest accepted timeout: a millisecond, the resolution of `poll`.
/// Anything shorter would round to zero, and a zero deadline closes every
/// connection before its first byte, with no response and no log line.
const MIN_TIMEOUT_SECS: f64 = 0.001;
/// Smallest and largest accepted `max_header_bytes`. Below 256 no browser
/// request fits; above 1 MiB a child's buffer stops being small.
const HEADER_BYTES_RANGE: (usize, usize) = (256, 1 << 20);

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard error (the default in the foreground).
    Stderr,
    /// A file, opened `O_APPEND` by the parent.
    File(PathBuf),
    /// The system log (facility `daemon`, level `info`).
    Syslog,
    /// No access log.
    Off,
}

/// Where daemon messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorLogTarget {
    /// Standard error in the foreground, syslog when daemonized or under systemd.
    Auto,
    /// Always standard error.
    Stderr,
    /// Always the system log.
    Syslog,
    /// A file, opened `O_APPEND` by the parent (absolute).
    File(PathBuf),
}

/// The validated configuration. Immutable once built; a reload builds a new one.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the config was read from, if a file was given.
    pub source: Option<PathBuf>,
    /// Listen addresses as written (`host:port`, `[v6]:port`).
    pub listen: Vec<String>,
    /// `listen(2)` backlog per listener.
    pub backlog: i32,
    /// The document root, canonical (absolute, symlinks resolved).
    pub root: PathBuf,
    /// File names tried for a request that names a directory.
    pub index: Vec<String>,
    /// The account children switch to when the server starts as root.
    pub identity: Identity,
    /// Whether `identity.gid` comes from the `group` key (rather than
    /// being the user's primary group).
    pub group_given: bool,
    /// Whether children `chroot` into the root (only when started as root).
    pub chroot: bool,
    /// Whether serving as root is allowed.
    pub allow_root: bool,
    /// Where the server writes its pid, if anywhere (absolute); in the
    /// foreground as well as with `--daemon`.
    pub pid_file: Option<PathBuf>,
    /// Cap on live children.
    pub max_children: usize,
    /// Cap on live children per client address (IPv4-mapped IPv6 counted
    /// as IPv4); 0 = none. Default 32: one address cannot take every slot.
    pub max_children_per_ip: usize,
    /// Time allowed for a whole request head, from its first byte.
    pub header_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Time a client may accept no response bytes before it is dropped.
    pub send_timeout: Duration,
    /// Time a graceful stop lets responses in flight finish.
    pub shutdown_grace: Duration,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Requests served on one connection before it is closed.
    pub max_requests_per_connection: u32,
    /// Where access-log lines go.
    pub access_log: AccessLogTarget,
    /// Where daemon messages go.
    pub error_log: ErrorLogTarget,
    /// Whether the `Server` header carries the version.
    pub server_version: bool,
}

/// Values given on the command line; each one, when present, wins over the
/// file. Also the directory the command ran in, against which every relative
/// path is resolved.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`, repeatable; replaces the file's list when non-empty.
    pub listen: Vec<String>,
    /// `--root`, as given (resolved against `base_dir` like the file's paths).
    pub root: Option<PathBuf>,
    /// The working directory at start. Every relative path, on the command
    /// line or in the file, is resolved against it, at start and on every
    /// reload alike: after `--daemon` the process's own working directory is
    /// `/`, and "www" must not come to mean `/www`. `None` (unknown) means
    /// the working directory at the time of loading.
    pub base_dir: Option<PathBuf>,
}

impl Overrides {
    /// `path` made absolute against `base_dir`, so that it names the same
    /// file whatever the process's working directory is by then.
    pub fn resolve(&self, path: &Path) -> std::io::Result<PathBuf> {
        match &self.base_dir {
            Some(base) => std::path::absolute(base.join(path)),
            None => std::path::absolute(path),
        }
    }
}

/// A number of seconds as written in the file: integer or decimal.
#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(untagged)]
enum Seconds {
    Int(i64),
    Float(f64),
}

impl Seconds {
    fn as_f64(self) -> f64 {
        match self {
            Seconds::Int(i) => i as f64,
            Seconds::Float(f) => f,
        }
    }
}

/// The file as written, before validation. Every field defaults.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    listen: Vec<String>,
    backlog: i64,
    root: PathBuf,
    index: Vec<String>,
    user: String,
    group: String,
    chroot: bool,
    allow_root: bool,
    pid_file: PathBuf,
    max_children: i64,
    max_children_per_ip: i64,
    header_timeout: Seconds,
    keepalive_timeout: Seconds,
    send_timeout: Seconds,
    shutdown_grace: Seconds,
    max_header_bytes: i64,
    max_requests_per_connection: i64,
    access_log: String,
    error_log: String,
    server_version: bool,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: vec![DEFAULT_LISTEN.to_string()],
            backlog: i64::from(DEFAULT_BACKLOG),
            root: PathBuf::from(DEFAULT_ROOT),
            index: vec!["index.html".to_string()],
            user: DEFAULT_USER.to_string(),
            group: String::new(),
            chroot: false,
            allow_root: false,
            pid_file: PathBuf::new(),
            max_children: DEFAULT_MAX_CHILDREN as i64,
            max_children_per_ip: 32,
            header_timeout: Seconds::Float(DEFAULT_HEADER_TIMEOUT),
            keepalive_timeout: Seconds::Float(DEFAULT_KEEPALIVE_TIMEOUT),
            send_timeout: Seconds::Float(DEFAULT_SEND_TIMEOUT),
            shutdown_grace: Seconds::Float(DEFAULT_SHUTDOWN_GRACE),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES as i64,
            max_requests_per_connection: i64::from(DEFAULT_MAX_REQUESTS),
            access_log: "stderr".to_string(),
            error_log: "auto".to_string(),
            server_version: false,
        }
    }
}

impl Config {
    /// Reads `path` (or nothing: the built-in defaults), applies the
    /// command-line overrides and validates the result. Returns the error
    /// naming the file, line and key of the first problem found.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, StartupError> {
        let (raw, text) = match path {
            Some(p) => {
                // Never fs::read_to_string: a FIFO in its place would block
                // the parent's reload in open(2).
                let text = crate::safeopen::read_regular(p).map_err(|e| ConfigError {
                    file: Some(p.to_path_buf()),
                    line: None,
                    key: None,
                    what: format!("cannot read: {e}"),
                })?;
                let raw: RawConfig = toml::from_str(&text).map_err(|e| describe_toml_error(&e, p, &text))?;
                (raw, text)
            }
            None => (RawConfig::default(), String::new()),
        };
        let checker = Checker { path, text: &text };
        checker.validate(raw, overrides)
    }
}

/// Locates a `toml` error: its line, and the key written on that line.
fn describe_toml_error(err: &toml::de::Error, file: &Path, text: &str) -> ConfigError {
    let mut located = ConfigError {
        file: Some(file.to_path_buf()),
        line: None,
        key: None,
        what: err.message().trim().to_string(),
    };
    if let Some(span) = err.span() {
        let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
        located.line = Some(line_no);
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        located.key = line
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('['))
            .map(str::to_string);
    }
    located
}

/// A configuration problem, located as precisely as is known.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file, if the problem is in one.
    pub file: Option<PathBuf>,
    /// The 1-based line in that file.
    pub line: Option<usize>,
    /// The key at fault.
    pub key: Option<String>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = Vec::new();
        if let Some(file) = &self.file {
            place.push(file.display().to_string());
        }
        if let Some(line) = self.line {
            place.push(format!("line {line}"));
        }
        if let Some(key) = &self.key {
            place.push(format!("key `{key}`"));
        }
        if place.is_empty() {
            f.write_str(&self.what)
        } else {
            write!(f, "{}: {}", place.join(", "), self.what)
        }
    }
}

impl From<ConfigError> for StartupError {
    fn from(e: ConfigError) -> StartupError {
        StartupError::Config(e)
    }
}

/// Validation with access to the file text, so each error can name its line.
struct Checker<'a> {
    path: Option<&'a Path>,
    text: &'a str,
}

impl Checker<'_> {
    fn validate(&self, raw: RawConfig, ov: &Overrides) -> Result<Config, StartupError> {
        let listen = if ov.listen.is_empty() { raw.listen } else { ov.listen.clone() };
        if listen.is_empty() {
            return Err(self.error("listen", "needs at least one address"));
        }
        for addr in &listen {
            if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(self.error("listen", &format!("{addr:?} is not HOST:PORT")));
            }
            // Listeners are IPv6-only (see listener.rs), and such a socket
            // cannot bind an IPv4-mapped address: say so here, where the
            // key and line are known, rather than as a bare EINVAL at bind.
            if let Ok(SocketAddr::V6(a)) = addr.parse::<SocketAddr>()
                && let Some(v4) = a.ip().to_ipv4_mapped()
            {
                return Err(self.error(
                    "listen",
                    &format!(
                        "{addr:?} is an IPv4-mapped IPv6 address, which an IPv6-only socket cannot bind; \
                         write \"{v4}:{}\"",
                        a.port()
                    ),
                ));
            }
        }
        let backlog = i32::try_from(raw.backlog)
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| self.error("backlog", "must be a positive integer"))?;

        let root_given = ov.root.clone().unwrap_or(raw.root);
        let root_given = ov.resolve(&root_given).map_err(|e| self.error("root", &e.to_string()))?;
        let root = fs::canonicalize(&root_given)
            .map_err(|source| StartupError::Root { path: root_given.clone(), source })?;
        if !root.is_dir() {
            return Err(StartupError::Root {
                path: root_given,
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }

        if raw.index.iter().any(|n| n.is_empty() || n.contains('/') || n.starts_with('.')) {
            return Err(self.error("index", "names must be plain file names (no '/', no leading '.')"));
        }
        let identity =
            Identity::lookup(&raw.user, &raw.group).map_err(|(key, what)| self.error(key, &what))?;
        if geteuid().is_root() && !raw.allow_root {
            identity.refuse_root(!raw.group.is_empty()).map_err(|(key, what)| self.error(key, &what))?;
        }
        let pid_file = if raw.pid_file.as_os_str().is_empty() {
            None
        } else {
            Some(ov.resolve(&raw.pid_file).map_err(|e| self.error("pid_file", &e.to_string()))?)
        };
        let max_children_per_ip = usize::try_from(raw.max_children_per_ip)
            .map_err(|_| self.error("max_children_per_ip", "must be 0 (no limit) or a positive integer"))?;
        let max_children = usize::try_from(raw.max_children)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| self.error("max_children", "must be a positive integer"))?;
        let max_header_bytes = usize::try_from(raw.max_header_bytes)
            .ok()
            .filter(|n| (HEADER_BYTES_RANGE.0..=HEADER_BYTES_RANGE.1).contains(n))
            .ok_or_else(|| {
                self.error(
                    "max_header_bytes",
                    &format!("must be between {} and {}", HEADER_BYTES_RANGE.0, HEADER_BYTES_RANGE.1),
                )
            })?;
        let max_requests_per_connection = u32::try_from(raw.max_requests_per_connection)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| self.error("max_requests_per_connection", "must be a positive integer"))?;

        let access_log = match raw.access_log.as_str() {
            "stderr" => AccessLogTarget::Stderr,
            "syslog" => AccessLogTarget::Syslog,
            "off" => AccessLogTarget::Off,
            "" => {
                return Err(self.error("access_log", "must be \"stderr\", \"off\" or a file path"));
            }
            p => AccessLogTarget::File(
                ov.resolve(Path::new(p)).map_err(|e| self.error("access_log", &e.to_string()))?,
            ),
        };
        let error_log = match raw.error_log.as_str() {
            "auto" => ErrorLogTarget::Auto,
            "stderr" => ErrorLogTarget::Stderr,
            "syslog" => ErrorLogTarget::Syslog,
            "" => {
                return Err(
                    self.error("error_log", "must be \"auto\", \"stderr\", \"syslog\" or a file path")
                );
            }
            p => ErrorLogTarget::File(
                ov.resolve(Path::new(p)).map_err(|e| self.error("error_log", &e.to_string()))?,
            ),
        };

        Ok(Config {
            source: self.path.map(|p| ov.resolve(p)).transpose().map_err(|e| ConfigError {
                file: self.path.map(Path::to_path_buf),
                line: None,
                key: None,
                what: e.to_string(),
            })?,
            listen,
            backlog,
            root,
            index: raw.index,
            identity,
            group_given: !raw.group.is_empty(),
            chroot: raw.chroot,
            allow_root: raw.allow_root,
            pid_file,
            max_children,
            max_children_per_ip,
            header_timeout: self.seconds("header_timeout", raw.header_timeout)?,
            keepalive_timeout: self.seconds("keepalive_timeout", raw.keepalive_timeout)?,
            send_timeout: self.seconds("send_timeout", raw.send_timeout)?,
            shutdown_grace: self.seconds("shutdown_grace", raw.shutdown_grace)?,
            max_header_bytes,
            max_requests_per_connection,
            access_log,
            error_log,
            server_version: raw.server_version,
        })
    }

    fn seconds(&self, key: &str, value: Seconds) -> Result<Duration, StartupError> {
        let secs = value.as_f64();
        if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&secs) {
            return Err(self.error(
                key,
                &format!("must be at least {MIN_TIMEOUT_SECS} (1 ms) and at most {MAX_TIMEOUT_SECS} seconds"),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// An error for `key`, naming the file and the line where the key is set.
    fn error(&self, key: &str, what: &str) -> StartupError {
        ConfigError {
            file: self.path.map(Path::to_path_buf),
            line: self.line_of(key),
            key: Some(key.to_string()),
            what: what.to_string(),
        }
        .into()
    }

    /// The 1-based line on which `key = ...` is written, if it is.
    fn line_of(&self, key: &str) -> Option<usize> {
        self.text
            .lines()
            .position(|l| {
                l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|i| i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(text: &str) -> Result<Config, StartupError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("forkhttpd-cfg-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        let mut f = fs::File::create(&file).unwrap();
        write!(f, "root = {:?}\n{text}", dir.display().to_string()).unwrap();
        let r = Config::load(Some(&file), &Overrides::default());
        fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load_str("").unwrap();
        assert_eq!(c.listen, vec![DEFAULT_LISTEN.to_string()]);
        assert_eq!(c.backlog, DEFAULT_BACKLOG);
        assert_eq!(c.max_children, DEFAULT_MAX_CHILDREN);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.access_log, AccessLogTarget::Stderr);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = load_str("backlog = 5\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = load_str("max_children = \"many\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("max_children"), "{e}");
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let e = load_str("\nheader_timeout = -1\n").unwrap_err().to_string();
        assert!(e.contains("header_timeout") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn durations_below_a_millisecond_are_refused() {
        for key in ["header_timeout", "keepalive_timeout", "send_timeout", "shutdown_grace"] {
            let e = load_str(&format!("{key} = 1e-10\n")).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("line 2") && e.contains("1 ms"), "{e}");
            let c = load_str(&format!("{key} = 0.001\n")).unwrap();
            let d = [c.header_timeout, c.keepalive_timeout, c.send_timeout, c.shutdown_grace];
            assert!(d.contains(&Duration::from_millis(1)), "{key}: {d:?}");
        }
    }

    #[test]
    fn ipv4_mapped_listen_address_is_refused() {
        let e = load_str("listen = [\"[::ffff:127.0.0.1]:80\"]\n").unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("line 2") && e.contains("\"127.0.0.1:80\""), "{e}");
        load_str("listen = [\"[::1]:80\", \"127.0.0.1:80\"]\n").unwrap();
    }

    #[test]
    fn relative_paths_resolve_against_the_base_directory() {
        let base = std::env::temp_dir().join(format!("forkhttpd-cfg-base-{}", std::process::id()));
        fs::create_dir_all(base.join("site")).unwrap();
        let file = base.join("c.toml");
        fs::write(&file, "root = \"site\"\naccess_log = \"logs/a.log\"\npid_file = \"p.pid\"\n").unwrap();
        let ov = Overrides { base_dir: Some(base.clone()), ..Overrides::default() };
        // The process's own working directory plays no part.
        let c = Config::load(Some(&file), &ov).unwrap();
        assert_eq!(c.root, fs::canonicalize(base.join("site")).unwrap());
        assert_eq!(c.access_log, AccessLogTarget::File(base.join("logs/a.log")));
        assert_eq!(c.pid_file, Some(base.join("p.pid")));
        let ov = Overrides { root: Some(PathBuf::from("site")), ..ov };
        assert_eq!(Config::load(None, &ov).unwrap().root, fs::canonicalize(base.join("site")).unwrap());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn decimal_seconds_accepted() {
        let c = load_str("keepalive_timeout = 0.5\n").unwrap();
        assert_eq!(c.keepalive_timeout, Duration::from_millis(500));
    }
}
