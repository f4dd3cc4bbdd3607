//! Signals into the accept loop: each handler only sets a flag and writes a
//! byte to a self-pipe, and the parent's `poll` watches the pipe's read end.
//!
//! Runs in: parent. signal-hook installs its handlers with `SA_RESTART`, so
//! a flag alone would never interrupt a blocking call; the pipe is what
//! wakes the loop, and the flags say which signals arrived. Children replace
//! these handlers first thing (`child.rs`).
//!
//! The handled signals are blocked before `main` runs, by a constructor
//! the C library calls before the Rust runtime starts (`block`, from the
//! binary's `.init_array`), again by the first line of `main`
//! (`take_over`), and stay blocked except while the parent waits in
//! `ppoll`, which unblocks them atomically for the wait. So they arrive
//! only there: never before the handlers exist (a `SIGHUP` during start-up
//! waits for the loop instead of killing the process), never in the middle
//! of a `fork` (which the kernel would restart from scratch) or an
//! `accept`, and the many `SIGCHLD`s of a busy second collapse into one
//! wake-up per round of the loop. Nothing is lost: a blocked signal stays
//! pending until the next wait.
//!
//! One trap in that design: `ppoll` looks for pending signals only when it
//! is about to sleep, so when a descriptor is ready on entry it returns it
//! and leaves the signal pending (blocked again). A listener that stays
//! ready (a flood of connections) would starve `SIGCHLD` and `SIGTERM`
//! indefinitely. So `poll`, whenever it returns ready descriptors, opens
//! the mask for a moment and lets whatever is pending run its handler.
//!
//! The mask and dispositions a launcher leaves across `exec` are not
//! trusted: `take_over` sets the mask to exactly the handled signals and
//! gives every ignored signal back its default action, so a launcher that
//! blocked `SIGCHLD` and `SIGTERM` cannot make the parent deaf.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use nix::poll::{PollFd, ppoll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::time::TimeSpec;

use crate::sys::{self, Disposition};

/// Sets this process's signal mask to exactly `handled` (blocking them
/// until `ppoll`, unblocking whatever the launcher blocked), and resets
/// every signal the launcher left ignored to its default action, except
/// the two this server ignores by its own choice, whatever the launcher
/// did: `SIGPIPE` (as the Rust runtime does: a vanished client is an
/// `EPIPE`, not a death) and `SIGXFSZ` (a log file at the file-size limit
/// is a write failing with `EFBIG`, reported, not a child killed after its
/// response). Call first thing in `main`.
pub fn take_over(handled: &[Signal]) -> nix::Result<()> {
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&set_of(handled)), None)?;
    for sig in Signal::iterator() {
        match sig {
            Signal::SIGKILL | Signal::SIGSTOP => {}
            Signal::SIGPIPE | Signal::SIGXFSZ => sys::set_disposition(sig, Disposition::Ignore)?,
            _ if sys::is_ignored(sig)? => sys::set_disposition(sig, Disposition::Default)?,
            _ => {}
        }
    }
    Ok(())
}

/// Adds `signals` to this thread's blocked mask. Needs nothing of the
/// Rust runtime (no allocation, no thread-locals): the binary's
/// constructor calls it before `main`.
pub fn block(signals: &[Signal]) -> nix::Result<()> {
    set_of(signals).thread_block()
}

fn set_of(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    for &sig in signals {
        set.add(sig);
    }
    set
}

/// The installed handlers and the pipe that reports them.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    handled: SigSet,
}

/// The signal with which the parent asks a child to give its idle
/// keep-alive connection back (`server::give_back`).
pub const GIVE_BACK_SIGNAL: Signal = Signal::SIGUSR2;

/// The signal dispositions a child runs with. `SIGTERM` and `SIGQUIT` keep
/// their default (die), so a signal to the whole process group still stops
/// children; `SIGINT` (a terminal's ^C), `SIGHUP` (reload) and `SIGUSR1`
/// (log reopening) are the parent's to act on, and must not kill a child
/// that is halfway through a response. `SIGPIPE` stays ignored, as the Rust
/// runtime set it, so a vanished client is an `EPIPE`, not a death.
const CHILD_SIGNALS: [(Signal, Disposition); 6] = [
    (Signal::SIGTERM, Disposition::Default),
    (Signal::SIGQUIT, Disposition::Default),
    (Signal::SIGCHLD, Disposition::Default),
    (Signal::SIGINT, Disposition::Ignore),
    (Signal::SIGHUP, Disposition::Ignore),
    (Signal::SIGUSR1, Disposition::Ignore),
];

/// Sets a forked process's signal dispositions (`CHILD_SIGNALS`) and its
/// signal mask, which the parent keeps full outside its wait (a child, or
/// the key process, must not): only `GIVE_BACK_SIGNAL` stays blocked, let
/// in by a child while it waits for a request (see `stream`).
pub fn reset_after_fork() -> nix::Result<()> {
    for (sig, disposition) in CHILD_SIGNALS {
        sys::set_disposition(sig, disposition)?;
    }
    set_of(&[GIVE_BACK_SIGNAL]).thread_set_mask()
}

impl Signals {
    /// Installs a flag-and-pipe handler for each of `signals`, and blocks
    /// them outside `poll`.
    pub fn install(signals: &[Signal]) -> io::Result<Signals> {
        let (wake, writer) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let mut flags = Vec::new();
        for &sig in signals {
            let flag = Arc::new(AtomicBool::new(false));
            // The flag is registered first: signal-hook runs actions in
            // registration order, so the flag is set before the wake-up.
            signal_hook::flag::register(sig as i32, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(sig as i32, writer.try_clone()?)?;
            flags.push((sig, flag));
        }
        // Blocked already if `take_over` ran; blocking here too keeps the
        // promise that they arrive only inside `poll` whatever the caller did.
        let handled = set_of(signals);
        handled.thread_block().map_err(io::Error::from)?;
        Ok(Signals { wake, flags, handled })
    }

    /// `ppoll` on `fds` for at most `timeout` (`None`: no limit), with the
    /// handled signals unblocked for exactly the duration of the wait.
    /// Returns `EINTR` when a signal interrupted the wait; a signal that
    /// was pending when descriptors were ready is delivered before the
    /// return, so `arrived` tells of it.
    pub fn poll(&self, fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> nix::Result<i32> {
        let ready = ppoll(fds, timeout.map(TimeSpec::from), Some(SigSet::empty()))?;
        if ready > 0 {
            // The kernel runs the handlers of pending signals on the way
            // back from the first call; the second blocks them again.
            SigSet::empty().thread_set_mask()?;
            self.handled.thread_set_mask()?;
        }
        Ok(ready)
    }

    /// Whether a signal has arrived since the last `pending`.
    pub fn arrived(&self) -> bool {
        self.flags.iter().any(|(_, flag)| flag.load(Ordering::SeqCst))
    }

    /// The descriptor that becomes readable when a signal has arrived.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the pipe and returns the signals that arrived since the last
    /// call, each once, in the order they were installed.
    pub fn pending(&mut self) -> Vec<Signal> {
        let mut sink = [0u8; 64];
        // Read until EAGAIN: the bytes carry no information, only the wake-up.
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(sig, _)| *sig)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::PollFlags;
    use std::io::Write;

    /// Whatever a launcher blocked, the mask afterwards is exactly the
    /// handled signals. (Inside `ppoll` the mask is empty, so the running
    /// server shows this only between waits; the mask is per thread, so
    /// this test's thread can show it.)
    #[test]
    fn take_over_sets_the_mask_to_exactly_the_handled_signals() {
        let launcher = set_of(&[Signal::SIGWINCH, Signal::SIGUSR2]);
        launcher.thread_block().unwrap();
        take_over(&[Signal::SIGUSR1]).unwrap();
        let mask = SigSet::thread_get_mask().unwrap();
        let blocked: Vec<Signal> = Signal::iterator().filter(|s| mask.contains(*s)).collect();
        assert_eq!(blocked, [Signal::SIGUSR1]);
    }

    /// A signal pending while a descriptor is ready reaches its handler in
    /// that same `poll`: a listener that never empties cannot starve it.
    #[test]
    fn a_pending_signal_is_delivered_when_descriptors_are_ready() {
        // Thread-directed, the signal stays with this test's thread, which
        // `install` made block it.
        let mut signals = Signals::install(&[Signal::SIGUSR2]).unwrap();
        let (busy, mut writer) = UnixStream::pair().unwrap();
        writer.write_all(b"x").unwrap();
        nix::sys::signal::raise(Signal::SIGUSR2).unwrap();
        assert!(!signals.arrived(), "the signal ran its handler while blocked");
        let mut fds = [PollFd::new(busy.as_fd(), PollFlags::POLLIN)];
        assert_eq!(signals.poll(&mut fds, Some(Duration::ZERO)), Ok(1));
        assert!(
            signals.arrived(),
            "the pending signal was left pending by a poll that found a ready descriptor"
        );
        assert_eq!(signals.pending(), vec![Signal::SIGUSR2]);
    }
}
