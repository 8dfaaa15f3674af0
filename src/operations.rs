//! The operations the REST API and the NATS control service share: list, get, health, test,
//! submit, pause, resume and activate, each one function of `(&AppState, &Principal,
//! request)` returning `Result<T, ApiError>`, plus the authentication and request decoding
//! both transports go through.
//!
//! The REST handlers ([`crate::http`]) and the NATS endpoints ([`crate::control`]) are thin
//! adapters around these functions: they extract the token and the request, call the
//! operation and render its value or its [`ApiError`]. Scope rules live in
//! [`Operation::scope`], tenant rules in the store queries the operations make (every one is
//! scoped by the principal's tenant, so another tenant's integration is a 404 like an unknown
//! one). Nothing here knows about HTTP or NATS, so the two transports cannot drift apart.

use std::time::Duration;

use catalogd_actors::{CheckOutcome, CheckReport, FailureClass, Input};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Principal, Scope};
use crate::connectors::{ConnectionTestReport, Target};
use crate::http::cursor::{self, ListCursor, PageBody};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::integration::{Author, Change, Integration, IntegrationType};
use crate::store::history::{Health, LastCheck, Uptime};
use crate::store::ListQuery;
use crate::validation;

/// One of the shared operations, with the scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    List,
    Get,
    Health,
    Test,
    Submit,
    Pause,
    Resume,
    Activate,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::List,
        Operation::Get,
        Operation::Health,
        Operation::Test,
        Operation::Submit,
        Operation::Pause,
        Operation::Resume,
        Operation::Activate,
    ];

    /// The operation's name, also its NATS endpoint name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::List => "list",
            Operation::Get => "get",
            Operation::Health => "health",
            Operation::Test => "test",
            Operation::Submit => "submit",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Activate => "activate",
        }
    }

    /// Reading needs the read scope; testing and lifecycle changes need admin.
    pub fn scope(self) -> Scope {
        match self {
            Operation::List | Operation::Get | Operation::Health => Scope::Read,
            Operation::Test
            | Operation::Submit
            | Operation::Pause
            | Operation::Resume
            | Operation::Activate => Scope::Admin,
        }
    }

    /// Whether the operation names one integration (`integrationId` over NATS, `{id}` in
    /// the REST path).
    pub fn takes_id(self) -> bool {
        self != Operation::List
    }
}

// ---------------------------------------------------------------------------------------
// Authentication and request decoding, shared by both transports.
// ---------------------------------------------------------------------------------------

/// The caller behind the value of the one `Authorization` header (`None` when it is absent,
/// repeated or not text), holding `scope`: no, malformed, expired or badly signed token is
/// `Unauthorized`, a valid token without the scope is `Forbidden`.
pub fn authenticate(
    state: &AppState,
    authorization: Option<&str>,
    scope: Scope,
) -> Result<Principal, ApiError> {
    let token = authorization
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthorized)?;
    let principal = state
        .auth
        .verify(token)
        .map_err(|_| ApiError::Unauthorized)?;
    if principal.has(scope) {
        Ok(principal)
    } else {
        Err(ApiError::Forbidden)
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Operations run only for a principal holding their scope, whichever adapter calls them.
fn require(principal: &Principal, operation: Operation) -> Result<(), ApiError> {
    if principal.has(operation.scope()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// An integration id as sent by a caller. Anything but a hyphenated UUID cannot name an
/// integration, so it is `NotFound` exactly like an unknown id.
pub fn integration_id(raw: &str) -> Result<Uuid, ApiError> {
    match Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => Ok(id),
        _ => Err(ApiError::NotFound),
    }
}

/// Deserializes an already parsed JSON value: a value of the wrong shape is `invalid_body`.
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(reject_json)
}

/// Syntax errors are `invalid_json`; well-formed JSON of the wrong shape is `invalid_body`.
/// serde's messages can quote values ("invalid type: string \"hunter2\""), so only the
/// field name of unknown/missing/duplicate-field errors is passed on.
pub fn reject_json(error: serde_json::Error) -> ApiError {
    let position = if error.line() > 0 {
        format!(" (line {}, column {})", error.line(), error.column())
    } else {
        String::new()
    };
    match error.classify() {
        Category::Data => {
            ApiError::InvalidBody(describe_serde_message(&error.to_string()).map_or_else(
                || format!("A field has the wrong JSON type or value{position}."),
                |message| format!("{message}{position}."),
            ))
        }
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::InvalidJson(format!("The body is not well-formed JSON{position}."))
        }
    }
}

/// "Unknown field `x`" and the like, with the name cut to a sane length; `None` for messages
/// that may quote a value.
pub fn describe_serde_message(message: &str) -> Option<String> {
    const MAX_NAME_CHARS: usize = 64;
    const KINDS: [(&str, &str); 3] = [
        ("unknown field `", "Unknown field"),
        ("missing field `", "Missing field"),
        ("duplicate field `", "Duplicate field"),
    ];
    KINDS.iter().find_map(|(needle, label)| {
        let rest = &message[message.find(needle)? + needle.len()..];
        let name: String = rest[..rest.find('`')?]
            .chars()
            .take(MAX_NAME_CHARS)
            .collect();
        Some(format!("{label} `{name}`"))
    })
}

/// Who made a change, for the audit trail.
pub fn author(principal: &Principal) -> Author {
    Author {
        tenant_id: principal.tenant_id.clone(),
        subject: principal.subject.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Requests and responses.
// ---------------------------------------------------------------------------------------

/// Filters and paging of the integration list. Every value is checked by
/// [`crate::validation`]; unknown parameters are refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only integrations of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<IntegrationType>)]
    pub kind: Option<String>,
    /// Only integrations of this provider.
    pub provider: Option<String>,
    /// Only integrations in this lifecycle status (`draft`, `pending_verification`, `active`,
    /// `degraded`, `failed`, `paused`).
    pub status: Option<String>,
    /// Only integrations in this environment.
    pub environment: Option<String>,
    /// Only integrations carrying this tag.
    pub tag: Option<String>,
    /// Only integrations whose name starts with this prefix.
    pub q: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
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

/// The optional (empty) body of submit, resume and test.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    /// Offline mode: the check was not run.
    Skipped,
}

impl From<CheckOutcome> for Outcome {
    fn from(outcome: CheckOutcome) -> Self {
        match outcome {
            CheckOutcome::Success => Outcome::Success,
            CheckOutcome::Failure(_) => Outcome::Failure,
            CheckOutcome::Skipped => Outcome::Skipped,
        }
    }
}

/// The failure class of a failed check, `None` otherwise.
pub fn failure_class(outcome: Option<CheckOutcome>) -> Option<FailureClass> {
    match outcome {
        Some(CheckOutcome::Failure(class)) => Some(class),
        _ => None,
    }
}

/// A duration in (fractional) milliseconds, as the API reports latencies.
pub fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// The most recent check.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastCheckBody {
    pub checked_at: DateTime<Utc>,
    pub success: bool,
    /// `null` when the result itself is older than the raw history window and only its
    /// success is known.
    pub outcome: Option<Outcome>,
    pub latency_ms: Option<f64>,
    /// `timeout`, `dns`, `connect`, `tls`, `http_status`, `auth`, `rate_limited`,
    /// `assertion`, `config` or `internal`; only for failures.
    #[schema(value_type = Option<String>, example = "timeout")]
    pub failure_class: Option<FailureClass>,
}

impl From<LastCheck> for LastCheckBody {
    fn from(check: LastCheck) -> Self {
        LastCheckBody {
            checked_at: check.checked_at,
            success: check.success,
            outcome: check.outcome.map(Outcome::from),
            latency_ms: check.latency.map(millis),
            failure_class: failure_class(check.outcome),
        }
    }
}

/// An integration's health: its status, its last check and its uptime.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody {
    pub integration_id: Uuid,
    #[schema(value_type = String, example = "active")]
    pub status: catalogd_actors::Status,
    pub paused: bool,
    pub last_check: Option<LastCheckBody>,
    pub consecutive_failures: u32,
    /// `successes / (successes + failures)` over the last hour, day, week and 30 days;
    /// skipped checks are left out, and a window without checks is `null`. The 7-day window
    /// starts on a whole hour and the 30-day window on a whole day once their start is older
    /// than the raw history.
    pub uptime: Uptime,
}

impl From<Health> for HealthBody {
    fn from(health: Health) -> Self {
        HealthBody {
            integration_id: health.integration_id,
            status: health.status,
            paused: health.paused,
            last_check: health.last_check.map(LastCheckBody::from),
            consecutive_failures: health.consecutive_failures,
            uptime: health.uptime,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The operations.
// ---------------------------------------------------------------------------------------

/// The tenant's integrations, filtered, ordered by name then id, one page at a time.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    params: ListParams,
) -> Result<PageBody<Integration>, ApiError> {
    require(principal, Operation::List)?;
    let query = list_query(params)?;
    let page = state.store.list(&principal.tenant_id, &query).await?;
    Ok(PageBody::from_page(page, |last| ListCursor {
        name: last.name.clone(),
        id: last.integration_id,
    }))
}

fn list_query(params: ListParams) -> Result<ListQuery, ApiError> {
    let after = params
        .cursor
        .as_deref()
        .map(cursor::decode::<ListCursor>)
        .transpose()?;
    if after
        .as_ref()
        .is_some_and(|position| !validation::is_possible_name(&position.name))
    {
        return Err(ApiError::InvalidCursor);
    }
    Ok(ListQuery {
        kind: validation::kind_filter(params.kind.as_deref())?,
        provider: validation::text_filter("provider", params.provider)?,
        status: validation::status_filter(params.status.as_deref())?,
        environment: validation::text_filter("environment", params.environment)?,
        tag: validation::text_filter("tag", params.tag)?,
        name_prefix: validation::text_filter("q", params.q)?,
        after: after.map(|position| (position.name, position.id)),
        limit: validation::limit(params.limit.as_deref())?,
    })
}

/// One integration of the caller's tenant.
pub async fn get(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<Integration, ApiError> {
    require(principal, Operation::Get)?;
    state
        .store
        .get(&principal.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// An integration's status, last check, consecutive failures and uptime ratios.
pub async fn health(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<HealthBody, ApiError> {
    require(principal, Operation::Health)?;
    let health = state
        .history
        .health(&principal.tenant_id, id, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(health.into())
}

/// Runs a staged connection test now. The result is audited; for a monitored integration it
/// also counts as a check, applied by the integration's own actor (a successful test
/// verifies a pending integration). A failed test is a report, not an error.
pub async fn test(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<ConnectionTestReport, ApiError> {
    require(principal, Operation::Test)?;
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
            &author(principal),
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
    Ok(report)
}

/// Submits a draft for verification: draft → pending_verification; a verification check
/// runs at once.
pub async fn submit(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<Integration, ApiError> {
    require(principal, Operation::Submit)?;
    transition(state, principal, id, Input::Submit, None, None).await
}

/// Pauses monitoring; a reason is required, a ticket optional.
pub async fn pause(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    request: PauseRequest,
) -> Result<Integration, ApiError> {
    require(principal, Operation::Pause)?;
    let reason = validation::reason("reason", request.reason, true);
    let ticket = validation::ticket(request.ticket);
    let (reason, ticket) = match (reason, ticket) {
        (Ok(reason), Ok(ticket)) => (reason, ticket),
        (reason, ticket) => {
            let errors = [reason.err(), ticket.err()].into_iter().flatten().collect();
            return Err(ApiError::Validation(errors));
        }
    };
    transition(state, principal, id, Input::Pause, reason, ticket).await
}

/// Resumes monitoring: paused → active with counters reset; a check runs at once.
pub async fn resume(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<Integration, ApiError> {
    require(principal, Operation::Resume)?;
    transition(state, principal, id, Input::Resume, None, None).await
}

/// Activates by approval: draft, pending_verification or failed → active. The approver is
/// the principal.
pub async fn activate(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    request: ActivateRequest,
) -> Result<Integration, ApiError> {
    require(principal, Operation::Activate)?;
    let comment = validation::reason("comment", request.comment, false)
        .map_err(|error| ApiError::Validation(vec![error]))?;
    transition(state, principal, id, Input::Activate, comment, None).await
}

/// Commits `input` for integration `id` (the transition, its audit entry and its outbox
/// event in one store transaction) and notifies the engine.
async fn transition(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    input: Input,
    reason: Option<String>,
    ticket: Option<String>,
) -> Result<Integration, ApiError> {
    let change = Change::Lifecycle {
        input,
        reason,
        ticket,
    };
    let now = state.clock.now();
    let integration = state
        .store
        .change(&author(principal), id, change, now)
        .await?
        .ok_or(ApiError::Internal)?;
    // Submit runs the verification test at once; resume checks at once (DESIGN §4).
    let check_now = matches!(input, Input::Submit | Input::Resume);
    state.engine.changed(id, check_now);
    Ok(integration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_scopes() {
        let id = Uuid::now_v7();
        assert_eq!(integration_id(&id.to_string()).unwrap(), id);
        for bad in ["", "x", &id.simple().to_string(), &format!("{{{id}}}")] {
            assert!(
                matches!(integration_id(bad), Err(ApiError::NotFound)),
                "{bad}"
            );
        }
        let reads: Vec<&str> = Operation::ALL
            .iter()
            .filter(|op| op.scope() == Scope::Read)
            .map(|op| op.name())
            .collect();
        assert_eq!(reads, ["list", "get", "health"]);
        assert!(!Operation::List.takes_id() && Operation::Pause.takes_id());
    }
}
