//! The audit trail: one entry per change with actor, action, target and before/after, read
//! through `GET /api/v1/audit`, and `catalogd audit verify` catching tampering on both backends.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{integration, spawn_app, Backend, TestApp};

async fn audit_entries(app: &TestApp, tenant: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/audit?limit=2{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let response = app.get(&app.admin(tenant), &path).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

async fn every_change_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.token("acme", "alice", &["integrations.admin"]);
    let created = app.create_ok(&alice, &integration("audited")).await;
    let id = created["integrationId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/integrations/{id}");
    let mut body = integration("audited-renamed");
    body["version"] = json!(1);
    let bob = app.token("acme", "bob", &["integrations.admin"]);
    let response = app
        .request(Method::PUT, &path, Some(&bob))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .request(Method::DELETE, &path, Some(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // Another integration and another tenant, which must not show up in the filter below.
    app.create_ok(&alice, &integration("other")).await;
    app.create_ok(&app.admin("globex"), &integration("audited"))
        .await;

    let entries = audit_entries(&app, "acme", &format!("&integrationId={id}")).await;
    let summary: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["tenantId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("integration.create", "alice", "acme"),
            ("integration.update", "bob", "acme"),
            ("integration.delete", "alice", "acme"),
        ]
    );
    assert_eq!(entries[0]["before"], Value::Null);
    assert_eq!(entries[0]["after"]["name"], "audited");
    assert_eq!(entries[1]["before"]["name"], "audited");
    assert_eq!(entries[1]["after"]["name"], "audited-renamed");
    assert_eq!(entries[2]["after"], Value::Null);
    for e in &entries {
        assert_eq!(e["targetId"], id.as_str());
        assert!(e["occurredAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    }
    // The chain links: each entry's prevHash is the previous entry's hash.
    let all = audit_entries(&app, "acme", "").await;
    assert_eq!(all.len(), 4);
    for pair in all.windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"]);
        assert_eq!(
            pair[1]["sequence"].as_i64().unwrap(),
            pair[0]["sequence"].as_i64().unwrap() + 1
        );
    }
    // Readers may not see the audit trail.
    let response = app.get(&app.reader("acme"), "/api/v1/audit").await;
    assert_eq!(response.status(), 403);
}

/// Runs `catalogd audit verify` against the app's database, as an operator would.
pub(super) fn verify(app: &TestApp) -> (i32, String) {
    let (code, stdout, stderr) = app.cli(&["audit", "verify"]);
    (code, format!("{stdout}{stderr}"))
}

/// Runs raw SQL as an attacker with database access would, after switching off the
/// append-only triggers.
async fn tamper(app: &TestApp, backend: Backend, statements: &[&str]) {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            let triggers: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert!(!triggers.is_empty(), "audit_log has append-only triggers");
            for (name,) in triggers {
                sqlx::query(&format!("DROP TRIGGER \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER USER")
                .execute(&mut conn)
                .await
                .unwrap();
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }
}

async fn app_with_history(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    for i in 0..4 {
        app.create_ok(&admin, &integration(&format!("i{i}"))).await;
    }
    app.create_ok(&app.admin("globex"), &integration("g")).await;
    let (code, text) = verify(&app);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("intact: 5 entries across 2 tenants"),
        "{text}"
    );
    app
}

async fn verify_detects_tampering(backend: Backend) {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "edit",
            &["UPDATE audit_log SET actor = 'mallory' WHERE tenant_id = 'acme' AND sequence = 2"],
            "entry #2",
        ),
        (
            "delete a middle entry",
            &["DELETE FROM audit_log WHERE tenant_id = 'acme' AND sequence = 2"],
            "entry #3",
        ),
        (
            "delete the last entry",
            &["DELETE FROM audit_log WHERE tenant_id = 'acme' AND sequence = 4"],
            "entry #4",
        ),
        (
            "reorder",
            &[
                "UPDATE audit_log SET sequence = 100 WHERE tenant_id = 'acme' AND sequence = 2",
                "UPDATE audit_log SET sequence = 2 WHERE tenant_id = 'acme' AND sequence = 3",
                "UPDATE audit_log SET sequence = 3 WHERE tenant_id = 'acme' AND sequence = 100",
            ],
            "entry #2",
        ),
    ];
    for (what, statements, names) in cases {
        let app = app_with_history(backend).await;
        tamper(&app, backend, statements).await;
        let (code, text) = verify(&app);
        assert_eq!(code, 2, "{what}: {text}");
        assert!(
            text.contains("BROKEN") && text.contains("\"acme\"") && text.contains(names),
            "{what}: {text}"
        );
        // The untouched tenant still verifies on its own.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_catalogd"))
            .args(["audit", "verify", "--tenant", "globex"])
            .current_dir(app.dir.path())
            .env("CATALOGD__DATABASE__URL", &app.database_url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

async fn audit_log_refuses_changes(backend: Backend) {
    let app = app_with_history(backend).await;
    let statements = [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ];
    for sql in statements {
        let result = match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&mut conn).await.map(|_| ())
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&app.database_url)
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&mut conn).await.map(|_| ())
            }
        };
        assert!(result.is_err(), "{sql} was allowed");
    }
    if backend == Backend::Postgres {
        let mut conn = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        assert!(sqlx::query("TRUNCATE audit_log")
            .execute(&mut conn)
            .await
            .is_err());
    }
    let (code, text) = verify(&app);
    assert_eq!(code, 0, "{text}");
}

catalogd_testkit::both_backends!(
    every_change_is_audited,
    verify_detects_tampering,
    audit_log_refuses_changes
);
