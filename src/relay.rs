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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{Client, HeaderMap};
use chrono::{TimeDelta, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cloudevents::SUBJECT_PREFIX;
use crate::config::{EventsConfig, JetStreamMode};
use crate::store::outbox::{Handoff, OutboxPosition, OutboxStore, PendingEvent};

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
}

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
        Self::start(outbox, client, options, Arc::default(), None)
    }

    /// Like [`Relay::spawn`], fed by `handoff`, through which the store passes every event
    /// right after its commit ([`crate::store::Database::handoff`]), so events go out without
    /// a read of the outbox; the sweep still finds whatever the handoff did not carry.
    pub fn spawn_with_handoff(
        outbox: OutboxStore,
        client: Option<Client>,
        options: RelayOptions,
        handoff: &Handoff,
    ) -> Relay {
        Self::start(
            outbox,
            client,
            options,
            handoff.wake(),
            handoff.take_receiver(),
        )
    }

    fn start(
        outbox: OutboxStore,
        client: Option<Client>,
        options: RelayOptions,
        wake: Arc<Notify>,
        handoff: Option<mpsc::Receiver<PendingEvent>>,
    ) -> Relay {
        let handle = RelayHandle {
            wake,
            counters: Arc::default(),
        };
        let (stop, stopped) = watch::channel(false);
        let (marks, marks_received) = mpsc::unbounded_channel();
        let marker = tokio::spawn(mark_published(outbox.clone(), marks_received));
        let worker = Worker {
            outbox,
            client,
            options,
            handle: handle.clone(),
            publisher: None,
            last_error_log: None,
            next: HashMap::new(),
            in_flight: HashMap::new(),
            marks,
            sweep_wanted: false,
            deleted: Vec::new(),
            forgetting: Vec::new(),
        };
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

/// Marks published events in the outbox, off the publishing path: the relay never waits for
/// the database's write lock before its next publish. Whatever arrived while a statement
/// waited goes into the next one, so under load a statement marks a whole batch. A failed
/// statement is retried; ids the process never marks are published again after a restart
/// (JetStream drops them as duplicates inside its window).
async fn mark_published(outbox: OutboxStore, mut ids: mpsc::UnboundedReceiver<Uuid>) {
    let mut batch: Vec<Uuid> = Vec::new();
    let mut failures = 0u32;
    loop {
        if batch.is_empty() && ids.recv_many(&mut batch, MARK_BATCH).await == 0 {
            return;
        }
        while batch.len() < MARK_BATCH {
            match ids.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        match outbox.mark_published(&batch, Utc::now()).await {
            Ok(_) => {
                batch.clear();
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures % 60 == 0 {
                    tracing::warn!(%error, pending = batch.len(), "event relay: cannot mark events published; retrying");
                }
                if ids.is_closed() && failures >= 3 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The type of the event after which an integration has none.
const DELETED: &str = "integration.deleted";

/// Ids per marking statement (far below either backend's bind-parameter limit).
const MARK_BATCH: usize = 1000;

/// What a JetStream publish of the fast path resolves to.
type Acked = (PendingEvent, Instant, Result<bool, String>);
/// The acks awaited by the fast path (kept out of [`Worker`], which must stay `Sync`).
type Acks = FuturesUnordered<std::pin::Pin<Box<dyn std::future::Future<Output = Acked> + Send>>>;

/// Where events go on the current connection.
#[derive(Clone)]
enum Publisher {
    JetStream(jetstream::Context),
    Core(Client),
}

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

struct Worker {
    outbox: OutboxStore,
    client: Option<Client>,
    options: RelayOptions,
    handle: RelayHandle,
    publisher: Option<Publisher>,
    last_error_log: Option<Instant>,
    /// Per integration, the sequence this relay may send next: every lower one was sent by
    /// it (or was already marked when a sweep read the table). An integration that is not
    /// here (first event since start) goes through a sweep, which reads its order from the
    /// table.
    next: HashMap<Uuid, i64>,
    /// JetStream fast path: per integration, the event awaiting its ack (front) and those
    /// waiting behind it, so an integration never has two events in flight.
    in_flight: HashMap<Uuid, VecDeque<PendingEvent>>,
    /// Published event ids for the marker task.
    marks: mpsc::UnboundedSender<Uuid>,
    /// An event came that the fast path could not place in order (or was dropped): sweep.
    sweep_wanted: bool,
    /// Integrations whose `deleted` event went out, forgotten at the prune run after next.
    deleted: Vec<Uuid>,
    forgetting: Vec<Uuid>,
}

impl Worker {
    async fn run(
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
            if pass || std::mem::take(&mut self.sweep_wanted) {
                self.pass_logged().await;
            }
            if Instant::now() >= next_prune {
                // Deleted a prune interval ago or more: their marks are long written.
                for id in std::mem::replace(&mut self.forgetting, std::mem::take(&mut self.deleted))
                {
                    self.next.remove(&id);
                }
                self.prune().await;
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
        self.in_flight.clear();
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
        let publisher = match &self.publisher {
            Some(publisher) => publisher.clone(),
            None => {
                self.sweep_wanted = true;
                return;
            }
        };
        let mut ready = Vec::with_capacity(events.len());
        for event in events {
            match self.next.get(&event.integration_id) {
                // Already sent (by a sweep that read the row before this handoff came).
                Some(&next) if event.sequence < next => {}
                Some(&next) if event.sequence == next => {
                    self.next.insert(event.integration_id, next + 1);
                    ready.push(event);
                }
                // A gap (an earlier event's handoff is late or lost) or an integration not
                // seen since start: the table has the order.
                _ => self.sweep_wanted = true,
            }
        }
        match publisher {
            Publisher::JetStream(context) => {
                for event in ready {
                    match self.in_flight.get_mut(&event.integration_id) {
                        Some(queue) => queue.push_back(event),
                        None => {
                            let id = event.integration_id;
                            self.in_flight.insert(id, VecDeque::new());
                            self.send_jetstream(&context, event, acks).await;
                        }
                    }
                }
            }
            Publisher::Core(client) => {
                if ready.is_empty() {
                    return;
                }
                match self.publish_core(&client, &ready).await {
                    Ok(()) => ready.iter().for_each(|event| self.forget_if_deleted(event)),
                    Err(error) => {
                        // Each integration resumes at its first event of this batch, from
                        // the table.
                        for event in ready.iter().rev() {
                            self.next.insert(event.integration_id, event.sequence);
                        }
                        self.publisher = None;
                        self.log_failure(&error);
                    }
                }
            }
        }
    }

    /// Sends one event to JetStream; its ack is awaited in the main loop.
    async fn send_jetstream(
        &mut self,
        context: &jetstream::Context,
        event: PendingEvent,
        acks: &mut Acks,
    ) {
        let started = Instant::now();
        let publish = PublishMessage::build()
            .payload(event.payload.clone().into())
            .message_id(event.event_id.to_string())
            .header("Content-Type", "application/cloudevents+json");
        let sent = context.send_publish(event.subject.clone(), publish).await;
        acks.push(Box::pin(async move {
            let result = match sent {
                Ok(ack) => ack
                    .await
                    .map(|ack| ack.duplicate)
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            (event, started, result)
        }));
    }

    /// A JetStream ack of the fast path: mark the event, send the integration's next one.
    async fn acked(&mut self, (event, started, result): Acked, acks: &mut Acks) {
        let id = event.integration_id;
        match result {
            Ok(duplicate) => {
                if duplicate {
                    self.handle
                        .counters
                        .duplicates
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.observe(&event, started.elapsed());
                self.mark(&[event.event_id]);
                self.forget_if_deleted(&event);
                let queued = self.in_flight.get_mut(&id).and_then(VecDeque::pop_front);
                match (queued, self.publisher.clone()) {
                    (Some(next), Some(Publisher::JetStream(context))) => {
                        self.send_jetstream(&context, next, acks).await;
                    }
                    (Some(next), _) => {
                        // The publisher changed meanwhile: the sweep sends the rest.
                        self.next.insert(id, next.sequence);
                        self.in_flight.remove(&id);
                        self.sweep_wanted = true;
                    }
                    (None, _) => {
                        self.in_flight.remove(&id);
                    }
                }
            }
            Err(error) => {
                // This event and those behind it stay in the outbox; the next sweep resumes
                // the integration at this one.
                self.handle
                    .counters
                    .failures
                    .fetch_add(1, Ordering::Relaxed);
                self.next.insert(id, event.sequence);
                self.in_flight.remove(&id);
                self.publisher = None;
                self.log_failure(&PassError::Nats(format!(
                    "publishing event {} on {}: {error}",
                    event.event_id, event.subject
                )));
            }
        }
    }

    async fn update_backlog(&self) {
        match self.outbox.backlog().await {
            Ok(backlog) => {
                self.handle
                    .counters
                    .backlog
                    .store(backlog, Ordering::Relaxed);
                metrics::gauge!("catalogd_outbox_backlog").set(backlog as f64);
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

    /// Whether a sweep leaves `event` alone: this relay sent it already (its mark may not be
    /// written yet), or the fast path has an event of its integration in flight.
    fn sweep_skips(&self, event: &PendingEvent) -> bool {
        self.in_flight.contains_key(&event.integration_id)
            || self
                .next
                .get(&event.integration_id)
                .is_some_and(|&next| event.sequence < next)
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
                let publisher = self.choose_publisher(&client).await?;
                self.publisher = Some(publisher.clone());
                publisher
            }
        };
        let mut position = OutboxPosition::START;
        let mut blocked: HashSet<Uuid> = HashSet::new();
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
            let page: Vec<PendingEvent> = page
                .into_iter()
                .filter(|event| !self.sweep_skips(event))
                .collect();
            let result = match &publisher {
                Publisher::JetStream(context) => {
                    self.publish_jetstream(context, page, &mut blocked).await
                }
                Publisher::Core(client) => {
                    for event in &page {
                        self.next.insert(event.integration_id, event.sequence + 1);
                    }
                    let result = self.publish_core(client, &page).await;
                    match &result {
                        Ok(()) => page.iter().for_each(|event| self.forget_if_deleted(event)),
                        Err(_) => {
                            for event in page.iter().rev() {
                                self.next.insert(event.integration_id, event.sequence);
                            }
                        }
                    }
                    result
                }
            };
            if let Err(error) = result {
                match &publisher {
                    // Later pages are other integrations: carry on with them.
                    Publisher::JetStream(_) => {
                        first_error.get_or_insert(error);
                    }
                    Publisher::Core(_) => return Err(error),
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

    /// JetStream when it is wanted and the server has it (creating or checking the stream),
    /// else core NATS.
    async fn choose_publisher(&self, client: &Client) -> Result<Publisher, PassError> {
        if self.options.jetstream == JetStreamMode::Off {
            self.handle
                .counters
                .jetstream
                .store(false, Ordering::Relaxed);
            return Ok(Publisher::Core(client.clone()));
        }
        let context = jetstream::ContextBuilder::new()
            .timeout(self.options.publish_timeout)
            .build(client.clone());
        // Whether the server has JetStream shows in the answer to the stream request (the
        // account-info request is not used: its reply differs between server versions).
        let core = || {
            tracing::info!("no JetStream on the NATS server: events go to core NATS, best effort");
            self.handle
                .counters
                .jetstream
                .store(false, Ordering::Relaxed);
            Ok(Publisher::Core(client.clone()))
        };
        let name = &self.options.stream;
        if self.options.manage_stream {
            let config = jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{SUBJECT_PREFIX}.>")],
                storage: jetstream::stream::StorageType::File,
                duplicate_window: self.options.duplicate_window,
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
                        return Err(PassError::Nats(format!(
                            "cannot create or update the JetStream stream {name}: {error}"
                        )))
                    }
                },
            }
        } else {
            match context.get_stream(name).await {
                Ok(_) => tracing::info!(stream = %name, "using the existing JetStream stream"),
                Err(error) => match error.kind() {
                    GetStreamErrorKind::JetStream(error)
                        if jetstream_disabled(error.error_code()) =>
                    {
                        return core()
                    }
                    _ => {
                        return Err(PassError::Nats(format!(
                            "the JetStream stream {name} (events.manage_stream = false) is \
                             not available: {error}; create it on {SUBJECT_PREFIX}.>"
                        )))
                    }
                },
            }
        }
        self.handle
            .counters
            .jetstream
            .store(true, Ordering::Relaxed);
        Ok(Publisher::JetStream(context))
    }

    /// Publishes one page in rounds: each round sends the next event of up to
    /// `max_in_flight` integrations, awaits their acks, and marks the acknowledged ones.
    async fn publish_jetstream(
        &mut self,
        context: &jetstream::Context,
        page: Vec<PendingEvent>,
        blocked: &mut HashSet<Uuid>,
    ) -> Result<(), PassError> {
        let mut queues: VecDeque<VecDeque<PendingEvent>> = VecDeque::new();
        for event in page {
            if blocked.contains(&event.integration_id) {
                continue;
            }
            match queues.back_mut() {
                Some(queue) if queue[0].integration_id == event.integration_id => {
                    queue.push_back(event)
                }
                _ => queues.push_back(VecDeque::from([event])),
            }
        }
        let mut first_error = None;
        while !queues.is_empty() {
            let take = queues.len().min(self.options.max_in_flight);
            let mut round: Vec<VecDeque<PendingEvent>> = queues.drain(..take).collect();
            let mut in_flight = Vec::with_capacity(round.len());
            for queue in &mut round {
                let event = queue.pop_front().expect("queues are never empty");
                let started = Instant::now();
                let publish = PublishMessage::build()
                    .payload(event.payload.clone().into())
                    .message_id(event.event_id.to_string())
                    .header("Content-Type", "application/cloudevents+json");
                let sent = context.send_publish(event.subject.clone(), publish).await;
                in_flight.push((event, started, sent));
            }
            let mut acked = Vec::with_capacity(in_flight.len());
            for ((event, started, sent), mut queue) in in_flight.into_iter().zip(round) {
                let result = match sent {
                    Ok(ack) => ack.await.map_err(|error| error.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                match result {
                    Ok(ack) => {
                        if ack.duplicate {
                            self.handle
                                .counters
                                .duplicates
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        self.observe(&event, started.elapsed());
                        self.next.insert(event.integration_id, event.sequence + 1);
                        self.forget_if_deleted(&event);
                        acked.push(event.event_id);
                        if !queue.is_empty() {
                            queues.push_back(queue);
                        }
                    }
                    Err(error) => {
                        self.handle
                            .counters
                            .failures
                            .fetch_add(1, Ordering::Relaxed);
                        self.next.insert(event.integration_id, event.sequence);
                        blocked.insert(event.integration_id);
                        queue.clear();
                        first_error.get_or_insert(PassError::Nats(format!(
                            "publishing event {} on {}: {error}",
                            event.event_id, event.subject
                        )));
                    }
                }
            }
            self.mark(&acked);
        }
        match first_error {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Publishes events in order on the connection, flushes, and marks them all.
    async fn publish_core(&self, client: &Client, page: &[PendingEvent]) -> Result<(), PassError> {
        let started = Instant::now();
        let timeout = self.options.publish_timeout;
        for event in page {
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
                Ok(Err(error)) => return Err(self.core_failure(format!("publish: {error}"))),
                Err(_) => return Err(self.core_failure("publish timed out".to_owned())),
            }
        }
        match tokio::time::timeout(timeout, client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(self.core_failure(format!("flush: {error}"))),
            Err(_) => return Err(self.core_failure("flush timed out".to_owned())),
        }
        // A flush that completed across a reconnect proves nothing about what was sent
        // before it; check the connection is still the one that carried the page.
        if client.connection_state() != State::Connected {
            return Err(self.core_failure("disconnected during the flush".to_owned()));
        }
        let elapsed = started.elapsed();
        for event in page {
            self.observe(event, elapsed);
        }
        let ids: Vec<Uuid> = page.iter().map(|event| event.event_id).collect();
        self.mark(&ids);
        Ok(())
    }

    fn core_failure(&self, message: String) -> PassError {
        self.handle
            .counters
            .failures
            .fetch_add(1, Ordering::Relaxed);
        PassError::Nats(format!("core NATS {message}"))
    }

    /// After `event` went out: a deleted integration has no next event, so its entry in
    /// `next` goes, but only at a later prune run: until its mark is written, the entry is what
    /// keeps a sweep from sending the `deleted` event again.
    fn forget_if_deleted(&mut self, event: &PendingEvent) {
        if event.event_type == DELETED {
            self.deleted.push(event.integration_id);
        }
    }

    fn observe(&self, event: &PendingEvent, elapsed: Duration) {
        let counters = &self.handle.counters;
        counters.published.fetch_add(1, Ordering::Relaxed);
        counters.publish_micros_sum.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        metrics::histogram!("catalogd_event_publish_duration_seconds")
            .record(elapsed.as_secs_f64());
        let kind = event
            .event_type
            .strip_prefix("integration.")
            .unwrap_or(&event.event_type);
        metrics::counter!("catalogd_events_published_total", "type" => kind.to_owned())
            .increment(1);
    }

    /// Hands published ids to the marker task ([`mark_published`]).
    fn mark(&self, ids: &[Uuid]) {
        for id in ids {
            // The marker lives as long as the worker.
            let _ = self.marks.send(*id);
        }
    }

    /// Deletes rows published longer than `retention` ago, in bounded batches.
    async fn prune(&self) {
        let Ok(retention) = TimeDelta::from_std(self.options.retention) else {
            return;
        };
        let before = Utc::now() - retention;
        for _ in 0..self.options.prune_max_batches {
            match self.outbox.prune(before, self.options.prune_batch).await {
                Ok(deleted) => {
                    self.handle
                        .counters
                        .pruned
                        .fetch_add(deleted, Ordering::Relaxed);
                    if deleted < u64::from(self.options.prune_batch) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "event relay: pruning the outbox failed");
                    break;
                }
            }
        }
    }
}

/// Whether a JetStream API error says JetStream is off on the server or for the account.
fn jetstream_disabled(code: ErrorCode) -> bool {
    code == ErrorCode::JETSTREAM_NOT_ENABLED || code == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
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
