//! One integration's health and check history over REST:
//! `GET /api/v1/integrations/{id}/health` and `GET /api/v1/integrations/{id}/history`.

use axum::extract::State;
use axum::Json;

use super::error::Problem;
use super::extract::{use_case, Caller, IntegrationPath, QueryParams};
use super::route::Route;
use crate::app::health::{HealthBody, HistoryBody, HistoryParams};
use crate::app::{App, AppError};

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/integrations/{id}/health", health),
        Route::get("/api/v1/integrations/{id}/history", history),
    ]
}

/// An integration's status, last check, consecutive failures and uptime ratios.
#[utoipa::path(
    get,
    operation_id = "getHealth",
    path = "/api/v1/integrations/{id}/health",
    tag = "health",
    params(("id" = Uuid, Path, description = "The integration id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The integration's health", body = HealthBody),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    )
)]
pub async fn health(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Health>,
    IntegrationPath(id): IntegrationPath,
) -> Result<Json<HealthBody>, AppError> {
    app.health(&principal, id).await.map(Json)
}

/// An integration's check results, or hourly or daily rollups of them, over a time range,
/// newest first.
#[utoipa::path(
    get,
    operation_id = "getHistory",
    path = "/api/v1/integrations/{id}/history",
    tag = "health",
    params(("id" = Uuid, Path, description = "The integration id"), HistoryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of history", body = HistoryBody),
        (status = 400, description = "invalid_query, invalid_limit or invalid_cursor", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_range: `from` is after `to`", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    )
)]
pub async fn history(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::History>,
    IntegrationPath(id): IntegrationPath,
    QueryParams(params): QueryParams<HistoryParams>,
) -> Result<Json<HistoryBody>, AppError> {
    app.history(&principal, id, params).await.map(Json)
}
