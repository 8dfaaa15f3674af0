//! OCI / Docker registries (Docker Hub, GHCR, Quay, ECR, ACR, GCR, Harbor's registry):
//! `GET /v2/` answering 200, or 401 with a `WWW-Authenticate` challenge, speaks the
//! distribution API and is up — a 401 is not "down" (genuinetools/reg#198).
//!
//! The connection test's `auth` stage follows the challenge: for `Bearer`, the token
//! exchange `GET <realm>?service=<service>&scope=<scope>` with basic auth from the AuthRef
//! (`user:password`), then `GET /v2/` with the token; for `Basic`, `GET /v2/` with basic auth.
//! The realm URL comes from the registry, so it goes through the egress policy like any other
//! URL. The scope is `configuration.scope`, or `repository:<configuration.repository>:pull`,
//! or the challenge's own.

use std::borrow::Cow;

use async_trait::async_trait;
use catalogd_actors::FailureClass;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::Value;
use url::Url;

use super::request::{
    auth_stage, basic_authorization, header_value, json_body, missing_auth_ref, Call,
    CallConnector, Expect, StatusSet,
};
use super::{Connector, Failure, Session, Verdict};
use crate::egress::{Request, Response};
use crate::secrets::SecretValue;

#[derive(Debug, Clone, Copy, Default)]
pub struct OciRegistryConnector;

#[async_trait]
impl Connector for OciRegistryConnector {
    async fn check_health(&self, session: &Session<'_>) -> Verdict {
        base_check().run_check(session).await.into()
    }

    async fn test_connection(&self, session: &Session<'_>) -> Verdict {
        test(session).await.into()
    }
}

fn base_check() -> CallConnector {
    let mut expect = Expect::status(StatusSet::of(&[200, 401]));
    expect.evaluator = Some(speaks_v2);
    CallConnector {
        check: Call::get("/v2/", expect),
        auth_test: None,
        requires_credentials: false,
    }
}

/// 200, or 401 with a challenge.
fn speaks_v2(response: &Response) -> Result<Cow<'static, str>, Failure> {
    match (response.status.as_u16(), challenge(response)) {
        (200, _) => Ok(Cow::Borrowed("HTTP 200")),
        (401, Some(Challenge::Bearer { .. })) => {
            Ok(Cow::Borrowed("HTTP 401 with a Bearer challenge"))
        }
        (401, Some(Challenge::Basic)) => Ok(Cow::Borrowed("HTTP 401 with a Basic challenge")),
        (status, _) => Err(Failure::new(
            FailureClass::HttpStatus,
            format!("HTTP {status} without an authentication challenge"),
        )),
    }
}

async fn test(session: &Session<'_>) -> Result<(), Failure> {
    let response = base_check().http_stage(session).await?;
    if session.target.auth_ref.is_none() {
        return Ok(());
    }
    auth_stage(session, async {
        let secret = session.secret()?.ok_or_else(missing_auth_ref)?;
        authenticate(session, &secret, challenge(&response)).await
    })
    .await
}

async fn authenticate(
    session: &Session<'_>,
    secret: &SecretValue,
    challenge: Option<Challenge>,
) -> Result<Cow<'static, str>, Failure> {
    let authorization = match challenge {
        None => return Ok(Cow::Borrowed("registry needs no authentication")),
        Some(Challenge::Basic) => basic_authorization(secret),
        Some(Challenge::Bearer {
            realm,
            service,
            scope,
        }) => {
            let token = exchange_token(session, secret, &realm, service, scope).await?;
            format!("Bearer {}", token.expose())
        }
    };
    let mut request = Request::get(session.url("/v2/")?);
    request
        .headers
        .insert(AUTHORIZATION, header_value(&authorization, true)?);
    let response = session.send(request).await?;
    Expect::status(StatusSet::of(&[200])).evaluate(&response, true)?;
    Ok(Cow::Borrowed("authenticated: HTTP 200"))
}

/// The token exchange. The token is a credential: it is kept as a secret and never shown.
async fn exchange_token(
    session: &Session<'_>,
    secret: &SecretValue,
    realm: &str,
    service: Option<String>,
    challenge_scope: Option<String>,
) -> Result<SecretValue, Failure> {
    let mut url = Url::parse(realm)
        .map_err(|_| Failure::new(FailureClass::HttpStatus, "the token realm is not a URL"))?;
    let configuration = &session.target.configuration;
    let scope = match (
        configuration.get("scope").and_then(Value::as_str),
        configuration.get("repository").and_then(Value::as_str),
    ) {
        (Some(scope), _) => Some(scope.to_owned()),
        (None, Some(repository)) => Some(format!("repository:{repository}:pull")),
        (None, None) => challenge_scope,
    };
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = &service {
            query.append_pair("service", service);
        }
        if let Some(scope) = &scope {
            query.append_pair("scope", scope);
        }
    }
    let mut request = Request::get(url);
    request.headers.insert(
        AUTHORIZATION,
        header_value(&basic_authorization(secret), true)?,
    );
    let response = session.send(request).await?;
    Expect::status(StatusSet::of(&[200])).evaluate(&response, true)?;
    let document = json_body(&response)?;
    ["token", "access_token"]
        .iter()
        .find_map(|key| document.get(*key).and_then(Value::as_str))
        .filter(|token| !token.is_empty())
        .map(|token| SecretValue::new(token.to_owned()))
        .ok_or_else(|| Failure::new(FailureClass::Assertion, "the token response has no token"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

fn challenge(response: &Response) -> Option<Challenge> {
    let value = response.headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    parse_challenge(value)
}

/// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"` (RFC 7235 auth-params).
fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = auth_params(params);
    let get = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        params.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://r/t, service=x"),
            Some(Challenge::Bearer {
                realm: "https://r/t".into(),
                service: Some("x".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
