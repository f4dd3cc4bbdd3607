//! Bytes made safe to write as log text: client bytes escaped and capped
//! (the access log, and client bytes quoted in daemon messages), daemon
//! messages kept to one message, and the UTC time stamp. Pure functions.
//!
//! Runs in: parent and child (whichever writes a line).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::civil;

/// Longest request line written to the access log (after escaping); the
/// rest is cut, as thttpd's `%.80s` does, so a line stays one atomic write.
pub(super) const MAX_LOGGED_REQUEST: usize = 1024;
/// Longest `Referer` and `User-Agent` written (after escaping).
pub(super) const MAX_LOGGED_HEADER: usize = 512;

/// A daemon message made safe to write as log lines, whatever bytes a
/// caller forgot to escape: control characters other than tab become
/// `\xHH`, and a message of several lines (a configuration error with its
/// context) has its later lines indented, so no part of a message can pass
/// for a message of its own.
pub(super) fn defuse(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.trim_end_matches('\n').chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push(c),
            c if c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\x{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Bytes a client chose (a path, a header), shown in a daemon message
/// escaped exactly as the access log escapes them: `"`, `\`, control and
/// non-ASCII bytes as `\xHH`, at most `MAX_LOGGED_REQUEST` bytes. A file
/// name with a newline or an ESC then cannot forge a line or drive a
/// terminal.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        escape_into(&mut out, self.0, MAX_LOGGED_REQUEST);
        // Every byte escape_into leaves raw is printable ASCII.
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// Appends `s` with `"`, `\`, control and non-ASCII bytes as `\xHH`, so a
/// client cannot forge lines or fields; stops after `max` output bytes.
pub(super) fn escape_into(out: &mut Vec<u8>, s: &[u8], max: usize) {
    let start = out.len();
    for &b in s {
        if out.len() - start >= max {
            break;
        }
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

/// Appends the time as `26/Nov/2026:17:39:36 +0000`. Always UTC: a chrooted
/// child cannot read the time zone files, and UTC logs sort and merge cleanly.
pub(super) fn clf_time(out: &mut Vec<u8>, t: SystemTime) {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil::from_days(days);
    let _ = write!(
        out,
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clf_time_known_dates() {
        let mut out = Vec::new();
        clf_time(&mut out, UNIX_EPOCH + Duration::from_secs(971_186_136));
        assert_eq!(out, b"10/Oct/2000:13:55:36 +0000");
        out.clear();
        clf_time(&mut out, UNIX_EPOCH + Duration::from_secs(1_709_210_096));
        assert_eq!(out, b"29/Feb/2024:12:34:56 +0000");
    }

    #[test]
    fn escaped_client_bytes_cannot_forge_a_line() {
        let shown = Escaped(b"a\nforkhttpd[1]: error: forged\x1b[2J\"\xff").to_string();
        assert_eq!(shown, "a\\x0Aforkhttpd[1]: error: forged\\x1B[2J\\x22\\xFF");
    }

    #[test]
    fn defused_messages_stay_one_message() {
        assert_eq!(defuse("x\ny\u{1b}\t\n"), "x\n    y\\x1B\t");
        assert_eq!(defuse("plain \"quoted\" \u{e9}"), "plain \"quoted\" \u{e9}");
    }
}
