//! Flap detection (DESIGN §10) through the real daemon path: a real HTTP target toggled up
//! and down until the integration flaps, a NATS subscriber that sees `flapping`, then no
//! `healthy`/`unhealthy` while the toggling goes on (the transitions are still committed
//! and audited), then `stable` carrying the final status once the window has passed.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use super::lifecycle::post;
use super::{events_app, monitor_actions, resource};
use crate::helpers::{Backend, TestApp};
use catalogd_testkit::{eventually, Mode, NatsServer, Target};

async fn flapping_app(backend: Backend, nats_url: &str) -> TestApp {
    events_app(backend, nats_url, |config| {
        config.monitor.flap_threshold = 4;
        config.monitor.flap_window = Duration::from_secs(20);
    })
    .await
}

/// Flips the target and waits for the integration to reach `status`.
async fn toggle(app: &TestApp, token: &str, id: &str, target: &Target, mode: Mode, status: &str) {
    target.set(mode);
    eventually(status, Duration::from_secs(20), || async {
        resource(app, token, id).await["status"] == status
    })
    .await;
}

async fn flapping_holds_back_healthy_and_unhealthy_then_stable_carries_the_status(
    backend: Backend,
) {
    let nats = NatsServer::start();
    let app = flapping_app(backend, &nats.url()).await;
    let subscriber = async_nats::connect(nats.url()).await.unwrap();
    let mut subscription = subscriber
        .subscribe("integrations.events.acme.>")
        .await
        .unwrap();
    subscriber.flush().await.unwrap();
    let admin = app.admin("acme");
    let target = Target::start().await;
    // Every check result that changes the status is a transition at once.
    let body = json!({
        "name": "flappy", "type": "host", "provider": "http", "baseUrl": target.url,
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1, "degradedAfter": 1,
            "failedAfter": 100, "recoverAfter": 1},
    });
    let id = app.create_ok(&admin, &body).await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(resource(&app, &admin, &id).await["flapping"], false);

    // Transitions 1-4 within the 20 s window: the fourth starts flapping.
    post(&app, &admin, &id, "submit", None).await;
    eventually("active", Duration::from_secs(20), || async {
        resource(&app, &admin, &id).await["status"] == "active"
    })
    .await;
    toggle(&app, &admin, &id, &target, Mode::Failing, "degraded").await;
    toggle(&app, &admin, &id, &target, Mode::Healthy, "active").await;
    toggle(&app, &admin, &id, &target, Mode::Failing, "degraded").await;
    let flapping = resource(&app, &admin, &id).await;
    assert_eq!(flapping["flapping"], true, "{flapping}");
    // While flapping the status goes on changing.
    toggle(&app, &admin, &id, &target, Mode::Healthy, "active").await;
    toggle(&app, &admin, &id, &target, Mode::Failing, "degraded").await;
    // The target stays down: once at most 2 transitions are left in the window, stable.
    eventually("stable", Duration::from_secs(60), || async {
        resource(&app, &admin, &id).await["flapping"] == false
    })
    .await;
    let settled = resource(&app, &admin, &id).await;
    assert_eq!(settled["status"], "degraded", "{settled}");

    // What a subscriber saw, in order: the four transitions up to flapping (the fourth as
    // `flapping`), nothing for the two held back, and `stable` with the final status.
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.last().map(|(kind, _)| kind.as_str()) != Some("stable") {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("no stable event; saw {seen:?}"))
            .unwrap();
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(event["subject"], id.as_str());
        seen.push((
            event["type"]
                .as_str()
                .unwrap()
                .trim_start_matches("integration.")
                .to_owned(),
            event["data"]["status"].as_str().unwrap().to_owned(),
        ));
    }
    let expected: Vec<(String, String)> = [
        ("created", "draft"),
        ("updated", "pending_verification"),
        ("healthy", "active"),
        ("unhealthy", "degraded"),
        ("healthy", "active"),
        ("flapping", "degraded"),
        ("stable", "degraded"),
    ]
    .iter()
    .map(|(kind, status)| ((*kind).to_owned(), (*status).to_owned()))
    .collect();
    assert_eq!(seen, expected);

    // The held-back transitions were committed and audited all the same.
    let actions = monitor_actions(&app, &admin, &id).await;
    assert_eq!(
        actions,
        [
            "integration.health",
            "integration.health",
            "integration.health",
            "integration.flapping",
            "integration.health",
            "integration.health",
            "integration.stable",
        ],
        "{actions:?}"
    );
}

catalogd_testkit::both_backends!(
    flapping_holds_back_healthy_and_unhealthy_then_stable_carries_the_status
);
