//! The integration suite, one test binary with a module per area (one link of the daemon's
//! library instead of one per area): the REST API, the monitor engine in the daemon, the
//! connectors and the egress policy, the NATS control service and events, health history,
//! metrics, the store, and ARCHITECTURE.md's code map against the tree. Test names keep their area: `cargo test --test it store::`.
//! The secrets canary is its own binary (`tests/secrets.rs`): it installs a process-wide
//! trace subscriber, which would capture every other test's logs.

mod helpers;
mod storm;

mod api;
mod architecture;
mod chaos;
mod connectors;
mod control;
mod egress;
mod engine;
mod events;
mod group_commit;
mod history;
mod leases;
mod metrics;
mod ssrf;
mod status_browser;
mod store;

/// Tests that load the machine heavily (a thousand integrations, child daemons killed in a
/// loop) take this lock, so they do not distort each other's timing.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
mod cluster;
mod corpus;
