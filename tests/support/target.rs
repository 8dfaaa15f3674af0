//! A health-check target on loopback that a test flips between healthy, failing (HTTP 500)
//! and hanging, and that counts the requests it receives.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Healthy = 0,
    Failing = 1,
    Hanging = 2,
}

#[derive(Default)]
struct Shared {
    mode: AtomicU8,
    requests: AtomicU64,
    /// Every Authorization and PRIVATE-TOKEN header value received.
    credentials: Mutex<Vec<String>>,
}

/// A running target; stops when dropped.
pub struct Target {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Target {
    pub async fn start() -> Target {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .fallback(any(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Target {
            url,
            shared,
            server,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The credential headers received so far (Authorization, PRIVATE-TOKEN).
    pub fn credentials(&self) -> Vec<String> {
        self.shared.credentials.lock().unwrap().clone()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> StatusCode {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    for name in ["authorization", "private-token"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            shared.credentials.lock().unwrap().push(value.to_owned());
        }
    }
    match shared.mode.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        1 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}
