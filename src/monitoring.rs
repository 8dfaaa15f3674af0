//! The daemon's side of the engine: the [`Ledger`] the monitor actors persist through (the
//! SQL store for transitions, the batched history writer for every check result), and how
//! the application's changes (over REST or NATS) reach the actors.
//!
//! The use cases in [`crate::app`] commit a change to the store first, then tell the engine
//! which integration changed; the supervisor reloads it from the store and starts, re-configures or stops its
//! actor. The store stays the source of truth, so a lost notification is repaired by the
//! supervisor's reconciliation pass.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use catalogd_actors::{
    CheckOutcome, CheckReport, Clock, Commit, Engine, EventKind, FlapState, Ledger, Lifecycle,
    Maintenance, MaintenanceView, MonitorSpec, PortError, Probe, Status, Thresholds, Transition,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::cluster::{
    shard_of, ChangeNotice, ClusterSnapshot, Monitors, NoticeKind, Notifier, Ownership, WriteKind,
};
use crate::connectors::Target;
use crate::integration::{CheckSummary, Integration};
use crate::maintenance::{Calendar, CalendarSync};
use crate::metrics::internal_events::{CheckCompleted, InternalEvent, TransitionCommitted};
use crate::metrics::IntegrationGauges;
use crate::relay::RelayHandle;
use crate::store::history::HistoryWriter;
use crate::store::{CheckCommit, Store, StoreError};

/// What the application tells the engine after it committed a change.
pub trait EngineControl: Send + Sync + 'static {
    /// The integration changed (created, updated, submitted, paused, resumed, activated).
    /// `check_now` asks for a check at once (submit, resume).
    fn changed(&self, id: Uuid, check_now: bool);

    /// The integration was deleted; its actor must stop.
    fn deleted(&self, id: Uuid);

    /// A manual connection test's result, for the owning actor to apply like its own check.
    fn deliver(&self, id: Uuid, report: CheckReport);

    /// Whether the engine runs and how many actors it has; `None` without an engine.
    fn snapshot(&self) -> Option<EngineSnapshot>;

    /// A maintenance window was created, changed or deleted (DESIGN §10).
    fn calendar_changed(&self) {}

    /// This node's view of the cluster; `None` without an engine.
    fn cluster(&self) -> Option<ClusterSnapshot> {
        None
    }
}

/// The engine's state, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSnapshot {
    pub running: bool,
    pub actors: u64,
}

/// No engine: for tests of the API alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detached;

impl EngineControl for Detached {
    fn changed(&self, _id: Uuid, _check_now: bool) {}

    fn deleted(&self, _id: Uuid) {}

    fn deliver(&self, _id: Uuid, _report: CheckReport) {}

    fn snapshot(&self) -> Option<EngineSnapshot> {
        None
    }
}

impl EngineControl for Engine<Target> {
    fn changed(&self, id: Uuid, check_now: bool) {
        Engine::changed(self, id, check_now);
    }

    fn deleted(&self, id: Uuid) {
        Engine::deleted(self, id);
    }

    fn deliver(&self, id: Uuid, report: CheckReport) {
        Engine::deliver(self, id, report);
    }

    fn snapshot(&self) -> Option<EngineSnapshot> {
        Some(EngineSnapshot {
            running: self.is_running(),
            actors: self.counters().actors(),
        })
    }
}

/// The engine of one node of a cluster: a change reaches the integration's actor here when
/// this node holds its shard, else the node that does (PostgreSQL `NOTIFY`).
pub struct ClusterControl {
    pub engine: Engine<Target>,
    pub ownership: Arc<Ownership>,
    /// `None` on a single node (SQLite), which holds every shard.
    pub notifier: Option<Notifier>,
    /// Reloads the maintenance calendar (another node's changes reach it within its period).
    pub calendar: Option<Arc<CalendarSync>>,
}

impl ClusterControl {
    /// Whether the change is for another node (and was sent there).
    fn elsewhere(&self, id: Uuid, change: impl FnOnce() -> NoticeKind) -> bool {
        match &self.notifier {
            Some(notifier) if self.ownership.claim(id).is_none() => {
                notifier.notify(id, change());
                true
            }
            _ => false,
        }
    }
}

impl EngineControl for ClusterControl {
    fn changed(&self, id: Uuid, check_now: bool) {
        if !self.elsewhere(id, || NoticeKind::Changed { check_now }) {
            self.engine.changed(id, check_now);
        }
    }

    fn deleted(&self, id: Uuid) {
        if !self.elsewhere(id, || NoticeKind::Deleted) {
            self.engine.deleted(id);
        }
    }

    fn deliver(&self, id: Uuid, report: CheckReport) {
        if !self.elsewhere(id, || NoticeKind::deliver(&report)) {
            self.engine.deliver(id, report);
        }
    }

    fn snapshot(&self) -> Option<EngineSnapshot> {
        EngineControl::snapshot(&self.engine)
    }

    fn cluster(&self) -> Option<ClusterSnapshot> {
        Some(self.ownership.snapshot())
    }

    fn calendar_changed(&self) {
        if let Some(calendar) = &self.calendar {
            calendar.changed();
        }
    }
}

/// What the membership task drives on this node: the engine's actors, the history writer
/// and the relay.
pub struct EngineMonitors {
    pub engine: Engine<Target>,
    pub history: HistoryWriter,
    pub relay: RelayHandle,
    pub shards: u32,
}

/// How long a handover waits for the released actors to finish their current message.
const RELEASE_WITHIN: Duration = Duration::from_secs(10);

#[async_trait]
impl Monitors for EngineMonitors {
    async fn release(&self, shards: HashSet<u32>) {
        let total = self.shards;
        self.engine
            .release(
                move |id| shards.contains(&shard_of(id, total)),
                RELEASE_WITHIN,
            )
            .await;
    }

    async fn flush(&self) {
        self.history.flush().await;
    }

    fn acquired(&self) {
        self.engine.rescan();
        self.relay.wake();
    }

    fn notified(&self, notice: ChangeNotice) {
        let id = notice.integration_id;
        match &notice.change {
            NoticeKind::Changed { check_now } => self.engine.changed(id, *check_now),
            NoticeKind::Deleted => self.engine.deleted(id),
            NoticeKind::Deliver { .. } => {
                if let Some(report) = notice.change.report() {
                    self.engine.deliver(id, report);
                }
            }
        }
        // The change's event was committed elsewhere: this node publishes it.
        self.relay.wake();
    }
}

/// The probe of a cluster node: a monitor whose claim this node no longer holds (by the local
/// clock: its lease ran out while the process was stopped, or its shard was given up) does
/// not poll the target; the check is skipped, and the membership task stops the actor. Its
/// writes would be fenced anyway; this keeps a node that wakes from a stall from polling
/// targets that their new owner already polls.
pub struct OwnedProbe {
    pub inner: Arc<dyn Probe<Target>>,
    pub ownership: Arc<Ownership>,
}

#[async_trait]
impl Probe<Target> for OwnedProbe {
    async fn check(&self, target: &Target, timeout: Duration) -> CheckOutcome {
        match target.claim {
            Some(claim) if !self.ownership.holds(claim) => CheckOutcome::Skipped,
            _ => self.inner.check(target, timeout).await,
        }
    }

    fn reaches_network(&self, target: &Target) -> bool {
        self.inner.reaches_network(target)
    }
}

/// `monitor.*`: what an integration's `healthCheck` falls back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorDefaults {
    pub interval: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

/// The [`Ledger`] over the SQL store and the history writer.
pub struct StoreLedger {
    store: Arc<dyn Store>,
    history: HistoryWriter,
    clock: Arc<dyn Clock>,
    defaults: MonitorDefaults,
    gauges: Option<IntegrationGauges>,
    /// The shards this node monitors: only their integrations get actors, and every write is
    /// made under the shard's claim.
    ownership: Arc<Ownership>,
    /// The maintenance windows; `None`: nothing is ever in maintenance.
    calendar: Option<Arc<Calendar>>,
}

impl StoreLedger {
    pub fn new(
        store: Arc<dyn Store>,
        history: HistoryWriter,
        clock: Arc<dyn Clock>,
        defaults: MonitorDefaults,
    ) -> Self {
        StoreLedger {
            store,
            history,
            clock,
            defaults,
            gauges: None,
            ownership: Ownership::single("local", 1),
            calendar: None,
        }
    }

    /// Tells the monitors of the maintenance windows in `calendar`.
    pub fn with_calendar(mut self, calendar: Arc<Calendar>) -> Self {
        self.calendar = Some(calendar);
        self
    }

    /// What a commit's answer from the store means to the monitor.
    fn answer(&self, spec: &MonitorSpec<Target>, committed: CheckCommit) -> Commit<Target> {
        match committed {
            CheckCommit::Committed(integration) => match self.spec(&integration) {
                Some(spec) => Commit::Committed(spec),
                None => Commit::Stale(None),
            },
            CheckCommit::Stale(current) => {
                Commit::Stale(current.as_ref().and_then(|i| self.spec(i)))
            }
            // This node lost the shard: the actor stops (as for a deleted integration) and
            // the shard's other monitors are stopped by the membership task.
            CheckCommit::Fenced => {
                let claims: Vec<_> = spec.target.claim.into_iter().collect();
                self.ownership.fenced(WriteKind::Transition, &claims);
                Commit::Stale(None)
            }
        }
    }

    /// Monitors only the integrations of the shards `ownership` holds, writing under their
    /// claims.
    pub fn owned_by(mut self, ownership: Arc<Ownership>) -> Self {
        self.ownership = ownership;
        self
    }

    /// Keeps the per-integration gauges (`up`, last check duration) current with every result.
    pub fn with_gauges(mut self, gauges: IntegrationGauges) -> Self {
        self.gauges = Some(gauges);
        self
    }

    /// The one place a check result is measured: every check reaches the ledger exactly once,
    /// through [`Ledger::record`] or [`Ledger::commit_transition`].
    fn measure(&self, spec: &MonitorSpec<Target>, report: &CheckReport) {
        CheckCompleted {
            integration_id: spec.integration_id,
            kind: spec.target.kind.as_str(),
            provider: &spec.target.provider,
            report,
        }
        .emit();
        if let Some(gauges) = &self.gauges {
            gauges.observe(spec.integration_id, report.outcome, report.latency);
        }
    }

    /// The monitor's view of an integration; `None` for a draft, which has no actor, and for
    /// an integration of a shard this node does not hold.
    fn spec(&self, integration: &Integration) -> Option<MonitorSpec<Target>> {
        if integration.status == Status::Draft {
            return None;
        }
        let claim = self.ownership.claim(integration.integration_id)?;
        let check = &integration.health_check;
        let interval = check
            .interval_seconds
            .map_or(self.defaults.interval, |s| Duration::from_secs(s.into()));
        // A timeout longer than the interval would overlap checks; validation refuses it
        // for explicit values, and the defaults are checked at start-up.
        let timeout = check
            .timeout_seconds
            .map_or(self.defaults.timeout, |s| Duration::from_secs(s.into()))
            .min(interval);
        Some(MonitorSpec {
            integration_id: integration.integration_id,
            tenant_id: Arc::from(integration.tenant_id.as_str()),
            version: integration.version,
            lifecycle: integration.lifecycle(),
            thresholds: check.thresholds(self.defaults.thresholds),
            interval,
            timeout,
            last_check: integration.last_tested_at,
            flap: integration.flap(),
            depends_on: Arc::from(integration.depends_on.as_slice()),
            suppressed_by: Arc::from(integration.suppressed_by.as_slice()),
            maintenance: integration.maintenance,
            target: Arc::new(Target {
                // A single node (SQLite) writes unfenced: its serve lock is the fence.
                claim: self.ownership.is_leased().then_some(claim),
                ..Target::from(integration)
            }),
        })
    }
}

fn port_error(error: StoreError) -> PortError {
    // The message is for the engine's logs; store errors carry no secrets (validation keeps
    // them out of every stored field).
    PortError::Unavailable(error.to_string())
}

#[async_trait]
impl Ledger<Target> for StoreLedger {
    async fn monitored_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<MonitorSpec<Target>>, PortError> {
        // The store's pages hold every shard's integrations; this node keeps those of its
        // own, reading on until it has a full page or the store has no more (the engine takes
        // a short page for the end of the fleet).
        let limit32 = u32::try_from(limit).unwrap_or(u32::MAX);
        let mut specs = Vec::with_capacity(limit);
        let mut after = after;
        loop {
            let page = self
                .store
                .monitored_page(after, limit32)
                .await
                .map_err(port_error)?;
            let exhausted = page.len() < limit;
            after = page.last().map(|i| i.integration_id);
            specs.extend(page.iter().filter_map(|i| self.spec(i)));
            if exhausted || specs.len() >= limit {
                return Ok(specs);
            }
        }
    }

    async fn monitored_versions(&self) -> Result<Vec<(Uuid, i64)>, PortError> {
        let mut listing = self.store.monitored_versions().await.map_err(port_error)?;
        listing.retain(|(id, _)| self.ownership.claim(*id).is_some());
        Ok(listing)
    }

    async fn load(&self, id: Uuid) -> Result<Option<MonitorSpec<Target>>, PortError> {
        let integration = self.store.load(id).await.map_err(port_error)?;
        Ok(integration.as_ref().and_then(|i| self.spec(i)))
    }

    async fn commit_transition(
        &self,
        spec: &MonitorSpec<Target>,
        transition: &Transition,
        flap: &FlapState,
        report: &CheckReport,
    ) -> Result<Commit<Target>, PortError> {
        self.measure(spec, report);
        let check = CheckSummary {
            outcome: report.outcome,
            started_at: report.started_at,
            latency_ms: u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX),
        };
        let committed = self
            .store
            .commit_check(
                spec.integration_id,
                spec.version,
                transition.state,
                transition.event,
                Some(flap.clone()),
                check,
                self.clock.now(),
                spec.target.claim,
            )
            .await
            .map_err(port_error)?;
        Ok(match committed {
            CheckCommit::Committed(integration) => {
                if integration.status != spec.lifecycle.status {
                    TransitionCommitted {
                        integration_id: integration.integration_id,
                        from: spec.lifecycle.status,
                        to: integration.status,
                    }
                    .emit();
                }
                // The check that caused the transition belongs in the history too (never
                // in maintenance: a check in a window causes no transition); the row already
                // holds it.
                self.history.record_committed(
                    integration.integration_id,
                    integration.version,
                    transition.state,
                    report,
                    spec.target.claim,
                );
                self.answer(spec, CheckCommit::Committed(integration))
            }
            other => self.answer(spec, other),
        })
    }

    fn maintenance(&self, spec: &MonitorSpec<Target>, at: DateTime<Utc>) -> MaintenanceView {
        match &self.calendar {
            Some(calendar) => calendar.view(
                &spec.tenant_id,
                spec.integration_id,
                &spec.target.tags,
                spec.target.environment.as_deref(),
                at,
            ),
            None => MaintenanceView::default(),
        }
    }

    async fn commit_maintenance(
        &self,
        spec: &MonitorSpec<Target>,
        lifecycle: Lifecycle,
        maintenance: Option<Maintenance>,
        event: Option<EventKind>,
    ) -> Result<Commit<Target>, PortError> {
        let committed = self
            .store
            .commit_maintenance(
                spec.integration_id,
                spec.version,
                lifecycle,
                maintenance,
                event,
                self.clock.now(),
                spec.target.claim,
            )
            .await
            .map_err(port_error)?;
        Ok(self.answer(spec, committed))
    }

    async fn suppress(
        &self,
        spec: &MonitorSpec<Target>,
        suppressed_by: &[Uuid],
    ) -> Result<Commit<Target>, PortError> {
        let stored = self
            .store
            .set_suppressed_by(spec.integration_id, suppressed_by, spec.target.claim)
            .await
            .map_err(port_error)?;
        Ok(self.answer(spec, stored))
    }

    async fn dependencies(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Status, Vec<Uuid>)>, PortError> {
        self.store
            .dependencies(tenant_id, ids)
            .await
            .map_err(port_error)
    }

    fn record(&self, spec: &MonitorSpec<Target>, lifecycle: Lifecycle, report: &CheckReport) {
        self.measure(spec, report);
        self.history.record_under(
            spec.integration_id,
            spec.version,
            lifecycle,
            report,
            spec.target.claim,
            spec.maintenance.is_some(),
        );
    }
}
