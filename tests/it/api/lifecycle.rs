//! Lifecycle operations through the REST API (DESIGN §4, §5), and the outbox events and audit
//! entries they commit with them.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{integration, outbox_rows, problem, spawn_app, Backend, TestApp};

async fn op(
    app: &TestApp,
    token: &str,
    id: &str,
    name: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let path = format!("/api/v1/integrations/{id}/{name}");
    let request = app.request(Method::POST, &path, Some(token));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap()
}

/// One step of a scenario: the operation, its body, and either the status the integration
/// reaches or the error code.
type Step = (
    &'static str,
    Option<Value>,
    Result<&'static str, (u16, &'static str)>,
);

async fn transitions_follow_the_table(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("acme", "alice", &["integrations.admin"]);
    let pause = || Some(json!({"reason": "maintenance window", "ticket": "CHG-42"}));
    let scenarios: Vec<Vec<Step>> = vec![
        vec![
            ("submit", None, Ok("pending_verification")),
            ("submit", None, Err((409, "invalid_transition"))),
            ("pause", pause(), Ok("paused")),
            ("pause", pause(), Err((409, "invalid_transition"))),
            ("activate", None, Err((409, "invalid_transition"))),
            ("resume", None, Ok("active")),
            ("resume", None, Err((409, "invalid_transition"))),
            ("activate", None, Err((409, "invalid_transition"))),
            ("submit", None, Err((409, "invalid_transition"))),
        ],
        vec![
            ("pause", pause(), Err((409, "invalid_transition"))),
            ("resume", None, Err((409, "invalid_transition"))),
            (
                "activate",
                Some(json!({"comment": "approved in CAB"})),
                Ok("active"),
            ),
            ("pause", Some(json!({})), Err((422, "invalid_reason"))),
            (
                "pause",
                Some(json!({"reason": "  "})),
                Err((422, "invalid_reason")),
            ),
            (
                "pause",
                Some(json!({"reason": "x", "ticket": ""})),
                Err((422, "invalid_ticket")),
            ),
            (
                "pause",
                Some(json!({"reason": "x", "bogus": 1})),
                Err((400, "invalid_body")),
            ),
            ("pause", None, Err((415, "unsupported_media_type"))),
            (
                "activate",
                Some(json!({"comment": "c".repeat(2000)})),
                Err((422, "invalid_reason")),
            ),
            ("pause", pause(), Ok("paused")),
        ],
        vec![
            ("submit", None, Ok("pending_verification")),
            ("activate", None, Ok("active")),
        ],
    ];
    for (n, steps) in scenarios.into_iter().enumerate() {
        let created = app
            .create_ok(&admin, &integration(&format!("scenario-{n}")))
            .await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        let mut version = 1;
        for (name, body, expected) in steps {
            let response = op(&app, &admin, &id, name, body).await;
            match expected {
                Ok(status) => {
                    assert_eq!(response.status(), 200, "scenario {n}: {name}");
                    let got: Value = response.json().await.unwrap();
                    assert_eq!(got["status"], status, "scenario {n}: {name}");
                    assert_eq!(got["paused"], status == "paused");
                    version += 1;
                    assert_eq!(got["version"], version);
                    assert_eq!(got["modifiedBy"], "alice");
                }
                Err((status, code)) => {
                    let (got_status, got_code, body) = problem(response).await;
                    assert_eq!(
                        (got_status, got_code.as_str()),
                        (status, code),
                        "scenario {n}: {name}: {body}"
                    );
                }
            }
        }
    }
}

async fn pause_records_reason_and_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("acme", "alice", &["integrations.admin"]);
    let id = app.create_ok(&admin, &integration("paused-one")).await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(op(&app, &admin, &id, "activate", None).await.status(), 200);
    let response = op(
        &app,
        &admin,
        &id,
        "pause",
        Some(json!({"reason": "vendor outage", "ticket": "INC-7"})),
    )
    .await;
    let paused: Value = response.json().await.unwrap();
    assert_eq!(
        (
            paused["pauseReason"].as_str(),
            paused["pauseTicket"].as_str()
        ),
        (Some("vendor outage"), Some("INC-7"))
    );
    let resumed: Value = op(&app, &admin, &id, "resume", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (resumed["pauseReason"].clone(), resumed["status"].clone()),
        (Value::Null, json!("active"))
    );

    let audit: Value = app
        .get(&admin, &format!("/api/v1/audit?integrationId={id}"))
        .await
        .json()
        .await
        .unwrap();
    let entries: Vec<(String, Option<String>, Option<String>)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["reason"].as_str().map(str::to_owned),
                e["ticket"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("integration.create".into(), None, None),
            ("integration.activate".into(), None, None),
            (
                "integration.pause".into(),
                Some("vendor outage".into()),
                Some("INC-7".into())
            ),
            ("integration.resume".into(), None, None),
        ]
    );
}

async fn lifecycle_routes_enforce_scope_and_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .create_ok(&app.admin("acme"), &integration("guarded"))
        .await["integrationId"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["submit", "pause", "resume", "activate"] {
        let body = Some(json!({"reason": "r"})).filter(|_| name == "pause");
        let response = op(&app, &app.reader("acme"), &id, name, body.clone()).await;
        assert_eq!(problem(response).await.1, "forbidden", "{name}");
        let response = op(&app, &app.admin("globex"), &id, name, body.clone()).await;
        assert_eq!(problem(response).await.1, "not_found", "{name}");
        let response = app
            .client
            .post(app.url(&format!("/api/v1/integrations/{id}/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(problem(response).await.1, "unauthorized", "{name}");
    }
    let current: Value = app
        .get(&app.admin("acme"), &format!("/api/v1/integrations/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (current["status"].as_str(), current["version"].as_i64()),
        (Some("draft"), Some(1))
    );
}

async fn every_change_writes_exactly_one_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("acme", "alice", &["integrations.admin"]);
    let created = app.create_ok(&admin, &integration("evented")).await;
    let id_text = created["integrationId"].as_str().unwrap().to_owned();
    let id: uuid::Uuid = id_text.parse().unwrap();
    let mut body = integration("evented");
    body["version"] = json!(1);
    body["description"] = json!("changed");
    let put = app
        .request(
            Method::PUT,
            &format!("/api/v1/integrations/{id}"),
            Some(&admin),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(
        op(&app, &admin, &id_text, "submit", None).await.status(),
        200
    );
    assert_eq!(
        op(
            &app,
            &admin,
            &id_text,
            "pause",
            Some(json!({"reason": "r"}))
        )
        .await
        .status(),
        200
    );
    // A refused transition writes nothing.
    assert_eq!(
        op(
            &app,
            &admin,
            &id_text,
            "pause",
            Some(json!({"reason": "r"}))
        )
        .await
        .status(),
        409
    );
    assert_eq!(
        op(&app, &admin, &id_text, "resume", None).await.status(),
        200
    );
    let delete = app
        .request(
            Method::DELETE,
            &format!("/api/v1/integrations/{id}"),
            Some(&admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);

    let events = outbox_rows(&app, id).await;
    let expected = [
        ("created", None, "draft"),
        ("updated", Some("draft"), "draft"),
        ("updated", Some("draft"), "pending_verification"),
        ("paused", Some("pending_verification"), "paused"),
        ("resumed", Some("paused"), "active"),
        ("deleted", Some("active"), "active"),
    ];
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (i, ((sequence, event_type, subject, ce), (kind, previous, status))) in
        events.iter().zip(expected).enumerate()
    {
        assert_eq!(*sequence, i as i64 + 1, "gap-free sequence");
        assert_eq!(event_type, &format!("integration.{kind}"));
        assert_eq!(subject, &format!("integrations.events.acme.{kind}"));
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["type"], format!("integration.{kind}"));
        assert_eq!(ce["subject"], id_text);
        assert_eq!(ce["tenantid"], "acme");
        assert_eq!(ce["sequence"], *sequence);
        assert_eq!(ce["datacontenttype"], "application/json");
        assert!(ce["time"].as_str().unwrap().ends_with('Z'));
        let data = &ce["data"];
        assert_eq!(data["integrationId"], id_text);
        assert_eq!(data["name"], "evented");
        assert_eq!(data["previousStatus"].as_str(), previous, "{kind}");
        assert_eq!(data["status"], status, "{kind}");
        assert_eq!(data["actor"], "alice");
    }
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e.3["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
}

catalogd_testkit::both_backends!(
    transitions_follow_the_table,
    pause_records_reason_and_ticket,
    lifecycle_routes_enforce_scope_and_tenant,
    every_change_writes_exactly_one_event,
);
