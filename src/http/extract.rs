//! Request extractors whose every rejection is an [`AppError`]: the caller of a use case
//! (authenticated by the application from the `Authorization` header), the integration id in
//! the path, `If-Match`, query strings and JSON bodies. They decode; the rules they apply
//! (which scope, what an id or a JSON error is) are the application's.
//!
//! Handlers take the caller first, so authentication runs before anything else looks at the
//! request: an unauthenticated caller never learns whether an id exists or what is wrong with
//! its body.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::app::decode::{self, describe_serde_message, reject_json};
use crate::app::{App, AppError, UseCase};
use crate::auth::Principal;

/// The caller of the use case `U`, authenticated by [`App::authenticate`] for it.
#[derive(Debug, Clone)]
pub struct Caller<U> {
    pub principal: Principal,
    use_case: PhantomData<U>,
}

/// Names the use case a handler calls, so that its caller is authenticated for that use case.
pub trait ForUseCase {
    const USE_CASE: UseCase;
}

/// One marker type per use case, for [`Caller`].
pub mod use_case {
    use super::{ForUseCase, UseCase};

    macro_rules! markers {
        ($($name:ident),* $(,)?) => {$(
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl ForUseCase for $name {
                const USE_CASE: UseCase = UseCase::$name;
            }
        )*};
    }

    markers!(
        List,
        Get,
        Create,
        Update,
        Delete,
        Submit,
        Test,
        Pause,
        Resume,
        Activate,
        Health,
        History,
        Audit,
        ListWindows,
        GetWindow,
        CreateWindow,
        UpdateWindow,
        DeleteWindow,
        Export,
        Import,
        GetStatusPage,
        PutStatusPage,
    );
}

impl<U: ForUseCase + Send + Sync> FromRequestParts<App> for Caller<U> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, AppError> {
        let principal = app.authenticate(authorization(&parts.headers), U::USE_CASE)?;
        Ok(Caller {
            principal,
            use_case: PhantomData,
        })
    }
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
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
        decode::integration_id(&raw).map(IntegrationPath)
    }
}

/// The version named by `If-Match`: `"3"`, `3` or `W/"3"`. `None` when the header is absent
/// or `*` (any version). A header naming no version of ours (a list, an opaque tag) can
/// never match, so it is a version mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let mut values = parts.headers.get_all(header::IF_MATCH).iter();
        let Some(value) = values.next() else {
            return Ok(IfMatch(None));
        };
        let unmatchable = || {
            AppError::VersionMismatch("If-Match does not name a version of this resource.".into())
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
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| {
                let detail = describe_serde_message(&rejection.body_text())
                    .unwrap_or_else(|| "The query string is malformed.".into());
                AppError::InvalidQuery(detail)
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
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        if !is_json(request.headers()) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = body_bytes(request, state).await?;
        object(&bytes).map(JsonBody)
    }
}

/// The whole request body within the `DefaultBodyLimit` (413 beyond it).
pub async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::InvalidBody("The request body could not be read.".into())
            }
        })
}

/// Every request body is a JSON object. serde's derived struct visitors also take an array
/// of the fields in order, so anything but an object is refused before `T` sees it.
fn object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Tell malformed JSON from well-formed JSON of the wrong type.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(reject_json)?;
        return Err(AppError::InvalidBody(
            "The body must be a JSON object.".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(reject_json)
}

/// A JSON body that may be left out entirely: an empty body is `T::default()`; a body that
/// is present follows the rules of [`JsonBody`]. For operations whose parameters are all
/// optional (`POST .../activate` with or without a comment).
#[derive(Debug, Clone)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let json = is_json(request.headers());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::PayloadTooLarge
                } else {
                    AppError::InvalidBody("The request body could not be read.".into())
                }
            })?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !json {
            return Err(AppError::UnsupportedMediaType);
        }
        object(&bytes).map(OptionalJsonBody)
    }
}

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
        authorization(headers).and_then(crate::app::authentication::bearer_token)
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
}
