//! The lease tables of a cluster on PostgreSQL (DESIGN §9, `migrations/postgres/0005`): this
//! node's heartbeat, the shard leases it renews, takes and releases, the fence a monitor's
//! write checks in its own transaction, and the NOTIFY channels nodes wake each other with.
//!
//! Every expiry is decided by the database's clock (`clock_timestamp()`), never a node's, so
//! clock skew between nodes cannot make two of them believe they hold one shard.
//!
//! The row locks are chosen so that only a takeover waits for writes in flight:
//! - a monitor's write locks its shard's row `FOR KEY SHARE` (the fence) until it commits;
//! - a renewal (and a release) only updates non-key columns (`FOR NO KEY UPDATE`), which does
//!   not conflict with the fence, so a node renews its leases even while its own writes, or
//!   writes queued behind a stalled node's transaction, hold their fences;
//! - a takeover locks the row `FOR UPDATE`, which does conflict: a row with a write in
//!   flight is skipped (`SKIP LOCKED`) and taken at a later tick, once that write has
//!   committed or rolled back (one stuck write does not hold up the other shards); a write
//!   that starts after the takeover locked the row waits for it and then finds the new
//!   epoch. So `taken_at`, read after the lock, is later than every write admitted before.
//!
//! Statements that lock several rows lock them in shard order, so they cannot deadlock.

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener, PgPool};

use super::StoreError;
use crate::cluster::{admitted, Claim, Lease};

/// Nodes wake each other on this channel when one joins, leaves or releases shards.
pub const CLUSTER_CHANNEL: &str = "catalogd_cluster";
/// A committed change, for the node that runs the integration's monitor.
pub const CHANGES_CHANNEL: &str = "catalogd_changes";

/// A node row expired for this long is deleted (it is only kept for a post-mortem look).
const FORGET_NODES_AFTER: &str = "1 hour";

/// A shard as the membership task sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRow {
    pub shard: u32,
    pub owner: Option<String>,
    pub epoch: i64,
    /// Unexpired by the database's clock.
    pub live: bool,
    /// Until it expires (negative once expired).
    pub remaining: Duration,
}

/// A shard this node took, and from whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub claim: Claim,
    pub previous_owner: Option<String>,
}

/// The lease tables, over the daemon's pool.
#[derive(Clone, Debug)]
pub struct LeaseStore {
    pool: PgPool,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl LeaseStore {
    pub(super) fn new(pool: PgPool) -> Self {
        LeaseStore { pool }
    }

    /// The same tables over a small pool of their own, so that renewals and takeovers never
    /// wait for a connection behind the daemon's writers (a renewal that waits past the TTL
    /// loses the node its shards): one connection for the notification listener, one for
    /// the renewals, the rest for the membership task and change notices. Each statement
    /// may run for `limit` at most (a stuck one fails and is retried rather than holding a
    /// connection past the TTL).
    pub async fn dedicated(&self, limit: Duration) -> Result<LeaseStore, StoreError> {
        let timeout = format!("{}ms", limit.as_millis().max(1));
        let options = (*self.pool.connect_options())
            .clone()
            .options([("statement_timeout", timeout.as_str())]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .min_connections(2)
            .connect_with(options)
            .await?;
        Ok(LeaseStore { pool })
    }

    /// Fixes the shard count on first use, refuses another one later, and makes sure every
    /// shard has its lease row.
    pub async fn init(&self, shards: u32) -> Result<(), StoreError> {
        let configured = i32::try_from(shards).unwrap_or(i32::MAX);
        sqlx::query("INSERT INTO cluster_settings (shards) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(configured)
            .execute(&self.pool)
            .await?;
        let stored: i32 = sqlx::query_scalar("SELECT shards FROM cluster_settings")
            .fetch_one(&self.pool)
            .await?;
        if stored != configured {
            return Err(StoreError::ShardCount {
                configured: shards,
                stored: u32::try_from(stored).unwrap_or_default(),
            });
        }
        sqlx::query(
            "INSERT INTO cluster_shards (shard) SELECT generate_series(0, $1 - 1) \
             ON CONFLICT DO NOTHING",
        )
        .bind(configured)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Registers this node as starting (not ready: it is given no shards yet), whatever an
    /// earlier run under its id had said.
    pub async fn register(&self, node: &str, ttl: Duration) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, started_at, expires_at, ready) \
             VALUES ($1, clock_timestamp(), clock_timestamp() + $2 * interval '1 second', FALSE) \
             ON CONFLICT (node_id) DO UPDATE SET started_at = EXCLUDED.started_at, \
                 expires_at = EXCLUDED.expires_at, ready = FALSE",
        )
        .bind(node)
        .bind(seconds(ttl))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// This node's monitors run: it may be given shards.
    pub async fn ready(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE cluster_nodes SET ready = TRUE WHERE node_id = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Renews this node's heartbeat (registering it if needed) and returns the live nodes that
    /// shards are split over, sorted: the ready ones, and this one.
    pub async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, started_at, expires_at) \
             VALUES ($1, clock_timestamp(), clock_timestamp() + $2 * interval '1 second') \
             ON CONFLICT (node_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .bind(node)
        .bind(seconds(ttl))
        .execute(&self.pool)
        .await?;
        let nodes: Vec<String> = sqlx::query_scalar(
            "SELECT node_id FROM cluster_nodes WHERE expires_at > clock_timestamp() \
             AND (ready OR node_id = $1) ORDER BY node_id",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        Ok(nodes)
    }

    /// Deletes node rows long expired.
    pub async fn forget_dead_nodes(&self) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "DELETE FROM cluster_nodes WHERE expires_at < clock_timestamp() - interval '{FORGET_NODES_AFTER}'"
        ))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every shard's lease, in shard order.
    pub async fn shards(&self) -> Result<Vec<ShardRow>, StoreError> {
        let rows: Vec<(i32, Option<String>, i64, bool, f64)> = sqlx::query_as(
            "SELECT shard, owner, epoch, expires_at > clock_timestamp(), \
             EXTRACT(EPOCH FROM expires_at - clock_timestamp())::float8 \
             FROM cluster_shards ORDER BY shard",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(shard, owner, epoch, live, remaining)| ShardRow {
                shard: shard as u32,
                owner,
                epoch,
                live,
                remaining: Duration::try_from_secs_f64(remaining).unwrap_or_default(),
            })
            .collect())
    }

    /// Extends the leases of `claims` that this node still holds, unexpired, at their epoch;
    /// returns those it extended (the others are lost).
    pub async fn renew(
        &self,
        node: &str,
        claims: &[Claim],
        ttl: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let (shards, epochs) = split(claims);
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "WITH mine AS ( \
                 SELECT c.shard FROM cluster_shards c \
                 JOIN UNNEST($2::int4[], $3::int8[]) AS h (shard, epoch) \
                   ON c.shard = h.shard AND c.epoch = h.epoch \
                 WHERE c.owner = $1 AND c.expires_at > clock_timestamp() \
                 ORDER BY c.shard FOR NO KEY UPDATE OF c) \
             UPDATE cluster_shards s \
             SET expires_at = clock_timestamp() + $4 * interval '1 second' \
             FROM mine WHERE s.shard = mine.shard RETURNING s.shard, s.epoch",
        )
        .bind(node)
        .bind(shards)
        .bind(epochs)
        .bind(seconds(ttl))
        .fetch_all(&self.pool)
        .await?;
        Ok(claims_of(rows))
    }

    /// Takes those of `shards` that nobody holds (never held, released, or expired) or that an
    /// earlier run of this node held (it was killed and restarted with the same node id:
    /// whatever that run still writes is fenced off by the new epoch), bumping each one's
    /// epoch and logging the takeover; returns what it took.
    pub async fn acquire(
        &self,
        node: &str,
        shards: &[u32],
        ttl: Duration,
    ) -> Result<Vec<Taken>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let shards: Vec<i32> = shards.iter().map(|s| *s as i32).collect();
        let rows: Vec<(i32, i64, Option<String>)> = sqlx::query_as(
            "WITH old AS ( \
                 SELECT shard, owner, \
                        (owner IS NULL OR owner = $1 OR expires_at <= clock_timestamp()) AS free \
                 FROM cluster_shards WHERE shard = ANY($2) ORDER BY shard \
                 FOR UPDATE SKIP LOCKED), \
             taken AS ( \
                 UPDATE cluster_shards s SET owner = $1, epoch = s.epoch + 1, \
                        expires_at = clock_timestamp() + $3 * interval '1 second' \
                 FROM old WHERE s.shard = old.shard AND old.free \
                 RETURNING s.shard, s.epoch, old.owner AS previous) \
             INSERT INTO cluster_takeovers (shard, epoch, node_id, previous_owner, taken_at) \
             SELECT shard, epoch, $1, previous, clock_timestamp() FROM taken \
             RETURNING shard, epoch, previous_owner",
        )
        .bind(node)
        .bind(shards)
        .bind(seconds(ttl))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(shard, epoch, previous_owner)| Taken {
                claim: Claim {
                    shard: shard as u32,
                    epoch,
                },
                previous_owner,
            })
            .collect())
    }

    /// Gives up `shards` (a handover): the next owner takes them without waiting for a TTL.
    pub async fn release(&self, node: &str, shards: &[u32]) -> Result<(), StoreError> {
        if shards.is_empty() {
            return Ok(());
        }
        let shards: Vec<i32> = shards.iter().map(|s| *s as i32).collect();
        sqlx::query(
            "UPDATE cluster_shards SET owner = NULL, expires_at = 'epoch' \
             WHERE owner = $1 AND shard = ANY($2)",
        )
        .bind(node)
        .bind(shards)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Leaves the cluster: releases every shard and deletes this node's row.
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "UPDATE cluster_shards SET owner = NULL, expires_at = 'epoch' WHERE owner = $1",
        )
        .bind(node)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM cluster_nodes WHERE node_id = $1")
            .bind(node)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Sends `payload` on `channel` to every node listening.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A connection listening on both channels (it reconnects by itself; notifications sent
    /// while it reconnects are lost, which reconciliation repairs).
    pub async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener
            .listen_all([CLUSTER_CHANNEL, CHANGES_CHANNEL])
            .await?;
        Ok(listener)
    }
}

/// The fence of a monitor's write (see [`super::backend::Backend::fence`]): locks the lease
/// rows of `claims`' shards `FOR KEY SHARE`, in shard order, and returns the claims they admit.
pub(super) async fn fence(
    connection: &mut PgConnection,
    node: &str,
    claims: &[Claim],
) -> Result<Vec<Claim>, sqlx::Error> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let mut shards: Vec<i32> = claims.iter().map(|c| c.shard as i32).collect();
    shards.sort_unstable();
    shards.dedup();
    let rows: Vec<(i32, Option<String>, i64, bool)> = sqlx::query_as(
        "SELECT shard, owner, epoch, expires_at > clock_timestamp() FROM cluster_shards \
         WHERE shard = ANY($1) ORDER BY shard FOR KEY SHARE",
    )
    .bind(shards)
    .fetch_all(&mut *connection)
    .await?;
    let leases: Vec<Lease> = rows
        .into_iter()
        .map(|(shard, owner, epoch, live)| Lease {
            shard: shard as u32,
            owner,
            epoch,
            live,
        })
        .collect();
    Ok(admitted(&leases, node, claims))
}

fn split(claims: &[Claim]) -> (Vec<i32>, Vec<i64>) {
    claims.iter().map(|c| (c.shard as i32, c.epoch)).unzip()
}

fn claims_of(rows: Vec<(i32, i64)>) -> Vec<Claim> {
    rows.into_iter()
        .map(|(shard, epoch)| Claim {
            shard: shard as u32,
            epoch,
        })
        .collect()
}
