//! The history's tables: every statement [`super::HistoryStore`] runs, written once for both
//! backends ([`SqlTables`], generic over the [`HistoryBackend`]), behind the [`Tables`]
//! trait, so the store that holds it is one type whatever the backend. Writes take their turn at the SQLite write [`Gate`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::batch::Batch;
use super::dialect::{DbTime, HistoryBackend, Written};
use super::plan::{Segment, Source};
use super::statements::{
    bucket_from_row, integration_from_row, result_from_row, rollup_statement, scoped_from,
    state_key, BucketRow, IntegrationHealth, IntegrationHealthRow, ResultRow, BUCKET_COLUMNS,
    RAW_AGGREGATES, RESULT_COLUMNS, SELECT_CHUNK, SELECT_INTEGRATION_HEALTH, SELECT_STATE,
    UPSERT_STATE,
};
use super::values::{Bucket, CheckResult};
use crate::store::backend::Gate;
use crate::store::StoreError;

/// The history's tables, whatever the backend: implemented once, generically, by
/// [`SqlTables`]; the store holds one as `Arc<dyn Tables>`, so it is one type whatever the
/// backend.
#[async_trait]
pub(super) trait Tables: Send + Sync {
    /// Writes one batch in one transaction; returns how many observations the version guard
    /// refused (or whose integration is gone).
    async fn write_batch(&self, batch: &Batch, node: &str) -> Result<Written, sqlx::Error>;

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

    /// `(integration, piece index, successes, failures)` for each of `ids` that has rows in a
    /// piece, in one statement: one index range per integration and piece.
    async fn sums(
        &self,
        ids: &[Uuid],
        pieces: &[Segment],
    ) -> Result<Vec<(Uuid, usize, u64, u64)>, StoreError>;

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

/// The history's tables in one backend's pool.
pub(super) struct SqlTables<B: HistoryBackend> {
    pub(super) pool: sqlx::Pool<B>,
    /// SQLite's writers take turns ([`crate::store::WriteGate`]) rather than meeting in
    /// SQLite's sleeping busy handler; PostgreSQL needs none.
    pub(super) gate: Gate,
}

#[async_trait]
impl<B> Tables for SqlTables<B>
where
    B: HistoryBackend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> &'q str: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Uuid: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> i64: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> (String, B::Time): sqlx::FromRow<'r, B::Row>,
    for<'r> IntegrationHealthRow: sqlx::FromRow<'r, B::Row>,
    for<'r> ResultRow<B::Time>: sqlx::FromRow<'r, B::Row>,
    for<'r> BucketRow<B::Time>: sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid, i64, i64, i64): sqlx::FromRow<'r, B::Row>,
    for<'r> (Option<B::Time>,): sqlx::FromRow<'r, B::Row>,
    for<'r> (i32,): sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid,): sqlx::FromRow<'r, B::Row>,
{
    async fn write_batch(&self, batch: &Batch, node: &str) -> Result<Written, sqlx::Error> {
        let _turn = self.gate.turn().await;
        B::write_batch(&self.pool, batch, node).await
    }

    async fn marks(&self) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), StoreError> {
        let rows: Vec<(String, B::Time)> =
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

    async fn set_mark(&self, target: Source, through: DateTime<Utc>) -> Result<(), StoreError> {
        let _turn = self.gate.turn().await;
        sqlx::query(UPSERT_STATE)
            .bind(state_key(target))
            .bind(B::Time::to_db(through))
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
        let rows: Vec<ResultRow<B::Time>> = sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(id)
            .bind(B::Time::to_db(from))
            .bind(B::Time::to_db(to))
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
        let rows: Vec<BucketRow<B::Time>> = sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(id)
            .bind(B::Time::to_db(from))
            .bind(B::Time::to_db(to))
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
        let hour = B::HOUR_OF.replace("{c}", "x.checked_at");
        let sql = format!(
            "SELECT {hour} AS hour_start, {RAW_AGGREGATES} {} \
             AND x.checked_at >= $3 AND x.checked_at < $4 \
             GROUP BY hour_start ORDER BY hour_start DESC",
            scoped_from(Source::Raw)
        );
        let rows: Vec<BucketRow<B::Time>> = sqlx::query_as(&sql)
            .bind(tenant_id)
            .bind(id)
            .bind(B::Time::to_db(from))
            .bind(B::Time::to_db(to))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(bucket_from_row).collect()
    }

    async fn sums(
        &self,
        ids: &[Uuid],
        pieces: &[Segment],
    ) -> Result<Vec<(Uuid, usize, u64, u64)>, StoreError> {
        if ids.is_empty() || pieces.is_empty() {
            return Ok(Vec::new());
        }
        // The ids are bound once, as a table every piece's range scans join.
        let mut select = QueryBuilder::<B>::new("WITH ids(id) AS (VALUES ");
        for (n, id) in ids.iter().enumerate() {
            if n > 0 {
                select.push(", ");
            }
            select.push("(").push_bind(*id).push(")");
        }
        select.push(") ");
        for (index, piece) in pieces.iter().enumerate() {
            if index > 0 {
                select.push(" UNION ALL ");
            }
            let (table, column) = (piece.source.table(), piece.source.time_column());
            select
                .push(format_args!(
                    "SELECT x.integration_id, CAST({index} AS BIGINT), {} FROM {table} x \
                     WHERE x.integration_id IN (SELECT id FROM ids) AND x.{column} >= ",
                    piece.source.sums()
                ))
                .push_bind(B::Time::to_db(piece.from))
                .push(format_args!(" AND x.{column} < "))
                .push_bind(B::Time::to_db(piece.to))
                .push(" GROUP BY x.integration_id");
        }
        let rows: Vec<(Uuid, i64, i64, i64)> =
            B::build_query_as(&mut select).fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(id, index, successes, failures)| {
                let index = usize::try_from(index)
                    .ok()
                    .filter(|index| *index < pieces.len())
                    .ok_or_else(|| StoreError::Corrupt(format!("piece {index}")))?;
                Ok((
                    id,
                    index,
                    u64::try_from(successes).unwrap_or(0),
                    u64::try_from(failures).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn earliest(&self, source: Source) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = format!(
            "SELECT MIN({}) FROM {}",
            source.time_column(),
            source.table()
        );
        let earliest: Option<B::Time> = sqlx::query_scalar(&sql).fetch_one(&self.pool).await?;
        earliest.map(DbTime::into_time).transpose()
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
            .bind(B::Time::to_db(from))
            .bind(B::Time::to_db(to))
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
        let _turn = self.gate.turn().await;
        sqlx::query(&rollup_statement(target))
            .bind(ids.0)
            .bind(ids.1)
            .bind(B::Time::to_db(bucket.0))
            .bind(B::Time::to_db(bucket.1))
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
        let _turn = self.gate.turn().await;
        let pruned = sqlx::query(&B::prune(source))
            .bind(B::Time::to_db(cutoff))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(B::rows_affected(&pruned))
    }
}
