//! The phases of an outbound call (DNS, policy, TCP, TLS, HTTP) and the [`Observer`] that
//! watches them: the connection test's staged diagnostics, or nothing for periodic checks.

use super::EgressError;

/// The steps of one outbound connection and exchange, reported to an [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Resolution of the host name (or acceptance of an address literal).
    Dns,
    /// The policy check on the resolved addresses.
    Policy,
    Tcp,
    Tls,
    /// Request sent, response head and (bounded) body received.
    Http,
}

/// What a successful phase found, in fixed terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseInfo {
    Resolved { addresses: usize },
    AddressLiteral,
    Allowed,
    Connected,
    Handshake { protocol: &'static str },
    Status(u16),
}

/// Watches the phases of outbound calls (the connection test's staged diagnostics).
pub trait Observer: Send + Sync {
    fn begin(&self, phase: Phase);
    fn end(&self, phase: Phase, result: Result<PhaseInfo, &EgressError>);
    /// Whether this call may use a kept-alive connection (when `egress.keep_alive` is on).
    /// Staged diagnostics say no: a connection test shows its own DNS, TCP and TLS stages.
    fn reuse_connections(&self) -> bool {
        false
    }
}

/// An observer that ignores everything: the periodic checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn begin(&self, _: Phase) {}
    fn end(&self, _: Phase, _: Result<PhaseInfo, &EgressError>) {}
    fn reuse_connections(&self) -> bool {
        true
    }
}
