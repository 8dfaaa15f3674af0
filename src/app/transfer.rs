//! Export and import (DESIGN §12) for a principal: the admin scope, the caller's tenant, and
//! [`crate::transfer`]'s document errors as field errors naming each item.

use super::{author, require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::integration::IntegrationType;
use crate::store::ListQuery;
use crate::transfer::{self, Document, DocumentError, ImportError, Mode, PlanBody, Rewrite};

/// The filters of an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub environment: Option<String>,
    pub tag: Option<String>,
    pub kind: Option<IntegrationType>,
}

impl From<DocumentError> for AppError {
    fn from(error: DocumentError) -> Self {
        match error {
            DocumentError::Syntax("JSON", at) => AppError::InvalidJson(at),
            DocumentError::Syntax(_, at) => AppError::InvalidBody(format!("not valid YAML: {at}")),
            DocumentError::Kind => AppError::InvalidBody(DocumentError::Kind.to_string()),
            DocumentError::Items(errors) => AppError::Validation(errors),
        }
    }
}

impl From<ImportError> for AppError {
    fn from(error: ImportError) -> Self {
        match error {
            ImportError::Document(error) => error.into(),
            ImportError::Store(error) => error.into(),
        }
    }
}

impl App {
    /// The tenant's integrations as an `IntegrationList`, in name order.
    pub async fn export(
        &self,
        principal: &Principal,
        filter: ExportFilter,
    ) -> Result<Document, AppError> {
        require(principal, UseCase::Export)?;
        let query = ListQuery {
            kind: filter.kind,
            environment: filter.environment,
            tag: filter.tag,
            ..ListQuery::default()
        };
        Ok(transfer::export(self.store.as_ref(), &principal.tenant_id, query).await?)
    }

    /// Imports `document` into the caller's tenant, all or nothing; returns the plan.
    pub async fn import(
        &self,
        principal: &Principal,
        document: Document,
        mode: Mode,
        dry_run: bool,
    ) -> Result<PlanBody, AppError> {
        require(principal, UseCase::Import)?;
        let imported = transfer::import(
            self.store.as_ref(),
            &self.spec_rules(),
            &author(principal),
            document,
            &Rewrite::default(),
            mode,
            dry_run,
            self.clock.now(),
            &crate::store::ImportProgress::default(),
        )
        .await?;
        for id in imported.changed {
            self.engine.changed(id, false);
        }
        for id in imported.deleted {
            self.engine.deleted(id);
        }
        Ok(imported.plan)
    }
}
