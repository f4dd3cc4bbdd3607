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
//!
//! One file per job: `raw` (the file as written, and the built-in
//! defaults), `place` (where a value is written, for errors), `validate`
//! (the validation steps, each making one part of the value), `site` (a
//! site's keys), `value` (the validated `Config` and its parts).

mod place;
mod raw;
mod site;
mod validate;
mod value;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::StartupError;
use crate::safeopen::{self, Guard};

pub use place::unreadable;
pub use raw::{
    DEFAULT_BACKLOG, DEFAULT_HEADER_TIMEOUT, DEFAULT_INDEX, DEFAULT_KEEPALIVE_GIVE_BACK_FROM_PERCENT,
    DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_CHILDREN, DEFAULT_MAX_CHILDREN_PER_IP,
    DEFAULT_MAX_CHILDREN_PER_IP_FROM_PERCENT, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_REQUESTS,
    DEFAULT_MIN_SEND_RATE, DEFAULT_MIN_SEND_RATE_GRACE, DEFAULT_PROXY_TIMEOUT, DEFAULT_ROOT,
    DEFAULT_SEND_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TLS_TICKET_ROTATION, DEFAULT_USER,
};
pub use value::{
    AccessLogTarget, Config, ErrorLogTarget, Limits, Logging, Overrides, Privileges, Proxy, RealIpHeader,
    SiteConfig, TlsFiles,
};

use place::{Checker, describe_toml_error};
use raw::RawConfig;

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
