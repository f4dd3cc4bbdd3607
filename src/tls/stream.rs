//! The TLS form of a connection: rustls's record layer over the plain
//! socket (`stream::Client`), which keeps its deadlines and send pacing.
//!
//! Runs in: child, after its privilege drop: the handshake (bounded by
//! the head's clock, `header_timeout`), then every read and send of the
//! request loop through `transport::Transport::Tls`.
//!
//! The socket's bytes go straight into rustls's buffer (`Client::read_with`)
//! and records come out of it straight into `send`, so the only buffer of
//! this form is the one a file is read into before it is encrypted (kernel
//! TLS, where a kernel has it, could take `sendfile` back: the record
//! state would be handed to the socket after the handshake).

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection};

use super::keys::remote;
use crate::stream::{Client, ReadOutcome, read_at_most, shrank};

/// How much of a file is read and encrypted at a time: four full records
/// (16 KiB of plaintext each), one `pread` for all of them.
const FILE_CHUNK: usize = 64 * 1024;

/// One HTTPS connection.
pub struct TlsClient {
    sock: Client,
    tls: ServerConnection,
    /// Plaintext bytes sent so far, as the client sees them.
    sent: u64,
    /// The buffer file ranges are read into; allocated by the first one.
    chunk: Vec<u8>,
}

impl TlsClient {
    /// A server connection under `config` on `sock`. `early` holds bytes
    /// of the client's first flight already read from the socket (behind
    /// a PROXY header): they are handed to rustls before the socket's.
    pub fn new(sock: Client, config: Arc<ServerConfig>, early: &[u8]) -> io::Result<TlsClient> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut rest = early;
        while !rest.is_empty() {
            if tls.read_tls(&mut rest)? == 0 {
                break;
            }
        }
        Ok(TlsClient { sock, tls, sent: 0, chunk: Vec::new() })
    }

    /// Runs the handshake, waiting no later than `deadline` for the
    /// client's part. Returns `Data(0)` once it is complete; `Timeout`,
    /// `Eof` or `Drain` as a read would; an `InvalidData` error for a
    /// client that does not speak TLS or fails the handshake (after the
    /// alert that says why has been sent).
    pub fn handshake(
        &mut self,
        deadline: Instant,
        lifeline: Option<BorrowedFd<'_>>,
    ) -> io::Result<ReadOutcome> {
        self.sock.begin_response();
        self.process()?;
        while self.tls.is_handshaking() {
            self.flush(false)?;
            if !self.tls.is_handshaking() {
                break;
            }
            match self.fill(deadline, lifeline)? {
                ReadOutcome::Data(_) => {}
                other => return Ok(other),
            }
        }
        self.flush(false)?;
        // Signed, if it was a full handshake: nothing more to ask.
        remote::hang_up();
        Ok(ReadOutcome::Data(0))
    }

    /// Whether the handshake resumed an earlier session (a ticket).
    pub fn resumed(&self) -> bool {
        self.tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// The name the client asked for in its handshake (SNI), if any.
    pub fn server_name(&self) -> Option<&str> {
        self.tls.server_name()
    }

    /// Reads decrypted bytes into `buf`, those rustls holds first, then
    /// waiting for more records no later than `deadline` (see
    /// `Client::read_before`). `Eof` when the client closed, with or
    /// without `close_notify`.
    pub fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        lifeline: Option<BorrowedFd<'_>>,
    ) -> io::Result<ReadOutcome> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(0) => return Ok(ReadOutcome::Eof),
                Ok(n) => return Ok(ReadOutcome::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(ReadOutcome::Eof),
                Err(e) => return Err(e),
            }
            match self.fill(deadline, lifeline)? {
                ReadOutcome::Data(_) => {}
                other => return Ok(other),
            }
        }
    }

    /// Starts the send clocks of a new response.
    pub fn begin_response(&mut self) {
        self.sock.begin_response();
    }

    /// Plaintext bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Encrypts and sends all of `bytes`; with `more`, the socket may hold
    /// the last partial segment back for what follows.
    pub fn send(&mut self, bytes: &[u8], more: bool) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.tls.writer().write(rest)?;
            rest = &rest[n..];
            self.flush(more || !rest.is_empty())?;
            self.sent += n as u64;
        }
        Ok(())
    }

    /// Sends exactly `len` bytes of `file` from `offset`, read into this
    /// connection's buffer and encrypted in user space. A file that ends
    /// sooner fails with `UnexpectedEof`.
    pub fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        if self.chunk.is_empty() {
            self.chunk = vec![0; FILE_CHUNK];
        }
        let mut chunk = std::mem::take(&mut self.chunk);
        let sent = self.send_file_with(&mut chunk, file, offset, len);
        self.chunk = chunk;
        sent
    }

    fn send_file_with(&mut self, chunk: &mut [u8], file: &File, offset: u64, len: u64) -> io::Result<()> {
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let want = usize::try_from(end - at).unwrap_or(usize::MAX).min(chunk.len());
            let got = read_at_most(file, &mut chunk[..want], at)?;
            self.send(&chunk[..got], at + (got as u64) < end)?;
            at += got as u64;
            if got < want {
                return Err(shrank());
            }
        }
        Ok(())
    }

    /// Ends the connection: `close_notify` (so the client knows the
    /// response was not cut short), then the plain socket's close,
    /// lingering when asked to (see `Client::finish`).
    pub fn finish(&mut self, linger: bool) {
        self.tls.send_close_notify();
        // A failure means the client is gone already: no one to tell.
        let _ = self.flush(false);
        self.sock.finish(linger);
    }

    /// Reads records from the socket (waiting no later than `deadline`)
    /// and processes them, then sends what rustls has to say back (a
    /// handshake flight, an alert, a key update's answer).
    fn fill(&mut self, deadline: Instant, lifeline: Option<BorrowedFd<'_>>) -> io::Result<ReadOutcome> {
        let tls = &mut self.tls;
        let got = self.sock.read_with(deadline, lifeline, |mut s| tls.read_tls(&mut s))?;
        if let ReadOutcome::Data(_) = got {
            self.process()?;
            self.flush(false)?;
        }
        Ok(got)
    }

    /// Processes the records received; a client that broke the protocol
    /// gets the alert rustls queued, then an `InvalidData` error.
    fn process(&mut self) -> io::Result<()> {
        match self.tls.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.flush(false);
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Sends every record rustls has ready, within the socket's send
    /// limits.
    fn flush(&mut self, more: bool) -> io::Result<()> {
        let mut sink = Sink { sock: &mut self.sock, more };
        while self.tls.wants_write() {
            self.tls.write_tls(&mut sink)?;
        }
        Ok(())
    }
}

/// The socket as rustls writes records to it, paced: a write sent whole;
/// rustls's queue of records (`write_vectored`) in one call, as much of it
/// as the socket takes.
struct Sink<'a> {
    sock: &'a mut Client,
    more: bool,
}

impl Write for Sink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.sock.send(bytes, self.more)?;
        Ok(bytes.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.sock.send_vectored(bufs, self.more)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
