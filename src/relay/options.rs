//! [`RelayOptions`]: how the relay publishes, from `[events]`, with the fixed limits (page
//! size, timeouts, pruning batches) that are not configuration.

use std::time::Duration;

use crate::config::{EventsConfig, JetStreamMode};

/// How the relay publishes, from `[events]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayOptions {
    pub jetstream: JetStreamMode,
    pub stream: String,
    pub manage_stream: bool,
    pub duplicate_window: Duration,
    pub retention: Duration,
    pub sweep_interval: Duration,
    pub max_in_flight: usize,
    /// Rows read per query.
    pub page_size: u32,
    /// How long a publish, an ack or a flush may take before the pass gives up.
    pub publish_timeout: Duration,
    /// How often published rows are pruned.
    pub prune_interval: Duration,
    /// Rows per pruning `DELETE`, and the most such statements per run.
    pub prune_batch: u32,
    pub prune_max_batches: u32,
    /// How long a stopping relay keeps trying to publish what is left.
    pub final_pass_timeout: Duration,
}

impl From<&EventsConfig> for RelayOptions {
    fn from(config: &EventsConfig) -> Self {
        RelayOptions {
            jetstream: config.jetstream,
            stream: config.stream.clone(),
            manage_stream: config.manage_stream,
            duplicate_window: config.duplicate_window,
            retention: config.retention,
            sweep_interval: config.sweep_interval.max(Duration::from_millis(10)),
            max_in_flight: config.max_in_flight.max(1),
            page_size: 1024,
            publish_timeout: Duration::from_secs(5),
            prune_interval: Duration::from_secs(60),
            prune_batch: 10_000,
            prune_max_batches: 100,
            final_pass_timeout: Duration::from_secs(3),
        }
    }
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions::from(&EventsConfig::default())
    }
}
