//! The daemon's own liveness (`/healthz`) and readiness (`/readyz`) probes, unauthenticated
//! and free of error details.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

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

/// Readiness: whether the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
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
    let (status, readiness, database) = if database_ok {
        (StatusCode::OK, "ready", "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "error")
    };
    (
        status,
        Json(Readiness {
            status: readiness,
            checks: ReadinessChecks { database },
        }),
    )
}
