//! Decide, then send: the rules that turn a parsed request, the site it is
//! for and what the file step found into a `Reply`.
//!
//! Runs in: child, and in the parent for its own `503` (`status_page`).
//! Pure: no socket, no filesystem, no clock (`now` is an argument). The
//! child's flow (`conn::Conn::answer`) is one line of steps:
//!
//! 1. `health`: a load balancer's health check, answered before any site
//!    or file (and never logged). Then, for the site the host names, an
//!    ACME challenge (`https::challenge`), answered by `challenge` from
//!    the ACME webroot with no fallback or error page; then, over plain
//!    HTTP, the site's `https_redirect`.
//! 2. `answer_without_file`, for the site the host names: the method and
//!    framing rules (`OPTIONS`, 405, 501, a body we will not read); `None`
//!    means a file is wanted.
//! 3. The file step (`resolve`, then `file::find`, or a file kept open
//!    from an earlier request), which opens what the target names and
//!    `fstat`s it: a `Lookup`. For a missing file, `fallback_for` names the
//!    site's fallback, and `fallen_back` makes its own lookup the `Lookup`.
//! 4. `decide`: the reply for that `Lookup`.
//! 5. `with_error_page`: the site's page for an error status, in place of
//!    the built-in one.
//! 6. The site's header fields (`rules::HeaderRules::apply`).
//!    Over HTTPS, the site's `Strict-Transport-Security` (`https::add_hsts`).
//!
//! A head that cannot be parsed takes none of these: `rejection`.
//!
//! Every status page comes from `status_page`, every file reply (and its
//! `304`, `412` and `416`, which the file's validators and length decide)
//! from `file_reply`; the `Connection` field is the last one of every reply.

use std::fs::File;
use std::time::SystemTime;

use crate::http::conditional::{self, Precondition};
use crate::http::encoding::Coding;
use crate::http::fileinfo::FileInfo;
use crate::http::listing::Listing;
use crate::http::mime::MimeTypes;
use crate::http::range::{self, ContentRange, Multipart, Selection};
use crate::http::reply::{Body, Fields, Reply, Value};
use crate::http::request::{Method, Request};
use crate::http::site::Site;
use crate::http::status::Status;

/// `Allow` for every response that lists our methods (405, OPTIONS).
pub const ALLOW: &str = "GET, HEAD, OPTIONS";
/// Seconds a client is asked to wait after a `503`.
pub const RETRY_AFTER_SECS: u64 = 1;
/// The type of every generated page.
const PAGE_TYPE: &str = "text/html; charset=utf-8";

/// The `Server` value: the version only when asked for, since version
/// disclosure helps attackers match exploits and no client needs it.
pub fn server_field(server_version: bool) -> &'static str {
    if server_version { concat!("forkhttpd/", env!("CARGO_PKG_VERSION")) } else { "forkhttpd" }
}

/// A regular file the file step opened.
#[derive(Debug)]
pub struct Opened<'n> {
    /// The open file: what was checked is what is sent.
    pub file: File,
    /// From `fstat` of `file`.
    pub info: FileInfo,
    /// The name its content type is chosen by (the index file's name, for
    /// a directory).
    pub name: &'n [u8],
    /// The coding of a precompressed sibling opened in the file's place;
    /// `info` is then the sibling's.
    pub encoding: Option<Coding>,
}

/// What a request path names.
#[derive(Debug)]
pub enum Found<'n> {
    /// A regular file (the index file, for a directory).
    File(Opened<'n>),
    /// A directory named without its trailing slash: redirect here.
    Redirect(String),
    /// A directory without an index file, listed.
    Listing(Listing),
}

/// What the file step made of a target: what it found, or the status that
/// stopped it (400 and 404 from `resolve`, 403, 404 and 500 from opening).
pub type Lookup<'n> = Result<Found<'n>, Status>;

/// Step 2: the reply to a request that is answered without any file (its
/// method, or a body we will not read); `None` when a file is wanted.
/// `may_keep` says whether the connection could stay open (below the
/// request cap, the server not stopping).
pub fn answer_without_file<'a>(
    req: &Request<'_>,
    site: &Site<'a>,
    now: SystemTime,
    may_keep: bool,
) -> Option<Reply<'a>> {
    let keep = keeps_open(req, may_keep);
    let status = match (req.method, req.has_body) {
        (Method::Unknown, _) => Status::NotImplemented,
        (Method::NotAllowed, _) => Status::MethodNotAllowed,
        (_, true) => Status::BadRequest,
        (Method::Options, false) => return Some(options(req, site, now, keep)),
        (Method::Get | Method::Head, false) => return None,
    };
    Some(status_page(status, None, site.server, now, connection(req, keep), req.method == Method::Head))
}

/// Step 3, after the file step: the path the site falls back to in place
/// of what was `found`, if any. Only a path that is simply missing falls
/// back: a refused one (400, 403, a dotfile's 404 from `resolve`) never
/// reached the file step, and a 403 or 500 from it is kept, as is any
/// file, directory or redirect.
pub fn fallback_for<'s>(found: &Lookup<'_>, site: &Site<'s>) -> Option<&'s str> {
    match found {
        Err(Status::NotFound) => site.fallback,
        _ => None,
    }
}

/// What a fallback's own file step (`None` when there was none to take)
/// gives: its file, or, when it cannot be served, the 404 it stood in for.
pub fn fallen_back(found: Option<Lookup<'_>>) -> Lookup<'_> {
    found.filter(Result::is_ok).unwrap_or(Err(Status::NotFound))
}

/// Step 1: the reply to a load balancer's health check when `req` asks for
/// `health_path` (the path alone, any query ignored) with `GET` or `HEAD`:
/// `200` with a built-in page, no file looked at. `None` for any other
/// request, which is served as usual.
pub fn health<'a>(
    req: &Request<'_>,
    health_path: &str,
    site: &Site<'a>,
    now: SystemTime,
    may_keep: bool,
) -> Option<Reply<'a>> {
    let path = req.target.split_once('?').map_or(req.target, |(p, _)| p);
    if health_path.is_empty() || path != health_path || req.has_body {
        return None;
    }
    let head_only = match req.method {
        Method::Get => false,
        Method::Head => true,
        _ => return None,
    };
    let keep = keeps_open(req, may_keep);
    Some(status_page(Status::Ok, None, site.server, now, connection(req, keep), head_only))
}

/// The status page or metrics (`status_path`), asked for by `req` (`GET`
/// or `HEAD`, from an allowed address: the caller checks both): `200` with
/// `body` of `content_type`, which no cache may keep (it is a moment's
/// picture of the server).
pub fn status_report<'a>(
    req: &Request<'_>,
    site: &Site<'a>,
    body: &'a [u8],
    content_type: &'static str,
    now: SystemTime,
    may_keep: bool,
) -> Reply<'a> {
    let mut fields = common(site.server, now);
    fields.push("Content-Type", Value::Str(content_type));
    fields.push("Content-Length", Value::Number(body.len() as u64));
    fields.push("Cache-Control", Value::Str("no-store"));
    let body = if req.method == Method::Head { Body::None } else { Body::Generated(body) };
    finish(Status::Ok, fields, body, connection(req, keeps_open(req, may_keep)))
}

/// The `421` for a request over HTTPS whose host names another site than
/// the connection's handshake did: the client may retry on a connection
/// of its own for that host, so this one stays open if it may.
pub fn misdirected<'a>(req: &Request<'_>, site: &Site<'a>, now: SystemTime, may_keep: bool) -> Reply<'a> {
    let keep = keeps_open(req, may_keep);
    let head_only = req.method == Method::Head;
    status_page(Status::MisdirectedRequest, None, site.server, now, connection(req, keep), head_only)
}

/// The `308` that sends a plain-HTTP request for an HTTPS-only site to
/// `location` (see `https::location`). 308, as Caddy sends, rather than
/// nginx's usual 301: a 301 lets a client turn a `POST` into a `GET`, a
/// 308 must not, and every client that speaks HTTPS knows it (RFC 9110
/// 15.4.9). Permanent, since `hsts` says the same for longer anyway.
pub fn https_redirect<'a>(
    req: &Request<'_>,
    site: &Site<'a>,
    location: &'a str,
    now: SystemTime,
    may_keep: bool,
) -> Reply<'a> {
    let keep = keeps_open(req, may_keep);
    let head_only = req.method == Method::Head;
    status_page(Status::PermanentRedirect, Some(location), site.server, now, connection(req, keep), head_only)
}

/// The reply to an ACME challenge request (`https::challenge`) that
/// `answer_without_file` left to the file step, given what the lookup of
/// its token found: `decide`'s reply, with the key authorization's type,
/// `text/plain`, whatever the content-type table says of a name without
/// an extension (RFC 8555 8.3 asks for no type, certbot's own server and
/// Caddy send this one).
pub fn challenge<'a>(
    req: &Request<'_>,
    site: &Site<'a>,
    found: &'a Lookup<'_>,
    now: SystemTime,
    may_keep: bool,
) -> Reply<'a> {
    let mut reply = decide(req, site, found, now, may_keep);
    // A file's whole body or one range of it; a multipart body keeps its own type.
    let file_body = matches!(reply.status, Status::Ok | Status::PartialContent);
    if file_body && matches!(reply.fields.get("Content-Type"), Some(Value::Str(_))) {
        reply.fields.set("Content-Type", Value::Str("text/plain"));
    }
    reply
}

/// Step 4: the reply to a `GET` or `HEAD` that `answer_without_file` left
/// to the file step, given what that step found.
pub fn decide<'a>(
    req: &Request<'_>,
    site: &Site<'a>,
    found: &'a Lookup<'_>,
    now: SystemTime,
    may_keep: bool,
) -> Reply<'a> {
    let keep = keeps_open(req, may_keep);
    let head_only = req.method == Method::Head;
    match found {
        Ok(Found::File(opened)) => file_reply(req, site, opened, now, connection(req, keep), head_only),
        Ok(Found::Listing(listing)) => {
            listing_reply(req, site, listing, now, connection(req, keep), head_only)
        }
        Ok(Found::Redirect(location)) => status_page(
            Status::MovedPermanently,
            Some(location),
            site.server,
            now,
            connection(req, keep),
            head_only,
        ),
        Err(status) => {
            // A malformed request says the client and we disagree on framing: close.
            let keep = keep && *status != Status::BadRequest;
            status_page(*status, None, site.server, now, connection(req, keep), head_only)
        }
    }
}

/// The reply to a head that could not be parsed (`status` says why): a
/// status page, and the connection closes.
pub fn rejection<'a>(status: Status, site: &Site<'a>, now: SystemTime) -> Reply<'a> {
    status_page(status, None, site.server, now, Connection::Close, false)
}

/// A status with its built-in page (the body left out for `HEAD`), and
/// `Location` for a redirect.
pub fn status_page<'a>(
    status: Status,
    location: Option<&'a str>,
    server: &'a str,
    now: SystemTime,
    connection: Connection,
    head_only: bool,
) -> Reply<'a> {
    let (fields, body) = page_parts(status, location, server, now, head_only);
    finish(status, fields, body, connection)
}

/// The fields and body of `status_page`, before `Connection`, for a
/// caller that has a field of its own to add.
fn page_parts<'a>(
    status: Status,
    location: Option<&'a str>,
    server: &'a str,
    now: SystemTime,
    head_only: bool,
) -> (Fields<'a>, Body<'a>) {
    let page = status.page();
    let mut fields = common(server, now);
    fields.push("Content-Type", Value::Str(PAGE_TYPE));
    fields.push("Content-Length", Value::Number(page.len() as u64));
    if let Some(location) = location {
        fields.push("Location", Value::Str(location));
    }
    match status {
        Status::MethodNotAllowed => fields.push("Allow", Value::Str(ALLOW)),
        Status::ServiceUnavailable => fields.push("Retry-After", Value::Number(RETRY_AFTER_SECS)),
        _ => {}
    }
    (fields, if head_only { Body::None } else { Body::Page(page) })
}

/// Adds `Vary: Accept-Encoding` to a file reply of a site that serves
/// precompressed siblings: on every one, identity replies, `304`, `412`
/// and `416` included, since any file may gain a sibling at any time and
/// a cache must not keep serving the identity reply (or a failure decided
/// on the identity file's validators or length) to clients that would
/// get the sibling.
fn vary_on_encoding(site: &Site<'_>, fields: &mut Fields<'_>) {
    if site.precompressed {
        fields.push("Vary", Value::Str("Accept-Encoding"));
    }
}

/// A file: `200` with the whole file, `206` with the ranges asked for, or
/// what the preconditions decide (`304`, `412`), in the order of RFC 9110
/// 13.2.2 (see `conditional`). Every file reply that has the file's bytes
/// or stands for them (`200`, `206`, `304`) carries its validators.
fn file_reply<'a>(
    req: &Request<'_>,
    site: &Site<'a>,
    opened: &'a Opened<'_>,
    now: SystemTime,
    connection: Connection,
    head_only: bool,
) -> Reply<'a> {
    let info = &opened.info;
    let precondition = conditional::evaluate(req, info, now);
    if precondition == Precondition::PreconditionFailed {
        let (mut fields, body) = page_parts(Status::PreconditionFailed, None, site.server, now, head_only);
        vary_on_encoding(site, &mut fields);
        return finish(Status::PreconditionFailed, fields, body, connection);
    }
    let content_type = site.types.content_type(opened.name);
    let ranged = precondition == Precondition::Pass && conditional::if_range_holds(req, info, now);
    let mut fields = common(site.server, now);
    let selected = if ranged && req.fields.range.is_some() {
        ranged_body(req, opened, content_type, head_only, &mut fields)
    } else {
        Some(whole_body(opened, content_type, &mut fields))
    };
    let Some((status, body)) = selected else {
        let page = Status::RangeNotSatisfiable.page();
        fields.push("Content-Type", Value::Str(PAGE_TYPE));
        fields.push("Content-Length", Value::Number(page.len() as u64));
        fields.push("Content-Range", Value::UnsatisfiedRange(info.len));
        vary_on_encoding(site, &mut fields);
        let body = if head_only { Body::None } else { Body::Page(page) };
        return finish(Status::RangeNotSatisfiable, fields, body, connection);
    };
    if let Some(coding) = opened.encoding {
        fields.push("Content-Encoding", Value::Str(coding.token()));
    }
    if let Some(t) = info.last_modified(now) {
        fields.push("Last-Modified", Value::Date(t));
    }
    fields.push("ETag", Value::ETag(info));
    fields.push("Accept-Ranges", Value::Str("bytes"));
    vary_on_encoding(site, &mut fields);
    if precondition == Precondition::NotModified {
        return finish(Status::NotModified, conditional::not_modified(&fields), Body::None, connection);
    }
    finish(status, fields, if head_only { Body::None } else { body }, connection)
}

/// The status and body of the reply with the whole file `opened`; its
/// content's fields are pushed onto `fields`.
fn whole_body<'a>(
    opened: &'a Opened<'_>,
    content_type: &'a str,
    fields: &mut Fields<'a>,
) -> (Status, Body<'a>) {
    let len = opened.info.len;
    fields.push("Content-Type", Value::Str(content_type));
    fields.push("Content-Length", Value::Number(len));
    let body = if len == 0 { Body::None } else { Body::File { file: &opened.file, offset: 0, len } };
    (Status::Ok, body)
}

/// The status and body of the reply for the file `opened` to a request
/// whose `Range` applies (the preconditions let it), and its content's
/// fields (pushed onto `fields`); `None` when no range it asks for can be
/// satisfied. Never inlined, and called only for a request with a
/// `Range` field: the selection (up to `MAX_RANGES` ranges, some 1.6 KiB,
/// and its copies) then lives in this frame, not in the frame of
/// `decide`, below which every request's stack goes deeper.
#[inline(never)]
fn ranged_body<'a>(
    req: &Request<'_>,
    opened: &'a Opened<'_>,
    content_type: &'a str,
    head_only: bool,
    fields: &mut Fields<'a>,
) -> Option<(Status, Body<'a>)> {
    let info = &opened.info;
    match range::select(req, info.len) {
        Selection::Whole => Some(whole_body(opened, content_type, fields)),
        Selection::One(range) => {
            fields.push("Content-Type", Value::Str(content_type));
            fields.push("Content-Length", Value::Number(range.size()));
            fields.push("Content-Range", Value::ContentRange(ContentRange { range, complete: info.len }));
            Some((
                Status::PartialContent,
                Body::File { file: &opened.file, offset: range.first, len: range.size() },
            ))
        }
        Selection::Several(ranges) => {
            let boundary = range::Boundary::new(info, content_type);
            let parts = ranges.as_slice();
            fields.push("Content-Type", Value::Multipart(boundary));
            fields.push("Content-Length", Value::Number(range::multipart_len(parts, info.len, content_type)));
            let body = if head_only {
                Body::None
            } else {
                Body::Multipart(Multipart {
                    file: &opened.file,
                    parts: parts.to_vec(),
                    content_type,
                    complete: info.len,
                    boundary,
                })
            };
            Some((Status::PartialContent, body))
        }
        Selection::Unsatisfiable => None,
    }
}

/// `200` with a directory listing, validated by the directory's own
/// `Last-Modified` and `ETag`.
fn listing_reply<'a>(
    req: &Request<'_>,
    site: &Site<'a>,
    listing: &'a Listing,
    now: SystemTime,
    connection: Connection,
    head_only: bool,
) -> Reply<'a> {
    // The directory's own validators, under the same preconditions as a
    // file: a revalidation of an unchanged directory is a 304.
    let precondition = conditional::evaluate(req, &listing.info, now);
    if precondition == Precondition::PreconditionFailed {
        return status_page(Status::PreconditionFailed, None, site.server, now, connection, head_only);
    }
    let mut fields = common(site.server, now);
    fields.push("Content-Type", Value::Str(PAGE_TYPE));
    fields.push("Content-Length", Value::Number(listing.html.len() as u64));
    if let Some(t) = listing.info.last_modified(now) {
        fields.push("Last-Modified", Value::Date(t));
    }
    fields.push("ETag", Value::ETag(&listing.info));
    if precondition == Precondition::NotModified {
        return finish(Status::NotModified, conditional::not_modified(&fields), Body::None, connection);
    }
    let body = if head_only { Body::None } else { Body::Generated(&listing.html) };
    finish(Status::Ok, fields, body, connection)
}

/// `OPTIONS`: the methods we serve, for any target. `200` with an explicit
/// `Content-Length: 0` (RFC 9110 9.3.7): a client that does not special-case
/// `204` would otherwise wait for the connection to close.
fn options<'a>(req: &Request<'_>, site: &Site<'a>, now: SystemTime, keep: bool) -> Reply<'a> {
    let mut fields = common(site.server, now);
    fields.push("Allow", Value::Str(ALLOW));
    fields.push("Content-Length", Value::Number(0));
    finish(Status::Ok, fields, Body::None, connection(req, keep))
}

/// Step 5: a status page with a custom page file instead of the built-in
/// page: the original status, every field of `reply`, the page's type and
/// length, and no validators (the page is not the resource the request
/// named, so a cache must not revalidate the resource against it).
pub fn with_error_page<'a>(
    mut reply: Reply<'a>,
    page: &'a Opened<'_>,
    types: &'a MimeTypes,
    head_only: bool,
) -> Reply<'a> {
    let len = page.info.len;
    reply.fields.set("Content-Type", Value::Str(types.content_type(page.name)));
    reply.fields.set("Content-Length", Value::Number(len));
    reply.body =
        if head_only || len == 0 { Body::None } else { Body::File { file: &page.file, offset: 0, len } };
    reply
}

/// The fields every reply starts with.
fn common(server: &str, now: SystemTime) -> Fields<'_> {
    let mut fields = Fields::default();
    fields.push("Date", Value::Date(now));
    fields.push("Server", Value::Str(server));
    fields
}

/// Adds the `Connection` field last and assembles the reply.
fn finish<'a>(status: Status, mut fields: Fields<'a>, body: Body<'a>, connection: Connection) -> Reply<'a> {
    match connection {
        Connection::Persist => {}
        Connection::KeepAlive => fields.push("Connection", Value::Str("keep-alive")),
        Connection::Close => fields.push("Connection", Value::Str("close")),
    }
    Reply { status, fields, body, keep_alive: connection != Connection::Close }
}

/// What the `Connection` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 persistence, the default: no field needed.
    Persist,
    /// HTTP/1.0 persistence, which must be confirmed: `Connection: keep-alive`.
    KeepAlive,
    /// The server will close after this reply: `Connection: close`.
    Close,
}

/// Whether the connection may stay open after answering `req`: the client
/// wants it, the server allows it, and no body we will not read follows
/// (it would be taken for the next request).
fn keeps_open(req: &Request<'_>, may_keep: bool) -> bool {
    may_keep && !req.close && (req.minor_version == 1 || req.keep_alive) && !req.has_body
}

/// The `Connection` decision for a reply to `req`.
fn connection(req: &Request<'_>, keep: bool) -> Connection {
    match (keep, req.minor_version) {
        (false, _) => Connection::Close,
        (true, 0) => Connection::KeepAlive,
        (true, _) => Connection::Persist,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Parse, parse};
    use crate::http::rules::HeaderRules;
    use std::time::Duration;

    const NOW: Duration = Duration::from_secs(1_700_000_000);
    const MTIME: Duration = Duration::from_secs(1_600_000_000);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW
    }

    fn request(raw: &[u8]) -> Request<'_> {
        match parse(raw) {
            Parse::Complete(req, _) => req,
            other => panic!("{other:?}"),
        }
    }

    static TYPES: std::sync::LazyLock<MimeTypes> = std::sync::LazyLock::new(MimeTypes::default);
    /// Header rules that add nothing.
    static NO_HEADERS: HeaderRules = HeaderRules { nosniff: false, always: Vec::new(), rules: Vec::new() };

    fn site() -> Site<'static> {
        Site {
            index: &[],
            server: server_field(false),
            types: &TYPES,
            listing: false,
            precompressed: false,
            fallback: None,
            headers: &NO_HEADERS,
            error_pages: &[],
            https_redirect: None,
            hsts: None,
        }
    }

    fn opened(name: &[u8], len: u64) -> Lookup<'_> {
        let file = File::open("/dev/null").unwrap();
        let info = FileInfo {
            len,
            modified: Some(SystemTime::UNIX_EPOCH + MTIME),
            mtime_sec: MTIME.as_secs() as i64,
            mtime_nsec: 5,
            coding: None,
        };
        Ok(Found::File(Opened { file, info, name, encoding: None }))
    }

    /// The reply to a request that wants a file, with `found` as the lookup.
    fn reply<'a>(req: &Request<'_>, found: &'a Lookup<'_>) -> Reply<'a> {
        assert!(answer_without_file(req, &site(), now(), true).is_none());
        decide(req, &site(), found, now(), true)
    }

    fn head(reply: &Reply<'_>) -> String {
        let mut out = Vec::new();
        reply.write_head(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn page_len(status: Status) -> Value<'static> {
        Value::Number(status.page().len() as u64)
    }

    #[test]
    fn get_of_a_file_is_200_with_the_whole_file() {
        let req = request(b"GET /a.html HTTP/1.1\r\nHost: x\r\n\r\n");
        let found = opened(b"a.html", 5);
        let r = reply(&req, &found);
        assert_eq!(
            head(&r),
            "HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: forkhttpd\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Length: 5\r\n\
             Last-Modified: Sun, 13 Sep 2020 12:26:40 GMT\r\nETag: \"5-5f5e1000.5\"\r\n\
             Accept-Ranges: bytes\r\n\r\n"
        );
        assert!(matches!(r.body, Body::File { offset: 0, len: 5, .. }));
        assert_eq!(r.body_len(), 5);
        assert!(r.keep_alive);
    }

    #[test]
    fn only_a_missing_path_falls_back_and_an_unservable_fallback_stays_404() {
        let plain = site();
        let with = Site { fallback: Some("/index.html"), ..plain };
        let redirect: Lookup<'_> = Ok(Found::Redirect("/d/".to_string()));
        let file = opened(b"a.html", 5);
        let table: [(&Lookup<'_>, Option<&str>); 6] = [
            (&Err(Status::NotFound), Some("/index.html")),
            (&Err(Status::Forbidden), None),
            (&Err(Status::BadRequest), None),
            (&Err(Status::InternalError), None),
            (&redirect, None),
            (&file, None),
        ];
        for (found, want) in table {
            assert_eq!(fallback_for(found, &with), want, "{:?}", found.as_ref().err());
            assert_eq!(fallback_for(found, &plain), None, "no fallback set");
        }
        // The fallback's own lookup: its file, or else the 404 it stood in for.
        assert!(matches!(fallen_back(Some(opened(b"index.html", 3))), Ok(Found::File(_))));
        for found in [None, Some(Err(Status::Forbidden)), Some(Err(Status::InternalError))] {
            assert_eq!(fallen_back(found).err(), Some(Status::NotFound));
        }
    }

    #[test]
    fn head_of_a_file_has_the_get_fields_and_no_body() {
        let found = opened(b"x.png", 7);
        let get = reply(&request(b"GET /x.png HTTP/1.1\r\nHost: x\r\n\r\n"), &found);
        let head_req = request(b"HEAD /x.png HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = reply(&head_req, &found);
        assert_eq!(head(&r), head(&get));
        assert!(matches!(r.body, Body::None));
        assert_eq!(r.body_len(), 0);
    }

    #[test]
    fn an_empty_file_has_no_body_to_send() {
        let found = opened(b"empty", 0);
        let r = reply(&request(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n"), &found);
        assert_eq!(r.fields.get("content-length"), Some(Value::Number(0)));
        assert_eq!(r.fields.get("content-type"), Some(Value::Str(crate::http::mime::DEFAULT_TYPE)));
        assert!(matches!(r.body, Body::None));
    }

    #[test]
    fn lookup_failures_are_status_pages() {
        let req = request(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n");
        for status in [Status::NotFound, Status::Forbidden, Status::InternalError, Status::BadRequest] {
            let found = Err(status);
            let r = reply(&req, &found);
            assert_eq!(r.status, status);
            assert_eq!(r.fields.get("Content-Type"), Some(Value::Str(PAGE_TYPE)));
            assert_eq!(r.fields.get("Content-Length"), Some(page_len(status)));
            assert!(matches!(r.body, Body::Page(p) if p == status.page()));
            // Only a malformed target says we may be out of step with the client.
            assert_eq!(r.keep_alive, status != Status::BadRequest, "{status:?}");
            assert_eq!(r.fields.get("Connection").is_some(), status == Status::BadRequest);
        }
        let head_req = request(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n");
        let found = Err(Status::NotFound);
        let r = reply(&head_req, &found);
        assert_eq!(r.fields.get("Content-Length"), Some(page_len(Status::NotFound)));
        assert!(matches!(r.body, Body::None));
    }

    #[test]
    fn a_precompressed_sibling_has_its_coding_and_every_file_reply_varies() {
        let plain = site();
        let site = Site { precompressed: true, ..plain };
        let req = request(b"GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
        let mut found = opened(b"app.js", 3);
        if let Ok(Found::File(o)) = &mut found {
            o.encoding = Some(Coding::Gzip);
        }
        let r = decide(&req, &site, &found, now(), true);
        assert_eq!(r.fields.get("Content-Type"), Some(Value::Str("text/javascript; charset=utf-8")));
        assert_eq!(r.fields.get("Content-Encoding"), Some(Value::Str("gzip")));
        assert_eq!(r.fields.get("Vary"), Some(Value::Str("Accept-Encoding")));
        let identity = opened(b"app.js", 3);
        let r = decide(&req, &site, &identity, now(), true);
        assert_eq!(r.fields.get("Content-Encoding"), None);
        assert_eq!(r.fields.get("Vary"), Some(Value::Str("Accept-Encoding")));
        let r = decide(&req, &plain, &identity, now(), true);
        assert_eq!(r.fields.get("Vary"), None);
        let missing = Err(Status::NotFound);
        assert_eq!(decide(&req, &site, &missing, now(), true).fields.get("Vary"), None);
        // The failures decided on the file (its validators, its length)
        // vary too, and only on such a site.
        let failed = request(b"GET /app.js HTTP/1.1\r\nHost: x\r\nIf-Match: \"other\"\r\n\r\n");
        let unsatisfiable = request(b"GET /app.js HTTP/1.1\r\nHost: x\r\nRange: bytes=100-\r\n\r\n");
        for (req, status) in
            [(failed, Status::PreconditionFailed), (unsatisfiable, Status::RangeNotSatisfiable)]
        {
            for found in [&found, &identity] {
                let r = decide(&req, &site, found, now(), true);
                assert_eq!(r.status, status);
                assert_eq!(r.fields.get("Vary"), Some(Value::Str("Accept-Encoding")), "{status:?}");
            }
            let r = decide(&req, &plain, &identity, now(), true);
            assert_eq!((r.status, r.fields.get("Vary")), (status, None));
        }
    }

    #[test]
    fn a_listing_is_200_html_with_the_directory_validators() {
        let listing = crate::http::listing::Listing {
            html: b"<p>list</p>".to_vec(),
            info: FileInfo {
                len: 4096,
                modified: Some(SystemTime::UNIX_EPOCH + MTIME),
                mtime_sec: MTIME.as_secs() as i64,
                mtime_nsec: 3,
                coding: None,
            },
        };
        let found = Ok(Found::Listing(listing));
        let r = reply(&request(b"GET /d/ HTTP/1.1\r\nHost: x\r\n\r\n"), &found);
        assert_eq!(
            head(&r),
            "HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: forkhttpd\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Length: 11\r\n\
             Last-Modified: Sun, 13 Sep 2020 12:26:40 GMT\r\nETag: \"1000-5f5e1000.3\"\r\n\r\n"
        );
        assert!(matches!(r.body, Body::Generated(b"<p>list</p>")));
        // The directory's own tag revalidates to a 304 without a body.
        let again = request(b"GET /d/ HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"1000-5f5e1000.3\"\r\n\r\n");
        let r304 = reply(&again, &found);
        assert_eq!(r304.status, Status::NotModified);
        assert!(matches!(r304.body, Body::None));
        assert_eq!(r.body_len(), 11);
        let h = reply(&request(b"HEAD /d/ HTTP/1.1\r\nHost: x\r\n\r\n"), &found);
        assert_eq!(head(&h), head(&r));
        assert!(matches!(h.body, Body::None));
    }

    #[test]
    fn directory_without_slash_redirects() {
        let req = request(b"GET /sub?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        let found = Ok(Found::Redirect("/sub/?q=1".to_string()));
        let r = reply(&req, &found);
        assert_eq!(r.status, Status::MovedPermanently);
        assert_eq!(r.fields.get("Location"), Some(Value::Str("/sub/?q=1")));
        assert!(head(&r).contains("\r\nContent-Length: "));
        assert!(r.keep_alive);
    }

    #[test]
    fn methods_answered_without_a_file() {
        let table: &[(&[u8], Status, bool)] = &[
            (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", Status::Ok, true),
            (b"OPTIONS /a HTTP/1.1\r\nHost: x\r\n\r\n", Status::Ok, true),
            (b"POST /a HTTP/1.1\r\nHost: x\r\n\r\n", Status::MethodNotAllowed, true),
            (b"BREW /a HTTP/1.1\r\nHost: x\r\n\r\n", Status::NotImplemented, true),
            (b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", Status::BadRequest, false),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", Status::MethodNotAllowed, false),
        ];
        for (raw, status, keep) in table {
            let req = request(raw);
            let r = answer_without_file(&req, &site(), now(), true).expect("answered without a file");
            let text = String::from_utf8_lossy(raw);
            assert_eq!((r.status, r.keep_alive), (*status, *keep), "{text}");
            let allow = matches!(status, Status::Ok | Status::MethodNotAllowed);
            assert_eq!(r.fields.get("Allow"), allow.then_some(Value::Str(ALLOW)), "{text}");
        }
    }

    #[test]
    fn options_is_200_with_allow_and_a_zero_length() {
        for raw in
            [&b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"OPTIONS /a/b HTTP/1.1\r\nHost: x\r\n\r\n"]
        {
            let req = request(raw);
            let r = answer_without_file(&req, &site(), now(), true).unwrap();
            assert_eq!(
                head(&r),
                "HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: forkhttpd\r\n\
                 Allow: GET, HEAD, OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            assert!(matches!(r.body, Body::None));
        }
    }

    #[test]
    fn a_custom_error_page_keeps_the_status_and_has_no_validators() {
        let req = request(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
        let found = Err(Status::NotFound);
        let page = opened(b"404.html", 9);
        let Ok(Found::File(page)) = &page else { panic!() };
        let r = with_error_page(reply(&req, &found), page, &TYPES, false);
        assert_eq!(r.status, Status::NotFound);
        assert_eq!(r.fields.get("Content-Type"), Some(Value::Str("text/html; charset=utf-8")));
        assert_eq!(r.fields.get("Content-Length"), Some(Value::Number(9)));
        assert_eq!(r.fields.get("Last-Modified"), None);
        assert_eq!(r.fields.get("ETag"), None);
        assert!(matches!(r.body, Body::File { offset: 0, len: 9, .. }));
        let head_req = request(b"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = with_error_page(reply(&head_req, &found), page, &TYPES, true);
        assert_eq!(r.fields.get("Content-Length"), Some(Value::Number(9)));
        assert!(matches!(r.body, Body::None));
    }

    #[test]
    fn connection_field_follows_version_and_limits() {
        let found = opened(b"a", 1);
        let table: &[(&[u8], bool, Option<&str>, bool)] = &[
            (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", true, None, true),
            (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", false, Some("close"), false),
            (b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true, Some("close"), false),
            (b"GET /a HTTP/1.0\r\n\r\n", true, Some("close"), false),
            (b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, Some("keep-alive"), true),
            (b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false, Some("close"), false),
        ];
        for (raw, may_keep, field, keep) in table {
            let r = decide(&request(raw), &site(), &found, now(), *may_keep);
            let text = String::from_utf8_lossy(raw);
            assert_eq!(r.fields.get("Connection"), field.map(Value::Str), "{text}");
            assert_eq!(r.keep_alive, *keep, "{text}");
            assert_eq!(r.fields.iter().last().unwrap().name == "Connection", field.is_some());
        }
    }

    #[test]
    fn rejection_and_503_close() {
        let site = Site { server: server_field(true), ..site() };
        let r = rejection(Status::HeaderFieldsTooLarge, &site, now());
        assert_eq!(r.fields.get("Connection"), Some(Value::Str("close")));
        assert!(!r.keep_alive && matches!(r.body, Body::Page(_)));
        assert!(head(&r).contains(concat!("\r\nServer: forkhttpd/", env!("CARGO_PKG_VERSION"), "\r\n")));
        let r = status_page(Status::ServiceUnavailable, None, "forkhttpd", now(), Connection::Close, false);
        assert_eq!(r.fields.get("Retry-After"), Some(Value::Number(RETRY_AFTER_SECS)));
    }

    const ETAG: &str = "\"5-5f5e1000.5\"";
    const LAST_MODIFIED: &str = "Sun, 13 Sep 2020 12:26:40 GMT";

    #[test]
    fn not_modified_is_the_200_without_its_body_fields() {
        let found = opened(b"a.html", 5);
        let raw = format!("GET /a.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: {ETAG}\r\n\r\n");
        let r = reply(&request(raw.as_bytes()), &found);
        assert_eq!(
            head(&r),
            format!(
                "HTTP/1.1 304 Not Modified\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: forkhttpd\r\n\
                 Last-Modified: {LAST_MODIFIED}\r\nETag: {ETAG}\r\n\r\n"
            )
        );
        assert!(matches!(r.body, Body::None) && r.keep_alive);
        // The same for If-Modified-Since, HEAD, and with a Range (304 comes first).
        for raw in [
            format!("GET /a.html HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {LAST_MODIFIED}\r\n\r\n"),
            format!(
                "HEAD /a.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/{ETAG}\r\nRange: bytes=0-1\r\n\r\n"
            ),
        ] {
            let r2 = reply(&request(raw.as_bytes()), &found);
            assert_eq!(head(&r2), head(&r), "{raw}");
        }
    }

    #[test]
    fn failed_precondition_is_412_without_validators() {
        let found = opened(b"a.html", 5);
        for raw in [
            "GET /a HTTP/1.1\r\nHost: x\r\nIf-Match: \"nope\"\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: Sun, 13 Sep 2020 12:26:39 GMT\r\n\r\n",
        ] {
            let r = reply(&request(raw.as_bytes()), &found);
            assert_eq!(r.status, Status::PreconditionFailed, "{raw}");
            assert!(matches!(r.body, Body::Page(p) if p == Status::PreconditionFailed.page()));
            assert_eq!((r.fields.get("ETag"), r.fields.get("Last-Modified")), (None, None));
        }
    }

    #[test]
    fn one_range_is_206_with_content_range() {
        let found = opened(b"a.txt", 100);
        let req = request(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n");
        let r = reply(&req, &found);
        assert_eq!(
            head(&r),
            format!(
                "HTTP/1.1 206 Partial Content\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nServer: forkhttpd\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\
                 Content-Range: bytes 10-19/100\r\nLast-Modified: {LAST_MODIFIED}\r\n\
                 ETag: \"64-5f5e1000.5\"\r\nAccept-Ranges: bytes\r\n\r\n"
            )
        );
        assert!(matches!(r.body, Body::File { offset: 10, len: 10, .. }));
        // HEAD gets the same head, without the bytes.
        let r2 = reply(&request(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n"), &found);
        assert_eq!(head(&r2), head(&r));
        assert!(matches!(r2.body, Body::None));
    }

    #[test]
    fn several_ranges_are_multipart_with_the_exact_length() {
        let found = opened(b"a.txt", 100);
        let req = request(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=50-59,0-4,3-9\r\n\r\n");
        let r = reply(&req, &found);
        assert_eq!(r.status, Status::PartialContent);
        let Body::Multipart(m) = &r.body else { panic!("{:?}", r.body) };
        assert_eq!(
            m.parts,
            [range::ByteRange { first: 50, last: 59 }, range::ByteRange { first: 0, last: 9 }]
        );
        assert_eq!((m.content_type, m.complete), ("text/plain; charset=utf-8", 100));
        assert_eq!(r.fields.get("Content-Type"), Some(Value::Multipart(m.boundary)));
        assert_eq!(r.fields.get("Content-Length"), Some(Value::Number(r.body_len())));
        assert_eq!(r.fields.get("Content-Range"), None);
        assert!(head(&r).contains("\r\nContent-Type: multipart/byteranges; boundary=forkhttpd-"));
        let r2 =
            reply(&request(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=50-59,0-4,3-9\r\n\r\n"), &found);
        assert_eq!(head(&r2), head(&r));
        assert!(matches!(r2.body, Body::None));
    }

    #[test]
    fn unsatisfiable_ranges_are_416_with_the_length() {
        let found = opened(b"a.txt", 100);
        let r = reply(&request(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=100-\r\n\r\n"), &found);
        assert_eq!(r.status, Status::RangeNotSatisfiable);
        assert_eq!(r.fields.get("Content-Range"), Some(Value::UnsatisfiedRange(100)));
        assert!(head(&r).contains("\r\nContent-Range: bytes */100\r\n"));
        assert_eq!(r.fields.get("Content-Length"), Some(page_len(Status::RangeNotSatisfiable)));
        assert!(matches!(r.body, Body::Page(_)) && r.keep_alive);
    }

    #[test]
    fn if_range_gates_the_ranges() {
        let found = opened(b"a.txt", 100);
        let table = [
            (format!("If-Range: {ETAG}"), Status::Ok),
            ("If-Range: \"64-5f5e1000.5\"".to_string(), Status::PartialContent),
            ("If-Range: W/\"64-5f5e1000.5\"".to_string(), Status::Ok),
            (format!("If-Range: {LAST_MODIFIED}"), Status::PartialContent),
            ("If-Range: Sun, 13 Sep 2020 12:26:41 GMT".to_string(), Status::Ok),
        ];
        for (line, want) in table {
            let raw = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n{line}\r\n\r\n");
            let r = reply(&request(raw.as_bytes()), &found);
            assert_eq!(r.status, want, "{line}");
            assert_eq!(r.body_len(), if want == Status::Ok { 100 } else { 10 }, "{line}");
        }
    }
}
