//! History maintenance: rolling closed hours and days up, and pruning expired rows, each in
//! bounded steps. Idempotent, and safe to run from several daemons at once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::plan::Source;
use super::time::{ago, floor_to, micros, DAY, HOUR};
use super::values::MaintenanceReport;
use super::HistoryStore;
use crate::store::StoreError;

impl HistoryStore {
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
        let (hourly_through, _) = self.tables.marks().await?;
        let days_rolled_up = match hourly_through {
            Some(through) => self.roll_up(Source::Daily, floor_to(through, DAY)).await?,
            None => 0,
        };
        let (hourly_through, daily_through) = self.tables.marks().await?;
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
        let marks = self.tables.marks().await?;
        let mark = if target == Source::Daily {
            marks.1
        } else {
            marks.0
        };
        let mut through = match mark {
            Some(through) => through,
            None => match self.tables.earliest(source).await? {
                Some(earliest) => floor_to(earliest, step).min(until),
                None => until,
            },
        };
        if mark.is_none() {
            self.tables.set_mark(target, through).await?;
        }
        let mut rolled = 0;
        while through < until {
            let end = through + step;
            if self.tables.any_between(source, through, end).await? {
                let mut after = Uuid::nil();
                loop {
                    let ids = self.tables.chunk(after, self.options.rollup_chunk).await?;
                    let Some(&last) = ids.last() else { break };
                    self.tables
                        .roll_up_chunk(target, (after, last), (through, end))
                        .await?;
                    after = last;
                    if ids.len() < self.options.rollup_chunk as usize {
                        break;
                    }
                }
            }
            self.tables.set_mark(target, end).await?;
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
                .tables
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
}
