//! The client connection as the child sees it: reads bounded by a deadline,
//! sends that never raise `SIGPIPE`, and file bodies through `sendfile(2)`.
//!
//! Runs in: child. All socket I/O of a connection goes through `Client`, so
//! a TLS stream can later take its place behind the same few methods.
//!
//! Reads wait in `poll(2)` for at most the time left before a deadline, and
//! `poll` is never restarted after a signal, so no read can outlive its
//! deadline. Sends are bounded by `SO_SNDTIMEO` (`send_timeout`): a client
//! that stops reading makes a send fail with `EAGAIN` after that long
//! without progress.

use std::fs::File;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, send};

/// Largest `sendfile` call: Linux caps one call near 2 GiB anyway, and
/// smaller calls keep each blocking step short.
const SENDFILE_CHUNK: usize = 1 << 30;

/// What one bounded read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were read.
    Data(usize),
    /// The client closed its side.
    Eof,
    /// The deadline passed with nothing to read.
    Timeout,
    /// The parent's lifeline closed: the server is stopping.
    Drain,
}

/// One accepted connection.
pub struct Client {
    stream: TcpStream,
}

impl Client {
    /// Wraps an accepted socket: `TCP_NODELAY` so a response's last segment
    /// leaves at once (the head is held back with `MSG_MORE` instead), and
    /// `SO_SNDTIMEO` = `send_timeout`.
    pub fn new(stream: TcpStream, send_timeout: Duration) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(send_timeout))?;
        Ok(Client { stream })
    }

    /// Reads into `buf`, waiting no later than `deadline`. While `lifeline`
    /// is given, its hang-up (the parent closed its end) ends the wait with
    /// `Drain`. Returns `Timeout` once the deadline has passed.
    pub fn read_before(
        &self,
        buf: &mut [u8],
        deadline: Instant,
        lifeline: Option<BorrowedFd<'_>>,
    ) -> io::Result<ReadOutcome> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(ReadOutcome::Timeout);
            }
            // Round up so a sub-millisecond remainder still waits.
            let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
            let mut fds = [
                PollFd::new(self.stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(lifeline.unwrap_or(self.stream.as_fd()), PollFlags::POLLIN),
            ];
            let n = if lifeline.is_some() { 2 } else { 1 };
            match poll(&mut fds[..n], ms_timeout(ms)) {
                Ok(0) => continue,
                Ok(_) => {}
                // A signal interrupted the wait: go round and re-check the deadline.
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if fds[0].any() != Some(true) {
                return Ok(ReadOutcome::Drain);
            }
            match (&self.stream).read(buf) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => return Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends all of `bytes`. With `more`, the kernel holds a partial segment
    /// back (`MSG_MORE`) so that the body that follows shares it.
    pub fn send(&self, bytes: &[u8], more: bool) -> io::Result<()> {
        let mut flags = MsgFlags::MSG_NOSIGNAL;
        if more {
            flags |= MsgFlags::from_bits_retain(libc::MSG_MORE); // nix has no name for it
        }
        let mut sent = 0;
        while sent < bytes.len() {
            match send(self.stream.as_raw_fd(), &bytes[sent..], flags) {
                Ok(n) => sent += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(send_timed_out()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `offset` with `sendfile(2)`, looping
    /// on partial sends. A file that shrinks under us ends the connection
    /// with `UnexpectedEof`: the promised `Content-Length` cannot be met.
    pub fn send_file(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let mut off = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = offset + len;
        while (off as u64) < end {
            let want = usize::try_from(end - off as u64).unwrap_or(usize::MAX).min(SENDFILE_CHUNK);
            match nix::sys::sendfile::sendfile(&self.stream, file, Some(&mut off), want) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
                }
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(send_timed_out()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Closes our sending side and, when the client may still be sending
    /// (a body we refused, pipelined requests we will not answer), reads
    /// and discards its bytes for a short while first. Closing a socket
    /// with unread input makes the kernel send a reset, which can destroy
    /// the response we just sent before the client reads it (Apache's
    /// "lingering close").
    pub fn finish(&self, linger: bool) {
        // A failure here means the peer is already gone; there is no one to tell.
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        if !linger {
            return;
        }
        let deadline = Instant::now() + LINGER_TIME;
        let mut sink = [0u8; 4096];
        for _ in 0..LINGER_READS {
            match self.read_before(&mut sink, deadline, None) {
                Ok(ReadOutcome::Data(_)) => continue,
                _ => return,
            }
        }
    }
}

/// How long a lingering close waits for the client to stop sending.
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How many reads a lingering close discards at most (64 KiB at 4 KiB each).
const LINGER_READS: usize = 16;

fn ms_timeout(ms: i32) -> PollTimeout {
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

fn send_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client accepted no data within send_timeout")
}
