//! The load generator of benches/run.sh's handshake scenarios: every
//! request on a new TLS connection, with a full handshake or a resumed one,
//! as asked, and the handshake each connection really made counted.
//!
//!     tlsload --port PORT --ca CA.pem --path /4k.bin --length 4096 \
//!             --connections 50 --seconds 3 [--resume]
//!
//! Neither wrk nor `openssl s_time` measures both: wrk keeps the session of
//! an `SSL` object it reuses (`SSL_clear` after `SSL_shutdown`), so with
//! `Connection: close` it resumes after the first handshake and cannot be
//! made to do full ones; `s_time` runs one connection at a time and times
//! in whole seconds. Here each of `--connections` threads loops until the
//! time is up: connect, handshake, one `GET` with `Connection: close`, read
//! the response in full, `close_notify`, close. Without `--resume` no
//! session is kept, so every handshake is a full one; with it, each thread
//! offers the newest ticket its previous connection received, as a browser
//! coming back does.
//!
//! It prints one line in the form of benches/wrk-result.lua's, with the
//! handshakes counted by kind:
//!
//!     RESULT requests=N duration_us=N bytes=N connect=N read=N write=N
//!            status=N timeout=N p50_us=N p99_us=N full=N resumed=N
//!
//! `bytes` counts the response heads and bodies; a latency runs from the
//! connect to the response's last byte, so it includes the handshake.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

/// Command-line arguments.
#[derive(Parser)]
#[command(about = "New TLS connection per request, full or resumed handshakes")]
struct Args {
    /// Port on 127.0.0.1 to connect to.
    #[arg(long)]
    port: u16,
    /// PEM file of the CA the server's certificate is checked against.
    #[arg(long)]
    ca: String,
    /// The name sent in SNI and `Host`, which the certificate must cover.
    #[arg(long, default_value = "localhost")]
    name: String,
    /// Path requested.
    #[arg(long)]
    path: String,
    /// Body length a `200` must have.
    #[arg(long)]
    length: usize,
    /// Connections open at a time (one thread each).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Seconds during which new connections are started.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Offer the previous connection's session ticket.
    #[arg(long)]
    resume: bool,
    /// Bound on each connect, read and write (s); one over it is a timeout.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// What one thread counted.
#[derive(Default)]
struct Tally {
    requests: u64,
    bytes: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
    full: u64,
    resumed: u64,
    latencies_us: Vec<u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.connect += other.connect;
        self.read += other.read;
        self.write += other.write;
        self.status += other.status;
        self.timeout += other.timeout;
        self.full += other.full;
        self.resumed += other.resumed;
        self.latencies_us.extend(other.latencies_us);
    }

    /// Counts a failed read or write as a timeout when it was one.
    fn io_error(&mut self, e: &io::Error, write: bool) {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout += 1,
            _ if write => self.write += 1,
            _ => self.read += 1,
        }
    }
}

/// Everything a thread needs, shared.
struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    request: Vec<u8>,
    length: usize,
    timeout: Duration,
}

fn main() {
    let args = Args::parse();
    let config = match client_config(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("tlsload: {}: {e}", args.ca);
            std::process::exit(2);
        }
    };
    let name = match ServerName::try_from(args.name.clone()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tlsload: --name {}: {e}", args.name);
            std::process::exit(2);
        }
    };
    let target = Arc::new(Target {
        addr: SocketAddr::from(([127, 0, 0, 1], args.port)),
        name,
        request: format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", args.path, args.name)
            .into_bytes(),
        length: args.length,
        timeout: Duration::from_secs(args.timeout),
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let threads: Vec<_> = (0..args.connections.max(1))
        .map(|_| {
            // Each thread its own session store: it resumes its own last session.
            let mut config = (*config).clone();
            config.resumption =
                if args.resume { Resumption::in_memory_sessions(1) } else { Resumption::disabled() };
            let config = Arc::new(config);
            let target = Arc::clone(&target);
            thread::spawn(move || run(&config, &target, deadline))
        })
        .collect();
    let mut total = Tally::default();
    for t in threads {
        match t.join() {
            Ok(tally) => total.add(tally),
            Err(_) => total.read += 1,
        }
    }
    let duration = start.elapsed();
    total.latencies_us.sort_unstable();
    let pick = |q: usize| -> u64 {
        let n = total.latencies_us.len();
        if n == 0 { 0 } else { total.latencies_us[((n - 1) * q / 100).min(n - 1)] }
    };
    println!(
        "RESULT requests={} duration_us={} bytes={} connect={} read={} write={} status={} timeout={} p50_us={} p99_us={} full={} resumed={}",
        total.requests,
        duration.as_micros(),
        total.bytes,
        total.connect,
        total.read,
        total.write,
        total.status,
        total.timeout,
        pick(50),
        pick(99),
        total.full,
        total.resumed
    );
}

/// A client configuration that checks the server's chain against `--ca`,
/// with rustls's default versions, suites and groups (the ring provider,
/// as the server uses).
fn client_config(args: &Args) -> Result<ClientConfig, Box<dyn std::error::Error>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca)? {
        roots.add(cert?)?;
    }
    // ring, as the server uses (deprecated for its lack of post-quantum key exchange).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One thread's loop: a connection per request until `deadline`.
fn run(config: &Arc<ClientConfig>, target: &Target, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let began = Instant::now();
        let sock = match TcpStream::connect_timeout(&target.addr, target.timeout) {
            Ok(s) => s,
            Err(_) => {
                tally.connect += 1;
                // Out of ports or refused: do not spin on it.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let set = sock
            .set_nodelay(true)
            .and_then(|()| sock.set_read_timeout(Some(target.timeout)))
            .and_then(|()| sock.set_write_timeout(Some(target.timeout)));
        if set.is_err() {
            tally.connect += 1;
            continue;
        }
        let conn = match ClientConnection::new(Arc::clone(config), target.name.clone()) {
            Ok(c) => c,
            Err(_) => {
                tally.connect += 1;
                continue;
            }
        };
        let mut tls = StreamOwned::new(conn, sock);
        if let Err(e) = tls.write_all(&target.request).and_then(|()| tls.flush()) {
            tally.io_error(&e, true);
            continue;
        }
        match read_response(&mut tls) {
            Ok((status, head, body)) => {
                tally.bytes += (head + body) as u64;
                if status != 200 || body != target.length {
                    tally.status += 1;
                }
            }
            Err(e) => {
                tally.io_error(&e, false);
                continue;
            }
        }
        match tls.conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => tally.resumed += 1,
            _ => tally.full += 1,
        }
        tally.requests += 1;
        tally.latencies_us.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        // A polite end, as wrk's and s_time's SSL_shutdown; the server
        // closes its side after a `Connection: close` response anyway.
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    tally
}

/// Reads one response: its status, the head's length and the body's
/// (`Content-Length` bytes, read in full).
fn read_response(tls: &mut impl Read) -> io::Result<(u16, usize, usize)> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .ok_or_else(bad)?;
    let mut body = buf.len() - head_end;
    while body < length {
        let n = tls.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body += n;
    }
    Ok((status, head_end, body))
}
