//! Lifecycle transitions on one integration over REST (DESIGN §4, §5): submit, pause,
//! resume and activate, and the manual connection test
//! (`POST /api/v1/integrations/{id}/<transition>`). Each handler calls one use case of
//! [`crate::app`].

use axum::extract::State;
use axum::response::Response;
use axum::Json;

use super::error::Problem;
use super::extract::{use_case, Caller, IntegrationPath, JsonBody, OptionalJsonBody};
use super::integrations::resource;
use super::route::Route;
use crate::app::transitions::{ActivateRequest, EmptyRequest, PauseRequest, ResumeRequest};
use crate::app::{App, AppError};
use crate::connectors::ConnectionTestReport;

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/integrations/{id}/submit", submit),
        Route::post("/api/v1/integrations/{id}/pause", pause),
        Route::post("/api/v1/integrations/{id}/resume", resume),
        Route::post("/api/v1/integrations/{id}/activate", activate),
        Route::post("/api/v1/integrations/{id}/test", test),
    ]
}

/// Submit a draft for verification: draft → pending_verification; a verification check runs
/// at once.
#[utoipa::path(
    post,
    operation_id = "submitIntegration",
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
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Submit>,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(_empty): OptionalJsonBody<EmptyRequest>,
) -> Result<Response, AppError> {
    app.submit(&principal, id).await.map(resource)
}

/// Pause monitoring: no probe is sent while paused. A reason is required.
#[utoipa::path(
    post,
    operation_id = "pauseIntegration",
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
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Pause>,
    IntegrationPath(id): IntegrationPath,
    JsonBody(request): JsonBody<PauseRequest>,
) -> Result<Response, AppError> {
    app.pause(&principal, id, request).await.map(resource)
}

/// Resume monitoring: paused → active with counters reset; a check runs at once. An optional
/// reason and ticket are recorded in the audit trail (the reason also in the event).
#[utoipa::path(
    post,
    operation_id = "resumeIntegration",
    path = "/api/v1/integrations/{id}/resume",
    tag = "lifecycle",
    params(("id" = Uuid, Path, description = "The integration id")),
    request_body = ResumeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The resumed integration", body = crate::integration::Integration),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "invalid_transition: not paused", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_reason (too long) or invalid_ticket", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Resume>,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(request): OptionalJsonBody<ResumeRequest>,
) -> Result<Response, AppError> {
    app.resume(&principal, id, request).await.map(resource)
}

/// Activate by approval: draft, pending_verification or failed → active. The approver is
/// the token's subject.
#[utoipa::path(
    post,
    operation_id = "activateIntegration",
    path = "/api/v1/integrations/{id}/activate",
    tag = "lifecycle",
    params(("id" = Uuid, Path, description = "The integration id")),
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
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Activate>,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(request): OptionalJsonBody<ActivateRequest>,
) -> Result<Response, AppError> {
    app.activate(&principal, id, request).await.map(resource)
}

/// Run a staged connection test now (DNS → TCP → TLS → HTTP → authenticated call). The
/// result is audited and published as `integration.tested` (with `success`, `failureClass`,
/// `latencyMs`, `actor`), whatever the status does; for a monitored integration it also counts
/// as a check, applied by the integration's own actor (a successful test verifies a pending
/// integration).
#[utoipa::path(
    post,
    operation_id = "testIntegration",
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
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Test>,
    IntegrationPath(id): IntegrationPath,
    OptionalJsonBody(_empty): OptionalJsonBody<EmptyRequest>,
) -> Result<Json<ConnectionTestReport>, AppError> {
    app.test(&principal, id).await.map(Json)
}
