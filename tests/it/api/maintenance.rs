//! Maintenance windows through the REST API (DESIGN §10): create, read, replace with
//! versions, delete, validation, scopes, tenant isolation, and the audit entries of each change.

use reqwest::Method;
use serde_json::{json, Value};

use crate::engine::lifecycle::post;
use crate::helpers::{problem, spawn_app, Backend, TestApp};

const COLLECTION: &str = "/api/v1/maintenance-windows";

async fn send(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let request = app.request(method, path, Some(token));
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
    .send()
    .await
    .unwrap()
}

fn weekly() -> Value {
    json!({
        "name": "sunday-patching",
        "description": "OS patches",
        "startsAt": "2026-01-04T02:00:00Z",
        "rrule": "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2",
        "durationSeconds": 7200,
        "timeZone": "Europe/Berlin",
        "selector": {"tags": ["db"], "environment": "prod"},
    })
}

async fn windows_are_created_read_replaced_and_deleted_with_versions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("acme", "alice", &["integrations.admin"]);
    let reader = app.token("acme", "rita", &["integrations.read"]);

    let created = send(&app, &admin, Method::POST, COLLECTION, Some(weekly())).await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(created.headers()["etag"], "\"1\"");
    let window: Value = created.json().await.unwrap();
    let id = window["windowId"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("{COLLECTION}/{id}"));
    assert_eq!(window["tenantId"], "acme");
    assert_eq!(window["rrule"], "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2");
    assert_eq!(window["durationSeconds"], 7200);
    assert_eq!(window["endsAt"], Value::Null);
    assert_eq!(window["timeZone"], "Europe/Berlin");
    assert_eq!(window["selector"]["tags"], json!(["db"]));
    assert_eq!(window["createdBy"], "alice");
    assert_eq!(window["version"], 1);

    // A reader sees it, exactly as created.
    let got = send(&app, &reader, Method::GET, &location, None).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.unwrap(), window);
    let list: Value = send(&app, &reader, Method::GET, COLLECTION, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([window]));

    // A replace needs the version; a stale one is refused; the GET body can be sent back.
    let mut one_off = window.clone();
    for field in ["rrule", "durationSeconds", "windowId"] {
        one_off.as_object_mut().unwrap().remove(field);
    }
    one_off["endsAt"] = json!("2026-01-04T04:00:00Z");
    one_off["timeZone"] = json!("UTC");
    let mut unversioned = one_off.clone();
    unversioned.as_object_mut().unwrap().remove("version");
    let (status, code, _) =
        problem(send(&app, &admin, Method::PUT, &location, Some(unversioned)).await).await;
    assert_eq!((status, code.as_str()), (428, "version_required"));
    let replaced = send(&app, &admin, Method::PUT, &location, Some(one_off.clone())).await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["endsAt"], "2026-01-04T04:00:00Z");
    assert_eq!(replaced["rrule"], Value::Null);
    assert_eq!(replaced["createdAt"], window["createdAt"]);
    let (status, code, _) =
        problem(send(&app, &admin, Method::PUT, &location, Some(one_off)).await).await;
    assert_eq!((status, code.as_str()), (409, "version_mismatch"));

    // A reader may not change it; another tenant cannot see it.
    let (status, code, _) =
        problem(send(&app, &reader, Method::DELETE, &location, None).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let other = app.token("globex", "gina", &["integrations.admin"]);
    for method in [Method::GET, Method::DELETE] {
        let (status, _, _) = problem(send(&app, &other, method, &location, None).await).await;
        assert_eq!(status, 404);
    }
    let theirs: Value = send(&app, &other, Method::GET, COLLECTION, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]));

    // Delete, then it is gone.
    let deleted = app
        .request(Method::DELETE, &location, Some(&admin))
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        send(&app, &reader, Method::GET, &location, None)
            .await
            .status(),
        404
    );

    // Each change is in the tenant's audit chain, which still verifies.
    let audit: Value = send(&app, &admin, Method::GET, "/api/v1/audit?limit=100", None)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["targetId"] == id.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["targetType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("maintenance_window.create", "maintenance_window"),
            ("maintenance_window.update", "maintenance_window"),
            ("maintenance_window.delete", "maintenance_window"),
        ]
    );
    let (code, text) = super::audit::verify(&app);
    assert_eq!(code, 0, "{text}");
}

async fn bad_windows_get_clear_errors_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("acme", "alice", &["integrations.admin"]);
    let with = |patch: Value| {
        let mut body = weekly();
        for (key, value) in patch.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body
    };
    let cases = [
        (
            with(json!({"rrule": "FREQ=MINUTELY"})),
            422,
            "invalid_schedule",
            "/rrule",
        ),
        (
            with(json!({"rrule": "EVERY SUNDAY"})),
            422,
            "invalid_schedule",
            "/rrule",
        ),
        (
            with(json!({"durationSeconds": 0})),
            422,
            "invalid_schedule",
            "/durationSeconds",
        ),
        (
            with(json!({"durationSeconds": null})),
            422,
            "invalid_schedule",
            "/durationSeconds",
        ),
        (
            with(json!({"timeZone": "Mars/Olympus"})),
            422,
            "invalid_schedule",
            "/timeZone",
        ),
        (
            with(json!({"rrule": null})),
            422,
            "invalid_schedule",
            "/endsAt",
        ),
        (
            with(json!({"endsAt": "2026-01-04T03:00:00Z"})),
            422,
            "invalid_schedule",
            "/rrule",
        ),
        (
            with(json!({"selector": {"tags": ["has space"]}})),
            422,
            "invalid_selector",
            "/selector/tags/0",
        ),
        (with(json!({"name": ""})), 422, "invalid_name", "/name"),
        (
            with(json!({"startsAt": "yesterday"})),
            400,
            "invalid_body",
            "",
        ),
        (with(json!({"colour": "red"})), 400, "invalid_body", ""),
    ];
    for (body, status, code, field) in cases {
        let (got_status, got_code, problem_body) =
            problem(send(&app, &admin, Method::POST, COLLECTION, Some(body.clone())).await).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "{body}: {problem_body}"
        );
        if !field.is_empty() {
            let fields: Vec<&str> = problem_body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(fields.contains(&field), "{body}: {problem_body}");
        }
    }
    let list: Value = send(&app, &admin, Method::GET, COLLECTION, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]), "nothing was created");
}

/// Tenant acme's public status page, as `summary.json`.
async fn page_summary(app: &TestApp) -> Value {
    app.request(Method::GET, "/status/acme/summary.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The status page lists the openings of the next 30 days of the windows that cover its
/// integrations, recurring ones once per opening.
async fn the_status_page_lists_upcoming_windows(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.token("acme", "alice", &["integrations.admin"]);
    let created = app
        .create_ok(
            &admin,
            &json!({"name": "db", "type": "host", "provider": "tcp", "tags": ["db"]}),
        )
        .await;
    let id = created["integrationId"].as_str().unwrap();
    post(&app, &admin, id, "activate", Some(json!({}))).await;
    super::status_page::configure(
        &app,
        "acme",
        json!({"enabled": true, "public": true, "title": "Acme"}),
    )
    .await;
    let day = chrono::Duration::days(1);
    let tomorrow = (chrono::Utc::now() + day)
        .date_naive()
        .and_hms_opt(2, 0, 0)
        .unwrap()
        .and_utc();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for body in [
        json!({"name": "patching", "startsAt": at(tomorrow), "endsAt": at(tomorrow + chrono::Duration::hours(2)), "selector": {"tags": ["db"]}}),
        json!({"name": "elsewhere", "startsAt": at(tomorrow), "endsAt": at(tomorrow + day), "selector": {"tags": ["web"]}}),
        json!({"name": "weekly", "startsAt": at(tomorrow), "rrule": "FREQ=WEEKLY", "durationSeconds": 3600}),
    ] {
        assert_eq!(
            send(&app, &admin, Method::POST, COLLECTION, Some(body))
                .await
                .status(),
            201
        );
    }
    let summary = page_summary(&app).await;
    let upcoming: Vec<(&str, &str)> = summary["upcomingMaintenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["name"].as_str().unwrap(), w["startsAt"].as_str().unwrap()))
        .collect();
    // The one-off window for the db, and the weekly one's openings in the next 30 days; not
    // the window of an integration the page does not show.
    assert_eq!(
        upcoming
            .iter()
            .filter(|(name, _)| *name == "patching")
            .count(),
        1,
        "{summary}"
    );
    assert_eq!(
        upcoming
            .iter()
            .filter(|(name, _)| *name == "elsewhere")
            .count(),
        0,
        "{summary}"
    );
    let weekly = upcoming
        .iter()
        .filter(|(name, _)| *name == "weekly")
        .count();
    assert!((4..=5).contains(&weekly), "{summary}");
    assert_eq!(
        summary["upcomingMaintenance"][0]["integrations"],
        json!(["db"])
    );

    // A window open now, naming a second integration by id: that one is in maintenance
    // today (its state and today's bar), the db is not.
    let created = app
        .create_ok(
            &admin,
            &json!({"name": "cache", "type": "host", "provider": "tcp"}),
        )
        .await;
    let cache = created["integrationId"].as_str().unwrap();
    post(&app, &admin, cache, "activate", Some(json!({}))).await;
    let now = chrono::Utc::now();
    let open_now = json!({"name": "cache-upgrade", "startsAt": at(now - chrono::Duration::hours(1)), "endsAt": at(now + chrono::Duration::hours(1)), "selector": {"integrationIds": [cache]}});
    assert_eq!(
        send(&app, &admin, Method::POST, COLLECTION, Some(open_now))
            .await
            .status(),
        201
    );
    let summary = page_summary(&app).await;
    let component = |name: &str| super::status_page::component(&summary, name);
    let today = |c: &Value| c["days"][89]["state"].clone();
    assert_eq!(component("cache")["state"], "maintenance", "{summary}");
    assert_eq!(today(&component("cache")), "maintenance", "{summary}");
    assert_ne!(component("db")["state"], "maintenance", "{summary}");
    assert_ne!(today(&component("db")), "maintenance", "{summary}");
    let listed = summary["upcomingMaintenance"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "cache-upgrade")
        .unwrap_or_else(|| panic!("{summary}"))
        .clone();
    assert_eq!(listed["integrations"], json!(["cache"]));
}

catalogd_testkit::both_backends!(
    windows_are_created_read_replaced_and_deleted_with_versions,
    bad_windows_get_clear_errors_and_change_nothing,
    the_status_page_lists_upcoming_windows,
);
