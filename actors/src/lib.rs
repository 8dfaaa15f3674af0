//! `catalogd-actors`: catalogd's engine, with no SQL, HTTP or NATS dependency.
//!
//! Layout:
//! - [`lifecycle`]: the pure state machine of DESIGN §4, `(state, input) → (state, effects)`.
//!
//! The supervisor and the per-integration monitor actors arrive with the engine issue; they
//! reach storage, connectors and the event bus only through traits that the `catalogd`
//! crate implements.

pub mod lifecycle;

pub use lifecycle::{
    apply, create, CheckOutcome, EventKind, FailureClass, Input, InvalidTransition, Lifecycle,
    Status, Thresholds, Transition,
};
pub mod clock;
pub mod ports;

pub use clock::{Clock, SystemClock};
