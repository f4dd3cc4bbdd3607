//! Calendar dates from day counts, without a time-zone database: a chrooted
//! child cannot read one, and listings and logs are in UTC anyway.
//!
//! Runs in: child (listings, access-log lines) and parent (its own lines,
//! certificate dates).
//! Pure.

/// The proleptic Gregorian `(year, month 1-12, day 1-31)` of the day `days`
/// days after 1970-01-01 (negative before it).
pub fn from_days(days: i64) -> (i64, u32, u32) {
    // [->] Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // [<-]
    (year, month as u32, day as u32)
}

/// The day count since 1970-01-01 of the proleptic Gregorian date
/// `year`, `month` (1-12), `day` (1-31): the inverse of `from_days`.
pub fn to_days(year: i64, month: u32, day: u32) -> i64 {
    // [->] Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // [<-]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::{from_days, to_days};

    #[test]
    fn days_round_trip() {
        for days in [-1, 0, 11_016, 2_932_896, 20_000] {
            let (y, m, d) = from_days(days);
            assert_eq!(to_days(y, m, d), days);
        }
    }

    #[test]
    fn known_days() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(from_days(11_016), (2000, 2, 29));
        assert_eq!(from_days(-1), (1969, 12, 31));
        assert_eq!(from_days(2_932_896), (9999, 12, 31));
    }
}
