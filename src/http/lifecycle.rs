//! Lifecycle operations on one integration (DESIGN §4, §5): submit, pause, resume,
//! activate, and the manual connection test. Each commits the state machine's transition with its audit entry and outbox
//! event through the store, then tells the engine so the owning actor follows.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use catalogd_actors::{CheckReport, Input};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, Problem};
use super::extract::{Admin, IntegrationPath, JsonBody, OptionalJsonBody};
use super::integrations::{actor, resource};
use super::AppState;
use crate::auth::Principal;
use crate::connectors::{ConnectionTestReport, Target};
use crate::integration::Change;
use crate::validation;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/integrations/{id}/submit", post(submit))
        .route("/api/v1/integrations/{id}/pause", post(pause))
        .route("/api/v1/integrations/{id}/resume", post(resume))
        .route("/api/v1/integrations/{id}/activate", post(activate))
        .route("/api/v1/integrations/{id}/test", post(test))
}

/// The body of a pause.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why the integration is paused (required), recorded in the audit trail and the event.
    pub reason: Option<String>,
    /// A change ticket, recorded in the audit trail.
    pub ticket: Option<String>,
}

/// The optional body of an activation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// Recorded in the audit trail; the approver is the token's subject.
    pub comment: Option<String>,
}

/// The optional (empty) body of submit and resume.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// Commits `input` for integration `id` and notifies the engine.
async fn transition(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    input: Input,
    reason: Option<String>,
    ticket: Option<String>,
) -> Result<Response, ApiError> {
    let change = Change::Lifecycle {
        input,
        reason,
        ticket,
    };
    let now = state.clock.now();
    let integration = state
        .store
        .change(&actor(principal), id, change, now)
        .await?
        .ok_or(ApiError::Internal)?;
    // Submit runs the verification test at once; resume checks at once (DESIGN §4).
    let check_now = matches!(input, Input::Submit | Input::Resume);
    state.engine.changed(id, check_now);
    Ok(resource(integration))
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
    transition(&state, &principal, id, Input::Submit, None, None).await
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
    let reason = validation::reason("reason", request.reason, true);
    let ticket = validation::ticket(request.ticket);
    let (reason, ticket) = match (reason, ticket) {
        (Ok(reason), Ok(ticket)) => (reason, ticket),
        (reason, ticket) => {
            let errors = [reason.err(), ticket.err()].into_iter().flatten().collect();
            return Err(ApiError::Validation(errors));
        }
    };
    transition(&state, &principal, id, Input::Pause, reason, ticket).await
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
    transition(&state, &principal, id, Input::Resume, None, None).await
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
    let comment = validation::reason("comment", request.comment, false)
        .map_err(|error| ApiError::Validation(vec![error]))?;
    transition(&state, &principal, id, Input::Activate, comment, None).await
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
    let integration = state
        .store
        .get(&principal.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let timeout = integration
        .health_check
        .timeout_seconds
        .map_or(state.monitor.timeout, |s| Duration::from_secs(s.into()));
    let report = state
        .connectors
        .test(&Target::from(&integration), timeout)
        .await;
    let result = serde_json::json!({
        "success": report.success,
        "failureClass": report.failure_class.map(|c| c.as_str()),
        "latencyMs": report.latency_ms,
        "skipped": report.skipped,
    });
    state
        .store
        .record_test(
            &actor(&principal),
            id,
            &result,
            report.success,
            report.tested_at,
        )
        .await?;
    if integration.status.is_monitored() {
        state.engine.deliver(
            id,
            CheckReport {
                outcome: report.outcome(),
                started_at: report.tested_at,
                latency: Duration::from_millis(report.latency_ms),
                lateness: Duration::ZERO,
            },
        );
    }
    Ok(Json(report))
}
