//! [`RelayCounters`]: what the relay has done, for tests and operators (lock-free, read at any
//! time). The Prometheus series come from the internal events the relay emits alongside.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The relay's counters, for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct RelayCounters {
    backlog: AtomicU64,
    published: AtomicU64,
    duplicates: AtomicU64,
    failures: AtomicU64,
    pruned: AtomicU64,
    jetstream: AtomicBool,
    publish_micros_sum: AtomicU64,
}

impl RelayCounters {
    /// Unpublished events at the last sweep (`catalogd_outbox_backlog`).
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }
    /// Events published (acked, or flushed on core NATS), duplicates included; their marks in
    /// the outbox follow asynchronously.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// PubAcks with `duplicate` set: the stream already held the event.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Publishes, acks or flushes that failed (the event stays in the outbox).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    pub fn pruned(&self) -> u64 {
        self.pruned.load(Ordering::Relaxed)
    }
    /// Whether the last publishes went to JetStream (else core NATS).
    pub fn jetstream(&self) -> bool {
        self.jetstream.load(Ordering::Relaxed)
    }
    /// Total seconds from publish to ack (or flush) over [`RelayCounters::published`] events.
    pub fn publish_seconds_sum(&self) -> f64 {
        self.publish_micros_sum.load(Ordering::Relaxed) as f64 / 1e6
    }

    pub(super) fn set_backlog(&self, backlog: u64) {
        self.backlog.store(backlog, Ordering::Relaxed);
    }
    pub(super) fn count_published(&self, elapsed: Duration) {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.publish_micros_sum.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
    pub(super) fn count_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn count_pruned(&self, deleted: u64) {
        self.pruned.fetch_add(deleted, Ordering::Relaxed);
    }
    pub(super) fn set_jetstream(&self, jetstream: bool) {
        self.jetstream.store(jetstream, Ordering::Relaxed);
    }
}
