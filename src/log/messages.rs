//! Daemon messages: the logger behind the `log` macros, and where its
//! messages go (stderr, an `error_log` file, or the system log), chosen
//! at start; with the refusal to detach a server that would have nowhere
//! to write them. While the server starts, they go to stderr as well.
//!
//! Runs in: parent (installing, routing, reopening the file) and child
//! (writing through what the parent set up).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use super::access::open_append;
use super::format::{clf_time, defuse};
use super::ratelimit::shared;
use super::stderr::{self, stderr_line, write_stderr};
use super::syslog::SyslogConn;
use super::wait::set_parent_process;
use crate::config::ErrorLogTarget;
use crate::error::StartupError;
use crate::safeopen::Guard;

/// Where daemon messages go while it is `Some`: the system log. `None`:
/// the `error_log` file if there is one, else stderr. Set once, at start.
static SYSLOG: Mutex<Option<SyslogConn>> = Mutex::new(None);

/// The `error_log` file, while daemon messages go to one; reopened by the
/// parent with the access log.
static ERROR_FILE: Mutex<Option<File>> = Mutex::new(None);

/// The descriptors of `SYSLOG` and `ERROR_FILE` (`NO_FD`: none), kept
/// beside them for children to read without a lock: taking a lock writes
/// its word, and a child that writes a static copies the page that holds
/// them all out of its parent's.
static SYSLOG_FD: AtomicI32 = AtomicI32::new(NO_FD);
static ERROR_FILE_FD: AtomicI32 = AtomicI32::new(NO_FD);
const NO_FD: RawFd = -1;

/// Routes daemon messages to `conn` (`None`: not to syslog).
fn set_syslog(conn: Option<SyslogConn>) {
    let mut syslog = SYSLOG.lock().unwrap_or_else(PoisonError::into_inner);
    SYSLOG_FD.store(conn.as_ref().map_or(NO_FD, SyslogConn::raw_fd), Ordering::Relaxed);
    *syslog = conn;
}

/// Routes daemon messages to `file` (`None`: to no file).
fn set_error_file(file: Option<File>) {
    let mut error_file = ERROR_FILE.lock().unwrap_or_else(PoisonError::into_inner);
    ERROR_FILE_FD.store(file.as_ref().map_or(NO_FD, AsRawFd::as_raw_fd), Ordering::Relaxed);
    *error_file = file;
}

/// The descriptor in `fd`, if any.
fn fd_in(fd: &AtomicI32) -> Option<RawFd> {
    Some(fd.load(Ordering::Relaxed)).filter(|&fd| fd != NO_FD)
}

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
        let msg = defuse(&record.args().to_string());
        let mut syslog = SYSLOG.lock().unwrap_or_else(PoisonError::into_inner);
        let to_syslog = syslog.as_mut().is_some_and(|conn| conn.send(record.level(), msg.clone()).is_ok());
        drop(syslog);
        let logged = to_syslog || write_error_file(record.level(), &msg);
        // While starting, the terminal gets what the log gets, unless
        // stderr is the journal that syslog already reaches.
        let echo = STARTING.load(Ordering::Relaxed) && !(to_syslog && stderr::is_journal());
        if logged && !echo {
            return;
        }
        let line = stderr_line(record.level(), &msg);
        // Nowhere is left to report a failure to write to stderr; a line
        // dropped because nobody reads is counted and reported later.
        let _ = write_stderr(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Whether the server is still starting: daemon messages sent to syslog or
/// an `error_log` file go to stderr too, so that whoever started it sees
/// why a start failed and where it listens (see `started`).
static STARTING: AtomicBool = AtomicBool::new(true);

/// Ends the start-up echo of daemon messages to stderr: call once the
/// server has started. From now on they go only where `error_log` says.
pub fn started() {
    STARTING.store(false, Ordering::Relaxed);
}

/// Sends this process's daemon messages to stderr alone from now on: for
/// the process that started a daemon, which prints the daemon's report on
/// the terminal (the daemon has logged it already).
pub fn only_to_stderr() {
    set_syslog(None);
    set_error_file(None);
}

/// Writes `msg` at `level` as one line to the `error_log` file, if there
/// is one. Returns whether the line was written whole.
fn write_error_file(level: log::Level, msg: &str) -> bool {
    let file = ERROR_FILE.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(f) = file.as_ref() else {
        return false;
    };
    let mut line = b"[".to_vec();
    clf_time(&mut line, SystemTime::now());
    let _ =
        writeln!(line, "] forkhttpd[{}]: {}: {msg}", std::process::id(), level.as_str().to_ascii_lowercase());
    // One write on an O_APPEND file: lines from many processes stay whole.
    matches!((&*f).write(&line), Ok(n) if n == line.len())
}

/// Installs the daemon-message logger, writing to stderr (with sd-daemon
/// `<N>` priority prefixes when stderr is the journal) in a way no stalled
/// reader can block (see `stderr`), and records the calling process
/// as the parent. Call once, first thing; a second call is ignored.
pub fn init() {
    set_parent_process();
    stderr::init();
    // Mapped now, before any fork, so that every child shares it.
    shared();
    if log::set_boxed_logger(Box::new(DaemonLogger)).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// The descriptor daemon messages go to while they go to the system log,
/// for a child to keep open. Read without a lock: see `SYSLOG_FD`.
pub fn syslog_fd() -> Option<RawFd> {
    fd_in(&SYSLOG_FD)
}

/// The `error_log` file's descriptor while daemon messages go to one, for
/// a child to keep open: a child's own messages (a path refused for leaving
/// the root) belong in that file too, and once detached its stderr is
/// `/dev/null`. Read without a lock: see `SYSLOG_FD`.
pub fn error_file_fd() -> Option<RawFd> {
    fd_in(&ERROR_FILE_FD)
}

/// Routes daemon messages as `target` says, for a server that will detach
/// (`detaching`) or runs under systemd: see `daemon_syslog`. Returns the
/// reason it refused, or why the file could not be opened.
pub fn route_daemon_messages(
    target: &ErrorLogTarget,
    detaching: bool,
    under_systemd: bool,
    guard: Option<Guard>,
) -> Result<(), StartupError> {
    if let ErrorLogTarget::File(path) = target {
        set_error_file(Some(open_append(path, guard)?));
        return Ok(());
    }
    // Connected here, in the parent, so children inherit the socket and
    // can log even inside a chroot without `/dev/log`.
    if let Some(conn) = daemon_syslog(target, detaching, under_systemd)? {
        set_syslog(Some(conn));
    }
    Ok(())
}

/// For a `target` other than a file (which the caller opens): whether
/// daemon messages go to syslog, connected now, for a server that will
/// detach (`detaching`) or runs under systemd. Installs nothing, so that
/// `--check-config` refuses what start-up refuses by running this very
/// decision. A detached server has no stderr (it is `/dev/null`), so it
/// must have a working target: with `"stderr"`, or with syslog
/// unreachable, this refuses to go on rather than lose every later
/// message. Returns the connection (`None`: stderr), or why it refused.
pub fn daemon_syslog(
    target: &ErrorLogTarget,
    detaching: bool,
    under_systemd: bool,
) -> Result<Option<SyslogConn>, StartupError> {
    let want_syslog = match target {
        ErrorLogTarget::Auto => detaching || under_systemd,
        ErrorLogTarget::Syslog => true,
        ErrorLogTarget::Stderr | ErrorLogTarget::File(_) => false,
    };
    if want_syslog {
        match SyslogConn::connect() {
            Ok(conn) => return Ok(Some(conn)),
            Err(e) if detaching => return Err(StartupError::DetachWithoutSyslog(e)),
            Err(e) => log::warn!("{e}; daemon messages stay on stderr"),
        }
    }
    if detaching && *target == ErrorLogTarget::Stderr {
        return Err(StartupError::DetachToStderr);
    }
    Ok(None)
}

/// Reopens the `error_log` file by its (possibly reloaded) path, for log
/// rotation. Nothing happens unless daemon messages go to a file and
/// `target` names one; on failure the old file stays in use.
pub fn reopen_error_log(target: &ErrorLogTarget, guard: Option<Guard>) {
    let ErrorLogTarget::File(path) = target else {
        return;
    };
    if ERROR_FILE.lock().unwrap_or_else(PoisonError::into_inner).is_none() {
        return;
    }
    match open_append(path, guard) {
        Ok(file) => set_error_file(Some(file)),
        Err(e) => log::error!("{e}; still writing to the previous error log"),
    }
}
