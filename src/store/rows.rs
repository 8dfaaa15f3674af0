//! The row shapes both SQL backends read, and their conversion to domain types.
//!
//! The rows hold only types that SQLite and PostgreSQL both decode (`Uuid`, `String`,
//! `DateTime<Utc>`, `i64`, `bool`, `Json<_>`), so one `FromRow` derive serves both. Anything a
//! database could hold but the domain cannot (an unknown status, a negative counter) becomes
//! [`StoreError::Corrupt`] rather than a panic or a silently wrong value.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::audit_chain::StoredAuditEntry;
use super::StoreError;
use crate::integration::{HealthCheck, Integration, IntegrationType};
use catalogd_actors::{Maintenance, Status};

/// The columns of `integrations`, in the order [`IntegrationRow`] and the store's bind
/// function use. Statements are generated from this list so they cannot drift apart.
pub(super) const INTEGRATION_COLUMNS: [&str; 31] = [
    "integration_id",
    "tenant_id",
    "name",
    "description",
    "type",
    "provider",
    "base_url",
    "auth_ref",
    "configuration",
    "environment",
    "tags",
    "owner_id",
    "health_check",
    "status",
    "paused",
    "pause_reason",
    "pause_ticket",
    "last_tested_at",
    "last_test_success",
    "consecutive_failures",
    "consecutive_successes",
    "created_at",
    "created_by",
    "modified_at",
    "modified_by",
    "version",
    "depends_on",
    "suppressed_by",
    "flapping",
    "flap_transitions",
    "maintenance",
];

/// The columns of `audit_log`, in [`AuditRow`]'s order.
pub(super) const AUDIT_COLUMNS: [&str; 14] = [
    "entry_id",
    "tenant_id",
    "sequence",
    "actor",
    "action",
    "target_type",
    "target_id",
    "before_state",
    "after_state",
    "reason",
    "ticket",
    "occurred_at",
    "prev_hash",
    "hash",
];

/// One row of `integrations`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct IntegrationRow {
    integration_id: Uuid,
    tenant_id: String,
    name: String,
    description: Option<String>,
    #[sqlx(rename = "type")]
    kind: String,
    provider: String,
    base_url: Option<String>,
    auth_ref: Option<String>,
    configuration: Json<serde_json::Map<String, serde_json::Value>>,
    environment: Option<String>,
    tags: Json<Vec<String>>,
    owner_id: Option<String>,
    health_check: Json<HealthCheck>,
    status: String,
    paused: bool,
    pause_reason: Option<String>,
    pause_ticket: Option<String>,
    last_tested_at: Option<DateTime<Utc>>,
    last_test_success: Option<bool>,
    consecutive_failures: i64,
    consecutive_successes: i64,
    created_at: DateTime<Utc>,
    created_by: String,
    modified_at: DateTime<Utc>,
    modified_by: String,
    version: i64,
    depends_on: Json<Vec<Uuid>>,
    suppressed_by: Json<Vec<Uuid>>,
    flapping: bool,
    flap_transitions: Json<Vec<DateTime<Utc>>>,
    /// JSON `null` outside a window.
    maintenance: Json<Option<Maintenance>>,
    /// The newest check the row does not show yet, where the read asked for it
    /// ([`super::listing::Dialect::latest_check`]: `checked_at µs × 2 + success`).
    #[sqlx(default)]
    latest_check: Option<i64>,
}

impl IntegrationRow {
    pub(super) fn into_integration(self) -> Result<Integration, StoreError> {
        let id = self.integration_id;
        let corrupt = |what: String| StoreError::Corrupt(format!("integration {id}: {what}"));
        let kind = IntegrationType::parse(&self.kind)
            .ok_or_else(|| corrupt(format!("unknown type {:?}", self.kind)))?;
        let status: Status = self
            .status
            .parse()
            .map_err(|error| corrupt(format!("{error}")))?;
        let counter = |column: &str, value: i64| {
            u32::try_from(value).map_err(|_| corrupt(format!("{column} out of range: {value}")))
        };
        // A check the history writer did not write to the row (a success that changed
        // nothing else) is newer than the row's.
        let (last_tested_at, last_test_success) = match self.latest_check {
            Some(packed) => match DateTime::from_timestamp_micros(packed.div_euclid(2)) {
                Some(at) if self.last_tested_at.is_none_or(|row| row < at) => {
                    (Some(at), Some(packed.rem_euclid(2) == 1))
                }
                _ => (self.last_tested_at, self.last_test_success),
            },
            None => (self.last_tested_at, self.last_test_success),
        };
        Ok(Integration {
            integration_id: id,
            tenant_id: self.tenant_id,
            name: self.name,
            description: self.description,
            kind,
            provider: self.provider,
            base_url: self.base_url,
            auth_ref: self.auth_ref,
            configuration: self.configuration.0,
            environment: self.environment,
            tags: self.tags.0,
            owner_id: self.owner_id,
            health_check: self.health_check.0,
            status,
            paused: self.paused,
            pause_reason: self.pause_reason,
            pause_ticket: self.pause_ticket,
            last_tested_at,
            last_test_success,
            consecutive_failures: counter("consecutive_failures", self.consecutive_failures)?,
            consecutive_successes: counter("consecutive_successes", self.consecutive_successes)?,
            created_at: self.created_at,
            created_by: self.created_by,
            modified_at: self.modified_at,
            modified_by: self.modified_by,
            version: self.version,
            depends_on: self.depends_on.0,
            suppressed_by: self.suppressed_by.0,
            flapping: self.flapping,
            flap_transitions: self.flap_transitions.0,
            maintenance: self.maintenance.0,
        })
    }
}

/// One row of `audit_log`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AuditRow {
    entry_id: Uuid,
    tenant_id: String,
    sequence: i64,
    actor: String,
    action: String,
    target_type: String,
    target_id: Uuid,
    before_state: Option<String>,
    after_state: Option<String>,
    reason: Option<String>,
    ticket: Option<String>,
    occurred_at: DateTime<Utc>,
    prev_hash: String,
    hash: String,
}

impl From<AuditRow> for StoredAuditEntry {
    fn from(row: AuditRow) -> Self {
        StoredAuditEntry {
            entry_id: row.entry_id,
            tenant_id: row.tenant_id,
            sequence: row.sequence,
            actor: row.actor,
            action: row.action,
            target_type: row.target_type,
            target_id: row.target_id,
            before: row.before_state,
            after: row.after_state,
            reason: row.reason,
            ticket: row.ticket,
            occurred_at: row.occurred_at,
            prev_hash: row.prev_hash,
            hash: row.hash,
        }
    }
}

/// `time` at the precision both databases store (microseconds). PostgreSQL would round
/// anything finer while SQLite would keep it, and the audit hash must be computed over
/// exactly what is read back, so the store truncates before writing.
pub(super) fn stored_precision(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

/// `integration` with every time at [`stored_precision`].
pub(super) fn with_stored_precision(integration: &Integration) -> Integration {
    Integration {
        last_tested_at: integration.last_tested_at.map(stored_precision),
        created_at: stored_precision(integration.created_at),
        modified_at: stored_precision(integration.modified_at),
        ..integration.clone()
    }
}
