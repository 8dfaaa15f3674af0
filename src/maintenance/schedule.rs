//! When a maintenance window is open (DESIGN §10), pure: a one-off `[startsAt, endsAt)`, or
//! the occurrences of an RFC 5545 RRULE, each `durationSeconds` long, in UTC or a named time
//! zone (so a weekly 02:00 in Europe/Berlin stays at 02:00 local across daylight saving).
//!
//! The RRULE is evaluated by the `rrule` crate, from `startsAt` as DTSTART. Its iterator walks
//! from DTSTART, so rules more frequent than hourly are refused: a maintenance window every
//! few minutes is not maintenance, and their walk would grow with the rule's age.

use chrono::{DateTime, TimeDelta, Utc};
use rrule::{Frequency, RRule, RRuleSet, Tz, Unvalidated};

/// The longest recurring window: a week (longer is a one-off window).
pub const MAX_DURATION_SECONDS: i64 = 7 * 24 * 3600;

/// Occurrences looked at in one query: far more than any sensible rule has in the spans
/// queried (a window's duration, or the 90 days of the status page at hourly frequency).
const QUERY_LIMIT: u16 = 4096;

/// Why a schedule was refused. Each is a 422 at the API, on the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("endsAt must be after startsAt")]
    EndsBeforeStart,
    #[error("not a valid RFC 5545 RRULE: {0}")]
    InvalidRrule(String),
    #[error("the rule must not repeat more often than hourly")]
    TooFrequent,
    #[error("the rule must not carry its own DTSTART: startsAt is the start")]
    Dtstart,
    #[error("durationSeconds must be between 1 and {MAX_DURATION_SECONDS}")]
    InvalidDuration,
    #[error("not an IANA time zone name, such as Europe/Berlin or UTC")]
    UnknownTimeZone,
}

/// One opening of a window: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Occurrence {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// A window's openings.
#[derive(Debug, Clone)]
pub enum Schedule {
    Once(Occurrence),
    /// Boxed: a rule set is ten times the size of a one-off window.
    Recurring {
        set: Box<RRuleSet>,
        duration: TimeDelta,
    },
}

/// The time zone of a name; `UTC` (and an absent name) is UTC.
pub fn time_zone(name: &str) -> Result<chrono_tz::Tz, ScheduleError> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| ScheduleError::UnknownTimeZone)
}

impl Schedule {
    pub fn once(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<Self, ScheduleError> {
        if ends_at <= starts_at {
            return Err(ScheduleError::EndsBeforeStart);
        }
        Ok(Schedule::Once(Occurrence {
            start: starts_at,
            end: ends_at,
        }))
    }

    /// `rule` is the RRULE's value (`FREQ=WEEKLY;BYDAY=SU;BYHOUR=2`; an `RRULE:` prefix is
    /// allowed), evaluated in `zone` from `starts_at`.
    pub fn recurring(
        starts_at: DateTime<Utc>,
        rule: &str,
        duration_seconds: i64,
        zone: &str,
    ) -> Result<Self, ScheduleError> {
        if !(1..=MAX_DURATION_SECONDS).contains(&duration_seconds) {
            return Err(ScheduleError::InvalidDuration);
        }
        let zone: Tz = time_zone(zone)?.into();
        let rule = rule.trim();
        let rule = rule.strip_prefix("RRULE:").unwrap_or(rule);
        if rule.contains('\n') || rule.to_ascii_uppercase().contains("DTSTART") {
            return Err(ScheduleError::Dtstart);
        }
        let parsed: RRule<Unvalidated> = rule
            .parse()
            .map_err(|e: rrule::RRuleError| ScheduleError::InvalidRrule(e.to_string()))?;
        if matches!(parsed.get_freq(), Frequency::Minutely | Frequency::Secondly) {
            return Err(ScheduleError::TooFrequent);
        }
        let set = parsed
            .build(starts_at.with_timezone(&zone))
            .map_err(|e| ScheduleError::InvalidRrule(e.to_string()))?;
        Ok(Schedule::Recurring {
            set: Box::new(set),
            duration: TimeDelta::seconds(duration_seconds),
        })
    }

    /// The occurrences that overlap `[from, to)`, in start order (at most a few thousand).
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Occurrence> {
        match self {
            Schedule::Once(once) => {
                if once.start < to && from < once.end {
                    vec![*once]
                } else {
                    Vec::new()
                }
            }
            Schedule::Recurring { set, duration } => {
                let zone = set.get_dt_start().timezone();
                // Openings that started up to one duration before `from` still overlap it.
                let after = (from - *duration).with_timezone(&zone);
                let before = to.with_timezone(&zone);
                RRuleSet::clone(set)
                    .after(after)
                    .before(before)
                    .all(QUERY_LIMIT)
                    .dates
                    .into_iter()
                    .map(|start| {
                        let start = start.with_timezone(&Utc);
                        Occurrence {
                            start,
                            end: start + *duration,
                        }
                    })
                    .filter(|o| o.start < to && from < o.end)
                    .collect()
            }
        }
    }

    /// The opening `at` falls in, if any (the latest one, should two overlap).
    pub fn open_at(&self, at: DateTime<Utc>) -> Option<Occurrence> {
        self.between(at, at + TimeDelta::microseconds(1))
            .into_iter()
            .rfind(|o| o.contains(at))
    }

    /// The first opening that starts after `at`, looking at most `horizon` ahead.
    pub fn next_after(&self, at: DateTime<Utc>, horizon: TimeDelta) -> Option<Occurrence> {
        self.between(at, at + horizon)
            .into_iter()
            .find(|o| o.start > at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_one_off_window_is_open_from_its_start_to_before_its_end() {
        let window =
            Schedule::once(at("2026-06-01T10:00:00Z"), at("2026-06-01T12:00:00Z")).unwrap();
        let cases = [
            ("2026-06-01T09:59:59Z", false),
            ("2026-06-01T10:00:00Z", true),
            ("2026-06-01T11:59:59Z", true),
            ("2026-06-01T12:00:00Z", false),
        ];
        for (time, open) in cases {
            assert_eq!(window.open_at(at(time)).is_some(), open, "{time}");
        }
        assert_eq!(
            Schedule::once(at("2026-06-01T10:00:00Z"), at("2026-06-01T10:00:00Z")).unwrap_err(),
            ScheduleError::EndsBeforeStart
        );
    }

    /// A daily 01:00–02:00 in Europe/Berlin is 00:00–01:00 UTC in winter and 23:00–00:00 UTC
    /// in summer: the rule follows local time across the change of 29 March 2026.
    #[test]
    fn a_recurring_window_keeps_local_time_across_daylight_saving() {
        let window = Schedule::recurring(
            at("2026-03-20T00:00:00Z"),
            "FREQ=DAILY;BYHOUR=1;BYMINUTE=0;BYSECOND=0",
            3600,
            "Europe/Berlin",
        )
        .unwrap();
        let cases = [
            // Winter (CET, UTC+1).
            ("2026-03-27T00:30:00Z", true),
            ("2026-03-27T23:30:00Z", false),
            ("2026-03-28T00:00:00Z", true),
            // Summer (CEST, UTC+2) from 29 March 01:00 UTC.
            ("2026-03-29T23:30:00Z", true),
            ("2026-03-30T00:30:00Z", false),
            ("2026-03-30T23:00:00Z", true),
        ];
        for (time, open) in cases {
            assert_eq!(window.open_at(at(time)).is_some(), open, "{time}");
        }
        let next = window
            .next_after(at("2026-03-29T12:00:00Z"), TimeDelta::days(2))
            .unwrap();
        assert_eq!(next.start, at("2026-03-29T23:00:00Z"));
        assert_eq!(next.end, at("2026-03-30T00:00:00Z"));
        // Across the change, each local day has exactly one opening: 25 March to 2 April
        // local (2 April's opens at 23:00 UTC on the 1st, inside the range).
        let openings = window.between(at("2026-03-25T00:00:00Z"), at("2026-04-02T00:00:00Z"));
        assert_eq!(openings.len(), 9, "{openings:?}");
        assert!(openings
            .windows(2)
            .all(|pair| pair[1].start - pair[0].start <= TimeDelta::hours(24)));
    }

    #[test]
    fn the_readme_example_is_a_weekly_sunday_window_in_utc() {
        let window = Schedule::recurring(
            at("2026-01-04T02:00:00Z"),
            "RRULE:FREQ=WEEKLY;BYDAY=SU;BYHOUR=2",
            7200,
            "UTC",
        )
        .unwrap();
        // Sunday 6 December 2026, 02:00–04:00 UTC.
        assert!(window.open_at(at("2026-12-06T03:59:00Z")).is_some());
        assert!(window.open_at(at("2026-12-06T04:00:00Z")).is_none());
        assert!(window.open_at(at("2026-12-05T03:00:00Z")).is_none());
    }

    #[test]
    fn bad_rules_are_refused_with_their_reason() {
        let start = at("2026-01-01T00:00:00Z");
        use std::mem::discriminant;
        let rrule = ScheduleError::InvalidRrule(String::new());
        let cases = [
            ("FREQ=WEEKLY", 0, "UTC", ScheduleError::InvalidDuration),
            (
                "FREQ=WEEKLY",
                3600,
                "Mars/Olympus",
                ScheduleError::UnknownTimeZone,
            ),
            ("FREQ=MINUTELY", 60, "UTC", ScheduleError::TooFrequent),
            ("FREQ=FORTNIGHTLY", 60, "UTC", rrule),
            (
                "DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY",
                60,
                "UTC",
                ScheduleError::Dtstart,
            ),
            (
                "FREQ=DAILY",
                MAX_DURATION_SECONDS + 1,
                "UTC",
                ScheduleError::InvalidDuration,
            ),
        ];
        for (rule, duration, zone, expected) in cases {
            let error = Schedule::recurring(start, rule, duration, zone).unwrap_err();
            assert_eq!(
                discriminant(&error),
                discriminant(&expected),
                "{rule}: {error:?}"
            );
        }
    }
}
