//! Harbor: `GET /api/v2.0/health` (no authentication) is healthy only when every component
//! is; the connection test also calls `GET /api/v2.0/users/current` with basic auth from the
//! AuthRef (`user:password`, e.g. a robot account).

use std::borrow::Cow;

use catalogd_actors::FailureClass;
use serde_json::Value;

use super::request::{json_body, Auth, Call, CallConnector, Expect, StatusSet};
use super::Failure;
use crate::egress::Response;

pub fn connector() -> CallConnector {
    let mut health = Expect::status(StatusSet::of(&[200]));
    health.evaluator = Some(components_healthy);
    CallConnector {
        check: Call::get("/api/v2.0/health", health),
        auth_test: Some(
            Call::get(
                "/api/v2.0/users/current",
                Expect::status(StatusSet::of(&[200])),
            )
            .with_auth(Auth::Basic),
        ),
        requires_credentials: false,
    }
}

/// `{status, components: [{name, status}]}`: every component must be `healthy`. The first
/// unhealthy component is named, by name only (its `error` text is upstream content).
fn components_healthy(response: &Response) -> Result<Cow<'static, str>, Failure> {
    let document = json_body(response)?;
    let components = document
        .get("components")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Failure::new(FailureClass::Assertion, "health response has no components")
        })?;
    for component in components {
        if component.get("status").and_then(Value::as_str) != Some("healthy") {
            let name = component
                .get("name")
                .and_then(Value::as_str)
                .and_then(safe_name)
                .unwrap_or("unnamed");
            return Err(Failure::new(
                FailureClass::Assertion,
                format!("component {name} is unhealthy"),
            ));
        }
    }
    if document.get("status").and_then(Value::as_str) != Some("healthy") {
        return Err(Failure::new(
            FailureClass::Assertion,
            "harbor reports itself unhealthy",
        ));
    }
    Ok(Cow::Owned(format!(
        "all {} components healthy",
        components.len()
    )))
}

/// A component name as Harbor uses them (`core`, `jobservice`, `registryctl`, ...), or
/// nothing: arbitrary upstream text never reaches a message.
fn safe_name(name: &str) -> Option<&str> {
    let plausible = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plausible.then_some(name)
}
