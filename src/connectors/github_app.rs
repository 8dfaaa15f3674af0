//! GitHub App: `GET /app` with an RS256 JWT minted from the app's PEM private key (the
//! AuthRef) for the app id in `configuration.appId`: `iat` 60 s in the past (clock drift),
//! `exp` 9 minutes ahead (GitHub refuses more than 10), `iss` the app id. GitHub's answers
//! are told apart: 401/403 `auth`, 403/429 with rate-limit headers `rate_limited`, 404 and
//! 5xx `http_status`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;

use super::request::{Auth, Call, CallConnector, Expect, StatusSet};
use super::{Failure, Session};
use crate::secrets::SecretValue;

/// Seconds `iat` is set in the past.
pub const ISSUED_BEFORE_SECONDS: i64 = 60;
/// Seconds until `exp`.
pub const EXPIRES_AFTER_SECONDS: i64 = 9 * 60;

pub fn connector() -> CallConnector {
    CallConnector {
        check: Call::get("/app", Expect::status(StatusSet::of(&[200])))
            .with_auth(Auth::GithubAppJwt)
            .with_header("accept", "application/vnd.github+json")
            .with_header("x-github-api-version", "2022-11-28"),
        auth_test: None,
        requires_credentials: true,
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a Value,
}

/// The app JWT for the session's target. Errors never carry key material.
pub fn app_jwt(secret: &SecretValue, session: &Session<'_>) -> Result<String, Failure> {
    let app_id = session
        .target
        .configuration
        .get("appId")
        .filter(|id| match id {
            Value::Number(n) => n.is_u64(),
            Value::String(s) => !s.is_empty() && s.len() <= 64,
            _ => false,
        })
        .ok_or_else(|| Failure::config("configuration.appId is required for github-app"))?;
    let key = EncodingKey::from_rsa_pem(secret.expose().as_bytes())
        .map_err(|_| Failure::config("the AuthRef does not hold an RSA private key in PEM form"))?;
    let now = session.context.clock.now().timestamp();
    let claims = Claims {
        iat: now - ISSUED_BEFORE_SECONDS,
        exp: now + EXPIRES_AFTER_SECONDS,
        iss: app_id,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|_| Failure::config("the app JWT could not be signed with the AuthRef's key"))
}
