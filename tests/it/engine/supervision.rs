//! Supervision in the real daemon: a connector that panics on every call fails its checks
//! with class `internal` (its actor keeps going) while a thousand other integrations keep
//! their schedule; and SIGKILL during a
//! storm of transitions leaves the store, the audit chain, the outbox and the actor set in
//! agreement.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use serde_json::Value;
use sqlx::Connection;

use super::lifecycle::post;
use crate::helpers::{spawn_with_config, test_config, Backend, TestApp};
use crate::storm::{admin_token, create_flapping, pause_and_resume, scripted, Storm};
use catalogd_testkit::eventually;

/// Creates and submits integrations, 16 requests at a time; returns their ids.
async fn submit_all(app: &TestApp, token: &str, bodies: Vec<Value>) -> Vec<String> {
    futures::stream::iter(bodies)
        .map(|body| async move {
            let id = app.create_ok(token, &body).await["integrationId"]
                .as_str()
                .unwrap()
                .to_owned();
            post(app, token, &id, "submit", None).await;
            id
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// The interval of the thousand well-behaved integrations.
const STEADY_INTERVAL: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_connector_is_a_failed_check_and_nobody_else_notices() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(Backend::Sqlite, dir.path()).await;
    config.history.flush_interval = Duration::from_millis(200);
    let app = spawn_with_config(config, dir).await;
    let admin = app.admin("acme");
    let bodies: Vec<Value> = (0..1000)
        .map(|i| scripted(&format!("steady-{i:04}"), &["success"], STEADY_INTERVAL))
        .collect();
    submit_all(&app, &admin, bodies).await;
    // Activated, so that every failure counts (a pending integration stays pending).
    // A timeout as long as the interval: a panic (with its backtrace printed, under the
    // load of a thousand neighbours) must not take long enough to count as a timeout.
    let mut body = scripted("panicky", &["panic"], 2);
    body["healthCheck"]["timeoutSeconds"] = 2.into();
    let panicky = app.create_ok(&admin, &body).await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let comment = serde_json::json!({"comment": "supervision test"});
    post(&app, &admin, &panicky, "activate", Some(comment)).await;

    let start = chrono::Utc::now();
    let clock = Instant::now();
    let path = format!("/api/v1/integrations/{panicky}");
    eventually(
        "the panicking connector's integration fails: degraded after 3 checks, failed after 5",
        Duration::from_secs(60),
        || async {
            let body: Value = app.get(&admin, &path).await.json().await.unwrap();
            body["status"] == "failed"
        },
    )
    .await;
    // A window long enough to count the steady integrations' checks in.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(clock.elapsed())).await;
    let window = clock.elapsed();
    assert_eq!(
        app.engine_stats.restarts(),
        0,
        "a connector's panic is a failed check, not a crash of its actor"
    );
    let events: Vec<(String, String)> = super::lifecycle::events(&app, &panicky)
        .await
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["data"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let unhealthy: Vec<&str> = events
        .iter()
        .filter(|(kind, _)| kind == "integration.unhealthy")
        .map(|(_, status)| status.as_str())
        .collect();
    assert_eq!(unhealthy, ["degraded", "failed"], "{events:?}");
    // The five checks that failed it, once the history writer has flushed them.
    let history_path = format!("{path}/history?resolution=raw&limit=1000");
    let history: Value = catalogd_testkit::poll(
        "five checks in the history",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let history: Value = app.get(&admin, &history_path).await.json().await.unwrap();
            Some(history).filter(|h| h["items"].as_array().is_some_and(|items| items.len() >= 5))
        },
    )
    .await
    .unwrap();
    let classes: Vec<&Value> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item["failureClass"])
        .collect();
    assert!(classes.len() >= 5, "{history}");
    assert!(
        classes.iter().all(|class| *class == "internal"),
        "{history}"
    );
    println!(
        "panicking connector: {} checks, all failed with class internal, 0 restarts",
        classes.len()
    );

    // Meanwhile every steady integration kept its schedule: enough checks, started on time.
    // Results are written in batches, so first wait until every integration's results reach
    // past the window, then count within it.
    let window_end = start + chrono::Duration::from_std(window).unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .unwrap();
    let (since, until) = (start.timestamp_micros(), window_end.timestamp_micros());
    let flushed = "SELECT count(*) FROM (SELECT max(r.checked_at) AS last FROM check_results r \
         JOIN integrations i ON i.integration_id = r.integration_id \
         WHERE i.name LIKE 'steady-%' GROUP BY r.integration_id) WHERE last >= $1";
    let conn = &mut conn;
    let mut caught_up = 0i64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while caught_up < 1000 {
        assert!(
            Instant::now() < deadline,
            "history never caught up: {caught_up} of 1000"
        );
        caught_up = sqlx::query_scalar(flushed)
            .bind(until)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT count(*), max(r.lateness_us) FROM check_results r \
         JOIN integrations i ON i.integration_id = r.integration_id \
         WHERE i.name LIKE 'steady-%' AND r.checked_at >= $1 AND r.checked_at < $2 \
         GROUP BY r.integration_id",
    )
    .bind(since)
    .bind(until)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        1000,
        "every steady integration was checked during the restarts"
    );
    // The schedule gives one check per whole interval of the window, less one for where the
    // window cuts its phase.
    let expected = (window.as_secs() / u64::from(STEADY_INTERVAL)) as i64 - 1;
    let starved: Vec<_> = rows.iter().filter(|(count, _)| *count < expected).collect();
    assert!(
        starved.is_empty(),
        "{} integrations missed checks (expected >= {expected}): {:?}",
        starved.len(),
        &starved[..starved.len().min(5)]
    );
    let mut lateness: Vec<i64> = rows.iter().map(|(_, late)| *late).collect();
    lateness.sort_unstable();
    let p99 = lateness[lateness.len() * 99 / 100];
    println!(
        "figure: steady-check max-lateness p99 across 1000 integrations during restarts = {} ms",
        p99 / 1000
    );
    assert!(
        p99 < 1_000_000,
        "checks kept their schedule (p99 of per-integration max lateness {p99} us)"
    );

    let (_, ready) = app.readiness().await;
    assert_eq!(
        ready["checks"]["engine"], "running",
        "the supervisor survives"
    );
    assert!(ready["checks"]["actors"].as_u64().unwrap() >= 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_transition_storm_leaves_everything_consistent() {
    let _heavy = crate::HEAVY.lock().await;
    let storm = Storm::new("");
    let token = admin_token("acme");
    let client = crate::helpers::http_client(Duration::from_secs(10));

    let mut daemon = storm.start();
    // Flapping integrations checked every second: two transitions every four checks.
    let ids = create_flapping(&client, &daemon.api, &token, 40).await;

    let mut rng = rand::rng();
    let mut kills = 0;
    for _ in 0..8 {
        let until = Instant::now() + Duration::from_millis(rng.random_range(1000..3000));
        pause_and_resume(&client, &daemon.api, &token, &ids, until).await;
        daemon.kill();
        kills += 1;
        daemon = storm.start();
    }
    assert_eq!(kills, 8);

    // Let the last incarnation settle, then stop it gracefully.
    let base = daemon.api.clone();
    let expected_actors = {
        let mut monitored = 0;
        for id in &ids {
            let got: Value = crate::helpers::json_of(
                client
                    .get(format!("{base}/api/v1/integrations/{id}"))
                    .bearer_auth(&token),
            )
            .await;
            if got["status"] != "draft" {
                monitored += 1;
            }
        }
        monitored
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready: Value = crate::helpers::json_of(client.get(format!("{base}/readyz"))).await;
        if ready["checks"]["actors"] == expected_actors {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "actor set never matched the store: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(daemon.terminate().unwrap().success());

    storm.assert_audit_verifies();
    // Store, audit trail and outbox agree for every integration.
    let agreement = crate::storm::assert_store_audit_outbox_agree(&storm.database_url()).await;
    assert_eq!(agreement.integrations, ids.len());
    let (transitions, by_type) = (agreement.transitions, agreement.by_type);
    println!(
        "storm: {kills} SIGKILLs, {transitions} monitor transitions, events by type {by_type:?}"
    );
    assert!(
        transitions >= 40,
        "the storm produced transitions ({transitions})"
    );
}
