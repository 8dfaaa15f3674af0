//! Maintenance windows in the engine (DESIGN §10), through the real daemon path: a window
//! created over REST while an integration is failing its checks against a real HTTP target.
//! In the window the checks go on, stored marked, and count towards nothing (no transition,
//! no `unhealthy`); `maintenance_started`/`maintenance_ended` reach a NATS subscriber; the
//! resource shows the window; after it, with the target still down, counting starts fresh;
//! uptime leaves the window's checks out, where an integration outside it counts them all.

use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use serde_json::{json, Value};

use super::lifecycle::post;
use super::{events_app, monitor_actions, resource};
use crate::helpers::{Backend, TestApp};
use catalogd_testkit::{eventually, Mode, NatsServer, Target};

/// Every raw check result of `id`, oldest first.
async fn results(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let page: Value = app
        .get(
            token,
            &format!("/api/v1/integrations/{id}/history?resolution=raw&limit=1000"),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut items = page["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// `successes / (successes + failures)` of the results that count (not in maintenance).
fn expected_uptime(results: &[Value]) -> f64 {
    let counted: Vec<&Value> = results
        .iter()
        .filter(|r| r["maintenance"] == false)
        .collect();
    let successes = counted.iter().filter(|r| r["success"] == true).count();
    successes as f64 / counted.len() as f64
}

async fn a_window_holds_the_status_counts_nothing_and_counting_starts_fresh_after_it(
    backend: Backend,
) {
    let nats = NatsServer::start();
    let app = events_app(backend, &nats.url(), |_| {}).await;
    let subscriber = async_nats::connect(nats.url()).await.unwrap();
    let mut subscription = subscriber
        .subscribe("integrations.events.acme.>")
        .await
        .unwrap();
    subscriber.flush().await.unwrap();
    let admin = app.admin("acme");
    let target = Target::start().await;
    let create = |name: &str, tags: Value| {
        json!({
            "name": name, "type": "host", "provider": "http", "baseUrl": target.url,
            "tags": tags,
            "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1, "degradedAfter": 5,
                "failedAfter": 100, "recoverAfter": 1},
        })
    };
    let inside = app
        .create_ok(&admin, &create("db-primary", json!(["db"])))
        .await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let outside = app.create_ok(&admin, &create("web", json!([]))).await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [&inside, &outside] {
        post(&app, &admin, id, "submit", None).await;
    }
    eventually("both active", Duration::from_secs(20), || async {
        resource(&app, &admin, &inside).await["status"] == "active"
            && resource(&app, &admin, &outside).await["status"] == "active"
    })
    .await;
    assert_eq!(
        resource(&app, &admin, &inside).await["maintenance"],
        Value::Null
    );

    // The target goes down; once the integration has counted a failure (of the five that
    // degrade it), a window opens for the integrations tagged `db`.
    target.set(Mode::Failing);
    eventually("a failure counted", Duration::from_secs(20), || async {
        resource(&app, &admin, &inside).await["consecutiveFailures"] != 0
    })
    .await;
    let opens = Utc::now();
    let closes = opens + chrono::Duration::seconds(6);
    let window: Value = app
        .request(
            reqwest::Method::POST,
            "/api/v1/maintenance-windows",
            Some(&admin),
        )
        .json(&json!({
            "name": "db-patching",
            "startsAt": opens.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "endsAt": closes.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "selector": {"tags": ["db"]},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let window_id = window["windowId"].as_str().unwrap().to_owned();
    eventually("in maintenance", Duration::from_secs(5), || async {
        resource(&app, &admin, &inside).await["maintenance"] != Value::Null
    })
    .await;
    let during = resource(&app, &admin, &inside).await;
    assert_eq!(
        during["maintenance"]["windowId"],
        window_id.as_str(),
        "{during}"
    );
    assert_eq!(
        time(&during["maintenance"]["endsAt"]),
        closes.trunc_subsecs(3)
    );
    assert_eq!(during["status"], "active", "{during}");
    assert_eq!(
        resource(&app, &admin, &outside).await["maintenance"],
        Value::Null
    );
    // The list shows it too (its JSON is built in the database).
    let list: Value = app
        .get(&admin, "/api/v1/integrations?limit=10")
        .await
        .json()
        .await
        .unwrap();
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["integrationId"] == inside.as_str())
        .unwrap();
    assert_eq!(listed["maintenance"], during["maintenance"]);

    // The window closes with the target still down: out of maintenance, then degraded
    // after five new failures.
    eventually("out of maintenance", Duration::from_secs(20), || async {
        resource(&app, &admin, &inside).await["maintenance"] == Value::Null
    })
    .await;
    eventually(
        "degraded after the window",
        Duration::from_secs(30),
        || async { resource(&app, &admin, &inside).await["status"] == "degraded" },
    )
    .await;
    post(
        &app,
        &admin,
        &inside,
        "pause",
        Some(json!({"reason": "test over"})),
    )
    .await;
    post(
        &app,
        &admin,
        &outside,
        "pause",
        Some(json!({"reason": "test over"})),
    )
    .await;

    // What a subscriber saw of the integration in the window, in order.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|e| e["type"] == "integration.unhealthy") {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("no unhealthy event; saw {seen:?}"))
            .unwrap();
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        if event["subject"] == inside.as_str() {
            seen.push(event);
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "integration.created",
            "integration.updated",
            "integration.healthy",
            "integration.maintenance_started",
            "integration.maintenance_ended",
            "integration.unhealthy",
        ]
    );
    assert_eq!(
        seen[3]["data"]["maintenance"]["windowId"],
        window_id.as_str()
    );
    assert_eq!(seen[3]["data"]["status"], "active");
    assert_eq!(seen[4]["data"]["status"], "active");
    let unhealthy_at = time(&seen[5]["time"]);

    // The stored checks: those in the window are marked; after the last of them exactly
    // five failures came before the transition (counting started fresh).
    // The check that caused the transition is written with the history's next flush.
    let caused = |results: &[Value]| {
        results.iter().any(|r| {
            let at = time(&r["checkedAt"]);
            at < unhealthy_at && unhealthy_at - at < chrono::Duration::seconds(1)
        })
    };
    eventually(
        "the transition's check stored",
        Duration::from_secs(20),
        || async { caused(&results(&app, &admin, &inside).await) },
    )
    .await;
    let inside_results = results(&app, &admin, &inside).await;
    let marked: Vec<&Value> = inside_results
        .iter()
        .filter(|r| r["maintenance"] == true)
        .collect();
    assert!(marked.len() >= 3, "{} checks marked", marked.len());
    assert!(marked.iter().all(|r| r["success"] == false));
    let last_marked = inside_results
        .iter()
        .rposition(|r| r["maintenance"] == true)
        .unwrap();
    let fresh = inside_results[last_marked + 1..]
        .iter()
        .filter(|r| time(&r["checkedAt"]) < unhealthy_at)
        .count();
    assert_eq!(
        fresh, 5,
        "failures counted after the window before degraded"
    );

    // Uptime leaves the window's checks out; outside the window every check counts.
    for (id, marked_expected) in [(&inside, true), (&outside, false)] {
        let results = results(&app, &admin, id).await;
        assert_eq!(
            results.iter().any(|r| r["maintenance"] == true),
            marked_expected
        );
        let expected = expected_uptime(&results);
        eventually(
            "uptime from the stored checks",
            Duration::from_secs(10),
            || async {
                let health: Value = app
                    .get(&admin, &format!("/api/v1/integrations/{id}/health"))
                    .await
                    .json()
                    .await
                    .unwrap();
                let uptime = health["uptime"]["1h"].as_f64().unwrap();
                (uptime - expected).abs() < 1e-9
            },
        )
        .await;
    }

    // The audit trail names both changes, by the monitor.
    let actions = monitor_actions(&app, &admin, &inside).await;
    assert_eq!(
        actions,
        [
            "integration.health",
            "integration.maintenance_started",
            "integration.maintenance_ended",
            "integration.health",
        ],
        "{actions:?}"
    );
}

catalogd_testkit::both_backends!(
    a_window_holds_the_status_counts_nothing_and_counting_starts_fresh_after_it
);
