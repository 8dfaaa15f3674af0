//! The generic `http` connector, configured per integration:
//!
//! | key | meaning |
//! |---|---|
//! | `method` | `GET` (default), `HEAD` or `POST` |
//! | `path` | appended to the base URL (default: the base URL itself) |
//! | `expectedStatus` | list of healthy status codes (default 200–399) |
//! | `header` | `{name, equals}` or `{name, contains}`: a response header condition |
//! | `jsonPath` | `{path, equals}`: a JSONPath (RFC 9535) condition; without `equals`, the path must match |
//! | `headers` | request headers; a value that is an AuthRef is replaced by that secret |
//! | `authScheme` | `basic` or `bearer`: authenticate with the integration's AuthRef |
//! | `body` | request body for `POST` (a string, or JSON sent as JSON) |

use async_trait::async_trait;
use http::header::HeaderName;
use http::Method;
use serde_json::{Map, Value};

use super::request::{
    Auth, Call, CallConnector, Expect, HeaderCondition, JsonCondition, StatusSet, Template,
};
use super::{Connector, Failure, Session, Verdict};
use crate::secrets::AuthRef;

/// Headers a configuration may not set: they describe the message framing or the
/// connection, which catalogd controls.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

#[derive(Debug, Clone, Copy, Default)]
pub struct HttpConnector;

#[async_trait]
impl Connector for HttpConnector {
    async fn check_health(&self, session: &Session<'_>) -> Verdict {
        match connector(&session.target.configuration) {
            Ok(connector) => connector.run_check(session).await.into(),
            Err(failure) => Verdict::Failed(failure),
        }
    }

    async fn test_connection(&self, session: &Session<'_>) -> Verdict {
        match connector(&session.target.configuration) {
            Ok(connector) => connector.run_test(session).await.into(),
            Err(failure) => Verdict::Failed(failure),
        }
    }
}

/// The call an integration's configuration describes.
pub fn connector(configuration: &Map<String, Value>) -> Result<CallConnector, Failure> {
    let method = match configuration.get("method") {
        None => Method::GET,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("GET") => Method::GET,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("HEAD") => Method::HEAD,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => Method::POST,
        Some(_) => return Err(invalid("method", "GET, HEAD or POST")),
    };
    let path = match configuration.get("path") {
        None => String::new(),
        Some(Value::String(path)) if !path.contains(['\r', '\n', '#']) => path.clone(),
        Some(_) => return Err(invalid("path", "a path string")),
    };
    let status = match configuration.get("expectedStatus") {
        None => StatusSet::range(200..=399),
        Some(value) => StatusSet::of(&status_codes(value)?),
    };
    let mut expect = Expect::status(status);
    if let Some(header) = configuration.get("header") {
        expect.headers.push(header_condition(header)?);
    }
    if let Some(json) = configuration.get("jsonPath") {
        expect.json.push(json_condition(json)?);
    }
    let auth = match configuration.get("authScheme") {
        None => Auth::None,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("basic") => Auth::Basic,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("bearer") => Auth::Bearer,
        Some(_) => return Err(invalid("authScheme", "basic or bearer")),
    };
    let body = match (configuration.get("body"), &method) {
        (None, _) => None,
        (Some(Value::String(text)), &Method::POST) => Some(text.clone().into()),
        (Some(json), &Method::POST) => Some(json.to_string().into()),
        (Some(_), _) => return Err(invalid("body", "only used with POST")),
    };
    let check = Call {
        method,
        path: Template::literal(&path),
        headers: request_headers(configuration.get("headers"))?,
        auth,
        body,
        expect,
    };
    Ok(CallConnector {
        check,
        auth_test: None,
        requires_credentials: false,
    })
}

fn invalid(key: &str, expected: &str) -> Failure {
    Failure::config(format!("configuration.{key} must be {expected}"))
}

fn status_codes(value: &Value) -> Result<Vec<u16>, Failure> {
    let codes: Option<Vec<u16>> = value.as_array().and_then(|items| {
        items
            .iter()
            .map(|item| {
                item.as_u64()
                    .and_then(|code| u16::try_from(code).ok())
                    .filter(|code| (100..=599).contains(code))
            })
            .collect()
    });
    match codes {
        Some(codes) if !codes.is_empty() => Ok(codes),
        _ => Err(invalid(
            "expectedStatus",
            "a non-empty list of status codes (100-599)",
        )),
    }
}

fn header_condition(value: &Value) -> Result<HeaderCondition, Failure> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = text("name")
        .and_then(|name| HeaderName::try_from(name).ok())
        .ok_or_else(|| invalid("header", "{name, equals} or {name, contains}"))?;
    Ok(HeaderCondition {
        name,
        equals: text("equals"),
        contains: text("contains"),
        class: catalogd_actors::FailureClass::Assertion,
    })
}

fn json_condition(value: &Value) -> Result<JsonCondition, Failure> {
    let path = value
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("jsonPath", "{path, equals}"))?;
    JsonCondition::parse(path, value.get("equals").cloned())
        .map_err(|_| invalid("jsonPath.path", "a valid JSONPath expression"))
}

fn request_headers(value: Option<&Value>) -> Result<Vec<(HeaderName, Template)>, Failure> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let map = value
        .as_object()
        .ok_or_else(|| invalid("headers", "an object of header names to values"))?;
    map.iter()
        .map(|(name, value)| {
            let header = HeaderName::try_from(name.as_str())
                .ok()
                .filter(|header| !RESERVED_HEADERS.contains(&header.as_str()))
                .ok_or_else(|| invalid("headers", "valid, non-reserved header names"))?;
            let value = value
                .as_str()
                .ok_or_else(|| invalid("headers", "an object of string values"))?;
            let template = if value.starts_with("ref://") {
                Template::secret_ref(AuthRef::parse(value)?)
            } else {
                Template::literal(value)
            };
            Ok((header, template))
        })
        .collect()
}
