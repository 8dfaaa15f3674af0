//! The chaos corpus (issue 11): a hundred SIGKILLs of `catalogd serve` at random points, start-up
//! included, during a transition storm on 500 integrations whose HTTP targets flip between
//! healthy and failing, with nats-server stopped and started at random points too. Afterwards:
//! 0 lost events (every audited change has its outbox event, every outbox event is in the
//! JetStream stream), 0 stored duplicates, each integration's `sequence` gap-free and increasing
//! in the stream, `catalogd audit verify` clean, and every integration's final status the one
//! its last checks imply. On SQLite and PostgreSQL.
//!
//! The run is drawn from a seed, printed first (`CATALOGD_CHAOS_SEED=<seed>` replays its kill
//! points, NATS outages and target flips; timing still varies); `CATALOGD_CHAOS_KILLS` and
//! `CATALOGD_CHAOS_INTEGRATIONS` change its size.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

use crate::storm::{
    admin_token, assert_store_audit_outbox_agree, compare, outbox, stream_messages, unpublished,
    Storm,
};
use catalogd_testkit::{both_backends, poll, Backend, Daemon, Mode, NatsServer, Target};

const TENANTS: usize = 5;
/// Integrations share targets, so that one flip moves many of them at once.
const TARGETS: usize = 10;
/// Low thresholds: one failure degrades, two fail, one success recovers, so every flip of a
/// target moves its integrations.
const DEGRADED_AFTER: u32 = 1;
const FAILED_AFTER: u32 = 2;
/// A daemon is killed at a random point of its first this many milliseconds (a debug build
/// with 500 integrations is ready after a few hundred, so some kills land in start-up).
const LIFETIME_MS: u64 = 2_000;
/// Chance that a life stops or starts nats-server at a random point.
const NATS_TOGGLE: f64 = 0.3;
/// A target flips this often during the storm.
const FLIP_EVERY: Duration = Duration::from_millis(400);
/// Checks of every integration after the final hold before its status is compared: more than
/// `FAILED_AFTER`, so the last checks decide the status whatever it was before.
const FINAL_CHECKS: usize = 3;
/// `check_results.outcome` of a success and of a failure.
const SUCCESS: i16 = 0;
const FAILURE: i16 = 1;

struct Size {
    seed: u64,
    kills: usize,
    integrations: usize,
}

fn size() -> Size {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.parse().unwrap());
    Size {
        seed: var("CATALOGD_CHAOS_SEED").unwrap_or_else(|| rand::rng().random()),
        kills: var("CATALOGD_CHAOS_KILLS").map_or(100, |v| v as usize),
        integrations: var("CATALOGD_CHAOS_INTEGRATIONS").map_or(500, |v| v as usize),
    }
}

/// One integration of the fleet: its id, its tenant's admin token and its target.
struct Member {
    id: Uuid,
    token: String,
    target: usize,
}

/// What the storm did.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    /// Kills before the daemon had logged both listeners.
    kills_in_start_up: usize,
    nats_restarts: usize,
    flips: usize,
    /// Pause + resume pairs both answered 200.
    rest_changes: usize,
    /// The lives drawn, summed (the rest of the storm's time is starting and stopping).
    lives: Duration,
}

both_backends!(a_hundred_sigkills_and_nats_restarts_lose_duplicate_and_reorder_nothing);

async fn a_hundred_sigkills_and_nats_restarts_lose_duplicate_and_reorder_nothing(backend: Backend) {
    let _heavy = crate::HEAVY.lock().await;
    let size = size();
    println!(
        "chaos {backend:?}: seed {} (CATALOGD_CHAOS_SEED replays it), {} kills, {} integrations",
        size.seed, size.kills, size.integrations
    );
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(size.seed);
    let mut nats = NatsServer::start();
    let mut targets = Vec::new();
    for _ in 0..TARGETS {
        targets.push(Target::start().await);
    }
    let targets = Arc::new(targets);
    let storm = Storm::on(
        backend,
        &format!(
            "[nats]\nurl = \"{}\"\n[events]\nsweep_interval = \"200ms\"\n\
             [egress]\nallow_private = true\n",
            nats.url()
        ),
    )
    .await;
    let client = crate::helpers::http_client(Duration::from_secs(10));

    // The fleet, created and submitted through the first incarnation, which is killed too.
    let first = start(&storm, Instant::now() + Duration::from_secs(60))
        .await
        .expect("catalogd serve starts");
    let fleet = create_fleet(&client, &first.api, &targets, size.integrations).await;
    println!(
        "chaos {backend:?}: fleet created in {:?}",
        started.elapsed()
    );

    // The storm: targets flip in the background while daemons live and die.
    let stop_flipping = Arc::new(AtomicBool::new(false));
    let flipper = tokio::spawn(flip(
        targets.clone(),
        StdRng::seed_from_u64(size.seed.wrapping_add(1)),
        stop_flipping.clone(),
    ));
    let traffic_client = crate::helpers::http_client(Duration::from_secs(2));
    let mut tally = Tally::default();
    let mut daemon = Some(first);
    let storm_started = Instant::now();
    for _ in 0..size.kills {
        let life = Duration::from_millis(rng.random_range(0..LIFETIME_MS));
        let toggle = rng
            .random_bool(NATS_TOGGLE)
            .then(|| Duration::from_millis(rng.random_range(0..=life.as_millis() as u64)));
        tally.lives += life;
        let (mut current, ready) = match daemon.take() {
            // The first life starts now: it is the one that created the fleet.
            Some(running) => (running, true),
            None => {
                let spawned = Daemon::spawn(serve(&storm)).expect("spawn catalogd serve");
                let kill_at = spawned.spawned + life;
                wait_ready(spawned, kill_at).await
            }
        };
        let born = if ready && current.spawned < storm_started {
            storm_started
        } else {
            current.spawned
        };
        if let Some(at) = toggle {
            tally.rest_changes += live_until(
                &traffic_client,
                &current,
                ready,
                &fleet,
                &mut rng,
                born + at,
            )
            .await;
            toggle_nats(&mut nats, &mut tally).await;
        }
        tally.rest_changes += live_until(
            &traffic_client,
            &current,
            ready,
            &fleet,
            &mut rng,
            born + life,
        )
        .await;
        current.kill();
        tally.kills += 1;
        if !ready {
            tally.kills_in_start_up += 1;
        }
    }
    stop_flipping.store(true, Ordering::SeqCst);
    tally.flips = flipper.await.unwrap();
    if !nats.is_running() {
        toggle_nats(&mut nats, &mut tally).await;
    }
    println!(
        "chaos {backend:?}: storm over after {:?}: {tally:?}",
        storm_started.elapsed()
    );

    // The last incarnation. Every integration is brought back under monitoring (resumed if
    // paused, activated if never verified), then each target is held in a final state.
    let (mut daemon, _) = wait_ready(
        Daemon::spawn(serve(&storm)).expect("spawn catalogd serve"),
        Instant::now() + Duration::from_secs(60),
    )
    .await;
    assert!(!daemon.api.is_empty(), "the last incarnation starts");
    println!(
        "chaos {backend:?}: the last incarnation was ready in {:?}",
        daemon.spawned.elapsed()
    );
    monitor_everything(&client, &daemon.api, &fleet).await;
    println!(
        "chaos {backend:?}: everything monitored after {:?}",
        started.elapsed()
    );
    let finals: Vec<Mode> = (0..TARGETS)
        .map(|t| match t {
            0 => Mode::Healthy,
            1 => Mode::Failing,
            _ if rng.random_bool(0.5) => Mode::Healthy,
            _ => Mode::Failing,
        })
        .collect();
    for (target, mode) in targets.iter().zip(&finals) {
        target.set(*mode);
    }
    let hold = chrono::Utc::now();

    // Every integration is checked a few times in its final state; the outbox drains; the
    // daemon stops cleanly (its engine first, then the history writer's last flush), so the
    // store and the history hold still while they are compared.
    let url = storm.database_url();
    poll(
        "every integration was checked after the hold",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let mut counts: HashMap<Uuid, usize> = HashMap::new();
            for (id, _) in checks_since(&url, hold).await {
                *counts.entry(id).or_default() += 1;
            }
            fleet
                .iter()
                .all(|m| counts.get(&m.id).copied().unwrap_or(0) >= FINAL_CHECKS)
        },
    )
    .await
    .unwrap();
    poll(
        "the outbox drained",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async { unpublished(&url).await == 0 },
    )
    .await
    .unwrap();
    let stopped = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(stopped.success(), "the last incarnation stops cleanly");
    println!(
        "chaos {backend:?}: checked, drained and stopped after {:?}",
        started.elapsed()
    );

    // Each integration's status is the one its last two checks imply: with these thresholds
    // (degraded after 1, failed after 2, recovered after 1) they decide it from any monitored
    // status. Timeouts under load may make a check disagree with its target; the status must
    // follow the check all the same.
    let mut outcomes: HashMap<Uuid, Vec<i16>> = HashMap::new();
    for (id, outcome) in checks_since(&url, hold).await {
        outcomes.entry(id).or_default().push(outcome);
    }
    let stored: Vec<(Uuid, String)> = crate::helpers::read_rows(
        &url,
        "SELECT integration_id, status FROM integrations",
        None,
    )
    .await;
    let mut wrong = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut contrary = 0;
    for (id, status) in &stored {
        let member = fleet.iter().find(|m| m.id == *id).unwrap();
        let checks = &outcomes[id];
        let expected = match finals[member.target] {
            Mode::Healthy => SUCCESS,
            _ => FAILURE,
        };
        contrary += checks.iter().filter(|o| **o != expected).count();
        let implied = match checks[checks.len() - 2..] {
            [_, SUCCESS] => "active",
            [SUCCESS, FAILURE] => "degraded",
            [FAILURE, FAILURE] => "failed",
            _ => panic!("{id}: unexpected outcomes {checks:?}"),
        };
        *by_status.entry(status.clone()).or_default() += 1;
        if status != implied {
            wrong.push(format!("{id}: {status} after the checks {checks:?}"));
        }
    }
    println!(
        "chaos {backend:?}: final statuses {by_status:?}; {} not what the last checks imply; \
         {contrary} checks of {} after the hold disagreed with their target",
        wrong.len(),
        outcomes.values().map(Vec::len).sum::<usize>()
    );
    assert!(wrong.is_empty(), "final statuses: {wrong:#?}");
    assert_eq!(stored.len(), fleet.len());
    assert!(
        by_status.contains_key("active") && by_status.contains_key("failed"),
        "the final states held: {by_status:?}"
    );

    // The audit chain verifies; store, audit trail and outbox agree; the stream holds every
    // event once, in each integration's order.
    storm.assert_audit_verifies();
    let agreement = assert_store_audit_outbox_agree(&url).await;
    assert_eq!(agreement.integrations, fleet.len());
    let rows = outbox(&url).await;
    let messages = stream_messages(&nats.url()).await;
    let c = compare(&rows, &messages);
    println!(
        "chaos {backend:?}: {} kills ({} in start-up), {} NATS restarts, {} target flips, {} REST \
         pause/resume pairs, {} monitor transitions, {} events ({} in the stream): {} lost, {} \
         duplicates, {} gaps, {} unexpected, {} mismatched; by type {:?}; {:?} in all",
        tally.kills,
        tally.kills_in_start_up,
        tally.nats_restarts,
        tally.flips,
        tally.rest_changes,
        agreement.transitions,
        agreement.events,
        messages.len(),
        c.missing.len(),
        c.duplicates.len(),
        c.gaps.len(),
        c.unexpected.len(),
        c.mismatched.len(),
        agreement.by_type,
        started.elapsed()
    );
    assert!(c.missing.is_empty(), "lost events: {:?}", c.missing);
    assert!(c.duplicates.is_empty(), "duplicates: {:?}", c.duplicates);
    assert!(c.gaps.is_empty(), "gaps: {:?}", c.gaps);
    assert!(c.unexpected.is_empty(), "unexpected: {:?}", c.unexpected);
    assert!(c.mismatched.is_empty(), "mismatched: {:?}", c.mismatched);

    // The storm was one: kills at both kinds of points, NATS outages, many transitions.
    assert_eq!(tally.kills, size.kills);
    if size.kills >= 20 {
        assert!(tally.kills_in_start_up > 0, "{tally:?}");
        assert!(tally.kills_in_start_up < tally.kills, "{tally:?}");
        assert!(tally.nats_restarts > 0, "{tally:?}");
    }
    assert!(
        agreement.transitions >= fleet.len() * 2,
        "the storm moved the fleet ({} transitions)",
        agreement.transitions
    );
}

/// Waits, until `deadline`, for a spawned daemon's listeners; `false` if it was not ready.
async fn wait_ready(mut daemon: Daemon, deadline: Instant) -> (Daemon, bool) {
    tokio::task::spawn_blocking(move || {
        let ready = daemon.wait_ready(deadline).is_ok();
        (daemon, ready)
    })
    .await
    .unwrap()
}

/// `catalogd serve` on the storm's config, failed integrations probing at least every 2 s
/// (the default backoff would let them sit out the storm).
fn serve(storm: &Storm) -> std::process::Command {
    let mut command = storm.command();
    command.env("CATALOGD__MONITOR__FAILED_BACKOFF_MAX", "2s");
    command
}

async fn start(storm: &Storm, deadline: Instant) -> Option<Daemon> {
    match wait_ready(Daemon::spawn(serve(storm)).ok()?, deadline).await {
        (daemon, true) => Some(daemon),
        _ => None,
    }
}

/// Lets a daemon live until `until`, with REST changes going on if it is ready; returns the
/// pause/resume pairs that both succeeded.
async fn live_until(
    client: &reqwest::Client,
    daemon: &Daemon,
    ready: bool,
    fleet: &[Member],
    rng: &mut StdRng,
    until: Instant,
) -> usize {
    if !ready {
        tokio::time::sleep_until(until.into()).await;
        return 0;
    }
    // The daemon dies at `until` whatever it is doing: a request in flight then is cut off,
    // as a crash cuts off a client.
    let mut changes = 0;
    let _ = tokio::time::timeout_at(until.into(), async {
        loop {
            let member = &fleet[rng.random_range(0..fleet.len())];
            let base = format!("{}/api/v1/integrations/{}", daemon.api, member.id);
            let paused = client
                .post(format!("{base}/pause"))
                .bearer_auth(&member.token)
                .json(&json!({"reason": "chaos"}))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            let resumed = client
                .post(format!("{base}/resume"))
                .bearer_auth(&member.token)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            changes += usize::from(paused && resumed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    changes
}

/// Stops nats-server if it runs, starts it if not.
async fn toggle_nats(nats: &mut NatsServer, tally: &mut Tally) {
    tokio::task::block_in_place(|| {
        if nats.is_running() {
            nats.stop();
        } else {
            nats.start_again();
            tally.nats_restarts += 1;
        }
    });
}

/// Flips a random target between healthy and failing every [`FLIP_EVERY`] until `stop`;
/// returns the number of flips.
async fn flip(targets: Arc<Vec<Target>>, mut rng: StdRng, stop: Arc<AtomicBool>) -> usize {
    let mut modes = vec![Mode::Healthy; targets.len()];
    let mut flips = 0;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(FLIP_EVERY).await;
        let t = rng.random_range(0..targets.len());
        modes[t] = match modes[t] {
            Mode::Healthy => Mode::Failing,
            _ => Mode::Healthy,
        };
        targets[t].set(modes[t]);
        flips += 1;
    }
    flips
}

/// Creates and submits the fleet, eight requests at a time, spread over the tenants and
/// targets.
async fn create_fleet(
    client: &reqwest::Client,
    base: &str,
    targets: &[Target],
    count: usize,
) -> Vec<Member> {
    let tokens: Vec<String> = (0..TENANTS)
        .map(|t| admin_token(&format!("chaos{t}")))
        .collect();
    futures::stream::iter(0..count)
        .map(|i| {
            let token = tokens[i % TENANTS].clone();
            let target = i % TARGETS;
            let body = json!({
                "name": format!("chaos-{i:04}"),
                "type": "host",
                "provider": "http",
                "baseUrl": targets[target].url,
                "healthCheck": {
                    "intervalSeconds": 1,
                    "timeoutSeconds": 1,
                    "degradedAfter": DEGRADED_AFTER,
                    "failedAfter": FAILED_AFTER,
                    "recoverAfter": 1,
                },
            });
            async move {
                let id = crate::storm::create_and_submit(client, base, &token, &body).await;
                Member { id, token, target }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Every integration's status, as a tenant's admin lists them.
async fn statuses(client: &reqwest::Client, base: &str, fleet: &[Member]) -> HashMap<Uuid, String> {
    let mut tokens: Vec<&str> = fleet.iter().map(|m| m.token.as_str()).collect();
    tokens.sort();
    tokens.dedup();
    let mut statuses = HashMap::new();
    for token in tokens {
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/api/v1/integrations?limit=100");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = crate::helpers::json_of(client.get(url).bearer_auth(token)).await;
            for item in page["items"].as_array().unwrap() {
                statuses.insert(
                    item["integrationId"].as_str().unwrap().parse().unwrap(),
                    item["status"].as_str().unwrap().to_owned(),
                );
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    assert_eq!(statuses.len(), fleet.len(), "every integration is listed");
    statuses
}

/// Resumes paused integrations and activates ones never verified (the storm's pauses and
/// verifications against failing targets leave some), until every one is monitored.
async fn monitor_everything(client: &reqwest::Client, base: &str, fleet: &[Member]) {
    poll(
        "every integration is monitored",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let statuses = statuses(client, base, fleet).await;
            let mut all = true;
            for member in fleet {
                let action = match statuses[&member.id].as_str() {
                    "paused" => "resume",
                    "pending_verification" => "activate",
                    _ => continue,
                };
                all = false;
                let _ = client
                    .post(format!("{base}/api/v1/integrations/{}/{action}", member.id))
                    .bearer_auth(&member.token)
                    .send()
                    .await;
            }
            all
        },
    )
    .await
    .unwrap();
}

/// `(integration, outcome)` of every check that started after `since`, in time order (outcome
/// 0 success, 1 failure, 2 skipped).
async fn checks_since(url: &str, since: chrono::DateTime<chrono::Utc>) -> Vec<(Uuid, i16)> {
    use sqlx::Connection;
    let micros = since.timestamp_micros();
    if url.starts_with("sqlite") {
        let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(
            "SELECT integration_id, outcome FROM check_results WHERE checked_at > $1 \
             ORDER BY checked_at",
        )
        .bind(micros)
        .fetch_all(&mut connection)
        .await
        .unwrap()
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(
            "SELECT integration_id, outcome FROM check_results \
             WHERE checked_at > to_timestamp($1::bigint / 1000000.0) ORDER BY checked_at",
        )
        .bind(micros)
        .fetch_all(&mut connection)
        .await
        .unwrap()
    }
}
