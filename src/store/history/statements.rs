//! The history's SQL that both backends share, and the decoding of its rows.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::batch::decode_outcome;
use super::dialect::DbTime;
use super::plan::Source;
use super::values::{Bucket, CheckResult};
use crate::store::StoreError;
use catalogd_actors::Status;

/// The bucket columns aggregated from raw results `x`: successes, failures, skipped, latency
/// sum and max (of the checks that ran), each leaving out the checks that ran in a
/// maintenance window, and those checks' count (DESIGN §10: uptime leaves the window out).
pub(super) const RAW_AGGREGATES: &str = "\
    CAST(SUM(CASE WHEN x.outcome = 0 AND x.maintenance = 0 THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN x.outcome = 1 AND x.maintenance = 0 THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN x.outcome = 2 AND x.maintenance = 0 THEN 1 ELSE 0 END) AS BIGINT), \
    CAST(SUM(CASE WHEN x.outcome = 2 OR x.maintenance <> 0 THEN 0 ELSE x.latency_us END) \
    AS BIGINT), \
    CAST(MAX(CASE WHEN x.outcome = 2 OR x.maintenance <> 0 THEN 0 ELSE x.latency_us END) \
    AS BIGINT), \
    CAST(SUM(x.maintenance) AS BIGINT)";

/// The same from hourly buckets `x`.
const ROLLUP_AGGREGATES: &str = "\
    CAST(SUM(x.successes) AS BIGINT), CAST(SUM(x.failures) AS BIGINT), \
    CAST(SUM(x.skipped) AS BIGINT), CAST(SUM(x.latency_sum_us) AS BIGINT), \
    CAST(MAX(x.latency_max_us) AS BIGINT), CAST(SUM(x.maintenance) AS BIGINT)";

pub(super) const BUCKET_COLUMNS: &str = "x.bucket_start, CAST(x.successes AS BIGINT), \
    CAST(x.failures AS BIGINT), CAST(x.skipped AS BIGINT), CAST(x.latency_sum_us AS BIGINT), \
    CAST(x.latency_max_us AS BIGINT), CAST(x.maintenance AS BIGINT)";

const BUCKET_INSERT: &str = "(integration_id, bucket_start, successes, failures, skipped, \
    latency_sum_us, latency_max_us, maintenance)";

const BUCKET_UPSERT: &str = "ON CONFLICT (integration_id, bucket_start) DO UPDATE SET \
    successes = excluded.successes, failures = excluded.failures, skipped = excluded.skipped, \
    latency_sum_us = excluded.latency_sum_us, latency_max_us = excluded.latency_max_us, \
    maintenance = excluded.maintenance";

/// The integration and a table `x` of its history, tenant-scoped: `$1` tenant, `$2` id.
pub(super) fn scoped_from(source: Source) -> String {
    format!(
        "FROM integrations i JOIN {} x ON x.integration_id = i.integration_id \
         WHERE i.tenant_id = $1 AND i.integration_id = $2",
        source.table()
    )
}

/// Rolls one chunk of integrations (`$1` < id <= `$2`) up into `target` for the bucket
/// `[$3, $4)`. `CROSS JOIN` makes SQLite drive from the integrations, in id order (so the
/// grouping needs no sort), with one index range of the source per integration.
pub(super) fn rollup_statement(target: Source) -> String {
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

pub(super) type BucketRow<T> = (T, i64, i64, i64, i64, i64, i64);

pub(super) fn bucket_from_row<T: DbTime>(row: BucketRow<T>) -> Result<Bucket, StoreError> {
    let (start, successes, failures, skipped, latency_sum, latency_max, maintenance) = row;
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
        maintenance: count(maintenance)?,
    })
}

pub(super) type ResultRow<T> = (T, i32, i32, i16, Option<String>, i16);

pub(super) fn result_from_row<T: DbTime>(row: ResultRow<T>) -> Result<CheckResult, StoreError> {
    let (checked_at, latency, lateness, outcome, class, maintenance) = row;
    let duration = |us: i32| Duration::from_micros(u64::try_from(us).unwrap_or(0));
    Ok(CheckResult {
        checked_at: checked_at.into_time()?,
        outcome: decode_outcome(outcome, class.as_deref())?,
        latency: duration(latency),
        lateness: duration(lateness),
        maintenance: maintenance != 0,
    })
}

pub(super) const RESULT_COLUMNS: &str =
    "x.checked_at, x.latency_us, x.lateness_us, x.outcome, x.failure_class, x.maintenance";

/// The integration's own fields that `health` shows.
#[derive(Debug)]
pub(super) struct IntegrationHealth {
    pub(super) status: Status,
    pub(super) paused: bool,
    pub(super) consecutive_failures: u32,
    pub(super) last_tested_at: Option<DateTime<Utc>>,
    pub(super) last_test_success: Option<bool>,
    pub(super) version: i64,
}

pub(super) type IntegrationHealthRow =
    (String, bool, i64, Option<DateTime<Utc>>, Option<bool>, i64);

pub(super) const SELECT_INTEGRATION_HEALTH: &str = "SELECT status, paused, consecutive_failures, \
    last_tested_at, last_test_success, version FROM integrations WHERE tenant_id = $1 AND integration_id = $2";

pub(super) fn integration_from_row(
    row: IntegrationHealthRow,
) -> Result<IntegrationHealth, StoreError> {
    let (status, paused, failures, last_tested_at, last_test_success, version) = row;
    Ok(IntegrationHealth {
        status: status
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("{error}")))?,
        paused,
        consecutive_failures: u32::try_from(failures)
            .map_err(|_| StoreError::Corrupt(format!("consecutive_failures {failures}")))?,
        last_tested_at,
        last_test_success,
        version,
    })
}

pub(super) const SELECT_STATE: &str = "SELECT resolution, rolled_through FROM history_rollup_state";
pub(super) const UPSERT_STATE: &str =
    "INSERT INTO history_rollup_state (resolution, rolled_through) \
    VALUES ($1, $2) ON CONFLICT (resolution) DO UPDATE SET rolled_through = \
    CASE WHEN excluded.rolled_through > history_rollup_state.rolled_through \
    THEN excluded.rolled_through ELSE history_rollup_state.rolled_through END";
pub(super) const SELECT_CHUNK: &str =
    "SELECT integration_id FROM integrations WHERE integration_id > $1 ORDER BY integration_id LIMIT $2";

/// The state-table key of the rollup into `target`.
pub(super) fn state_key(target: Source) -> &'static str {
    match target {
        Source::Daily => "day",
        _ => "hour",
    }
}
