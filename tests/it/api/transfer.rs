//! Export and import (DESIGN §12): a round trip into another tenant of an empty database with
//! mapped AuthRefs and another environment, through the CLI as an operator promotes; the plan
//! over REST (dry run, merge, replace, YAML); all or nothing with every item's errors named.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, Backend, TestApp};

/// One integration per provider, with every user-settable field set on some of them.
fn catalog() -> Vec<Value> {
    catalogd::providers::BUILTIN
        .iter()
        .enumerate()
        .map(|(n, provider)| {
            let kind = ["registry", "scm", "ci", "host", "feed", "artifact"][n % 6];
            let mut item = json!({
                "name": format!("{provider}-{n}"),
                "type": kind,
                "provider": provider,
                "environment": "dev",
                "tags": [format!("team:{}", n % 3), "promoted"],
            });
            if !matches!(*provider, "tcp" | "in-memory") {
                item["baseUrl"] = json!(format!("https://{provider}.example.com"));
            }
            if n % 2 == 0 {
                item["description"] = json!(format!("the {provider} integration"));
                item["authRef"] = json!("ref://vault/dev/token");
                item["ownerId"] = json!("platform-team");
                item["healthCheck"] =
                    json!({"intervalSeconds": 120, "timeoutSeconds": 5, "degradedAfter": 2});
            }
            if n % 4 == 1 {
                // By name: ids differ between environments.
                item["dependsOn"] = json!(["http-0"]);
            }
            if *provider == "http" {
                item["configuration"] = json!({"path": "/healthz", "expectStatus": 200});
            }
            item
        })
        .collect()
}

async fn export(app: &TestApp, token: &str) -> Value {
    let response = app
        .request(Method::GET, "/api/v1/export", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn import(app: &TestApp, token: &str, query: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, &format!("/api/v1/import{query}"), Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn audit_count(app: &TestApp, token: &str) -> usize {
    let page: Value = app
        .request(Method::GET, "/api/v1/audit?limit=500", Some(token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().len()
}

async fn a_promotion_round_trips_through_export_and_import(backend: Backend) {
    let dev = spawn_app(backend).await;
    let admin = dev.admin("acme");
    // The REST API takes dependencies by id; the document names them.
    let mut ids: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    for item in catalog() {
        let mut body = item.clone();
        if let Some(names) = item["dependsOn"].as_array() {
            body["dependsOn"] = names
                .iter()
                .map(|n| ids[n.as_str().unwrap()].clone())
                .collect();
        }
        let created = dev.create_ok(&admin, &body).await;
        ids.insert(
            item["name"].as_str().unwrap().to_owned(),
            created["integrationId"].clone(),
        );
    }
    let exported = export(&dev, &admin).await;
    assert_eq!(exported["apiVersion"], "catalogd/v1");
    assert_eq!(exported["kind"], "IntegrationList");
    let items = exported["items"].as_array().unwrap();
    assert_eq!(items.len(), catalogd::providers::BUILTIN.len());
    for item in items {
        for server_set in [
            "integrationId",
            "tenantId",
            "status",
            "version",
            "createdAt",
        ] {
            assert!(item.get(server_set).is_none(), "{server_set} in {item}");
        }
    }

    // Into an empty database, another tenant, mapped AuthRefs, another environment.
    let staging = spawn_app(backend).await;
    let file = staging.dir.path().join("dev.yaml");
    let (code, yaml, _) = dev.cli(&["export", "--tenant", "acme", "--format", "yaml"]);
    assert_eq!(code, 0);
    std::fs::write(&file, &yaml).unwrap();
    let file = file.to_str().unwrap();
    let promote = [
        "import",
        file,
        "--tenant",
        "globex",
        "--set-environment",
        "staging",
        "--map-authref",
        "ref://vault/dev/token=ref://vault/staging/token",
    ];
    let mut dry = promote.to_vec();
    dry.push("--dry-run");
    let (code, out, err) = staging.cli(&dry);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("+ ")).count(),
        items.len(),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    let globex = staging.admin("globex");
    assert_eq!(export(&staging, &globex).await["items"], json!([]));

    let (code, out, err) = staging.cli(&promote);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("imported: {} created", items.len())),
        "{out}"
    );
    let (code, again, _) = staging.cli(&["export", "--tenant", "globex", "--format", "json"]);
    assert_eq!(code, 0);
    let again: Value = serde_json::from_str(&again).unwrap();
    let expected: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut item = item.clone();
            item["environment"] = json!("staging");
            if item["authRef"] == "ref://vault/dev/token" {
                item["authRef"] = json!("ref://vault/staging/token");
            }
            item
        })
        .collect();
    assert_eq!(again["items"], json!(expected));

    // The same file again changes nothing, and says so.
    let audited = audit_count(&staging, &globex).await;
    let (code, out, _) = staging.cli(&promote);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("nothing to change: {} unchanged", items.len())),
        "{out}"
    );
    assert_eq!(audit_count(&staging, &globex).await, audited);
    // Each created integration was audited, by the CLI's actor.
    assert_eq!(audited, items.len());
}

async fn an_import_plans_merges_replaces_and_refuses_as_a_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let base = json!({"name": "keep", "type": "host", "provider": "tcp"});
    app.create_ok(&admin, &base).await;
    app.create_ok(
        &admin,
        &json!({"name": "stale", "type": "host", "provider": "tcp"}),
    )
    .await;
    let document = |items: Vec<Value>| json!({"apiVersion": "catalogd/v1", "kind": "IntegrationList", "items": items});
    let changed = json!({"name": "keep", "type": "host", "provider": "tcp", "description": "now described", "tags": ["x"]});
    let new = json!({"name": "new", "type": "registry", "provider": "harbor", "baseUrl": "https://h.example.com"});

    // Dry run in replace mode: the plan, and nothing changes.
    let before = export(&app, &admin).await;
    let response = import(
        &app,
        &admin,
        "?dryRun=true&mode=replace",
        &document(vec![changed.clone(), new.clone()]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let plan: Value = response.json().await.unwrap();
    assert_eq!(
        plan,
        json!({"created": ["new"], "updated": [{"name": "keep", "fields": ["description", "tags"]}],
               "deleted": ["stale"], "unchanged": 0, "applied": false})
    );
    assert_eq!(export(&app, &admin).await, before);

    // One bad item among good ones: every error, named, and nothing changes.
    let bad = document(vec![
        changed.clone(),
        json!({"name": "broken", "type": "registry", "provider": "harbor"}),
        json!({"name": "worse", "type": "host", "provider": "tcp", "dependsOn": ["nowhere"], "colour": "red"}),
        json!({"name": "keep", "type": "host", "provider": "tcp"}),
    ]);
    let (status, code, body) = problem(import(&app, &admin, "?mode=replace", &bad).await).await;
    assert_eq!(
        (status, code.as_str()),
        (422, "base_url_required"),
        "{body}"
    );
    let errors: Vec<(&str, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            ("/items/1/baseUrl", "base_url_required"),
            ("/items/2", "invalid_item"),
            ("/items/3/name", "invalid_name"),
        ],
        "{body}"
    );
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"broken\""),
        "{body}"
    );
    assert_eq!(export(&app, &admin).await, before);

    // For real, as YAML: merge leaves `stale` alone, replace deletes it.
    let yaml = serde_yaml::to_string(&document(vec![changed.clone(), new.clone()])).unwrap();
    let response = app
        .request(Method::POST, "/api/v1/import", Some(&admin))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let plan: Value = response.json().await.unwrap();
    assert_eq!(plan["created"], json!(["new"]));
    assert_eq!(plan["deleted"], json!([]));
    assert_eq!(plan["applied"], true);
    let names = |doc: &Value| -> Vec<String> {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&export(&app, &admin).await), ["keep", "new", "stale"]);
    let plan: Value = import(&app, &admin, "?mode=replace", &document(vec![changed, new]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plan["deleted"], json!(["stale"]));
    assert_eq!(plan["unchanged"], 2);
    assert_eq!(names(&export(&app, &admin).await), ["keep", "new"]);

    // YAML export; readers may neither export nor import.
    let yaml = app
        .request(Method::GET, "/api/v1/export", Some(&admin))
        .header("accept", "application/yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    let parsed: Value = serde_yaml::from_str(&yaml.text().await.unwrap()).unwrap();
    assert_eq!(names(&parsed), ["keep", "new"]);
    let reader = app.reader("acme");
    let (status, _, _) = problem(
        app.request(Method::GET, "/api/v1/export", Some(&reader))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
}

catalogd_testkit::both_backends!(
    a_promotion_round_trips_through_export_and_import,
    an_import_plans_merges_replaces_and_refuses_as_a_whole,
);
