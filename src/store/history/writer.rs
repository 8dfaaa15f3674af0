//! The batching [`HistoryWriter`] the monitor actors feed: a bounded queue that never
//! blocks, a task that flushes it in batches (with retries), and the periodic maintenance
//! task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::batch::{Batch, CheckRecord};
use super::dialect::Written;
use super::unflushed::Unflushed;
use super::HistoryStore;
use crate::cluster::{Claim, Ownership, WriteKind};
use catalogd_actors::ports::CheckReport;
use catalogd_actors::{Clock, Lifecycle};

/// A snapshot of the writer's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterCounters {
    /// Results in committed batches.
    pub written: u64,
    /// Committed batches (each one INSERT and one UPDATE in one transaction).
    pub batches: u64,
    /// Results refused because the queue was full or the writer closed.
    pub dropped: u64,
    /// Results in batches abandoned after every retry failed.
    pub failed: u64,
    /// Observations the version guard refused: the integration changed or is gone.
    pub stale: u64,
    /// How long the last committed batch took.
    pub last_flush: Duration,
    /// Results waiting in the queue now.
    pub queued: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    batches: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    stale: AtomicU64,
    last_flush_us: AtomicU64,
}

enum Control {
    /// Write everything received so far, then answer.
    Flush(oneshot::Sender<()>),
    Close,
}

/// Attempts per batch before it is abandoned, and the first pause between them (doubling).
const WRITE_ATTEMPTS: u32 = 5;
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The non-blocking handle the monitor actors record check results through. Cheap to clone;
/// every clone feeds the same queue and task.
#[derive(Clone)]
pub struct HistoryWriter {
    queue: mpsc::Sender<CheckRecord>,
    control: mpsc::UnboundedSender<Control>,
    counters: Arc<Counters>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stop_maintenance: Arc<watch::Sender<bool>>,
    /// The newest queued result per integration, for reads until it is committed.
    unflushed: Arc<Unflushed>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl HistoryWriter {
    /// Starts the flushing task and, with `maintenance_interval` set, the rollup-and-prune
    /// task (which reads the time from `clock`). Needs a tokio runtime.
    pub fn spawn(store: HistoryStore, clock: Arc<dyn Clock>) -> Self {
        Self::spawn_fenced(store, clock, None)
    }

    /// Like [`HistoryWriter::spawn`], for a node of a cluster: results recorded with a claim
    /// are written only while `ownership`'s node holds that claim (checked in the batch's
    /// transaction); refused ones are counted there and their shard given up.
    pub fn spawn_fenced(
        store: HistoryStore,
        clock: Arc<dyn Clock>,
        ownership: Option<Arc<Ownership>>,
    ) -> Self {
        let options = store.options.clone();
        let (queue, receiver) = mpsc::channel(options.queue_capacity);
        let (control, commands) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let (stop_maintenance, stopped) = watch::channel(false);
        let unflushed = store.unflushed.clone();
        let mut tasks = vec![tokio::spawn(
            Flusher {
                store: store.clone(),
                counters: counters.clone(),
                buffer: Vec::with_capacity(options.batch_size),
                ownership,
            }
            .run(receiver, commands),
        )];
        if let Some(interval) = options.maintenance_interval {
            tasks.push(tokio::spawn(maintain_every(
                store, clock, interval, stopped,
            )));
        }
        HistoryWriter {
            queue,
            control,
            counters,
            tasks: Arc::new(Mutex::new(tasks)),
            stop_maintenance: Arc::new(stop_maintenance),
            unflushed,
        }
    }

    /// Queues one check result; never blocks. When the queue is full the result is dropped
    /// and counted.
    pub fn record(
        &self,
        integration_id: Uuid,
        version: i64,
        lifecycle: Lifecycle,
        report: &CheckReport,
    ) {
        self.record_under(integration_id, version, lifecycle, report, None, false);
    }

    /// Like [`HistoryWriter::record`], for a check made under `claim`: written only while
    /// the claim holds. `maintenance`: the check ran in a maintenance window (stored
    /// marked, left out of uptime; DESIGN §10).
    pub fn record_under(
        &self,
        integration_id: Uuid,
        version: i64,
        lifecycle: Lifecycle,
        report: &CheckReport,
        claim: Option<Claim>,
        maintenance: bool,
    ) {
        self.queue_record(CheckRecord {
            maintenance,
            ..CheckRecord::new(integration_id, version, lifecycle, report).under(claim)
        });
    }

    /// Like [`HistoryWriter::record_under`], for the check of a lifecycle transition that
    /// has just been committed with it: the row already says what this check says (its time,
    /// outcome and counters at this version), so it is stored as a result but does not
    /// rewrite the row again. At 10k transitions a second (bench F6) that second rewrite
    /// was a second `UPDATE` of each transition's row, in the same write lock.
    pub fn record_committed(
        &self,
        integration_id: Uuid,
        version: i64,
        lifecycle: Lifecycle,
        report: &CheckReport,
        claim: Option<Claim>,
    ) {
        self.queue_record(CheckRecord {
            row_current: true,
            ..CheckRecord::new(integration_id, version, lifecycle, report).under(claim)
        });
    }

    fn queue_record(&self, record: CheckRecord) {
        // Held for reads before it is queued, so the flush that commits it always finds it
        // (and releases it) afterwards.
        self.unflushed.queued(record);
        if self.queue.try_send(record).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.unflushed.written(&[record]);
        }
    }

    /// Writes everything recorded before this call, and returns when it is committed (or
    /// abandoned).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    pub fn counters(&self) -> WriterCounters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WriterCounters {
            written: load(&self.counters.written),
            batches: load(&self.counters.batches),
            dropped: load(&self.counters.dropped),
            failed: load(&self.counters.failed),
            stale: load(&self.counters.stale),
            last_flush: Duration::from_micros(load(&self.counters.last_flush_us)),
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
        }
    }

    /// Writes what is queued, stops the tasks and waits for them. Results recorded after
    /// this are dropped.
    pub async fn close(self) {
        let _ = self.control.send(Control::Close);
        let _ = self.stop_maintenance.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

struct Flusher {
    store: HistoryStore,
    counters: Arc<Counters>,
    buffer: Vec<CheckRecord>,
    /// This node's claims; `None` when nothing is fenced.
    ownership: Option<Arc<Ownership>>,
}

impl Flusher {
    /// Writes as a group commit does: a write starts as soon as the previous one committed
    /// and `write_at` results are queued (at most `batch_size` go in one write), or once the
    /// oldest result queued has waited `flush_interval`. So at a high rate the batches are
    /// what queued during the previous write, and a result waits about one write for its
    /// turn and one for its own (not for a batch of `batch_size` to fill); at a low rate a
    /// trickle is written every `flush_interval`, not one transaction per result.
    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<CheckRecord>,
        mut commands: mpsc::UnboundedReceiver<Control>,
    ) {
        let batch_size = self.store.options.batch_size;
        let write_at = self.store.options.write_at.clamp(1, batch_size);
        let every = self.store.options.flush_interval;
        // When the oldest result in the buffer was taken from the queue.
        let mut oldest: Option<tokio::time::Instant> = None;
        loop {
            // A flush or close first: a steady stream of writes must not keep it waiting (a
            // handover waits for its flush before it releases the shards).
            match commands.try_recv() {
                Ok(Control::Flush(done)) => {
                    self.drain(&mut receiver).await;
                    oldest = None;
                    let _ = done.send(());
                    continue;
                }
                Ok(Control::Close) => break,
                Err(_) => {}
            }
            // Everything queued now, up to a batch.
            while self.buffer.len() < batch_size {
                match receiver.try_recv() {
                    Ok(record) => self.buffer.push(record),
                    Err(_) => break,
                }
            }
            if !self.buffer.is_empty() {
                oldest.get_or_insert_with(tokio::time::Instant::now);
            }
            if self.buffer.len() >= write_at {
                self.flush().await;
                oldest = None;
                continue;
            }
            let due = oldest.map(|since| since + every);
            let wanted = write_at - self.buffer.len();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Control::Flush(done)) => {
                        self.drain(&mut receiver).await;
                        oldest = None;
                        let _ = done.send(());
                    }
                    Some(Control::Close) | None => break,
                },
                () = sleep_until(due) => {
                    self.flush().await;
                    oldest = None;
                }
                received = receiver.recv_many(&mut self.buffer, wanted) => {
                    if received == 0 {
                        break;
                    }
                }
            }
        }
        receiver.close();
        self.drain(&mut receiver).await;
    }

    /// Writes the buffer and everything queued now, in batches.
    async fn drain(&mut self, receiver: &mut mpsc::Receiver<CheckRecord>) {
        let batch_size = self.store.options.batch_size;
        loop {
            while self.buffer.len() < batch_size {
                match receiver.try_recv() {
                    Ok(record) => self.buffer.push(record),
                    Err(_) => break,
                }
            }
            if self.buffer.is_empty() {
                return;
            }
            let full = self.buffer.len() >= batch_size;
            self.flush().await;
            if !full {
                return;
            }
        }
    }

    /// Writes the buffer as one batch, retrying with backoff; abandons it after
    /// [`WRITE_ATTEMPTS`] (meanwhile `record` keeps queueing, then dropping).
    async fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let records = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(self.store.options.batch_size),
        );
        let count = records.len() as u64;
        let batch = Batch::new(records);
        // Committed or abandoned, the batch's results stop being held for reads: the store
        // answers for them now (or never will).
        let _release = Release {
            unflushed: &self.store.unflushed,
            batch: &batch,
        };
        let mut pause = FIRST_RETRY_PAUSE;
        for attempt in 1..=WRITE_ATTEMPTS {
            let started = Instant::now();
            let node = self
                .ownership
                .as_ref()
                .map_or("local", |ownership| ownership.node_id());
            match self.store.tables.write_batch(&batch, node).await {
                Ok(Written { stale, fenced }) => {
                    // Refused for good: a fenced write is never retried.
                    if let Some(ownership) = &self.ownership {
                        ownership.fenced(WriteKind::Results, &fenced);
                    }
                    let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.counters
                        .last_flush_us
                        .store(elapsed, Ordering::Relaxed);
                    self.counters.written.fetch_add(count, Ordering::Relaxed);
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    self.counters.stale.fetch_add(stale, Ordering::Relaxed);
                    return;
                }
                Err(error) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(%error, attempt, results = count, "writing check results failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(error) => {
                    tracing::error!(%error, results = count, "writing check results failed; dropping the batch");
                }
            }
        }
        self.counters.failed.fetch_add(count, Ordering::Relaxed);
    }
}

/// Releases a batch's results from [`Unflushed`] when the flush ends, however it ends.
struct Release<'a> {
    unflushed: &'a Unflushed,
    batch: &'a Batch,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.unflushed.written(&self.batch.results);
    }
}

/// Sleeps until `due`, or forever without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Runs [`HistoryStore::maintain`] every `interval` until told to stop. A run in progress
/// finishes first.
async fn maintain_every(
    store: HistoryStore,
    clock: Arc<dyn Clock>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let started = Instant::now();
                match store.maintain(clock.now()).await {
                    Ok(report) => tracing::debug!(?report, elapsed = ?started.elapsed(), "history maintenance"),
                    Err(error) => tracing::warn!(%error, "history maintenance failed"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}
