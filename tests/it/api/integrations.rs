//! Create, get, list, update and delete through the REST API, as a client sees them.

use serde_json::{json, Value};

use crate::helpers::{integration, problem, spawn_app, Backend};

/// DESIGN §3: exactly these fields, camelCase.
const RESOURCE_FIELDS: &[&str] = &[
    "integrationId",
    "tenantId",
    "name",
    "description",
    "type",
    "provider",
    "baseUrl",
    "authRef",
    "configuration",
    "environment",
    "tags",
    "ownerId",
    "healthCheck",
    "status",
    "paused",
    "pauseReason",
    "pauseTicket",
    "lastTestedAt",
    "lastTestSuccess",
    "consecutiveFailures",
    "createdAt",
    "createdBy",
    "modifiedAt",
    "modifiedBy",
    "version",
    // DESIGN §10 (`maintenance` comes with maintenance windows).
    "dependsOn",
    "suppressedBy",
    "flapping",
    "maintenance",
];

fn full_body(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Production registry",
        "type": "registry",
        "provider": "harbor",
        "baseUrl": "https://harbor.example.com",
        "authRef": "ref://prod/harbor/robot-account",
        "configuration": {"project": "platform", "verifyTls": true, "nested": {"limit": 3}},
        "environment": "prod",
        "tags": ["team:platform", "tier=1"],
        "ownerId": "team-platform",
        "healthCheck": {"intervalSeconds": 30, "timeoutSeconds": 5, "degradedAfter": 2, "failedAfter": 4, "recoverAfter": 2}
    })
}

async fn create_returns_the_resource_with_location(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let response = app.create(&admin, &full_body("harbor-prod")).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();

    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut expected = RESOURCE_FIELDS.to_vec();
    expected.sort();
    assert_eq!(keys, expected);

    let id = created["integrationId"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/integrations/{id}"));
    assert_eq!(created["tenantId"], "acme");
    assert_eq!(created["status"], "draft");
    assert_eq!(created["paused"], false);
    assert_eq!(created["version"], 1);
    assert_eq!(created["consecutiveFailures"], 0);
    assert_eq!(created["createdBy"], "acme-admin");
    assert_eq!(created["modifiedBy"], "acme-admin");
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));
    for (key, value) in full_body("harbor-prod").as_object().unwrap() {
        assert_eq!(&created[key], value, "field {key}");
    }

    let fetched = app.get(&app.reader("acme"), &location).await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["etag"], "\"1\"");
    let fetched: Value = fetched.json().await.unwrap();
    assert_eq!(fetched, created);
}

async fn names_are_unique_per_tenant_only(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_ok(&app.admin("acme"), &integration("shared-name"))
        .await;
    let (status, code, _) = problem(
        app.create(&app.admin("acme"), &integration("shared-name"))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "name_taken"));
    // Another tenant may use the same name, and learns nothing about the first tenant.
    app.create_ok(&app.admin("globex"), &integration("shared-name"))
        .await;
}

async fn update_checks_the_version(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("acme", "bob", &["integrations.admin"]);
    let created = app
        .create_ok(&app.admin("acme"), &full_body("gitlab"))
        .await;
    let path = format!(
        "/api/v1/integrations/{}",
        created["integrationId"].as_str().unwrap()
    );

    let mut body = full_body("gitlab-renamed");
    body["description"] = json!("moved");
    // No version anywhere: 428.
    let response = app
        .request(reqwest::Method::PUT, &path, Some(&admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(response).await.1, "version_required");

    // If-Match with the current version.
    let response = app
        .request(reqwest::Method::PUT, &path, Some(&admin))
        .header("If-Match", "\"1\"")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["name"], "gitlab-renamed");
    assert_eq!(updated["description"], "moved");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["modifiedBy"], "bob");
    assert_eq!(updated["createdBy"], "acme-admin");
    assert_eq!(updated["createdAt"], created["createdAt"]);

    // A stale version, in the header or in the body: 409, and nothing changes.
    for request in [
        app.request(reqwest::Method::PUT, &path, Some(&admin))
            .header("If-Match", "\"1\"")
            .json(&body),
        app.request(reqwest::Method::PUT, &path, Some(&admin))
            .json(&{
                let mut b = body.clone();
                b["version"] = json!(1);
                b
            }),
    ] {
        let (status, code, _) = problem(request.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (409, "version_mismatch"));
    }
    let current: Value = app.get(&admin, &path).await.json().await.unwrap();
    assert_eq!(current["version"], 2);

    // GET-modify-PUT of the whole resource works: read-only fields are accepted and ignored.
    let mut round_trip = current.clone();
    round_trip["description"] = json!("round trip");
    round_trip["status"] = json!("active");
    let response = app
        .request(reqwest::Method::PUT, &path, Some(&admin))
        .json(&round_trip)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["description"], "round trip");
    assert_eq!(
        updated["status"], "draft",
        "status is not settable through PUT"
    );
    assert_eq!(updated["version"], 3);

    // Renaming onto another integration's name: 409 name_taken.
    app.create_ok(&admin, &integration("taken")).await;
    let mut clash = updated.clone();
    clash["name"] = json!("taken");
    let (status, code, _) = problem(
        app.request(reqwest::Method::PUT, &path, Some(&admin))
            .json(&clash)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "name_taken"));
}

async fn delete_removes_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let created = app.create_ok(&admin, &integration("to-delete")).await;
    let path = format!(
        "/api/v1/integrations/{}",
        created["integrationId"].as_str().unwrap()
    );

    let stale = app
        .request(reqwest::Method::DELETE, &path, Some(&admin))
        .header("If-Match", "\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(stale).await.1, "version_mismatch");

    let response = app
        .request(reqwest::Method::DELETE, &path, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, code, _) = problem(app.get(&admin, &path).await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let again = app
        .request(reqwest::Method::DELETE, &path, Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(again).await.1, "not_found");
    // The name is free again.
    app.create_ok(&admin, &integration("to-delete")).await;
}

async fn list_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let bodies = [
        json!({"name": "a-harbor", "type": "registry", "provider": "harbor", "baseUrl": "https://h.example.com", "environment": "prod", "tags": ["x"]}),
        json!({"name": "b-gitlab", "type": "scm", "provider": "gitlab", "baseUrl": "https://g.example.com", "environment": "dev", "tags": ["x", "y"]}),
        json!({"name": "c-jenkins", "type": "ci", "provider": "jenkins", "baseUrl": "https://j.example.com", "environment": "prod"}),
        json!({"name": "ab-memory", "type": "host", "provider": "in-memory", "tags": ["y"]}),
    ];
    for body in &bodies {
        app.create_ok(&admin, body).await;
    }
    let reader = app.reader("acme");
    let names = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases: &[(&str, &[&str])] = &[
        ("", &["a-harbor", "ab-memory", "b-gitlab", "c-jenkins"]),
        ("&type=scm", &["b-gitlab"]),
        ("&provider=jenkins", &["c-jenkins"]),
        ("&environment=prod", &["a-harbor", "c-jenkins"]),
        ("&tag=y", &["ab-memory", "b-gitlab"]),
        ("&tag=x&environment=dev", &["b-gitlab"]),
        ("&q=a", &["a-harbor", "ab-memory"]),
        ("&q=ab", &["ab-memory"]),
        (
            "&status=draft",
            &["a-harbor", "ab-memory", "b-gitlab", "c-jenkins"],
        ),
        ("&status=active", &[]),
        ("&q=zzz", &[]),
    ];
    for (query, expected) in cases {
        for limit in [1, 2, 50] {
            let got = names(app.list_all(&reader, query, limit).await);
            assert_eq!(got, *expected, "query {query:?} limit {limit}");
        }
    }
    // The default page answers with the envelope of DESIGN §5.
    let page: Value = app
        .get(&reader, "/api/v1/integrations/")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    assert_eq!(page["nextCursor"], Value::Null);
}

/// The list's items are assembled by the database, a GET's by serde: every field of every
/// item must be the same, for an integration with every optional field set (paused, with a
/// reason and a ticket) and one with none.
async fn list_items_are_what_get_returns(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let full = app.create_ok(&admin, &full_body("full")).await;
    let id = full["integrationId"].as_str().unwrap();
    for (operation, body) in [
        ("submit", None),
        (
            "pause",
            Some(json!({"reason": "maintenance \"window\" é", "ticket": "CHG-42"})),
        ),
    ] {
        let path = format!("/api/v1/integrations/{id}/{operation}");
        let mut request = app.request(reqwest::Method::POST, &path, Some(&admin));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{operation}");
    }
    app.create_ok(
        &admin,
        &json!({"name": "minimal", "type": "host", "provider": "tcp"}),
    )
    .await;
    app.create_ok(&app.admin("globex"), &full_body("foreign"))
        .await;

    let reader = app.reader("acme");
    let response = app.get(&reader, "/api/v1/integrations?limit=1").await;
    assert_eq!(response.headers()["content-type"], "application/json");
    let first: Value = response.json().await.unwrap();
    assert!(first["nextCursor"].is_string(), "{first}");
    let items = app.list_all(&reader, "", 1).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items, app.list_all(&reader, "", 50).await);
    for item in &items {
        let path = format!(
            "/api/v1/integrations/{}",
            item["integrationId"].as_str().unwrap()
        );
        let got: Value = app.get(&reader, &path).await.json().await.unwrap();
        assert_eq!(*item, got);
    }
    let paused = &items[0];
    assert_eq!(paused["name"], "full");
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["pauseReason"], "maintenance \"window\" é");
    assert_eq!(paused["pauseTicket"], "CHG-42");
    assert_eq!(paused["configuration"], full_body("x")["configuration"]);
    assert_eq!(paused["healthCheck"], full_body("x")["healthCheck"]);
    assert_eq!(items[1]["description"], Value::Null);
    assert_eq!(items[1]["tags"], json!([]));
}

catalogd_testkit::both_backends!(
    create_returns_the_resource_with_location,
    names_are_unique_per_tenant_only,
    update_checks_the_version,
    delete_removes_it,
    list_filters,
    list_items_are_what_get_returns,
);
