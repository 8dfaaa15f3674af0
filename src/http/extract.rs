//! Request extractors whose every rejection is an [`ApiError`]: the caller's principal (bearer
//! token plus scope), the integration id in the path, `If-Match`, query strings and JSON bodies.
//!
//! Handlers take the principal first, so authentication runs before anything else looks at
//! the request: an unauthenticated caller never learns whether an id exists or what is wrong
//! with its body.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::auth::{Principal, Scope};
use crate::operations::{self, describe_serde_message, reject_json};

/// A caller holding the read scope (or admin, which implies it).
#[derive(Debug, Clone)]
pub struct Reader(pub Principal);

/// A caller holding the admin scope.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(&parts.headers, state, Scope::Read).map(Reader)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(&parts.headers, state, Scope::Admin).map(Admin)
    }
}

/// [`operations::authenticate`], shared with the NATS control service, on the request's
/// `Authorization` header.
fn authorize(headers: &HeaderMap, state: &AppState, scope: Scope) -> Result<Principal, ApiError> {
    operations::authenticate(state, authorization(headers), scope)
}

/// The value of the one `Authorization` header; `None` when it is absent, repeated or not
/// text.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

/// The `{id}` of an integration path. Anything but a hyphenated UUID cannot name an
/// integration, so it is a 404 exactly like an unknown id.
#[derive(Debug, Clone, Copy)]
pub struct IntegrationPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IntegrationPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        operations::integration_id(&raw).map(IntegrationPath)
    }
}

/// The version named by `If-Match`: `"3"`, `3` or `W/"3"`. `None` when the header is absent
/// or `*` (any version). A header naming no version of ours (a list, an opaque tag) can
/// never match, so it is a version mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(header::IF_MATCH).iter();
        let Some(value) = values.next() else {
            return Ok(IfMatch(None));
        };
        let unmatchable = || {
            ApiError::VersionMismatch("If-Match does not name a version of this resource.".into())
        };
        if values.next().is_some() {
            return Err(unmatchable());
        }
        let tag = value.to_str().map_err(|_| unmatchable())?.trim();
        if tag == "*" {
            return Ok(IfMatch(None));
        }
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        let tag = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        match tag.parse::<i64>() {
            Ok(version) if version >= 1 && tag.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(IfMatch(Some(version)))
            }
            _ => Err(unmatchable()),
        }
    }
}

/// A query string deserialized into `T` (which should deny unknown fields); any failure is
/// `invalid_query`.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| {
                let detail = describe_serde_message(&rejection.body_text())
                    .unwrap_or_else(|| "The query string is malformed.".into());
                ApiError::InvalidQuery(detail)
            })
    }
}

/// A JSON request body: `Content-Type` must be JSON (415), the body must fit the
/// `DefaultBodyLimit`, which counts the bytes actually read, so a chunked body without
/// `Content-Length` is cut off too (413), it must parse (`invalid_json`) and fit `T`
/// (`invalid_body`).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::InvalidBody("The request body could not be read.".into())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(reject_json)
    }
}

/// A JSON body that may be left out entirely: an empty body is `T::default()`; a body that
/// is present follows the rules of [`JsonBody`]. For operations whose parameters are all
/// optional (`POST .../activate` with or without a comment).
#[derive(Debug, Clone)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(request.headers());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::InvalidBody("The request body could not be read.".into())
                }
            })?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJsonBody)
            .map_err(reject_json)
    }
}

pub use crate::operations::from_json_value;

/// `application/json` or any `application/*+json`, with optional parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn bearer_token(headers: &HeaderMap) -> Option<&str> {
        authorization(headers).and_then(operations::bearer_token)
    }

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        for (value, expected) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("Basic abc", None),
            ("Bearer ", None),
            ("Bearer", None),
            ("abc", None),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_token(&headers), expected, "{value}");
        }
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(bearer_token(&headers), None, "two Authorization headers");
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, expected) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("application/jsonx", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&headers), expected, "{value}");
        }
    }

    #[test]
    fn json_rejections_are_classified_and_never_quote_values() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
        }
        let parse = |s: &str| {
            serde_json::from_str::<Body>(s)
                .map_err(reject_json)
                .unwrap_err()
        };
        assert!(matches!(parse("{"), ApiError::InvalidJson(_)));
        assert!(matches!(parse("{\"name\": }"), ApiError::InvalidJson(_)));
        assert!(matches!(
            parse(r#"{"name": "x"} trailing"#),
            ApiError::InvalidJson(_)
        ));
        match parse(r#"{"name": "x", "extra": 1}"#) {
            ApiError::InvalidBody(detail) => {
                assert!(detail.starts_with("Unknown field `extra`"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"{"name": ["hunter2"]}"#) {
            ApiError::InvalidBody(detail) => assert!(!detail.contains("hunter2"), "{detail}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("[]"), ApiError::InvalidBody(_)));
        assert!(matches!(parse("{}"), ApiError::InvalidBody(_)));
    }
}
