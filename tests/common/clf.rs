//! Parsing Combined Log Format access-log lines.

use super::dates::{MONTHS, days_from_civil};

#[derive(Debug, Clone)]
pub struct ClfLine {
    pub host: String,
    pub ident: String,
    pub user: String,
    pub time: String,
    pub request: String,
    pub status: u16,
    pub bytes: String,
    pub referer: String,
    pub user_agent: String,
}

fn take_token(s: &str) -> Option<(&str, &str)> {
    let i = s.find(' ')?;
    Some((&s[..i], &s[i + 1..]))
}

/// Parse a quoted string with backslash escapes; returns (content, rest).
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((out, &s[i + 1..]));
        } else {
            out.push(c);
        }
    }
    None
}

/// Parse a complete Combined Log Format line (the whole line must match).
pub fn parse_clf(line: &str) -> Option<ClfLine> {
    let (host, rest) = take_token(line)?;
    let (ident, rest) = take_token(rest)?;
    let (user, rest) = take_token(rest)?;
    let rest = rest.strip_prefix('[')?;
    let close = rest.find(']')?;
    let time = &rest[..close];
    let rest = rest[close + 1..].strip_prefix(' ')?;
    let (request, rest) = take_quoted(rest)?;
    let rest = rest.strip_prefix(' ')?;
    let (status, rest) = take_token(rest)?;
    let (bytes, rest) = take_token(rest)?;
    let (referer, rest) = take_quoted(rest)?;
    let rest = rest.strip_prefix(' ')?;
    let (user_agent, rest) = take_quoted(rest)?;
    if !rest.is_empty() || host.is_empty() {
        return None;
    }
    let status: u16 = status.parse().ok()?;
    if !(100..=599).contains(&status) {
        return None;
    }
    if bytes != "-" && bytes.parse::<u64>().is_err() {
        return None;
    }
    parse_clf_time(time)?;
    Some(ClfLine {
        host: host.into(),
        ident: ident.into(),
        user: user.into(),
        time: time.into(),
        request,
        status,
        bytes: bytes.into(),
        referer,
        user_agent,
    })
}

/// Parse `26/Nov/2026:17:39:36 +0000` into seconds since the epoch (UTC).
pub fn parse_clf_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let d: u32 = t.get(0..2)?.parse().ok()?;
    let m = MONTHS.iter().position(|x| *x == t.get(3..6).unwrap_or(""))? as u32 + 1;
    let y: i64 = t.get(7..11)?.parse().ok()?;
    let hms: Vec<&str> = t.get(12..20)?.split(':').collect();
    if hms.len() != 3 || hms.iter().any(|x| x.len() != 2) {
        return None;
    }
    let (hh, mm, ss): (i64, i64, i64) = (hms[0].parse().ok()?, hms[1].parse().ok()?, hms[2].parse().ok()?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let oh: i64 = t.get(22..24)?.parse().ok()?;
    let om: i64 = t.get(24..26)?.parse().ok()?;
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 || om > 59 {
        return None;
    }
    let local = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
    Some(local - sign * (oh * 3600 + om * 60))
}
