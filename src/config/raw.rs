//! The configuration file as written: the `serde` types every key is read
//! into, each value with its span, and the built-in defaults an empty file
//! means (the values written in the shipped `config/forkhttpd.toml`).
//!
//! Runs in: parent, when the config is read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::http::mime;

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
/// Default share of `max_children` (percent) from which the parent asks
/// the child idle longest between requests to close its connection: when
/// every child is taken (0 = never).
pub const DEFAULT_KEEPALIVE_GIVE_BACK_FROM_PERCENT: u8 = 100;
/// Who may read the status page when it is on (`status_path`): loopback.
pub const DEFAULT_STATUS_ALLOW: [&str; 2] = ["127.0.0.0/8", "::1"];
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
/// Seconds between looks at the certificate and key files for a change
/// (an ACME client's renewal): a minute, a few `lstat`s each time.
pub const DEFAULT_TLS_WATCH_INTERVAL: f64 = 60.0;
/// Default largest request head in bytes; larger → 431 (or 414).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8192;
/// Default number of requests served on one connection before it is closed.
pub const DEFAULT_MAX_REQUESTS: u32 = 1000;
/// The most key processes `tls_key_processes` may ask for.
pub const MAX_KEY_PROCESSES: usize = 256;
/// Default seconds between session-ticket key rotations: a ticket then
/// resumes for one to two hours.
pub const DEFAULT_TLS_TICKET_ROTATION: u64 = 3600;

/// A number of seconds as written in the file: integer or decimal.
#[derive(Clone, Copy, Debug)]
pub(super) enum Seconds {
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
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Seconds::Int(i) => i as f64,
            Seconds::Float(f) => f,
        }
    }
}

/// A value as written, with where: its byte range in the file (empty for a
/// built-in default, which is written nowhere).
pub(super) type At<T> = Spanned<T>;

/// A built-in default: a value with an empty span.
pub(super) fn dflt<T>(value: T) -> At<T> {
    Spanned::new(0..0, value)
}

/// A header map as written (`{ "Name" = "value" }`), each side with its span.
pub(super) type RawHeaders = BTreeMap<At<String>, At<String>>;

/// One `header_rules` entry as written.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) path: At<String>,
    pub(super) headers: RawHeaders,
}

/// The content keys a site has, as written (the top level's, or a
/// `[[site]]`'s), gathered for one validation.
pub(super) struct RawSiteKeys {
    pub(super) root: At<PathBuf>,
    pub(super) index: At<Vec<String>>,
    pub(super) listing: bool,
    pub(super) precompressed: bool,
    pub(super) fallback: At<String>,
    pub(super) nosniff: bool,
    pub(super) headers: RawHeaders,
    pub(super) header_rules: Vec<At<RawRule>>,
    pub(super) error_pages: RawHeaders,
    pub(super) tls_certificate: At<PathBuf>,
    pub(super) tls_key: At<PathBuf>,
    pub(super) https_redirect: bool,
    pub(super) https_port: At<i64>,
    pub(super) hsts: At<RawHsts>,
}

/// `hsts` as written: a number of seconds (`max-age`), or the whole
/// field value; `""` (the default) is off.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub(super) enum RawHsts {
    Seconds(i64),
    Value(String),
}

/// The `https_port` a redirect names when none is written.
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// A `[[site]]` table as written.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    pub(super) hosts: At<Vec<String>>,
    pub(super) root: At<PathBuf>,
    #[serde(default = "default_index")]
    pub(super) index: At<Vec<String>>,
    #[serde(default)]
    pub(super) listing: bool,
    #[serde(default)]
    pub(super) precompressed: bool,
    #[serde(default = "default_fallback")]
    pub(super) fallback: At<String>,
    #[serde(default = "default_nosniff")]
    pub(super) nosniff: bool,
    #[serde(default)]
    pub(super) headers: RawHeaders,
    #[serde(default)]
    pub(super) header_rules: Vec<At<RawRule>>,
    #[serde(default)]
    pub(super) error_pages: RawHeaders,
    #[serde(default = "no_path")]
    pub(super) tls_certificate: At<PathBuf>,
    #[serde(default = "no_path")]
    pub(super) tls_key: At<PathBuf>,
    #[serde(default)]
    pub(super) https_redirect: bool,
    #[serde(default = "default_https_port")]
    pub(super) https_port: At<i64>,
    #[serde(default = "no_hsts")]
    pub(super) hsts: At<RawHsts>,
}

pub(super) fn default_https_port() -> At<i64> {
    dflt(i64::from(DEFAULT_HTTPS_PORT))
}

pub(super) fn no_hsts() -> At<RawHsts> {
    dflt(RawHsts::Value(String::new()))
}

/// An unset path key: empty, written nowhere.
pub(super) fn no_path() -> At<PathBuf> {
    dflt(PathBuf::new())
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
pub(super) struct RawConfig {
    pub(super) listen: At<Vec<String>>,
    pub(super) backlog: At<i64>,
    pub(super) proxy_listen: At<Vec<String>>,
    pub(super) tls_listen: At<Vec<String>>,
    pub(super) proxy_tls_listen: At<Vec<String>>,
    pub(super) tls_certificate: At<PathBuf>,
    pub(super) tls_key: At<PathBuf>,
    pub(super) tls_key_process: bool,
    pub(super) tls_key_processes: At<i64>,
    pub(super) tls_ticket_rotation: At<i64>,
    pub(super) https_redirect: bool,
    pub(super) https_port: At<i64>,
    pub(super) hsts: At<RawHsts>,
    pub(super) acme_webroot: At<PathBuf>,
    pub(super) trusted_proxies: At<Vec<String>>,
    pub(super) proxy_timeout: At<Seconds>,
    pub(super) real_ip_header: At<String>,
    pub(super) root: At<PathBuf>,
    pub(super) index: At<Vec<String>>,
    pub(super) listing: bool,
    pub(super) precompressed: bool,
    pub(super) mime_types: At<Vec<PathBuf>>,
    pub(super) mime: At<BTreeMap<String, String>>,
    pub(super) default_type: At<String>,
    pub(super) charset: At<String>,
    pub(super) fallback: At<String>,
    pub(super) nosniff: bool,
    pub(super) headers: RawHeaders,
    pub(super) header_rules: Vec<At<RawRule>>,
    pub(super) error_pages: RawHeaders,
    pub(super) user: At<String>,
    pub(super) group: At<String>,
    pub(super) chroot: bool,
    pub(super) allow_root: bool,
    pub(super) sandbox: bool,
    pub(super) pid_file: At<PathBuf>,
    pub(super) max_children: At<i64>,
    pub(super) max_children_per_ip: At<i64>,
    pub(super) max_children_per_ip_from_percent: At<i64>,
    pub(super) keepalive_give_back_from_percent: At<i64>,
    pub(super) header_timeout: At<Seconds>,
    pub(super) keepalive_timeout: At<Seconds>,
    pub(super) send_timeout: At<Seconds>,
    pub(super) min_send_rate: At<i64>,
    pub(super) min_send_rate_grace: At<Seconds>,
    pub(super) shutdown_grace: At<Seconds>,
    pub(super) max_header_bytes: At<i64>,
    pub(super) max_requests_per_connection: At<i64>,
    pub(super) access_log: At<String>,
    pub(super) error_log: At<String>,
    pub(super) server_version: bool,
    pub(super) health_path: At<String>,
    pub(super) status_path: At<String>,
    pub(super) status_allow: At<Vec<String>>,
    pub(super) tls_watch_interval: At<Seconds>,
    pub(super) site: Vec<At<RawSite>>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: dflt(vec![DEFAULT_LISTEN.to_string()]),
            backlog: dflt(i64::from(DEFAULT_BACKLOG)),
            proxy_listen: dflt(Vec::new()),
            tls_listen: dflt(Vec::new()),
            proxy_tls_listen: dflt(Vec::new()),
            tls_certificate: no_path(),
            tls_key: no_path(),
            tls_key_process: true,
            tls_key_processes: dflt(0),
            tls_ticket_rotation: dflt(DEFAULT_TLS_TICKET_ROTATION as i64),
            https_redirect: false,
            https_port: default_https_port(),
            hsts: no_hsts(),
            acme_webroot: no_path(),
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
            sandbox: true,
            pid_file: dflt(PathBuf::new()),
            max_children: dflt(DEFAULT_MAX_CHILDREN as i64),
            max_children_per_ip: dflt(DEFAULT_MAX_CHILDREN_PER_IP as i64),
            max_children_per_ip_from_percent: dflt(i64::from(DEFAULT_MAX_CHILDREN_PER_IP_FROM_PERCENT)),
            keepalive_give_back_from_percent: dflt(i64::from(DEFAULT_KEEPALIVE_GIVE_BACK_FROM_PERCENT)),
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
            status_path: dflt(String::new()),
            status_allow: dflt(DEFAULT_STATUS_ALLOW.map(String::from).to_vec()),
            tls_watch_interval: dflt(Seconds::Float(DEFAULT_TLS_WATCH_INTERVAL)),
            site: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::load_str;

    #[test]
    fn seconds_written_as_a_string_say_what_is_accepted() {
        let e = load_str("header_timeout = \"5\"\n").unwrap_err().to_string();
        assert!(
            e.contains("header_timeout") && e.contains("line 2") && e.contains("number of seconds"),
            "{e}"
        );
        assert!(e.contains("5 or 0.5") && !e.contains("enum"), "{e}");
        assert_eq!(load_str("header_timeout = 5\n").unwrap().limits.header_timeout, Duration::from_secs(5));
    }

    #[test]
    fn decimal_seconds_accepted() {
        let c = load_str("keepalive_timeout = 0.5\n").unwrap();
        assert_eq!(c.limits.keepalive_timeout, Duration::from_millis(500));
    }
}
