//! Health history: raw check results for a recent window, hourly and daily rollups, the
//! batching [`HistoryWriter`] the monitor actors feed, uptime ratios, and the reads behind
//! `GET /{id}/health` and `GET /{id}/history`.
//!
//! # Storage
//!
//! Three tables per backend (`migrations/*/0003_history.sql`), each keyed by
//! `(integration_id, time)`:
//!
//! - `check_results`: one narrow row per check, kept `raw_retention` (default 24 h);
//! - `check_rollups_hourly`: one row per integration and hour, kept `hourly_retention` (8 days);
//! - `check_rollups_daily`: one row per integration and day, kept `daily_retention`
//!   (`history.rollup_retention`, 35 days).
//!
//! So storage per integration is bounded whatever its age: at a 60 s interval, 1,440 raw rows
//! per day of raw retention, plus 192 hourly and 35 daily rows.
//!
//! Rollups are computed set-based from closed windows: once an hour is `rollup_grace` old, one
//! `INSERT … SELECT … GROUP BY` per chunk of integrations aggregates its raw rows (an index range
//! per integration), and a day is rolled up from its hours likewise. A rollup is an idempotent
//! upsert, so a crash or a second daemon simply recomputes it. `history_rollup_state` records
//! how far each rollup has got; reads take raw results from that mark on, so they never count
//! a check twice nor miss one, and pruning never deletes what is not rolled up yet. Pruning
//! deletes expired rows a bounded batch at a time.
//!
//! # Writing
//!
//! [`HistoryWriter::record`] never blocks: it pushes into a bounded queue and, when that is
//! full (the database is down or slower than the checks), drops the result and counts it in
//! [`WriterCounters::dropped`]. Memory stays bounded through a database outage; a dropped result
//! loses one history row, while the integration's counters converge again with the next
//! result because every result carries the full lifecycle, not a delta. A background task
//! flushes every `flush_interval`, or as soon as `batch_size` results are waiting, in one
//! transaction: one multi-row `INSERT` of the results (SQLite: `json_each` over one bound JSON
//! array; PostgreSQL: `UNNEST` over bound arrays) and one multi-row `UPDATE` of the
//! integrations' observation fields (`last_tested_at`, `last_test_success`,
//! `consecutive_failures`, `consecutive_successes`), guarded by `version = <the version the
//! engine saw>` so a stale batch never overwrites a newer REST change. These fields do not
//! bump `version`: it tracks resource changes and lifecycle transitions, and bumping it on
//! every check would make every client `PUT` race the monitor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{StoreError, StoreOptions};
use crate::config::HistoryConfig;
use catalogd_actors::ports::CheckReport;
use catalogd_actors::{CheckOutcome, Clock, FailureClass, Lifecycle, Status};

const HOUR: TimeDelta = TimeDelta::hours(1);
const DAY: TimeDelta = TimeDelta::days(1);

/// The uptime windows, in the order of [`Uptime`]'s fields.
pub const UPTIME_WINDOWS: [(&str, TimeDelta); 4] = [
    ("1h", TimeDelta::hours(1)),
    ("24h", TimeDelta::hours(24)),
    ("7d", TimeDelta::days(7)),
    ("30d", TimeDelta::days(30)),
];

// --- Options ---------------------------------------------------------------------------------

/// How history is written, rolled up and pruned.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryOptions {
    /// Raw results are kept this long.
    pub raw_retention: Duration,
    /// Hourly rollups are kept this long.
    pub hourly_retention: Duration,
    /// Daily rollups are kept this long.
    pub daily_retention: Duration,
    pub flush_interval: Duration,
    pub batch_size: usize,
    /// Results waiting to be written beyond which `record` drops.
    pub queue_capacity: usize,
    /// An hour is rolled up once it has been over this long: a check that started in it
    /// and is written later than that stays in the raw results but not in the rollup.
    pub rollup_grace: Duration,
    /// How often the writer rolls up and prunes; `None` leaves it to the caller of
    /// [`HistoryStore::maintain`].
    pub maintenance_interval: Option<Duration>,
    /// Integrations per rollup statement.
    pub rollup_chunk: u32,
    /// Rows per pruning `DELETE`, and the most such statements per table and run.
    pub prune_batch: u32,
    pub prune_max_batches: u32,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions::from(&HistoryConfig::default())
    }
}

impl From<&HistoryConfig> for HistoryOptions {
    fn from(config: &HistoryConfig) -> Self {
        let batch_size = config.batch_size.max(1);
        HistoryOptions {
            raw_retention: config.raw_retention,
            hourly_retention: config.hourly_retention.min(config.rollup_retention),
            daily_retention: config.rollup_retention,
            flush_interval: config.flush_interval,
            batch_size,
            // About ten seconds of results at a million integrations on a 60 s interval with
            // the default batch size, ~100 bytes each.
            queue_capacity: batch_size.saturating_mul(32),
            rollup_grace: Duration::from_secs(300),
            maintenance_interval: Some(Duration::from_secs(60)),
            rollup_chunk: 1000,
            prune_batch: 10_000,
            prune_max_batches: 1000,
        }
        .normalized()
    }
}

impl HistoryOptions {
    /// Raises the retentions to what the read path relies on: raw results outlive the
    /// rollup grace by an hour, hourly rollups outlive raw results and a day, daily rollups
    /// outlive hourly ones. Sizes are at least 1.
    pub fn normalized(mut self) -> Self {
        let hour = Duration::from_secs(3600);
        let day = 24 * hour;
        self.raw_retention = self.raw_retention.max(self.rollup_grace + 2 * hour);
        self.hourly_retention = self.hourly_retention.max(self.raw_retention + day);
        self.daily_retention = self.daily_retention.max(self.hourly_retention);
        self.batch_size = self.batch_size.max(1);
        self.queue_capacity = self.queue_capacity.max(self.batch_size);
        self.rollup_chunk = self.rollup_chunk.max(1);
        self.prune_batch = self.prune_batch.max(1);
        self.prune_max_batches = self.prune_max_batches.max(1);
        self
    }
}

/// `duration` before `time`, saturating at the earliest time either database holds.
fn ago(time: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|duration| time.checked_sub_signed(duration))
        .map_or(EARLIEST, |earlier| earlier.max(EARLIEST))
}

/// Bounds no check time reaches, inside PostgreSQL's timestamptz range.
const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;
/// 9999-12-31T23:59:59Z.
fn latest_time() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

// --- Values ----------------------------------------------------------------------------------

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
}

impl Bucket {
    fn empty(start: DateTime<Utc>) -> Self {
        Bucket {
            start,
            successes: 0,
            failures: 0,
            skipped: 0,
            latency_sum_us: 0,
            latency_max_us: 0,
        }
    }

    pub fn checks(&self) -> u64 {
        self.successes + self.failures + self.skipped
    }

    pub fn uptime(&self) -> Option<f64> {
        ratio(self.successes, self.failures)
    }

    /// Mean latency of the checks that ran.
    pub fn latency_avg_us(&self) -> Option<f64> {
        let ran = self.successes + self.failures;
        (ran > 0).then(|| self.latency_sum_us as f64 / ran as f64)
    }

    fn absorb(&mut self, other: &Bucket) {
        self.successes += other.successes;
        self.failures += other.failures;
        self.skipped += other.skipped;
        self.latency_sum_us += other.latency_sum_us;
        self.latency_max_us = self.latency_max_us.max(other.latency_max_us);
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
    fn from_counts(counts: [(u64, u64); 4]) -> Self {
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

// --- Time ------------------------------------------------------------------------------------

/// The precision both databases store.
fn micros(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

fn floor_to(time: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let step = step.num_microseconds().unwrap_or(i64::MAX);
    let us = time.timestamp_micros();
    DateTime::from_timestamp_micros(us - us.rem_euclid(step)).unwrap_or(time)
}

fn ceil_to(time: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    let floor = floor_to(time, step);
    if floor == micros(time) {
        floor
    } else {
        floor + step
    }
}

fn clamp_micros(duration: Duration) -> i32 {
    i32::try_from(duration.as_micros()).unwrap_or(i32::MAX)
}

/// How a database column holds a time: SQLite INTEGER microseconds, PostgreSQL TIMESTAMPTZ.
trait DbTime: Sized {
    fn to_db(time: DateTime<Utc>) -> Self;
    fn into_time(self) -> Result<DateTime<Utc>, StoreError>;
}

impl DbTime for i64 {
    fn to_db(time: DateTime<Utc>) -> Self {
        time.timestamp_micros()
    }

    fn into_time(self) -> Result<DateTime<Utc>, StoreError> {
        DateTime::from_timestamp_micros(self)
            .ok_or_else(|| StoreError::Corrupt(format!("history time out of range: {self}")))
    }
}

impl DbTime for DateTime<Utc> {
    fn to_db(time: DateTime<Utc>) -> Self {
        time
    }

    fn into_time(self) -> Result<DateTime<Utc>, StoreError> {
        Ok(self)
    }
}

// --- Uptime plan -----------------------------------------------------------------------------

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
    fn table(self) -> &'static str {
        match self {
            Source::Raw => "check_results",
            Source::Hourly => "check_rollups_hourly",
            Source::Daily => "check_rollups_daily",
        }
    }

    fn time_column(self) -> &'static str {
        match self {
            Source::Raw => "checked_at",
            Source::Hourly | Source::Daily => "bucket_start",
        }
    }

    /// `successes, failures` summed over the rows of one range, as BIGINT.
    fn sums(self) -> &'static str {
        match self {
            Source::Raw => {
                "CAST(COALESCE(SUM(CASE WHEN x.outcome = 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN x.outcome = 1 THEN 1 ELSE 0 END), 0) AS BIGINT)"
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

// --- Records and batches ---------------------------------------------------------------------

/// One check result on its way to the database (~80 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CheckRecord {
    integration_id: Uuid,
    checked_at: DateTime<Utc>,
    latency_us: i32,
    lateness_us: i32,
    outcome: CheckOutcome,
    version: i64,
    consecutive_failures: u32,
    consecutive_successes: u32,
}

impl CheckRecord {
    fn new(integration_id: Uuid, version: i64, lifecycle: Lifecycle, report: &CheckReport) -> Self {
        CheckRecord {
            integration_id,
            checked_at: micros(report.started_at),
            latency_us: clamp_micros(report.latency),
            lateness_us: clamp_micros(report.lateness),
            outcome: report.outcome,
            version,
            consecutive_failures: lifecycle.consecutive_failures,
            consecutive_successes: lifecycle.consecutive_successes,
        }
    }

    fn outcome_code(&self) -> i16 {
        outcome_code(self.outcome)
    }

    fn failure_class(&self) -> Option<&'static str> {
        match self.outcome {
            CheckOutcome::Failure(class) => Some(class.as_str()),
            _ => None,
        }
    }
}

fn outcome_code(outcome: CheckOutcome) -> i16 {
    match outcome {
        CheckOutcome::Success => 0,
        CheckOutcome::Failure(_) => 1,
        CheckOutcome::Skipped => 2,
    }
}

fn decode_outcome(code: i16, class: Option<&str>) -> Result<CheckOutcome, StoreError> {
    match (code, class) {
        (0, _) => Ok(CheckOutcome::Success),
        (2, _) => Ok(CheckOutcome::Skipped),
        (1, Some(class)) => FailureClass::ALL
            .into_iter()
            .find(|known| known.as_str() == class)
            .map(CheckOutcome::Failure)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown failure class {class:?}"))),
        _ => Err(StoreError::Corrupt(format!(
            "bad check outcome {code} / {class:?}"
        ))),
    }
}

/// One flush: the results sorted by `(integration, time)` without duplicates, and for each
/// integration the last check that ran (skipped checks observe nothing).
#[derive(Debug, Default)]
struct Batch {
    results: Vec<CheckRecord>,
    observations: Vec<CheckRecord>,
}

impl Batch {
    fn new(mut results: Vec<CheckRecord>) -> Self {
        results.sort_unstable_by_key(|r| (r.integration_id, r.checked_at));
        results.dedup_by_key(|r| (r.integration_id, r.checked_at));
        let mut observations: Vec<CheckRecord> = Vec::new();
        for result in results
            .iter()
            .filter(|r| r.outcome != CheckOutcome::Skipped)
        {
            match observations.last_mut() {
                Some(last) if last.integration_id == result.integration_id => *last = *result,
                _ => observations.push(*result),
            }
        }
        Batch {
            results,
            observations,
        }
    }

    /// SQLite: the results as one JSON array of `[id hex, µs, latency, lateness, outcome,
    /// class]`, for `json_each`.
    fn results_json(&self) -> String {
        use std::fmt::Write as _;
        let mut json = String::with_capacity(self.results.len() * 80 + 2);
        json.push('[');
        for (i, r) in self.results.iter().enumerate() {
            let class = r
                .failure_class()
                .map_or_else(|| "null".to_owned(), |class| format!("\"{class}\""));
            let _ = write!(
                json,
                "{}[\"{}\",{},{},{},{},{}]",
                if i == 0 { "" } else { "," },
                r.integration_id.simple(),
                r.checked_at.timestamp_micros(),
                r.latency_us,
                r.lateness_us,
                r.outcome_code(),
                class
            );
        }
        json.push(']');
        json
    }

    /// SQLite: the observations as `[id hex, version, last_tested_at, success, failures,
    /// successes]`, the time in the RFC 3339 text sqlx writes to `integrations`.
    fn observations_json(&self) -> String {
        use std::fmt::Write as _;
        let mut json = String::with_capacity(self.observations.len() * 100 + 2);
        json.push('[');
        for (i, o) in self.observations.iter().enumerate() {
            let _ = write!(
                json,
                "{}[\"{}\",{},\"{}\",{},{},{}]",
                if i == 0 { "" } else { "," },
                o.integration_id.simple(),
                o.version,
                o.checked_at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                u8::from(o.outcome == CheckOutcome::Success),
                o.consecutive_failures,
                o.consecutive_successes
            );
        }
        json.push(']');
        json
    }
}

// --- SQL -------------------------------------------------------------------------------------

/// The statements in which the backends differ.
struct Dialect {
    begin_write: &'static str,
    insert_results: &'static str,
    update_observations: &'static str,
    /// `{c}` truncated to its UTC hour, keeping the column's type.
    hour_of: &'static str,
    /// Deletes up to `$2` rows of `{t}` whose `{c}` is before `$1`.
    prune_raw: &'static str,
    prune_rollup: &'static str,
}

const SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    insert_results: "INSERT INTO check_results \
         (integration_id, checked_at, latency_us, lateness_us, outcome, failure_class) \
         SELECT unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
         FROM json_each($1) WHERE true \
         ON CONFLICT (integration_id, checked_at) DO NOTHING",
    update_observations: "UPDATE integrations SET last_tested_at = o.checked_at, \
         last_test_success = o.success, consecutive_failures = o.failures, \
         consecutive_successes = o.successes \
         FROM (SELECT unhex(value ->> 0) AS id, value ->> 1 AS version, value ->> 2 AS checked_at, \
               value ->> 3 AS success, value ->> 4 AS failures, value ->> 5 AS successes \
               FROM json_each($1)) AS o \
         WHERE integrations.integration_id = o.id AND integrations.version = o.version",
    hour_of: "(({c} / 3600000000) * 3600000000)",
    prune_raw: "DELETE FROM {t} WHERE rowid IN \
         (SELECT rowid FROM {t} WHERE {c} < $1 ORDER BY {c} LIMIT $2)",
    prune_rollup: "DELETE FROM {t} WHERE (integration_id, {c}) IN \
         (SELECT integration_id, {c} FROM {t} WHERE {c} < $1 ORDER BY {c} LIMIT $2)",
};

const POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN",
    insert_results: "INSERT INTO check_results \
         (integration_id, checked_at, latency_us, lateness_us, outcome, failure_class) \
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int4[], $4::int4[], \
                              $5::int2[], $6::text[]) \
         ON CONFLICT (integration_id, checked_at) DO NOTHING",
    update_observations: "UPDATE integrations AS i SET last_tested_at = o.checked_at, \
         last_test_success = o.success, consecutive_failures = o.failures, \
         consecutive_successes = o.successes \
         FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::bool[], $5::int8[], \
                     $6::int8[]) AS o (id, version, checked_at, success, failures, successes) \
         WHERE i.integration_id = o.id AND i.version = o.version",
    hour_of: "date_trunc('hour', {c}, 'UTC')",
    prune_raw:
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {c} < $1 LIMIT $2))",
    prune_rollup:
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {c} < $1 LIMIT $2))",
};

impl Dialect {
    fn prune(&self, source: Source) -> String {
        let template = match source {
            Source::Raw => self.prune_raw,
            Source::Hourly | Source::Daily => self.prune_rollup,
        };
        template
            .replace("{t}", source.table())
            .replace("{c}", source.time_column())
    }
}

/// The bucket columns aggregated from raw results `x`: successes, failures, skipped, latency
/// sum and max (of the checks that ran).
const RAW_AGGREGATES: &str = "\
    CAST(SUM(CASE WHEN x.outcome = 0 THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN x.outcome = 1 THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN x.outcome = 2 THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN x.outcome = 2 THEN 0 ELSE x.latency_us END) AS BIGINT), \
    CAST(MAX(CASE WHEN x.outcome = 2 THEN 0 ELSE x.latency_us END) AS BIGINT)";

/// The same from hourly buckets `x`.
const ROLLUP_AGGREGATES: &str = "\
    CAST(SUM(x.successes) AS BIGINT), CAST(SUM(x.failures) AS BIGINT), \
    CAST(SUM(x.skipped) AS BIGINT), CAST(SUM(x.latency_sum_us) AS BIGINT), \
    CAST(MAX(x.latency_max_us) AS BIGINT)";

const BUCKET_COLUMNS: &str = "x.bucket_start, CAST(x.successes AS BIGINT), \
    CAST(x.failures AS BIGINT), CAST(x.skipped AS BIGINT), CAST(x.latency_sum_us AS BIGINT), \
    CAST(x.latency_max_us AS BIGINT)";

const BUCKET_INSERT: &str =
    "(integration_id, bucket_start, successes, failures, skipped, latency_sum_us, latency_max_us)";

const BUCKET_UPSERT: &str = "ON CONFLICT (integration_id, bucket_start) DO UPDATE SET \
    successes = excluded.successes, failures = excluded.failures, skipped = excluded.skipped, \
    latency_sum_us = excluded.latency_sum_us, latency_max_us = excluded.latency_max_us";

/// The integration and a table `x` of its history, tenant-scoped: `$1` tenant, `$2` id.
fn scoped_from(source: Source) -> String {
    format!(
        "FROM integrations i JOIN {} x ON x.integration_id = i.integration_id \
         WHERE i.tenant_id = $1 AND i.integration_id = $2",
        source.table()
    )
}

/// Rolls one chunk of integrations (`$1` < id <= `$2`) up into `target` for the bucket
/// `[$3, $4)`. `CROSS JOIN` makes SQLite drive from the integrations, in id order (so the
/// grouping needs no sort), with one index range of the source per integration.
fn rollup_statement(target: Source) -> String {
    let (source, aggregates) = match target {
        Source::Daily => (Source::Hourly, ROLLUP_AGGREGATES),
        _ => (Source::Raw, RAW_AGGREGATES),
    };
    let c = source.time_column();
    format!(
        "INSERT INTO {target} {BUCKET_INSERT} SELECT i.integration_id, $3, {aggregates} \
         FROM integrations i CROSS JOIN {source} x \
         WHERE x.integration_id = i.integration_id AND i.integration_id > $1 \
         AND i.integration_id <= $2 AND x.{c} >= $3 AND x.{c} < $4 \
         GROUP BY i.integration_id {BUCKET_UPSERT}",
        target = target.table(),
        source = source.table(),
    )
}

type BucketRow<T> = (T, i64, i64, i64, i64, i64);

fn bucket_from_row<T: DbTime>(row: BucketRow<T>) -> Result<Bucket, StoreError> {
    let (start, successes, failures, skipped, latency_sum, latency_max) = row;
    let count = |value: i64| {
        u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative count {value}")))
    };
    Ok(Bucket {
        start: start.into_time()?,
        successes: count(successes)?,
        failures: count(failures)?,
        skipped: count(skipped)?,
        latency_sum_us: count(latency_sum)?,
        latency_max_us: count(latency_max)?,
    })
}

type ResultRow<T> = (T, i32, i32, i16, Option<String>);

fn result_from_row<T: DbTime>(row: ResultRow<T>) -> Result<CheckResult, StoreError> {
    let (checked_at, latency, lateness, outcome, class) = row;
    let duration = |us: i32| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    Ok(CheckResult {
        checked_at: checked_at.into_time()?,
        outcome: decode_outcome(outcome, class.as_deref())?,
        latency: duration(latency),
        lateness: duration(lateness),
    })
}

const RESULT_COLUMNS: &str =
    "x.checked_at, x.latency_us, x.lateness_us, x.outcome, x.failure_class";

/// The integration's own fields that `health` shows.
#[derive(Debug)]
struct IntegrationHealth {
    status: Status,
    paused: bool,
    consecutive_failures: u32,
    last_tested_at: Option<DateTime<Utc>>,
    last_test_success: Option<bool>,
}

type IntegrationHealthRow = (String, bool, i64, Option<DateTime<Utc>>, Option<bool>);

const SELECT_INTEGRATION_HEALTH: &str = "SELECT status, paused, consecutive_failures, \
    last_tested_at, last_test_success FROM integrations WHERE tenant_id = $1 AND integration_id = $2";

fn integration_from_row(row: IntegrationHealthRow) -> Result<IntegrationHealth, StoreError> {
    let (status, paused, failures, last_tested_at, last_test_success) = row;
    Ok(IntegrationHealth {
        status: status
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("{error}")))?,
        paused,
        consecutive_failures: u32::try_from(failures)
            .map_err(|_| StoreError::Corrupt(format!("consecutive_failures {failures}")))?,
        last_tested_at,
        last_test_success,
    })
}

const SELECT_STATE: &str = "SELECT resolution, rolled_through FROM history_rollup_state";
const UPSERT_STATE: &str = "INSERT INTO history_rollup_state (resolution, rolled_through) \
    VALUES ($1, $2) ON CONFLICT (resolution) DO UPDATE SET rolled_through = \
    CASE WHEN excluded.rolled_through > history_rollup_state.rolled_through \
    THEN excluded.rolled_through ELSE history_rollup_state.rolled_through END";
const SELECT_CHUNK: &str =
    "SELECT integration_id FROM integrations WHERE integration_id > $1 ORDER BY integration_id LIMIT $2";

/// The state-table key of the rollup into `target`.
fn state_key(target: Source) -> &'static str {
    match target {
        Source::Daily => "day",
        _ => "hour",
    }
}

// --- Backends --------------------------------------------------------------------------------

/// The SQL side of [`HistoryStore`], implemented once for both backends by `history_backend!`.
#[async_trait]
trait Backend: Send + Sync + 'static {
    /// Writes one batch in one transaction; returns how many observations the version guard
    /// refused (or whose integration is gone).
    async fn write_batch(&self, batch: &Batch) -> Result<u64, sqlx::Error>;
    /// `(hourly_through, daily_through)`.
    async fn marks(&self) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), StoreError>;
    async fn set_mark(&self, target: Source, through: DateTime<Utc>) -> Result<(), StoreError>;
    async fn integration(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<IntegrationHealth>, StoreError>;
    /// Raw results in `[from, to)`, newest first.
    async fn results(
        &self,
        tenant_id: &str,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CheckResult>, StoreError>;
    /// Stored buckets of `source` starting in `[from, to)`, newest first.
    async fn buckets(
        &self,
        source: Source,
        tenant_id: &str,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Bucket>, StoreError>;
    /// Hour buckets aggregated on the fly from the raw results in `[from, to)`, newest first.
    async fn raw_hours(
        &self,
        tenant_id: &str,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Bucket>, StoreError>;
    /// `(segment index, successes, failures)` for each segment, in one statement.
    async fn sums(
        &self,
        tenant_id: &str,
        id: Uuid,
        segments: &[Segment],
    ) -> Result<Vec<(u64, u64)>, StoreError>;
    async fn earliest(&self, source: Source) -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn any_between(
        &self,
        source: Source,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn chunk(&self, after: Uuid, limit: u32) -> Result<Vec<Uuid>, StoreError>;
    async fn roll_up_chunk(
        &self,
        target: Source,
        ids: (Uuid, Uuid),
        bucket: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<(), StoreError>;
    async fn prune_batch(
        &self,
        source: Source,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

async fn write_sqlite(pool: &sqlx::SqlitePool, batch: &Batch) -> Result<u64, sqlx::Error> {
    let mut transaction = pool.begin_with(SQLITE.begin_write).await?;
    sqlx::query(SQLITE.insert_results)
        .bind(batch.results_json())
        .execute(&mut *transaction)
        .await?;
    let updated = sqlx::query(SQLITE.update_observations)
        .bind(batch.observations_json())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    transaction.commit().await?;
    Ok(batch.observations.len() as u64 - updated.min(batch.observations.len() as u64))
}

async fn write_postgres(pool: &sqlx::PgPool, batch: &Batch) -> Result<u64, sqlx::Error> {
    let results = &batch.results;
    let observations = &batch.observations;
    let mut transaction = pool.begin_with(POSTGRES.begin_write).await?;
    sqlx::query(POSTGRES.insert_results)
        .bind(results.iter().map(|r| r.integration_id).collect::<Vec<_>>())
        .bind(results.iter().map(|r| r.checked_at).collect::<Vec<_>>())
        .bind(results.iter().map(|r| r.latency_us).collect::<Vec<_>>())
        .bind(results.iter().map(|r| r.lateness_us).collect::<Vec<_>>())
        .bind(results.iter().map(|r| r.outcome_code()).collect::<Vec<_>>())
        .bind(
            results
                .iter()
                .map(|r| r.failure_class())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *transaction)
        .await?;
    let updated = sqlx::query(POSTGRES.update_observations)
        .bind(
            observations
                .iter()
                .map(|o| o.integration_id)
                .collect::<Vec<_>>(),
        )
        .bind(observations.iter().map(|o| o.version).collect::<Vec<_>>())
        .bind(
            observations
                .iter()
                .map(|o| o.checked_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            observations
                .iter()
                .map(|o| o.outcome == CheckOutcome::Success)
                .collect::<Vec<_>>(),
        )
        .bind(
            observations
                .iter()
                .map(|o| i64::from(o.consecutive_failures))
                .collect::<Vec<_>>(),
        )
        .bind(
            observations
                .iter()
                .map(|o| i64::from(o.consecutive_successes))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    transaction.commit().await?;
    Ok(observations.len() as u64 - updated.min(observations.len() as u64))
}

/// Implements [`Backend`] for one database: `$db` its sqlx type, `$time` how it holds
/// times, `$dialect` its [`Dialect`] and `$write` its batch writer.
macro_rules! history_backend {
    ($name:ident, $db:ty, $time:ty, $dialect:expr, $write:path) => {
        struct $name {
            pool: sqlx::Pool<$db>,
            /// SQLite's writers take turns ([`super::WriteGate`]) rather than meeting in
            /// SQLite's sleeping busy handler; PostgreSQL needs none.
            gate: Option<super::WriteGate>,
        }

        impl $name {
            async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
                match &self.gate {
                    Some(gate) => Some(gate.enter().await),
                    None => None,
                }
            }
        }

        #[async_trait]
        impl Backend for $name {
            async fn write_batch(&self, batch: &Batch) -> Result<u64, sqlx::Error> {
                let _turn = self.turn().await;
                $write(&self.pool, batch).await
            }

            async fn marks(
                &self,
            ) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), StoreError> {
                let rows: Vec<(String, $time)> =
                    sqlx::query_as(SELECT_STATE).fetch_all(&self.pool).await?;
                let mut marks = (None, None);
                for (resolution, through) in rows {
                    let through = Some(through.into_time()?);
                    match resolution.as_str() {
                        "hour" => marks.0 = through,
                        "day" => marks.1 = through,
                        _ => {}
                    }
                }
                Ok(marks)
            }

            async fn set_mark(
                &self,
                target: Source,
                through: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let _turn = self.turn().await;
                sqlx::query(UPSERT_STATE)
                    .bind(state_key(target))
                    .bind(<$time>::to_db(through))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn integration(
                &self,
                tenant_id: &str,
                id: Uuid,
            ) -> Result<Option<IntegrationHealth>, StoreError> {
                let row: Option<IntegrationHealthRow> = sqlx::query_as(SELECT_INTEGRATION_HEALTH)
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(integration_from_row).transpose()
            }

            async fn results(
                &self,
                tenant_id: &str,
                id: Uuid,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<CheckResult>, StoreError> {
                let sql = format!(
                    "SELECT {RESULT_COLUMNS} {} AND x.checked_at >= $3 AND x.checked_at < $4 \
                     ORDER BY x.checked_at DESC LIMIT $5",
                    scoped_from(Source::Raw)
                );
                let rows: Vec<ResultRow<$time>> = sqlx::query_as(&sql)
                    .bind(tenant_id)
                    .bind(id)
                    .bind(<$time>::to_db(from))
                    .bind(<$time>::to_db(to))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(result_from_row).collect()
            }

            async fn buckets(
                &self,
                source: Source,
                tenant_id: &str,
                id: Uuid,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<Bucket>, StoreError> {
                let sql = format!(
                    "SELECT {BUCKET_COLUMNS} {} AND x.bucket_start >= $3 \
                     AND x.bucket_start < $4 ORDER BY x.bucket_start DESC LIMIT $5",
                    scoped_from(source)
                );
                let rows: Vec<BucketRow<$time>> = sqlx::query_as(&sql)
                    .bind(tenant_id)
                    .bind(id)
                    .bind(<$time>::to_db(from))
                    .bind(<$time>::to_db(to))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(bucket_from_row).collect()
            }

            async fn raw_hours(
                &self,
                tenant_id: &str,
                id: Uuid,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> Result<Vec<Bucket>, StoreError> {
                let hour = $dialect.hour_of.replace("{c}", "x.checked_at");
                let sql = format!(
                    "SELECT {hour} AS hour_start, {RAW_AGGREGATES} {} \
                     AND x.checked_at >= $3 AND x.checked_at < $4 \
                     GROUP BY hour_start ORDER BY hour_start DESC",
                    scoped_from(Source::Raw)
                );
                let rows: Vec<BucketRow<$time>> = sqlx::query_as(&sql)
                    .bind(tenant_id)
                    .bind(id)
                    .bind(<$time>::to_db(from))
                    .bind(<$time>::to_db(to))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(bucket_from_row).collect()
            }

            async fn sums(
                &self,
                tenant_id: &str,
                id: Uuid,
                segments: &[Segment],
            ) -> Result<Vec<(u64, u64)>, StoreError> {
                if segments.is_empty() {
                    return Ok(Vec::new());
                }
                let mut select = QueryBuilder::<$db>::new("");
                for (index, segment) in segments.iter().enumerate() {
                    if index > 0 {
                        select.push(" UNION ALL ");
                    }
                    let (table, column) = (segment.source.table(), segment.source.time_column());
                    select
                        .push(format_args!(
                            "SELECT CAST({index} AS BIGINT), {} \
                             FROM integrations i JOIN {table} x \
                             ON x.integration_id = i.integration_id WHERE i.tenant_id = ",
                            segment.source.sums()
                        ))
                        .push_bind(tenant_id)
                        .push(" AND i.integration_id = ")
                        .push_bind(id)
                        .push(format_args!(" AND x.{column} >= "))
                        .push_bind(<$time>::to_db(segment.from))
                        .push(format_args!(" AND x.{column} < "))
                        .push_bind(<$time>::to_db(segment.to));
                }
                let rows: Vec<(i64, i64, i64)> =
                    select.build_query_as().fetch_all(&self.pool).await?;
                let mut sums = vec![(0, 0); segments.len()];
                for (index, successes, failures) in rows {
                    let slot = usize::try_from(index)
                        .ok()
                        .and_then(|index| sums.get_mut(index))
                        .ok_or_else(|| StoreError::Corrupt(format!("segment {index}")))?;
                    *slot = (
                        u64::try_from(successes).unwrap_or(0),
                        u64::try_from(failures).unwrap_or(0),
                    );
                }
                Ok(sums)
            }

            async fn earliest(&self, source: Source) -> Result<Option<DateTime<Utc>>, StoreError> {
                let sql = format!(
                    "SELECT MIN({}) FROM {}",
                    source.time_column(),
                    source.table()
                );
                let earliest: Option<$time> =
                    sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
                earliest.map(<$time>::into_time).transpose()
            }

            async fn any_between(
                &self,
                source: Source,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let c = source.time_column();
                let sql = format!(
                    "SELECT 1 FROM {} WHERE {c} >= $1 AND {c} < $2 LIMIT 1",
                    source.table()
                );
                let found: Option<i32> = sqlx::query_scalar(&sql)
                    .bind(<$time>::to_db(from))
                    .bind(<$time>::to_db(to))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(found.is_some())
            }

            async fn chunk(&self, after: Uuid, limit: u32) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(SELECT_CHUNK)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn roll_up_chunk(
                &self,
                target: Source,
                ids: (Uuid, Uuid),
                bucket: (DateTime<Utc>, DateTime<Utc>),
            ) -> Result<(), StoreError> {
                let _turn = self.turn().await;
                sqlx::query(&rollup_statement(target))
                    .bind(ids.0)
                    .bind(ids.1)
                    .bind(<$time>::to_db(bucket.0))
                    .bind(<$time>::to_db(bucket.1))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn prune_batch(
                &self,
                source: Source,
                cutoff: DateTime<Utc>,
                limit: u32,
            ) -> Result<u64, StoreError> {
                let _turn = self.turn().await;
                Ok(sqlx::query(&$dialect.prune(source))
                    .bind(<$time>::to_db(cutoff))
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }
        }
    };
}

history_backend!(SqliteHistory, sqlx::Sqlite, i64, SQLITE, write_sqlite);
history_backend!(
    PostgresHistory,
    sqlx::Postgres,
    DateTime<Utc>,
    POSTGRES,
    write_postgres
);

// --- The store -------------------------------------------------------------------------------

/// Health history of both backends. Cheap to clone.
#[derive(Clone)]
pub struct HistoryStore {
    backend: Arc<dyn Backend>,
    options: Arc<HistoryOptions>,
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl HistoryStore {
    /// Connects to the database of `store` (migrating it) for the history alone; the daemon
    /// builds it over its one shared pool with [`super::Database::history`] instead.
    pub async fn open(store: &StoreOptions, options: HistoryOptions) -> Result<Self, StoreError> {
        Ok(super::Database::connect(store).await?.history(options))
    }

    /// A history of its own on `pool` (tests and tools); the daemon shares its store's
    /// [`super::WriteGate`] through [`Self::sqlite_gated`].
    pub fn sqlite(pool: sqlx::SqlitePool, options: HistoryOptions) -> Self {
        Self::sqlite_gated(pool, super::WriteGate::default(), options)
    }

    pub fn sqlite_gated(
        pool: sqlx::SqlitePool,
        gate: super::WriteGate,
        options: HistoryOptions,
    ) -> Self {
        let gate = Some(gate);
        Self::with(Arc::new(SqliteHistory { pool, gate }), options)
    }

    pub fn postgres(pool: sqlx::PgPool, options: HistoryOptions) -> Self {
        Self::with(Arc::new(PostgresHistory { pool, gate: None }), options)
    }

    pub(super) fn over(pool: &super::database::Pool, options: HistoryOptions) -> Self {
        match pool {
            super::database::Pool::Sqlite(p, g) => Self::sqlite_gated(p.clone(), g.clone(), options),
            super::database::Pool::Postgres(p) => Self::postgres(p.clone(), options),
        }
    }

    fn with(backend: Arc<dyn Backend>, options: HistoryOptions) -> Self {
        HistoryStore {
            backend,
            options: Arc::new(options.normalized()),
        }
    }

    pub fn options(&self) -> &HistoryOptions {
        &self.options
    }

    async fn horizons(&self, now: DateTime<Utc>) -> Result<Horizons, StoreError> {
        let (hourly, daily) = self.backend.marks().await?;
        Ok(Horizons::new(now, hourly, daily, &self.options))
    }

    /// Uptime ratios of one integration over [`UPTIME_WINDOWS`] ending at `now`: one
    /// statement of at most 16 index range scans (see [`plan`]).
    pub async fn uptime(
        &self,
        tenant_id: &str,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Uptime, StoreError> {
        let now = micros(now);
        let horizons = self.horizons(now).await?;
        let mut segments = Vec::new();
        let mut window_of = Vec::new();
        for (window, (_, length)) in UPTIME_WINDOWS.iter().enumerate() {
            for segment in plan(now - *length, now, &horizons) {
                segments.push(segment);
                window_of.push(window);
            }
        }
        let sums = self.backend.sums(tenant_id, id, &segments).await?;
        let mut counts = [(0, 0); 4];
        for (window, (successes, failures)) in window_of.into_iter().zip(sums) {
            counts[window].0 += successes;
            counts[window].1 += failures;
        }
        Ok(Uptime::from_counts(counts))
    }

    /// Status, last check and uptime of one integration; `None` if the tenant has no such
    /// integration.
    pub async fn health(
        &self,
        tenant_id: &str,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Health>, StoreError> {
        let Some(integration) = self.backend.integration(tenant_id, id).await? else {
            return Ok(None);
        };
        let now = micros(now);
        let latest = self
            .backend
            .results(tenant_id, id, EARLIEST, latest_time(), 1)
            .await?
            .into_iter()
            .next();
        let recorded = integration.last_tested_at.map(|checked_at| LastCheck {
            checked_at,
            outcome: None,
            success: integration.last_test_success.unwrap_or(false),
            latency: None,
        });
        let last_check = match (latest, recorded) {
            (Some(result), recorded)
                if recorded.is_none_or(|recorded| recorded.checked_at <= result.checked_at) =>
            {
                Some(LastCheck {
                    checked_at: result.checked_at,
                    outcome: Some(result.outcome),
                    success: result.outcome == CheckOutcome::Success,
                    latency: Some(result.latency),
                })
            }
            (_, recorded) => recorded,
        };
        Ok(Some(Health {
            integration_id: id,
            status: integration.status,
            paused: integration.paused,
            consecutive_failures: integration.consecutive_failures,
            last_check,
            uptime: self.uptime(tenant_id, id, now).await?,
        }))
    }

    /// The resolution a history read without one gets: raw inside the raw window, hourly
    /// beyond it.
    pub fn default_resolution(&self, from: DateTime<Utc>, now: DateTime<Utc>) -> Resolution {
        if from >= ago(now, self.options.raw_retention) {
            Resolution::Raw
        } else {
            Resolution::Hour
        }
    }

    /// One page of an integration's history, newest first; `None` if the tenant has no such
    /// integration. Buckets that overlap `[from, to)` are returned whole; the ones not rolled
    /// up yet (the current hour or day) are aggregated on the fly from finer data.
    pub async fn history(
        &self,
        tenant_id: &str,
        id: Uuid,
        query: &HistoryQuery,
        now: DateTime<Utc>,
    ) -> Result<Option<HistoryPage>, StoreError> {
        if self.backend.integration(tenant_id, id).await?.is_none() {
            return Ok(None);
        }
        let resolution = query
            .resolution
            .unwrap_or_else(|| self.default_resolution(query.from, now));
        let limit = query.limit.max(1) as usize;
        let fetch = limit as i64 + 1;
        let mut items: Vec<HistoryItem> = match resolution {
            Resolution::Raw => {
                let to = query.before.map_or(query.to, |before| before.min(query.to));
                self.backend
                    .results(tenant_id, id, micros(query.from), micros(to), fetch)
                    .await?
                    .into_iter()
                    .map(HistoryItem::Result)
                    .collect()
            }
            Resolution::Hour | Resolution::Day => {
                let step = if resolution == Resolution::Hour {
                    HOUR
                } else {
                    DAY
                };
                let from = floor_to(query.from, step);
                let mut to = ceil_to(query.to, step);
                if let Some(before) = query.before {
                    to = to.min(micros(before));
                }
                let buckets = if resolution == Resolution::Hour {
                    self.hours(tenant_id, id, from, to, fetch).await?
                } else {
                    self.days(tenant_id, id, from, to, fetch).await?
                };
                buckets.into_iter().map(HistoryItem::Bucket).collect()
            }
        };
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Some(HistoryPage {
            resolution,
            items,
            has_more,
        }))
    }

    /// Hour buckets starting in `[from, to)`, newest first, at most `limit`: stored ones
    /// before the hourly mark, aggregated from raw results after it.
    async fn hours(
        &self,
        tenant_id: &str,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let (hourly_through, _) = self.backend.marks().await?;
        let through = hourly_through.unwrap_or(EARLIEST);
        self.stitch(
            Source::Hourly,
            tenant_id,
            id,
            (from, to),
            through,
            limit,
            |lo| self.backend.raw_hours(tenant_id, id, lo, to),
        )
        .await
    }

    /// Day buckets likewise: stored ones before the daily mark, the later days summed from
    /// their hours.
    async fn days(
        &self,
        tenant_id: &str,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let (_, daily_through) = self.backend.marks().await?;
        let through = daily_through.unwrap_or(EARLIEST);
        self.stitch(
            Source::Daily,
            tenant_id,
            id,
            (from, to),
            through,
            limit,
            |lo| async move {
                let hours = self.hours(tenant_id, id, lo, to, i64::MAX).await?;
                Ok(sum_by(hours, DAY))
            },
        )
        .await
    }

    /// Buckets of `stored` in `range`: those starting from `through` on from `live` (called
    /// with the start of that part), the older ones from the table.
    #[allow(clippy::too_many_arguments)]
    async fn stitch<F, Fut>(
        &self,
        stored: Source,
        tenant_id: &str,
        id: Uuid,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        through: DateTime<Utc>,
        limit: i64,
        live: F,
    ) -> Result<Vec<Bucket>, StoreError>
    where
        F: FnOnce(DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Bucket>, StoreError>>,
    {
        let live_from = from.max(through);
        let mut buckets = if live_from < to {
            live(live_from).await?
        } else {
            Vec::new()
        };
        let stored_to = to.min(through);
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        if buckets.len() < wanted && from < stored_to {
            let remaining = limit - buckets.len() as i64;
            buckets.extend(
                self.backend
                    .buckets(stored, tenant_id, id, from, stored_to, remaining)
                    .await?,
            );
        }
        buckets.truncate(wanted);
        Ok(buckets)
    }

    // --- Maintenance ---------------------------------------------------------------------

    /// Rolls up every closed hour and day, then prunes expired rows, each in bounded steps.
    /// Idempotent, and safe to run from several daemons at once.
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<MaintenanceReport, StoreError> {
        let now = micros(now);
        let hours_rolled_up = self
            .roll_up(
                Source::Hourly,
                floor_to(ago(now, self.options.rollup_grace), HOUR),
            )
            .await?;
        let (hourly_through, _) = self.backend.marks().await?;
        let days_rolled_up = match hourly_through {
            Some(through) => self.roll_up(Source::Daily, floor_to(through, DAY)).await?,
            None => 0,
        };
        let (hourly_through, daily_through) = self.backend.marks().await?;
        let mut report = MaintenanceReport {
            hours_rolled_up,
            days_rolled_up,
            ..MaintenanceReport::default()
        };
        if let Some(through) = hourly_through {
            let cutoff = ago(now, self.options.raw_retention).min(through);
            report.raw_pruned = self.prune(Source::Raw, cutoff).await?;
        }
        if let Some(through) = daily_through {
            let cutoff = ago(now, self.options.hourly_retention).min(through);
            report.hourly_pruned = self.prune(Source::Hourly, cutoff).await?;
        }
        let cutoff = ago(now, self.options.daily_retention);
        report.daily_pruned = self.prune(Source::Daily, cutoff).await?;
        Ok(report)
    }

    /// Rolls `target` (hourly or daily) up to `until`, a bucket at a time, each bucket a
    /// chunk of integrations at a time; moves the mark after each bucket.
    async fn roll_up(&self, target: Source, until: DateTime<Utc>) -> Result<u32, StoreError> {
        let (source, step) = match target {
            Source::Daily => (Source::Hourly, DAY),
            _ => (Source::Raw, HOUR),
        };
        let marks = self.backend.marks().await?;
        let mark = if target == Source::Daily {
            marks.1
        } else {
            marks.0
        };
        let mut through = match mark {
            Some(through) => through,
            None => match self.backend.earliest(source).await? {
                Some(earliest) => floor_to(earliest, step).min(until),
                None => until,
            },
        };
        if mark.is_none() {
            self.backend.set_mark(target, through).await?;
        }
        let mut rolled = 0;
        while through < until {
            let end = through + step;
            if self.backend.any_between(source, through, end).await? {
                let mut after = Uuid::nil();
                loop {
                    let ids = self.backend.chunk(after, self.options.rollup_chunk).await?;
                    let Some(&last) = ids.last() else { break };
                    self.backend
                        .roll_up_chunk(target, (after, last), (through, end))
                        .await?;
                    after = last;
                    if ids.len() < self.options.rollup_chunk as usize {
                        break;
                    }
                }
            }
            self.backend.set_mark(target, end).await?;
            through = end;
            rolled += 1;
        }
        Ok(rolled)
    }

    /// Deletes rows of `source` before `cutoff`, `prune_batch` at a time.
    async fn prune(&self, source: Source, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut pruned = 0;
        for _ in 0..self.options.prune_max_batches {
            let deleted = self
                .backend
                .prune_batch(source, cutoff, self.options.prune_batch)
                .await?;
            pruned += deleted;
            if deleted < u64::from(self.options.prune_batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(pruned)
    }

    /// Writes `results` as the writer would: one batch, one transaction. For tests and
    /// benchmarks; the daemon goes through [`HistoryWriter`].
    pub async fn write(
        &self,
        results: &[(Uuid, i64, Lifecycle, CheckReport)],
    ) -> Result<(), StoreError> {
        let records = results
            .iter()
            .map(|(id, version, lifecycle, report)| {
                CheckRecord::new(*id, *version, *lifecycle, report)
            })
            .collect();
        self.backend.write_batch(&Batch::new(records)).await?;
        Ok(())
    }
}

/// Sums buckets (newest first) into coarser ones of `step`, newest first.
fn sum_by(buckets: Vec<Bucket>, step: TimeDelta) -> Vec<Bucket> {
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

// --- The writer ------------------------------------------------------------------------------

/// A snapshot of the writer's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterCounters {
    /// Results in committed batches.
    pub written: u64,
    /// Committed batches (each one INSERT and one UPDATE in one transaction).
    pub batches: u64,
    /// Results refused because the queue was full or the writer closed.
    pub dropped: u64,
    /// Results in batches abandoned after every retry failed.
    pub failed: u64,
    /// Observations the version guard refused: the integration changed or is gone.
    pub stale: u64,
    /// How long the last committed batch took.
    pub last_flush: Duration,
    /// Results waiting in the queue now.
    pub queued: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    batches: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    stale: AtomicU64,
    last_flush_us: AtomicU64,
}

enum Control {
    /// Write everything received so far, then answer.
    Flush(oneshot::Sender<()>),
    Close,
}

/// Attempts per batch before it is abandoned, and the first pause between them (doubling).
const WRITE_ATTEMPTS: u32 = 5;
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The non-blocking handle the monitor actors record check results through. Cheap to clone;
/// every clone feeds the same queue and task.
#[derive(Clone)]
pub struct HistoryWriter {
    queue: mpsc::Sender<CheckRecord>,
    control: mpsc::UnboundedSender<Control>,
    counters: Arc<Counters>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop_maintenance: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl HistoryWriter {
    /// Starts the flushing task and, with `maintenance_interval` set, the rollup-and-prune
    /// task (which reads the time from `clock`). Needs a tokio runtime.
    pub fn spawn(store: HistoryStore, clock: Arc<dyn Clock>) -> Self {
        let options = store.options.clone();
        let (queue, receiver) = mpsc::channel(options.queue_capacity);
        let (control, commands) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let (stop_maintenance, stopped) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(
            Flusher {
                store: store.clone(),
                counters: counters.clone(),
                buffer: Vec::with_capacity(options.batch_size),
            }
            .run(receiver, commands),
        )];
        if let Some(interval) = options.maintenance_interval {
            tasks.push(tokio::spawn(maintain_every(
                store, clock, interval, stopped,
            )));
        }
        HistoryWriter {
            queue,
            control,
            counters,
            tasks: Arc::new(Mutex::new(tasks)),
            stop_maintenance: Arc::new(stop_maintenance),
        }
    }

    /// Queues one check result; never blocks. When the queue is full the result is dropped
    /// and counted.
    pub fn record(
        &self,
        integration_id: Uuid,
        version: i64,
        lifecycle: Lifecycle,
        report: &CheckReport,
    ) {
        let record = CheckRecord::new(integration_id, version, lifecycle, report);
        if self.queue.try_send(record).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes everything recorded before this call, and returns when it is committed (or
    /// abandoned).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    pub fn counters(&self) -> WriterCounters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WriterCounters {
            written: load(&self.counters.written),
            batches: load(&self.counters.batches),
            dropped: load(&self.counters.dropped),
            failed: load(&self.counters.failed),
            stale: load(&self.counters.stale),
            last_flush: Duration::from_micros(load(&self.counters.last_flush_us)),
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
        }
    }

    /// Writes what is queued, stops the tasks and waits for them. Results recorded after
    /// this are dropped.
    pub async fn close(self) {
        let _ = self.control.send(Control::Close);
        let _ = self.stop_maintenance.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

struct Flusher {
    store: HistoryStore,
    counters: Arc<Counters>,
    buffer: Vec<CheckRecord>,
}

impl Flusher {
    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<CheckRecord>,
        mut commands: mpsc::UnboundedReceiver<Control>,
    ) {
        let batch_size = self.store.options.batch_size;
        let every = self.store.options.flush_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = batch_size - self.buffer.len();
            tokio::select! {
                received = receiver.recv_many(&mut self.buffer, room) => {
                    if received == 0 {
                        break;
                    }
                    if self.buffer.len() >= batch_size {
                        self.flush().await;
                    }
                }
                _ = ticker.tick() => self.flush().await,
                command = commands.recv() => match command {
                    Some(Control::Flush(done)) => {
                        self.drain(&mut receiver).await;
                        let _ = done.send(());
                    }
                    Some(Control::Close) | None => break,
                },
            }
        }
        receiver.close();
        self.drain(&mut receiver).await;
    }

    /// Writes the buffer and everything queued now, in batches.
    async fn drain(&mut self, receiver: &mut mpsc::Receiver<CheckRecord>) {
        let batch_size = self.store.options.batch_size;
        loop {
            while self.buffer.len() < batch_size {
                match receiver.try_recv() {
                    Ok(record) => self.buffer.push(record),
                    Err(_) => break,
                }
            }
            if self.buffer.is_empty() {
                return;
            }
            let full = self.buffer.len() >= batch_size;
            self.flush().await;
            if !full {
                return;
            }
        }
    }

    /// Writes the buffer as one batch, retrying with backoff; abandons it after
    /// [`WRITE_ATTEMPTS`] (meanwhile `record` keeps queueing, then dropping).
    async fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let records = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(self.store.options.batch_size),
        );
        let count = records.len() as u64;
        let batch = Batch::new(records);
        let mut pause = FIRST_RETRY_PAUSE;
        for attempt in 1..=WRITE_ATTEMPTS {
            let started = Instant::now();
            match self.store.backend.write_batch(&batch).await {
                Ok(stale) => {
                    let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.counters
                        .last_flush_us
                        .store(elapsed, Ordering::Relaxed);
                    self.counters.written.fetch_add(count, Ordering::Relaxed);
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    self.counters.stale.fetch_add(stale, Ordering::Relaxed);
                    return;
                }
                Err(error) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(%error, attempt, results = count, "writing check results failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(error) => {
                    tracing::error!(%error, results = count, "writing check results failed; dropping the batch");
                }
            }
        }
        self.counters.failed.fetch_add(count, Ordering::Relaxed);
    }
}

/// Runs [`HistoryStore::maintain`] every `interval` until told to stop. A run in progress
/// finishes first.
async fn maintain_every(
    store: HistoryStore,
    clock: Arc<dyn Clock>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let started = Instant::now();
                match store.maintain(clock.now()).await {
                    Ok(report) => tracing::debug!(?report, elapsed = ?started.elapsed(), "history maintenance"),
                    Err(error) => tracing::warn!(%error, "history maintenance failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(time)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn segment(source: Source, from: &str, to: &str) -> Segment {
        Segment {
            source,
            from: at(from),
            to: at(to),
        }
    }

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

    #[test]
    fn batches_sort_deduplicate_and_observe_the_last_check_that_ran() {
        let id = |n: u128| Uuid::from_u128(n);
        let record = |n, minute: i64, outcome| CheckRecord {
            integration_id: id(n),
            checked_at: at("2025-03-31T12:00:00Z") + TimeDelta::minutes(minute),
            latency_us: 1,
            lateness_us: 0,
            outcome,
            version: minute,
            consecutive_failures: 0,
            consecutive_successes: 0,
        };
        let batch = Batch::new(vec![
            record(2, 1, CheckOutcome::Success),
            record(1, 3, CheckOutcome::Skipped),
            record(1, 2, CheckOutcome::Failure(FailureClass::Timeout)),
            record(1, 1, CheckOutcome::Success),
            record(2, 1, CheckOutcome::Success),
        ]);
        let keys: Vec<(Uuid, i64)> = batch
            .results
            .iter()
            .map(|r| (r.integration_id, r.version))
            .collect();
        assert_eq!(keys, [(id(1), 1), (id(1), 2), (id(1), 3), (id(2), 1)]);
        let observed: Vec<(Uuid, i64)> = batch
            .observations
            .iter()
            .map(|o| (o.integration_id, o.version))
            .collect();
        assert_eq!(observed, [(id(1), 2), (id(2), 1)]);
        let json: serde_json::Value = serde_json::from_str(&batch.results_json()).unwrap();
        assert_eq!(json[1][5], "timeout");
        assert!(json[0][5].is_null());
        let json: serde_json::Value = serde_json::from_str(&batch.observations_json()).unwrap();
        assert_eq!(json[0][2], "2025-03-31T12:02:00+00:00");
    }

    #[test]
    fn options_keep_what_the_read_path_relies_on() {
        let options = HistoryOptions {
            raw_retention: Duration::from_secs(60),
            hourly_retention: Duration::ZERO,
            daily_retention: Duration::ZERO,
            batch_size: 0,
            ..HistoryOptions::default()
        }
        .normalized();
        assert!(options.raw_retention >= options.rollup_grace + Duration::from_secs(7200));
        assert!(options.hourly_retention > options.raw_retention);
        assert!(options.daily_retention >= options.hourly_retention);
        assert_eq!(options.batch_size, 1);
        assert_eq!(ago(at("2025-01-01T00:00:00Z"), Duration::MAX), EARLIEST);
    }
}
