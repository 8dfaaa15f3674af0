//! What differs between SQLite and PostgreSQL in the history: how a column holds a time
//! ([`DbTime`]: SQLite INTEGER microseconds, PostgreSQL TIMESTAMPTZ), how an hour is
//! truncated, how a bounded batch of rows is deleted, and the batch writer.
//!
//! The batch writer is the one place where the SQL really differs, so it is two plain
//! functions behind [`HistoryBackend::write_batch`]: SQLite binds one JSON array and reads it
//! with `json_each`, PostgreSQL binds one array per column and reads them with `UNNEST`. Both
//! are one multi-row `INSERT` and one multi-row `UPDATE` in one transaction.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use super::batch::Batch;
use super::plan::Source;
use crate::cluster::Claim;
use crate::store::backend::Backend;
use crate::store::StoreError;
use catalogd_actors::CheckOutcome;

/// How a database column holds a time: SQLite INTEGER microseconds, PostgreSQL TIMESTAMPTZ.
pub(super) trait DbTime: Sized {
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

/// A [`Backend`] as the history needs it.
pub(super) trait HistoryBackend: Backend {
    /// How this backend's history tables hold a time.
    type Time: DbTime
        + Send
        + Sync
        + Unpin
        + 'static
        + for<'q> sqlx::Encode<'q, Self>
        + for<'r> sqlx::Decode<'r, Self>
        + sqlx::Type<Self>;

    /// `{c}` truncated to its UTC hour, keeping the column's type.
    const HOUR_OF: &'static str;
    /// Deletes up to `$2` rows of `{t}` whose `{c}` is before `$1`.
    const PRUNE_RAW: &'static str;
    const PRUNE_ROLLUP: &'static str;

    /// The pruning statement for `source`.
    fn prune(source: Source) -> String {
        let template = match source {
            Source::Raw => Self::PRUNE_RAW,
            Source::Hourly | Source::Daily => Self::PRUNE_ROLLUP,
        };
        template
            .replace("{t}", source.table())
            .replace("{c}", source.time_column())
    }

    /// Writes one batch in one transaction, without the results whose claim the fence
    /// refuses for `node`; returns how many observations the version guard refused (or whose
    /// integration is gone) and the claims fenced off.
    fn write_batch(
        pool: &sqlx::Pool<Self>,
        batch: &Batch,
        node: &str,
    ) -> impl Future<Output = Result<Written, sqlx::Error>> + Send;
}

impl HistoryBackend for Sqlite {
    type Time = i64;

    const HOUR_OF: &'static str = "(({c} / 3600000000) * 3600000000)";
    const PRUNE_RAW: &'static str = "DELETE FROM {t} WHERE rowid IN \
         (SELECT rowid FROM {t} WHERE {c} < $1 ORDER BY {c} LIMIT $2)";
    const PRUNE_ROLLUP: &'static str = "DELETE FROM {t} WHERE (integration_id, {c}) IN \
         (SELECT integration_id, {c} FROM {t} WHERE {c} < $1 ORDER BY {c} LIMIT $2)";

    fn write_batch(
        pool: &sqlx::Pool<Self>,
        batch: &Batch,
        node: &str,
    ) -> impl Future<Output = Result<Written, sqlx::Error>> + Send {
        write_sqlite(pool, batch, node)
    }
}

impl HistoryBackend for Postgres {
    type Time = DateTime<Utc>;

    const HOUR_OF: &'static str = "date_trunc('hour', {c}, 'UTC')";
    const PRUNE_RAW: &'static str =
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {c} < $1 LIMIT $2))";
    const PRUNE_ROLLUP: &'static str =
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {c} < $1 LIMIT $2))";

    fn write_batch(
        pool: &sqlx::Pool<Self>,
        batch: &Batch,
        node: &str,
    ) -> impl Future<Output = Result<Written, sqlx::Error>> + Send {
        write_postgres(pool, batch, node)
    }
}

const SQLITE_INSERT_RESULTS: &str = "INSERT INTO check_results \
         (integration_id, checked_at, latency_us, lateness_us, outcome, failure_class, \
          maintenance) \
         SELECT unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                value ->> 5, value ->> 6 \
         FROM json_each($1) WHERE true \
         ON CONFLICT (integration_id, checked_at) DO NOTHING";

const SQLITE_UPDATE_OBSERVATIONS: &str = "UPDATE integrations SET last_tested_at = o.checked_at, \
         last_test_success = o.success, consecutive_failures = o.failures, \
         consecutive_successes = o.successes \
         FROM (SELECT unhex(value ->> 0) AS id, value ->> 1 AS version, value ->> 2 AS checked_at, \
               value ->> 3 AS success, value ->> 4 AS failures, value ->> 5 AS successes \
               FROM json_each($1)) AS o \
         WHERE integrations.integration_id = o.id AND integrations.version = o.version";

const POSTGRES_INSERT_RESULTS: &str = "INSERT INTO check_results \
         (integration_id, checked_at, latency_us, lateness_us, outcome, failure_class, \
          maintenance) \
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int4[], $4::int4[], \
                              $5::int2[], $6::text[], $7::int2[]) \
         ON CONFLICT (integration_id, checked_at) DO NOTHING";

const POSTGRES_UPDATE_OBSERVATIONS: &str =
    "UPDATE integrations AS i SET last_tested_at = o.checked_at, \
         last_test_success = o.success, consecutive_failures = o.failures, \
         consecutive_successes = o.successes \
         FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[], $4::bool[], $5::int8[], \
                     $6::int8[]) AS o (id, version, checked_at, success, failures, successes) \
         WHERE i.integration_id = o.id AND i.version = o.version";

/// What a batch write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Observations the version guard refused.
    pub(crate) stale: u64,
    /// Claims the fence refused: their results were not written.
    pub(crate) fenced: Vec<Claim>,
}

/// The fence of a batch, in its transaction (lease rows locked before any integration row):
/// the batch to write and the claims refused.
async fn fence<B: Backend>(
    connection: &mut B::Connection,
    node: &str,
    batch: &Batch,
) -> Result<(Option<Batch>, Vec<Claim>), sqlx::Error> {
    let claims = batch.claims();
    if claims.is_empty() {
        return Ok((None, Vec::new()));
    }
    let admitted = B::fence(connection, node, &claims).await?;
    let fenced: Vec<Claim> = claims
        .into_iter()
        .filter(|claim| !admitted.contains(claim))
        .collect();
    if fenced.is_empty() {
        return Ok((None, fenced));
    }
    Ok((Some(batch.admitted(&fenced)), fenced))
}

async fn write_sqlite(
    pool: &sqlx::SqlitePool,
    batch: &Batch,
    node: &str,
) -> Result<Written, sqlx::Error> {
    let mut transaction = crate::store::backend::begin(pool, Sqlite::BEGIN_WRITE).await?;
    let (admitted, fenced) = fence::<Sqlite>(&mut transaction, node, batch).await?;
    let batch = admitted.as_ref().unwrap_or(batch);
    sqlx::query(SQLITE_INSERT_RESULTS)
        .bind(batch.results_json())
        .execute(&mut *transaction)
        .await?;
    let updated = sqlx::query(SQLITE_UPDATE_OBSERVATIONS)
        .bind(batch.observations_json())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    transaction.commit().await?;
    Ok(Written {
        stale: batch.observations.len() as u64 - updated.min(batch.observations.len() as u64),
        fenced,
    })
}

async fn write_postgres(
    pool: &sqlx::PgPool,
    batch: &Batch,
    node: &str,
) -> Result<Written, sqlx::Error> {
    let mut transaction = crate::store::backend::begin(pool, Postgres::BEGIN_WRITE).await?;
    let (admitted, fenced) = fence::<Postgres>(&mut transaction, node, batch).await?;
    let batch = admitted.as_ref().unwrap_or(batch);
    let results = &batch.results;
    let observations = &batch.observations;
    sqlx::query(POSTGRES_INSERT_RESULTS)
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
        .bind(
            results
                .iter()
                .map(|r| i16::from(r.maintenance))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *transaction)
        .await?;
    let updated = sqlx::query(POSTGRES_UPDATE_OBSERVATIONS)
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
    Ok(Written {
        stale: observations.len() as u64 - updated.min(observations.len() as u64),
        fenced,
    })
}
