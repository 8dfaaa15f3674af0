//! catalogd, the Integration Catalog daemon: the adapters around the engine in
//! `catalogd-actors`.
//!
//! Layout:
//! - [`cli`]: the `catalogd` command line (serve, migrate, token, audit verify).
//! - [`config`]: layered configuration (defaults, TOML file, `CATALOGD__*` env overrides).
//! - [`startup`]: builds the application from a configuration and runs it until shutdown.
//! - [`monitoring`]: the ledger the monitor actors persist through, and how API changes reach them.
//! - [`network_guard`]: the network guard's daemon side: its options, and its `_system`
//!   events through the outbox.
//! - [`cloudevents`]: lifecycle events as CloudEvents, written to the outbox at commit time.
//! - [`integration`]: the integration resource and the pure rules for changing it.
//! - [`maintenance`]: maintenance windows: the resource, its validation, when it is open.
//! - [`validation`]: checks a user-supplied spec before it reaches the store.
//! - [`providers`]: the known provider names.
//! - [`spellings`]: the seed's enum spellings on input (any case, `-`/`_`), canonical output.
//! - [`connectors`]: health-check connectors per provider, declarative providers, staged
//!   connection-test diagnostics; the engine's `Probe`.
//! - [`egress`]: the SSRF policy and the only client that opens outbound connections.
//! - [`secrets`]: AuthRef resolution from files and environment variables.
//! - [`auth`]: bearer JWT verification, scopes, and token minting.
//! - [`app`]: the application layer: its state, every use case (list, get, create, update,
//!   delete, submit, test, pause, resume, activate, health, history, audit), authentication,
//!   the transport-neutral error; REST and NATS are adapters around it.
//! - [`store`]: the `Store` trait, its SQLite and PostgreSQL implementations, the audit chain.
//! - [`nats`]: the NATS connection from `[nats]`, in the background; its readiness.
//! - [`relay`]: publishes outbox events to NATS (JetStream or core), in order per integration.
//! - [`watch`]: `catalogd events watch`, a terminal view of the events.
//! - [`http`]: the REST API (axum): decodes, calls one use case of [`app`], encodes;
//!   problem+json errors, OpenAPI.
//! - [`control`]: the NATS request-reply control service: the same use cases over NATS.
//! - [`metrics`]: the Prometheus exporter, internal events (log + metric), gauges.
//! - [`telemetry`]: tracing subscriber set-up.

pub mod app;
pub mod auth;
pub mod cli;
pub mod cloudevents;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod control;
pub mod egress;
pub mod http;
pub mod integration;
pub mod maintenance;
pub mod metrics;
pub mod monitoring;
pub mod nats;
pub mod network_guard;
pub mod providers;
pub mod relay;
pub mod secrets;
pub mod spellings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod transfer;
pub mod transfer_cli;
pub mod validation;
pub mod watch;
