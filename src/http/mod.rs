//! The REST API: one module per resource, each listing its routes, merged here. Handlers
//! decode a request, call one use case of [`crate::app`] and encode its answer; no rule lives
//! here.
//!
//! - [`integrations`]: the integration collection and items.
//! - [`transitions`]: submit, pause, resume, activate and the connection test.
//! - [`health`]: one integration's health and check history.
//! - [`audit`]: the tenant's audit trail.
//! - [`probes`]: `/healthz` and `/readyz`.
//! - [`status_page`]: the status page's configuration, the page, its JSON and badges
//!   ([`status_html`] and [`status_badge`] render them).
//! - [`openapi`]: the generated OpenAPI document.
//! - [`contract`]: the validation rules, error responses, scopes and links it states.
//! - [`route`]: the route table the router is built from.
//! - [`error`]: an [`AppError`] rendered as problem+json.
//! - [`extract`]: the caller, path, `If-Match`, query and JSON-body extractors.
//! - [`rate_limit`]: the per-tenant rate limit (429 `rate_limited`).
//!
//! Around every route: request logging (method, route, status, latency; never headers or
//! bodies), the request time limit (503 `timeout`), the per-tenant rate limit and the body
//! size limit (413).

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;

use crate::app::{App, AppError};
use crate::metrics::internal_events::InternalEvent as _;
use route::Route;

mod audit;
mod contract;
pub mod error;
mod extract;
mod health;
mod integrations;
mod maintenance;
pub mod openapi;
mod probes;
pub mod rate_limit;
mod route;
mod status_badge;
mod status_html;
mod status_page;
#[cfg(test)]
mod test_support;
mod transfer;
mod transitions;

/// Every route the REST API serves; the router is built from this table alone.
fn routes() -> Vec<Route> {
    [
        integrations::routes(),
        transitions::routes(),
        health::routes(),
        audit::routes(),
        maintenance::routes(),
        transfer::routes(),
        probes::routes(),
        status_page::routes(),
        openapi::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The whole REST API, each tenant limited by `limiter`.
pub fn router(app: App, limiter: rate_limit::RateLimiter) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            // The matched route template, not the raw path: bounded, and free of ids.
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            tracing::info_span!("http", method = %request.method(), route)
        })
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(LatencyUnit::Millis),
        );
    routes()
        .into_iter()
        .fold(Router::new(), |router, route| route.add_to(router))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(app.body_limit_bytes))
        // Before any handler reads a body or the store; inside `measure`, so 429s are counted.
        .layer(middleware::from_fn_with_state(
            (app.clone(), limiter),
            rate_limit::limit,
        ))
        .layer(middleware::from_fn_with_state(
            app.request_timeout,
            time_limit,
        ))
        .layer(middleware::from_fn(measure))
        .layer(trace)
        .with_state(app)
}

/// `catalogd_http_*`: method, route template (never the raw path) and status of each request.
async fn measure(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = crate::metrics::internal_events::method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    crate::metrics::internal_events::HttpRequestServed {
        method,
        route: route.as_deref().unwrap_or("unmatched"),
        status: response.status().as_u16(),
        duration: started.elapsed(),
    }
    .emit();
    response
}

/// Abandons a request (extractors, handler and store call) after `limit`: 503 `timeout`.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(?limit, "request timed out");
            AppError::Timeout.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};
    use serde_json::json;

    use super::test_support::TestApp;
    use super::*;

    const BASE: &str = "/api/v1/integrations";

    #[tokio::test]
    async fn unknown_routes_and_methods_are_problems() {
        let app = TestApp::new().await;
        for uri in ["/", "/api/v1/nope", "/api/v1/integrations/x/y"] {
            let response = app.call(Method::GET, uri, None, None).await;
            response.assert_problem(StatusCode::NOT_FOUND, "not_found");
            assert_eq!(
                response.header(header::CONTENT_TYPE),
                error::PROBLEM_CONTENT_TYPE
            );
        }
        let response = app.call(Method::PATCH, BASE, None, None).await;
        response.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(response.header(header::ALLOW).contains("POST"));
        let response = app.call(Method::POST, "/healthz", None, None).await;
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    fn post(token: &str, content_type: Option<&str>, body: Body) -> Request<Body> {
        let mut request =
            Request::post(BASE).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        request.body(body).unwrap()
    }

    #[tokio::test]
    async fn bodies_are_limited_typed_and_parsed() {
        let app = TestApp::with(|state| state.body_limit_bytes = 1024).await;
        let token = app.admin("acme");
        let big = json!({"name": "x", "description": "d".repeat(2000)}).to_string();

        let sized = Request::post(BASE)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, big.len())
            .body(Body::from(big.clone()))
            .unwrap();
        let sized = app.send(sized).await;
        sized.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        // A stream has no known length, as a chunked body without Content-Length: the limit
        // counts the bytes as they arrive.
        let chunked = Body::from_stream(Body::from(big).into_data_stream());
        let streamed = app
            .send(post(&token, Some("application/json"), chunked))
            .await;
        assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE);

        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let response = app.send(post(&token, content_type, Body::from("{}"))).await;
            response.assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        }
        for (body, code) in [
            ("{", "invalid_json"),
            ("", "invalid_json"),
            ("nul", "invalid_json"),
            ("[]", "invalid_body"),
            (r#"{"name": 5}"#, "invalid_body"),
            (r#"{"name": "x", "extra": true}"#, "invalid_body"),
            (
                r#"{"healthCheck": {"intervalSeconds": -1}}"#,
                "invalid_body",
            ),
            (r#"{"tags": "a"}"#, "invalid_body"),
            // serde would read an array as the struct's fields in order.
            (
                r#"[null, null, null, null, null, null, null, null, null, null, null]"#,
                "invalid_body",
            ),
            (
                r#"{"name": "x", "healthCheck": [null, null]}"#,
                "invalid_body",
            ),
            ("null", "invalid_body"),
        ] {
            let response = app
                .send(post(&token, Some("application/json"), Body::from(body)))
                .await;
            response.assert_problem(StatusCode::BAD_REQUEST, code);
        }
    }

    /// Over a real socket, a chunked body above the limit gets a 413 the client can read.
    #[tokio::test]
    async fn chunked_bodies_over_a_socket_are_limited() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let app = TestApp::with(|state| state.body_limit_bytes = 1024).await;
        let token = app.admin("acme");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
            listener,
            app.router.clone(),
        )));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {BASE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
        // Keep writing until the server answers; it must not wait for the end of the body.
        for _ in 0..8 {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let mut response = vec![0; 4096];
        let n = stream.read(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response[..n]);
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(response.contains("payload_too_large"), "{response}");
        server.abort();
    }

    #[tokio::test]
    async fn slow_requests_time_out_and_database_outages_are_503() {
        let app = TestApp::with(|state| state.request_timeout = Duration::from_millis(50)).await;
        let token = app.reader("acme");
        app.store.delay_ms.store(5_000, Ordering::SeqCst);
        let slow = app.call(Method::GET, BASE, Some(&token), None).await;
        slow.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "timeout");

        app.store.delay_ms.store(0, Ordering::SeqCst);
        app.store.down.store(true, Ordering::SeqCst);
        let down = app.call(Method::GET, BASE, Some(&token), None).await;
        down.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }

    #[tokio::test]
    async fn probes_and_document_need_no_token() {
        let app = TestApp::new().await;
        let live = app.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(
            (live.status, live.body),
            (StatusCode::OK, json!({"status": "ok"}))
        );
        let ready = app.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(
            (ready.status, ready.body),
            (
                StatusCode::OK,
                json!({"status": "ready", "checks": {
                    "database": "ok", "engine": "detached", "actors": 0, "nats": "disabled"
                }})
            )
        );
        app.store.down.store(true, Ordering::SeqCst);
        let not_ready = app.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(
            (not_ready.status, not_ready.body),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not_ready", "checks": {
                    "database": "error", "engine": "detached", "actors": 0, "nats": "disabled"
                }})
            )
        );
        let live = app.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(live.status, StatusCode::OK);
        let document = app
            .call(Method::GET, "/api/v1/openapi.json", None, None)
            .await;
        assert_eq!(document.status, StatusCode::OK);
        assert!(document.body["openapi"].as_str().unwrap().starts_with("3."));
    }
}
