//! Bad input: a table of requests that must each get a 4xx problem with its stable code,
//! never a 5xx, never an echo of a secret, and never a change to what is stored.

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{integration, problem, spawn_app, Backend, TestApp};

enum Body {
    Json(Value),
    Raw(&'static str, String),
    None,
}

struct Case {
    what: &'static str,
    method: Method,
    /// `{id}` is replaced by the baseline integration's id.
    path: &'static str,
    body: Body,
    status: u16,
    code: &'static str,
}

/// A valid body with one field replaced (or removed, for `Value::Null` on `baseUrl`).
fn with(field: &str, value: Value) -> Body {
    let mut body = integration("case");
    body["authRef"] = json!("ref://prod/harbor/robot");
    if value.is_null() {
        body.as_object_mut().unwrap().remove(field);
    } else {
        body[field] = value;
    }
    Body::Json(body)
}

fn create(what: &'static str, body: Body, status: u16, code: &'static str) -> Case {
    Case {
        what,
        method: Method::POST,
        path: "/api/v1/integrations",
        body,
        status,
        code,
    }
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "a": inner }))
}

fn cases() -> Vec<Case> {
    let long_url = format!("https://h.example.com/{}", "a".repeat(2100));
    let many_tags: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let get = |what, path, status, code| Case {
        what,
        method: Method::GET,
        path,
        body: Body::None,
        status,
        code,
    };
    vec![
        create("empty name", with("name", json!("")), 422, "invalid_name"),
        create(
            "129-char name",
            with("name", json!("n".repeat(129))),
            422,
            "invalid_name",
        ),
        create(
            "NUL in name",
            with("name", json!("bad\u{0}name")),
            422,
            "invalid_name",
        ),
        create(
            "tab in name",
            with("name", json!("tab\tname")),
            422,
            "invalid_name",
        ),
        create(
            "newline in name",
            with("name", json!("line\nbreak")),
            422,
            "invalid_name",
        ),
        create(
            "DEL in name",
            with("name", json!("del\u{7f}")),
            422,
            "invalid_name",
        ),
        create(
            "C1 control in name",
            with("name", json!("nel\u{85}x")),
            422,
            "invalid_name",
        ),
        create(
            "leading space in name",
            with("name", json!(" padded")),
            422,
            "invalid_name",
        ),
        create(
            "number as name",
            with("name", json!(42)),
            400,
            "invalid_body",
        ),
        create(
            "unknown type",
            with("type", json!("database")),
            422,
            "unknown_type",
        ),
        create("empty type", with("type", json!("")), 422, "unknown_type"),
        // The seed's spellings (`Registry`, `HARBOR`) are accepted; these are not spellings.
        create(
            "type with a space",
            with("type", json!("Regi stry")),
            422,
            "unknown_type",
        ),
        create(
            "type in the plural",
            with("type", json!("Registries")),
            422,
            "unknown_type",
        ),
        create(
            "unknown provider",
            with("provider", json!("nexus-9000")),
            422,
            "unknown_provider",
        ),
        create(
            "provider with a space",
            with("provider", json!("HAR BOR")),
            422,
            "unknown_provider",
        ),
        create(
            "ftp URL",
            with("baseUrl", json!("ftp://h.example.com")),
            422,
            "invalid_base_url",
        ),
        create(
            "URL with user and password",
            with("baseUrl", json!("https://user:pass@h.example.com")),
            422,
            "invalid_base_url",
        ),
        create(
            "URL with user",
            with("baseUrl", json!("https://user@h.example.com")),
            422,
            "invalid_base_url",
        ),
        create(
            "not a URL",
            with("baseUrl", json!("not a url")),
            422,
            "invalid_base_url",
        ),
        create(
            "javascript URL",
            with("baseUrl", json!("javascript:alert(1)")),
            422,
            "invalid_base_url",
        ),
        create(
            "file URL",
            with("baseUrl", json!("file:///etc/passwd")),
            422,
            "invalid_base_url",
        ),
        create(
            "URL without host",
            with("baseUrl", json!("https://")),
            422,
            "invalid_base_url",
        ),
        create(
            "URL with fragment",
            with("baseUrl", json!("https://h.example.com/#x")),
            422,
            "invalid_base_url",
        ),
        create(
            "overlong URL",
            with("baseUrl", json!(long_url)),
            422,
            "invalid_base_url",
        ),
        create(
            "missing URL for harbor",
            with("baseUrl", Value::Null),
            422,
            "base_url_required",
        ),
        create(
            "authRef not a ref",
            with("authRef", json!("s3cr3t-t0ken")),
            422,
            "invalid_auth_ref",
        ),
        create(
            "authRef with two segments",
            with("authRef", json!("ref://scope/provider")),
            422,
            "invalid_auth_ref",
        ),
        create(
            "authRef with four segments",
            with("authRef", json!("ref://a/b/c/d")),
            422,
            "invalid_auth_ref",
        ),
        create(
            "authRef with empty segment",
            with("authRef", json!("ref://a//c")),
            422,
            "invalid_auth_ref",
        ),
        create(
            "authRef with dot-dot",
            with("authRef", json!("ref://../b/c")),
            422,
            "invalid_auth_ref",
        ),
        create(
            "authRef with space",
            with("authRef", json!("ref://a b/c/d")),
            422,
            "invalid_auth_ref",
        ),
        create(
            "password in configuration",
            with("configuration", json!({"password": "hunter2-canary"})),
            422,
            "raw_secret",
        ),
        create(
            "token in configuration",
            with("configuration", json!({"apiToken": "hunter2-canary"})),
            422,
            "raw_secret",
        ),
        create(
            "nested client secret",
            with(
                "configuration",
                json!({"oauth": {"client_secret": "hunter2-canary"}}),
            ),
            422,
            "raw_secret",
        ),
        create(
            "authorization header",
            with(
                "configuration",
                json!({"headers": {"Authorization": "Bearer hunter2-canary"}}),
            ),
            422,
            "raw_secret",
        ),
        create(
            "PEM private key",
            with(
                "configuration",
                json!({"cert": "-----BEGIN RSA PRIVATE KEY-----\nhunter2-canary\n-----END RSA PRIVATE KEY-----"}),
            ),
            422,
            "raw_secret",
        ),
        create(
            "credentials in a configured URL",
            with(
                "configuration",
                json!({"mirror": "https://u:hunter2-canary@m.example.com"}),
            ),
            422,
            "raw_secret",
        ),
        create(
            "secret in an array",
            with(
                "configuration",
                json!({"items": [{"privateKey": "hunter2-canary"}]}),
            ),
            422,
            "raw_secret",
        ),
        create(
            "configuration is a string",
            with("configuration", json!("x")),
            422,
            "invalid_configuration",
        ),
        create(
            "NUL in configuration",
            with("configuration", json!({"x": "nul\u{0}"})),
            422,
            "invalid_configuration",
        ),
        create(
            "configuration nested too deep",
            with("configuration", nested(20)),
            422,
            "invalid_configuration",
        ),
        create(
            "environment with space",
            with("environment", json!("prod env")),
            422,
            "invalid_environment",
        ),
        create(
            "empty environment",
            with("environment", json!("")),
            422,
            "invalid_environment",
        ),
        create(
            "duplicate tags",
            with("tags", json!(["a", "a"])),
            422,
            "invalid_tags",
        ),
        create(
            "tag with space",
            with("tags", json!(["has space"])),
            422,
            "invalid_tags",
        ),
        create(
            "too many tags",
            with("tags", json!(many_tags)),
            422,
            "invalid_tags",
        ),
        create("empty tag", with("tags", json!([""])), 422, "invalid_tags"),
        create(
            "empty owner",
            with("ownerId", json!("")),
            422,
            "invalid_owner",
        ),
        create(
            "overlong description",
            with("description", json!("d".repeat(3000))),
            422,
            "invalid_description",
        ),
        create(
            "interval zero",
            with("healthCheck", json!({"intervalSeconds": 0})),
            422,
            "invalid_health_check",
        ),
        create(
            "timeout above interval",
            with(
                "healthCheck",
                json!({"intervalSeconds": 10, "timeoutSeconds": 11}),
            ),
            422,
            "invalid_health_check",
        ),
        create(
            "timeout above the default interval",
            with("healthCheck", json!({"timeoutSeconds": 61})),
            422,
            "invalid_health_check",
        ),
        create(
            "failed before degraded",
            with("healthCheck", json!({"degradedAfter": 5, "failedAfter": 3})),
            422,
            "invalid_health_check",
        ),
        create(
            "recover after zero",
            with("healthCheck", json!({"recoverAfter": 0})),
            422,
            "invalid_health_check",
        ),
        create(
            "negative interval",
            with("healthCheck", json!({"intervalSeconds": -1})),
            400,
            "invalid_body",
        ),
        create(
            "unknown healthCheck key",
            with("healthCheck", json!({"bogus": 1})),
            400,
            "invalid_body",
        ),
        create(
            "unknown top-level field",
            with("statuss", json!("active")),
            400,
            "invalid_body",
        ),
        create("array body", Body::Json(json!([])), 400, "invalid_body"),
        create(
            "malformed JSON",
            Body::Raw("application/json", "{\"name\":".into()),
            400,
            "invalid_json",
        ),
        create(
            "text body",
            Body::Raw("text/plain", "name=x".into()),
            415,
            "unsupported_media_type",
        ),
        create(
            "body over the limit",
            with("description", json!("d".repeat(70 * 1024))),
            413,
            "payload_too_large",
        ),
        get(
            "limit zero",
            "/api/v1/integrations?limit=0",
            400,
            "invalid_limit",
        ),
        get(
            "limit above 500",
            "/api/v1/integrations?limit=501",
            400,
            "invalid_limit",
        ),
        get(
            "limit not a number",
            "/api/v1/integrations?limit=ten",
            400,
            "invalid_limit",
        ),
        get(
            "garbage cursor",
            "/api/v1/integrations?cursor=!!!",
            400,
            "invalid_cursor",
        ),
        get(
            "forged cursor",
            "/api/v1/integrations?cursor=eyJ4IjoxfQ",
            400,
            "invalid_cursor",
        ),
        get(
            "unknown status filter",
            "/api/v1/integrations?status=sleeping",
            400,
            "invalid_filter",
        ),
        get(
            "unknown type filter",
            "/api/v1/integrations?type=db",
            400,
            "invalid_filter",
        ),
        get(
            "unknown query parameter",
            "/api/v1/integrations?bogus=1",
            400,
            "invalid_query",
        ),
        get(
            "id that is not a uuid",
            "/api/v1/integrations/not-a-uuid",
            404,
            "not_found",
        ),
        get("unknown route", "/api/v1/nope", 404, "not_found"),
        get(
            "audit limit above 500",
            "/api/v1/audit?limit=9999",
            400,
            "invalid_limit",
        ),
        get(
            "audit garbage cursor",
            "/api/v1/audit?cursor=%%%",
            400,
            "invalid_cursor",
        ),
        Case {
            what: "delete on the collection",
            method: Method::DELETE,
            path: "/api/v1/integrations",
            body: Body::None,
            status: 405,
            code: "method_not_allowed",
        },
        Case {
            what: "PUT without version",
            method: Method::PUT,
            path: "/api/v1/integrations/{id}",
            body: with("name", json!("x")),
            status: 428,
            code: "version_required",
        },
        Case {
            what: "PUT with another id",
            method: Method::PUT,
            path: "/api/v1/integrations/{id}",
            body: Body::Json(json!({
            "integrationId": "00000000-0000-0000-0000-000000000001", "version": 1,
            "name": "x", "type": "registry", "provider": "harbor", "baseUrl": "https://h.example.com"})),
            status: 422,
            code: "id_mismatch",
        },
        Case {
            what: "PUT with a bad field",
            method: Method::PUT,
            path: "/api/v1/integrations/{id}",
            body: Body::Json(json!({
            "version": 1, "name": "x", "type": "registry", "provider": "harbor", "baseUrl": "gopher://h"})),
            status: 422,
            code: "invalid_base_url",
        },
    ]
}

async fn send(app: &TestApp, token: &str, case: &Case, id: &str) -> reqwest::Response {
    let path = case.path.replace("{id}", id);
    let request = app.request(case.method.clone(), &path, Some(token));
    let request = match &case.body {
        Body::Json(v) => request.json(v),
        Body::Raw(content_type, text) => request
            .header("content-type", *content_type)
            .body(text.clone()),
        Body::None => request,
    };
    request.send().await.unwrap()
}

async fn bad_input_gets_a_4xx_with_its_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let baseline = app.create_ok(&admin, &integration("baseline")).await;
    let id = baseline["integrationId"].as_str().unwrap();
    let cases = cases();
    assert!(cases.len() >= 40);
    for case in &cases {
        let response = send(&app, &admin, case, id).await;
        let (status, code, body) = problem(response).await;
        assert_eq!(
            (status, code.as_str()),
            (case.status, case.code),
            "{}: {body}",
            case.what
        );
        assert!(
            !body.to_string().contains("hunter2-canary"),
            "{} echoed a secret: {body}",
            case.what
        );
        if status == 422 {
            let errors = body["errors"].as_array().expect("422 lists field errors");
            assert!(
                errors
                    .iter()
                    .any(|e| e["code"] == case.code && e["field"].is_string()),
                "{}: {body}",
                case.what
            );
        }
    }
    // Nothing was created or changed by any of them.
    let all = app.list_all(&admin, "", 500).await;
    assert_eq!(all, vec![baseline.clone()]);
}

async fn every_field_error_is_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"name": "", "type": "db", "provider": "nope", "baseUrl": "ftp://x", "tags": ["a", "a"]});
    let (status, code, body) = problem(app.create(&app.admin("acme"), &body).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_name"));
    let mut codes: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "invalid_base_url",
            "invalid_name",
            "invalid_tags",
            "unknown_provider",
            "unknown_type"
        ]
    );
}

async fn edge_values_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin("acme");
    let ok = [
        json!({"name": "é".repeat(128), "type": "host", "provider": "in-memory"}),
        json!({"name": "名前 with spaces inside", "type": "feed", "provider": "http", "baseUrl": "http://feed.example.com:8080/path?q=1"}),
        json!({"name": "refs-in-config", "type": "ci", "provider": "jenkins", "baseUrl": "https://ci.example.com",
               "configuration": {"password": "ref://ci/jenkins/api-token", "tokenTtl": null, "user": "robot"}}),
        json!({"name": "hc", "type": "scm", "provider": "gitea", "baseUrl": "https://git.example.com",
               "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1, "degradedAfter": 1, "failedAfter": 1, "recoverAfter": 1}}),
    ];
    for body in ok {
        app.create_ok(&admin, &body).await;
    }
}

/// A chunked body without Content-Length is limited too.
async fn chunked_body_over_the_limit_is_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin("acme");
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/integrations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = "x".repeat(16 * 1024);
    // Up to 1 MiB; the server may close the connection as soon as the limit is crossed.
    for _ in 0..64 {
        let frame = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if stream.write_all(frame.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
}

catalogd_testkit::both_backends!(
    bad_input_gets_a_4xx_with_its_code,
    every_field_error_is_reported,
    edge_values_are_accepted,
    chunked_body_over_the_limit_is_413,
);
