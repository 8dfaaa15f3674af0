//! The tenant's audit trail: hash-chained entries in chain order, paged by chain sequence,
//! optionally about one integration.

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::cursor::{self, AuditCursor, PageBody};
use super::{require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::store::{AuditEntry, AuditQuery};
use crate::validation;

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

impl App {
    /// The caller's tenant's audit entries in chain order.
    pub async fn audit(
        &self,
        principal: &Principal,
        params: AuditParams,
    ) -> Result<PageBody<AuditEntry>, AppError> {
        require(principal, UseCase::Audit)?;
        let query = audit_query(params)?;
        let page = self.store.list_audit(&principal.tenant_id, &query).await?;
        Ok(PageBody::from_page(page, |last| AuditCursor {
            sequence: last.sequence,
        }))
    }
}

fn audit_query(params: AuditParams) -> Result<AuditQuery, AppError> {
    let integration_id = params
        .integration_id
        .as_deref()
        .map(|raw| {
            Uuid::try_parse(raw)
                .map_err(|_| AppError::InvalidFilter("integrationId must be a UUID.".into()))
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
