//! [`EgressClient`]: the HTTP and TCP client every outbound check uses. Each connection
//! resolves the host, checks every address against the policy, dials and checks the peer,
//! adds TLS for `https`, and sends one request; redirects are followed hop by hop through the
//! same path, and kept-alive connections (when on) are reused only after the same checks.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::{Host, Url};

use super::exchange::Use;
use super::pool::{Pool, PoolKey};
use super::{dial, exchange, redirect, resolve, tls};
use super::{
    Dial, DnsResolver, EgressError, EgressPolicy, Observer, Phase, PhaseInfo, Request, Resolve,
    Response, Stream, SystemResolver, TcpDialer,
};
use crate::config::EgressConfig;

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
            resolver: if config.nameservers.is_empty() {
                Arc::new(SystemResolver)
            } else {
                Arc::new(DnsResolver::new(&config.nameservers))
            },
            dialer: Arc::new(TcpDialer),
            tls: tls::default_tls_config(),
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
            let Some(next) = redirect::target(&request, &response)? else {
                return Ok(response);
            };
            redirects += 1;
            if redirects > self.max_redirects {
                return Err(EgressError::TooManyRedirects);
            }
            redirect::follow(&mut request, response.status, next);
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
        let resolved = resolve::addresses(self.resolver.as_ref(), host, port).await;
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
        let connected = dial::first(self.dialer.as_ref(), &self.policy, addresses, port).await;
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
        tls::secure(&self.tls, &origin, tcp, observer).await
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
        let response = exchange::single(stream, request).await;
        observer.end(
            Phase::Http,
            response
                .as_ref()
                .map(|response| PhaseInfo::Status(response.status.as_u16())),
        );
        response
    }

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
            let (result, back) =
                exchange::on_connection(idle.sender, idle.connection, request, Use::Reused).await;
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
        let stream = tls::secure(&self.tls, &origin, tcp, observer).await?;
        observer.begin(Phase::Http);
        let (result, back) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        {
            Ok((sender, connection)) => {
                exchange::on_connection(sender, connection, request, Use::Fresh).await
            }
            Err(e) => (Err((exchange::hyper_error(&e), false)), None),
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
pub(super) struct Origin {
    pub(super) https: bool,
    pub(super) host: Host<String>,
    pub(super) port: u16,
}

impl Origin {
    pub(super) fn of(url: &Url) -> Result<Origin, EgressError> {
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
