//! The validation steps: each takes the keys it checks, as written, and
//! makes one part of the `Config` (listeners, proxy, limits, privileges,
//! logging, content types), or the error that names the key and its line.
//!
//! Runs in: parent, when the config is read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::geteuid;

use crate::account::Identity;
use crate::error::{ConfigError, StartupError};
use crate::http::mime::{self, MimeBuilder, MimeTypes};
use crate::listener::{self, ListenSpec, Wire};
use crate::proxy::Cidr;
use crate::safeopen;
use crate::tls::tickets;

use super::place::{Checker, Place};
use super::raw::{At, MAX_KEY_PROCESSES, RawConfig, Seconds};
use super::value::{
    AccessLogTarget, Config, ErrorLogTarget, Limits, Logging, Overrides, Privileges, Proxy, RealIpHeader,
    SiteConfig,
};

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

impl Checker<'_> {
    /// Validates the whole file, step by step in the order the keys are
    /// reported: content types, listeners, proxies, sites, privileges,
    /// the pid file, limits, the health path, logging.
    pub(super) fn validate(
        &self,
        raw: RawConfig,
        ov: &Overrides,
    ) -> Result<(Config, Vec<SiteConfig>), StartupError> {
        let (mime, mime_files) = self.mime(&raw, ov)?;
        let listeners = self.listeners(&raw, ov)?;
        let proxy = self.proxy(&raw, &listeners)?;
        let backlog = i32::try_from(*raw.backlog.get_ref())
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| self.error("backlog", Place::top(&raw.backlog), "must be a positive integer"))?;
        let sites = self.sites(&raw, ov)?;
        if listeners.iter().any(|l| l.wire.tls) && sites[0].tls.is_none() {
            let (key, at) = if raw.tls_listen.get_ref().is_empty() {
                ("proxy_tls_listen", Place::top(&raw.proxy_tls_listen))
            } else {
                ("tls_listen", Place::top(&raw.tls_listen))
            };
            return Err(self.error(
                key,
                at,
                "needs a certificate: set tls_certificate and tls_key at the top level (the default \
                 site's, for clients that name no site)",
            ));
        }
        let privileges = self.privileges(&raw)?;
        let pid_file_at = Place::top(&raw.pid_file);
        let pid_file = raw.pid_file.get_ref();
        let pid_file = if pid_file.as_os_str().is_empty() {
            None
        } else {
            Some(ov.resolve(pid_file).map_err(|e| self.error("pid_file", pid_file_at, &e.to_string()))?)
        };
        let limits = self.limits(&raw)?;
        let tls_key_processes = self.key_processes(&raw)?;
        let tls_ticket_rotation = self.ticket_rotation(&raw)?;
        let health_path = raw.health_path.get_ref().clone();
        if !health_path.is_empty() && (!health_path.starts_with('/') || health_path.contains(['?', '#', ' ']))
        {
            return Err(self.error(
                "health_path",
                Place::top(&raw.health_path),
                "must be \"\" (off) or a path starting with \"/\", without \"?\", \"#\" or spaces",
            ));
        }
        let status_path = raw.status_path.get_ref().clone();
        if !status_path.is_empty() && (!status_path.starts_with('/') || status_path.contains(['?', '#', ' ']))
        {
            return Err(self.error(
                "status_path",
                Place::top(&raw.status_path),
                "must be \"\" (off) or a path starting with \"/\", without \"?\", \"#\" or spaces",
            ));
        }
        if !status_path.is_empty() && status_path == health_path {
            return Err(self.error(
                "status_path",
                Place::top(&raw.status_path),
                "must differ from health_path",
            ));
        }
        let status_allow = raw
            .status_allow
            .get_ref()
            .iter()
            .map(|c| c.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error("status_allow", Place::top(&raw.status_allow), &e))?;
        let acme_at = Place::top(&raw.acme_webroot);
        let acme_webroot = match raw.acme_webroot.get_ref() {
            p if p.as_os_str().is_empty() => None,
            p => {
                let p = ov.resolve(p).map_err(|e| self.error("acme_webroot", acme_at, &e.to_string()))?;
                if !p.is_dir() {
                    let why = format!(
                        "{} is not a directory (create it: ACME clients write beneath it)",
                        p.display()
                    );
                    return Err(self.error("acme_webroot", acme_at, &why));
                }
                Some(p)
            }
        };
        let logging = self.logging(&raw, ov)?;
        let tls_watch_interval = match raw.tls_watch_interval.get_ref().as_f64() {
            0.0 => None,
            _ => Some(self.seconds("tls_watch_interval", &raw.tls_watch_interval)?),
        };
        let config = Config {
            source: self.path.map(|p| ov.resolve(p)).transpose().map_err(|e| ConfigError {
                file: self.path.map(Path::to_path_buf),
                line: None,
                site: None,
                key: None,
                what: e.to_string(),
            })?,
            listeners,
            backlog,
            proxy,
            mime,
            mime_files,
            privileges,
            pid_file,
            limits,
            tls_key_process: raw.tls_key_process,
            tls_key_processes,
            tls_ticket_rotation,
            logging,
            server_version: raw.server_version,
            health_path,
            status_path,
            status_allow,
            acme_webroot,
            tls_watch_interval,
        };
        Ok((config, sites))
    }

    /// `listen` (or `--listen`), `proxy_listen`, `tls_listen` and
    /// `proxy_tls_listen`, in that order, as one list: each address
    /// HOST:PORT, and no socket in two of them.
    fn listeners(&self, raw: &RawConfig, ov: &Overrides) -> Result<Vec<ListenSpec>, StartupError> {
        let listen_at = if ov.listen.is_empty() { Place::top(&raw.listen) } else { Place::nowhere() };
        let listen = if ov.listen.is_empty() { raw.listen.get_ref().clone() } else { ov.listen.clone() };
        let wire = |proxy, tls| Wire { proxy, tls };
        let lists = [
            ("listen", listen_at, listen, wire(false, false)),
            (
                "proxy_listen",
                Place::top(&raw.proxy_listen),
                raw.proxy_listen.get_ref().clone(),
                wire(true, false),
            ),
            ("tls_listen", Place::top(&raw.tls_listen), raw.tls_listen.get_ref().clone(), wire(false, true)),
            (
                "proxy_tls_listen",
                Place::top(&raw.proxy_tls_listen),
                raw.proxy_tls_listen.get_ref().clone(),
                wire(true, true),
            ),
        ];
        // A PROXY-only or HTTPS-only instance may have no plain listener.
        if lists.iter().all(|(_, _, addrs, _)| addrs.is_empty()) {
            return Err(self.error(
                "listen",
                listen_at,
                "needs at least one address (or proxy_listen, tls_listen or proxy_tls_listen some)",
            ));
        }
        for (i, (key, at, addrs, _)) in lists.iter().enumerate() {
            for addr in addrs {
                self.listen_address(key, *at, addr)?;
                if let Some((other, ..)) = lists[..i].iter().find(|(_, _, earlier, _)| earlier.contains(addr))
                {
                    return Err(self.error(key, *at, &format!("{addr:?} is also in {other}; {ONE_KIND}")));
                }
            }
            for (other, _, earlier, _) in &lists[..i] {
                if let Some((this, that, both)) = same_socket(earlier, addrs) {
                    return Err(self.error(
                        key,
                        *at,
                        &format!("{this:?} is {both}, as {other}'s {that:?} is; {ONE_KIND}"),
                    ));
                }
            }
        }
        Ok(lists
            .into_iter()
            .flat_map(|(_, _, addrs, wire)| addrs.into_iter().map(move |addr| ListenSpec { addr, wire }))
            .collect())
    }

    /// `trusted_proxies`, `proxy_timeout` and `real_ip_header`; a PROXY
    /// listener needs a trusted proxy.
    fn proxy(&self, raw: &RawConfig, listeners: &[ListenSpec]) -> Result<Proxy, StartupError> {
        let trusted_at = Place::top(&raw.trusted_proxies);
        let trusted = raw
            .trusted_proxies
            .get_ref()
            .iter()
            .map(|c| c.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error("trusted_proxies", trusted_at, &e))?;
        if listeners.iter().any(|l| l.wire.proxy) && trusted.is_empty() {
            let (key, at) = if raw.proxy_listen.get_ref().is_empty() {
                ("proxy_tls_listen", Place::top(&raw.proxy_tls_listen))
            } else {
                ("proxy_listen", Place::top(&raw.proxy_listen))
            };
            return Err(self.error(
                key,
                at,
                "needs trusted_proxies: a PROXY header is accepted only from a trusted proxy",
            ));
        }
        let timeout = self.seconds("proxy_timeout", &raw.proxy_timeout)?;
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
        Ok(Proxy { trusted, timeout, real_ip_header })
    }

    /// `user`, `group`, `chroot` and `allow_root`: the account is looked up
    /// now, and refused if it is root or a privileged system group (as
    /// root, unless `allow_root`).
    fn privileges(&self, raw: &RawConfig) -> Result<Privileges, StartupError> {
        let user_at = Place::top(&raw.user);
        let group_at = Place::top(&raw.group);
        let (user, group) = (raw.user.get_ref(), raw.group.get_ref());
        let at_key = |key: &str| if key == "group" { group_at } else { user_at };
        let identity =
            Identity::lookup(user, group).map_err(|(key, what)| self.error(key, at_key(key), &what))?;
        if geteuid().is_root() && !raw.allow_root {
            identity
                .refuse_privileged(!group.is_empty())
                .map_err(|(key, what)| self.error(key, at_key(key), &what))?;
        }
        Ok(Privileges {
            identity,
            group_given: !group.is_empty(),
            chroot: raw.chroot,
            allow_root: raw.allow_root,
            sandbox: raw.sandbox,
        })
    }

    /// The caps on children, the timeouts and the sizes.
    fn limits(&self, raw: &RawConfig) -> Result<Limits, StartupError> {
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
        let give_back_from = u8::try_from(*raw.keepalive_give_back_from_percent.get_ref())
            .ok()
            .filter(|p| *p <= 100)
            .map(|p| share_of(max_children, p))
            .ok_or_else(|| {
                self.error(
                    "keepalive_give_back_from_percent",
                    Place::top(&raw.keepalive_give_back_from_percent),
                    "must be a percentage from 0 (never) to 100 (when every child is taken)",
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
        Ok(Limits {
            max_children,
            max_children_per_ip,
            per_ip_cap_from,
            give_back_from,
            header_timeout: self.seconds("header_timeout", &raw.header_timeout)?,
            keepalive_timeout: self.seconds("keepalive_timeout", &raw.keepalive_timeout)?,
            send_timeout: self.seconds("send_timeout", &raw.send_timeout)?,
            min_send_rate,
            min_send_rate_grace: self.seconds("min_send_rate_grace", &raw.min_send_rate_grace)?,
            shutdown_grace: self.seconds("shutdown_grace", &raw.shutdown_grace)?,
            max_header_bytes,
            max_requests_per_connection,
        })
    }

    /// `tls_key_processes`: 0 (one per CPU) to `MAX_KEY_PROCESSES`.
    fn key_processes(&self, raw: &RawConfig) -> Result<usize, StartupError> {
        usize::try_from(*raw.tls_key_processes.get_ref()).ok().filter(|n| *n <= MAX_KEY_PROCESSES).ok_or_else(
            || {
                self.error(
                    "tls_key_processes",
                    Place::top(&raw.tls_key_processes),
                    &format!("must be 0 (one per CPU) or a number of processes up to {MAX_KEY_PROCESSES}"),
                )
            },
        )
    }

    /// `tls_ticket_rotation`: whole seconds (a ticket's announced lifetime
    /// is in seconds), from one to `tickets::MAX_ROTATION`.
    fn ticket_rotation(&self, raw: &RawConfig) -> Result<Duration, StartupError> {
        u64::try_from(*raw.tls_ticket_rotation.get_ref())
            .ok()
            .map(Duration::from_secs)
            .filter(|d| (Duration::from_secs(1)..=tickets::MAX_ROTATION).contains(d))
            .ok_or_else(|| {
                self.error(
                    "tls_ticket_rotation",
                    Place::top(&raw.tls_ticket_rotation),
                    &format!(
                        "must be a whole number of seconds from 1 to {} (a ticket lives two periods, \
                         and RFC 8446 allows 7 days at most)",
                        tickets::MAX_ROTATION.as_secs()
                    ),
                )
            })
    }

    /// `access_log` and `error_log`: a keyword or a file path.
    fn logging(&self, raw: &RawConfig, ov: &Overrides) -> Result<Logging, StartupError> {
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
        Ok(Logging { access_log, error_log })
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

    /// A number of seconds (`key`), at least a millisecond and at most a day.
    fn seconds(&self, key: &str, value: &At<Seconds>) -> Result<Duration, StartupError> {
        let secs = value.get_ref().as_f64();
        if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&secs) {
            return Err(self.error(
                key,
                Place::top(value),
                &format!("must be at least {MIN_TIMEOUT_SECS} (1 ms) and at most {MAX_TIMEOUT_SECS} seconds"),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

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
}

/// `percent` of `n`, rounded up: the least count that is at least that
/// share (so 50 percent of 5 is 3: two busy children are fewer than half).
fn share_of(n: usize, percent: u8) -> usize {
    let share = (n as u128 * u128::from(percent)).div_ceil(100);
    usize::try_from(share).unwrap_or(usize::MAX)
}

/// Why an address may be in one listen list only.
const ONE_KIND: &str = "a listener is either plain or PROXY, over TLS or not, and in one list only";

/// The first address of `later` (`proxy_listen`, say) written differently
/// from one of `earlier` (`listen`: `localhost:80` beside `127.0.0.1:80`,
/// `127.0.0.1:080`) that resolves to the same socket address: the one
/// listener would be bound once, as the earlier list's. Returns the two as
/// written (the later one first) and the address. Port 0 is
/// left out (each spec gets a port of its own), and so is a spec that
/// does not resolve: binding it says why.
fn same_socket(earlier: &[String], later: &[String]) -> Option<(String, String, SocketAddr)> {
    if later.is_empty() || earlier.is_empty() {
        return None;
    }
    let resolved =
        |spec: &String| listener::resolve(spec).unwrap_or_default().into_iter().filter(|a| a.port() != 0);
    let plain: Vec<(&String, SocketAddr)> =
        earlier.iter().flat_map(|s| resolved(s).map(move |a| (s, a))).collect();
    later.iter().find_map(|proxy| {
        resolved(proxy).find_map(|a| {
            plain.iter().find(|(_, p)| *p == a).map(|(spec, _)| (proxy.clone(), (*spec).clone(), a))
        })
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::DEFAULT_MAX_CHILDREN;
    use crate::config::tests::load_str;
    use crate::listener::{self, ListenSpec, Wire};

    #[test]
    fn a_proxy_only_instance_needs_no_plain_listener() {
        let e = load_str("listen = []\n").unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("at least one address"), "{e}");
        let c =
            load_str("listen = []\nproxy_listen = [\"127.0.0.1:0\"]\ntrusted_proxies = [\"127.0.0.1\"]\n")
                .unwrap();
        let proxy = ListenSpec { addr: "127.0.0.1:0".to_string(), wire: Wire { proxy: true, tls: false } };
        assert_eq!(c.listeners, [proxy]);
    }

    #[test]
    fn https_listeners_carry_their_wire_and_need_the_default_certificate() {
        let certs = "tls_certificate = \"c.pem\"\ntls_key = \"k.pem\"\n";
        let text = format!(
            "listen = []\ntls_listen = [\"127.0.0.1:0\"]\nproxy_tls_listen = [\"127.0.0.1:1\"]\n\
             trusted_proxies = [\"127.0.0.1\"]\n{certs}"
        );
        let c = load_str(&text).unwrap();
        let spec = |addr: &str, proxy| ListenSpec { addr: addr.to_string(), wire: Wire { proxy, tls: true } };
        assert_eq!(c.listeners, [spec("127.0.0.1:0", false), spec("127.0.0.1:1", true)]);
        let e = load_str("tls_listen = [\"127.0.0.1:0\"]\n").unwrap_err().to_string();
        assert!(e.contains("tls_listen") && e.contains("line 2") && e.contains("tls_certificate"), "{e}");
        let e = load_str("proxy_tls_listen = [\"127.0.0.1:0\"]\n").unwrap_err().to_string();
        assert!(e.contains("proxy_tls_listen") && e.contains("trusted_proxies"), "{e}");
    }

    #[test]
    fn an_address_is_in_one_listen_list_only() {
        let certs = "tls_certificate = \"c.pem\"\ntls_key = \"k.pem\"\n";
        let e =
            load_str(&format!("listen = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8080\"]\n{certs}"))
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("tls_listen") && e.contains("also in listen") && e.contains("either plain"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_needs_its_key_and_a_site_certificate_the_default() {
        let e = load_str("tls_certificate = \"c.pem\"\n").unwrap_err().to_string();
        assert!(e.contains("tls_certificate") && e.contains("tls_key"), "{e}");
        let e = load_str("tls_key = \"k.pem\"\n").unwrap_err().to_string();
        assert!(e.contains("tls_key") && e.contains("tls_certificate beside"), "{e}");
        let site = "[[site]]\nhosts = [\"a.test\"]\nroot = \"/\"\ntls_certificate = \"a.pem\"\ntls_key = \"a.key\"\n";
        let e = load_str(site).unwrap_err().to_string();
        assert!(e.contains("a.test") && e.contains("default certificate"), "{e}");
        let (_, sites) = crate::config::tests::load_str_with_sites(&format!(
            "tls_certificate = \"/c.pem\"\ntls_key = \"/k.pem\"\n{site}"
        ))
        .unwrap();
        let files = sites[1].tls.as_ref().expect("the site's certificate");
        assert!(files.certificate.is_absolute() && files.certificate.ends_with("a.pem"), "{files:?}");
        assert_eq!(sites[0].tls.as_ref().map(|f| f.key.as_path()), Some(std::path::Path::new("/k.pem")));
    }

    #[test]
    fn key_processes_are_one_per_cpu_or_a_count() {
        let count = |text: &str| load_str(text).map(|c| c.tls_key_processes);
        assert_eq!(count("").unwrap(), 0);
        assert_eq!(count("tls_key_processes = 3\n").unwrap(), 3);
        assert_eq!(count("tls_key_processes = 256\n").unwrap(), 256);
        for bad in ["-1", "257", "1.5", "\"2\""] {
            let e = count(&format!("tls_key_processes = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("tls_key_processes") && e.contains("line 2"), "{bad}: {e}");
        }
    }

    #[test]
    fn ticket_rotation_is_whole_seconds_up_to_half_a_week() {
        let rotation = |text: &str| load_str(text).map(|c| c.tls_ticket_rotation);
        assert_eq!(rotation("").unwrap(), Duration::from_secs(crate::config::DEFAULT_TLS_TICKET_ROTATION));
        assert_eq!(rotation("tls_ticket_rotation = 2\n").unwrap(), Duration::from_secs(2));
        assert_eq!(rotation("tls_ticket_rotation = 302400\n").unwrap(), crate::tls::tickets::MAX_ROTATION);
        for bad in ["0", "-5", "302401"] {
            let e = rotation(&format!("tls_ticket_rotation = {bad}\n")).unwrap_err().to_string();
            assert!(
                e.contains("tls_ticket_rotation") && e.contains("line 2") && e.contains("RFC 8446"),
                "{e}"
            );
        }
        let e = rotation("tls_ticket_rotation = 1.5\n").unwrap_err().to_string();
        assert!(e.contains("tls_ticket_rotation"), "{e}");
    }

    #[test]
    fn per_ip_cap_applies_from_a_share_of_max_children() {
        assert_eq!(load_str("").unwrap().limits.per_ip_cap_from, DEFAULT_MAX_CHILDREN / 2);
        assert_eq!(load_str("max_children = 64\n").unwrap().limits.per_ip_cap_from, 32);
        // Rounded up: with 5 children, 2 busy are fewer than half, 3 are not.
        assert_eq!(load_str("max_children = 5\n").unwrap().limits.per_ip_cap_from, 3);
        let c = load_str("max_children = 64\nmax_children_per_ip_from_percent = 0\n").unwrap();
        assert_eq!(c.limits.per_ip_cap_from, 0);
        let c = load_str("max_children = 64\nmax_children_per_ip_from_percent = 100\n").unwrap();
        assert_eq!(c.limits.per_ip_cap_from, 64);
        for bad in ["-1", "101"] {
            let e = load_str(&format!("max_children_per_ip_from_percent = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("max_children_per_ip_from_percent") && e.contains("line 2"), "{e}");
        }
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
                c.limits.header_timeout,
                c.limits.keepalive_timeout,
                c.limits.send_timeout,
                c.limits.min_send_rate_grace,
                c.limits.shutdown_grace,
            ];
            assert!(d.contains(&Duration::from_millis(1)), "{key}: {d:?}");
        }
    }

    /// A minute unless set; 0 turns the watch off; the timeouts' range otherwise.
    #[test]
    fn tls_watch_interval_is_seconds_or_off() {
        assert_eq!(load_str("").unwrap().tls_watch_interval, Some(Duration::from_secs(60)));
        assert_eq!(load_str("tls_watch_interval = 0\n").unwrap().tls_watch_interval, None);
        let c = load_str("tls_watch_interval = 0.25\n").unwrap();
        assert_eq!(c.tls_watch_interval, Some(Duration::from_millis(250)));
        let e = load_str("tls_watch_interval = -5\n").unwrap_err().to_string();
        assert!(e.contains("tls_watch_interval") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn ipv4_mapped_listen_address_is_refused() {
        let e = load_str("listen = [\"[::ffff:127.0.0.1]:80\"]\n").unwrap_err().to_string();
        assert!(e.contains("listen") && e.contains("line 2") && e.contains("\"127.0.0.1:80\""), "{e}");
        load_str("listen = [\"[::1]:80\", \"127.0.0.1:80\"]\n").unwrap();
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
    fn an_empty_access_log_lists_every_choice() {
        let e = load_str("access_log = \"\"\n").unwrap_err().to_string();
        for choice in ["\"stderr\"", "\"syslog\"", "\"off\"", "file path"] {
            assert!(e.contains("access_log") && e.contains(choice), "{choice}: {e}");
        }
    }
}
