//! The status page's tables and reads (DESIGN §11): each tenant's page configuration
//! (`status_pages`, migration 0008), the tenant's integrations a page may show (names and
//! states only), and the monitor's transitions the page derives its incidents from.
//!
//! Every read is scoped by tenant, and none returns a base URL, AuthRef, configuration or a
//! failure's detail: the page is public, so what it cannot read it cannot leak. The reads are
//! written once for both backends, generic over the [`Backend`]; [`StatusPages`] picks the
//! instance for its pool.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

use super::backend::Backend;
use super::database::Pool;
use super::StoreError;
use catalogd_actors::Status;

/// Which integrations a page shows: those matching any listed id or tag (all of the tenant's
/// when both lists are empty), and the environment when one is given — the selector of
/// maintenance windows (DESIGN §10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    pub integration_ids: Vec<Uuid>,
    pub tags: Vec<String>,
    pub environment: Option<String>,
}

impl Selector {
    pub fn matches(&self, member: &Member) -> bool {
        let listed = self.integration_ids.is_empty() && self.tags.is_empty()
            || self.integration_ids.contains(&member.integration_id)
            || member.tags.iter().any(|tag| self.tags.contains(tag));
        listed
            && self
                .environment
                .as_ref()
                .is_none_or(|environment| member.environment.as_ref() == Some(environment))
    }
}

/// A tenant's page, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPageConfig {
    pub enabled: bool,
    pub public: bool,
    pub title: String,
    pub description: Option<String>,
    pub selector: Selector,
}

/// A configuration as stored: who changed it last, when, and its version (1 on the first
/// `PUT`, +1 on each later one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatusPage {
    pub config: StatusPageConfig,
    pub modified_at: DateTime<Utc>,
    pub modified_by: String,
    pub version: i64,
}

/// An integration as a status page may see it: nothing that could name a host or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub integration_id: Uuid,
    pub name: String,
    pub status: Status,
    pub environment: Option<String>,
    pub tags: Vec<String>,
}

/// One status change the monitor committed (an `integration.health` audit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTransition {
    pub integration_id: Uuid,
    pub at: DateTime<Utc>,
    pub from: Status,
    pub to: Status,
}

const SELECT_PAGE: &str = "SELECT enabled, public, title, description, selector, modified_at, \
                           modified_by, CAST(version AS BIGINT) FROM status_pages \
                           WHERE tenant_id = $1";

const UPSERT_PAGE: &str = "INSERT INTO status_pages (tenant_id, enabled, public, title, \
     description, selector, modified_at, modified_by, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) \
     ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled, \
     public = excluded.public, title = excluded.title, description = excluded.description, \
     selector = excluded.selector, modified_at = excluded.modified_at, \
     modified_by = excluded.modified_by, version = status_pages.version + 1 \
     RETURNING CAST(version AS BIGINT)";

const SELECT_MEMBERS: &str = "SELECT integration_id, name, status, environment, tags \
                              FROM integrations WHERE tenant_id = $1 \
                              ORDER BY name, integration_id";

/// Served by `audit_log_by_action_time` (migration 0008).
const SELECT_TRANSITIONS: &str = "SELECT target_id, occurred_at, before_state, after_state \
     FROM audit_log WHERE tenant_id = $1 AND action = 'integration.health' \
     AND occurred_at >= $2 ORDER BY occurred_at, sequence";

pub(super) type PageRow = (
    bool,
    bool,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    String,
    i64,
);
type MemberRow = (Uuid, String, String, Option<String>, Json<Vec<String>>);
type TransitionRow = (Uuid, DateTime<Utc>, Option<String>, Option<String>);

/// The audit snapshot of a configuration.
fn snapshot(config: &StatusPageConfig, version: i64) -> serde_json::Value {
    serde_json::json!({
        "enabled": config.enabled,
        "public": config.public,
        "title": config.title,
        "description": config.description,
        "selector": config.selector,
        "version": version,
    })
}

/// The audit entries of status pages name no resource id (a tenant has one page): this one.
pub const STATUS_PAGE_TARGET: Uuid = Uuid::nil();

fn page_from_row(row: PageRow) -> Result<StoredStatusPage, StoreError> {
    let (enabled, public, title, description, selector, modified_at, by, version) = row;
    let selector = serde_json::from_str(&selector)
        .map_err(|error| StoreError::Corrupt(format!("status page selector: {error}")))?;
    Ok(StoredStatusPage {
        config: StatusPageConfig {
            enabled,
            public,
            title,
            description,
            selector,
        },
        modified_at,
        modified_by: by,
        version,
    })
}

/// Replaces `author`'s tenant's page configuration on `connection` (inside the caller's
/// write transaction) and returns the audit record of the change, so the catalog store
/// commits both together.
pub(super) async fn put_in<B>(
    connection: &mut B::Connection,
    author: &crate::integration::Author,
    config: &StatusPageConfig,
    now: DateTime<Utc>,
) -> Result<(StoredStatusPage, crate::integration::AuditRecord), StoreError>
where
    B: Backend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> &'q str: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> String: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<String>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> bool: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> PageRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, B::Row>,
{
    let before: Option<PageRow> = sqlx::query_as(&B::locked(SELECT_PAGE))
        .bind(author.tenant_id.as_str())
        .fetch_optional(&mut *connection)
        .await?;
    let before = before.map(page_from_row).transpose()?;
    let selector = serde_json::to_string(&config.selector)
        .map_err(|error| StoreError::Internal(format!("status page selector: {error}")))?;
    let (version,): (i64,) = sqlx::query_as(UPSERT_PAGE)
        .bind(author.tenant_id.as_str())
        .bind(config.enabled)
        .bind(config.public)
        .bind(config.title.clone())
        .bind(config.description.clone())
        .bind(selector)
        .bind(now)
        .bind(author.subject.as_str())
        .fetch_one(&mut *connection)
        .await?;
    let after = StoredStatusPage {
        config: config.clone(),
        modified_at: now,
        modified_by: author.subject.clone(),
        version,
    };
    let record = crate::integration::AuditRecord {
        tenant_id: author.tenant_id.clone(),
        actor: author.subject.clone(),
        action: "status_page.update".to_owned(),
        target_id: STATUS_PAGE_TARGET,
        before: before.map(|before| snapshot(&before.config, before.version)),
        after: Some(snapshot(config, version)),
        reason: None,
        ticket: None,
        occurred_at: now,
    };
    Ok((after, record))
}

/// The one field of an audit snapshot the page reads.
#[derive(Deserialize)]
struct Snapshot {
    status: String,
}

fn status_of(snapshot: Option<&str>) -> Option<Status> {
    let snapshot: Snapshot = serde_json::from_str(snapshot?).ok()?;
    snapshot.status.parse().ok()
}

struct Tables<'p, B: Backend>(&'p sqlx::Pool<B>);

impl<B> Tables<'_, B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> &'q str: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> String: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<String>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> bool: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> PageRow: sqlx::FromRow<'r, B::Row>,
    for<'r> MemberRow: sqlx::FromRow<'r, B::Row>,
    for<'r> TransitionRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, B::Row>,
{
    async fn get(&self, tenant_id: &str) -> Result<Option<StoredStatusPage>, StoreError> {
        let row: Option<PageRow> = sqlx::query_as(SELECT_PAGE)
            .bind(tenant_id)
            .fetch_optional(self.0)
            .await?;
        row.map(page_from_row).transpose()
    }

    async fn members(&self, tenant_id: &str) -> Result<Vec<Member>, StoreError> {
        let rows: Vec<MemberRow> = sqlx::query_as(SELECT_MEMBERS)
            .bind(tenant_id)
            .fetch_all(self.0)
            .await?;
        rows.into_iter()
            .map(|(integration_id, name, status, environment, tags)| {
                Ok(Member {
                    integration_id,
                    name,
                    status: status
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("status {status:?}")))?,
                    environment,
                    tags: tags.0,
                })
            })
            .collect()
    }

    async fn transitions(
        &self,
        tenant_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<HealthTransition>, StoreError> {
        let rows: Vec<TransitionRow> = sqlx::query_as(SELECT_TRANSITIONS)
            .bind(tenant_id)
            .bind(since)
            .fetch_all(self.0)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(integration_id, at, before, after)| {
                let from = status_of(before.as_deref())?;
                let to = status_of(after.as_deref())?;
                (from != to).then_some(HealthTransition {
                    integration_id,
                    at,
                    from,
                    to,
                })
            })
            .collect())
    }
}

/// The status pages' tables, on either backend. Cheap to clone.
#[derive(Clone)]
pub struct StatusPages {
    pool: Pool,
}

impl std::fmt::Debug for StatusPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPages").finish_non_exhaustive()
    }
}

impl StatusPages {
    /// Built over the daemon's one pool: see [`super::Database::status_pages`].
    pub(super) fn over(pool: Pool) -> Self {
        StatusPages { pool }
    }

    /// The tenant's page configuration; `None` when it never configured one.
    pub async fn get(&self, tenant_id: &str) -> Result<Option<StoredStatusPage>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => Tables(pool).get(tenant_id).await,
            Pool::Postgres(pool) => Tables(pool).get(tenant_id).await,
        }
    }

    /// The tenant's integrations, drafts included, ordered by name.
    pub async fn members(&self, tenant_id: &str) -> Result<Vec<Member>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => Tables(pool).members(tenant_id).await,
            Pool::Postgres(pool) => Tables(pool).members(tenant_id).await,
        }
    }

    /// The status changes the monitor committed for the tenant since `since`, oldest first.
    pub async fn transitions(
        &self,
        tenant_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<HealthTransition>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => Tables(pool).transitions(tenant_id, since).await,
            Pool::Postgres(pool) => Tables(pool).transitions(tenant_id, since).await,
        }
    }
}
