//! The API's one error type and its problem+json (RFC 9457) rendering: every failure a caller
//! can act on has a variant, a status and a stable `code`; internal errors are logged here and
//! answered with a generic body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{ToResponse, ToSchema};

use crate::integration::ChangeError;
use crate::store::StoreError;
use crate::validation::{FieldError, QueryError, QueryRule};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
const PROBLEM_TYPE_BASE: &str = "https://catalogd.dev/problems/";

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    /// Unknown id, another tenant's id, a malformed id and an unknown route all look alike.
    NotFound,
    MethodNotAllowed,
    NameTaken,
    VersionMismatch(String),
    InvalidTransition(String),
    VersionRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidJson(String),
    InvalidBody(String),
    InvalidQuery(String),
    InvalidCursor,
    InvalidLimit(String),
    InvalidFilter(String),
    /// 422: every broken field rule; the first one gives the top-level code.
    Validation(Vec<FieldError>),
    Timeout,
    /// The database is unreachable or its pool is exhausted; worth retrying.
    Unavailable,
    /// A bug or a corrupt row; the details are in the log, never in the response.
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NameTaken | VersionMismatch(_) | InvalidTransition(_) => StatusCode::CONFLICT,
            VersionRequired => StatusCode::PRECONDITION_REQUIRED,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidJson(_) | InvalidBody(_) | InvalidQuery(_) | InvalidCursor | InvalidLimit(_)
            | InvalidFilter(_) => StatusCode::BAD_REQUEST,
            Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Timeout | Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            NameTaken => "name_taken",
            VersionMismatch(_) => "version_mismatch",
            InvalidTransition(_) => "invalid_transition",
            VersionRequired => "version_required",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            InvalidJson(_) => "invalid_json",
            InvalidBody(_) => "invalid_body",
            InvalidQuery(_) => "invalid_query",
            InvalidCursor => "invalid_cursor",
            InvalidLimit(_) => "invalid_limit",
            InvalidFilter(_) => "invalid_filter",
            Validation(errors) => errors.first().map_or("invalid_body", |e| e.rule.code()),
            Timeout => "timeout",
            Unavailable => "unavailable",
            Internal => "internal",
        }
    }

    fn title(&self) -> &'static str {
        use ApiError::*;
        match self {
            Unauthorized => "Authentication required",
            Forbidden => "Insufficient scope",
            NotFound => "Not found",
            MethodNotAllowed => "Method not allowed",
            NameTaken => "Name already taken",
            VersionMismatch(_) => "Version mismatch",
            InvalidTransition(_) => "Invalid lifecycle transition",
            VersionRequired => "Version required",
            PayloadTooLarge => "Payload too large",
            UnsupportedMediaType => "Unsupported media type",
            InvalidJson(_) => "Malformed JSON",
            InvalidBody(_) => "Invalid request body",
            InvalidQuery(_) | InvalidLimit(_) | InvalidFilter(_) => "Invalid query parameter",
            InvalidCursor => "Invalid cursor",
            Validation(_) => "Validation failed",
            Timeout => "Request timed out",
            Unavailable => "Service unavailable",
            Internal => "Internal error",
        }
    }

    fn detail(&self) -> String {
        use ApiError::*;
        match self {
            Unauthorized => "A valid bearer token is required.".into(),
            Forbidden => "The token lacks the scope this operation needs.".into(),
            NotFound => "No such resource.".into(),
            MethodNotAllowed => "This resource does not support the method.".into(),
            NameTaken => "An integration with this name already exists.".into(),
            VersionRequired => {
                "Send the expected version in If-Match or in the body's version field.".into()
            }
            PayloadTooLarge => "The request body exceeds the size limit.".into(),
            UnsupportedMediaType => "The request body must be application/json.".into(),
            InvalidCursor => "The cursor is not one this API issued.".into(),
            Validation(errors) => match errors.len() {
                1 => errors[0].detail.clone(),
                n => format!("{n} fields are invalid."),
            },
            Timeout => "The request took too long and was abandoned.".into(),
            Unavailable => "The service is temporarily unavailable; retry later.".into(),
            Internal => "An internal error occurred.".into(),
            VersionMismatch(detail)
            | InvalidTransition(detail)
            | InvalidJson(detail)
            | InvalidBody(detail)
            | InvalidQuery(detail)
            | InvalidLimit(detail)
            | InvalidFilter(detail) => detail.clone(),
        }
    }

    pub fn problem(&self) -> Problem {
        let code = self.code();
        let errors = match self {
            ApiError::Validation(errors) => Some(
                errors
                    .iter()
                    .map(|e| ProblemField {
                        field: e.field.clone(),
                        code: e.rule.code().to_owned(),
                        detail: e.detail.clone(),
                    })
                    .collect(),
            ),
            _ => None,
        };
        Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{code}"),
            title: self.title().to_owned(),
            status: self.status().as_u16(),
            detail: self.detail(),
            code: code.to_owned(),
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).expect("a problem always serializes");
        let mut response = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
            )],
            body,
        )
            .into_response();
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error.rule {
            QueryRule::InvalidLimit => ApiError::InvalidLimit(error.detail),
            QueryRule::InvalidFilter => ApiError::InvalidFilter(error.detail),
            QueryRule::InvalidQuery => ApiError::InvalidQuery(error.detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::NameTaken => ApiError::NameTaken,
            StoreError::Change(ChangeError::VersionMismatch { expected, current }) => {
                ApiError::VersionMismatch(format!(
                    "Expected version {expected}, but the current version is {current}."
                ))
            }
            StoreError::Change(ChangeError::InvalidTransition(e)) => {
                ApiError::InvalidTransition(format!("{}.", capitalize(&e.to_string())))
            }
            StoreError::Unavailable(e) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::Internal
            }
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// An error response (RFC 9457 problem details) with the stable `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, ToResponse)]
#[response(
    description = "An error, as application/problem+json; `code` is stable and machine-readable",
    content_type = "application/problem+json"
)]
pub struct Problem {
    /// `https://catalogd.dev/problems/<code>`.
    #[serde(rename = "type")]
    #[schema(example = "https://catalogd.dev/problems/not_found")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// One of: unauthorized, forbidden, not_found, method_not_allowed, name_taken,
    /// version_mismatch, invalid_transition, version_required, payload_too_large,
    /// unsupported_media_type, invalid_json, invalid_body, invalid_query, invalid_cursor,
    /// invalid_limit, invalid_filter, timeout, unavailable, internal, or for 422 the code of
    /// the first field error.
    #[schema(example = "not_found")]
    pub code: String,
    /// Field errors, only for 422 responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemField>>,
}

/// One invalid field of a 422 response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemField {
    /// JSON pointer into the request body, such as `/healthCheck/timeoutSeconds`.
    #[schema(example = "/name")]
    pub field: String,
    #[schema(example = "invalid_name")]
    pub code: String,
    pub detail: String,
}

/// The fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The fallback for known routes called with a method they do not support.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Rule;

    #[test]
    fn validation_problem_lists_fields_and_takes_the_first_code() {
        let error = ApiError::Validation(vec![
            FieldError::new("/name", Rule::InvalidName, "bad name"),
            FieldError::new("/tags/0", Rule::InvalidTags, "bad tag"),
        ]);
        let problem = error.problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.code, "invalid_name");
        assert_eq!(problem.kind, "https://catalogd.dev/problems/invalid_name");
        assert_eq!(problem.errors.unwrap().len(), 2);
    }

    #[test]
    fn database_errors_never_leak() {
        let unavailable = ApiError::from(StoreError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(unavailable.problem().status, 503);
        let internal = ApiError::from(StoreError::from(sqlx::Error::Protocol(
            "SELECT secret FROM t".into(),
        )));
        let problem = internal.problem();
        assert_eq!((problem.status, problem.code.as_str()), (500, "internal"));
        assert!(!problem.detail.contains("SELECT"));
        let corrupt = ApiError::from(StoreError::Corrupt("row 7: password=x".into()));
        assert!(!corrupt.problem().detail.contains("password"));
    }

    #[test]
    fn unauthorized_challenges_for_a_bearer_token() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
    }
}
