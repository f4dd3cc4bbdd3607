//! Directory listings: a bounded selection of a directory's entries, and
//! the HTML page that lists them.
//!
//! Runs in: child (pure; `file::list` reads the directory and feeds the
//! entries in). Bounded: however many entries a directory holds, at most
//! `MAX_ENTRIES` are kept (the first ones in listing order, through a heap
//! of that size), the others only counted, so a directory of 100,000
//! entries costs one pass of `getdents` and a page of at most
//! `MAX_ENTRIES` rows. Dotfiles are never listed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use crate::http::civil;
use crate::http::fileinfo::FileInfo;

/// Most entries one listing shows; the rest are counted in a line under
/// the table. Bounds the child's memory (names are at most 255 bytes) and
/// the page (a few hundred bytes per row).
pub const MAX_ENTRIES: usize = 10_000;

/// Bytes a link keeps unencoded: RFC 3986's unreserved characters. Anything
/// else is percent-encoded, so that no name can become a scheme (`a:b`),
/// a query, a fragment or an attribute break.
const LINK: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name as stored (any bytes but `/` and NUL).
    pub name: Vec<u8>,
    /// A directory (listed first, linked with a trailing `/`).
    pub is_dir: bool,
    /// Size in bytes, for a regular file.
    pub len: Option<u64>,
    /// Modification time, if known.
    pub modified: Option<SystemTime>,
}

impl Ord for Entry {
    /// Listing order: directories first, then by name (bytewise).
    fn cmp(&self, other: &Self) -> Ordering {
        other.is_dir.cmp(&self.is_dir).then_with(|| self.name.cmp(&other.name))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The first `cap` entries in listing order among all those offered, and
/// how many others there were.
#[derive(Debug)]
pub struct Selection {
    /// A max-heap: its top is the entry that goes first when a better one comes.
    kept: BinaryHeap<Entry>,
    cap: usize,
    /// Entries offered but not kept.
    pub left_out: usize,
}

impl Selection {
    /// An empty selection keeping at most `cap` entries.
    pub fn new(cap: usize) -> Selection {
        Selection { kept: BinaryHeap::new(), cap, left_out: 0 }
    }

    /// Whether an entry named `name` is listed at all: dotfiles are not
    /// (nor `.` and `..`).
    pub fn lists(name: &[u8]) -> bool {
        !name.is_empty() && name[0] != b'.'
    }

    /// Offers an entry; kept if it is among the first `cap` so far.
    pub fn offer(&mut self, entry: Entry) {
        if self.kept.len() < self.cap {
            self.kept.push(entry);
            return;
        }
        self.left_out += 1;
        if self.kept.peek().is_some_and(|last| entry < *last) {
            self.kept.pop();
            self.kept.push(entry);
        }
    }

    /// The kept entries, in listing order.
    pub fn into_sorted(self) -> (Vec<Entry>, usize) {
        (self.kept.into_sorted_vec(), self.left_out)
    }
}

/// A listing ready to send: the page and the directory's validators.
#[derive(Debug)]
pub struct Listing {
    /// The HTML page.
    pub html: Vec<u8>,
    /// From `fstat` of the directory: its `Last-Modified`.
    pub info: FileInfo,
}

/// Writes the page listing `entries` (in listing order) of the directory
/// at `path` (relative to the root, no leading `/`; empty for the root)
/// into `out`; `left_out` entries were not kept.
pub fn render(path: &[u8], entries: &[Entry], left_out: usize, out: &mut Vec<u8>) {
    let mut title = String::from("Index of /");
    if !path.is_empty() {
        escape_into(&mut title, path);
        title.push('/');
    }
    let mut page = String::with_capacity(1024 + entries.len() * 160);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(page, "<title>{title}</title>");
    page.push_str(STYLE);
    let _ = write!(page, "</head>\n<body>\n<h1>{title}</h1>\n<table>\n");
    page.push_str(
        "<thead><tr><th>Name</th><th class=\"s\">Size</th><th class=\"s\">Bytes</th>\
         <th>Modified (UTC)</th></tr></thead>\n<tbody>\n",
    );
    if !path.is_empty() {
        page.push_str("<tr><td class=\"n\"><a href=\"../\">../</a></td><td></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        row(&mut page, e);
    }
    page.push_str("</tbody>\n</table>\n");
    if left_out > 0 {
        let _ = writeln!(
            page,
            "<p class=\"more\">{left_out} more {} not listed (a listing shows at most {MAX_ENTRIES}).</p>",
            if left_out == 1 { "entry" } else { "entries" }
        );
    }
    page.push_str("</body>\n</html>\n");
    out.clear();
    out.extend_from_slice(page.as_bytes());
}

/// Enough style to read well in a browser; none of it is needed to read
/// the page with curl, where each entry is one line.
const STYLE: &str = "<style>\n\
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:64em;padding:0 1em;color:#222}\n\
h1{font-size:1.4em;font-weight:600;word-break:break-all}\n\
table{border-collapse:collapse;width:100%}\n\
th,td{padding:.3em .8em;text-align:left;white-space:nowrap}\n\
th{border-bottom:2px solid #ddd;font-weight:600}\n\
td.n{white-space:normal;word-break:break-all;width:100%}\n\
.s{text-align:right;font-variant-numeric:tabular-nums}\n\
tbody tr:nth-child(even){background:#f5f5f5}\n\
a{color:#0645ad;text-decoration:none}a:hover{text-decoration:underline}\n\
.more{color:#666}\n\
</style>\n";

/// One table row.
fn row(page: &mut String, e: &Entry) {
    let slash = if e.is_dir { "/" } else { "" };
    page.push_str("<tr><td class=\"n\"><a href=\"");
    // The raw bytes, so that a name that is not UTF-8 still links to itself.
    page.extend(percent_encode(&e.name, LINK));
    let _ = write!(page, "{slash}\">");
    escape_into(page, &e.name);
    let _ = write!(page, "{slash}</a></td>");
    match e.len {
        Some(len) => {
            let _ = write!(page, "<td class=\"s\">{}</td><td class=\"s\">{len}</td>", human(len));
        }
        None => page.push_str("<td class=\"s\">-</td><td class=\"s\">-</td>"),
    }
    page.push_str("<td>");
    if let Some(t) = e.modified {
        page.push_str(&utc(t));
    }
    page.push_str("</td></tr>\n");
}

/// `bytes` as text (invalid UTF-8 shown as U+FFFD), HTML-escaped.
fn escape_into(out: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// A size in binary units with one decimal (`1.5 KiB`); bytes below 1 KiB.
fn human(len: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if len < 1024 {
        return format!("{len} B");
    }
    let mut value = len as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `t` as `YYYY-MM-DD HH:MM:SS` in UTC (times before 1970 as 1970).
fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil::from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn file(name: &str, len: u64) -> Entry {
        Entry { name: name.as_bytes().to_vec(), is_dir: false, len: Some(len), modified: None }
    }

    fn dir(name: &str) -> Entry {
        Entry { name: name.as_bytes().to_vec(), is_dir: true, len: None, modified: None }
    }

    fn page(path: &str, entries: &[Entry], left_out: usize) -> String {
        let mut out = b"stale".to_vec();
        render(path.as_bytes(), entries, left_out, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn directories_first_then_by_name() {
        let mut sel = Selection::new(10);
        for e in [file("b.txt", 1), dir("zeta"), file("A.txt", 1), dir("alpha"), file("a.txt", 1)] {
            sel.offer(e);
        }
        let (kept, left_out) = sel.into_sorted();
        let names: Vec<&[u8]> = kept.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"alpha"[..], b"zeta", b"A.txt", b"a.txt", b"b.txt"]);
        assert_eq!(left_out, 0);
    }

    #[test]
    fn selection_keeps_the_first_entries_and_counts_the_rest() {
        let mut sel = Selection::new(3);
        for i in (0..100).rev() {
            sel.offer(file(&format!("f{i:03}"), i));
        }
        sel.offer(dir("late-dir"));
        let (kept, left_out) = sel.into_sorted();
        let names: Vec<String> = kept.iter().map(|e| String::from_utf8_lossy(&e.name).into_owned()).collect();
        assert_eq!(names, ["late-dir", "f000", "f001"]);
        assert_eq!(left_out, 98);
    }

    #[test]
    fn a_hundred_thousand_entries_never_hold_more_than_the_cap() {
        const OFFERED: usize = 100_000;
        let mut sel = Selection::new(MAX_ENTRIES);
        let mut all = Vec::with_capacity(OFFERED);
        // 7919 is prime to OFFERED, so this visits every number once, in
        // no listing order: late entries must displace kept ones.
        for i in 0..OFFERED {
            let n = i * 7919 % OFFERED;
            let e = if n.is_multiple_of(7) { dir(&format!("d{n:06}")) } else { file(&format!("f{n:06}"), 1) };
            all.push(e.clone());
            sel.offer(e);
            // Bounded all along, not cut down at the end.
            assert!(sel.kept.len() <= MAX_ENTRIES && sel.kept.capacity() <= 2 * MAX_ENTRIES, "after {i}");
        }
        all.sort();
        all.truncate(MAX_ENTRIES);
        let (kept, left_out) = sel.into_sorted();
        assert_eq!(left_out, OFFERED - MAX_ENTRIES);
        assert!(kept == all, "the first {MAX_ENTRIES} in listing order, sorted");
    }

    #[test]
    fn dotfiles_are_not_listed() {
        for (name, listed) in
            [(&b"."[..], false), (b"..", false), (b".git", false), (b"a.b", true), (b"", false)]
        {
            assert_eq!(Selection::lists(name), listed, "{name:?}");
        }
    }

    #[test]
    fn names_are_escaped_in_text_and_encoded_in_links() {
        let evil =
            Entry { name: b"<b>&\"x' y:z?#%.txt\xff".to_vec(), is_dir: false, len: Some(3), modified: None };
        let p = page("sub/<dir>", &[dir("d e"), evil], 0);
        assert!(p.contains("<title>Index of /sub/&lt;dir&gt;/</title>"), "{p}");
        assert!(p.contains("<a href=\"d%20e/\">d e/</a>"), "{p}");
        assert!(
            p.contains(
                "<a href=\"%3Cb%3E%26%22x%27%20y%3Az%3F%23%25.txt%FF\">&lt;b&gt;&amp;&quot;x&#39; y:z?#%.txt\u{fffd}</a>"
            ),
            "{p}"
        );
        assert!(!p.contains("<b>"), "{p}");
        assert!(p.contains("<a href=\"../\">../</a>"), "a link to the parent: {p}");
        assert!(!p.contains("stale"));
    }

    #[test]
    fn the_root_has_no_parent_link_and_rows_are_one_line_each() {
        let mut e = file("a.bin", 1536);
        e.modified = Some(UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        let p = page("", &[e], 0);
        assert!(p.contains("<title>Index of /</title>"));
        assert!(!p.contains("../"));
        let row = p.lines().find(|l| l.contains("a.bin")).unwrap();
        assert_eq!(
            row,
            "<tr><td class=\"n\"><a href=\"a.bin\">a.bin</a></td><td class=\"s\">1.5 KiB</td>\
             <td class=\"s\">1536</td><td>2020-09-13 12:26:40</td></tr>"
        );
    }

    #[test]
    fn left_out_entries_are_announced() {
        let p = page("", &[file("a", 1)], 90_000);
        assert!(p.contains("90000 more entries not listed (a listing shows at most 10000)."), "{p}");
        assert!(!page("", &[], 0).contains("not listed"));
    }

    #[test]
    fn sizes_and_dates() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(5 * 1024 * 1024 + 1), "5.0 MiB");
        assert_eq!(human(u64::MAX), "16.0 EiB");
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00");
        assert_eq!(utc(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29 00:00:00");
        assert_eq!(utc(UNIX_EPOCH + Duration::from_secs(253_402_300_799)), "9999-12-31 23:59:59");
    }
}
