//! The injected clock: everything that needs "now" asks a [`Clock`], so tests can drive time.

use chrono::{DateTime, SubsecRound, Utc};

pub trait Clock: Send + Sync + 'static {
    /// The current time, truncated to microseconds: both databases store microseconds, and
    /// the audit hash must be computed over exactly what is stored.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
