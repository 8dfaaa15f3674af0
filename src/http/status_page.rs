//! The status page over HTTP: its configuration (`GET`/`PUT /api/v1/status-page`, JSON, a
//! read or admin token) and the page itself for people (`GET /status/{tenant}`, HTML), its
//! data (`GET /status/{tenant}/summary.json`) and a badge per integration
//! (`GET /status/{tenant}/badge/{name}.svg`). All three render one
//! [`crate::app::status_page::StatusPageView`]; the access rules (404 when disabled, a read
//! token of the tenant when not public) are the application's.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::Problem;
use super::extract::{use_case, Caller, JsonBody};
use super::route::Route;
use super::{status_badge, status_html};
use crate::app::status_page::{StatusPageBody, StatusPageView, Viewer};
use crate::app::{App, AppError};
use crate::validation::StatusPageRequest;

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/status-page", get_config),
        Route::put("/api/v1/status-page", put_config),
        Route::get("/status/{tenant}", page),
        Route::get("/status/{tenant}/summary.json", summary),
        Route::get("/status/{tenant}/badge/{file}", badge),
    ]
}

/// The caller's tenant's status page configuration (disabled, version 0, before the first
/// `PUT`).
#[utoipa::path(
    get,
    operation_id = "getStatusPageConfig",
    path = "/api/v1/status-page",
    tag = "status",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant's status page configuration", body = StatusPageBody),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    )
)]
pub async fn get_config(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::GetStatusPage>,
) -> Result<Json<StatusPageBody>, AppError> {
    app.status_page_config(&principal).await.map(Json)
}

/// Replaces the caller's tenant's status page configuration (`/status/{tenant}`).
#[utoipa::path(
    put,
    operation_id = "putStatusPageConfig",
    path = "/api/v1/status-page",
    tag = "status",
    request_body = StatusPageRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The configuration as stored", body = StatusPageBody),
        (status = 422, description = "invalid_title, invalid_description or invalid_selector (with every field error)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    )
)]
pub async fn put_config(
    State(app): State<App>,
    Caller { principal, .. }: Caller<use_case::PutStatusPage>,
    JsonBody(request): JsonBody<StatusPageRequest>,
) -> Result<Json<StatusPageBody>, AppError> {
    app.put_status_page_config(&principal, request)
        .await
        .map(Json)
}

/// Who asks: the `Authorization` header, or the `token` query parameter (other parameters
/// are ignored, so a shared link may carry its own).
fn viewer(headers: &HeaderMap, query: Option<&str>) -> Viewer {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let token = query.and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    });
    Viewer {
        authorization,
        token,
    }
}

/// Pages behind a token must not be cached by shared caches, nor leak the token onwards.
fn private_headers(response: &mut Response, public: bool) {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if public {
            "public, max-age=30"
        } else {
            "private, no-store"
        }),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

async fn view(
    app: &App,
    tenant: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(StatusPageView, bool), AppError> {
    let viewer = viewer(headers, query);
    let public = viewer.authorization.is_none() && viewer.token.is_none();
    let view = app.status_page(tenant, &viewer).await?;
    Ok((view, public))
}

/// The path of `tenant`'s page file `file`, its segment percent-encoded.
fn page_path(tenant: &str, file: &str) -> String {
    let mut url = url::Url::parse("http://page/status/").expect("a constant URL");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(tenant).push(file);
    }
    url.path().to_owned()
}

/// The tenant's status page, for people: HTML, no JavaScript, refreshing every 60 s.
#[utoipa::path(
    get,
    operation_id = "getStatusPage",
    path = "/status/{tenant}",
    tag = "status",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("token" = Option<String>, Query, description = "A read token of the tenant, for a page that is not public (or use `Authorization`)"),
    ),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 401, description = "The page is not public and no valid read token was given", content_type = "text/html", body = String),
        (status = 404, description = "No enabled page (or another tenant's token)", content_type = "text/html", body = String),
    )
)]
pub async fn page(
    State(app): State<App>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match view(&app, &tenant, &headers, query.as_deref()).await {
        Ok((view, public)) => {
            let body = status_html::page(&view, &page_path(&tenant, "summary.json"));
            let mut response =
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
            private_headers(&mut response, public);
            response
        }
        Err(error) => {
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let words = match error {
                AppError::NotFound => "There is no status page here.",
                AppError::Unauthorized | AppError::Forbidden => {
                    "This status page needs a read token of its tenant."
                }
                _ => "The status page cannot be shown right now.",
            };
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                status_html::error_page(status.as_u16(), words),
            )
                .into_response();
            if matches!(error, AppError::Unauthorized) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            private_headers(&mut response, false);
            response
        }
    }
}

/// The page's data as JSON: the same values the HTML shows.
#[utoipa::path(
    get,
    operation_id = "getStatusSummary",
    path = "/status/{tenant}/summary.json",
    tag = "status",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("token" = Option<String>, Query, description = "A read token of the tenant, for a page that is not public"),
    ),
    responses(
        (status = 200, description = "The page's data", body = StatusPageView),
        (status = 401, response = Problem),
        (status = 404, response = Problem),
    )
)]
pub async fn summary(
    State(app): State<App>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (view, public) = view(&app, &tenant, &headers, query.as_deref()).await?;
    let mut response = Json(view).into_response();
    private_headers(&mut response, public);
    Ok(response)
}

/// A badge with one integration's current state (`{file}` is `<name>.svg`).
#[utoipa::path(
    get,
    operation_id = "getStatusBadge",
    path = "/status/{tenant}/badge/{file}",
    tag = "status",
    params(
        ("tenant" = String, Path, description = "The tenant id"),
        ("file" = String, Path, description = "`<integration name>.svg`, of an integration on the page"),
        ("token" = Option<String>, Query, description = "A read token of the tenant, for a page that is not public"),
    ),
    responses(
        (status = 200, description = "The badge", content_type = "image/svg+xml", body = String),
        (status = 401, response = Problem),
        (status = 404, response = Problem),
    )
)]
pub async fn badge(
    State(app): State<App>,
    Path((tenant, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let name = file.strip_suffix(".svg").ok_or(AppError::NotFound)?;
    let (view, public) = view(&app, &tenant, &headers, query.as_deref()).await?;
    let component = view.integration(name).ok_or(AppError::NotFound)?;
    let mut response = (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        status_badge::badge(&component.name, component.state),
    )
        .into_response();
    private_headers(&mut response, public);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths_encode_the_tenant() {
        assert_eq!(
            page_path("acme", "summary.json"),
            "/status/acme/summary.json"
        );
        assert_eq!(
            page_path("a b/c", "summary.json"),
            "/status/a%20b%2Fc/summary.json"
        );
    }
}
