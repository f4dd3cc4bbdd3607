//! Writing to stderr without blocking: a pipe or terminal reopened as a
//! description of our own with `O_NONBLOCK`, a socket sent to with
//! `MSG_DONTWAIT`, anything else written once `poll` says there is room;
//! lines dropped are counted and reported (see `wait`). And the form of a
//! daemon message on stderr: with a `<N>` priority prefix for the journal,
//! else tagged with the pid.
//!
//! Runs in: parent (deciding at start how stderr is written) and child
//! (writing).

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::socket::{MsgFlags, send};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::{dup2_stderr, isatty};

use super::wait::{CHILD_LOG_WAIT, Sent, in_parent, wait_writable, write_within};

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
#[derive(Clone, Copy)]
struct StderrState {
    pid: u32,
    dropped: u64,
    stalled: bool,
}

thread_local! {
    /// This process's `StderrState` (it has one thread). Thread-local, not
    /// a static behind a lock: a child that wrote a static (a lock's word,
    /// for every access-log line) would copy the page of the binary's
    /// statics out of its parent's, while its thread's own block is
    /// written anyway (`errno`).
    static STDERR_STATE: Cell<StderrState> = const { Cell::new(StderrState { pid: 0, dropped: 0, stalled: false }) };
}

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
pub(super) fn write_stderr(line: &[u8]) -> io::Result<Sent> {
    let mut state = STDERR_STATE.get();
    if state.pid != std::process::id() {
        state = StderrState { pid: std::process::id(), dropped: 0, stalled: false };
    }
    let sent = write_stderr_counting(line, &mut state);
    STDERR_STATE.set(state);
    sent
}

/// `write_stderr` with this process's `state`, which it updates.
fn write_stderr_counting(line: &[u8], state: &mut StderrState) -> io::Result<Sent> {
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

/// A daemon message as written to stderr: with the sd-daemon `<N>` prefix
/// when stderr is the journal, else tagged with the writing process's pid.
pub(super) fn stderr_line(level: log::Level, msg: &str) -> String {
    if STDERR_IS_JOURNAL.load(Ordering::Relaxed) {
        // journald reads the priority from the `<N>` prefix and stamps
        // ident and pid itself (sd-daemon(3)).
        format!("<{}>{msg}\n", syslog_priority(level))
    } else {
        format!("forkhttpd[{}]: {}: {msg}\n", std::process::id(), level.as_str().to_ascii_lowercase())
    }
}

/// Whether stderr is a stream to systemd's journal (set once by `init`).
static STDERR_IS_JOURNAL: AtomicBool = AtomicBool::new(false);

/// Decides, once at start, whether stderr is the journal and how it is to
/// be written (see `prepare_stderr`).
pub(super) fn init() {
    STDERR_IS_JOURNAL.store(stderr_is_journal(), Ordering::Relaxed);
    STDERR_KIND.store(prepare_stderr() as u8, Ordering::Relaxed);
}

/// Whether stderr is systemd's journal, which gets what syslog gets.
pub(super) fn is_journal() -> bool {
    STDERR_IS_JOURNAL.load(Ordering::Relaxed)
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
