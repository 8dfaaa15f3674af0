//! Lifecycle operations on one integration (DESIGN §4, §5): submit, pause, resume,
//! activate, and the manual connection test. The handlers are thin adapters around
//! [`crate::operations`], which commits each transition with its audit entry and outbox event
//! through the store, then tells the engine so the owning actor follows.

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};

use super::error::{ApiError, Problem};
use super::extract::{Admin, IntegrationPath, JsonBody, OptionalJsonBody};
use super::integrations::resource;
use super::AppState;
use crate::connectors::ConnectionTestReport;
use crate::operations;

/// Shared with the NATS control service; re-exported for the OpenAPI document.
pub use crate::operations::{ActivateRequest, EmptyRequest, PauseRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/integrations/{id}/submit", post(submit))
        .route("/api/v1/integrations/{id}/pause", post(pause))
        .route("/api/v1/integrations/{id}/resume", post(resume))
        .route("/api/v1/integrations/{id}/activate", post(activate))
        .route("/api/v1/integrations/{id}/test", post(test))
}

/// Submit a draft for verification: draft → pending_verification; a verification check runs
/// at once.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{id}/submit",
    tag = "lifecycle",
    params(("id" = Uuid, Path, description = "The integration id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The integration, now pending verification", body = crate::integration::Integration),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "invalid_transition: not a draft", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    Admin(principal): Admin,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(_empty): OptionalJsonBody<EmptyRequest>,
) -> Result<Response, ApiError> {
    operations::submit(&state, &principal, id)
        .await
        .map(resource)
}

/// Pause monitoring: no probe is sent while paused. A reason is required.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{id}/pause",
    tag = "lifecycle",
    params(("id" = Uuid, Path, description = "The integration id")),
    request_body = PauseRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The paused integration", body = crate::integration::Integration),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "invalid_transition: a draft, or already paused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_reason (missing or too long) or invalid_ticket", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    Admin(principal): Admin,
    IntegrationPath(id): IntegrationPath,
    JsonBody(request): JsonBody<PauseRequest>,
) -> Result<Response, ApiError> {
    operations::pause(&state, &principal, id, request)
        .await
        .map(resource)
}

/// Resume monitoring: paused → active with counters reset; a check runs at once.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{id}/resume",
    tag = "lifecycle",
    params(("id" = Uuid, Path, description = "The integration id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The resumed integration", body = crate::integration::Integration),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "invalid_transition: not paused", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    Admin(principal): Admin,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(_empty): OptionalJsonBody<EmptyRequest>,
) -> Result<Response, ApiError> {
    operations::resume(&state, &principal, id)
        .await
        .map(resource)
}

/// Activate by approval: draft, pending_verification or failed → active. The approver is
/// the token's subject.
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{id}/activate",
    tag = "lifecycle",
    params(("id" = Uuid, Path, description = "The integration id")),
    request_body(content = ActivateRequest, description = "Optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The active integration", body = crate::integration::Integration),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "invalid_transition: active, degraded or paused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_reason: the comment is too long", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    Admin(principal): Admin,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(request): OptionalJsonBody<ActivateRequest>,
) -> Result<Response, ApiError> {
    operations::activate(&state, &principal, id, request)
        .await
        .map(resource)
}

/// Run a staged connection test now (DNS → TCP → TLS → HTTP → authenticated call). The
/// result is audited; for a monitored integration it also counts as a check, applied by the
/// integration's own actor (a successful test verifies a pending integration).
#[utoipa::path(
    post,
    path = "/api/v1/integrations/{id}/test",
    tag = "lifecycle",
    params(("id" = Uuid, Path, description = "The integration id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The staged test report; a failed test is still a 200", body = ConnectionTestReport),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    )
)]
pub async fn test(
    State(state): State<AppState>,
    Admin(principal): Admin,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(_empty): OptionalJsonBody<EmptyRequest>,
) -> Result<Json<ConnectionTestReport>, ApiError> {
    operations::test(&state, &principal, id).await.map(Json)
}
