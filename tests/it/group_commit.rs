//! Group commit of the monitors' transitions at the store's boundary, on both backends: a
//! burst of concurrent `commit_check` calls (as a fleet of actors makes them) is committed in
//! groups, and each transition is still answered on its own. A table of cases drives it: a
//! stale version, an integration that is gone, a second transition of one integration in the
//! burst (and two that chain, the second at the version the first makes), a fenced claim (PostgreSQL; SQLite's serve lock is its fence, so there the claim
//! holds) and a transition whose own write fails must not fail the others. Afterwards every
//! tenant's audit chain verifies, each integration's events are numbered gap-free, and every
//! audited change has its one event. Also: the flap detector's state committed with a
//! transition (held back: audited without an event) and a monitor's suppression are read
//! back as written, which is what a restarted monitor starts from (DESIGN §10).

use chrono::Utc;
use futures::future::join_all;
use sqlx::Connection;
use uuid::Uuid;

use crate::helpers::{degrade, store_options};
use catalogd::cluster::{shard_of, Claim};
use catalogd::integration::{Integration, IntegrationType};
use catalogd::store::{CheckCommit, Database, StoreError};
use catalogd_actors::{Status, Thresholds};
use catalogd_testkit::{both_backends, Backend, FreshDatabase};

both_backends!(
    a_burst_of_transitions_commits_each_on_its_own,
    the_flap_state_and_the_suppression_are_stored_and_read_back,
);

const SHARDS: u32 = 4;
const TENANTS: usize = 3;
/// Rounds of the case table: enough transitions that groups hold many of each case.
const ROUNDS: usize = 40;

/// What one transition of the burst does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// At the stored version, under a live claim: commits.
    Fresh,
    /// At a version the row is not at: answered with the row as stored.
    StaleVersion,
    /// For an integration that does not exist: answered `Stale(None)`.
    Gone,
    /// Two transitions of one integration at the same version: the first commits, the
    /// second finds the row the first left.
    Twice,
    /// Two transitions of one integration, the second at the version the first makes: both
    /// commit, in order, each with its own event.
    Chained,
    /// Under a claim at an epoch this node does not hold: fenced on PostgreSQL; on SQLite
    /// (no leases) it commits.
    WrongEpoch,
    /// Its event's sequence number is already taken (a row planted in the outbox): its own
    /// write fails, and only it.
    Clash,
}

const CASES: [Case; 7] = [
    Case::Fresh,
    Case::StaleVersion,
    Case::Gone,
    Case::Twice,
    Case::Chained,
    Case::WrongEpoch,
    Case::Clash,
];

/// What a transition's answer must be.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Committed,
    /// Stale, with the row at this version (`None`: gone).
    Stale(Option<i64>),
    Fenced,
    Failed,
}

fn answer(result: &Result<CheckCommit, StoreError>) -> Expected {
    match result {
        Ok(CheckCommit::Committed(_)) => Expected::Committed,
        Ok(CheckCommit::Stale(row)) => Expected::Stale(row.as_ref().map(|row| row.version)),
        Ok(CheckCommit::Fenced) => Expected::Fenced,
        Err(_) => Expected::Failed,
    }
}

async fn a_burst_of_transitions_commits_each_on_its_own(backend: Backend) {
    let database = FreshDatabase::new(backend).await;
    let mut db = Database::connect(&store_options(&database.url, 8))
        .await
        .expect("connect");
    db.identify("node-a");
    let store = db.store(Thresholds::default());

    // This node's claims: on PostgreSQL the leases it takes; SQLite has none to check.
    let mut epochs = [1_i64; SHARDS as usize];
    if let Some(leases) = db.leases() {
        leases.init(SHARDS).await.expect("init");
        let taken = leases
            .acquire("node-a", &[0, 1, 2, 3], std::time::Duration::from_secs(60))
            .await
            .expect("acquire");
        assert_eq!(taken.len(), SHARDS as usize);
        for t in taken {
            epochs[t.claim.shard as usize] = t.claim.epoch;
        }
    }
    let claim = |id: Uuid, wrong: bool| {
        let shard = shard_of(id, SHARDS);
        Claim {
            shard,
            epoch: epochs[shard as usize] + i64::from(wrong),
        }
    };

    // The fleet: one integration per transition of the table (a `Twice` has two transitions).
    let mut fleet: Vec<(Case, Integration)> = Vec::new();
    for round in 0..ROUNDS {
        for (k, case) in CASES.into_iter().enumerate() {
            let tenant = format!("tenant-{}", (round + k) % TENANTS);
            let integration = Integration::new(
                &tenant,
                crate::helpers::minimal_spec(&format!("i-{round}-{k}"), IntegrationType::Registry),
                "alice",
                Utc::now(),
            );
            if case != Case::Gone {
                store.create(&integration).await.expect("create");
            }
            fleet.push((case, integration));
        }
    }
    // Plant the clashing events: sequence 2 is the one the transition would take.
    let clashes: Vec<Uuid> = fleet
        .iter()
        .filter(|(case, _)| *case == Case::Clash)
        .map(|(_, i)| i.integration_id)
        .collect();
    let plant = |id: Uuid| {
        format!(
            "INSERT INTO outbox (event_id, tenant_id, integration_id, sequence, event_type, \
             subject, payload, created_at) VALUES ({}, 'planted', {}, 2, 'integration.planted', \
             'planted', '{{}}', '2025-01-01T00:00:00Z')",
            literal(backend, Uuid::now_v7()),
            literal(backend, id)
        )
    };
    let unplant = |id: Uuid| {
        format!(
            "DELETE FROM outbox WHERE integration_id = {} AND tenant_id = 'planted'",
            literal(backend, id)
        )
    };
    for id in &clashes {
        execute(backend, &database.url, &plant(*id)).await;
    }

    // The burst: every transition at once.
    let mut calls = Vec::new();
    let mut expected = Vec::new();
    for (case, integration) in &fleet {
        let (id, version) = (integration.integration_id, integration.version);
        let mut call = |version: i64, wrong: bool, want: Expected| {
            calls.push(degrade(store.as_ref(), id, version, claim(id, wrong)));
            expected.push((*case, id, want));
        };
        match case {
            Case::Fresh => call(version, false, Expected::Committed),
            Case::StaleVersion => call(version + 1, false, Expected::Stale(Some(version))),
            Case::Gone => call(version, false, Expected::Stale(None)),
            Case::Twice => {
                call(version, false, Expected::Committed);
                call(version, false, Expected::Stale(Some(version + 1)));
            }
            Case::Chained => {
                call(version, false, Expected::Committed);
                call(version + 1, false, Expected::Committed);
            }
            Case::WrongEpoch => call(
                version,
                true,
                match backend {
                    Backend::Postgres => Expected::Fenced,
                    Backend::Sqlite => Expected::Committed,
                },
            ),
            Case::Clash => call(version, false, Expected::Failed),
        }
    }
    let results = join_all(calls).await;
    for ((case, id, want), result) in expected.iter().zip(&results) {
        assert_eq!(&answer(result), want, "{case:?} {id}: {result:?}");
        if let Ok(CheckCommit::Committed(row)) = result {
            assert_eq!(row.status, Status::Degraded, "{case:?} {id}");
        }
    }
    // What was answered is what is stored.
    for ((case, id, want), _) in expected.iter().zip(&results) {
        let stored = store.load(*id).await.expect("load");
        match (want, stored) {
            (Expected::Committed, Some(row)) => {
                assert_eq!(row.status, Status::Degraded);
                let version = if *case == Case::Chained { 3 } else { 2 };
                assert_eq!(row.version, version, "{case:?} {id}");
            }
            (Expected::Stale(None), None) => {}
            (Expected::Stale(Some(_)) | Expected::Fenced | Expected::Failed, Some(row))
                if *case != Case::Twice =>
            {
                assert_eq!(row.status, Status::Draft, "{case:?} {id}: untouched");
                assert_eq!(row.version, 1, "{case:?} {id}: untouched");
            }
            (_, Some(row)) if *case == Case::Twice => assert_eq!(row.version, 2),
            (want, row) => panic!("{case:?} {id}: answered {want:?}, stored {row:?}"),
        }
    }

    // The chains verify and the outbox agrees with them, once the planted rows are gone.
    for id in &clashes {
        execute(backend, &database.url, &unplant(*id)).await;
    }
    let report = store.verify_audit(None).await.expect("verify");
    assert_eq!(report.problem, None, "{report:?}");
    let committed = results
        .iter()
        .filter(|r| matches!(r, Ok(CheckCommit::Committed(_))))
        .count();
    let created = fleet.iter().filter(|(case, _)| *case != Case::Gone).count();
    assert_eq!(report.entries as usize, created + committed);
    let agreement = crate::storm::assert_store_audit_outbox_agree(&database.url).await;
    assert_eq!(agreement.transitions, committed);
}

/// `id` as a literal of the backend's uuid column (SQLite stores the 16 bytes).
fn literal(backend: Backend, id: Uuid) -> String {
    match backend {
        Backend::Sqlite => format!("x'{}'", id.simple()),
        Backend::Postgres => format!("'{id}'"),
    }
}

async fn execute(backend: Backend, url: &str, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sql)
                .execute(&mut connection)
                .await
                .expect(sql);
        }
        Backend::Postgres => {
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sql)
                .execute(&mut connection)
                .await
                .expect(sql);
        }
    }
}

async fn the_flap_state_and_the_suppression_are_stored_and_read_back(backend: Backend) {
    use catalogd::integration::CheckSummary;
    use catalogd_actors::{CheckOutcome, FailureClass, FlapState, Lifecycle};

    let database = FreshDatabase::new(backend).await;
    let db = Database::connect(&store_options(&database.url, 2))
        .await
        .expect("connect");
    let store = db.store(Thresholds::default());
    let dependency = Integration::new(
        "acme",
        crate::helpers::minimal_spec("registry", IntegrationType::Registry),
        "alice",
        Utc::now(),
    );
    let mut spec = crate::helpers::minimal_spec("pipeline", IntegrationType::Ci);
    spec.depends_on = vec![dependency.integration_id];
    let integration = Integration::new("acme", spec, "alice", Utc::now());
    store.create(&dependency).await.expect("create");
    store.create(&integration).await.expect("create");
    let id = integration.integration_id;
    let times: Vec<chrono::DateTime<Utc>> = (0..4)
        .map(|minutes| {
            chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc)
                + chrono::TimeDelta::minutes(minutes)
        })
        .collect();
    // A transition while flapping: committed and audited, no event (sequence stays at 1).
    let flap = FlapState {
        flapping: true,
        transitions: times.clone(),
    };
    let committed = store
        .commit_check(
            id,
            1,
            Lifecycle {
                status: Status::Degraded,
                consecutive_failures: 1,
                consecutive_successes: 0,
            },
            None,
            Some(flap.clone()),
            CheckSummary {
                outcome: CheckOutcome::Failure(FailureClass::Connect),
                started_at: Utc::now(),
                latency_ms: 3,
            },
            Utc::now(),
            None,
        )
        .await
        .expect("commit");
    let CheckCommit::Committed(row) = committed else {
        panic!("{committed:?}")
    };
    assert_eq!((row.status, row.version), (Status::Degraded, 2));
    let loaded = store.load(id).await.unwrap().unwrap();
    assert_eq!(loaded.flap(), flap);
    assert!(loaded.flapping);
    assert_eq!(loaded.depends_on, [dependency.integration_id]);
    // The suppression: written without a version bump, read back by GET and by the engine's
    // dependency read (tenant-scoped: another tenant reads nothing).
    let stored = store
        .set_suppressed_by(id, &[dependency.integration_id], None)
        .await
        .expect("suppress");
    assert!(
        matches!(stored, CheckCommit::Committed(ref row) if row.version == 2),
        "{stored:?}"
    );
    let got = store.get("acme", id).await.unwrap().unwrap();
    assert_eq!(got.suppressed_by, [dependency.integration_id]);
    // The list shows what the group commit and the suppression wrote (its rows' JSON is
    // kept by triggers, and the check fields are rendered at read time): the item is the GET,
    // field for field.
    let query = catalogd::store::ListQuery {
        limit: 10,
        ..Default::default()
    };
    let page = store.list_json("acme", &query).await.expect("list");
    let items: Vec<serde_json::Value> = serde_json::from_str(&format!("[{}]", page.items))
        .unwrap_or_else(|e| panic!("{e}: {}", page.items));
    let item = items
        .iter()
        .find(|item| item["integrationId"] == id.to_string())
        .expect("listed");
    assert_eq!(*item, serde_json::to_value(&got).unwrap());
    assert_eq!(
        (&item["status"], &item["version"], &item["flapping"]),
        (
            &serde_json::json!("degraded"),
            &serde_json::json!(2),
            &serde_json::json!(true)
        )
    );
    let read = store
        .dependencies("acme", &[id, dependency.integration_id])
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    assert!(read.contains(&(id, Status::Degraded, vec![dependency.integration_id])));
    assert!(store
        .dependencies("globex", &[id])
        .await
        .unwrap()
        .is_empty());
    // Audited, and no event beyond `created`.
    let outbox = crate::helpers::read_rows::<(i64,)>(
        &database.url,
        "SELECT sequence FROM outbox WHERE integration_id = $1",
        Some(id),
    )
    .await;
    assert_eq!(outbox, [(1,)]);
    let gone = store
        .set_suppressed_by(Uuid::now_v7(), &[], None)
        .await
        .expect("suppress");
    assert!(matches!(gone, CheckCommit::Stale(None)));
}
