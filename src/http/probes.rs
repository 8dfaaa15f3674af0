//! The daemon's own liveness (`/healthz`) and readiness (`/readyz`) probes, unauthenticated
//! and free of error details.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::nats::NatsReadiness;

/// The longest a readiness probe waits for the database; kept below the request timeout so
/// that a hung database reads as "not ready" rather than as a timed-out request.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    pub checks: ReadinessChecks,
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

/// Liveness: answers while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    responses((status = 200, description = "The process is alive", body = Liveness))
)]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// Readiness: whether the database answers and the monitor engine runs.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness),
    )
)]
pub async fn readyz(
    State(state): State<AppState>,
    nats: Option<Extension<NatsReadiness>>,
) -> (StatusCode, Json<Readiness>) {
    let limit = PING_TIMEOUT.min(state.request_timeout / 2);
    let database_ok = match tokio::time::timeout(limit, state.store.ping()).await {
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
    let engine = state.engine.snapshot();
    let engine_ok = engine.is_none_or(|e| e.running);
    let (status, readiness) = if database_ok && engine_ok {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (
        status,
        Json(Readiness {
            status: readiness,
            checks: ReadinessChecks {
                database: if database_ok { "ok" } else { "error" },
                engine: match engine {
                    None => "detached",
                    Some(e) if e.running => "running",
                    Some(_) => "stopped",
                },
                actors: engine.map_or(0, |e| e.actors),
                nats: nats.map_or("disabled", |Extension(nats)| nats.check()),
            },
        }),
    )
}
