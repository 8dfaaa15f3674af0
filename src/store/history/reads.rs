//! The history's reads: an integration's health and uptime, and history pages, stitched
//! from stored buckets and the ones not rolled up yet.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::plan::{pieces, plan, Source};
use super::time::{ago, ceil_to, floor_to, latest_time, micros, DAY, EARLIEST, HOUR};
use super::values::{
    sum_by, Bucket, Health, HistoryItem, HistoryPage, HistoryQuery, LastCheck, Resolution, Uptime,
    UPTIME_WINDOWS,
};
use super::HistoryStore;
use crate::store::StoreError;
use catalogd_actors::CheckOutcome;

impl HistoryStore {
    /// Uptime ratios of one integration over [`UPTIME_WINDOWS`] ending at `now`; every
    /// window empty if the tenant has no such integration.
    pub async fn uptime(
        &self,
        tenant_id: &str,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Uptime, StoreError> {
        if self.tables.integration(tenant_id, id).await?.is_none() {
            return Ok(Uptime::default());
        }
        self.uptime_of(id, now).await
    }

    /// [`Self::uptimes`] of one integration whose tenant the caller has checked.
    async fn uptime_of(&self, id: Uuid, now: DateTime<Utc>) -> Result<Uptime, StoreError> {
        let mut uptimes = self.uptimes(&[id], now).await?;
        Ok(uptimes.pop().map(|(_, uptime)| uptime).unwrap_or_default())
    }

    /// Uptime ratios over [`UPTIME_WINDOWS`] ending at `now` of each of `ids`, in their order,
    /// whatever their tenant (the metrics' refresh reads its own set of ids): one statement,
    /// which reads each stored row at most once however many windows cover it ([`pieces`]),
    /// one index range per integration and piece.
    pub async fn uptimes(
        &self,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, Uptime)>, StoreError> {
        let now = micros(now);
        let horizons = self.horizons(now).await?;
        let plans: Vec<_> = UPTIME_WINDOWS
            .iter()
            .map(|(_, length)| plan(now - *length, now, &horizons))
            .collect();
        let cut = pieces(&plans);
        // For each piece, the windows it belongs to.
        let mut windows_of = vec![Vec::new(); cut.pieces.len()];
        for (window, indices) in cut.windows.iter().enumerate() {
            for &piece in indices {
                windows_of[piece].push(window);
            }
        }
        let mut counts: HashMap<Uuid, [(u64, u64); 4]> = HashMap::with_capacity(ids.len());
        for (id, piece, successes, failures) in self.tables.sums(ids, &cut.pieces).await? {
            let slot = counts.entry(id).or_default();
            for &window in &windows_of[piece] {
                slot[window].0 += successes;
                slot[window].1 += failures;
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let counts = counts.get(id).copied().unwrap_or_default();
                (*id, Uptime::from_counts(counts))
            })
            .collect())
    }

    /// Status, last check and uptime of one integration; `None` if the tenant has no such
    /// integration.
    pub async fn health(
        &self,
        tenant_id: &str,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Health>, StoreError> {
        let Some(integration) = self.tables.integration(tenant_id, id).await? else {
            return Ok(None);
        };
        let now = micros(now);
        let latest = self
            .tables
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
        // A result the writer has not committed yet is newer than anything stored.
        let mut consecutive_failures = integration.consecutive_failures;
        let last_check = match self.unflushed.newest(id) {
            Some(held) if last_check.is_none_or(|stored| stored.checked_at < held.checked_at) => {
                // Its counters hold only for the version it was checked at (a resume or an
                // edit since resets them).
                if held.version == integration.version {
                    consecutive_failures = held.consecutive_failures;
                }
                Some(LastCheck {
                    checked_at: held.checked_at,
                    outcome: Some(held.outcome),
                    success: held.outcome == CheckOutcome::Success,
                    latency: Some(Duration::from_micros(held.latency_us.max(0) as u64)),
                })
            }
            _ => last_check,
        };
        Ok(Some(Health {
            integration_id: id,
            status: integration.status,
            paused: integration.paused,
            consecutive_failures,
            last_check,
            uptime: self.uptime_of(id, now).await?,
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
        if self.tables.integration(tenant_id, id).await?.is_none() {
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
                self.tables
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
        let (hourly_through, _) = self.tables.marks().await?;
        let through = hourly_through.unwrap_or(EARLIEST);
        self.stitch(
            Source::Hourly,
            tenant_id,
            id,
            (from, to),
            through,
            limit,
            |lo| self.tables.raw_hours(tenant_id, id, lo, to),
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
        let (_, daily_through) = self.tables.marks().await?;
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
                self.tables
                    .buckets(stored, tenant_id, id, from, stored_to, remaining)
                    .await?,
            );
        }
        buckets.truncate(wanted);
        Ok(buckets)
    }
}
