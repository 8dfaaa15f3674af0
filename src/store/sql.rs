//! SQL implementations of [`super::Store`] for SQLite and PostgreSQL.
//!
//! Both backends run the same SQL text: SQLite accepts PostgreSQL's `$n` placeholders, row
//! values and `ON CONFLICT`, and the two schemas use the same names. So [`SqlStore`] is
//! written once, generic over the [`Backend`]; the few statements that genuinely differ (how
//! a write transaction starts, how a row is locked) and the write [`Gate`] come from there.
//! Opening a pool and migrating live in [`super::sqlite`] and [`super::postgres`].
//!
//! Every query is built at run time (there is no database at build time) and filters on the
//! tenant id. Lists are keyset-paginated on `(name, integration_id)`, never with OFFSET.
//!
//! Writes take the locks in one order (the integration row, then the tenant's audit head), so
//! two writers of one tenant queue rather than deadlock.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::types::Json;
use sqlx::QueryBuilder;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::audit_chain::{ChainProblem, ChainVerifier, StoredAuditEntry, GENESIS_HASH};
use super::backend::{begin, Backend, Gate};
use super::listing;
use super::outbox::Handoff;
use super::rows::{self, AuditRow, IntegrationRow, AUDIT_COLUMNS, INTEGRATION_COLUMNS};
use super::{
    AuditEntry, AuditQuery, ChainReport, ChangeObserver, CheckCommit, ImportOp, ImportProgress,
    JsonPage, ListQuery, Page, Store, StoreError, StoreOptions,
};
use crate::cloudevents::{self, EventCause, OutboxEvent};
use crate::cluster::Claim;
use crate::integration::{
    self, Applied, AuditRecord, Author, Change, CheckSummary, HealthCheck, Integration, TestSummary,
};
use crate::maintenance::{MaintenanceWindow, WindowChange};
use catalogd_actors::{EventKind, FlapState, Lifecycle, Maintenance, Status, Thresholds};

mod group_commit;

/// Opens the backend named by the URL scheme and applies its migrations.
pub async fn open(options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    Ok(super::Database::connect(options)
        .await?
        .store(options.default_thresholds))
}

/// How many audit entries verification holds at a time.
const VERIFY_BATCH: i64 = 1000;
/// Tag rows per `INSERT`, far below either backend's bind-parameter limit.
const TAG_ROWS_PER_INSERT: usize = 500;

/// `i.integration_id, i.tenant_id, ...`: the integration columns of a select from
/// `integrations i`.
static SELECT_INTEGRATION_COLUMNS: LazyLock<String> =
    LazyLock::new(|| qualified(&INTEGRATION_COLUMNS, "i"));

/// One integration as the API reads it: with the newest check its row does not show yet.
fn select_integration(dialect: &listing::Dialect) -> String {
    format!(
        "SELECT {}, {} AS latest_check FROM integrations i \
         WHERE i.tenant_id = $1 AND i.integration_id = $2",
        *SELECT_INTEGRATION_COLUMNS, dialect.latest_check
    )
}

/// New integrations per multi-row `INSERT` of an import (30 binds each: 3,840 parameters,
/// far below SQLite's 32,766 and PostgreSQL's 65,535).
const CREATIONS_PER_STATEMENT: usize = 128;
/// Creations an import writes at a time (its events and audit entries are held until then).
const CREATIONS_PER_ROUND: usize = 1024;

/// `INSERT INTO integrations (…, event_sequence) VALUES ($1, …, $31, 1), ($32, …)`: `rows`
/// new integrations, each bound by [`SqlStore::bind_integration`], one after the other. The event
/// sequence is set in the insert: `integration.created` is a new row's event 1, and taking it
/// with [`NEXT_EVENT_SEQUENCE`] made a second version of every row just inserted, through a
/// lookup whose plan PostgreSQL had cached while the table was empty (a sequential scan, so an
/// import of n items cost O(n²)).
fn insert_integrations(rows: usize) -> String {
    let columns = INTEGRATION_COLUMNS.len();
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let placeholders: Vec<String> = (1..=columns)
                .map(|n| format!("${}", row * columns + n))
                .collect();
            format!("({}, 1)", placeholders.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO integrations ({}, event_sequence) VALUES {}",
        INTEGRATION_COLUMNS.join(", "),
        values.join(", ")
    )
}

/// Binds like [`insert_integrations`]' rows; `$1` (id) and `$2` (tenant) select the row.
static UPDATE_INTEGRATION: LazyLock<String> = LazyLock::new(|| {
    let assignments: Vec<String> = INTEGRATION_COLUMNS
        .iter()
        .enumerate()
        .skip(2)
        .map(|(index, column)| format!("{column} = ${}", index + 1))
        .collect();
    format!(
        "UPDATE integrations SET {} WHERE integration_id = $1 AND tenant_id = $2",
        assignments.join(", ")
    )
});

static SELECT_AUDIT_COLUMNS: LazyLock<String> = LazyLock::new(|| AUDIT_COLUMNS.join(", "));

/// Binds `$1..$14` in [`AUDIT_COLUMNS`] order, then who wrote the entry ([`Writer`]).
static INSERT_AUDIT: LazyLock<String> = LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=AUDIT_COLUMNS.len() + WRITER_COLUMNS.len())
        .map(|n| format!("${n}"))
        .collect();
    format!(
        "INSERT INTO audit_log ({}, {}) VALUES ({})",
        AUDIT_COLUMNS.join(", "),
        WRITER_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

const INSERT_WINDOW: &str = "INSERT INTO maintenance_windows \
     (window_id, tenant_id, name, version, body) VALUES ($1, $2, $3, $4, $5)";
const SELECT_WINDOW: &str =
    "SELECT body FROM maintenance_windows WHERE tenant_id = $1 AND window_id = $2";
const LIST_WINDOWS: &str =
    "SELECT body FROM maintenance_windows WHERE tenant_id = $1 ORDER BY name, window_id";
const ALL_WINDOWS: &str = "SELECT body FROM maintenance_windows ORDER BY tenant_id, window_id";
const UPDATE_WINDOW: &str = "UPDATE maintenance_windows SET name = $3, version = $4, body = $5 \
     WHERE window_id = $1 AND tenant_id = $2";
const DELETE_WINDOW: &str =
    "DELETE FROM maintenance_windows WHERE window_id = $1 AND tenant_id = $2";

/// A window's times at the precision the integrations' are stored at, so what a create
/// returns is what a read gives back.
fn window_with_stored_precision(window: &MaintenanceWindow) -> MaintenanceWindow {
    MaintenanceWindow {
        created_at: rows::stored_precision(window.created_at),
        modified_at: rows::stored_precision(window.modified_at),
        ..window.clone()
    }
}

fn window_body(window: &MaintenanceWindow) -> Result<String, StoreError> {
    serde_json::to_string(window).map_err(|e| StoreError::Internal(e.to_string()))
}

fn window_from_body(body: &str) -> Result<MaintenanceWindow, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("maintenance window: {e}")))
}

/// Who wrote an audit entry or an event: the node, and for a monitor's write the claim it was
/// made under (PostgreSQL adds `written_at`, the database's clock at the insert).
const WRITER_COLUMNS: [&str; 3] = ["written_by", "shard", "epoch"];

/// The node writing, and the claim a monitor's write is made under (`None` for a change
/// made over REST or NATS, which any node may commit).
#[derive(Debug, Clone, Copy)]
struct Writer<'a> {
    node: &'a str,
    claim: Option<Claim>,
}

impl Writer<'_> {
    fn shard(&self) -> Option<i64> {
        self.claim.map(|claim| i64::from(claim.shard))
    }

    fn epoch(&self) -> Option<i64> {
        self.claim.map(|claim| claim.epoch)
    }
}

static SELECT_AUDIT_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM audit_log WHERE tenant_id = $1 AND sequence > $2 \
         ORDER BY sequence LIMIT $3",
        *SELECT_AUDIT_COLUMNS
    )
});

static SELECT_INTEGRATION_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM integrations i WHERE i.integration_id = $1",
        *SELECT_INTEGRATION_COLUMNS
    )
});

static SELECT_MONITORED_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM integrations i WHERE i.status <> 'draft' AND i.integration_id > $1 \
         ORDER BY i.integration_id LIMIT $2",
        *SELECT_INTEGRATION_COLUMNS
    )
});

const SELECT_MONITORED_VERSIONS: &str =
    "SELECT integration_id, version FROM integrations WHERE status <> 'draft'";

/// Takes the integration's next event sequence number. Runs under the row lock, so the
/// numbers of one integration are gap-free and in commit order.
const NEXT_EVENT_SEQUENCE: &str = "UPDATE integrations SET event_sequence = event_sequence + 1 \
     WHERE integration_id = $1 RETURNING event_sequence";

const INSERT_OUTBOX: &str = "INSERT INTO outbox (event_id, tenant_id, integration_id, sequence, \
     event_type, subject, payload, created_at, written_by, shard, epoch) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const UPDATE_LAST_TEST: &str = "UPDATE integrations SET last_tested_at = $3, \
     last_test_success = $4 WHERE tenant_id = $1 AND integration_id = $2";

/// Written by the monitor without bumping the version: suppression is health state, like the
/// last check's fields, not an edit of the resource.
const UPDATE_SUPPRESSED_BY: &str =
    "UPDATE integrations SET suppressed_by = $2 WHERE integration_id = $1";

/// Ids per `IN (…)` list when reading dependencies.
const DEPENDENCY_ROWS_PER_SELECT: usize = 500;

const DELETE_INTEGRATION: &str =
    "DELETE FROM integrations WHERE tenant_id = $1 AND integration_id = $2";
const INSERT_TAGS: &str = "INSERT INTO integration_tags (tenant_id, tag, name, integration_id) ";
const DELETE_TAGS: &str =
    "DELETE FROM integration_tags WHERE tenant_id = $1 AND integration_id = $2";
const SELECT_HEAD: &str = "SELECT sequence, hash FROM audit_heads WHERE tenant_id = $1";
const INSERT_HEAD: &str = "INSERT INTO audit_heads (tenant_id, sequence, hash) VALUES ($1, 0, $2) \
     ON CONFLICT (tenant_id) DO NOTHING";
const UPDATE_HEAD: &str = "UPDATE audit_heads SET sequence = $2, hash = $3 WHERE tenant_id = $1";
const SELECT_AUDITED_TENANTS: &str =
    "SELECT tenant_id FROM audit_heads UNION SELECT tenant_id FROM audit_log ORDER BY tenant_id";

fn qualified(columns: &[&str], table: &str) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|column| format!("{table}.{column}"))
        .collect();
    columns.join(", ")
}

/// The least string greater than every string that starts with `prefix` (in UTF-8 byte
/// order, which is code point order), or `None` if there is none. A prefix search is then the
/// index range `prefix <= name < end`, with no LIKE and no escaping.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            other => char::from_u32(u32::from(other) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
        // `last` was U+10FFFF: nothing follows it, so carry into the previous character.
    }
    None
}

/// The table whose `(name, integration_id)` a list is keyed and ordered on: the tag row `t`
/// when filtering by tag (its primary key is the index range), else the integration `i`.
fn list_key(query: &ListQuery) -> &'static str {
    if query.tag.is_some() {
        "t"
    } else {
        "i"
    }
}

/// [`listing`]'s answer: the items joined, the name and id of the last, and the rows found
/// from the page's start (`limit + 1` at most).
type JsonPageRow = (Option<String>, Option<String>, Option<Uuid>, i64);

/// Maps a failure to read rows (classified by [`StoreError`]'s `From`).
fn read_error(error: sqlx::Error) -> StoreError {
    StoreError::from(error)
}

/// Maps a failure to write an integration row: the only unique key a caller can hit is
/// `(tenant_id, name)`.
fn write_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => StoreError::NameTaken,
        _ => StoreError::from(error),
    }
}

/// The catalog [`Store`] over one backend's pool. Its two generic `impl` blocks (the
/// helpers below and [`Store`]) state the same sqlx bounds: the column types they bind and
/// the rows they read, for any [`Backend`].
pub(super) struct SqlStore<B: Backend> {
    pool: sqlx::Pool<B>,
    default_thresholds: Thresholds,
    /// Hands each committed event to the outbox relay.
    handoff: Arc<Handoff>,
    /// Told about each committed change (the fleet gauges).
    observer: Arc<dyn ChangeObserver>,
    /// SQLite's writers take turns ([`super::WriteGate`]); PostgreSQL locks rows.
    gate: Gate,
    /// This daemon's `cluster.node_id`, written with every audit entry and event.
    node: Arc<str>,
    /// The queue of the task that commits the monitors' transitions in groups
    /// ([`group_commit`]), started by the first [`Store::commit_check`].
    committer: OnceLock<mpsc::UnboundedSender<group_commit::Pending>>,
}

impl<B: Backend> SqlStore<B> {
    pub(super) fn new(
        pool: sqlx::Pool<B>,
        gate: Gate,
        default_thresholds: Thresholds,
        handoff: Arc<Handoff>,
        observer: Arc<dyn ChangeObserver>,
        node: Arc<str>,
    ) -> Self {
        SqlStore {
            pool,
            default_thresholds,
            handoff,
            observer,
            gate,
            node,
            committer: OnceLock::new(),
        }
    }

    /// The same store without a committer of its own: what the committer task holds, so
    /// that the task ends once every handle to the store is dropped.
    fn detached(&self) -> Self {
        SqlStore::new(
            self.pool.clone(),
            self.gate.clone(),
            self.default_thresholds,
            self.handoff.clone(),
            self.observer.clone(),
            self.node.clone(),
        )
    }

    fn writer(&self, claim: Option<Claim>) -> Writer<'_> {
        Writer {
            node: &self.node,
            claim,
        }
    }
}

impl<B> SqlStore<B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> &'q str: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> String: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Uuid: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> i64: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> bool: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<String>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<bool>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<DateTime<Utc>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<i64>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q serde_json::Map<String, serde_json::Value>>:
        sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Vec<String>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q HealthCheck>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Vec<Uuid>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Option<Maintenance>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Vec<DateTime<Utc>>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> IntegrationRow: sqlx::FromRow<'r, B::Row>,
    for<'r> AuditRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (i64, String): sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid, i64): sqlx::FromRow<'r, B::Row>,
    for<'r> (String,): sqlx::FromRow<'r, B::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, B::Row>,
    for<'r> JsonPageRow: sqlx::FromRow<'r, B::Row>,
    for<'r> listing::ListRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid, String, Json<Vec<Uuid>>): sqlx::FromRow<'r, B::Row>,
{
    /// Binds every column of `integration` in [`INTEGRATION_COLUMNS`] order (31 values).
    fn bind_integration<'q>(
        query: sqlx::query::Query<'q, B, <B as sqlx::Database>::Arguments<'q>>,
        integration: &'q Integration,
    ) -> sqlx::query::Query<'q, B, <B as sqlx::Database>::Arguments<'q>> {
        query
            .bind(integration.integration_id)
            .bind(&integration.tenant_id)
            .bind(&integration.name)
            .bind(&integration.description)
            .bind(integration.kind.as_str())
            .bind(&integration.provider)
            .bind(&integration.base_url)
            .bind(&integration.auth_ref)
            .bind(Json(&integration.configuration))
            .bind(&integration.environment)
            .bind(Json(&integration.tags))
            .bind(&integration.owner_id)
            .bind(Json(&integration.health_check))
            .bind(integration.status.as_str())
            .bind(integration.paused)
            .bind(&integration.pause_reason)
            .bind(&integration.pause_ticket)
            .bind(integration.last_tested_at)
            .bind(integration.last_test_success)
            .bind(i64::from(integration.consecutive_failures))
            .bind(i64::from(integration.consecutive_successes))
            .bind(integration.created_at)
            .bind(&integration.created_by)
            .bind(integration.modified_at)
            .bind(&integration.modified_by)
            .bind(integration.version)
            .bind(Json(&integration.depends_on))
            .bind(Json(&integration.suppressed_by))
            .bind(integration.flapping)
            .bind(Json(&integration.flap_transitions))
            .bind(Json(&integration.maintenance))
    }

    /// Writes one `integration_tags` row per distinct tag.
    async fn insert_tags(
        connection: &mut <B as sqlx::Database>::Connection,
        integration: &Integration,
    ) -> Result<(), StoreError> {
        let mut tags: Vec<&str> = integration.tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        tags.dedup();
        for chunk in tags.chunks(TAG_ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<B>::new(INSERT_TAGS);
            insert.push_values(chunk, |mut row, tag| {
                row.push_bind(integration.tenant_id.as_str())
                    .push_bind(*tag)
                    .push_bind(integration.name.as_str())
                    .push_bind(integration.integration_id);
            });
            B::build(&mut insert).execute(&mut *connection).await?;
        }
        Ok(())
    }

    /// Chains `record` onto its tenant's audit trail. Locks the tenant's head row
    /// first (creating it on the tenant's first entry), so concurrent appends queue
    /// and each links to the one before.
    async fn append_audit(
        connection: &mut <B as sqlx::Database>::Connection,
        record: &AuditRecord,
        writer: Writer<'_>,
    ) -> Result<(), StoreError> {
        Self::append_audit_held(connection, record, writer, None).await
    }

    /// [`Self::append_audit`]; with `held`, the heads of a long transaction (an import) are
    /// locked and read once per tenant and kept there, and the caller writes them back once
    /// ([`Self::store_heads`]): one head row updated a hundred thousand times in one
    /// PostgreSQL transaction leaves as many dead versions of it for each read to walk.
    async fn append_audit_held(
        connection: &mut <B as sqlx::Database>::Connection,
        record: &AuditRecord,
        writer: Writer<'_>,
        held: Option<&mut HashMap<String, (i64, String)>>,
    ) -> Result<(), StoreError> {
        let kept = held
            .as_ref()
            .and_then(|held| held.get(&record.tenant_id).cloned());
        let (sequence, hash) = match kept {
            Some(head) => head,
            None => Self::lock_head(connection, &record.tenant_id).await?,
        };
        let record = AuditRecord {
            occurred_at: rows::stored_precision(record.occurred_at),
            ..record.clone()
        };
        let entry = StoredAuditEntry::chain(&record, sequence, &hash);
        sqlx::query(&INSERT_AUDIT)
            .bind(entry.entry_id)
            .bind(&entry.tenant_id)
            .bind(entry.sequence)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target_type)
            .bind(entry.target_id)
            .bind(&entry.before)
            .bind(&entry.after)
            .bind(&entry.reason)
            .bind(&entry.ticket)
            .bind(entry.occurred_at)
            .bind(&entry.prev_hash)
            .bind(&entry.hash)
            .bind(writer.node)
            .bind(writer.shard())
            .bind(writer.epoch())
            .execute(&mut *connection)
            .await?;
        match held {
            Some(held) => {
                held.insert(
                    entry.tenant_id.clone(),
                    (entry.sequence, entry.hash.clone()),
                );
            }
            None => {
                Self::store_heads(
                    connection,
                    &HashMap::from([(entry.tenant_id.clone(), (entry.sequence, entry.hash))]),
                )
                .await?
            }
        }
        Ok(())
    }

    /// The tenant's audit head, locked (created on the tenant's first entry).
    async fn lock_head(
        connection: &mut <B as sqlx::Database>::Connection,
        tenant_id: &str,
    ) -> Result<(i64, String), StoreError> {
        let select_head = B::locked(SELECT_HEAD);
        let head: Option<(i64, String)> = sqlx::query_as(&select_head)
            .bind(tenant_id)
            .fetch_optional(&mut *connection)
            .await?;
        Ok(match head {
            Some(head) => head,
            None => {
                sqlx::query(INSERT_HEAD)
                    .bind(tenant_id)
                    .bind(GENESIS_HASH)
                    .execute(&mut *connection)
                    .await?;
                sqlx::query_as(&select_head)
                    .bind(tenant_id)
                    .fetch_one(&mut *connection)
                    .await?
            }
        })
    }

    /// Has the session plan its statements afresh, on the tables as they are now
    /// ([`Backend::REPLAN`]): an import runs it as it starts and after each round of creations.
    async fn replan(connection: &mut <B as sqlx::Database>::Connection) -> Result<(), StoreError> {
        if let Some(statement) = B::REPLAN {
            sqlx::query(statement).execute(&mut *connection).await?;
        }
        Ok(())
    }

    /// Reads the tenant's integration `id` under its row lock (the first lock every change
    /// takes: row, then audit head), as the API reads it.
    async fn lock_row(
        connection: &mut <B as sqlx::Database>::Connection,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        sqlx::query_as(&B::locked(&select_integration(B::listing())))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(read_error)
    }

    /// Writes audit heads back.
    async fn store_heads(
        connection: &mut <B as sqlx::Database>::Connection,
        heads: &HashMap<String, (i64, String)>,
    ) -> Result<(), StoreError> {
        for (tenant_id, (sequence, hash)) in heads {
            sqlx::query(UPDATE_HEAD)
                .bind(tenant_id.as_str())
                .bind(*sequence)
                .bind(hash.as_str())
                .execute(&mut *connection)
                .await?;
        }
        Ok(())
    }

    /// Writes the outbox event of a change and returns it, for the relay once the
    /// transaction has committed. `integration` is the row as it is after the change,
    /// or as it was before a delete (whose row still exists here).
    ///
    /// The event's `time` is when the transition is committed: the caller's `now`
    /// advanced by the time since `called` (the store call began), so it is read here,
    /// inside the transaction, after the write lock (SQLite) or row lock (PostgreSQL)
    /// was taken, right before the outbox and audit rows and the commit are written. A
    /// wait for the lock therefore does not shift it away from the commit, and it stays
    /// on the caller's clock (a test clock included). Commit → receipt latency is
    /// measured from this time (bench F6).
    async fn append_event(
        connection: &mut <B as sqlx::Database>::Connection,
        kind: EventKind,
        integration: &Integration,
        cause: &EventCause,
        now: DateTime<Utc>,
        called: Instant,
        writer: Writer<'_>,
    ) -> Result<OutboxEvent, StoreError> {
        let sequence: i64 = sqlx::query_scalar(NEXT_EVENT_SEQUENCE)
            .bind(integration.integration_id)
            .fetch_one(&mut *connection)
            .await?;
        let time = TimeDelta::from_std(called.elapsed())
            .ok()
            .and_then(|waited| now.checked_add_signed(waited))
            .unwrap_or(now);
        let event = cloudevents::build(kind, integration, sequence, cause, time);
        sqlx::query(INSERT_OUTBOX)
            .bind(event.event_id)
            .bind(&event.tenant_id)
            .bind(event.integration_id)
            .bind(event.sequence)
            .bind(&event.event_type)
            .bind(&event.subject)
            .bind(&event.payload)
            .bind(event.created_at)
            .bind(writer.node)
            .bind(writer.shard())
            .bind(writer.epoch())
            .execute(&mut *connection)
            .await?;
        Ok(event)
    }

    /// Inserts new integrations with their `integration.created` events and audit entries,
    /// in the caller's transaction, several rows per statement; returns the events for the
    /// relay once it has committed. The entries are chained onto `heads` (a tenant's head is
    /// locked and read the first time it is needed); the caller writes them back
    /// ([`Self::store_heads`]).
    async fn insert_created(
        &self,
        connection: &mut <B as sqlx::Database>::Connection,
        integrations: &[Integration],
        called: Instant,
        heads: &mut HashMap<String, (i64, String)>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        for chunk in integrations.chunks(CREATIONS_PER_STATEMENT) {
            let insert = insert_integrations(chunk.len());
            let mut query = sqlx::query(&insert);
            for integration in chunk {
                query = Self::bind_integration(query, integration);
            }
            query.execute(&mut *connection).await.map_err(write_error)?;
        }
        let mut tags: Vec<(&str, &str, &str, Uuid)> = Vec::new();
        for integration in integrations {
            let mut own: Vec<&str> = integration.tags.iter().map(String::as_str).collect();
            own.sort_unstable();
            own.dedup();
            tags.extend(own.into_iter().map(|tag| {
                (
                    integration.tenant_id.as_str(),
                    tag,
                    integration.name.as_str(),
                    integration.integration_id,
                )
            }));
        }
        for chunk in tags.chunks(TAG_ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<B>::new(INSERT_TAGS);
            insert.push_values(chunk, |mut row, (tenant_id, tag, name, id)| {
                row.push_bind(*tenant_id)
                    .push_bind(*tag)
                    .push_bind(*name)
                    .push_bind(*id);
            });
            B::build(&mut insert).execute(&mut *connection).await?;
        }
        let mut events = Vec::with_capacity(integrations.len());
        let mut entries = Vec::with_capacity(integrations.len());
        for integration in integrations {
            let cause = EventCause {
                actor: integration.created_by.clone(),
                ..EventCause::default()
            };
            // When it commits, on the caller's clock (see [`Self::append_event`]).
            let time = TimeDelta::from_std(called.elapsed())
                .ok()
                .and_then(|waited| integration.created_at.checked_add_signed(waited))
                .unwrap_or(integration.created_at);
            let event = cloudevents::build(EventKind::Created, integration, 1, &cause, time);
            events.push((event, None));
            let head = match heads.get_mut(&integration.tenant_id) {
                Some(head) => head,
                None => {
                    let head = Self::lock_head(connection, &integration.tenant_id).await?;
                    heads.entry(integration.tenant_id.clone()).or_insert(head)
                }
            };
            let entry =
                StoredAuditEntry::chain(&integration::created(integration), head.0, &head.1);
            *head = (entry.sequence, entry.hash.clone());
            entries.push((entry, None));
        }
        self.insert_events(connection, &events).await?;
        self.insert_entries(connection, &entries).await?;
        Ok(events.into_iter().map(|(event, _)| event).collect())
    }

    /// Locks the row, applies `change` to it and writes the result with its audit entry and
    /// event, in the caller's transaction: the row before, what changed, and the event.
    // The transaction, the change and its author, its times, and the import's held heads:
    // each a plain value of its own.
    #[allow(clippy::too_many_arguments)]
    async fn change_locked(
        &self,
        connection: &mut <B as sqlx::Database>::Connection,
        author: &Author,
        id: Uuid,
        change: Change,
        now: DateTime<Utc>,
        called: Instant,
        held: Option<&mut HashMap<String, (i64, String)>>,
    ) -> Result<(Integration, Applied, Option<OutboxEvent>), StoreError> {
        let row = Self::lock_row(connection, &author.tenant_id, id).await?;
        let current = row.ok_or(StoreError::NotFound)?.into_integration()?;
        let applied =
            integration::apply_change(&current, change, author, self.default_thresholds, now)?;
        let event = Self::write_applied(
            connection,
            &current,
            &applied,
            now,
            called,
            self.writer(None),
            held,
        )
        .await?;
        Ok((current, applied, event))
    }

    /// Writes what [`integration::apply_change`] or [`integration::apply_check`]
    /// decided about `current` (whose row the transaction has locked): the new row
    /// or the deletion, the outbox event, and the audit entry.
    async fn write_applied(
        connection: &mut <B as sqlx::Database>::Connection,
        current: &Integration,
        applied: &Applied,
        now: DateTime<Utc>,
        called: Instant,
        writer: Writer<'_>,
        held: Option<&mut HashMap<String, (i64, String)>>,
    ) -> Result<Option<OutboxEvent>, StoreError> {
        let mut event = None;
        match &applied.after {
            Some(next) => {
                Self::bind_integration(sqlx::query(&UPDATE_INTEGRATION), next)
                    .execute(&mut *connection)
                    .await
                    .map_err(write_error)?;
                // Lifecycle changes leave both alone.
                if next.name != current.name || next.tags != current.tags {
                    sqlx::query(DELETE_TAGS)
                        .bind(&next.tenant_id)
                        .bind(next.integration_id)
                        .execute(&mut *connection)
                        .await?;
                    Self::insert_tags(&mut *connection, next).await?;
                }
                if let Some(kind) = applied.event {
                    event = Some(
                        Self::append_event(
                            connection,
                            kind,
                            next,
                            &applied.cause,
                            now,
                            called,
                            writer,
                        )
                        .await?,
                    );
                }
            }
            // The event is numbered from the row before it goes; the tags go with
            // the row (ON DELETE CASCADE).
            None => {
                if let Some(kind) = applied.event {
                    event = Some(
                        Self::append_event(
                            connection,
                            kind,
                            current,
                            &applied.cause,
                            now,
                            called,
                            writer,
                        )
                        .await?,
                    );
                }
                sqlx::query(DELETE_INTEGRATION)
                    .bind(&current.tenant_id)
                    .bind(current.integration_id)
                    .execute(&mut *connection)
                    .await?;
            }
        }
        Self::append_audit_held(connection, &applied.audit, writer, held).await?;
        Ok(event)
    }

    /// A page of [`Store::list_json`] joined here ([`listing::Assembly::Daemon`]): the page's
    /// rows and one more (which only says that another page follows), each item rendered by
    /// [`listing::push_item`].
    async fn list_rows(&self, tenant_id: &str, query: &ListQuery) -> Result<JsonPage, StoreError> {
        let limit = query.limit as usize;
        let mut select = QueryBuilder::<B>::new(listing::page_rows(B::listing(), list_key(query)));
        Self::push_list_rows(&mut select, tenant_id, query);
        select.push(format_args!(" LIMIT {}", limit + 1));
        let rows: Vec<listing::ListRow> = B::build_query_as(&mut select)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        let page = &rows[..rows.len().min(limit)];
        // About 800 bytes an item at the fleet's sizes; one allocation for most pages.
        let mut items = String::with_capacity(page.len() * 1024);
        for (at, row) in page.iter().enumerate() {
            if at > 0 {
                items.push(',');
            }
            listing::push_item(&mut items, row);
        }
        let next = match page.last() {
            Some((.., name, id)) if rows.len() > limit => Some((name.clone(), *id)),
            _ => None,
        };
        Ok(JsonPage { items, next })
    }

    /// Pushes the `FROM … WHERE … ORDER BY` of the tenant's list after a select of the
    /// integration `i` (and, with a tag, of its tag row `t`), keyset on [`list_key`]'s table.
    fn push_list_rows<'args>(
        select: &mut QueryBuilder<'args, B>,
        tenant_id: &'args str,
        query: &'args ListQuery,
    ) {
        let key = list_key(query);
        // With a tag, the tag index drives the scan and supplies the order; the
        // keyset and prefix conditions go on its copy of the name so they bound
        // that index range.
        match &query.tag {
            Some(tag) => {
                select
                    .push(
                        " FROM integration_tags t JOIN integrations i \
                         ON i.integration_id = t.integration_id \
                         AND i.tenant_id = t.tenant_id \
                         WHERE t.tenant_id = ",
                    )
                    .push_bind(tenant_id)
                    .push(" AND t.tag = ")
                    .push_bind(tag.as_str());
            }
            None => {
                select
                    .push(" FROM integrations i WHERE i.tenant_id = ")
                    .push_bind(tenant_id);
            }
        }
        // Only the filters that are set: `($n IS NULL OR column = $n)` would defeat
        // the per-filter indexes.
        if let Some(kind) = query.kind {
            select.push(" AND i.type = ").push_bind(kind.as_str());
        }
        if let Some(provider) = &query.provider {
            select
                .push(" AND i.provider = ")
                .push_bind(provider.as_str());
        }
        if let Some(status) = query.status {
            select.push(" AND i.status = ").push_bind(status.as_str());
        }
        if let Some(environment) = &query.environment {
            select
                .push(" AND i.environment = ")
                .push_bind(environment.as_str());
        }
        if let Some(prefix) = query.name_prefix.as_deref().filter(|p| !p.is_empty()) {
            select
                .push(format_args!(" AND {key}.name >= "))
                .push_bind(prefix);
            if let Some(end) = prefix_end(prefix) {
                select
                    .push(format_args!(" AND {key}.name < "))
                    .push_bind(end);
            }
        }
        if let Some((name, id)) = &query.after {
            select
                .push(format_args!(" AND ({key}.name, {key}.integration_id) > ("))
                .push_bind(name.as_str())
                .push(", ")
                .push_bind(*id)
                .push(")");
        }
        select.push(format_args!(" ORDER BY {key}.name, {key}.integration_id"));
    }

    /// Ends the ordered `select` with `LIMIT limit + 1` and runs it: the extra row
    /// only tells whether another page follows.
    async fn fetch_page<'args, R, T>(
        &self,
        mut select: QueryBuilder<'args, B>,
        limit: u32,
        convert: impl Fn(R) -> Result<T, StoreError> + Send,
    ) -> Result<Page<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, <B as sqlx::Database>::Row> + Send + Unpin,
    {
        select.push(" LIMIT ").push_bind(i64::from(limit) + 1);
        let rows: Vec<R> = B::build_query_as(&mut select)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        let mut items = rows
            .into_iter()
            .map(convert)
            .collect::<Result<Vec<T>, _>>()?;
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page { items, has_more })
    }

    /// Feeds one tenant's chain, in stored sequence order and in batches, to a
    /// [`ChainVerifier`]. Returns the entries that verified and the first problem.
    async fn verify_tenant(
        connection: &mut <B as sqlx::Database>::Connection,
        tenant_id: &str,
    ) -> Result<(u64, Option<ChainProblem>), StoreError> {
        let head: Option<(i64, String)> = sqlx::query_as(SELECT_HEAD)
            .bind(tenant_id)
            .fetch_optional(&mut *connection)
            .await?;
        let mut verifier = ChainVerifier::new(tenant_id);
        // From the very bottom, so an entry forged with sequence 0 or below is seen.
        let mut after = i64::MIN;
        loop {
            let batch: Vec<AuditRow> = sqlx::query_as(&SELECT_AUDIT_BATCH)
                .bind(tenant_id)
                .bind(after)
                .bind(VERIFY_BATCH)
                .fetch_all(&mut *connection)
                .await
                .map_err(read_error)?;
            let done = (batch.len() as i64) < VERIFY_BATCH;
            for row in batch {
                let entry = StoredAuditEntry::from(row);
                after = entry.sequence;
                if let Err(problem) = verifier.push(&entry) {
                    return Ok((verifier.entries(), Some(problem)));
                }
            }
            if done {
                break;
            }
        }
        let entries = verifier.entries();
        let head = head
            .as_ref()
            .map(|(sequence, hash)| (*sequence, hash.as_str()));
        Ok((entries, verifier.finish(head).err()))
    }
}

// The same bounds as the helpers' `impl` above.
#[async_trait]
impl<B> Store for SqlStore<B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> &'q str: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> String: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Uuid: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> i64: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> bool: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<String>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<bool>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<DateTime<Utc>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Option<i64>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q serde_json::Map<String, serde_json::Value>>:
        sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Vec<String>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q HealthCheck>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Vec<Uuid>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Option<Maintenance>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Json<&'q Vec<DateTime<Utc>>>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> IntegrationRow: sqlx::FromRow<'r, B::Row>,
    for<'r> AuditRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (i64, String): sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid, i64): sqlx::FromRow<'r, B::Row>,
    for<'r> (String,): sqlx::FromRow<'r, B::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, B::Row>,
    for<'r> JsonPageRow: sqlx::FromRow<'r, B::Row>,
    for<'r> listing::ListRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid, String, Json<Vec<Uuid>>): sqlx::FromRow<'r, B::Row>,
    for<'r> super::status_pages::PageRow: sqlx::FromRow<'r, B::Row>,
{
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create(&self, integration: &Integration) -> Result<(), StoreError> {
        let called = Instant::now();
        let integration = rows::with_stored_precision(integration);
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        let mut heads = HashMap::new();
        let events = self
            .insert_created(
                &mut transaction,
                std::slice::from_ref(&integration),
                called,
                &mut heads,
            )
            .await?;
        Self::store_heads(&mut transaction, &heads).await?;
        transaction.commit().await?;
        for event in events {
            self.handoff.committed(event);
        }
        self.observer.committed(None, Some(&integration));
        Ok(())
    }

    async fn get(&self, tenant_id: &str, id: Uuid) -> Result<Option<Integration>, StoreError> {
        let statement = select_integration(B::listing());
        let row: Option<IntegrationRow> = sqlx::query_as(&statement)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(read_error)?;
        row.map(IntegrationRow::into_integration).transpose()
    }

    async fn list(
        &self,
        tenant_id: &str,
        query: &ListQuery,
    ) -> Result<Page<Integration>, StoreError> {
        let mut select = QueryBuilder::<B>::new("SELECT ");
        select
            .push(&*SELECT_INTEGRATION_COLUMNS)
            .push(", ")
            .push(B::listing().latest_check)
            .push(" AS latest_check");
        Self::push_list_rows(&mut select, tenant_id, query);
        self.fetch_page(select, query.limit, IntegrationRow::into_integration)
            .await
    }

    async fn list_json(&self, tenant_id: &str, query: &ListQuery) -> Result<JsonPage, StoreError> {
        let dialect = B::listing();
        // The limits are written into the statement, not bound: with a bound LIMIT,
        // PostgreSQL's generic plan cannot see how few rows are wanted, so it kept planning
        // every execution afresh (a third of its CPU per page). A limit is a validated
        // number (1-500), and each statement text is prepared once per connection.
        let (item, order, last_id) = match dialect.assembly {
            listing::Assembly::Database {
                item,
                order,
                last_id,
            } => (item, order, last_id),
            listing::Assembly::Daemon => return self.list_rows(tenant_id, query).await,
        };
        let mut select = QueryBuilder::<B>::new(listing::page_head(item, order, last_id));
        Self::push_list_rows(&mut select, tenant_id, query);
        select
            .push(format_args!(" LIMIT {}", u64::from(query.limit) + 1))
            .push(listing::page_middle(dialect, list_key(query)));
        Self::push_list_rows(&mut select, tenant_id, query);
        select
            .push(format_args!(" LIMIT {}", query.limit))
            .push(listing::PAGE_TAIL);
        let (items, last_name, last_id, found): JsonPageRow = B::build_query_as(&mut select)
            .fetch_one(&self.pool)
            .await
            .map_err(read_error)?;
        let next = match (last_name, last_id) {
            (Some(name), Some(id)) if found > i64::from(query.limit) => Some((name, id)),
            _ => None,
        };
        Ok(JsonPage {
            items: items.unwrap_or_default(),
            next,
        })
    }

    async fn change(
        &self,
        author: &Author,
        id: Uuid,
        change: Change,
        now: DateTime<Utc>,
    ) -> Result<Option<Integration>, StoreError> {
        let called = Instant::now();
        let now = rows::stored_precision(now);
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        let (current, applied, event) = self
            .change_locked(&mut transaction, author, id, change, now, called, None)
            .await?;
        transaction.commit().await?;
        if let Some(event) = event {
            self.handoff.committed(event);
        }
        self.observer
            .committed(Some(&current), applied.after.as_ref());
        Ok(applied.after)
    }

    async fn import_counted(
        &self,
        author: &Author,
        operations: Vec<ImportOp>,
        now: DateTime<Utc>,
        progress: &ImportProgress,
    ) -> Result<(), StoreError> {
        let written = |n: usize| {
            progress
                .done
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        };
        let called = Instant::now();
        let now = rows::stored_precision(now);
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        Self::replan(&mut transaction).await?;
        let mut events = Vec::with_capacity(operations.len());
        let mut observed = Vec::with_capacity(operations.len());
        let mut heads = HashMap::new();
        // Creations are written a round at a time, several rows per statement; a change
        // first writes the creations before it, so the audit trail keeps the plan's order.
        let mut created: Vec<Integration> = Vec::new();
        let mut operations = operations.into_iter().peekable();
        while let Some(operation) = operations.next() {
            match operation {
                ImportOp::Create(integration) => {
                    if integration.tenant_id != author.tenant_id {
                        return Err(StoreError::Internal("import across tenants".into()));
                    }
                    created.push(rows::with_stored_precision(&integration));
                    let round_ends = created.len() == CREATIONS_PER_ROUND
                        || !matches!(operations.peek(), Some(ImportOp::Create(_)));
                    if round_ends {
                        events.extend(
                            self.insert_created(&mut transaction, &created, called, &mut heads)
                                .await?,
                        );
                        written(created.len());
                        observed.extend(created.drain(..).map(|i| (None, Some(i))));
                        Self::replan(&mut transaction).await?;
                    }
                }
                ImportOp::Change(id, change) => {
                    let (current, applied, event) = self
                        .change_locked(
                            &mut transaction,
                            author,
                            id,
                            *change,
                            now,
                            called,
                            Some(&mut heads),
                        )
                        .await?;
                    events.extend(event);
                    observed.push((Some(current), applied.after));
                    written(1);
                }
            }
        }
        Self::store_heads(&mut transaction, &heads).await?;
        // All or nothing: an error above drops the transaction, which rolls it back.
        transaction.commit().await?;
        for event in events {
            self.handoff.committed(event);
        }
        for (before, after) in observed {
            self.observer.committed(before.as_ref(), after.as_ref());
        }
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant_id: &str,
        query: &AuditQuery,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let mut select = QueryBuilder::<B>::new("SELECT ");
        select
            .push(&*SELECT_AUDIT_COLUMNS)
            .push(" FROM audit_log WHERE tenant_id = ")
            .push_bind(tenant_id);
        if let Some(target_id) = query.integration_id {
            select.push(" AND target_id = ").push_bind(target_id);
        }
        if let Some(after) = query.after_seq {
            select.push(" AND sequence > ").push_bind(after);
        }
        select.push(" ORDER BY sequence");
        self.fetch_page(select, query.limit, |row: AuditRow| {
            Ok(StoredAuditEntry::from(row).into_entry())
        })
        .await
    }

    async fn verify_audit(&self, tenant_id: Option<&str>) -> Result<ChainReport, StoreError> {
        // One snapshot for the whole walk: appends committed meanwhile would
        // otherwise make a head read before them look like a forged tail.
        let mut transaction = begin(&self.pool, B::BEGIN_SNAPSHOT).await?;
        let tenants: Vec<String> = match tenant_id {
            Some(tenant_id) => vec![tenant_id.to_owned()],
            None => {
                sqlx::query_scalar(SELECT_AUDITED_TENANTS)
                    .fetch_all(&mut *transaction)
                    .await?
            }
        };
        let mut report = ChainReport {
            tenants: 0,
            entries: 0,
            problem: None,
        };
        for tenant_id in &tenants {
            let (entries, problem) = Self::verify_tenant(&mut transaction, tenant_id).await?;
            report.tenants += 1;
            report.entries += entries;
            if problem.is_some() {
                report.problem = problem;
                break;
            }
        }
        transaction.rollback().await?;
        Ok(report)
    }

    async fn record_test(
        &self,
        author: &Author,
        id: Uuid,
        test: &TestSummary,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let called = Instant::now();
        let tested_at = rows::stored_precision(test.tested_at);
        let now = rows::stored_precision(now);
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        // The row is locked first (as every change does: row, then audit head), so the
        // event's sequence and its state are the row's at this commit.
        let row = Self::lock_row(&mut transaction, &author.tenant_id, id).await?;
        let Some(row) = row else {
            transaction.rollback().await?;
            return Err(StoreError::NotFound);
        };
        let mut integration = row.into_integration()?;
        sqlx::query(UPDATE_LAST_TEST)
            .bind(&author.tenant_id)
            .bind(id)
            .bind(tested_at)
            .bind(test.success)
            .execute(&mut *transaction)
            .await?;
        integration.last_tested_at = Some(tested_at);
        integration.last_test_success = Some(test.success);
        let event = Self::append_event(
            &mut transaction,
            EventKind::Tested,
            &integration,
            &test.cause(&author.subject),
            now,
            called,
            self.writer(None),
        )
        .await?;
        let record = AuditRecord {
            tenant_id: author.tenant_id.clone(),
            actor: author.subject.clone(),
            action: "integration.test".to_owned(),
            target_id: id,
            before: None,
            after: Some(test.audit_result()),
            reason: None,
            ticket: None,
            occurred_at: tested_at,
        };
        Self::append_audit(&mut transaction, &record, self.writer(None)).await?;
        transaction.commit().await?;
        self.handoff.committed(event);
        Ok(())
    }

    async fn put_status_page(
        &self,
        author: &Author,
        config: &super::status_pages::StatusPageConfig,
        now: DateTime<Utc>,
    ) -> Result<super::status_pages::StoredStatusPage, StoreError> {
        let now = rows::stored_precision(now);
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        let (stored, record) =
            super::status_pages::put_in::<B>(&mut transaction, author, config, now).await?;
        Self::append_audit(&mut transaction, &record, self.writer(None)).await?;
        transaction.commit().await?;
        Ok(stored)
    }

    async fn monitored_page(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Integration>, StoreError> {
        let rows: Vec<IntegrationRow> = sqlx::query_as(&SELECT_MONITORED_PAGE)
            .bind(after.unwrap_or(Uuid::nil()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        rows.into_iter()
            .map(IntegrationRow::into_integration)
            .collect()
    }

    async fn monitored_versions(&self) -> Result<Vec<(Uuid, i64)>, StoreError> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(SELECT_MONITORED_VERSIONS)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        Ok(rows)
    }

    async fn load(&self, id: Uuid) -> Result<Option<Integration>, StoreError> {
        let row: Option<IntegrationRow> = sqlx::query_as(&SELECT_INTEGRATION_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(read_error)?;
        row.map(IntegrationRow::into_integration).transpose()
    }

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
    ) -> Result<CheckCommit, StoreError> {
        let request = group_commit::Request {
            id,
            expected_version,
            lifecycle,
            event,
            change: group_commit::RowChange::Check {
                flap: flap.map(|flap| FlapState {
                    transitions: flap
                        .transitions
                        .into_iter()
                        .map(rows::stored_precision)
                        .collect(),
                    ..flap
                }),
                check: CheckSummary {
                    started_at: rows::stored_precision(check.started_at),
                    ..check
                },
            },
            now: rows::stored_precision(now),
            claim,
            called: Instant::now(),
        };
        self.enqueue(request).await
    }

    async fn commit_maintenance(
        &self,
        id: Uuid,
        expected_version: i64,
        lifecycle: Lifecycle,
        maintenance: Option<Maintenance>,
        event: Option<EventKind>,
        now: DateTime<Utc>,
        claim: Option<Claim>,
    ) -> Result<CheckCommit, StoreError> {
        let request = group_commit::Request {
            id,
            expected_version,
            lifecycle,
            event,
            change: group_commit::RowChange::Maintenance(maintenance.map(|m| Maintenance {
                ends_at: rows::stored_precision(m.ends_at),
                ..m
            })),
            now: rows::stored_precision(now),
            claim,
            called: Instant::now(),
        };
        self.enqueue(request).await
    }

    async fn create_window(&self, window: &MaintenanceWindow) -> Result<(), StoreError> {
        let window = window_with_stored_precision(window);
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        sqlx::query(INSERT_WINDOW)
            .bind(window.window_id)
            .bind(&window.tenant_id)
            .bind(&window.name)
            .bind(window.version)
            .bind(window_body(&window)?)
            .execute(&mut *transaction)
            .await
            .map_err(write_error)?;
        Self::append_audit(
            &mut transaction,
            &window.creation_record(),
            self.writer(None),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn get_window(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(SELECT_WINDOW)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(read_error)?;
        row.map(|(body,)| window_from_body(&body)).transpose()
    }

    async fn list_windows(&self, tenant_id: &str) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(LIST_WINDOWS)
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        rows.iter().map(|(body,)| window_from_body(body)).collect()
    }

    async fn change_window(
        &self,
        author: &Author,
        id: Uuid,
        change: WindowChange,
        now: DateTime<Utc>,
    ) -> Result<Option<MaintenanceWindow>, StoreError> {
        let now = rows::stored_precision(now);
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        let row: Option<(String,)> = sqlx::query_as(&B::locked(SELECT_WINDOW))
            .bind(&author.tenant_id)
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(read_error)?;
        let current = window_from_body(&row.ok_or(StoreError::NotFound)?.0)?;
        let (after, audit) = crate::maintenance::apply(&current, change, author, now)?;
        match &after {
            Some(window) => {
                sqlx::query(UPDATE_WINDOW)
                    .bind(window.window_id)
                    .bind(&window.tenant_id)
                    .bind(&window.name)
                    .bind(window.version)
                    .bind(window_body(window)?)
                    .execute(&mut *transaction)
                    .await
                    .map_err(write_error)?;
            }
            None => {
                sqlx::query(DELETE_WINDOW)
                    .bind(id)
                    .bind(&author.tenant_id)
                    .execute(&mut *transaction)
                    .await
                    .map_err(write_error)?;
            }
        }
        Self::append_audit(&mut transaction, &audit, self.writer(None)).await?;
        transaction.commit().await?;
        Ok(after)
    }

    async fn all_windows(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(ALL_WINDOWS)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        rows.iter().map(|(body,)| window_from_body(body)).collect()
    }

    async fn set_suppressed_by(
        &self,
        id: Uuid,
        suppressed_by: &[Uuid],
        claim: Option<Claim>,
    ) -> Result<CheckCommit, StoreError> {
        let suppressed_by = suppressed_by.to_vec();
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        // The fence first, as for a transition: a monitor whose node lost the shard writes
        // nothing.
        if let Some(claim) = claim {
            let admitted = B::fence(&mut transaction, &self.node, &[claim]).await?;
            if admitted.is_empty() {
                transaction.rollback().await?;
                return Ok(CheckCommit::Fenced);
            }
        }
        let updated = sqlx::query(UPDATE_SUPPRESSED_BY)
            .bind(id)
            .bind(Json(&suppressed_by))
            .execute(&mut *transaction)
            .await?;
        if B::rows_affected(&updated) == 0 {
            transaction.rollback().await?;
            return Ok(CheckCommit::Stale(None));
        }
        let row: Option<IntegrationRow> = sqlx::query_as(&SELECT_INTEGRATION_BY_ID)
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(read_error)?;
        transaction.commit().await?;
        match row.map(IntegrationRow::into_integration).transpose()? {
            Some(integration) => Ok(CheckCommit::Committed(integration)),
            None => Ok(CheckCommit::Stale(None)),
        }
    }

    async fn dependencies(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Status, Vec<Uuid>)>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(DEPENDENCY_ROWS_PER_SELECT) {
            let mut select = QueryBuilder::<B>::new(
                "SELECT integration_id, status, depends_on FROM integrations WHERE tenant_id = ",
            );
            select.push_bind(tenant_id).push(" AND integration_id IN (");
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            select.push(")");
            let rows: Vec<(Uuid, String, Json<Vec<Uuid>>)> = B::build_query_as(&mut select)
                .fetch_all(&self.pool)
                .await
                .map_err(read_error)?;
            for (id, status, depends_on) in rows {
                let status: Status = status
                    .parse()
                    .map_err(|error| StoreError::Corrupt(format!("integration {id}: {error}")))?;
                found.push((id, status, depends_on.0));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_least_upper_bound() {
        assert_eq!(prefix_end("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
        let end = prefix_end("ab").unwrap();
        for name in ["ab", "ab\u{10FFFF}", "ab\u{10FFFF}zz", "abz"] {
            assert!(name.starts_with("ab") && name < end.as_str(), "{name}");
        }
        assert!("ac" >= end.as_str());
    }

    #[test]
    fn statements_bind_every_column() {
        assert!(insert_integrations(1).ends_with("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, 1)"));
        assert!(insert_integrations(2).ends_with("$31, 1), ($32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49, $50, $51, $52, $53, $54, $55, $56, $57, $58, $59, $60, $61, $62, 1)"));
        assert!(UPDATE_INTEGRATION.contains("maintenance = $31 WHERE"));
        assert!(!UPDATE_INTEGRATION.contains("tenant_id = $2,"));
        assert!(INSERT_AUDIT.ends_with("$17)"));
    }
}
