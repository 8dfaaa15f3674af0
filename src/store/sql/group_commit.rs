//! Group commit of the monitors' transitions: concurrent [`Store::commit_check`] calls queue
//! to one committer task, which takes everything pending (at most [`GROUP_LIMIT`]), writes
//! it in one transaction, commits once (one WAL fsync on SQLite, one WAL flush on
//! PostgreSQL) and answers each caller.
//!
//! Each transition stays atomic and independent of the others in its group:
//! - the fence is checked once for the group's claims, under their lease rows' locks, and a
//!   transition whose claim it refuses is answered [`CheckCommit::Fenced`] with nothing
//!   written for it;
//! - every row is read under its lock, and a transition whose row moved on (or is gone) is
//!   answered [`CheckCommit::Stale`] with nothing written for it (a second transition of one
//!   integration in a group sees the first one's row, as it would one commit later);
//! - any other failure rolls the group back and its transitions are committed one by one
//!   ([`SqlStore::commit_one`]), so a failure is only the failing transition's own.
//!
//! The rows are locked before the tenants' audit heads, both in key order, the order every
//! writer takes them in (so groups of several nodes and single changes queue, not deadlock).
//! Audit entries are chained in the group's order onto each tenant's head (read once, moved
//! once), so the chain's order is the commit order; each integration's event sequence is
//! taken from its locked row, so it stays gap-free. The relay is handed every event right
//! after the commit, in the same order.
//!
//! Why not one transaction per transition: each commit is an fsync behind the one write lock
//! (SQLite's), which capped transitions at about 850/s whatever the offered rate. For the same
//! reason a small group lingers for [`LINGER`] while transitions keep coming.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::types::Json;
use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{
    begin, read_error, Backend, CheckCommit, IntegrationRow, SqlStore, StoreError, Writer,
    AUDIT_COLUMNS, GENESIS_HASH, INSERT_HEAD, SELECT_HEAD, SELECT_INTEGRATION_BY_ID,
    SELECT_INTEGRATION_COLUMNS, UPDATE_HEAD, WRITER_COLUMNS,
};
use crate::cloudevents::{self, OutboxEvent};
use crate::cluster::Claim;
use crate::integration::{self, Applied, CheckSummary, HealthCheck, Integration};
use crate::store::audit_chain::StoredAuditEntry;
use catalogd_actors::{EventKind, FlapState, Lifecycle, Maintenance};

/// Transitions one group commits at most. Large enough that a group absorbs every
/// transition that arrived during the previous commit at 10k/s; small enough that the
/// statements stay far below either backend's bind-parameter limit and one group's
/// transaction stays short.
pub(super) const GROUP_LIMIT: usize = 512;

/// How long a small group waits for more transitions while they keep coming, as
/// PostgreSQL's `commit_delay` does with `commit_siblings`. At 1k transitions/s the committer
/// otherwise takes about one transition a group, and each pays a whole group's round trips and
/// its commit (on SQLite, writing its WAL frames). Bench F6 at 1k/s, four interleaved runs:
/// the daemon's CPU per event 766 / 731 → 483 / 545 µs on SQLite, 379 / 391 → 277 / 274 µs on
/// PostgreSQL (PostgreSQL's own 602 / 611 → 403 / 403 µs); event p99 up by 1–4 ms, within the
/// 10 ms target.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// A group smaller than this lingers: larger ones already share their commit widely.
const LINGER_BELOW: usize = GROUP_LIMIT / 8;

/// The committer is in a stream of transitions when its previous group ended less than this
/// ago; otherwise a transition is the first after a quiet spell and commits at once.
const STREAMING: std::time::Duration = std::time::Duration::from_millis(10);

/// Rows per multi-row statement: audit entries bind 17 values each, so 128 rows is 2,176
/// parameters (SQLite allows 32,766, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 128;

/// One transition to commit, as [`Store::commit_check`] was called (times already at the
/// stored precision).
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) id: Uuid,
    pub(super) expected_version: i64,
    pub(super) lifecycle: Lifecycle,
    pub(super) event: Option<EventKind>,
    pub(super) change: RowChange,
    pub(super) now: DateTime<Utc>,
    pub(super) claim: Option<Claim>,
    /// When the caller called: the event's time is `now` advanced by the wait since.
    pub(super) called: Instant,
}

/// What the monitor commits besides the lifecycle.
#[derive(Debug, Clone)]
pub(super) enum RowChange {
    /// A check's transition: the check, and the flap detector's state after it (`None`
    /// leaves it as stored).
    Check {
        flap: Option<FlapState>,
        check: CheckSummary,
    },
    /// Entering or leaving a maintenance window (DESIGN §10).
    Maintenance(Option<Maintenance>),
}

impl Request {
    /// What this request makes of the row `current`.
    fn apply(&self, current: &Integration) -> Applied {
        match &self.change {
            RowChange::Check { flap, check } => integration::apply_check(
                current,
                self.lifecycle,
                self.event,
                flap.as_ref(),
                *check,
                self.now,
            ),
            RowChange::Maintenance(maintenance) => integration::apply_maintenance(
                current,
                self.lifecycle,
                *maintenance,
                self.event,
                self.now,
            ),
        }
    }
}

/// A queued transition and where its answer goes.
pub(super) struct Pending {
    request: Request,
    reply: oneshot::Sender<Result<CheckCommit, StoreError>>,
}

/// The lifecycle columns a check changes ([`integration::apply_check`]: the lifecycle, its
/// pause fields, the last check, the version, the flap detector's state), several rows per
/// statement, rather than the
/// whole row: the rest of the row is as read, and rewriting it would encode its JSON columns
/// again for nothing. The last value of each row says whether it takes its next event
/// sequence number (under the row's lock: gap-free, in commit order). The rows follow as
/// `VALUES (...), (...)`, whose columns both backends name `column1`, `column2`, ...
const UPDATE_TRANSITIONS: &str = "UPDATE integrations SET status = o.column2, \
     paused = o.column3, pause_reason = o.column4, pause_ticket = o.column5, \
     consecutive_failures = o.column6, consecutive_successes = o.column7, \
     last_tested_at = o.column8, last_test_success = o.column9, version = o.column10, \
     event_sequence = event_sequence + o.column11, flapping = o.column12, \
     flap_transitions = o.column13, maintenance = o.column14 FROM (";

const UPDATE_TRANSITIONS_END: &str = ") AS o WHERE integrations.integration_id = o.column1 \
     RETURNING integrations.integration_id, integrations.event_sequence";

const OUTBOX_COLUMNS: &str = "INSERT INTO outbox (event_id, tenant_id, integration_id, \
     sequence, event_type, subject, payload, created_at, written_by, shard, epoch) ";

/// What the group decided for one transition before anything was written.
enum Decision {
    Fenced,
    Stale(Option<Box<Integration>>),
    /// The row as it was, and what the check makes of it.
    Commit(Box<(Integration, Applied)>),
}

// The same bounds as `SqlStore`'s `impl` blocks in `sql.rs`.
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
    for<'r> super::AuditRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (i64, String): sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid, i64): sqlx::FromRow<'r, B::Row>,
    for<'r> (String,): sqlx::FromRow<'r, B::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, B::Row>,
    for<'r> super::JsonPageRow: sqlx::FromRow<'r, B::Row>,
    for<'r> super::listing::ListRow: sqlx::FromRow<'r, B::Row>,
    for<'r> (Uuid, String, Json<Vec<Uuid>>): sqlx::FromRow<'r, B::Row>,
{
    /// Queues `request` to the committer (started on first use) and waits for its answer.
    /// A caller that gives up does not take its transition back: it commits or not with its
    /// group, and the actor that gave up reloads the row from the store when it restarts.
    pub(super) async fn enqueue(&self, request: Request) -> Result<CheckCommit, StoreError> {
        let queue = self.committer.get_or_init(|| {
            let (queue, receiver) = mpsc::unbounded_channel();
            tokio::spawn(self.detached().run_committer(receiver));
            queue
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { request, reply })
            .map_err(|_| StoreError::Unavailable("the transition committer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the transition committer stopped".into()))?
    }

    /// The committer: one group after another, each everything queued meanwhile. Ends when
    /// every handle to the store is gone.
    async fn run_committer(self, mut queue: mpsc::UnboundedReceiver<Pending>) {
        let mut group = Vec::with_capacity(GROUP_LIMIT);
        let mut ended: Option<Instant> = None;
        while queue.recv_many(&mut group, GROUP_LIMIT).await > 0 {
            // In a stream of transitions (the previous group ended moments ago), a small group
            // waits a moment for more; a transition after a quiet spell commits at once.
            let streaming = ended.is_some_and(|at| at.elapsed() < STREAMING);
            if streaming && group.len() < LINGER_BELOW {
                let deadline = tokio::time::Instant::now() + LINGER;
                while group.len() < GROUP_LIMIT {
                    let more = GROUP_LIMIT - group.len();
                    match tokio::time::timeout_at(deadline, queue.recv_many(&mut group, more)).await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            let pending = std::mem::replace(&mut group, Vec::with_capacity(GROUP_LIMIT));
            self.commit_group(pending).await;
            ended = Some(Instant::now());
        }
    }

    /// Commits one group and answers its callers; on a failure of the group's transaction,
    /// commits its transitions one by one instead.
    async fn commit_group(&self, group: Vec<Pending>) {
        let (requests, replies): (Vec<Request>, Vec<_>) =
            group.into_iter().map(|p| (p.request, p.reply)).unzip();
        match self.write_group(&requests).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) if requests.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    transitions = requests.len(),
                    "a group commit of transitions failed; committing them one by one"
                );
                for (request, reply) in requests.into_iter().zip(replies) {
                    let _ = reply.send(self.commit_one(request).await);
                }
            }
        }
    }

    /// Writes `requests` in one transaction and commits it; returns each one's outcome, in
    /// order. On `Err` nothing was committed.
    async fn write_group(&self, requests: &[Request]) -> Result<Vec<CheckCommit>, StoreError> {
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;

        // The fence first, once for the group: the lease rows are locked (key share, in shard
        // order) before any integration row, and held to the commit.
        let mut claims: Vec<Claim> = requests.iter().filter_map(|r| r.claim).collect();
        claims.sort_unstable();
        claims.dedup();
        let admitted = if claims.is_empty() {
            Vec::new()
        } else {
            B::fence(&mut transaction, &self.node, &claims).await?
        };
        let fenced = |request: &Request| request.claim.is_some_and(|c| !admitted.contains(&c));

        // Every row the group touches, locked, in id order.
        let mut ids: Vec<Uuid> = requests
            .iter()
            .filter(|r| !fenced(r))
            .map(|r| r.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows: HashMap<Uuid, Integration> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut select = QueryBuilder::<B>::new("SELECT ");
            select
                .push(&*SELECT_INTEGRATION_COLUMNS)
                .push(" FROM integrations i WHERE i.integration_id IN (");
            let mut list = select.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            select
                .push(") ORDER BY i.integration_id")
                .push(B::FOR_UPDATE);
            let found: Vec<IntegrationRow> = B::build_query_as(&mut select)
                .fetch_all(&mut *transaction)
                .await
                .map_err(read_error)?;
            for row in found {
                let integration = row.into_integration()?;
                rows.insert(integration.integration_id, integration);
            }
        }

        // Decide each transition on the rows as the group leaves them.
        let mut decisions = Vec::with_capacity(requests.len());
        for request in requests {
            if fenced(request) {
                decisions.push(Decision::Fenced);
                continue;
            }
            let decision = match rows.get(&request.id) {
                Some(current) if current.version == request.expected_version => {
                    let applied = request.apply(current);
                    let after = applied.after.clone().expect("a check never deletes");
                    let before =
                        std::mem::replace(rows.get_mut(&request.id).expect("just read"), after);
                    Decision::Commit(Box::new((before, applied)))
                }
                other => Decision::Stale(other.cloned().map(Box::new)),
            };
            decisions.push(decision);
        }

        // The audit heads of the tenants that change, locked in tenant order.
        let mut tenants: Vec<&str> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Commit(commit) => Some(commit.1.audit.tenant_id.as_str()),
                _ => None,
            })
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        let select_head = B::locked(SELECT_HEAD);
        let mut heads: HashMap<String, (i64, String)> = HashMap::with_capacity(tenants.len());
        for tenant in tenants {
            let head: Option<(i64, String)> = sqlx::query_as(&select_head)
                .bind(tenant)
                .fetch_optional(&mut *transaction)
                .await?;
            let head = match head {
                Some(head) => head,
                None => {
                    sqlx::query(INSERT_HEAD)
                        .bind(tenant)
                        .bind(GENESIS_HASH)
                        .execute(&mut *transaction)
                        .await?;
                    sqlx::query_as(&select_head)
                        .bind(tenant)
                        .fetch_one(&mut *transaction)
                        .await?
                }
            };
            heads.insert(tenant.to_owned(), head);
        }

        // The rows, several per statement. An integration committed twice in one group (a
        // caller that already knew the first's version) is updated in a later round, so each
        // statement names a row once and each round reads the sequence its own update took.
        let commits: Vec<&Applied> = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Commit(commit) => Some(&commit.1),
                _ => None,
            })
            .collect();
        let mut rounds: Vec<Vec<&Applied>> = Vec::new();
        let mut round_of: Vec<usize> = Vec::with_capacity(commits.len());
        let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(commits.len());
        for applied in &commits {
            let id = applied.audit.target_id;
            let round = seen.get(&id).map_or(0, |last| last + 1);
            seen.insert(id, round);
            if rounds.len() == round {
                rounds.push(Vec::new());
            }
            rounds[round].push(applied);
            round_of.push(round);
        }
        let mut sequences: Vec<HashMap<Uuid, i64>> = Vec::with_capacity(rounds.len());
        for round in &rounds {
            let mut taken = HashMap::with_capacity(round.len());
            for chunk in round.chunks(ROWS_PER_STATEMENT) {
                let mut update = QueryBuilder::<B>::new(UPDATE_TRANSITIONS);
                update.push_values(chunk, |mut row, applied| {
                    let after = applied.after.as_ref().expect("a check never deletes");
                    row.push_bind(after.integration_id)
                        .push_bind(after.status.as_str())
                        .push_bind(after.paused)
                        .push_bind(after.pause_reason.clone())
                        .push_bind(after.pause_ticket.clone())
                        .push_bind(i64::from(after.consecutive_failures))
                        .push_bind(i64::from(after.consecutive_successes))
                        .push_bind(after.last_tested_at)
                        .push_bind(after.last_test_success)
                        .push_bind(after.version)
                        .push_bind(i64::from(applied.event.is_some()))
                        .push_bind(after.flapping)
                        .push_bind(Json(&after.flap_transitions))
                        .push_bind(Json(&after.maintenance));
                });
                update.push(UPDATE_TRANSITIONS_END);
                let updated: Vec<(Uuid, i64)> = B::build_query_as(&mut update)
                    .fetch_all(&mut *transaction)
                    .await?;
                taken.extend(updated);
            }
            sequences.push(taken);
        }

        // The events and audit entries, in the group's order.
        let mut events: Vec<(OutboxEvent, Option<Claim>)> = Vec::new();
        let mut entries: Vec<(StoredAuditEntry, Option<Claim>)> = Vec::new();
        let mut rounds_in_order = round_of.into_iter();
        for (request, decision) in requests.iter().zip(&decisions) {
            let Decision::Commit(commit) = decision else {
                continue;
            };
            let applied = &commit.1;
            let after = applied.after.as_ref().expect("a check never deletes");
            let round = rounds_in_order.next().expect("a round per commit");
            if let Some(kind) = applied.event {
                let sequence = *sequences[round].get(&after.integration_id).ok_or_else(|| {
                    StoreError::Internal(format!(
                        "integration {} was not updated",
                        after.integration_id
                    ))
                })?;
                let time = TimeDelta::from_std(request.called.elapsed())
                    .ok()
                    .and_then(|waited| request.now.checked_add_signed(waited))
                    .unwrap_or(request.now);
                let event = cloudevents::build(kind, after, sequence, &applied.cause, time);
                events.push((event, request.claim));
            }
            // `occurred_at` is the request's `now`, already at the stored precision.
            let record = &applied.audit;
            let head = heads
                .get_mut(&record.tenant_id)
                .expect("every changed tenant's head is locked");
            let entry = StoredAuditEntry::chain(record, head.0, &head.1);
            *head = (entry.sequence, entry.hash.clone());
            entries.push((entry, request.claim));
        }
        self.insert_events(&mut transaction, &events).await?;
        self.insert_entries(&mut transaction, &entries).await?;
        for (tenant, (sequence, hash)) in &heads {
            sqlx::query(UPDATE_HEAD)
                .bind(tenant.as_str())
                .bind(*sequence)
                .bind(hash.as_str())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;

        // Committed: the relay hears of each event and the observers of each transition, in
        // the group's order.
        for (event, _) in events {
            self.handoff.committed(event);
        }
        let outcomes = decisions
            .into_iter()
            .map(|decision| match decision {
                Decision::Fenced => CheckCommit::Fenced,
                Decision::Stale(row) => CheckCommit::Stale(row.map(|row| *row)),
                Decision::Commit(commit) => {
                    let (before, applied) = *commit;
                    let after = applied.after.expect("a check never deletes");
                    self.observer.committed(Some(&before), Some(&after));
                    CheckCommit::Committed(after)
                }
            })
            .collect();
        Ok(outcomes)
    }

    /// Inserts the group's outbox rows (or an import's), several per statement.
    pub(super) async fn insert_events(
        &self,
        connection: &mut <B as sqlx::Database>::Connection,
        events: &[(OutboxEvent, Option<Claim>)],
    ) -> Result<(), StoreError> {
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<B>::new(OUTBOX_COLUMNS);
            insert.push_values(chunk, |mut row, (event, claim)| {
                let writer = self.writer(*claim);
                row.push_bind(event.event_id)
                    .push_bind(event.tenant_id.as_str())
                    .push_bind(event.integration_id)
                    .push_bind(event.sequence)
                    .push_bind(event.event_type.as_str())
                    .push_bind(event.subject.as_str())
                    .push_bind(event.payload.as_str())
                    .push_bind(event.created_at)
                    .push_bind(writer.node)
                    .push_bind(writer.shard())
                    .push_bind(writer.epoch());
            });
            B::build(&mut insert).execute(&mut *connection).await?;
        }
        Ok(())
    }

    /// Inserts the group's audit entries (or an import's), several per statement.
    pub(super) async fn insert_entries(
        &self,
        connection: &mut <B as sqlx::Database>::Connection,
        entries: &[(StoredAuditEntry, Option<Claim>)],
    ) -> Result<(), StoreError> {
        let columns = format!(
            "INSERT INTO audit_log ({}, {}) ",
            AUDIT_COLUMNS.join(", "),
            WRITER_COLUMNS.join(", ")
        );
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<B>::new(&columns);
            insert.push_values(chunk, |mut row, (entry, claim)| {
                let writer: Writer<'_> = self.writer(*claim);
                row.push_bind(entry.entry_id)
                    .push_bind(entry.tenant_id.as_str())
                    .push_bind(entry.sequence)
                    .push_bind(entry.actor.as_str())
                    .push_bind(entry.action.as_str())
                    .push_bind(entry.target_type.as_str())
                    .push_bind(entry.target_id)
                    .push_bind(entry.before.clone())
                    .push_bind(entry.after.clone())
                    .push_bind(entry.reason.clone())
                    .push_bind(entry.ticket.clone())
                    .push_bind(entry.occurred_at)
                    .push_bind(entry.prev_hash.as_str())
                    .push_bind(entry.hash.as_str())
                    .push_bind(writer.node)
                    .push_bind(writer.shard())
                    .push_bind(writer.epoch());
            });
            B::build(&mut insert).execute(&mut *connection).await?;
        }
        Ok(())
    }
    /// Commits one transition alone, in a transaction of its own: what a group falls back
    /// to when its transaction fails, so that one item's failure is only its own.
    async fn commit_one(&self, request: Request) -> Result<CheckCommit, StoreError> {
        let Request {
            id,
            expected_version,
            now,
            claim,
            called,
            ..
        } = request;
        let _turn = self.gate.turn().await;
        let mut transaction = begin(&self.pool, B::BEGIN_WRITE).await?;
        // The fence first: the shard's lease row is locked (key share) before the integration's
        // row, in the order every fenced writer takes them, and held to the commit, so a
        // takeover waits for this write or this write sees the takeover.
        if let Some(claim) = claim {
            let admitted = B::fence(&mut transaction, &self.node, &[claim]).await?;
            if admitted.is_empty() {
                transaction.rollback().await?;
                return Ok(CheckCommit::Fenced);
            }
        }
        let row: Option<IntegrationRow> = sqlx::query_as(&B::locked(&SELECT_INTEGRATION_BY_ID))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(read_error)?;
        let current = row.map(IntegrationRow::into_integration).transpose()?;
        let current = match current {
            Some(current) if current.version == expected_version => current,
            other => {
                transaction.rollback().await?;
                return Ok(CheckCommit::Stale(other));
            }
        };
        let applied = request.apply(&current);
        let event = Self::write_applied(
            &mut transaction,
            &current,
            &applied,
            now,
            called,
            self.writer(claim),
            None,
        )
        .await?;
        transaction.commit().await?;
        if let Some(event) = event {
            self.handoff.committed(event);
        }
        self.observer
            .committed(Some(&current), applied.after.as_ref());
        Ok(CheckCommit::Committed(
            applied.after.expect("a check never deletes"),
        ))
    }
}
