//! One HTTP/1.1 exchange on one connection: the [`Request`] and [`Response`] types, the
//! request as sent (our `Host` and `User-Agent`), the body read up to [`MAX_BODY_BYTES`],
//! whether the connection may serve another request, and HTTP failures in fixed phrases.

use std::fmt;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use url::Url;

use super::pool::Idle;
use super::{EgressError, Stream};

/// Response bodies are read up to this many bytes; the rest is never read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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

/// The sending half of an HTTP/1.1 connection.
pub(super) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
/// The connection half, driven by whoever sends on it (never a spawned task).
pub(super) type Connection =
    hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, Full<Bytes>>;

/// How one exchange uses its connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Use {
    /// A new connection for this request alone. The request says `Connection: close` (RFC 9112
    /// §9.6), so the server closes first and the TIME_WAIT is the server's: a checker that
    /// closed first would hold one socket per check for a minute (a million at 16.7k checks/s)
    /// and run out of ports to one address at about 470 new connections a second.
    Once,
    /// A new connection that may go back to the pool.
    Fresh,
    /// An idle connection from the pool.
    Reused,
}

/// Sends `request` on an HTTP/1.1 connection, driving the connection here (not in a spawned
/// task) so that dropping this future closes the socket. Returns the result — an error with
/// whether a response head had arrived — and the connection when it can serve another
/// request (body read to its end, not closed by either side).
pub(super) async fn on_connection(
    mut sender: Sender,
    mut connection: Connection,
    request: &Request,
    usage: Use,
) -> (Result<Response, (EgressError, bool)>, Option<Idle>) {
    let http_request = match build_request(request, usage) {
        Ok(http_request) => http_request,
        Err(e) => return (Err((e, false)), None),
    };
    let head = std::sync::atomic::AtomicBool::new(false);
    let result = {
        let work = async {
            // A fresh connection takes the request at once (even if the server answered
            // before being asked); a reused one must first be seen to be still open.
            if usage == Use::Reused {
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
pub(super) async fn single(
    stream: Box<dyn Stream>,
    request: &Request,
) -> Result<Response, EgressError> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_error(&e))?;
    on_connection(sender, connection, request, Use::Once)
        .await
        .0
        .map_err(|(error, _)| error)
}

fn build_request(request: &Request, usage: Use) -> Result<http::Request<Full<Bytes>>, EgressError> {
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
    if usage == Use::Once {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
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

pub(super) fn hyper_error(e: &hyper::Error) -> EgressError {
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
