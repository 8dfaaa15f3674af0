//! The lifecycle driven by real checks: submit → active, 3 failures → degraded, 5 → failed,
//! recovery → active, hanging → timeouts, pause → no requests, resume → a check at once.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::audit_of;
use crate::helpers::{outbox_rows, spawn_with_config, test_config, Backend, TestApp};
use catalogd_testkit::{eventually, Mode, Target};

/// An app that may reach loopback targets.
pub async fn spawn_monitoring_app(backend: Backend) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(backend, dir.path()).await;
    config.egress.allow_private = true;
    config.monitor.reconcile_interval = Duration::from_secs(2);
    config.history.flush_interval = Duration::from_millis(100);
    // These tests count every healthy/unhealthy event of a few minutes' transitions; flap
    // detection (which would hold the sixth back) has its own test, `engine::flapping`.
    config.monitor.flap_threshold = 0;
    spawn_with_config(config, dir).await
}

pub fn http_integration(name: &str, url: &str, interval: u32, timeout: u32) -> Value {
    json!({
        "name": name,
        "type": "host",
        "provider": "http",
        "baseUrl": url,
        "healthCheck": {"intervalSeconds": interval, "timeoutSeconds": timeout},
    })
}

pub async fn post(app: &TestApp, token: &str, id: &str, op: &str, body: Option<Value>) -> Value {
    let request = app.request(
        Method::POST,
        &format!("/api/v1/integrations/{id}/{op}"),
        Some(token),
    );
    let request = match body {
        Some(b) => request.json(&b),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{op}: {body}");
    body
}

async fn status(app: &TestApp, token: &str, id: &str) -> String {
    let body: Value = app
        .get(token, &format!("/api/v1/integrations/{id}"))
        .await
        .json()
        .await
        .unwrap();
    body["status"].as_str().unwrap().to_owned()
}

/// The CloudEvents in the outbox for one integration, in sequence order.
pub async fn events(app: &TestApp, id: &str) -> Vec<Value> {
    let rows = outbox_rows(app, id.parse().unwrap()).await;
    rows.into_iter().map(|(_, _, _, event)| event).collect()
}

/// `(type suffix, previousStatus, status, consecutiveFailures, failureClass)` of the events
/// after the first `skip`.
fn summary(events: &[Value], skip: usize) -> Vec<(String, String, String, u64, Option<String>)> {
    events
        .iter()
        .skip(skip)
        .map(|e| {
            let d = &e["data"];
            (
                e["type"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("integration.")
                    .to_owned(),
                d["previousStatus"].as_str().unwrap_or("").to_owned(),
                d["status"].as_str().unwrap().to_owned(),
                d["consecutiveFailures"].as_u64().unwrap(),
                d["failureClass"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn row(
    kind: &str,
    from: &str,
    to: &str,
    failures: u64,
    class: Option<&str>,
) -> (String, String, String, u64, Option<String>) {
    (
        kind.into(),
        from.into(),
        to.into(),
        failures,
        class.map(str::to_owned),
    )
}

async fn checks_drive_the_lifecycle(backend: Backend) {
    let app = spawn_monitoring_app(backend).await;
    let admin = app.admin("acme");
    let target = Target::start().await;
    let created = app
        .create_ok(&admin, &http_integration("flippy", &target.url, 1, 1))
        .await;
    let id = created["integrationId"].as_str().unwrap().to_owned();

    // submit → pending_verification → (verification check) → active
    post(&app, &admin, &id, "submit", None).await;
    eventually("active after submit", Duration::from_secs(15), || async {
        status(&app, &admin, &id).await == "active"
    })
    .await;

    // 500s: degraded after exactly 3 consecutive failures, failed after exactly 5.
    target.set(Mode::Failing);
    eventually("failed after 500s", Duration::from_secs(30), || async {
        status(&app, &admin, &id).await == "failed"
    })
    .await;
    // Recovery: one success (recover_after = 1) → active.
    target.set(Mode::Healthy);
    eventually("active after recovery", Duration::from_secs(30), || async {
        status(&app, &admin, &id).await == "active"
    })
    .await;
    // Hanging: each check times out after 1 s → degraded after 3 timeouts.
    target.set(Mode::Hanging);
    eventually(
        "degraded after timeouts",
        Duration::from_secs(30),
        || async { status(&app, &admin, &id).await == "degraded" },
    )
    .await;
    target.set(Mode::Healthy);
    eventually("active again", Duration::from_secs(30), || async {
        status(&app, &admin, &id).await == "active"
    })
    .await;

    let events = events(&app, &id).await;
    assert_eq!(
        summary(&events, 2),
        [
            row("healthy", "pending_verification", "active", 0, None),
            row("unhealthy", "active", "degraded", 3, Some("http_status")),
            row("unhealthy", "degraded", "failed", 5, Some("http_status")),
            row("healthy", "failed", "active", 0, None),
            row("unhealthy", "active", "degraded", 3, Some("timeout")),
            row("healthy", "degraded", "active", 0, None),
        ],
        "created and submit come first, then exactly these transitions, none early or late"
    );
    for event in &events[2..] {
        assert_eq!(event["data"]["actor"], "catalogd");
        assert!(event["data"]["latencyMs"].is_u64());
    }
    // Every transition is audited by the monitor.
    let audit = audit_of(&app, &admin, &id).await;
    let health: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "integration.health")
        .collect();
    assert_eq!(health.len(), 6);
    assert!(health.iter().all(|e| e["actor"] == "catalogd"));

    // The health endpoint reflects the checks.
    let health: Value = app
        .get(&admin, &format!("/api/v1/integrations/{id}/health"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "active");
    let up = health["uptime"]["1h"].as_f64().unwrap();
    assert!(up > 0.0 && up < 1.0, "{health}");
}

async fn pause_sends_nothing_and_resume_checks_at_once(backend: Backend) {
    let app = spawn_monitoring_app(backend).await;
    let admin = app.admin("acme");
    let watched = Target::start().await;
    let control = Target::start().await;
    // A 30 s interval: checks within seconds of submit and resume can only be "at once".
    let id = app
        .create_ok(
            &admin,
            &http_integration("slow-interval", &watched.url, 30, 5),
        )
        .await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let control_id = app
        .create_ok(&admin, &http_integration("control", &control.url, 1, 1))
        .await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    post(&app, &admin, &control_id, "submit", None).await;
    post(&app, &admin, &id, "submit", None).await;
    eventually(
        "the submit check ran at once",
        Duration::from_secs(10),
        || async { watched.requests() >= 1 },
    )
    .await;
    eventually("active", Duration::from_secs(10), || async {
        status(&app, &admin, &id).await == "active"
    })
    .await;

    post(
        &app,
        &admin,
        &id,
        "pause",
        Some(json!({"reason": "maintenance"})),
    )
    .await;
    // Let the pause reach the actor: one more control check, then start counting.
    let c = control.requests();
    eventually(
        "control keeps checking",
        Duration::from_secs(10),
        || async { control.requests() > c },
    )
    .await;
    let paused_count = watched.requests();
    let c = control.requests();
    eventually(
        "three more control checks",
        Duration::from_secs(15),
        || async { control.requests() >= c + 3 },
    )
    .await;
    assert_eq!(
        watched.requests(),
        paused_count,
        "a paused integration sends no request"
    );

    let before_resume = watched.requests();
    let resumed_at = Instant::now();
    post(&app, &admin, &id, "resume", None).await;
    eventually(
        "a check at once after resume",
        Duration::from_secs(10),
        || async { watched.requests() > before_resume },
    )
    .await;
    assert!(
        resumed_at.elapsed() < Duration::from_secs(10),
        "well before the 30 s interval"
    );
    assert_eq!(status(&app, &admin, &id).await, "active");
}

async fn manual_test_reports_stages_and_verifies(backend: Backend) {
    let app = spawn_monitoring_app(backend).await;
    let admin = app.admin("acme");
    let target = Target::start().await;
    // Interval 60 s: only the manual test can verify it within the deadline.
    let id = app
        .create_ok(&admin, &http_integration("tested", &target.url, 60, 5))
        .await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    target.set(Mode::Failing);
    let report = post(&app, &admin, &id, "test", None).await;
    assert_eq!(report["success"], false);
    assert_eq!(report["failureClass"], "http_status");
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(stages.starts_with(&["dns", "tcp"]), "{report}");
    // A draft's test changes nothing but the last-test fields.
    let draft: Value = app
        .get(&admin, &format!("/api/v1/integrations/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (draft["status"].as_str(), draft["lastTestSuccess"].as_bool()),
        (Some("draft"), Some(false))
    );

    target.set(Mode::Hanging);
    post(&app, &admin, &id, "submit", None).await; // the verification check hangs (5 s timeout)
    target.set(Mode::Healthy);
    let report = post(&app, &admin, &id, "test", None).await;
    assert_eq!(report["success"], true, "{report}");
    assert!(report["latencyMs"].is_u64());
    eventually(
        "a successful test verifies a pending integration",
        Duration::from_secs(10),
        || async { status(&app, &admin, &id).await == "active" },
    )
    .await;
    let audit: Value = app
        .get(&admin, &format!("/api/v1/audit?integrationId={id}"))
        .await
        .json()
        .await
        .unwrap();
    let tests = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "integration.test")
        .count();
    assert_eq!(tests, 2);
}

/// `GET /{id}/health` shows the last check as soon as it ends, from memory, not once the
/// history writer has flushed it: here the writer never flushes during the test.
async fn health_shows_the_last_check_before_it_is_flushed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(backend, dir.path()).await;
    config.egress.allow_private = true;
    config.history.flush_interval = Duration::from_secs(3600);
    config.history.batch_size = 100_000;
    let app = spawn_with_config(config, dir).await;
    let admin = app.admin("acme");
    let target = Target::start().await;
    target.set(Mode::Hanging);
    let created = app
        .create_ok(&admin, &http_integration("slow", &target.url, 2, 1))
        .await;
    let id = created["integrationId"].as_str().unwrap().to_owned();
    post(&app, &admin, &id, "submit", None).await;
    let path = format!("/api/v1/integrations/{id}/health");
    let health = || async {
        let response = app.get(&admin, &path).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    eventually(
        "health shows the hanging target's timeout",
        Duration::from_secs(15),
        || async {
            let body = health().await;
            let last = &body["lastCheck"];
            last["failureClass"] == "timeout"
                && last["outcome"] == "failure"
                && last["success"] == false
                && last["latencyMs"].as_f64().is_some_and(|ms| ms >= 900.0)
                && body["consecutiveFailures"].as_u64() >= Some(1)
        },
    )
    .await;
    // The first check verifies it once the target answers: the success shows at once too.
    target.set(Mode::Healthy);
    eventually(
        "health shows the success that followed",
        Duration::from_secs(15),
        || async {
            let body = health().await;
            body["lastCheck"]["outcome"] == "success"
                && body["lastCheck"]["failureClass"].is_null()
                && body["status"] == "active"
        },
    )
    .await;
}

catalogd_testkit::both_backends!(
    health_shows_the_last_check_before_it_is_flushed,
    checks_drive_the_lifecycle,
    pause_sends_nothing_and_resume_checks_at_once,
    manual_test_reports_stages_and_verifies,
);
