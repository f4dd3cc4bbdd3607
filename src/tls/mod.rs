//! HTTPS: each site's certificate chain and private key, read and checked
//! by the parent; the one rustls server configuration a generation's HTTPS
//! connections share; and the pick of a certificate by the name a client
//! asks for (SNI).
//!
//! Runs in: parent (loading, once per generation, as root when started
//! so, before any child exists) and child (the pick, during its handshake,
//! and the connection itself: `stream`). Children inherit what the parent
//! loaded through `fork`; none of them opens a key file. The private keys
//! themselves are in the key processes (`keys`), which sign for children;
//! the parent only reads the key files and hands their bytes over
//! (`Tls::hand_over`), unless `tls_key_process = false` keeps them in the
//! children.
//!
//! rustls with the `ring` provider: Rust and C built by the C compiler
//! alone (aws-lc-rs may need cmake), TLS 1.3 and 1.2 with rustls's
//! defaults, ALPN `http/1.1`, no 0-RTT. Sessions resume by tickets
//! sealed with keys the parent owns (`tickets`), in TLS 1.3 and 1.2 alike;
//! rustls's session cache stays off: it lives in one process, and every
//! connection is a new one.

mod der;
pub mod keys;
pub mod stream;
pub mod tickets;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::verify_server_name;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ParsedCertificate, ProducesTickets, ResolvesServerCert,
};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{InconsistentKeys, ServerConfig};
use zeroize::Zeroizing;

use crate::config::{SiteConfig, TlsFiles};
use crate::error::StartupError;
use crate::http::host::{self, Hosts};
use crate::safeopen::{self, Guard};
use keys::remote::RemoteKey;
use keys::{KeyProcesses, Launch};

/// The only application protocol offered: HTTP/1.1 (RFC 7301).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How close to its end a certificate is warned about.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Where a generation's private keys are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyHome {
    /// Parsed by the parent and inherited by every child
    /// (`tls_key_process = false`, and `--check-config`, which serves
    /// nothing).
    Children,
    /// In the key process: the parent reads the files and hands their
    /// bytes over (`Tls::hand_over`).
    KeyProcess,
}

/// One site's certificate, loaded.
#[derive(Debug)]
pub struct Pair {
    /// The site's name, for messages.
    pub site: String,
    /// The site's index in its generation: its key's number in the key
    /// process.
    pub index: u32,
    /// The files it came from.
    pub files: TlsFiles,
    /// The chain with its signing key.
    pub certified: Arc<CertifiedKey>,
    /// When the chain's first certificate stops being valid.
    pub not_after: SystemTime,
    /// The stub `certified` signs with, when the key is in the key process.
    remote: Option<Arc<RemoteKey>>,
}

/// A key file's bytes, wiped when dropped.
type KeyFile = Zeroizing<Vec<u8>>;

/// A key file on its way to the key process.
struct Pending {
    /// Its pair, an index into `Tls::pairs`.
    pair: usize,
    pem: KeyFile,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pending {{ pair: {}, .. }}", self.pair)
    }
}

/// The TLS half of a generation: every site's certificate, and the
/// server configuration that picks among them.
#[derive(Debug)]
pub struct Tls {
    /// What every HTTPS connection of this generation is served with.
    pub config: Arc<ServerConfig>,
    /// The loaded certificates, the default site's first.
    pub pairs: Vec<Pair>,
    /// The generation number the key process holds these keys under,
    /// once handed over (`None` while they are not, or are in the
    /// children).
    pub key_generation: Option<u64>,
    /// Key files read, not yet handed to the key process.
    pending: Vec<Pending>,
}

impl Tls {
    /// Reads every site's certificate and key under `guard` (the rule the
    /// config file is read by), checks each key against its chain's first
    /// certificate, warns about a certificate expired or within
    /// `EXPIRY_WARNING` of its end or not naming one of its site's hosts,
    /// and builds the server configuration, which issues session tickets
    /// with `ticketer`. With the keys in the key process (`home`), the
    /// key files are only read, and checked when handed over.
    /// `None` when no site has a certificate (validation made sure the
    /// default site has one when any site does).
    pub fn load(
        sites: &[SiteConfig],
        guard: Option<Guard>,
        ticketer: Arc<dyn ProducesTickets>,
        home: KeyHome,
    ) -> Result<Option<Tls>, StartupError> {
        if sites.first().and_then(|s| s.tls.as_ref()).is_none() {
            return Ok(None);
        }
        // Deprecated in rustls 0.23.48 because ring offers no post-quantum
        // key exchange (X25519MLKEM768); aws-lc-rs does, but its build
        // wants cmake. The classical groups (X25519, P-256, P-384) remain.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut pairs = Vec::new();
        let mut pending = Vec::new();
        let mut keys = Vec::with_capacity(sites.len());
        for (index, site) in sites.iter().enumerate() {
            let Some(files) = &site.tls else {
                keys.push(None);
                continue;
            };
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let (pair, pem) = load_pair(&site.name, index, files, guard, home)?;
            if let Some(pem) = pem {
                pending.push(Pending { pair: pairs.len(), pem });
            }
            warn_if_ending(&pair, SystemTime::now());
            warn_if_uncovered(&pair, &site.hosts);
            keys.push(Some(Arc::clone(&pair.certified)));
            pairs.push(pair);
        }
        let resolver = BySni {
            default: Arc::clone(&pairs[0].certified),
            hosts: sites.iter().map(|s| s.hosts.clone()).collect(),
            keys,
        };
        let fail = |e: rustls::Error| StartupError::Certificate {
            site: sites[0].name.clone(),
            path: None,
            what: format!("cannot build the TLS configuration: {e}"),
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(fail)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.session_storage = Arc::new(NoServerSessionStorage {});
        // TLS 1.3 sends rustls's default of two tickets after each
        // handshake; TLS 1.2 sends one to a client that offers the
        // extension.
        config.ticketer = ticketer;
        config.max_early_data_size = 0;
        // Every suite rustls offers is an AEAD with an ephemeral key
        // exchange, so the server's order costs no client anything strong,
        // and a scanner (testssl.sh) rates "the client picks" a HIGH finding.
        config.ignore_client_order = true;
        Ok(Some(Tls { config: Arc::new(config), pairs, key_generation: None, pending }))
    }

    /// Hands the key files read to the key processes (each started if
    /// it is not running: see `KeyProcesses::ensure_started`), and wipes
    /// them; checks each key they loaded against its certificate. The
    /// keys are then those of a new generation of the key processes
    /// (`key_generation`), which the caller commits once this generation
    /// serves; once it has one (the files read again for a key process
    /// started since: `reread_keys`), they go to the key processes that
    /// lack it, under the same number. Every key is tried; the first
    /// failure is returned (the keys that failed cannot sign). Nothing
    /// to do with the keys in the children.
    pub fn hand_over(&mut self, keys: &mut KeyProcesses, launch: Launch<'_>) -> Result<(), StartupError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = keys.ensure_started(launch);
        let generation = match self.key_generation {
            Some(g) => g,
            None => keys.new_generation(),
        };
        let mut first_error = None;
        // Each file is wiped as it is dropped, by this loop.
        for p in std::mem::take(&mut self.pending) {
            let pair = &self.pairs[p.pair];
            let fail = |what: String| StartupError::Certificate {
                site: pair.site.clone(),
                path: Some(pair.files.key.clone()),
                what,
            };
            let handed = match &started {
                Ok(()) => keys.load(generation, pair.index, &p.pem).map_err(|e| fail(e.to_string())),
                Err(e) => Err(fail(e.to_string())),
            };
            drop(p);
            let checked = handed.and_then(|loaded| match &pair.remote {
                Some(remote) => remote.accept(loaded).map_err(fail),
                None => Ok(()),
            });
            if let Err(e) = checked.and_then(|()| check_match(&pair.certified, &pair.site, &pair.files)) {
                first_error.get_or_insert(e);
            }
        }
        keys.handed(generation);
        self.key_generation = Some(generation);
        first_error.map_or(Ok(()), Err)
    }

    /// Whether the keys are in the key process.
    pub fn keys_remote(&self) -> bool {
        self.pairs.iter().any(|p| p.remote.is_some())
    }

    /// Reads every key file again for a key process started since they
    /// were handed over (after one died: it took the keys with it);
    /// `hand_over` then gives them to it.
    pub fn reread_keys(&mut self, guard: Option<Guard>) -> Result<(), StartupError> {
        self.pending.clear();
        for (i, pair) in self.pairs.iter().enumerate() {
            if pair.remote.is_some() {
                let pem = read_key(&pair.site, &pair.files.key, guard)?;
                self.pending.push(Pending { pair: i, pem });
            }
        }
        Ok(())
    }

    /// Refuses a certificate already expired at `now` (`--check-config`).
    pub fn refuse_expired(&self, now: SystemTime) -> Result<(), StartupError> {
        match self.pairs.iter().find(|p| p.not_after <= now) {
            Some(p) => Err(StartupError::Certificate {
                site: p.site.clone(),
                path: Some(p.files.certificate.clone()),
                what: format!("expired {}", Date(p.not_after)),
            }),
            None => Ok(()),
        }
    }
}

/// Reads and checks one site's chain and key: the key parsed here with
/// the keys in the children, or (`KeyHome::KeyProcess`) only read, its
/// bytes returned for the key process, and a stub signing in its place.
fn load_pair(
    site: &str,
    index: u32,
    files: &TlsFiles,
    guard: Option<Guard>,
    home: KeyHome,
) -> Result<(Pair, Option<KeyFile>), StartupError> {
    let fail = |path: &Path, what: String| StartupError::Certificate {
        site: site.to_string(),
        path: Some(path.to_path_buf()),
        what,
    };
    let cert_path = files.certificate.as_path();
    let chain_pem =
        safeopen::read_trusted_through_links(cert_path, guard).map_err(|e| fail(cert_path, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(cert_path, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(fail(cert_path, "holds no CERTIFICATE block".to_string()));
    }
    let not_after = der::not_after(&chain[0])
        .ok_or_else(|| fail(cert_path, "its first certificate cannot be read".to_string()))?;
    let pem = read_key(site, &files.key, guard)?;
    let (key, remote, pem): (Arc<dyn SigningKey>, _, _) = match home {
        KeyHome::Children => (keys::signing_key(&pem).map_err(|e| fail(&files.key, e))?, None, None),
        KeyHome::KeyProcess => {
            let remote = Arc::new(RemoteKey::new(index));
            (Arc::clone(&remote) as Arc<dyn SigningKey>, Some(remote), Some(pem))
        }
    };
    let certified = CertifiedKey::new(chain, key);
    if home == KeyHome::Children {
        check_match(&certified, site, files)?;
    }
    let pair = Pair {
        site: site.to_string(),
        index,
        files: files.clone(),
        certified: Arc::new(certified),
        not_after,
        remote,
    };
    Ok((pair, pem))
}

/// Reads a key file (no larger than the key process takes) into a buffer
/// wiped when dropped, read in one allocation (a buffer that grew would
/// leave copies behind).
fn read_key(site: &str, path: &Path, guard: Option<Guard>) -> Result<KeyFile, StartupError> {
    safeopen::read_secret(path, guard, keys::MAX_KEY_FILE).map_err(|e| StartupError::Certificate {
        site: site.to_string(),
        path: Some(path.to_path_buf()),
        what: e.to_string(),
    })
}

/// Refuses a key that does not match its chain's first certificate.
fn check_match(certified: &CertifiedKey, site: &str, files: &TlsFiles) -> Result<(), StartupError> {
    let fail = |path: &Path, what: String| StartupError::Certificate {
        site: site.to_string(),
        path: Some(path.to_path_buf()),
        what,
    };
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive is not judged.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(fail(
            &files.key,
            format!("does not match the first certificate of {}", files.certificate.display()),
        )),
        Err(e) => Err(fail(&files.certificate, e.to_string())),
    }
}

/// Warns about a certificate that has expired by `now`, or will within
/// `EXPIRY_WARNING`.
fn warn_if_ending(pair: &Pair, now: SystemTime) {
    let path = pair.files.certificate.display();
    if pair.not_after <= now {
        log::warn!("certificate {path} of {} expired {}", pair.site, Date(pair.not_after));
    } else if pair.not_after.duration_since(now).is_ok_and(|left| left <= EXPIRY_WARNING) {
        log::warn!("certificate {path} of {} expires {}: renew it", pair.site, Date(pair.not_after));
    }
}

/// Warns about each of `hosts` that `pair`'s certificate does not name
/// (in its subjectAltName): a client asking for that host would refuse it.
/// A wildcard host is checked with a name of one label beneath its
/// suffix, as a client would ask for.
fn warn_if_uncovered(pair: &Pair, hosts: &Hosts) {
    let Some(leaf) = pair.certified.cert.first() else {
        return;
    };
    let Ok(parsed) = ParsedCertificate::try_from(leaf) else {
        return;
    };
    let exact = hosts.exact().iter().map(|h| (h.clone(), h.clone()));
    let wild = hosts.wildcards().iter().map(|w| (format!("*{w}"), format!("forkhttpd-check{w}")));
    for (host, name) in exact.chain(wild) {
        let name = name.trim_start_matches('[').trim_end_matches(']').to_string();
        let covered = ServerName::try_from(name).is_ok_and(|n| verify_server_name(&parsed, &n).is_ok());
        if !covered {
            log::warn!(
                "certificate {} of {} does not name its host {host:?}: clients asking for it will refuse it",
                pair.files.certificate.display(),
                pair.site
            );
        }
    }
}

/// A time shown as its UTC date and time.
struct Date(SystemTime);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", httpdate::fmt_http_date(self.0))
    }
}

/// The certificate for a client's name: the site the name picks (as a
/// request's `Host` picks one, wildcards included), if it has one, else
/// the default site's. A client that names no site, or one no site
/// answers, gets the default.
#[derive(Debug)]
struct BySni {
    default: Arc<CertifiedKey>,
    /// Each site's hosts, in the generation's order.
    hosts: Vec<Hosts>,
    /// Each site's certificate, in the same order.
    keys: Vec<Option<Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let site = sni_site(hello.server_name(), self.hosts.iter());
        Some(site.and_then(|i| self.keys[i].clone()).unwrap_or_else(|| Arc::clone(&self.default)))
    }
}

/// The site (its index among `sites`) a client's SNI name picks, as the
/// `Host` field would; `None` for no name or one no site answers.
pub fn sni_site<'s>(name: Option<&str>, sites: impl Iterator<Item = &'s Hosts> + Clone) -> Option<usize> {
    host::select(name.map(str::as_bytes), sites)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_picks_as_host_does() {
        let mut a = Hosts::default();
        a.add("a.test").unwrap();
        let mut b = Hosts::default();
        b.add("*.b.test").unwrap();
        let sites = [Hosts::default(), a, b];
        assert_eq!(sni_site(Some("a.test"), sites.iter()), Some(1));
        assert_eq!(sni_site(Some("A.TEST"), sites.iter()), Some(1));
        assert_eq!(sni_site(Some("www.b.test"), sites.iter()), Some(2));
        assert_eq!(sni_site(Some("b.test"), sites.iter()), None);
        assert_eq!(sni_site(None, sites.iter()), None);
    }
}
