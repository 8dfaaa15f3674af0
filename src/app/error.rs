//! What went wrong in a use case, transport-neutral: every failure a caller can act on has a
//! variant, a stable machine-readable `code`, a `detail` for humans and the HTTP status number
//! both transports report (REST as its status, NATS in `Nats-Service-Error-Code`, DESIGN §6).
//! Internal errors are logged here and carry only a generic detail.

use crate::integration::ChangeError;
use crate::store::StoreError;
use crate::validation::{FieldError, QueryError, QueryRule};

/// Why a request failed.
#[derive(Debug)]
pub enum AppError {
    Unauthorized,
    Forbidden,
    /// Unknown id, another tenant's id, a malformed id and an unknown route all look alike.
    NotFound,
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
    /// 422: a range whose start is after its end (two parameters each valid alone).
    InvalidRange(String),
    Timeout,
    /// The database is unreachable or its pool is exhausted; worth retrying.
    Unavailable,
    /// A bug or a corrupt row; the details are in the log, never in the response.
    Internal,
}

/// `<code>: <detail>`, as the NATS control service reports it.
impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

impl std::error::Error for AppError {}

impl AppError {
    /// The HTTP status number of this failure, which both transports report.
    pub fn status(&self) -> u16 {
        use AppError::*;
        match self {
            Unauthorized => 401,
            Forbidden => 403,
            NotFound => 404,
            NameTaken | VersionMismatch(_) | InvalidTransition(_) => 409,
            VersionRequired => 428,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            InvalidJson(_) | InvalidBody(_) | InvalidQuery(_) | InvalidCursor | InvalidLimit(_)
            | InvalidFilter(_) => 400,
            Validation(_) | InvalidRange(_) => 422,
            Timeout | Unavailable => 503,
            Internal => 500,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use AppError::*;
        match self {
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotFound => "not_found",
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
            InvalidRange(_) => "invalid_range",
            Timeout => "timeout",
            Unavailable => "unavailable",
            Internal => "internal",
        }
    }

    /// What went wrong, for a human; never a value the caller sent, a query or a secret.
    pub fn detail(&self) -> String {
        use AppError::*;
        match self {
            Unauthorized => "A valid bearer token is required.".into(),
            Forbidden => "The token lacks the scope this operation needs.".into(),
            NotFound => "No such resource.".into(),
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
            | InvalidFilter(detail)
            | InvalidRange(detail) => detail.clone(),
        }
    }

    /// Every broken field rule of a 422, `None` for every other failure.
    pub fn field_errors(&self) -> Option<&[FieldError]> {
        match self {
            AppError::Validation(errors) => Some(errors),
            _ => None,
        }
    }
}

impl From<QueryError> for AppError {
    fn from(error: QueryError) -> Self {
        match error.rule {
            QueryRule::InvalidLimit => AppError::InvalidLimit(error.detail),
            QueryRule::InvalidFilter => AppError::InvalidFilter(error.detail),
            QueryRule::InvalidQuery => AppError::InvalidQuery(error.detail),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => AppError::NotFound,
            StoreError::NameTaken => AppError::NameTaken,
            StoreError::Change(ChangeError::VersionMismatch { expected, current }) => {
                AppError::VersionMismatch(format!(
                    "Expected version {expected}, but the current version is {current}."
                ))
            }
            StoreError::Change(ChangeError::InvalidTransition(e)) => {
                AppError::InvalidTransition(format!("{}.", capitalize(&e.to_string())))
            }
            StoreError::Unavailable(e) => {
                tracing::error!(error = %e, "database unavailable");
                AppError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "store failure");
                AppError::Internal
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The store classifies driver errors (`From<sqlx::Error>`); whatever it classifies as
    /// unavailable or internal reaches a caller without the driver's text.
    #[test]
    fn database_errors_never_leak() {
        let unavailable = AppError::from(StoreError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(unavailable.status(), 503);
        let internal = AppError::from(StoreError::from(sqlx::Error::Protocol(
            "SELECT secret FROM t".into(),
        )));
        assert_eq!((internal.status(), internal.code()), (500, "internal"));
        assert!(!internal.detail().contains("SELECT"));
        let corrupt = AppError::from(StoreError::Corrupt("row 7: password=x".into()));
        assert!(!corrupt.detail().contains("password"));
    }
}
