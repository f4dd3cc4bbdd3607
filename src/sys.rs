//! The only module with `unsafe` code: `fork`, setting a signal disposition,
//! `_exit`, and adopting an inherited descriptor. Each block is one call
//! long and says why it is sound.
//!
//! Runs in: parent (`fork`, adopting descriptors) and child (the rest).
#![allow(unsafe_code)]

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::unistd::{ForkResult, Pid};

/// Which side of a `fork` this process is on.
#[derive(Debug)]
pub enum Forked {
    /// The parent, told the child's pid.
    Parent(Pid),
    /// The new child.
    Child,
}

/// `fork(2)`. Returns the side we are on, or the errno (`EAGAIN` when
/// `RLIMIT_NPROC` or memory runs out).
pub fn fork() -> nix::Result<Forked> {
    // SAFETY: the parent is single-threaded (no helper threads are ever
    // started: signals arrive through a self-pipe, logging is synchronous),
    // so no lock can be held by a thread that does not exist in the child,
    // and the child may allocate freely. The child never returns into the
    // parent's frames: it ends in `exit_child`.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// What a signal should do in the child.
#[derive(Clone, Copy, Debug)]
pub enum Disposition {
    /// The kernel's default action (`SIG_DFL`).
    Default,
    /// Nothing (`SIG_IGN`).
    Ignore,
}

/// Sets `sig`'s disposition, replacing the handler inherited from the parent.
pub fn set_disposition(sig: Signal, disposition: Disposition) -> nix::Result<()> {
    let handler = match disposition {
        Disposition::Default => SigHandler::SigDfl,
        Disposition::Ignore => SigHandler::SigIgn,
    };
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL and SIG_IGN install no Rust code as a handler, so
    // nothing can run at signal time; the process is single-threaded.
    unsafe { sigaction(sig, &action) }.map(drop)
}

/// Ends the child at once with `code`, running no destructors and no
/// `atexit` handlers: those belong to the parent's state that fork copied
/// (the pid file, buffered output) and must not run twice.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and cannot fail; skipping the
    // destructors is the point.
    unsafe { libc::_exit(code) }
}

/// Takes ownership of descriptor `fd`, which this process inherited from
/// whoever started it (systemd socket activation). Returns `EBADF` if it is
/// not open.
pub fn adopt_inherited_fd(fd: RawFd) -> nix::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the descriptor's flags; any integer is a
    // valid argument and an unused one yields EBADF.
    nix::errno::Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the descriptor is open (F_GETFD just succeeded) and nothing
    // else in this process owns it: the socket-activation protocol hands
    // fds 3.. to the process named by LISTEN_PID, and the caller adopts each
    // one exactly once, before any other descriptor is opened that could
    // share the number.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
