//! Name resolution: the [`Resolve`] seam (the system resolver by default, fixed answers in
//! tests), and how a URL's host becomes the addresses the policy then checks.

use std::io;
use std::net::IpAddr;

use async_trait::async_trait;
use url::Host;

use super::{EgressError, PhaseInfo};

/// Resolves host names. The default is the system resolver; tests and embedders may
/// substitute their own (every address it returns is still checked by the policy).
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`, so `/etc/hosts` applies).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        let addresses = tokio::net::lookup_host((host, port)).await?;
        Ok(addresses.map(|address| address.ip()).collect())
    }
}

/// Fixed answers for some names, the system resolver for the others.
#[derive(Debug, Clone, Default)]
pub struct ResolverOverrides {
    names: std::collections::HashMap<String, Vec<IpAddr>>,
}

impl ResolverOverrides {
    pub fn new() -> ResolverOverrides {
        ResolverOverrides::default()
    }

    /// Makes `name` (lower-case ASCII, as the URL parser leaves it) resolve to `addresses`.
    pub fn with(mut self, name: &str, addresses: &[IpAddr]) -> ResolverOverrides {
        self.names
            .insert(name.to_ascii_lowercase(), addresses.to_vec());
        self
    }
}

#[async_trait]
impl Resolve for ResolverOverrides {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        match self.names.get(host) {
            Some(addresses) => Ok(addresses.clone()),
            None => SystemResolver.resolve(host, port).await,
        }
    }
}

/// The addresses of `host`: an address literal as it is, a name through `resolver`. Never
/// empty on success.
pub(super) async fn addresses(
    resolver: &dyn Resolve,
    host: &Host<String>,
    port: u16,
) -> Result<(Vec<IpAddr>, PhaseInfo), EgressError> {
    match host {
        Host::Ipv4(ip) => Ok((vec![IpAddr::V4(*ip)], PhaseInfo::AddressLiteral)),
        Host::Ipv6(ip) => Ok((vec![IpAddr::V6(*ip)], PhaseInfo::AddressLiteral)),
        Host::Domain(name) if name.is_empty() => Err(EgressError::InvalidUrl("empty host")),
        Host::Domain(name) => {
            let addresses = resolver
                .resolve(name, port)
                .await
                .map_err(|_| EgressError::Dns("name not resolved"))?;
            if addresses.is_empty() {
                return Err(EgressError::Dns("name has no addresses"));
            }
            let count = addresses.len();
            Ok((addresses, PhaseInfo::Resolved { addresses: count }))
        }
    }
}
