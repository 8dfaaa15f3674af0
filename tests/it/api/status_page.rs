//! The status page (DESIGN §11) over a real application, on SQLite and PostgreSQL: its
//! configuration (CRUD, validation, scopes), who may see a page (disabled, public, a read
//! token of the tenant, another tenant's token), tenant isolation and the absence of
//! anything secret, and the page's data from real checks plus 90 days of backdated rollups.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::lifecycle::{http_integration, post, spawn_monitoring_app};
use crate::helpers::{integration, problem, spawn_app, store_options, Backend, TestApp};
use catalogd::store::history::{Bucket, HistoryOptions, HistoryStore};
use catalogd_testkit::{eventually, Mode, Target};

const CONFIG: &str = "/api/v1/status-page";

pub async fn put_config(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.request(Method::PUT, CONFIG, Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The integration called `name` on a page's `summary.json`.
pub fn component(summary: &Value, name: &str) -> Value {
    summary["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not on the page: {summary}"))
        .clone()
}

pub async fn configure(app: &TestApp, tenant: &str, body: Value) -> Value {
    let response = put_config(app, &app.admin(tenant), &body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `GET path` with an optional bearer token: status and body text.
async fn fetch(app: &TestApp, path: &str, token: Option<&str>) -> (u16, String) {
    let response = app.request(Method::GET, path, token).send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

async fn config_is_stored_validated_and_scoped(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let reader = app.reader("acme");

    // Before the first PUT: a disabled default.
    let (status, body) = fetch(&app, CONFIG, Some(&reader)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["enabled"], false);
    assert_eq!(body["version"], 0);

    let own = app.create_ok(&admin, &integration("own")).await;
    let own_id = own["integrationId"].as_str().unwrap();
    let foreign = app
        .create_ok(&app.admin("globex"), &integration("theirs"))
        .await;
    let foreign_id = foreign["integrationId"].as_str().unwrap();

    let first = configure(
        &app,
        "acme",
        json!({
            "enabled": true, "public": true, "title": "  Acme integrations ",
            "description": "What our pipelines depend on",
            "selector": {"integrationIds": [own_id], "tags": ["prod", "eu"], "environment": "production"},
        }),
    )
    .await;
    assert_eq!(first["version"], 1);
    assert_eq!(first["title"], "Acme integrations", "trimmed");
    assert_eq!(first["selector"]["tags"], json!(["eu", "prod"]));
    assert_eq!(first["modifiedBy"], "acme-admin");
    let (_, read) = fetch(&app, CONFIG, Some(&reader)).await;
    let read: Value = serde_json::from_str(&read).unwrap();
    assert_eq!(read, first, "GET answers what PUT stored");
    let second = configure(&app, "acme", json!({"enabled": false, "title": "Acme"})).await;
    assert_eq!(second["version"], 2);
    assert_eq!(second["public"], false, "public defaults to false");
    assert_eq!(second["selector"]["integrationIds"], json!([]));
    // Tenants do not see each other's configuration.
    let (_, theirs) = fetch(&app, CONFIG, Some(&app.reader("globex"))).await;
    assert_eq!(
        serde_json::from_str::<Value>(&theirs).unwrap()["version"],
        0
    );

    // Scopes: reading needs read, changing needs admin; no token is 401.
    let response = put_config(&app, &reader, &json!({"enabled": true, "title": "x"})).await;
    assert_eq!(problem(response).await.1, "forbidden");
    let (status, _) = fetch(&app, CONFIG, None).await;
    assert_eq!(status, 401);

    // Validation: each bad body is refused with its status, code and field, and nothing
    // changes.
    let long = "t".repeat(129);
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"enabled": true, "title": ""}),
            422,
            "invalid_title",
            Some("/title"),
        ),
        (
            json!({"enabled": true, "title": long}),
            422,
            "invalid_title",
            Some("/title"),
        ),
        (
            json!({"enabled": true, "title": "a\u{7}b"}),
            422,
            "invalid_title",
            Some("/title"),
        ),
        (
            json!({"enabled": true, "title": "t", "description": "d".repeat(2049)}),
            422,
            "invalid_description",
            Some("/description"),
        ),
        (
            json!({"enabled": true, "title": "t", "selector": {"integrationIds": ["nope"]}}),
            422,
            "invalid_selector",
            Some("/selector/integrationIds/0"),
        ),
        (
            // Another tenant's integration is as unknown as a random id.
            json!({"enabled": true, "title": "t", "selector": {"integrationIds": [own_id, foreign_id]}}),
            422,
            "invalid_selector",
            Some("/selector/integrationIds/1"),
        ),
        (
            json!({"enabled": true, "title": "t", "selector": {"integrationIds": [Uuid::new_v4()]}}),
            422,
            "invalid_selector",
            Some("/selector/integrationIds/0"),
        ),
        (
            json!({"enabled": true, "title": "t", "selector": {"tags": ["ok", "not ok"]}}),
            422,
            "invalid_selector",
            Some("/selector/tags/1"),
        ),
        (
            json!({"enabled": true, "title": "t", "selector": {"environment": "prod eu"}}),
            422,
            "invalid_selector",
            Some("/selector/environment"),
        ),
        (json!({"title": "t"}), 400, "invalid_body", None),
        (
            json!({"enabled": "yes", "title": "t"}),
            400,
            "invalid_body",
            None,
        ),
        (
            json!({"enabled": true, "title": "t", "theme": "dark"}),
            400,
            "invalid_body",
            None,
        ),
        (
            json!({"enabled": true, "title": "t", "selector": {"names": []}}),
            400,
            "invalid_body",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let response = put_config(&app, &admin, &body).await;
        let (got_status, got_code, problem) = problem(response).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "{body}: {problem}"
        );
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
        }
    }
    let (_, after) = fetch(&app, CONFIG, Some(&reader)).await;
    assert_eq!(serde_json::from_str::<Value>(&after).unwrap(), second);

    // Each accepted change is audited in the tenant's chain (the refused ones are not), and
    // the chain still verifies.
    let (_, audit) = fetch(&app, "/api/v1/audit?limit=500", Some(&admin)).await;
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let changes: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "status_page.update")
        .collect();
    assert_eq!(changes.len(), 2, "{audit}");
    assert!(changes.iter().all(|e| e["targetType"] == "status_page"
        && e["actor"] == "acme-admin"
        && e["tenantId"] == "acme"));
    assert!(changes[0]["before"].is_null());
    assert_eq!(changes[0]["after"]["title"], "Acme integrations");
    assert_eq!(changes[1]["before"]["version"], 1);
    assert_eq!(changes[1]["after"]["enabled"], false);
    let store = catalogd::store::open(&store_options(&app.database_url, 2))
        .await
        .unwrap();
    let report = store.verify_audit(Some("acme")).await.unwrap();
    assert_eq!(report.problem, None);
}

async fn who_may_see_a_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let registry = app.create_ok(&admin, &integration("registry")).await;
    // Drafts are not on pages; submitted, it is pending verification (its host is made up).
    post(
        &app,
        &admin,
        registry["integrationId"].as_str().unwrap(),
        "submit",
        None,
    )
    .await;
    let reader = app.reader("acme");
    let other = app.reader("globex");
    let paths = [
        "/status/acme",
        "/status/acme/summary.json",
        "/status/acme/badge/registry.svg",
    ];
    let statuses = |token: Option<String>, query: &'static str| {
        let app = &app;
        async move {
            let mut statuses = Vec::new();
            for path in paths {
                let (status, _) = fetch(app, &format!("{path}{query}"), token.as_deref()).await;
                statuses.push(status);
            }
            statuses
        }
    };
    // Never configured, then configured but disabled: 404 whoever asks.
    assert_eq!(statuses(None, "").await, [404; 3]);
    configure(
        &app,
        "acme",
        json!({"enabled": false, "public": true, "title": "Acme"}),
    )
    .await;
    assert_eq!(statuses(None, "").await, [404; 3]);
    assert_eq!(statuses(Some(reader.clone()), "").await, [404; 3]);
    // Enabled and public: anyone.
    configure(
        &app,
        "acme",
        json!({"enabled": true, "public": true, "title": "Acme"}),
    )
    .await;
    assert_eq!(statuses(None, "").await, [200; 3]);
    // Enabled, not public: a read token of the tenant, in the header or the query.
    configure(
        &app,
        "acme",
        json!({"enabled": true, "public": false, "title": "Acme"}),
    )
    .await;
    assert_eq!(statuses(None, "").await, [401; 3]);
    assert_eq!(statuses(Some("not-a-token".into()), "").await, [401; 3]);
    assert_eq!(statuses(Some(app.expired("acme")), "").await, [401; 3]);
    assert_eq!(statuses(Some(reader.clone()), "").await, [200; 3]);
    assert_eq!(statuses(Some(admin.clone()), "").await, [200; 3]);
    let query: &'static str = Box::leak(format!("?token={reader}&utm_source=x").into_boxed_str());
    assert_eq!(statuses(None, query).await, [200; 3]);
    // Another tenant's token sees no page at all, exactly as if there were none.
    assert_eq!(statuses(Some(other), "").await, [404; 3]);
    // An unknown integration has no badge; a badge must be an .svg.
    let (status, _) = fetch(&app, "/status/acme/badge/nope.svg", Some(&reader)).await;
    assert_eq!(status, 404);
    let (status, _) = fetch(&app, "/status/acme/badge/registry.png", Some(&reader)).await;
    assert_eq!(status, 404);
    // A page behind a token is not cached by shared caches.
    let response = app
        .request(Method::GET, "/status/acme", Some(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

async fn pages_show_only_their_tenant_and_nothing_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let secret_host = "very-internal-host-7f3a.corp.example";
    let marker = "CONFIG-MARKER-91c2";
    app.create_ok(
        &admin,
        &json!({
            "name": "harbor-eu", "type": "registry", "provider": "harbor",
            "baseUrl": format!("https://{secret_host}:8443/api"),
            "authRef": "ref://vault/harbor/robot-key-4411",
            "configuration": {"project": marker},
            "environment": "production", "tags": ["public"],
            "description": format!("runs on {secret_host}"),
        }),
    )
    .await;
    app.create_ok(
        &admin,
        &json!({"name": "hidden-by-tag", "type": "ci", "provider": "jenkins",
                "baseUrl": "https://jenkins.example.com", "environment": "production", "tags": ["internal"]}),
    )
    .await;
    app.create_ok(
        &admin,
        &json!({"name": "staging-registry", "type": "registry", "provider": "harbor",
                "baseUrl": "https://staging.example.com", "environment": "staging", "tags": ["public"]}),
    )
    .await;
    let globex = app
        .create_ok(
            &app.admin("globex"),
            &integration("globex-registry-secret-name"),
        )
        .await;
    configure(
        &app,
        "globex",
        json!({"enabled": true, "public": true, "title": "Globex"}),
    )
    .await;
    // Drafts are not on pages: submit every integration (its verification check cannot
    // reach the made-up hosts, so each stays pending verification).
    let list: Value = app
        .get(&admin, "/api/v1/integrations")
        .await
        .json()
        .await
        .unwrap();
    for item in list["items"].as_array().unwrap() {
        post(
            &app,
            &admin,
            item["integrationId"].as_str().unwrap(),
            "submit",
            None,
        )
        .await;
    }
    let globex_admin = app.admin("globex");
    post(
        &app,
        &globex_admin,
        globex["integrationId"].as_str().unwrap(),
        "submit",
        None,
    )
    .await;
    configure(
        &app,
        "acme",
        json!({"enabled": true, "public": true, "title": "Acme <script>status</script>",
               "description": "<img src=x onerror=alert(1)>",
               "selector": {"tags": ["public"], "environment": "production"}}),
    )
    .await;

    let (status, html) = fetch(&app, "/status/acme", None).await;
    assert_eq!(status, 200);
    let (status, summary) = fetch(&app, "/status/acme/summary.json", None).await;
    assert_eq!(status, 200);
    let (status, badge) = fetch(&app, "/status/acme/badge/harbor-eu.svg", None).await;
    assert_eq!(status, 200);
    for (what, text) in [("page", &html), ("summary", &summary), ("badge", &badge)] {
        for secret in [
            secret_host,
            "8443",
            "ref://",
            "robot-key-4411",
            marker,
            "jenkins.example.com",
            "staging.example.com",
            "globex",
            "hidden-by-tag",
            "staging-registry",
        ] {
            assert!(!text.contains(secret), "{what} shows {secret:?}");
        }
    }
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let names: Vec<&str> = summary["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["harbor-eu"], "the selector: tag and environment");
    assert_eq!(summary["title"], "Acme <script>status</script>");
    assert!(html.contains("harbor-eu"));
    // Text from the configuration is escaped, never markup.
    assert!(
        html.contains("Acme &lt;script&gt;status&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(badge.contains("harbor-eu"));
    // The other tenant's page shows only its own.
    let (_, theirs) = fetch(&app, "/status/globex/summary.json", None).await;
    assert!(theirs.contains("globex-registry-secret-name"));
    assert!(!theirs.contains("harbor-eu"));
}

/// Writes `days` of daily rollups before today for `id`: `(days ago, successes, failures)`.
pub async fn backdate(app: &TestApp, rows: &[(Uuid, i64, u64, u64)]) {
    let options = HistoryOptions {
        maintenance_interval: None,
        ..HistoryOptions::default()
    };
    let history = HistoryStore::open(&store_options(&app.database_url, 2), options)
        .await
        .unwrap();
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let buckets: Vec<(Uuid, Bucket)> = rows
        .iter()
        .map(|&(id, ago, successes, failures)| {
            (
                id,
                Bucket {
                    start: today - TimeDelta::days(ago),
                    successes,
                    failures,
                    skipped: 0,
                    latency_sum_us: (successes + failures) * 20_000,
                    latency_max_us: 80_000,
                    maintenance: 0,
                },
            )
        })
        .collect();
    history.write_daily_rollups(&buckets).await.unwrap();
}

/// What the browser test and the summary test share: a daemon whose checks really ran
/// against a local target (one integration went through degraded and failed and back), plus
/// 89 backdated days of rollups. Returns the app, the target (keep it alive) and the ids.
pub async fn seeded_page(backend: Backend) -> (TestApp, Target, Target, [String; 3]) {
    let app = spawn_monitoring_app(backend).await;
    let admin = app.admin("acme");
    let steady = Target::start().await;
    let flaky = Target::start().await;
    let mut ids = Vec::new();
    for (name, target, tags) in [
        ("registry-eu", &flaky, vec!["public"]),
        ("ci-runners", &steady, vec!["public"]),
        ("artifact-store", &steady, vec!["public"]),
    ] {
        let mut body = http_integration(name, &target.url, 1, 1);
        body["tags"] = json!(tags);
        body["healthCheck"]["degradedAfter"] = json!(2);
        body["healthCheck"]["failedAfter"] = json!(3);
        let created = app.create_ok(&admin, &body).await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        post(&app, &admin, &id, "submit", None).await;
        ids.push(id);
    }
    let status = |id: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let body: Value = app
                .get(&admin, &format!("/api/v1/integrations/{id}"))
                .await
                .json()
                .await
                .unwrap();
            body["status"].as_str().unwrap_or_default().to_owned()
        }
    };
    for id in &ids {
        eventually("active after submit", Duration::from_secs(20), || {
            let id = id.clone();
            async move { status(id).await == "active" }
        })
        .await;
    }
    // A real incident: registry-eu fails (degraded, then failed) and recovers.
    flaky.set(Mode::Failing);
    eventually("registry-eu failed", Duration::from_secs(30), || {
        let id = ids[0].clone();
        async move { status(id).await == "failed" }
    })
    .await;
    flaky.set(Mode::Healthy);
    eventually("registry-eu recovered", Duration::from_secs(30), || {
        let id = ids[0].clone();
        async move { status(id).await == "active" }
    })
    .await;

    let registry: Uuid = ids[0].parse().unwrap();
    let runners: Uuid = ids[1].parse().unwrap();
    let mut rows = Vec::new();
    for ago in 1..=89 {
        // registry-eu: an outage 3 days ago, a degraded day 10 days ago.
        let failures = match ago {
            3 => 200,
            10 => 20,
            _ => 0,
        };
        rows.push((registry, ago, 1440 - failures, failures));
        // ci-runners: only the last 30 days have data (it is younger).
        if ago <= 29 {
            rows.push((runners, ago, 1440, 0));
        }
    }
    backdate(&app, &rows).await;
    configure(
        &app,
        "acme",
        json!({"enabled": true, "public": true, "title": "Acme integrations",
               "description": "Health of the services our pipelines depend on",
               "selector": {"tags": ["public"]}}),
    )
    .await;
    let ids = [ids[0].clone(), ids[1].clone(), ids[2].clone()];
    (app, steady, flaky, ids)
}

async fn summary_comes_from_checks_transitions_and_rollups(backend: Backend) {
    let (app, _steady, _flaky, _ids) = seeded_page(backend).await;
    let (status, summary) = fetch(&app, "/status/acme/summary.json", None).await;
    assert_eq!(status, 200, "{summary}");
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["overall"], "operational", "{summary}");
    let component = |name: &str| component(&summary, name);
    let registry = component("registry-eu");
    let runners = component("ci-runners");
    let store = component("artifact-store");
    for c in [&registry, &runners, &store] {
        assert_eq!(c["state"], "operational");
        assert_eq!(c["days"].as_array().unwrap().len(), 90, "{c}");
        let today = &c["days"][89];
        assert_eq!(
            today["date"],
            Utc::now().date_naive().to_string(),
            "the last cell is today"
        );
    }
    let day = |c: &Value, ago: usize| c["days"][89 - ago]["state"].as_str().unwrap().to_owned();
    assert_eq!(day(&registry, 3), "outage");
    assert_eq!(day(&registry, 10), "degraded");
    assert_eq!(day(&registry, 40), "operational");
    assert_eq!(day(&registry, 89), "operational");
    assert_eq!(day(&runners, 29), "operational");
    assert_eq!(day(&runners, 30), "no_data");
    assert_eq!(day(&store, 1), "no_data", "no backdated history");
    // Today's cell counts today's real checks: registry-eu failed some of them.
    let today = registry["days"][89]["uptime"].as_f64().unwrap();
    assert!(today > 0.0 && today < 1.0, "{registry}");
    assert_eq!(store["uptime"]["24h"], 1.0);
    let registry_90d = registry["uptime"]["90d"].as_f64().unwrap();
    let backdated = 1.0 - 220.0 / (89.0 * 1440.0);
    assert!(
        registry_90d < backdated && registry_90d > backdated - 0.001,
        "{registry_90d} vs {backdated}"
    );
    assert_eq!(runners["uptime"]["90d"], 1.0);
    // The incident, derived from the monitor's transitions: degraded, then failed, recovered.
    let incidents = summary["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{summary}");
    let incident = &incidents[0];
    assert_eq!(incident["integration"], "registry-eu");
    assert_eq!(incident["worstState"], "outage");
    assert_eq!(incident["startedBefore"], false);
    assert!(incident["endedAt"].is_string());
    assert!(incident["durationSeconds"].as_i64().unwrap() >= 1);
    assert_eq!(summary["upcomingMaintenance"], json!([]));
}

/// The page with 100 integrations, each with 90 days of history (some bad days among them),
/// stays under 200 KB uncompressed.
async fn a_hundred_integrations_fit_in_200_kb(backend: Backend) {
    let app = spawn_monitoring_app(backend).await;
    let admin = app.admin("acme");
    let target = Target::start().await;
    let mut rows = Vec::new();
    for index in 0..100 {
        let name = format!("integration-with-a-realistic-name-{index:03}");
        let created = app
            .create_ok(&admin, &http_integration(&name, &target.url, 3600, 5))
            .await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        post(&app, &admin, &id, "submit", None).await;
        let id: Uuid = id.parse().unwrap();
        for ago in 1..=89 {
            let failures = if (ago + index) % 17 == 0 { 300 } else { 0 };
            rows.push((id, ago, 1440 - failures, failures));
        }
    }
    backdate(&app, &rows).await;
    configure(
        &app,
        "acme",
        json!({"enabled": true, "public": true, "title": "Acme"}),
    )
    .await;
    let started = std::time::Instant::now();
    let (status, html) = fetch(&app, "/status/acme", None).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(html.matches("<li class=\"c ").count(), 100);
    println!(
        "status page: 100 integrations, {} bytes, {elapsed:?}",
        html.len()
    );
    assert!(html.len() < 200_000, "{} bytes", html.len());
}

catalogd_testkit::both_backends!(
    config_is_stored_validated_and_scoped,
    who_may_see_a_page,
    pages_show_only_their_tenant_and_nothing_secret,
    summary_comes_from_checks_transitions_and_rollups,
    a_hundred_integrations_fit_in_200_kb,
);
