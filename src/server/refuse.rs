//! The parent's own `503`, for a connection it will not or cannot fork a
//! child for: written without blocking, logged, and the socket held
//! unread a moment before it closes. An HTTPS connection is closed
//! instead: the parent never speaks TLS, and plaintext on it would be
//! taken for a broken handshake.
//!
//! Runs in: parent only, from the accept loop.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use crate::http::decide::{self, Connection};
use crate::http::reply::Body;
use crate::http::status::Status;
use crate::listener::Wire;
use crate::log as logging;

use super::Server;

/// How long the parent holds a connection it answered `503` itself before
/// closing it: time for the client to read the answer. The parent never
/// reads the request, and closing a socket with unread input sends a reset
/// that can destroy the answer in flight; a second later the client has it.
const REFUSED_LINGER: Duration = Duration::from_secs(1);
/// Most such connections held at once (a descriptor each); under a flood
/// the oldest is closed early.
const MAX_REFUSED: usize = 64;

impl Server {
    /// The parent's own answer when it cannot or will not fork: a `503`,
    /// written without blocking (a new socket's send buffer is empty), then
    /// the write side shut down, and an access-log line (with no request
    /// line: none was read). The client's bytes are never read: the socket
    /// is kept, unread, for `REFUSED_LINGER` and closed by the loop. From
    /// an HTTPS listener (`wire.tls`) nothing is written: the connection
    /// is closed at once, and logged as a `503` of no bytes.
    pub(super) fn refuse(&mut self, stream: TcpStream, peer: SocketAddr, wire: Wire) {
        if wire.tls {
            self.log_refusal(peer, 0);
            return;
        }
        let delivered = answer_503(&stream, self.config().server_version);
        self.log_refusal(peer, *delivered.as_ref().unwrap_or(&0));
        if let Err(e) = delivered {
            log::debug!("503 to {peer} not delivered: {e}");
            return;
        }
        if self.refused.len() >= MAX_REFUSED {
            self.refused.pop_front();
        }
        self.refused.push_back((stream, Instant::now() + REFUSED_LINGER));
    }

    /// Logs a `503` the parent answered itself, `bytes` of body sent. This
    /// never blocks: a log file is a regular file opened `O_APPEND`, and
    /// the stderr and syslog paths never wait in the parent.
    fn log_refusal(&self, peer: SocketAddr, bytes: u64) {
        let entry = logging::Entry {
            client: peer.ip(),
            request_line: b"",
            status: Status::ServiceUnavailable.code(),
            bytes,
            referer: None,
            user_agent: None,
        };
        if let Err(e) = self.access_log.record(&mut Vec::new(), &entry) {
            log::warn!("access log: {e}");
        }
    }

    /// Closes the refused connections whose time is up.
    pub(super) fn close_refused(&mut self) {
        let now = Instant::now();
        while self.refused.front().is_some_and(|r| r.1 <= now) {
            self.refused.pop_front();
        }
    }
}

/// Writes a `503` on `stream` without blocking and shuts down its write
/// side. Returns the length of the body sent.
fn answer_503(stream: &TcpStream, server_version: bool) -> io::Result<u64> {
    stream.set_nonblocking(true)?;
    let server = decide::server_field(server_version);
    let reply = decide::status_page(
        Status::ServiceUnavailable,
        None,
        server,
        SystemTime::now(),
        Connection::Close,
        false,
    );
    let mut out = Vec::new();
    reply.write_head(&mut out);
    if let Body::Page(page) = reply.body {
        out.extend_from_slice(page.as_bytes());
    }
    (&*stream).write_all(&out)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(reply.body_len())
}
