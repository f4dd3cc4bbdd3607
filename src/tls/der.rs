//! The one field of a certificate that rustls does not hand out: when it
//! stops being valid (`notAfter`), read from the DER by walking the few
//! elements in front of it, rather than pulling in a whole X.509 parser.
//!
//! Runs in: parent, when certificates are loaded. Pure.

use std::time::{Duration, SystemTime};

use crate::http::civil;

/// The end of `cert`'s validity (its `notAfter`), or `None` if `cert` is
/// not a certificate this walk can read.
///
/// ```text
/// Certificate    ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
/// TBSCertificate ::= SEQUENCE { version [0] EXPLICIT OPTIONAL, serialNumber INTEGER,
///                               signature AlgorithmIdentifier, issuer Name,
///                               validity SEQUENCE { notBefore Time, notAfter Time }, ... }
/// ```
pub fn not_after(cert: &[u8]) -> Option<SystemTime> {
    let (SEQUENCE, cert, _) = element(cert)? else { return None };
    let (SEQUENCE, tbs, _) = element(cert)? else { return None };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == VERSION {
        rest = element(rest)?.2; // the serial number follows the version
    }
    let rest = element(rest)?.2; // signature algorithm
    let rest = element(rest)?.2; // issuer
    let (SEQUENCE, validity, _) = element(rest)? else { return None };
    let not_before_rest = element(validity)?.2;
    let (tag, time, _) = element(not_before_rest)?;
    parse_time(tag, time)
}

const SEQUENCE: u8 = 0x30;
/// `[0]` constructed: the explicit version of a v2 or v3 certificate.
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The first element of `input`: its tag, its content, and what follows.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count].iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A `UTCTime` (`YYMMDDHHMMSSZ`, years 1950 to 2049) or `GeneralizedTime`
/// (`YYYYMMDDHHMMSSZ`), the forms RFC 5280 4.1.2.5 allows.
fn parse_time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let digits = text.strip_suffix(b"Z")?;
    let (year, rest) = match tag {
        UTC_TIME if digits.len() == 12 => {
            let yy = number(&digits[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        GENERALIZED_TIME if digits.len() == 14 => (number(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| number(&rest[i..i + 2]);
    let (month, day) = (u32::try_from(field(0)?).ok()?, u32::try_from(field(2)?).ok()?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = civil::to_days(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    let secs = u64::try_from(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// A run of ASCII digits as a number.
fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(not_after: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["example.org".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_end_of_validity_in_both_time_forms() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050 on.
        for (date, days) in
            [((2030, 6, 15), civil::to_days(2030, 6, 15)), ((2051, 1, 2), civil::to_days(2051, 1, 2))]
        {
            let got = not_after(&minted(date)).expect("a readable certificate");
            assert_eq!(got, SystemTime::UNIX_EPOCH + Duration::from_secs(days as u64 * 86_400), "{date:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_certificate() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(b"\x30\x03\x02\x01\x00"), None);
        let mut cut = minted((2030, 1, 1));
        cut.truncate(60);
        assert_eq!(not_after(&cut), None);
        assert_eq!(parse_time(UTC_TIME, b"301301000000Z"), None, "month 13");
    }
}
