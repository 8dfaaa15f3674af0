//! Fills a store with N monitored integrations before a daemon starts, so start-up, memory
//! and API figures are measured on a catalog of the size named.
//!
//! Seeding is bulk: the `integrations` rows (and their `integration_tags` rows) are written
//! with multi-row `INSERT`s, thousands of rows per statement and tens of thousands per
//! transaction, binding exactly the values and types the store's `create` binds (see
//! `bind_integration` in `src/store/sql.rs`), so the rows decode as if the API had written
//! them; [`seed`] reads one back through the store to prove it. What seeding skips: the
//! per-create audit entry and the `created` outbox event. A seeded catalog therefore has no
//! audit trail and no pending events for its rows; no figure reads them, and the first
//! audited change of a seeded integration simply starts its tenant's chain.
//!
//! [`seeded_copy`] seeds once per runner process per (backend, size, spec) and hands out
//! copies (SQLite: a file copy; PostgreSQL: `CREATE DATABASE … TEMPLATE …`), so figures that
//! need the same million rows (F3, F8) do not each pay for seeding.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::Context as _;
use catalogd::integration::{HealthCheck, Integration, IntegrationSpec, IntegrationType};
use catalogd::store::{self, StoreOptions};
use catalogd_actors::{Clock, Status, SystemClock, Thresholds};
use chrono::SubsecRound;
use sqlx::types::Json;
use sqlx::{Connection, Executor, QueryBuilder};

use crate::services;

/// What to seed.
pub struct Seed<'a> {
    pub tenant: &'a str,
    pub count: usize,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub status: Status,
    /// Integration `i`'s (provider, base URL, configuration).
    pub target: &'a (dyn Fn(usize) -> Target + Sync),
}

pub struct Target {
    pub provider: String,
    pub base_url: Option<String>,
    pub configuration: serde_json::Map<String, serde_json::Value>,
}

impl Target {
    /// An `http` check of `url`.
    pub fn http(url: String) -> Target {
        Target {
            provider: "http".into(),
            base_url: Some(url),
            configuration: Default::default(),
        }
    }

    /// An `http` check of `/ok/{i}` on the process-wide fleet port
    /// ([`services::fleet_port`]), spread over `addrs` loopback addresses: start the fleet
    /// with [`services::TargetFleet::start_on`] that port before the daemon.
    pub fn fleet_ok(i: usize, addrs: u32) -> Target {
        Target::http(services::fleet_url(i, addrs, &format!("/ok/{i}")))
    }
}

/// The two store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// Rows per multi-row `INSERT`: 26 binds a row stays below SQLite's 32,766 and PostgreSQL's
/// 65,535 bind parameters.
const ROWS_PER_STATEMENT: usize = 1000;
/// Rows per transaction.
const ROWS_PER_TRANSACTION: usize = 50_000;

/// Seeds `seed.count` integrations into the (migrated, here if need be) database at
/// `database_url`, then reads the first one back through the store to check that the bulk
/// rows are exactly what the store writes and reads.
pub async fn seed(database_url: &str, seed: &Seed<'_>) -> anyhow::Result<()> {
    let options = StoreOptions {
        url: database_url.to_owned(),
        password: None,
        max_connections: 2,
        sqlite_synchronous_full: false,
        allow_unsafe_durability: false,
        default_thresholds: Thresholds::default(),
    };
    // Opening the store applies the migrations.
    drop(store::open(&options).await?);
    let now = SystemClock.now().trunc_subsecs(6);
    let integrations = |range: std::ops::Range<usize>| -> Vec<Integration> {
        range
            .map(|i| {
                let target = (seed.target)(i);
                let spec = IntegrationSpec {
                    name: format!("bench-{i:07}"),
                    description: None,
                    kind: IntegrationType::Host,
                    provider: target.provider,
                    base_url: target.base_url,
                    auth_ref: None,
                    configuration: target.configuration,
                    environment: None,
                    tags: vec![],
                    owner_id: None,
                    health_check: HealthCheck {
                        interval_seconds: Some(seed.interval_seconds),
                        timeout_seconds: Some(seed.timeout_seconds),
                        ..Default::default()
                    },
                    depends_on: Vec::new(),
                };
                let mut integration = Integration::new(seed.tenant, spec, "bench", now);
                integration.status = seed.status;
                integration
            })
            .collect()
    };
    let first = integrations(0..seed.count.min(1)).pop();
    if database_url.starts_with("sqlite:") {
        use std::str::FromStr;
        // Seeding may lose everything on a crash: nothing is durable until the end.
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
            .pragma("cache_size", "-262144");
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        insert_all_sqlite(&mut conn, seed.count, &first, &integrations).await?;
        // Fold the WAL into the main file, so a copy of the file alone is the database. The
        // pragma reports `busy = 1` (not an error) when another connection held the
        // checkpoint, e.g. the background checkpointer of the store opened above for the
        // migrations: the WAL is then not folded, and a copy of the main file alone is
        // malformed. Retry until it is.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await?;
            if busy == 0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the WAL could not be checkpointed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        conn.close().await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        conn.execute("SET synchronous_commit = off").await?;
        insert_all_postgres(&mut conn, seed.count, &first, &integrations).await?;
        conn.execute("ANALYZE").await?;
        conn.close().await?;
    }
    if let Some(first) = first {
        let store = store::open(&options).await?;
        let read = store
            .get(&first.tenant_id, first.integration_id)
            .await?
            .context("the first seeded integration is not found through the store")?;
        anyhow::ensure!(
            read == first,
            "a seeded row reads back differently:\n{read:?}\nvs\n{first:?}"
        );
    }
    Ok(())
}

/// Inserts `count` integrations, made `ROWS_PER_STATEMENT` at a time by `make`, the first
/// row being `first` (already made, for the read-back check). A macro because sqlx's
/// `QueryBuilder` is generic over the database in ways that do not name well in a bound.
macro_rules! insert_all {
    ($name:ident, $db:ty, $conn:ty) => {
        async fn $name(
            conn: &mut $conn,
            count: usize,
            first: &Option<Integration>,
            make: &dyn Fn(std::ops::Range<usize>) -> Vec<Integration>,
        ) -> anyhow::Result<()> {
    let mut done = 0;
    while done < count {
        let mut tx = conn.begin().await?;
        let end = (done + ROWS_PER_TRANSACTION).min(count);
        while done < end {
            let upto = (done + ROWS_PER_STATEMENT).min(end);
            let mut rows = make(done..upto);
            if done == 0 {
                if let Some(first) = first {
                    rows[0] = first.clone();
                }
            }
            let mut insert = QueryBuilder::<$db>::new(
                "INSERT INTO integrations (integration_id, tenant_id, name, description, type, \
                 provider, base_url, auth_ref, configuration, environment, tags, owner_id, \
                 health_check, status, paused, pause_reason, pause_ticket, last_tested_at, \
                 last_test_success, consecutive_failures, consecutive_successes, created_at, \
                 created_by, modified_at, modified_by, version) ",
            );
            // The same values, types and order as the store's `bind_integration`.
            insert.push_values(rows.iter(), |mut row, i| {
                row.push_bind(i.integration_id)
                    .push_bind(i.tenant_id.clone())
                    .push_bind(i.name.clone())
                    .push_bind(i.description.clone())
                    .push_bind(i.kind.as_str())
                    .push_bind(i.provider.clone())
                    .push_bind(i.base_url.clone())
                    .push_bind(i.auth_ref.clone())
                    .push_bind(Json(i.configuration.clone()))
                    .push_bind(i.environment.clone())
                    .push_bind(Json(i.tags.clone()))
                    .push_bind(i.owner_id.clone())
                    .push_bind(Json(i.health_check.clone()))
                    .push_bind(i.status.as_str())
                    .push_bind(i.paused)
                    .push_bind(i.pause_reason.clone())
                    .push_bind(i.pause_ticket.clone())
                    .push_bind(i.last_tested_at)
                    .push_bind(i.last_test_success)
                    .push_bind(i64::from(i.consecutive_failures))
                    .push_bind(i64::from(i.consecutive_successes))
                    .push_bind(i.created_at)
                    .push_bind(i.created_by.clone())
                    .push_bind(i.modified_at)
                    .push_bind(i.modified_by.clone())
                    .push_bind(i.version);
            });
            insert.build().execute(&mut *tx).await?;
            // Tags, as the store's `insert_tags` writes them: one row per distinct tag.
            let tags: Vec<(&Integration, &str)> = rows
                .iter()
                .flat_map(|i| {
                    let mut tags: Vec<&str> = i.tags.iter().map(String::as_str).collect();
                    tags.sort_unstable();
                    tags.dedup();
                    tags.into_iter().map(move |t| (i, t))
                })
                .collect();
            for chunk in tags.chunks(ROWS_PER_STATEMENT) {
                let mut insert = QueryBuilder::<$db>::new(
                    "INSERT INTO integration_tags (tenant_id, tag, name, integration_id) ",
                );
                insert.push_values(chunk, |mut row, (i, tag)| {
                    row.push_bind(i.tenant_id.clone())
                        .push_bind(tag.to_string())
                        .push_bind(i.name.clone())
                        .push_bind(i.integration_id);
                });
                insert.build().execute(&mut *tx).await?;
            }
            done = upto;
        }
        tx.commit().await?;
    }
    Ok(())
        }
    };
}

insert_all!(insert_all_sqlite, sqlx::Sqlite, sqlx::SqliteConnection);
insert_all!(insert_all_postgres, sqlx::Postgres, sqlx::PgConnection);

/// Seeded templates of this process: (backend, count, tenant, interval, timeout, status, key)
/// → the template's SQLite path or PostgreSQL database name.
type TemplateKey = (Backend, usize, String, u32, u32, &'static str, String);

fn templates() -> &'static tokio::sync::Mutex<HashMap<TemplateKey, String>> {
    static TEMPLATES: OnceLock<tokio::sync::Mutex<HashMap<TemplateKey, String>>> = OnceLock::new();
    TEMPLATES.get_or_init(Default::default)
}

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The directory of this process's SQLite templates and copies, removed by [`cleanup`].
fn seed_dir() -> anyhow::Result<&'static PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    if let Some(dir) = DIR.get() {
        return Ok(dir);
    }
    let dir = tempfile::Builder::new()
        .prefix("catalogd-bench-seed-")
        .tempdir()?
        .keep();
    Ok(DIR.get_or_init(|| dir))
}

static COPIES: AtomicU64 = AtomicU64::new(0);

/// The URL of a fresh copy of a database seeded with `seed`. The first call for a (backend,
/// size, spec) seeds a template (and says how long that took on stderr); later calls only
/// copy it. `key` names what `seed.target` makes (the closure cannot be compared): two calls
/// with equal keys and fields must mean the same rows. SQLite copies live in this process's
/// seed directory until [`release`] or [`cleanup`]; PostgreSQL copies live on the shared
/// benchmark server (gone with it).
pub async fn seeded_copy(backend: Backend, spec: &Seed<'_>, key: &str) -> anyhow::Result<String> {
    let template_key = (
        backend,
        spec.count,
        spec.tenant.to_owned(),
        spec.interval_seconds,
        spec.timeout_seconds,
        spec.status.as_str(),
        key.to_owned(),
    );
    let mut templates = templates().lock().await;
    let n = COPIES.fetch_add(1, Ordering::Relaxed);
    match backend {
        Backend::Sqlite => {
            let dir = seed_dir()?;
            let template = match templates.get(&template_key) {
                Some(path) => path.clone(),
                None => {
                    let path = dir.join(format!("template-{n}.db"));
                    let started = Instant::now();
                    seed(&format!("sqlite://{}?mode=rwc", path.display()), spec).await?;
                    eprintln!(
                        "# seeded {} integrations into SQLite in {:.1} s",
                        spec.count,
                        started.elapsed().as_secs_f64()
                    );
                    let path = path.display().to_string();
                    templates.insert(template_key, path.clone());
                    path
                }
            };
            let copy = dir.join(format!("copy-{n}.db"));
            std::fs::copy(&template, &copy)
                .with_context(|| format!("copying {template} to {}", copy.display()))?;
            Ok(format!("sqlite://{}", copy.display()))
        }
        Backend::Postgres => {
            let admin_url = services::postgres::admin_url().await;
            let template = match templates.get(&template_key) {
                Some(name) => name.clone(),
                None => {
                    let url = services::postgres::fresh_database_url().await;
                    let started = Instant::now();
                    seed(&url, spec).await?;
                    eprintln!(
                        "# seeded {} integrations into PostgreSQL in {:.1} s",
                        spec.count,
                        started.elapsed().as_secs_f64()
                    );
                    let name = url::Url::parse(&url)?
                        .path()
                        .trim_start_matches('/')
                        .to_owned();
                    templates.insert(template_key, name.clone());
                    name
                }
            };
            let copy = format!("{template}_c{n}");
            let mut admin = sqlx::PgConnection::connect(admin_url).await?;
            admin
                .execute(format!("CREATE DATABASE {copy} TEMPLATE {template}").as_str())
                .await
                .with_context(|| format!("copying database {template}"))?;
            admin.close().await?;
            let mut url = url::Url::parse(admin_url)?;
            url.set_path(&format!("/{copy}"));
            Ok(url.to_string())
        }
    }
}

/// Removes a copy made by [`seeded_copy`] now rather than at the end of the run (a 1M-row
/// SQLite file is hundreds of MB; a PostgreSQL copy is dropped).
pub async fn release(url: &str) {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    } else if let Ok(parsed) = url::Url::parse(url) {
        let name = parsed.path().trim_start_matches('/').to_owned();
        let admin_url = services::postgres::admin_url().await;
        if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
            let _ = admin.close().await;
        }
    }
}

/// Removes this process's SQLite templates and copies (the runner calls it before exiting).
pub fn cleanup() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds both backends, copies twice (the second copy does not seed again), and the
    /// copies hold every row. `SEED_TEST_COUNT` sizes it (default 3,000).
    #[tokio::test(flavor = "multi_thread")]
    async fn seeded_copies_hold_every_row() {
        let count: usize = std::env::var("SEED_TEST_COUNT")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(3000);
        let target = |i| Target::fleet_ok(i, 64);
        let spec = Seed {
            tenant: "bench",
            count,
            interval_seconds: 60,
            timeout_seconds: 5,
            status: Status::Active,
            target: &target,
        };
        for backend in [Backend::Sqlite, Backend::Postgres] {
            for _ in 0..2 {
                let started = Instant::now();
                let url = seeded_copy(backend, &spec, "ok").await.unwrap();
                eprintln!("{} copy in {:?}", backend.name(), started.elapsed());
                let store = store::open(&StoreOptions {
                    url: url.clone(),
                    password: None,
                    max_connections: 1,
                    sqlite_synchronous_full: false,
                    allow_unsafe_durability: false,
                    default_thresholds: Thresholds::default(),
                })
                .await
                .unwrap();
                let page = store
                    .list(
                        "bench",
                        &catalogd::store::ListQuery {
                            limit: 10,
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(page.items.len(), 10.min(count));
                drop(store);
                release(&url).await;
            }
        }
        cleanup();
    }
}

/// For profiling start-up by hand: `SEED_FILE=/tmp/x.db SEED_TEST_COUNT=1000000 cargo test
/// --release -p catalogd-bench --bin catalogd-bench seed_file -- --ignored` seeds a SQLite file
/// with `/ok/{i}` targets on port `SEED_PORT` (default 18999) and keeps it.
#[cfg(test)]
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn seed_file() {
    // `SEED_URL` (any database URL, PostgreSQL too) instead of `SEED_FILE`; `SEED_STATUS=draft`
    // seeds drafts, as F8 does.
    let url = std::env::var("SEED_URL").unwrap_or_else(|_| {
        let path = std::env::var("SEED_FILE").expect("SEED_FILE or SEED_URL");
        format!("sqlite://{path}?mode=rwc")
    });
    let status = match std::env::var("SEED_STATUS").as_deref() {
        Ok("draft") => Status::Draft,
        _ => Status::Active,
    };
    let count: usize = std::env::var("SEED_TEST_COUNT").map_or(100_000, |n| n.parse().unwrap());
    let port: u16 = std::env::var("SEED_PORT").map_or(18999, |n| n.parse().unwrap());
    let target = |i: usize| Target::http(format!("http://127.0.0.{}:{port}/ok/{i}", i % 64 + 1));
    let started = Instant::now();
    seed(
        &url,
        &Seed {
            tenant: "bench",
            count,
            interval_seconds: 60,
            timeout_seconds: 2,
            status,
            target: &target,
        },
    )
    .await
    .unwrap();
    eprintln!("seeded {count} in {:?}", started.elapsed());
}
