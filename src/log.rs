//! Logging: daemon messages through the `log` facade, and the access log.
//!
//! Runs in: parent (set-up, opening files, connecting to syslog) and child
//! (writing lines).
//!
//! Daemon messages go to stderr, or to the system log (ident `forkhttpd`,
//! facility `daemon`) once `use_syslog` is called; either way each message
//! carries its level and the pid of the process that wrote it, read at the
//! time of writing, so a child's message is told from the parent's.
//! Access-log lines are written with a single `write(2)` each, on a file the
//! parent opened with `O_APPEND` (or on stderr, or as one syslog message);
//! each line is capped well below `PIPE_BUF`, so lines from many children
//! never interleave.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::AccessLogTarget;
use crate::error::StartupError;

/// Longest request line written to the access log (after escaping); the
/// rest is cut, as thttpd's `%.80s` does, so a line stays one atomic write.
const MAX_LOGGED_REQUEST: usize = 1024;
/// Longest `Referer` and `User-Agent` written (after escaping).
const MAX_LOGGED_HEADER: usize = 512;

/// A connection to the system log, tagged `forkhttpd`, facility `daemon`.
pub struct SyslogConn(syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>);

impl std::fmt::Debug for SyslogConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyslogConn")
    }
}

impl SyslogConn {
    fn connect() -> io::Result<SyslogConn> {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "forkhttpd".to_string(),
            pid: std::process::id(),
        };
        syslog::unix(formatter).map(SyslogConn).map_err(|e| io::Error::other(e.to_string()))
    }

    /// The connected socket's descriptor, for a child to keep open.
    fn raw_fd(&self) -> RawFd {
        match &self.0.backend {
            syslog::LoggerBackend::Unix(s) => s.as_raw_fd(),
            syslog::LoggerBackend::UnixStream(s) => s.get_ref().as_raw_fd(),
            syslog::LoggerBackend::Udp(s, _) => s.as_raw_fd(),
            syslog::LoggerBackend::Tcp(s) => s.get_ref().as_raw_fd(),
        }
    }

    /// Sends `msg` at `level`, stamped with the pid of the calling process
    /// (the formatter's pid is fixed when it is built; children must report
    /// their own).
    fn send(&mut self, level: log::Level, msg: String) -> io::Result<()> {
        let conn = &mut self.0;
        conn.formatter.pid = std::process::id();
        let sent = match level {
            log::Level::Error => conn.err(msg),
            log::Level::Warn => conn.warning(msg),
            log::Level::Info => conn.info(msg),
            log::Level::Debug | log::Level::Trace => conn.debug(msg),
        };
        sent.map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Where daemon messages go while it is `Some`: the system log. `None`:
/// stderr. Swapped once, when the parent detaches or finds systemd.
static SYSLOG: Mutex<Option<SyslogConn>> = Mutex::new(None);

/// The daemon-message logger behind the `log` macros.
struct DaemonLogger;

impl log::Log for DaemonLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut syslog = SYSLOG.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = syslog.as_mut()
            && conn.send(record.level(), record.args().to_string()).is_ok()
        {
            return;
        }
        let line = if STDERR_IS_JOURNAL.load(Ordering::Relaxed) {
            // journald reads the priority from the `<N>` prefix and stamps
            // ident and pid itself (sd-daemon(3)).
            format!("<{}>{}\n", syslog_priority(record.level()), record.args())
        } else {
            format!(
                "forkhttpd[{}]: {}: {}\n",
                std::process::id(),
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            )
        };
        // Nowhere is left to report a failure to write to stderr.
        let _ = io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Whether stderr is a stream to systemd's journal (set once by `init`).
static STDERR_IS_JOURNAL: AtomicBool = AtomicBool::new(false);

/// The syslog(3) priority of a `log` level, as sd-daemon(3) prefixes use.
fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Whether stderr is the journal stream systemd names in `$JOURNAL_STREAM`
/// (`DEVICE:INODE` of the stream it connected). Compared with stderr's own
/// `fstat`, so a child process whose stderr was redirected elsewhere does
/// not inherit the answer through the environment.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    nix::sys::stat::fstat(io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// Installs the daemon-message logger, writing to stderr (with sd-daemon
/// `<N>` priority prefixes when stderr is the journal). Call once, first
/// thing; a second call is ignored.
pub fn init() {
    STDERR_IS_JOURNAL.store(stderr_is_journal(), Ordering::Relaxed);
    if log::set_boxed_logger(Box::new(DaemonLogger)).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Sends daemon messages to the system log from now on. The socket is
/// connected here, in the parent, so children inherit it and can log even
/// inside a chroot without `/dev/log`.
pub fn use_syslog() -> io::Result<()> {
    let conn = SyslogConn::connect()?;
    *SYSLOG.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
    Ok(())
}

/// The descriptor daemon messages go to while they go to the system log,
/// for a child to keep open.
pub fn syslog_fd() -> Option<RawFd> {
    SYSLOG.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(SyslogConn::raw_fd)
}

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
    /// Opens the configured target (in the parent, before any fork).
    pub fn open(target: &AccessLogTarget) -> Result<AccessLog, StartupError> {
        Ok(match target {
            AccessLogTarget::Off => AccessLog::Off,
            AccessLogTarget::Stderr => AccessLog::Stderr,
            AccessLogTarget::File(path) => AccessLog::File(open_append(path)?),
            AccessLogTarget::Syslog => AccessLog::Syslog(Mutex::new(
                SyslogConn::connect()
                    .map_err(|source| StartupError::Log { path: "/dev/log".into(), source })?,
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
    /// the line buffer. Returns the error if the line could not be written
    /// whole (a full disk, a removed file); the caller decides how often to
    /// say so, since every request would otherwise repeat it.
    pub fn record(&self, scratch: &mut Vec<u8>, entry: &Entry<'_>) -> io::Result<()> {
        if matches!(self, AccessLog::Off) {
            return Ok(());
        }
        format_line(scratch, entry, SystemTime::now());
        let written = match self {
            AccessLog::Off => return Ok(()),
            AccessLog::Stderr => io::stderr().write(scratch),
            AccessLog::File(f) => (&*f).write(scratch),
            AccessLog::Syslog(conn) => {
                let line = scratch.strip_suffix(b"\n").unwrap_or(scratch);
                let msg = String::from_utf8_lossy(line).into_owned();
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                conn.send(log::Level::Info, msg).map(|()| scratch.len())
            }
        }?;
        if written != scratch.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write ({written} of {} bytes)", scratch.len()),
            ));
        }
        Ok(())
    }
}

/// Opens a log file for appending, creating it with mode 0640.
fn open_append(path: &Path) -> Result<File, StartupError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
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

/// Appends `s` with `"`, `\`, control and non-ASCII bytes as `\xHH`, so a
/// client cannot forge lines or fields; stops after `max` output bytes.
fn escape_into(out: &mut Vec<u8>, s: &[u8], max: usize) {
    let start = out.len();
    for &b in s {
        if out.len() - start >= max {
            break;
        }
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

/// Appends the time as `26/Nov/2026:17:39:36 +0000`. Always UTC: a chrooted
/// child cannot read the time zone files, and UTC logs sort and merge cleanly.
fn clf_time(out: &mut Vec<u8>, t: SystemTime) {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clf_time_known_dates() {
        let mut out = Vec::new();
        clf_time(&mut out, UNIX_EPOCH + Duration::from_secs(971_186_136));
        assert_eq!(out, b"10/Oct/2000:13:55:36 +0000");
        out.clear();
        clf_time(&mut out, UNIX_EPOCH + Duration::from_secs(1_709_210_096));
        assert_eq!(out, b"29/Feb/2024:12:34:56 +0000");
    }

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
