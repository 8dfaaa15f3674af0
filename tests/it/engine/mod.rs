//! End-to-end tests of the monitor engine inside the real daemon: real HTTP targets on
//! loopback that the tests flip between healthy, failing and hanging, on SQLite and on
//! PostgreSQL.

mod canary;
pub(crate) mod lifecycle;
mod supervision;
