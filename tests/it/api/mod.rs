//! The black-box API suite: the real application on a random port, against SQLite and a real
//! PostgreSQL, each test with a fresh database.

mod audit;
mod cli;
mod integrations;
mod isolation;
mod lifecycle;
mod maintenance;
mod pagination;
mod probes;
pub(crate) mod status_page;
mod transfer;
mod validation;
