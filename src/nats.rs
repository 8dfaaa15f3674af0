//! The NATS connection, from `[nats]`: URL, `credentials_file`, `token_env`, `tls_ca_file`.
//!
//! The daemon never waits for NATS: [`connect`] returns a client at once and connects (and
//! reconnects, forever, with a backoff capped at a few seconds) in the background, so
//! catalogd starts and keeps monitoring while NATS is down; events wait in the outbox. An
//! empty `nats.url` disables NATS altogether. [`NatsReadiness`] is how `/readyz` reports it.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions};

use crate::config::NatsConfig;

/// The longest wait between two reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the NATS token variable {0} is not set")]
    MissingToken(String),
    #[error("invalid NATS url: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// Logs connection changes once each (the client's own per-attempt chatter is filtered to
/// `warn` by [`crate::telemetry`]): an outage is a warning, not an error — events wait in the
/// outbox and the relay drains them when NATS is back.
fn log_event(event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => tracing::info!("NATS connected"),
        async_nats::Event::Disconnected => {
            tracing::warn!("NATS disconnected; events wait in the outbox until it is back")
        }
        async_nats::Event::ClientError(error) => {
            tracing::debug!(%error, "NATS connection attempt failed")
        }
        other => tracing::debug!(event = %other, "NATS event"),
    }
}

/// The connection options of `config` (authentication and TLS), without the address.
pub async fn connect_options(config: &NatsConfig, name: &str) -> Result<ConnectOptions, NatsError> {
    let mut options = ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move { log_event(event) });
    if let Some(path) = &config.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| NatsError::Credentials {
                    path: path.clone(),
                    source,
                })?;
    }
    if let Some(var) = &config.token_env {
        let token = std::env::var(var).map_err(|_| NatsError::MissingToken(var.clone()))?;
        options = options.token(token);
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(options)
}

/// Connects in the background; `None` when `nats.url` is empty.
pub async fn connect(config: &NatsConfig, name: &str) -> Result<Option<Client>, NatsError> {
    let url = config.url.trim();
    if url.is_empty() {
        tracing::info!("NATS disabled (nats.url is empty): events stay in the outbox");
        return Ok(None);
    }
    // The URL may carry credentials; log only the host part.
    let host = url.rsplit('@').next().unwrap_or(url);
    tracing::info!(
        server = host,
        "connecting to NATS in the background; until it answers, events wait in the outbox"
    );
    let options = connect_options(config, name).await?;
    // With `retry_on_initial_connect` this returns at once; only a malformed URL fails here.
    Ok(Some(options.connect(url).await?))
}

/// Exponential from 0 ms, capped at [`RECONNECT_DELAY_MAX`].
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(16);
    Duration::from_millis(1u64 << exponent).min(RECONNECT_DELAY_MAX)
}

/// How `/readyz` reports NATS: the daemon stays ready without it (events wait in the outbox).
#[derive(Debug, Clone, Default)]
pub struct NatsReadiness {
    client: Option<Client>,
}

impl NatsReadiness {
    pub fn new(client: Option<Client>) -> Self {
        NatsReadiness { client }
    }

    /// `ok` (connected), `degraded` (configured, not connected) or `disabled`.
    pub fn check(&self) -> &'static str {
        match &self.client {
            None => "disabled",
            Some(client) if client.connection_state() == State::Connected => "ok",
            Some(_) => "degraded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_is_capped() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(4), Duration::from_millis(8));
        assert_eq!(reconnect_delay(100), RECONNECT_DELAY_MAX);
    }

    #[tokio::test]
    async fn empty_url_disables_and_readiness_says_so() {
        let config = NatsConfig {
            url: String::new(),
            ..NatsConfig::default()
        };
        let client = connect(&config, "test").await.unwrap();
        assert!(client.is_none());
        assert_eq!(NatsReadiness::new(client).check(), "disabled");
    }

    #[tokio::test]
    async fn an_unreachable_server_does_not_block_start() {
        let config = NatsConfig {
            url: "nats://127.0.0.1:1".to_owned(),
            ..NatsConfig::default()
        };
        let client = tokio::time::timeout(Duration::from_secs(2), connect(&config, "test"))
            .await
            .expect("connect returns at once")
            .unwrap();
        assert_eq!(NatsReadiness::new(client).check(), "degraded");
    }
}
