//! Lifecycle events on a real `nats-server -js` started by the tests: every transition is
//! published exactly once (a core subscriber and the JetStream stream agree with the outbox),
//! events wait out a NATS outage and drain in per-integration order, SIGKILL storms with NATS
//! restarts lose and duplicate nothing, every event type validates against the JSON Schema,
//! and an ignored latency benchmark.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_with_config, test_config, Backend, TestApp};
use crate::storm::{
    admin_token, assert_gap_free, assert_matches_outbox, create_flapping, outbox, pause_and_resume,
    scripted, stream_messages, unpublished, Storm,
};
use catalogd_testkit::{eventually, NatsServer};

/// Every event kind the REST API, manual tests and plain transitions emit. Flap detection's
/// `flapping` and `stable` have their own test (`engine::flapping`).
const ALL_TYPES: [&str; 9] = {
    let kinds = catalogd::watch::KINDS;
    [
        kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5], kinds[6], kinds[7], kinds[8],
    ]
};

// --- Helpers ---------------------------------------------------------------------------------

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let request = app.request(method.clone(), path, Some(token));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn nats_app(backend: Backend, nats_url: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(backend, dir.path()).await;
    config.nats.url = nats_url.to_owned();
    config.events.sweep_interval = Duration::from_millis(50);
    config.monitor.reconcile_interval = Duration::from_secs(2);
    config.history.flush_interval = Duration::from_millis(100);
    spawn_with_config(config, dir).await
}

async fn status(app: &TestApp, token: &str, id: &str) -> String {
    let body = send(
        app,
        Method::GET,
        &format!("/api/v1/integrations/{id}"),
        token,
        None,
    )
    .await;
    body["status"].as_str().unwrap_or_default().to_owned()
}

async fn types_of(app: &TestApp, id: &str) -> Vec<String> {
    let id: Uuid = id.parse().unwrap();
    outbox(&app.database_url)
        .await
        .into_iter()
        .filter(|r| r.1 == id)
        .map(|r| r.3)
        .collect()
}

/// Drives every kind of event through REST and the monitor:
/// A: created, updated (submit), healthy, unhealthy, healthy, paused, resumed, updated (PUT),
/// deleted; B: created, tested, activated, deleted.
async fn drive_every_transition(app: &TestApp) -> Vec<String> {
    let admin = app.admin("acme");
    let body = scripted(
        "flapper",
        &[
            "success",
            "failure:http_status",
            "failure:http_status",
            "failure:http_status",
            "success",
        ],
        1,
    );
    let a = send(
        app,
        Method::POST,
        "/api/v1/integrations",
        &admin,
        Some(body.clone()),
    )
    .await;
    let a = a["integrationId"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/integrations/{a}");
    send(app, Method::POST, &format!("{base}/submit"), &admin, None).await;
    eventually(
        "active, degraded, active again",
        Duration::from_secs(30),
        || async {
            let types = types_of(app, &a).await;
            types.iter().filter(|t| *t == "integration.healthy").count() >= 2
                && types.iter().any(|t| t == "integration.unhealthy")
        },
    )
    .await;
    send(
        app,
        Method::POST,
        &format!("{base}/pause"),
        &admin,
        Some(json!({"reason": "maintenance", "ticket": "OPS-1"})),
    )
    .await;
    send(app, Method::POST, &format!("{base}/resume"), &admin, None).await;
    let current = send(app, Method::GET, &base, &admin, None).await;
    let mut update = body.clone();
    update["description"] = json!("changed");
    update["version"] = current["version"].clone();
    send(app, Method::PUT, &base, &admin, Some(update)).await;
    let response = app
        .request(Method::DELETE, &base, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let b = send(
        app,
        Method::POST,
        "/api/v1/integrations",
        &admin,
        Some(scripted("approved", &["success"], 60)),
    )
    .await;
    let b = b["integrationId"].as_str().unwrap().to_owned();
    // A manual test of the draft: `tested`, and the status stays.
    send(
        app,
        Method::POST,
        &format!("/api/v1/integrations/{b}/test"),
        &admin,
        None,
    )
    .await;
    send(
        app,
        Method::POST,
        &format!("/api/v1/integrations/{b}/activate"),
        &admin,
        Some(json!({"comment": "approved by change board"})),
    )
    .await;
    assert_eq!(status(app, &admin, &b).await, "active");
    let response = app
        .request(
            Method::DELETE,
            &format!("/api/v1/integrations/{b}"),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    vec![a, b]
}

// --- Every transition, exactly once ----------------------------------------------------------

async fn every_transition_is_published_exactly_once(backend: Backend) {
    let nats = NatsServer::start();
    let app = nats_app(backend, &nats.url()).await;
    let subscriber = async_nats::connect(nats.url()).await.unwrap();
    let mut subscription = subscriber.subscribe("integrations.events.>").await.unwrap();
    subscriber.flush().await.unwrap();

    let ids = drive_every_transition(&app).await;

    let rows = outbox(&app.database_url).await;
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < rows.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {} events arrived", received.len(), rows.len()))
            .unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        received.push((
            id,
            message.subject.to_string(),
            serde_json::from_slice::<Value>(&message.payload).unwrap(),
        ));
    }
    // Nothing more arrives: no duplicates trail behind.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), subscription.next())
            .await
            .is_err(),
        "an unexpected extra event"
    );
    eventually(
        "every row marked published",
        Duration::from_secs(10),
        || async { unpublished(&app.database_url).await == 0 },
    )
    .await;
    let rows = outbox(&app.database_url).await;
    assert_gap_free(&rows);
    assert_matches_outbox("core subscriber", &rows, &received);
    assert_matches_outbox(
        "JetStream stream",
        &rows,
        &stream_messages(&nats.url()).await,
    );

    // Every event type, on its subject, with the right data.
    let types: HashSet<&str> = rows
        .iter()
        .map(|r| r.3.trim_start_matches("integration."))
        .collect();
    assert_eq!(types, ALL_TYPES.into_iter().collect::<HashSet<_>>());
    for row in &rows {
        let kind = row.3.trim_start_matches("integration.");
        assert_eq!(row.4, format!("integrations.events.acme.{kind}"));
        let event: Value = serde_json::from_str(&row.5).unwrap();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "urn:catalogd");
        assert_eq!(event["tenantid"], "acme");
        assert_eq!(event["subject"], row.1.to_string());
        assert_eq!(event["sequence"], row.2);
        let data = &event["data"];
        assert_eq!(data["integrationId"], row.1.to_string());
        match kind {
            "created" => {
                assert_eq!(data["status"], "draft");
                assert_eq!(data["actor"], "acme-admin");
            }
            "unhealthy" => {
                assert_eq!(data["status"], "degraded");
                assert_eq!(data["previousStatus"], "active");
                assert_eq!(data["failureClass"], "http_status");
                assert_eq!(data["consecutiveFailures"], 3);
                assert_eq!(data["actor"], "catalogd");
            }
            "healthy" => {
                assert_eq!(data["status"], "active");
                assert_eq!(data["actor"], "catalogd");
            }
            "paused" => {
                assert_eq!(data["status"], "paused");
                assert_eq!(data["reason"], "maintenance");
            }
            "resumed" => assert_eq!(data["previousStatus"], "paused"),
            "activated" => {
                assert_eq!(data["status"], "active");
                assert_eq!(data["previousStatus"], "draft");
            }
            "tested" => {
                assert_eq!(data["status"], "draft");
                assert_eq!(data["previousStatus"], Value::Null);
                assert_eq!(data["success"], true);
                assert_eq!(data["actor"], "acme-admin");
            }
            _ => {}
        }
    }
    let per_integration: Vec<usize> = ids
        .iter()
        .map(|id| rows.iter().filter(|r| r.1.to_string() == *id).count())
        .collect();
    assert!(
        per_integration[0] >= 9 && per_integration[1] == 4,
        "{per_integration:?}"
    );

    let (_, ready) = app.readiness().await;
    assert_eq!(ready["checks"]["nats"], "ok", "{ready}");
}

catalogd_testkit::both_backends!(
    every_transition_is_published_exactly_once,
    every_manual_test_publishes_tested
);

// --- integration.tested ---------------------------------------------------------------------

/// Every manual connection test, over REST and over NATS control, publishes
/// `integration.tested` with its result and who asked (the seed's Notify-style consumers
/// expect it), through the outbox, even when the status does not change.
async fn every_manual_test_publishes_tested(backend: Backend) {
    let nats = NatsServer::start();
    let app = nats_app(backend, &nats.url()).await;
    let subscriber = async_nats::connect(nats.url()).await.unwrap();
    let mut tested = subscriber
        .subscribe("integrations.events.acme.tested")
        .await
        .unwrap();
    subscriber.flush().await.unwrap();
    let admin = app.admin("acme");
    // A draft (no monitor runs it) whose tests alternate: success, auth failure.
    let created = send(
        &app,
        Method::POST,
        "/api/v1/integrations",
        &admin,
        Some(scripted("tested-draft", &["success", "failure:auth"], 60)),
    )
    .await;
    let id = created["integrationId"].as_str().unwrap().to_owned();
    let test_path = format!("/api/v1/integrations/{id}/test");
    let mut reports = Vec::new();
    for _ in 0..2 {
        reports.push(send(&app, Method::POST, &test_path, &admin, None).await);
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {admin}").as_str());
    let reply = subscriber
        .request_with_headers(
            "integrations.control.test",
            headers,
            json!({"integrationId": id}).to_string().into(),
        )
        .await
        .unwrap();
    assert!(
        reply.headers.is_none()
            || reply
                .headers
                .as_ref()
                .unwrap()
                .get("Nats-Service-Error")
                .is_none()
    );
    reports.push(serde_json::from_slice(&reply.payload).unwrap());
    assert_eq!(
        reports
            .iter()
            .map(|r| r["success"].clone())
            .collect::<Vec<_>>(),
        [json!(true), json!(false), json!(true)]
    );

    for (n, report) in reports.iter().enumerate() {
        let message = tokio::time::timeout(Duration::from_secs(20), tested.next())
            .await
            .unwrap_or_else(|_| panic!("tested event {n} did not arrive"))
            .unwrap();
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        let message_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned());
        assert_eq!(message_id.as_deref(), event["id"].as_str(), "{event}");
        assert_eq!(event["type"], "integration.tested");
        assert_eq!(event["subject"], id.as_str());
        assert_eq!(event["tenantid"], "acme");
        let data = &event["data"];
        assert_eq!(data["success"], report["success"], "{event}");
        assert_eq!(data["failureClass"], report["failureClass"], "{event}");
        assert_eq!(data["latencyMs"], report["latencyMs"], "{event}");
        assert_eq!(data["actor"], "acme-admin");
        // The test changed no status: still a draft, and nothing "previous".
        assert_eq!(data["status"], "draft");
        assert_eq!(data["previousStatus"], Value::Null);
    }
    assert_eq!(reports[1]["failureClass"], "auth");
    assert_eq!(status(&app, &admin, &id).await, "draft");
    // In the outbox, in order, each marked published once NATS acknowledged it.
    assert_eq!(
        types_of(&app, &id).await,
        [
            "integration.created",
            "integration.tested",
            "integration.tested",
            "integration.tested"
        ]
    );
    eventually(
        "every row marked published",
        Duration::from_secs(10),
        || async { unpublished(&app.database_url).await == 0 },
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), tested.next())
            .await
            .is_err(),
        "no fourth tested event"
    );
}

// --- Schema -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_validates_against_the_schema_with_nats_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(Backend::Sqlite, dir.path()).await;
    config.nats.url = String::new();
    let app = spawn_with_config(config, dir).await;
    drive_every_transition(&app).await;

    let schema: Value =
        serde_json::from_str(include_str!("../../schemas/event-data.schema.json")).unwrap();
    let envelope = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let mut data_schema = schema["$defs"]["data"].clone();
    data_schema["$schema"] = schema["$schema"].clone();
    data_schema["$defs"] = schema["$defs"].clone();
    let data = jsonschema::draft202012::new(&data_schema).expect("the data schema compiles");

    let rows = outbox(&app.database_url).await;
    let mut types = HashSet::new();
    for row in &rows {
        let event: Value = serde_json::from_str(&row.5).unwrap();
        let errors: Vec<String> = envelope
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}\n{event:#}", row.3);
        let errors: Vec<String> = data
            .iter_errors(&event["data"])
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{} data: {errors:?}", row.3);
        types.insert(row.3.trim_start_matches("integration.").to_owned());
    }
    let all: HashSet<String> = ALL_TYPES.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(types, all, "every event type was produced and validated");
    // The schema is not vacuous.
    let mut broken: Value = serde_json::from_str(&rows[0].5).unwrap();
    broken["data"]["status"] = json!("sideways");
    assert!(!envelope.is_valid(&broken));
    assert!(!data.is_valid(&broken["data"]));

    // NATS disabled: nothing is published, the backlog waits, the daemon is ready.
    assert_eq!(unpublished(&app.database_url).await, rows.len());
    let (status, ready) = app.readiness().await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["nats"], "disabled", "{ready}");
}

// --- NATS down, then up -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_out_a_nats_outage_and_drain_in_order() {
    let mut nats = NatsServer::new();
    let app = nats_app(Backend::Sqlite, &nats.url()).await;
    let admin = app.admin("acme");
    let mut ids = Vec::new();
    for i in 0..10 {
        let body = scripted(
            &format!("flap-{i}"),
            &[
                "success",
                "failure:timeout",
                "failure:timeout",
                "failure:timeout",
            ],
            1,
        );
        let created = send(
            &app,
            Method::POST,
            "/api/v1/integrations",
            &admin,
            Some(body),
        )
        .await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        send(
            &app,
            Method::POST,
            &format!("/api/v1/integrations/{id}/submit"),
            &admin,
            None,
        )
        .await;
        ids.push(id);
    }
    // The daemon is degraded but ready, and monitors on.
    let (status, ready) = app.readiness().await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["nats"], "degraded", "{ready}");
    eventually(
        "transitions while NATS is down",
        Duration::from_secs(30),
        || async {
            outbox(&app.database_url)
                .await
                .iter()
                .filter(|r| r.3 == "integration.unhealthy")
                .count()
                >= 10
        },
    )
    .await;
    for id in &ids {
        let _ = app
            .request(
                Method::POST,
                &format!("/api/v1/integrations/{id}/pause"),
                Some(&admin),
            )
            .json(&json!({"reason": "outage test"}))
            .send()
            .await
            .unwrap();
    }
    let rows = outbox(&app.database_url).await;
    assert!(rows.len() >= 50, "{} events", rows.len());
    assert_eq!(
        unpublished(&app.database_url).await,
        rows.len(),
        "nothing published while down"
    );

    nats.start_again();
    eventually("the backlog drained", Duration::from_secs(30), || async {
        unpublished(&app.database_url).await == 0
    })
    .await;
    let rows = outbox(&app.database_url).await;
    assert_gap_free(&rows);
    assert_matches_outbox(
        "stream after the outage",
        &rows,
        &stream_messages(&nats.url()).await,
    );
    eventually(
        "readiness reports NATS ok",
        Duration::from_secs(10),
        || async {
            let (_, ready) = app.readiness().await;
            ready["checks"]["nats"] == "ok"
        },
    )
    .await;
}

// --- SIGKILL storm with NATS restarts -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_storm_with_nats_restarts_loses_and_duplicates_nothing() {
    // Child daemons killed in a loop: not alongside the engine's heavy tests.
    let _heavy = crate::HEAVY.lock().await;
    let mut nats = NatsServer::start();
    let storm = Storm::new(&format!(
        "[nats]\nurl = \"{}\"\n[events]\nsweep_interval = \"100ms\"\n",
        nats.url()
    ));
    let token = admin_token("acme");
    let client = crate::helpers::http_client(Duration::from_secs(10));
    let mut daemon = storm.start();
    let ids = create_flapping(&client, &daemon.api, &token, 30).await;

    let mut rng = rand::rng();
    let mut nats_restarts = 0;
    for kill in 0..20 {
        let until = Instant::now() + Duration::from_millis(rng.random_range(300..1500));
        pause_and_resume(&client, &daemon.api, &token, &ids, until).await;
        if kill == 6 || kill == 13 {
            // NATS goes away under a running daemon, and comes back.
            nats.stop();
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1000))).await;
            nats.start_again();
            nats_restarts += 1;
        }
        daemon.kill();
        daemon = storm.start();
    }

    // Stop the transitions, let the last incarnation drain the outbox, stop it gracefully.
    for id in &ids {
        let _ = client
            .post(format!("{}/api/v1/integrations/{id}/pause", daemon.api))
            .bearer_auth(&token)
            .json(&json!({"reason": "end of storm"}))
            .send()
            .await;
    }
    let url = storm.database_url();
    eventually("the outbox drained", Duration::from_secs(60), || async {
        unpublished(&url).await == 0
    })
    .await;
    assert!(daemon.terminate().unwrap().success());

    let rows = outbox(&url).await;
    assert_gap_free(&rows);
    let messages = stream_messages(&nats.url()).await;
    assert_matches_outbox("stream after the storm", &rows, &messages);
    let by_type = rows
        .iter()
        .fold(BTreeMap::<&str, usize>::new(), |mut m, r| {
            *m.entry(r.3.as_str()).or_default() += 1;
            m
        });
    println!(
        "storm: 20 SIGKILLs, {nats_restarts} NATS restarts, {} events ({} in the stream, 0 missing, \
         0 duplicates), by type {by_type:?}",
        rows.len(),
        messages.len()
    );
    assert!(
        rows.len() > 200,
        "the storm produced events ({})",
        rows.len()
    );
    assert_eq!(nats_restarts, 2);
}
