//! F12, import (issue 15): a document of N integrations imported into an empty tenant through
//! the daemon's own import code (`catalogd::transfer::import`: validation, the plan by name,
//! one transaction of creations, each with its audit entry and outbox event), then the same
//! document again (a plan that changes nothing). Baseline, same run and database: creating
//! integrations one `Store::create` each (one transaction each, what N `POST`s commit),
//! timed on a sample and given per item. Target: 100,000 items in ≤ 60 s on SQLite.
//!
//! For one datapoint by hand (e.g. while profiling), `BENCH_IMPORT_SIZES=1000,20000` runs the
//! figure at those sizes instead of the tier's, and `BENCH_IMPORT_BACKENDS=postgres` (or
//! `sqlite`) on one backend only.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use catalogd::integration::{Author, Integration, IntegrationSpec, IntegrationType};
use catalogd::providers::ProviderRegistry;
use catalogd::store::{self, StoreOptions};
use catalogd::transfer::{self, Document, Mode, Rewrite};
use catalogd::validation::SpecRules;
use catalogd_actors::{Status, Thresholds};
use serde_json::json;

use super::Outcome;
use crate::report::{Row, Value};
use crate::seed::{self, Backend, Seed, Target};
use crate::Tier;

pub async fn run(tier: Tier) -> anyhow::Result<Outcome> {
    let (items, sample) = match tier {
        Tier::Smoke => (1_000, 200),
        Tier::Quick => (20_000, 2_000),
        Tier::Full => (100_000, 5_000),
    };
    let sizes: Vec<usize> = std::env::var("BENCH_IMPORT_SIZES").map_or(vec![items], |sizes| {
        sizes
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    });
    let backends: Vec<Backend> = match std::env::var("BENCH_IMPORT_BACKENDS") {
        Ok(names) => [Backend::Sqlite, Backend::Postgres]
            .into_iter()
            .filter(|b| {
                // `sqlite`, `postgres` or `postgresql`, in any case.
                names.split(',').any(|n| {
                    let n = n.trim().to_ascii_lowercase();
                    !n.is_empty() && b.name().to_ascii_lowercase().starts_with(&n)
                })
            })
            .collect(),
        Err(_) => vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut outcome = Outcome::default();
    for &items in &sizes {
        for &backend in &backends {
            measure(backend, items, sample.min(items), &mut outcome)
                .await
                .with_context(|| backend.name())?;
        }
    }
    outcome.notes.push(format!(
        "{} items of an http provider with a base URL, tags, an AuthRef and health-check \
         settings; the baseline creates {sample} integrations one transaction each",
        sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(outcome)
}

fn document(items: usize) -> Document {
    Document {
        api_version: transfer::API_VERSION.into(),
        kind: transfer::KIND.into(),
        items: (0..items)
            .map(|i| {
                json!({
                    "name": format!("svc-{i:07}"), "type": "host", "provider": "http",
                    "baseUrl": format!("https://svc-{i}.example.com"),
                    "authRef": "ref://vault/http/token", "environment": "dev",
                    "tags": ["imported", format!("team:{}", i % 50)],
                    "healthCheck": {"intervalSeconds": 60, "timeoutSeconds": 5},
                })
            })
            .collect(),
    }
}

/// A store over a fresh copy of an empty database, and the copy's URL (for
/// [`seed::release`]).
async fn empty_store(
    backend: Backend,
    key: &str,
) -> anyhow::Result<(std::sync::Arc<dyn store::Store>, String)> {
    let target = |_: usize| Target::http("http://127.0.0.1:9/ok".into());
    let url = seed::seeded_copy(
        backend,
        &Seed {
            tenant: "unused",
            count: 0,
            interval_seconds: 60,
            timeout_seconds: 5,
            status: Status::Active,
            target: &target,
        },
        key,
    )
    .await?;
    let options = StoreOptions {
        url: url.clone(),
        password: None,
        max_connections: 8,
        sqlite_synchronous_full: true,
        allow_unsafe_durability: false,
        default_thresholds: Thresholds::default(),
    };
    Ok((store::open(&options).await?, url))
}

async fn measure(
    backend: Backend,
    items: usize,
    sample: usize,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let (store, url) = empty_store(backend, "f12-import").await?;
    let providers = ProviderRegistry::builtin();
    let rules = SpecRules {
        providers: &providers,
        default_interval_seconds: 60,
        default_thresholds: Thresholds::default(),
    };
    let author = Author {
        tenant_id: "bench".into(),
        subject: "bench".into(),
    };
    let rewrite = Rewrite::default();
    let progress = catalogd::store::ImportProgress::default();
    let import = |document| {
        transfer::import(
            store.as_ref(),
            &rules,
            &author,
            document,
            &rewrite,
            Mode::Merge,
            false,
            chrono::Utc::now(),
            &progress,
        )
    };
    let began = Instant::now();
    let first = import(document(items)).await?;
    let first_took = began.elapsed();
    anyhow::ensure!(
        first.plan.created.len() == items,
        "created {}",
        first.plan.created.len()
    );
    let began = Instant::now();
    let second = import(document(items)).await?;
    let second_took = began.elapsed();
    anyhow::ensure!(second.plan.unchanged == items && !second.plan.applied);

    // Baseline: one transaction per integration, in another tenant of the same database.
    let began = Instant::now();
    for i in 0..sample {
        let spec = IntegrationSpec {
            name: format!("svc-{i:07}"),
            description: None,
            kind: IntegrationType::Host,
            provider: "http".into(),
            base_url: Some(format!("https://svc-{i}.example.com")),
            auth_ref: Some("ref://vault/http/token".into()),
            configuration: Default::default(),
            environment: Some("dev".into()),
            tags: vec!["imported".into(), format!("team:{}", i % 50)],
            owner_id: None,
            health_check: Default::default(),
            depends_on: Vec::new(),
        };
        store
            .create(&Integration::new(
                "baseline",
                spec,
                "bench",
                chrono::Utc::now(),
            ))
            .await?;
    }
    let per_create = began.elapsed() / sample as u32;
    let per_item = first_took / items as u32;
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let name = backend.name();
    let mut row = Row::new(
        "F12",
        format!("import {items} items, {name}"),
        Value::new(first_took.as_secs_f64(), "s"),
    );
    if backend == Backend::Sqlite && items >= 100_000 {
        row = row.at_most(60.0, "60 s");
    }
    outcome.rows.push(row);
    outcome.rows.push(
        Row::new(
            "F12",
            format!("import, per item, {name}"),
            Value::new(micros(per_item), "µs"),
        )
        .against(
            "one create per transaction",
            Value::new(micros(per_create), "µs"),
        ),
    );
    outcome.rows.push(Row::new(
        "F12",
        format!("the same {items} again (nothing to change), {name}"),
        Value::new(second_took.as_secs_f64(), "s"),
    ));
    // A 100k copy is hundreds of MB; the next size or backend does not need it.
    drop(store);
    seed::release(&url).await;
    Ok(())
}
