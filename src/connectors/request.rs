//! The one HTTP call-and-classify path every HTTP connector uses: a request template
//! ([`Call`]) plus success conditions ([`Expect`]), sent through the egress client, and judged
//! into a [`Failure`] class.
//!
//! Declarative providers are exactly a [`Call`] read from TOML; the built-in connectors build
//! theirs in code (harbor adds a custom evaluator, github-app a JWT credential).

use std::borrow::Cow;
use std::ops::RangeInclusive;

use base64::Engine as _;
use bytes::Bytes;
use catalogd_actors::FailureClass;
use http::header::{HeaderName, HeaderValue};
use http::Method;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::{Connector, Failure, Session, Verdict};
use crate::egress::{Request, Response};
use crate::secrets::{AuthRef, SecretValue};

/// A string with placeholders: `{{secret}}`, `{{secret.user}}` and `{{secret.password}}`
/// (from the integration's AuthRef, a `user:password` value split at the first colon),
/// `{{config.NAME}}` (a configuration value), or a whole value that is itself an AuthRef.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Secret(SecretField),
    Config(String),
    /// The value of another AuthRef (the `http` connector's `headers`).
    SecretRef(AuthRef),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretField {
    Whole,
    User,
    Password,
}

impl Template {
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Literal(text.to_owned())],
        }
    }

    /// The whole value of `auth_ref`.
    pub fn secret_ref(auth_ref: AuthRef) -> Template {
        Template {
            parts: vec![Part::SecretRef(auth_ref)],
        }
    }

    /// Parses `{{...}}` placeholders. Secret placeholders are refused where `secrets` is
    /// false (paths: a secret in a URL ends up in access logs).
    pub fn parse(text: &str, secrets: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| "unclosed {{ placeholder".to_owned())?;
            let name = after[..end].trim();
            let part = match name {
                "secret" => Part::Secret(SecretField::Whole),
                "secret.user" => Part::Secret(SecretField::User),
                "secret.password" => Part::Secret(SecretField::Password),
                _ => match name.strip_prefix("config.") {
                    Some(key) if !key.is_empty() => Part::Config(key.to_owned()),
                    _ => return Err(format!("unknown placeholder {{{{{name}}}}}")),
                },
            };
            if matches!(part, Part::Secret(_)) && !secrets {
                return Err("secret placeholders are not allowed here".to_owned());
            }
            parts.push(part);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Whether rendering this template puts a credential into the request.
    pub fn carries_credentials(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Secret(_) | Part::SecretRef(_)))
    }

    /// The rendered text; `encode` percent-encodes configuration values (for paths).
    fn render(
        &self,
        session: &Session<'_>,
        secret: Option<&SecretValue>,
        encode: bool,
    ) -> Result<String, Failure> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Config(key) => {
                    let value = match session.target.configuration.get(key) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        Some(Value::Bool(b)) => b.to_string(),
                        _ => {
                            return Err(Failure::config(format!("configuration.{key} is required")))
                        }
                    };
                    if encode {
                        out.push_str(&percent_encode(&value));
                    } else {
                        out.push_str(&value);
                    }
                }
                Part::Secret(field) => {
                    let secret = secret.ok_or_else(|| {
                        Failure::config("this provider needs an authRef for its credentials")
                    })?;
                    let (user, password) = secret.user_and_password();
                    out.push_str(match field {
                        SecretField::Whole => secret.expose(),
                        SecretField::User => user,
                        SecretField::Password => password,
                    });
                }
                Part::SecretRef(auth_ref) => {
                    out.push_str(session.context.secrets.resolve(auth_ref)?.expose())
                }
            }
        }
        Ok(out)
    }
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// How the integration's AuthRef authenticates a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No scheme; credential headers in the template may still use the secret.
    None,
    /// `Authorization: Basic`, from a `user:password` secret.
    Basic,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Bearer <RS256 JWT>` minted from the PEM key in the secret, for the
    /// app in `configuration.appId` (GitHub Apps).
    GithubAppJwt,
}

/// A set of HTTP status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<RangeInclusive<u16>>);

impl StatusSet {
    pub fn of(codes: &[u16]) -> StatusSet {
        StatusSet(codes.iter().map(|code| *code..=*code).collect())
    }

    pub fn range(codes: RangeInclusive<u16>) -> StatusSet {
        StatusSet(vec![codes])
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|range| range.contains(&code))
    }

    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|range| match (range.start(), range.end()) {
                (a, b) if a == b => a.to_string(),
                (a, b) => format!("{a}-{b}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A response header condition: present, and equal to / containing a value when given.
#[derive(Debug, Clone)]
pub struct HeaderCondition {
    pub name: HeaderName,
    pub equals: Option<String>,
    pub contains: Option<String>,
    /// Reported when the condition is false; `assertion` unless a provider says otherwise.
    pub class: FailureClass,
}

/// A JSON-path condition on the body: at least one match, all equal to `equals` when given.
#[derive(Debug, Clone)]
pub struct JsonCondition {
    pub path: JsonPath,
    /// The path as written, for messages (it comes from configuration, not from upstream).
    pub source: String,
    pub equals: Option<Value>,
    /// Reported when the condition is false; `assertion` unless a provider says otherwise
    /// (an endpoint answering 200 `{"valid": false}` for a bad token means `auth`).
    pub class: FailureClass,
}

impl JsonCondition {
    pub fn parse(path: &str, equals: Option<Value>) -> Result<JsonCondition, String> {
        let parsed = JsonPath::parse(path).map_err(|_| format!("invalid JSON path {path:?}"))?;
        Ok(JsonCondition {
            path: parsed,
            source: path.to_owned(),
            equals,
            class: FailureClass::Assertion,
        })
    }
}

/// A connector-specific judgement of a response whose status was acceptable.
pub type Evaluator = fn(&Response) -> Result<Cow<'static, str>, Failure>;

/// What makes a response healthy.
#[derive(Debug, Clone)]
pub struct Expect {
    pub status: StatusSet,
    /// Also healthy when the request carried no credentials because none are configured
    /// (an API that answers 401 to anonymous callers is still up).
    pub anonymous_status: Vec<u16>,
    /// Statuses that mean the credentials were refused when some were sent, beyond 401 and
    /// 403 (Azure DevOps answers a bad PAT with 203 and a sign-in page).
    pub auth_status: Vec<u16>,
    pub headers: Vec<HeaderCondition>,
    pub json: Vec<JsonCondition>,
    pub body_contains: Option<String>,
    pub evaluator: Option<Evaluator>,
}

impl Expect {
    pub fn status(status: StatusSet) -> Expect {
        Expect {
            status,
            anonymous_status: Vec::new(),
            auth_status: Vec::new(),
            headers: Vec::new(),
            json: Vec::new(),
            body_contains: None,
            evaluator: None,
        }
    }

    /// Judges `response`; `with_credentials` tells whether the request carried any.
    pub fn evaluate(
        &self,
        response: &Response,
        with_credentials: bool,
    ) -> Result<Cow<'static, str>, Failure> {
        let status = response.status.as_u16();
        rate_limited(response)?;
        if with_credentials && self.auth_status.contains(&status) {
            return Err(Failure::new(
                FailureClass::Auth,
                format!("HTTP {status}: credentials rejected"),
            ));
        }
        let acceptable = self.status.contains(status)
            || (!with_credentials && self.anonymous_status.contains(&status));
        if !acceptable {
            return Err(unexpected_status(status, with_credentials, &self.status));
        }
        for condition in &self.headers {
            let value = response
                .headers
                .get(&condition.name)
                .and_then(|value| value.to_str().ok());
            let holds = value.is_some_and(|value| {
                condition.equals.as_deref().is_none_or(|e| value == e)
                    && condition
                        .contains
                        .as_deref()
                        .is_none_or(|c| value.contains(c))
            });
            if !holds {
                return Err(Failure::new(
                    condition.class,
                    format!("header {} does not match", condition.name),
                ));
            }
        }
        if !self.json.is_empty() {
            let document = json_body(response)?;
            for condition in &self.json {
                let nodes = condition.path.query(&document).all();
                let holds = !nodes.is_empty()
                    && condition
                        .equals
                        .as_ref()
                        .is_none_or(|expected| nodes.iter().all(|node| *node == expected));
                if !holds {
                    return Err(Failure::new(
                        condition.class,
                        format!("JSON path {} does not match", condition.source),
                    ));
                }
            }
        }
        if let Some(needle) = &self.body_contains {
            let found = response
                .body
                .windows(needle.len().max(1))
                .any(|window| window == needle.as_bytes());
            if !found {
                return Err(Failure::new(
                    FailureClass::Assertion,
                    "body does not contain the expected text",
                ));
            }
        }
        match self.evaluator {
            Some(evaluate) => evaluate(response),
            None => Ok(Cow::Owned(format!("HTTP {status}"))),
        }
    }
}

/// The body as JSON, for conditions and evaluators.
pub fn json_body(response: &Response) -> Result<Value, Failure> {
    if response.truncated {
        return Err(Failure::new(
            FailureClass::Assertion,
            "response body too large to evaluate",
        ));
    }
    serde_json::from_slice(&response.body)
        .map_err(|_| Failure::new(FailureClass::Assertion, "response body is not JSON"))
}

/// `429`, or `403` with `x-ratelimit-remaining: 0` or a `retry-after` (GitHub style).
pub fn rate_limited(response: &Response) -> Result<(), Failure> {
    let status = response.status.as_u16();
    let header = |name: &str| {
        response
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    let limited = status == 429
        || (status == 403
            && (header("x-ratelimit-remaining") == Some("0") || header("retry-after").is_some()));
    if limited {
        return Err(Failure::new(
            FailureClass::RateLimited,
            format!("HTTP {status}: rate limited"),
        ));
    }
    Ok(())
}

/// The failure for a status outside the expected set: `auth` for 401/403 on an
/// authenticated call, `http_status` otherwise.
pub fn unexpected_status(status: u16, with_credentials: bool, expected: &StatusSet) -> Failure {
    if with_credentials && matches!(status, 401 | 403) {
        Failure::new(
            FailureClass::Auth,
            format!("HTTP {status}: credentials rejected"),
        )
    } else {
        Failure::new(
            FailureClass::HttpStatus,
            format!("HTTP {status} (expected {})", expected.describe()),
        )
    }
}

/// A request template plus its success conditions.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Appended to the integration's base URL.
    pub path: Template,
    pub headers: Vec<(HeaderName, Template)>,
    pub auth: Auth,
    pub body: Option<Bytes>,
    pub expect: Expect,
}

impl Call {
    pub fn get(path: &str, expect: Expect) -> Call {
        Call {
            method: Method::GET,
            path: Template::literal(path),
            headers: Vec::new(),
            auth: Auth::None,
            body: None,
            expect,
        }
    }

    pub fn with_auth(mut self, auth: Auth) -> Call {
        self.auth = auth;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Call {
        self.headers
            .push((HeaderName::from_static(name), Template::literal(value)));
        self
    }

    /// Whether the call can carry credentials at all.
    pub fn uses_credentials(&self) -> bool {
        self.auth != Auth::None
            || self
                .headers
                .iter()
                .any(|(_, value)| value.carries_credentials())
    }

    /// Whether the call uses the integration's own AuthRef.
    pub fn uses_integration_secret(&self) -> bool {
        self.auth != Auth::None
            || self.headers.iter().any(|(_, value)| {
                value
                    .parts
                    .iter()
                    .any(|part| matches!(part, Part::Secret(_)))
            })
    }

    /// Whether a header carries a credential from an AuthRef of its own (not the
    /// integration's).
    pub fn has_own_credentials(&self) -> bool {
        self.headers.iter().any(|(_, value)| {
            value
                .parts
                .iter()
                .any(|part| matches!(part, Part::SecretRef(_)))
        })
    }

    /// Sends the call. With `credentials` false, the auth scheme and every header that
    /// carries a credential are left out; with it true they are added from `secret` (the
    /// integration's AuthRef) where there is one. Returns the response and whether any
    /// credential went out.
    pub async fn send(
        &self,
        session: &Session<'_>,
        credentials: bool,
        secret: Option<&SecretValue>,
    ) -> Result<(Response, bool), Failure> {
        let url = session.url(&self.path.render(session, None, true)?)?;
        let mut request = Request::get(url);
        request.method = self.method.clone();
        request.body = self.body.clone();
        if self.body.is_some() {
            request.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let mut sent_credentials = false;
        for (name, template) in &self.headers {
            let carries = template.carries_credentials();
            if carries && !credentials {
                continue;
            }
            let needs_integration_secret = template
                .parts
                .iter()
                .any(|part| matches!(part, Part::Secret(_)));
            if needs_integration_secret && secret.is_none() {
                continue;
            }
            let value = header_value(&template.render(session, secret, false)?, carries)?;
            request.headers.insert(name.clone(), value);
            sent_credentials |= carries;
        }
        if let (true, Some(secret)) = (credentials, secret) {
            if let Some(value) = self.authorization(session, secret)? {
                request
                    .headers
                    .insert(http::header::AUTHORIZATION, header_value(&value, true)?);
                sent_credentials = true;
            }
        }
        let response = session.send(request).await?;
        Ok((response, sent_credentials))
    }

    fn authorization(
        &self,
        session: &Session<'_>,
        secret: &SecretValue,
    ) -> Result<Option<String>, Failure> {
        Ok(match self.auth {
            Auth::None => None,
            Auth::Basic => Some(basic_authorization(secret)),
            Auth::Bearer => Some(format!("Bearer {}", secret.expose())),
            Auth::GithubAppJwt => Some(format!(
                "Bearer {}",
                super::github_app::app_jwt(secret, session)?
            )),
        })
    }

    /// The periodic check: the call with the integration's credentials when it has an
    /// AuthRef, judged by [`Expect`].
    pub async fn check(
        &self,
        session: &Session<'_>,
        requires_credentials: bool,
    ) -> Result<Cow<'static, str>, Failure> {
        // The AuthRef is resolved only when this call can use it.
        let secret = if requires_credentials || self.uses_integration_secret() {
            session.secret()?
        } else {
            None
        };
        if requires_credentials && secret.is_none() {
            return Err(missing_auth_ref());
        }
        let (response, with_credentials) = self.send(session, true, secret.as_ref()).await?;
        self.expect.evaluate(&response, with_credentials)
    }
}

/// `Authorization: Basic` from a `user:password` secret.
pub fn basic_authorization(secret: &SecretValue) -> String {
    let (user, password) = secret.user_and_password();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A header value; credentials are marked sensitive so that they are dropped on a
/// cross-origin redirect. An invalid value is reported without echoing it.
pub fn header_value(value: &str, sensitive: bool) -> Result<HeaderValue, Failure> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        Failure::config(if sensitive {
            "the secret is not a valid HTTP header value"
        } else {
            "a configured header value is not a valid HTTP header value"
        })
    })?;
    header.set_sensitive(sensitive);
    Ok(header)
}

pub fn missing_auth_ref() -> Failure {
    Failure::config("this provider needs an authRef")
}

/// A connector defined entirely by calls: its check, and optionally a different call for the
/// authenticated stage of the connection test. Declarative providers and several built-ins
/// are this.
#[derive(Debug, Clone)]
pub struct CallConnector {
    pub check: Call,
    /// The authenticated call of the connection test; the check call when absent.
    pub auth_test: Option<Call>,
    /// Without an AuthRef the check is a `config` failure.
    pub requires_credentials: bool,
}

#[async_trait::async_trait]
impl Connector for CallConnector {
    async fn check_health(&self, session: &Session<'_>) -> Verdict {
        self.run_check(session).await.into()
    }

    async fn test_connection(&self, session: &Session<'_>) -> Verdict {
        self.run_test(session).await.into()
    }
}

impl CallConnector {
    pub async fn run_check(&self, session: &Session<'_>) -> Result<(), Failure> {
        self.check.check(session, self.requires_credentials).await?;
        Ok(())
    }

    /// `http`: the check call without credentials — judged fully when it never carries any,
    /// otherwise any response below 500 shows the service is reachable. `auth`: when there
    /// are credentials to try (or the provider needs them), the authenticated call, judged
    /// fully.
    pub async fn run_test(&self, session: &Session<'_>) -> Result<(), Failure> {
        self.http_stage(session).await?;
        let call = self.auth_test.as_ref().unwrap_or(&self.check);
        if session.target.auth_ref.is_none()
            && !self.requires_credentials
            && !call.has_own_credentials()
        {
            return Ok(());
        }
        auth_stage(session, async {
            let secret = session.secret()?;
            if secret.is_none() && self.requires_credentials {
                return Err(missing_auth_ref());
            }
            let (response, with_credentials) = call.send(session, true, secret.as_ref()).await?;
            call.expect.evaluate(&response, with_credentials)
        })
        .await
    }

    /// The connection test's `http` stage; returns the response for later stages.
    pub async fn http_stage(&self, session: &Session<'_>) -> Result<Response, Failure> {
        let anonymous = !self.check.uses_credentials();
        let (response, _) = session
            .diagnostics
            .stage(
                "http",
                async {
                    let (response, _) = self.check.send(session, false, None).await?;
                    let message = if anonymous {
                        self.check.expect.evaluate(&response, false)?
                    } else {
                        reachable(&response)?
                    };
                    Ok((response, message))
                },
                |(_, message)| message.clone(),
            )
            .await?;
        Ok(response)
    }
}

/// The connection test's `auth` stage around `body`, which judges the authenticated call.
pub async fn auth_stage<F>(session: &Session<'_>, body: F) -> Result<(), Failure>
where
    F: std::future::Future<Output = Result<Cow<'static, str>, Failure>>,
{
    session
        .diagnostics
        .stage("auth", body, Clone::clone)
        .await
        .map(drop)
}

/// Reachability: any answer below 500 means the service is there.
pub fn reachable(response: &Response) -> Result<Cow<'static, str>, Failure> {
    let status = response.status.as_u16();
    if status >= 500 {
        return Err(Failure::new(
            FailureClass::HttpStatus,
            format!("HTTP {status}"),
        ));
    }
    Ok(Cow::Owned(format!("HTTP {status}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_placeholders() {
        let template = Template::parse("token {{secret}}", true).unwrap();
        assert!(template.carries_credentials());
        let template = Template::parse("/api/{{ config.repo }}/x", false).unwrap();
        assert!(!template.carries_credentials());
        assert!(Template::parse("/{{secret}}", false).is_err());
        assert!(Template::parse("{{nope}}", true).is_err());
        assert!(Template::parse("{{secret", true).is_err());
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn status_sets_describe_themselves() {
        let set = StatusSet(vec![200..=299, 304..=304]);
        assert!(set.contains(204) && set.contains(304) && !set.contains(301));
        assert_eq!(set.describe(), "200-299, 304");
    }
}
