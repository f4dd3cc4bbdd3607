//! What a reply needs to know of a file: its size and modification time
//! from `fstat` (`FileInfo`), and the strong entity tag and the
//! `Last-Modified` derived from them.
//!
//! Runs in: child. Pure, and at the bottom of `http`: the conditional
//! rules, ranges, listings and the reply's head all describe a file by
//! its `FileInfo`.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use crate::http::encoding::Coding;

/// What a reply needs of a file's `fstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, when the filesystem has one and an HTTP date can
    /// express it (1970 to 9999; `touch` can set any other).
    pub modified: Option<SystemTime>,
    /// Modification time as `fstat` gives it, whatever its range: seconds
    /// since the epoch and nanoseconds (for the entity tag).
    pub mtime_sec: i64,
    /// See `mtime_sec`.
    pub mtime_nsec: u32,
    /// The coding of a precompressed sibling served in the original's
    /// place: another representation, so its entity tag names the coding
    /// and differs from the original's even when size and time coincide
    /// (`gzip -k` keeps the time).
    pub coding: Option<Coding>,
}

/// The first second an HTTP date cannot express: year 10000.
const HTTP_DATE_END: Duration = Duration::from_secs(253_402_300_800);

impl FileInfo {
    /// From the fields of a `stat`: the size, and the modification time in
    /// seconds since the epoch (negative before 1970) and nanoseconds.
    /// `modified` is that time only when an HTTP date can express it;
    /// formatting any other would abort the child.
    pub fn from_stat(len: u64, mtime_sec: i64, mtime_nsec: i64) -> FileInfo {
        let mtime_nsec = u32::try_from(mtime_nsec).ok().filter(|n| *n < 1_000_000_000).unwrap_or(0);
        let modified = u64::try_from(mtime_sec)
            .ok()
            .filter(|s| *s < HTTP_DATE_END.as_secs())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::new(s, mtime_nsec));
        FileInfo { len, modified, mtime_sec, mtime_nsec, coding: None }
    }

    /// The `Last-Modified` of a reply sent at `now`: the modification time,
    /// or `now` when that lies in the future (RFC 9110 8.8.2.1: an origin
    /// server must not send a date later than its `Date`). The conditional
    /// rules compare a request's dates with this, the value the client got.
    pub fn last_modified(&self, now: SystemTime) -> Option<SystemTime> {
        self.modified.map(|t| t.min(now))
    }
}

impl From<&Metadata> for FileInfo {
    fn from(meta: &Metadata) -> FileInfo {
        FileInfo::from_stat(meta.len(), meta.mtime(), meta.mtime_nsec())
    }
}

/// Longest entity tag: two quotes, two fields of up to 16 hex digits, the
/// nanoseconds in up to 8, two separators, and `-` with the longest coding.
const TAG_MAX: usize = 2 + 2 * 16 + 8 + 2 + 1 + 4;

/// A file's strong entity tag, formatted: `"LEN-SECS.NSECS"` in lower-case
/// hex (seconds since the epoch as two's complement), then `-CODING` for a
/// precompressed sibling. It changes whenever the file is resized or
/// modified (nanosecond mtime), which is what makes it strong for a static
/// file, and, as Apache's `FileETag MTime Size` and nginx's, it is the same
/// for a copy of the file on another server behind a load balancer (with
/// the times kept, as `rsync -t` or `cp -p` do), and tells no inode number.
#[derive(Clone, Copy)]
pub struct Tag {
    bytes: [u8; TAG_MAX],
    len: usize,
}

impl Tag {
    /// The tag with its quotes, as sent in `ETag`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    fn push_hex(&mut self, n: u64) {
        let digits = if n == 0 { 1 } else { (64 - n.leading_zeros()).div_ceil(4) };
        for i in (0..digits).rev() {
            self.push(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]);
        }
    }
}

/// The strong entity tag of the file `info` describes. It takes any
/// `FileInfo`, so every opened file (a precompressed variant, a listed
/// directory) gets its own tag from its own `fstat`.
pub fn etag(info: &FileInfo) -> Tag {
    let mut tag = Tag { bytes: [0; TAG_MAX], len: 0 };
    tag.push(b'"');
    tag.push_hex(info.len);
    tag.push(b'-');
    tag.push_hex(info.mtime_sec as u64);
    tag.push(b'.');
    tag.push_hex(u64::from(info.mtime_nsec));
    if let Some(coding) = info.coding {
        tag.push(b'-');
        coding.token().bytes().for_each(|b| tag.push(b));
    }
    tag.push(b'"');
    tag
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Sun, 13 Sep 2020 12:26:40 GMT: the modification time of `info`.
    pub(crate) const MTIME: u64 = 1_600_000_000;
    /// The entity tag of `info`.
    pub(crate) const TAG: &str = "\"5-5f5e1000.5\"";

    /// A file the unit tests of `http` describe.
    pub(crate) fn info() -> FileInfo {
        FileInfo {
            len: 5,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME)),
            mtime_sec: MTIME as i64,
            mtime_nsec: 5,
            coding: None,
        }
    }

    #[test]
    fn only_times_an_http_date_can_express_are_dates() {
        let at = |secs, nsec| FileInfo::from_stat(1, secs, nsec).modified;
        let end = HTTP_DATE_END.as_secs() as i64;
        assert_eq!(at(0, 0), Some(SystemTime::UNIX_EPOCH));
        assert_eq!(
            at(end - 1, 999_999_999),
            Some(SystemTime::UNIX_EPOCH + Duration::new(end as u64 - 1, 999_999_999))
        );
        for (secs, nsec) in [(-1, 0), (-1, 500_000_000), (end, 0), (i64::MAX, 0), (i64::MIN, 0)] {
            assert_eq!(at(secs, nsec), None, "{secs}.{nsec}");
        }
        // Out-of-range nanoseconds cannot make a `Duration` panic.
        assert_eq!(at(5, 1_000_000_000), Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5)));
        assert_eq!(FileInfo::from_stat(1, -7, -1).mtime_sec, -7);
    }

    #[test]
    fn last_modified_is_never_later_than_now() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let table =
            [(MTIME + 10, Some(at(MTIME))), (MTIME, Some(at(MTIME))), (MTIME - 1, Some(at(MTIME - 1)))];
        for (now, want) in table {
            assert_eq!(info().last_modified(at(now)), want, "now {now}");
        }
        assert_eq!(FileInfo { modified: None, ..info() }.last_modified(at(MTIME)), None);
    }

    #[test]
    fn etag_is_hex_of_size_and_mtime_and_names_a_coding() {
        assert_eq!(etag(&info()).as_bytes(), TAG.as_bytes());
        let zero = FileInfo { len: 0, modified: None, mtime_sec: 0, mtime_nsec: 0, coding: None };
        assert_eq!(etag(&zero).as_bytes(), b"\"0-0.0\"");
        let widest = FileInfo {
            len: u64::MAX,
            modified: None,
            mtime_sec: -1,
            mtime_nsec: 999_999_999,
            coding: Some(Coding::Zstd),
        };
        let f = "ffffffffffffffff";
        assert_eq!(etag(&widest).as_bytes(), format!("\"{f}-{f}.3b9ac9ff-zstd\"").as_bytes());
        let gzip = FileInfo { coding: Some(Coding::Gzip), ..info() };
        assert_eq!(etag(&gzip).as_bytes(), b"\"5-5f5e1000.5-gzip\"");
        // Each input changes the tag: size, a nanosecond, a second, a coding.
        let mut seen = vec![TAG.as_bytes().to_vec()];
        for changed in [
            FileInfo { len: 6, ..info() },
            FileInfo { mtime_nsec: 6, ..info() },
            FileInfo { mtime_sec: MTIME as i64 + 1, ..info() },
            FileInfo { coding: Some(Coding::Br), ..info() },
            gzip,
        ] {
            let tag = etag(&changed).as_bytes().to_vec();
            assert!(!seen.contains(&tag), "{changed:?}");
            seen.push(tag);
        }
    }
}
