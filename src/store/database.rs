//! The daemon's one [`Database`]: its connection pool (SQLite or PostgreSQL, chosen from the
//! scheme of `database.url`), and every store built over it.
//!
//! [`Database`] is opaque: no sqlx type crosses it, so the rest of the daemon never knows
//! which backend it runs on. Inside the store, [`Pool`] is that choice, matched once per
//! store that is built over it.

use std::sync::Arc;

use super::backend::{Gate, WriteGate};
use super::census::Census;
use super::history::{HistoryOptions, HistoryStore};
use super::leases::LeaseStore;
use super::outbox::{Handoff, OutboxStore};
use super::sql::SqlStore;
use super::sqlite::ServeLock;
use super::status_pages::StatusPages;
use super::{ChangeObserver, Store, StoreError, StoreOptions, Unobserved};
use catalogd_actors::Thresholds;

/// The daemon's one connection pool, shared by every store over it (the catalog, the health
/// history, the outbox relay, the metrics queries), and the [`Handoff`] through which the
/// store passes each committed event to the relay right after its commit.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    handoff: Arc<Handoff>,
    /// Told about every committed change by the catalog stores built after it is set.
    observer: Arc<dyn ChangeObserver>,
    /// The node id catalog stores built after it is set write with every audit entry and
    /// event.
    node: Arc<str>,
}

/// The pool of one backend. SQLite's carries the [`WriteGate`] that every writer over it
/// shares.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool, WriteGate),
    Postgres(sqlx::PgPool),
}

impl Pool {
    /// The gate writers over this pool pass through.
    pub(crate) fn gate(&self) -> Gate {
        match self {
            Pool::Sqlite(_, gate) => Gate::taking_turns(gate.clone()),
            Pool::Postgres(_) => Gate::open(),
        }
    }
}

impl Database {
    /// Connects to the backend named by the URL scheme and applies its migrations.
    pub async fn connect(options: &StoreOptions) -> Result<Database, StoreError> {
        let scheme = options.url.split_once(':').map(|(scheme, _)| scheme);
        let pool = match scheme {
            Some("sqlite") => {
                Pool::Sqlite(super::sqlite::connect(options).await?, WriteGate::default())
            }
            Some("postgres" | "postgresql") => {
                Pool::Postgres(super::postgres::connect(options).await?)
            }
            _ => return Err(StoreError::UnsupportedUrl),
        };
        Ok(Database {
            pool,
            handoff: Arc::new(Handoff::default()),
            observer: Arc::new(Unobserved),
            node: Arc::from("local"),
        })
    }

    /// Catalog stores built from now on write `node` as the writer of every audit entry and
    /// event (`cluster.node_id`).
    pub fn identify(&mut self, node: &str) {
        self.node = Arc::from(node);
    }

    /// The lease tables of a cluster: on PostgreSQL only (SQLite is single-node).
    pub fn leases(&self) -> Option<LeaseStore> {
        match &self.pool {
            Pool::Sqlite(..) => None,
            Pool::Postgres(pool) => Some(LeaseStore::new(pool.clone())),
        }
    }

    /// Every catalog store built from now on tells `observer` about each committed change.
    pub fn observe(&mut self, observer: Arc<dyn ChangeObserver>) {
        self.observer = observer;
    }

    /// Claims the database for one serving daemon: on a SQLite file, an exclusive lock held
    /// as long as the returned guard lives, refused with [`StoreError::InUse`] while another
    /// daemon holds it; on PostgreSQL (where daemons share the catalog) and in memory, nothing.
    pub fn lock_for_serving(&self, url: &str) -> Result<Option<ServeLock>, StoreError> {
        match &self.pool {
            Pool::Sqlite(..) => super::sqlite::file_of(url)?
                .map(|file| super::sqlite::lock_for_serving(&file))
                .transpose(),
            Pool::Postgres(_) => Ok(None),
        }
    }

    /// The catalog store.
    pub fn store(&self, default_thresholds: Thresholds) -> Arc<dyn Store> {
        let gate = self.pool.gate();
        let handoff = self.handoff.clone();
        let observer = self.observer.clone();
        match &self.pool {
            Pool::Sqlite(pool, _) => Arc::new(SqlStore::new(
                pool.clone(),
                gate,
                default_thresholds,
                handoff,
                observer,
                self.node.clone(),
            )),
            Pool::Postgres(pool) => Arc::new(SqlStore::new(
                pool.clone(),
                gate,
                default_thresholds,
                handoff,
                observer,
                self.node.clone(),
            )),
        }
    }

    /// The health history.
    pub fn history(&self, options: HistoryOptions) -> HistoryStore {
        HistoryStore::over(&self.pool, options)
    }

    /// The relay's view of the outbox.
    pub fn outbox(&self) -> OutboxStore {
        OutboxStore::over(self.pool.clone())
    }

    /// The metrics' fleet-wide reads.
    pub fn census(&self) -> Census {
        Census::over(self.pool.clone())
    }

    /// The status pages' configuration and reads.
    pub fn status_pages(&self) -> StatusPages {
        StatusPages::over(self.pool.clone())
    }

    /// Receives every committed event right after its commit (the relay's fast path).
    pub fn handoff(&self) -> Arc<Handoff> {
        self.handoff.clone()
    }
}
