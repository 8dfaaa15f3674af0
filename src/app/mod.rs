//! The application layer: the state every use case reads ([`App`]), the use cases themselves,
//! the transport-neutral error ([`AppError`]), authentication of a bearer value, the
//! requests, responses and page cursors. Both transports are adapters around it: the REST API
//! ([`crate::http`]) and the NATS control service ([`crate::control`]) decode a request, call
//! exactly one use case and encode its value or its error, so scope, tenant, validation and
//! lifecycle rules live only here (and in the store and the pure core below it), and the two
//! transports cannot drift apart. Nothing here knows about HTTP or NATS.
//!
//! The use cases, one file per resource, each use case one method of [`App`]:
//! - [`integrations`]: list, get, create, update, delete.
//! - [`transitions`]: submit, pause, resume, activate.
//! - [`connection_test`]: test, the manual connection test.
//! - [`health`]: health and history of one integration.
//! - [`audit`]: the tenant's audit trail.
//! - [`readiness`]: whether the daemon can serve (`/readyz`).
//! - [`status_page`]: the status page's configuration and the page's data.
//!
//! What they share:
//! - [`use_case`]: the list of use cases and the scope each needs.
//! - [`authentication`]: a bearer value (the `Authorization` header) to a [`Principal`]
//!   holding a use case's scope.
//! - [`decode`]: the rules both transports decode by (ids, JSON errors).
//! - [`cursor`]: opaque pagination cursors and the page body.
//! - [`error`]: what went wrong, with its stable `code`.

use std::sync::Arc;

use catalogd_actors::{Clock, Thresholds};

use crate::auth::{Authenticator, Principal};
use crate::connectors::Connectors;
use crate::integration::Author;
use crate::monitoring::{EngineControl, MonitorDefaults};
use crate::nats::NatsReadiness;
use crate::providers::ProviderRegistry;
use crate::store::history::HistoryStore;
use crate::store::status_pages::StatusPages;
use crate::store::Store;
use crate::validation::SpecRules;

pub mod audit;
pub mod authentication;
pub mod connection_test;
pub mod cursor;
pub mod decode;
pub mod error;
pub mod health;
pub mod integrations;
pub mod maintenance;
pub mod readiness;
pub mod status_page;
pub mod transfer;
pub mod transitions;
pub mod use_case;

pub use error::AppError;
pub use use_case::UseCase;

/// What every use case can reach: the store, the engine, the authenticator and the
/// daemon-wide settings. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn Clock>,
    pub providers: Arc<ProviderRegistry>,
    /// `monitor.*` thresholds, for integrations that do not set their own.
    pub default_thresholds: Thresholds,
    /// `monitor.interval` in seconds; a `healthCheck.timeoutSeconds` without an interval must
    /// not exceed it.
    pub default_interval_seconds: u32,
    /// `http.body_limit_bytes`, for REST bodies and NATS payloads alike.
    pub body_limit_bytes: usize,
    /// `http.request_timeout`, for REST requests and NATS requests alike.
    pub request_timeout: std::time::Duration,
    /// Told about every committed change, so the owning monitor actor follows it.
    pub engine: Arc<dyn EngineControl>,
    /// Health history, for health and history.
    pub history: HistoryStore,
    /// Runs manual connection tests.
    pub connectors: Arc<Connectors>,
    /// `monitor.*` defaults: the timeout of a manual test without its own.
    pub monitor: MonitorDefaults,
    /// The NATS connection's state, for readiness.
    pub nats: NatsReadiness,
    /// The status pages' configuration and reads.
    pub status_pages: StatusPages,
    /// The maintenance windows the status page shows (none until they exist).
    pub maintenance: Arc<dyn status_page::MaintenanceCalendar>,
}

impl App {
    /// The daemon-wide settings that spec validation depends on.
    pub fn spec_rules(&self) -> SpecRules<'_> {
        SpecRules {
            providers: &self.providers,
            default_interval_seconds: self.default_interval_seconds,
            default_thresholds: self.default_thresholds,
        }
    }
}

/// Use cases run only for a principal holding their scope, whichever transport calls them
/// (the transports authenticate with the same scope first, so this is the rule's backstop).
fn require(principal: &Principal, use_case: UseCase) -> Result<(), AppError> {
    if principal.has(use_case.scope()) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// Who made a change, for the audit trail.
pub fn author(principal: &Principal) -> Author {
    Author {
        tenant_id: principal.tenant_id.clone(),
        subject: principal.subject.clone(),
    }
}
