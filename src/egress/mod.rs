//! The egress (SSRF) policy and the only way catalogd opens outbound connections.
//!
//! [`EgressPolicy`] decides whether an IP address may be reached. [`EgressClient`] applies it
//! where it cannot be bypassed: on the addresses a name resolved to, immediately before the
//! TCP connection to exactly that address is opened, and again on the connected socket's peer
//! address. Every redirect hop opens a new connection through the same path, so redirects,
//! DNS rebinding (the checked address is the dialled address) and IP literals in any encoding
//! (the WHATWG URL parser normalizes `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, and the
//! address is checked after parsing anyway) all meet the same check.
//!
//! One concept per module: `policy` (which addresses, pure), `resolve` (names to
//! addresses), `dial` (TCP and the peer check), `tls`, `exchange` (one HTTP/1.1
//! request and response), `redirect` (the next hop), `pool` (kept-alive connections),
//! `observer` (the phases a connection test shows), `error`, and `client`, which puts
//! them together in that order.
//!
//! Architecture invariant: errors here are fixed phrases. Nothing read from a peer (bodies,
//! headers, certificates) and no resolved address is ever put into an error message.

mod client;
mod dial;
mod error;
mod exchange;
mod observer;
mod policy;
mod pool;
mod redirect;
mod resolve;
mod tls;

pub use client::EgressClient;
pub use dial::{Dial, TcpDialer};
pub use error::EgressError;
pub use exchange::{Request, Response, MAX_BODY_BYTES};
pub use observer::{NoObserver, Observer, Phase, PhaseInfo};
pub use policy::{DenyReason, EgressPolicy};
pub use resolve::{DnsResolver, Resolve, ResolverOverrides, SystemResolver};
pub use tls::{tls_config, Stream};
