//! The only module with `unsafe` code: `fork`, setting a signal disposition,
//! and `_exit`. Each block is one call long and says why it is sound.
//!
//! Runs in: parent (`fork`) and child (the rest).
#![allow(unsafe_code)]

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
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
