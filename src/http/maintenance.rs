//! Maintenance windows (`/api/v1/maintenance-windows`, `/api/v1/maintenance-windows/{id}`):
//! list, get, create, replace and delete (DESIGN §10).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::Problem;
use super::extract::{use_case, Caller, IfMatch, IntegrationPath, JsonBody};
use super::route::Route;
use crate::app::{App, AppError};
use crate::maintenance::{MaintenanceWindow, WindowRequest};

pub const COLLECTION_PATH: &str = "/api/v1/maintenance-windows";

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(COLLECTION_PATH, list),
        Route::post(COLLECTION_PATH, create),
        Route::get("/api/v1/maintenance-windows/{id}", fetch),
        Route::put("/api/v1/maintenance-windows/{id}", replace),
        Route::delete("/api/v1/maintenance-windows/{id}", remove),
    ]
}

/// The tenant's maintenance windows.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowList {
    pub items: Vec<MaintenanceWindow>,
}

/// The window with its version as a strong `ETag`.
fn resource(window: MaintenanceWindow) -> Response {
    let etag = format!("\"{}\"", window.version);
    ([(header::ETAG, etag)], Json(window)).into_response()
}

/// List the tenant's maintenance windows, ordered by name then id.
#[utoipa::path(
    get,
    operation_id = "listMaintenanceWindows",
    path = "/api/v1/maintenance-windows",
    tag = "maintenance",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every window of the tenant", body = WindowList),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    )
)]
pub async fn list(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::ListWindows>,
) -> Result<Json<WindowList>, AppError> {
    let items = app.list_windows(&principal).await?;
    Ok(Json(WindowList { items }))
}

/// Get one maintenance window.
#[utoipa::path(
    get,
    operation_id = "getMaintenanceWindow",
    path = "/api/v1/maintenance-windows/{id}",
    tag = "maintenance",
    params(("id" = Uuid, Path, description = "The window id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The window", body = MaintenanceWindow,
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    )
)]
pub async fn fetch(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::GetWindow>,
    IntegrationPath(id): IntegrationPath,
) -> Result<Response, AppError> {
    app.get_window(&principal, id).await.map(resource)
}

/// Create a maintenance window: one-off (`startsAt`, `endsAt`) or recurring (`startsAt`,
/// `rrule`, `durationSeconds`, optionally `timeZone`).
#[utoipa::path(
    post,
    operation_id = "createMaintenanceWindow",
    path = "/api/v1/maintenance-windows",
    tag = "maintenance",
    request_body = WindowRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = MaintenanceWindow, headers(
            ("Location" = String, description = "/api/v1/maintenance-windows/{id}"),
            ("ETag" = String, description = "The version, quoted"),
        )),
        (status = 400, description = "invalid_json or invalid_body", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 413, response = Problem),
        (status = 415, response = Problem),
        (status = 422, description = "Field validation; `errors` lists every invalid field (invalid_name, invalid_description, invalid_schedule, invalid_selector)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::CreateWindow>,
    JsonBody(request): JsonBody<WindowRequest>,
) -> Result<Response, AppError> {
    let window = app.create_window(&principal, request).await?;
    let location = format!("{COLLECTION_PATH}/{}", window.window_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        resource(window),
    )
        .into_response())
}

/// Replace the user-settable fields of a maintenance window.
#[utoipa::path(
    put,
    operation_id = "replaceMaintenanceWindow",
    path = "/api/v1/maintenance-windows/{id}",
    tag = "maintenance",
    params(
        ("id" = Uuid, Path, description = "The window id"),
        ("If-Match" = Option<String>, Header, description = "The expected version: `\"3\"`, `3` or `W/\"3\"` (the `ETag` of a GET). Either this header or the body's `version` is required (428 `version_required`); `*` means none; anything else never matches (409)"),
    ),
    request_body = WindowRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated window", body = MaintenanceWindow,
            headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "invalid_json or invalid_body", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, description = "version_mismatch", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = Problem),
        (status = 415, response = Problem),
        (status = 422, description = "Field validation as on create, and id_mismatch (the body's windowId names another window)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "version_required: neither If-Match nor a body version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replace(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::UpdateWindow>,
    IntegrationPath(id): IntegrationPath,
    IfMatch(if_match): IfMatch,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, AppError> {
    app.update_window(&principal, id, if_match, body)
        .await
        .map(resource)
}

/// Delete a maintenance window.
#[utoipa::path(
    delete,
    operation_id = "deleteMaintenanceWindow",
    path = "/api/v1/maintenance-windows/{id}",
    tag = "maintenance",
    params(
        ("id" = Uuid, Path, description = "The window id"),
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
    Caller { principal, .. }: Caller<use_case::DeleteWindow>,
    IntegrationPath(id): IntegrationPath,
    IfMatch(expected_version): IfMatch,
) -> Result<StatusCode, AppError> {
    app.delete_window(&principal, id, expected_version).await?;
    Ok(StatusCode::NO_CONTENT)
}
