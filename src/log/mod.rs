//! Logging: daemon messages through the `log` facade, and the access log.
//!
//! Runs in: parent (set-up, opening files, connecting to syslog) and child
//! (writing lines).
//!
//! Daemon messages go to stderr, to a file (`error_log = "/path"`), or to
//! the system log (ident `forkhttpd`, facility `daemon`); either way each
//! message carries its level and the pid of the process that wrote it,
//! read at the time of writing, so a child's message is told from the
//! parent's. Access-log lines are written with a single `write(2)` each, on
//! a file the parent opened with `O_APPEND` (or on stderr, or as one syslog
//! message); each line is capped well below `PIPE_BUF`, so lines from many
//! children never interleave.
//!
//! No log sink may stall the server. Files are opened by `safeopen` (never
//! through a link, never a FIFO). Syslog and stderr are written without
//! blocking: the parent drops (and counts) a message the reader has no room
//! for, and a child waits at most `CHILD_LOG_WAIT`, once, before it drops
//! too. A stderr that is a pipe or a terminal is reopened at start as a
//! description of our own with `O_NONBLOCK` (setting the flag on the one
//! inherited would change it for the launcher, a shell's terminal too); a
//! socket is written with `MSG_DONTWAIT`.
//!
//! One file a job:
//! - `messages`: the logger behind the `log` macros, and where daemon
//!   messages go (stderr, an `error_log` file, syslog).
//! - `access`: the access log's target and its Combined Log Format line.
//! - `syslog`: the connection to the system log.
//! - `stderr`: writing to stderr without blocking, in the journal's form
//!   when it is the journal.
//! - `wait`: how long a log write may wait: the parent never, a child
//!   briefly.
//! - `ratelimit`: the counters every process shares, and the warnings they
//!   hold to one a minute.
//! - `format`: escaping, capping and time stamps: bytes made safe as log
//!   text.

mod access;
mod format;
mod messages;
mod ratelimit;
mod stderr;
mod syslog;
mod wait;

pub use self::access::{AccessLog, Entry};
pub use self::format::Escaped;
pub use self::messages::{
    daemon_syslog, error_file_fd, init, only_to_stderr, reopen_error_log, route_daemon_messages, started,
    syslog_fd,
};
pub use self::ratelimit::{client_warning, crash_warning};
pub use self::syslog::SyslogConn;
pub use self::wait::set_parent_process;
