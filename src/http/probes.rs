//! The daemon's own liveness (`/healthz`) and readiness (`/readyz`) probes, unauthenticated
//! and free of error details.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::route::Route;
use crate::app::readiness::Readiness;
use crate::app::App;

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/healthz", healthz),
        Route::get("/readyz", readyz),
    ]
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: answers while the process serves requests.
#[utoipa::path(
    get,
    operation_id = "healthz",
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
    operation_id = "readyz",
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "A dependency is down", body = Readiness),
    )
)]
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<Readiness>) {
    let readiness = app.readiness().await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}
