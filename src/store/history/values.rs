//! The values the history hands out: check results, buckets, pages, uptime ratios, an
//! integration's health, and what a maintenance run did.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::time::floor_to;
use catalogd_actors::{CheckOutcome, Status};

/// The uptime windows, in the order of [`Uptime`]'s fields.
pub const UPTIME_WINDOWS: [(&str, TimeDelta); 4] = [
    ("1h", TimeDelta::hours(1)),
    ("24h", TimeDelta::hours(24)),
    ("7d", TimeDelta::days(7)),
    ("30d", TimeDelta::days(30)),
];

/// The resolution of a history read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    Raw,
    Hour,
    Day,
}

impl Resolution {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "raw" => Some(Resolution::Raw),
            "hour" => Some(Resolution::Hour),
            "day" => Some(Resolution::Day),
            _ => None,
        }
    }
}

/// One stored check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckResult {
    pub checked_at: DateTime<Utc>,
    pub outcome: CheckOutcome,
    pub latency: Duration,
    pub lateness: Duration,
    /// It ran in a maintenance window, so it counted towards nothing (DESIGN §10).
    pub maintenance: bool,
}

/// The checks of one hour or day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub successes: u64,
    pub failures: u64,
    pub skipped: u64,
    /// Over the checks that ran (successes and failures).
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
    /// Checks that ran in a maintenance window: counted here and in none of the above
    /// (DESIGN §10).
    pub maintenance: u64,
}

impl Bucket {
    pub(super) fn empty(start: DateTime<Utc>) -> Self {
        Bucket {
            start,
            successes: 0,
            failures: 0,
            skipped: 0,
            latency_sum_us: 0,
            latency_max_us: 0,
            maintenance: 0,
        }
    }

    pub fn checks(&self) -> u64 {
        self.successes + self.failures + self.skipped + self.maintenance
    }

    pub fn uptime(&self) -> Option<f64> {
        ratio(self.successes, self.failures)
    }

    /// Mean latency of the checks that ran.
    pub fn latency_avg_us(&self) -> Option<f64> {
        let ran = self.successes + self.failures;
        (ran > 0).then(|| self.latency_sum_us as f64 / ran as f64)
    }

    pub(super) fn absorb(&mut self, other: &Bucket) {
        self.successes += other.successes;
        self.failures += other.failures;
        self.skipped += other.skipped;
        self.latency_sum_us += other.latency_sum_us;
        self.latency_max_us = self.latency_max_us.max(other.latency_max_us);
        self.maintenance += other.maintenance;
    }
}

/// One item of a history page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryItem {
    Result(CheckResult),
    Bucket(Bucket),
}

impl HistoryItem {
    /// The keyset position: results and buckets are listed newest first by this time.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            HistoryItem::Result(result) => result.checked_at,
            HistoryItem::Bucket(bucket) => bucket.start,
        }
    }
}

/// A history read: items in `[from, to)`, newest first, strictly older than `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `None` picks raw when `from` is inside the raw window, hourly otherwise.
    pub resolution: Option<Resolution>,
    pub before: Option<DateTime<Utc>>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub resolution: Resolution,
    pub items: Vec<HistoryItem>,
    pub has_more: bool,
}

/// Uptime ratio `successes / (successes + failures)` per window; skipped checks are left out
/// and a window without a success or failure is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, ToSchema)]
pub struct Uptime {
    #[serde(rename = "1h")]
    pub hour: Option<f64>,
    #[serde(rename = "24h")]
    pub day: Option<f64>,
    #[serde(rename = "7d")]
    pub week: Option<f64>,
    #[serde(rename = "30d")]
    pub month: Option<f64>,
}

impl Uptime {
    /// The ratios when one check is all there is: 1 or 0 in every window.
    pub fn first_check(success: bool) -> Self {
        let ratio = Some(if success { 1.0 } else { 0.0 });
        Uptime {
            hour: ratio,
            day: ratio,
            week: ratio,
            month: ratio,
        }
    }

    pub(super) fn from_counts(counts: [(u64, u64); 4]) -> Self {
        let [hour, day, week, month] =
            counts.map(|(successes, failures)| ratio(successes, failures));
        Uptime {
            hour,
            day,
            week,
            month,
        }
    }

    /// `(window label, ratio)` in [`UPTIME_WINDOWS`] order, for the per-integration metric.
    pub fn by_window(&self) -> [(&'static str, Option<f64>); 4] {
        let ratios = [self.hour, self.day, self.week, self.month];
        std::array::from_fn(|i| (UPTIME_WINDOWS[i].0, ratios[i]))
    }
}

pub fn ratio(successes: u64, failures: u64) -> Option<f64> {
    let total = successes + failures;
    (total > 0).then(|| successes as f64 / total as f64)
}

/// The most recent check of an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCheck {
    pub checked_at: DateTime<Utc>,
    /// `None` when only the integration's `lastTestSuccess` is known (the result itself is
    /// older than the raw window).
    pub outcome: Option<CheckOutcome>,
    pub success: bool,
    pub latency: Option<Duration>,
}

/// What `GET /{id}/health` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub integration_id: Uuid,
    pub status: Status,
    pub paused: bool,
    pub consecutive_failures: u32,
    pub last_check: Option<LastCheck>,
    pub uptime: Uptime,
}

/// What one [`HistoryStore::maintain`] run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub hours_rolled_up: u32,
    pub days_rolled_up: u32,
    pub raw_pruned: u64,
    pub hourly_pruned: u64,
    pub daily_pruned: u64,
}

/// Sums buckets (newest first) into coarser ones of `step`, newest first.
pub(super) fn sum_by(buckets: Vec<Bucket>, step: TimeDelta) -> Vec<Bucket> {
    let mut summed: Vec<Bucket> = Vec::new();
    for bucket in buckets {
        let start = floor_to(bucket.start, step);
        match summed.last_mut() {
            Some(last) if last.start == start => last.absorb(&bucket),
            _ => {
                let mut fresh = Bucket::empty(start);
                fresh.absorb(&bucket);
                summed.push(fresh);
            }
        }
    }
    summed
}
