//! `StartupError`: everything that stops the server from starting (parent,
//! before the accept loop), with a variant per failing step. The outcome of
//! one request is an HTTP status, in `http::status`.
//!
//! Runs in: parent.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the server could not start. Printed once by `main`, which then exits
/// non-zero.
#[derive(Debug)]
pub enum StartupError {
    /// The configuration is invalid: which file, line and key, and why.
    Config(ConfigError),
    /// A listen address did not resolve.
    Resolve {
        /// The address as written.
        addr: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// A listening socket could not be created, bound or put in listen mode.
    Bind {
        /// The address being bound.
        addr: String,
        /// The failing call's error.
        source: io::Error,
    },
    /// The document root is missing or not a directory.
    Root {
        /// The root as configured.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `openat2(2)` with `RESOLVE_BENEATH`, which contains every path
    /// beneath the root, failed on the root itself: no file could be served.
    Openat2 {
        /// The root as configured.
        path: PathBuf,
        /// The call's error.
        source: io::Error,
    },
    /// A log file could not be opened.
    Log {
        /// The file's path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A log set to `"syslog"` could not reach it.
    Syslog {
        /// The key that says `"syslog"`.
        key: &'static str,
        /// Why, and where it looked.
        source: io::Error,
    },
    /// Sockets passed by systemd (`LISTEN_FDS`) are unusable.
    Activation(String),
    /// Detaching into the background (`--daemon`) or the pid file failed.
    Daemon(String),
    /// The signal handlers or their self-pipe could not be set up.
    Signals(io::Error),
    /// The descriptors inherited from the launcher could not be closed.
    Descriptors(io::Error),
    /// The process could not be made non-dumpable (`PR_SET_DUMPABLE`).
    Dumpable(nix::errno::Errno),
    /// The accept loop's `poll` failed with something other than `EINTR`.
    Poll(nix::errno::Errno),
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Config(msg) => write!(f, "configuration error: {msg}"),
            StartupError::Resolve { addr, source } => {
                write!(f, "cannot resolve listen address {addr}: {source}")
            }
            StartupError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartupError::Root { path, source } => {
                write!(f, "document root {}: {source}", path.display())
            }
            StartupError::Openat2 { path, source } => match source.raw_os_error() {
                Some(libc::ENOSYS) | Some(libc::EPERM) => write!(
                    f,
                    "document root {}: openat2(2) is not available ({source}): refused by a seccomp \
                     filter (systemd's RestrictSUIDSGID=, or a container's) or a kernel older than 5.6; \
                     forkhttpd needs it to contain paths beneath the root",
                    path.display()
                ),
                _ => write!(f, "document root {}: openat2(2) beneath it failed: {source}", path.display()),
            },
            StartupError::Log { path, source } => {
                write!(f, "cannot open log file {}: {source}", path.display())
            }
            StartupError::Syslog { key, source } => write!(f, "{key} = \"syslog\": {source}"),
            StartupError::Activation(msg) => write!(f, "socket activation: {msg}"),
            StartupError::Daemon(msg) => write!(f, "{msg}"),
            StartupError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartupError::Descriptors(e) => write!(f, "cannot close inherited descriptors: {e}"),
            StartupError::Dumpable(e) => write!(f, "cannot make the process non-dumpable: {e}"),
            StartupError::Poll(e) => write!(f, "poll failed in the accept loop: {e}"),
        }
    }
}

impl std::error::Error for StartupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartupError::Resolve { source, .. }
            | StartupError::Bind { source, .. }
            | StartupError::Root { source, .. }
            | StartupError::Openat2 { source, .. }
            | StartupError::Log { source, .. }
            | StartupError::Syslog { source, .. }
            | StartupError::Signals(source)
            | StartupError::Descriptors(source) => Some(source),
            StartupError::Poll(e) | StartupError::Dumpable(e) => Some(e),
            StartupError::Config(_) | StartupError::Activation(_) | StartupError::Daemon(_) => None,
        }
    }
}

/// A configuration problem, located as precisely as is known.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file, if the problem is in one.
    pub file: Option<PathBuf>,
    /// The 1-based line in that file.
    pub line: Option<usize>,
    /// The `[[site]]` table the key is in (`[[site]] #2 (example.org)`).
    pub site: Option<String>,
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
        if let Some(site) = &self.site {
            place.push(site.clone());
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
