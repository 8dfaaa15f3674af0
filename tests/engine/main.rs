//! End-to-end tests of the monitor engine inside the real daemon: real HTTP targets on
//! loopback that the tests flip between healthy, failing and hanging, on SQLite and on
//! PostgreSQL.

#[path = "../support/mod.rs"]
mod support;

#[path = "../api/helpers.rs"]
mod helpers;

mod canary;
mod lifecycle;
mod supervision;

/// Tests that load the machine heavily (a thousand integrations, child daemons killed in a
/// loop) take this lock, so they do not distort each other's timing.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
