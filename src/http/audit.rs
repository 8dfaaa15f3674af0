//! The tenant's audit trail over REST (`GET /api/v1/audit`).

use axum::extract::State;
use axum::Json;

use super::error::Problem;
use super::extract::{use_case, Caller, QueryParams};
use super::route::Route;
use crate::app::audit::AuditParams;
use crate::app::cursor::PageBody;
use crate::app::{App, AppError};
use crate::store::AuditEntry;

pub fn routes() -> Vec<Route> {
    vec![Route::get("/api/v1/audit", list).also_at(&["/api/v1/audit/"])]
}

/// List the caller's tenant's audit entries in chain order.
#[utoipa::path(
    get,
    operation_id = "listAudit",
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of audit entries", body = PageBody<AuditEntry>),
        (status = 400, description = "invalid_query, invalid_limit, invalid_filter or invalid_cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    )
)]
pub async fn list(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Audit>,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Json<PageBody<AuditEntry>>, AppError> {
    app.audit(&principal, params).await.map(Json)
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use super::super::test_support::TestApp;

    const AUDIT: &str = "/api/v1/audit";

    #[tokio::test]
    async fn pages_filters_and_stays_in_the_tenant() {
        let app = TestApp::new().await;
        let admin = app.admin("acme");
        let first = app.create("acme", "first").await;
        app.create("acme", "second").await;
        app.create("globex", "foreign").await;
        let uri = format!(
            "/api/v1/integrations/{}",
            first["integrationId"].as_str().unwrap()
        );
        let deleted = app.call(Method::DELETE, &uri, Some(&admin), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);

        let actions = app
            .all_pages(&format!("{AUDIT}?limit=1"), &admin, "action")
            .await;
        assert_eq!(
            actions,
            [
                "integration.create",
                "integration.create",
                "integration.delete"
            ]
        );
        let tenants = app
            .all_pages(&format!("{AUDIT}?limit=2"), &admin, "tenantId")
            .await;
        assert_eq!(tenants, ["acme"; 3]);
        let filter = format!(
            "{AUDIT}?integrationId={}&limit=500",
            first["integrationId"].as_str().unwrap()
        );
        let about_first = app.all_pages(&filter, &admin, "action").await;
        assert_eq!(about_first, ["integration.create", "integration.delete"]);
        let default_page = app.call(Method::GET, AUDIT, Some(&admin), None).await;
        assert_eq!(default_page.item_fields("sequence"), ["1", "2", "3"]);
        assert!(default_page.body["nextCursor"].is_null());
    }

    #[tokio::test]
    async fn needs_admin_and_checks_its_parameters() {
        let app = TestApp::new().await;
        let reader = app
            .call(Method::GET, AUDIT, Some(&app.reader("acme")), None)
            .await;
        reader.assert_problem(StatusCode::FORBIDDEN, "forbidden");
        let admin = app.admin("acme");
        for (query, code) in [
            ("integrationId=nope", "invalid_filter"),
            ("limit=0", "invalid_limit"),
            ("limit=501", "invalid_limit"),
            ("cursor=%%%", "invalid_cursor"),
            ("cursor=e30", "invalid_cursor"),
            ("integration_id=x", "invalid_query"),
        ] {
            let response = app
                .call(Method::GET, &format!("{AUDIT}?{query}"), Some(&admin), None)
                .await;
            response.assert_problem(StatusCode::BAD_REQUEST, code);
        }
    }
}
