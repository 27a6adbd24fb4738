//! RFC 3339 times, the form CRI log lines and `crioctl logs --since` use:
//! written with nanoseconds in UTC, read with any fraction and offset.

use std::time::{SystemTime, UNIX_EPOCH};

const NANOS: i64 = 1_000_000_000;
const DAY: i64 = 86_400;

/// Days since the epoch of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month, day) of a day since the epoch.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `t` as RFC 3339 with nanoseconds in UTC
/// (`2023-11-14T22:13:20.123456789Z`); times before the epoch as the epoch.
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(DAY), secs.rem_euclid(DAY));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Nanoseconds since the epoch of an RFC 3339 time
/// (`2006-01-02T15:04:05.999999999Z`, or with a `+07:00` offset); None
/// when `text` is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let (nanos, rest) = fraction(text.get(19..)?)?;
    let offset = offset_seconds(rest)?;
    let secs =
        days_from_civil(year, month, day) * DAY + hour * 3600 + minute * 60 + second - offset;
    secs.checked_mul(NANOS)?.checked_add(nanos)
}

/// The nanoseconds of an optional `.digits` fraction, and what follows it.
fn fraction(text: &str) -> Option<(i64, &str)> {
    let Some(frac) = text.strip_prefix('.') else {
        return Some((0, text));
    };
    let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let nanos = frac[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
    Some((nanos, &frac[digits..]))
}

/// The offset from UTC of `Z` or `±HH:MM`, in seconds.
fn offset_seconds(text: &str) -> Option<i64> {
    if matches!(text, "Z" | "z") {
        return Some(0);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = text[1..].split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    #[test]
    fn formats_with_nanoseconds_in_utc() {
        assert_eq!(
            format_rfc3339(at(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert!(format_rfc3339(at(951_782_400_000_000_000)).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn parses_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20.5+02:00"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T21:43:20.000001-00:30"),
            Some(1_700_000_000_000_001_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14 22:13:20z"),
            Some(1_700_000_000 * NANOS)
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20.1234567891Z",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20+0a:00",
            "2023-11-14T22:13:20Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn leap_years_and_round_trips() {
        // 2000 is a leap year, 1900 and 2100 are not.
        let feb29 = parse_rfc3339("2000-02-29T00:00:00Z").unwrap();
        assert_eq!(feb29, 951_782_400 * NANOS);
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z").unwrap() - feb29,
            DAY * NANOS
        );
        assert_eq!(
            parse_rfc3339("2100-03-01T00:00:00Z").unwrap()
                - parse_rfc3339("2100-02-28T00:00:00Z").unwrap(),
            DAY * NANOS
        );
        assert_eq!(
            civil_from_days(days_from_civil(1900, 3, 1) - 1),
            (1900, 2, 28)
        );
        for days in [0, 59, 365, 10_956, 11_016, 47_541, 2_932_896] {
            assert_eq!(days_from_civil_tuple(civil_from_days(days)), days);
        }
        for nanos in [
            0,
            1,
            999_999_999,
            1_700_000_000_123_456_789,
            4_102_444_800 * 1_000_000_000,
        ] {
            assert_eq!(
                parse_rfc3339(&format_rfc3339(at(nanos))),
                Some(nanos as i64)
            );
        }
    }

    fn days_from_civil_tuple((y, m, d): (i64, i64, i64)) -> i64 {
        days_from_civil(y, m, d)
    }
}
