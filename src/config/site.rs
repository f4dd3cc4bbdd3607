//! A site's content keys (`root`, `index`, `listing`, `fallback`,
//! `nosniff`, `headers`, `header_rules`, `error_pages`, `tls_certificate`,
//! `tls_key`, `https_redirect`, `https_port`, `hsts`), validated into a
//! `SiteConfig`: the top level's for the default site, and each
//! `[[site]]`'s, with its `hosts`.
//!
//! Runs in: parent, when the config is read.

use std::fs;
use std::ops::Range;
use std::path::PathBuf;

use crate::error::StartupError;
use crate::http::host::Hosts;
use crate::http::resolve;
use crate::http::rules::{Header, HeaderRule, HeaderRules, PathPattern};

use toml::Spanned;

use super::place::{Checker, Place, site_name};
use super::raw::{RawConfig, RawHeaders, RawHsts, RawSiteKeys};
use super::value::{Overrides, SiteConfig, TlsFiles};

impl Checker<'_> {
    /// Every site: the default one (the top-level keys, or `--root`),
    /// then each `[[site]]` in file order, each host answered by one site.
    pub(super) fn sites(&self, raw: &RawConfig, ov: &Overrides) -> Result<Vec<SiteConfig>, StartupError> {
        let root_at = if ov.root.is_some() { Place::nowhere() } else { Place::top(&raw.root) };
        let root = match &ov.root {
            Some(r) => Spanned::new(0..0, r.clone()),
            None => raw.root.clone(),
        };
        let default_site = RawSiteKeys {
            root,
            index: raw.index.clone(),
            listing: raw.listing,
            precompressed: raw.precompressed,
            fallback: raw.fallback.clone(),
            nosniff: raw.nosniff,
            headers: raw.headers.clone(),
            header_rules: raw.header_rules.clone(),
            error_pages: raw.error_pages.clone(),
            tls_certificate: raw.tls_certificate.clone(),
            tls_key: raw.tls_key.clone(),
            https_redirect: raw.https_redirect,
            https_port: raw.https_port.clone(),
            hsts: raw.hsts.clone(),
        };
        let mut sites =
            vec![self.site("default site".to_string(), Hosts::default(), default_site, root_at, ov)?];
        for (i, raw_site) in raw.site.iter().enumerate() {
            let site_span = raw_site.span();
            let raw_site = raw_site.get_ref().clone();
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
                tls_certificate: raw_site.tls_certificate,
                tls_key: raw_site.tls_key,
                https_redirect: raw_site.https_redirect,
                https_port: raw_site.https_port,
                hsts: raw_site.hsts,
            };
            let site = self.site(name.clone(), hosts, keys, root_at, ov)?;
            if site.tls.is_some() && sites[0].tls.is_none() {
                return Err(self.error(
                    "tls_certificate",
                    here(raw.site[i].get_ref().tls_certificate.span()),
                    "needs a default certificate too: set tls_certificate and tls_key at the top level \
                     (it answers clients that name no site)",
                ));
            }
            sites.push(site);
        }
        Ok(sites)
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

        let tls = self.tls_files(&raw.tls_certificate, &raw.tls_key, site, ov)?;
        let https_port =
            u16::try_from(*raw.https_port.get_ref()).ok().filter(|p| *p > 0).ok_or_else(|| {
                self.error("https_port", here(raw.https_port.span()), "must be a port, 1 to 65535")
            })?;
        let hsts =
            hsts_value(raw.hsts.get_ref()).map_err(|why| self.error("hsts", here(raw.hsts.span()), &why))?;

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
            tls,
            https_redirect: raw.https_redirect,
            https_port,
            hsts,
        })
    }

    /// `tls_certificate` and `tls_key`: both or neither, made absolute.
    fn tls_files(
        &self,
        cert: &Spanned<PathBuf>,
        key: &Spanned<PathBuf>,
        site: Option<&str>,
        ov: &Overrides,
    ) -> Result<Option<TlsFiles>, StartupError> {
        let here = |at: Range<usize>| Place { span: (at.start, at.end), site };
        let (cert_at, key_at) = (here(cert.span()), here(key.span()));
        match (cert.get_ref().as_os_str().is_empty(), key.get_ref().as_os_str().is_empty()) {
            (true, true) => Ok(None),
            (false, true) => Err(self.error("tls_certificate", cert_at, "needs tls_key beside it")),
            (true, false) => Err(self.error("tls_key", key_at, "needs tls_certificate beside it")),
            (false, false) => Ok(Some(TlsFiles {
                certificate: ov
                    .resolve(cert.get_ref())
                    .map_err(|e| self.error("tls_certificate", cert_at, &e.to_string()))?,
                key: ov.resolve(key.get_ref()).map_err(|e| self.error("tls_key", key_at, &e.to_string()))?,
            })),
        }
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
}

/// The `Strict-Transport-Security` value `hsts` asks for: `max-age=N`
/// for a number of seconds, the text as written for a string that starts
/// with `max-age=` (RFC 6797 6.1.1: the one directive required), `None`
/// for `""` (off). Returns why anything else is refused.
fn hsts_value(raw: &RawHsts) -> Result<Option<String>, String> {
    match raw {
        RawHsts::Seconds(secs) if *secs >= 0 => Ok(Some(format!("max-age={secs}"))),
        RawHsts::Seconds(secs) => Err(format!("{secs} is not a number of seconds (0 or more)")),
        RawHsts::Value(v) if v.is_empty() => Ok(None),
        RawHsts::Value(v) => {
            let starts = v.get(..8).is_some_and(|h| h.eq_ignore_ascii_case("max-age="));
            if !starts {
                return Err(format!("{v:?} must start with \"max-age=\" (or be a number of seconds)"));
            }
            Header::new("Strict-Transport-Security", v).map_err(|e| format!("{v:?} {e}"))?;
            Ok(Some(v.clone()))
        }
    }
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
    use crate::config::tests::{load_sites, load_str_with_sites};
    use crate::error::StartupError;
    use crate::http::rules::Header;

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

    #[test]
    fn https_keys() {
        let sites = load_sites(
            "https_redirect = true\nhsts = 600\n\
             [[site]]\nhosts = [\"a.example\"]\nroot = \"{dir}/a\"\nhttps_port = 8443\n\
             hsts = \"max-age=63072000; includeSubDomains\"\n",
        )
        .unwrap();
        let (d, a) = (&sites[0], &sites[1]);
        assert!(d.https_redirect && !a.https_redirect);
        assert_eq!((d.https_port, a.https_port), (443, 8443));
        assert_eq!(d.hsts.as_deref(), Some("max-age=600"));
        assert_eq!(a.hsts.as_deref(), Some("max-age=63072000; includeSubDomains"));
        let site = "[[site]]\nhosts = [\"a.example\"]\nroot = \"{dir}/a\"\n";
        for (text, key, what) in [
            (format!("{site}hsts = -1\n"), "hsts", "0 or more"),
            (format!("{site}hsts = \"includeSubDomains\"\n"), "hsts", "max-age="),
            (format!("{site}hsts = \"max-age=1\\r\\nX: y\"\n"), "hsts", "control character"),
            (format!("{site}https_port = 0\n"), "https_port", "1 to 65535"),
            (format!("{site}https_port = 65536\n"), "https_port", "1 to 65535"),
        ] {
            let e = load_sites(&text).unwrap_err().to_string();
            assert!(e.contains(&format!("key `{key}`")) && e.contains(what), "{text}\n=> {e}");
        }
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
}
