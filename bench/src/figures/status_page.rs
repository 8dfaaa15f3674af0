//! F11, the status page (issue 14, DESIGN §11): `GET /status/{tenant}` of a tenant with N
//! integrations (full and quick 1,000, smoke 100), each with 90 days of daily rollups
//! (written through the history store, as the browser test writes them), on SQLite and on
//! PostgreSQL: p50 and p99 of sequential requests over a kept-alive connection, and the
//! page's size. The target is ≤ 50 ms at 1,000 integrations. The tenant's checks per day and
//! hour are reused for 30 s, so the first view (also measured) reads them and the rest do
//! not; states and incidents are read on every view.
//!
//! Baseline in the same run: `/healthz` of the same daemon, the HTTP floor.
//!
//! The rows are seeded paused, so no check runs while the page is measured (a paused
//! integration still has its actor; the page shows it as paused, which costs the same to
//! render as any other state).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use catalogd::store::history::{Bucket, HistoryOptions, HistoryStore};
use catalogd::store::{Database, StoreOptions};
use catalogd_actors::{Status, Thresholds};
use chrono::{TimeDelta, Utc};

use super::metrics::size_label;
use super::Outcome;
use crate::report::{Row, Value};
use crate::seed::{self, Backend, Seed, Target};
use crate::services::{admin_token, DaemonDir};
use crate::Tier;

const DAYS: i64 = 90;

pub async fn run(tier: Tier) -> anyhow::Result<Outcome> {
    let (n, requests) = match tier {
        Tier::Smoke => (100, 20),
        Tier::Quick => (1_000, 50),
        Tier::Full => (1_000, 200),
    };
    let mut outcome = Outcome::default();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        measure(backend, n, requests, &mut outcome)
            .await
            .with_context(|| backend.name())?;
    }
    outcome.notes.push(format!(
        "{requests} sequential requests per page after 5 warm-ups, one kept-alive connection; \
         {DAYS} days of daily rollups per integration; integrations seeded paused (no checks)"
    ));
    Ok(outcome)
}

fn store_options(url: &str) -> StoreOptions {
    StoreOptions {
        url: url.to_owned(),
        password: None,
        max_connections: 2,
        sqlite_synchronous_full: false,
        allow_unsafe_durability: true,
        default_thresholds: Thresholds::default(),
    }
}

/// `DAYS - 1` days of rollups before today for every integration of `bench`, one bad day in
/// seventeen.
async fn backdate(url: &str) -> anyhow::Result<()> {
    let options = store_options(url);
    let ids: Vec<_> = Database::connect(&options)
        .await?
        .status_pages()
        .members("bench")
        .await?
        .into_iter()
        .map(|member| member.integration_id)
        .collect();
    let history = HistoryStore::open(
        &options,
        HistoryOptions {
            maintenance_interval: None,
            ..HistoryOptions::default()
        },
    )
    .await?;
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .context("midnight")?
        .and_utc();
    let mut rows = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        for ago in 1..DAYS {
            let failures = if (ago as usize + index).is_multiple_of(17) {
                300
            } else {
                0
            };
            rows.push((
                *id,
                Bucket {
                    start: today - TimeDelta::days(ago),
                    successes: 1440 - failures,
                    failures,
                    skipped: 0,
                    latency_sum_us: 1440 * 20_000,
                    latency_max_us: 80_000,
                    maintenance: 0,
                },
            ));
        }
    }
    for chunk in rows.chunks(20_000) {
        history.write_daily_rollups(chunk).await?;
    }
    Ok(())
}

/// p50 and p99 of `requests` sequential GETs of `url`, in ms, and the body's size.
async fn time_gets(
    client: &reqwest::Client,
    url: &str,
    requests: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut size = 0;
    for _ in 0..5 {
        size = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .len();
    }
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let body = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), size))
}

async fn measure(
    backend: Backend,
    n: usize,
    requests: usize,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let target = |_: usize| Target::http("http://127.0.0.1:9/ok".into());
    let url = seed::seeded_copy(
        backend,
        &Seed {
            tenant: "bench",
            count: n,
            interval_seconds: 60,
            timeout_seconds: 5,
            status: Status::Paused,
            target: &target,
        },
        "f11-paused-discard-port",
    )
    .await?;
    backdate(&url).await.context("backdating rollups")?;
    // Daily rollups are kept past the 90 days the page shows.
    let dir = DaemonDir::new(&url, "[history]\nrollup_retention = \"100days\"\n")?;
    let daemon = dir.start(Duration::from_secs(120))?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    client
        .put(format!("{}/api/v1/status-page", daemon.api))
        .bearer_auth(admin_token("bench")?)
        .json(&serde_json::json!({"enabled": true, "public": true, "title": "Bench"}))
        .send()
        .await?
        .error_for_status()?;
    let (floor_p50, floor_p99, _) =
        time_gets(&client, &format!("{}/healthz", daemon.api), requests).await?;
    let page = format!("{}/status/bench", daemon.api);
    // The first view reads the tenant's 90 days; later views within 30 s reuse them.
    let started = Instant::now();
    client
        .get(&page)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let cold = started.elapsed().as_secs_f64() * 1000.0;
    let (p50, p99, size) = time_gets(&client, &page, requests).await?;
    let (json_p50, _, json_size) =
        time_gets(&client, &format!("{page}/summary.json"), requests).await?;
    drop(daemon);
    seed::release(&url).await;

    let b = backend.name();
    let label = size_label(n);
    outcome.rows.extend([
        Row::new(
            "F11",
            format!("status page p50, {label} integrations × {DAYS} days, {b}"),
            Value::new(p50, "ms"),
        )
        .against("/healthz", Value::new(floor_p50, "ms"))
        .at_most(50.0, "50 ms"),
        Row::new(
            "F11",
            format!("status page p99, {label} integrations × {DAYS} days, {b}"),
            Value::new(p99, "ms"),
        )
        .against("/healthz", Value::new(floor_p99, "ms")),
    ]);
    outcome.rows.push(
        Row::new(
            "F11",
            format!("status page first view (history not cached), {label} integrations, {b}"),
            Value::new(cold, "ms"),
        )
        .against("/healthz p50", Value::new(floor_p50, "ms")),
    );
    outcome.notes.push(format!(
        "{b}: page {:.0} KB for {label} integrations; summary.json p50 {json_p50:.1} ms, {:.0} KB",
        size as f64 / 1024.0,
        json_size as f64 / 1024.0
    ));
    Ok(())
}
