//! The outbox relay: publishes the lifecycle events that commits wrote to the outbox
//! ([`crate::store::outbox`]) to NATS, in order per integration, and marks each one published
//! only once NATS has taken it.
//!
//! # Delivery
//!
//! - **JetStream** (`events.jetstream = "auto"` and the server has it): each event is published
//!   with `Nats-Msg-Id` = event id and marked published when its PubAck arrives. The stream
//!   (`events.stream`, created or updated at start unless `events.manage_stream = false`)
//!   drops a repeated id inside its duplicate window and the ack says `duplicate`; those are
//!   counted. Delivery is at least once from the outbox; beyond the window consumers
//!   deduplicate by event id.
//! - **Core NATS** (no JetStream, or `jetstream = "off"`): a page of events is published, then
//!   the connection is flushed, and only after a successful flush are they marked. That is
//!   best effort: the client can drop a publish made during a reconnect and still return `Ok`
//!   (nats-io/nats.rs#182), and a subscriber that is not connected misses the event.
//!
//! # Order and progress
//!
//! A pass walks the unpublished rows by `(integration_id, sequence)`. Events of different
//! integrations are in flight together (up to `events.max_in_flight`), but an integration has
//! at most one event in flight: its next event is sent only after the previous one was acked
//! (JetStream), so a failed publish can never let a later event overtake it. An integration
//! whose publish failed is skipped for the rest of the pass and retried in the next one.
//!
//! # Fast path and sweep
//!
//! Right after each commit the store hands the committed event to the relay in memory
//! ([`Handoff`]). The relay keeps, per integration, the next sequence it may send (`next`:
//! every lower one it sent itself, or a sweep found already marked). A handed-over event that
//! is its integration's next goes out at once, without reading the table; one that is not (a
//! gap: an earlier handoff late or lost; or an integration not seen since start) is left to a
//! sweep, which is then run. The sweep is the durable path: it walks the table as above,
//! skips rows this relay already sent (their marks may still be on their way), and runs every
//! `events.sweep_interval` and on [`RelayHandle::wake`], so an event without a handoff
//! (another daemon on the same database, a restart, a full channel) still goes out.
//!
//! Marks are written by a task of their own, one statement per batch of ids, so a publish never
//! waits for the database's write lock. A mark lost to a crash means a re-publish after the
//! restart, which JetStream drops as a duplicate inside its window. Published rows are pruned
//! after `events.retention`, a bounded batch at a time.
//!
//! # Modules
//!
//! `order` is the per-integration ordering state above as a plain type (no I/O, unit and
//! property tests); `worker` is the task's loop; `publish` the NATS I/O (JetStream stream
//! management, publishes, acks, flushes); `marks` the marks task; `prune` the pruning;
//! `options` and `counters` the public configuration and counters.

mod counters;
mod marks;
mod options;
mod order;
mod prune;
mod publish;
mod worker;

use std::sync::Arc;

use async_nats::Client;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

pub use counters::RelayCounters;
pub use options::RelayOptions;

use crate::cluster::Ownership;
use crate::store::outbox::{Handoff, OutboxStore, PendingEvent};
use worker::Worker;

/// Wakes the relay and reads its counters. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RelayHandle {
    wake: Arc<Notify>,
    counters: Arc<RelayCounters>,
}

impl RelayHandle {
    /// Asks for a sweep of the outbox table at once (or right after the current one). Never
    /// blocks; wake-ups while a sweep runs coalesce into one.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.counters
    }
}

/// The running relay task.
pub struct Relay {
    handle: RelayHandle,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts the relay over `outbox`, sweeping only (no handoff). With `client` `None` (NATS
    /// disabled) it publishes nothing but still reports the backlog and prunes.
    pub fn spawn(outbox: OutboxStore, client: Option<Client>, options: RelayOptions) -> Relay {
        Self::start(
            outbox,
            client,
            options,
            Arc::default(),
            None,
            Ownership::single("local", 1),
        )
    }

    /// Like [`Relay::spawn`], fed by `handoff`, through which the store passes every event
    /// right after its commit ([`crate::store::Database::handoff`]), so events go out without
    /// a read of the outbox; the sweep still finds whatever the handoff did not carry.
    pub fn spawn_with_handoff(
        outbox: OutboxStore,
        client: Option<Client>,
        options: RelayOptions,
        handoff: &Handoff,
        ownership: Arc<Ownership>,
    ) -> Relay {
        Self::start(
            outbox,
            client,
            options,
            handoff.wake(),
            handoff.take_receiver(),
            ownership,
        )
    }

    fn start(
        outbox: OutboxStore,
        client: Option<Client>,
        options: RelayOptions,
        wake: Arc<Notify>,
        handoff: Option<mpsc::Receiver<PendingEvent>>,
        ownership: Arc<Ownership>,
    ) -> Relay {
        let handle = RelayHandle {
            wake,
            counters: Arc::default(),
        };
        let (stop, stopped) = watch::channel(false);
        let (marks, marks_received) = mpsc::unbounded_channel();
        let marker = tokio::spawn(marks::mark_published(
            outbox.clone(),
            ownership.clone(),
            marks_received,
        ));
        let worker = Worker::new(outbox, client, options, handle.clone(), marks, ownership);
        let task = tokio::spawn(async move {
            let limit = worker.options.final_pass_timeout;
            worker.run(stopped, handoff).await;
            // The worker dropped its sender: the marker writes what is left and ends.
            if tokio::time::timeout(limit, marker).await.is_err() {
                tracing::warn!("event relay: published marks left unwritten at stop; those events go out again after the restart");
            }
        });
        Relay { handle, stop, task }
    }

    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Stops the relay after one last pass (bounded by `final_pass_timeout`), so events of
    /// the final commits go out when NATS is up; whatever is left waits in the outbox.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
