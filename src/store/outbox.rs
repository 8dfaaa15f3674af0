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
//! [`OutboxStore`] works on the daemon's one pool (see [`super::Database`]); its statements
//! are written once, generic over the [`Backend`].
//!
//! [`Handoff`] is the fast path beside it: right after a commit that wrote an event, the
//! store hands the committed event to the relay in memory, so the relay publishes it without
//! reading the database. The outbox row stays the durable copy: a handoff that is lost (a
//! full channel, a crash, no relay) only means the relay's sweep finds the row instead.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use super::backend::{begin, Backend, Gate};
use super::database::Pool;
use super::StoreError;
use crate::cloudevents::OutboxEvent;
use crate::cluster::Claim;

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

/// An event that belongs to no integration's transaction (the network guard's `_system`
/// events): written on its own, unfenced (no shard, no epoch).
const INSERT_EVENT: &str = "INSERT INTO outbox (event_id, tenant_id, integration_id, sequence, \
     event_type, subject, payload, created_at, written_by) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Deletes at most `$2` rows published before `$1` (SQLite has no `DELETE … LIMIT`).
const PRUNE: &str = "DELETE FROM outbox WHERE event_id IN (SELECT event_id FROM outbox \
     WHERE published_at IS NOT NULL AND published_at < $1 LIMIT $2)";

/// The outbox's statements, written once for both backends. Writes take their turn at the
/// [`Gate`].
struct Statements<'p, B: Backend> {
    pool: &'p sqlx::Pool<B>,
    gate: &'p Gate,
}

impl<B> Statements<'_, B>
where
    B: Backend,
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
    for<'q> i64: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> Uuid: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'q> String: sqlx::Encode<'q, B> + sqlx::Type<B>,
    for<'r> Row: sqlx::FromRow<'r, B::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, B::Row>,
{
    async fn pending(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(SELECT_PENDING)
            .bind(after.integration_id)
            .bind(after.sequence)
            .bind(i64::from(limit))
            .fetch_all(self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(event_id, integration_id, sequence, event_type, subject, payload)| PendingEvent {
                    event_id,
                    integration_id,
                    sequence,
                    event_type,
                    subject,
                    payload,
                },
            )
            .collect())
    }

    async fn mark_published(
        &self,
        marks: &[Mark],
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<Marked, StoreError> {
        let mut marked = Marked::default();
        let _turn = self.gate.turn().await;
        let mut transaction = begin(self.pool, B::BEGIN_WRITE).await?;
        // The fence: only events of shards this node still holds, at the epoch it published
        // them under, are marked by it (the shard's next owner marks the rest).
        let mut claims: Vec<Claim> = marks.iter().filter_map(|mark| mark.claim).collect();
        claims.sort_unstable();
        claims.dedup();
        let admitted = B::fence(&mut transaction, node, &claims).await?;
        marked.fenced = claims
            .iter()
            .filter(|claim| !admitted.contains(claim))
            .copied()
            .collect();
        let ids: Vec<Uuid> = marks
            .iter()
            .filter(|mark| mark.claim.is_none_or(|claim| admitted.contains(&claim)))
            .map(|mark| mark.event_id)
            .collect();
        // One statement per 1000 ids: far below either backend's bind-parameter limit.
        for chunk in ids.chunks(1000) {
            let mut query: QueryBuilder<B> = QueryBuilder::new("UPDATE outbox SET published_at = ");
            query.push_bind(at);
            query.push(" WHERE published_at IS NULL AND event_id IN (");
            let mut separated = query.separated(", ");
            for id in chunk {
                separated.push_bind(*id);
            }
            query.push(")");
            marked.marked +=
                B::rows_affected(&B::build(&mut query).execute(&mut *transaction).await?);
        }
        transaction.commit().await?;
        Ok(marked)
    }

    async fn append(&self, event: &OutboxEvent, node: &str) -> Result<(), StoreError> {
        let _turn = self.gate.turn().await;
        sqlx::query(INSERT_EVENT)
            .bind(event.event_id)
            .bind(event.tenant_id.clone())
            .bind(event.integration_id)
            .bind(event.sequence)
            .bind(event.event_type.clone())
            .bind(event.subject.clone())
            .bind(event.payload.clone())
            .bind(event.created_at)
            .bind(node.to_owned())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(COUNT_PENDING)
            .fetch_one(self.pool)
            .await?;
        Ok(count.max(0) as u64)
    }

    async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let _turn = self.gate.turn().await;
        let pruned = sqlx::query(PRUNE)
            .bind(before)
            .bind(i64::from(limit))
            .execute(self.pool)
            .await?;
        Ok(B::rows_affected(&pruned))
    }
}

/// An event the relay published, and the claim on its shard it was published under (`None`:
/// unfenced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub event_id: Uuid,
    pub claim: Option<Claim>,
}

/// What a marking statement did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marked {
    pub marked: u64,
    /// Claims the fence refused: their events were left for the shard's next owner.
    pub fenced: Vec<Claim>,
}

/// The outbox as the relay sees it. Cheap to clone.
#[derive(Clone)]
pub struct OutboxStore {
    pool: Pool,
    gate: Gate,
}

impl std::fmt::Debug for OutboxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxStore").finish_non_exhaustive()
    }
}

impl OutboxStore {
    /// Built over the daemon's one pool: see [`super::Database::outbox`]. Writes take turns
    /// with the store's.
    pub(super) fn over(pool: Pool) -> Self {
        let gate = pool.gate();
        OutboxStore { pool, gate }
    }

    /// The statements for this pool's backend.
    fn on<'a, B: Backend>(&'a self, pool: &'a sqlx::Pool<B>) -> Statements<'a, B> {
        Statements {
            pool,
            gate: &self.gate,
        }
    }

    /// Up to `limit` unpublished events after `after`, ordered by `(integration_id,
    /// sequence)`.
    pub async fn pending(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => self.on(pool).pending(after, limit.max(1)).await,
            Pool::Postgres(pool) => self.on(pool).pending(after, limit.max(1)).await,
        }
    }

    /// Marks these events published at `at` (rows already marked keep their time), except
    /// those whose claim the database no longer admits for `node` (their shard moved on);
    /// returns how many rows changed and the claims fenced off.
    pub async fn mark_published(
        &self,
        marks: &[Mark],
        node: &str,
        at: DateTime<Utc>,
    ) -> Result<Marked, StoreError> {
        if marks.is_empty() {
            return Ok(Marked::default());
        }
        match &self.pool {
            Pool::Sqlite(pool, _) => self.on(pool).mark_published(marks, node, at).await,
            Pool::Postgres(pool) => self.on(pool).mark_published(marks, node, at).await,
        }
    }

    /// Writes an event that belongs to no integration's change (the network guard's
    /// `_system` events), unfenced, as written by `node`. The caller numbers its events and
    /// hands the event to the relay after this returns.
    pub async fn append(&self, event: &OutboxEvent, node: &str) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => self.on(pool).append(event, node).await,
            Pool::Postgres(pool) => self.on(pool).append(event, node).await,
        }
    }

    /// Unpublished events.
    pub async fn backlog(&self) -> Result<u64, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => self.on(pool).backlog().await,
            Pool::Postgres(pool) => self.on(pool).backlog().await,
        }
    }

    /// Deletes up to `limit` events published before `before`; returns how many.
    pub async fn prune(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        match &self.pool {
            Pool::Sqlite(pool, _) => self.on(pool).prune(before, limit.max(1)).await,
            Pool::Postgres(pool) => self.on(pool).prune(before, limit.max(1)).await,
        }
    }
}
