//! The NATS control service (DESIGN §6): an async-nats `service` named `integrations`,
//! discoverable under `$SRV` (PING, INFO, STATS), with one endpoint per shared operation on
//! `integrations.control.{list,get,health,test,submit,pause,resume,activate}`.
//!
//! Every endpoint decodes a request, calls one use case of [`crate::app`] (the same the REST
//! handlers call) and encodes its answer, so authentication, scopes, tenant rules, validation
//! and errors cannot drift between the two transports:
//!
//! - The bearer token is the `Authorization` header (`Bearer <JWT>`), checked first, exactly
//!   as REST does it.
//! - The payload is the REST request body as a JSON object plus `integrationId` for the
//!   operations on one integration; for `list` it holds the REST query parameters (`limit`
//!   may be a number or a string). An empty payload is `{}`; unknown fields are refused.
//! - A success is the REST response body as JSON. A failure is an empty payload with
//!   `Nats-Service-Error-Code` = the HTTP status REST would answer (400, 401, 403, 404, 409,
//!   413, 422, 503, or 500 for a bug) and `Nats-Service-Error` = `"<code>: <detail>"`, the
//!   stable problem `code` and the problem `detail`, for example
//!   `not_found: No such resource.`.
//!
//! Instances of the service on several daemons share the default queue group `q`, so each
//! request is answered by one of them. Each request runs in its own task, bounded by
//! `http.request_timeout`, so a slow connection test never holds up other requests.

use std::time::Duration;

use async_nats::service::{self, ServiceExt};
use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::app::decode::{self, describe_serde_message, from_json_value, reject_json};
use crate::app::integrations::ListParams;
use crate::app::transitions::EmptyRequest;
use crate::app::{App, AppError, UseCase};
use crate::auth::Scope;

/// The service's name under `$SRV`.
pub const SERVICE_NAME: &str = "integrations";
pub const SERVICE_VERSION: &str = "1.0.0";
/// The subject prefix of the endpoints: `integrations.control.<operation>`.
pub const SUBJECT_PREFIX: &str = "integrations.control";

/// The use cases NATS offers, one endpoint each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    List,
    Get,
    Health,
    Test,
    Submit,
    Pause,
    Resume,
    Activate,
}

impl Operation {
    pub const ALL: [Operation; 8] = [
        Operation::List,
        Operation::Get,
        Operation::Health,
        Operation::Test,
        Operation::Submit,
        Operation::Pause,
        Operation::Resume,
        Operation::Activate,
    ];

    /// The use case the endpoint calls.
    pub fn use_case(self) -> UseCase {
        match self {
            Operation::List => UseCase::List,
            Operation::Get => UseCase::Get,
            Operation::Health => UseCase::Health,
            Operation::Test => UseCase::Test,
            Operation::Submit => UseCase::Submit,
            Operation::Pause => UseCase::Pause,
            Operation::Resume => UseCase::Resume,
            Operation::Activate => UseCase::Activate,
        }
    }

    /// The endpoint's name: the use case's.
    pub fn name(self) -> &'static str {
        self.use_case().name()
    }

    /// The scope the use case needs.
    pub fn scope(self) -> Scope {
        self.use_case().scope()
    }

    /// Whether the payload names one integration (`integrationId`).
    pub fn takes_id(self) -> bool {
        self.use_case().takes_id()
    }
}

/// How long [`ControlService::stop`] waits for requests in flight beyond the request limit.
const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("cannot start the NATS control service: {0}")]
pub struct ControlError(String);

/// The running control service. [`ControlService::stop`] stops it gracefully; dropping the
/// handle stops it too, in the background.
pub struct ControlService {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Registers the service and its endpoints on `client` and starts answering requests.
pub async fn start(client: Client, app: App) -> Result<ControlService, ControlError> {
    let error = |e: async_nats::Error| ControlError(e.to_string());
    let service = client
        .service_builder()
        .description("catalogd integration control: the REST operations over request-reply")
        .start(SERVICE_NAME, SERVICE_VERSION)
        .await
        .map_err(error)?;
    let group = service.group(SUBJECT_PREFIX);
    let mut endpoints = Vec::with_capacity(Operation::ALL.len());
    for operation in Operation::ALL {
        // Named by the operation alone (the default name is the dashed subject).
        let endpoint = group
            .endpoint_builder()
            .name(operation.name())
            .add(operation.name())
            .await
            .map_err(error)?;
        endpoints.push(endpoint.map(move |request| (operation, request)));
    }
    let requests = futures_util::stream::select_all(endpoints);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve(client, service, requests, app, stopped));
    tracing::info!(
        service = SERVICE_NAME,
        subjects = %format!("{SUBJECT_PREFIX}.*"),
        "NATS control service started"
    );
    Ok(ControlService { stop, task })
}

impl ControlService {
    /// Leaves the queue group (no new requests reach this instance; other instances take
    /// them), lets the requests in flight answer, then returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    client: Client,
    service: service::Service,
    mut requests: impl futures_util::Stream<Item = (Operation, service::Request)> + Unpin,
    app: App,
    mut stopped: watch::Receiver<bool>,
) {
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            // A stop request, or the handle was dropped.
            _ = stopped.wait_for(|stop| *stop) => break,
            next = requests.next() => match next {
                Some((operation, request)) => {
                    in_flight.spawn(handle(app.clone(), operation, request));
                }
                None => break,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    // Stopping the service ends its $SRV responders and tells the endpoints, so it must come
    // while they still listen; dropping them then unsubscribes them. Then the requests
    // already taken get their answers.
    if let Err(error) = service.stop().await {
        tracing::warn!(%error, "NATS control service did not stop cleanly");
    }
    drop(requests);
    let deadline = app.request_timeout + STOP_GRACE;
    if tokio::time::timeout(deadline, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            abandoned = in_flight.len(),
            "NATS control requests still running at stop"
        );
        in_flight.abort_all();
    }
    // Bounded: with NATS down a flush would wait for the reconnection.
    let _ = tokio::time::timeout(STOP_GRACE, client.flush()).await;
    tracing::info!("NATS control service stopped");
}

/// Answers one request: the operation's JSON, or its error in the service error headers.
async fn handle(app: App, operation: Operation, request: service::Request) {
    if request.message.reply.is_none() {
        // A publish without a reply subject: nobody to answer.
        return;
    }
    let answer = tokio::time::timeout(
        app.request_timeout,
        answer(&app, operation, &request.message),
    )
    .await
    .unwrap_or(Err(AppError::Timeout));
    let response = answer.map_err(|error| {
        tracing::info!(
            endpoint = operation.name(),
            status = error.status(),
            code = %error.code(),
            "NATS control request failed"
        );
        service::error::Error {
            status: error_text(error.code(), &error.detail()),
            code: usize::from(error.status()),
        }
    });
    if let Err(error) = request.respond(response).await {
        tracing::warn!(endpoint = operation.name(), %error, "cannot send a NATS control reply");
    }
}

/// `Nats-Service-Error`: `<code>: <detail>`, on one line.
fn error_text(code: &str, detail: &str) -> String {
    let detail: String = detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{code}: {detail}")
}

/// Authentication first, as REST does: an unauthenticated caller learns nothing about ids or
/// bodies. Then the payload, then the use case.
async fn answer(app: &App, operation: Operation, message: &Message) -> Result<Bytes, AppError> {
    let authorization = message.headers.as_ref().and_then(authorization);
    let principal = app.authenticate(authorization, operation.use_case())?;
    if message.payload.len() > app.body_limit_bytes {
        return Err(AppError::PayloadTooLarge);
    }
    let mut body = body_object(&message.payload)?;
    let id = if operation.takes_id() {
        take_integration_id(&mut body)?
    } else {
        Uuid::nil()
    };
    let body = Value::Object(body);
    match operation {
        Operation::List => {
            let params = list_params(body)?;
            Ok(app.list(&principal, params).await?.into_bytes())
        }
        Operation::Get => {
            empty(body)?;
            reply(&app.get(&principal, id).await?)
        }
        Operation::Health => {
            empty(body)?;
            reply(&app.health(&principal, id).await?)
        }
        Operation::Test => {
            empty(body)?;
            reply(&app.test(&principal, id).await?)
        }
        Operation::Submit => {
            empty(body)?;
            reply(&app.submit(&principal, id).await?)
        }
        Operation::Pause => {
            let request = from_json_value(body)?;
            reply(&app.pause(&principal, id, request).await?)
        }
        Operation::Resume => {
            let request = from_json_value(body)?;
            reply(&app.resume(&principal, id, request).await?)
        }
        Operation::Activate => {
            let request = from_json_value(body)?;
            reply(&app.activate(&principal, id, request).await?)
        }
    }
}

/// The value of the one `Authorization` header (NATS header names are matched without
/// regard to case); `None` when it is absent or repeated.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers
        .iter()
        .filter(|(name, _)| {
            let name: &str = name.as_ref();
            name.eq_ignore_ascii_case("authorization")
        })
        .flat_map(|(_, values)| values.iter());
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(value.as_str())
}

/// The payload as a JSON object; an empty payload is `{}`.
fn body_object(payload: &[u8]) -> Result<Map<String, Value>, AppError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(payload).map_err(reject_json)? {
        Value::Object(body) => Ok(body),
        _ => Err(AppError::InvalidBody(
            "The request must be a JSON object.".into(),
        )),
    }
}

/// Takes `integrationId` out of the body: required, a string, and a hyphenated UUID (any
/// other string names no integration: 404, as for a malformed REST path).
fn take_integration_id(body: &mut Map<String, Value>) -> Result<Uuid, AppError> {
    match body.remove("integrationId") {
        None | Some(Value::Null) => Err(AppError::InvalidBody(
            "Missing field `integrationId`.".into(),
        )),
        Some(Value::String(raw)) => decode::integration_id(&raw),
        Some(_) => Err(AppError::InvalidBody(
            "integrationId must be a string.".into(),
        )),
    }
}

/// Operations without parameters refuse any field but `integrationId`.
fn empty(body: Value) -> Result<(), AppError> {
    from_json_value::<EmptyRequest>(body).map(|_| ())
}

/// The REST query parameters of a list, as JSON: failures are `invalid_query` as they are
/// for a query string. A numeric `limit` is taken as its decimal text.
fn list_params(mut body: Value) -> Result<ListParams, AppError> {
    if let Some(limit) = body.get_mut("limit") {
        if let Value::Number(number) = limit {
            *limit = Value::String(number.to_string());
        }
    }
    serde_json::from_value(body).map_err(|error| {
        AppError::InvalidQuery(
            describe_serde_message(&error.to_string())
                .unwrap_or_else(|| "The list parameters are malformed.".into()),
        )
    })
}

fn reply<T: Serialize>(value: &T) -> Result<Bytes, AppError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|error| {
        tracing::error!(%error, "cannot serialize a NATS control reply");
        AppError::Internal
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn authorization_is_one_header_of_any_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(authorization(&headers), None);
        headers.insert("authorization", "Bearer a");
        assert_eq!(authorization(&headers), Some("Bearer a"));
        headers.insert("Authorization", "Bearer b");
        assert_eq!(authorization(&headers), None, "two headers");
    }

    #[test]
    fn payloads_and_ids() {
        assert!(body_object(b"").unwrap().is_empty());
        assert!(body_object(b" \n").unwrap().is_empty());
        assert!(matches!(body_object(b"{"), Err(AppError::InvalidJson(_))));
        assert!(matches!(body_object(b"[]"), Err(AppError::InvalidBody(_))));
        let id = Uuid::now_v7();
        let mut body = body_object(json!({"integrationId": id}).to_string().as_bytes()).unwrap();
        assert_eq!(take_integration_id(&mut body).unwrap(), id);
        assert!(body.is_empty());
        for (value, code) in [
            (json!({}), "invalid_body"),
            (json!({"integrationId": 5}), "invalid_body"),
            (json!({"integrationId": "nope"}), "not_found"),
        ] {
            let mut body = value.as_object().unwrap().clone();
            let error = take_integration_id(&mut body).unwrap_err();
            assert_eq!(error.code(), code, "{value}");
        }
        assert_eq!(
            empty(json!({"extra": 1})).unwrap_err().code(),
            "invalid_body"
        );
    }

    #[test]
    fn list_parameters_are_query_parameters() {
        let params = list_params(json!({"limit": 2, "type": "ci"})).unwrap();
        assert_eq!(params.limit.as_deref(), Some("2"));
        assert_eq!(params.kind.as_deref(), Some("ci"));
        for value in [json!({"bogus": "1"}), json!({"tag": ["a", "b"]})] {
            assert_eq!(list_params(value).unwrap_err().code(), "invalid_query");
        }
    }

    #[test]
    fn endpoints_and_scopes() {
        let reads: Vec<&str> = Operation::ALL
            .iter()
            .filter(|op| op.scope() == Scope::Read)
            .map(|op| op.name())
            .collect();
        assert_eq!(reads, ["list", "get", "health"]);
        assert!(!Operation::List.takes_id() && Operation::Pause.takes_id());
    }

    #[test]
    fn error_text_is_code_and_detail_on_one_line() {
        assert_eq!(
            error_text("not_found", "No such\nresource."),
            "not_found: No such resource."
        );
    }
}
