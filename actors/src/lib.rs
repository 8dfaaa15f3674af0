//! `catalogd-actors`: catalogd's engine, with no SQL, HTTP or NATS dependency.
//!
//! One supervised actor per monitored integration watches its health and moves it through
//! its lifecycle. The engine reaches storage and the network only through the traits in
//! [`ports`], which the `catalogd` crate implements; tests implement them in memory
//! ([`testing`]).
//!
//! Layout:
//! - [`lifecycle`]: the pure state machine of DESIGN §4, `(state, input) → (state, effects)`.
//! - [`flap`]: flap detection (DESIGN §10) as a pure function of the recent transitions and
//!   the injected time.
//! - [`dependencies`]: the dependency graph the supervisor keeps (DESIGN §10), and which
//!   degraded or failed integrations suppress a dependent's failures; pure.
//! - [`network_guard`]: the network guard (DESIGN §10): one detector per engine, fed every
//!   check outcome, that holds transitions to degraded/failed for a bounded time while most
//!   checks fail with a network class; reports each change through a port.
//! - [`schedule`]: the pure schedule math — phase offsets derived from the integration id,
//!   drift-free next due times, the failed-integration and restart backoffs.
//! - [`ports`]: the traits the engine talks through (`Ledger`, `Probe`) and the values that
//!   cross them (`MonitorSpec`, `CheckReport`, `Commit`).
//! - [`clock`]: the injected wall clock.
//! - `monitor` (private): one actor per integration. It owns that integration's health
//!   state, runs each check in its own task under a timeout and hears back by message, so
//!   its mailbox never waits on a target.
//! - `supervisor` (private): keeps one monitor per monitored integration, following change
//!   notifications, reconciling with the store, restarting crashed actors with backoff.
//! - [`engine`]: [`Engine`], the handle the daemon holds — the API boundary of this crate.
//! - [`counters`]: lock-free counters for the daemon's metrics.
//! - [`testing`]: in-memory `Ledger` and `Probe` for tests and examples.

pub mod clock;
pub mod counters;
pub mod dependencies;
pub mod engine;
pub mod flap;
pub mod lifecycle;
mod monitor;
pub mod network_guard;
pub mod ports;
pub mod schedule;
mod supervisor;
pub mod testing;

pub use clock::{Clock, SystemClock};
pub use counters::EngineCounters;
pub use engine::{Engine, EngineError, EngineOptions};
pub use flap::{FlapOptions, FlapState};
pub use lifecycle::{
    apply, create, CheckOutcome, EventKind, FailureClass, Input, InvalidTransition, Lifecycle,
    Status, Thresholds, Transition,
};
pub use network_guard::{NetworkChange, NetworkGuard, NetworkGuardOptions, NetworkGuardReporter};
pub use ports::{
    CheckReport, Commit, Ledger, Maintenance, MaintenanceView, MonitorSpec, PortError, Probe,
};
