//! Lifecycle events as CloudEvents 1.0 (structured JSON), built at commit time and stored in
//! the outbox with the change that caused them (DESIGN §6).
//!
//! The payload is complete when it is written, so the relay only moves bytes and a
//! redelivered event is byte-for-byte the same event.

use catalogd_actors::{EventKind, FailureClass, Maintenance, Status};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::integration::Integration;

/// The CloudEvents `source` of every event catalogd emits.
pub const SOURCE: &str = "urn:catalogd";

/// The NATS subject prefix of lifecycle events.
pub const SUBJECT_PREFIX: &str = "integrations.events";

/// What the outbox stores for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub event_id: Uuid,
    pub tenant_id: String,
    pub integration_id: Uuid,
    pub sequence: i64,
    /// `integration.<kind>`.
    pub event_type: String,
    pub subject: String,
    /// The CloudEvent as JSON text.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// Why the event happened, beyond the integration's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCause {
    pub previous_status: Option<Status>,
    pub failure_class: Option<FailureClass>,
    pub latency_ms: Option<u64>,
    pub reason: Option<String>,
    /// The token subject of a REST or NATS request, or `catalogd` for the monitor.
    pub actor: String,
    /// Whether a manual connection test succeeded; only `integration.tested` carries it.
    pub success: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventData<'a> {
    integration_id: Uuid,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    provider: &'a str,
    previous_status: Option<&'static str>,
    status: &'static str,
    consecutive_failures: u32,
    failure_class: Option<&'static str>,
    latency_ms: Option<u64>,
    reason: Option<&'a str>,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    /// The maintenance window the integration is in (DESIGN §10), when it is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<Maintenance>,
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: Uuid,
    source: &'static str,
    #[serde(rename = "type")]
    kind: &'a str,
    subject: Uuid,
    time: String,
    datacontenttype: &'static str,
    tenantid: &'a str,
    sequence: i64,
    data: EventData<'a>,
}

/// The NATS subject of an event: `integrations.events.<tenantId>.<kind>`. Tenant ids are
/// restricted to subject-safe characters when a token is verified (see [`crate::auth`]).
pub fn subject(tenant_id: &str, kind: EventKind) -> String {
    format!("{SUBJECT_PREFIX}.{tenant_id}.{}", kind.as_str())
}

/// Builds the event for `integration` (its state after the change; before it, for a delete).
pub fn build(
    kind: EventKind,
    integration: &Integration,
    sequence: i64,
    cause: &EventCause,
    now: DateTime<Utc>,
) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let event_type = format!("integration.{}", kind.as_str());
    let event = CloudEvent {
        specversion: "1.0",
        id: event_id,
        source: SOURCE,
        kind: &event_type,
        subject: integration.integration_id,
        time: now.to_rfc3339_opts(SecondsFormat::Micros, true),
        datacontenttype: "application/json",
        tenantid: &integration.tenant_id,
        sequence,
        data: EventData {
            integration_id: integration.integration_id,
            name: &integration.name,
            kind: integration.kind.as_str(),
            provider: &integration.provider,
            previous_status: cause.previous_status.map(Status::as_str),
            status: integration.status.as_str(),
            consecutive_failures: integration.consecutive_failures,
            failure_class: cause.failure_class.map(FailureClass::as_str),
            latency_ms: cause.latency_ms,
            reason: cause.reason.as_deref(),
            actor: &cause.actor,
            success: cause.success,
            maintenance: integration.maintenance,
        },
    };
    OutboxEvent {
        event_id,
        tenant_id: integration.tenant_id.clone(),
        integration_id: integration.integration_id,
        sequence,
        subject: subject(&integration.tenant_id, kind),
        payload: serde_json::to_string(&event).expect("events serialize"),
        event_type,
        created_at: now,
    }
}
