//! End-to-end tests of the monitor engine inside the real daemon: real HTTP targets on
//! loopback that the tests flip between healthy, failing and hanging, on SQLite and on
//! PostgreSQL; flap detection, dependency suppression and the network guard (DESIGN §10) among them.

mod canary;
mod dependencies;
mod flapping;
pub(crate) mod lifecycle;
mod maintenance;
mod network_guard;
mod supervision;
