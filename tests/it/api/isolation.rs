//! The tenant-isolation matrix: 2 tenants × every endpoint × {read, admin, no token, bad
//! token, expired token}, on own and on the other tenant's integrations. Nothing of the other
//! tenant may appear in any response.

use std::time::Duration;

use catalogd::auth::Authenticator;
use catalogd::config::AuthConfig;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{integration, spawn_app, Backend, TestApp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    Read,
    Admin,
    NoToken,
    BadToken,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    List,
    Get,
    Create,
    Put,
    Delete,
    Audit,
    AuditByIntegration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    Foreign,
}

fn expected(endpoint: Endpoint, cred: Cred, target: Target) -> u16 {
    use Endpoint::*;
    match cred {
        Cred::NoToken | Cred::BadToken | Cred::Expired => 401,
        Cred::Read => match (endpoint, target) {
            (List, _) | (Get, Target::Own) => 200,
            (Get, Target::Foreign) => 404,
            _ => 403,
        },
        Cred::Admin => match (endpoint, target) {
            (List | Audit | AuditByIntegration, _) => 200,
            (Create, _) => 201,
            (Get | Put, Target::Own) => 200,
            (Delete, Target::Own) => 204,
            (Get | Put | Delete, Target::Foreign) => 404,
        },
    }
}

/// A token with valid claims for `tenant`, signed with a key the daemon does not know.
fn forged(tenant: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = AuthConfig {
        generated_key_file: dir.path().join("other.key"),
        ..AuthConfig::default()
    };
    let other = Authenticator::from_config(&config).unwrap();
    other
        .mint(
            tenant,
            "mallory",
            &["integrations.admin".into(), "integrations.read".into()],
            Duration::from_secs(600),
            chrono::Utc::now(),
        )
        .unwrap()
}

async fn tenant_isolation_matrix(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenants = ["acme", "globex"];
    // A distinctive integration per tenant, whose id and name must never leak.
    let mut secrets = Vec::new();
    for tenant in tenants {
        let body = integration(&format!(
            "{tenant}-private-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let created = app.create_ok(&app.admin(tenant), &body).await;
        secrets.push(created);
    }

    let endpoints = [
        Endpoint::List,
        Endpoint::Get,
        Endpoint::Create,
        Endpoint::Put,
        Endpoint::Delete,
        Endpoint::Audit,
        Endpoint::AuditByIntegration,
    ];
    let creds = [
        Cred::Read,
        Cred::Admin,
        Cred::NoToken,
        Cred::BadToken,
        Cred::Expired,
    ];
    let mut checked = 0;
    for (me, tenant) in tenants.iter().enumerate() {
        let foreign = &secrets[1 - me];
        let foreign_id = foreign["integrationId"].as_str().unwrap().to_owned();
        let foreign_name = foreign["name"].as_str().unwrap().to_owned();
        for endpoint in endpoints {
            for cred in creds {
                for target in [Target::Own, Target::Foreign] {
                    let want = expected(endpoint, cred, target);
                    let (status, body) =
                        call(&app, tenant, endpoint, cred, target, &foreign_id).await;
                    assert_eq!(
                        status, want,
                        "{tenant} {endpoint:?} {cred:?} {target:?}: {body}"
                    );
                    let text = body.to_string();
                    assert!(
                        !text.contains(&foreign_id),
                        "{tenant} {endpoint:?} {cred:?} leaked the other tenant's id: {text}"
                    );
                    assert!(
                        !text.contains(&foreign_name),
                        "{tenant} {endpoint:?} {cred:?} leaked a name: {text}"
                    );
                    let other_tenant = tenants[1 - me];
                    assert!(
                        !text.contains(&format!("\"{other_tenant}")),
                        "{tenant} {endpoint:?} {cred:?} leaked the tenant: {text}"
                    );
                    checked += 1;
                }
            }
        }
        // The other tenant's integration is still there, untouched.
        let response = app
            .get(
                &app.admin(tenants[1 - me]),
                &format!("/api/v1/integrations/{foreign_id}"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let now: Value = response.json().await.unwrap();
        assert_eq!(now["version"], foreign["version"]);
    }
    assert_eq!(checked, 2 * endpoints.len() * creds.len() * 2);
}

async fn call(
    app: &TestApp,
    tenant: &str,
    endpoint: Endpoint,
    cred: Cred,
    target: Target,
    foreign_id: &str,
) -> (u16, Value) {
    let admin = app.admin(tenant);
    // Targets on the caller's own tenant are made fresh, so deletes and updates can run.
    let target_id = match target {
        Target::Foreign => foreign_id.to_owned(),
        Target::Own => {
            let body = integration(&format!("own-{}", uuid::Uuid::new_v4().simple()));
            app.create_ok(&admin, &body).await["integrationId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let token = match cred {
        Cred::Read => Some(app.reader(tenant)),
        Cred::Admin => Some(admin.clone()),
        Cred::NoToken => None,
        Cred::BadToken => Some(forged(tenant)),
        Cred::Expired => Some(app.expired(tenant)),
    };
    let item = format!("/api/v1/integrations/{target_id}");
    let request = match endpoint {
        Endpoint::List => app.request(
            Method::GET,
            "/api/v1/integrations?limit=500",
            token.as_deref(),
        ),
        Endpoint::Get => app.request(Method::GET, &item, token.as_deref()),
        Endpoint::Create => app
            .request(Method::POST, "/api/v1/integrations", token.as_deref())
            .json(&integration(&format!(
                "new-{}",
                uuid::Uuid::new_v4().simple()
            ))),
        Endpoint::Put => {
            let mut body = integration(&format!("renamed-{}", uuid::Uuid::new_v4().simple()));
            body["version"] = 1.into();
            app.request(Method::PUT, &item, token.as_deref())
                .json(&body)
        }
        Endpoint::Delete => app.request(Method::DELETE, &item, token.as_deref()),
        Endpoint::Audit => app.request(Method::GET, "/api/v1/audit?limit=500", token.as_deref()),
        Endpoint::AuditByIntegration => app.request(
            Method::GET,
            &format!("/api/v1/audit?integrationId={target_id}"),
            token.as_deref(),
        ),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 401 {
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().starts_with("Bearer")),
            Some(true)
        );
    }
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    if status >= 400 {
        assert!(body["code"].is_string(), "{body}");
    }
    (status, body)
}

catalogd_testkit::both_backends!(tenant_isolation_matrix);
