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
