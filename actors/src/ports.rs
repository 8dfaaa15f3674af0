//! The engine's ports: the traits through which monitor actors reach storage and the network.
//! `catalogd` (src/) implements them over SQL, HTTP connectors and the outbox; tests implement
//! them in memory.
//!
//! Everything that crosses a port is a value. A failed health check is a [`CheckReport`] with
//! a failure class, never an `Err`: an `Err` or a panic in an actor handler kills the actor.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::flap::FlapState;
use crate::lifecycle::{CheckOutcome, EventKind, Lifecycle, Status, Thresholds, Transition};

/// The maintenance window an integration is in (DESIGN §10): the resource's `maintenance`
/// field, `{ windowId, endsAt }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Maintenance {
    pub window_id: Uuid,
    pub ends_at: DateTime<Utc>,
}

/// What the maintenance calendar says about one integration at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceView {
    /// The window the integration is in, if any (of several, the one that ends last).
    pub current: Option<Maintenance>,
    /// When to ask again: the current window's end, or the next window's start. `None`:
    /// nothing is planned.
    pub next_change: Option<DateTime<Utc>>,
}

/// What one monitor actor knows about its integration.
#[derive(Debug)]
pub struct MonitorSpec<T> {
    pub integration_id: Uuid,
    pub tenant_id: Arc<str>,
    /// The row version this spec was read at. Transitions are committed only if the row is
    /// still at this version, so a concurrent REST change is never overwritten.
    pub version: i64,
    pub lifecycle: Lifecycle,
    pub thresholds: Thresholds,
    pub interval: Duration,
    pub timeout: Duration,
    /// When the integration was last checked, as stored (by any engine: another node of a
    /// cluster, an earlier run of this one). A new actor's first check is on a later slot
    /// than that check's, so a monitor that moves (a handover, a restart) does not check
    /// twice in one slot.
    pub last_check: Option<DateTime<Utc>>,
    /// The flap detector's state as stored (DESIGN §10); the actor carries it on.
    pub flap: FlapState,
    /// The integrations this one depends on (DESIGN §10).
    pub depends_on: Arc<[Uuid]>,
    /// The degraded or failed integrations that suppress this one's failures, as stored.
    pub suppressed_by: Arc<[Uuid]>,
    /// The maintenance window the integration is in, as stored (DESIGN §10).
    pub maintenance: Option<Maintenance>,
    /// Whatever the probe needs to run a check (provider, URL, AuthRef, configuration).
    /// Opaque to the engine.
    pub target: Arc<T>,
}

impl<T> Clone for MonitorSpec<T> {
    fn clone(&self) -> Self {
        MonitorSpec {
            integration_id: self.integration_id,
            tenant_id: self.tenant_id.clone(),
            version: self.version,
            lifecycle: self.lifecycle,
            thresholds: self.thresholds,
            interval: self.interval,
            timeout: self.timeout,
            last_check: self.last_check,
            flap: self.flap.clone(),
            depends_on: self.depends_on.clone(),
            suppressed_by: self.suppressed_by.clone(),
            maintenance: self.maintenance,
            target: self.target.clone(),
        }
    }
}

/// The result of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    pub outcome: CheckOutcome,
    pub started_at: DateTime<Utc>,
    pub latency: Duration,
    /// How late the check started against its schedule.
    pub lateness: Duration,
}

/// Runs health checks. Implementations enforce `timeout` themselves and turn every failure
/// into a [`CheckOutcome::Failure`] with its class.
///
/// The engine also enforces the timeout: a check still running when it expires is dropped
/// (cancelled at its next await) and counts as a `timeout` failure. A panic is not a result:
/// it restarts the integration's actor with backoff.
#[async_trait]
pub trait Probe<T>: Send + Sync + 'static {
    async fn check(&self, target: &T, timeout: Duration) -> CheckOutcome;

    /// Whether a check of `target` goes over the network, so that its outcome tells the
    /// network guard (DESIGN §10) something about catalogd's network; synthetic targets (the
    /// in-memory provider) say no.
    fn reaches_network(&self, _target: &T) -> bool {
        true
    }
}

/// Why a port call failed. The engine retries or reloads; it never crashes on these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The outcome of committing a transition.
#[derive(Debug)]
pub enum Commit<T> {
    /// Committed; the actor continues with this spec (its new version).
    Committed(MonitorSpec<T>),
    /// The row changed since the actor read it (a REST change won the race), or it is gone.
    /// The actor adopts the stored spec, or stops on `None`.
    Stale(Option<MonitorSpec<T>>),
}

/// Storage, as the engine sees it.
#[async_trait]
pub trait Ledger<T>: Send + Sync + 'static {
    /// Integrations that are not drafts, in id order: at most `limit` of them, with an id
    /// greater than `after`. The supervisor pages through these at start, spawning each page
    /// before it loads the next, so a large fleet is never held in memory twice.
    async fn monitored_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<MonitorSpec<T>>, PortError>;

    /// `(id, version)` of every integration that is not a draft: the cheap listing the
    /// reconciliation pass compares with the running actors.
    async fn monitored_versions(&self) -> Result<Vec<(Uuid, i64)>, PortError>;

    /// One integration's current spec, or `None` if it is gone or a draft. Called on every
    /// change notification, restart and reconciliation repair.
    async fn load(&self, integration_id: Uuid) -> Result<Option<MonitorSpec<T>>, PortError>;

    /// Commits a lifecycle transition caused by a check, with its audit entry and outbox
    /// event, in one transaction — only if the row is still at `spec.version`. The report
    /// belongs to the same check: it goes to the health history as well (`record` is not
    /// called for it). On `Committed`, the returned spec carries the new version.
    ///
    /// `transition.event` is the event to publish, as flap detection decided: `None` for a
    /// status change while flapping (committed and audited, no event), `flapping`/`stable`
    /// for a change of the flag (with or without a status change). `flap` is the flap
    /// detector's state after this check, stored with the row.
    async fn commit_transition(
        &self,
        spec: &MonitorSpec<T>,
        transition: &Transition,
        flap: &FlapState,
        report: &CheckReport,
    ) -> Result<Commit<T>, PortError>;

    /// Stores which integrations suppress this one's failures (DESIGN §10). Not a change of
    /// the resource: the version stays. `Stale(None)`: gone (or this node lost it).
    async fn suppress(
        &self,
        spec: &MonitorSpec<T>,
        suppressed_by: &[Uuid],
    ) -> Result<Commit<T>, PortError>;

    /// `(id, status, dependsOn)` of the tenant's integrations among `ids`: how the engine
    /// learns of dependencies that have no actor here (drafts, another node's, not spawned
    /// yet). Called when a dependent's actor starts or changes and at each reconciliation,
    /// never per check.
    async fn dependencies(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Status, Vec<Uuid>)>, PortError>;

    /// The maintenance window `spec`'s integration is in at `at`, and when that next changes
    /// (DESIGN §10). In memory and cheap: each monitor asks when it starts, when its spec
    /// changes, when the calendar changes and when the answer said it would change; never per
    /// check. Without a calendar nothing is ever in maintenance.
    fn maintenance(&self, spec: &MonitorSpec<T>, at: DateTime<Utc>) -> MaintenanceView {
        let _ = (spec, at);
        MaintenanceView::default()
    }

    /// Commits the integration's entering or leaving a maintenance window (`maintenance`
    /// `Some`/`None`) with `lifecycle` (the counters start fresh), its audit entry and
    /// `event` (`maintenance_started`/`maintenance_ended`; `None` when one window hands over
    /// to another), in one transaction, only if the row is still at `spec.version`.
    async fn commit_maintenance(
        &self,
        spec: &MonitorSpec<T>,
        lifecycle: Lifecycle,
        maintenance: Option<Maintenance>,
        event: Option<EventKind>,
    ) -> Result<Commit<T>, PortError>;

    /// Records a check result (health history, last-check fields, counters) that did not
    /// change the status. Implementations batch these; the call must not block on I/O.
    ///
    /// It must not bump the row version: the actor keeps committing against the version it
    /// holds. Counters may be written late or not at all (a crash loses the batch); the
    /// actor is their only writer and keeps its own copy, and a restarted actor starts from
    /// whatever the store has.
    fn record(&self, spec: &MonitorSpec<T>, lifecycle: Lifecycle, report: &CheckReport);
}
