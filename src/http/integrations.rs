//! The integration collection and its items: list, get, create, replace and delete
//! (`/api/v1/integrations`, `/api/v1/integrations/{id}`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use super::error::Problem;
use super::extract::{use_case, Caller, IfMatch, IntegrationPath, JsonBody, QueryParams};
use super::route::Route;
use crate::app::cursor::PageBody;
use crate::app::integrations::{ListParams, UpdateRequest};
use crate::app::{App, AppError};
use crate::integration::Integration;
use crate::validation::SpecRequest;

pub const COLLECTION_PATH: &str = "/api/v1/integrations";

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(COLLECTION_PATH, list).also_at(&["/api/v1/integrations/"]),
        Route::post(COLLECTION_PATH, create).also_at(&["/api/v1/integrations/"]),
        Route::get("/api/v1/integrations/{id}", fetch),
        Route::put("/api/v1/integrations/{id}", replace),
        Route::delete("/api/v1/integrations/{id}", remove),
    ]
}

/// The resource with its version as a strong `ETag`.
pub(super) fn resource(integration: Integration) -> Response {
    let etag = format!("\"{}\"", integration.version);
    ([(header::ETAG, etag)], Json(integration)).into_response()
}

/// List the tenant's integrations, ordered by name then id.
#[utoipa::path(
    get,
    operation_id = "listIntegrations",
    path = "/api/v1/integrations",
    tag = "integrations",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of integrations", body = PageBody<Integration>),
        (status = 400, description = "invalid_query, invalid_limit, invalid_filter or invalid_cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    )
)]
pub async fn list(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::List>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Response, AppError> {
    let body = app.list(&principal, params).await?;
    // The body is already JSON (`PageBody<Integration>` as the database assembled it).
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.into_bytes(),
    )
        .into_response())
}

/// Get one integration.
#[utoipa::path(
    get,
    operation_id = "getIntegration",
    path = "/api/v1/integrations/{id}",
    tag = "integrations",
    params(("id" = Uuid, Path, description = "The integration id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The integration", body = Integration,
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    )
)]
pub async fn fetch(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Get>,
    IntegrationPath(id): IntegrationPath,
) -> Result<Response, AppError> {
    app.get(&principal, id).await.map(resource)
}

/// Create an integration, as a draft, in the caller's tenant.
#[utoipa::path(
    post,
    operation_id = "createIntegration",
    path = "/api/v1/integrations",
    tag = "integrations",
    request_body = SpecRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Integration, headers(
            ("Location" = String, description = "/api/v1/integrations/{id}"),
            ("ETag" = String, description = "The version, quoted"),
        )),
        (status = 400, description = "invalid_json or invalid_body", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 409, description = "name_taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = Problem),
        (status = 415, response = Problem),
        (status = 422, description = "Field validation; `errors` lists every invalid field. Each rule has its code (invalid_name, unknown_type, unknown_provider, base_url_required, invalid_base_url, invalid_auth_ref, raw_secret, invalid_configuration, invalid_environment, invalid_tags, invalid_owner, invalid_health_check); the top-level `code` is the first field's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Create>,
    JsonBody(request): JsonBody<SpecRequest>,
) -> Result<Response, AppError> {
    let integration = app.create(&principal, request).await?;
    let location = format!("{COLLECTION_PATH}/{}", integration.integration_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        resource(integration),
    )
        .into_response())
}

/// Replace the user-settable fields of an integration.
#[utoipa::path(
    put,
    operation_id = "replaceIntegration",
    path = "/api/v1/integrations/{id}",
    tag = "integrations",
    params(
        ("id" = Uuid, Path, description = "The integration id"),
        ("If-Match" = Option<String>, Header, description = "The expected version: `\"3\"`, `3` or `W/\"3\"` (the `ETag` of a GET). Either this header or the body's `version` is required (428 `version_required`); `*` means none; anything else never matches (409)"),
    ),
    request_body = UpdateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated integration", body = Integration,
            headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "invalid_json or invalid_body", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "version_mismatch or name_taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = Problem),
        (status = 415, response = Problem),
        (status = 422, description = "Field validation as on create, and id_mismatch (the body's integrationId names another integration)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "version_required: neither If-Match nor a body version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Update>,
    IntegrationPath(id): IntegrationPath,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, AppError> {
    app.update(&principal, id, if_match, body)
        .await
        .map(resource)
}

/// Delete an integration.
#[utoipa::path(
    delete,
    operation_id = "deleteIntegration",
    path = "/api/v1/integrations/{id}",
    tag = "integrations",
    params(
        ("id" = Uuid, Path, description = "The integration id"),
        ("If-Match" = Option<String>, Header, description = "Optional expected version: `\"3\"`, `3` or `W/\"3\"`; `*` or absent deletes any version; anything else never matches (409)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Delete>,
    IntegrationPath(id): IntegrationPath,
    IfMatch(expected_version): IfMatch,
) -> Result<StatusCode, AppError> {
    app.delete(&principal, id, expected_version).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use axum::http::{header, Method, StatusCode};
    use serde_json::{json, Value};

    use super::super::test_support::TestApp;

    const BASE: &str = "/api/v1/integrations";

    fn item(id: &Value) -> String {
        format!("{BASE}/{}", id.as_str().unwrap())
    }

    #[tokio::test]
    async fn create_get_and_etag() {
        let app = TestApp::new().await;
        let created = app.create("acme", "harbor-prod").await;
        assert_eq!(created["tenantId"], "acme");
        assert_eq!(created["createdBy"], "alice");
        assert_eq!(created["modifiedBy"], "alice");
        assert_eq!(created["status"], "draft");
        assert_eq!(created["version"], 1);
        assert_eq!(created["configuration"], json!({}));
        let id = &created["integrationId"];

        let body = json!({"name": "x", "type": "ci", "provider": "jenkins", "baseUrl": "https://ci.example.com"});
        let response = app
            .call(
                Method::POST,
                &format!("{BASE}/"),
                Some(&app.admin("acme")),
                Some(&body),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "trailing slash");
        assert_eq!(
            response.header(header::LOCATION),
            item(&response.body["integrationId"])
        );
        assert_eq!(response.header(header::ETAG), "\"1\"");

        let got = app
            .call(Method::GET, &item(id), Some(&app.reader("acme")), None)
            .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.header(header::ETAG), "\"1\"");
        assert_eq!(got.body, created);
    }

    #[tokio::test]
    async fn other_tenants_and_malformed_ids_look_like_unknown_ids() {
        let app = TestApp::new().await;
        let created = app.create("acme", "harbor-prod").await;
        let other = app.admin("globex");
        let valid = json!({"name": "x", "type": "host", "provider": "tcp"});
        let unknown = app
            .call(
                Method::GET,
                &format!("{BASE}/{}", uuid::Uuid::now_v7()),
                Some(&other),
                None,
            )
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        for uri in [
            item(&created["integrationId"]),
            format!("{BASE}/not-a-uuid"),
            format!(
                "{BASE}/{}",
                created["integrationId"].as_str().unwrap().replace('-', "")
            ),
        ] {
            let response = app.call(Method::GET, &uri, Some(&other), None).await;
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(response.body, unknown.body, "{uri}");
            let put = app
                .call_with(
                    Method::PUT,
                    &uri,
                    Some(&other),
                    Some(&valid),
                    &[("if-match", "1")],
                )
                .await;
            assert_eq!(put.status, StatusCode::NOT_FOUND, "{uri}");
            let delete = app.call(Method::DELETE, &uri, Some(&other), None).await;
            assert_eq!(delete.status, StatusCode::NOT_FOUND, "{uri}");
        }
        // Nothing was touched.
        let got = app
            .call(
                Method::GET,
                &item(&created["integrationId"]),
                Some(&app.reader("acme")),
                None,
            )
            .await;
        assert_eq!(got.body["version"], 1);
    }

    #[tokio::test]
    async fn auth_comes_first_and_scopes_are_enforced() {
        let app = TestApp::new().await;
        let created = app.create("acme", "harbor-prod").await;
        let bad_body = json!({"name": ""});
        for (method, uri, body) in [
            (Method::GET, BASE.to_owned(), None),
            (Method::GET, format!("{BASE}/not-a-uuid"), None),
            (Method::POST, BASE.to_owned(), Some(&bad_body)),
            (
                Method::PUT,
                item(&created["integrationId"]),
                Some(&bad_body),
            ),
            (Method::DELETE, item(&created["integrationId"]), None),
            (Method::GET, "/api/v1/audit".to_owned(), None),
        ] {
            for token in [None, Some("garbage"), Some("a.b.c")] {
                let response = app.call(method.clone(), &uri, token, body).await;
                response.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
                assert_eq!(response.header(header::WWW_AUTHENTICATE), "Bearer");
            }
        }
        let reader = app.reader("acme");
        let forbidden = app
            .call(Method::POST, BASE, Some(&reader), Some(&bad_body))
            .await;
        forbidden.assert_problem(StatusCode::FORBIDDEN, "forbidden");
        let nothing = app.token("acme", &[]);
        let forbidden = app.call(Method::GET, BASE, Some(&nothing), None).await;
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
        // Admin implies read.
        let listed = app
            .call(Method::GET, BASE, Some(&app.admin("acme")), None)
            .await;
        assert_eq!(listed.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn create_validation_and_conflicts() {
        let app = TestApp::new().await;
        let admin = app.admin("acme");
        let response = app
            .call(
                Method::POST,
                BASE,
                Some(&admin),
                Some(&json!({"name": " x", "type": "nope", "provider": "harbor",
                "configuration": {"password": "hunter2"}})),
            )
            .await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_name");
        let fields: Vec<&str> = response.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            ["/name", "/type", "/baseUrl", "/configuration/password"]
        );
        assert!(!response.body.to_string().contains("hunter2"));

        app.create("acme", "dup").await;
        let body = json!({"name": "dup", "type": "host", "provider": "tcp"});
        let conflict = app
            .call(Method::POST, BASE, Some(&admin), Some(&body))
            .await;
        conflict.assert_problem(StatusCode::CONFLICT, "name_taken");
        // Names are unique per tenant only.
        let other = app
            .call(Method::POST, BASE, Some(&app.admin("globex")), Some(&body))
            .await;
        assert_eq!(other.status, StatusCode::CREATED);
        // Server-set fields are not accepted on create.
        let read_only = json!({"name": "y", "type": "host", "provider": "tcp", "status": "active"});
        let refused = app
            .call(Method::POST, BASE, Some(&admin), Some(&read_only))
            .await;
        refused.assert_problem(StatusCode::BAD_REQUEST, "invalid_body");
    }

    #[tokio::test]
    async fn replace_accepts_what_get_returned() {
        let app = TestApp::new().await;
        let admin = app.admin("acme");
        let created = app.create("acme", "harbor-prod").await;
        let uri = item(&created["integrationId"]);

        let mut body = created.clone();
        body["description"] = json!("now with a description");
        let updated = app.call(Method::PUT, &uri, Some(&admin), Some(&body)).await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        assert_eq!(updated.body["version"], 2);
        assert_eq!(updated.body["description"], "now with a description");
        assert_eq!(updated.header(header::ETAG), "\"2\"");

        // The same body again carries the stale version 1.
        let stale = app.call(Method::PUT, &uri, Some(&admin), Some(&body)).await;
        stale.assert_problem(StatusCode::CONFLICT, "version_mismatch");

        // If-Match in each accepted form.
        let mut spec = json!({"name": "harbor-prod", "type": "registry", "provider": "harbor",
            "baseUrl": "https://harbor.example.com"});
        for (if_match, version) in [("\"2\"", 3), ("3", 4), ("W/\"4\"", 5)] {
            let response = app
                .call_with(
                    Method::PUT,
                    &uri,
                    Some(&admin),
                    Some(&spec),
                    &[("if-match", if_match)],
                )
                .await;
            assert_eq!(
                response.status,
                StatusCode::OK,
                "{if_match}: {}",
                response.body
            );
            assert_eq!(response.body["version"], version);
            // Optional fields absent from a full replacement are cleared.
            assert_eq!(response.body["tags"], json!([]));
        }
        for if_match in ["\"4\"", "\"abc\"", "\"5\", \"6\""] {
            let response = app
                .call_with(
                    Method::PUT,
                    &uri,
                    Some(&admin),
                    Some(&spec),
                    &[("if-match", if_match)],
                )
                .await;
            response.assert_problem(StatusCode::CONFLICT, "version_mismatch");
        }

        app.create("acme", "taken").await;
        let mut rename = spec.clone();
        rename["name"] = json!("taken");
        let taken = app
            .call_with(
                Method::PUT,
                &uri,
                Some(&admin),
                Some(&rename),
                &[("if-match", "5")],
            )
            .await;
        taken.assert_problem(StatusCode::CONFLICT, "name_taken");

        let missing = app.call(Method::PUT, &uri, Some(&admin), Some(&spec)).await;
        missing.assert_problem(StatusCode::PRECONDITION_REQUIRED, "version_required");

        spec["version"] = json!(5);
        spec["integrationId"] = json!(uuid::Uuid::now_v7());
        let mismatch = app.call(Method::PUT, &uri, Some(&admin), Some(&spec)).await;
        mismatch.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "id_mismatch");
        spec["integrationId"] = created["integrationId"].clone();
        spec["unknown"] = json!(1);
        let unknown = app.call(Method::PUT, &uri, Some(&admin), Some(&spec)).await;
        unknown.assert_problem(StatusCode::BAD_REQUEST, "invalid_body");
    }

    #[tokio::test]
    async fn delete_checks_an_optional_version() {
        let app = TestApp::new().await;
        let admin = app.admin("acme");
        let created = app.create("acme", "harbor-prod").await;
        let uri = item(&created["integrationId"]);
        let stale = app
            .call_with(
                Method::DELETE,
                &uri,
                Some(&admin),
                None,
                &[("if-match", "\"7\"")],
            )
            .await;
        stale.assert_problem(StatusCode::CONFLICT, "version_mismatch");
        let deleted = app
            .call_with(
                Method::DELETE,
                &uri,
                Some(&admin),
                None,
                &[("if-match", "\"1\"")],
            )
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let again = app.call(Method::DELETE, &uri, Some(&admin), None).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn list_filters_and_pages() {
        let app = TestApp::new().await;
        let reader = app.reader("acme");
        for name in ["c", "a", "e", "b", "d"] {
            app.create("acme", name).await;
        }
        app.create("globex", "a-foreign").await;
        let names = app
            .all_pages(&format!("{BASE}?limit=2"), &reader, "name")
            .await;
        assert_eq!(names, ["a", "b", "c", "d", "e"]);

        let filtered = app
            .call(
                Method::GET,
                &format!("{BASE}/?type=registry&status=draft&provider=harbor&tag=team:core&q=b"),
                Some(&reader),
                None,
            )
            .await;
        assert_eq!(filtered.status, StatusCode::OK);
        assert_eq!(filtered.item_fields("name"), ["b"]);
        let none = app
            .call(
                Method::GET,
                &format!("{BASE}?type=scm"),
                Some(&reader),
                None,
            )
            .await;
        assert_eq!(none.body, json!({"items": [], "nextCursor": null}));

        let long = "x".repeat(129);
        for (query, code) in [
            ("limit=0", "invalid_limit"),
            ("limit=501", "invalid_limit"),
            ("limit=abc", "invalid_limit"),
            ("type=database", "invalid_filter"),
            ("status=broken", "invalid_filter"),
            ("cursor=not-a-cursor", "invalid_cursor"),
            // {"n":"a\u0000","i":"00000000-0000-0000-0000-000000000000"}
            (
                "cursor=eyJuIjoiYVx1MDAwMCIsImkiOiIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAifQ",
                "invalid_cursor",
            ),
            ("q=a%00", "invalid_query"),
            ("bogus=1", "invalid_query"),
            ("tag=a&tag=b", "invalid_query"),
            (&format!("q={long}") as &str, "invalid_query"),
        ] {
            let response = app
                .call(Method::GET, &format!("{BASE}?{query}"), Some(&reader), None)
                .await;
            response.assert_problem(StatusCode::BAD_REQUEST, code);
        }
    }
}
