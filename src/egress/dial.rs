//! Dialling: the [`Dial`] seam (plain TCP by default, a recording dialer in tests) and the
//! connection to the first allowed address that accepts, whose peer is checked once more so
//! that what was checked is what was reached.

use std::io;
use std::net::{IpAddr, SocketAddr};

use async_trait::async_trait;
use tokio::net::TcpStream;

use super::{EgressError, EgressPolicy};

/// Opens a TCP connection to an address the policy has already allowed. The default dials
/// it; tests substitute a dialer that records where catalogd tried to go.
#[async_trait]
pub trait Dial: Send + Sync + 'static {
    async fn dial(&self, address: SocketAddr) -> io::Result<TcpStream>;
}

/// Dials the address itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

#[async_trait]
impl Dial for TcpDialer {
    async fn dial(&self, address: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(address).await
    }
}

/// Connects to the first address that accepts. Every address was checked by the caller;
/// the connected peer is checked once more, so what was checked is what was reached.
pub(super) async fn first(
    dialer: &dyn Dial,
    policy: &EgressPolicy,
    addresses: &[IpAddr],
    port: u16,
) -> Result<(TcpStream, SocketAddr), EgressError> {
    let mut last = EgressError::Connect("connection failed");
    for ip in addresses {
        let address = SocketAddr::new(*ip, port);
        match dialer.dial(address).await {
            Ok(stream) => {
                let peer = stream
                    .peer_addr()
                    .map_err(|_| EgressError::Connect("connection failed"))?;
                policy.check(peer.ip()).map_err(EgressError::Denied)?;
                // Latency of small health requests matters more than batching.
                let _ = stream.set_nodelay(true);
                return Ok((stream, address));
            }
            Err(e) => last = connect_error(&e),
        }
    }
    Err(last)
}

fn connect_error(e: &io::Error) -> EgressError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => EgressError::Connect("connection refused"),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            EgressError::Connect("connection reset")
        }
        io::ErrorKind::TimedOut => EgressError::Timeout,
        io::ErrorKind::HostUnreachable => EgressError::Connect("host unreachable"),
        io::ErrorKind::NetworkUnreachable => EgressError::Connect("network unreachable"),
        io::ErrorKind::AddrNotAvailable => EgressError::Connect("address not available"),
        _ => EgressError::Connect("connection failed"),
    }
}
