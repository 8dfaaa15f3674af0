//! The status page's reads of the history: the checks of every integration of a tenant per
//! day over the last N days, and per hour over the last day, in three set-based statements
//! (daily rollups before the daily mark, hourly rollups after it, raw results after the
//! hourly mark), never one read per integration. Also the writing of daily rollups directly,
//! for tests and benchmarks that need months of history at once.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

use super::dialect::{DbTime, HistoryBackend};
use super::plan::Source;
use super::tables::SqlTables;
use super::time::{floor_to, micros, DAY, EARLIEST, HOUR};
use super::values::Bucket;
use super::HistoryStore;
use crate::store::StoreError;

/// Checks that ran (successes and failures; skipped ones are left out, as in uptime).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub successes: u64,
    pub failures: u64,
}

impl Counts {
    fn add(&mut self, successes: u64, failures: u64) {
        self.successes += successes;
        self.failures += failures;
    }

    pub fn absorb(&mut self, other: Counts) {
        self.add(other.successes, other.failures);
    }

    /// `successes / (successes + failures)`, `None` without a check.
    pub fn ratio(&self) -> Option<f64> {
        super::values::ratio(self.successes, self.failures)
    }
}

/// A tenant's checks, per integration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantHistory {
    /// Per UTC day (its start), for the days asked for; days without a check are absent.
    pub days: HashMap<Uuid, BTreeMap<DateTime<Utc>, Counts>>,
    /// The hours that start in the last 24 hours (so up to 25 hours of checks).
    pub last_day: HashMap<Uuid, Counts>,
}

/// Tenant histories read recently, by tenant: a status page viewed by many people (or
/// refreshing on many screens) reads its tenant's 90 days once per `max_age`, not once per
/// view.
#[derive(Default)]
pub(super) struct TenantHistoryCache {
    entries: Mutex<HashMap<String, CachedHistory>>,
}

struct CachedHistory {
    read_at: Instant,
    /// The UTC day and the number of days it was read for: a new day is a new read.
    day: chrono::NaiveDate,
    days: u32,
    history: Arc<TenantHistory>,
}

/// Beyond this many tenants the cache starts over, so it stays bounded.
const CACHED_TENANTS: usize = 10_000;

/// One row: integration, bucket start, successes, failures.
type CountRow<T> = (Uuid, T, i64, i64);

#[async_trait]
pub(super) trait StatusTables: Send + Sync {
    /// `(id, bucket start, successes, failures)` of `source`'s buckets in `[from, to)`,
    /// for every integration of the tenant; for raw results, summed per hour.
    async fn tenant_buckets(
        &self,
        source: Source,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>, u64, u64)>, StoreError>;

    /// Upserts daily rollups, in one transaction.
    async fn write_days(&self, days: &[(Uuid, Bucket)]) -> Result<(), StoreError>;
}

#[async_trait]
impl<B> StatusTables for SqlTables<B>
where
    B: HistoryBackend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> &'q str: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Uuid: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> i64: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> CountRow<B::Time>: sqlx::FromRow<'r, B::Row>,
{
    async fn tenant_buckets(
        &self,
        source: Source,
        tenant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>, u64, u64)>, StoreError> {
        let sql = match source {
            Source::Raw => {
                let hour = B::HOUR_OF.replace("{c}", "x.checked_at");
                format!(
                    "SELECT x.integration_id, {hour} AS hour_start, \
                     CAST(SUM(CASE WHEN x.outcome = 0 AND x.maintenance = 0 THEN 1 ELSE 0 END) \
                     AS BIGINT), \
                     CAST(SUM(CASE WHEN x.outcome = 1 AND x.maintenance = 0 THEN 1 ELSE 0 END) \
                     AS BIGINT) \
                     FROM integrations i JOIN check_results x \
                     ON x.integration_id = i.integration_id WHERE i.tenant_id = $1 \
                     AND x.checked_at >= $2 AND x.checked_at < $3 \
                     GROUP BY x.integration_id, hour_start"
                )
            }
            Source::Hourly | Source::Daily => format!(
                "SELECT x.integration_id, x.bucket_start, CAST(x.successes AS BIGINT), \
                 CAST(x.failures AS BIGINT) FROM integrations i JOIN {} x \
                 ON x.integration_id = i.integration_id WHERE i.tenant_id = $1 \
                 AND x.bucket_start >= $2 AND x.bucket_start < $3",
                source.table()
            ),
        };
        let rows: Vec<CountRow<B::Time>> = sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(B::Time::to_db(from))
            .bind(B::Time::to_db(to))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(id, start, successes, failures)| {
                Ok((
                    id,
                    start.into_time()?,
                    u64::try_from(successes).unwrap_or(0),
                    u64::try_from(failures).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn write_days(&self, days: &[(Uuid, Bucket)]) -> Result<(), StoreError> {
        let _turn = self.gate.turn().await;
        let mut transaction = self.pool.begin().await?;
        for (id, bucket) in days {
            sqlx::query(
                "INSERT INTO check_rollups_daily (integration_id, bucket_start, successes, \
                 failures, skipped, latency_sum_us, latency_max_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (integration_id, bucket_start) DO UPDATE SET \
                 successes = excluded.successes, failures = excluded.failures, \
                 skipped = excluded.skipped, latency_sum_us = excluded.latency_sum_us, \
                 latency_max_us = excluded.latency_max_us",
            )
            .bind(*id)
            .bind(B::Time::to_db(floor_to(bucket.start, DAY)))
            .bind(i64::try_from(bucket.successes).unwrap_or(i64::MAX))
            .bind(i64::try_from(bucket.failures).unwrap_or(i64::MAX))
            .bind(i64::try_from(bucket.skipped).unwrap_or(i64::MAX))
            .bind(i64::try_from(bucket.latency_sum_us).unwrap_or(i64::MAX))
            .bind(i64::try_from(bucket.latency_max_us).unwrap_or(i64::MAX))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}

impl HistoryStore {
    /// The checks of every integration of `tenant_id`, per UTC day for the `days` days that
    /// end with today (today included, so far), and over the hours that started in the last
    /// 24 hours. Four statements whatever the number of integrations: daily rollups before
    /// the daily mark, hourly rollups from it (and from the start of the last 24 hours, when
    /// that is earlier), raw results from the hourly mark on, summed per hour.
    pub async fn tenant_history(
        &self,
        tenant_id: &str,
        days: u32,
        now: DateTime<Utc>,
    ) -> Result<TenantHistory, StoreError> {
        let now = micros(now);
        let first_day = floor_to(now, DAY) - TimeDelta::days(i64::from(days.max(1)) - 1);
        let day_start = floor_to(now - DAY, HOUR);
        let (hourly_through, daily_through) = self.tables.marks().await?;
        let hourly_through = hourly_through.unwrap_or(EARLIEST);
        let daily_through = daily_through.unwrap_or(EARLIEST);
        let mut history = TenantHistory::default();
        let add_day =
            |days: &mut HashMap<Uuid, BTreeMap<DateTime<Utc>, Counts>>,
             (id, start, successes, failures): (Uuid, DateTime<Utc>, u64, u64)| {
                if start >= first_day {
                    days.entry(id)
                        .or_default()
                        .entry(floor_to(start, DAY))
                        .or_default()
                        .add(successes, failures);
                }
            };
        if first_day < daily_through {
            for row in self
                .status
                .tenant_buckets(Source::Daily, tenant_id, first_day, daily_through)
                .await?
            {
                add_day(&mut history.days, row);
            }
        }
        let mut hours = Vec::new();
        let hourly_from = daily_through.max(first_day).min(day_start);
        if hourly_from < hourly_through {
            hours = self
                .status
                .tenant_buckets(Source::Hourly, tenant_id, hourly_from, hourly_through)
                .await?;
        }
        hours.extend(
            self.status
                .tenant_buckets(Source::Raw, tenant_id, hourly_through, now + HOUR)
                .await?,
        );
        for row in hours {
            let (id, start, successes, failures) = row;
            // Hours before the daily mark are in the daily rollups already.
            if start >= daily_through {
                add_day(&mut history.days, row);
            }
            if start >= day_start {
                history
                    .last_day
                    .entry(id)
                    .or_default()
                    .add(successes, failures);
            }
        }
        Ok(history)
    }

    /// [`HistoryStore::tenant_history`], read at most once per `max_age` per tenant (and
    /// again when the UTC day changes).
    pub async fn tenant_history_cached(
        &self,
        tenant_id: &str,
        days: u32,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<Arc<TenantHistory>, StoreError> {
        let day = now.date_naive();
        if let Ok(entries) = self.status_cache.entries.lock() {
            if let Some(cached) = entries.get(tenant_id) {
                if cached.day == day && cached.days == days && cached.read_at.elapsed() < max_age {
                    return Ok(cached.history.clone());
                }
            }
        }
        let history = Arc::new(self.tenant_history(tenant_id, days, now).await?);
        if let Ok(mut entries) = self.status_cache.entries.lock() {
            if entries.len() >= CACHED_TENANTS {
                entries.clear();
            }
            entries.insert(
                tenant_id.to_owned(),
                CachedHistory {
                    read_at: Instant::now(),
                    day,
                    days,
                    history: history.clone(),
                },
            );
        }
        Ok(history)
    }

    /// Writes daily rollups directly (each bucket's `start` is floored to its UTC day). For
    /// tests and benchmarks that need months of history at once; the daemon computes rollups
    /// from the checks it records. When no day has been rolled up yet, the daily mark is set
    /// after the last day written, so reads take these days from the daily rollups: write
    /// only days before any check the daemon recorded.
    pub async fn write_daily_rollups(&self, days: &[(Uuid, Bucket)]) -> Result<(), StoreError> {
        self.status.write_days(days).await?;
        let (_, daily_through) = self.tables.marks().await?;
        if daily_through.is_none() {
            if let Some(last) = days.iter().map(|(_, bucket)| bucket.start).max() {
                self.tables
                    .set_mark(Source::Daily, floor_to(last, DAY) + DAY)
                    .await?;
            }
        }
        Ok(())
    }
}
