//! What differs between SQLite and PostgreSQL, said once: the [`Backend`] trait (the
//! statements that start a write or a snapshot, row locking) and the [`Gate`] every writer
//! passes through (SQLite's [`WriteGate`], a no-op on PostgreSQL).
//!
//! The store's SQL is written once, generic over `B: Backend` (an `sqlx::Database` that
//! knows its dialect), instead of being instantiated per backend by a macro. SQLite accepts
//! PostgreSQL's `$n` placeholders, row values and `ON CONFLICT`, and both schemas use the
//! same names, so almost every statement is shared; the few that are not are constants of
//! the trait (or, for the history's batch insert, a trait of their own in
//! [`super::history`]).
//!
//! Rust does not carry a trait's `where` clauses to its users (only its supertraits), so
//! the sqlx bounds a generic implementation needs cannot live on [`Backend`] itself: each
//! generic `impl` block states them once, in the shape shown in [`Backend`]'s docs, for the
//! column types it binds and the rows it reads.
//!
//! [`begin`] is the one way a transaction starts, on either backend.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::query::{Query, QueryAs};
use sqlx::{FromRow, QueryBuilder};

use crate::cluster::Claim;
use tokio::sync::{Mutex, MutexGuard};

/// A database the store runs on, with the statements in which it differs from the other.
///
/// Generic code over `B: Backend` states the sqlx bounds once per `impl` block:
///
/// ```text
/// where
///     B: Backend,
///     for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
///     for<'q> B::Arguments<'q>: sqlx::IntoArguments<'q, B>,
///     ... the column types the block binds and decodes
/// ```
pub(crate) trait Backend: sqlx::Database {
    /// Starts a transaction that reads, then writes.
    const BEGIN_WRITE: &'static str;
    /// Starts a read-only transaction that sees one consistent snapshot throughout.
    const BEGIN_SNAPSHOT: &'static str;
    /// Appended to a `SELECT` to lock its rows until the transaction ends.
    const FOR_UPDATE: &'static str;
    /// Run in an import's transaction (which writes up to a hundred thousand rows before it
    /// commits) as it starts and whenever it has grown a table, if anything: see
    /// `sqlx::Postgres`'s.
    const REPLAN: Option<&'static str> = None;

    /// How this backend assembles a page of the list ([`super::listing`]).
    fn listing() -> &'static super::listing::Dialect;

    /// `select` followed by [`Self::FOR_UPDATE`].
    fn locked(select: &str) -> String {
        format!("{select}{}", Self::FOR_UPDATE)
    }

    /// The statement `builder` holds, ready to run. [`QueryBuilder::build`] ties the
    /// arguments to the builder's lifetime (`'args`), which a generic caller cannot shorten
    /// to the borrow's: each backend's arguments type can, so it is done here.
    fn build<'q>(builder: &'q mut QueryBuilder<'_, Self>) -> Query<'q, Self, Self::Arguments<'q>>;

    /// Likewise, reading rows of `T`.
    fn build_query_as<'q, T>(
        builder: &'q mut QueryBuilder<'_, Self>,
    ) -> QueryAs<'q, Self, T, Self::Arguments<'q>>
    where
        T: for<'r> FromRow<'r, Self::Row>;

    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The fence of a monitor's write, inside its transaction: which of `claims` this node
    /// (`node`) still holds, with their lease rows locked against takeovers until the
    /// transaction ends ([`crate::cluster::admits`]).
    fn fence<'c>(
        connection: &'c mut Self::Connection,
        node: &'c str,
        claims: &'c [Claim],
    ) -> BoxFuture<'c, Result<Vec<Claim>, sqlx::Error>>;
}

/// Starts a transaction with `statement` on a connection of `pool`, in a task of its own so
/// that it cannot be cancelled half-way. sqlx's `begin_with` on SQLite awaits once more after
/// its `BEGIN` has run; a caller dropped there (a client that hangs up, the request time
/// limit) left the connection back in the pool inside the transaction, holding SQLite's write
/// lock: every later write failed with "database is locked" and that connection's next
/// `begin_with` with "non-zero transaction depth" (found by the malformed-input corpus). Here a
/// dropped caller drops the finished `Transaction`, which rolls back.
pub(crate) async fn begin<B: sqlx::Database>(
    pool: &sqlx::Pool<B>,
    statement: &'static str,
) -> Result<sqlx::Transaction<'static, B>, sqlx::Error> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin_with(statement).await })
        .await
        .unwrap_or_else(|error| Err(sqlx::Error::Protocol(format!("begin failed: {error}"))))
}

/// SQLite has a single writer. `BEGIN IMMEDIATE` takes the write lock up front (waiting out
/// the busy timeout), so a transaction that reads and then writes can neither deadlock nor
/// fail to upgrade its lock with `SQLITE_BUSY`; holding that lock is also what serializes the
/// audit chain, so no row lock is needed. A deferred `BEGIN` pins a WAL snapshot at its first
/// read.
impl Backend for sqlx::Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = "";

    fn listing() -> &'static super::listing::Dialect {
        &super::listing::SQLITE
    }

    fn build<'q>(builder: &'q mut QueryBuilder<'_, Self>) -> Query<'q, Self, Self::Arguments<'q>> {
        builder.build()
    }

    fn build_query_as<'q, T>(
        builder: &'q mut QueryBuilder<'_, Self>,
    ) -> QueryAs<'q, Self, T, Self::Arguments<'q>>
    where
        T: for<'r> FromRow<'r, Self::Row>,
    {
        builder.build_query_as()
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    /// SQLite is single-node: the serve lock keeps every other daemon off the file, so this
    /// daemon's claims always hold.
    fn fence<'c>(
        _connection: &'c mut Self::Connection,
        _node: &'c str,
        claims: &'c [Claim],
    ) -> BoxFuture<'c, Result<Vec<Claim>, sqlx::Error>> {
        Box::pin(std::future::ready(Ok(claims.to_vec())))
    }
}

/// PostgreSQL locks rows: `FOR UPDATE` on the integration and on the tenant's audit head.
impl Backend for sqlx::Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    /// A cached generic plan is costed once, on the table's size at that moment, and kept
    /// until something invalidates it (autovacuum's ANALYZE, which cannot see an open
    /// transaction's rows). An import grows `integrations` from (often) a few rows to a
    /// hundred thousand inside one transaction: a lookup by primary key planned on a table of
    /// a few rows is a sequential scan, and stays one (the foreign-key check of every tag row,
    /// the event sequence of every change), so an import of n items cost O(n²) (20,000 items:
    /// 157 s). Discarding the session's plans makes the next execution of each statement cost
    /// it on the table as it is now (an index scan); it keeps the prepared statements.
    /// (`plan_cache_mode = force_custom_plan` does too, but plans every tag row's check
    /// afresh: a third of the import's time.)
    const REPLAN: Option<&'static str> = Some("DISCARD PLANS");

    fn listing() -> &'static super::listing::Dialect {
        &super::listing::POSTGRES
    }

    fn build<'q>(builder: &'q mut QueryBuilder<'_, Self>) -> Query<'q, Self, Self::Arguments<'q>> {
        builder.build()
    }

    fn build_query_as<'q, T>(
        builder: &'q mut QueryBuilder<'_, Self>,
    ) -> QueryAs<'q, Self, T, Self::Arguments<'q>>
    where
        T: for<'r> FromRow<'r, Self::Row>,
    {
        builder.build_query_as()
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn fence<'c>(
        connection: &'c mut Self::Connection,
        node: &'c str,
        claims: &'c [Claim],
    ) -> BoxFuture<'c, Result<Vec<Claim>, sqlx::Error>> {
        Box::pin(super::leases::fence(connection, node, claims))
    }
}

/// SQLite has one writer at a time. Writers of this process take turns here, in FIFO order,
/// before they ask SQLite for its write lock; otherwise they would contend inside SQLite,
/// whose busy handler polls with sleeps of up to 100 ms, and a transition's commit (and so
/// its event) would wait behind those sleeps. Held from `BEGIN IMMEDIATE` (or the one
/// writing statement) to the commit. Other processes on the same file still meet the busy
/// handler.
#[derive(Debug, Clone, Default)]
pub struct WriteGate(Arc<Mutex<()>>);

impl WriteGate {
    pub async fn enter(&self) -> MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// What every writer of the store passes through before it writes: SQLite's [`WriteGate`],
/// shared by every store over one database, or nothing on PostgreSQL (which locks rows).
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate(Option<WriteGate>);

impl Gate {
    /// Writers take turns through `gate`.
    pub(crate) fn taking_turns(gate: WriteGate) -> Self {
        Gate(Some(gate))
    }

    /// Writers do not wait for one another here.
    pub(crate) fn open() -> Self {
        Gate(None)
    }

    /// Waits for this writer's turn; the turn lasts as long as the returned guard.
    pub(crate) async fn turn(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.0 {
            Some(gate) => Some(gate.enter().await),
            None => None,
        }
    }
}
