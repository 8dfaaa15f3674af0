//! A switchable HTTP server on loopback: any router behind a [`Control`] that a test flips at
//! run time into failing (a status with headers), slow (a latency) or hanging (accepted, never
//! answered), and that counts and records every request. [`Target`] is the plain health-check
//! target (200 on every path); the vendor fakes ([`crate::fakes`]) are routers behind it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Text that switched-to-failing servers put in error bodies; nothing catalogd emits may
/// contain it.
pub const UPSTREAM_BODY_MARKER: &str = "UPSTREAM-BODY-d41d8cd98f";

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

/// A status with the headers every request gets while a server is failing.
type Failing = (u16, Vec<(String, String)>);

/// Shared switches of one server.
#[derive(Default)]
pub struct Control {
    requests: AtomicUsize,
    hang: AtomicBool,
    fail: Mutex<Option<Failing>>,
    latency: Mutex<Duration>,
    recorded: Mutex<Vec<Recorded>>,
}

impl Control {
    /// Every request gets `status` with `headers` and a body that must never be echoed.
    pub fn fail_with(&self, status: u16, headers: &[(&str, &str)]) {
        *self.fail.lock().unwrap() = Some((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    /// Every request is accepted and never answered.
    pub fn hang(&self) {
        self.hang.store(true, Ordering::SeqCst);
    }

    /// Every answer waits `latency` first.
    pub fn delay(&self, latency: Duration) {
        *self.latency.lock().unwrap() = latency;
    }

    /// Answers again, at once, as the router says.
    pub fn heal(&self) {
        self.hang.store(false, Ordering::SeqCst);
        *self.fail.lock().unwrap() = None;
        *self.latency.lock().unwrap() = Duration::ZERO;
    }
}

async fn control_layer(
    State(control): State<Arc<Control>>,
    request: Request,
    next: Next,
) -> Response {
    control.requests.fetch_add(1, Ordering::SeqCst);
    control.recorded.lock().unwrap().push(Recorded {
        method: request.method().to_string(),
        path_and_query: request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: request.headers().clone(),
    });
    if control.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let latency = *control.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let failure = control.fail.lock().unwrap().clone();
    if let Some((status, headers)) = failure {
        let mut response = (
            StatusCode::from_u16(status).unwrap(),
            format!("{{\"message\":\"{UPSTREAM_BODY_MARKER} failure\"}}"),
        )
            .into_response();
        for (name, value) in headers {
            response.headers_mut().insert(
                HeaderName::try_from(name).unwrap(),
                HeaderValue::try_from(value).unwrap(),
            );
        }
        return response;
    }
    next.run(request).await
}

/// A running server; it stops when dropped (or with the test's runtime).
pub struct Server {
    pub addr: SocketAddr,
    pub control: Arc<Control>,
    task: JoinHandle<()>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.control.requests.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.control.recorded.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` behind a fresh [`Control`] on a free port of 127.0.0.1.
pub async fn serve(router: Router) -> Server {
    serve_on(IpAddr::V4(Ipv4Addr::LOCALHOST), router).await
}

/// Serves `router` behind a fresh [`Control`] on a free port of `ip`.
pub async fn serve_on(ip: IpAddr, router: Router) -> Server {
    let control = Arc::new(Control::default());
    let router = router.layer(middleware::from_fn_with_state(
        control.clone(),
        control_layer,
    ));
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server {
        addr,
        control,
        task,
    }
}

/// What a [`Target`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 on every path.
    Healthy,
    /// 500 on every path.
    Failing,
    /// Accepts and never answers.
    Hanging,
}

/// A health-check target on loopback that a test flips between healthy, failing (HTTP 500)
/// and hanging, and that counts the requests it receives.
pub struct Target {
    pub url: String,
    server: Server,
}

impl Target {
    pub async fn start() -> Target {
        let server = serve(Router::new().fallback(any(|| async { StatusCode::OK }))).await;
        Target {
            url: server.url(),
            server,
        }
    }

    pub fn set(&self, mode: Mode) {
        let control = &self.server.control;
        control.heal();
        match mode {
            Mode::Healthy => {}
            Mode::Failing => control.fail_with(500, &[]),
            Mode::Hanging => control.hang(),
        }
    }

    /// Every answer waits `latency` first (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.server.control.delay(latency);
    }

    pub fn requests(&self) -> usize {
        self.server.requests()
    }

    /// The credential headers received so far (Authorization, PRIVATE-TOKEN).
    pub fn credentials(&self) -> Vec<String> {
        self.server
            .recorded()
            .iter()
            .flat_map(|request| {
                ["authorization", "private-token"]
                    .into_iter()
                    .filter_map(|name| {
                        let value = request.headers.get(name)?.to_str().ok()?;
                        Some(value.to_owned())
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_latency_and_hanging_switch_at_run_time() {
        let target = Target::start().await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let get = || client.get(format!("{}/anything", target.url)).send();
        assert_eq!(get().await.unwrap().status(), 200);
        target.set(Mode::Failing);
        assert_eq!(get().await.unwrap().status(), 500);
        target.set(Mode::Hanging);
        assert!(get().await.unwrap_err().is_timeout());
        target.set(Mode::Healthy);
        target.set_latency(Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert_eq!(get().await.unwrap().status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(target.requests(), 4);
    }
}
