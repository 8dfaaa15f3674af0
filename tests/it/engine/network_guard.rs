//! The network guard (DESIGN §10) through the real daemon path: a fleet of 40 loopback HTTP
//! targets, all healthy, then half of them made unreachable at once (their listeners closed,
//! so connects are refused: class `connect`).
//!
//! Half the fleet failing is a ratio of about 0.5, right at the default threshold, which the
//! window would reach only once it lies wholly in the outage, give or take a check; these
//! tests set `monitor.network_guard_ratio = 0.4`, so half the fleet down is clearly impaired
//! (and restored below 0.2) well before the integrations' own thresholds. The window is 5 s (about 200 checks at a 1 s interval) and the
//! thresholds 7/10, so the guard sees the outage (at about 4 s) before any integration's
//! seventh failure would degrade it.
//!
//! - A hold longer than the test: `catalogd_network_impaired` is 1, one
//!   `_system.network_impaired` event, no integration transition (statuses stay active, no
//!   `unhealthy` event) while the targets stay down for more than `failed_after` checks;
//!   restored: one `_system.network_restored` event, the gauge 0, still no transition.
//! - A hold of 3 s: the targets stay down beyond it, and the transitions go through
//!   (`unhealthy` events for exactly the unreachable half).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::events_app;
use super::lifecycle::post;
use crate::helpers::{Backend, TestApp};
use catalogd_testkit::{eventually, NatsServer};

const FLEET: usize = 40;

/// Every port a [`Switchable`] in this process has taken (or tried), never released.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// An HTTP target on a fixed loopback port whose listener can be closed (connects are then
/// refused) and opened again on the same port.
struct Switchable {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Switchable {
    /// On a port below Linux's ephemeral range (32768–60999): once closed, no outgoing
    /// connection can take it as its source port (or connect to itself through it), so it
    /// can be bound again. Nothing else in the test process binds a fixed port there but
    /// the other guard tests' targets, which run alongside; a port is ours for the rest of
    /// the process once taken (see [`RESERVED`]), so another test cannot bind it while this
    /// one has it closed (that happened once in CI: "not within 10s: the port again").
    async fn start() -> Switchable {
        loop {
            let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
            if !RESERVED.lock().unwrap().insert(port) {
                continue;
            }
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
                return Switchable {
                    addr: listener.local_addr().unwrap(),
                    task: Some(serve(listener)),
                };
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener: the task that owns it is aborted, and waited for, so the port is
    /// closed when this returns.
    async fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn open(&mut self) {
        // The port was ours a moment ago, outside the ephemeral range; tokio binds with
        // SO_REUSEADDR, so connections the old listener left in TIME_WAIT do not stand in the
        // way.
        let last_error = Mutex::new(None);
        let listener = catalogd_testkit::poll::poll(
            "the port again",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                TcpListener::bind(self.addr)
                    .await
                    .map_err(|error| *last_error.lock().unwrap() = Some(error))
                    .ok()
            },
        )
        .await
        .unwrap_or_else(|timed_out| panic!("{timed_out}: {:?}", last_error.lock().unwrap().take()));
        self.task = Some(serve(listener));
    }
}

fn serve(listener: TcpListener) -> JoinHandle<()> {
    let router = Router::new().fallback(any(|| async { StatusCode::OK }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

/// Every event published under `integrations.events.>`, as it arrives, each once: a
/// redelivery (same event id) is dropped, as DESIGN §6 asks of consumers.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Value>>>);

impl Events {
    async fn subscribe(nats: &NatsServer) -> Events {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let mut subscription = client.subscribe("integrations.events.>").await.unwrap();
        client.flush().await.unwrap();
        let events = Events::default();
        let seen = events.clone();
        tokio::spawn(async move {
            let _client = client;
            while let Some(message) = subscription.next().await {
                let mut event: Value = serde_json::from_slice(&message.payload).unwrap();
                event["natsSubject"] = json!(message.subject.as_str());
                let mut seen = seen.0.lock().unwrap();
                if !seen.iter().any(|e| e["id"] == event["id"]) {
                    seen.push(event);
                }
            }
        });
        events
    }

    fn of_type(&self, kind: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event["type"] == kind)
            .cloned()
            .collect()
    }
}

async fn guarded_app(backend: Backend, nats: &NatsServer, hold: Duration) -> TestApp {
    events_app(backend, &nats.url(), |config| {
        config.monitor.flap_threshold = 0;
        config.monitor.degraded_after = 7;
        config.monitor.failed_after = 10;
        config.monitor.network_guard = true;
        config.monitor.network_guard_window = Duration::from_secs(5);
        config.monitor.network_guard_ratio = 0.4;
        config.monitor.network_guard_hold = hold;
    })
    .await
}

/// `schemas/system-event.schema.json` accepts the event (without the subject the test added).
fn assert_matches_the_schema(event: &Value) {
    let schema: Value =
        serde_json::from_str(include_str!("../../../schemas/system-event.schema.json")).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let mut event = event.clone();
    event.as_object_mut().unwrap().remove("natsSubject");
    let errors: Vec<String> = validator
        .iter_errors(&event)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{event:#}");
}

/// The `catalogd_network_impaired` value of one scrape.
async fn impaired(app: &TestApp) -> Option<u8> {
    let text = app
        .client
        .get(&app.metrics_url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("catalogd_network_impaired "))
        .and_then(|value| value.trim().parse().ok())
}

/// `id → status` of every integration of the tenant.
async fn statuses(app: &TestApp, token: &str) -> Vec<(String, String)> {
    app.list_all(token, "", 500)
        .await
        .iter()
        .map(|item| {
            (
                item["integrationId"].as_str().unwrap().to_owned(),
                item["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A healthy fleet of [`FLEET`] integrations, each on its own target, all active.
async fn healthy_fleet(app: &TestApp, token: &str) -> (Vec<Switchable>, Vec<String>) {
    let mut targets = Vec::new();
    let mut ids = Vec::new();
    for n in 0..FLEET {
        let target = Switchable::start().await;
        let body = json!({
            "name": format!("target-{n:02}"), "type": "host", "provider": "http",
            "baseUrl": target.url(),
            "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1},
        });
        let id = app.create_ok(token, &body).await["integrationId"]
            .as_str()
            .unwrap()
            .to_owned();
        post(app, token, &id, "submit", None).await;
        targets.push(target);
        ids.push(id);
    }
    eventually("the fleet active", Duration::from_secs(30), || async {
        statuses(app, token)
            .await
            .iter()
            .all(|(_, s)| s == "active")
    })
    .await;
    (targets, ids)
}

fn unhealthy_subjects(events: &Events) -> BTreeSet<String> {
    events
        .of_type("integration.unhealthy")
        .iter()
        .map(|event| event["subject"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_guard_holds_a_half_fleet_outage_and_restores(backend: Backend) {
    let nats = NatsServer::start();
    let events = Events::subscribe(&nats).await;
    // Longer than this test: every transition it would see is one the guard let through.
    let app = guarded_app(backend, &nats, Duration::from_secs(600)).await;
    let admin = app.admin("acme");
    let (mut targets, _ids) = healthy_fleet(&app, &admin).await;
    assert_eq!(impaired(&app).await, Some(0));

    for target in targets.iter_mut().take(FLEET / 2) {
        target.close().await;
    }
    let down_at = Instant::now();
    eventually(
        "catalogd_network_impaired 1",
        Duration::from_secs(20),
        || async { impaired(&app).await == Some(1) },
    )
    .await;
    let impaired_events = eventually("network_impaired", Duration::from_secs(20), || {
        Some(events.of_type("system.network_impaired")).filter(|e| !e.is_empty())
    })
    .await;
    let event = &impaired_events[0];
    assert_eq!(
        event["natsSubject"],
        "integrations.events._system.network_impaired"
    );
    assert_eq!(event["tenantid"], "_system");
    let data = &event["data"];
    assert!(data["ratio"].as_f64().unwrap() >= 0.4, "{event}");
    assert!(data["checks"].as_u64().unwrap() >= 20, "{event}");
    assert!(
        data["heldUntil"].as_str().unwrap().ends_with('Z'),
        "{event}"
    );

    assert_matches_the_schema(event);

    // Down for well past failed_after (10) checks: every integration stays active.
    while down_at.elapsed() < Duration::from_secs(15) {
        let now = statuses(&app, &admin).await;
        assert!(now.iter().all(|(_, s)| s == "active"), "{now:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(impaired(&app).await, Some(1));

    for target in targets.iter_mut().take(FLEET / 2) {
        target.open().await;
    }
    eventually("network_restored", Duration::from_secs(20), || {
        !events.of_type("system.network_restored").is_empty()
    })
    .await;
    eventually(
        "catalogd_network_impaired 0",
        Duration::from_secs(10),
        || async { impaired(&app).await == Some(0) },
    )
    .await;
    let now = statuses(&app, &admin).await;
    assert!(now.iter().all(|(_, s)| s == "active"), "{now:?}");
    // One event each way, and no integration moved.
    let system: Vec<Value> = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["tenantid"] == "_system")
        .cloned()
        .collect();
    assert_eq!(
        events.of_type("system.network_impaired").len(),
        1,
        "{system:#?}"
    );
    let restored = events.of_type("system.network_restored");
    assert_eq!(restored.len(), 1, "{system:#?}");
    assert_eq!(
        restored[0]["natsSubject"],
        "integrations.events._system.network_restored"
    );
    assert_eq!(restored[0]["data"]["since"], data["since"]);
    assert_eq!(restored[0]["sequence"], 2);
    assert_matches_the_schema(&restored[0]);
    assert_eq!(unhealthy_subjects(&events), BTreeSet::new());
}

async fn after_the_hold_a_real_outage_goes_through(backend: Backend) {
    let nats = NatsServer::start();
    let events = Events::subscribe(&nats).await;
    let app = guarded_app(backend, &nats, Duration::from_secs(3)).await;
    let admin = app.admin("acme");
    let (mut targets, ids) = healthy_fleet(&app, &admin).await;

    for target in targets.iter_mut().take(FLEET / 2) {
        target.close().await;
    }
    eventually("network_impaired", Duration::from_secs(20), || {
        !events.of_type("system.network_impaired").is_empty()
    })
    .await;
    // The hold ends 3 s after the impairment began; the targets stay down, so the
    // transitions go through: exactly the unreachable half goes unhealthy.
    let down: BTreeSet<String> = ids[..FLEET / 2].iter().cloned().collect();
    eventually(
        "the unreachable half unhealthy",
        Duration::from_secs(30),
        || unhealthy_subjects(&events) == down,
    )
    .await;
    let now = statuses(&app, &admin).await;
    for (id, status) in &now {
        if down.contains(id) {
            assert!(status == "degraded" || status == "failed", "{now:?}");
        } else {
            assert_eq!(status, "active", "{now:?}");
        }
    }
    // The impairment was reported before the first transition went through.
    let seen = events.0.lock().unwrap().clone();
    let first_impaired = seen
        .iter()
        .position(|e| e["type"] == "system.network_impaired")
        .unwrap();
    let first_unhealthy = seen
        .iter()
        .position(|e| e["type"] == "integration.unhealthy")
        .unwrap();
    assert!(first_impaired < first_unhealthy, "{seen:?}");
}

catalogd_testkit::both_backends!(
    the_guard_holds_a_half_fleet_outage_and_restores,
    after_the_hold_a_real_outage_goes_through
);
