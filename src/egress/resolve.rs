//! Name resolution: the [`Resolve`] seam (the system resolver by default, the DNS servers of
//! `egress.nameservers` when configured, fixed answers in tests), and how a URL's host becomes
//! the addresses the policy then checks. Each connection resolves its name once: the client
//! dials exactly the addresses checked here, so a name that changes its answer between two
//! lookups (DNS rebinding) cannot swap in an address that was not checked.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

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

/// The DNS servers of `egress.nameservers` (UDP, TCP when a UDP answer is truncated or
/// fails), asked for A and AAAA records together: every address a name has is checked, not
/// only the first family's. `/etc/hosts` and search domains are not used, so the answer is
/// what those servers say. Answers are cached for their TTL.
pub struct DnsResolver {
    resolver: hickory_resolver::TokioResolver,
}

impl fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsResolver").finish_non_exhaustive()
    }
}

impl DnsResolver {
    pub fn new(nameservers: &[SocketAddr]) -> DnsResolver {
        use hickory_resolver::config::{
            LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
        };
        use hickory_resolver::name_server::TokioConnectionProvider;
        use hickory_resolver::proto::xfer::Protocol;
        let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
        for address in nameservers {
            config.add_name_server(NameServerConfig::new(*address, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*address, Protocol::Tcp));
        }
        let mut builder = hickory_resolver::Resolver::builder_with_config(
            config,
            TokioConnectionProvider::default(),
        );
        let options = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.use_hosts_file = ResolveHosts::Never;
        // Ask the servers in order (UDP, then TCP), not two at once.
        options.num_concurrent_reqs = 1;
        DnsResolver {
            resolver: builder.build(),
        }
    }
}

#[async_trait]
impl Resolve for DnsResolver {
    async fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        // A URL host is already absolute: resolve it as a fully qualified name.
        let fqdn = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let lookup = self
            .resolver
            .lookup_ip(fqdn)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(lookup.iter().collect())
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
