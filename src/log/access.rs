//! The access log: where lines go (off, stderr, an `O_APPEND` file, or
//! the system log), the Combined Log Format line, each written with one
//! `write(2)` so lines from many children never interleave, and lines
//! that could not be written counted and reported.
//!
//! Runs in: parent (opening, before any fork) and child (writing lines).

use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::format::{MAX_LOGGED_HEADER, MAX_LOGGED_REQUEST, clf_time, escape_into};
use super::ratelimit::{FILE_TORN, LINES_LOST, WARNED_AT, report_due, shared};
use super::stderr::write_stderr;
use super::syslog::SyslogConn;
use super::wait::Sent;
use crate::config::AccessLogTarget;
use crate::error::StartupError;
use crate::safeopen::{self, Access, Guard};

/// Where this process writes access-log lines.
#[derive(Debug)]
pub enum AccessLog {
    /// Not logging.
    Off,
    /// Standard error.
    Stderr,
    /// A file opened `O_APPEND` by the parent and inherited by the children.
    File(File),
    /// The system log, connected by the parent.
    Syslog(Mutex<SyslogConn>),
}

/// One request, as the access log records it.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The request line as received (without CRLF); empty if none was parsed.
    pub request_line: &'a [u8],
    /// The status code sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The `Referer` header.
    pub referer: Option<&'a [u8]>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a [u8]>,
}

impl AccessLog {
    /// Opens the configured target (in the parent, before any fork). A
    /// file is opened as `safeopen` says (`guard`, the account children run
    /// as when the parent is root, is named in a refusal).
    pub fn open(target: &AccessLogTarget, guard: Option<Guard>) -> Result<AccessLog, StartupError> {
        Ok(match target {
            AccessLogTarget::Off => AccessLog::Off,
            AccessLogTarget::Stderr => AccessLog::Stderr,
            AccessLogTarget::File(path) => {
                let file = open_append(path, guard)?;
                // A new file (rotated, reloaded) does not end in a cut line.
                if let Some(s) = shared() {
                    s[FILE_TORN].store(0, Ordering::Relaxed);
                }
                AccessLog::File(file)
            }
            AccessLogTarget::Syslog => AccessLog::Syslog(Mutex::new(
                SyslogConn::connect().map_err(|source| StartupError::Syslog { key: "access_log", source })?,
            )),
        })
    }

    /// The descriptor lines are written to, if it is one of ours (a file
    /// or a syslog socket), for a child to keep open.
    pub fn raw_fd(&self) -> Option<RawFd> {
        match self {
            AccessLog::Off | AccessLog::Stderr => None,
            AccessLog::File(f) => Some(f.as_raw_fd()),
            AccessLog::Syslog(conn) => Some(conn.lock().unwrap_or_else(PoisonError::into_inner).raw_fd()),
        }
    }

    /// Writes one Combined Log Format line for `entry`, using `scratch` as
    /// the line buffer. A line that cannot be written whole (a full disk, a
    /// file at its size limit, a reader that does not read) is counted;
    /// returns an error for the caller to report at most once a minute
    /// across the whole server (see `ACCESS_WARNING_INTERVAL`), saying how
    /// many lines were lost since the last report, and `Ok` otherwise.
    pub fn record(&self, scratch: &mut Vec<u8>, entry: &Entry<'_>) -> io::Result<()> {
        if matches!(self, AccessLog::Off) {
            return Ok(());
        }
        format_line(scratch, entry, SystemTime::now());
        let written = match self {
            AccessLog::Off => return Ok(()),
            AccessLog::Stderr => match write_stderr(scratch) {
                Ok(Sent::Delivered) => Ok(()),
                Ok(Sent::Dropped) => {
                    Err(io::Error::new(io::ErrorKind::WouldBlock, "stderr is not being read: line dropped"))
                }
                Err(e) => Err(e),
            },
            AccessLog::File(f) => append_line(f, scratch),
            AccessLog::Syslog(conn) => {
                let line = scratch.strip_suffix(b"\n").unwrap_or(scratch);
                let msg = String::from_utf8_lossy(line).into_owned();
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                match conn.send(log::Level::Info, msg) {
                    Ok(Sent::Delivered) => Ok(()),
                    Ok(Sent::Dropped) => {
                        Err(io::Error::new(io::ErrorKind::WouldBlock, "syslog is not reading: line dropped"))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        written.or_else(access_failure_to_report)
    }
}

/// The least time between two warnings that access-log lines were lost,
/// across the whole server: a full disk must not turn every request into a
/// daemon message (nor fill the error log too).
const ACCESS_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Counts a lost access-log line. Returns `Err` (the failure, with the
/// number of lines lost since the last report) if it is time to report
/// one, `Ok` if a report was made less than `ACCESS_WARNING_INTERVAL` ago.
fn access_failure_to_report(e: io::Error) -> io::Result<()> {
    let Some(lost) = report_due(WARNED_AT, LINES_LOST, ACCESS_WARNING_INTERVAL) else {
        return Ok(());
    };
    Err(io::Error::new(
        e.kind(),
        format!(
            "{e}; {lost} line(s) lost since the last warning (lost lines are counted and reported at \
             most once every {}s)",
            ACCESS_WARNING_INTERVAL.as_secs()
        ),
    ))
}

/// Appends `line` (one line, below `PIPE_BUF`) to the `O_APPEND` access-log
/// file with one write. A write cut short (`ENOSPC`, `EFBIG` mid-line)
/// leaves the file ending in part of a line; that is noted in `SHARED`, and
/// the next line written, by whichever process, starts with a newline, so
/// it is never glued to the part. Returns `Ok` if the line was written whole.
fn append_line(file: &File, line: &mut Vec<u8>) -> io::Result<()> {
    let torn = shared().is_some_and(|s| s[FILE_TORN].swap(0, Ordering::Relaxed) != 0);
    if torn {
        line.insert(0, b'\n');
    }
    let (cut, e) = match (&*file).write(line) {
        Ok(n) if n == line.len() => return Ok(()),
        // A part went out: the file now ends mid-line, unless the part was
        // just the newline that ended the earlier cut line.
        Ok(n) => (
            n > usize::from(torn) || (n == 0 && torn),
            io::Error::new(io::ErrorKind::WriteZero, format!("short write ({n} of {} bytes)", line.len())),
        ),
        Err(e) => (torn, e),
    };
    if cut && let Some(s) = shared() {
        s[FILE_TORN].store(1, Ordering::Relaxed);
    }
    Err(e)
}

/// Opens a log file (the access log, or `error_log`) for appending,
/// creating it with mode 0640.
pub(super) fn open_append(path: &Path, guard: Option<Guard>) -> Result<File, StartupError> {
    safeopen::open_for_writing(path, Access::Append, guard)
        .map_err(|source| StartupError::Log { path: path.to_path_buf(), source })
}

/// `client - - [time] "request" status bytes "referer" "user-agent"\n`
fn format_line(out: &mut Vec<u8>, e: &Entry<'_>, now: SystemTime) {
    out.clear();
    let _ = write!(out, "{} - - [", e.client);
    clf_time(out, now);
    out.extend_from_slice(b"] \"");
    escape_into(out, e.request_line, MAX_LOGGED_REQUEST);
    let _ = write!(out, "\" {} {} \"", e.status, e.bytes);
    escape_into(out, e.referer.unwrap_or(b"-"), MAX_LOGGED_HEADER);
    out.extend_from_slice(b"\" \"");
    escape_into(out, e.user_agent.unwrap_or(b"-"), MAX_LOGGED_HEADER);
    out.extend_from_slice(b"\"\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn line_is_escaped_and_capped() {
        let mut out = Vec::new();
        let long = vec![b'a'; 5000];
        let e = Entry {
            client: "::1".parse().unwrap(),
            request_line: b"GET /\"x\n HTTP/1.1",
            status: 200,
            bytes: 12,
            referer: None,
            user_agent: Some(&long),
        };
        format_line(&mut out, &e, UNIX_EPOCH);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with(
            "::1 - - [01/Jan/1970:00:00:00 +0000] \"GET /\\x22x\\x0A HTTP/1.1\" 200 12 \"-\" \"aaa"
        ));
        assert!(line.len() < 4096 && line.ends_with("\"\n") && line.matches('\n').count() == 1);
    }
}
