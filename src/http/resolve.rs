//! Request target → a relative path that cannot leave the document root.
//!
//! Runs in: child (pure; the filesystem half is in `file.rs`).
//!
//! The defence is layered, and the order matters:
//! 1. Accept origin-form (`/path`) and absolute-form (`http://host/path`),
//!    keeping only the path; the query is set aside (for redirects) and the
//!    fragment dropped. Anything else is 400.
//! 2. Split on `/` *before* decoding, then percent-decode each segment exactly
//!    once and strictly: a bad `%XX` is 400, and so is a segment that decodes
//!    to a `/` (`%2F`), a NUL (`%00`) or a backslash (`\`, `%5C`), because each
//!    of these means something else to some layer below us. Decoding once is
//!    why `%252e%252e` stays the literal name `%2e%2e`.
//! 3. Normalise lexically: empty and `.` segments vanish, `..` removes the
//!    previous segment, and a `..` with nothing left to remove is 400: a
//!    request that tries to climb out is refused, never silently clamped.
//! 4. Hide dotfiles and dot-directories (404), except `/.well-known/`.
//! 5. (file.rs) Open the path with `openat2(2)` relative to the document
//!    root's directory descriptor with `RESOLVE_BENEATH`: the kernel refuses
//!    (403) any step of the lookup that would leave the root, whether by
//!    `..` or by a symlink, with no gap between check and use.
//! 6. (file.rs) `fstat` the open descriptor and serve regular files only;
//!    a directory redirects or serves its index file.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use percent_encoding::{AsciiSet, CONTROLS, percent_encode};

use crate::http::status::Status;

/// The one dot-directory that is served (RFC 8615).
const WELL_KNOWN: &[u8] = b".well-known";

/// Bytes escaped when a decoded segment is written back into a `Location`:
/// everything that is not allowed raw in a path segment (RFC 3986 3.3).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Bytes escaped when the query is copied into a `Location`: controls
/// (CR and LF above all), space, and what RFC 3986 3.4 does not allow in a
/// query. `%` stays as it is: the query was sent encoded and is kept so.
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A request path made safe: decoded, normalised, relative.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved<'t> {
    /// The path relative to the document root; empty for the root itself.
    /// Its segments are separated by single `/`s and none is empty, `.` or
    /// `..` (a decoded segment can hold no `/`).
    pub rel: PathBuf,
    /// True when the client named a directory (the path ends in `/`).
    pub dir_form: bool,
    /// The query string as received, without the `?`, for redirects.
    pub query: Option<&'t str>,
}

impl Resolved<'_> {
    /// The buffer that holds `rel`, emptied, for the next [`resolve_in`].
    pub fn into_buffer(self) -> Vec<u8> {
        let mut buf = self.rel.into_os_string().into_vec();
        buf.clear();
        buf
    }

    /// The decoded last segment: the name a content type is chosen by.
    pub fn file_name(&self) -> &[u8] {
        let rel = self.rel.as_os_str().as_bytes();
        rel.rsplit(|&b| b == b'/').next().unwrap_or(rel)
    }

    /// The `Location` for the directory form of this path: the normalised
    /// path, re-encoded, with a trailing `/` and the original query (any
    /// byte not allowed raw in a query percent-encoded). Built from the
    /// normalised segments, so it always starts with exactly one `/`, can
    /// never point at another host, and holds no CR, LF or space.
    pub fn directory_location(&self) -> String {
        let mut loc = String::from("/");
        for seg in self.rel.as_os_str().as_bytes().split(|&b| b == b'/').filter(|s| !s.is_empty()) {
            loc.extend(percent_encode(seg, SEGMENT));
            loc.push('/');
        }
        if let Some(q) = self.query {
            loc.push('?');
            loc.extend(percent_encode(q.as_bytes(), QUERY));
        }
        loc
    }
}

/// Steps 1–4: turns a request target into a safe relative path. Returns 400
/// for malformed or escaping paths and 404 for hidden ones.
pub fn resolve(target: &str) -> Result<Resolved<'_>, Status> {
    resolve_in(target, Vec::new())
}

/// `resolve`, building the path in `buf` (cleared first) so that a caller
/// answering many requests reuses one allocation: take it back with
/// [`Resolved::into_buffer`]. On an error `buf` is dropped.
pub fn resolve_in(target: &str, mut buf: Vec<u8>) -> Result<Resolved<'_>, Status> {
    let (path, query) = split_target(target)?;
    let dir_form = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    // Decoded segments are appended to one buffer, `/`-separated; `..`
    // truncates it back to the previous separator.
    buf.clear();
    buf.reserve(path.len());
    let mut rel = buf;
    for raw in path.split('/') {
        let start = rel.len();
        if start > 0 {
            rel.push(b'/');
        }
        let seg_start = rel.len();
        decode_segment_into(raw.as_bytes(), &mut rel)?;
        match &rel[seg_start..] {
            b"" | b"." => rel.truncate(start),
            b".." => {
                if start == 0 {
                    return Err(Status::BadRequest);
                }
                let parent = rel[..start].iter().rposition(|&b| b == b'/').unwrap_or(0);
                rel.truncate(parent);
            }
            _ => {}
        }
    }
    for (i, seg) in rel.split(|&b| b == b'/').enumerate() {
        if seg.first() == Some(&b'.') && !(i == 0 && seg == WELL_KNOWN) {
            return Err(Status::NotFound);
        }
    }
    Ok(Resolved { rel: PathBuf::from(OsString::from_vec(rel)), dir_form, query })
}

/// Step 1: the path and query of an origin-form or absolute-form target.
fn split_target(target: &str) -> Result<(&str, Option<&str>), Status> {
    let target = target.split_once('#').map_or(target, |(t, _)| t);
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(Status::BadRequest)?;
        let start = rest.find(['/', '?']).unwrap_or(rest.len());
        if start == 0 {
            return Err(Status::BadRequest);
        }
        &rest[start..]
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // "http://host" and "http://host?q" name the root.
    Ok((if path.is_empty() { "/" } else { path }, query))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Step 2: strict percent-decoding of one segment, appended to `out`.
fn decode_segment_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    let mut i = 0;
    while i < raw.len() {
        let b = if raw[i] == b'%' {
            let hi = raw.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = raw.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(Status::BadRequest);
            };
            i += 3;
            (hi * 16 + lo) as u8
        } else {
            i += 1;
            raw[i - 1]
        };
        if matches!(b, b'/' | b'\0' | b'\\') {
            return Err(Status::BadRequest);
        }
        out.push(b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rel(target: &str) -> Result<String, Status> {
        resolve(target).map(|r| r.rel.to_string_lossy().into_owned())
    }

    #[test]
    fn resolve_in_reuses_the_buffer_it_is_given() {
        let buf = Vec::with_capacity(64);
        let ptr = buf.as_ptr();
        let r = resolve_in("/a/b/../c.txt", buf).unwrap();
        assert_eq!(r.rel, Path::new("a/c.txt"));
        assert_eq!(r.rel.as_os_str().as_bytes().as_ptr(), ptr, "the path was built in a new allocation");
        let buf = r.into_buffer();
        assert!(buf.is_empty());
        assert_eq!(buf.as_ptr(), ptr);
        // A second request reuses it again.
        let r = resolve_in("/d", buf).unwrap();
        assert_eq!(r.rel, Path::new("d"));
        let buf = r.into_buffer();
        assert_eq!(buf.as_ptr(), ptr);
    }

    #[test]
    fn traversal_table() {
        let table: &[(&str, Result<&str, Status>)] = &[
            ("/", Ok("")),
            ("/a.txt", Ok("a.txt")),
            ("/a.txt?x=1", Ok("a.txt")),
            ("/sub/./b/../a.txt", Ok("sub/a.txt")),
            ("/a/b/../../c/", Ok("c")),
            ("/a//b/./", Ok("a/b")),
            ("/a/%2e%2e/b", Ok("b")),
            ("//etc/passwd", Ok("etc/passwd")),
            ("/%252e%252e/secret.txt", Ok("%2e%2e/secret.txt")),
            ("/caf%C3%A9", Ok("café")),
            ("http://example.com/a.txt", Ok("a.txt")),
            ("HTTP://example.com", Ok("")),
            ("/.well-known/x", Ok(".well-known/x")),
            ("/../secret.txt", Err(Status::BadRequest)),
            ("/%2e%2e/secret.txt", Err(Status::BadRequest)),
            ("/%2e%2e%2fsecret.txt", Err(Status::BadRequest)),
            ("/..%2fsecret.txt", Err(Status::BadRequest)),
            ("/sub/../../secret.txt", Err(Status::BadRequest)),
            ("/..%5csecret.txt", Err(Status::BadRequest)),
            ("/..\\secret.txt", Err(Status::BadRequest)),
            ("/a.txt%00.html", Err(Status::BadRequest)),
            ("/bad%zz", Err(Status::BadRequest)),
            ("/bad%2", Err(Status::BadRequest)),
            ("*", Err(Status::BadRequest)),
            ("example.com:80", Err(Status::BadRequest)),
            ("http:///x", Err(Status::BadRequest)),
            ("/.hidden", Err(Status::NotFound)),
            ("/.git/config", Err(Status::NotFound)),
            ("/sub/.well-known/x", Err(Status::NotFound)),
            ("/.well-known/.secret", Err(Status::NotFound)),
        ];
        for (target, want) in table {
            assert_eq!(rel(target).as_deref().map_err(|s| *s), *want, "{target}");
        }
    }

    #[test]
    fn directory_form_and_location() {
        let r = resolve("/docs?x=1").unwrap();
        assert!(!r.dir_form);
        assert_eq!(r.directory_location(), "/docs/?x=1");
        assert!(resolve("/docs/").unwrap().dir_form);
        let r = resolve("/caf%E9").unwrap();
        assert_eq!(r.directory_location(), "/caf%E9/");
        let r = resolve("/d?a=\"<b>\"&c=%20&é=|").unwrap();
        assert_eq!(r.directory_location(), "/d/?a=%22%3Cb%3E%22&c=%20&%C3%A9=%7C");
        let r = resolve("//evil.example/%20x").unwrap();
        assert_eq!(r.directory_location(), "/evil.example/%20x/");
        assert_eq!(r.file_name(), b" x");
    }
}
