//! The validated configuration: `Config` and its parts, each made by one
//! validation step, and `SiteConfig`, one site's keys. Immutable once
//! built; a reload builds new ones.
//!
//! Runs in: parent (built there); children receive it through `fork`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::account::Identity;
use crate::http::host::Hosts;
use crate::http::mime::MimeTypes;
use crate::http::rules::HeaderRules;
use crate::http::site::Site;
use crate::listener::ListenSpec;
use crate::proxy::Cidr;

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard error (the default in the foreground).
    Stderr,
    /// A file, opened `O_APPEND` by the parent.
    File(PathBuf),
    /// The system log (facility `daemon`, level `info`).
    Syslog,
    /// No access log.
    Off,
}

/// Where daemon messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorLogTarget {
    /// Standard error in the foreground, syslog when daemonized or under systemd.
    Auto,
    /// Always standard error.
    Stderr,
    /// Always the system log.
    Syslog,
    /// A file, opened `O_APPEND` by the parent (absolute).
    File(PathBuf),
}

impl std::fmt::Display for ErrorLogTarget {
    /// The value as it is written in the file, quoted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorLogTarget::Auto => f.write_str("\"auto\""),
            ErrorLogTarget::Stderr => f.write_str("\"stderr\""),
            ErrorLogTarget::Syslog => f.write_str("\"syslog\""),
            ErrorLogTarget::File(p) => write!(f, "{:?}", p.display().to_string()),
        }
    }
}

/// The validated configuration. Immutable once built; a reload builds a
/// new one. Its sites are apart (`Config::load` returns them beside it).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the config was read from, if a file was given.
    pub source: Option<PathBuf>,
    /// The addresses to listen on, each with what its connections carry:
    /// `listen` (plain), `proxy_listen` (a PROXY protocol header first,
    /// v1 or v2), `tls_listen` (HTTPS), then `proxy_tls_listen` (a PROXY
    /// header, then HTTPS).
    pub listeners: Vec<ListenSpec>,
    /// `listen(2)` backlog per listener.
    pub backlog: i32,
    /// Which proxies are believed, and how.
    pub proxy: Proxy,
    /// Extension → content type (built-in, `mime_types` files, `mime`),
    /// shared by every site.
    pub mime: MimeTypes,
    /// The `mime_types` files read into `mime` (absolute), held to the
    /// config file's own rules (`generation`).
    pub mime_files: Vec<PathBuf>,
    /// Who children serve as, when the server starts as root.
    pub privileges: Privileges,
    /// Where the server writes its pid, if anywhere (absolute); in the
    /// foreground as well as with `--daemon`.
    pub pid_file: Option<PathBuf>,
    /// Caps on children, timeouts and sizes.
    pub limits: Limits,
    /// Whether the private keys are in the key process, which signs for
    /// children (`tls_key_process`), rather than in every child.
    pub tls_key_process: bool,
    /// How many key processes sign (`tls_key_processes`); 0: one per
    /// CPU (`tls::keys::count`).
    pub tls_key_processes: usize,
    /// How often the parent makes a new session-ticket key
    /// (`tls_ticket_rotation`); a ticket resumes for one to two periods.
    pub tls_ticket_rotation: Duration,
    /// Where log lines go.
    pub logging: Logging,
    /// Whether the `Server` header carries the version.
    pub server_version: bool,
    /// The path a load balancer's health check asks for (answered `200`
    /// without the document root or an access-log line); empty: off.
    pub health_path: String,
    /// The path of the status page and metrics (`status_path`); empty: off.
    pub status_path: String,
    /// The client addresses the status page answers (`status_allow`).
    pub status_allow: Vec<Cidr>,
    /// The ACME webroot (`acme_webroot`): its `.well-known/acme-challenge/`
    /// is served for every site, over plain HTTP and HTTPS; `None`: off.
    pub acme_webroot: Option<PathBuf>,
    /// How often the parent looks at the certificate and key files for a
    /// change and reloads when one changed (`tls_watch_interval`); `None`: off.
    pub tls_watch_interval: Option<Duration>,
}

/// The proxies in front of the server (`trusted_proxies`,
/// `proxy_timeout`, `real_ip_header`).
#[derive(Clone, Debug)]
pub struct Proxy {
    /// The proxies whose PROXY headers and forwarding fields are believed.
    pub trusted: Vec<Cidr>,
    /// How long a child waits for a connection's PROXY header.
    pub timeout: Duration,
    /// The field a trusted proxy on a plain listener names the client in.
    pub real_ip_header: RealIpHeader,
}

/// The account children run as and how they are confined (`user`,
/// `group`, `chroot`, `allow_root`, `sandbox`).
#[derive(Clone, Debug)]
pub struct Privileges {
    /// The account children switch to when the server starts as root.
    pub identity: Identity,
    /// Whether `identity.gid` comes from the `group` key (rather than
    /// being the user's primary group).
    pub group_given: bool,
    /// Whether children `chroot` into the root (only when started as root).
    pub chroot: bool,
    /// Whether serving as root is allowed.
    pub allow_root: bool,
    /// Whether each child sandboxes itself (Landlock and seccomp) before
    /// reading a byte: see `sandbox`.
    pub sandbox: bool,
}

/// Caps on children, timeouts and sizes.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Cap on live children.
    pub max_children: usize,
    /// Cap on live children per client address (IPv4-mapped IPv6 counted
    /// as IPv4), applied once `per_ip_cap_from` children are live; 0 = none.
    pub max_children_per_ip: usize,
    /// Live children from which `max_children_per_ip` applies:
    /// `max_children_per_ip_from_percent` of `max_children`, rounded up.
    /// Below it an address may hold any number of children.
    pub per_ip_cap_from: usize,
    /// Live children from which the parent asks the child idle longest
    /// between requests to close its connection:
    /// `keepalive_give_back_from_percent` of `max_children`, rounded up;
    /// 0 = never.
    pub give_back_from: usize,
    /// Time allowed for a whole request head, from its first byte.
    pub header_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Time a client may accept no response bytes before it is dropped.
    pub send_timeout: Duration,
    /// Least average rate (bytes/s) a client must accept a response at;
    /// 0 = no such rule.
    pub min_send_rate: u64,
    /// How far behind `min_send_rate` a response may fall: the time allowed
    /// before the rate counts, and the most credit fast bytes can earn.
    pub min_send_rate_grace: Duration,
    /// Time a graceful stop lets responses in flight finish.
    pub shutdown_grace: Duration,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Requests served on one connection before it is closed.
    pub max_requests_per_connection: u32,
}

/// Where log lines go (`access_log`, `error_log`).
#[derive(Clone, Debug)]
pub struct Logging {
    /// Where access-log lines go.
    pub access_log: AccessLogTarget,
    /// Where daemon messages go.
    pub error_log: ErrorLogTarget,
}

/// The request field that names the client behind a trusted proxy. Only
/// one is read: a client could send the other one itself, and a proxy
/// that does not touch it would pass its claim on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Forwarded-For: client, proxy1, ...`
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1, ...` (RFC 7239)
    Forwarded,
}

/// One site: which hosts it answers and what it serves. Owned by the
/// parent, built once per (re)load; children borrow from it.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// How errors and logs name it: `default site`, or `[[site]] #N (host)`.
    pub name: String,
    /// The hosts it answers (empty for the default site).
    pub hosts: Hosts,
    /// Its document root, canonical.
    pub root: PathBuf,
    /// File names tried, in order, for a request naming a directory.
    pub index: Vec<String>,
    /// Whether a directory without an index file is listed.
    pub listing: bool,
    /// Whether `FILE.br`, `FILE.zst` and `FILE.gz` are served in place of
    /// `FILE` to clients that accept them.
    pub precompressed: bool,
    /// The file (a path beneath the root, `/index.html`) served with `200`
    /// for a `GET` or `HEAD` of a path that does not exist.
    pub fallback: Option<String>,
    /// The response-header fields it adds.
    pub headers: HeaderRules,
    /// Custom error pages: status code and path beneath the root.
    pub error_pages: Vec<(u16, String)>,
    /// Its certificate for HTTPS (`tls_certificate`, `tls_key`), if any.
    pub tls: Option<TlsFiles>,
    /// Whether a request over plain HTTP is redirected to HTTPS (the ACME
    /// challenge excepted).
    pub https_redirect: bool,
    /// The port that redirect names (left out of it when 443).
    pub https_port: u16,
    /// The `Strict-Transport-Security` value sent over HTTPS, if any.
    pub hsts: Option<String>,
}

/// A site's certificate chain and private key files (PEM), absolute. The
/// parent reads them (`tls::load`) before any child runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The chain: the site's certificate first, then its intermediates.
    pub certificate: PathBuf,
    /// The private key of the chain's first certificate.
    pub key: PathBuf,
}

impl SiteConfig {
    /// What the reply rules need of this site, borrowed; `types` is the
    /// configuration's content-type table.
    pub fn site<'a>(&'a self, server: &'a str, types: &'a MimeTypes) -> Site<'a> {
        Site {
            index: &self.index,
            server,
            types,
            listing: self.listing,
            precompressed: self.precompressed,
            fallback: self.fallback.as_deref(),
            headers: &self.headers,
            error_pages: &self.error_pages,
            https_redirect: self.https_redirect.then_some(self.https_port),
            hsts: self.hsts.as_deref(),
        }
    }
}

/// Values given on the command line; each one, when present, wins over the
/// file. Also the directory the command ran in, against which every relative
/// path is resolved.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`, repeatable; replaces the file's list when non-empty.
    pub listen: Vec<String>,
    /// `--root`, as given (resolved against `base_dir` like the file's paths).
    pub root: Option<PathBuf>,
    /// The working directory at start. Every relative path, on the command
    /// line or in the file, is resolved against it, at start and on every
    /// reload alike: after `--daemon` the process's own working directory is
    /// `/`, and "www" must not come to mean `/www`. `None` (unknown) means
    /// the working directory at the time of loading.
    pub base_dir: Option<PathBuf>,
}

impl Overrides {
    /// `path` made absolute against `base_dir`, so that it names the same
    /// file whatever the process's working directory is by then.
    pub fn resolve(&self, path: &Path) -> std::io::Result<PathBuf> {
        match &self.base_dir {
            Some(base) => std::path::absolute(base.join(path)),
            None => std::path::absolute(path),
        }
    }
}
