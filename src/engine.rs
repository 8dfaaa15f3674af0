//! The daemon's side of the engine: how REST (and later NATS) changes reach the monitor
//! actors. Handlers commit a change to the store first, then tell the engine which
//! integration changed; the supervisor reloads it from the store and starts, re-configures or
//! stops its actor. The store stays the source of truth, so a lost notification is repaired
//! by the supervisor's reconciliation pass.

use uuid::Uuid;

/// What the API tells the engine after it committed a change.
pub trait EngineControl: Send + Sync + 'static {
    /// The integration changed (created, updated, submitted, paused, resumed, activated).
    /// `check_now` asks for a check at once (submit, resume).
    fn changed(&self, id: Uuid, check_now: bool);

    /// The integration was deleted; its actor must stop.
    fn deleted(&self, id: Uuid);
}

/// No engine: for commands that only serve the API (and tests of the API alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct Detached;

impl EngineControl for Detached {
    fn changed(&self, _id: Uuid, _check_now: bool) {}

    fn deleted(&self, _id: Uuid) {}
}
