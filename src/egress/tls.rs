//! TLS: the client configuration (platform and Mozilla roots, or a caller's), the handshake on
//! an allowed TCP connection for `https`, and handshake failures in fixed phrases.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Host;

use super::client::Origin;
use super::{EgressError, Observer, Phase, PhaseInfo};

/// A connected byte stream, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// TLS on `tcp` for an `https` origin; the plain stream otherwise.
pub(super) async fn secure(
    config: &Arc<rustls::ClientConfig>,
    origin: &Origin,
    tcp: TcpStream,
    observer: &dyn Observer,
) -> Result<Box<dyn Stream>, EgressError> {
    let (https, host) = (origin.https, &origin.host);
    if !https {
        return Ok(Box::new(tcp));
    }
    observer.begin(Phase::Tls);
    let tls = handshake(config, host, tcp).await;
    observer.end(
        Phase::Tls,
        tls.as_ref().map(|(_, protocol)| PhaseInfo::Handshake {
            protocol: protocol.unwrap_or("TLS"),
        }),
    );
    Ok(tls?.0)
}

async fn handshake(
    config: &Arc<rustls::ClientConfig>,
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
    let connector = tokio_rustls::TlsConnector::from(config.clone());
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

/// Trusted roots: the platform's store plus the Mozilla roots, loaded once.
pub(super) fn default_tls_config() -> Arc<rustls::ClientConfig> {
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
