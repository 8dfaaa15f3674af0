//! The one test kit of catalogd's test suites and benchmark runner: waiting with deadlines,
//! fresh databases on both backends, the real servers the tests run against (PostgreSQL,
//! nats-server, Prometheus, a `catalogd serve` child process), a programmable DNS server, a
//! switchable HTTP target and fakes of the vendors' APIs.
//!
//! It knows nothing of catalogd's library (only its command line and log lines), so the
//! engine crate's tests use it too and it builds alongside the daemon.

pub mod cluster;
pub mod daemon;
pub mod database;
pub mod dns;
pub mod fakes;
pub mod nats;
pub mod poll;
pub mod postgres;
pub mod prometheus;
pub mod target;

pub use cluster::{Cluster, FleetTarget};
pub use daemon::Daemon;
pub use database::{database_url, Backend, FreshDatabase};
pub use dns::DnsServer;
pub use nats::NatsServer;
pub use poll::{eventually, holds_within, poll};
pub use prometheus::{metric_sum, Prometheus};
pub use target::{Mode, Target};

/// A loopback port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
