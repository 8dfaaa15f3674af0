//! In-memory ports for tests and examples: a [`MemoryLedger`] that keeps every check
//! result it is given, a [`ScriptedProbe`] whose outcomes (including hangs and panics) are
//! scripted per integration, a [`NoopProbe`], and a [`TestClock`] that follows tokio's
//! (pausable) clock. The target type is the integration id itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::Clock;
use crate::flap::FlapState;
use crate::lifecycle::{CheckOutcome, EventKind, Lifecycle, Status, Thresholds, Transition};
use crate::ports::{
    CheckReport, Commit, Ledger, Maintenance, MaintenanceView, MonitorSpec, PortError, Probe,
};

/// A spec for integration `id` in `status`, checked every `interval` with a timeout of
/// half of it and the default thresholds. Its target is its id.
pub fn spec(id: Uuid, status: Status, interval: Duration) -> MonitorSpec<Uuid> {
    MonitorSpec {
        integration_id: id,
        tenant_id: Arc::from("tenant"),
        version: 1,
        lifecycle: Lifecycle {
            status,
            consecutive_failures: 0,
            consecutive_successes: 0,
        },
        thresholds: Thresholds::default(),
        interval,
        timeout: interval / 2,
        last_check: None,
        flap: FlapState::default(),
        depends_on: Arc::from([]),
        suppressed_by: Arc::from([]),
        maintenance: None,
        target: Arc::new(id),
    }
}

/// One check result as the ledger received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    pub report: CheckReport,
    /// The lifecycle after this result.
    pub lifecycle: Lifecycle,
    /// `Some((from, to))` when the result was committed as a transition.
    pub transition: Option<(Status, Status)>,
    /// The check ran in a maintenance window.
    pub maintenance: bool,
}

/// A maintenance window of a [`MemoryLedger`]'s calendar: these integrations, this time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestWindow {
    pub window_id: Uuid,
    pub integrations: Vec<Uuid>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A store in memory. Rows can be changed "behind the engine's back" with [`update`],
/// which bumps the version like a REST change would, and the store can be made
/// unavailable to exercise the engine's error paths.
///
/// [`update`]: MemoryLedger::update
pub struct MemoryLedger<T> {
    inner: Mutex<Inner<T>>,
    unavailable: AtomicBool,
    /// While `false`, `monitored_page` calls after the first page wait (see
    /// [`MemoryLedger::hold_later_pages`]).
    later_pages: tokio::sync::watch::Sender<bool>,
    /// While `false`, `commit_transition` waits (see [`MemoryLedger::hang_commits`]).
    commits: tokio::sync::watch::Sender<bool>,
    /// Per integration, on which `record` calls (0-based) the ledger panics.
    crashes: Mutex<HashMap<Uuid, CrashScript>>,
}

type CrashScript = Arc<dyn Fn(usize) -> bool + Send + Sync>;

struct Inner<T> {
    /// Ordered by id, for `monitored_page`.
    rows: BTreeMap<Uuid, MonitorSpec<T>>,
    history: HashMap<Uuid, Vec<HistoryEntry>>,
    /// The events committed transitions published, with the status they carried.
    events: HashMap<Uuid, Vec<(EventKind, Status)>>,
    windows: Vec<TestWindow>,
}

impl<T> Default for MemoryLedger<T> {
    fn default() -> Self {
        MemoryLedger {
            inner: Mutex::new(Inner {
                rows: BTreeMap::new(),
                history: HashMap::new(),
                events: HashMap::new(),
                windows: Vec::new(),
            }),
            unavailable: AtomicBool::new(false),
            later_pages: tokio::sync::watch::Sender::new(true),
            commits: tokio::sync::watch::Sender::new(true),
            crashes: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> MemoryLedger<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panicking test thread must not hide the store from the others.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn insert(&self, spec: MonitorSpec<T>) {
        self.lock().rows.insert(spec.integration_id, spec);
    }

    /// Changes a row as a REST call would: applies `change` and bumps the version.
    /// Returns the new version, or `None` if there is no such row.
    pub fn update(&self, id: Uuid, change: impl FnOnce(&mut MonitorSpec<T>)) -> Option<i64> {
        let mut inner = self.lock();
        let row = inner.rows.get_mut(&id)?;
        change(row);
        row.version += 1;
        Some(row.version)
    }

    /// Adds a window to the calendar. Tell the engine with
    /// [`Engine::calendar_changed`](crate::Engine::calendar_changed).
    pub fn add_window(&self, window: TestWindow) {
        self.lock().windows.push(window);
    }

    pub fn remove(&self, id: Uuid) -> bool {
        self.lock().rows.remove(&id).is_some()
    }

    pub fn get(&self, id: Uuid) -> Option<MonitorSpec<T>> {
        self.lock().rows.get(&id).cloned()
    }

    /// Every check result received for `id`, in order.
    pub fn history(&self, id: Uuid) -> Vec<HistoryEntry> {
        self.lock().history.get(&id).cloned().unwrap_or_default()
    }

    /// The events published for `id`'s committed check results (flap detection may hold
    /// some back or replace them), each with the status it carried.
    pub fn events(&self, id: Uuid) -> Vec<(EventKind, Status)> {
        self.lock().events.get(&id).cloned().unwrap_or_default()
    }

    /// The committed transitions of `id`, each with the index of the check result (in
    /// [`history`](MemoryLedger::history)) that caused it.
    pub fn transitions(&self, id: Uuid) -> Vec<(usize, Status, Status)> {
        self.history(id)
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| entry.transition.map(|(from, to)| (index, from, to)))
            .collect()
    }

    /// Every check report received, for all integrations.
    pub fn reports(&self) -> Vec<CheckReport> {
        self.lock()
            .history
            .values()
            .flatten()
            .map(|entry| entry.report)
            .collect()
    }

    /// Makes `record` panic (after keeping the result) on the calls for `id` for which
    /// `when(call)` holds: a bug inside the actor, which the supervisor must survive and
    /// restart the actor after, with backoff. The panic message contains "scripted ledger panic".
    pub fn crash_on_record(&self, id: Uuid, when: impl Fn(usize) -> bool + Send + Sync + 'static) {
        self.crashes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id, Arc::new(when));
    }

    /// While unavailable, every async call fails with [`PortError::Unavailable`].
    /// `record` keeps working: a real implementation buffers it.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// While held, every page of `monitored_page` after the first one waits: the engine's
    /// initial spawn stops after its first page, as with a slow store.
    pub fn hold_later_pages(&self, held: bool) {
        self.later_pages.send_replace(!held);
    }

    /// While hung, every `commit_transition` waits: an actor stays in the middle of a
    /// commit, as on a database that stopped answering.
    pub fn hang_commits(&self, hung: bool) {
        self.commits.send_replace(!hung);
    }

    fn available(&self) -> Result<(), PortError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(PortError::Unavailable(
                "memory ledger switched off".to_owned(),
            ));
        }
        Ok(())
    }
}

fn monitored<T>(spec: &MonitorSpec<T>) -> bool {
    spec.lifecycle.status != Status::Draft
}

#[async_trait]
impl<T: Send + Sync + 'static> Ledger<T> for MemoryLedger<T> {
    async fn monitored_page(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<MonitorSpec<T>>, PortError> {
        use std::ops::Bound::{Excluded, Unbounded};
        if after.is_some() {
            let mut open = self.later_pages.subscribe();
            // The sender lives as long as `self`.
            let _ = open.wait_for(|open| *open).await;
        }
        self.available()?;
        let start = after.map_or(Unbounded, Excluded);
        Ok(self
            .lock()
            .rows
            .range((start, Unbounded))
            .map(|(_, spec)| spec)
            .filter(|spec| monitored(spec))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn monitored_versions(&self) -> Result<Vec<(Uuid, i64)>, PortError> {
        self.available()?;
        Ok(self
            .lock()
            .rows
            .values()
            .filter(|spec| monitored(spec))
            .map(|spec| (spec.integration_id, spec.version))
            .collect())
    }

    async fn load(&self, integration_id: Uuid) -> Result<Option<MonitorSpec<T>>, PortError> {
        self.available()?;
        Ok(self
            .lock()
            .rows
            .get(&integration_id)
            .filter(|spec| monitored(spec))
            .cloned())
    }

    async fn commit_transition(
        &self,
        spec: &MonitorSpec<T>,
        transition: &Transition,
        flap: &FlapState,
        report: &CheckReport,
    ) -> Result<Commit<T>, PortError> {
        let _ = self.commits.subscribe().wait_for(|open| *open).await;
        self.available()?;
        let mut inner = self.lock();
        let id = spec.integration_id;
        let Some(row) = inner.rows.get_mut(&id) else {
            return Ok(Commit::Stale(None));
        };
        if row.version != spec.version {
            return Ok(Commit::Stale(Some(row.clone())));
        }
        row.lifecycle = transition.state;
        row.flap = flap.clone();
        row.version += 1;
        let published = transition.event;
        let committed = row.clone();
        inner.history.entry(id).or_default().push(HistoryEntry {
            report: *report,
            lifecycle: transition.state,
            transition: Some((transition.from, transition.state.status)),
            maintenance: spec.maintenance.is_some(),
        });
        if let Some(event) = published {
            inner
                .events
                .entry(id)
                .or_default()
                .push((event, transition.state.status));
        }
        Ok(Commit::Committed(committed))
    }

    async fn suppress(
        &self,
        spec: &MonitorSpec<T>,
        suppressed_by: &[Uuid],
    ) -> Result<Commit<T>, PortError> {
        self.available()?;
        let mut inner = self.lock();
        let Some(row) = inner.rows.get_mut(&spec.integration_id) else {
            return Ok(Commit::Stale(None));
        };
        row.suppressed_by = Arc::from(suppressed_by);
        Ok(Commit::Committed(row.clone()))
    }

    async fn dependencies(
        &self,
        tenant_id: &str,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Status, Vec<Uuid>)>, PortError> {
        self.available()?;
        let inner = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| inner.rows.get(id))
            .filter(|spec| &*spec.tenant_id == tenant_id)
            .map(|spec| {
                (
                    spec.integration_id,
                    spec.lifecycle.status,
                    spec.depends_on.to_vec(),
                )
            })
            .collect())
    }

    fn maintenance(&self, spec: &MonitorSpec<T>, at: DateTime<Utc>) -> MaintenanceView {
        let inner = self.lock();
        let mine = || {
            inner
                .windows
                .iter()
                .filter(|w| w.integrations.contains(&spec.integration_id))
        };
        let current = mine()
            .filter(|w| w.starts_at <= at && at < w.ends_at)
            .max_by_key(|w| w.ends_at)
            .map(|w| Maintenance {
                window_id: w.window_id,
                ends_at: w.ends_at,
            });
        let next_start = mine().map(|w| w.starts_at).filter(|s| *s > at).min();
        let next_change = match (current, next_start) {
            (Some(m), Some(s)) => Some(m.ends_at.min(s)),
            (Some(m), None) => Some(m.ends_at),
            (None, s) => s,
        };
        MaintenanceView {
            current,
            next_change,
        }
    }

    async fn commit_maintenance(
        &self,
        spec: &MonitorSpec<T>,
        lifecycle: Lifecycle,
        maintenance: Option<Maintenance>,
        event: Option<EventKind>,
    ) -> Result<Commit<T>, PortError> {
        self.available()?;
        let mut inner = self.lock();
        let id = spec.integration_id;
        let Some(row) = inner.rows.get_mut(&id) else {
            return Ok(Commit::Stale(None));
        };
        if row.version != spec.version {
            return Ok(Commit::Stale(Some(row.clone())));
        }
        row.lifecycle = lifecycle;
        row.maintenance = maintenance;
        row.version += 1;
        let committed = row.clone();
        if let Some(event) = event {
            inner
                .events
                .entry(id)
                .or_default()
                .push((event, lifecycle.status));
        }
        Ok(Commit::Committed(committed))
    }

    fn record(&self, spec: &MonitorSpec<T>, lifecycle: Lifecycle, report: &CheckReport) {
        let mut inner = self.lock();
        let id = spec.integration_id;
        if let Some(row) = inner.rows.get_mut(&id) {
            // Counters only; a row changed since the actor read it keeps its own.
            if row.version == spec.version {
                row.lifecycle = lifecycle;
            }
        }
        let history = inner.history.entry(id).or_default();
        history.push(HistoryEntry {
            report: *report,
            lifecycle,
            transition: None,
            maintenance: spec.maintenance.is_some(),
        });
        let call = history.len() - 1;
        drop(inner);
        let crash = self
            .crashes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .cloned();
        if crash.is_some_and(|when| when(call)) {
            panic!("scripted ledger panic for {id}");
        }
    }
}

/// What a [`ScriptedProbe`] does on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Outcome(CheckOutcome),
    /// Never returns: the engine's timeout must end the check.
    Hang,
    Panic,
}

type Script = Arc<dyn Fn(usize) -> Behaviour + Send + Sync>;

/// A probe whose behaviour is scripted per integration as a function of the call number
/// (0-based), and which remembers when it was called.
pub struct ScriptedProbe {
    default: Behaviour,
    scripts: Mutex<HashMap<Uuid, Script>>,
    calls: Mutex<HashMap<Uuid, Vec<Instant>>>,
}

impl ScriptedProbe {
    /// A probe that behaves as `default` for every integration without a script.
    pub fn new(default: Behaviour) -> Self {
        ScriptedProbe {
            default,
            scripts: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    pub fn script(&self, id: Uuid, script: impl Fn(usize) -> Behaviour + Send + Sync + 'static) {
        lock(&self.scripts).insert(id, Arc::new(script));
    }

    pub fn always(&self, id: Uuid, behaviour: Behaviour) {
        self.script(id, move |_| behaviour);
    }

    /// How often `id` was checked.
    pub fn calls(&self, id: Uuid) -> usize {
        lock(&self.calls).get(&id).map_or(0, Vec::len)
    }

    /// When `id` was checked, in tokio's clock.
    pub fn call_times(&self, id: Uuid) -> Vec<Instant> {
        lock(&self.calls).get(&id).cloned().unwrap_or_default()
    }

    /// When each integration was first checked.
    pub fn first_calls(&self) -> HashMap<Uuid, Instant> {
        lock(&self.calls)
            .iter()
            .filter_map(|(id, times)| Some((*id, *times.first()?)))
            .collect()
    }

    pub fn total_calls(&self) -> usize {
        lock(&self.calls).values().map(Vec::len).sum()
    }
}

fn lock<V>(mutex: &Mutex<V>) -> MutexGuard<'_, V> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Probe<Uuid> for ScriptedProbe {
    async fn check(&self, target: &Uuid, _timeout: Duration) -> CheckOutcome {
        let call = {
            let mut calls = lock(&self.calls);
            let times = calls.entry(*target).or_default();
            times.push(Instant::now());
            times.len() - 1
        };
        let script = lock(&self.scripts).get(target).cloned();
        let behaviour = script.map_or(self.default, |script| script(call));
        match behaviour {
            Behaviour::Outcome(outcome) => outcome,
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Panic => panic!("scripted probe panic for {target}"),
        }
    }
}

/// A probe that succeeds at once and keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopProbe;

#[async_trait]
impl<T: Send + Sync + 'static> Probe<T> for NoopProbe {
    async fn check(&self, _target: &T, _timeout: Duration) -> CheckOutcome {
        CheckOutcome::Success
    }
}

/// A wall clock that advances with tokio's clock, so paused-time tests get consistent
/// `started_at` values.
#[derive(Debug, Clone, Copy)]
pub struct TestClock {
    base: DateTime<Utc>,
    start: Instant,
}

impl TestClock {
    pub fn new() -> Self {
        TestClock {
            base: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            start: Instant::now(),
        }
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        (self.base + elapsed).trunc_subsecs(6)
    }
}
