//! Health history on SQLite and PostgreSQL: the batching writer, the version guard, uptime
//! ratios from raw results and rollups, pruning, history pages, tenant scoping, and the REST
//! routes through the real application. Every test in `both_backends!` runs twice.
//!
//! `throughput` (ignored) prints the persisted results per second of the writer against a
//! naive one-statement-per-result baseline, and the bytes per stored row:
//! `cargo test --release --test it -- --ignored --nocapture history::throughput`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, SqliteConnection};
use uuid::Uuid;

use catalogd::auth::SCOPE_READ;
use catalogd::config::Config;
use catalogd::integration::{Author, Change, Integration, IntegrationSpec, IntegrationType};
use catalogd::startup::{store_options, Application};
use catalogd::store::history::{
    HistoryItem, HistoryOptions, HistoryQuery, HistoryStore, HistoryWriter, Resolution, Uptime,
};
use catalogd::store::{self, ListQuery, Store, StoreOptions};
use catalogd_actors::ports::CheckReport;
use catalogd_actors::{CheckOutcome, FailureClass, Input, Lifecycle, Status, SystemClock};

both_backends!(
    writer_batches_thousands_of_results_into_few_statements,
    writer_flushes_on_interval_on_size_and_on_close,
    writer_starts_a_write_once_enough_results_wait,
    stale_versions_never_overwrite_observations,
    settled_successes_leave_the_row_and_reads_show_them,
    uptime_windows_from_raw_results_and_rollups,
    pruning_removes_only_expired_rows,
    history_pages_return_each_result_once_in_order,
    history_is_tenant_scoped,
    rest_routes_serve_health_and_history,
);

// --- Fixtures -------------------------------------------------------------------------------

use catalogd_testkit::{both_backends, eventually, Backend, FreshDatabase};

/// A fresh, migrated database with the integration store and a history store on it.
struct TestDb {
    backend: Backend,
    options: StoreOptions,
    store: Arc<dyn Store>,
    history: HistoryStore,
    _database: FreshDatabase,
}

impl TestDb {
    async fn fresh(backend: Backend) -> TestDb {
        let database = FreshDatabase::new(backend).await;
        let options = StoreOptions {
            url: database.url.clone(),
            password: None,
            max_connections: 8,
            sqlite_synchronous_full: false,
            allow_unsafe_durability: false,
            default_thresholds: Default::default(),
        };
        let store = store::open(&options).await.expect("open the store");
        let history = HistoryStore::open(&options, manual())
            .await
            .expect("open the history");
        TestDb {
            backend,
            options,
            store,
            history,
            _database: database,
        }
    }
}

/// Default options without the background maintenance: tests run it with explicit times.
fn manual() -> HistoryOptions {
    HistoryOptions {
        maintenance_interval: None,
        ..HistoryOptions::default()
    }
}

impl TestDb {
    /// Another history store on this database, with other options.
    async fn history_with(&self, options: HistoryOptions) -> HistoryStore {
        HistoryStore::open(&self.options, options).await.unwrap()
    }

    async fn create(&self, tenant: &str, name: &str) -> Integration {
        let integration = Integration::new(tenant, spec(name), "alice", Utc::now());
        self.store.create(&integration).await.expect("create");
        integration
    }

    /// An integration created active, as its monitor would have made it.
    async fn create_active(&self, tenant: &str, name: &str) -> Integration {
        let mut integration = Integration::new(tenant, spec(name), "alice", Utc::now());
        integration.status = Status::Active;
        self.store.create(&integration).await.expect("create");
        integration
    }

    async fn get(&self, integration: &Integration) -> Integration {
        self.store
            .get(&integration.tenant_id, integration.integration_id)
            .await
            .unwrap()
            .expect("still there")
    }

    /// One `SELECT COUNT(*)` through a connection of our own.
    async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}"), None)
            .await
    }

    /// The row's stored `last_tested_at`, as the database's text, read around the store.
    async fn stored_last_tested_at(&self, id: Uuid) -> Option<String> {
        self.scalar(
            "SELECT CAST(last_tested_at AS TEXT) FROM integrations WHERE integration_id = $1",
            Some(id),
        )
        .await
    }

    /// One value, read through a connection of our own (`$1` is `id`, when given).
    async fn scalar<T>(&self, sql: &str, id: Option<Uuid>) -> T
    where
        T: Send
            + Unpin
            + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>,
    {
        match self.backend {
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(&self.options.url).await.unwrap();
                let query = sqlx::query_scalar(sql);
                let query = match id {
                    Some(id) => query.bind(id),
                    None => query,
                };
                query.fetch_one(&mut connection).await.unwrap()
            }
            Backend::Postgres => {
                let mut connection = PgConnection::connect(&self.options.url).await.unwrap();
                let query = sqlx::query_scalar(sql);
                let query = match id {
                    Some(id) => query.bind(id),
                    None => query,
                };
                query.fetch_one(&mut connection).await.unwrap()
            }
        }
    }

    /// Writes checks of one integration (as the writer would, in one batch).
    async fn write(&self, integration: &Integration, checks: &[(DateTime<Utc>, CheckOutcome)]) {
        let results: Vec<_> = checks
            .iter()
            .map(|(time, outcome)| {
                (
                    integration.integration_id,
                    integration.version,
                    lifecycle(0, 0),
                    report(*time, *outcome),
                )
            })
            .collect();
        self.history.write(&results).await.expect("write history");
    }
}

/// A spec with only what is required.
fn spec(name: &str) -> IntegrationSpec {
    crate::helpers::minimal_spec(name, IntegrationType::Host)
}

fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time)
        .unwrap()
        .with_timezone(&Utc)
}

fn report(started_at: DateTime<Utc>, outcome: CheckOutcome) -> CheckReport {
    CheckReport {
        outcome,
        started_at,
        latency: Duration::from_micros(12_345),
        lateness: Duration::from_micros(250),
    }
}

fn lifecycle(consecutive_failures: u32, consecutive_successes: u32) -> Lifecycle {
    Lifecycle {
        status: Status::Active,
        consecutive_failures,
        consecutive_successes,
    }
}

const OK: CheckOutcome = CheckOutcome::Success;
const FAIL: CheckOutcome = CheckOutcome::Failure(FailureClass::HttpStatus);
const SKIP: CheckOutcome = CheckOutcome::Skipped;

// --- The writer -----------------------------------------------------------------------------

/// A success after a success of an active integration changes nothing on its row but the
/// time, so the writer leaves the row alone; a GET and the list (the database's JSON) still
/// show that check, the same way, with every precision of time chrono writes.
async fn settled_successes_leave_the_row_and_reads_show_them(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let created = db.create_active("acme", "steady").await;
    let id = created.integration_id;
    let writer = HistoryWriter::spawn(db.history.clone(), Arc::new(SystemClock));
    // Checks after the row's last change (one before it is of an older version), from a
    // whole minute.
    let t0 = DateTime::from_timestamp((created.modified_at.timestamp() / 60 + 2) * 60, 0).unwrap();
    let text = |at: DateTime<Utc>| json!(at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    let listed = || async {
        let page = db
            .store
            .list_json(
                "acme",
                &ListQuery {
                    limit: 10,
                    ..ListQuery::default()
                },
            )
            .await
            .unwrap();
        let items: Value = serde_json::from_str(&format!("[{}]", page.items)).unwrap();
        items[0].clone()
    };
    let shown = || async {
        let resource = serde_json::to_value(db.get(&created).await).unwrap();
        let item = listed().await;
        assert_eq!(item, resource, "the list's item is the GET's resource");
        (
            resource["lastTestedAt"].clone(),
            resource["lastTestSuccess"].clone(),
            resource["consecutiveFailures"].clone(),
        )
    };

    // The first success is written.
    writer.record(id, created.version, lifecycle(0, 1), &report(t0, OK));
    writer.flush().await;
    let written = db.stored_last_tested_at(id).await;
    assert!(written.is_some(), "the first success is written to the row");
    assert_eq!(shown().await, (text(t0), json!(true), json!(0)));

    // Settled successes: the row stays, reads show the newest, at each precision.
    for (n, (offset, digits)) in [
        (TimeDelta::microseconds(61_000_123), ".000123Z"),
        (TimeDelta::milliseconds(122_250), ".250Z"),
        (TimeDelta::seconds(183), ":03Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let expected = text(t0 + offset);
        assert!(expected.as_str().unwrap().ends_with(digits), "{expected}");
        writer.record(
            id,
            created.version,
            lifecycle(0, 2 + n as u32),
            &report(t0 + offset, OK),
        );
        writer.flush().await;
        assert_eq!(
            db.stored_last_tested_at(id).await,
            written,
            "the row is not rewritten"
        );
        assert_eq!(shown().await, (expected, json!(true), json!(0)));
    }

    // A skipped check is no test: the newest check that ran still shows.
    writer.record(
        id,
        created.version,
        lifecycle(0, 4),
        &report(t0 + TimeDelta::seconds(240), SKIP),
    );
    writer.flush().await;
    assert_eq!(shown().await.0, text(t0 + TimeDelta::seconds(183)));

    // A failure is written, and shown.
    writer.record(
        id,
        created.version,
        lifecycle(1, 0),
        &report(t0 + TimeDelta::seconds(300), FAIL),
    );
    writer.flush().await;
    assert_ne!(
        db.stored_last_tested_at(id).await,
        written,
        "a failure is written"
    );
    assert_eq!(
        shown().await,
        (text(t0 + TimeDelta::seconds(300)), json!(false), json!(1))
    );
    writer.close().await;
}

async fn writer_batches_thousands_of_results_into_few_statements(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let history = db
        .history_with(HistoryOptions {
            batch_size: 1000,
            // Only full batches: no write starts before 1,000 results wait.
            write_at: 1000,
            flush_interval: Duration::from_secs(3600),
            ..manual()
        })
        .await;
    let writer = HistoryWriter::spawn(history, Arc::new(SystemClock));
    let mut integrations = Vec::new();
    for n in 0..100 {
        integrations.push(db.create("acme", &format!("fleet-{n:03}")).await);
    }
    let base = at("2025-03-01T00:00:00Z");
    for round in 0..100u32 {
        let outcome = if round % 10 == 9 { FAIL } else { OK };
        for integration in &integrations {
            writer.record(
                integration.integration_id,
                integration.version,
                lifecycle(round % 10 / 9, round + 1),
                &report(base + TimeDelta::minutes(round.into()), outcome),
            );
        }
    }
    let probe = writer.clone();
    writer.close().await;
    let stats = probe.counters();
    assert_eq!(
        (
            stats.written,
            stats.batches,
            stats.dropped,
            stats.failed,
            stats.stale
        ),
        (10_000, 10, 0, 0, 0),
        "10,000 results in 10 batches of 1,000: {stats:?}"
    );
    assert_eq!(db.count("check_results").await, 10_000);
    for integration in &integrations {
        let row = db.get(integration).await;
        assert_eq!(
            row.last_tested_at,
            Some(base + TimeDelta::minutes(99)),
            "the last check of the last batch"
        );
        assert_eq!(row.last_test_success, Some(false));
        assert_eq!(
            (row.consecutive_failures, row.consecutive_successes),
            (1, 100)
        );
        assert_eq!(
            row.version, integration.version,
            "observations keep the version"
        );
    }
}

async fn writer_flushes_on_interval_on_size_and_on_close(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let integration = db.create("acme", "flushed").await;
    let record = |writer: &HistoryWriter, minute: i64| {
        writer.record(
            integration.integration_id,
            integration.version,
            lifecycle(0, 1),
            &report(at("2025-03-01T00:00:00Z") + TimeDelta::minutes(minute), OK),
        );
    };

    // On the interval: three results and no flush request.
    let timed = HistoryWriter::spawn(
        db.history_with(HistoryOptions {
            batch_size: 100,
            flush_interval: Duration::from_millis(50),
            ..manual()
        })
        .await,
        Arc::new(SystemClock),
    );
    for minute in 0..3 {
        record(&timed, minute);
    }
    eventually("the interval flush", Duration::from_secs(5), || {
        timed.counters().written == 3
    })
    .await;
    assert!(timed.counters().batches <= 3);
    timed.clone().close().await;

    // On size: 250 results with batches of 100 and an interval that never comes.
    let sized = HistoryWriter::spawn(
        db.history_with(HistoryOptions {
            batch_size: 100,
            flush_interval: Duration::from_secs(3600),
            ..manual()
        })
        .await,
        Arc::new(SystemClock),
    );
    for minute in 100..350 {
        record(&sized, minute);
    }
    eventually("two full batches", Duration::from_secs(5), || {
        sized.counters().written == 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = sized.counters();
    assert_eq!((stats.written, stats.batches), (200, 2), "{stats:?}");
    assert_eq!(db.count("check_results").await, 203);

    // An explicit flush writes the rest now; close writes what came after it.
    record(&sized, 400);
    sized.flush().await;
    assert_eq!(sized.counters().written, 251);
    record(&sized, 401);
    let probe = sized.clone();
    sized.close().await;
    let stats = probe.counters();
    assert_eq!((stats.written, stats.batches), (252, 4), "{stats:?}");
    assert_eq!(db.count("check_results").await, 255);
    // After close, results are dropped and counted, never blocking.
    record(&probe, 500);
    assert_eq!(probe.counters().dropped, 1);
}

/// The writer's group commit: a write starts once `write_at` results wait, without a full
/// batch or the interval; fewer wait for the interval (or a flush).
async fn writer_starts_a_write_once_enough_results_wait(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let integration = db.create("acme", "pipelined").await;
    let writer = HistoryWriter::spawn(
        db.history_with(HistoryOptions {
            batch_size: 100,
            write_at: 10,
            flush_interval: Duration::from_secs(3600),
            ..manual()
        })
        .await,
        Arc::new(SystemClock),
    );
    for minute in 0..35 {
        writer.record(
            integration.integration_id,
            integration.version,
            lifecycle(0, 1),
            &report(at("2025-03-01T00:00:00Z") + TimeDelta::minutes(minute), OK),
        );
    }
    // Written in writes of at least 10 (however the recording and the writes interleave),
    // so at most 9 are left to wait for the interval.
    eventually("writes of what waits", Duration::from_secs(5), || {
        writer.counters().written >= 26
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = writer.counters();
    assert!(
        stats.batches <= stats.written / 10,
        "writes of 10 or more: {stats:?}"
    );
    writer.flush().await;
    assert_eq!(writer.counters().written, 35);
    assert_eq!(db.count("check_results").await, 35);
    writer.close().await;
}

async fn stale_versions_never_overwrite_observations(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let created = db.create("acme", "guarded").await;
    let actor = Author {
        tenant_id: "acme".to_owned(),
        subject: "bob".to_owned(),
    };
    let submit = Change::Lifecycle {
        input: Input::Submit,
        reason: None,
        ticket: None,
    };
    let submitted = db
        .store
        .change(&actor, created.integration_id, submit, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(submitted.version, created.version + 1);
    let writer = HistoryWriter::spawn(db.history.clone(), Arc::new(SystemClock));
    let id = created.integration_id;
    let t0 = at("2025-03-01T00:00:00Z");

    // Seen by the engine at the version before the submit: refused.
    writer.record(id, created.version, lifecycle(4, 0), &report(t0, FAIL));
    writer.flush().await;
    let row = db.get(&created).await;
    assert_eq!(
        (row.consecutive_failures, row.last_tested_at),
        (0, None),
        "a stale batch leaves the row alone"
    );
    assert_eq!(writer.counters().stale, 1);

    // At the current version: applied, without bumping it.
    let t1 = t0 + TimeDelta::minutes(1);
    writer.record(id, submitted.version, lifecycle(1, 0), &report(t1, FAIL));
    writer.flush().await;
    let row = db.get(&created).await;
    assert_eq!(
        (
            row.consecutive_failures,
            row.last_tested_at,
            row.last_test_success
        ),
        (1, Some(t1), Some(false))
    );
    assert_eq!(row.version, submitted.version);

    // A REST change between the check and the flush wins.
    writer.record(
        id,
        submitted.version,
        lifecycle(2, 0),
        &report(t1 + TimeDelta::minutes(1), FAIL),
    );
    let update = Change::Update {
        expected_version: submitted.version,
        spec: spec("renamed"),
    };
    let updated = db
        .store
        .change(&actor, id, update, Utc::now())
        .await
        .unwrap()
        .unwrap();
    writer.flush().await;
    let row = db.get(&created).await;
    assert_eq!(
        (row.name.as_str(), row.version),
        ("renamed", updated.version)
    );
    assert_eq!(row.consecutive_failures, updated.consecutive_failures);
    assert_eq!(writer.counters().stale, 2);
    // The results themselves are history either way.
    assert_eq!(db.count("check_results").await, 3);
    writer.close().await;
}

// --- Uptime ---------------------------------------------------------------------------------

/// The time of every scenario's reads: rollups are complete up to 12:00 today, the daily
/// ones up to midnight.
const NOW: &str = "2025-03-31T12:30:00Z";

/// What an integration did, checked every 10 minutes for 31 days before `NOW`.
enum Base {
    Nothing,
    Success,
}

struct Scenario {
    name: &'static str,
    base: Base,
    /// Checks replaced (same time) or added.
    overrides: &'static [(&'static str, CheckOutcome)],
    /// 1h, 24h, 7d, 30d as `successes/total`, `-` for no data.
    expected: &'static str,
}

/// Checks every 10 minutes at `NOW - k × 10 min` for k = 1..=4464 (31 days). A window
/// `[start, NOW)` holds them from `start` on: 6 in the last hour, 144 in 24 h; the 7-day
/// window starts on the whole hour (1,005 checks from 13:00 on 24 March), the 30-day window
/// on the whole day (4,251 checks from 2 March).
const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "no checks at all",
        base: Base::Nothing,
        overrides: &[],
        expected: "- - - -",
    },
    Scenario {
        name: "only skipped checks (offline mode)",
        base: Base::Nothing,
        overrides: &[
            ("2025-03-31T12:20:00Z", SKIP),
            ("2025-03-31T09:00:00Z", SKIP),
            ("2025-03-20T09:00:00Z", SKIP),
        ],
        expected: "- - - -",
    },
    Scenario {
        name: "always up",
        base: Base::Success,
        overrides: &[],
        expected: "6/6 144/144 1005/1005 4251/4251",
    },
    Scenario {
        name: "failing for the last half hour (raw, not rolled up)",
        base: Base::Success,
        overrides: &[
            ("2025-03-31T12:20:00Z", FAIL),
            ("2025-03-31T12:10:00Z", FAIL),
            ("2025-03-31T12:00:00Z", FAIL),
        ],
        expected: "3/6 141/144 1002/1005 4248/4251",
    },
    Scenario {
        name: "the first check of the hour window counts, the one before does not",
        base: Base::Success,
        overrides: &[
            ("2025-03-31T11:30:00Z", FAIL),
            ("2025-03-31T11:20:00Z", FAIL),
        ],
        expected: "5/6 142/144 1003/1005 4249/4251",
    },
    Scenario {
        name: "an outage this morning (hourly rollup)",
        base: Base::Success,
        overrides: &[
            ("2025-03-31T05:00:00Z", FAIL),
            ("2025-03-31T05:10:00Z", FAIL),
            ("2025-03-31T05:20:00Z", FAIL),
        ],
        expected: "6/6 141/144 1002/1005 4248/4251",
    },
    Scenario {
        name: "an hour down two days ago (hourly rollup, raw pruned)",
        base: Base::Success,
        overrides: &[
            ("2025-03-29T10:00:00Z", FAIL),
            ("2025-03-29T10:10:00Z", FAIL),
            ("2025-03-29T10:20:00Z", FAIL),
            ("2025-03-29T10:30:00Z", FAIL),
            ("2025-03-29T10:40:00Z", FAIL),
            ("2025-03-29T10:50:00Z", FAIL),
        ],
        expected: "6/6 144/144 999/1005 4245/4251",
    },
    Scenario {
        name: "an outage ten days ago (daily rollup, hours pruned)",
        base: Base::Success,
        overrides: &[
            ("2025-03-21T10:00:00Z", FAIL),
            ("2025-03-21T23:50:00Z", FAIL),
        ],
        expected: "6/6 144/144 1005/1005 4249/4251",
    },
    Scenario {
        name: "skipped checks are left out of the ratio",
        base: Base::Success,
        overrides: &[
            ("2025-03-31T12:20:00Z", SKIP),
            ("2025-03-31T12:10:00Z", FAIL),
            ("2025-03-30T20:00:00Z", SKIP),
        ],
        expected: "4/5 141/142 1002/1003 4248/4249",
    },
    Scenario {
        name: "a failure in the 7d window's partial first hour is left out (30d has it); \
               one in the 30d window's partial first day too",
        base: Base::Success,
        overrides: &[
            ("2025-03-24T12:40:00Z", FAIL),
            ("2025-03-01T20:00:00Z", FAIL),
            ("2025-02-27T10:00:00Z", FAIL),
        ],
        expected: "6/6 144/144 1005/1005 4250/4251",
    },
];

fn scenario_checks(scenario: &Scenario) -> Vec<(DateTime<Utc>, CheckOutcome)> {
    let now = at(NOW);
    let mut checks: std::collections::BTreeMap<DateTime<Utc>, CheckOutcome> = match scenario.base {
        Base::Nothing => Default::default(),
        Base::Success => (1..=31 * 144)
            .map(|k| (now - TimeDelta::minutes(10 * k), OK))
            .collect(),
    };
    for (time, outcome) in scenario.overrides {
        checks.insert(at(time), *outcome);
    }
    checks.into_iter().collect()
}

fn expected_uptime(expected: &str) -> Vec<Option<f64>> {
    expected
        .split_whitespace()
        .map(|window| {
            let (up, total) = window.split_once('/')?;
            Some(up.parse::<f64>().unwrap() / total.parse::<f64>().unwrap())
        })
        .collect()
}

fn ratios(uptime: &Uptime) -> [Option<f64>; 4] {
    [uptime.hour, uptime.day, uptime.week, uptime.month]
}

async fn uptime_windows_from_raw_results_and_rollups(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let now = at(NOW);
    let mut integrations = Vec::new();
    for (n, scenario) in SCENARIOS.iter().enumerate() {
        let integration = db.create("acme", &format!("scenario-{n}")).await;
        db.write(&integration, &scenario_checks(scenario)).await;
        integrations.push(integration);
    }
    // Before any rollup everything is raw: the 1h and 24h windows are exact either way.
    let mut before = Vec::new();
    for integration in &integrations {
        let uptime = db
            .history
            .uptime("acme", integration.integration_id, now)
            .await
            .unwrap();
        before.push(ratios(&uptime));
    }
    let report = db.history.maintain(now).await.unwrap();
    assert!(report.hours_rolled_up >= 31 * 24, "{report:?}");
    assert!(report.days_rolled_up >= 30, "{report:?}");
    assert!(
        report.raw_pruned > 0 && report.hourly_pruned > 0,
        "{report:?}"
    );

    for ((scenario, integration), before) in SCENARIOS.iter().zip(&integrations).zip(before) {
        let uptime = db
            .history
            .uptime("acme", integration.integration_id, now)
            .await
            .unwrap();
        let got = ratios(&uptime);
        let expected = expected_uptime(scenario.expected);
        assert_eq!(expected.len(), 4, "{}", scenario.name);
        for (window, (got, expected)) in got.iter().zip(expected).enumerate() {
            match (got, expected) {
                (Some(got), Some(expected)) => assert!(
                    (got - expected).abs() < 1e-12,
                    "{}: window {window}: {got} != {expected}",
                    scenario.name
                ),
                (got, expected) => assert_eq!(*got, expected, "{}: window {window}", scenario.name),
            }
        }
        assert_eq!(got[..2], before[..2], "{}: 1h and 24h", scenario.name);
    }
    // The metrics' refresh reads many integrations in one statement: the same ratios.
    let ids: Vec<Uuid> = integrations.iter().map(|i| i.integration_id).collect();
    let together = db.history.uptimes(&ids, now).await.unwrap();
    assert_eq!(together.len(), ids.len());
    for (id, uptime) in together {
        let alone = db.history.uptime("acme", id, now).await.unwrap();
        assert_eq!(uptime, alone, "{id}");
    }
    // Another tenant reads nothing of them.
    let foreign = db.history.uptime("globex", ids[0], now).await.unwrap();
    assert_eq!(ratios(&foreign), [None; 4]);
    // Maintenance again changes nothing.
    let again = db.history.maintain(now).await.unwrap();
    assert_eq!((again.hours_rolled_up, again.raw_pruned), (0, 0));
}

// --- Pruning --------------------------------------------------------------------------------

async fn pruning_removes_only_expired_rows(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let history = db
        .history_with(HistoryOptions {
            prune_batch: 2,
            // 35 days of daily rollups (the default keeps 90), so that 40 days of checks
            // reach past it.
            daily_retention: std::time::Duration::from_secs(35 * 24 * 3600),
            ..manual()
        })
        .await;
    let integration = db.create("acme", "pruned").await;
    let now = at("2025-03-31T12:30:00Z");
    // Every 30 minutes for 40 days.
    let checks: Vec<_> = (1..=40 * 48)
        .map(|k| (now - TimeDelta::minutes(30 * k), OK))
        .collect();
    db.write(&integration, &checks).await;
    assert_eq!(db.count("check_results").await, 40 * 48);

    let report = history.maintain(now).await.unwrap();
    // Raw: 24 h kept, the cutoff itself included (48 checks from 12:30 yesterday).
    assert_eq!(db.count("check_results").await, 48);
    assert_eq!(report.raw_pruned, 40 * 48 - 48);
    // Hourly: hours starting from 12:30 eight days ago (13:00) up to 11:00 today.
    assert_eq!(db.count("check_rollups_hourly").await, 8 * 24 - 1);
    // Daily: days starting from 12:30 35 days ago (25 February) up to yesterday.
    assert_eq!(db.count("check_rollups_daily").await, 34);
    let oldest: Option<DateTime<Utc>> = history
        .history(
            "acme",
            integration.integration_id,
            &HistoryQuery {
                from: now - TimeDelta::days(60),
                to: now,
                resolution: Some(Resolution::Day),
                before: None,
                limit: 1000,
            },
            now,
        )
        .await
        .unwrap()
        .unwrap()
        .items
        .last()
        .map(HistoryItem::time);
    assert_eq!(oldest, Some(at("2025-02-25T00:00:00Z")));

    // Nine days on: every raw row and hour is gone (rolled up into 31 March first); days
    // from 6 March stay.
    let later = now + TimeDelta::days(9);
    history.maintain(later).await.unwrap();
    assert_eq!(db.count("check_results").await, 0);
    assert_eq!(db.count("check_rollups_hourly").await, 0);
    assert_eq!(db.count("check_rollups_daily").await, 26);
    // Past the daily retention, nothing is left.
    history.maintain(now + TimeDelta::days(80)).await.unwrap();
    assert_eq!(db.count("check_rollups_daily").await, 0);
}

// --- History pages --------------------------------------------------------------------------

async fn all_pages(
    history: &HistoryStore,
    integration: &Integration,
    mut query: HistoryQuery,
    now: DateTime<Utc>,
) -> Vec<HistoryItem> {
    let mut items = Vec::new();
    for _ in 0..10_000 {
        let page = history
            .history("acme", integration.integration_id, &query, now)
            .await
            .unwrap()
            .expect("the integration exists");
        assert!(page.items.len() <= query.limit as usize);
        items.extend(page.items.iter().copied());
        match (page.has_more, page.items.last()) {
            (true, Some(last)) => query.before = Some(last.time()),
            _ => return items,
        }
    }
    panic!("pagination did not terminate");
}

async fn history_pages_return_each_result_once_in_order(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let integration = db.create("acme", "paged").await;
    let now = at("2025-03-31T12:30:00Z");
    // Every minute for 250 minutes: 12:29 back to 08:20, a failure every 7th.
    let checks: Vec<_> = (1..=250)
        .map(|k| {
            let outcome = if k % 7 == 0 { FAIL } else { OK };
            (now - TimeDelta::minutes(k), outcome)
        })
        .collect();
    db.write(&integration, &checks).await;
    let query = |resolution, limit| HistoryQuery {
        from: now - TimeDelta::hours(5),
        to: now,
        resolution,
        before: None,
        limit,
    };

    let raw = all_pages(&db.history, &integration, query(None, 7), now).await;
    let times: Vec<DateTime<Utc>> = raw.iter().map(HistoryItem::time).collect();
    let mut expected: Vec<DateTime<Utc>> = checks.iter().map(|(time, _)| *time).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, expected, "every result once, newest first");
    let failures = raw
        .iter()
        .filter(|item| matches!(item, HistoryItem::Result(r) if r.outcome == FAIL))
        .count();
    assert_eq!(failures, 250 / 7);

    // Hours and days stitch stored rollups and the part not rolled up yet.
    for rolled in [false, true] {
        if rolled {
            db.history.maintain(now).await.unwrap();
        }
        for (resolution, limit, buckets) in [(Resolution::Hour, 2, 5), (Resolution::Day, 1, 1)] {
            let items = all_pages(
                &db.history,
                &integration,
                query(Some(resolution), limit),
                now,
            )
            .await;
            let starts: BTreeSet<DateTime<Utc>> = items.iter().map(HistoryItem::time).collect();
            assert_eq!(
                (items.len(), starts.len()),
                (buckets, buckets),
                "{resolution:?}, rolled up: {rolled}"
            );
            assert!(items.windows(2).all(|w| w[0].time() > w[1].time()));
            let (checks, failures) = items.iter().fold((0, 0), |(c, f), item| match item {
                HistoryItem::Bucket(b) => (c + b.checks(), f + b.failures),
                HistoryItem::Result(_) => panic!("a result in a bucket page"),
            });
            assert_eq!(
                (checks, failures),
                (250, 250 / 7),
                "{resolution:?}, rolled up: {rolled}"
            );
        }
    }
    // The default resolution is raw inside the raw window and hourly beyond it.
    let old = HistoryQuery {
        from: now - TimeDelta::days(3),
        ..query(None, 10)
    };
    let page = db
        .history
        .history("acme", integration.integration_id, &old, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.resolution, Resolution::Hour);
}

async fn history_is_tenant_scoped(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let theirs = db.create("globex", "secret").await;
    let now = Utc::now();
    db.write(&theirs, &[(now - TimeDelta::minutes(1), FAIL)])
        .await;
    let id = theirs.integration_id;
    assert!(db
        .history
        .health("globex", id, now)
        .await
        .unwrap()
        .is_some());
    assert_eq!(db.history.health("acme", id, now).await.unwrap(), None);
    let query = HistoryQuery {
        from: now - TimeDelta::hours(1),
        to: now,
        resolution: None,
        before: None,
        limit: 10,
    };
    assert_eq!(
        db.history.history("acme", id, &query, now).await.unwrap(),
        None
    );
    assert_eq!(
        db.history.uptime("acme", id, now).await.unwrap(),
        Uptime::default()
    );
    let unknown = Uuid::now_v7();
    assert_eq!(
        db.history.health("globex", unknown, now).await.unwrap(),
        None
    );
}

// --- REST -----------------------------------------------------------------------------------

use crate::storm::JWT_KEY;

async fn rest_routes_serve_health_and_history(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("jwt.key");
    std::fs::write(&key_file, JWT_KEY).unwrap();
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.database.url = catalogd_testkit::database_url(backend, dir.path()).await;
    config.auth.jwt_secret_file = Some(key_file);
    let app = Application::build(&config)
        .await
        .expect("application builds");
    let base = format!("http://127.0.0.1:{}/api/v1/integrations", app.port());
    let auth = app.state().auth.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let token = |tenant: &str, scope: &str| {
        auth.mint(
            tenant,
            "tester",
            &[scope.to_owned()],
            Duration::from_secs(600),
            Utc::now(),
        )
        .unwrap()
    };
    let admin = token("acme", catalogd::auth::SCOPE_ADMIN);
    let reader = token("acme", SCOPE_READ);
    let client = reqwest::Client::new();
    let get = |path: String, token: Option<String>| {
        let request = client.get(format!("{base}{path}"));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    let created: Value = crate::helpers::json_of(client
        .post(&base)
        .bearer_auth(&admin)
        .json(&json!({"name": "web", "type": "host", "provider": "http", "baseUrl": "https://example.com"}))).await;
    let id = created["integrationId"].as_str().unwrap().to_owned();

    // No checks yet.
    let (status, body) = get(format!("/{id}/health"), Some(reader.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "integrationId": id, "status": "draft", "paused": false, "lastCheck": null,
            "consecutiveFailures": 0,
            "uptime": {"1h": null, "24h": null, "7d": null, "30d": null}
        })
    );

    // Three checks in the last minutes, through the writer as the engine records them.
    let history = HistoryStore::open(&store_options(&config).unwrap(), manual())
        .await
        .unwrap();
    let writer = HistoryWriter::spawn(history, Arc::new(SystemClock));
    let uuid: Uuid = id.parse().unwrap();
    let now = Utc::now();
    for (minutes, outcome, failures) in [
        (3, OK, 0),
        (2, OK, 0),
        (1, CheckOutcome::Failure(FailureClass::Timeout), 1),
    ] {
        writer.record(
            uuid,
            1,
            lifecycle(failures, 0),
            &report(now - TimeDelta::minutes(minutes), outcome),
        );
    }
    writer.close().await;
    let (status, body) = get(format!("/{id}/health"), Some(reader.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["consecutiveFailures"], 1);
    let last = &body["lastCheck"];
    assert_eq!(
        (
            &last["success"],
            &last["outcome"],
            &last["failureClass"],
            &last["latencyMs"]
        ),
        (
            &json!(false),
            &json!("failure"),
            &json!("timeout"),
            &json!(12.345)
        )
    );
    assert!(last["checkedAt"].as_str().unwrap().ends_with('Z'));
    let two_thirds = 2.0 / 3.0;
    for window in ["1h", "24h", "7d", "30d"] {
        assert_eq!(body["uptime"][window], json!(two_thirds), "{window}");
    }

    let (status, body) = get(format!("/{id}/history?limit=2"), Some(reader.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resolution"], "raw");
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    assert_eq!(body["items"][0]["outcome"], "failure");
    assert_eq!(body["items"][0]["latenessMs"], json!(0.25));
    let cursor = body["nextCursor"].as_str().unwrap().to_owned();
    let (status, body) = get(
        format!("/{id}/history?limit=2&cursor={cursor}"),
        Some(reader.clone()),
    )
    .await;
    assert_eq!((status, body["items"].as_array().unwrap().len()), (200, 1));
    assert_eq!(body["nextCursor"], Value::Null);
    let (status, body) = get(
        format!("/{id}/history?resolution=hour"),
        Some(reader.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let checks: u64 = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["checks"].as_u64().unwrap())
        .sum();
    assert_eq!(checks, 3);

    // Shape and format errors are 400; a range whose ends are each valid but out of order is
    // the cross-field rule JSON Schema cannot state: 422, as the document says.
    for (query, status_code, code) in [
        ("from=yesterday", 400, "invalid_query"),
        (
            "from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z",
            422,
            "invalid_range",
        ),
        ("resolution=week", 400, "invalid_query"),
        ("limit=0", 400, "invalid_limit"),
        ("limit=1001", 400, "invalid_limit"),
        ("cursor=nope", 400, "invalid_cursor"),
        ("bogus=1", 400, "invalid_query"),
    ] {
        let (status, body) = get(format!("/{id}/history?{query}"), Some(reader.clone())).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (status_code, Some(code)),
            "{query}: {body}"
        );
    }
    let stranger = token("globex", SCOPE_READ);
    for path in [
        format!("/{id}/health"),
        format!("/{id}/history"),
        format!("/{}/health", Uuid::now_v7()),
    ] {
        let (status, body) = get(path.clone(), Some(stranger.clone())).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (status, _) = get(format!("/{id}/health"), None).await;
    assert_eq!(status, 401);

    let document: Value =
        crate::helpers::json_of(client.get(base.replace("/integrations", "/openapi.json"))).await;
    for path in [
        "/api/v1/integrations/{id}/health",
        "/api/v1/integrations/{id}/history",
    ] {
        assert!(
            document["paths"][path]["get"].is_object(),
            "{path} undocumented"
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

// --- Throughput -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --release --ignored --nocapture"]
async fn throughput() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        throughput_on(backend).await;
    }
}

const INTEGRATIONS: usize = 1000;
const RESULTS: usize = 100_000;
const NAIVE_RESULTS: usize = 5_000;

async fn throughput_on(backend: Backend) {
    let mut db = TestDb::fresh(backend).await;
    if backend == Backend::Sqlite {
        // The daemon's default durability: every commit reaches the disk.
        db.options.sqlite_synchronous_full = true;
    }
    let history = db.history_with(manual()).await;
    let mut fleet = Vec::with_capacity(INTEGRATIONS);
    for n in 0..INTEGRATIONS {
        fleet.push(db.create("bench", &format!("bench-{n:05}")).await);
    }
    // Rounds 30 minutes apart over 50 hours, so the rollups get a sample of their own.
    let start = Utc::now() - TimeDelta::hours(51);

    // The writer: record as fast as the engine could, then close (which flushes).
    let writer = HistoryWriter::spawn(history.clone(), Arc::new(SystemClock));
    let began = Instant::now();
    for n in 0..RESULTS {
        let integration = &fleet[n % INTEGRATIONS];
        let round = (n / INTEGRATIONS) as i64;
        writer.record(
            integration.integration_id,
            integration.version,
            lifecycle(0, round as u32 + 1),
            &report(
                start + TimeDelta::seconds(round * 1800 + (n % 60) as i64),
                OK,
            ),
        );
    }
    let probe = writer.clone();
    writer.close().await;
    let batched = began.elapsed();
    let stats = probe.counters();
    assert_eq!(
        (stats.written, stats.dropped),
        (RESULTS as u64, 0),
        "{stats:?}"
    );

    let raw_rows = db.count("check_results").await;
    let raw_bytes = table_bytes(&db, "check_results").await;

    // The naive baseline on the same database: per result, its own INSERT and UPDATE.
    let naive_start = Utc::now() + TimeDelta::days(1);
    let began = Instant::now();
    match backend {
        Backend::Sqlite => {
            let connect: sqlx::sqlite::SqliteConnectOptions = db.options.url.parse().unwrap();
            let pool = sqlx::SqlitePool::connect_with(
                connect.synchronous(sqlx::sqlite::SqliteSynchronous::Full),
            )
            .await
            .unwrap();
            for n in 0..NAIVE_RESULTS {
                let integration = &fleet[n % INTEGRATIONS];
                let at = naive_start + TimeDelta::seconds(n as i64);
                sqlx::query("INSERT INTO check_results (integration_id, checked_at, latency_us, lateness_us, outcome, failure_class) VALUES ($1, $2, $3, $4, 0, NULL)")
                    .bind(integration.integration_id).bind(at.timestamp_micros()).bind(12_345).bind(250)
                    .execute(&pool).await.unwrap();
                sqlx::query("UPDATE integrations SET last_tested_at = $1, last_test_success = TRUE, consecutive_failures = 0, consecutive_successes = $2 WHERE integration_id = $3 AND version = $4")
                    .bind(at).bind(n as i64).bind(integration.integration_id).bind(integration.version)
                    .execute(&pool).await.unwrap();
            }
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.options.url).await.unwrap();
            for n in 0..NAIVE_RESULTS {
                let integration = &fleet[n % INTEGRATIONS];
                let at = naive_start + TimeDelta::seconds(n as i64);
                sqlx::query("INSERT INTO check_results (integration_id, checked_at, latency_us, lateness_us, outcome, failure_class) VALUES ($1, $2, $3, $4, 0, NULL)")
                    .bind(integration.integration_id).bind(at).bind(12_345).bind(250)
                    .execute(&pool).await.unwrap();
                sqlx::query("UPDATE integrations SET last_tested_at = $1, last_test_success = TRUE, consecutive_failures = 0, consecutive_successes = $2 WHERE integration_id = $3 AND version = $4")
                    .bind(at).bind(n as i64).bind(integration.integration_id).bind(integration.version)
                    .execute(&pool).await.unwrap();
            }
        }
    }
    let naive = began.elapsed();
    let batched_rate = RESULTS as f64 / batched.as_secs_f64();
    let naive_rate = NAIVE_RESULTS as f64 / naive.as_secs_f64();
    println!(
        "history {backend:?}: batched writer {batched_rate:.0} results/s ({RESULTS} in {batched:.2?}, \
         {} batches, last flush {:?}); naive one-row statements {naive_rate:.0} results/s \
         ({NAIVE_RESULTS} in {naive:.2?}); ratio {:.1}x",
        stats.batches,
        stats.last_flush,
        batched_rate / naive_rate
    );

    // Bytes per row, indexes included, and the cost of rolling the hours up.
    let began = Instant::now();
    let report = history.maintain(Utc::now()).await.unwrap();
    let rollup = began.elapsed();
    for table in [
        "check_results",
        "check_rollups_hourly",
        "check_rollups_daily",
    ] {
        let (rows, bytes) = if table == "check_results" {
            (raw_rows, raw_bytes)
        } else {
            (db.count(table).await, table_bytes(&db, table).await)
        };
        println!(
            "history {backend:?}: {table}: {rows} rows, {bytes} bytes with indexes, {:.1} bytes/row",
            bytes as f64 / rows.max(1) as f64
        );
    }
    println!("history {backend:?}: maintenance {report:?} in {rollup:.2?}");
}

async fn table_bytes(db: &TestDb, table: &str) -> i64 {
    match db.backend {
        Backend::Sqlite => {
            let mut connection = SqliteConnection::connect(&db.options.url).await.unwrap();
            sqlx::query_scalar(
                "SELECT SUM(pgsize) FROM dbstat \
                 WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = $1)",
            )
            .bind(table)
            .fetch_one(&mut connection)
            .await
            .unwrap_or(0)
        }
        Backend::Postgres => {
            let mut connection = PgConnection::connect(&db.options.url).await.unwrap();
            sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
                .bind(table)
                .fetch_one(&mut connection)
                .await
                .unwrap()
        }
    }
}
