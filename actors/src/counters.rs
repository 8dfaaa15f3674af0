//! Counters the engine keeps about itself, for the daemon's metrics (`catalogd_actors`,
//! `catalogd_actor_restarts_total`) and for tests. Lock-free, so reading them never waits
//! for the supervisor's mailbox.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct EngineCounters {
    restarts: AtomicU64,
    actors: AtomicU64,
    checks_in_flight: AtomicU64,
    checks_started: AtomicU64,
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

pub(crate) struct InFlight<'a>(&'a EngineCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.checks_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
