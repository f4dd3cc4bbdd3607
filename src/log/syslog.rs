//! The connection to the system log: found at its usual sockets, tagged
//! `forkhttpd`, facility `daemon`, each message stamped with the pid of
//! the process that sends it and sent without blocking (see `wait`), the
//! messages dropped counted and reported.
//!
//! Runs in: parent (connecting, before any fork, so that children inherit
//! the socket even inside a chroot) and child (sending).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, send};
use syslog::LogFormat;

use super::wait::{CHILD_LOG_WAIT, Sent, in_parent, write_within};

/// A connection to the system log, tagged `forkhttpd`, facility `daemon`.
pub struct SyslogConn {
    logger: syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>,
    /// The process `dropped` and `stalled` belong to. A child inherits the
    /// parent's connection at fork, and with it a copy of the parent's
    /// count: it must start from zero, or it would report the parent's
    /// drops as its own, and the parent would report them again.
    pid: u32,
    /// Messages this process dropped since the last one it delivered
    /// (reported then).
    dropped: u64,
    /// Set in a child after it once waited in vain: it waits no more.
    stalled: bool,
    /// A stream socket cut in the middle of a message: unusable.
    broken: bool,
}

impl std::fmt::Debug for SyslogConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyslogConn")
    }
}

impl SyslogConn {
    /// Connects to the first of `SYSLOG_SOCKETS` that takes messages.
    /// Returns the connection, or an error saying that syslog is not
    /// reachable and what each place it looked said.
    pub(super) fn connect() -> io::Result<SyslogConn> {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "forkhttpd".to_string(),
            pid: std::process::id(),
        };
        let mut tried = Vec::new();
        for path in SYSLOG_SOCKETS {
            match connect_socket(path) {
                Ok(backend) => {
                    let logger = syslog::Logger::new(backend, formatter);
                    return Ok(SyslogConn {
                        logger,
                        pid: std::process::id(),
                        dropped: 0,
                        stalled: false,
                        broken: false,
                    });
                }
                Err(e) => {
                    let why = e
                        .raw_os_error()
                        .map_or_else(|| e.to_string(), |n| Errno::from_raw(n).desc().to_string());
                    tried.push(format!("{path}: {why}"));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("syslog is not reachable (looked for its socket at {})", tried.join("; ")),
        ))
    }

    /// The connected socket's descriptor, for a child to keep open.
    pub(super) fn raw_fd(&self) -> RawFd {
        match &self.logger.backend {
            syslog::LoggerBackend::Unix(s) => s.as_raw_fd(),
            syslog::LoggerBackend::UnixStream(s) => s.get_ref().as_raw_fd(),
            syslog::LoggerBackend::Udp(s, _) => s.as_raw_fd(),
            syslog::LoggerBackend::Tcp(s) => s.get_ref().as_raw_fd(),
        }
    }

    /// Sends `msg` at `level`, stamped with the pid of the calling process
    /// (the formatter's pid is fixed when it is built; children must report
    /// their own), without blocking the parent and holding a child at most
    /// `CHILD_LOG_WAIT`. Returns whether it was delivered or dropped, or
    /// the error that makes the connection useless.
    pub(super) fn send(&mut self, level: log::Level, msg: String) -> io::Result<Sent> {
        if self.pid != std::process::id() {
            // First message of a child (`broken` is the socket's own state
            // and stays as inherited).
            self.pid = std::process::id();
            self.dropped = 0;
            self.stalled = false;
        }
        let sent = self.send_one(level, msg)?;
        if sent == Sent::Dropped {
            self.dropped += 1;
        } else if self.dropped > 0 {
            let note = format!("{} syslog messages were dropped: the receiver was not reading", self.dropped);
            if self.send_one(log::Level::Warn, note)? == Sent::Delivered {
                self.dropped = 0;
            }
        }
        Ok(sent)
    }

    /// Sends one message, as `send` says, without the report of drops.
    fn send_one(&mut self, level: log::Level, msg: String) -> io::Result<Sent> {
        if self.broken {
            return Err(io::Error::other("syslog stream connection was cut"));
        }
        let severity = match level {
            log::Level::Error => syslog::Severity::LOG_ERR,
            log::Level::Warn => syslog::Severity::LOG_WARNING,
            log::Level::Info => syslog::Severity::LOG_INFO,
            log::Level::Debug | log::Level::Trace => syslog::Severity::LOG_DEBUG,
        };
        self.logger.formatter.pid = std::process::id();
        let mut datagram = Vec::new();
        self.logger
            .formatter
            .format(&mut datagram, severity, msg)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let (fd, stream) = match &self.logger.backend {
            syslog::LoggerBackend::Unix(sock) => (sock.as_fd(), false),
            syslog::LoggerBackend::UnixStream(sock) => (sock.get_ref().as_fd(), true),
            _ => return Err(io::Error::other("not a local syslog socket")),
        };
        if stream {
            // Messages on a stream socket are NUL-terminated.
            datagram.push(0);
        }
        let wait = if in_parent() || self.stalled { Duration::ZERO } else { CHILD_LOG_WAIT };
        let sent = send_within(fd, &datagram, wait);
        match sent {
            Ok(n) if n == datagram.len() => Ok(Sent::Delivered),
            Ok(0) => {
                self.stalled = !in_parent();
                Ok(Sent::Dropped)
            }
            Ok(_) => {
                // Part of a message on a stream: what follows would be
                // glued to it, so the connection is given up.
                self.broken = true;
                Err(io::Error::other("syslog stream connection cut in the middle of a message"))
            }
            Err(e) => Err(e),
        }
    }
}

/// Where the system log's socket is looked for, in this order: Linux's,
/// then the BSDs' and macOS's (the places the `syslog` crate tries).
const SYSLOG_SOCKETS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// Connects to the syslog socket at `path`: a datagram socket, or a stream
/// one where the receiver listens on a stream (`EPROTOTYPE`).
fn connect_socket(path: &str) -> io::Result<syslog::LoggerBackend> {
    let sock = UnixDatagram::unbound()?;
    match sock.connect(path) {
        Ok(()) => Ok(syslog::LoggerBackend::Unix(sock)),
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
            Ok(syslog::LoggerBackend::UnixStream(io::BufWriter::new(UnixStream::connect(path)?)))
        }
        Err(e) => Err(e),
    }
}

/// Sends `buf` on the connected socket `fd` without blocking, waiting for
/// room up to `wait` in all. Returns the bytes sent: all of them, none
/// (the receiver had no room in time), or on a stream socket a part.
fn send_within(fd: BorrowedFd<'_>, buf: &[u8], wait: Duration) -> io::Result<usize> {
    write_within(fd, buf, Instant::now() + wait, |b| {
        send(fd.as_raw_fd(), b, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
    })
}
