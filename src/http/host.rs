//! Which site (name-based virtual host) a request is for: the host names
//! each site answers, and the pick among them for a request's `Host`.
//!
//! Runs in: parent (building and validating the names when the config is
//! read) and child (picking, per request). Pure: no I/O. Picking compares
//! borrowed bytes and allocates nothing.

use crate::http::request::{self, Request};

/// Which request hosts a site answers: exact names and `*.suffix` wildcards,
/// lower case, without a trailing dot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    exact: Vec<String>,
    /// The suffixes of the wildcards, with their leading dot (`.example.org`).
    wildcard: Vec<String>,
}

impl Hosts {
    /// Adds a configured name: `example.org`, `*.example.org`, or an IP
    /// literal (`127.0.0.1`, `[::1]`). A port or a trailing dot is refused
    /// (a request's port and trailing dot are ignored, so they could never
    /// match). Returns why a name is not accepted.
    pub fn add(&mut self, name: &str) -> Result<(), String> {
        let lower = name.to_ascii_lowercase();
        let (wild, rest) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let literal6 = rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2;
        let valid = !rest.is_empty()
            && !rest.ends_with('.')
            && !rest.starts_with('.')
            && (literal6
                && !wild
                && rest[1..rest.len() - 1].bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                || rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
        if !valid {
            return Err(format!(
                "{name:?} is not a host name: write a name (\"example.org\"), a wildcard (\"*.example.org\") \
                 or an address, without port or trailing dot"
            ));
        }
        if wild {
            self.wildcard.push(format!(".{rest}"));
        } else {
            self.exact.push(rest.to_string());
        }
        Ok(())
    }

    /// The exact names, lower case.
    pub fn exact(&self) -> &[String] {
        &self.exact
    }

    /// The wildcards' suffixes, lower case, each with its leading dot.
    pub fn wildcards(&self) -> &[String] {
        &self.wildcard
    }

    /// Whether no name was given.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    fn matches_exact(&self, host: &[u8]) -> bool {
        self.exact.iter().any(|e| e.as_bytes().eq_ignore_ascii_case(host))
    }

    /// The length of the longest wildcard suffix matching `host`, if any. A
    /// wildcard needs at least one label before its suffix: `*.example.org`
    /// matches `www.example.org` and `a.b.example.org`, not `example.org`.
    fn wildcard_match(&self, host: &[u8]) -> Option<usize> {
        self.wildcard
            .iter()
            .filter(|w| {
                host.len() > w.len() && host[host.len() - w.len()..].eq_ignore_ascii_case(w.as_bytes())
            })
            .map(String::len)
            .max()
    }
}

/// The host a request is for: the authority of an absolute-form target
/// (which RFC 9112 3.2.2 says wins over `Host`), else the `Host` field.
/// Normalised for matching: the port and a trailing dot removed.
/// Both were validated by `request::parse`: neither holds userinfo.
pub fn request_host<'r>(req: &Request<'r>) -> Option<&'r [u8]> {
    request::authority(req.target).or(req.fields.host).map(normalize_host)
}

/// `host[:port]` without its port, surrounding blanks and trailing dot:
/// `Example.ORG.:8080` -> `Example.ORG` (matching ignores case).
pub fn normalize_host(raw: &[u8]) -> &[u8] {
    let mut host = raw.trim_ascii();
    if host.first() == Some(&b'[') {
        // An IPv6 literal: the port, if any, follows the bracket.
        let end = host.iter().position(|&b| b == b']').map_or(host.len(), |i| i + 1);
        return &host[..end];
    }
    if let Some(colon) = host.iter().position(|&b| b == b':') {
        host = &host[..colon];
    }
    host.strip_suffix(b".").unwrap_or(host)
}

/// The index of the site for `host` among `sites` (each site's `Hosts`),
/// or `None` for the default site. An exact name wins over any wildcard
/// (the first site listing it); among wildcards the longest suffix wins,
/// then the first site.
pub fn select<'s>(host: Option<&[u8]>, sites: impl Iterator<Item = &'s Hosts> + Clone) -> Option<usize> {
    let host = host?;
    if host.is_empty() {
        return None;
    }
    if let Some(i) = sites.clone().position(|h| h.matches_exact(host)) {
        return Some(i);
    }
    let mut best: Option<(usize, usize)> = None;
    for (i, len) in sites.enumerate().filter_map(|(i, h)| h.wildcard_match(host).map(|len| (i, len))) {
        if best.is_none_or(|(_, l)| len > l) {
            best = Some((i, len));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Parse, parse};

    fn hosts(names: &[&str]) -> Hosts {
        let mut h = Hosts::default();
        for n in names {
            h.add(n).unwrap();
        }
        h
    }

    #[test]
    fn host_matching_table() {
        let sites = [
            hosts(&["example.org", "www.example.org"]),
            hosts(&["*.example.org"]),
            hosts(&["*.static.example.org", "Files.Example.NET"]),
            hosts(&["127.0.0.1", "[::1]"]),
        ];
        let table: &[(&[u8], Option<usize>)] = &[
            (b"example.org", Some(0)),
            (b"EXAMPLE.org", Some(0)),
            (b"example.org.", Some(0)),
            (b"example.org:8080", Some(0)),
            (b"Example.Org.:80", Some(0)),
            (b"www.example.org", Some(0)),
            (b"api.example.org", Some(1)),
            (b"a.b.example.org", Some(1)),
            (b"img.static.example.org", Some(2)),
            (b"static.example.org", Some(1)),
            (b"files.example.net", Some(2)),
            (b"example.net", None),
            (b"badexample.org", None),
            (b"org", None),
            (b"127.0.0.1:8080", Some(3)),
            (b"[::1]:8080", Some(3)),
            (b"[::1]", Some(3)),
            (b"", None),
        ];
        for (raw, want) in table {
            let got = select(Some(normalize_host(raw)), sites.iter());
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(select(None, sites.iter()), None);
    }

    #[test]
    fn an_exact_name_wins_over_an_earlier_wildcard() {
        let sites = [hosts(&["*.example.org"]), hosts(&["www.example.org"])];
        assert_eq!(select(Some(b"www.example.org"), sites.iter()), Some(1));
        assert_eq!(select(Some(b"api.example.org"), sites.iter()), Some(0));
    }

    #[test]
    fn host_names_are_validated() {
        let mut h = Hosts::default();
        for bad in ["", "example.org:80", "example.org.", "*.", "*", "a b", "a/b", "*.[::1]", "[]", ".x"] {
            assert!(h.add(bad).is_err(), "{bad:?}");
        }
        assert!(h.is_empty());
    }

    #[test]
    fn the_absolute_form_authority_wins_over_host() {
        let raw = b"GET http://Other.Example:81/x HTTP/1.1\r\nHost: example.org\r\n\r\n";
        let Parse::Complete(req, _) = parse(raw) else { panic!() };
        assert_eq!(request_host(&req), Some(&b"Other.Example"[..]));
        let Parse::Complete(req, _) = parse(b"GET /x HTTP/1.1\r\nHost: example.org.:8080\r\n\r\n") else {
            panic!()
        };
        assert_eq!(request_host(&req), Some(&b"example.org"[..]));
    }
}
