//! Error types: `StartupError` for everything that stops the server from
//! starting (parent, before the accept loop), and `Status` for the outcome of
//! one request. Every HTTP status the server can send is listed in `Status`,
//! and its code and reason phrase are decided in one `match` here.
//!
//! Runs in: parent (startup errors) and child (statuses).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;

/// Every HTTP status forkhttpd sends, success and error alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200: a file follows.
    Ok,
    /// 204: the answer to `OPTIONS`.
    NoContent,
    /// 301: a directory named without its trailing slash.
    MovedPermanently,
    /// 400: malformed request, a path that climbs out, or a body we will not read.
    BadRequest,
    /// 403: the file exists but may not be served (outside the root, not a
    /// regular file, a directory without an index, unreadable).
    Forbidden,
    /// 404: no such file (dotfiles are reported as missing too).
    NotFound,
    /// 405: a method we know but do not serve.
    MethodNotAllowed,
    /// 408: the request head did not arrive within `header_timeout`.
    RequestTimeout,
    /// 414: the request line alone exceeds `max_header_bytes`.
    UriTooLong,
    /// 431: the request head exceeds `max_header_bytes` or the header count.
    HeaderFieldsTooLarge,
    /// 500: an unexpected local failure.
    InternalError,
    /// 501: a method we do not know.
    NotImplemented,
    /// 503: the parent could not fork a child for this connection.
    ServiceUnavailable,
    /// 505: a protocol version other than HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl Status {
    /// The numeric status code.
    pub fn code(self) -> u16 {
        self.code_and_reason().0
    }

    /// The reason phrase sent on the status line.
    pub fn reason(self) -> &'static str {
        self.code_and_reason().1
    }

    fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            Status::Ok => (200, "OK"),
            Status::NoContent => (204, "No Content"),
            Status::MovedPermanently => (301, "Moved Permanently"),
            Status::BadRequest => (400, "Bad Request"),
            Status::Forbidden => (403, "Forbidden"),
            Status::NotFound => (404, "Not Found"),
            Status::MethodNotAllowed => (405, "Method Not Allowed"),
            Status::RequestTimeout => (408, "Request Timeout"),
            Status::UriTooLong => (414, "URI Too Long"),
            Status::HeaderFieldsTooLarge => (431, "Request Header Fields Too Large"),
            Status::InternalError => (500, "Internal Server Error"),
            Status::NotImplemented => (501, "Not Implemented"),
            Status::ServiceUnavailable => (503, "Service Unavailable"),
            Status::VersionNotSupported => (505, "HTTP Version Not Supported"),
        }
    }

    /// The one mapping from a filesystem error to a status (OpenBSD httpd's
    /// errno switch): missing → 404, not allowed or a symlink where none may
    /// be → 403, anything else → 500.
    pub fn from_io(err: &io::Error) -> Status {
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => Status::NotFound,
            // EXDEV: openat2's RESOLVE_BENEATH caught a path leaving the root.
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ELOOP) | Some(libc::EXDEV) => {
                Status::Forbidden
            }
            _ => match err.kind() {
                io::ErrorKind::NotFound => Status::NotFound,
                io::ErrorKind::PermissionDenied => Status::Forbidden,
                _ => Status::InternalError,
            },
        }
    }
}

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
    /// Sockets passed by systemd (`LISTEN_FDS`) are unusable.
    Activation(String),
    /// Detaching into the background (`--daemon`) or the pid file failed.
    Daemon(String),
    /// The signal handlers or their self-pipe could not be set up.
    Signals(io::Error),
    /// The descriptors inherited from the launcher could not be closed.
    Descriptors(io::Error),
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
            StartupError::Activation(msg) => write!(f, "socket activation: {msg}"),
            StartupError::Daemon(msg) => write!(f, "{msg}"),
            StartupError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartupError::Descriptors(e) => write!(f, "cannot close inherited descriptors: {e}"),
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
            | StartupError::Signals(source)
            | StartupError::Descriptors(source) => Some(source),
            StartupError::Poll(e) => Some(e),
            StartupError::Config(_) | StartupError::Activation(_) | StartupError::Daemon(_) => None,
        }
    }
}
