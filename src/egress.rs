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
//! Denied by default: loopback, unspecified, RFC 1918, link-local, CGNAT, ULA, multicast,
//! broadcast, reserved and documentation ranges, and the cloud metadata addresses — also when
//! embedded in IPv6 (IPv4-mapped, IPv4-compatible, SIIT, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`), where the embedded IPv4 address is checked too. `egress.allow_private` opens
//! the private ranges (loopback, RFC 1918, link-local, CGNAT, ULA); `egress.allow` opens what
//! it lists, except that a metadata address opens only when listed as that exact address;
//! `egress.deny` always wins.
//!
//! Architecture invariant: errors here are fixed phrases. Nothing read from a peer (bodies,
//! headers, certificates) and no resolved address is ever put into an error message.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use catalogd_actors::FailureClass;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::config::EgressConfig;

/// Response bodies are read up to this many bytes; the rest is never read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why an address is denied. A bounded set of fixed names, safe to show to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    Loopback,
    Private,
    LinkLocal,
    SharedAddressSpace,
    UniqueLocal,
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
    Metadata,
    DenyList,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Loopback => "loopback address",
            DenyReason::Private => "private network address",
            DenyReason::LinkLocal => "link-local address",
            DenyReason::SharedAddressSpace => "shared address space (CGNAT)",
            DenyReason::UniqueLocal => "unique local address",
            DenyReason::Unspecified => "unspecified address",
            DenyReason::Multicast => "multicast address",
            DenyReason::Broadcast => "broadcast address",
            DenyReason::Documentation => "documentation range",
            DenyReason::Reserved => "reserved address",
            DenyReason::Metadata => "cloud metadata address",
            DenyReason::DenyList => "listed in egress.deny",
        }
    }

    /// The ranges `egress.allow_private` opens.
    fn is_private(self) -> bool {
        matches!(
            self,
            DenyReason::Loopback
                | DenyReason::Private
                | DenyReason::LinkLocal
                | DenyReason::SharedAddressSpace
                | DenyReason::UniqueLocal
        )
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cloud metadata and credential endpoints: AWS/GCP/Azure/OpenStack IMDS, AWS ECS task
/// credentials and EKS pod identity, Azure WireServer, Alibaba, Oracle, AWS IMDS over IPv6,
/// and GCP's IPv6 metadata server. Denied even with `allow_private`.
const METADATA: &[&str] = &[
    "169.254.169.254/32",
    "169.254.170.2/32",
    "169.254.170.23/32",
    "168.63.129.16/32",
    "100.100.100.200/32",
    "192.0.0.192/32",
    "fd00:ec2::254/128",
    "fd00:ec2::23/128",
    "fd20:ce::254/128",
];

/// Special-purpose ranges (IANA registries), most specific first.
const SPECIAL: &[(&str, DenyReason)] = &[
    ("0.0.0.0/8", DenyReason::Unspecified),
    ("127.0.0.0/8", DenyReason::Loopback),
    ("10.0.0.0/8", DenyReason::Private),
    ("172.16.0.0/12", DenyReason::Private),
    ("192.168.0.0/16", DenyReason::Private),
    ("169.254.0.0/16", DenyReason::LinkLocal),
    ("100.64.0.0/10", DenyReason::SharedAddressSpace),
    ("192.0.0.0/24", DenyReason::Reserved),
    ("192.0.2.0/24", DenyReason::Documentation),
    ("198.51.100.0/24", DenyReason::Documentation),
    ("203.0.113.0/24", DenyReason::Documentation),
    ("198.18.0.0/15", DenyReason::Reserved),
    ("192.88.99.0/24", DenyReason::Reserved),
    ("224.0.0.0/4", DenyReason::Multicast),
    ("255.255.255.255/32", DenyReason::Broadcast),
    ("240.0.0.0/4", DenyReason::Reserved),
    ("::/128", DenyReason::Unspecified),
    ("::1/128", DenyReason::Loopback),
    ("fe80::/10", DenyReason::LinkLocal),
    ("fec0::/10", DenyReason::UniqueLocal),
    ("fc00::/7", DenyReason::UniqueLocal),
    ("ff00::/8", DenyReason::Multicast),
    ("2001:db8::/32", DenyReason::Documentation),
    ("3fff::/20", DenyReason::Documentation),
    ("100::/64", DenyReason::Reserved),
    ("2001::/23", DenyReason::Reserved),
    ("64:ff9b:1::/48", DenyReason::Reserved),
    ("5f00::/16", DenyReason::Reserved),
];

struct Tables {
    metadata: Vec<IpNet>,
    special: Vec<(IpNet, DenyReason)>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| Tables {
    metadata: METADATA
        .iter()
        .map(|net| net.parse().expect("valid built-in CIDR"))
        .collect(),
    special: SPECIAL
        .iter()
        .map(|(net, reason)| (net.parse().expect("valid built-in CIDR"), *reason))
        .collect(),
});

/// Which addresses outbound checks may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    allow_private: bool,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl EgressPolicy {
    pub fn new(config: &EgressConfig) -> EgressPolicy {
        EgressPolicy {
            allow_private: config.allow_private,
            allow: config.allow.iter().map(IpNet::trunc).collect(),
            deny: config.deny.iter().map(IpNet::trunc).collect(),
        }
    }

    /// Whether `ip` may be connected to. An IPv6 address that embeds an IPv4 address is
    /// allowed only if the embedded address is allowed as well.
    pub fn check(&self, ip: IpAddr) -> Result<(), DenyReason> {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let forms = [Some(ip), embedded];
        let mut forms = forms.iter().flatten();
        if forms
            .clone()
            .any(|form| self.deny.iter().any(|net| net.contains(form)))
        {
            return Err(DenyReason::DenyList);
        }
        forms.try_for_each(|form| self.check_one(*form))
    }

    fn check_one(&self, ip: IpAddr) -> Result<(), DenyReason> {
        let Some(reason) = classify(ip) else {
            return Ok(());
        };
        let allowed = match reason {
            DenyReason::Metadata => self
                .allow
                .iter()
                .any(|net| net.prefix_len() == net.max_prefix_len() && net.addr() == ip),
            reason => {
                (self.allow_private && reason.is_private())
                    || self.allow.iter().any(|net| net.contains(&ip))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(reason)
        }
    }
}

/// The special-purpose category of `ip`, or `None` for an ordinary global address. IPv6
/// prefixes that embed an IPv4 address are `None` here: the embedded address decides.
fn classify(ip: IpAddr) -> Option<DenyReason> {
    let tables = &*TABLES;
    if tables.metadata.iter().any(|net| net.contains(&ip)) {
        return Some(DenyReason::Metadata);
    }
    if let Some((_, reason)) = tables.special.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(*reason);
    }
    match ip {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) if embedded_ipv4(v6).is_some() => None,
        // Outside 2000::/3 nothing is global unicast.
        IpAddr::V6(v6) if v6.segments()[0] & 0xe000 != 0x2000 => Some(DenyReason::Reserved),
        IpAddr::V6(_) => None,
    }
}

/// The IPv4 address embedded in an IPv4-mapped (`::ffff:a.b.c.d`), SIIT-translated
/// (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:aabb:ccdd::`) address.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // `::` and `::1` are themselves, not embeddings.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

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

/// Why an outbound call failed. Every message is a fixed phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("{0}")]
    InvalidUrl(&'static str),
    #[error("address denied by egress policy ({0})")]
    Denied(DenyReason),
    #[error("redirect to a scheme other than http or https refused")]
    RedirectScheme,
    #[error("{0}")]
    Dns(&'static str),
    #[error("{0}")]
    Connect(&'static str),
    #[error("connection timed out")]
    Timeout,
    #[error("{0}")]
    Tls(&'static str),
    #[error("{0}")]
    Protocol(&'static str),
    #[error("invalid HTTP response")]
    InvalidResponse,
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("redirect without a usable Location")]
    BadRedirect,
    #[error("{0}")]
    Internal(&'static str),
}

impl EgressError {
    pub fn failure_class(&self) -> FailureClass {
        match self {
            EgressError::InvalidUrl(_) | EgressError::Denied(_) | EgressError::RedirectScheme => {
                FailureClass::Config
            }
            EgressError::Dns(_) => FailureClass::Dns,
            EgressError::Connect(_) | EgressError::Protocol(_) => FailureClass::Connect,
            EgressError::Timeout => FailureClass::Timeout,
            EgressError::Tls(_) => FailureClass::Tls,
            EgressError::InvalidResponse
            | EgressError::TooManyRedirects
            | EgressError::BadRedirect => FailureClass::HttpStatus,
            EgressError::Internal(_) => FailureClass::Internal,
        }
    }
}

/// An outbound HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    /// Headers whose values are credentials must be marked sensitive
    /// ([`HeaderValue::set_sensitive`]): they are dropped on a redirect to another origin.
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub follow_redirects: bool,
}

impl Request {
    pub fn get(url: Url) -> Request {
        Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            follow_redirects: true,
        }
    }
}

/// A response with at most [`MAX_BODY_BYTES`] of its body. Its content is for evaluation
/// only, never for messages.
#[derive(Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was longer than what was read.
    pub truncated: bool,
    /// The URL that answered, after redirects.
    pub url: Url,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Upstream content stays out of debug output too.
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A connected byte stream, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The HTTP and TCP client every outbound check uses. Cheap to clone.
#[derive(Clone)]
pub struct EgressClient {
    policy: Arc<EgressPolicy>,
    resolver: Arc<dyn Resolve>,
    dialer: Arc<dyn Dial>,
    tls: Arc<rustls::ClientConfig>,
    max_redirects: u32,
    /// Idle connections for reuse; `None` unless `egress.keep_alive`.
    pool: Option<Arc<Pool>>,
}

impl fmt::Debug for EgressClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressClient")
            .field("policy", &self.policy)
            .field("max_redirects", &self.max_redirects)
            .field("keep_alive", &self.pool.is_some())
            .finish_non_exhaustive()
    }
}

impl EgressClient {
    pub fn new(config: &EgressConfig) -> EgressClient {
        EgressClient {
            policy: Arc::new(EgressPolicy::new(config)),
            resolver: Arc::new(SystemResolver),
            dialer: Arc::new(TcpDialer),
            tls: default_tls_config(),
            max_redirects: config.max_redirects,
            pool: config.keep_alive.then(|| {
                Arc::new(Pool::new(Duration::from_secs(
                    config.keep_alive_idle_seconds.into(),
                )))
            }),
        }
    }

    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> EgressClient {
        self.resolver = resolver;
        self
    }

    pub fn with_dialer(mut self, dialer: Arc<dyn Dial>) -> EgressClient {
        self.dialer = dialer;
        self
    }

    /// Replaces the TLS configuration (for example to trust a private CA).
    pub fn with_tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> EgressClient {
        self.tls = tls;
        self
    }

    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// Sends `request`, following redirects (each hop through the policy again) up to
    /// `egress.max_redirects`.
    pub async fn send(
        &self,
        mut request: Request,
        observer: &dyn Observer,
    ) -> Result<Response, EgressError> {
        let mut redirects = 0;
        loop {
            let response = self.send_once(&request, observer).await?;
            let Some(next) = redirect_target(&request, &response)? else {
                return Ok(response);
            };
            redirects += 1;
            if redirects > self.max_redirects {
                return Err(EgressError::TooManyRedirects);
            }
            follow(&mut request, response.status, next);
        }
    }

    /// Opens a TCP connection to `host:port` through the policy.
    pub async fn connect_tcp(
        &self,
        host: &Host<String>,
        port: u16,
        observer: &dyn Observer,
    ) -> Result<TcpStream, EgressError> {
        let addresses = self.allowed_addresses(host, port, observer).await?;
        Ok(self.dial(&addresses, port, observer).await?.0)
    }

    /// The addresses `host` resolves to, every one of them allowed by the policy (or an
    /// error): the check every connection, new or reused, passes first.
    async fn allowed_addresses(
        &self,
        host: &Host<String>,
        port: u16,
        observer: &dyn Observer,
    ) -> Result<Vec<IpAddr>, EgressError> {
        observer.begin(Phase::Dns);
        let resolved = self.resolve(host, port).await;
        observer.end(Phase::Dns, resolved.as_ref().map(|(_, info)| *info));
        let (addresses, _) = resolved?;

        observer.begin(Phase::Policy);
        let allowed = addresses
            .iter()
            .try_for_each(|ip| self.policy.check(*ip).map_err(EgressError::Denied));
        observer.end(Phase::Policy, allowed.as_ref().map(|_| PhaseInfo::Allowed));
        allowed?;
        Ok(addresses)
    }

    async fn dial(
        &self,
        addresses: &[IpAddr],
        port: u16,
        observer: &dyn Observer,
    ) -> Result<(TcpStream, SocketAddr), EgressError> {
        observer.begin(Phase::Tcp);
        let connected = self.dial_first(addresses, port).await;
        observer.end(Phase::Tcp, connected.as_ref().map(|_| PhaseInfo::Connected));
        connected
    }

    /// Opens a connection to the host of `url`, with TLS for `https`.
    pub async fn connect(
        &self,
        url: &Url,
        observer: &dyn Observer,
    ) -> Result<Box<dyn Stream>, EgressError> {
        let origin = Origin::of(url)?;
        let tcp = self
            .connect_tcp(&origin.host, origin.port, observer)
            .await?;
        self.secure(&origin, tcp, observer).await
    }

    /// TLS on `tcp` for an `https` origin; the plain stream otherwise.
    async fn secure(
        &self,
        origin: &Origin,
        tcp: TcpStream,
        observer: &dyn Observer,
    ) -> Result<Box<dyn Stream>, EgressError> {
        let (https, host) = (origin.https, &origin.host);
        if !https {
            return Ok(Box::new(tcp));
        }
        observer.begin(Phase::Tls);
        let tls = self.handshake(host, tcp).await;
        observer.end(
            Phase::Tls,
            tls.as_ref().map(|(_, protocol)| PhaseInfo::Handshake {
                protocol: protocol.unwrap_or("TLS"),
            }),
        );
        Ok(tls?.0)
    }

    async fn resolve(
        &self,
        host: &Host<String>,
        port: u16,
    ) -> Result<(Vec<IpAddr>, PhaseInfo), EgressError> {
        match host {
            Host::Ipv4(ip) => Ok((vec![IpAddr::V4(*ip)], PhaseInfo::AddressLiteral)),
            Host::Ipv6(ip) => Ok((vec![IpAddr::V6(*ip)], PhaseInfo::AddressLiteral)),
            Host::Domain(name) if name.is_empty() => Err(EgressError::InvalidUrl("empty host")),
            Host::Domain(name) => {
                let addresses = self
                    .resolver
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

    /// Connects to the first address that accepts. Every address was checked by the caller;
    /// the connected peer is checked once more, so what was checked is what was reached.
    async fn dial_first(
        &self,
        addresses: &[IpAddr],
        port: u16,
    ) -> Result<(TcpStream, SocketAddr), EgressError> {
        let mut last = EgressError::Connect("connection failed");
        for ip in addresses {
            let address = SocketAddr::new(*ip, port);
            match self.dialer.dial(address).await {
                Ok(stream) => {
                    let peer = stream
                        .peer_addr()
                        .map_err(|_| EgressError::Connect("connection failed"))?;
                    self.policy.check(peer.ip()).map_err(EgressError::Denied)?;
                    // Latency of small health requests matters more than batching.
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, address));
                }
                Err(e) => last = connect_error(&e),
            }
        }
        Err(last)
    }

    async fn handshake(
        &self,
        host: &Host<String>,
        tcp: TcpStream,
    ) -> Result<(Box<dyn Stream>, Option<&'static str>), EgressError> {
        use rustls::pki_types::ServerName;
        let server_name = match host {
            Host::Domain(name) => ServerName::try_from(name.clone())
                .map_err(|_| EgressError::InvalidUrl("host is not a valid TLS server name"))?,
            Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
            Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let stream = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| tls_error(&e))?;
        let protocol = stream
            .get_ref()
            .1
            .protocol_version()
            .map(|version| match version {
                rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
                rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
                _ => "TLS",
            });
        Ok((Box::new(stream), protocol))
    }

    /// One request: on a kept-alive connection when the pool is on and the observer allows
    /// it, otherwise on one new connection, which is closed afterwards.
    async fn send_once(
        &self,
        request: &Request,
        observer: &dyn Observer,
    ) -> Result<Response, EgressError> {
        if let Some(pool) = &self.pool {
            if observer.reuse_connections() {
                return self.send_pooled(pool, request, observer).await;
            }
        }
        let stream = self.connect(&request.url, observer).await?;
        observer.begin(Phase::Http);
        let response = exchange(stream, request).await;
        observer.end(
            Phase::Http,
            response
                .as_ref()
                .map(|response| PhaseInfo::Status(response.status.as_u16())),
        );
        response
    }
}

impl EgressClient {
    /// One request through the pool. The name is resolved and every address checked by the
    /// policy as for a new connection; then an idle connection to one of those addresses is
    /// used if there is one. A reused connection that fails before any response byte (the
    /// server closed it while idle) is replaced by a new one, once, for GET and HEAD only.
    async fn send_pooled(
        &self,
        pool: &Pool,
        request: &Request,
        observer: &dyn Observer,
    ) -> Result<Response, EgressError> {
        let origin = Origin::of(&request.url)?;
        let addresses = self
            .allowed_addresses(&origin.host, origin.port, observer)
            .await?;
        let idempotent = request.method == Method::GET || request.method == Method::HEAD;
        let reused = addresses.iter().find_map(|ip| {
            let key = PoolKey::new(&origin, SocketAddr::new(*ip, origin.port));
            pool.take(&key).map(|idle| (key, idle))
        });
        if let Some((key, idle)) = reused {
            observer.begin(Phase::Http);
            let (result, back) = exchange_on(idle.sender, idle.connection, request, true).await;
            observer.end(
                Phase::Http,
                result.as_ref().map(status_info).map_err(|(error, _)| error),
            );
            match result {
                Ok(response) => {
                    if let Some(back) = back {
                        pool.put(key, back);
                    }
                    return Ok(response);
                }
                Err((_, false)) if idempotent => {}
                Err((error, _)) => return Err(error),
            }
        }
        let (tcp, address) = self.dial(&addresses, origin.port, observer).await?;
        let stream = self.secure(&origin, tcp, observer).await?;
        observer.begin(Phase::Http);
        let (result, back) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        {
            Ok((sender, connection)) => exchange_on(sender, connection, request, false).await,
            Err(e) => (Err((hyper_error(&e), false)), None),
        };
        let result = result.map_err(|(error, _)| error);
        observer.end(Phase::Http, result.as_ref().map(status_info));
        if let (Ok(_), Some(back)) = (&result, back) {
            pool.put(PoolKey::new(&origin, address), back);
        }
        result
    }
}

fn status_info(response: &Response) -> PhaseInfo {
    PhaseInfo::Status(response.status.as_u16())
}

/// Scheme, host and port of a URL, validated for an outbound connection.
struct Origin {
    https: bool,
    host: Host<String>,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Result<Origin, EgressError> {
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(EgressError::InvalidUrl(
                    "only http and https URLs are allowed",
                ))
            }
        };
        let host = url
            .host()
            .ok_or(EgressError::InvalidUrl("the URL has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or(EgressError::InvalidUrl("the URL has no port"))?;
        Ok(Origin { https, host, port })
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type Connection = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, Full<Bytes>>;

/// An idle HTTP/1.1 connection: nothing polls it while it waits, so nothing it does can
/// outlive a check; a server's close is noticed when it is next used.
struct Idle {
    sender: Sender,
    connection: Connection,
    since: Instant,
}

/// A pooled connection is found again only for the same scheme, host name (the TLS server
/// name and the `Host` a later request would send) and dialled address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    https: bool,
    host: Host<String>,
    address: SocketAddr,
}

impl PoolKey {
    fn new(origin: &Origin, address: SocketAddr) -> PoolKey {
        PoolKey {
            https: origin.https,
            host: origin.host.clone(),
            address,
        }
    }
}

/// Idle connections kept for one address at most: a check holds one connection at a time,
/// so more than a few per address only happens under bursts.
const MAX_IDLE_PER_KEY: usize = 8;

/// Idle connections by [`PoolKey`], each dropped (closed) after `idle` unused.
struct Pool {
    idle: Duration,
    state: std::sync::Mutex<PoolState>,
}

struct PoolState {
    connections: HashMap<PoolKey, Vec<Idle>>,
    swept: Instant,
}

impl Pool {
    fn new(idle: Duration) -> Pool {
        Pool {
            idle,
            state: std::sync::Mutex::new(PoolState {
                connections: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// The most recently used live idle connection for `key`.
    fn take(&self, key: &PoolKey) -> Option<Idle> {
        let mut expired = Vec::new();
        let found = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.sweep(&mut state, &mut expired);
            let list = state.connections.get_mut(key)?;
            let mut found = None;
            while let Some(idle) = list.pop() {
                if idle.since.elapsed() < self.idle && !idle.sender.is_closed() {
                    found = Some(idle);
                    break;
                }
                expired.push(idle);
            }
            found
        };
        // Sockets are closed outside the lock.
        drop(expired);
        found
    }

    fn put(&self, key: PoolKey, idle: Idle) {
        let mut expired = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep(&mut state, &mut expired);
        let list = state.connections.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(idle);
        } else {
            expired.push(idle);
        }
        drop(state);
        drop(expired);
    }

    /// Every so often, closes what has been idle too long everywhere, so that targets no
    /// longer checked do not keep sockets open.
    fn sweep(&self, state: &mut PoolState, expired: &mut Vec<Idle>) {
        let every = (self.idle / 2).max(Duration::from_secs(1));
        if state.swept.elapsed() < every {
            return;
        }
        state.swept = Instant::now();
        let bound = self.idle;
        state.connections.retain(|_, list| {
            let (keep, old): (Vec<Idle>, Vec<Idle>) = std::mem::take(list)
                .into_iter()
                .partition(|idle| idle.since.elapsed() < bound);
            expired.extend(old);
            *list = keep;
            !list.is_empty()
        });
    }
}

/// Sends `request` on an HTTP/1.1 connection, driving the connection here (not in a spawned
/// task) so that dropping this future closes the socket. Returns the result — an error with
/// whether a response head had arrived — and the connection when it can serve another
/// request (body read to its end, not closed by either side).
async fn exchange_on(
    mut sender: Sender,
    mut connection: Connection,
    request: &Request,
    reused: bool,
) -> (Result<Response, (EgressError, bool)>, Option<Idle>) {
    let http_request = match build_request(request) {
        Ok(http_request) => http_request,
        Err(e) => return (Err((e, false)), None),
    };
    let head = std::sync::atomic::AtomicBool::new(false);
    let result = {
        let work = async {
            // A fresh connection takes the request at once (even if the server answered
            // before being asked); a reused one must first be seen to be still open.
            if reused {
                sender.ready().await.map_err(|e| hyper_error(&e))?;
            }
            let response = sender
                .send_request(http_request)
                .await
                .map_err(|e| hyper_error(&e))?;
            head.store(true, std::sync::atomic::Ordering::Relaxed);
            let (parts, body) = response.into_parts();
            let (body, truncated) = read_bounded(body, MAX_BODY_BYTES)
                .await
                .map_err(|e| hyper_error(&e))?;
            Ok((
                Response {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                    truncated,
                    url: request.url.clone(),
                },
                truncated,
            ))
        };
        tokio::pin!(work);
        let early = tokio::select! {
            biased;
            result = &mut work => Some(result),
            ended = &mut connection => match ended {
                Ok(()) => None,
                Err(e) => Some(Err(hyper_error(&e))),
            },
        };
        match early {
            Some(result) => result,
            None => {
                // The connection ended cleanly: what it delivered is still read, and with it
                // gone (dropped here) anything it did not deliver fails at once.
                drop(connection);
                return (
                    work.await
                        .map(|(response, _)| response)
                        .map_err(|e| (e, head.load(std::sync::atomic::Ordering::Relaxed))),
                    None,
                );
            }
        }
    };
    match result {
        Ok((response, truncated)) => {
            // One more poll lets the connection take in what the response left (a close,
            // `Connection: close`): only an open, idle connection goes back.
            let settled = futures_util::FutureExt::now_or_never(&mut connection);
            let reusable = !truncated && settled.is_none() && !sender.is_closed();
            let back = reusable.then(|| Idle {
                sender,
                connection,
                since: Instant::now(),
            });
            (Ok(response), back)
        }
        Err(e) => (
            Err((e, head.load(std::sync::atomic::Ordering::Relaxed))),
            None,
        ),
    }
}

/// Sends `request` on `stream` with HTTP/1.1 and reads the response with a bounded body; the
/// connection is closed afterwards.
async fn exchange(stream: Box<dyn Stream>, request: &Request) -> Result<Response, EgressError> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_error(&e))?;
    exchange_on(sender, connection, request, false)
        .await
        .0
        .map_err(|(error, _)| error)
}

fn build_request(request: &Request) -> Result<http::Request<Full<Bytes>>, EgressError> {
    let url = &request.url;
    let host = url
        .host_str()
        .ok_or(EgressError::InvalidUrl("the URL has no host"))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut builder = http::Request::builder()
        .method(request.method.clone())
        .uri(if target.is_empty() { "/" } else { target });
    let headers = builder
        .headers_mut()
        .ok_or(EgressError::Internal("request could not be built"))?;
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&authority).map_err(|_| EgressError::InvalidUrl("invalid host"))?,
    );
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("catalogd/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in &request.headers {
        headers.insert(name, value.clone());
    }
    builder
        .body(Full::new(request.body.clone().unwrap_or_default()))
        .map_err(|_| EgressError::Internal("request could not be built"))
}

async fn read_bounded(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<(Bytes, bool), hyper::Error> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = limit - buffer.len();
        if data.len() > room {
            buffer.extend_from_slice(&data[..room]);
            return Ok((buffer.freeze(), true));
        }
        buffer.extend_from_slice(&data);
    }
    Ok((buffer.freeze(), false))
}

/// The URL a redirect response points to, or `None` when `response` is final.
fn redirect_target(request: &Request, response: &Response) -> Result<Option<Url>, EgressError> {
    let redirect = matches!(response.status.as_u16(), 301 | 302 | 303 | 307 | 308);
    if !request.follow_redirects || !redirect {
        return Ok(None);
    }
    let location = response
        .headers
        .get(header::LOCATION)
        .ok_or(EgressError::BadRedirect)?
        .to_str()
        .map_err(|_| EgressError::BadRedirect)?;
    let next = request
        .url
        .join(location)
        .map_err(|_| EgressError::BadRedirect)?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(EgressError::RedirectScheme);
    }
    Ok(Some(next))
}

/// Turns `request` into the request for the next hop: credentials stay with their origin,
/// and 303 (or 301/302 after a POST) becomes a GET without a body, as browsers do.
fn follow(request: &mut Request, status: StatusCode, next: Url) {
    if next.origin() != request.url.origin() {
        let credentials: Vec<_> = request
            .headers
            .iter()
            .filter(|(name, value)| {
                value.is_sensitive()
                    || **name == header::AUTHORIZATION
                    || **name == header::COOKIE
                    || **name == header::PROXY_AUTHORIZATION
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in credentials {
            request.headers.remove(name);
        }
    }
    let to_get = match status.as_u16() {
        303 => request.method != Method::HEAD,
        301 | 302 => request.method == Method::POST,
        _ => false,
    };
    if to_get {
        request.method = Method::GET;
        request.body = None;
        request.headers.remove(header::CONTENT_TYPE);
        request.headers.remove(header::CONTENT_LENGTH);
    }
    request.url = next;
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

fn tls_error(e: &io::Error) -> EgressError {
    use rustls::{CertificateError, Error};
    let Some(error) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                EgressError::Tls("connection closed during the TLS handshake")
            }
            io::ErrorKind::ConnectionReset => {
                EgressError::Tls("connection reset during the TLS handshake")
            }
            _ => EgressError::Tls("TLS handshake failed"),
        };
    };
    EgressError::Tls(match error {
        Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "certificate not trusted"
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "certificate does not match the host name"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not yet valid"
            }
            CertificateError::Revoked => "certificate revoked",
            _ => "certificate rejected",
        },
        Error::AlertReceived(_) => "handshake refused by the server",
        Error::NoApplicationProtocol => "no common application protocol",
        Error::PeerIncompatible(_) => "no common TLS version or cipher suite",
        _ => "TLS handshake failed",
    })
}

fn hyper_error(e: &hyper::Error) -> EgressError {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        EgressError::InvalidResponse
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        EgressError::Protocol("connection closed before the response was complete")
    } else if e.is_timeout() {
        EgressError::Timeout
    } else {
        EgressError::Protocol("connection failed during the HTTP exchange")
    }
}

/// Trusted roots: the platform's store plus the Mozilla roots, loaded once.
fn default_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(native_roots = added, "TLS trust store loaded");
        Arc::new(tls_config(roots))
    });
    CONFIG.clone()
}

/// A client configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`) trusting `roots`.
pub fn tls_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_private: bool, allow: &[&str], deny: &[&str]) -> EgressPolicy {
        EgressPolicy::new(&EgressConfig {
            allow_private,
            allow: allow.iter().map(|n| n.parse().unwrap()).collect(),
            deny: deny.iter().map(|n| n.parse().unwrap()).collect(),
            ..EgressConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_special_ranges_and_their_embeddings() {
        let p = policy(false, &[], &[]);
        for (address, reason) in [
            ("127.0.0.1", DenyReason::Loopback),
            ("127.255.0.9", DenyReason::Loopback),
            ("0.0.0.0", DenyReason::Unspecified),
            ("10.1.2.3", DenyReason::Private),
            ("172.31.255.255", DenyReason::Private),
            ("192.168.0.1", DenyReason::Private),
            ("169.254.1.1", DenyReason::LinkLocal),
            ("100.64.0.1", DenyReason::SharedAddressSpace),
            ("224.0.0.251", DenyReason::Multicast),
            ("255.255.255.255", DenyReason::Broadcast),
            ("240.0.0.1", DenyReason::Reserved),
            ("192.0.2.1", DenyReason::Documentation),
            ("169.254.169.254", DenyReason::Metadata),
            ("100.100.100.200", DenyReason::Metadata),
            ("192.0.0.192", DenyReason::Metadata),
            ("::1", DenyReason::Loopback),
            ("::", DenyReason::Unspecified),
            ("fe80::1", DenyReason::LinkLocal),
            ("fd12::1", DenyReason::UniqueLocal),
            ("fd00:ec2::254", DenyReason::Metadata),
            ("ff02::1", DenyReason::Multicast),
            ("2001:db8::1", DenyReason::Documentation),
            ("::ffff:127.0.0.1", DenyReason::Loopback),
            ("::ffff:0:a00:1", DenyReason::Private),
            ("::127.0.0.1", DenyReason::Loopback),
            ("::ffff:169.254.169.254", DenyReason::Metadata),
            ("64:ff9b::a9fe:a9fe", DenyReason::Metadata),
            ("64:ff9b::7f00:1", DenyReason::Loopback),
            ("2002:7f00:1::1", DenyReason::Loopback),
            ("2002:c0a8:101::", DenyReason::Private),
            ("2001::1", DenyReason::Reserved),
            ("4000::1", DenyReason::Reserved),
        ] {
            assert_eq!(p.check(ip(address)), Err(reason), "{address}");
        }
        for address in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(p.check(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn allow_private_opens_private_ranges_but_not_metadata() {
        let p = policy(true, &[], &[]);
        for address in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "fd12::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(p.check(ip(address)), Ok(()), "{address}");
        }
        for address in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            assert_eq!(p.check(ip(address)), Err(DenyReason::Metadata), "{address}");
        }
        assert_eq!(p.check(ip("0.0.0.0")), Err(DenyReason::Unspecified));
        assert_eq!(p.check(ip("224.0.0.1")), Err(DenyReason::Multicast));
    }

    #[test]
    fn allow_lists_open_what_they_name_and_deny_lists_win() {
        let p = policy(false, &["127.0.0.2/32", "0.0.0.0/0"], &[]);
        assert_eq!(p.check(ip("127.0.0.2")), Ok(()));
        assert_eq!(p.check(ip("10.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("169.254.169.254")), Err(DenyReason::Metadata));
        let p = policy(false, &["169.254.169.254/32"], &[]);
        assert_eq!(p.check(ip("169.254.169.254")), Ok(()));
        let p = policy(true, &[], &["127.0.0.0/8", "203.0.114.0/24"]);
        assert_eq!(p.check(ip("127.0.0.1")), Err(DenyReason::DenyList));
        assert_eq!(p.check(ip("::ffff:127.0.0.1")), Err(DenyReason::DenyList));
        assert_eq!(p.check(ip("203.0.114.7")), Err(DenyReason::DenyList));
    }
}
