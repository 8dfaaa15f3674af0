//! The relay's view of the outbox (`migrations/*/0002_outbox.sql`): unpublished events in
//! per-integration order, marking them published, the backlog, and pruning.
//!
//! Rows are never found by "id greater than the last one seen": ids and `created_at` commit
//! out of order. A pass walks the pending rows (`published_at IS NULL`) by the key
//! `(integration_id, sequence)`, keyset-paginated, and marks each published row by its event
//! id. A row is only ever left behind once it is marked, so none can be skipped. Sequences of
//! one integration commit in order (the integration's row lock hands them out), so the lowest
//! pending sequence of an integration is always the next one to publish.
//!
//! [`OutboxStore`] works on the daemon's one pool (see [`super::Database`]).
//!
//! [`Handoff`] is the fast path beside it: right after a commit that wrote an event, the
//! store hands the committed event to the relay in memory, so the relay publishes it without
//! reading the database. The outbox row stays the durable copy: a handoff that is lost (a
//! full channel, a crash, no relay) only means the relay's sweep finds the row instead.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use super::StoreError;
use crate::cloudevents::OutboxEvent;

/// Committed events waiting in memory for the relay, at most this many: beyond it the store
/// stops handing over and wakes the relay's sweep instead, so memory stays bounded while NATS
/// is down.
pub const HANDOFF_CAPACITY: usize = 4096;

/// Committed events on their way from the store to the relay in memory (the fast path), and
/// the signal that wakes the relay's sweep of the outbox table (the durable path).
#[derive(Debug)]
pub struct Handoff {
    sender: mpsc::Sender<PendingEvent>,
    receiver: Mutex<Option<mpsc::Receiver<PendingEvent>>>,
    wake: Arc<Notify>,
}

impl Default for Handoff {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(HANDOFF_CAPACITY);
        Handoff {
            sender,
            receiver: Mutex::new(Some(receiver)),
            wake: Arc::default(),
        }
    }
}

impl Handoff {
    /// Call right after the commit that wrote `event`, never before (an event must not go out
    /// unless its row committed). Never blocks: when the relay is behind (or absent), the event
    /// is left to the sweep, which is woken.
    pub fn committed(&self, event: OutboxEvent) {
        if self.sender.try_send(PendingEvent::from(event)).is_err() {
            self.wake.notify_one();
        }
    }

    /// Wakes the relay's sweep of the outbox table.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The receiving end, for the one relay of the process; `None` once taken.
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<PendingEvent>> {
        self.receiver.lock().ok()?.take()
    }
}

impl From<OutboxEvent> for PendingEvent {
    fn from(event: OutboxEvent) -> Self {
        PendingEvent {
            event_id: event.event_id,
            integration_id: event.integration_id,
            sequence: event.sequence,
            event_type: event.event_type,
            subject: event.subject,
            payload: event.payload,
        }
    }
}

/// One unpublished event, as the relay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub event_id: Uuid,
    pub integration_id: Uuid,
    pub sequence: i64,
    /// `integration.<kind>`.
    pub event_type: String,
    /// The NATS subject.
    pub subject: String,
    /// The CloudEvent, structured JSON.
    pub payload: String,
}

/// Where a pass over the pending rows has got to: the key of the last row returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboxPosition {
    pub integration_id: Uuid,
    pub sequence: i64,
}

impl OutboxPosition {
    /// Before every row (sequences start at 1).
    pub const START: OutboxPosition = OutboxPosition {
        integration_id: Uuid::nil(),
        sequence: 0,
    };
}

type Row = (Uuid, Uuid, i64, String, String, String);

const SELECT_PENDING: &str =
    "SELECT event_id, integration_id, sequence, event_type, subject, payload \
     FROM outbox WHERE published_at IS NULL AND (integration_id, sequence) > ($1, $2) \
     ORDER BY integration_id, sequence LIMIT $3";

const COUNT_PENDING: &str = "SELECT count(*) FROM outbox WHERE published_at IS NULL";

/// Deletes at most `$2` rows published before `$1` (SQLite has no `DELETE … LIMIT`).
const PRUNE: &str = "DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM outbox \
     WHERE published_at IS NOT NULL AND published_at < $1 LIMIT $2)";

#[async_trait]
trait Backend: Send + Sync + 'static {
    async fn pending(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> Result<Vec<PendingEvent>, StoreError>;
    async fn mark_published(&self, ids: &[Uuid], at: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn backlog(&self) -> Result<u64, StoreError>;
    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;
}

macro_rules! outbox_backend {
    ($name:ident, $db:ty) => {
        struct $name {
            pool: sqlx::Pool<$db>,
            /// SQLite's writers take turns ([`super::WriteGate`]).
            gate: Option<super::WriteGate>,
        }

        #[async_trait]
        impl Backend for $name {
            async fn pending(
                &self,
                after: OutboxPosition,
                limit: u32,
            ) -> Result<Vec<PendingEvent>, StoreError> {
                let rows: Vec<Row> = sqlx::query_as(SELECT_PENDING)
                    .bind(after.integration_id)
                    .bind(after.sequence)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(event_id, integration_id, sequence, event_type, subject, payload)| {
                            PendingEvent {
                                event_id,
                                integration_id,
                                sequence,
                                event_type,
                                subject,
                                payload,
                            }
                        },
                    )
                    .collect())
            }

            async fn mark_published(
                &self,
                ids: &[Uuid],
                at: DateTime<Utc>,
            ) -> Result<u64, StoreError> {
                let mut marked = 0;
                let _turn = match &self.gate {
                    Some(gate) => Some(gate.enter().await),
                    None => None,
                };
                // One statement per 1000 ids: far below either backend's bind-parameter limit.
                for chunk in ids.chunks(1000) {
                    let mut query: QueryBuilder<$db> =
                        QueryBuilder::new("UPDATE outbox SET published_at = ");
                    query.push_bind(at);
                    query.push(" WHERE published_at IS NULL AND event_id IN (");
                    let mut separated = query.separated(", ");
                    for id in chunk {
                        separated.push_bind(*id);
                    }
                    query.push(")");
                    marked += query.build().execute(&self.pool).await?.rows_affected();
                }
                Ok(marked)
            }

            async fn backlog(&self) -> Result<u64, StoreError> {
                let count: i64 = sqlx::query_scalar(COUNT_PENDING)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count.max(0) as u64)
            }

            async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
                let _turn = match &self.gate {
                    Some(gate) => Some(gate.enter().await),
                    None => None,
                };
                Ok(sqlx::query(PRUNE)
                    .bind(before)
                    .bind(i64::from(limit))
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }
        }
    };
}

outbox_backend!(SqliteOutbox, sqlx::Sqlite);
outbox_backend!(PostgresOutbox, sqlx::Postgres);

/// The outbox as the relay sees it. Cheap to clone.
#[derive(Clone)]
pub struct OutboxStore {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for OutboxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxStore").finish_non_exhaustive()
    }
}

impl OutboxStore {
    // Built over the daemon's one pool: see [`super::Database`].
    pub fn sqlite(pool: sqlx::SqlitePool) -> Self {
        OutboxStore {
            backend: Arc::new(SqliteOutbox { pool, gate: None }),
        }
    }

    /// Writes take turns with the store's through `gate`.
    pub fn sqlite_gated(pool: sqlx::SqlitePool, gate: super::WriteGate) -> Self {
        OutboxStore {
            backend: Arc::new(SqliteOutbox {
                pool,
                gate: Some(gate),
            }),
        }
    }

    pub fn postgres(pool: sqlx::PgPool) -> Self {
        OutboxStore {
            backend: Arc::new(PostgresOutbox { pool, gate: None }),
        }
    }

    /// Up to `limit` unpublished events after `after`, ordered by `(integration_id,
    /// sequence)`.
    pub async fn pending(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.backend.pending(after, limit.max(1)).await
    }

    /// Marks these events published at `at` (rows already marked keep their time); returns
    /// how many rows changed.
    pub async fn mark_published(&self, ids: &[Uuid], at: DateTime<Utc>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.backend.mark_published(ids, at).await
    }

    /// Unpublished events.
    pub async fn backlog(&self) -> Result<u64, StoreError> {
        self.backend.backlog().await
    }

    /// Deletes up to `limit` events published before `before`; returns how many.
    pub async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.backend.prune(before, limit.max(1)).await
    }
}
