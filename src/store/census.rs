//! Fleet-wide reads for the metrics gauges (`catalogd_integrations`, the per-integration
//! labels and statuses). They read across tenants by design, like the engine's view of the
//! store, and are called only by [`crate::metrics`]'s refresh task, never by a request.
//!
//! Both are cheap at scale: one `GROUP BY` over the `(tenant_id, …)` rows, and a keyset page
//! over the primary key.
//!
//! The reads are written once, generic over the [`Backend`]; [`Census`] picks the
//! instance for its pool.

use uuid::Uuid;

use super::backend::Backend;
use super::database::Pool;
use super::StoreError;

/// What a per-integration series is labelled with, and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationLabels {
    pub integration_id: Uuid,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub provider: String,
    pub status: String,
    /// The last check's result as stored (`None`: never checked).
    pub last_test_success: Option<bool>,
}

impl From<&crate::integration::Integration> for IntegrationLabels {
    fn from(integration: &crate::integration::Integration) -> Self {
        IntegrationLabels {
            integration_id: integration.integration_id,
            tenant_id: integration.tenant_id.clone(),
            name: integration.name.clone(),
            kind: integration.kind.as_str().to_owned(),
            provider: integration.provider.clone(),
            status: integration.status.as_str().to_owned(),
            last_test_success: integration.last_test_success,
        }
    }
}

/// Integrations per tenant and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    pub tenant_id: String,
    pub status: String,
    pub count: u64,
}

const COUNTS: &str = "SELECT tenant_id, status, CAST(COUNT(*) AS BIGINT) FROM integrations \
                      GROUP BY tenant_id, status ORDER BY tenant_id, status";

const PAGE_FIRST: &str = "SELECT integration_id, tenant_id, name, type, provider, status, \
                          last_test_success FROM integrations \
                          ORDER BY integration_id LIMIT $1";

const PAGE_AFTER: &str = "SELECT integration_id, tenant_id, name, type, provider, status, \
                          last_test_success FROM integrations WHERE integration_id > $1 \
                          ORDER BY integration_id LIMIT $2";

type LabelRow = (Uuid, String, String, String, String, String, Option<bool>);

fn labels(row: LabelRow) -> IntegrationLabels {
    let (integration_id, tenant_id, name, kind, provider, status, last_test_success) = row;
    IntegrationLabels {
        integration_id,
        tenant_id,
        name,
        kind,
        provider,
        status,
        last_test_success,
    }
}

fn count(row: (String, String, i64)) -> StatusCount {
    StatusCount {
        tenant_id: row.0,
        status: row.1,
        count: u64::try_from(row.2).unwrap_or(0),
    }
}

/// The two reads, written once for both backends.
struct Reads<'p, B: Backend>(&'p sqlx::Pool<B>);

impl<B> Reads<'_, B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> i64: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Uuid: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> (String, String, i64): sqlx::FromRow<'r, B::Row>,
    for<'r> LabelRow: sqlx::FromRow<'r, B::Row>,
{
    async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(COUNTS).fetch_all(self.0).await?;
        Ok(rows.into_iter().map(count).collect())
    }

    async fn page(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<IntegrationLabels>, StoreError> {
        let limit = i64::from(limit);
        let rows: Vec<LabelRow> = match after {
            None => {
                sqlx::query_as(PAGE_FIRST)
                    .bind(limit)
                    .fetch_all(self.0)
                    .await?
            }
            Some(after) => {
                sqlx::query_as(PAGE_AFTER)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(self.0)
                    .await?
            }
        };
        Ok(rows.into_iter().map(labels).collect())
    }
}

/// The metrics' reads, on either backend. Cheap to clone.
#[derive(Clone)]
pub struct Census {
    pool: Pool,
}

impl std::fmt::Debug for Census {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Census").finish_non_exhaustive()
    }
}

impl Census {
    /// Built over the daemon's one pool: see [`super::Database::census`].
    pub(super) fn over(pool: Pool) -> Self {
        Census { pool }
    }

    /// Integrations per tenant and status (drafts included), in one `GROUP BY`.
    pub async fn counts(&self) -> Result<Vec<StatusCount>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => Reads(pool).counts().await,
            Pool::Postgres(pool) => Reads(pool).counts().await,
        }
    }

    /// Every integration of every tenant, in id order, `limit` at a time after `after`.
    pub async fn page(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<IntegrationLabels>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => Reads(pool).page(after, limit).await,
            Pool::Postgres(pool) => Reads(pool).page(after, limit).await,
        }
    }
}
