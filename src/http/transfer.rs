//! Export and import (`GET /api/v1/export`, `POST /api/v1/import`, DESIGN §12): the
//! `IntegrationList` document as JSON or YAML (`Accept` / `Content-Type: application/yaml`).

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::Problem;
use super::extract::{body_bytes, use_case, Caller, QueryParams};
use super::route::Route;
use crate::app::transfer::ExportFilter;
use crate::app::{App, AppError};
use crate::integration::IntegrationType;
use crate::transfer::{self, Document, Format, Mode, PlanBody};
use crate::validation;

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/export", export),
        Route::post("/api/v1/import", import),
    ]
}

const YAML: &str = "application/yaml";

/// Filters of an export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Only integrations of this environment.
    pub environment: Option<String>,
    /// Only integrations carrying this tag.
    pub tag: Option<String>,
    /// Only integrations of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<IntegrationType>)]
    pub kind: Option<String>,
}

/// How an import runs.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Only compute the plan (default false).
    pub dry_run: Option<bool>,
    /// `merge` (default) leaves integrations the document does not name alone; `replace`
    /// deletes them.
    #[param(value_type = Option<Mode>)]
    pub mode: Option<Mode>,
}

fn wants_yaml(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("yaml"))
}

/// Export the tenant's integrations as an `IntegrationList` (user-settable fields and
/// `paused`; no ids, status, timestamps or secrets), JSON or, with `Accept: application/yaml`,
/// YAML.
#[utoipa::path(
    get,
    operation_id = "exportIntegrations",
    path = "/api/v1/export",
    tag = "transfer",
    params(ExportParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The document", content(
            (Document = "application/json"),
            (Document = "application/yaml"),
        )),
        (status = 400, description = "invalid_query or invalid_filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    )
)]
pub async fn export(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Export>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<ExportParams>,
) -> Result<Response, AppError> {
    let filter = ExportFilter {
        environment: validation::text_filter("environment", params.environment)?,
        tag: validation::text_filter("tag", params.tag)?,
        kind: validation::kind_filter(params.kind.as_deref())?,
    };
    let document = app.export(&principal, filter).await?;
    if wants_yaml(&headers) {
        let body = transfer::render(&document, Format::Yaml);
        Ok(([(header::CONTENT_TYPE, YAML)], body).into_response())
    } else {
        Ok(Json(document).into_response())
    }
}

/// An import's body: the document, JSON or YAML by `Content-Type`.
pub struct DocumentBody(Document);

impl<S: Send + Sync> FromRequest<S> for DocumentBody {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let format = if content_type.starts_with("application/json") {
            Format::Json
        } else if content_type.contains("yaml") {
            Format::Yaml
        } else {
            return Err(AppError::UnsupportedMediaType);
        };
        let bytes = body_bytes(request, state).await?;
        Ok(DocumentBody(transfer::parse(&bytes, format)?))
    }
}

/// Import an `IntegrationList` into the tenant, all or nothing: items match integrations by
/// name; missing ones are created (as drafts), changed ones updated, equal ones left alone.
/// The answer is the plan (with `dryRun=true`, nothing changes).
#[utoipa::path(
    post,
    operation_id = "importIntegrations",
    path = "/api/v1/import",
    tag = "transfer",
    params(ImportParams),
    request_body(content(
        (Document = "application/json"),
        (Document = "application/yaml"),
    )),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plan, and whether it was applied", body = PlanBody),
        (status = 400, description = "invalid_json, invalid_body or invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 409, description = "version_mismatch or name_taken: the catalog changed while the import ran; nothing was imported", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = Problem),
        (status = 415, response = Problem),
        (status = 422, description = "Item validation: `errors` lists every invalid field of every item, as `/items/{index}/{field}`, the detail naming the item", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn import(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::Import>,
    QueryParams(params): QueryParams<ImportParams>,
    DocumentBody(document): DocumentBody,
) -> Result<Json<PlanBody>, AppError> {
    let plan = app
        .import(
            &principal,
            document,
            params.mode.unwrap_or_default(),
            params.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(Json(plan))
}
