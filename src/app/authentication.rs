//! Authentication of a bearer value: the value of the one `Authorization` header, whichever
//! transport carried it, to the [`Principal`] behind it, holding the scope of the use case it
//! asks for.

use super::{App, AppError, UseCase};
use crate::auth::Principal;

impl App {
    /// The caller behind `authorization` (`None` when the header is absent, repeated or not
    /// text), holding the scope `use_case` needs: no, malformed, expired or badly signed token
    /// is `Unauthorized`, a valid token without the scope is `Forbidden`.
    ///
    /// Transports call this before they look at anything else in the request, so an
    /// unauthenticated caller never learns whether an id exists or what is wrong with its
    /// body.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        use_case: UseCase,
    ) -> Result<Principal, AppError> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(AppError::Unauthorized)?;
        let principal = self
            .auth
            .verify(token)
            .map_err(|_| AppError::Unauthorized)?;
        if principal.has(use_case.scope()) {
            Ok(principal)
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
