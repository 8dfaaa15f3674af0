//! [`EgressError`]: why an outbound call failed, in fixed phrases only (nothing read from a
//! peer and no resolved address), and the failure class each maps to.

use catalogd_actors::FailureClass;

use super::DenyReason;

/// Why an outbound call failed. Every message is a fixed phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("{0}")]
    InvalidUrl(&'static str),
    #[error("address denied by egress policy ({0})")]
    Denied(DenyReason),
    #[error("redirect to a scheme other than http or https refused")]
    RedirectScheme,
    #[error("{0}")]
    Dns(&'static str),
    #[error("{0}")]
    Connect(&'static str),
    #[error("connection timed out")]
    Timeout,
    #[error("{0}")]
    Tls(&'static str),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("invalid HTTP response")]
    InvalidResponse,
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("redirect without a usable Location")]
    BadRedirect,
    #[error("{0}")]
    Internal(&'static str),
}

impl EgressError {
    pub fn failure_class(&self) -> FailureClass {
        match self {
            EgressError::InvalidUrl(_) | EgressError::Denied(_) | EgressError::RedirectScheme => {
                FailureClass::Config
            }
            EgressError::Dns(_) => FailureClass::Dns,
            EgressError::Connect(_) | EgressError::Protocol(_) => FailureClass::Connect,
            EgressError::Timeout => FailureClass::Timeout,
            EgressError::Tls(_) => FailureClass::Tls,
            EgressError::InvalidResponse
            | EgressError::TooManyRedirects
            | EgressError::BadRedirect => FailureClass::HttpStatus,
            EgressError::Internal(_) => FailureClass::Internal,
        }
    }
}
