//! Durations in Go's notation ("1h30m", "300ms", "0s"), as CRI-O writes them.

use std::time::Duration;

/// Why a duration does not parse; `text` is the whole duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing but blanks.
    #[error("empty duration")]
    Empty,
    /// A number without a unit.
    #[error("duration {text:?} lacks a unit (ns, us, ms, s, m, h)")]
    NoUnit {
        /// The duration.
        text: String,
    },
    /// A unit without a number.
    #[error("duration {text:?}: expected a number")]
    NoNumber {
        /// The duration.
        text: String,
    },
    /// Digits and dots that are not a number.
    #[error("duration {text:?}: bad number {number:?}")]
    BadNumber {
        /// The duration.
        text: String,
        /// The number.
        number: String,
    },
    /// Not one of ns, us, ms, s, m, h.
    #[error("duration {text:?}: unknown unit {unit:?}")]
    UnknownUnit {
        /// The duration.
        text: String,
        /// The unit.
        unit: String,
    },
    /// Too long for a [`Duration`].
    #[error("duration {text:?} is out of range")]
    OutOfRange {
        /// The duration.
        text: String,
    },
}

/// Parses a Go-style duration; a bare "0" is accepted as zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let whole = || text.to_string();
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| DurationError::NoUnit { text: whole() })?;
        if digits == 0 {
            return Err(DurationError::NoNumber { text: whole() });
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::BadNumber {
                text: whole(),
                number: rest[..digits].to_string(),
            })?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let seconds_per_unit = match &after[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => {
                return Err(DurationError::UnknownUnit {
                    text: whole(),
                    unit: unit.to_string(),
                });
            }
        };
        total += Duration::try_from_secs_f64(number * seconds_per_unit)
            .map_err(|_| DurationError::OutOfRange { text: whole() })?;
        rest = &after[unit_len..];
    }
    Ok(total)
}

/// Formats a duration the way Go prints it, for `crio config`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if h > 0 || m > 0 {
        out += &format!("{m}m");
    }
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        out += &format!("{s}s");
    } else if secs == 0 && nanos.is_multiple_of(1_000_000) {
        out += &format!("{}ms", nanos / 1_000_000);
    } else {
        let frac = format!("{:09}", nanos);
        out += &format!("{s}.{}s", frac.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_notation() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(
            parse_duration("10")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        assert!(
            parse_duration("5d")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0s", "1h30m0s", "5m0s", "300ms", "1.5s", "45s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
