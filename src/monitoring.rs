//! The daemon's side of the engine: the [`Ledger`] the monitor actors persist through (the
//! SQL store for transitions, the batched history writer for every check result), and how
//! the application's changes (over REST or NATS) reach the actors.
//!
//! The use cases in [`crate::app`] commit a change to the store first, then tell the engine
//! which integration changed; the supervisor reloads it from the store and starts, re-configures or stops its
//! actor. The store stays the source of truth, so a lost notification is repaired by the
//! supervisor's reconciliation pass.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use catalogd_actors::{
    CheckReport, Clock, Commit, Engine, Ledger, Lifecycle, MonitorSpec, PortError, Status,
    Thresholds, Transition,
};
use uuid::Uuid;

use crate::connectors::Target;
use crate::integration::{CheckSummary, Integration};
use crate::metrics::internal_events::{CheckCompleted, InternalEvent, TransitionCommitted};
use crate::metrics::IntegrationGauges;
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
        }
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

    /// The monitor's view of an integration; `None` for a draft, which has no actor.
    fn spec(&self, integration: &Integration) -> Option<MonitorSpec<Target>> {
        if integration.status == Status::Draft {
            return None;
        }
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
            target: Arc::new(Target::from(integration)),
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
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let page = self
            .store
            .monitored_page(after, limit)
            .await
            .map_err(port_error)?;
        Ok(page.iter().filter_map(|i| self.spec(i)).collect())
    }

    async fn monitored_versions(&self) -> Result<Vec<(Uuid, i64)>, PortError> {
        self.store.monitored_versions().await.map_err(port_error)
    }

    async fn load(&self, id: Uuid) -> Result<Option<MonitorSpec<Target>>, PortError> {
        let integration = self.store.load(id).await.map_err(port_error)?;
        Ok(integration.as_ref().and_then(|i| self.spec(i)))
    }

    async fn commit_transition(
        &self,
        spec: &MonitorSpec<Target>,
        transition: &Transition,
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
                check,
                self.clock.now(),
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
                // The check that caused the transition belongs in the history too.
                self.history.record(
                    integration.integration_id,
                    integration.version,
                    transition.state,
                    report,
                );
                match self.spec(&integration) {
                    Some(spec) => Commit::Committed(spec),
                    None => Commit::Stale(None),
                }
            }
            CheckCommit::Stale(current) => {
                Commit::Stale(current.as_ref().and_then(|i| self.spec(i)))
            }
        })
    }

    fn record(&self, spec: &MonitorSpec<Target>, lifecycle: Lifecycle, report: &CheckReport) {
        self.measure(spec, report);
        self.history
            .record(spec.integration_id, spec.version, lifecycle, report);
    }
}
