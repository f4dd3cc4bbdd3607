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

use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, send};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{dup2_stderr, isatty};
use syslog::LogFormat;

use crate::config::{AccessLogTarget, ErrorLogTarget};
use crate::error::StartupError;
use crate::http::civil;
use crate::safeopen::{self, Access, Guard};

/// Longest request line written to the access log (after escaping); the
/// rest is cut, as thttpd's `%.80s` does, so a line stays one atomic write.
const MAX_LOGGED_REQUEST: usize = 1024;
/// Longest `Referer` and `User-Agent` written (after escaping).
const MAX_LOGGED_HEADER: usize = 512;
/// How long a child waits for a syslog receiver with a full queue, or for
/// a stderr reader with a full pipe or a stopped terminal, before it drops
/// the message; after one such drop it waits no more. Long enough for a
/// busy reader to catch up, short enough that a stalled one holds a child
/// (and its process slot) only briefly. The parent never waits.
const CHILD_LOG_WAIT: Duration = Duration::from_millis(200);

/// The pid of the server's main process (set at start and again after
/// detaching): the one process that must never wait on a log.
static PARENT_PID: AtomicU32 = AtomicU32::new(0);

/// Records the calling process as the server's parent: call after
/// detaching, whose forks change the pid.
pub fn set_parent_process() {
    PARENT_PID.store(std::process::id(), Ordering::Relaxed);
}

fn in_parent() -> bool {
    PARENT_PID.load(Ordering::Relaxed) == std::process::id()
}

/// What became of a syslog message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Delivered,
    /// The receiver's queue stayed full: the message was dropped.
    Dropped,
}

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
    fn connect() -> io::Result<SyslogConn> {
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
    fn raw_fd(&self) -> RawFd {
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
    fn send(&mut self, level: log::Level, msg: String) -> io::Result<Sent> {
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

/// Writes `buf` to `fd` with `write_now`, a write that does not block,
/// waiting for room until `deadline` whenever it says `EAGAIN`. Returns the
/// bytes written: all of them, none (no room in time), or a part.
fn write_within(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    deadline: Instant,
    write_now: impl Fn(&[u8]) -> nix::Result<usize>,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match write_now(&buf[done..]) {
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                // Past the deadline, no second try: poll and write could
                // disagree about room, and this must not spin.
                if Instant::now() >= deadline || !wait_writable(fd, deadline)? {
                    return Ok(done);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// How this process writes to stderr, decided once at start by
/// `prepare_stderr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StderrKind {
    /// A regular file, `/dev/null`, or a pipe or terminal that could not be
    /// reopened: written after `poll` says there is room.
    Plain = 0,
    /// A socket (the journal's stream, a container runtime's): sent with
    /// `MSG_DONTWAIT`.
    Socket = 1,
    /// A pipe or terminal reopened as a description of our own with
    /// `O_NONBLOCK`.
    Private = 2,
}

static STDERR_KIND: AtomicU8 = AtomicU8::new(StderrKind::Plain as u8);

/// Lines this process dropped because stderr's reader did not read, and
/// whether it waited once in vain (then it waits no more). Kept with the
/// pid it belongs to: a child starts from zero, not from its parent's count.
struct StderrState {
    pid: u32,
    dropped: u64,
    stalled: bool,
}

static STDERR_STATE: Mutex<StderrState> = Mutex::new(StderrState { pid: 0, dropped: 0, stalled: false });

/// Makes writes to stderr unable to block this process and its children
/// for long: see the module doc. Returns how stderr is to be written.
fn prepare_stderr() -> StderrKind {
    let Ok(st) = fstat(io::stderr()) else {
        return StderrKind::Plain;
    };
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind == SFlag::S_IFSOCK {
        return StderrKind::Socket;
    }
    // Only pipes and terminals: opening another character device can have
    // effects of its own, and a regular file reopened would lose the
    // launcher's offset (`2>file` without `O_APPEND`).
    if kind != SFlag::S_IFIFO && !(kind == SFlag::S_IFCHR && isatty(io::stderr()).unwrap_or(false)) {
        return StderrKind::Plain;
    }
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    match open("/proc/self/fd/2", flags, Mode::empty()) {
        // dup2 leaves fd 2 without FD_CLOEXEC, as stderr was.
        Ok(own) if dup2_stderr(&own).is_ok() => StderrKind::Private,
        _ => StderrKind::Plain,
    }
}

/// Writes `line` to stderr with one write (or send) unless its reader has
/// no room: then the parent drops it at once and a child after waiting
/// `CHILD_LOG_WAIT` (once; after that it too drops at once). The lines
/// dropped are counted and reported with the next line that gets through.
/// Returns whether `line` was written or dropped, or the write's error.
fn write_stderr(line: &[u8]) -> io::Result<Sent> {
    let mut state = STDERR_STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if state.pid != std::process::id() {
        *state = StderrState { pid: std::process::id(), dropped: 0, stalled: false };
    }
    let wait = if in_parent() || state.stalled { Duration::ZERO } else { CHILD_LOG_WAIT };
    let deadline = Instant::now() + wait;
    if state.dropped > 0 {
        let note = stderr_line(
            log::Level::Warn,
            &format!("{} lines to stderr were dropped: its reader was not reading", state.dropped),
        );
        if write_stderr_within(note.as_bytes(), deadline)? == note.len() {
            state.dropped = 0;
        }
    }
    let sent = write_stderr_within(line, deadline)?;
    if sent == line.len() {
        return Ok(Sent::Delivered);
    }
    state.dropped += 1;
    state.stalled = !in_parent();
    Ok(Sent::Dropped)
}

/// Writes `buf` to stderr as its kind says, waiting for room until
/// `deadline`. Returns the bytes written: all, none, or (a terminal, a
/// stream socket) a part.
fn write_stderr_within(buf: &[u8], deadline: Instant) -> io::Result<usize> {
    let fd = io::stderr();
    let fd = fd.as_fd();
    match STDERR_KIND.load(Ordering::Relaxed) {
        k if k == StderrKind::Socket as u8 => write_within(fd, buf, deadline, |b| {
            send(fd.as_raw_fd(), b, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
        }),
        k if k == StderrKind::Private as u8 => write_within(fd, buf, deadline, |b| nix::unistd::write(fd, b)),
        _ => {
            // A shared blocking description: write only once poll says
            // there is room (always, for a file; for a pipe, room for at
            // least PIPE_BUF bytes, more than a line).
            if !wait_writable(fd, deadline)? {
                return Ok(0);
            }
            loop {
                match nix::unistd::write(fd, buf) {
                    Err(Errno::EINTR) => {}
                    other => return Ok(other?),
                }
            }
        }
    }
}

/// Waits until `fd` is writable or `deadline` passes. Returns whether it is.
fn wait_writable(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
        let ms = PollTimeout::try_from(left.as_millis()).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) if !left.is_zero() => {}
            Err(Errno::EINTR) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A daemon message as written to stderr: with the sd-daemon `<N>` prefix
/// when stderr is the journal, else tagged with the writing process's pid.
fn stderr_line(level: log::Level, msg: &str) -> String {
    if STDERR_IS_JOURNAL.load(Ordering::Relaxed) {
        // journald reads the priority from the `<N>` prefix and stamps
        // ident and pid itself (sd-daemon(3)).
        format!("<{}>{msg}\n", syslog_priority(level))
    } else {
        format!("forkhttpd[{}]: {}: {msg}\n", std::process::id(), level.as_str().to_ascii_lowercase())
    }
}

/// Where daemon messages go while it is `Some`: the system log. `None`:
/// the `error_log` file if there is one, else stderr. Set once, at start.
static SYSLOG: Mutex<Option<SyslogConn>> = Mutex::new(None);

/// The `error_log` file, while daemon messages go to one; reopened by the
/// parent with the access log.
static ERROR_FILE: Mutex<Option<File>> = Mutex::new(None);

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
        let echo =
            STARTING.load(Ordering::Relaxed) && !(to_syslog && STDERR_IS_JOURNAL.load(Ordering::Relaxed));
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

/// Whether stderr is a stream to systemd's journal (set once by `init`).
static STDERR_IS_JOURNAL: AtomicBool = AtomicBool::new(false);

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
    *SYSLOG.lock().unwrap_or_else(PoisonError::into_inner) = None;
    *ERROR_FILE.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

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
/// reader can block (see the module doc), and records the calling process
/// as the parent. Call once, first thing; a second call is ignored.
pub fn init() {
    set_parent_process();
    STDERR_IS_JOURNAL.store(stderr_is_journal(), Ordering::Relaxed);
    STDERR_KIND.store(prepare_stderr() as u8, Ordering::Relaxed);
    // Mapped now, before any fork, so that every child shares it.
    shared();
    if log::set_boxed_logger(Box::new(DaemonLogger)).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// The descriptor daemon messages go to while they go to the system log,
/// for a child to keep open.
pub fn syslog_fd() -> Option<RawFd> {
    SYSLOG.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(SyslogConn::raw_fd)
}

/// The `error_log` file's descriptor while daemon messages go to one, for
/// a child to keep open: a child's own messages (a path refused for leaving
/// the root) belong in that file too, and once detached its stderr is
/// `/dev/null`.
pub fn error_file_fd() -> Option<RawFd> {
    ERROR_FILE.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(AsRawFd::as_raw_fd)
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
        let file = open_append(path, guard)?;
        *ERROR_FILE.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
        return Ok(());
    }
    // Connected here, in the parent, so children inherit the socket and
    // can log even inside a chroot without `/dev/log`.
    if let Some(conn) = daemon_syslog(target, detaching, under_systemd)? {
        *SYSLOG.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
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
            Err(e) if detaching => {
                return Err(StartupError::Daemon(format!(
                    "refusing to detach: {e}, and every later daemon message would be lost; set \
                     error_log to a file, or run in the foreground"
                )));
            }
            Err(e) => log::warn!("{e}; daemon messages stay on stderr"),
        }
    }
    if detaching && *target == ErrorLogTarget::Stderr {
        return Err(StartupError::Daemon(
            "refusing to detach with error_log = \"stderr\": stderr is /dev/null once detached; \
             set error_log to \"syslog\" or a file"
                .to_string(),
        ));
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
        Ok(file) => *ERROR_FILE.lock().unwrap_or_else(PoisonError::into_inner) = Some(file),
        Err(e) => log::error!("{e}; still writing to the previous error log"),
    }
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
    /// Opens the configured target (in the parent, before any fork). A
    /// file is opened as `safeopen` says, guarding against the account
    /// children run as (`guard`, when the parent is root).
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

/// Slots of `SHARED`, the counters every process of the server shares.
const WARNED_AT: usize = 0;
const LINES_LOST: usize = 1;
const FILE_TORN: usize = 2;
const CLIENT_WARNED_AT: usize = 3;
const CLIENT_WARNINGS: usize = 4;
const CRASH_WARNED_AT: usize = 5;
const CRASH_WARNINGS: usize = 6;
const SLOTS: usize = 7;

/// State shared by the parent and every child (mapped by `init`, before
/// any fork): `WARNED_AT`, the monotonic second (plus one) of the last
/// warning about lost access-log lines; `LINES_LOST`, the lines lost since;
/// `FILE_TORN`, 1 while the access-log file ends in the middle of a line;
/// `CLIENT_WARNED_AT` and `CLIENT_WARNINGS`, the same pair as the first
/// two for `client_warning`; `CRASH_WARNED_AT` and `CRASH_WARNINGS`, the
/// pair for `crash_warning`. `None` if the mapping failed: then every
/// warning is logged, and a cut line is not ended.
static SHARED: OnceLock<Option<&'static [AtomicU64; SLOTS]>> = OnceLock::new();

fn shared() -> Option<&'static [AtomicU64; SLOTS]> {
    *SHARED.get_or_init(|| crate::sys::shared_counters().ok())
}

/// Counts one event in slot `count`, and says whether a report of it is
/// due: when the last report (its time in slot `at`) was `interval` or
/// more ago, across every process of the server. Returns the events
/// counted since the last report, this one included, to the one process
/// that makes the report; `None` to the others. Every event is due
/// without the shared mapping.
fn report_due(at: usize, count: usize, interval: Duration) -> Option<u64> {
    let Some(shared) = shared() else {
        return Some(1);
    };
    shared[count].fetch_add(1, Ordering::Relaxed);
    // CLOCK_MONOTONIC is one clock for every process on the machine, and
    // does not jump with the wall clock.
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| t.tv_sec().unsigned_abs()) + 1;
    let last = shared[at].load(Ordering::Relaxed);
    if last != 0 && now < last.saturating_add(interval.as_secs()) {
        return None;
    }
    // Of the processes that report in the same second, one does.
    shared[at].compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).ok()?;
    Some(shared[count].swap(0, Ordering::Relaxed).max(1))
}

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

/// The least time between two `client_warning`s across the whole server.
const CLIENT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Logs a warning that a client's request or connection causes (a path
/// refused for leaving the root, a connection refused by a PROXY
/// listener) at most once every `CLIENT_WARNING_INTERVAL` across the whole
/// server, saying how many were left out since the last one: a client that
/// repeats the request cannot flood the daemon log. Each of those requests
/// still gets its access-log line.
pub fn client_warning(args: std::fmt::Arguments<'_>) {
    rate_limited_warning(CLIENT_WARNED_AT, CLIENT_WARNINGS, "client", args);
}

/// Logs that a child was killed by a signal (a crash: an abort, a fault)
/// as `client_warning` logs, at most once every `CLIENT_WARNING_INTERVAL`
/// saying how many were left out: a client whose every request crashes
/// its child cannot flood the daemon log either. It counts apart from the
/// client warnings, so that a flood of those never hides a crash.
pub fn crash_warning(args: std::fmt::Arguments<'_>) {
    rate_limited_warning(CRASH_WARNED_AT, CRASH_WARNINGS, "crash", args);
}

/// Logs `args` as a warning if one of its `kind` is due (slots `at` and
/// `count`, see `report_due`), with how many were left out since the last.
fn rate_limited_warning(at: usize, count: usize, kind: &str, args: std::fmt::Arguments<'_>) {
    match report_due(at, count, CLIENT_WARNING_INTERVAL) {
        None => {}
        Some(1) => log::warn!("{args}"),
        Some(n) => log::warn!(
            "{args} ({} such warning(s) before this one were not logged: {kind} warnings are \
             logged at most once every {}s)",
            n - 1,
            CLIENT_WARNING_INTERVAL.as_secs()
        ),
    }
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

/// Opens a log file for appending, creating it with mode 0640.
fn open_append(path: &Path, guard: Option<Guard>) -> Result<File, StartupError> {
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

/// A daemon message made safe to write as log lines, whatever bytes a
/// caller forgot to escape: control characters other than tab become
/// `\xHH`, and a message of several lines (a configuration error with its
/// context) has its later lines indented, so no part of a message can pass
/// for a message of its own.
fn defuse(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.trim_end_matches('\n').chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push(c),
            c if c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\x{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Bytes a client chose (a path, a header), shown in a daemon message
/// escaped exactly as the access log escapes them: `"`, `\`, control and
/// non-ASCII bytes as `\xHH`, at most `MAX_LOGGED_REQUEST` bytes. A file
/// name with a newline or an ESC then cannot forge a line or drive a
/// terminal.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        escape_into(&mut out, self.0, MAX_LOGGED_REQUEST);
        // Every byte escape_into leaves raw is printable ASCII.
        f.write_str(&String::from_utf8_lossy(&out))
    }
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
    let (year, month, day) = civil::from_days(days);
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
    fn escaped_client_bytes_cannot_forge_a_line() {
        let shown = Escaped(b"a\nforkhttpd[1]: error: forged\x1b[2J\"\xff").to_string();
        assert_eq!(shown, "a\\x0Aforkhttpd[1]: error: forged\\x1B[2J\\x22\\xFF");
    }

    #[test]
    fn defused_messages_stay_one_message() {
        assert_eq!(defuse("x\ny\u{1b}\t\n"), "x\n    y\\x1B\t");
        assert_eq!(defuse("plain \"quoted\" \u{e9}"), "plain \"quoted\" \u{e9}");
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
