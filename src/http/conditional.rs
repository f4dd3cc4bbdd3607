//! Validators and conditional requests (RFC 9110 8.8 and 13): the strong
//! entity tag of a file, and the preconditions of a request evaluated in
//! the order of RFC 9110 13.2.2.
//!
//! Runs in: child. Pure: the file is known by its `FileInfo` (from the
//! `fstat` of the open descriptor), the request by its borrowed fields.
//! Nothing here allocates: a tag is formatted into a buffer on the stack,
//! and field values are compared where they lie in the request buffer.
//!
//! The order of 13.2.2, which `evaluate` and `if_range_holds` follow:
//!
//! 1. `If-Match` (strong comparison, `*`): false → `412`.
//! 2. Else `If-Unmodified-Since` (a valid date, a file with a date): the
//!    file changed after it → `412`.
//! 3. `If-None-Match` (weak comparison, `*`): a tag matches → `304` for
//!    `GET`/`HEAD` (`412` for any other method).
//! 4. Else, for `GET`/`HEAD` only, `If-Modified-Since` (a valid date, a
//!    file with a date): not changed since → `304`.
//! 5. `If-Range` decides whether `Range` is served (`if_range_holds`).
//!
//! A field whose value is not valid is ignored (the dates, as 13.1.3 and
//! 13.1.4 require) or matches nothing (a malformed tag list: for
//! `If-None-Match` that sends the whole file, for `If-Match` a `412`; both
//! are safe answers to a client that cannot say what it holds).

use std::time::{Duration, SystemTime};

use crate::http::fileinfo::{FileInfo, Tag, etag};
use crate::http::reply::Fields;
use crate::http::request::{Method, Request};

/// What the preconditions of a request (steps 1 to 4) decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the file (ranges are decided by `if_range_holds`).
    Pass,
    /// The client's copy is current: `304`.
    NotModified,
    /// A precondition is false: `412`.
    PreconditionFailed,
}

/// Steps 1 to 4 of RFC 9110 13.2.2 for a request of the file `info`
/// describes, answered at `now`.
pub fn evaluate(req: &Request<'_>, info: &FileInfo, now: SystemTime) -> Precondition {
    let fields = &req.fields;
    if fields.if_match.is_some() {
        if !list_matches(req.field_lines("if-match"), &etag(info), Comparison::Strong) {
            return Precondition::PreconditionFailed;
        }
    } else if let (Some(date), Some(modified)) =
        (date_field(req, fields.if_unmodified_since, "if-unmodified-since"), seconds(info, now))
        && modified > date
    {
        return Precondition::PreconditionFailed;
    }
    let get_or_head = matches!(req.method, Method::Get | Method::Head);
    if fields.if_none_match.is_some() {
        if list_matches(req.field_lines("if-none-match"), &etag(info), Comparison::Weak) {
            return if get_or_head { Precondition::NotModified } else { Precondition::PreconditionFailed };
        }
    } else if get_or_head
        && let (Some(date), Some(modified)) =
            (date_field(req, fields.if_modified_since, "if-modified-since"), seconds(info, now))
        && modified <= date
    {
        return Precondition::NotModified;
    }
    Precondition::Pass
}

/// Step 5: whether the `Range` of a request answered at `now` may be
/// served (RFC 9110 13.1.5). True without `If-Range`; with it, true only
/// when its entity tag equals ours by strong comparison (a weak tag never
/// does), or its date is exactly our `Last-Modified` and that date is a
/// strong validator (8.8.2.2): the file was modified at least a second
/// before `now`. A file modified within the last second (or in the future)
/// may change again within the second its date names, and ranges of two
/// versions would be spliced. A value sent on several lines is invalid.
pub fn if_range_holds(req: &Request<'_>, info: &FileInfo, now: SystemTime) -> bool {
    let Some(value) = req.fields.if_range else {
        return true;
    };
    if req.field_lines("if-range").nth(1).is_some() {
        return false;
    }
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return value == etag(info).as_bytes();
    }
    let strong =
        info.modified.is_some_and(|t| t.checked_add(Duration::from_secs(1)).is_some_and(|t| t <= now));
    strong
        && matches!((parse_date(value), seconds(info, now)), (Some(date), Some(modified)) if date == modified)
}

/// The fields of the `304` for a reply whose `200` would carry `fields`:
/// all of them (`Date`, `ETag`, `Last-Modified`, `Cache-Control`, `Vary`,
/// whatever rules added) except those that describe a body the `304` does
/// not have (RFC 9110 15.4.5), as nginx drops them too.
pub fn not_modified<'a>(fields: &Fields<'a>) -> Fields<'a> {
    const BODY_FIELDS: [&str; 4] = ["Content-Type", "Content-Length", "Content-Encoding", "Accept-Ranges"];
    let mut kept = Fields::default();
    for f in fields.iter().filter(|f| !BODY_FIELDS.iter().any(|n| n.eq_ignore_ascii_case(f.name))) {
        kept.push(f.name, f.value);
    }
    kept
}

/// How two entity tags are compared (RFC 9110 8.8.3.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both strong and identical.
    Strong,
    /// Identical apart from the weak marks.
    Weak,
}

/// Whether any member of the list spread over `lines` (`*` or entity tags)
/// matches `tag`. A list with a syntax error matches nothing.
fn list_matches<'b>(lines: impl Iterator<Item = &'b [u8]>, tag: &Tag, cmp: Comparison) -> bool {
    let mut matched = false;
    for line in lines {
        if line == b"*" {
            matched = true;
            continue;
        }
        let mut rest = line;
        loop {
            rest = rest.trim_ascii_start();
            if let Some(after) = rest.strip_prefix(b",") {
                // Empty list members are allowed (RFC 9110 5.6.1.2).
                rest = after;
                continue;
            }
            if rest.is_empty() {
                break;
            }
            let Some((weak, opaque, after)) = entity_tag(rest) else {
                return false;
            };
            matched |= opaque == tag.as_bytes() && (cmp == Comparison::Weak || !weak);
            rest = after.trim_ascii_start();
            if !rest.is_empty() && !rest.starts_with(b",") {
                return false;
            }
        }
    }
    matched
}

/// One `entity-tag` at the start of `s`: whether it is weak, the quoted
/// opaque tag, and what follows it.
fn entity_tag(s: &[u8]) -> Option<(bool, &[u8], &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = s.strip_prefix(b"\"")?;
    let end = body.iter().position(|&b| b == b'"')?;
    // etagc: %x21 / %x23-7E / obs-text; no space, no control.
    if !body[..end].iter().all(|&b| b == 0x21 || (b >= 0x23 && b != 0x7f)) {
        return None;
    }
    Some((weak, &s[..end + 2], &body[end + 1..]))
}

/// The date in the field `name` (whose first line is `first`), in seconds
/// since the epoch, when it is sent on one line and is a valid HTTP date
/// (IMF-fixdate, or the obsolete RFC 850 and asctime forms, RFC 9110
/// 5.6.7); `None` means ignore it. The head is scanned for more lines only
/// when the field is present.
fn date_field(req: &Request<'_>, first: Option<&[u8]>, name: &'static str) -> Option<u64> {
    let value = first?;
    if req.field_lines(name).nth(1).is_some() {
        return None;
    }
    parse_date(value)
}

fn parse_date(value: &[u8]) -> Option<u64> {
    let t = httpdate::parse_http_date(std::str::from_utf8(value).ok()?.trim()).ok()?;
    t.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// `Last-Modified` at `now` in whole seconds, as the field sends it.
fn seconds(info: &FileInfo, now: SystemTime) -> Option<u64> {
    info.last_modified(now)?.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::http::reply::Value;
    use crate::http::request::{Parse, parse};

    use crate::http::fileinfo::tests::{MTIME, TAG, info};

    const DATE: &str = "Sun, 13 Sep 2020 12:26:40 GMT";
    const EARLIER: &str = "Sun, 13 Sep 2020 12:26:39 GMT";
    const LATER: &str = "Sun, 13 Sep 2020 12:26:41 GMT";

    /// An hour after the modification time of `info`.
    fn now() -> SystemTime {
        at(MTIME + 3600, 0)
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// A request head for `method /` with the given field lines.
    fn head(method: &str, lines: &[String]) -> Vec<u8> {
        let mut raw = format!("{method} / HTTP/1.1\r\nHost: x\r\n");
        for line in lines {
            raw.push_str(line);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        raw.into_bytes()
    }

    fn request(raw: &[u8]) -> Request<'_> {
        match parse(raw) {
            Parse::Complete(req, _) => req,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tag_lists_by_table() {
        let tag = etag(&info());
        let weak_tag = format!("W/{TAG}");
        let table: &[(&[&str], bool, bool)] = &[
            // lines, weak match, strong match
            (&[TAG], true, true),
            (&[&weak_tag], true, false),
            (&["*"], true, true),
            (&["\"other\""], false, false),
            (&["\"a\", \"b\""], false, false),
            (&[&format!("\"a\",{TAG}")], true, true),
            (&[&format!(" , \"a\" ,, {weak_tag} ,")], true, false),
            (&["\"a\"", TAG], true, true),
            (&["\"a\"", &weak_tag], true, false),
            // Malformed lists match nothing, even with our tag in them.
            (&[&format!("{TAG} junk")], false, false),
            (&[&format!("{TAG}, \"unclosed")], false, false),
            (&[&format!("{TAG}\"x\"")], false, false),
            (&["5-5f5e1000.5"], false, false),
            (&[&format!("w/{TAG}")], false, false),
            (&["\"a b\""], false, false),
            (&[""], false, false),
        ];
        for (lines, weak, strong) in table {
            let it = || lines.iter().map(|l| l.as_bytes());
            assert_eq!(list_matches(it(), &tag, Comparison::Weak), *weak, "weak {lines:?}");
            assert_eq!(list_matches(it(), &tag, Comparison::Strong), *strong, "strong {lines:?}");
        }
    }

    #[test]
    fn preconditions_in_the_order_of_rfc_9110_13_2_2() {
        use Precondition::{NotModified as N, Pass as P, PreconditionFailed as F};
        let im = |v: &str| format!("If-Match: {v}");
        let ius = |v: &str| format!("If-Unmodified-Since: {v}");
        let inm = |v: &str| format!("If-None-Match: {v}");
        let ims = |v: &str| format!("If-Modified-Since: {v}");
        let weak = format!("W/{TAG}");
        let table: Vec<(&str, Vec<String>, Precondition)> = vec![
            ("GET", vec![], P),
            // Step 1: If-Match, strong comparison.
            ("GET", vec![im(TAG)], P),
            ("GET", vec![im("*")], P),
            ("GET", vec![im("\"x\"")], F),
            ("GET", vec![im(&weak)], F),
            ("GET", vec![im("\"x\""), im(TAG)], P),
            // Step 2: If-Unmodified-Since only without If-Match.
            ("GET", vec![ius(DATE)], P),
            ("GET", vec![ius(LATER)], P),
            ("GET", vec![ius(EARLIER)], F),
            ("GET", vec![im(TAG), ius(EARLIER)], P),
            ("GET", vec![im("\"x\""), ius(LATER)], F),
            ("GET", vec![ius("yesterday")], P),
            ("GET", vec![ius(EARLIER), ius(EARLIER)], P),
            // Step 3: If-None-Match, weak comparison, after the 412 checks.
            ("GET", vec![inm(TAG)], N),
            ("HEAD", vec![inm(&weak)], N),
            ("GET", vec![inm("*")], N),
            ("GET", vec![inm("\"x\", \"y\"")], P),
            ("GET", vec![inm("\"x\""), inm(TAG)], N),
            ("GET", vec![im("\"x\""), inm(TAG)], F),
            ("GET", vec![ius(EARLIER), inm(TAG)], F),
            ("OPTIONS", vec![inm(TAG)], F),
            // Step 4: If-Modified-Since, only without If-None-Match, only GET/HEAD.
            ("GET", vec![ims(DATE)], N),
            ("HEAD", vec![ims(LATER)], N),
            ("GET", vec![ims(EARLIER)], P),
            ("GET", vec![inm("\"x\""), ims(LATER)], P),
            ("GET", vec![ims("Sunday, 13-Sep-20 12:26:40 GMT")], N),
            ("GET", vec![ims("Sun Sep 13 12:26:40 2020")], N),
            ("GET", vec![ims("Sun, 13 Sep 2020 12:26:40 UTC")], P),
            ("GET", vec![ims("garbage")], P),
            ("GET", vec![ims(DATE), ims(DATE)], P),
            ("OPTIONS", vec![ims(LATER)], P),
        ];
        for (method, lines, want) in table {
            let raw = head(method, &lines);
            assert_eq!(evaluate(&request(&raw), &info(), now()), want, "{method} {lines:?}");
        }
        // A file without a usable date ignores the date preconditions.
        let undated = FileInfo { modified: None, ..info() };
        for lines in [[ius(EARLIER)], [ims(LATER)]] {
            let raw = head("GET", &lines);
            assert_eq!(evaluate(&request(&raw), &undated, now()), P, "{lines:?}");
        }
        // A file modified in the future was sent with `Last-Modified: now`
        // (8.8.2.1): the dates are compared with that.
        let a_second_before = at(MTIME - 1, 0);
        for (lines, want) in [([ims(EARLIER)], N), ([ius(EARLIER)], P), ([ims(DATE)], N)] {
            let raw = head("GET", &lines);
            assert_eq!(evaluate(&request(&raw), &info(), a_second_before), want, "future: {lines:?}");
        }
    }

    #[test]
    fn if_range_by_table() {
        let weak = format!("If-Range: W/{TAG}");
        let table: Vec<(Vec<String>, bool)> = vec![
            (vec![], true),
            (vec![format!("If-Range: {TAG}")], true),
            (vec![weak], false),
            (vec!["If-Range: \"other\"".into()], false),
            (vec![format!("If-Range: {DATE}")], true),
            (vec![format!("If-Range: {LATER}")], false),
            (vec![format!("If-Range: {EARLIER}")], false),
            (vec!["If-Range: garbage".into()], false),
            (vec![format!("If-Range: {TAG}"), format!("If-Range: {TAG}")], false),
        ];
        for (lines, want) in table {
            let raw = head("GET", &lines);
            assert_eq!(if_range_holds(&request(&raw), &info(), now()), want, "{lines:?}");
        }
        let raw = head("GET", &[format!("If-Range: {DATE}")]);
        assert!(!if_range_holds(&request(&raw), &FileInfo { modified: None, ..info() }, now()));
    }

    #[test]
    fn an_if_range_date_holds_only_when_it_is_strong() {
        // The date is strong only a whole second after the modification:
        // before that, the file may change again within the second its
        // `Last-Modified` names (RFC 9110 8.8.2.2, 13.1.5).
        let date = head("GET", &[format!("If-Range: {DATE}")]);
        let tag = head("GET", &[format!("If-Range: {TAG}")]);
        let table = [
            (at(MTIME - 5, 0), false),
            (at(MTIME, 0), false),
            (at(MTIME, 999_999_999), false),
            (at(MTIME + 1, 0), true),
            (at(MTIME + 86_400, 0), true),
        ];
        for (now, want) in table {
            assert_eq!(if_range_holds(&request(&date), &info(), now), want, "date at {now:?}");
            // An entity tag is strong whenever the file was modified.
            assert!(if_range_holds(&request(&tag), &info(), now), "tag at {now:?}");
        }
        // A file modified in the future: `Last-Modified` says `now`, which
        // is not a second before `now`.
        let now = at(MTIME - 5, 0);
        let sent = head("GET", &[format!("If-Range: {}", httpdate::fmt_http_date(now))]);
        assert!(!if_range_holds(&request(&sent), &info(), now));
    }

    #[test]
    fn not_modified_keeps_all_but_the_body_fields() {
        let info = info();
        let mut fields = Fields::default();
        for (name, value) in [
            ("Date", Value::Number(1)),
            ("Server", Value::Str("s")),
            ("Content-Type", Value::Str("text/plain")),
            ("Content-Length", Value::Number(5)),
            ("content-encoding", Value::Str("br")),
            ("Vary", Value::Str("Accept-Encoding")),
            ("Cache-Control", Value::Str("max-age=60")),
            ("Last-Modified", Value::Number(2)),
            ("ETag", Value::ETag(&info)),
            ("Accept-Ranges", Value::Str("bytes")),
        ] {
            fields.push(name, value);
        }
        let kept: Vec<&str> = not_modified(&fields).iter().map(|f| f.name).collect();
        assert_eq!(kept, ["Date", "Server", "Vary", "Cache-Control", "Last-Modified", "ETag"]);
    }
}
