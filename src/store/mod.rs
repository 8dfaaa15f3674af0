//! Persistence: one [`Store`] trait, implemented for SQLite (the embedded default) and
//! PostgreSQL (production). The backend is chosen from the scheme of `database.url`.
//!
//! Every method takes the tenant id and every query filters on it: there is no way to reach a
//! row of another tenant through this trait. Each mutation commits the row, its hash-chained
//! audit entry (and, with the engine, its outbox event) in one transaction.
//!
//! The code is written once for both backends, generic over [`backend::Backend`] (what
//! differs: how a write transaction starts, row locking, and SQLite's write gate, a no-op on
//! PostgreSQL); no macro instantiates it per backend. [`Database`] is the one opaque handle
//! the daemon holds: every store is built over its pool, and no sqlx type leaves this module
//! except through [`StoreError`]'s classification of driver errors.
//!
//! - `database`: [`Database`]; `backend`: the [`backend::Backend`] trait and the write gate;
//!   `sqlite`, `postgres`: opening a pool and migrating it;
//! - `sql`: the catalog [`Store`]; `rows`: its row shapes; `listing`: the list's JSON as the
//!   database assembles it; [`audit_chain`]: the hash chain;
//! - [`history`]: the health history; [`outbox`]: the relay's view of the outbox;
//!   [`census`]: the metrics' fleet-wide reads; [`status_pages`]: the status page's
//!   configuration and reads.

use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::cluster::Claim;
use crate::integration::{
    Author, Change, ChangeError, CheckSummary, Integration, IntegrationType, TestSummary,
};
use crate::maintenance::{MaintenanceWindow, WindowChange};
use catalogd_actors::{EventKind, FlapState, Lifecycle, Maintenance, Status, Thresholds};

pub mod audit_chain;
mod backend;
pub mod census;
mod database;
pub mod history;
pub mod leases;
mod listing;
pub mod outbox;
mod postgres;
mod rows;
mod sql;
mod sqlite;
pub mod status_pages;

pub use audit_chain::{AuditEntry, ChainProblem};

/// Filters and keyset position for listing integrations. Results are ordered by
/// `(name, integration_id)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub kind: Option<IntegrationType>,
    pub provider: Option<String>,
    pub status: Option<Status>,
    pub environment: Option<String>,
    pub tag: Option<String>,
    /// Name prefix.
    pub name_prefix: Option<String>,
    /// Return rows strictly after this `(name, id)`.
    pub after: Option<(String, Uuid)>,
    pub limit: u32,
}

/// Filters and keyset position for the audit trail, ordered by the tenant's chain sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub integration_id: Option<Uuid>,
    /// Return entries with a chain sequence strictly greater than this.
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// A page of results; `has_more` tells whether another page follows the last item.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// One page of the integration list as JSON the database assembled ([`Store::list_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPage {
    /// The items' JSON objects, comma-separated, in list order; empty when there are none.
    pub items: String,
    /// The `(name, id)` of the last item, when another page follows.
    pub next: Option<(String, Uuid)>,
}

/// The result of verifying the audit chains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainReport {
    pub tenants: u64,
    pub entries: u64,
    /// The first bad entry found, if any.
    pub problem: Option<ChainProblem>,
}

/// Why a store call failed, classified by the store itself, so no caller ever looks at a
/// driver error or a database's error codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("integration not found")]
    NotFound,
    #[error("an integration with this name already exists")]
    NameTaken,
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// The database is unreachable, busy, shutting down or out of connections: a retry may
    /// cure it. The message is for the log only.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported (a bug, a failed migration). For the log only.
    #[error("database error: {0}")]
    Internal(String),
    /// A stored value this build cannot decode.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database would acknowledge commits it can still lose, and that was not allowed.
    #[error(
        "PostgreSQL runs with synchronous_commit = {0}: a committed transition, with its audit \
         entry and its event, could be lost in a server crash. Set synchronous_commit = on for \
         catalogd's database or role (ALTER ROLE … SET synchronous_commit = on), or set \
         database.allow_unsafe_durability = true to accept the loss"
    )]
    UnsafeDurability(String),
    /// Another daemon serves this SQLite database.
    #[error(
        "another catalogd is already serving the SQLite database {0}: SQLite is single-node. \
         Stop the other daemon, give this one its own database.url, or run several daemons \
         on PostgreSQL"
    )]
    InUse(std::path::PathBuf),
    /// The database's shard count differs from `cluster.shards` (it is fixed per database).
    #[error(
        "cluster.shards = {configured}, but this database was set up with {stored} shards; \
         the shard count is fixed per database: set cluster.shards = {stored}"
    )]
    ShardCount { configured: u32, stored: u32 },
}

impl StoreError {
    /// Whether a retry may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The one place driver errors are classified. Undecodable values are corruption; connection
/// trouble is unavailability; the rest is internal.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(error.to_string()),
            _ if is_unavailable(&error) => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Internal(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(error) => StoreError::from(error),
            other => StoreError::Internal(format!("migration: {other}")),
        }
    }
}

/// Connection-level trouble that a retry may cure, as opposed to a bug or a constraint.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // SQLite BUSY / LOCKED; PostgreSQL connection exceptions (08xxx), too many
            // connections, admin or crash shutdown, cannot connect now.
            matches!(
                code.as_ref(),
                "5" | "6" | "53300" | "57P01" | "57P02" | "57P03"
            ) || code.starts_with("08")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_are_classified() {
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StoreError::from(sqlx::Error::PoolClosed).is_unavailable());
        let internal = StoreError::from(sqlx::Error::Protocol("SELECT 1".into()));
        assert!(matches!(internal, StoreError::Internal(_)), "{internal:?}");
        let corrupt = StoreError::from(sqlx::Error::ColumnNotFound("x".into()));
        assert!(matches!(corrupt, StoreError::Corrupt(_)), "{corrupt:?}");
    }
}

/// Told right after each commit how an integration changed, for in-memory views that must
/// follow every change at once without reading the store again (the fleet gauges). Called
/// after the commit, never before, and never for a rolled-back change; must not block.
pub trait ChangeObserver: Send + Sync + 'static {
    /// `before` is `None` for a creation, `after` is `None` for a deletion.
    fn committed(&self, before: Option<&Integration>, after: Option<&Integration>);
}

/// No one observes: the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl ChangeObserver for Unobserved {
    fn committed(&self, _before: Option<&Integration>, _after: Option<&Integration>) {}
}

/// Options that the store needs from the configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    /// PostgreSQL password from `database.password_file` / `password_env`; overrides any in
    /// the URL.
    pub password: Option<secrecy::SecretString>,
    pub max_connections: u32,
    /// SQLite `synchronous=FULL` (durable on power loss) rather than `NORMAL`.
    pub sqlite_synchronous_full: bool,
    /// Start on PostgreSQL even with `synchronous_commit = off`.
    pub allow_unsafe_durability: bool,
    /// Lifecycle thresholds used when an integration does not set its own.
    pub default_thresholds: Thresholds,
}

// `commit_check` carries everything one transition commit needs, each a plain value.
#[allow(clippy::too_many_arguments)]
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap liveness probe of the database, for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts a new integration and its `integration.create` audit entry.
    async fn create(&self, integration: &Integration) -> Result<(), StoreError>;

    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Integration>, StoreError>;

    async fn list(
        &self,
        tenant_id: &str,
        query: &ListQuery,
    ) -> Result<Page<Integration>, StoreError>;

    /// The page [`Store::list`] answers, as JSON: each item means exactly what serializing
    /// its [`Integration`] gives, but the database assembles it, so no row is decoded here.
    async fn list_json(&self, tenant_id: &str, query: &ListQuery) -> Result<JsonPage, StoreError>;

    /// Locks the row, applies [`crate::integration::apply_change`] to it and commits the
    /// result with its audit entry. Returns the new row, or `None` after a delete.
    async fn change(
        &self,
        author: &Author,
        id: Uuid,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Option<Integration>, StoreError>;

    /// Applies `operations` in order — creations and changes, each audited and evented as
    /// on its own — in **one** transaction: all of them or none (an import, DESIGN §12).
    async fn import(
        &self,
        author: &Author,
        operations: Vec<ImportOp>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.import_counted(author, operations, now, &ImportProgress::default())
            .await
    }

    /// [`Store::import`], counting the operations written so far in `progress.done` (before
    /// the commit: a bar that reaches the end is then committing).
    async fn import_counted(
        &self,
        author: &Author,
        operations: Vec<ImportOp>,
        now: DateTime<Utc>,
        progress: &ImportProgress,
    ) -> Result<(), StoreError>;

    async fn list_audit(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> Result<Page<AuditEntry>, StoreError>;

    /// Walks every tenant's audit chain (or one tenant's) and reports the first bad entry.
    async fn verify_audit(&self, tenant_id: Option<&str>) -> Result<ChainReport, StoreError>;

    /// Records a manual connection test: the integration's last-test fields, an
    /// `integration.test` audit entry with the result and an `integration.tested` outbox
    /// event (DESIGN §12), in one transaction. Does not change the version or the lifecycle
    /// (the owning actor applies the result as a check). `now` is when it is recorded.
    async fn record_test(
        &self,
        author: &Author,
        id: Uuid,
        test: &TestSummary,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Replaces the author's tenant's status page configuration, with its
    /// `status_page.update` audit entry, in one transaction.
    async fn put_status_page(
        &self,
        author: &Author,
        config: &status_pages::StatusPageConfig,
        now: DateTime<Utc>,
    ) -> Result<status_pages::StoredStatusPage, StoreError>;

    // --- The engine's view -------------------------------------------------------------
    //
    // The monitor runs every tenant's integrations, so these read across tenants by design.
    // They are called by the engine only; no request ever reaches them.

    /// Integrations that are not drafts, in id order, `limit` at a time after `after`.
    async fn monitored_page(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Integration>, StoreError>;

    /// `(id, version)` of every integration that is not a draft.
    async fn monitored_versions(&self) -> Result<Vec<(Uuid, i64)>, StoreError>;

    /// One integration by id, whatever its tenant.
    async fn load(&self, id: Uuid) -> Result<Option<Integration>, StoreError>;

    /// Commits a status change the monitor computed from a check — the new lifecycle state,
    /// its audit entry and its outbox event in one transaction — if the row is still at
    /// `expected_version`. Otherwise returns the row as it is now (or `None` if it is gone).
    ///
    /// With a `claim` (a monitor of a leased cluster), it commits only if this node still
    /// holds the integration's shard at the claim's epoch, checked in the same transaction
    /// ([`crate::cluster::admits`]); otherwise nothing is written and it returns
    /// [`CheckCommit::Fenced`].
    ///
    /// Concurrent calls are committed in groups (one transaction and one commit for all that
    /// queued meanwhile), each transition still atomic and answered on its own: a stale or
    /// fenced transition does not hold back the others of its group.
    async fn commit_check(
        &self,
        id: Uuid,
        expected_version: i64,
        lifecycle: Lifecycle,
        event: Option<EventKind>,
        flap: Option<FlapState>,
        check: CheckSummary,
        now: DateTime<Utc>,
        claim: Option<Claim>,
    ) -> Result<CheckCommit, StoreError>;

    /// Commits the integration's entering or leaving a maintenance window (DESIGN §10) as its
    /// monitor decided: the `maintenance` field, the counters (`lifecycle`), a new version,
    /// the audit entry and `event` in one transaction, like [`Store::commit_check`] (grouped,
    /// version-checked, fenced by `claim`).
    #[allow(clippy::too_many_arguments)]
    async fn commit_maintenance(
        &self,
        id: Uuid,
        expected_version: i64,
        lifecycle: Lifecycle,
        maintenance: Option<Maintenance>,
        event: Option<EventKind>,
        now: DateTime<Utc>,
        claim: Option<Claim>,
    ) -> Result<CheckCommit, StoreError>;

    /// Writes which integrations suppress this one's failures (DESIGN §10), as its monitor
    /// decided. Not a change of the resource: the version stays, no audit entry or event.
    /// With a `claim`, written only if this node still holds the shard (else `Fenced`).
    async fn set_suppressed_by(
        &self,
        id: Uuid,
        suppressed_by: &[Uuid],
        claim: Option<Claim>,
    ) -> Result<CheckCommit, StoreError>;

    /// `(id, status, dependsOn)` of the tenant's integrations among `ids` (those that exist):
    /// what the engine learns of dependencies it does not monitor itself.
    async fn dependencies(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Status, Vec<Uuid>)>, StoreError>;

    // --- Maintenance windows (DESIGN §10) ----------------------------------------------

    /// Inserts a window and its `maintenance_window.create` audit entry.
    async fn create_window(&self, window: &MaintenanceWindow) -> Result<(), StoreError>;

    async fn get_window(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<MaintenanceWindow>, StoreError>;

    /// The tenant's windows, ordered by name, then id.
    async fn list_windows(&self, tenant_id: &str) -> Result<Vec<MaintenanceWindow>, StoreError>;

    /// Locks the window, applies [`crate::maintenance::apply`] and commits the result with
    /// its audit entry. Returns the new window, or `None` after a delete.
    async fn change_window(
        &self,
        author: &Author,
        id: Uuid,
        change: WindowChange,
        now: DateTime<Utc>,
    ) -> Result<Option<MaintenanceWindow>, StoreError>;

    /// Every tenant's windows, for the engine (never reached by a request).
    async fn all_windows(&self) -> Result<Vec<MaintenanceWindow>, StoreError>;
}

/// How far an import has got, for a progress bar: `total` operations planned (set once the
/// plan is made), `done` of them written.
#[derive(Debug, Default)]
pub struct ImportProgress {
    pub total: AtomicU64,
    pub done: AtomicU64,
}

/// One step of [`Store::import`].
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOp {
    // Boxed: an import holds up to a hundred thousand of them, each a few hundred bytes
    // inline, and the two differ in size.
    Create(Box<Integration>),
    Change(Uuid, Box<Change>),
}

/// The outcome of [`Store::commit_check`].
#[derive(Debug, Clone, PartialEq)]
pub enum CheckCommit {
    Committed(Integration),
    /// The row moved on (a REST change won) or is gone; here it is as stored.
    Stale(Option<Integration>),
    /// This node no longer holds the integration's shard at the claim's epoch: nothing was
    /// written, and nothing written under that claim ever will be.
    Fenced,
}

pub use backend::WriteGate;
pub use database::Database;
pub use sqlite::ServeLock;

/// Opens the backend named by `options.url`, creating the SQLite file if needed, and applies
/// the embedded migrations.
pub async fn open(options: &StoreOptions) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    sql::open(options).await
}
