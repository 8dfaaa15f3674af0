//! Time arithmetic of the history: buckets of an hour or a day, the microsecond precision
//! both databases store, and the bounds no check time reaches.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

pub(super) const HOUR: TimeDelta = TimeDelta::hours(1);
pub(super) const DAY: TimeDelta = TimeDelta::days(1);

/// `duration` before `time`, saturating at the earliest time either database holds.
pub(super) fn ago(time: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|duration| time.checked_sub_signed(duration))
        .map_or(EARLIEST, |earlier| earlier.max(EARLIEST))
}

/// Bounds no check time reaches, inside PostgreSQL's timestamptz range.
pub(super) const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;
/// 9999-12-31T23:59:59Z.
pub(super) fn latest_time() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The precision both databases store.
pub(super) fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

pub(super) fn floor_to(time: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let step = step.num_microseconds().unwrap_or(i64::MAX);
    let us = time.timestamp_micros();
    DateTime::from_timestamp_micros(us - us.rem_euclid(step)).unwrap_or(time)
}

pub(super) fn ceil_to(time: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let floor = floor_to(time, step);
    if floor == micros(time) {
        floor
    } else {
        floor + step
    }
}

pub(super) fn clamp_micros(duration: Duration) -> i32 {
    i32::try_from(duration.as_micros()).unwrap_or(i32::MAX)
}

/// A time from RFC 3339 text, for the history's unit tests.
#[cfg(test)]
pub(super) fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time)
        .unwrap()
        .with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_and_ceil() {
        let t = at("2025-03-31T12:30:00.5Z");
        assert_eq!(floor_to(t, HOUR), at("2025-03-31T12:00:00Z"));
        assert_eq!(ceil_to(t, HOUR), at("2025-03-31T13:00:00Z"));
        assert_eq!(
            ceil_to(at("2025-03-31T12:00:00Z"), HOUR),
            at("2025-03-31T12:00:00Z")
        );
        assert_eq!(floor_to(t, DAY), at("2025-03-31T00:00:00Z"));
        assert_eq!(ceil_to(t, DAY), at("2025-04-01T00:00:00Z"));
        assert_eq!(
            floor_to(at("1969-12-31T23:30:00Z"), HOUR),
            at("1969-12-31T23:00:00Z")
        );
    }
}
