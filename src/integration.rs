//! The integration resource of DESIGN §3, the user-settable spec, and the pure rules that turn a
//! requested change into a new resource plus its audit record.
//!
//! The store runs [`apply_change`] inside its transaction on the row it has just locked, so
//! every backend enforces the same version checks and lifecycle rules.

use catalogd_actors::{
    CheckOutcome, EventKind, FlapState, Input, Lifecycle, Maintenance, Status, Thresholds,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::cloudevents::EventCause;

/// The kinds of system an integration points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationType {
    Registry,
    Scm,
    Ci,
    Host,
    Feed,
    Artifact,
}

impl IntegrationType {
    pub const ALL: [IntegrationType; 6] = [
        IntegrationType::Registry,
        IntegrationType::Scm,
        IntegrationType::Ci,
        IntegrationType::Host,
        IntegrationType::Feed,
        IntegrationType::Artifact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::Registry => "registry",
            IntegrationType::Scm => "scm",
            IntegrationType::Ci => "ci",
            IntegrationType::Host => "host",
            IntegrationType::Feed => "feed",
            IntegrationType::Artifact => "artifact",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Per-integration health-check settings; every field falls back to `monitor.*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral"
    )]
    pub interval_seconds: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral"
    )]
    pub timeout_seconds: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral"
    )]
    pub degraded_after: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral"
    )]
    pub failed_after: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral"
    )]
    pub recover_after: Option<u32>,
}

/// An optional `u32` that may be written as an integral float (`5.0`): JSON Schema's
/// `integer`, which the OpenAPI document promises, includes such numbers.
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_u64() {
        return u32::try_from(n)
            .map(Some)
            .map_err(|_| serde::de::Error::custom("a health-check setting must fit in 32 bits"));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
            Ok(Some(f as u32))
        }
        _ => Err(serde::de::Error::custom(
            "a health-check setting must be a non-negative integer",
        )),
    }
}

impl HealthCheck {
    /// This integration's thresholds, falling back to the daemon-wide defaults.
    pub fn thresholds(&self, defaults: Thresholds) -> Thresholds {
        Thresholds {
            degraded_after: self.degraded_after.unwrap_or(defaults.degraded_after),
            failed_after: self.failed_after.unwrap_or(defaults.failed_after),
            recover_after: self.recover_after.unwrap_or(defaults.recover_after),
        }
    }
}

/// What a user sets on create and update. Validated by [`crate::validation`] before it
/// reaches the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationSpec {
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: IntegrationType,
    pub provider: String,
    pub base_url: Option<String>,
    pub auth_ref: Option<String>,
    #[schema(value_type = Object)]
    pub configuration: serde_json::Map<String, serde_json::Value>,
    pub environment: Option<String>,
    pub tags: Vec<String>,
    pub owner_id: Option<String>,
    pub health_check: HealthCheck,
    /// The integrations of the same tenant this one depends on (DESIGN §10).
    #[serde(default)]
    pub depends_on: Vec<Uuid>,
}

/// The integration resource exactly as DESIGN §3 names its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub integration_id: Uuid,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: IntegrationType,
    pub provider: String,
    pub base_url: Option<String>,
    pub auth_ref: Option<String>,
    #[schema(value_type = Object)]
    pub configuration: serde_json::Map<String, serde_json::Value>,
    pub environment: Option<String>,
    pub tags: Vec<String>,
    pub owner_id: Option<String>,
    pub health_check: HealthCheck,
    #[schema(value_type = String, example = "active")]
    pub status: Status,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub pause_ticket: Option<String>,
    pub last_tested_at: Option<DateTime<Utc>>,
    pub last_test_success: Option<bool>,
    pub consecutive_failures: u32,
    /// Engine bookkeeping for `recover_after`; not part of the public resource.
    #[serde(skip)]
    pub consecutive_successes: u32,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub modified_at: DateTime<Utc>,
    pub modified_by: String,
    pub version: i64,
    /// The integrations of the same tenant this one depends on (DESIGN §10).
    #[serde(default)]
    pub depends_on: Vec<Uuid>,
    /// The degraded or failed integrations this one depends on, directly or through others,
    /// while its failures are of class `dependency` (written by its monitor).
    #[serde(default)]
    pub suppressed_by: Vec<Uuid>,
    /// Flap detection (DESIGN §10): too many transitions within `monitor.flap_window`.
    #[serde(default)]
    pub flapping: bool,
    /// The flap detector's memory: the times of the latest transitions, oldest first.
    #[serde(skip)]
    pub flap_transitions: Vec<DateTime<Utc>>,
    /// The maintenance window the integration is in, `{ windowId, endsAt }`, else `null`
    /// (DESIGN §10; written by its monitor).
    #[serde(default)]
    #[schema(value_type = Option<MaintenanceSchema>)]
    pub maintenance: Option<Maintenance>,
}

/// The maintenance window an integration is in, for the OpenAPI document (the value is
/// [`Maintenance`], which the actors crate defines without utoipa).
#[derive(ToSchema)]
#[schema(as = Maintenance)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct MaintenanceSchema {
    /// The window (`/api/v1/maintenance-windows/{windowId}`).
    window_id: Uuid,
    /// When the integration leaves it, unless another window holds it.
    ends_at: DateTime<Utc>,
}

impl Integration {
    /// A new draft built from a validated spec.
    pub fn new(tenant_id: &str, spec: IntegrationSpec, actor: &str, now: DateTime<Utc>) -> Self {
        let lifecycle = catalogd_actors::create().state;
        let mut integration = Integration {
            integration_id: Uuid::now_v7(),
            tenant_id: tenant_id.to_owned(),
            name: String::new(),
            description: None,
            kind: spec.kind,
            provider: String::new(),
            base_url: None,
            auth_ref: None,
            configuration: Default::default(),
            environment: None,
            tags: Vec::new(),
            owner_id: None,
            health_check: HealthCheck::default(),
            status: lifecycle.status,
            paused: false,
            pause_reason: None,
            pause_ticket: None,
            last_tested_at: None,
            last_test_success: None,
            consecutive_failures: 0,
            consecutive_successes: 0,
            created_at: now,
            created_by: actor.to_owned(),
            modified_at: now,
            modified_by: actor.to_owned(),
            version: 1,
            depends_on: Vec::new(),
            suppressed_by: Vec::new(),
            flapping: false,
            flap_transitions: Vec::new(),
            maintenance: None,
        };
        integration.set_spec(spec);
        integration
    }

    pub fn spec(&self) -> IntegrationSpec {
        IntegrationSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            kind: self.kind,
            provider: self.provider.clone(),
            base_url: self.base_url.clone(),
            auth_ref: self.auth_ref.clone(),
            configuration: self.configuration.clone(),
            environment: self.environment.clone(),
            tags: self.tags.clone(),
            owner_id: self.owner_id.clone(),
            health_check: self.health_check,
            depends_on: self.depends_on.clone(),
        }
    }

    fn set_spec(&mut self, spec: IntegrationSpec) {
        let IntegrationSpec {
            name,
            description,
            kind,
            provider,
            base_url,
            auth_ref,
            configuration,
            environment,
            tags,
            owner_id,
            health_check,
            depends_on,
        } = spec;
        self.name = name;
        self.description = description;
        self.kind = kind;
        self.provider = provider;
        self.base_url = base_url;
        self.auth_ref = auth_ref;
        self.configuration = configuration;
        self.environment = environment;
        self.tags = tags;
        self.owner_id = owner_id;
        self.health_check = health_check;
        self.depends_on = depends_on;
    }

    /// The flap detector's state as the monitor keeps it.
    pub fn flap(&self) -> FlapState {
        FlapState {
            flapping: self.flapping,
            transitions: self.flap_transitions.clone(),
        }
    }

    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            status: self.status,
            consecutive_failures: self.consecutive_failures,
            consecutive_successes: self.consecutive_successes,
        }
    }

    fn set_lifecycle(&mut self, lifecycle: Lifecycle) {
        self.status = lifecycle.status;
        self.paused = lifecycle.status == Status::Paused;
        self.consecutive_failures = lifecycle.consecutive_failures;
        self.consecutive_successes = lifecycle.consecutive_successes;
        if !self.paused {
            self.pause_reason = None;
            self.pause_ticket = None;
        }
    }

    /// The before/after snapshot kept in the audit trail: the user-visible state without
    /// timestamps. It never holds a secret, because validation refuses raw secrets anywhere in
    /// the resource and an AuthRef is only a reference.
    pub fn audit_summary(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "description": self.description,
            "type": self.kind.as_str(),
            "provider": self.provider,
            "baseUrl": self.base_url,
            "authRef": self.auth_ref,
            "configuration": self.configuration,
            "environment": self.environment,
            "tags": self.tags,
            "ownerId": self.owner_id,
            "healthCheck": self.health_check,
            "dependsOn": self.depends_on,
            "status": self.status.as_str(),
            "flapping": self.flapping,
            "maintenance": self.maintenance,
            "pauseReason": self.pause_reason,
            "pauseTicket": self.pause_ticket,
            "version": self.version,
        })
    }
}

/// Who is making a change, and why. Recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub tenant_id: String,
    pub subject: String,
}

/// A change a user asked for, applied by the store to the row it has locked.
// One `Change` exists per request and is moved, never stored in bulk, so boxing the spec
// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Update {
        expected_version: i64,
        spec: IntegrationSpec,
    },
    Delete {
        expected_version: Option<i64>,
    },
    Lifecycle {
        input: Input,
        reason: Option<String>,
        ticket: Option<String>,
    },
}

/// Why a change was refused. Each variant is a 4xx at the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("version {expected} does not match the current version {current}")]
    VersionMismatch { expected: i64, current: i64 },
    #[error(transparent)]
    InvalidTransition(#[from] catalogd_actors::InvalidTransition),
}

/// An audit entry before the store chains it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub tenant_id: String,
    pub actor: String,
    pub action: String,
    pub target_id: Uuid,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// The result of a change: the new row (`None` when deleted), its audit record and event.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub after: Option<Integration>,
    pub audit: AuditRecord,
    pub event: Option<EventKind>,
    /// What the event says about why it happened.
    pub cause: EventCause,
}

/// The subject the monitor acts as, in audit entries and events.
pub const MONITOR_ACTOR: &str = "catalogd";

/// A health check's result as it reaches a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSummary {
    pub outcome: CheckOutcome,
    pub started_at: DateTime<Utc>,
    pub latency_ms: u64,
}

/// A manual connection test's result as the store records it (DESIGN §12): the last-test
/// fields, an `integration.test` audit entry and an `integration.tested` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestSummary {
    pub success: bool,
    pub failure_class: Option<catalogd_actors::FailureClass>,
    pub latency_ms: u64,
    /// Offline mode skipped the test: neither a success nor a failure.
    pub skipped: bool,
    pub tested_at: DateTime<Utc>,
}

impl TestSummary {
    /// The audit entry's `after`: the result, without stage messages.
    pub fn audit_result(&self) -> serde_json::Value {
        serde_json::json!({
            "success": self.success,
            "failureClass": self.failure_class.map(|c| c.as_str()),
            "latencyMs": self.latency_ms,
            "skipped": self.skipped,
        })
    }

    /// What the `integration.tested` event says: the result and who asked. The status is
    /// unchanged by the test itself (the owning actor applies it as a check afterwards), so
    /// there is no previous status.
    pub fn cause(&self, actor: &str) -> EventCause {
        EventCause {
            previous_status: None,
            failure_class: self.failure_class,
            latency_ms: Some(self.latency_ms),
            reason: None,
            actor: actor.to_owned(),
            success: Some(self.success),
        }
    }
}

/// The audit record of a creation.
pub fn created(integration: &Integration) -> AuditRecord {
    AuditRecord {
        tenant_id: integration.tenant_id.clone(),
        actor: integration.created_by.clone(),
        action: "integration.create".to_owned(),
        target_id: integration.integration_id,
        before: None,
        after: Some(integration.audit_summary()),
        reason: None,
        ticket: None,
        occurred_at: integration.created_at,
    }
}

/// Applies `change` to `current`, the row as it is now. Pure: the caller supplies the time.
pub fn apply_change(
    current: &Integration,
    change: Change,
    author: &Author,
    defaults: Thresholds,
    now: DateTime<Utc>,
) -> Result<Applied, ChangeError> {
    let check_version = |expected: i64| {
        if expected == current.version {
            Ok(())
        } else {
            Err(ChangeError::VersionMismatch {
                expected,
                current: current.version,
            })
        }
    };
    let thresholds = current.health_check.thresholds(defaults);
    let mut next = current.clone();
    let (action, input, reason, ticket) = match change {
        Change::Update {
            expected_version,
            spec,
        } => {
            check_version(expected_version)?;
            next.set_spec(spec);
            ("integration.update", Input::Update, None, None)
        }
        Change::Delete { expected_version } => {
            if let Some(expected) = expected_version {
                check_version(expected)?;
            }
            ("integration.delete", Input::Delete, None, None)
        }
        Change::Lifecycle {
            input,
            reason,
            ticket,
        } => (lifecycle_action(input), input, reason, ticket),
    };
    let transition = catalogd_actors::apply(current.lifecycle(), input, thresholds)?;
    next.set_lifecycle(transition.state);
    if input == Input::Pause {
        next.pause_reason = reason.clone();
        next.pause_ticket = ticket.clone();
    }
    next.version = current.version + 1;
    next.modified_at = now;
    next.modified_by = author.subject.clone();
    let cause = EventCause {
        previous_status: Some(current.status),
        reason: reason.clone(),
        actor: author.subject.clone(),
        ..EventCause::default()
    };
    let audit = AuditRecord {
        tenant_id: current.tenant_id.clone(),
        actor: author.subject.clone(),
        action: action.to_owned(),
        target_id: current.integration_id,
        before: Some(current.audit_summary()),
        after: (!transition.deleted).then(|| next.audit_summary()),
        reason,
        ticket,
        occurred_at: now,
    };
    Ok(Applied {
        after: (!transition.deleted).then_some(next),
        audit,
        event: transition.event,
        cause,
    })
}

/// Applies a lifecycle state the monitor computed from a check (the pure state machine ran in
/// the actor, which owns the counters) to the stored row. Bumps the version, because the status
/// changed; leaves `modifiedAt`/`modifiedBy`, which describe edits of the resource itself.
///
/// `flap` is the flap detector's state after this check (`None`: as stored), and `event` what
/// it lets through: while flapping, a transition is committed and audited without an event.
pub fn apply_check(
    current: &Integration,
    lifecycle: Lifecycle,
    event: Option<EventKind>,
    flap: Option<&FlapState>,
    check: CheckSummary,
    now: DateTime<Utc>,
) -> Applied {
    let mut next = current.clone();
    next.set_lifecycle(lifecycle);
    if let Some(flap) = flap {
        next.flapping = flap.flapping;
        next.flap_transitions = flap.transitions.clone();
    }
    next.last_tested_at = Some(check.started_at);
    next.last_test_success = Some(check.outcome == CheckOutcome::Success);
    next.version = current.version + 1;
    let failure_class = match check.outcome {
        CheckOutcome::Failure(class) => Some(class),
        _ => None,
    };
    let mut reason = match failure_class {
        Some(class) => format!(
            "{} consecutive failed checks ({class})",
            lifecycle.consecutive_failures
        ),
        None => "check succeeded".to_owned(),
    };
    let action = match event {
        Some(EventKind::Flapping) => {
            reason = format!(
                "{reason}; flapping: {} transitions",
                next.flap_transitions.len()
            );
            "integration.flapping"
        }
        Some(EventKind::Stable) => {
            reason = format!("{reason}; stable again");
            "integration.stable"
        }
        _ if next.flapping && next.status != current.status => {
            reason = format!("{reason}; flapping, event held back");
            "integration.health"
        }
        _ => "integration.health",
    };
    let audit = AuditRecord {
        tenant_id: current.tenant_id.clone(),
        actor: MONITOR_ACTOR.to_owned(),
        action: action.to_owned(),
        target_id: current.integration_id,
        before: Some(current.audit_summary()),
        after: Some(next.audit_summary()),
        reason: Some(reason.clone()),
        ticket: None,
        occurred_at: now,
    };
    let cause = EventCause {
        previous_status: Some(current.status),
        failure_class,
        latency_ms: Some(check.latency_ms),
        reason: Some(reason),
        actor: MONITOR_ACTOR.to_owned(),
        success: None,
    };
    Applied {
        after: Some(next),
        audit,
        event,
        cause,
    }
}

/// What the monitor commits when the integration enters or leaves a maintenance window
/// (DESIGN §10): the window (`None`: out of every window), the counters reset (`lifecycle`),
/// the version bumped (the resource's `maintenance` field changed), an audit entry, and
/// `event` (`maintenance_started`/`maintenance_ended`, `None` when one window hands over to
/// another).
pub fn apply_maintenance(
    current: &Integration,
    lifecycle: Lifecycle,
    maintenance: Option<Maintenance>,
    event: Option<EventKind>,
    now: DateTime<Utc>,
) -> Applied {
    let mut next = current.clone();
    next.set_lifecycle(lifecycle);
    next.maintenance = maintenance;
    next.version = current.version + 1;
    let reason = match (current.maintenance, maintenance) {
        (_, Some(window)) => format!(
            "in maintenance window {} until {}",
            window.window_id,
            window
                .ends_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        (Some(window), None) => format!("maintenance window {} ended", window.window_id),
        (None, None) => "not in a maintenance window".to_owned(),
    };
    let action = match event {
        Some(EventKind::MaintenanceStarted) => "integration.maintenance_started",
        Some(EventKind::MaintenanceEnded) => "integration.maintenance_ended",
        _ => "integration.maintenance",
    };
    let audit = AuditRecord {
        tenant_id: current.tenant_id.clone(),
        actor: MONITOR_ACTOR.to_owned(),
        action: action.to_owned(),
        target_id: current.integration_id,
        before: Some(current.audit_summary()),
        after: Some(next.audit_summary()),
        reason: Some(reason.clone()),
        ticket: None,
        occurred_at: now,
    };
    let cause = EventCause {
        previous_status: None,
        failure_class: None,
        latency_ms: None,
        reason: Some(reason),
        actor: MONITOR_ACTOR.to_owned(),
        success: None,
    };
    Applied {
        after: Some(next),
        audit,
        event,
        cause,
    }
}

fn lifecycle_action(input: Input) -> &'static str {
    match input {
        Input::Submit => "integration.submit",
        Input::Check(_) => "integration.check",
        Input::Pause => "integration.pause",
        Input::Resume => "integration.resume",
        Input::Activate => "integration.activate",
        Input::Update => "integration.update",
        Input::Delete => "integration.delete",
    }
}
