//! A transition storm against `catalogd serve` child processes: a daemon on its own database
//! (SQLite or PostgreSQL) and config, flapping scripted integrations, and REST pause/resume
//! traffic between SIGKILLs; and the checks every crash test makes afterwards (the outbox is
//! gap-free, store, audit trail and outbox agree, the JetStream stream holds each event once
//! and in order, the audit chain verifies). Shared by the engine, events and chaos crash tests.
//! Also minting a token with the test key, which those tests share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use catalogd_testkit::{Backend, Daemon};

/// The JetStream stream the daemon publishes lifecycle events to (its default name).
pub const STREAM: &str = "INTEGRATION_EVENTS";

/// The HS256 key every test daemon is configured with.
pub const JWT_KEY: &str = "test-key-0123456789abcdef0123456789abcdef";

/// A token for `tenant` with the admin scope, signed with [`JWT_KEY`].
pub fn admin_token(tenant: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, JWT_KEY).unwrap();
    catalogd::auth::Authenticator::from_config(&catalogd::config::AuthConfig {
        jwt_secret_file: Some(key),
        ..Default::default()
    })
    .unwrap()
    .mint(
        tenant,
        "ops",
        &["integrations.admin".into()],
        Duration::from_secs(3600),
        chrono::Utc::now(),
    )
    .unwrap()
}

/// An `in-memory` integration that cycles through `script`, checked every `interval` seconds.
pub fn scripted(name: &str, script: &[&str], interval: u32) -> Value {
    json!({
        "name": name,
        "type": "host",
        "provider": "in-memory",
        "configuration": {"script": script},
        "healthCheck": {"intervalSeconds": interval, "timeoutSeconds": 1},
    })
}

/// Three failures then a success, every second: an active integration degrades and recovers
/// every four checks.
pub const FLAPPING: &[&str] = &[
    "failure:http_status",
    "failure:http_status",
    "failure:http_status",
    "success",
];

/// A daemon's directory, database and config file, restartable after SIGKILL.
pub struct Storm {
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    url: String,
}

impl Storm {
    /// A daemon on a SQLite file of its own. `extra` is appended to the configuration (e.g. a
    /// `[nats]` section).
    pub fn new(extra: &str) -> Storm {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/catalogd.db", dir.path().display());
        Storm::with_database(dir, url, extra)
    }

    /// A daemon on a fresh database of `backend`. A PostgreSQL database gets
    /// `synchronous_commit = on` (the test server runs with it off for speed): a commit the
    /// daemon was told about is then one a crash cannot take back, as in production.
    pub async fn on(backend: Backend, extra: &str) -> Storm {
        let dir = tempfile::tempdir().unwrap();
        let url = catalogd_testkit::database_url(backend, dir.path()).await;
        if backend == Backend::Postgres {
            use sqlx::{Connection, Executor};
            let name = url.rsplit('/').next().unwrap().to_owned();
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            connection
                .execute(format!("ALTER DATABASE {name} SET synchronous_commit = on").as_str())
                .await
                .unwrap();
            let _ = connection.close().await;
        }
        Storm::with_database(dir, url, extra)
    }

    fn with_database(dir: tempfile::TempDir, url: String, extra: &str) -> Storm {
        let key = dir.path().join("jwt.key");
        std::fs::write(&key, JWT_KEY).unwrap();
        let config = dir.path().join("catalogd.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{url}\"\n\
                 [auth]\njwt_secret_file = \"{}\"\n[monitor]\nreconcile_interval = \"2s\"\n\
                 [history]\nflush_interval = \"200ms\"\n{extra}",
                key.display()
            ),
        )
        .unwrap();
        Storm { dir, config, url }
    }

    /// `catalogd serve` on this storm's config, not waited for. It is one daemon restarted
    /// again and again (as a StatefulSet pod is), so it keeps its node id: on PostgreSQL a
    /// restart takes its shards back at once instead of waiting for its old leases to expire.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_catalogd"));
        command
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env("CATALOGD__CLUSTER__NODE_ID", "storm")
            .args(["serve", "--config", self.config.to_str().unwrap()]);
        command
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(self.command(), Duration::from_secs(60)).expect("catalogd serve starts")
    }

    pub fn database_url(&self) -> String {
        self.url.clone()
    }

    /// Asserts that `catalogd audit verify` exits 0 on this storm's database.
    pub fn assert_audit_verifies(&self) {
        let output = Command::new(env!("CARGO_BIN_EXE_catalogd"))
            .current_dir(self.dir.path())
            .args(["audit", "verify", "--config", self.config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "audit verify: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Creates and submits `count` flapping integrations; returns their ids.
/// Creates an integration from `body` over REST and submits it; returns its id.
pub async fn create_and_submit(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: &Value,
) -> Uuid {
    let created: Value = crate::helpers::json_of(
        client
            .post(format!("{base}/api/v1/integrations"))
            .bearer_auth(token)
            .json(body),
    )
    .await;
    let id: Uuid = created["integrationId"]
        .as_str()
        .unwrap_or_else(|| panic!("created: {created}"))
        .parse()
        .unwrap();
    let submitted = client
        .post(format!("{base}/api/v1/integrations/{id}/submit"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), 200);
    id
}

pub async fn create_flapping(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let body = scripted(&format!("flap-{i:02}"), FLAPPING, 1);
        let created: Value = crate::helpers::json_of(
            client
                .post(format!("{base}/api/v1/integrations"))
                .bearer_auth(token)
                .json(&body),
        )
        .await;
        let id = created["integrationId"].as_str().unwrap().to_owned();
        let response = client
            .post(format!("{base}/api/v1/integrations/{id}/submit"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        ids.push(id);
    }
    ids
}

/// Pauses and resumes random integrations until `until`, so REST changes interleave with the
/// monitor's transitions. Errors are expected (the daemon may be mid-restart) and ignored.
pub async fn pause_and_resume(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[String],
    until: Instant,
) {
    while Instant::now() < until {
        let id = &ids[rand::rng().random_range(0..ids.len())];
        let _ = client
            .post(format!("{base}/api/v1/integrations/{id}/pause"))
            .bearer_auth(token)
            .json(&json!({"reason": "storm"}))
            .send()
            .await;
        let _ = client
            .post(format!("{base}/api/v1/integrations/{id}/resume"))
            .bearer_auth(token)
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

// --- What every crash test checks afterwards --------------------------------------------------

/// One outbox row: `(event_id, integration_id, sequence, event_type, subject, payload,
/// published)`.
pub type OutboxRow = (Uuid, Uuid, i64, String, String, String, bool);

/// Every outbox row, by integration and sequence, read on a connection of the test's own.
pub async fn outbox(database_url: &str) -> Vec<OutboxRow> {
    let sql = "SELECT event_id, integration_id, sequence, event_type, subject, payload, \
               published_at IS NOT NULL FROM outbox ORDER BY integration_id, sequence";
    crate::helpers::read_rows(database_url, sql, None).await
}

pub async fn unpublished(database_url: &str) -> usize {
    let sql = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
    let rows: Vec<(i64,)> = crate::helpers::read_rows(database_url, sql, None).await;
    rows[0].0 as usize
}

/// Every message of the stream, in stream order: `(Nats-Msg-Id, subject, payload)`. Read
/// through an ordered consumer (one fetch per batch, not one request per message: a chaos run
/// stores tens of thousands).
pub async fn stream_messages(url: &str) -> Vec<(String, String, Value)> {
    use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
    let client = async_nats::connect(url).await.unwrap();
    let context = async_nats::jetstream::new(client);
    let mut stream = context.get_stream(STREAM).await.unwrap();
    let stored = stream.info().await.unwrap().state.messages as usize;
    let mut messages = Vec::with_capacity(stored);
    if stored == 0 {
        return messages;
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut delivered = consumer.messages().await.unwrap();
    while messages.len() < stored {
        let message = tokio::time::timeout(Duration::from_secs(30), delivered.next())
            .await
            .expect("the stream delivers every stored message")
            .expect("the consumer stays open")
            .unwrap();
        let id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        messages.push((
            id,
            message.subject.to_string(),
            serde_json::from_slice(&message.payload).unwrap(),
        ));
    }
    messages
}

/// How a sequence of received messages compares with the outbox: each list holds what was
/// wrong, so a test can print the counts before it asserts they are all zero.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Event ids received more than once.
    pub duplicates: Vec<String>,
    /// Outbox events never received.
    pub missing: Vec<String>,
    /// Messages whose id is no outbox event.
    pub unexpected: Vec<String>,
    /// An integration's events received out of sequence (a gap or a step back).
    pub gaps: Vec<String>,
    /// Messages whose subject or payload differs from the outbox row.
    pub mismatched: Vec<String>,
}

/// Compares `messages` (in arrival or stream order) with the outbox `rows`: each event once,
/// byte-for-byte, on its subject, each integration's `sequence` 1, 2, 3, ... in order.
pub fn compare(rows: &[OutboxRow], messages: &[(String, String, Value)]) -> Comparison {
    let mut comparison = Comparison::default();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (id, _, _) in messages {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    comparison.duplicates = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| format!("{id} x{n}"))
        .collect();
    let expected: HashSet<String> = rows.iter().map(|r| r.0.to_string()).collect();
    let got: HashSet<String> = seen.keys().map(|k| (*k).to_owned()).collect();
    comparison.missing = expected.difference(&got).cloned().collect();
    comparison.unexpected = got.difference(&expected).cloned().collect();
    let by_id: HashMap<String, &OutboxRow> = rows.iter().map(|r| (r.0.to_string(), r)).collect();
    let mut last: HashMap<Uuid, i64> = HashMap::new();
    for (id, subject, payload) in messages {
        let Some(row) = by_id.get(id) else { continue };
        let stored: Value = serde_json::from_str(&row.5).unwrap();
        if subject != &row.4 || payload != &stored || payload["id"] != id.as_str() {
            comparison
                .mismatched
                .push(format!("{id}: {subject} {payload}"));
        }
        if payload["sequence"] != row.2 {
            comparison.mismatched.push(format!(
                "{id}: sequence {} in the payload, {} stored",
                payload["sequence"], row.2
            ));
        }
        let previous = last.insert(row.1, row.2).unwrap_or(0);
        if row.2 != previous + 1 {
            comparison.gaps.push(format!(
                "integration {}: sequence {} after {previous}",
                row.1, row.2
            ));
        }
    }
    comparison
}

/// Asserts that `messages` (in arrival or stream order) hold each outbox event exactly once,
/// byte-for-byte, on its subject, in per-integration sequence order.
pub fn assert_matches_outbox(what: &str, rows: &[OutboxRow], messages: &[(String, String, Value)]) {
    let c = compare(rows, messages);
    assert!(
        c.duplicates.is_empty(),
        "{what}: duplicates {:?}",
        c.duplicates
    );
    assert!(
        c.missing.is_empty() && c.unexpected.is_empty(),
        "{what}: {} missing {:?}, {} unexpected {:?}",
        c.missing.len(),
        c.missing,
        c.unexpected.len(),
        c.unexpected
    );
    assert!(
        c.mismatched.is_empty(),
        "{what}: mismatched {:?}",
        c.mismatched
    );
    assert!(c.gaps.is_empty(), "{what}: out of order {:?}", c.gaps);
}

/// Asserts per-integration sequences in the outbox are 1..=n.
pub fn assert_gap_free(rows: &[OutboxRow]) {
    let mut by_integration: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    for row in rows {
        by_integration.entry(row.1).or_default().push(row.2);
    }
    for (id, sequences) in by_integration {
        let n = sequences.len() as i64;
        assert_eq!(sequences, (1..=n).collect::<Vec<_>>(), "{id}: gap-free");
    }
}

/// What [`assert_store_audit_outbox_agree`] counted.
#[derive(Debug)]
pub struct Agreement {
    pub integrations: usize,
    /// Audit entries of monitor transitions (`integration.health`).
    pub transitions: usize,
    /// Outbox events (one per audited change that is not a connection test).
    pub events: usize,
    pub by_type: BTreeMap<String, usize>,
}

/// Asserts, on the database at `url`, that for every integration the last audit entry's
/// snapshot has the stored status, the outbox holds exactly its sequences
/// `1..=event_sequence`, and every audited change but a connection test has its one event
/// (and but a transition flap detection held back: audited while flapping, its reason says
/// so, DESIGN §10).
pub async fn assert_store_audit_outbox_agree(url: &str) -> Agreement {
    let integrations: Vec<(Uuid, String, i64)> = crate::helpers::read_rows(
        url,
        "SELECT integration_id, status, event_sequence FROM integrations",
        None,
    )
    .await;
    let audit: Vec<(Uuid, String, Option<String>, Option<String>)> = crate::helpers::read_rows(
        url,
        "SELECT target_id, action, after_state, reason FROM audit_log \
         ORDER BY tenant_id, sequence",
        None,
    )
    .await;
    let mut audit_of: HashMap<Uuid, Vec<(String, Option<String>)>> = HashMap::new();
    let mut held_back_of: HashMap<Uuid, usize> = HashMap::new();
    for (id, action, after, reason) in audit {
        if reason
            .as_deref()
            .is_some_and(|reason| reason.ends_with("event held back"))
        {
            *held_back_of.entry(id).or_default() += 1;
        }
        audit_of.entry(id).or_default().push((action, after));
    }
    let rows = outbox(url).await;
    let mut sequences_of: HashMap<Uuid, Vec<i64>> = HashMap::new();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        sequences_of.entry(row.1).or_default().push(row.2);
        *by_type.entry(row.3.clone()).or_default() += 1;
    }
    let mut transitions = 0;
    for (id, status, event_sequence) in &integrations {
        let audit = audit_of.get(id).map(Vec::as_slice).unwrap_or_default();
        let last: Value = serde_json::from_str(
            audit
                .last()
                .and_then(|(_, after)| after.as_deref())
                .unwrap_or_else(|| panic!("{id}: no audit entry with a snapshot")),
        )
        .unwrap();
        assert_eq!(
            last["status"],
            status.as_str(),
            "{id}: the last audit entry matches the store"
        );
        let sequences = sequences_of.get(id).cloned().unwrap_or_default();
        assert_eq!(
            sequences,
            (1..=*event_sequence).collect::<Vec<_>>(),
            "{id}: gap-free event sequence"
        );
        let evented = audit
            .iter()
            .filter(|(action, _)| action != "integration.test")
            .count()
            - held_back_of.get(id).copied().unwrap_or_default();
        assert_eq!(
            sequences.len(),
            evented,
            "{id}: one event per audited change"
        );
        transitions += audit
            .iter()
            .filter(|(action, _)| {
                matches!(
                    action.as_str(),
                    "integration.health" | "integration.flapping" | "integration.stable"
                )
            })
            .count();
    }
    Agreement {
        integrations: integrations.len(),
        transitions,
        events: rows.len(),
        by_type,
    }
}
