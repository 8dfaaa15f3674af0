//! The `tcp` connector: healthy when a TCP connection to `configuration.address`
//! (`host:port`, `[v6]:port`) opens. The connection goes through the egress policy like any
//! other, and the host is parsed by the WHATWG URL parser, so alternate IPv4 encodings are
//! normalized before the policy sees them.

use async_trait::async_trait;
use serde_json::{Map, Value};
use url::{Host, Url};

use super::{Connector, Failure, Session, Verdict};

#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

#[async_trait]
impl Connector for TcpConnector {
    async fn check_health(&self, session: &Session<'_>) -> Verdict {
        connect(session).await.into()
    }

    async fn test_connection(&self, session: &Session<'_>) -> Verdict {
        // The egress client reports the dns and tcp stages itself.
        connect(session).await.into()
    }
}

async fn connect(session: &Session<'_>) -> Result<(), Failure> {
    let (host, port) = address(&session.target.configuration)?;
    let stream = session
        .context
        .egress
        .connect_tcp(&host, port, session.diagnostics)
        .await?;
    drop(stream);
    Ok(())
}

/// The host of `configuration.address`, normalized, for the offline allowlist.
pub fn address_host(configuration: &Map<String, Value>) -> Option<String> {
    address(configuration)
        .ok()
        .map(|(host, _)| host.to_string())
}

fn address(configuration: &Map<String, Value>) -> Result<(Host<String>, u16), Failure> {
    let invalid = || Failure::config("configuration.address must be host:port");
    let raw = configuration
        .get("address")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let (host, port) = raw.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(invalid)?;
    if host.is_empty()
        || host.contains(['@', '/', '?', '#', '\\'])
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let url = Url::parse(&format!("http://{host}/")).map_err(|_| invalid())?;
    let host = url.host().ok_or_else(invalid)?.to_owned();
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(address: &str) -> Result<String, Failure> {
        let configuration = json!({ "address": address });
        address_of(configuration.as_object().unwrap())
    }

    fn address_of(configuration: &Map<String, Value>) -> Result<String, Failure> {
        address(configuration).map(|(host, port)| format!("{host}:{port}"))
    }

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(parse("db.example.com:5432").unwrap(), "db.example.com:5432");
        assert_eq!(parse("2130706433:22").unwrap(), "127.0.0.1:22");
        assert_eq!(parse("0x7f.1:22").unwrap(), "127.0.0.1:22");
        assert_eq!(
            parse("[::ffff:127.0.0.1]:22").unwrap(),
            "[::ffff:7f00:1]:22"
        );
        for bad in [
            "nohost", ":22", "h:0", "h:99999", "u@h:22", "h/x:22", "[::1:22",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
