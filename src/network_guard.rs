//! The daemon's side of the network guard (DESIGN §10): builds the engine's
//! [`NetworkGuard`] from `monitor.network_guard*`, and publishes each change it reports as a
//! `_system` event through the outbox (the durable path every event takes).
//!
//! Each change becomes one CloudEvent on `integrations.events._system.network_impaired` or
//! `..._system.network_restored` (type `system.network_impaired` / `system.network_restored`,
//! `tenantid` `_system`, `subject` the node id). The events of one daemon run form a stream of
//! their own in the outbox: its id (a fresh UUIDv7 at start, in the `integration_id` column and
//! `data.streamId`) and `sequence` 1, 2, 3, ..., so the relay publishes them in order like an
//! integration's. The outbox row is written on its own (no integration's transaction to join),
//! unfenced: it is this node's judgement of its own network, and any node may publish it.
//!
//! A task of its own writes the events (in order, retrying while the database is away) and
//! moves the guard's window along the clock every second, so a guard that no check reaches any
//! more still notices that the window emptied.

use std::sync::{Arc, Weak};
use std::time::Duration;

use catalogd_actors::{Clock, NetworkChange, NetworkGuard, NetworkGuardReporter};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cloudevents::{OutboxEvent, SOURCE, SUBJECT_PREFIX};
use crate::config::MonitorConfig;
use crate::store::outbox::{Handoff, OutboxStore};

/// The tenant segment of the system events' subjects (and their `tenantid`).
pub const SYSTEM_TENANT: &str = "_system";
/// `integrations.events._system.network_impaired`.
pub const IMPAIRED_SUBJECT: &str = "integrations.events._system.network_impaired";
/// `integrations.events._system.network_restored`.
pub const RESTORED_SUBJECT: &str = "integrations.events._system.network_restored";

/// How often the guard's window is moved along the clock without a check.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to write an event while the database is away.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Hands each change to the publishing task; never blocks (the guard calls it under its lock).
struct ChannelReporter(mpsc::UnboundedSender<NetworkChange>);

impl NetworkGuardReporter for ChannelReporter {
    fn changed(&self, change: &NetworkChange) {
        // Closed only once the task is gone, at shutdown: nothing left to publish to.
        let _ = self.0.send(*change);
    }
}

/// The running guard: the engine's handle, and the task publishing its changes.
pub struct NetworkGuardTask {
    pub guard: Arc<NetworkGuard>,
    task: JoinHandle<()>,
}

impl NetworkGuardTask {
    /// Builds the guard from `monitor` (`None` when `monitor.network_guard` is off) and starts
    /// the task that writes its events to `outbox` as `node` and hands them to the relay.
    pub fn start(
        monitor: &MonitorConfig,
        outbox: OutboxStore,
        handoff: Arc<Handoff>,
        clock: Arc<dyn Clock>,
        node: &str,
    ) -> Option<NetworkGuardTask> {
        let options = monitor.network_guard_options()?;
        let (sender, changes) = mpsc::unbounded_channel();
        let guard = Arc::new(NetworkGuard::new(
            options,
            Arc::new(ChannelReporter(sender)),
        ));
        let publisher = Publisher {
            outbox,
            handoff,
            node: node.to_owned(),
            stream: Uuid::now_v7(),
            sequence: 0,
            window_seconds: options.window.as_secs_f64().ceil() as u64,
            threshold: options.ratio,
        };
        let task = tokio::spawn(run(Arc::downgrade(&guard), changes, clock, publisher));
        Some(NetworkGuardTask { guard, task })
    }

    /// Stops the task; changes not yet written are lost (the guard judges afresh at start).
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn run(
    guard: Weak<NetworkGuard>,
    mut changes: mpsc::UnboundedReceiver<NetworkChange>,
    clock: Arc<dyn Clock>,
    mut publisher: Publisher,
) {
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(change) => publisher.publish(&change).await,
                None => return,
            },
            _ = refresh.tick() => match guard.upgrade() {
                Some(guard) => guard.refresh(clock.now()),
                None => return,
            },
        }
    }
}

struct Publisher {
    outbox: OutboxStore,
    handoff: Arc<Handoff>,
    node: String,
    /// This run's stream of system events in the outbox, numbered from 1.
    stream: Uuid,
    sequence: i64,
    window_seconds: u64,
    threshold: f64,
}

impl Publisher {
    /// Logs the change and writes its event, retrying with a doubling delay until it is
    /// stored (events of one stream must not overtake each other).
    async fn publish(&mut self, change: &NetworkChange) {
        if change.impaired {
            tracing::warn!(
                ratio = change.ratio,
                checks = change.checks,
                network_failures = change.network_failures,
                held_until = %change.held_until,
                "network impaired: most checks fail with dns, connect or timeout; \
                 transitions to degraded/failed are held until held_until"
            );
        } else {
            tracing::info!(
                ratio = change.ratio,
                checks = change.checks,
                since = %change.since,
                "network restored"
            );
        }
        self.sequence += 1;
        let event = build(
            change,
            &self.node,
            self.stream,
            self.sequence,
            self.window_seconds,
            self.threshold,
        );
        let mut delay = Duration::from_millis(250);
        loop {
            match self.outbox.append(&event, &self.node).await {
                Ok(()) => {
                    self.handoff.committed(event);
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, event_type = %event.event_type, "could not store a network guard event; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SystemData<'a> {
    node_id: &'a str,
    stream_id: Uuid,
    impaired: bool,
    /// Network failures / checks in the window when the change was seen.
    ratio: f64,
    checks: u64,
    network_failures: u64,
    /// `monitor.network_guard_ratio` and `_window`.
    threshold: f64,
    window_seconds: u64,
    /// When the impairment began and until when transitions are (were) held.
    since: String,
    held_until: String,
}

#[derive(Serialize)]
struct SystemEvent<'a> {
    specversion: &'static str,
    id: Uuid,
    source: &'static str,
    #[serde(rename = "type")]
    kind: &'a str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    tenantid: &'static str,
    sequence: i64,
    data: SystemData<'a>,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The CloudEvent of one change, as the outbox stores it.
fn build(
    change: &NetworkChange,
    node: &str,
    stream: Uuid,
    sequence: i64,
    window_seconds: u64,
    threshold: f64,
) -> OutboxEvent {
    let name = if change.impaired {
        "network_impaired"
    } else {
        "network_restored"
    };
    let event_id = Uuid::now_v7();
    let event_type = format!("system.{name}");
    let event = SystemEvent {
        specversion: "1.0",
        id: event_id,
        source: SOURCE,
        kind: &event_type,
        subject: node,
        time: rfc3339(change.at),
        datacontenttype: "application/json",
        tenantid: SYSTEM_TENANT,
        sequence,
        data: SystemData {
            node_id: node,
            stream_id: stream,
            impaired: change.impaired,
            ratio: (change.ratio * 1e4).round() / 1e4,
            checks: change.checks,
            network_failures: change.network_failures,
            threshold,
            window_seconds,
            since: rfc3339(change.since),
            held_until: rfc3339(change.held_until),
        },
    };
    let payload = serde_json::to_string(&event).expect("events serialize");
    OutboxEvent {
        event_id,
        tenant_id: SYSTEM_TENANT.to_owned(),
        integration_id: stream,
        sequence,
        event_type,
        subject: format!("{SUBJECT_PREFIX}.{SYSTEM_TENANT}.{name}"),
        payload,
        created_at: change.at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_a_cloudevent_on_the_system_subjects() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let change = NetworkChange {
            impaired: true,
            at,
            since: at,
            held_until: at + chrono::TimeDelta::minutes(5),
            checks: 40,
            network_failures: 21,
            ratio: 21.0 / 40.0,
        };
        let stream = Uuid::now_v7();
        let event = build(&change, "node-a", stream, 1, 60, 0.5);
        assert_eq!(event.subject, IMPAIRED_SUBJECT);
        assert_eq!(event.event_type, "system.network_impaired");
        assert_eq!((event.integration_id, event.sequence), (stream, 1));
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload["tenantid"], "_system");
        assert_eq!(payload["subject"], "node-a");
        assert_eq!(payload["data"]["ratio"], 0.525);
        assert_eq!(payload["data"]["checks"], 40);
        assert_eq!(payload["data"]["heldUntil"], "2027-01-15T08:05:00.000000Z");
        let restored = build(
            &NetworkChange {
                impaired: false,
                ..change
            },
            "node-a",
            stream,
            2,
            60,
            0.5,
        );
        assert_eq!(restored.subject, RESTORED_SUBJECT);
    }
}
