//! Signals into the accept loop: each handler only sets a flag and writes a
//! byte to a self-pipe, and the parent's `poll` watches the pipe's read end.
//!
//! Runs in: parent. signal-hook installs its handlers with `SA_RESTART`, so
//! a flag alone would never interrupt a blocking call; the pipe is what
//! wakes the loop, and the flags say which signals arrived. Children replace
//! these handlers first thing (`child.rs`).

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;

/// The installed handlers and the pipe that reports them.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    write_fds: Vec<RawFd>,
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
        Ok(Signals { wake, flags, write_fds })
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
