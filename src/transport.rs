//! The connection's byte pipe as the request loop sees it: read before a
//! deadline (bytes already held first), send, send a file range (alone, or
//! behind a head), and finish with a lingering close. `conn` speaks only to
//! this; the plain TCP socket (`stream::Client`) is its first form, TLS
//! over that socket (`tls::stream::TlsClient`) its second.
//!
//! Runs in: child.
//!
//! An enum, not a trait: the TLS form is one more variant (holding a
//! `stream::Client` for its deadlines and pacing, and the TLS state,
//! boxed so that the plain form stays small), and the connection takes it
//! once, before its first request. Each call is a `match` on
//! a variant that never changes for the connection, a branch the CPU
//! predicts, with no vtable, no `Box` and no allocation; a trait object
//! would add an indirect call to every read and send of the keep-alive
//! loop, and a generic `conn` would be compiled once per form with its type
//! parameter in every signature of the request loop.
//!
//! Which form decides how a file goes out: the plain socket copies a small
//! file behind its head into one send and hands a larger one to
//! `sendfile(2)` (see `send_with_file`); the TLS form, which must encrypt
//! every byte in user space, reads the file into a buffer and encrypts it
//! in records, and copies a body of up to a record behind its head.

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use rustls::ServerConfig;

use crate::stream::{Client, read_at_most, shrank};
pub use crate::stream::{ReadOutcome, SendLimits};
use crate::tls::stream::TlsClient;

/// Largest file body the plain form copies behind its head into one send
/// rather than sending with `sendfile`: below it, a copy costs less than
/// `sendfile`'s page splicing and a second call.
pub const COPY_BODY_MAX: u64 = 8 * 1024;
/// Largest file body the TLS form copies behind its head: what fits in
/// one record with a typical head, so both are encrypted and sent at once.
const TLS_COPY_BODY_MAX: u64 = 15 * 1024;

/// One client connection, in whichever form it arrived.
pub enum Transport {
    /// A plain TCP socket.
    Plain(Client),
    /// TLS over a TCP socket.
    Tls(Box<TlsClient>),
}

impl Transport {
    /// The plain form of an accepted socket, sending within `limits`.
    pub fn plain(stream: TcpStream, limits: SendLimits) -> io::Result<Transport> {
        Client::new(stream, limits).map(Transport::Plain)
    }

    /// This plain connection, from now on over TLS under `config`:
    /// `early` holds the start of the client's handshake if some was read
    /// already (behind a PROXY header). The handshake itself is
    /// `handshake`'s.
    pub fn into_tls(self, config: Arc<ServerConfig>, early: &[u8]) -> io::Result<Transport> {
        match self {
            Transport::Plain(c) => Ok(Transport::Tls(Box::new(TlsClient::new(c, config, early)?))),
            tls @ Transport::Tls(_) => Ok(tls),
        }
    }

    /// Runs the TLS handshake, waiting no later than `deadline` (see
    /// `TlsClient::handshake`); a plain connection has none: `Data(0)`.
    pub fn handshake(
        &mut self,
        deadline: Instant,
        lifeline: Option<BorrowedFd<'_>>,
    ) -> io::Result<ReadOutcome> {
        match self {
            Transport::Plain(_) => Ok(ReadOutcome::Data(0)),
            Transport::Tls(t) => t.handshake(deadline, lifeline),
        }
    }

    /// Whether the TLS handshake resumed an earlier session; `false` over
    /// plain TCP.
    pub fn resumed(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.resumed(),
        }
    }

    /// The name the client asked for in its TLS handshake (SNI); `None`
    /// over plain TCP.
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(t) => t.server_name(),
        }
    }

    /// Reads into `buf`, waiting no later than `deadline`; `Timeout` once
    /// it has passed. Bytes the transport already holds come first: on the
    /// plain socket, those the kernel has received win over the lifeline's
    /// hang-up (a TLS form would first hand out what it has decrypted
    /// already, which no `poll` of the socket shows). While `lifeline` is
    /// given, its hang-up ends a wait with nothing to read with `Drain`.
    pub fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        lifeline: Option<BorrowedFd<'_>>,
    ) -> io::Result<ReadOutcome> {
        match self {
            Transport::Plain(c) => c.read_before(buf, deadline, lifeline),
            Transport::Tls(t) => t.read_before(buf, deadline, lifeline),
        }
    }

    /// Starts the send clocks of a new response (`send_timeout`, `min_send_rate`).
    pub fn begin_response(&mut self) {
        match self {
            Transport::Plain(c) => c.begin_response(),
            Transport::Tls(t) => t.begin_response(),
        }
    }

    /// Bytes sent on this connection so far, counted as the client sees
    /// them (including any part of a send that then failed).
    pub fn sent(&self) -> u64 {
        match self {
            Transport::Plain(c) => c.sent(),
            Transport::Tls(t) => t.sent(),
        }
    }

    /// Sends all of `bytes`. With `more`, more of the same response follows
    /// at once: the transport may hold a partial segment back for it.
    pub fn send(&mut self, bytes: &[u8], more: bool) -> io::Result<()> {
        match self {
            Transport::Plain(c) => c.send(bytes, more),
            Transport::Tls(t) => t.send(bytes, more),
        }
    }

    /// Sends exactly `len` bytes of `file` from `offset`. A file that ends
    /// sooner (it shrank under us) fails with `UnexpectedEof`: the promised
    /// `Content-Length` cannot be met.
    pub fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Transport::Plain(c) => c.send_file(file, offset, len),
            Transport::Tls(t) => t.send_file(file, offset, len),
        }
    }

    /// Sends `head` followed by `len` bytes of `file` from `offset`, the
    /// last part of a response. `head` is a buffer the caller keeps across
    /// responses: the plain form copies a small body (up to
    /// `COPY_BODY_MAX`) behind the head into it and sends both at once;
    /// a larger one follows the head (held back with `MSG_MORE`, so they
    /// share a segment) through `sendfile`. Fails like `send_file`.
    pub fn send_with_file(
        &mut self,
        head: &mut Vec<u8>,
        file: &File,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(c) if len <= COPY_BODY_MAX => {
                let start = head.len();
                head.resize(start + len as usize, 0);
                let got = read_at_most(file, &mut head[start..], offset)?;
                head.truncate(start + got);
                c.send(head, false)?;
                if got < len as usize {
                    return Err(shrank());
                }
                Ok(())
            }
            Transport::Plain(c) => {
                c.send(head, true)?;
                c.send_file(file, offset, len)
            }
            Transport::Tls(t) if len <= TLS_COPY_BODY_MAX => {
                let start = head.len();
                head.resize(start + len as usize, 0);
                let got = read_at_most(file, &mut head[start..], offset)?;
                head.truncate(start + got);
                t.send(head, false)?;
                if got < len as usize {
                    return Err(shrank());
                }
                Ok(())
            }
            Transport::Tls(t) => {
                t.send(head, true)?;
                t.send_file(file, offset, len)
            }
        }
    }

    /// Ends the connection: closes our sending side and, with `linger`
    /// (the client may still be sending: a body we refused, requests we
    /// will not answer), reads and discards the client's bytes for a short
    /// while first, so that the kernel does not answer them with a reset
    /// that could destroy the response before the client reads it.
    pub fn finish(&mut self, linger: bool) {
        match self {
            Transport::Plain(c) => c.finish(linger),
            Transport::Tls(t) => t.finish(linger),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::thread;
    use std::time::Duration;

    const LIMITS: SendLimits =
        SendLimits { timeout: Duration::from_secs(10), min_rate: 0, grace: Duration::from_secs(10) };

    /// A plain transport on one end of a loopback connection, and the
    /// client's end.
    fn pair() -> (Transport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (Transport::plain(server, LIMITS).unwrap(), client)
    }

    /// A file of `len` bytes, each different from its neighbours.
    fn file_of(len: usize) -> (File, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        (file, bytes)
    }

    /// Sends with `send`, then finishes, while a thread reads what the
    /// client receives until the server closes.
    fn received(send: impl FnOnce(&mut Transport) -> io::Result<()>) -> (io::Result<()>, Vec<u8>) {
        let (mut t, mut client) = pair();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        let sent = send(&mut t);
        t.finish(false);
        drop(t);
        (sent, reader.join().unwrap())
    }

    #[test]
    fn bytes_already_received_are_read_before_the_lifelines_hang_up() {
        let (mut t, mut client) = pair();
        let (lifeline, hangup) = std::io::pipe().unwrap();
        drop(hangup);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The first bytes, read without the lifeline, show that the write
        // (one segment) has arrived: the rest is held by the kernel.
        let mut buf = [0u8; 4];
        let ReadOutcome::Data(n) = t.read_before(&mut buf, deadline, None).unwrap() else { panic!() };
        let mut got = buf[..n].to_vec();
        while got.len() < 18 {
            match t.read_before(&mut buf, deadline, Some(lifeline.as_fd())).unwrap() {
                ReadOutcome::Data(n) => got.extend_from_slice(&buf[..n]),
                other => panic!("{other:?} with {} bytes unread", 18 - got.len()),
            }
        }
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
        // Nothing left: now the hang-up is seen.
        assert_eq!(t.read_before(&mut buf, deadline, Some(lifeline.as_fd())).unwrap(), ReadOutcome::Drain);
        // Without the lifeline, a quiet client is a timeout, and a closed one an end.
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(t.read_before(&mut buf, soon, None).unwrap(), ReadOutcome::Timeout);
        drop(client);
        assert_eq!(t.read_before(&mut buf, deadline, None).unwrap(), ReadOutcome::Eof);
    }

    #[test]
    fn a_file_range_is_sent_exactly() {
        let (file, bytes) = file_of(300_000);
        let (sent, got) = received(|t| t.send_file(&file, 12_345, 200_000));
        sent.unwrap();
        assert_eq!(got.len(), 200_000);
        assert!(got == bytes[12_345..212_345], "the range's bytes, in order");
    }

    #[test]
    fn a_small_file_goes_with_its_head_and_a_large_one_after_it() {
        let (file, bytes) = file_of(100_000);
        for (offset, len) in [(0, 0), (7, 100), (1, COPY_BODY_MAX), (5, COPY_BODY_MAX + 1), (0, 100_000)] {
            let mut head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            let (sent, got) = received(|t| t.send_with_file(&mut head, &file, offset, len));
            sent.unwrap();
            let want =
                [&b"HTTP/1.1 200 OK\r\n\r\n"[..], &bytes[offset as usize..(offset + len) as usize]].concat();
            assert!(got == want, "offset {offset}, len {len}: got {} bytes, want {}", got.len(), want.len());
        }
    }

    #[test]
    fn a_file_shorter_than_promised_fails_after_what_it_had() {
        let (file, bytes) = file_of(20_000);
        for len in [100, 30_000] {
            let mut head = b"H\r\n".to_vec();
            let (sent, got) = received(|t| t.send_with_file(&mut head, &file, 19_950, len));
            assert_eq!(sent.unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "len {len}");
            assert_eq!(got, [&b"H\r\n"[..], &bytes[19_950..]].concat(), "len {len}");
        }
    }
}
