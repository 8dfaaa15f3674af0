//! The REST API: one module per resource, each owning its router, merged here.

use std::sync::Arc;

use axum::Router;
use catalogd_actors::{Clock, Thresholds};

use crate::auth::Authenticator;
use crate::providers::ProviderRegistry;
use crate::store::Store;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Arc<Authenticator>,
    pub clock: Arc<dyn Clock>,
    pub providers: Arc<ProviderRegistry>,
    /// `monitor.*` thresholds, for integrations that do not set their own.
    pub default_thresholds: Thresholds,
    /// `monitor.interval` in seconds; a `healthCheck.timeoutSeconds` without an interval must
    /// not exceed it.
    pub default_interval_seconds: u32,
    pub body_limit_bytes: usize,
    pub request_timeout: std::time::Duration,
}

/// The whole REST API.
pub fn router(_state: AppState) -> Router {
    todo!("http router")
}
