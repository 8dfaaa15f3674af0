//! The REST rendering of an [`AppError`]: a problem+json document (RFC 9457) with the
//! error's status, stable `code` and detail, and a title per code. The application decides
//! what went wrong; this file only says how it reads over HTTP.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{ToResponse, ToSchema};

use crate::app::AppError;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
const PROBLEM_TYPE_BASE: &str = "https://catalogd.dev/problems/";

/// The problem document of `error`.
pub fn problem(error: &AppError) -> Problem {
    let errors = error.field_errors().map(|errors| {
        errors
            .iter()
            .map(|e| ProblemField {
                field: e.field.clone(),
                code: e.rule.code().to_owned(),
                detail: e.detail.clone(),
            })
            .collect()
    });
    Problem::new(
        error.status(),
        error.code(),
        title(error),
        error.detail(),
        errors,
    )
}

/// The problem's `title`, one per code.
fn title(error: &AppError) -> &'static str {
    use AppError::*;
    match error {
        Unauthorized => "Authentication required",
        Forbidden => "Insufficient scope",
        NotFound => "Not found",
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
        InvalidRange(_) => "Invalid range",
        Timeout => "Request timed out",
        Unavailable => "Service unavailable",
        Internal => "Internal error",
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = problem(&self).into_response();
        if matches!(self, AppError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl Problem {
    fn new(
        status: u16,
        code: &str,
        title: &str,
        detail: String,
        errors: Option<Vec<ProblemField>>,
    ) -> Problem {
        Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{code}"),
            title: title.to_owned(),
            status,
            detail,
            code: code.to_owned(),
            errors,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem always serializes");
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
            )],
            body,
        )
            .into_response()
    }
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
    /// invalid_limit, invalid_filter, invalid_range, rate_limited, timeout, unavailable,
    /// internal, or for 422 the code of the first field error.
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

/// The fallback for unknown routes: an unknown route looks like an unknown id.
pub async fn not_found() -> AppError {
    AppError::NotFound
}

/// The fallback for known routes called with a method they do not support. A matter of
/// routing alone, so no use case and no [`AppError`] is involved.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        405,
        "method_not_allowed",
        "Method not allowed",
        "This resource does not support the method.".into(),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::{FieldError, Rule};

    #[test]
    fn validation_problem_lists_fields_and_takes_the_first_code() {
        let error = AppError::Validation(vec![
            FieldError::new("/name", Rule::InvalidName, "bad name"),
            FieldError::new("/tags/0", Rule::InvalidTags, "bad tag"),
        ]);
        let problem = problem(&error);
        assert_eq!(problem.status, 422);
        assert_eq!(problem.code, "invalid_name");
        assert_eq!(problem.kind, "https://catalogd.dev/problems/invalid_name");
        assert_eq!(problem.errors.unwrap().len(), 2);
    }

    #[test]
    fn database_errors_never_leak() {
        let internal = AppError::from(crate::store::StoreError::Internal(
            "SELECT secret FROM t".into(),
        ));
        let problem = problem(&internal);
        assert_eq!((problem.status, problem.code.as_str()), (500, "internal"));
        assert!(!problem.detail.contains("SELECT"));
    }

    #[test]
    fn unauthorized_challenges_for_a_bearer_token() {
        let response = AppError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
    }
}
