//! The client's TCP socket as the child sees it: reads bounded by a deadline,
//! sends that never raise `SIGPIPE`, and file bodies through `sendfile(2)`.
//!
//! Runs in: child. `Client` is the plain form of `transport::Transport`,
//! through which all of a connection's I/O goes; the TLS form
//! (`tls::stream`) keeps a `Client` beneath it for the same deadlines and
//! pacing.
//!
//! Reads wait in `ppoll(2)` for at most the time left before a deadline, and
//! `ppoll` is never restarted after a signal, so no read can outlive its
//! deadline; that wait is also the only place the give-back signal gets in
//! (`server::give_back`). The socket is non-blocking, so a send never waits inside the
//! kernel: when the client's buffers are full, the child waits in `poll` for
//! room, up to the earlier of two deadlines (see `Pace`): `send_timeout`
//! after the last progress, and the point where the response falls too far
//! behind `min_send_rate`. `SO_SNDTIMEO` would bound each internal step of a
//! `sendfile` instead, letting one call run several times the timeout. A
//! send that completes at once costs no `poll`.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll, ppoll};
use nix::sys::signal::SigSet;
use nix::sys::socket::{MsgFlags, send, sendmsg};
use nix::sys::time::TimeSpec;

use crate::sys;

/// Largest `sendfile` call: Linux caps one call near 2 GiB anyway.
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

/// The limits on how slowly a client may accept a response.
#[derive(Clone, Copy, Debug)]
pub struct SendLimits {
    /// The longest time without any progress.
    pub timeout: Duration,
    /// The least average rate in bytes/s; 0 = none.
    pub min_rate: u64,
    /// How far behind `min_rate` a response may fall.
    pub grace: Duration,
}

impl SendLimits {
    /// How much unsent data the kernel may hold for this client
    /// (`TCP_NOTSENT_LOWAT`). Left to itself it takes megabytes at once and
    /// reports room again only once a third of its buffer has drained: a
    /// client reading steadily at 64 KiB/s then shows no progress for 20 s,
    /// and the rate rule (or `send_timeout`) dropped it as a slow reader.
    /// Capped at what a client at `min_rate` reads in `grace`, room comes
    /// back (at half of it) well within `grace`; fast clients are not held
    /// back, as the data in flight is not counted.
    fn unsent_cap(&self) -> u32 {
        let per_grace = self.min_rate.saturating_mul(self.grace.as_secs().max(1));
        u32::try_from(per_grace.clamp(MIN_UNSENT, MAX_UNSENT)).unwrap_or(u32::MAX)
    }
}

/// Bounds of `SendLimits::unsent_cap`: below 16 KiB a fast client costs a
/// wakeup per few segments; above 1 MiB the wait for room gets long again.
const MIN_UNSENT: u64 = 16 << 10;
const MAX_UNSENT: u64 = 1 << 20;

/// The send deadlines of the response in flight. `due` is the rate rule's
/// clock: it starts `grace` ahead, each byte accepted moves it on by
/// `1/min_rate` s, but never further than `grace` past the present, so
/// bytes that filled the kernel's buffers at once earn no lasting credit.
/// Once the present passes `due`, the client is too slow.
#[derive(Debug)]
struct Pace {
    last_progress: Instant,
    due: Instant,
}

/// One accepted connection.
pub struct Client {
    stream: TcpStream,
    limits: SendLimits,
    pace: Pace,
    /// Bytes sent on this connection so far.
    sent: u64,
    /// Nothing has been read yet: the first read tries the socket before
    /// waiting (see `read_with`).
    fresh: Cell<bool>,
}

impl Client {
    /// Wraps an accepted socket: `TCP_NODELAY` so a response's last segment
    /// leaves at once (the head is held back with `MSG_MORE` instead), and
    /// non-blocking, so sends wait only in `poll`, against `limits`.
    pub fn new(stream: TcpStream, limits: SendLimits) -> io::Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        sys::set_notsent_lowat(stream.as_fd(), limits.unsent_cap())?;
        let now = Instant::now();
        Ok(Client {
            stream,
            limits,
            pace: Pace { last_progress: now, due: now + limits.grace },
            sent: 0,
            fresh: Cell::new(true),
        })
    }

    /// Starts the clocks of a new response: its `min_send_rate` allowance
    /// and its `send_timeout` count from now.
    pub fn begin_response(&mut self) {
        let now = Instant::now();
        self.pace = Pace { last_progress: now, due: now + self.limits.grace };
    }

    /// Bytes sent on this connection so far (including any part of a send
    /// that then failed).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Notes that `n` more bytes were accepted.
    fn progress(&mut self, n: usize) {
        let now = Instant::now();
        self.sent += n as u64;
        self.pace.last_progress = now;
        if let Some(ns) = (n as u64).saturating_mul(1_000_000_000).checked_div(self.limits.min_rate) {
            self.pace.due = (self.pace.due + Duration::from_nanos(ns)).min(now + self.limits.grace);
        }
    }

    /// Waits until the socket has room, or fails with `TimedOut` once the
    /// client has accepted nothing for `send_timeout` or fallen too far
    /// behind `min_send_rate`.
    fn wait_writable(&self) -> io::Result<()> {
        loop {
            let idle_end = self.pace.last_progress + self.limits.timeout;
            let rate_end = if self.limits.min_rate > 0 { self.pace.due } else { idle_end };
            let now = Instant::now();
            if now >= idle_end {
                return Err(send_timed_out());
            }
            if now >= rate_end {
                return Err(too_slow(self.limits.min_rate));
            }
            let left = idle_end.min(rate_end) - now;
            let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, ms_timeout(ms)) {
                // An error or hang-up is writable too: the send reports it.
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads into `buf`, waiting no later than `deadline`. While `lifeline`
    /// is given, its hang-up (the parent closed its end) ends the wait with
    /// `Drain`, and so does the parent's request to give the connection
    /// back (`signals::GIVE_BACK_SIGNAL`, let in for the wait only: a
    /// response is never interrupted). Returns `Timeout` once the deadline
    /// has passed.
    pub fn read_before(
        &self,
        buf: &mut [u8],
        deadline: Instant,
        lifeline: Option<BorrowedFd<'_>>,
    ) -> io::Result<ReadOutcome> {
        self.read_with(deadline, lifeline, |mut s| s.read(buf))
    }

    /// Waits as `read_before` does, then reads with `read` (which reads
    /// the socket once, non-blocking, and returns how many bytes it took,
    /// 0 at the end): a TLS form hands the socket to its record layer this
    /// way, with no buffer between them.
    pub fn read_with(
        &self,
        deadline: Instant,
        lifeline: Option<BorrowedFd<'_>>,
        mut read: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> io::Result<ReadOutcome> {
        // A new connection's first bytes have most often arrived by the
        // time its child runs: read at once, and wait only if they have not
        // (saving a `poll` per connection).
        if self.fresh.replace(false) {
            match read(&self.stream) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => return Ok(ReadOutcome::Data(n)),
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(ReadOutcome::Timeout);
            }
            let mut fds = [
                PollFd::new(self.stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(lifeline.unwrap_or(self.stream.as_fd()), PollFlags::POLLIN),
            ];
            let n = if lifeline.is_some() { 2 } else { 1 };
            // While the lifeline is watched, the wait lets the give-back
            // signal in (its handler does nothing: the wait ends with
            // EINTR); every other signal a child can be sent is ignored or
            // kills it.
            let mask = lifeline.map(|_| SigSet::empty());
            match ppoll(&mut fds[..n], Some(TimeSpec::from_duration(left)), mask) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::EINTR) if lifeline.is_some() => return Ok(ReadOutcome::Drain),
                // Another signal interrupted the wait: go round and re-check the deadline.
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if fds[0].any() != Some(true) {
                return Ok(ReadOutcome::Drain);
            }
            match read(&self.stream) {
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
    pub fn send(&mut self, bytes: &[u8], more: bool) -> io::Result<()> {
        let flags = send_flags(more);
        let mut done = 0;
        while done < bytes.len() {
            match send(self.stream.as_raw_fd(), &bytes[done..], flags) {
                Ok(n) => {
                    done += n;
                    self.progress(n);
                    // A short send means the buffer is full: wait rather
                    // than spend a call on the `EAGAIN` that would follow.
                    if done < bytes.len() {
                        self.wait_writable()?;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => self.wait_writable()?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sends what the socket takes of `bufs`, in order, in one call (waiting
    /// for room first when it has none); returns how many bytes that was.
    /// `more` as in `send`. The TLS form hands its queued records over this
    /// way: a handshake flight, or the records of a file chunk, leave in
    /// one call and one segment rather than a call each.
    pub fn send_vectored(&mut self, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
        let flags = send_flags(more);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        loop {
            match sendmsg::<()>(self.stream.as_raw_fd(), bufs, &[], flags, None) {
                Ok(n) => {
                    self.progress(n);
                    // As in `send`: short of all, the buffer is full.
                    if n < total {
                        self.wait_writable()?;
                    }
                    return Ok(n);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => self.wait_writable()?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `len` bytes of `file` from `offset` with `sendfile(2)`, looping
    /// on partial sends. A file that shrinks under us ends the connection
    /// with `UnexpectedEof`: the promised `Content-Length` cannot be met.
    pub fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let mut off = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = offset + len;
        while (off as u64) < end {
            let want = usize::try_from(end - off as u64).unwrap_or(usize::MAX).min(SENDFILE_CHUNK);
            match nix::sys::sendfile::sendfile(&self.stream, file, Some(&mut off), want) {
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent"));
                }
                Ok(n) => {
                    self.progress(n);
                    // As in `send`: short of a chunk, the buffer is full.
                    if n < want && (off as u64) < end {
                        self.wait_writable()?;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => self.wait_writable()?,
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

/// A send's flags: never `SIGPIPE`; with `more`, `MSG_MORE`.
fn send_flags(more: bool) -> MsgFlags {
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if more {
        flags |= MsgFlags::from_bits_retain(libc::MSG_MORE); // nix has no name for it
    }
    flags
}

fn ms_timeout(ms: i32) -> PollTimeout {
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

fn send_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client accepted no data within send_timeout")
}

fn too_slow(rate: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("client accepted data slower than min_send_rate ({rate} B/s)"),
    )
}

/// Reads from `offset` until `buf` is full or the file ends; returns how
/// many bytes it read.
pub(crate) fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The error of a file that ended before the length promised for it.
pub(crate) fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A `Client` on one end of a loopback connection, and the peer's end.
    fn pair() -> (Client, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let limits =
            SendLimits { timeout: Duration::from_secs(10), min_rate: 0, grace: Duration::from_secs(10) };
        (Client::new(server, limits).unwrap(), peer)
    }

    /// What is left of `records` past the first `done` bytes, as slices.
    fn rest(records: &[Vec<u8>], mut done: usize) -> Vec<IoSlice<'_>> {
        let mut slices = Vec::new();
        for r in records {
            if done >= r.len() {
                done -= r.len();
            } else {
                slices.push(IoSlice::new(&r[done..]));
                done = 0;
            }
        }
        slices
    }

    #[test]
    fn records_that_fit_leave_in_one_vectored_send() {
        let (mut client, mut peer) = pair();
        let records: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100]).collect();
        assert_eq!(client.send_vectored(&rest(&records, 0), false).unwrap(), 400);
        assert_eq!(client.sent(), 400);
        let mut got = vec![0; 400];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, records.concat());
    }

    #[test]
    fn vectored_sends_past_the_sockets_room_arrive_whole_and_in_order() {
        let (mut client, mut peer) = pair();
        // 4 MiB in 16 KiB records: more than the socket takes at once, so
        // sends fall short and wait for the peer, which starts late.
        let records: Vec<Vec<u8>> = (0..256).map(|i: usize| vec![(i % 251) as u8; 16 * 1024]).collect();
        let total = 256 * 16 * 1024;
        let reader = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let mut done = 0;
        while done < total {
            let n = client.send_vectored(&rest(&records, done), false).unwrap();
            assert!(n > 0, "a send that returns makes progress");
            done += n;
        }
        assert_eq!(client.sent(), total as u64);
        client.finish(false);
        drop(client);
        let got = reader.join().unwrap();
        assert!(got == records.concat(), "got {} bytes of {total}, or out of order", got.len());
    }
}
