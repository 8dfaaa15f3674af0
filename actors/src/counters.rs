//! Counters the engine keeps about itself, for the daemon's metrics (`catalogd_actors`,
//! `catalogd_actor_restarts_total`, `catalogd_integrations_flapping`,
//! `catalogd_integrations_suppressed`, `catalogd_integrations_in_maintenance`) and for tests. Lock-free, so reading them never waits
//! for the supervisor's mailbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

#[derive(Debug, Default)]
pub struct EngineCounters {
    restarts: AtomicU64,
    actors: AtomicU64,
    checks_in_flight: AtomicU64,
    checks_started: AtomicU64,
    flapping: AtomicU64,
    suppressed: AtomicU64,
    in_maintenance: AtomicU64,
    /// The suppressed integrations themselves (id → tenant), for the sparse per-integration
    /// series alert rules use to stay quiet about them. Only suppressed ones are held.
    suppressed_ids: Mutex<HashMap<Uuid, Arc<str>>>,
    /// The same for the integrations in a maintenance window.
    maintenance_ids: Mutex<HashMap<Uuid, Arc<str>>>,
}

impl EngineCounters {
    /// Monitor actors re-spawned after they failed, panicked or were killed, since start.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Monitor actors currently running (paused integrations included: they have an idle actor).
    pub fn actors(&self) -> u64 {
        self.actors.load(Ordering::Relaxed)
    }

    /// Health checks started and not yet finished.
    pub fn checks_in_flight(&self) -> u64 {
        self.checks_in_flight.load(Ordering::Relaxed)
    }

    /// Health checks started since the engine started.
    pub fn checks_started(&self) -> u64 {
        self.checks_started.load(Ordering::Relaxed)
    }

    /// Monitored integrations (with an actor here) that are flapping (DESIGN §10).
    pub fn flapping(&self) -> u64 {
        self.flapping.load(Ordering::Relaxed)
    }

    /// Monitored integrations (with an actor here) whose failures a dependency suppresses.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Monitored integrations (with an actor here) in a maintenance window (DESIGN §10).
    pub fn in_maintenance(&self) -> u64 {
        self.in_maintenance.load(Ordering::Relaxed)
    }

    /// `(tenant, id)` of the monitored integrations whose failures a dependency suppresses,
    /// sorted.
    pub fn suppressed_integrations(&self) -> Vec<(Arc<str>, Uuid)> {
        listed(&self.suppressed_ids)
    }

    /// `(tenant, id)` of the monitored integrations in a maintenance window, sorted.
    pub fn maintenance_integrations(&self) -> Vec<(Arc<str>, Uuid)> {
        listed(&self.maintenance_ids)
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_actors(&self, actors: usize) {
        self.actors.store(actors as u64, Ordering::Relaxed);
    }

    /// Counts a check as in flight until the returned guard is dropped, however the check
    /// ends (finished, timed out, panicked, or its task dropped at shutdown).
    pub(crate) fn check_started(&self) -> InFlight<'_> {
        self.checks_started.fetch_add(1, Ordering::Relaxed);
        self.checks_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }
}

fn listed(ids: &Mutex<HashMap<Uuid, Arc<str>>>) -> Vec<(Arc<str>, Uuid)> {
    let ids = ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut list: Vec<(Arc<str>, Uuid)> = ids
        .iter()
        .map(|(id, tenant)| (tenant.clone(), *id))
        .collect();
    drop(ids);
    list.sort_unstable();
    list
}

/// What an actor's integration is, for the engine's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlagSet {
    pub(crate) flapping: bool,
    pub(crate) suppressed: bool,
    pub(crate) maintenance: bool,
}

/// One actor's share of the `flapping`, `suppressed` and `in_maintenance` counts: set as its
/// state changes, given back when the actor's state is dropped (a stop, a crash or a panic
/// alike).
pub(crate) struct Flags {
    counters: Arc<EngineCounters>,
    integration_id: Uuid,
    tenant_id: Arc<str>,
    held: FlagSet,
}

impl Flags {
    pub(crate) fn new(
        counters: Arc<EngineCounters>,
        integration_id: Uuid,
        tenant_id: Arc<str>,
    ) -> Self {
        Flags {
            counters,
            integration_id,
            tenant_id,
            held: FlagSet::default(),
        }
    }

    pub(crate) fn set(&mut self, now: FlagSet) {
        // Called after every message an actor handles: nothing to do is the common case.
        if now == self.held {
            return;
        }
        let counters = self.counters.clone();
        adjust(&counters.flapping, &mut self.held.flapping, now.flapping);
        let listed = |ids: &Mutex<HashMap<Uuid, Arc<str>>>, on: bool| {
            let mut ids = ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if on {
                ids.insert(self.integration_id, self.tenant_id.clone());
            } else {
                ids.remove(&self.integration_id);
            }
        };
        if adjust(
            &counters.suppressed,
            &mut self.held.suppressed,
            now.suppressed,
        ) {
            listed(&counters.suppressed_ids, now.suppressed);
        }
        if adjust(
            &counters.in_maintenance,
            &mut self.held.maintenance,
            now.maintenance,
        ) {
            listed(&counters.maintenance_ids, now.maintenance);
        }
    }
}

/// Moves `counter` by the change from `held` to `now`; whether there was one.
fn adjust(counter: &AtomicU64, held: &mut bool, now: bool) -> bool {
    match (*held, now) {
        (false, true) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
        _ => return false,
    }
    *held = now;
    true
}

impl Drop for Flags {
    fn drop(&mut self) {
        self.set(FlagSet::default());
    }
}

pub(crate) struct InFlight<'a>(&'a EngineCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.checks_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
