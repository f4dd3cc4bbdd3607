//! A raw HTTP/1.1 client: connections that buffer, and the responses read off them.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{IO_TIMEOUT, find};

/// Upper bound on a response head we are willing to buffer.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header names are lower-cased; order preserved.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).count()
    }

    /// Whether a `Connection` header lists the given token.
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from `buf`, calling `fill` to append more bytes to it
/// (returning 0 at the end of the stream), whatever the stream is (a TCP
/// socket, a TLS session); `None` if the stream ended before any byte of a
/// response. The bytes after the response stay in `buf`.
pub fn read_response_from(
    buf: &mut Vec<u8>,
    mut fill: impl FnMut(&mut Vec<u8>) -> io::Result<usize>,
    head_request: bool,
) -> io::Result<Option<Response>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("response head too large"));
        }
        if fill(buf)? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a response head",
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {status_line:?}")))?;
    if !version.starts_with("HTTP/1.") {
        return Err(io::Error::other(format!("bad status line: {status_line:?}")));
    }
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) =
            line.split_once(':').ok_or_else(|| io::Error::other(format!("bad header line: {line:?}")))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    buf.drain(..head_end);
    let mut resp = Response { version, status, reason, headers, body: Vec::new() };

    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
        return Ok(Some(resp));
    }
    if resp.header("transfer-encoding").is_some() {
        return Err(io::Error::other(
            "unexpected Transfer-Encoding in response (server never sends chunked)",
        ));
    }
    match resp.header("content-length") {
        Some(cl) => {
            let len: usize =
                cl.parse().map_err(|_| io::Error::other(format!("bad Content-Length {cl:?}")))?;
            while buf.len() < len {
                if fill(buf)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed after {} of {len} body bytes", buf.len()),
                    ));
                }
            }
            resp.body = buf.drain(..len).collect();
        }
        None => {
            // Delimited by close.
            while fill(buf)? > 0 {}
            resp.body = std::mem::take(buf);
        }
    }
    Ok(Some(resp))
}

/// A client connection that buffers received bytes, so pipelined responses
/// can be read one at a time.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Every byte ever received on this connection.
    received: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn::from_stream(
            TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}")),
        )
    }

    /// Wraps an already connected stream (setting the usual timeouts).
    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = stream.set_nodelay(true);
        Conn { stream, buf: Vec::new(), received: Vec::new() }
    }

    /// The stream, and the bytes received on it but not consumed yet (such as
    /// the start of a body after [`Conn::read_head_response`]).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Write all bytes; panics on error.
    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap_or_else(|e| panic!("write to server: {e}"));
    }

    /// Write all bytes, ignoring errors (the server may already have closed).
    pub fn send_lossy(&mut self, data: &[u8]) {
        let _ = self.stream.write_all(data);
    }

    /// Send `METHOD path HTTP/1.1` with Host and the given extra header lines
    /// (each without CRLF).
    pub fn send_request(&mut self, method: &str, path: &str, extra: &[&str]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for h in extra {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send(req.as_bytes());
    }

    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Read more bytes into the buffer. Ok(0) means EOF (or reset).
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16384];
        match self.stream.read_retrying(&mut tmp) {
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                self.received.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Read one response to a GET-like request (body per Content-Length).
    pub fn read_response(&mut self) -> Response {
        self.read_response_for(false)
    }

    /// Read one response to a HEAD request (no body regardless of headers).
    pub fn read_head_response(&mut self) -> Response {
        self.read_response_for(true)
    }

    pub fn read_response_for(&mut self, head_request: bool) -> Response {
        match self.try_read_response(head_request) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("server closed the connection without sending a response"),
            Err(e) => panic!(
                "reading response failed: {e}; received so far: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Read one response, or `None` if the connection was closed before any
    /// byte of a response arrived.
    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Option<Response>> {
        let Conn { stream, buf, received } = self;
        read_response_from(
            buf,
            |buf| {
                let mut tmp = [0u8; 16384];
                match stream.read_retrying(&mut tmp) {
                    Ok(n) => {
                        buf.extend_from_slice(&tmp[..n]);
                        received.extend_from_slice(&tmp[..n]);
                        Ok(n)
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(0),
                    Err(e) => Err(e),
                }
            },
            head_request,
        )
    }

    /// Assert that the server closes the connection without sending any
    /// further bytes (EOF or reset within IO_TIMEOUT).
    pub fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "unexpected extra bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match self.fill() {
            Ok(0) => {}
            Ok(_) => panic!(
                "expected the server to close, but got more bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => panic!("expected the server to close the connection, but read failed: {e}"),
        }
    }

    /// Assert the connection is still open and no unsolicited bytes arrive
    /// within `wait`.
    pub fn expect_open_and_quiet(&mut self, wait: Duration) {
        assert!(self.buf.is_empty(), "unexpected extra bytes: {:?}", String::from_utf8_lossy(&self.buf));
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let r = self.fill();
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        match r {
            Ok(0) => panic!("server closed the connection unexpectedly"),
            Ok(_) => panic!("unexpected extra bytes from server: {:?}", String::from_utf8_lossy(&self.buf)),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Read until EOF/reset or until `max` elapses. Returns the bytes read
    /// (including any buffered ones) and `Some(elapsed)` if the connection was
    /// closed, `None` if `max` elapsed first.
    pub fn read_until_close(&mut self, max: Duration) -> (Vec<u8>, Option<Duration>) {
        let start = Instant::now();
        loop {
            let now = Instant::now();
            let left = (start + max).saturating_duration_since(now);
            if left.is_zero() {
                return (std::mem::take(&mut self.buf), None);
            }
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.fill() {
                Ok(0) => {
                    self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    return (std::mem::take(&mut self.buf), Some(start.elapsed()));
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Send `data` and read until the server closes; see [`send_raw`].
    /// Returns every byte received on the connection.
    pub fn send_until_close(&mut self, data: &[u8]) -> Vec<u8> {
        self.send_lossy(data);
        let (bytes, closed) = self.read_until_close(IO_TIMEOUT);
        assert!(
            closed.is_some(),
            "server did not close the connection within {IO_TIMEOUT:?} after {:?}; got {:?}",
            String::from_utf8_lossy(&data[..data.len().min(200)]),
            String::from_utf8_lossy(&bytes)
        );
        self.received.clone()
    }
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Connect, send `data`, and read until the server closes (EOF or reset).
/// Panics if the server does not close within IO_TIMEOUT.  Write errors are
/// ignored: the server may legitimately close before reading everything.
pub fn send_raw(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    Conn::connect(addr).send_until_close(data)
}

/// `GET path` with `Connection: close` on a new connection to `addr`.
pub fn get_close(addr: SocketAddr, path: &str) -> Response {
    let mut c = Conn::connect(addr);
    c.send_request("GET", path, &["Connection: close"]);
    c.read_response()
}

/// `GET path` on a new connection to `addr`: the answer must be a 200 that
/// keeps the connection open.  Returns the connection and the response.
pub fn get_keepalive(addr: SocketAddr, path: &str) -> (Conn, Response) {
    let mut c = Conn::connect(addr);
    c.send_request("GET", path, &[]);
    let r = c.read_response();
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    assert!(!r.connection_has("close"), "expected keep-alive after GET {path}: {r:?}");
    (c, r)
}

/// `read` that takes `EINTR` for what it is, a read to try again: a socket
/// read with a timeout (`SO_RCVTIMEO`) fails with it, handler or not, when
/// the process is stopped and resumed or frozen and thawed, and the
/// machine's own tooling has done that to a running suite. The timeout
/// starts again after such a retry.
pub trait ReadRetrying {
    /// Reads as [`Read::read`] does, retrying while interrupted.
    fn read_retrying(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl<R: Read> ReadRetrying for R {
    fn read_retrying(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// Connects to `dst` from source address `src` (bind before connect).
pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<Conn> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(dst))?;
    Ok(Conn::from_stream(TcpStream::from(fd)))
}

/// Whether a TCP connect to `addr` is refused right now.
pub fn connect_refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
    }
}
