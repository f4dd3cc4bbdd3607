//! HTTPS-only sites and the ACME HTTP-01 challenge: which requests are
//! challenges, where a plain-HTTP request to an HTTPS-only site is sent,
//! and the `Strict-Transport-Security` field of a reply over HTTPS.
//!
//! Runs in: child. Pure: the challenge file is opened by `file`, the
//! replies are built by `decide`.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::http::reply::{Reply, Value};
use crate::http::request;
use crate::http::status::Status;

/// Where, beneath the ACME webroot and in the request path, a challenge
/// token is (RFC 8555 8.3): what certbot's `--webroot`, lego's
/// `--http.webroot` and dehydrated's `WELLKNOWN` write to.
pub const CHALLENGE_DIR: &str = ".well-known/acme-challenge";

/// The longest token accepted: RFC 8555 tokens carry 128 bits or more of
/// base64url (43 characters from Let's Encrypt); a name far longer is not
/// one.
const MAX_TOKEN: usize = 255;

/// Whether the resolved path `rel` (see `resolve`) is in the challenge
/// directory: `None` when it is not (the request is served as usual);
/// `Some(Ok(()))` for a plain token name (base64url characters only), to
/// be opened as `rel` beneath the ACME webroot; `Some(Err(404))` for the
/// directory itself, a path beneath a token, a directory form or any other
/// name, which no ACME client writes and which is not looked up at all.
pub fn challenge(rel: &Path, dir_form: bool) -> Option<Result<(), Status>> {
    let rest = rel.as_os_str().as_bytes().strip_prefix(CHALLENGE_DIR.as_bytes())?;
    if !rest.is_empty() && rest[0] != b'/' {
        // `.well-known/acme-challenge-other`: another name.
        return None;
    }
    let token = rest.get(1..).unwrap_or_default();
    let plain = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    let ok = !dir_form && !token.is_empty() && token.len() <= MAX_TOKEN && token.iter().all(plain);
    Some(if ok { Ok(()) } else { Err(Status::NotFound) })
}

/// The `Location` of the redirect of a plain-HTTP request for `target` on
/// `host` (as `host::request_host` gives it: without its port) to HTTPS on
/// `port`: `https://host[:port]/path?query`, the port left out when it is
/// 443. Path and query are kept as sent (the parser refused controls and
/// spaces in the target); an absolute-form target gives its path and
/// query. `None` when the host is not text (it never is: the parser checked it).
pub fn location(host: &[u8], port: u16, target: &str) -> Option<String> {
    let host = std::str::from_utf8(host).ok()?;
    let path_and_query = match request::authority(target) {
        Some(authority) => {
            // Past the scheme's "//" and the authority.
            let start = target.find("//").map_or(0, |i| i + 2) + authority.len();
            &target[start..]
        }
        None => target,
    };
    let path_and_query = path_and_query.split_once('#').map_or(path_and_query, |(p, _)| p);
    let slash = if path_and_query.starts_with('/') { "" } else { "/" };
    Some(if port == 443 {
        format!("https://{host}{slash}{path_and_query}")
    } else {
        format!("https://{host}:{port}{slash}{path_and_query}")
    })
}

/// Adds `Strict-Transport-Security: hsts` to `reply` when it goes out over
/// TLS (`over_tls`): RFC 6797 7.2 says a host must not send it over plain
/// HTTP, where an attacker could have written or removed it anyway. Sent
/// with every reply over TLS, errors too, as Caddy does: it is about the
/// host, not the resource. `Connection` stays the last field.
pub fn add_hsts<'a>(reply: &mut Reply<'a>, hsts: Option<&'a str>, over_tls: bool) {
    let Some(value) = hsts.filter(|_| over_tls) else { return };
    let connection = reply.fields.pop_connection();
    reply.fields.push("Strict-Transport-Security", Value::Str(value));
    if let Some(c) = connection {
        reply.fields.push(c.name, c.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_paths() {
        /// What `challenge` says of a path.
        type Said = Option<Result<(), Status>>;
        let ok: Said = Some(Ok(()));
        let no: Said = Some(Err(Status::NotFound));
        let table: &[(&str, bool, Said)] = &[
            (".well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0", false, ok),
            (".well-known/acme-challenge/a-b_c", false, ok),
            (".well-known/acme-challenge", true, no),
            (".well-known/acme-challenge", false, no),
            (".well-known/acme-challenge/tok", true, no),
            (".well-known/acme-challenge/tok/more", false, no),
            (".well-known/acme-challenge/tok.txt", false, no),
            (".well-known/acme-challenge/to%6b", false, no),
            (".well-known/acme-challenge/to=", false, no),
            (".well-known/acme-challenges/tok", false, None),
            (".well-known/security.txt", false, None),
            ("index.html", false, None),
            ("", true, None),
        ];
        for (rel, dir_form, want) in table {
            assert_eq!(challenge(Path::new(rel), *dir_form), *want, "{rel}");
        }
        let long = format!("{CHALLENGE_DIR}/{}", "a".repeat(MAX_TOKEN + 1));
        assert_eq!(challenge(Path::new(&long), false), no);
    }

    #[test]
    fn hsts_only_over_tls_and_before_connection() {
        use crate::http::decide::{Connection, status_page};
        let now = std::time::SystemTime::UNIX_EPOCH;
        for (hsts, over_tls, want) in [
            (Some("max-age=600"), true, Some("max-age=600")),
            (Some("max-age=600"), false, None),
            (None, true, None),
        ] {
            let mut reply = status_page(Status::NotFound, None, "forkhttpd", now, Connection::Close, false);
            add_hsts(&mut reply, hsts, over_tls);
            let got = reply.fields.get("Strict-Transport-Security");
            assert_eq!(got, want.map(Value::Str), "{hsts:?} {over_tls}");
            let last = reply.fields.iter().last().unwrap().name;
            assert_eq!(last, "Connection");
        }
    }

    #[test]
    fn redirect_locations() {
        let table: &[(&str, u16, &str, &str)] = &[
            ("a.example", 443, "/", "https://a.example/"),
            ("a.example", 443, "/p/q?x=1&y=%20", "https://a.example/p/q?x=1&y=%20"),
            ("a.example", 8443, "/p?x", "https://a.example:8443/p?x"),
            ("[::1]", 8443, "/", "https://[::1]:8443/"),
            ("a.example", 443, "http://a.example:80/p?x", "https://a.example/p?x"),
            ("a.example", 443, "HTTP://a.example?x", "https://a.example/?x"),
            ("a.example", 443, "http://a.example", "https://a.example/"),
        ];
        for (host, port, target, want) in table {
            assert_eq!(location(host.as_bytes(), *port, target).as_deref(), Some(*want), "{target}");
        }
    }
}
