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
    /// A site's TLS certificate or key could not be read, does not match,
    /// or (for `--check-config`) has expired.
    Certificate {
        /// The site's name.
        site: String,
        /// The file at fault, when one is.
        path: Option<PathBuf>,
        /// What is wrong.
        what: String,
    },
    /// The first session-ticket key could not be made.
    TicketKeys(crate::tls::tickets::RandomFailed),
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
    /// The pid file could not be opened, checked, locked or written.
    PidFile {
        /// The pid file's path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another server holds the pid file's lock.
    PidFileLocked {
        /// The pid file's path.
        path: PathBuf,
        /// The pid written in the file, if it holds one.
        holder: Option<String>,
    },
    /// Detaching into the background (`--daemon`) failed.
    Detach {
        /// The step that failed (`fork`, `setsid`, `stdin`...).
        step: &'static str,
        /// The step's error.
        source: nix::errno::Errno,
    },
    /// `--daemon` with daemon messages meant for syslog, which is not
    /// reachable: once detached, they would be lost.
    DetachWithoutSyslog(io::Error),
    /// `--daemon` with `error_log = "stderr"`, which is `/dev/null` once
    /// detached.
    DetachToStderr,
    /// The capability bounding set could not be emptied.
    BoundingSet(nix::errno::Errno),
    /// The children's sandbox (`sandbox = true`) could not be made.
    Sandbox(crate::sandbox::SandboxError),
    /// The lifeline pipe, whose hang-up tells children the parent is gone,
    /// could not be created.
    Lifeline(nix::errno::Errno),
    /// The scoreboard's shared memory could not be mapped.
    Scoreboard(nix::errno::Errno),
    /// `$NOTIFY_SOCKET` names no socket address that can be used.
    NotifySocket(io::Error),
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
            StartupError::Certificate { site, path: Some(path), what } => {
                write!(f, "TLS certificate of {site}: {}: {what}", path.display())
            }
            StartupError::Certificate { site, path: None, what } => {
                write!(f, "TLS certificate of {site}: {what}")
            }
            StartupError::TicketKeys(e) => write!(f, "{e}"),
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
            StartupError::PidFile { path, source } => write!(f, "pid file {}: {source}", path.display()),
            StartupError::PidFileLocked { path, holder } => {
                write!(f, "pid file {} is locked by a running forkhttpd", path.display())?;
                if let Some(pid) = holder {
                    write!(f, " (pid {pid})")?;
                }
                f.write_str("; stop it first")
            }
            StartupError::Detach { step, source } => write!(f, "cannot detach: {step}: {source}"),
            StartupError::DetachWithoutSyslog(source) => write!(
                f,
                "refusing to detach: {source}, and every later daemon message would be lost; set \
                 error_log to a file, or run in the foreground"
            ),
            StartupError::DetachToStderr => f.write_str(
                "refusing to detach with error_log = \"stderr\": stderr is /dev/null once detached; \
                 set error_log to \"syslog\" or a file",
            ),
            StartupError::BoundingSet(e) => write!(f, "cannot empty the capability bounding set: {e}"),
            StartupError::Sandbox(e) => write!(f, "cannot make the children's sandbox: {e}"),
            StartupError::Lifeline(e) => write!(f, "cannot create the lifeline pipe: {e}"),
            StartupError::Scoreboard(e) => write!(f, "cannot map the scoreboard: {e}"),
            StartupError::NotifySocket(e) => write!(f, "cannot use NOTIFY_SOCKET: {e}"),
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
            | StartupError::PidFile { source, .. }
            | StartupError::DetachWithoutSyslog(source)
            | StartupError::NotifySocket(source)
            | StartupError::Signals(source)
            | StartupError::Descriptors(source) => Some(source),
            StartupError::Detach { source: e, .. }
            | StartupError::BoundingSet(e)
            | StartupError::Lifeline(e)
            | StartupError::Scoreboard(e)
            | StartupError::Poll(e)
            | StartupError::Dumpable(e) => Some(e),
            StartupError::TicketKeys(e) => Some(e),
            StartupError::Sandbox(e) => Some(e),
            StartupError::Config(_)
            | StartupError::Certificate { .. }
            | StartupError::Activation(_)
            | StartupError::PidFileLocked { .. }
            | StartupError::DetachToStderr => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn daemon_steps_keep_their_source() {
        let e = StartupError::PidFile {
            path: "/run/x.pid".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>()).and_then(io::Error::raw_os_error);
        assert_eq!(source, Some(libc::EACCES));
        let e = StartupError::Detach { step: "setsid", source: nix::errno::Errno::EPERM };
        assert_eq!(
            e.source().and_then(|s| s.downcast_ref::<nix::errno::Errno>()),
            Some(&nix::errno::Errno::EPERM)
        );
        assert!(e.to_string().starts_with("cannot detach: setsid: "), "{e}");
        let e = StartupError::DetachWithoutSyslog(io::Error::other("syslog is not reachable"));
        assert!(
            e.source().is_some()
                && e.to_string().starts_with("refusing to detach: syslog is not reachable, ")
        );
    }

    #[test]
    fn locked_pid_file_names_its_holder() {
        let e = StartupError::PidFileLocked { path: "/run/x.pid".into(), holder: Some("42".into()) };
        assert_eq!(
            e.to_string(),
            "pid file /run/x.pid is locked by a running forkhttpd (pid 42); stop it first"
        );
        let e = StartupError::PidFileLocked { path: "/run/x.pid".into(), holder: None };
        assert_eq!(e.to_string(), "pid file /run/x.pid is locked by a running forkhttpd; stop it first");
    }
}
