//! How long a log write may wait for its reader: the parent never, a
//! child at most `CHILD_LOG_WAIT`, once. The writes of the syslog and
//! stderr sinks go through here, so no log sink can stall the server.
//!
//! Runs in: parent and child (whichever writes a line).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long a child waits for a syslog receiver with a full queue, or for
/// a stderr reader with a full pipe or a stopped terminal, before it drops
/// the message; after one such drop it waits no more. Long enough for a
/// busy reader to catch up, short enough that a stalled one holds a child
/// (and its process slot) only briefly. The parent never waits.
pub(super) const CHILD_LOG_WAIT: Duration = Duration::from_millis(200);

/// The pid of the server's main process (set at start and again after
/// detaching): the one process that must never wait on a log.
static PARENT_PID: AtomicU32 = AtomicU32::new(0);

/// Records the calling process as the server's parent: call after
/// detaching, whose forks change the pid.
pub fn set_parent_process() {
    PARENT_PID.store(std::process::id(), Ordering::Relaxed);
}

/// Whether the calling process is the server's parent (see
/// `set_parent_process`), which never waits on a log.
pub(super) fn in_parent() -> bool {
    PARENT_PID.load(Ordering::Relaxed) == std::process::id()
}

/// What became of a syslog message or a stderr line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// Written whole.
    Delivered,
    /// The receiver's queue stayed full: the message was dropped.
    Dropped,
}

/// Writes `buf` to `fd` with `write_now`, a write that does not block,
/// waiting for room until `deadline` whenever it says `EAGAIN`. Returns the
/// bytes written: all of them, none (no room in time), or a part.
pub(super) fn write_within(
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

/// Waits until `fd` is writable or `deadline` passes. Returns whether it is.
pub(super) fn wait_writable(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<bool> {
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
