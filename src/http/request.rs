//! Parsing one request head: bytes in, a borrowed `Request` or a status out.
//!
//! Runs in: child (pure; no I/O, no allocation: the request borrows the
//! connection's buffer). `httparse` does the
//! tokenising; this module adds HTTP/1.1's framing rules that decide whether
//! the connection can stay in step with the client: exactly one `Host` on
//! HTTP/1.1, a valid one, and no body we would have to skip
//! (`Content-Length` > 0 or any `Transfer-Encoding`), since a body left
//! unread would be parsed as the next request (request smuggling). A `Host`
//! or an absolute-form target's authority that is not `uri-host [":" port]`
//! is refused too: each layer in front of us (a cache, a proxy, a log
//! reader) may read the site it names differently (`b.test, a.test`,
//! `a.test@b.test`).

use crate::http::status::Status;

/// How many header fields one request may carry; more → 431.
pub const MAX_HEADERS: usize = 64;

/// The method, sorted by what we do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`: served.
    Get,
    /// `HEAD`: served without a body.
    Head,
    /// `OPTIONS`: answered with `200`, `Allow` and an empty body.
    Options,
    /// A standard method we do not serve (POST, PUT, …): 405.
    NotAllowed,
    /// Anything else: 501.
    Unknown,
}

impl Method {
    fn from_token(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "POST" | "PUT" | "DELETE" | "PATCH" | "TRACE" | "CONNECT" => Method::NotAllowed,
            _ => Method::Unknown,
        }
    }
}

/// One parsed request head, borrowing from the connection's buffer.
#[derive(Debug)]
pub struct Request<'b> {
    /// What we do with the method.
    pub method: Method,
    /// The request target exactly as sent.
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// `Connection: close` was sent.
    pub close: bool,
    /// `Connection: keep-alive` was sent.
    pub keep_alive: bool,
    /// A body follows (`Content-Length` > 0 or any `Transfer-Encoding`).
    pub has_body: bool,
    /// The `Referer` header, for the access log.
    pub referer: Option<&'b [u8]>,
    /// The `User-Agent` header, for the access log.
    pub user_agent: Option<&'b [u8]>,
    /// The fields the reply rules read, each as sent (the first line of a
    /// repeated field), borrowed: parsing allocates nothing.
    pub fields: Fields<'b>,
    /// The whole head as received, for the rules that must see every line
    /// of a repeated field (`field_lines`).
    pub head: &'b [u8],
}

impl<'b> Request<'b> {
    /// The value of every line of the field `name` (any case), in order,
    /// without surrounding whitespace. A list-valued field such as
    /// `If-None-Match` may be sent on several lines, which together make one
    /// list (RFC 9110 5.3); `fields` keeps only the first. Scans the head,
    /// so the rules call it only for a field that `fields` shows present.
    pub fn field_lines(&self, name: &'b str) -> impl Iterator<Item = &'b [u8]> + 'b {
        // httparse accepted this head: lines end in LF (CR optional), the
        // first non-empty line is the request line, and every other line is
        // `name: value` with no space before the colon.
        self.head
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .skip_while(|line| line.is_empty())
            .skip(1)
            .filter_map(move |line| {
                let colon = line.iter().position(|&b| b == b':')?;
                line[..colon].eq_ignore_ascii_case(name.as_bytes()).then(|| line[colon + 1..].trim_ascii())
            })
    }
}

/// The request header fields that decide the reply, as raw values borrowed
/// from the connection's buffer; `None` when absent. Only the first line of
/// a field sent on several lines is kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields<'b> {
    /// `Host`: which site the request is for.
    pub host: Option<&'b [u8]>,
    /// `If-None-Match`: entity tags the client already holds.
    pub if_none_match: Option<&'b [u8]>,
    /// `If-Modified-Since`: the date of the copy the client holds.
    pub if_modified_since: Option<&'b [u8]>,
    /// `If-Match`: entity tags the client requires.
    pub if_match: Option<&'b [u8]>,
    /// `If-Unmodified-Since`: the date the file must not have changed after.
    pub if_unmodified_since: Option<&'b [u8]>,
    /// `Range`: the byte ranges asked for.
    pub range: Option<&'b [u8]>,
    /// `If-Range`: the validator the ranges depend on.
    pub if_range: Option<&'b [u8]>,
    /// `Accept-Encoding`: the content codings the client takes.
    pub accept_encoding: Option<&'b [u8]>,
}

impl<'b> Fields<'b> {
    /// The slot for a field named `name` (any case), if it is one we keep.
    fn slot(&mut self, name: &str) -> Option<&mut Option<&'b [u8]>> {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        Some(if is("if-none-match") {
            &mut self.if_none_match
        } else if is("if-modified-since") {
            &mut self.if_modified_since
        } else if is("if-match") {
            &mut self.if_match
        } else if is("if-unmodified-since") {
            &mut self.if_unmodified_since
        } else if is("range") {
            &mut self.range
        } else if is("if-range") {
            &mut self.if_range
        } else if is("accept-encoding") {
            &mut self.accept_encoding
        } else {
            return None;
        })
    }
}

/// The result of looking at the bytes received so far.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "moved once per request; boxing would allocate")]
pub enum Parse<'b> {
    /// The head is not complete yet: read more.
    Partial,
    /// A complete head of `len` bytes.
    Complete(Request<'b>, usize),
    /// The head is unacceptable; answer this status and close.
    Reject(Status),
}

/// Parses the request head at the start of `buf`. Returns `Partial` until the
/// blank line that ends the head has arrived.
pub fn parse(buf: &[u8]) -> Parse<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parse::Reject(Status::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) if names_other_version(buf) => {
            return Parse::Reject(Status::VersionNotSupported);
        }
        Err(_) => return Parse::Reject(Status::BadRequest),
    };
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version) else {
        return Parse::Reject(Status::BadRequest);
    };

    let mut request = Request {
        method: Method::from_token(method),
        target,
        minor_version,
        close: false,
        keep_alive: false,
        has_body: false,
        referer: None,
        user_agent: None,
        fields: Fields::default(),
        head: &buf[..len],
    };
    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut chunked_or_other_te = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            request.fields.host.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                request.close |= token.eq_ignore_ascii_case(b"close");
                request.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_content_length(h.value) else {
                return Parse::Reject(Status::BadRequest);
            };
            if content_length.is_some_and(|prev| prev != n) {
                return Parse::Reject(Status::BadRequest);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked_or_other_te = true;
        } else if name.eq_ignore_ascii_case("referer") {
            request.referer = Some(h.value);
        } else if name.eq_ignore_ascii_case("user-agent") {
            request.user_agent = Some(h.value);
        } else if let Some(slot) = request.fields.slot(name) {
            slot.get_or_insert(h.value);
        }
    }
    // RFC 9112 6.1: both framings at once is how smuggling starts; refuse.
    if chunked_or_other_te && content_length.is_some() {
        return Parse::Reject(Status::BadRequest);
    }
    // RFC 9112 3.2: HTTP/1.1 needs exactly one Host; more than one is never
    // valid, nor is an invalid value. An empty one is (a URI without host).
    if hosts > 1 || (minor_version == 1 && hosts == 0) {
        return Parse::Reject(Status::BadRequest);
    }
    if request.fields.host.is_some_and(|h| !h.trim_ascii().is_empty() && !valid_host_port(h.trim_ascii())) {
        return Parse::Reject(Status::BadRequest);
    }
    // RFC 9110 4.2.1 and 4.2.4: an http(s) URI needs a host, and userinfo
    // in one is an error (it fails `valid_host_port` at the `@`).
    if authority(target).is_some_and(|a| !valid_host_port(a)) {
        return Parse::Reject(Status::BadRequest);
    }
    request.has_body = chunked_or_other_te || content_length.is_some_and(|n| n > 0);
    Parse::Complete(request, len)
}

/// Parses one request so that everything done lazily on the first parse
/// (httparse picks its SIMD routines by querying the CPU, which in a VM
/// traps to the hypervisor) is done once in the parent, before any fork,
/// instead of again in every child.
pub fn warm_up() {
    let parsed = parse(b"GET / HTTP/1.1\r\nHost: warm-up\r\n\r\n");
    debug_assert!(matches!(parsed, Parse::Complete(..)));
}

/// The authority of an absolute-form target (`http://AUTHORITY/path`,
/// scheme in any case): what names the site, in place of `Host` (RFC 9112
/// 3.2.2). `None` for any other form.
pub fn authority(target: &str) -> Option<&[u8]> {
    let target = target.as_bytes();
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme.as_bytes()).then(|| {
            let rest = &target[scheme.len()..];
            let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
            &rest[..end]
        })
    })
}

/// Whether `v` is `uri-host [":" port]` (RFC 9110 7.2, RFC 3986 3.2.2 and
/// 3.2.3) with a host: an IP literal in brackets (an IPv6 address or an
/// `IPvFuture`), or a registered name (which covers IPv4 addresses) of
/// unreserved characters, percent-escapes and sub-delimiters, whose labels
/// are not empty (`a..b`, `.a`, `.`; one trailing dot is the root's), as
/// nginx requires. A comma is refused as well, though RFC 3986 allows it
/// in a name: no DNS name holds one, and `Host` is a single value, so
/// `b.test,a.test` is two values joined (RFC 9110 5.3) that two readers
/// could each take a different one of. Then, after a colon, digits only.
fn valid_host_port(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else { return false };
        let (literal, rest) = v.split_at(close + 1);
        if !valid_ip_literal(&literal[1..close]) {
            return false;
        }
        match rest {
            [] => (literal, None),
            [b':', port @ ..] => (literal, Some(port)),
            _ => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(colon) => (&v[..colon], Some(&v[colon + 1..])),
            None => (v, None),
        }
    };
    let reg_name_ok = host.first() == Some(&b'[') || valid_reg_name(host);
    reg_name_ok && port.is_none_or(|p| p.iter().all(u8::is_ascii_digit))
}

/// `reg-name`, not empty, without a comma or an empty label (see
/// `valid_host_port`).
fn valid_reg_name(name: &[u8]) -> bool {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' if name.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => i += 2,
            b'.' if i == 0 || name[i - 1] == b'.' || i == name.len() - 1 => return false,
            b if unreserved(b) || b"!$&'()*+;=".contains(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    !name.is_empty()
}

/// ALPHA / DIGIT / `-` / `.` / `_` / `~` (RFC 3986 2.3).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The inside of `[...]`: an IPv6 address, or `v` 1*HEXDIG `.` 1*(
/// unreserved / sub-delims / `:` ) (RFC 3986 3.2.2).
fn valid_ip_literal(inside: &[u8]) -> bool {
    if let Some(future) = inside.strip_prefix(b"v").or_else(|| inside.strip_prefix(b"V")) {
        let Some(dot) = future.iter().position(|&b| b == b'.') else { return false };
        let (version, rest) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !rest.is_empty()
            && rest.iter().all(|&b| unreserved(b) || b":!$&'()*+,;=".contains(&b));
    }
    std::str::from_utf8(inside).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// `Content-Length` is 1*DIGIT (RFC 9110 8.6); anything else, or an
/// overflowing value, is not a length.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// True when the request line is well formed but names a version other
/// than 1.0 or 1.1 (`HTTP/2.0`, `HTTP/1.2`): that deserves 505, not 400.
fn names_other_version(buf: &[u8]) -> bool {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..line_end].strip_suffix(b"\r").unwrap_or(&buf[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if method.is_empty() || target.is_empty() {
        return false;
    }
    match version.strip_prefix(b"HTTP/") {
        Some([major]) => major.is_ascii_digit(),
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(raw: &[u8]) -> Option<Status> {
        match parse(raw) {
            Parse::Reject(s) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn complete_get() {
        let raw =
            b"GET /a?b HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nConnection: Keep-Alive, close\r\n\r\nGET";
        let Parse::Complete(r, len) = parse(raw) else { panic!() };
        assert_eq!(len, raw.len() - 3);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/a?b");
        assert!(r.close && r.keep_alive && !r.has_body);
        assert_eq!(r.user_agent, Some(&b"t"[..]));
    }

    #[test]
    fn keeps_the_fields_the_reply_rules_read() {
        let raw = b"GET / HTTP/1.1\r\nHOST: a.example\r\nIf-None-Match: \"x\"\r\nif-modified-since: d1\r\n\
            If-Match: *\r\nIf-Unmodified-Since: d2\r\nRange: bytes=0-1\r\nRange: bytes=5-\r\n\
            If-Range: \"y\"\r\nAccept-Encoding: br, gzip\r\nX-Other: z\r\n\r\n";
        let Parse::Complete(r, _) = parse(raw) else { panic!() };
        let f = r.fields;
        let want: [(Option<&[u8]>, &[u8]); 8] = [
            (f.host, b"a.example"),
            (f.if_none_match, b"\"x\""),
            (f.if_modified_since, b"d1"),
            (f.if_match, b"*"),
            (f.if_unmodified_since, b"d2"),
            (f.range, b"bytes=0-1"),
            (f.if_range, b"\"y\""),
            (f.accept_encoding, b"br, gzip"),
        ];
        for (got, want) in want {
            assert_eq!(got, Some(want));
        }
        let Parse::Complete(r, _) = parse(b"GET / HTTP/1.0\r\n\r\n") else { panic!() };
        assert!(r.fields.host.is_none() && r.fields.range.is_none());
    }

    #[test]
    fn field_lines_sees_every_line_of_a_repeated_field() {
        let raw = b"\r\nGET http://x/ HTTP/1.1\r\nHost: x\r\nif-none-match: \"a\", \"b\"\r\nX: 1\r\n\
            If-None-Match:\t W/\"c\" \r\nIf-None-Match-X: \"d\"\nIf-None-Match:\r\n\r\nGET";
        let Parse::Complete(r, _) = parse(raw) else { panic!() };
        let lines: Vec<&[u8]> = r.field_lines("If-None-Match").collect();
        assert_eq!(lines, [&b"\"a\", \"b\""[..], b"W/\"c\"", b""]);
        assert_eq!(r.field_lines("host").count(), 1);
        // The request line is never taken for a field, nor bytes after the head.
        assert_eq!(r.field_lines("GET http").count(), 0);
        assert_eq!(r.field_lines("range").count(), 0);
    }

    #[test]
    fn partial_until_blank_line() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parse::Partial));
    }

    #[test]
    fn rejections_by_table() {
        let table: &[(&[u8], Status)] = &[
            (b"GARBAGE\r\n\r\n", Status::BadRequest),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", Status::VersionNotSupported),
            (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", Status::VersionNotSupported),
            (b"GET / HTTP/1.1\r\n\r\n", Status::BadRequest),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Status::BadRequest),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", Status::BadRequest),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Status::BadRequest,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Status::BadRequest,
            ),
        ];
        for (raw, want) in table {
            assert_eq!(status_of(raw), Some(*want), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn host_values_by_table() {
        let table: &[(&str, bool)] = &[
            // What clients send.
            ("example.org", true),
            ("Example.ORG.", true),
            ("localhost:8080", true),
            ("127.0.0.1", true),
            ("127.0.0.1:80", true),
            ("[::1]", true),
            ("[::1]:8080", true),
            ("[2001:db8::ffff:192.0.2.1]:443", true),
            ("xn--bcher-kva.example", true),
            ("under_score.example", true),
            ("a.example:", true),
            ("%65xample.org", true),
            ("[v1.fe80::a+b]", true),
            ("", true),
            ("  a.example  ", true),
            // Two hosts, or not a host.
            ("b.test, a.test", false),
            ("b.test,a.test", false),
            ("b.test a.test", false),
            ("a/b", false),
            ("a\\b", false),
            ("..", false),
            (".", false),
            ("a..b", false),
            (".a", false),
            ("a.b..", false),
            ("user@a.test", false),
            ("a.test@b.test", false),
            ("a.test:80@b.test", false),
            (":80", false),
            ("a.test:8x", false),
            ("a.test:80:81", false),
            ("[::1", false),
            ("[::1]x", false),
            ("[::1]:8x", false),
            ("[]", false),
            ("[1.2.3.4]", false),
            ("[::1%25eth0]", false),
            ("[v.x]", false),
            ("[v1.]", false),
            ("%6", false),
            ("%zz.a", false),
            ("a\"b", false),
            ("caf\u{e9}.example", false),
        ];
        for (host, ok) in table {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let got = !matches!(parse(raw.as_bytes()), Parse::Reject(_));
            assert_eq!(got, *ok, "Host: {host:?}");
            assert!(*ok || status_of(raw.as_bytes()) == Some(Status::BadRequest), "{host:?}");
        }
    }

    #[test]
    fn absolute_form_authorities_by_table() {
        let table: &[(&str, Option<&str>, bool)] = &[
            ("http://a.test/x", Some("a.test"), true),
            ("HTTPS://a.test:8443?q", Some("a.test:8443"), true),
            ("http://[::1]:80#f", Some("[::1]:80"), true),
            ("/x", None, true),
            ("*", None, true),
            ("http://a.test@b.test/x", Some("a.test@b.test"), false),
            ("http://u:p@b.test/", Some("u:p@b.test"), false),
            ("http:///x", Some(""), false),
            ("http://a..b/x", Some("a..b"), false),
            ("http://a.test,b.test/x", Some("a.test,b.test"), false),
        ];
        for (target, authority_of, ok) in table {
            assert_eq!(authority(target), authority_of.map(str::as_bytes), "{target}");
            let raw = format!("GET {target} HTTP/1.1\r\nHost: a.test\r\n\r\n");
            assert_eq!(!matches!(parse(raw.as_bytes()), Parse::Reject(_)), *ok, "{target}");
        }
    }

    #[test]
    fn too_many_headers() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(status_of(&raw), Some(Status::HeaderFieldsTooLarge));
    }

    #[test]
    fn body_detection_and_methods() {
        let Parse::Complete(r, _) = parse(b"GET / HTTP/1.0\r\nContent-Length: 0\r\n\r\n") else { panic!() };
        assert!(!r.has_body);
        let Parse::Complete(r, _) = parse(b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        else {
            panic!()
        };
        assert!(r.has_body);
        assert_eq!(r.method, Method::NotAllowed);
        let Parse::Complete(r, _) = parse(b"BREW / HTTP/1.1\r\nHost: a\r\n\r\n") else { panic!() };
        assert_eq!(r.method, Method::Unknown);
    }
}
