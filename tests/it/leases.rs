//! The lease tables and the write fence on a real PostgreSQL, at the store's boundary: two
//! nodes on one database, one taking a shard over from the other once its lease expired, and
//! every kind of monitor write the stale owner then tries (a transition with its audit entry
//! and event, a batch of check results, the relay's marks) refused by the database, with the
//! takeover log proving that nothing written under the old epoch landed after the takeover.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{degrade, store_options};
use catalogd::cluster::{shard_of, Claim, Ownership, WriteKind};
use catalogd::integration::{Integration, IntegrationType};
use catalogd::store::history::{HistoryOptions, HistoryWriter};
use catalogd::store::leases::LeaseStore;
use catalogd::store::outbox::Mark;
use catalogd::store::{CheckCommit, Database, Store, StoreError};
use catalogd_actors::{CheckOutcome, CheckReport, Lifecycle, Status, SystemClock, Thresholds};
use catalogd_testkit::{eventually, Backend, FreshDatabase};
use chrono::Utc;
use sqlx::{Connection, PgConnection};

const SHARDS: u32 = 4;
const TTL: Duration = Duration::from_millis(1500);

/// One node: its database handle (writing as `node`), catalog store and lease store.
struct Node {
    name: &'static str,
    database: Database,
    store: Arc<dyn Store>,
    leases: LeaseStore,
}

async fn node(url: &str, name: &'static str) -> Node {
    let mut database = Database::connect(&store_options(url, 4))
        .await
        .expect("connect");
    database.identify(name);
    let store = database.store(Thresholds::default());
    let leases = database.leases().expect("PostgreSQL has leases");
    leases.init(SHARDS).await.expect("init");
    Node {
        name,
        database,
        store,
        leases,
    }
}

/// The transition a monitor commits when a failing check degrades the integration.
async fn count(db: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

/// Rows written under an epoch of a shard after a later epoch of it was taken: the
/// fencing invariant says there are none.
const LATE_WRITES: &str = "SELECT (SELECT count(*) FROM audit_log a JOIN cluster_takeovers t \
       ON t.shard = a.shard AND t.epoch > a.epoch WHERE a.written_at > t.taken_at) \
     + (SELECT count(*) FROM outbox o JOIN cluster_takeovers t \
       ON t.shard = o.shard AND t.epoch > o.epoch WHERE o.written_at > t.taken_at)";

#[tokio::test]
async fn a_stale_owners_writes_are_fenced_and_the_takeover_log_proves_it() {
    let database = FreshDatabase::new(Backend::Postgres).await;
    let a = node(&database.url, "node-a").await;
    let b = node(&database.url, "node-b").await;
    let mut raw = PgConnection::connect(&database.url).await.unwrap();

    let integration = Integration::new(
        "t1",
        crate::helpers::minimal_spec("fenced", IntegrationType::Registry),
        "alice",
        Utc::now(),
    );
    a.store.create(&integration).await.expect("create");
    let shard = shard_of(integration.integration_id, SHARDS);

    // A takes every shard; B can take none while A's leases live.
    let taken = a.leases.acquire(a.name, &[0, 1, 2, 3], TTL).await.unwrap();
    assert_eq!(taken.len(), SHARDS as usize);
    assert!(taken.iter().all(|t| t.previous_owner.is_none()));
    let claim_a = taken.iter().find(|t| t.claim.shard == shard).unwrap().claim;
    assert!(b
        .leases
        .acquire(b.name, &[shard], TTL)
        .await
        .unwrap()
        .is_empty());

    // A's write under its live claim lands, marked with its node, shard and epoch.
    let CheckCommit::Committed(degraded) = degrade(
        a.store.as_ref(),
        integration.integration_id,
        integration.version,
        claim_a,
    )
    .await
    .unwrap() else {
        panic!("a live claim commits");
    };
    let by_a = format!(
        "SELECT count(*) FROM audit_log WHERE written_by = 'node-a' AND shard = {shard} AND epoch = {}",
        claim_a.epoch
    );
    assert_eq!(count(&mut raw, &by_a).await, 1);

    // A stops renewing (it is stopped, say); once its lease expires B takes the shard over,
    // bumping the epoch, and the takeover is logged.
    let taken_b = eventually(
        "B takes the expired shard",
        Duration::from_secs(10),
        || async {
            let taken = b.leases.acquire(b.name, &[shard], TTL).await.unwrap();
            (!taken.is_empty()).then_some(taken)
        },
    )
    .await;
    let claim_b = taken_b[0].claim;
    assert_eq!(claim_b.epoch, claim_a.epoch + 1);
    assert_eq!(taken_b[0].previous_owner.as_deref(), Some("node-a"));

    // A wakes: its transition, under the old claim, is refused, and nothing of it is written.
    let audit_before = count(&mut raw, "SELECT count(*) FROM audit_log").await;
    let outbox_before = count(&mut raw, "SELECT count(*) FROM outbox").await;
    let fenced = degrade(
        a.store.as_ref(),
        degraded.integration_id,
        degraded.version,
        claim_a,
    )
    .await
    .unwrap();
    assert_eq!(fenced, CheckCommit::Fenced);
    assert_eq!(
        count(&mut raw, "SELECT count(*) FROM audit_log").await,
        audit_before
    );
    assert_eq!(
        count(&mut raw, "SELECT count(*) FROM outbox").await,
        outbox_before
    );

    // Its batch of check results: refused, counted, and reported as lost.
    let (ownership, mut lost) = Ownership::leased(a.name, SHARDS);
    let history = a.database.history(HistoryOptions::default());
    let writer =
        HistoryWriter::spawn_fenced(history, Arc::new(SystemClock), Some(ownership.clone()));
    let results = "SELECT count(*) FROM check_results";
    let results_before = count(&mut raw, results).await;
    let report = CheckReport {
        outcome: CheckOutcome::Success,
        started_at: Utc::now(),
        latency: Duration::from_millis(3),
        lateness: Duration::ZERO,
    };
    let lifecycle = Lifecycle {
        status: Status::Degraded,
        consecutive_failures: 0,
        consecutive_successes: 1,
    };
    writer.record_under(
        integration.integration_id,
        degraded.version,
        lifecycle,
        &report,
        Some(claim_a),
        false,
    );
    writer.flush().await;
    assert_eq!(count(&mut raw, results).await, results_before);
    assert_eq!(ownership.counters().fenced(WriteKind::Results), 1);
    assert_eq!(lost.recv().await, Some(claim_a));
    // B's result under its claim lands.
    let (ownership_b, _) = Ownership::leased(b.name, SHARDS);
    let writer_b = HistoryWriter::spawn_fenced(
        b.database.history(HistoryOptions::default()),
        Arc::new(SystemClock),
        Some(ownership_b),
    );
    writer_b.record_under(
        integration.integration_id,
        degraded.version,
        lifecycle,
        &report,
        Some(claim_b),
        false,
    );
    writer_b.flush().await;
    assert_eq!(count(&mut raw, results).await, results_before + 1);

    // The relay's marks: A's refused, B's written.
    let event_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT event_id FROM outbox WHERE written_by = 'node-a' AND epoch IS NOT NULL",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    let outbox = a.database.outbox();
    let marked = outbox
        .mark_published(
            &[Mark {
                event_id,
                claim: Some(claim_a),
            }],
            a.name,
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!((marked.marked, marked.fenced), (0, vec![claim_a]));
    let marked = b
        .database
        .outbox()
        .mark_published(
            &[Mark {
                event_id,
                claim: Some(claim_b),
            }],
            b.name,
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!((marked.marked, marked.fenced), (1, vec![]));

    // B writes a transition under its own claim; the invariant holds over everything.
    let CheckCommit::Committed(_) = degrade(
        b.store.as_ref(),
        degraded.integration_id,
        degraded.version,
        claim_b,
    )
    .await
    .unwrap() else {
        panic!("the new owner commits");
    };
    assert_eq!(count(&mut raw, LATE_WRITES).await, 0);
    let takeovers = count(&mut raw, "SELECT count(*) FROM cluster_takeovers").await;
    assert_eq!(takeovers, i64::from(SHARDS) + 1);
}

#[tokio::test]
async fn renewal_keeps_a_lease_and_release_hands_it_over_at_once() {
    let database = FreshDatabase::new(Backend::Postgres).await;
    let a = node(&database.url, "node-a").await;
    let b = node(&database.url, "node-b").await;
    // A node starting up is not given shards by the others until it is ready.
    a.leases.register(a.name, TTL).await.unwrap();
    let nodes = b.leases.heartbeat(b.name, TTL).await.unwrap();
    assert_eq!(nodes, vec!["node-b".to_owned()], "node-a is still starting");
    let nodes = a.leases.heartbeat(a.name, TTL).await.unwrap();
    assert_eq!(
        nodes,
        vec!["node-a".to_owned()],
        "neither is ready: each sees itself"
    );
    a.leases.ready(a.name).await.unwrap();
    b.leases.ready(b.name).await.unwrap();
    let nodes = b.leases.heartbeat(b.name, TTL).await.unwrap();
    assert_eq!(nodes, vec!["node-a".to_owned(), "node-b".to_owned()]);
    // Restarted under its id, a node is starting again.
    b.leases.register(b.name, TTL).await.unwrap();
    let nodes = a.leases.heartbeat(a.name, TTL).await.unwrap();
    assert_eq!(nodes, vec!["node-a".to_owned()]);
    b.leases.ready(b.name).await.unwrap();

    let claims: Vec<Claim> = a
        .leases
        .acquire(a.name, &[0, 1], TTL)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.claim)
        .collect();
    // Renewed past several TTLs, the lease never becomes B's.
    for _ in 0..4 {
        tokio::time::sleep(TTL / 2).await;
        assert_eq!(a.leases.renew(a.name, &claims, TTL).await.unwrap(), claims);
        assert!(b
            .leases
            .acquire(b.name, &[0, 1], TTL)
            .await
            .unwrap()
            .is_empty());
    }
    // A claim at another epoch, or another node's, renews nothing.
    let wrong = Claim {
        shard: 0,
        epoch: claims[0].epoch + 1,
    };
    assert!(a
        .leases
        .renew(a.name, &[wrong], TTL)
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .leases
        .renew(b.name, &claims, TTL)
        .await
        .unwrap()
        .is_empty());

    // Released: B takes it at once, not after a TTL; A's old claim no longer renews.
    a.leases.release(a.name, &[0]).await.unwrap();
    let taken = b.leases.acquire(b.name, &[0], TTL).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].previous_owner, None, "a release leaves no owner");
    assert_eq!(
        a.leases.renew(a.name, &claims, TTL).await.unwrap(),
        vec![claims[1]]
    );

    // A node killed and restarted under its id takes its live shards back at once, at a new
    // epoch (what the killed run might still write is fenced off).
    let before = b.leases.acquire(b.name, &[3], TTL).await.unwrap()[0].claim;
    let restarted = node(&database.url, "node-b").await;
    let again = restarted
        .leases
        .acquire(restarted.name, &[3], TTL)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "no wait for the old lease");
    assert_eq!(again[0].claim.epoch, before.epoch + 1);
    assert!(b
        .leases
        .renew(b.name, &[before], TTL)
        .await
        .unwrap()
        .is_empty());

    // A node dead for long (an hour) is forgotten; one that expired just now is kept.
    let mut raw = PgConnection::connect(&database.url).await.unwrap();
    for (node, expired) in [("node-gone", "2 hours"), ("node-recent", "1 minute")] {
        sqlx::query(&format!(
            "INSERT INTO cluster_nodes (node_id, started_at, expires_at) \
             VALUES ($1, now() - interval '3 hours', now() - interval '{expired}')"
        ))
        .bind(node)
        .execute(&mut raw)
        .await
        .unwrap();
    }
    a.leases.forget_dead_nodes().await.unwrap();
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT node_id FROM cluster_nodes ORDER BY node_id")
            .fetch_all(&mut raw)
            .await
            .unwrap();
    assert_eq!(rows, ["node-a", "node-b", "node-recent"]);

    // Leaving releases everything and removes the node.
    b.leases.heartbeat(b.name, TTL).await.unwrap();
    a.leases.leave(a.name).await.unwrap();
    let nodes = b.leases.heartbeat(b.name, TTL).await.unwrap();
    assert_eq!(nodes, vec!["node-b".to_owned()]);
    let rows = b.leases.shards().await.unwrap();
    assert!(rows
        .iter()
        .all(|row| row.owner.as_deref() != Some("node-a")));
}

#[tokio::test]
async fn the_shard_count_is_fixed_per_database() {
    let database = FreshDatabase::new(Backend::Postgres).await;
    let _a = node(&database.url, "node-a").await;
    let other = Database::connect(&store_options(&database.url, 4))
        .await
        .unwrap();
    let error = other.leases().unwrap().init(SHARDS * 2).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::ShardCount {
                configured: 8,
                stored: 4
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("set cluster.shards = 4"),
        "{error}"
    );
}
