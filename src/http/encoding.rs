//! Precompressed siblings: which of `FILE.br`, `FILE.zst` and `FILE.gz` a
//! client's `Accept-Encoding` lets us send, in the order to try them.
//!
//! Runs in: child (pure, no allocation). RFC 9110 12.5.3: each coding's
//! weight is its own entry's `q`, else that of `*`, else 0 (not
//! acceptable); `q=0` means "not acceptable". `identity` is acceptable
//! unless excluded (`identity;q=0`, or `*;q=0` with no `identity` entry),
//! and a coding weighted below identity (as named, or through `*`) is not
//! preferred to it. Among
//! equal weights the server's preference decides: br, then zstd, then
//! gzip (smallest first). Nothing is compressed at request time.

/// A content coding we serve from a precompressed sibling file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// Brotli: `FILE.br`.
    Br,
    /// Zstandard: `FILE.zst`.
    Zstd,
    /// Gzip: `FILE.gz`.
    Gzip,
}

impl Coding {
    /// Every coding, in the server's order of preference.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The `Content-Encoding` value.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// What the sibling's name adds to the file's.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Zstd => ".zst",
            Coding::Gzip => ".gz",
        }
    }

    fn matches(self, token: &[u8]) -> bool {
        token.eq_ignore_ascii_case(self.token().as_bytes())
            // RFC 9110 8.4.1.3: a recipient should treat x-gzip as gzip.
            || (self == Coding::Gzip && token.eq_ignore_ascii_case(b"x-gzip"))
    }
}

/// The codings to try, best first (at most one of each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    list: [Option<Coding>; 3],
}

impl Candidates {
    /// The codings in the order to try them.
    pub fn iter(&self) -> impl Iterator<Item = Coding> + '_ {
        self.list.iter().map_while(|c| *c)
    }

    /// Whether no coding is to be tried.
    pub fn is_empty(&self) -> bool {
        self.list[0].is_none()
    }
}

/// A weight in thousandths (`q=0.5` is 500); `None` for an invalid one.
fn qvalue(v: &[u8]) -> Option<u16> {
    // RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The codings `accept_encoding` (the field's value; `None` when absent)
/// lets us send, best first. No field means identity only.
pub fn candidates(accept_encoding: Option<&[u8]>) -> Candidates {
    let Some(value) = accept_encoding else {
        return Candidates::default();
    };
    let mut own: [Option<u16>; 3] = [None; 3];
    let (mut star, mut identity) = (None, None);
    for element in value.split(|&b| b == b',') {
        let mut parts = element.split(|&b| b == b';');
        let token = parts.next().unwrap_or_default().trim_ascii();
        if token.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let param = param.trim_ascii();
            if let Some(v) = param.strip_prefix(b"q=").or_else(|| param.strip_prefix(b"Q=")) {
                q = qvalue(v.trim_ascii());
            }
        }
        // An element with an invalid weight says nothing we can trust.
        let Some(q) = q else { continue };
        if token == b"*" {
            star = Some(q);
        } else if token.eq_ignore_ascii_case(b"identity") {
            identity = Some(q);
        } else if let Some(i) = Coding::ALL.iter().position(|c| c.matches(token)) {
            own[i] = Some(q);
        }
    }
    // Unnamed, identity is acceptable but weighs nothing against a coding.
    let identity = identity.or(star).unwrap_or(0);
    let mut weighted: [(u16, Option<Coding>); 3] = [(0, None); 3];
    for (i, coding) in Coding::ALL.into_iter().enumerate() {
        let q = own[i].or(star).unwrap_or(0);
        if q > 0 && q >= identity {
            weighted[i] = (q, Some(coding));
        }
    }
    // Stable: equal weights keep the server's order.
    weighted.sort_by_key(|w| std::cmp::Reverse(w.0));
    let mut out = Candidates::default();
    for (slot, (_, coding)) in out.list.iter_mut().zip(weighted.iter().filter(|w| w.1.is_some())) {
        *slot = *coding;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::{Br, Gzip, Zstd};

    #[test]
    fn accept_encoding_table() {
        let table: &[(Option<&str>, &[Coding])] = &[
            (None, &[]),
            (Some(""), &[]),
            (Some("gzip"), &[Gzip]),
            (Some("x-gzip"), &[Gzip]),
            (Some("GZIP, BR"), &[Br, Gzip]),
            (Some("gzip, deflate, br, zstd"), &[Br, Zstd, Gzip]),
            (Some("gzip;q=1.0, br;q=0.5"), &[Gzip, Br]),
            (Some("br;q=0, gzip"), &[Gzip]),
            (Some("br;q=0.000, gzip;q=0.001"), &[Gzip]),
            (Some("*"), &[Br, Zstd, Gzip]),
            (Some("*;q=0.5, br;q=0"), &[Zstd, Gzip]),
            (Some("*;q=0"), &[]),
            (Some("identity"), &[]),
            // A coding weighted below identity is not preferred to it.
            (Some("gzip;q=0.5, identity"), &[]),
            (Some("gzip;q=0.5, identity;q=0.5"), &[Gzip]),
            (Some("gzip;q=0.5, *;q=0.2"), &[Gzip, Br, Zstd]),
            (Some("br;q=0.1"), &[Br]),
            (Some("gzip;q=0.5, identity;q=0"), &[Gzip]),
            // Invalid weights drop their element.
            (Some("gzip;q=2, br"), &[Br]),
            (Some("gzip;q=0.5555, br;q=abc"), &[]),
            (Some("gzip ; Q=0.7 , zstd;q=0.8"), &[Zstd, Gzip]),
            (Some("compress, deflate"), &[]),
            (Some(" , ,br"), &[Br]),
        ];
        for (value, want) in table {
            let got: Vec<Coding> = candidates(value.map(str::as_bytes)).iter().collect();
            assert_eq!(got, *want, "Accept-Encoding: {value:?}");
        }
        assert!(candidates(None).is_empty());
    }

    #[test]
    fn qvalues() {
        for (v, q) in [
            ("0", Some(0)),
            ("1", Some(1000)),
            ("0.5", Some(500)),
            ("0.123", Some(123)),
            ("1.000", Some(1000)),
        ] {
            assert_eq!(qvalue(v.as_bytes()), q, "{v}");
        }
        for v in ["", "1.5", "2", "0.1234", ".5", "0.x", "-1"] {
            assert_eq!(qvalue(v.as_bytes()), None, "{v}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(Coding::ALL.map(Coding::token), ["br", "zstd", "gzip"]);
        assert_eq!(Coding::ALL.map(Coding::suffix), [".br", ".zst", ".gz"]);
    }
}
