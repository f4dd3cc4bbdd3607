//! HTTPS for the tests: a test CA minted with rcgen, certificates it
//! signs (or keys that match none) written as PEM files, and a rustls
//! client that trusts the CA and reads responses as `Conn` does, resuming
//! sessions from a store its configurations may share.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

use super::{IO_TIMEOUT, Response, read_response_from};

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate chain file and its key file.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// The config lines naming these files (`tls_certificate`, `tls_key`).
    pub fn config_lines(&self) -> [String; 2] {
        [
            format!("tls_certificate = {:?}", self.cert.to_str().unwrap()),
            format!("tls_key = {:?}", self.key.to_str().unwrap()),
        ]
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "forkhttpd test CA");
        TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// The CA certificate in PEM, for `curl --cacert`.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes a certificate for `names` valid until `not_after` (year,
    /// month, day), signed by this CA, and its key, as `DIR/STEM.crt` and
    /// `DIR/STEM.key`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str], not_after: (i32, u8, u8)) -> CertFiles {
        self.issue_for(KeyPair::generate().unwrap(), dir, stem, names, not_after)
    }

    /// As `issue`, for the key `key` (`issue` makes an ECDSA P-256 one).
    pub fn issue_for(
        &self,
        key: KeyPair,
        dir: &Path,
        stem: &str,
        names: &[&str],
        not_after: (i32, u8, u8),
    ) -> CertFiles {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertFiles { cert: dir.join(format!("{stem}.crt")), key: dir.join(format!("{stem}.key")) };
        fs::write(&files.cert, cert.pem()).unwrap();
        fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A client configuration trusting only this CA, offering `http/1.1`,
    /// with a session store of its own.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config_with(rustls::DEFAULT_VERSIONS, session_store())
    }

    /// As `client_config`, speaking only `versions`, keeping its sessions
    /// (TLS 1.3 and 1.2 tickets) in `store`: connections made with
    /// configurations sharing a store resume each other's sessions.
    pub fn client_config_with(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        store: Arc<dyn ClientSessionStore>,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.issuer.der().to_vec())).unwrap();
        // ring, as the server uses (deprecated for its lack of post-quantum key exchange).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::store(store);
        Arc::new(config)
    }
}

/// An empty session store, for `client_config_with`.
pub fn session_store() -> Arc<dyn ClientSessionStore> {
    Arc::new(ClientSessionMemoryCache::new(16))
}

/// A TLS client connection that buffers received plaintext, so pipelined
/// responses can be read one at a time.
pub struct TlsConn {
    pub tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// Connects to `addr` and completes a handshake asking for `name`
    /// (sent as SNI unless it is an IP address), verifying the server's
    /// certificate against `config`'s roots for that name.
    pub fn connect(addr: SocketAddr, name: &str, config: Arc<ClientConfig>) -> io::Result<TlsConn> {
        TlsConn::over(TcpStream::connect_timeout(&addr, IO_TIMEOUT)?, name, config)
    }

    /// As `connect`, over a connection already open (after a PROXY header).
    pub fn over(sock: TcpStream, name: &str, config: Arc<ClientConfig>) -> io::Result<TlsConn> {
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        sock.set_write_timeout(Some(IO_TIMEOUT))?;
        let name = ServerName::try_from(name.to_string()).map_err(io::Error::other)?;
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(TlsConn { tls, buf: Vec::new() })
    }

    /// The server's certificate chain's first certificate (DER).
    pub fn peer_leaf(&self) -> Vec<u8> {
        self.tls.conn.peer_certificates().expect("a certificate")[0].to_vec()
    }

    /// Whether the handshake was a full one or resumed a session.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.tls.conn.handshake_kind()
    }

    /// The protocol agreed through ALPN.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.tls.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// Writes `data` and flushes it.
    pub fn send(&mut self, data: &[u8]) {
        self.tls.write_all(data).unwrap();
        self.tls.flush().unwrap();
    }

    /// Sends `METHOD path` with `Host: host` and `extra` header lines.
    pub fn send_request(&mut self, method: &str, path: &str, host: &str, extra: &[&str]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for h in extra {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send(req.as_bytes());
    }

    /// Reads one response to a GET-like request; panics on failure.
    pub fn read_response(&mut self) -> Response {
        let TlsConn { tls, buf } = self;
        let fill = |buf: &mut Vec<u8>| {
            let mut tmp = [0u8; 16384];
            match tls.read(&mut tmp) {
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                Err(e) => Err(e),
            }
        };
        match read_response_from(buf, fill, false) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("server closed the TLS connection without a response"),
            Err(e) => panic!("reading a response over TLS failed: {e}"),
        }
    }

    /// Reads until the server ends the session: `true` if it sent
    /// `close_notify` (a clean end), `false` at a bare TCP close.
    pub fn read_to_close_notify(&mut self) -> bool {
        let mut sink = Vec::new();
        match self.tls.read_to_end(&mut sink) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
            Err(e) => panic!("reading to the end of the session: {e}"),
        }
    }
}
