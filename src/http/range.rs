//! Range requests (RFC 9110 14): which bytes of a file a `Range` field
//! selects, and the framing of a `multipart/byteranges` body.
//!
//! Runs in: child. Pure. Parsing allocates nothing: at most `MAX_RANGES`
//! ranges are kept, in an array on the stack; a field with more is not
//! parsed further. Only a multipart body that will be sent copies its
//! (coalesced, so at most `MAX_RANGES`) ranges to the heap.
//!
//! What a `Range` field gets (`select`):
//! - absent, sent on several lines, not `bytes=` (any case), or not valid
//!   syntax (a last position before the first, a non-digit, no range): the
//!   field is ignored and the whole file is sent, as 14.2 requires;
//! - no range overlapping the file: `416` (`Unsatisfiable`);
//! - more than `MAX_RANGES` ranges, or ranges whose lengths add up to more
//!   than the file: the whole file (`200`), as 14.2 allows for abuse;
//! - otherwise the satisfiable ranges, clipped to the file, with
//!   overlapping and adjacent ones coalesced, in the order they were asked
//!   for (14.6; a coalesced range takes the place of the first of those it
//!   covers): one range is a plain `206`, several a `multipart/byteranges`
//!   `206`.

use std::fs::File;

use crate::http::decimal::push_number;
use crate::http::fileinfo::FileInfo;
use crate::http::request::Request;

/// Ranges one `Range` field may ask for; more → the whole file (200).
pub const MAX_RANGES: usize = 100;

/// Bytes `first` to `last` of a file, both included, `first <= last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// The first byte's offset.
    pub first: u64,
    /// The last byte's offset.
    pub last: u64,
}

impl ByteRange {
    /// The number of bytes (never zero).
    pub fn size(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// A `Content-Range` value for a satisfied range: `bytes FIRST-LAST/COMPLETE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// The bytes sent.
    pub range: ByteRange,
    /// The length of the whole file.
    pub complete: u64,
}

/// Up to `MAX_RANGES` ranges, coalesced, held without allocating.
#[derive(Clone, Copy, Debug)]
pub struct Ranges {
    list: [ByteRange; MAX_RANGES],
    len: usize,
}

impl Ranges {
    /// The ranges, disjoint and not adjacent, in the order they were asked
    /// for (a coalesced one where the first of those it covers was).
    pub fn as_slice(&self) -> &[ByteRange] {
        &self.list[..self.len]
    }
}

/// What a `Range` field selects of a file.
#[derive(Clone, Copy, Debug)]
#[expect(clippy::large_enum_variant, reason = "the ranges stay on the stack: boxing them would allocate")]
pub enum Selection {
    /// The whole file (no usable `Range`): `200`.
    Whole,
    /// One range: `206` with `Content-Range`.
    One(ByteRange),
    /// Several ranges: `206` with a `multipart/byteranges` body.
    Several(Ranges),
    /// No range overlaps the file: `416`.
    Unsatisfiable,
}

/// One `range-spec` as sent, before it meets the file's length.
#[derive(Clone, Copy)]
enum Spec {
    /// `FIRST-` or `FIRST-LAST`.
    From(u64, Option<u64>),
    /// `-SUFFIX`: the last SUFFIX bytes.
    Suffix(u64),
}

/// What the `Range` field of `req` selects of a file of `len` bytes.
pub fn select(req: &Request<'_>, len: u64) -> Selection {
    let Some(value) = req.fields.range else {
        return Selection::Whole;
    };
    if req.field_lines("range").nth(1).is_some() {
        return Selection::Whole;
    }
    select_in(value, len)
}

/// `select` for the value of one `Range` field. Never inlined into
/// `select`, which every request for a file calls: its frame (the specs
/// and the ranges, some 6 KiB) then exists only for a request with a
/// `Range` field, and the stack pages below the serving frames stay
/// untouched in a child that never gets one.
#[inline(never)]
fn select_in(value: &[u8], len: u64) -> Selection {
    let mut specs = [Spec::Suffix(0); MAX_RANGES];
    let Some(count) = parse(value, &mut specs) else {
        return Selection::Whole;
    };
    let specs = &specs[..count];
    if len == 0 {
        // Only a suffix can be satisfied by an empty file (14.1.1), and a
        // `206` cannot describe zero bytes: send the (empty) whole.
        return if specs.iter().any(|s| matches!(s, Spec::Suffix(n) if *n > 0)) {
            Selection::Whole
        } else {
            Selection::Unsatisfiable
        };
    }
    let mut ranges = Ranges { list: [ByteRange { first: 0, last: 0 }; MAX_RANGES], len: 0 };
    let mut total: u64 = 0;
    for spec in specs {
        let range = match *spec {
            Spec::From(first, _) if first >= len => continue,
            Spec::From(first, last) => ByteRange { first, last: last.map_or(len - 1, |l| l.min(len - 1)) },
            Spec::Suffix(0) => continue,
            Spec::Suffix(n) => ByteRange { first: len - n.min(len), last: len - 1 },
        };
        total = total.saturating_add(range.size());
        ranges.list[ranges.len] = range;
        ranges.len += 1;
    }
    if ranges.len == 0 {
        return Selection::Unsatisfiable;
    }
    if total > len {
        return Selection::Whole;
    }
    coalesce(&mut ranges);
    match ranges.as_slice() {
        [one] => Selection::One(*one),
        _ => Selection::Several(ranges),
    }
}

/// Parses `bytes=SPEC, SPEC...` into `specs`; returns how many there are,
/// or `None` when the field is to be ignored: another unit, invalid syntax,
/// or more than `MAX_RANGES` specs (whose parsing stops there).
fn parse(value: &[u8], specs: &mut [Spec; MAX_RANGES]) -> Option<usize> {
    let value = value.trim_ascii();
    let eq = value.iter().position(|&b| b == b'=')?;
    if !value[..eq].eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut count = 0;
    // Empty list members are allowed (RFC 9110 5.6.1.2).
    for member in value[eq + 1..].split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|m| !m.is_empty()) {
        if count == MAX_RANGES {
            return None;
        }
        let dash = member.iter().position(|&b| b == b'-')?;
        let (first, last) = (&member[..dash], &member[dash + 1..]);
        specs[count] = if first.is_empty() {
            Spec::Suffix(number(last)?)
        } else {
            let first = number(first)?;
            let last = if last.is_empty() { None } else { Some(number(last)?) };
            if last.is_some_and(|l| l < first) {
                return None;
            }
            Spec::From(first, last)
        };
        count += 1;
    }
    (count > 0).then_some(count)
}

/// `1*DIGIT`; a value too large for `u64` saturates, which clips it to the
/// file like any position past the end.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

/// Merges the ranges that overlap or touch, and keeps the order they were
/// asked for (RFC 9110 14.6: a client may ask for the end of a file first),
/// a merged range at the place of the first of those it covers. Sorted by
/// first byte, each range merges with the one before it or starts a new
/// one; the merged ranges are then put back in the order asked.
fn coalesce(ranges: &mut Ranges) {
    let len = ranges.len;
    // Each range with its place in the request.
    let mut placed = [(0, ByteRange { first: 0, last: 0 }); MAX_RANGES];
    for (slot, (i, r)) in placed.iter_mut().zip(ranges.list[..len].iter().enumerate()) {
        *slot = (i, *r);
    }
    let list = &mut placed[..len];
    list.sort_unstable_by_key(|(_, r)| r.first);
    let mut kept = 0;
    for i in 1..len {
        let (place, next) = list[i];
        if next.first <= list[kept].1.last.saturating_add(1) {
            list[kept].1.last = list[kept].1.last.max(next.last);
            list[kept].0 = list[kept].0.min(place);
        } else {
            kept += 1;
            list[kept] = (place, next);
        }
    }
    let merged = &mut list[..=kept];
    merged.sort_unstable_by_key(|(place, _)| *place);
    for (slot, (_, r)) in ranges.list.iter_mut().zip(merged.iter()) {
        *slot = *r;
    }
    ranges.len = merged.len();
}

/// Length of a multipart boundary: 16 hex digits after `BOUNDARY_PREFIX`.
const BOUNDARY_LEN: usize = BOUNDARY_PREFIX.len() + 16;
/// Every boundary starts so, which no `Content-Range` line contains.
const BOUNDARY_PREFIX: &[u8] = b"forkhttpd-";

/// The boundary between the parts of a `multipart/byteranges` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boundary([u8; BOUNDARY_LEN]);

impl Boundary {
    /// A boundary for the parts of the file `info` describes, each labelled
    /// with `content_type`, that occurs in no part's header lines: the
    /// `Content-Range` lines cannot contain its prefix, and candidates are
    /// tried until one is not in the content type. Distinct candidates
    /// cannot start at the same place there, so at most `content_type.len()`
    /// of them fail. It is derived from the file's identity, so it differs
    /// between files and is unlikely to occur in their bytes either.
    pub fn new(info: &FileInfo, content_type: &str) -> Boundary {
        // FNV-1a over the fields of the file's entity tag.
        let seed = [info.len, info.mtime_sec as u64, u64::from(info.mtime_nsec)]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let mut attempt = 0u64;
        loop {
            let mut b = [0u8; BOUNDARY_LEN];
            b[..BOUNDARY_PREFIX.len()].copy_from_slice(BOUNDARY_PREFIX);
            let n = seed.wrapping_add(attempt);
            for (i, d) in b[BOUNDARY_PREFIX.len()..].iter_mut().enumerate() {
                *d = b"0123456789abcdef"[((n >> (60 - 4 * i)) & 0xf) as usize];
            }
            if !content_type.as_bytes().windows(BOUNDARY_LEN).any(|w| w == b) {
                return Boundary(b);
            }
            attempt += 1;
        }
    }

    /// The boundary's characters (ASCII letters, digits and `-`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A `multipart/byteranges` body: each range of `file` after a part head
/// naming its `Content-Type` and `Content-Range`, then a closing delimiter.
#[derive(Clone, Debug)]
pub struct Multipart<'a> {
    /// The open file the parts come from.
    pub file: &'a File,
    /// The ranges, in the order sent.
    pub parts: Vec<ByteRange>,
    /// The file's content type, repeated in every part.
    pub content_type: &'a str,
    /// The file's length, for each `Content-Range`.
    pub complete: u64,
    /// The delimiter between parts.
    pub boundary: Boundary,
}

impl Multipart<'_> {
    /// Appends the head of part `i` to `out`: the delimiter (after the
    /// previous part's bytes) and the part's header fields.
    pub fn write_part_head(&self, i: usize, out: &mut Vec<u8>) {
        let r = self.parts[i];
        part_head(
            out,
            i == 0,
            &self.boundary,
            self.content_type,
            ContentRange { range: r, complete: self.complete },
        );
    }

    /// Appends the closing delimiter to `out`.
    pub fn write_end(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n--");
        out.extend_from_slice(self.boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
    }
}

fn part_head(out: &mut Vec<u8>, first: bool, boundary: &Boundary, content_type: &str, cr: ContentRange) {
    if !first {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Range: ");
    push_content_range(out, cr);
    out.extend_from_slice(b"\r\n\r\n");
}

/// The exact length of the `multipart/byteranges` body for `parts` of a
/// file of `complete` bytes labelled `content_type` (every boundary has the
/// same length): what `Multipart` sends, computed before sending for
/// `Content-Length` (and for `HEAD`, which sends nothing).
pub fn multipart_len(parts: &[ByteRange], complete: u64, content_type: &str) -> u64 {
    let fixed_head = b"--\r\nContent-Type: \r\nContent-Range: bytes -/\r\n\r\n".len() + BOUNDARY_LEN;
    let heads: u64 = parts
        .iter()
        .map(|r| {
            (fixed_head + content_type.len()) as u64
                + digits(r.first)
                + digits(r.last)
                + digits(complete)
                + r.size()
        })
        .sum();
    let separators = 2 * (parts.len() as u64).saturating_sub(1);
    let end = (b"\r\n----\r\n".len() + BOUNDARY_LEN) as u64;
    heads + separators + end
}

/// Number of decimal digits of `n`.
fn digits(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0) + 1)
}

/// Appends `bytes FIRST-LAST/COMPLETE`.
pub fn push_content_range(out: &mut Vec<u8>, cr: ContentRange) {
    out.extend_from_slice(b"bytes ");
    push_number(out, cr.range.first);
    out.push(b'-');
    push_number(out, cr.range.last);
    out.push(b'/');
    push_number(out, cr.complete);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{Parse, parse};

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    /// What `select_in` gives, as a list: `None` for the whole file, an
    /// empty list for 416.
    fn sel(value: &str, len: u64) -> Option<Vec<ByteRange>> {
        match select_in(value.as_bytes(), len) {
            Selection::Whole => None,
            Selection::One(one) => Some(vec![one]),
            Selection::Several(ranges) => {
                assert!(ranges.as_slice().len() > 1);
                Some(ranges.as_slice().to_vec())
            }
            Selection::Unsatisfiable => Some(vec![]),
        }
    }

    #[test]
    fn range_fields_by_table() {
        let table: &[(&str, u64, Option<&[ByteRange]>)] = &[
            ("bytes=0-9", 100, Some(&[r(0, 9)])),
            ("bytes=10-", 100, Some(&[r(10, 99)])),
            ("bytes=-5", 100, Some(&[r(95, 99)])),
            ("BYTES=0-0", 100, Some(&[r(0, 0)])),
            (" bytes=5-5 ", 100, Some(&[r(5, 5)])),
            // Clipped to the end.
            ("bytes=90-200", 100, Some(&[r(90, 99)])),
            ("bytes=-500", 100, Some(&[r(0, 99)])),
            ("bytes=0-99999999999999999999999", 100, Some(&[r(0, 99)])),
            // Several, in the order asked, overlapping and adjacent ones
            // coalesced at the place of the first of them.
            ("bytes=0-1,5-6", 100, Some(&[r(0, 1), r(5, 6)])),
            ("bytes=50-59, 0-9 ,,", 100, Some(&[r(50, 59), r(0, 9)])),
            ("bytes=5-,0-0", 100, Some(&[r(5, 99), r(0, 0)])),
            ("bytes=-10,0-0,50-50", 100, Some(&[r(90, 99), r(0, 0), r(50, 50)])),
            ("bytes=0-4,5-9", 100, Some(&[r(0, 9)])),
            ("bytes=0-5,3-9,25-29,20-24,-10", 100, Some(&[r(0, 9), r(20, 29), r(90, 99)])),
            ("bytes=-10,25-29,0-5,20-24,3-9", 100, Some(&[r(90, 99), r(20, 29), r(0, 9)])),
            ("bytes=50-59,0-9,55-70", 100, Some(&[r(50, 70), r(0, 9)])),
            ("bytes=90-99,0-5,5-10,80-89", 100, Some(&[r(80, 99), r(0, 10)])),
            // Coalesced through a later range that bridges them.
            ("bytes=30-35,0-5,4-31", 100, Some(&[r(0, 35)])),
            ("bytes=60-69,30-35,0-5,6-29", 100, Some(&[r(60, 69), r(0, 35)])),
            ("bytes=0-1,200-300", 100, Some(&[r(0, 1)])),
            // Unsatisfiable: 416.
            ("bytes=100-", 100, Some(&[])),
            ("bytes=100-200, 300-", 100, Some(&[])),
            ("bytes=-0", 100, Some(&[])),
            ("bytes=0-", 0, Some(&[])),
            // An empty file cannot be described by a 206: the empty whole.
            ("bytes=-5", 0, None),
            // Ignored: another unit, invalid syntax.
            ("items=0-9", 100, None),
            ("bytes 0-9", 100, None),
            ("bytes=", 100, None),
            ("bytes=,", 100, None),
            ("bytes=9-0", 100, None),
            ("bytes=0-9,9-0", 100, None),
            ("bytes=a-9", 100, None),
            ("bytes=0-9a", 100, None),
            ("bytes=--5", 100, None),
            ("bytes=-", 100, None),
            ("bytes=0 -9", 100, None),
            ("bytes=+1-2", 100, None),
            ("bytes=0-9;x", 100, None),
            // Abuse: the ranges add up to more than the file.
            ("bytes=0-,0-", 100, None),
            ("bytes=0-60,40-99", 100, None),
        ];
        for (value, len, want) in table {
            assert_eq!(sel(value, *len).as_deref(), *want, "{value:?} of {len}");
        }
    }

    #[test]
    fn at_most_max_ranges_are_parsed() {
        let spec = |n: u64| (0..n).map(|i| format!("{}-{}", 2 * i, 2 * i)).collect::<Vec<_>>().join(",");
        let got = sel(&format!("bytes={}", spec(MAX_RANGES as u64)), 1000).unwrap();
        assert_eq!(got.len(), MAX_RANGES);
        assert_eq!(got[MAX_RANGES - 1], r(198, 198));
        assert_eq!(sel(&format!("bytes={}", spec(MAX_RANGES as u64 + 1)), 1000), None);
        // Empty members do not count.
        assert_eq!(sel(&format!("bytes={},,,", spec(MAX_RANGES as u64)), 1000).unwrap().len(), MAX_RANGES);
    }

    #[test]
    fn a_range_field_on_several_lines_is_ignored() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nRange: bytes=3-4\r\n\r\n";
        let Parse::Complete(req, _) = parse(raw) else { panic!() };
        assert!(matches!(select(&req, 10), Selection::Whole));
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n";
        let Parse::Complete(req, _) = parse(raw) else { panic!() };
        assert!(matches!(select(&req, 10), Selection::One(ByteRange { first: 0, last: 1 })));
    }

    fn info(len: u64) -> FileInfo {
        FileInfo { len, modified: None, mtime_sec: 3, mtime_nsec: 4, coding: None }
    }

    #[test]
    fn boundary_occurs_in_no_part_head() {
        let plain = Boundary::new(&info(10), "text/plain");
        assert!(plain.as_bytes().starts_with(BOUNDARY_PREFIX));
        assert!(plain.as_bytes()[BOUNDARY_PREFIX.len()..].iter().all(u8::is_ascii_hexdigit));
        assert_ne!(plain, Boundary::new(&info(11), "text/plain"), "differs between files");
        // A content type that holds the first candidate, and the second.
        let first = String::from_utf8(plain.as_bytes().to_vec()).unwrap();
        let hostile = format!("text/x; a=\"{first}\"");
        let second = Boundary::new(&info(10), &hostile);
        assert_ne!(second, plain);
        let second = String::from_utf8(second.as_bytes().to_vec()).unwrap();
        let more_hostile = format!("{hostile}; b=\"{second}\"");
        let third = Boundary::new(&info(10), &more_hostile);
        let third = String::from_utf8(third.as_bytes().to_vec()).unwrap();
        assert!(!more_hostile.contains(&third) && third != first && third != second);
    }

    #[test]
    fn multipart_length_is_what_is_sent() {
        let file = File::open("/dev/null").unwrap();
        for (parts, complete, content_type) in [
            (vec![r(0, 0), r(2, 2)], 3, "text/plain"),
            (vec![r(0, 9), r(20, 99), r(1000, 123_456)], 1_000_000, "application/octet-stream"),
            (vec![r(5, 5), r(u64::MAX - 10, u64::MAX - 1)], u64::MAX, "x/y; charset=utf-8"),
        ] {
            let m = Multipart {
                file: &file,
                parts: parts.clone(),
                content_type,
                complete,
                boundary: Boundary::new(&info(complete), content_type),
            };
            let mut out = Vec::new();
            let mut data = 0;
            for (i, part) in parts.iter().enumerate() {
                m.write_part_head(i, &mut out);
                data += part.size();
            }
            m.write_end(&mut out);
            assert_eq!(multipart_len(&parts, complete, content_type), out.len() as u64 + data, "{parts:?}");
            let text = String::from_utf8(out).unwrap();
            let b = String::from_utf8(m.boundary.as_bytes().to_vec()).unwrap();
            assert!(
                text.starts_with(&format!("--{b}\r\nContent-Type: {content_type}\r\nContent-Range: bytes "))
            );
            assert!(text.ends_with(&format!("\r\n--{b}--\r\n")));
            assert_eq!(text.matches(&format!("\r\n--{b}\r\n")).count(), parts.len() - 1);
        }
    }
}
