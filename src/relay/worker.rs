//! The relay's task: one loop that takes handed-over events (the fast path), JetStream acks,
//! wake-ups and sweep ticks, asks [`Order`] what may go out, publishes it through
//! [`publish`], tells [`Order`] the outcome, hands published ids to the marks task, and
//! prunes now and then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{jetstream, Client};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::order::{Order, Rounds};
use super::publish::{self, Ack, Acked, Publisher};
use super::{prune, RelayHandle, RelayOptions};
use crate::cluster::Ownership;
use crate::metrics::internal_events::{EventPublished, InternalEvent, OutboxBacklogCounted};
use crate::store::outbox::{Mark, OutboxPosition, OutboxStore, PendingEvent};

/// The acks awaited by the fast path (kept out of [`Worker`], which must stay `Sync`).
type Acks = FuturesUnordered<Ack>;

/// Why a pass ended early.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("NATS is not connected")]
    Disconnected,
    #[error("outbox: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Nats(String),
}

pub(super) struct Worker {
    outbox: OutboxStore,
    client: Option<Client>,
    pub(super) options: RelayOptions,
    handle: RelayHandle,
    /// Published events for the marks task.
    marks: mpsc::UnboundedSender<Mark>,
    /// Which integrations' events this relay publishes: those of the shards this node holds.
    ownership: Arc<Ownership>,
    publisher: Option<Publisher>,
    last_error_log: Option<Instant>,
    order: Order,
    /// The ownership generation `order` was last trimmed at.
    ownership_seen: u64,
}

impl Worker {
    pub(super) fn new(
        outbox: OutboxStore,
        client: Option<Client>,
        options: RelayOptions,
        handle: RelayHandle,
        marks: mpsc::UnboundedSender<Mark>,
        ownership: Arc<Ownership>,
    ) -> Worker {
        Worker {
            outbox,
            client,
            options,
            handle,
            marks,
            ownership,
            publisher: None,
            last_error_log: None,
            order: Order::default(),
            ownership_seen: 0,
        }
    }

    pub(super) async fn run(
        mut self,
        mut stopped: watch::Receiver<bool>,
        mut handoff: Option<mpsc::Receiver<PendingEvent>>,
    ) {
        let mut sweep = tokio::time::interval(self.options.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = self.handle.wake.clone();
        let mut next_prune = Instant::now();
        let mut received = Vec::new();
        let mut acks = Acks::new();
        loop {
            let room = self.options.max_in_flight.saturating_sub(acks.len());
            let mut pass = false;
            tokio::select! {
                biased;
                _ = stopped.changed() => break,
                Some(acked) = acks.next(), if !acks.is_empty() => {
                    self.acked(acked, &mut acks).await;
                }
                count = recv_some(&mut handoff, &mut received, room), if room > 0 => {
                    if count == 0 {
                        handoff = None;
                    } else {
                        self.fast(std::mem::take(&mut received), &mut acks).await;
                    }
                }
                () = wake.notified() => pass = true,
                _ = sweep.tick() => {
                    self.update_backlog().await;
                    pass = true;
                }
            }
            if *stopped.borrow() {
                break;
            }
            self.follow_ownership();
            if pass || self.order.take_sweep_wanted() {
                self.pass_logged().await;
            }
            if Instant::now() >= next_prune {
                self.order.forget_deleted();
                prune::prune(&self.outbox, &self.options, &self.handle.counters).await;
                next_prune = Instant::now() + self.options.prune_interval;
            }
        }
        let limit = self.options.final_pass_timeout;
        let _ = tokio::time::timeout(limit, async {
            while let Some(acked) = acks.next().await {
                self.acked(acked, &mut acks).await;
            }
        })
        .await;
        drop(acks);
        self.order.abandon_in_flight();
        let _ = tokio::time::timeout(limit, self.pass_logged()).await;
        self.update_backlog().await;
        tracing::debug!(
            backlog = self.handle.counters.backlog(),
            "event relay stopped"
        );
    }

    /// The fast path: events handed over right after their commits, published at once when
    /// each is its integration's next (else left to a sweep).
    async fn fast(&mut self, events: Vec<PendingEvent>, acks: &mut Acks) {
        let Some(client) = self.client.clone() else {
            // NATS disabled: the events wait in the outbox.
            return;
        };
        if client.connection_state() != State::Connected {
            // The sweep publishes them once NATS is back (it runs every sweep interval); an
            // integration's next event finds a gap and goes the same way.
            return;
        }
        let Some(publisher) = self.publisher.clone() else {
            self.order.want_sweep();
            return;
        };
        // Events of shards another node holds are that node's to publish (the store told it
        // of the change; its sweep finds them).
        let events = self.owned(events);
        let ready = self.order.admit(events);
        match publisher {
            Publisher::JetStream(context) => {
                for event in ready {
                    if let Some(event) = self.order.hold(event) {
                        let ack = publish::send(&context, event).await;
                        acks.push(ack);
                    }
                }
            }
            Publisher::Core(client) => {
                if ready.is_empty() {
                    return;
                }
                match self.publish_core(&client, &ready).await {
                    Ok(()) => self.order.published(&ready),
                    Err(error) => {
                        self.order.unsent(&ready);
                        self.publisher = None;
                        self.log_failure(&error);
                    }
                }
            }
        }
    }

    /// A JetStream ack of the fast path: mark the event, send the integration's next one.
    async fn acked(&mut self, (event, started, result): Acked, acks: &mut Acks) {
        match result {
            Ok(duplicate) => {
                self.acknowledged(&event, started, duplicate);
                self.mark(&[event.integration_id], &[event.event_id]);
                let context = match &self.publisher {
                    Some(Publisher::JetStream(context)) => Some(context.clone()),
                    _ => None,
                };
                if let Some(next) = self.order.acked(&event, context.is_some()) {
                    let context = context.expect("only sent on JetStream");
                    // The shard may have moved on while this one was in flight.
                    if self.ownership.claim(next.integration_id).is_none() {
                        self.order.failed(&next);
                        return;
                    }
                    let ack = publish::send(&context, next).await;
                    acks.push(ack);
                }
            }
            Err(error) => {
                // This event and those behind it stay in the outbox; the next sweep resumes
                // the integration at this one.
                self.order.failed(&event);
                self.publisher = None;
                let error = self.unacknowledged(&event, &error);
                self.log_failure(&error);
            }
        }
    }

    async fn update_backlog(&self) {
        match self.outbox.backlog().await {
            Ok(backlog) => {
                self.handle.counters.set_backlog(backlog);
                OutboxBacklogCounted { backlog }.emit();
            }
            Err(error) => tracing::warn!(%error, "event relay: cannot count the outbox backlog"),
        }
    }

    async fn pass_logged(&mut self) {
        match self.pass().await {
            Ok(()) | Err(PassError::Disconnected) => {}
            Err(error) => {
                // A publish failure drops the publisher, so the next pass looks at the
                // connection afresh (JetStream may have come or gone).
                self.publisher = None;
                self.log_failure(&error);
            }
        }
    }

    /// Failures repeat on every sweep while NATS or the stream is missing: log one a minute.
    fn log_failure(&mut self, error: &PassError) {
        let quiet = self
            .last_error_log
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
        if !quiet {
            tracing::warn!(%error, "event relay: publishing failed; events wait in the outbox");
            self.last_error_log = Some(Instant::now());
        }
    }

    /// Publishes every unpublished event it can, page by page.
    async fn pass(&mut self) -> Result<(), PassError> {
        let Some(client) = self.client.clone() else {
            return Ok(());
        };
        if client.connection_state() != State::Connected {
            return Err(PassError::Disconnected);
        }
        let publisher = match &self.publisher {
            Some(publisher) => publisher.clone(),
            None => {
                let publisher = publish::choose(&client, &self.options)
                    .await
                    .map_err(PassError::Nats)?;
                self.handle.counters.set_jetstream(publisher.is_jetstream());
                self.publisher = Some(publisher.clone());
                publisher
            }
        };
        self.order.begin_pass();
        let mut position = OutboxPosition::START;
        let mut first_error = None;
        loop {
            let page = self
                .outbox
                .pending(position, self.options.page_size)
                .await?;
            let Some(last) = page.last() else { break };
            position = OutboxPosition {
                integration_id: last.integration_id,
                sequence: last.sequence,
            };
            let full = page.len() >= self.options.page_size as usize;
            let page = self.order.sweep_page(self.owned(page));
            match &publisher {
                Publisher::JetStream(context) => {
                    // Later pages are other integrations: carry on with them.
                    if let Err(error) = self.sweep_jetstream(context, page).await {
                        first_error.get_or_insert(error);
                    }
                }
                Publisher::Core(client) => {
                    self.order.claim(&page);
                    match self.publish_core(client, &page).await {
                        Ok(()) => self.order.published(&page),
                        Err(error) => {
                            self.order.unsent(&page);
                            return Err(error);
                        }
                    }
                }
            }
            if !full {
                break;
            }
        }
        match first_error {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Publishes one page in rounds: each round sends the next event of up to
    /// `max_in_flight` integrations, awaits their acks, and marks the acknowledged ones.
    async fn sweep_jetstream(
        &mut self,
        context: &jetstream::Context,
        page: Vec<PendingEvent>,
    ) -> Result<(), PassError> {
        let mut rounds = Rounds::new(page);
        let mut first_error = None;
        loop {
            let round = rounds.next_round(self.options.max_in_flight);
            if round.is_empty() {
                break;
            }
            let mut sent = Vec::with_capacity(round.len());
            for event in round {
                sent.push(publish::send(context, event).await);
            }
            let mut acked = Vec::with_capacity(sent.len());
            let mut acked_integrations = Vec::with_capacity(sent.len());
            for ack in sent {
                let (event, started, result) = ack.await;
                match result {
                    Ok(duplicate) => {
                        self.acknowledged(&event, started, duplicate);
                        self.order.sweep_acked(&mut rounds, &event);
                        acked.push(event.event_id);
                        acked_integrations.push(event.integration_id);
                    }
                    Err(error) => {
                        self.order.sweep_failed(&mut rounds, &event);
                        let error = self.unacknowledged(&event, &error);
                        first_error.get_or_insert(error);
                    }
                }
            }
            self.mark(&acked_integrations, &acked);
        }
        match first_error {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Publishes `events` on core NATS, flushes, and marks them all.
    async fn publish_core(
        &self,
        client: &Client,
        events: &[PendingEvent],
    ) -> Result<(), PassError> {
        match publish::core(client, events, self.options.publish_timeout).await {
            Ok(elapsed) => {
                for event in events {
                    self.observe(event, elapsed);
                }
                let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
                let integrations: Vec<Uuid> =
                    events.iter().map(|event| event.integration_id).collect();
                self.mark(&integrations, &ids);
                Ok(())
            }
            Err(message) => {
                self.handle.counters.count_failure();
                Err(PassError::Nats(format!("core NATS {message}")))
            }
        }
    }

    /// JetStream acknowledged `event` (sent at `started`).
    fn acknowledged(&self, event: &PendingEvent, started: Instant, duplicate: bool) {
        if duplicate {
            self.handle.counters.count_duplicate();
        }
        self.observe(event, started.elapsed());
    }

    /// JetStream did not acknowledge `event`: counted, and the error the pass reports.
    fn unacknowledged(&self, event: &PendingEvent, error: &str) -> PassError {
        self.handle.counters.count_failure();
        PassError::Nats(format!(
            "publishing event {} on {}: {error}",
            event.event_id, event.subject
        ))
    }

    fn observe(&self, event: &PendingEvent, elapsed: Duration) {
        self.handle.counters.count_published(elapsed);
        EventPublished {
            event_type: &event.event_type,
            duration: elapsed,
        }
        .emit();
    }

    /// Hands published ids (of events of `integrations`, index for index) to the marks
    /// task ([`super::marks`]), each with the claim it is marked under.
    fn mark(&self, integrations: &[Uuid], ids: &[Uuid]) {
        for (integration_id, event_id) in integrations.iter().zip(ids) {
            let mark = Mark {
                event_id: *event_id,
                // A single node (SQLite) marks unfenced: its serve lock is the fence.
                claim: self
                    .ownership
                    .claim(*integration_id)
                    .filter(|_| self.ownership.is_leased()),
            };
            // The marks task lives as long as the worker.
            let _ = self.marks.send(mark);
        }
    }

    /// Drops the order it keeps for integrations of shards this node gave up since it last
    /// looked.
    fn follow_ownership(&mut self) {
        let generation = self.ownership.generation();
        if generation != self.ownership_seen {
            self.ownership_seen = generation;
            let ownership = self.ownership.clone();
            self.order.retain(|id| ownership.claim(id).is_some());
        }
    }

    /// The events of integrations whose shard this node holds now.
    fn owned(&self, mut events: Vec<PendingEvent>) -> Vec<PendingEvent> {
        events.retain(|event| self.ownership.claim(event.integration_id).is_some());
        events
    }
}

/// Receives up to `limit` handed-over events (waiting for the first); 0 when the channel is
/// closed. Without a channel (no handoff), never resolves.
async fn recv_some(
    handoff: &mut Option<mpsc::Receiver<PendingEvent>>,
    into: &mut Vec<PendingEvent>,
    limit: usize,
) -> usize {
    match handoff {
        Some(receiver) => receiver.recv_many(into, limit).await,
        None => std::future::pending().await,
    }
}
