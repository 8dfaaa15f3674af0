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
}

catalogd_testkit::both_backends!(healthz_and_readyz, openapi_lists_every_route);
