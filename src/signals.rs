//! Signals into the accept loop: each handler only sets a flag and writes a
//! byte to a self-pipe, and the parent's `poll` watches the pipe's read end.
//!
//! Runs in: parent. signal-hook installs its handlers with `SA_RESTART`, so
//! a flag alone would never interrupt a blocking call; the pipe is what
//! wakes the loop, and the flags say which signals arrived. Children replace
//! these handlers first thing (`child.rs`).
//!
//! Once the accept loop runs, the handled signals are blocked except while
//! the parent waits in `ppoll`, which unblocks them atomically for the
//! wait. So they arrive only there: never in the middle of a `fork` (which
//! the kernel would restart from scratch) or an `accept`, and the many
//! `SIGCHLD`s of a busy second collapse into one wake-up per round of the
//! loop. Nothing is lost: a blocked signal stays pending until the next wait.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use nix::poll::{PollFd, ppoll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::time::TimeSpec;

/// The installed handlers and the pipe that reports them.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    write_fds: Vec<RawFd>,
    /// The signal mask from before `block_outside_poll`: what `poll`
    /// waits with, and what a child restores.
    open_mask: SigSet,
}

impl Signals {
    /// Installs a flag-and-pipe handler for each of `signals`.
    pub fn install(signals: &[Signal]) -> io::Result<Signals> {
        let (wake, writer) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let mut flags = Vec::new();
        let mut write_fds = Vec::new();
        for &sig in signals {
            let flag = Arc::new(AtomicBool::new(false));
            // The flag is registered first: signal-hook runs actions in
            // registration order, so the flag is set before the wake-up.
            signal_hook::flag::register(sig as i32, Arc::clone(&flag))?;
            let w = writer.try_clone()?;
            write_fds.push(w.as_raw_fd());
            signal_hook::low_level::pipe::register(sig as i32, w)?;
            flags.push((sig, flag));
        }
        let open_mask = SigSet::thread_get_mask().map_err(io::Error::from)?;
        Ok(Signals { wake, flags, write_fds, open_mask })
    }

    /// Blocks the handled signals; from now on they are delivered only
    /// inside `poll`.
    pub fn block_outside_poll(&self) -> nix::Result<()> {
        let mut handled = SigSet::empty();
        for (sig, _) in &self.flags {
            handled.add(*sig);
        }
        handled.thread_block()
    }

    /// Restores the mask from before `block_outside_poll` (in a child,
    /// which inherits the blocked mask across `fork`).
    pub fn unblock(&self) -> nix::Result<()> {
        self.open_mask.thread_set_mask()
    }

    /// `ppoll` on `fds` for at most `timeout` (`None`: no limit), with the
    /// handled signals unblocked for exactly the duration of the wait.
    /// Returns `EINTR` when a signal arrived.
    pub fn poll(&self, fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> nix::Result<i32> {
        ppoll(fds, timeout.map(TimeSpec::from), Some(self.open_mask))
    }

    /// The descriptor that becomes readable when a signal has arrived.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Every descriptor of the self-pipe, for a child to close.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = self.write_fds.clone();
        fds.push(self.wake.as_raw_fd());
        fds
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
