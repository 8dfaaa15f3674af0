//! Dependencies (DESIGN §10) through the real daemon: a chain A ← B ← C (B depends on A, C on
//! B) with A's target failing. Only A goes unhealthy; B and C stay active, their failures are
//! of class `dependency` and they show `suppressedBy: [A]`; when A recovers, the suppression
//! lifts and counting starts fresh (B needs `degradedAfter` new failures). Plus the 422s of
//! `dependsOn`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::lifecycle::{events, post, spawn_monitoring_app};
use super::resource;
use crate::helpers::{problem, Backend, TestApp};
use catalogd_testkit::{eventually, Mode, Target};

fn body(name: &str, url: &str, degraded_after: u32, depends_on: &[&str]) -> Value {
    json!({
        "name": name, "type": "host", "provider": "http", "baseUrl": url,
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1,
            "degradedAfter": degraded_after, "failedAfter": 100},
        "dependsOn": depends_on,
    })
}

/// The failure classes of the integration's stored check results, oldest first.
async fn failure_classes(app: &TestApp, token: &str, id: &str) -> Vec<Option<String>> {
    let history: Value = app
        .get(
            token,
            &format!("/api/v1/integrations/{id}/history?limit=500"),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut items: Vec<(String, Option<String>)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["checkedAt"].as_str().unwrap().to_owned(),
                item["failureClass"].as_str().map(str::to_owned),
            )
        })
        .collect();
    items.sort();
    items.into_iter().map(|(_, class)| class).collect()
}

async fn only_the_failing_root_of_a_chain_goes_unhealthy(backend: Backend) {
    let app = spawn_monitoring_app(backend).await;
    let admin = app.admin("acme");
    let (target_a, target_b, target_c) = (
        Target::start().await,
        Target::start().await,
        Target::start().await,
    );
    let create = |name: &'static str, url: String, degraded_after, depends_on: Vec<String>| {
        let app = &app;
        let admin = &admin;
        async move {
            let depends_on: Vec<&str> = depends_on.iter().map(String::as_str).collect();
            app.create_ok(admin, &body(name, &url, degraded_after, &depends_on))
                .await["integrationId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let a = create("a-registry", target_a.url.clone(), 1, vec![]).await;
    let b = create("b-pipeline", target_b.url.clone(), 5, vec![a.clone()]).await;
    let c = create("c-deploy", target_c.url.clone(), 5, vec![b.clone()]).await;
    assert_eq!(resource(&app, &admin, &b).await["dependsOn"], json!([a]));
    assert_eq!(resource(&app, &admin, &c).await["suppressedBy"], json!([]));
    for id in [&a, &b, &c] {
        post(&app, &admin, id, "submit", None).await;
    }
    eventually("all active", Duration::from_secs(20), || async {
        for id in [&a, &b, &c] {
            if resource(&app, &admin, id).await["status"] != "active" {
                return false;
            }
        }
        true
    })
    .await;

    // B has one genuine failure counted before A fails.
    target_b.set(Mode::Failing);
    eventually("b counted a failure", Duration::from_secs(10), || async {
        resource(&app, &admin, &b).await["consecutiveFailures"] != 0
    })
    .await;
    // A fails: degraded at its next check (degradedAfter 1). B and C learn it through the
    // engine and are suppressed by A (C through B, which stays active).
    target_a.set(Mode::Failing);
    target_c.set(Mode::Failing);
    eventually("a degraded", Duration::from_secs(10), || async {
        resource(&app, &admin, &a).await["status"] == "degraded"
    })
    .await;
    eventually(
        "b and c suppressed by a",
        Duration::from_secs(10),
        || async {
            resource(&app, &admin, &b).await["suppressedBy"] == json!([a])
                && resource(&app, &admin, &c).await["suppressedBy"] == json!([a])
        },
    )
    .await;
    // Their failures go on, of class dependency, and count towards nothing.
    eventually(
        "b and c record dependency failures",
        Duration::from_secs(20),
        || async {
            let dependency = |classes: Vec<Option<String>>| {
                classes
                    .iter()
                    .filter(|class| class.as_deref() == Some("dependency"))
                    .count()
            };
            dependency(failure_classes(&app, &admin, &b).await) >= 6
                && dependency(failure_classes(&app, &admin, &c).await) >= 6
        },
    )
    .await;
    for id in [&b, &c] {
        let row = resource(&app, &admin, id).await;
        assert_eq!(row["status"], "active", "{row}");
        assert!(row["consecutiveFailures"].as_u64().unwrap() < 5, "{row}");
    }

    // A recovers: the suppression lifts and B counts afresh, 5 failures to degraded.
    target_a.set(Mode::Healthy);
    eventually("suppression lifted", Duration::from_secs(10), || async {
        resource(&app, &admin, &b).await["suppressedBy"] == json!([])
            && resource(&app, &admin, &c).await["suppressedBy"] == json!([])
    })
    .await;
    eventually(
        "b degraded by its own failures",
        Duration::from_secs(20),
        || async { resource(&app, &admin, &b).await["status"] == "degraded" },
    )
    .await;
    // Its history (flushed in batches, so polled) shows exactly 5 failures of its own after
    // the last dependency failure: the ones counted before the suppression were forgotten.
    let fresh = || async {
        let classes = failure_classes(&app, &admin, &b).await;
        let last_dependency = classes
            .iter()
            .rposition(|class| class.as_deref() == Some("dependency"))
            .unwrap();
        let counted_after = classes[last_dependency + 1..]
            .iter()
            .take_while(|class| class.is_some())
            .count();
        (counted_after >= 5).then_some(counted_after)
    };
    let counted_after = eventually("b's history flushed", Duration::from_secs(10), fresh).await;
    assert!(counted_after >= 5);
    let degraded = events(&app, &b)
        .await
        .into_iter()
        .find(|e| e["type"] == "integration.unhealthy")
        .unwrap();
    assert_eq!(degraded["data"]["consecutiveFailures"], 5, "{degraded}");

    // Events: A went unhealthy and healthy; B only unhealthy at the end; C never.
    let kinds = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .filter(|kind| kind == "integration.healthy" || kind == "integration.unhealthy")
            .collect()
    };
    assert_eq!(
        kinds(events(&app, &a).await),
        [
            "integration.healthy",
            "integration.unhealthy",
            "integration.healthy"
        ]
    );
    assert_eq!(
        kinds(events(&app, &b).await),
        ["integration.healthy", "integration.unhealthy"]
    );
    let c_kinds = kinds(events(&app, &c).await);
    assert_eq!(c_kinds[0], "integration.healthy");
    let unhealthy_c = events(&app, &c)
        .await
        .into_iter()
        .filter(|e| e["type"] == "integration.unhealthy")
        .collect::<Vec<_>>();
    // C counted afresh too: if it went unhealthy by now, only after 5 new failures.
    for event in unhealthy_c {
        assert_eq!(event["data"]["consecutiveFailures"], 5, "{event}");
    }
}

async fn depends_on_is_validated(backend: Backend) {
    let app = spawn_monitoring_app(backend).await;
    let admin = app.admin("acme");
    let other = app.admin("globex");
    let target = Target::start().await;
    let a = app.create_ok(&admin, &body("a", &target.url, 3, &[])).await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app
        .create_ok(&admin, &body("b", &target.url, 3, &[a.as_str()]))
        .await;
    let b_id = b["integrationId"].as_str().unwrap().to_owned();
    let foreign = app.create_ok(&other, &body("f", &target.url, 3, &[])).await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();
    let seventeen: Vec<String> = (0..17).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let seventeen: Vec<&str> = seventeen.iter().map(String::as_str).collect();
    // (body, expected field, expected code)
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            body("x1", &target.url, 3, &["nope"]),
            "/dependsOn/0",
            "invalid_depends_on",
        ),
        (
            body("x2", &target.url, 3, &[a.as_str(), a.as_str()]),
            "/dependsOn/1",
            "invalid_depends_on",
        ),
        (
            body("x3", &target.url, 3, &seventeen),
            "/dependsOn",
            "invalid_depends_on",
        ),
        (
            body("x4", &target.url, 3, &[unknown.as_str()]),
            "/dependsOn/0",
            "unknown_dependency",
        ),
        // Another tenant's integration is unknown here.
        (
            body("x5", &target.url, 3, &[foreign.as_str()]),
            "/dependsOn/0",
            "unknown_dependency",
        ),
    ];
    for (request, field, code) in cases {
        let (status, problem_code, problem_body) =
            problem(app.create(&admin, &request).await).await;
        assert_eq!(
            (status, problem_code.as_str()),
            (422, code),
            "{problem_body}"
        );
        let errors = problem_body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["field"] == field && e["code"] == code),
            "{field} {code}: {problem_body}"
        );
    }
    // A cycle: A depending on B (which depends on A), and A on itself.
    for (depends_on, code) in [
        (b_id.as_str(), "dependency_cycle"),
        (a.as_str(), "dependency_cycle"),
    ] {
        let mut replace = body("a", &target.url, 3, &[depends_on]);
        replace["version"] = json!(1);
        let response = app
            .request(
                Method::PUT,
                &format!("/api/v1/integrations/{a}"),
                Some(&admin),
            )
            .json(&replace)
            .send()
            .await
            .unwrap();
        let (status, _, problem_body) = problem(response).await;
        assert_eq!(status, 422, "{problem_body}");
        assert_eq!(problem_body["errors"][0]["code"], code, "{problem_body}");
        assert_eq!(problem_body["errors"][0]["field"], "/dependsOn/0");
    }
}

catalogd_testkit::both_backends!(
    only_the_failing_root_of_a_chain_goes_unhealthy,
    depends_on_is_validated,
);
