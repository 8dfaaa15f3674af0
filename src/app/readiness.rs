//! Whether the daemon can serve: the database answers, the monitor engine runs (NATS is
//! reported but never makes the daemon unready: events wait in the outbox). Unauthenticated
//! and free of error details.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::App;

/// The longest a readiness probe waits for the database; kept below the request timeout so
/// that a hung database reads as "not ready" rather than as a timed-out request.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub checks: ReadinessChecks,
    /// This node's view of the cluster (DESIGN §9); absent without an engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReadiness>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok` or `error`.
    #[schema(example = "ok")]
    pub database: &'static str,
    /// The monitor engine: `running`, `stopped`, or `detached` (no engine in this process).
    #[schema(example = "running")]
    pub engine: &'static str,
    /// Monitor actors running now (one per integration that is not a draft).
    pub actors: u64,
    /// NATS: `ok`, `degraded` (configured but not connected: events wait in the outbox, and
    /// the daemon stays ready) or `disabled`.
    #[schema(example = "ok")]
    pub nats: &'static str,
}

/// `/readyz`'s `cluster`: this node, the live nodes it sees, and the shards it holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReadiness {
    /// `cluster.node_id`.
    #[schema(example = "catalogd-a")]
    pub node_id: String,
    /// Live nodes sharing the fleet (1 on SQLite).
    pub nodes: u64,
    /// Shards this node holds and monitors.
    pub shards_owned: u64,
    /// `cluster.shards`.
    pub shards_total: u64,
}

impl App {
    /// Whether the database answers and the monitor engine runs.
    pub async fn readiness(&self) -> Readiness {
        let limit = PING_TIMEOUT.min(self.request_timeout / 2);
        let database_ok = match tokio::time::timeout(limit, self.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: database ping failed");
                false
            }
            Err(_) => {
                tracing::warn!(timeout = ?limit, "readiness: database ping timed out");
                false
            }
        };
        let engine = self.engine.snapshot();
        let engine_ok = engine.is_none_or(|e| e.running);
        Readiness {
            status: if database_ok && engine_ok {
                "ready"
            } else {
                "not_ready"
            },
            checks: ReadinessChecks {
                database: if database_ok { "ok" } else { "error" },
                engine: match engine {
                    None => "detached",
                    Some(e) if e.running => "running",
                    Some(_) => "stopped",
                },
                actors: engine.map_or(0, |e| e.actors),
                nats: self.nats.check(),
            },
            cluster: self.engine.cluster().map(|c| ClusterReadiness {
                node_id: c.node_id,
                nodes: c.nodes,
                shards_owned: c.shards_owned,
                shards_total: c.shards_total,
            }),
        }
    }
}
