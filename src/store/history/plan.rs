//! Planning an uptime read, pure: where each kind of history is complete
//! ([`Horizons`]), and which table covers which part of a window ([`plan`]), so that no
//! check is counted twice and as few rows as possible are read.

use chrono::{DateTime, Utc};

use super::options::HistoryOptions;
use super::time::{ago, ceil_to, micros, DAY, EARLIEST, HOUR};

/// Where each kind of history is complete, as the rollup marks and the pruning rules imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    /// Every hour before this is in `check_rollups_hourly` (`None`: nothing rolled up yet).
    pub hourly_through: Option<DateTime<Utc>>,
    /// Every day before this is in `check_rollups_daily`.
    pub daily_through: Option<DateTime<Utc>>,
    /// Raw results are all there from this time on.
    pub raw_from: DateTime<Utc>,
    /// Hourly buckets are all there from this time on.
    pub hourly_from: DateTime<Utc>,
}

impl Horizons {
    /// Pruning deletes raw results before `min(now - raw_retention, hourly_through)` and
    /// hourly buckets before `min(now - hourly_retention, daily_through)`, at some earlier
    /// `now`; so everything from those times on is still there.
    pub fn new(
        now: DateTime<Utc>,
        hourly_through: Option<DateTime<Utc>>,
        daily_through: Option<DateTime<Utc>>,
        options: &HistoryOptions,
    ) -> Self {
        let raw_from = hourly_through.map_or(EARLIEST, |through| {
            ago(now, options.raw_retention).min(through)
        });
        let hourly_from = daily_through.map_or(EARLIEST, |through| {
            ago(now, options.hourly_retention).min(through)
        });
        Horizons {
            hourly_through,
            daily_through,
            raw_from,
            hourly_from,
        }
    }
}

/// Which table a part of an uptime window is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Raw,
    Hourly,
    Daily,
}

impl Source {
    pub(super) fn table(self) -> &'static str {
        match self {
            Source::Raw => "check_results",
            Source::Hourly => "check_rollups_hourly",
            Source::Daily => "check_rollups_daily",
        }
    }

    pub(super) fn time_column(self) -> &'static str {
        match self {
            Source::Raw => "checked_at",
            Source::Hourly | Source::Daily => "bucket_start",
        }
    }

    /// `successes, failures` summed over the rows of one range, as BIGINT.
    pub(super) fn sums(self) -> &'static str {
        match self {
            Source::Raw => {
                // A check in a maintenance window counts for neither (DESIGN §10).
                "CAST(COALESCE(SUM(CASE WHEN x.outcome = 0 AND x.maintenance = 0 THEN 1 ELSE 0 \
                 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN x.outcome = 1 AND x.maintenance = 0 THEN 1 ELSE 0 \
                 END), 0) AS BIGINT)"
            }
            Source::Hourly | Source::Daily => {
                "CAST(COALESCE(SUM(x.successes), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(x.failures), 0) AS BIGINT)"
            }
        }
    }
}

/// A time range `[from, to)` read from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub source: Source,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Covers the window `[start, now)` with as few rows as possible and no check counted twice:
/// raw results from the hourly mark on; whole hours before it from the hourly rollups; whole
/// days before the hours that are still kept from the daily rollups. The partial hour (or
/// day) at the window's start is read from the raw results (or hours) while they are kept,
/// and otherwise left out: the 7-day window then starts on the hour and the 30-day window on
/// the day, at most one bucket short.
pub fn plan(start: DateTime<Utc>, now: DateTime<Utc>, horizons: &Horizons) -> Vec<Segment> {
    let start = micros(start);
    let mut segments = Vec::with_capacity(4);
    let mut push = |source, from: DateTime<Utc>, to: DateTime<Utc>| {
        if from < to {
            segments.push(Segment { source, from, to });
        }
    };
    let Some(hours_end) = horizons.hourly_through.filter(|through| start < *through) else {
        push(Source::Raw, start, now);
        return segments;
    };
    let first_hour = ceil_to(start, HOUR).min(hours_end);
    if start >= horizons.raw_from {
        push(Source::Raw, start, first_hour);
        push(Source::Hourly, first_hour, hours_end);
    } else if first_hour >= horizons.hourly_from {
        push(Source::Hourly, first_hour, hours_end);
    } else {
        // Hours before `hourly_from` may be pruned: days up to a day boundary from which
        // every hour is kept and every earlier day is rolled up.
        let days_end = horizons
            .daily_through
            .unwrap_or(EARLIEST)
            .min(ceil_to(horizons.hourly_from, DAY))
            .min(hours_end);
        push(Source::Daily, ceil_to(start, DAY), days_end);
        push(Source::Hourly, days_end.max(first_hour), hours_end);
    }
    push(Source::Raw, hours_end, now);
    segments
}

/// Several windows' plans cut into disjoint pieces, so that one statement reads each row once
/// however many windows cover it: `windows[w]` lists the pieces that make up plan `w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pieces {
    pub pieces: Vec<Segment>,
    pub windows: Vec<Vec<usize>>,
}

/// Cuts `plans` at every boundary any of them has in a source, and keeps the pieces some plan
/// covers. The windows of an uptime read are nested (1 h inside 24 h inside 7 d …), so most of
/// their rows are shared: read window by window, the newest raw results would be read four
/// times.
pub fn pieces(plans: &[Vec<Segment>]) -> Pieces {
    let mut pieces = Vec::new();
    for source in [Source::Raw, Source::Hourly, Source::Daily] {
        let segments: Vec<&Segment> = plans
            .iter()
            .flatten()
            .filter(|s| s.source == source)
            .collect();
        let mut bounds: Vec<DateTime<Utc>> = segments.iter().flat_map(|s| [s.from, s.to]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        for pair in bounds.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            if segments.iter().any(|s| s.from <= from && to <= s.to) {
                pieces.push(Segment { source, from, to });
            }
        }
    }
    let windows = plans
        .iter()
        .map(|plan| {
            (0..pieces.len())
                .filter(|&p| {
                    let piece = &pieces[p];
                    plan.iter().any(|s| {
                        s.source == piece.source && s.from <= piece.from && piece.to <= s.to
                    })
                })
                .collect()
        })
        .collect();
    Pieces { pieces, windows }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::time::at;
    use chrono::TimeDelta;

    fn segment(source: Source, from: &str, to: &str) -> Segment {
        Segment {
            source,
            from: at(from),
            to: at(to),
        }
    }

    #[test]
    fn plans_cover_each_window_once_with_the_coarsest_complete_data() {
        let now = at("2025-03-31T12:30:00Z");
        let options = HistoryOptions::default();
        let rolled = Horizons::new(
            now,
            Some(at("2025-03-31T12:00:00Z")),
            Some(at("2025-03-31T00:00:00Z")),
            &options,
        );
        use Source::*;
        let cases = [
            (
                "1h",
                HOUR,
                &rolled,
                vec![
                    segment(Raw, "2025-03-31T11:30:00Z", "2025-03-31T12:00:00Z"),
                    segment(Raw, "2025-03-31T12:00:00Z", "2025-03-31T12:30:00Z"),
                ],
            ),
            (
                "24h",
                TimeDelta::hours(24),
                &rolled,
                vec![
                    segment(Raw, "2025-03-30T12:30:00Z", "2025-03-30T13:00:00Z"),
                    segment(Hourly, "2025-03-30T13:00:00Z", "2025-03-31T12:00:00Z"),
                    segment(Raw, "2025-03-31T12:00:00Z", "2025-03-31T12:30:00Z"),
                ],
            ),
            (
                "7d",
                TimeDelta::days(7),
                &rolled,
                vec![
                    segment(Hourly, "2025-03-24T13:00:00Z", "2025-03-31T12:00:00Z"),
                    segment(Raw, "2025-03-31T12:00:00Z", "2025-03-31T12:30:00Z"),
                ],
            ),
            (
                "30d",
                TimeDelta::days(30),
                &rolled,
                vec![
                    segment(Daily, "2025-03-02T00:00:00Z", "2025-03-24T00:00:00Z"),
                    segment(Hourly, "2025-03-24T00:00:00Z", "2025-03-31T12:00:00Z"),
                    segment(Raw, "2025-03-31T12:00:00Z", "2025-03-31T12:30:00Z"),
                ],
            ),
        ];
        for (name, length, horizons, expected) in cases {
            assert_eq!(plan(now - length, now, horizons), expected, "{name}");
        }
        // Nothing rolled up yet: nothing is pruned either, the raw results cover it all.
        let fresh = Horizons::new(now, None, None, &options);
        assert_eq!(
            plan(now - TimeDelta::days(30), now, &fresh),
            vec![segment(Raw, "2025-03-01T12:30:00Z", "2025-03-31T12:30:00Z")]
        );
        // Hours rolled up but no day yet: hours are never pruned before their day is.
        let hours_only = Horizons::new(now, Some(at("2025-03-31T12:00:00Z")), None, &options);
        assert_eq!(
            plan(now - TimeDelta::days(30), now, &hours_only),
            vec![
                segment(Hourly, "2025-03-01T13:00:00Z", "2025-03-31T12:00:00Z"),
                segment(Raw, "2025-03-31T12:00:00Z", "2025-03-31T12:30:00Z"),
            ]
        );
    }

    /// Ranges sorted by source and start, adjacent ones of a source joined.
    fn merged(mut segments: Vec<Segment>) -> Vec<Segment> {
        segments.sort_by_key(|s| (s.source as u8, s.from));
        let mut out: Vec<Segment> = Vec::new();
        for s in segments {
            match out.last_mut() {
                Some(last) if last.source == s.source && last.to == s.from => last.to = s.to,
                _ => out.push(s),
            }
        }
        out
    }

    /// Every plan is exactly the union of its pieces, and no two pieces overlap: summing a
    /// window's pieces counts each of its checks once.
    #[test]
    fn pieces_partition_every_plan() {
        let options = HistoryOptions::default();
        let now = at("2025-03-31T12:30:00Z");
        let marks = [
            (None, None),
            (Some(at("2025-03-31T12:00:00Z")), None),
            (
                Some(at("2025-03-31T12:00:00Z")),
                Some(at("2025-03-31T00:00:00Z")),
            ),
            (
                Some(at("2025-03-31T11:00:00Z")),
                Some(at("2025-03-29T00:00:00Z")),
            ),
        ];
        let lengths = [
            HOUR,
            TimeDelta::hours(24),
            TimeDelta::days(7),
            TimeDelta::days(30),
        ];
        for (hourly, daily) in marks {
            let horizons = Horizons::new(now, hourly, daily, &options);
            let plans: Vec<Vec<Segment>> = lengths
                .iter()
                .map(|length| plan(now - *length, now, &horizons))
                .collect();
            let cut = pieces(&plans);
            for (a, x) in cut.pieces.iter().enumerate() {
                assert!(x.from < x.to);
                for y in &cut.pieces[a + 1..] {
                    assert!(
                        x.source != y.source || x.to <= y.from || y.to <= x.from,
                        "{x:?} overlaps {y:?}"
                    );
                }
            }
            for (plan, indices) in plans.iter().zip(&cut.windows) {
                let mine = indices.iter().map(|&i| cut.pieces[i]).collect();
                assert_eq!(merged(mine), merged(plan.clone()), "{hourly:?} {daily:?}");
            }
            // Nested windows share their rows: fewer pieces than segments once anything is
            // rolled up.
            let segments: usize = plans.iter().map(Vec::len).sum();
            assert!(cut.pieces.len() <= segments);
        }
    }
}
