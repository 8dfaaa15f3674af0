//! One integration's health (status, last check, consecutive failures, uptime) and its check
//! history (raw results or hourly and daily rollups, newest first), read from
//! [`crate::store::history`], with their responses and the history's parameters.

use std::time::Duration;

use catalogd_actors::{CheckOutcome, FailureClass};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::cursor;
use super::{require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::store::history::{
    Bucket, CheckResult, Health, HistoryItem, HistoryQuery, LastCheck, Resolution, Uptime,
};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
const DEFAULT_RANGE: TimeDelta = TimeDelta::hours(1);

/// One check result (`resolution=raw`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResultBody {
    /// When the check started.
    pub checked_at: DateTime<Utc>,
    pub success: bool,
    pub outcome: Outcome,
    pub latency_ms: f64,
    /// How late the check started against its schedule.
    pub lateness_ms: f64,
    #[schema(value_type = Option<String>, example = "http_status")]
    pub failure_class: Option<FailureClass>,
    /// The check ran in a maintenance window: stored, but counted towards nothing and left
    /// out of uptime (DESIGN §10).
    pub maintenance: bool,
}

impl From<CheckResult> for CheckResultBody {
    fn from(result: CheckResult) -> Self {
        CheckResultBody {
            checked_at: result.checked_at,
            success: result.outcome == CheckOutcome::Success,
            outcome: result.outcome.into(),
            latency_ms: millis(result.latency),
            lateness_ms: millis(result.lateness),
            failure_class: failure_class(Some(result.outcome)),
            maintenance: result.maintenance,
        }
    }
}

/// The checks of one hour or day (`resolution=hour|day`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketBody {
    /// The bucket covers `[bucketStart, bucketStart + 1 hour or day)`, UTC.
    pub bucket_start: DateTime<Utc>,
    pub checks: u64,
    pub successes: u64,
    pub failures: u64,
    pub skipped: u64,
    /// Checks that ran in a maintenance window, counted in `checks` and in none of the
    /// other counts, uptime or latency (DESIGN §10).
    pub maintenance: u64,
    /// `successes / (successes + failures)`, `null` without either.
    pub uptime: Option<f64>,
    /// Over the checks that ran; `null` when none did.
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
}

impl From<Bucket> for BucketBody {
    fn from(bucket: Bucket) -> Self {
        let ran = bucket.successes + bucket.failures > 0;
        BucketBody {
            bucket_start: bucket.start,
            checks: bucket.checks(),
            successes: bucket.successes,
            failures: bucket.failures,
            skipped: bucket.skipped,
            maintenance: bucket.maintenance,
            uptime: bucket.uptime(),
            latency_avg_ms: bucket.latency_avg_us().map(|us| us / 1000.0),
            latency_max_ms: ran.then(|| bucket.latency_max_us as f64 / 1000.0),
        }
    }
}

/// A check result or a bucket, as the page's `resolution` says.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum HistoryItemBody {
    Result(CheckResultBody),
    Bucket(BucketBody),
}

/// One page of history, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryBody {
    pub resolution: Resolution,
    pub items: Vec<HistoryItemBody>,
    /// Pass as `cursor` (with the same range) to get the next, older page.
    pub next_cursor: Option<String>,
}

/// The range, resolution and paging of a history read; unknown parameters are refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Start of the range, RFC 3339 (default: one hour before `to`).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// End of the range, RFC 3339, exclusive (default: now).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
    /// `raw` (each check), `hour` or `day`. Default: `raw` when `from` is inside the raw
    /// history window (`history.raw_retention`), else `hour`. Buckets overlapping the range
    /// are returned whole.
    #[param(value_type = Option<Resolution>)]
    pub resolution: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Position in a history: items strictly older than this time (µs since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryCursor {
    #[serde(rename = "t")]
    before_us: i64,
}

fn time_param(name: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, AppError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|_| {
                AppError::InvalidQuery(format!(
                    "{name} must be an RFC 3339 time such as 2025-01-02T03:04:05Z."
                ))
            })
    })
    .transpose()
}

fn history_query(params: HistoryParams, now: DateTime<Utc>) -> Result<HistoryQuery, AppError> {
    let from = time_param("from", params.from.as_deref())?;
    let to = time_param("to", params.to.as_deref())?;
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, now.max(from)),
        (None, Some(to)) => (to - DEFAULT_RANGE, to),
        (None, None) => (now - DEFAULT_RANGE, now),
    };
    if from > to {
        return Err(AppError::InvalidRange("from must not be after to.".into()));
    }
    let resolution = params
        .resolution
        .as_deref()
        .map(|raw| {
            Resolution::parse(raw).ok_or_else(|| {
                AppError::InvalidQuery("resolution must be raw, hour or day.".into())
            })
        })
        .transpose()?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                AppError::InvalidLimit(format!("limit must be an integer from 1 to {MAX_LIMIT}."))
            })?,
    };
    let before = params
        .cursor
        .as_deref()
        .map(|raw| {
            let position: HistoryCursor = cursor::decode(raw)?;
            DateTime::from_timestamp_micros(position.before_us).ok_or(AppError::InvalidCursor)
        })
        .transpose()?;
    Ok(HistoryQuery {
        from,
        to,
        resolution,
        before,
        limit,
    })
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    /// Offline mode: the check was not run.
    Skipped,
}

impl From<CheckOutcome> for Outcome {
    fn from(outcome: CheckOutcome) -> Self {
        match outcome {
            CheckOutcome::Success => Outcome::Success,
            CheckOutcome::Failure(_) => Outcome::Failure,
            CheckOutcome::Skipped => Outcome::Skipped,
        }
    }
}

/// The failure class of a failed check, `None` otherwise.
fn failure_class(outcome: Option<CheckOutcome>) -> Option<FailureClass> {
    match outcome {
        Some(CheckOutcome::Failure(class)) => Some(class),
        _ => None,
    }
}

/// A duration in (fractional) milliseconds, as the API reports latencies.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// The most recent check.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastCheckBody {
    pub checked_at: DateTime<Utc>,
    pub success: bool,
    /// `null` when the result itself is older than the raw history window and only its
    /// success is known.
    pub outcome: Option<Outcome>,
    pub latency_ms: Option<f64>,
    /// `timeout`, `dns`, `connect`, `tls`, `http_status`, `auth`, `rate_limited`,
    /// `assertion`, `config`, `internal` or `dependency`; only for failures.
    #[schema(value_type = Option<String>, example = "timeout")]
    pub failure_class: Option<FailureClass>,
}

impl From<LastCheck> for LastCheckBody {
    fn from(check: LastCheck) -> Self {
        LastCheckBody {
            checked_at: check.checked_at,
            success: check.success,
            outcome: check.outcome.map(Outcome::from),
            latency_ms: check.latency.map(millis),
            failure_class: failure_class(check.outcome),
        }
    }
}

/// An integration's health: its status, its last check and its uptime.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody {
    pub integration_id: Uuid,
    #[schema(value_type = String, example = "active")]
    pub status: catalogd_actors::Status,
    pub paused: bool,
    pub last_check: Option<LastCheckBody>,
    pub consecutive_failures: u32,
    /// `successes / (successes + failures)` over the last hour, day, week and 30 days;
    /// skipped checks are left out, and a window without checks is `null`. The 7-day window
    /// starts on a whole hour and the 30-day window on a whole day once their start is older
    /// than the raw history.
    pub uptime: Uptime,
}

impl From<Health> for HealthBody {
    fn from(health: Health) -> Self {
        HealthBody {
            integration_id: health.integration_id,
            status: health.status,
            paused: health.paused,
            last_check: health.last_check.map(LastCheckBody::from),
            consecutive_failures: health.consecutive_failures,
            uptime: health.uptime,
        }
    }
}

impl App {
    /// An integration's status, last check, consecutive failures and uptime ratios.
    pub async fn health(&self, principal: &Principal, id: Uuid) -> Result<HealthBody, AppError> {
        require(principal, UseCase::Health)?;
        let health = self
            .history
            .health(&principal.tenant_id, id, self.clock.now())
            .await?
            .ok_or(AppError::NotFound)?;
        Ok(health.into())
    }

    /// An integration's check results, or hourly or daily rollups of them, over a time range,
    /// newest first.
    pub async fn history(
        &self,
        principal: &Principal,
        id: Uuid,
        params: HistoryParams,
    ) -> Result<HistoryBody, AppError> {
        require(principal, UseCase::History)?;
        let now = self.clock.now();
        let query = history_query(params, now)?;
        let page = self
            .history
            .history(&principal.tenant_id, id, &query, now)
            .await?
            .ok_or(AppError::NotFound)?;
        let next_cursor = page.items.last().filter(|_| page.has_more).map(|last| {
            cursor::encode(&HistoryCursor {
                before_us: last.time().timestamp_micros(),
            })
        });
        let items = page
            .items
            .into_iter()
            .map(|item| match item {
                HistoryItem::Result(result) => HistoryItemBody::Result(result.into()),
                HistoryItem::Bucket(bucket) => HistoryItemBody::Bucket(bucket.into()),
            })
            .collect();
        Ok(HistoryBody {
            resolution: page.resolution,
            items,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query string as the extractor deserializes it.
    fn params(query: &str) -> HistoryParams {
        let uri: axum::http::Uri = format!("/?{query}").parse().unwrap();
        axum::extract::Query::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn queries_default_and_validate() {
        let now = DateTime::parse_from_rfc3339("2025-01-02T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let query = history_query(params(""), now).unwrap();
        assert_eq!((query.from, query.to), (now - DEFAULT_RANGE, now));
        assert_eq!((query.limit, query.resolution), (DEFAULT_LIMIT, None));
        let query = history_query(params("to=2025-01-01T00:00:00Z&resolution=day"), now).unwrap();
        assert_eq!(query.to - query.from, DEFAULT_RANGE);
        assert_eq!(query.resolution, Some(Resolution::Day));
        let cursor = cursor::encode(&HistoryCursor { before_us: 42 });
        let query = history_query(params(&format!("cursor={cursor}&limit=1000")), now).unwrap();
        assert_eq!(query.before.unwrap().timestamp_micros(), 42);
        for (query, code) in [
            ("from=yesterday", "invalid_query"),
            ("to=2025-01-02", "invalid_query"),
            (
                "from=2025-01-02T03:00:00Z&to=2025-01-02T02:00:00Z",
                "invalid_range",
            ),
            ("resolution=minute", "invalid_query"),
            ("limit=0", "invalid_limit"),
            ("limit=1001", "invalid_limit"),
            ("limit=ten", "invalid_limit"),
            ("cursor=%%%", "invalid_cursor"),
            ("cursor=e30", "invalid_cursor"),
        ] {
            let error = history_query(params(query), now).unwrap_err();
            assert_eq!(error.code(), code, "{query}");
        }
    }
}
