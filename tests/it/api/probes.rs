//! The daemon's own probes and the generated OpenAPI document.

use serde_json::Value;

use crate::helpers::{spawn_app, Backend};

async fn healthz_and_readyz(backend: Backend) {
    let app = spawn_app(backend).await;
    let healthz = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    let body: Value = readyz.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["engine"], "running");
    assert_eq!(
        body["checks"]["actors"], 0,
        "no integration is monitored yet"
    );
}

async fn openapi_lists_every_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expect = [
        ("/api/v1/integrations", &["get", "post"][..]),
        ("/api/v1/integrations/{id}", &["get", "put", "delete"][..]),
        ("/api/v1/audit", &["get"][..]),
        ("/healthz", &["get"][..]),
        ("/readyz", &["get"][..]),
    ];
    for (path, methods) in expect {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()));
        for method in methods {
            assert!(item.get(*method).is_some(), "{method} {path}");
        }
    }
    assert!(doc["components"]["securitySchemes"]
        .as_object()
        .is_some_and(|s| !s.is_empty()));
    // The served document is this daemon's contract: its providers, which of them need a
    // baseUrl, the scope of each operation, the statuses an operation can answer.
    let spec = &doc["components"]["schemas"]["SpecRequest"];
    let providers: Vec<&str> = spec["properties"]["provider"]["x-canonical-values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for provider in [
        "http",
        "tcp",
        "harbor",
        "github",
        "in-memory",
        "bitbucket",
        "gitlab-ci",
    ] {
        assert!(providers.contains(&provider), "{provider} in {providers:?}");
    }
    // The provider's pattern takes the seed's spellings of exactly those names; so does the
    // rule that tcp and in-memory need no baseUrl.
    let matches = |schema: &serde_json::Value, value: &str| {
        jsonschema::draft202012::new(schema)
            .unwrap()
            .is_valid(&serde_json::json!(value))
    };
    let provider = &spec["properties"]["provider"];
    for (value, valid) in [
        ("harbor", true),
        ("GitHubApp", true),
        ("in_memory", true),
        ("git hub", false),
        ("nope", false),
    ] {
        assert_eq!(matches(provider, value), valid, "{value}");
    }
    let without_base_url = &spec["anyOf"][0]["properties"]["provider"];
    for (value, valid) in [("tcp", true), ("InMemory", true), ("http", false)] {
        assert_eq!(matches(without_base_url, value), valid, "{value}");
    }
    assert_eq!(spec["additionalProperties"], false);
    let create = &paths["/api/v1/integrations"]["post"];
    assert_eq!(create["x-required-scope"], "integrations.admin");
    let statuses: Vec<&String> = create["responses"].as_object().unwrap().keys().collect();
    assert_eq!(
        statuses,
        ["201", "400", "401", "403", "409", "413", "415", "422", "429", "503"]
    );
    let audit_entry = &doc["components"]["schemas"]["AuditEntry"]["properties"];
    assert_eq!(
        audit_entry["before"]["type"],
        serde_json::json!(["object", "null"])
    );
}

catalogd_testkit::both_backends!(healthz_and_readyz, openapi_lists_every_route);
