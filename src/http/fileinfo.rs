//! What a reply needs to know of a file: its size, dates and identity
//! from `fstat` (`FileInfo`), and the strong entity tag derived from them.
//!
//! Runs in: child. Pure, and at the bottom of `http`: the conditional
//! rules, ranges, listings and the reply's head all describe a file by
//! its `FileInfo`.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

/// What a reply needs of a file's `fstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, when the filesystem has one and an HTTP date can
    /// express it (1970 to 9999; `touch` can set any other).
    pub modified: Option<SystemTime>,
    /// The device and inode: which file this is (for its entity tag).
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// Modification time as `fstat` gives it, whatever its range: seconds
    /// since the epoch and nanoseconds (for the entity tag).
    pub mtime_sec: i64,
    /// See `mtime_sec`.
    pub mtime_nsec: u32,
}

/// The first second an HTTP date cannot express: year 10000.
const HTTP_DATE_END: Duration = Duration::from_secs(253_402_300_800);

impl FileInfo {
    /// From the fields of a `stat`: the size, the device and inode, and the
    /// modification time in seconds since the epoch (negative before 1970)
    /// and nanoseconds. `modified` is that time only when an HTTP date can
    /// express it; formatting any other would abort the child.
    pub fn from_stat(len: u64, dev: u64, ino: u64, mtime_sec: i64, mtime_nsec: i64) -> FileInfo {
        let mtime_nsec = u32::try_from(mtime_nsec).ok().filter(|n| *n < 1_000_000_000).unwrap_or(0);
        let modified = u64::try_from(mtime_sec)
            .ok()
            .filter(|s| *s < HTTP_DATE_END.as_secs())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::new(s, mtime_nsec));
        FileInfo { len, modified, dev, ino, mtime_sec, mtime_nsec }
    }
}

impl From<&Metadata> for FileInfo {
    fn from(meta: &Metadata) -> FileInfo {
        FileInfo::from_stat(meta.len(), meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec())
    }
}

/// Longest entity tag: two quotes, four fields of up to 16 hex digits, the
/// nanoseconds in up to 8, and four separators.
const TAG_MAX: usize = 2 + 4 * 16 + 8 + 4;

/// A file's strong entity tag, formatted: `"DEV-INO-LEN-SECS.NSECS"` in
/// lower-case hex (seconds since the epoch as two's complement). It changes
/// whenever the file is replaced (another inode), resized or modified
/// (nanosecond mtime), which is what makes it strong for a static file.
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
    for (n, sep) in [(info.dev, b'-'), (info.ino, b'-'), (info.len, b'-'), (info.mtime_sec as u64, b'.')] {
        tag.push_hex(n);
        tag.push(sep);
    }
    tag.push_hex(u64::from(info.mtime_nsec));
    tag.push(b'"');
    tag
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Sun, 13 Sep 2020 12:26:40 GMT: the modification time of `info`.
    pub(crate) const MTIME: u64 = 1_600_000_000;
    /// The entity tag of `info`.
    pub(crate) const TAG: &str = "\"803-1234-5-5f5e1000.5\"";

    /// A file the unit tests of `http` describe.
    pub(crate) fn info() -> FileInfo {
        FileInfo {
            len: 5,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME)),
            dev: 0x803,
            ino: 0x1234,
            mtime_sec: MTIME as i64,
            mtime_nsec: 5,
        }
    }

    #[test]
    fn only_times_an_http_date_can_express_are_dates() {
        let at = |secs, nsec| FileInfo::from_stat(1, 2, 3, secs, nsec).modified;
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
        assert_eq!(FileInfo::from_stat(1, 2, 3, -7, -1).mtime_sec, -7);
    }

    #[test]
    fn etag_is_hex_of_device_inode_size_and_mtime() {
        assert_eq!(etag(&info()).as_bytes(), TAG.as_bytes());
        let zero = FileInfo { len: 0, modified: None, dev: 0, ino: 0, mtime_sec: 0, mtime_nsec: 0 };
        assert_eq!(etag(&zero).as_bytes(), b"\"0-0-0-0.0\"");
        let widest = FileInfo {
            len: u64::MAX,
            modified: None,
            dev: u64::MAX,
            ino: u64::MAX,
            mtime_sec: -1,
            mtime_nsec: 999_999_999,
        };
        let f = "ffffffffffffffff";
        assert_eq!(etag(&widest).as_bytes(), format!("\"{f}-{f}-{f}-{f}.3b9ac9ff\"").as_bytes());
        // Each input changes the tag: another inode, size, or a nanosecond.
        for changed in [
            FileInfo { ino: 0x1235, ..info() },
            FileInfo { dev: 0x804, ..info() },
            FileInfo { len: 6, ..info() },
            FileInfo { mtime_nsec: 6, ..info() },
            FileInfo { mtime_sec: MTIME as i64 + 1, ..info() },
        ] {
            assert_ne!(etag(&changed).as_bytes(), TAG.as_bytes(), "{changed:?}");
        }
    }
}
