//! The tenant's audit trail (`/api/v1/audit`): hash-chained entries, newest last, paged by
//! chain sequence.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::cursor::{self, AuditCursor, PageBody};
use super::error::{ApiError, Problem};
use super::extract::{Admin, QueryParams};
use super::AppState;
use crate::store::{AuditEntry, AuditQuery};
use crate::validation;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(list))
        .route("/api/v1/audit/", get(list))
}

/// Filter and paging of the audit trail; unknown parameters are refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries about this integration (including deleted ones).
    #[param(rename = "integrationId", value_type = Option<Uuid>)]
    pub integration_id: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

fn audit_query(params: AuditParams) -> Result<AuditQuery, ApiError> {
    let integration_id = params
        .integration_id
        .as_deref()
        .map(|raw| {
            Uuid::try_parse(raw)
                .map_err(|_| ApiError::InvalidFilter("integrationId must be a UUID.".into()))
        })
        .transpose()?;
    let after = params
        .cursor
        .as_deref()
        .map(cursor::decode::<AuditCursor>)
        .transpose()?;
    Ok(AuditQuery {
        integration_id,
        after_seq: after.map(|position| position.sequence),
        limit: validation::limit(params.limit.as_deref())?,
    })
}

/// List the caller's tenant's audit entries in chain order.
#[utoipa::path(
    get,
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
    State(state): State<AppState>,
    Admin(principal): Admin,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Json<PageBody<AuditEntry>>, ApiError> {
    let query = audit_query(params)?;
    let page = state.store.list_audit(&principal.tenant_id, &query).await?;
    Ok(Json(PageBody::from_page(page, |last| AuditCursor {
        sequence: last.sequence,
    })))
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
