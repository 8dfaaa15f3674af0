//! Maintenance windows (DESIGN §10): list, get, create, replace and delete, audited like
//! integrations and versioned the same way (`If-Match` or the body's `version`).

use serde_json::{Map, Value};
use uuid::Uuid;

use super::decode::from_json_value;
use super::{author, require, App, AppError, UseCase};
use crate::auth::Principal;
use crate::maintenance::{self, MaintenanceWindow, WindowChange, WindowRequest};
use crate::validation::{FieldError, Rule};

/// Fields of the resource only the server sets: a replace body may carry them back, as a GET
/// returned them, and they are ignored.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "tenantId",
    "createdAt",
    "createdBy",
    "modifiedAt",
    "modifiedBy",
];

impl App {
    /// The tenant's maintenance windows, ordered by name then id.
    pub async fn list_windows(
        &self,
        principal: &Principal,
    ) -> Result<Vec<MaintenanceWindow>, AppError> {
        require(principal, UseCase::ListWindows)?;
        Ok(self.store.list_windows(&principal.tenant_id).await?)
    }

    pub async fn get_window(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<MaintenanceWindow, AppError> {
        require(principal, UseCase::GetWindow)?;
        self.store
            .get_window(&principal.tenant_id, id)
            .await?
            .ok_or(AppError::NotFound)
    }

    pub async fn create_window(
        &self,
        principal: &Principal,
        request: WindowRequest,
    ) -> Result<MaintenanceWindow, AppError> {
        require(principal, UseCase::CreateWindow)?;
        if request.version.is_some() || request.window_id.is_some() {
            return Err(AppError::InvalidBody(
                "a new window has no windowId or version yet.".into(),
            ));
        }
        let spec = maintenance::validate(request).map_err(AppError::Validation)?;
        let window = MaintenanceWindow::new(
            &principal.tenant_id,
            spec,
            &principal.subject,
            self.clock.now(),
        );
        self.store.create_window(&window).await?;
        // The monitors of the integrations it selects learn of it through the engine.
        self.engine.calendar_changed();
        Ok(window)
    }

    /// Replaces the user-settable fields of window `id` with `body`, at the version `if_match`
    /// or the body names.
    pub async fn update_window(
        &self,
        principal: &Principal,
        id: Uuid,
        if_match: Option<i64>,
        mut body: Map<String, Value>,
    ) -> Result<MaintenanceWindow, AppError> {
        require(principal, UseCase::UpdateWindow)?;
        for field in READ_ONLY_FIELDS {
            body.remove(*field);
        }
        let request: WindowRequest = from_json_value(Value::Object(body))?;
        let expected_version = match (if_match, request.version) {
            (Some(header), Some(body)) if header != body => {
                return Err(AppError::VersionMismatch(
                    "If-Match and the body's version disagree.".into(),
                ))
            }
            (Some(version), _) | (None, Some(version)) => version,
            (None, None) => return Err(AppError::VersionRequired),
        };
        let mismatch = request.window_id.is_some_and(|body_id| body_id != id);
        let spec = match (maintenance::validate(request), mismatch) {
            (Ok(spec), false) => spec,
            (result, mismatch) => {
                let mut errors: Vec<FieldError> = Vec::new();
                if mismatch {
                    errors.push(FieldError::new(
                        "/windowId",
                        Rule::IdMismatch,
                        "windowId does not match the id in the path",
                    ));
                }
                errors.extend(result.err().unwrap_or_default());
                return Err(AppError::Validation(errors));
            }
        };
        let change = WindowChange::Update {
            expected_version,
            spec,
        };
        let now = self.clock.now();
        let window = self
            .store
            .change_window(&author(principal), id, change, now)
            .await?
            .ok_or_else(|| {
                tracing::error!(%id, "store returned no window for an update");
                AppError::Internal
            })?;
        self.engine.calendar_changed();
        Ok(window)
    }

    pub async fn delete_window(
        &self,
        principal: &Principal,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<(), AppError> {
        require(principal, UseCase::DeleteWindow)?;
        let change = WindowChange::Delete { expected_version };
        self.store
            .change_window(&author(principal), id, change, self.clock.now())
            .await?;
        self.engine.calendar_changed();
        Ok(())
    }
}
