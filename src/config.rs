//! The configuration: the TOML file, the command-line overrides, the built-in
//! defaults, and their validation into one immutable `Config`.
//!
//! Runs in: parent, before the accept loop and again on `SIGHUP`. Children
//! receive the `Config` for free through `fork`; nothing is parsed after it.
//!
//! The file is TOML read with `serde` (`deny_unknown_fields`), so a typo is an
//! error that names the key and the line instead of a silently ignored
//! setting. Every key is optional, and an empty file means the defaults below,
//! which are the values written in the shipped `config/forkhttpd.toml`.
//!
//! The top-level content keys (`root`, `index`, `listing`, `fallback`,
//! `nosniff`, `headers`, `header_rules`, `error_pages`) make the default
//! site; each `[[site]]` table is a name-based virtual host with `hosts`
//! and its own content keys (a key it leaves out takes its built-in
//! default, not the top level's value). Every value is read with its span
//! (`toml::Spanned`), so an error names the line the value is written on,
//! and inside a site, which site.

use std::collections::BTreeMap;

use std::fs;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::geteuid;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::account::Identity;
use crate::error::{ConfigError, StartupError};
use crate::http::decide::Site;
use crate::http::mime::{self, MimeBuilder, MimeTypes};
use crate::http::resolve;
use crate::http::site::{Header, HeaderRule, HeaderRules, Hosts, PathPattern};
use crate::listener;
use crate::proxy::Cidr;
use crate::safeopen::{self, Guard};

/// Default listen address: loopback only, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `listen(2)` backlog. busybox httpd's 9 overflows under load and
/// costs a one-second SYN retransmit; 1024 absorbs bursts while children start.
pub const DEFAULT_BACKLOG: i32 = 1024;
/// Default document root, relative to the directory the server was started from.
pub const DEFAULT_ROOT: &str = "www";
/// Default file names tried for a request that names a directory.
pub const DEFAULT_INDEX: [&str; 2] = ["index.html", "index.htm"];
/// Default account for children when started as root: present on every
/// Unix system, owns nothing.
pub const DEFAULT_USER: &str = "nobody";
/// Default cap on live children; at the cap the parent stops accepting.
pub const DEFAULT_MAX_CHILDREN: usize = 512;
/// Default cap on one address's live children, applied under pressure only
/// (see `DEFAULT_MAX_CHILDREN_PER_IP_FROM_PERCENT`).
pub const DEFAULT_MAX_CHILDREN_PER_IP: usize = 32;
/// Default share of `max_children` (percent) that must be busy before
/// `max_children_per_ip` applies: below it, room is plenty and an office
/// or a carrier behind one address is not refused; from it on, one address
/// holds no more than its share, so it tops out at half the server.
pub const DEFAULT_MAX_CHILDREN_PER_IP_FROM_PERCENT: u8 = 50;
/// Default time for a whole request head, from its first byte (seconds).
pub const DEFAULT_HEADER_TIMEOUT: f64 = 10.0;
/// Default idle time allowed between keep-alive requests (seconds).
pub const DEFAULT_KEEPALIVE_TIMEOUT: f64 = 5.0;
/// Default time a client may accept no response bytes before it is dropped (seconds).
pub const DEFAULT_SEND_TIMEOUT: f64 = 30.0;
/// Default seconds a child waits for a PROXY header: a load balancer sends
/// it at once, so anything slower is not one.
pub const DEFAULT_PROXY_TIMEOUT: f64 = 5.0;
/// Default least average rate a response must be accepted at (bytes/s).
pub const DEFAULT_MIN_SEND_RATE: u64 = 1024;
/// Default slack, in seconds, a response may fall behind `min_send_rate`.
pub const DEFAULT_MIN_SEND_RATE_GRACE: f64 = 10.0;
/// Default time a graceful stop lets responses in flight finish (seconds).
pub const DEFAULT_SHUTDOWN_GRACE: f64 = 10.0;
/// Default largest request head in bytes; larger → 431 (or 414).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8192;
/// Default number of requests served on one connection before it is closed.
pub const DEFAULT_MAX_REQUESTS: u32 = 1000;

/// Longest accepted timeout: a day. Longer values are almost surely typos
/// and would overflow `poll`'s millisecond argument arithmetic anyway.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// Shortest accepted timeout: a millisecond, the resolution of `poll`.
/// Anything shorter would round to zero, and a zero deadline closes every
/// connection before its first byte, with no response and no log line.
const MIN_TIMEOUT_SECS: f64 = 0.001;
/// Smallest and largest accepted `max_header_bytes`. Below 256 no browser
/// request fits; above 1 MiB a child's buffer stops being small.
const HEADER_BYTES_RANGE: (usize, usize) = (256, 1 << 20);

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

/// The validated configuration. Immutable once built; a reload builds a new one.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the config was read from, if a file was given.
    pub source: Option<PathBuf>,
    /// Listen addresses as written (`host:port`, `[v6]:port`).
    pub listen: Vec<String>,
    /// `listen(2)` backlog per listener.
    pub backlog: i32,
    /// Addresses to listen on whose connections start with a PROXY
    /// protocol header (v1 or v2); bound beside `listen`.
    pub proxy_listen: Vec<String>,
    /// The proxies whose PROXY headers and forwarding fields are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// How long a child waits for a connection's PROXY header.
    pub proxy_timeout: Duration,
    /// The field a trusted proxy on a plain listener names the client in.
    pub real_ip_header: RealIpHeader,
    /// Extension → content type (built-in, `mime_types` files, `mime`),
    /// shared by every site.
    pub mime: MimeTypes,
    /// The `mime_types` files read into `mime` (absolute), held to the
    /// config file's own rules (`generation`).
    pub mime_files: Vec<PathBuf>,
    /// The account children switch to when the server starts as root.
    pub identity: Identity,
    /// Whether `identity.gid` comes from the `group` key (rather than
    /// being the user's primary group).
    pub group_given: bool,
    /// Whether children `chroot` into the root (only when started as root).
    pub chroot: bool,
    /// Whether serving as root is allowed.
    pub allow_root: bool,
    /// Where the server writes its pid, if anywhere (absolute); in the
    /// foreground as well as with `--daemon`.
    pub pid_file: Option<PathBuf>,
    /// Cap on live children.
    pub max_children: usize,
    /// Cap on live children per client address (IPv4-mapped IPv6 counted
    /// as IPv4), applied once `per_ip_cap_from` children are live; 0 = none.
    pub max_children_per_ip: usize,
    /// Live children from which `max_children_per_ip` applies:
    /// `max_children_per_ip_from_percent` of `max_children`, rounded up.
    /// Below it an address may hold any number of children.
    pub per_ip_cap_from: usize,
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
    /// Where access-log lines go.
    pub access_log: AccessLogTarget,
    /// Where daemon messages go.
    pub error_log: ErrorLogTarget,
    /// Whether the `Server` header carries the version.
    pub server_version: bool,
    /// The path a load balancer's health check asks for (answered `200`
    /// without the document root or an access-log line); empty: off.
    pub health_path: String,
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

impl Config {
    /// Every address to listen on: `listen`, then `proxy_listen`.
    pub fn all_listen(&self) -> Vec<String> {
        self.listen.iter().chain(&self.proxy_listen).cloned().collect()
    }
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

/// A number of seconds as written in the file: integer or decimal.
#[derive(Clone, Copy, Debug)]
enum Seconds {
    Int(i64),
    Float(f64),
}

impl<'de> Deserialize<'de> for Seconds {
    /// Takes an integer or a float; anything else is refused saying which
    /// forms are accepted (a derived untagged enum would only say that no
    /// variant of `Seconds` matched).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        struct Number;
        impl serde::de::Visitor<'_> for Number {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of seconds, written as a number without quotes (5 or 0.5)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                i64::try_from(v)
                    .map(Seconds::Int)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
                Ok(Seconds::Float(v))
            }
        }
        d.deserialize_any(Number)
    }
}

impl Seconds {
    fn as_f64(self) -> f64 {
        match self {
            Seconds::Int(i) => i as f64,
            Seconds::Float(f) => f,
        }
    }
}

/// A value as written, with where: its byte range in the file (empty for a
/// built-in default, which is written nowhere).
type At<T> = Spanned<T>;

/// A built-in default: a value with an empty span.
fn dflt<T>(value: T) -> At<T> {
    Spanned::new(0..0, value)
}

/// A header map as written (`{ "Name" = "value" }`), each side with its span.
type RawHeaders = BTreeMap<At<String>, At<String>>;

/// One `header_rules` entry as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: At<String>,
    headers: RawHeaders,
}

/// The content keys a site has, as written (the top level's, or a
/// `[[site]]`'s), gathered for one validation.
struct RawSiteKeys {
    root: At<PathBuf>,
    index: At<Vec<String>>,
    listing: bool,
    precompressed: bool,
    fallback: At<String>,
    nosniff: bool,
    headers: RawHeaders,
    header_rules: Vec<At<RawRule>>,
    error_pages: RawHeaders,
}

/// A `[[site]]` table as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawSite {
    hosts: At<Vec<String>>,
    root: At<PathBuf>,
    #[serde(default = "default_index")]
    index: At<Vec<String>>,
    #[serde(default)]
    listing: bool,
    #[serde(default)]
    precompressed: bool,
    #[serde(default = "default_fallback")]
    fallback: At<String>,
    #[serde(default = "default_nosniff")]
    nosniff: bool,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default)]
    header_rules: Vec<At<RawRule>>,
    #[serde(default)]
    error_pages: RawHeaders,
}

fn default_index() -> At<Vec<String>> {
    dflt(DEFAULT_INDEX.iter().map(|s| s.to_string()).collect())
}

fn default_fallback() -> At<String> {
    dflt(String::new())
}

fn default_nosniff() -> bool {
    true
}

/// The file as written, before validation. Every field defaults.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    listen: At<Vec<String>>,
    backlog: At<i64>,
    proxy_listen: At<Vec<String>>,
    trusted_proxies: At<Vec<String>>,
    proxy_timeout: At<Seconds>,
    real_ip_header: At<String>,
    root: At<PathBuf>,
    index: At<Vec<String>>,
    listing: bool,
    precompressed: bool,
    mime_types: At<Vec<PathBuf>>,
    mime: At<BTreeMap<String, String>>,
    default_type: At<String>,
    charset: At<String>,
    fallback: At<String>,
    nosniff: bool,
    headers: RawHeaders,
    header_rules: Vec<At<RawRule>>,
    error_pages: RawHeaders,
    user: At<String>,
    group: At<String>,
    chroot: bool,
    allow_root: bool,
    pid_file: At<PathBuf>,
    max_children: At<i64>,
    max_children_per_ip: At<i64>,
    max_children_per_ip_from_percent: At<i64>,
    header_timeout: At<Seconds>,
    keepalive_timeout: At<Seconds>,
    send_timeout: At<Seconds>,
    min_send_rate: At<i64>,
    min_send_rate_grace: At<Seconds>,
    shutdown_grace: At<Seconds>,
    max_header_bytes: At<i64>,
    max_requests_per_connection: At<i64>,
    access_log: At<String>,
    error_log: At<String>,
    server_version: bool,
    health_path: At<String>,
    site: Vec<At<RawSite>>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: dflt(vec![DEFAULT_LISTEN.to_string()]),
            backlog: dflt(i64::from(DEFAULT_BACKLOG)),
            proxy_listen: dflt(Vec::new()),
            trusted_proxies: dflt(Vec::new()),
            proxy_timeout: dflt(Seconds::Float(DEFAULT_PROXY_TIMEOUT)),
            real_ip_header: dflt("X-Forwarded-For".to_string()),
            root: dflt(PathBuf::from(DEFAULT_ROOT)),
            index: default_index(),
            listing: false,
            precompressed: false,
            mime_types: dflt(Vec::new()),
            mime: dflt(BTreeMap::new()),
            default_type: dflt(mime::DEFAULT_TYPE.to_string()),
            charset: dflt(mime::DEFAULT_CHARSET.to_string()),
            fallback: default_fallback(),
            nosniff: default_nosniff(),
            headers: RawHeaders::new(),
            header_rules: Vec::new(),
            error_pages: RawHeaders::new(),
            user: dflt(DEFAULT_USER.to_string()),
            group: dflt(String::new()),
            chroot: false,
            allow_root: false,
            pid_file: dflt(PathBuf::new()),
            max_children: dflt(DEFAULT_MAX_CHILDREN as i64),
            max_children_per_ip: dflt(DEFAULT_MAX_CHILDREN_PER_IP as i64),
            max_children_per_ip_from_percent: dflt(i64::from(DEFAULT_MAX_CHILDREN_PER_IP_FROM_PERCENT)),
            header_timeout: dflt(Seconds::Float(DEFAULT_HEADER_TIMEOUT)),
            keepalive_timeout: dflt(Seconds::Float(DEFAULT_KEEPALIVE_TIMEOUT)),
            send_timeout: dflt(Seconds::Float(DEFAULT_SEND_TIMEOUT)),
            min_send_rate: dflt(DEFAULT_MIN_SEND_RATE as i64),
            min_send_rate_grace: dflt(Seconds::Float(DEFAULT_MIN_SEND_RATE_GRACE)),
            shutdown_grace: dflt(Seconds::Float(DEFAULT_SHUTDOWN_GRACE)),
            max_header_bytes: dflt(DEFAULT_MAX_HEADER_BYTES as i64),
            max_requests_per_connection: dflt(i64::from(DEFAULT_MAX_REQUESTS)),
            access_log: dflt("stderr".to_string()),
            error_log: dflt("auto".to_string()),
            server_version: false,
            health_path: dflt(String::new()),
            site: Vec::new(),
        }
    }
}

impl Config {
    /// Reads `path` (or nothing: the built-in defaults), applies the
    /// command-line overrides and validates the result. The file and every
    /// `mime_types` file are read by `safeopen` under `guard`. Returns the
    /// error naming the file, line and key of the first problem found.
    /// Returns the configuration and, apart, its sites: `sites[0]` is the
    /// default site (the top-level keys, no hosts), then each `[[site]]`
    /// in file order. The privilege plan and the trust checks on what was
    /// read are the caller's (`generation`).
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
        guard: Option<Guard>,
    ) -> Result<(Config, Vec<SiteConfig>), StartupError> {
        let (raw, text) = match path {
            Some(p) => {
                // Never fs::read_to_string: a FIFO in its place would block
                // the parent's reload in open(2).
                let text = safeopen::read_trusted(p, guard).map_err(|e| unreadable(p, e))?;
                let raw: RawConfig = toml::from_str(&text).map_err(|e| describe_toml_error(&e, p, &text))?;
                (raw, text)
            }
            None => (RawConfig::default(), String::new()),
        };
        let checker = Checker { path, text: &text, guard };
        checker.validate(raw, overrides)
    }
}

/// The error for a config file `path` that could not be read.
pub fn unreadable(path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        site: None,
        key: None,
        what: format!("cannot read: {e}"),
    }
}

/// Locates a `toml` error: its line (from the error's span), and, from
/// the document parsed again with spans, the `[[site]]` entry it is in
/// and the key it is under. A text search would miss `[[ site ]]` and
/// sub-tables such as `[site.headers]`.
fn describe_toml_error(err: &toml::de::Error, file: &Path, text: &str) -> ConfigError {
    let mut located = ConfigError {
        file: Some(file.to_path_buf()),
        line: None,
        site: None,
        key: None,
        what: err.message().trim().to_string(),
    };
    let Some(span) = err.span() else { return located };
    let at = span.start.min(text.len());
    located.line = Some(text[..at].matches('\n').count() + 1);
    // Best effort: a syntax error still leaves the tables before it.
    let (doc, _) = DeTable::parse_recoverable(text);
    let doc = doc.get_ref();
    let mut table = doc;
    let sites = doc.get("site").and_then(|s| match s.get_ref() {
        DeValue::Array(a) => Some(a),
        _ => None,
    });
    for (i, entry) in sites.into_iter().flat_map(|a| a.iter()).enumerate() {
        if let DeValue::Table(t) = entry.get_ref()
            && extent(entry).contains(&at)
        {
            let first = t.get("hosts").and_then(|h| match h.get_ref() {
                DeValue::Array(a) => a.first().and_then(|v| v.get_ref().as_str()),
                _ => None,
            });
            located.site = Some(site_name(i, first));
            table = t;
            break;
        }
    }
    let path = key_path(table, at);
    if !path.is_empty() {
        located.key = Some(path.join("."));
    }
    located
}

/// The byte range a parsed value covers: its own span (for a table, only
/// its header) together with those of every key and value beneath it.
fn extent(value: &Spanned<DeValue<'_>>) -> Range<usize> {
    let mut range = value.span();
    let mut widen = |r: Range<usize>| {
        if !r.is_empty() {
            range = if range.is_empty() { r } else { range.start.min(r.start)..range.end.max(r.end) };
        }
    };
    match value.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                widen(k.span());
                widen(extent(v));
            }
        }
        DeValue::Array(a) => a.iter().for_each(|v| widen(extent(v))),
        _ => {}
    }
    range
}

/// The keys, outermost first, leading from `table` to the innermost key
/// whose name or value covers byte `at` (array entries add no key).
fn key_path(table: &DeTable<'_>, at: usize) -> Vec<String> {
    let mut path = Vec::new();
    let mut here = table.iter().find(|(k, v)| k.span().contains(&at) || extent(v).contains(&at));
    while let Some((k, v)) = here {
        path.push(key_text(k.get_ref()));
        let mut value = v;
        while let DeValue::Array(a) = value.get_ref() {
            match a.iter().find(|v| extent(v).contains(&at)) {
                Some(v) => value = v,
                None => break,
            }
        }
        here = match value.get_ref() {
            DeValue::Table(t) => t.iter().find(|(k, v)| k.span().contains(&at) || extent(v).contains(&at)),
            _ => None,
        };
    }
    path
}

/// A key as it would be written: bare when it can be, else quoted.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_string() } else { format!("{key:?}") }
}

/// How errors and logs name the `[[site]]` table at index `i`: its
/// number, counted from 1, and its first host when it has one.
fn site_name(i: usize, first_host: Option<&str>) -> String {
    match first_host {
        Some(host) => format!("[[site]] #{} ({host})", i + 1),
        None => format!("[[site]] #{}", i + 1),
    }
}

/// Validation with access to the file text, so each error can name its line.
struct Checker<'a> {
    path: Option<&'a Path>,
    text: &'a str,
    /// The guard `mime_types` files are read under.
    guard: Option<Guard>,
}

/// Where in the file a value is: its span, and the site table it is in.
#[derive(Clone, Copy)]
struct Place<'s> {
    span: (usize, usize),
    site: Option<&'s str>,
}

impl Place<'_> {
    fn top<T>(at: &At<T>) -> Place<'static> {
        let r = at.span();
        Place { span: (r.start, r.end), site: None }
    }
}

impl Checker<'_> {
    fn validate(&self, raw: RawConfig, ov: &Overrides) -> Result<(Config, Vec<SiteConfig>), StartupError> {
        let (mime, mime_files) = self.mime(&raw, ov)?;
        let listen_at = if ov.listen.is_empty() { Place::top(&raw.listen) } else { Place::nowhere() };
        let listen = if ov.listen.is_empty() { raw.listen.into_inner() } else { ov.listen.clone() };
        // A PROXY-only instance (behind a balancer) may have no plain listener.
        if listen.is_empty() && raw.proxy_listen.get_ref().is_empty() {
            return Err(self.error("listen", listen_at, "needs at least one address (or proxy_listen some)"));
        }
        for addr in &listen {
            self.listen_address("listen", listen_at, addr)?;
        }
        let proxy_listen_at = Place::top(&raw.proxy_listen);
        let proxy_listen = raw.proxy_listen.into_inner();
        for addr in &proxy_listen {
            self.listen_address("proxy_listen", proxy_listen_at, addr)?;
            if listen.contains(addr) {
                return Err(self.error(
                    "proxy_listen",
                    proxy_listen_at,
                    &format!("{addr:?} is also in listen; a listener is either plain or PROXY"),
                ));
            }
        }
        if let Some((proxy, plain, both)) = same_socket(&listen, &proxy_listen) {
            return Err(self.error(
                "proxy_listen",
                proxy_listen_at,
                &format!(
                    "{proxy:?} is {both}, as listen's {plain:?} is; a listener is either plain or PROXY"
                ),
            ));
        }
        let trusted_at = Place::top(&raw.trusted_proxies);
        let trusted_proxies = raw
            .trusted_proxies
            .get_ref()
            .iter()
            .map(|c| c.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error("trusted_proxies", trusted_at, &e))?;
        if !proxy_listen.is_empty() && trusted_proxies.is_empty() {
            return Err(self.error(
                "proxy_listen",
                proxy_listen_at,
                "needs trusted_proxies: a PROXY header is accepted only from a trusted proxy",
            ));
        }
        let proxy_timeout = self.seconds("proxy_timeout", raw.proxy_timeout)?;
        let real_ip_header = match raw.real_ip_header.get_ref().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => RealIpHeader::XForwardedFor,
            "forwarded" => RealIpHeader::Forwarded,
            _ => {
                return Err(self.error(
                    "real_ip_header",
                    Place::top(&raw.real_ip_header),
                    "must be \"X-Forwarded-For\" or \"Forwarded\"",
                ));
            }
        };
        let backlog = i32::try_from(*raw.backlog.get_ref())
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| self.error("backlog", Place::top(&raw.backlog), "must be a positive integer"))?;

        let root_at = if ov.root.is_some() { Place::nowhere() } else { Place::top(&raw.root) };
        let root = match &ov.root {
            Some(r) => Spanned::new(0..0, r.clone()),
            None => raw.root,
        };
        let default_site = RawSiteKeys {
            root,
            index: raw.index,
            listing: raw.listing,
            precompressed: raw.precompressed,
            fallback: raw.fallback,
            nosniff: raw.nosniff,
            headers: raw.headers,
            header_rules: raw.header_rules,
            error_pages: raw.error_pages,
        };
        let mut sites =
            vec![self.site("default site".to_string(), Hosts::default(), default_site, root_at, ov)?];
        for (i, raw_site) in raw.site.into_iter().enumerate() {
            let site_span = raw_site.span();
            let raw_site = raw_site.into_inner();
            let name = site_name(i, raw_site.hosts.get_ref().first().map(String::as_str));
            let here = |at: Range<usize>| Place { span: (at.start, at.end), site: Some(name.as_str()) };
            let hosts_at = here(raw_site.hosts.span());
            if raw_site.hosts.get_ref().is_empty() {
                return Err(self.error("hosts", here(site_span), "needs at least one host name"));
            }
            let mut hosts = Hosts::default();
            for h in raw_site.hosts.get_ref() {
                hosts.add(h).map_err(|e| self.error("hosts", hosts_at, &e))?;
                let lower = h.to_ascii_lowercase();
                if let Some(other) = sites.iter().find(|s: &&SiteConfig| {
                    s.hosts.exact().contains(&lower)
                        || lower.strip_prefix('*').is_some_and(|w| s.hosts.wildcards().iter().any(|o| o == w))
                }) {
                    return Err(self.error(
                        "hosts",
                        hosts_at,
                        &format!("{h:?} is already a host of {}", other.name),
                    ));
                }
            }
            let root_at = here(raw_site.root.span());
            let keys = RawSiteKeys {
                root: raw_site.root,
                index: raw_site.index,
                listing: raw_site.listing,
                precompressed: raw_site.precompressed,
                fallback: raw_site.fallback,
                nosniff: raw_site.nosniff,
                headers: raw_site.headers,
                header_rules: raw_site.header_rules,
                error_pages: raw_site.error_pages,
            };
            let site = self.site(name.clone(), hosts, keys, root_at, ov)?;
            sites.push(site);
        }

        let user_at = Place::top(&raw.user);
        let group_at = Place::top(&raw.group);
        let (user, group) = (raw.user.into_inner(), raw.group.into_inner());
        let at_key = |key: &str| if key == "group" { group_at } else { user_at };
        let identity =
            Identity::lookup(&user, &group).map_err(|(key, what)| self.error(key, at_key(key), &what))?;
        if geteuid().is_root() && !raw.allow_root {
            identity
                .refuse_root(!group.is_empty())
                .map_err(|(key, what)| self.error(key, at_key(key), &what))?;
        }
        let pid_file_at = Place::top(&raw.pid_file);
        let pid_file = raw.pid_file.into_inner();
        let pid_file = if pid_file.as_os_str().is_empty() {
            None
        } else {
            Some(ov.resolve(&pid_file).map_err(|e| self.error("pid_file", pid_file_at, &e.to_string()))?)
        };
        let max_children_per_ip = usize::try_from(*raw.max_children_per_ip.get_ref()).map_err(|_| {
            self.error(
                "max_children_per_ip",
                Place::top(&raw.max_children_per_ip),
                "must be 0 (no limit) or a positive integer",
            )
        })?;
        let min_send_rate = u64::try_from(*raw.min_send_rate.get_ref()).map_err(|_| {
            self.error(
                "min_send_rate",
                Place::top(&raw.min_send_rate),
                "must be 0 (no minimum) or a positive number of bytes per second",
            )
        })?;
        let max_children =
            usize::try_from(*raw.max_children.get_ref()).ok().filter(|n| *n > 0).ok_or_else(|| {
                self.error("max_children", Place::top(&raw.max_children), "must be a positive integer")
            })?;
        let per_ip_cap_from = u8::try_from(*raw.max_children_per_ip_from_percent.get_ref())
            .ok()
            .filter(|p| *p <= 100)
            .map(|p| share_of(max_children, p))
            .ok_or_else(|| {
                self.error(
                    "max_children_per_ip_from_percent",
                    Place::top(&raw.max_children_per_ip_from_percent),
                    "must be a percentage from 0 (the cap always applies) to 100 (it never does)",
                )
            })?;
        let max_header_bytes = usize::try_from(*raw.max_header_bytes.get_ref())
            .ok()
            .filter(|n| (HEADER_BYTES_RANGE.0..=HEADER_BYTES_RANGE.1).contains(n))
            .ok_or_else(|| {
                self.error(
                    "max_header_bytes",
                    Place::top(&raw.max_header_bytes),
                    &format!("must be between {} and {}", HEADER_BYTES_RANGE.0, HEADER_BYTES_RANGE.1),
                )
            })?;
        let max_requests_per_connection = u32::try_from(*raw.max_requests_per_connection.get_ref())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                self.error(
                    "max_requests_per_connection",
                    Place::top(&raw.max_requests_per_connection),
                    "must be a positive integer",
                )
            })?;

        let health_path = raw.health_path.get_ref().clone();
        if !health_path.is_empty() && (!health_path.starts_with('/') || health_path.contains(['?', '#', ' ']))
        {
            return Err(self.error(
                "health_path",
                Place::top(&raw.health_path),
                "must be \"\" (off) or a path starting with \"/\", without \"?\", \"#\" or spaces",
            ));
        }
        let access_at = Place::top(&raw.access_log);
        let access_log = match raw.access_log.get_ref().as_str() {
            "stderr" => AccessLogTarget::Stderr,
            "syslog" => AccessLogTarget::Syslog,
            "off" => AccessLogTarget::Off,
            "" => {
                return Err(self.error(
                    "access_log",
                    access_at,
                    "must be \"stderr\", \"syslog\", \"off\" or a file path",
                ));
            }
            p => AccessLogTarget::File(
                ov.resolve(Path::new(p)).map_err(|e| self.error("access_log", access_at, &e.to_string()))?,
            ),
        };
        let error_at = Place::top(&raw.error_log);
        let error_log = match raw.error_log.get_ref().as_str() {
            "auto" => ErrorLogTarget::Auto,
            "stderr" => ErrorLogTarget::Stderr,
            "syslog" => ErrorLogTarget::Syslog,
            "" => {
                return Err(self.error(
                    "error_log",
                    error_at,
                    "must be \"auto\", \"stderr\", \"syslog\" or a file path",
                ));
            }
            p => ErrorLogTarget::File(
                ov.resolve(Path::new(p)).map_err(|e| self.error("error_log", error_at, &e.to_string()))?,
            ),
        };

        let config = Config {
            source: self.path.map(|p| ov.resolve(p)).transpose().map_err(|e| ConfigError {
                file: self.path.map(Path::to_path_buf),
                line: None,
                site: None,
                key: None,
                what: e.to_string(),
            })?,
            listen,
            backlog,
            proxy_listen,
            trusted_proxies,
            proxy_timeout,
            real_ip_header,
            mime,
            mime_files,
            identity,
            group_given: !group.is_empty(),
            chroot: raw.chroot,
            allow_root: raw.allow_root,
            pid_file,
            max_children,
            max_children_per_ip,
            per_ip_cap_from,
            header_timeout: self.seconds("header_timeout", raw.header_timeout)?,
            keepalive_timeout: self.seconds("keepalive_timeout", raw.keepalive_timeout)?,
            send_timeout: self.seconds("send_timeout", raw.send_timeout)?,
            min_send_rate,
            min_send_rate_grace: self.seconds("min_send_rate_grace", raw.min_send_rate_grace)?,
            shutdown_grace: self.seconds("shutdown_grace", raw.shutdown_grace)?,
            max_header_bytes,
            max_requests_per_connection,
            access_log,
            error_log,
            server_version: raw.server_version,
            health_path,
        };
        Ok((config, sites))
    }

    /// The content-type table: the built-in one, then each `mime_types`
    /// file in order, then the `mime` overrides; later ones win. Returns it
    /// with the files read.
    fn mime(&self, raw: &RawConfig, ov: &Overrides) -> Result<(MimeTypes, Vec<PathBuf>), StartupError> {
        let (charset, default_type) = (raw.charset.get_ref(), raw.default_type.get_ref());
        if !mime::valid_charset(charset) {
            return Err(self.error(
                "charset",
                Place::top(&raw.charset),
                "must be a charset name such as \"utf-8\", or \"\" for none",
            ));
        }
        if !mime::valid_type(default_type) {
            return Err(self.error(
                "default_type",
                Place::top(&raw.default_type),
                "must be a media type such as \"application/octet-stream\"",
            ));
        }
        let types_at = Place::top(&raw.mime_types);
        let mime_at = Place::top(&raw.mime);
        let mut builder = MimeBuilder::new(charset);
        builder.add_built_in();
        let mut files = Vec::new();
        for path in raw.mime_types.get_ref() {
            let path = ov.resolve(path).map_err(|e| self.error("mime_types", types_at, &e.to_string()))?;
            // Never fs::read_to_string: a FIFO in its place would block the parent.
            let text = safeopen::read_trusted(&path, self.guard).map_err(|e| {
                self.error("mime_types", types_at, &format!("cannot read {}: {e}", path.display()))
            })?;
            builder.add_mime_types(&text);
            files.push(path);
        }
        for (ext, ty) in raw.mime.get_ref() {
            if !mime::valid_ext(ext) {
                return Err(self.error(
                    "mime",
                    mime_at,
                    &format!(
                        "{ext:?} is not a file extension (without its dot, at most {} bytes)",
                        mime::MAX_EXT
                    ),
                ));
            }
            if !mime::valid_type(ty) {
                return Err(self.error(
                    "mime",
                    mime_at,
                    &format!("{ty:?} (for {ext:?}) is not a media type"),
                ));
            }
            builder.add(ext, ty);
        }
        Ok((builder.finish(default_type), files))
    }

    /// Validates one site's content keys. `root_at` is where its root is
    /// written (nowhere when it comes from `--root`).
    fn site(
        &self,
        name: String,
        hosts: Hosts,
        raw: RawSiteKeys,
        root_at: Place<'_>,
        ov: &Overrides,
    ) -> Result<SiteConfig, StartupError> {
        let site = root_at.site;
        let here = |at: Range<usize>| Place { span: (at.start, at.end), site };
        let root_given =
            ov.resolve(raw.root.get_ref()).map_err(|e| self.error("root", root_at, &e.to_string()))?;
        let root = fs::canonicalize(&root_given)
            .map_err(|source| StartupError::Root { path: root_given.clone(), source })?;
        if !root.is_dir() {
            return Err(StartupError::Root {
                path: root_given,
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }

        let index_at = here(raw.index.span());
        let index = raw.index.into_inner();
        if index.iter().any(|n| n.is_empty() || n.contains('/') || n.starts_with('.')) {
            return Err(self.error(
                "index",
                index_at,
                "names must be plain file names (no '/', no leading '.')",
            ));
        }

        let fallback_at = here(raw.fallback.span());
        let fallback = raw.fallback.into_inner();
        let fallback = if fallback.is_empty() {
            None
        } else {
            Some(served_path(&fallback).map_err(|why| self.error("fallback", fallback_at, &why))?.to_string())
        };

        let mut headers = HeaderRules { nosniff: raw.nosniff, ..HeaderRules::default() };
        headers.always = self.headers("headers", &raw.headers, site)?;
        for rule in raw.header_rules {
            let rule_at = here(rule.span());
            let rule = rule.into_inner();
            let path = PathPattern::parse(rule.path.get_ref())
                .map_err(|why| self.error("header_rules", here(rule.path.span()), &format!("path {why}")))?;
            let fields = self.headers("header_rules", &rule.headers, site)?;
            if fields.is_empty() {
                return Err(self.error("header_rules", rule_at, "a rule needs at least one header"));
            }
            headers.rules.push(HeaderRule { path, headers: fields });
        }

        let mut error_pages = Vec::new();
        for (code, page) in &raw.error_pages {
            let code_at = here(code.span());
            let status =
                code.get_ref().parse::<u16>().ok().filter(|c| (400..=599).contains(c)).ok_or_else(|| {
                    self.error(
                        "error_pages",
                        code_at,
                        &format!("{:?} is not an error status (400 to 599)", code.get_ref()),
                    )
                })?;
            let path = served_path(page.get_ref())
                .map_err(|why| self.error("error_pages", here(page.span()), &why))?;
            error_pages.push((status, path.to_string()));
        }

        Ok(SiteConfig {
            name,
            hosts,
            root,
            index,
            listing: raw.listing,
            precompressed: raw.precompressed,
            fallback,
            headers,
            error_pages,
        })
    }

    /// Validates a header map (`key` is where it is written).
    fn headers(&self, key: &str, raw: &RawHeaders, site: Option<&str>) -> Result<Vec<Header>, StartupError> {
        raw.iter()
            .map(|(name, value)| {
                Header::new(name.get_ref(), value.get_ref()).map_err(|e| {
                    let at = name.span();
                    let place = Place { span: (at.start, at.end), site };
                    self.error(key, place, &format!("header {:?} {e}", name.get_ref()))
                })
            })
            .collect()
    }

    fn seconds(&self, key: &str, value: At<Seconds>) -> Result<Duration, StartupError> {
        let secs = value.get_ref().as_f64();
        if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&secs) {
            return Err(self.error(
                key,
                Place::top(&value),
                &format!("must be at least {MIN_TIMEOUT_SECS} (1 ms) and at most {MAX_TIMEOUT_SECS} seconds"),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// An error for `key`, naming the file, the line its value is written
    /// on (from the value's span) and the site table it is in.
    /// Checks one address of `listen` or `proxy_listen` (`key`, at `at`):
    /// it is HOST:PORT, and not an IPv4-mapped IPv6 address. Listeners are
    /// IPv6-only (see listener.rs), and such a socket cannot bind a mapped
    /// address: said here, where the key and line are known, rather than
    /// as a bare `EINVAL` at bind.
    fn listen_address(&self, key: &str, at: Place<'_>, addr: &str) -> Result<(), StartupError> {
        if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(self.error(key, at, &format!("{addr:?} is not HOST:PORT")));
        }
        if let Ok(SocketAddr::V6(a)) = addr.parse::<SocketAddr>()
            && let Some(v4) = a.ip().to_ipv4_mapped()
        {
            return Err(self.error(
                key,
                at,
                &format!(
                    "{addr:?} is an IPv4-mapped IPv6 address, which an IPv6-only socket cannot bind; \
                     write \"{v4}:{}\"",
                    a.port()
                ),
            ));
        }
        Ok(())
    }

    fn error(&self, key: &str, place: Place<'_>, what: &str) -> StartupError {
        ConfigError {
            file: self.path.map(Path::to_path_buf),
            line: self.line_at(place.span),
            site: place.site.map(str::to_string),
            key: Some(key.to_string()),
            what: what.to_string(),
        }
        .into()
    }

    /// The 1-based line a span starts on; `None` for an empty span (a
    /// built-in default or a command-line value, written nowhere in the file).
    fn line_at(&self, (start, end): (usize, usize)) -> Option<usize> {
        if start == end || start > self.text.len() {
            return None;
        }
        Some(self.text[..start].matches('\n').count() + 1)
    }
}

impl Place<'static> {
    /// A value written nowhere in the file (a command-line override).
    fn nowhere() -> Place<'static> {
        Place { span: (0, 0), site: None }
    }
}

/// `percent` of `n`, rounded up: the least count that is at least that
/// share (so 50 percent of 5 is 3: two busy children are fewer than half).
fn share_of(n: usize, percent: u8) -> usize {
    let share = (n as u128 * u128::from(percent)).div_ceil(100);
    usize::try_from(share).unwrap_or(usize::MAX)
}

/// The first address of `proxy_listen` written differently from one of
/// `listen` (`localhost:80` beside `127.0.0.1:80`, `127.0.0.1:080`) that
/// resolves to the same socket address: the one listener would be bound
/// once, plain. Returns the two as written and the address. Port 0 is
/// left out (each spec gets a port of its own), and so is a spec that
/// does not resolve: binding it says why.
fn same_socket(listen: &[String], proxy_listen: &[String]) -> Option<(String, String, SocketAddr)> {
    if proxy_listen.is_empty() {
        return None;
    }
    let resolved =
        |spec: &String| listener::resolve(spec).unwrap_or_default().into_iter().filter(|a| a.port() != 0);
    let plain: Vec<(&String, SocketAddr)> =
        listen.iter().flat_map(|s| resolved(s).map(move |a| (s, a))).collect();
    proxy_listen.iter().find_map(|proxy| {
        resolved(proxy).find_map(|a| {
            plain.iter().find(|(_, p)| *p == a).map(|(spec, _)| (proxy.clone(), (*spec).clone(), a))
        })
    })
}

/// A path beneath a site's root that the server itself serves (a fallback
/// or an error page): absolute, resolving without climbing out, not a
/// dotfile and not a directory. Returns it, or why it is refused.
fn served_path(path: &str) -> Result<&str, String> {
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(format!("{path:?} must be a path beneath the root, starting with '/'"));
    }
    match resolve::resolve(path) {
        Ok(r) if !r.dir_form && !r.rel.as_os_str().is_empty() => Ok(path),
        Ok(_) => Err(format!("{path:?} names a directory; name a file")),
        Err(_) => {
            Err(format!("{path:?} is not a path the server serves (it climbs out, or names a dotfile)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(text: &str) -> Result<Config, StartupError> {
        load_str_with_sites(text).map(|(config, _)| config)
    }

    /// `load_str`, with the sites.
    fn load_str_with_sites(text: &str) -> Result<(Config, Vec<SiteConfig>), StartupError> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("c.toml");
        let mut f = fs::File::create(&file).unwrap();
        write!(f, "root = {:?}\n{text}", dir.display().to_string()).unwrap();
        Config::load(Some(&file), &Overrides::default(), None)
    }

    #[test]
    fn a_proxy_only_instance_needs_no_plain_listener() {
        let e = load_str("listen = []\n").unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("at least one address"), "{e}");
        let c =
            load_str("listen = []\nproxy_listen = [\"127.0.0.1:0\"]\ntrusted_proxies = [\"127.0.0.1\"]\n")
                .unwrap();
        assert!(c.listen.is_empty() && c.proxy_listen == ["127.0.0.1:0"]);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load_str("").unwrap();
        assert_eq!(c.listen, vec![DEFAULT_LISTEN.to_string()]);
        assert_eq!(c.backlog, DEFAULT_BACKLOG);
        assert_eq!(c.max_children, DEFAULT_MAX_CHILDREN);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.access_log, AccessLogTarget::Stderr);
    }

    #[test]
    fn per_ip_cap_applies_from_a_share_of_max_children() {
        assert_eq!(load_str("").unwrap().per_ip_cap_from, DEFAULT_MAX_CHILDREN / 2);
        assert_eq!(load_str("max_children = 64\n").unwrap().per_ip_cap_from, 32);
        // Rounded up: with 5 children, 2 busy are fewer than half, 3 are not.
        assert_eq!(load_str("max_children = 5\n").unwrap().per_ip_cap_from, 3);
        let c = load_str("max_children = 64\nmax_children_per_ip_from_percent = 0\n").unwrap();
        assert_eq!(c.per_ip_cap_from, 0);
        let c = load_str("max_children = 64\nmax_children_per_ip_from_percent = 100\n").unwrap();
        assert_eq!(c.per_ip_cap_from, 64);
        for bad in ["-1", "101"] {
            let e = load_str(&format!("max_children_per_ip_from_percent = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("max_children_per_ip_from_percent") && e.contains("line 2"), "{e}");
        }
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = load_str("backlog = 5\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = load_str("max_children = \"many\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("max_children"), "{e}");
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let e = load_str("\nheader_timeout = -1\n").unwrap_err().to_string();
        assert!(e.contains("header_timeout") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn durations_below_a_millisecond_are_refused() {
        for key in
            ["header_timeout", "keepalive_timeout", "send_timeout", "min_send_rate_grace", "shutdown_grace"]
        {
            let e = load_str(&format!("{key} = 1e-10\n")).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("line 2") && e.contains("1 ms"), "{e}");
            let c = load_str(&format!("{key} = 0.001\n")).unwrap();
            let d = [
                c.header_timeout,
                c.keepalive_timeout,
                c.send_timeout,
                c.min_send_rate_grace,
                c.shutdown_grace,
            ];
            assert!(d.contains(&Duration::from_millis(1)), "{key}: {d:?}");
        }
    }

    #[test]
    fn ipv4_mapped_listen_address_is_refused() {
        let e = load_str("listen = [\"[::ffff:127.0.0.1]:80\"]\n").unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("line 2") && e.contains("\"127.0.0.1:80\""), "{e}");
        load_str("listen = [\"[::1]:80\", \"127.0.0.1:80\"]\n").unwrap();
    }

    #[test]
    fn relative_paths_resolve_against_the_base_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        fs::create_dir_all(base.join("site")).unwrap();
        let file = base.join("c.toml");
        fs::write(&file, "root = \"site\"\naccess_log = \"logs/a.log\"\npid_file = \"p.pid\"\n").unwrap();
        let ov = Overrides { base_dir: Some(base.clone()), ..Overrides::default() };
        // The process's own working directory plays no part.
        let (c, sites) = Config::load(Some(&file), &ov, None).unwrap();
        assert_eq!(sites[0].root, fs::canonicalize(base.join("site")).unwrap());
        assert_eq!(c.access_log, AccessLogTarget::File(base.join("logs/a.log")));
        assert_eq!(c.pid_file, Some(base.join("p.pid")));
        let ov = Overrides { root: Some(PathBuf::from("site")), ..ov };
        let (_, sites) = Config::load(None, &ov, None).unwrap();
        assert_eq!(sites[0].root, fs::canonicalize(base.join("site")).unwrap());
    }

    #[test]
    fn default_index_names_and_site_keys() {
        let (_, sites) = load_str_with_sites("").unwrap();
        assert_eq!(sites.len(), 1);
        let d = &sites[0];
        assert_eq!(d.index, ["index.html", "index.htm"]);
        assert!(d.root.is_absolute(), "{}", d.root.display());
        assert!(!d.listing && d.fallback.is_none() && d.error_pages.is_empty());
        assert!(d.headers.nosniff && d.headers.always.is_empty() && d.headers.rules.is_empty());
    }

    /// Writes `text` (after a `root` line, as `load_str`) with `{dir}`
    /// replaced by a temporary directory holding `a/` and `b/`.
    fn load_sites(text: &str) -> Result<Vec<SiteConfig>, StartupError> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::create_dir_all(dir.join("b")).unwrap();
        let file = dir.join("c.toml");
        let text = text.replace("{dir}", dir.to_str().unwrap());
        fs::write(&file, format!("root = {:?}\n{text}", dir.display().to_string())).unwrap();
        Config::load(Some(&file), &Overrides::default(), None).map(|(_, sites)| sites)
    }

    #[test]
    fn sites_are_read_in_order_with_their_own_keys() {
        let sites = load_sites(
            "index = [\"home.html\"]\nheaders = { \"X-Top\" = \"1\" }\n\
             [[site]]\nhosts = [\"A.example\", \"*.a.example\"]\nroot = \"{dir}/a\"\nfallback = \"/index.html\"\n\
             error_pages = { 404 = \"/404.html\" }\nnosniff = false\nlisting = true\n\
             [[site.header_rules]]\npath = \"/assets/\"\nheaders = { \"Cache-Control\" = \"immutable\" }\n\
             [[site]]\nhosts = [\"b.example\"]\nroot = \"{dir}/b\"\n",
        )
        .unwrap();
        assert_eq!(sites.len(), 3);
        let (d, a, b) = (&sites[0], &sites[1], &sites[2]);
        assert_eq!(d.index, ["home.html"]);
        assert_eq!(d.headers.always, [Header::new("X-Top", "1").unwrap()]);
        assert_eq!(a.hosts.exact(), ["a.example"]);
        assert_eq!(a.hosts.wildcards(), [".a.example"]);
        assert!(a.root.ends_with("a") && b.root.ends_with("b"));
        assert_eq!(a.fallback.as_deref(), Some("/index.html"));
        assert_eq!(a.error_pages, [(404, "/404.html".to_string())]);
        assert!(!a.headers.nosniff && a.listing);
        assert_eq!(a.headers.rules.len(), 1);
        // Keys a site leaves out take the built-in defaults, not the top level's.
        assert_eq!(b.index, ["index.html", "index.htm"]);
        assert!(b.headers.always.is_empty() && b.headers.nosniff && !b.listing);
        assert!(a.name.contains("#1") && a.name.contains("A.example"), "{}", a.name);
    }

    #[test]
    fn errors_in_a_site_name_the_site_and_the_real_line() {
        // (text, line, key, what): line 1 is the `root` line load_sites writes.
        let site = "[[site]]\nhosts = [\"a.example\"]\nroot = \"{dir}/a\"\n";
        let table: &[(String, usize, &str, &str)] = &[
            (format!("{site}index = [\"a/b\"]\n"), 5, "index", "plain file names"),
            // The same text earlier in the file (a comment, the top level) must not be taken for it.
            (
                format!("# index = [\"x\"]\nindex = [\"ok.html\"]\n{site}\nindex = [\".x\"]\n"),
                8,
                "index",
                "plain",
            ),
            (format!("{site}fallback = \"/../x\"\n"), 5, "fallback", "climbs out"),
            (format!("{site}fallback = \"index.html\"\n"), 5, "fallback", "starting with '/'"),
            (
                format!("{site}error_pages = {{ 200 = \"/x.html\" }}\n"),
                5,
                "error_pages",
                "not an error status",
            ),
            (format!("{site}\nerror_pages = {{ 404 = \"/.hidden\" }}\n"), 6, "error_pages", "dotfile"),
            (format!("{site}headers = {{ \"X-A\" = \"a\\r\\nb\" }}\n"), 5, "headers", "control character"),
            (format!("{site}headers = {{ \"Bad Name\" = \"a\" }}\n"), 5, "headers", "not a valid field name"),
            (
                format!("{site}headers = {{ \"Content-Length\" = \"1\" }}\n"),
                5,
                "headers",
                "set by the server",
            ),
            (
                format!("{site}[[site.header_rules]]\npath = \"assets/\"\nheaders = {{ \"X-A\" = \"1\" }}\n"),
                6,
                "header_rules",
                "must start with '/'",
            ),
            (
                "[[site]]\nhosts = [\"a.example:80\"]\nroot = \"{dir}/a\"\n".to_string(),
                3,
                "hosts",
                "without port",
            ),
            (
                format!("{site}[[site]]\nhosts = [\"A.EXAMPLE\"]\nroot = \"{{dir}}/b\"\n"),
                6,
                "hosts",
                "already a host",
            ),
            (format!("{site}bogus = 1\n"), 5, "bogus", "unknown field"),
            // toml's own errors: the site is the entry whose keys and values
            // cover the error, whatever the headers look like.
            (format!("{site}[site.headers]\n\"X-A\" = 1\n"), 6, "headers.X-A", "invalid type"),
            (
                "[[ site ]]\nhosts = [\"a.example\"]\nroot = \"{dir}/a\"\nlistng = true\n".to_string(),
                5,
                "listng",
                "unknown field",
            ),
            (
                format!("{site}[[site]]\nhosts = [\"A.EXAMPLE\"]\nroot = \"{{dir}}/b\"\nlisting = \"yes\"\n"),
                8,
                "listing",
                "invalid type",
            ),
        ];
        for (text, line, key, what) in table {
            let e = load_sites(text).unwrap_err().to_string();
            assert!(
                e.contains(&format!("line {line},"))
                    && e.contains(&format!("key `{key}`"))
                    && e.contains(what),
                "{text}\n=> {e}"
            );
            let named = ["[[site]] #1 (a.example", "[[site]] #2 (A.EXAMPLE)"];
            assert!(named.iter().any(|n| e.contains(n)), "{text}\n=> {e}");
        }
        // A top-level table written after a site is not in it.
        let e = load_sites(&format!("{site}[mime]\nx = 1\n")).unwrap_err().to_string();
        assert!(e.contains("line 6,") && e.contains("key `mime.x`") && !e.contains("[[site]]"), "{e}");
        let e = load_sites("[[site]]\nhosts = []\nroot = \"{dir}/a\"\n").unwrap_err().to_string();
        assert!(e.contains("[[site]] #1") && e.contains("at least one host"), "{e}");
        let e = load_sites("[[site]]\nhosts = [\"x.example\"]\nroot = \"{dir}/missing\"\n").unwrap_err();
        assert!(matches!(e, StartupError::Root { .. }), "{e}");
    }

    #[test]
    fn top_level_errors_name_the_line_of_the_value_not_a_comment() {
        let e = load_str("# backlog = 5 is the usual value\nbacklog = 0\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("backlog"), "{e}");
        let e = load_str("\n\nheaders = { \"X-A\" = \"\" , \"Date\" = \"x\" }\n").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("set by the server") && !e.contains("[[site]]"), "{e}");
    }

    #[test]
    fn proxy_listen_written_otherwise_than_a_listen_address_is_refused() {
        let trusted = "trusted_proxies = [\"127.0.0.1\"]\n";
        for proxy in ["localhost:8080", "127.0.0.1:08080", "127.000.000.001:8080"] {
            let text = format!("listen = [\"127.0.0.1:8080\"]\nproxy_listen = [\"{proxy}\"]\n{trusted}");
            match load_str(&text) {
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains("proxy_listen")
                            && e.contains("127.0.0.1:8080")
                            && e.contains("either plain"),
                        "{proxy}: {e}"
                    );
                }
                // A resolver that does not take the form has nothing to compare.
                Ok(_) => assert!(listener::resolve(proxy).is_err(), "{proxy} accepted"),
            }
        }
        load_str(&format!("listen = [\"127.0.0.1:8080\"]\nproxy_listen = [\"127.0.0.1:8081\"]\n{trusted}"))
            .unwrap();
        load_str(&format!("listen = [\"127.0.0.1:0\"]\nproxy_listen = [\"localhost:0\"]\n{trusted}"))
            .unwrap();
    }

    #[test]
    fn seconds_written_as_a_string_say_what_is_accepted() {
        let e = load_str("header_timeout = \"5\"\n").unwrap_err().to_string();
        assert!(
            e.contains("header_timeout") && e.contains("line 2") && e.contains("number of seconds"),
            "{e}"
        );
        assert!(e.contains("5 or 0.5") && !e.contains("enum"), "{e}");
        assert_eq!(load_str("header_timeout = 5\n").unwrap().header_timeout, Duration::from_secs(5));
    }

    #[test]
    fn an_empty_access_log_lists_every_choice() {
        let e = load_str("access_log = \"\"\n").unwrap_err().to_string();
        for choice in ["\"stderr\"", "\"syslog\"", "\"off\"", "file path"] {
            assert!(e.contains("access_log") && e.contains(choice), "{choice}: {e}");
        }
    }

    #[test]
    fn decimal_seconds_accepted() {
        let c = load_str("keepalive_timeout = 0.5\n").unwrap();
        assert_eq!(c.keepalive_timeout, Duration::from_millis(500));
    }
}
