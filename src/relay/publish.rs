//! The relay's NATS I/O: choosing JetStream or core NATS (creating or checking the stream),
//! sending one event to JetStream with its ack to await, and publishing a batch on core NATS
//! with the flush that stands for its delivery. Nothing here decides order: the worker asks
//! [`super::order::Order`] first.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{Client, HeaderMap};

use super::RelayOptions;
use crate::cloudevents::SUBJECT_PREFIX;
use crate::config::JetStreamMode;
use crate::store::outbox::PendingEvent;

/// Where events go on the current connection.
#[derive(Clone)]
pub(super) enum Publisher {
    JetStream(jetstream::Context),
    Core(Client),
}

impl Publisher {
    pub(super) fn is_jetstream(&self) -> bool {
        matches!(self, Publisher::JetStream(_))
    }
}

/// What a JetStream publish resolves to: the event, when it was sent, and whether the ack
/// said `duplicate` (or why there was no ack).
pub(super) type Acked = (PendingEvent, Instant, Result<bool, String>);
/// A JetStream publish whose ack is still to come.
pub(super) type Ack = Pin<Box<dyn Future<Output = Acked> + Send>>;

/// JetStream when it is wanted and the server has it (creating or checking the stream),
/// else core NATS.
pub(super) async fn choose(client: &Client, options: &RelayOptions) -> Result<Publisher, String> {
    if options.jetstream == JetStreamMode::Off {
        return Ok(Publisher::Core(client.clone()));
    }
    let context = jetstream::ContextBuilder::new()
        .timeout(options.publish_timeout)
        .build(client.clone());
    // Whether the server has JetStream shows in the answer to the stream request (the
    // account-info request is not used: its reply differs between server versions).
    let core = || {
        tracing::info!("no JetStream on the NATS server: events go to core NATS, best effort");
        Ok(Publisher::Core(client.clone()))
    };
    let name = &options.stream;
    if options.manage_stream {
        let config = jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            storage: jetstream::stream::StorageType::File,
            duplicate_window: options.duplicate_window,
            ..Default::default()
        };
        match context.create_or_update_stream(config).await {
            Ok(info) => tracing::info!(
                stream = %info.config.name,
                messages = info.state.messages,
                "JetStream stream ready: events are acknowledged and deduplicated"
            ),
            Err(error) => match error.kind() {
                CreateStreamErrorKind::JetStreamUnavailable => return core(),
                CreateStreamErrorKind::JetStream(error)
                    if jetstream_disabled(error.error_code()) =>
                {
                    return core()
                }
                _ => {
                    return Err(format!(
                        "cannot create or update the JetStream stream {name}: {error}"
                    ))
                }
            },
        }
    } else {
        match context.get_stream(name).await {
            Ok(_) => tracing::info!(stream = %name, "using the existing JetStream stream"),
            Err(error) => match error.kind() {
                GetStreamErrorKind::JetStream(error) if jetstream_disabled(error.error_code()) => {
                    return core()
                }
                _ => {
                    return Err(format!(
                        "the JetStream stream {name} (events.manage_stream = false) is \
                         not available: {error}; create it on {SUBJECT_PREFIX}.>"
                    ))
                }
            },
        }
    }
    Ok(Publisher::JetStream(context))
}

/// Whether a JetStream API error says JetStream is off on the server or for the account.
fn jetstream_disabled(code: ErrorCode) -> bool {
    code == ErrorCode::JETSTREAM_NOT_ENABLED || code == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
}

/// Sends `event` to JetStream with `Nats-Msg-Id` = its id (the stream drops a repeat inside
/// its duplicate window); the returned future resolves when its ack arrives.
pub(super) async fn send(context: &jetstream::Context, event: PendingEvent) -> Ack {
    let started = Instant::now();
    let publish = PublishMessage::build()
        .payload(event.payload.clone().into())
        .message_id(event.event_id.to_string())
        .header("Content-Type", "application/cloudevents+json");
    let sent = context.send_publish(event.subject.clone(), publish).await;
    Box::pin(async move {
        let result = match sent {
            Ok(ack) => ack
                .await
                .map(|ack| ack.duplicate)
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        (event, started, result)
    })
}

/// Publishes `events` in order on core NATS and flushes; returns the time it took. Success
/// means the flush completed on the connection that carried them, no more (a subscriber that
/// is not connected misses them).
pub(super) async fn core(
    client: &Client,
    events: &[PendingEvent],
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    for event in events {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            event.event_id.to_string().as_str(),
        );
        headers.insert("Content-Type", "application/cloudevents+json");
        let publish = client.publish_with_headers(
            event.subject.clone(),
            headers,
            event.payload.clone().into(),
        );
        match tokio::time::timeout(timeout, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("publish: {error}")),
            Err(_) => return Err("publish timed out".to_owned()),
        }
    }
    match tokio::time::timeout(timeout, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(format!("flush: {error}")),
        Err(_) => return Err("flush timed out".to_owned()),
    }
    // A flush that completed across a reconnect proves nothing about what was sent before
    // it; check the connection is still the one that carried the batch.
    if client.connection_state() != State::Connected {
        return Err("disconnected during the flush".to_owned());
    }
    Ok(started.elapsed())
}
