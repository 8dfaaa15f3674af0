//! End-to-end tests of the monitor engine inside the real daemon: real HTTP targets on
//! loopback that the tests flip between healthy, failing and hanging, on SQLite and on
//! PostgreSQL; flap detection, dependency suppression and the network guard (DESIGN §10) among them.

mod canary;
mod dependencies;
mod flapping;
pub(crate) mod lifecycle;
mod maintenance;
mod network_guard;
mod supervision;

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_with_config, test_config, Backend, TestApp};
use catalogd::config::Config;

/// A daemon whose monitors publish to `nats_url`, with short sweep, reconcile and flush
/// intervals so transitions reach the store, the audit log and NATS within a test's
/// deadlines; `configure` sets what the test itself is about.
pub(crate) async fn events_app(
    backend: Backend,
    nats_url: &str,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(backend, dir.path()).await;
    config.egress.allow_private = true;
    config.nats.url = nats_url.to_owned();
    config.events.sweep_interval = Duration::from_millis(50);
    config.monitor.reconcile_interval = Duration::from_secs(2);
    config.history.flush_interval = Duration::from_millis(100);
    configure(&mut config);
    spawn_with_config(config, dir).await
}

/// The integration `id` as the API shows it.
pub(crate) async fn resource(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(token, &format!("/api/v1/integrations/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// The audit entries of integration `id`, oldest first, as the API lists them.
pub(crate) async fn audit_of(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let audit: Value = app
        .get(
            token,
            &format!("/api/v1/audit?integrationId={id}&limit=500"),
        )
        .await
        .json()
        .await
        .unwrap();
    audit["items"].as_array().unwrap().clone()
}

/// The actions of the monitor's audit entries of integration `id`, oldest first.
pub(crate) async fn monitor_actions(app: &TestApp, token: &str, id: &str) -> Vec<String> {
    audit_of(app, token, id)
        .await
        .iter()
        .filter(|entry| entry["actor"] == "catalogd")
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect()
}
