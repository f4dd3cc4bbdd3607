//! What one site serves and how it answers, as the reply rules see it:
//! borrowed from the configuration, per request.
//!
//! Runs in: child (and the parent, for the `503` it writes itself). Pure:
//! no I/O. Which site a request is for is `host`'s job; the header fields
//! a site adds are `rules`'s.

use crate::http::mime::MimeTypes;
use crate::http::rules::HeaderRules;
use crate::http::status::Status;

/// What one site serves and how it answers: the default site (the
/// configuration's top-level keys) or a `[[site]]`, borrowed from the
/// configuration.
#[derive(Clone, Copy, Debug)]
pub struct Site<'a> {
    /// File names tried, in order, for a request naming a directory.
    pub index: &'a [String],
    /// The `Server` field's value (see `decide::server_field`).
    pub server: &'a str,
    /// Extension → content type.
    pub types: &'a MimeTypes,
    /// Whether a directory without an index file is listed (else 403).
    pub listing: bool,
    /// Whether precompressed siblings are served (and every file reply
    /// says `Vary: Accept-Encoding`).
    pub precompressed: bool,
    /// The file served with `200` for a `GET`/`HEAD` of a missing path.
    pub fallback: Option<&'a str>,
    /// The header fields the site adds (see `HeaderRules::apply`).
    pub headers: &'a HeaderRules,
    /// Custom error pages: status code and path beneath the root.
    pub error_pages: &'a [(u16, String)],
    /// With `https_redirect`, the HTTPS port a plain-HTTP request is sent
    /// to (see `https::location`); `None`: served over plain HTTP too.
    pub https_redirect: Option<u16>,
    /// The `Strict-Transport-Security` value sent over HTTPS, if any.
    pub hsts: Option<&'a str>,
}

impl<'a> Site<'a> {
    /// The path (beneath the root) of the custom page for `status`, if any.
    pub fn error_page(&self, status: Status) -> Option<&'a str> {
        let code = status.code();
        self.error_pages.iter().find(|(c, _)| *c == code).map(|(_, p)| p.as_str())
    }
}
