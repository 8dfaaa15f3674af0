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
//!   (`history.rollup_retention`, 90 days: the status page's bar).
//!
//! So storage per integration is bounded whatever its age: at a 60 s interval, 1,440 raw rows
//! per day of raw retention, plus 192 hourly and 90 daily rows.
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
//! writes them as a group commit does: as soon as its previous write committed and
//! `write_at` results are waiting (at most `batch_size` per write), or once the oldest has
//! waited `flush_interval`, so a result waits about two writes, not for a batch to fill. Each
//! write is one transaction: one multi-row `INSERT` of the results (SQLite: `json_each` over one bound JSON
//! array; PostgreSQL: `UNNEST` over bound arrays) and one multi-row `UPDATE` of the
//! integrations' observation fields (`last_tested_at`, `last_test_success`,
//! `consecutive_failures`, `consecutive_successes`), guarded by `version = <the version the
//! engine saw>` so a stale batch never overwrites a newer REST change. These fields do not
//! bump `version`: it tracks resource changes and lifecycle transitions, and bumping it on
//! every check would make every client `PUT` race the monitor.
//!
//! # Code
//!
//! One concept per module:
//!
//! - `options`: [`HistoryOptions`]; `time`: bucket arithmetic; `values`: what reads return;
//! - `plan`: which table covers which part of an uptime window (pure, unit-tested);
//! - `batch`: the results of one flush; `writer`: the [`HistoryWriter`] and its tasks;
//!   `unflushed`: the newest result per integration the writer has not committed yet;
//! - `statements`: the SQL both backends share; `dialect`: what differs (how a time is
//!   stored, the batch insert, pruning); `tables`: every statement, written once, generic
//!   over the backend;
//! - `reads` and `maintenance`: [`HistoryStore`]'s reads, and its rollups and pruning;
//! - `status_reads`: the status page's tenant-wide reads (checks per day and per hour).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::database::Pool;
use super::{StoreError, StoreOptions};
use batch::{Batch, CheckRecord};
use catalogd_actors::ports::CheckReport;
use catalogd_actors::Lifecycle;
use tables::{SqlTables, Tables};

mod batch;
mod dialect;
mod maintenance;
mod options;
mod plan;
mod reads;
mod statements;
mod status_reads;
mod tables;
mod time;
mod unflushed;
mod values;
mod writer;

pub use options::HistoryOptions;
pub use plan::{plan, Horizons, Segment, Source};
pub use status_reads::{Counts, TenantHistory};
pub use values::{
    ratio, Bucket, CheckResult, Health, HistoryItem, HistoryPage, HistoryQuery, LastCheck,
    MaintenanceReport, Resolution, Uptime, UPTIME_WINDOWS,
};
pub use writer::{HistoryWriter, WriterCounters};

/// Health history of both backends. Cheap to clone.
#[derive(Clone)]
pub struct HistoryStore {
    tables: Arc<dyn Tables>,
    /// The status page's tenant-wide reads, over the same pool.
    status: Arc<dyn status_reads::StatusTables>,
    /// Recent tenant histories, for the status page.
    status_cache: Arc<status_reads::TenantHistoryCache>,
    options: Arc<HistoryOptions>,
    /// Results the writer over this store holds but has not committed: reads see them too.
    unflushed: Arc<unflushed::Unflushed>,
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

    /// The history over `pool`, its writers taking turns with the store's.
    pub(super) fn over(pool: &Pool, options: HistoryOptions) -> Self {
        let gate = pool.gate();
        let (tables, status): (Arc<dyn Tables>, Arc<dyn status_reads::StatusTables>) = match pool {
            Pool::Sqlite(pool, _) => {
                let tables = Arc::new(SqlTables {
                    pool: pool.clone(),
                    gate,
                });
                (tables.clone(), tables)
            }
            Pool::Postgres(pool) => {
                let tables = Arc::new(SqlTables {
                    pool: pool.clone(),
                    gate,
                });
                (tables.clone(), tables)
            }
        };
        HistoryStore {
            tables,
            status,
            status_cache: Arc::default(),
            options: Arc::new(options.normalized()),
            unflushed: Arc::default(),
        }
    }

    pub fn options(&self) -> &HistoryOptions {
        &self.options
    }

    async fn horizons(&self, now: DateTime<Utc>) -> Result<Horizons, StoreError> {
        let (hourly, daily) = self.tables.marks().await?;
        Ok(Horizons::new(now, hourly, daily, &self.options))
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
        self.tables
            .write_batch(&Batch::new(records), "local")
            .await?;
        Ok(())
    }
}
