//! Time conversions between the CRI (nanoseconds since the epoch as i64) and
//! the containerd task API (protobuf `Timestamp`). RFC 3339 text is the
//! contract's (`crio_contract::time`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

/// Nanoseconds since the Unix epoch, the unit CRI timestamps use; 0 before it.
pub fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The current time in CRI nanoseconds.
pub fn now_nanos() -> i64 {
    unix_nanos(SystemTime::now())
}

/// A task-API timestamp as CRI nanoseconds (0 for an unset timestamp).
pub fn timestamp_to_nanos(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(ts.nanos))
}

/// CRI nanoseconds as a task-API timestamp.
pub fn nanos_to_timestamp(nanos: i64) -> Timestamp {
    let d = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    let mut ts = Timestamp::new();
    ts.seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(d.subsec_nanos()).unwrap_or(0);
    ts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let n = 1_700_000_000_123_456_789;
        let ts = nanos_to_timestamp(n);
        assert_eq!(ts.seconds, 1_700_000_000);
        assert_eq!(ts.nanos, 123_456_789);
        assert_eq!(timestamp_to_nanos(&ts), n);
        assert_eq!(nanos_to_timestamp(-5).seconds, 0);
    }

    #[test]
    fn before_epoch_is_zero() {
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(now_nanos() > 0);
    }
}
