//! F1 memory per integration, F2 scheduling lateness, F3 start-up (run by `F1`, one daemon
//! per size on SQLite, plus a start-up-only daemon per size on PostgreSQL) and F5 failure
//! isolation.
//!
//! One SQLite daemon run per size N measures three figures: the store is seeded with N
//! active `http` integrations (`/ok/{i}` on the target fleet, 64 loopback addresses), the
//! daemon starts, and the runner polls `/readyz` until every actor runs (F3) and the fleet's
//! distinct-path count until every integration has been checked once (F3); it then lets the
//! fleet run `CYCLES` intervals and reads the daemon's RSS (F1, all-in: actors, state,
//! metrics, history writer, pools), stops the daemon, and reads the lateness of every check
//! that started in those intervals from the history table (F2, exact: `lateness_us` per
//! check).
//!
//! Baselines, measured in the same run: F1 against N idle bare ractor actors and F2 against
//! the engine alone with a no-op probe at the same N and interval (both
//! `bench/src/bin/engine-fleet.rs`, run as a child process); F1 also reports the marginal cost
//! over an empty daemon. F3 compares PostgreSQL with SQLite; F5 compares the healthy checks'
//! p99 with 10% of the targets hanging against F2's p99 at the same N (F2's figure from this
//! run if F1 ran first, otherwise a 0% run inside F5).
//!
//! Full-tier duration, expected: seeding 1M rows on SQLite and PostgreSQL (~1–2 min each),
//! F1 ≈ 2 × (4 min daemon + 2 min baseline) + 2 × 1.5 min PostgreSQL start-up ≈ 15 min,
//! F5 ≈ 4 min (100k).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use catalogd_actors::Status;

use super::Outcome;
use crate::report::{Row, Value};
use crate::seed::{self, Backend, Seed, Target};
use crate::services::{self, DaemonDir, TargetFleet};
use crate::sys;
use crate::Tier;

const ADDRS: u32 = 64;
const TENANT: &str = "bench";
/// Check intervals the figures run for after the first checks (every actor running, and
/// every integration checked once or the wait for that over).
const CYCLES: u32 = 3;

struct Plan {
    sizes: Vec<usize>,
    interval: u32,
    /// The size F5 runs at (one of `sizes`, so F2's figure can be reused).
    isolation_size: usize,
    /// Intervals measured after the first checks.
    cycles: u32,
}

/// The tier's plan; `BENCH_FLEET_SIZES=100000,1000000`, `BENCH_FLEET_INTERVAL=60` and
/// `BENCH_FLEET_CYCLES=10` override it (for one datapoint by hand, e.g. while profiling, or
/// a sustained window).
fn plan(tier: Tier) -> Plan {
    let mut plan = tier_plan(tier);
    if let Ok(sizes) = std::env::var("BENCH_FLEET_SIZES") {
        plan.sizes = sizes
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        plan.isolation_size = plan.sizes.first().copied().unwrap_or(plan.isolation_size);
    }
    if let Some(interval) = std::env::var("BENCH_FLEET_INTERVAL")
        .ok()
        .and_then(|i| i.parse().ok())
    {
        plan.interval = interval;
    }
    if let Some(cycles) = std::env::var("BENCH_FLEET_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        plan.cycles = cycles;
    }
    plan
}

fn tier_plan(tier: Tier) -> Plan {
    match tier {
        Tier::Smoke => Plan {
            sizes: vec![2_000],
            interval: 3,
            isolation_size: 2_000,
            cycles: CYCLES,
        },
        Tier::Quick => Plan {
            sizes: vec![20_000],
            interval: 10,
            isolation_size: 20_000,
            cycles: CYCLES,
        },
        Tier::Full => Plan {
            sizes: vec![100_000, 1_000_000],
            interval: 60,
            isolation_size: 100_000,
            cycles: CYCLES,
        },
    }
}

/// F2's healthy-check p99 (ms) per (N, interval) measured by this runner process, for F5.
static F2_P99: Mutex<Option<HashMap<(usize, u32), f64>>> = Mutex::new(None);

/// `10k`, `1M`: how the figures name a fleet size.
pub(super) fn size_name(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The `i`-th healthy target of the bench-target fleet.
pub(super) fn ok_target(i: usize) -> Target {
    Target::fleet_ok(i, ADDRS)
}

/// Every tenth target hangs (`/hang`, answered never: the check times out).
fn hanging_target(i: usize) -> Target {
    if i.is_multiple_of(10) {
        Target::http(services::fleet_url(i, ADDRS, "/hang"))
    } else {
        ok_target(i)
    }
}

/// The timeout of every seeded check: short, so the hanging tenth of F5 ends quickly.
const TIMEOUT_SECONDS: u32 = 2;

fn spec<'a>(n: usize, interval: u32, target: &'a (dyn Fn(usize) -> Target + Sync)) -> Seed<'a> {
    Seed {
        tenant: TENANT,
        count: n,
        interval_seconds: interval,
        timeout_seconds: TIMEOUT_SECONDS,
        status: Status::Active,
        target,
    }
}

/// What one daemon run measured.
struct Run {
    /// Process start → `/readyz` reports N actors; `None` if not within `limit`.
    to_actors: Option<Duration>,
    /// The most actors `/readyz` reported.
    actors_reached: u64,
    limit: Duration,
    /// Process start → the fleet has served every `/ok/{i}` once; `None` if not waited for
    /// or not within the limit.
    to_first_checks: Option<Duration>,
    distinct_reached: u64,
    rss_kib: u64,
    /// Lateness (ms) of the checks that started in the measurement window, successes only
    /// when `healthy_only`.
    lateness_ms: Vec<f64>,
    /// Checks due in the window (N × cycles).
    expected_checks: f64,
    /// What the window cost: requests the target fleet served, and the CPU time of the
    /// daemon and of the fleet, over `window` (zero when no cycles ran).
    window: Window,
    /// SIGTERM to exit after the window (`None`: not stopped gracefully, or not within the
    /// test kit's 60 s).
    stopped_in: Option<Duration>,
    /// Every check's lateness since start, from the daemon's own histogram at the window's
    /// end (see [`LatenessHistogram`]).
    histogram: Option<LatenessHistogram>,
}

/// The daemon's `catalogd_check_lateness_seconds` histogram: `(le, cumulative count)` by
/// bound. Unlike the history's `lateness_us` it counts every check the engine ran, including
/// those whose results the history writer dropped (at 1M on this box, most of them), but it
/// starts at the process start, so the first interval's spread-out first checks are in it,
/// and its quantiles are bucket bounds.
struct LatenessHistogram {
    buckets: Vec<(f64, f64)>,
}

impl LatenessHistogram {
    fn parse(metrics: &str) -> Option<LatenessHistogram> {
        let mut buckets: Vec<(f64, f64)> = metrics
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("catalogd_check_lateness_seconds_bucket{le=\"")?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        (buckets.last()?.1 > 0.0).then_some(LatenessHistogram { buckets })
    }

    fn total(&self) -> f64 {
        self.buckets.last().map_or(0.0, |&(_, count)| count)
    }

    /// The share of checks that started at most `seconds` late (`seconds` must be a bound).
    fn share_within(&self, seconds: f64) -> Option<f64> {
        let &(_, count) = self.buckets.iter().find(|(le, _)| *le == seconds)?;
        Some(count / self.total())
    }

    /// The smallest bound that at least `q` of the checks are within.
    fn quantile_bound(&self, q: f64) -> f64 {
        let needed = q * self.total();
        self.buckets
            .iter()
            .find(|(_, count)| *count >= needed)
            .map_or(f64::INFINITY, |&(le, _)| le)
    }

    fn note(&self, size: &str) -> String {
        let bound = |q| match self.quantile_bound(q) {
            le if le.is_finite() => format!("≤ {} ms", le * 1000.0),
            _ => "above the last bound".to_owned(),
        };
        format!(
            "F2 {size}: the daemon's own lateness histogram, every check since start ({:.0}, \
             the first interval included): {} started within 100 ms of their slot; p50 {}, p99 \
             {}, p99.9 {} (bucket bounds)",
            self.total(),
            self.share_within(0.1)
                .map_or("?".to_owned(), |share| format!("{:.2}%", share * 100.0)),
            bound(0.5),
            bound(0.99),
            bound(0.999)
        )
    }
}

/// Requests served and CPU used over the measurement window.
#[derive(Default)]
struct Window {
    length: Duration,
    served: u64,
    daemon_cpu: Duration,
    fleet_cpu: Duration,
}

impl Window {
    fn rate(&self) -> f64 {
        self.served as f64 / self.length.as_secs_f64().max(1e-9)
    }

    /// CPU µs per check of the daemon and of the fleet.
    fn per_check_us(&self) -> (f64, f64) {
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / (self.served.max(1) as f64);
        (per(self.daemon_cpu), per(self.fleet_cpu))
    }
}

impl Run {
    /// A note when the run fell short of what the figure needs.
    fn shortfall(&self, what: &str, n: usize) -> Option<String> {
        if self.to_actors.is_none() {
            return Some(format!(
                "{what}: only {} of {n} actors running after {:.0} s (RSS then {:.0} MiB); the \
                 figures that need the whole fleet are not measured at this size",
                self.actors_reached,
                self.limit.as_secs_f64(),
                self.rss_kib as f64 / 1024.0
            ));
        }
        if self.expected_checks > 0.0
            && (self.lateness_ms.len() as f64) < 0.9 * self.expected_checks
        {
            return Some(format!(
                "{what}: the history holds {} checks in the window where {:.0} were due: \
                 checks were skipped or their results not persisted",
                self.lateness_ms.len(),
                self.expected_checks
            ));
        }
        None
    }
}

/// Starts a daemon on `database_url` (seeded with `n` integrations), measures start-up,
/// and, when `cycles > 0`, runs `cycles` intervals after the first checks and measures RSS,
/// lateness, the check rate and what it cost.
async fn run_daemon(
    fleet: &TargetFleet,
    database_url: &str,
    n: usize,
    interval: u32,
    cycles: u32,
    wait_first_checks: bool,
    healthy_only: bool,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::new();
    fleet.reset_distinct(&client).await?;
    let dir = DaemonDir::new(database_url, "")?;
    // Start-up at 1M takes tens of seconds; the listeners come up before the actors.
    let mut daemon = dir.start(Duration::from_secs(300))?;
    let spawned = daemon.spawned;
    // Ten times the start-up target (3 s per 100k, 30 s at 1M), at least 30 s.
    let limit = Duration::from_secs((n as u64 / 3_333).max(30));
    let mut run = Run {
        to_actors: None,
        actors_reached: 0,
        limit,
        to_first_checks: None,
        distinct_reached: 0,
        rss_kib: 0,
        lateness_ms: Vec::new(),
        expected_checks: 0.0,
        window: Window::default(),
        stopped_in: None,
        histogram: None,
    };
    while spawned.elapsed() < limit {
        if let Ok(ready) = daemon.readyz(&client).await {
            let actors = ready
                .get("checks")
                .and_then(|c| c.get("actors")?.as_u64())
                .unwrap_or(0);
            run.actors_reached = run.actors_reached.max(actors);
            if actors as usize >= n {
                run.to_actors = Some(spawned.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if run.to_actors.is_none() {
        run.rss_kib = sys::rss_kib(daemon.pid());
        // Killed on drop: nothing is read from its database.
        return Ok(run);
    }
    if wait_first_checks {
        let deadline = limit + Duration::from_secs(u64::from(interval) * 2);
        while spawned.elapsed() < deadline {
            let (_, distinct) = fleet.counters(&client).await?;
            run.distinct_reached = distinct;
            if distinct >= n as u64 {
                run.to_first_checks = Some(spawned.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if cycles > 0 {
        // Steady state: the window starts once every integration has been checked (or the
        // wait for that ended), so the first interval's spread start is not in it.
        let window = Duration::from_secs(u64::from(interval * cycles));
        let window_start = chrono::Utc::now();
        let from = Instant::now();
        let (served, _) = fleet.counters(&client).await?;
        let (daemon_cpu, fleet_cpu) = (sys::cpu_time(daemon.pid()), sys::cpu_time(fleet.pid()));
        // One line per interval, so a long window shows whether the rate and the memory hold.
        let mut last = served;
        for cycle in 1..=cycles {
            tokio::time::sleep_until((from + window * cycle / cycles).into()).await;
            let (now, _) = fleet.counters(&client).await?;
            eprintln!(
                "# {n}: interval {cycle} of {cycles}: {:.0} checks/s served, daemon RSS {:.0} MiB",
                now.saturating_sub(last) as f64 / f64::from(interval),
                sys::rss_kib(daemon.pid()) as f64 / 1024.0
            );
            last = now;
        }
        let (served_end, _) = fleet.counters(&client).await?;
        run.window = Window {
            length: from.elapsed(),
            served: served_end.saturating_sub(served),
            daemon_cpu: sys::cpu_time(daemon.pid()).saturating_sub(daemon_cpu),
            fleet_cpu: sys::cpu_time(fleet.pid()).saturating_sub(fleet_cpu),
        };
        // Before the scrape below: rendering a million integrations' series allocates
        // hundreds of MiB that the allocator keeps a while (700 MiB more in one 1M run).
        run.rss_kib = sys::rss_kib(daemon.pid());
        if let Ok(metrics) = daemon.scrape(&client).await {
            run.histogram = LatenessHistogram::parse(&metrics);
            let sum = |name| crate::services::metric_sum(&metrics, name);
            eprintln!(
                "# {n}: the history writer wrote {:.0} check results and dropped {:.0} since start",
                sum("catalogd_check_results_written_total").unwrap_or(0.0),
                sum("catalogd_check_results_dropped_total").unwrap_or(0.0)
            );
        }
        let window_end = window_start + chrono::Duration::from_std(window)?;
        // A graceful stop flushes the history writer; if it takes too long, the daemon is
        // killed and the history read holds what was written by then (the shortfall note
        // says so).
        let stopping = Instant::now();
        match daemon.terminate() {
            Ok(_) => run.stopped_in = Some(stopping.elapsed()),
            Err(e) => eprintln!("# {e:#}; killed"),
        }
        // Where a slow stop spent its time (the daemon logs each step's elapsed time), and
        // what went wrong during the run, if anything did.
        let (mut warnings, mut errors) = (0usize, 0usize);
        for line in daemon.rest_of_log() {
            // The first three of each level are printed.
            let problem = if line.contains(" WARN ") {
                warnings += 1;
                warnings <= 3
            } else if line.contains(" ERROR ") {
                errors += 1;
                errors <= 3
            } else {
                false
            };
            if problem || line.contains("stopping") || line.contains("stopped") {
                eprintln!(
                    "# daemon {n}: {}",
                    line.chars().take(400).collect::<String>()
                );
            }
        }
        eprintln!("# daemon {n}: {warnings} warnings and {errors} errors logged");
        drop(daemon);
        run.lateness_ms =
            read_lateness(database_url, window_start, window_end, healthy_only).await?;
        run.expected_checks = n as f64 * f64::from(cycles);
    }
    // Start-up only: killed on drop.
    Ok(run)
}

/// The `lateness_us` (as ms) of the checks that started in `[from, to)`, from the daemon's
/// history table (SQLite).
async fn read_lateness(
    database_url: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    healthy_only: bool,
) -> anyhow::Result<Vec<f64>> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
    let sql = if healthy_only {
        "SELECT lateness_us FROM check_results WHERE checked_at >= $1 AND checked_at < $2 \
         AND outcome = 0"
    } else {
        "SELECT lateness_us FROM check_results WHERE checked_at >= $1 AND checked_at < $2"
    };
    let rows: Vec<i64> = sqlx::query_scalar(sql)
        .bind(from.timestamp_micros())
        .bind(to.timestamp_micros())
        .fetch_all(&mut conn)
        .await?;
    conn.close().await?;
    Ok(rows.into_iter().map(|us| us as f64 / 1000.0).collect())
}

/// The RSS (KiB) of a daemon with an empty store, once it is listening, and how long it
/// took to stop on SIGTERM.
async fn empty_daemon() -> anyhow::Result<(u64, Duration)> {
    let dir = DaemonDir::new("sqlite://{dir}/catalogd.db", "")?;
    let mut daemon = dir.start(Duration::from_secs(30))?;
    let client = reqwest::Client::new();
    services::poll(
        "empty daemon ready",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let ready = daemon.readyz(&client).await.ok()?;
            (ready.get("checks")?.get("engine")?.as_str()? == "running").then_some(())
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = sys::rss_kib(daemon.pid());
    let stopping = Instant::now();
    daemon.terminate()?;
    Ok((rss, stopping.elapsed()))
}

/// F1: how long the loaded daemon took to stop on SIGTERM, against an empty daemon. Not an
/// issue's target, but what Kubernetes gives a pod by default (`terminationGracePeriodSeconds`
/// is 30 s) before it kills it, and with it the check results still queued.
fn stop_row(outcome: &mut Outcome, size: &str, run: &Run, cycles: u32, empty: Duration) {
    let ours = run.stopped_in.map_or(60.0, |d| d.as_secs_f64());
    let mut row = Row::new(
        "F1",
        format!("SIGTERM to exit, {size}, after {cycles} intervals of checks"),
        Value::new(ours, "s"),
    )
    .against("empty daemon", Value::new(empty.as_secs_f64(), "s"))
    .at_most(30.0, "30 s (Kubernetes' default grace period)");
    if run.stopped_in.is_none() {
        row.met = Some(false);
        outcome.notes.push(format!(
            "F1 {size}: the daemon did not stop within 60 s of SIGTERM and was killed"
        ));
    }
    outcome.rows.push(row);
}

/// `bench/src/bin/engine-fleet.rs`, built by scripts/bench.sh next to the runner.
fn engine_example() -> anyhow::Result<std::path::PathBuf> {
    let path = services::release_bin("engine-fleet");
    if !path.exists() {
        bail!(
            "{} is missing: cargo build --release -p catalogd-bench --bins",
            path.display()
        );
    }
    Ok(path)
}

/// Bytes per idle bare ractor actor at `n` (the example's `bare` mode, its own process).
fn bare_actor_bytes(n: usize) -> anyhow::Result<f64> {
    let out = std::process::Command::new(engine_example()?)
        .args(["bare", &n.to_string()])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "B/actor")
        .and_then(|w| w[0].parse().ok())
        .with_context(|| format!("bare actors said {text:?}"))
}

/// (p50, p99, p99.9) lateness in ms of the engine alone with a no-op probe: `n`
/// integrations every `interval` s for two intervals (the example's `load` mode).
fn engine_alone_lateness(n: usize, interval: u32) -> anyhow::Result<(f64, f64, f64, u64)> {
    let run = (interval * 2).max(6);
    let out = std::process::Command::new(engine_example()?)
        .args([
            "load",
            &n.to_string(),
            &interval.to_string(),
            &run.to_string(),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("steady_lateness_us"))
        .with_context(|| format!("engine load said {text:?}"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .context("field missing")?
            .parse::<f64>()
            .map_err(Into::into)
    };
    Ok((
        field("p50")? / 1000.0,
        field("p99")? / 1000.0,
        field("p999")? / 1000.0,
        field("n")? as u64,
    ))
}

fn remember_f2(n: usize, interval: u32, p99: f64) {
    F2_P99
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert((n, interval), p99);
}

fn remembered_f2(n: usize, interval: u32) -> Option<f64> {
    F2_P99
        .lock()
        .unwrap()
        .as_ref()?
        .get(&(n, interval))
        .copied()
}

/// F1, F2 and F3.
pub async fn run(tier: Tier) -> anyhow::Result<Outcome> {
    let plan = plan(tier);
    let mut outcome = Outcome::default();
    let fleet = TargetFleet::start_on_fleet_port(ADDRS)?;
    let (empty_rss, empty_stop) = empty_daemon().await?;
    for &n in &plan.sizes {
        let size = size_name(n);
        let interval = plan.interval;
        let url = seed::seeded_copy(Backend::Sqlite, &spec(n, interval, &ok_target), "ok").await?;
        let fleet_cpu = sys::cpu_time(fleet.pid());
        let mut run = run_daemon(&fleet, &url, n, interval, plan.cycles, true, false).await?;
        let fleet_cpu = sys::cpu_time(fleet.pid()).saturating_sub(fleet_cpu);
        seed::release(&url).await;
        let short = run.shortfall(&format!("SQLite {size}"), n);
        outcome.notes.extend(short.clone());

        // F3 on SQLite.
        let sqlite_actors = startup_row(&mut outcome, &size, "SQLite", &run, n, None);
        let sqlite_first = first_check_row(&mut outcome, &size, "SQLite", &run, interval, None);

        if run.to_actors.is_some() {
            // F1.
            let per = run.rss_kib as f64 / n as f64;
            let bare = bare_actor_bytes(n)? / 1024.0;
            let mut row = Row::new(
                "F1",
                format!("memory per integration, {size}, all-in (RSS / N)"),
                Value::new(per, "KiB"),
            )
            .against("idle bare ractor actor", Value::new(bare, "KiB"));
            if n == 1_000_000 {
                // Issue 13: RSS ≤ 10 GiB all-in at 1M, i.e. 10.49 KiB per integration.
                row = row.at_most(10.0 * 1024.0 * 1024.0 / 1e6, "10 GiB all-in at 1M");
            }
            outcome.rows.push(row);
            let marginal = run.rss_kib.saturating_sub(empty_rss) as f64 / n as f64;
            outcome.rows.push(
                Row::new(
                    "F1",
                    format!("memory per integration, {size}, over an empty daemon"),
                    Value::new(marginal, "KiB"),
                )
                .against("idle bare ractor actor", Value::new(bare, "KiB")),
            );
            outcome.notes.push(format!(
                "F1 {size}: daemon RSS {:.0} MiB after {cycles} check cycles at {interval} s \
                 (empty daemon {:.0} MiB); the target fleet used {:.1} CPU-s meanwhile (not \
                 counted anywhere)",
                run.rss_kib as f64 / 1024.0,
                empty_rss as f64 / 1024.0,
                fleet_cpu.as_secs_f64(),
                cycles = plan.cycles,
            ));

            // F2.
            let checks = run.lateness_ms.len();
            let p50 = sys::quantile(&mut run.lateness_ms, 0.5);
            let p99 = sys::quantile(&mut run.lateness_ms, 0.99);
            let p999 = sys::quantile(&mut run.lateness_ms, 0.999);
            remember_f2(n, interval, p99);
            let (b50, b99, b999, bn) = engine_alone_lateness(n, interval)?;
            let base = "engine alone, no-op probe";
            outcome.rows.push(
                Row::new(
                    "F2",
                    format!("check lateness p50, {size} @ {interval} s"),
                    Value::new(p50, "ms"),
                )
                .against(base, Value::new(b50, "ms")),
            );
            let mut row = Row::new(
                "F2",
                format!("check lateness p99, {size} @ {interval} s"),
                Value::new(p99, "ms"),
            )
            .against(base, Value::new(b99, "ms"));
            if n == 100_000 && interval == 60 {
                row = row.at_most(20.0, "20 ms at 100k");
            } else if n == 1_000_000 && interval == 60 {
                row = row.at_most(100.0, "100 ms at 1M");
            }
            if short.is_some() {
                // Checks missing from the window cannot count as on time.
                row.met = row.met.map(|_| false);
            }
            outcome.rows.push(row);
            outcome.rows.push(
                Row::new(
                    "F2",
                    format!("check lateness p99.9, {size} @ {interval} s"),
                    Value::new(p999, "ms"),
                )
                .against(base, Value::new(b999, "ms")),
            );
            outcome.notes.push(format!(
                "F2 {size}: {checks} real HTTP checks in {} intervals after the first checks \
                 (history lateness_us); engine alone: {bn} checks",
                plan.cycles
            ));
            if let Some(histogram) = &run.histogram {
                outcome.notes.push(histogram.note(&size));
            }
            steady_rate(&mut outcome, &size, n, interval, &run.window);
            stop_row(&mut outcome, &size, &run, plan.cycles, empty_stop);
        }

        // F3 on PostgreSQL: start-up only.
        let url =
            seed::seeded_copy(Backend::Postgres, &spec(n, interval, &ok_target), "ok").await?;
        let pg = run_daemon(&fleet, &url, n, interval, 0, true, false).await;
        seed::release(&url).await;
        match pg {
            Ok(pg) => {
                outcome
                    .notes
                    .extend(pg.shortfall(&format!("PostgreSQL {size}"), n));
                startup_row(
                    &mut outcome,
                    &size,
                    "PostgreSQL",
                    &pg,
                    n,
                    Some(sqlite_actors),
                );
                first_check_row(
                    &mut outcome,
                    &size,
                    "PostgreSQL",
                    &pg,
                    interval,
                    Some(sqlite_first),
                );
            }
            Err(e) => outcome
                .notes
                .push(format!("F3 PostgreSQL {size} failed: {e:#}")),
        }
        for row in &outcome.rows {
            // Progress on stderr: a size that fails later does not lose this one's lines.
            eprintln!("# so far: {}", row.line());
        }
    }
    outcome.notes.push(format!(
        "F3: first checks are spread over one interval ({} s) by design (each integration's \
         phase within its interval comes from its id), so 'every first check' ≈ start-up + \
         one interval",
        plan.interval
    ));
    Ok(outcome)
}

/// The check rate the fleet served in steady state, against the rate due, and what
/// it cost: when the box's two cores are the limit, the note says so with the numbers.
fn steady_rate(outcome: &mut Outcome, size: &str, n: usize, interval: u32, window: &Window) {
    let due = n as f64 / f64::from(interval);
    let rate = window.rate();
    let mut row = Row::new(
        "F2",
        format!("checks served per second in steady state, {size} @ {interval} s"),
        Value::new(rate, "/s"),
    )
    .against("due", Value::new(due, "/s"));
    if n == 1_000_000 {
        row = row.ratio_at_least(0.98);
    }
    outcome.rows.push(row);
    let (daemon_us, fleet_us) = window.per_check_us();
    let cores = |us: f64| due * us / 1e6;
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let busy = (window.daemon_cpu + window.fleet_cpu).as_secs_f64()
        / window.length.as_secs_f64().max(1e-9);
    outcome.notes.push(format!(
        "F2 {size}: over {:.0} s the fleet served {rate:.0} checks/s of {due:.0} due; per check \
         the daemon used {daemon_us:.0} µs of CPU and the target fleet {fleet_us:.0} µs, so \
         {due:.0}/s needs {:.2} + {:.2} = {:.2} cores; the two used {busy:.2} of this box's \
         {cpus}{}",
        window.length.as_secs_f64(),
        cores(daemon_us),
        cores(fleet_us),
        cores(daemon_us + fleet_us),
        if cores(daemon_us + fleet_us) > cpus as f64 * 0.9 {
            ": the box is the limit"
        } else {
            ""
        }
    ));
}

/// An F3 row for process start → every actor running (the limit, marked, if not reached).
fn startup_row(
    outcome: &mut Outcome,
    size: &str,
    backend: &str,
    run: &Run,
    n: usize,
    against: Option<Value>,
) -> Value {
    let (secs, suffix) = match run.to_actors {
        Some(t) => (t.as_secs_f64(), String::new()),
        None => (run.limit.as_secs_f64(), " (not reached: the limit)".into()),
    };
    let mut row = Row::new(
        "F3",
        format!("start-up to every actor running, {size}, {backend}{suffix}"),
        Value::new(secs, "s"),
    );
    if let Some(against) = against {
        row = row.against("SQLite", against);
    }
    if n == 100_000 {
        row = row.at_most(3.0, "3 s at 100k");
    } else if n == 1_000_000 {
        row = row.at_most(30.0, "30 s at 1M");
    }
    if run.to_actors.is_none() {
        row.met = row.met.map(|_| false);
    }
    let value = row.ours.clone();
    outcome.rows.push(row);
    value
}

/// An F3 row for process start → every integration checked once.
fn first_check_row(
    outcome: &mut Outcome,
    size: &str,
    backend: &str,
    run: &Run,
    interval: u32,
    against: Option<Value>,
) -> Value {
    let (secs, suffix) = match run.to_first_checks {
        Some(t) => (t.as_secs_f64(), String::new()),
        None => (
            run.limit.as_secs_f64() + 2.0 * f64::from(interval),
            format!(
                " (not reached: {} checked by the limit)",
                run.distinct_reached
            ),
        ),
    };
    let mut row = Row::new(
        "F3",
        format!(
            "start-up to every first check, {size}, {backend} (spread over {interval} s){suffix}"
        ),
        Value::new(secs, "s"),
    );
    if let Some(against) = against {
        row = row.against("SQLite", against);
    }
    let value = row.ours.clone();
    outcome.rows.push(row);
    value
}

/// F5.
pub async fn isolation(tier: Tier) -> anyhow::Result<Outcome> {
    let plan = plan(tier);
    let mut outcome = Outcome::default();
    let n = plan.isolation_size;
    let interval = plan.interval;
    let size = size_name(n);
    let fleet = TargetFleet::start_on_fleet_port(ADDRS)?;
    let (baseline, baseline_name) = match remembered_f2(n, interval) {
        Some(p99) => (p99, "F2 (this run)"),
        None => {
            let url =
                seed::seeded_copy(Backend::Sqlite, &spec(n, interval, &ok_target), "ok").await?;
            let run = run_daemon(&fleet, &url, n, interval, plan.cycles, false, false).await;
            seed::release(&url).await;
            let run = run?;
            if let Some(short) = run.shortfall(&format!("F5 baseline {size}"), n) {
                bail!("{short}");
            }
            let mut lateness = run.lateness_ms;
            (sys::quantile(&mut lateness, 0.99), "0% hanging (F2 setup)")
        }
    };
    let url = seed::seeded_copy(
        Backend::Sqlite,
        &spec(n, interval, &hanging_target),
        "hang10",
    )
    .await?;
    let run = run_daemon(&fleet, &url, n, interval, plan.cycles, false, true).await;
    seed::release(&url).await;
    let run = run?;
    if run.to_actors.is_none() {
        bail!(
            "{}",
            run.shortfall(&format!("10% hanging {size}"), n)
                .unwrap_or_default()
        );
    }
    let mut lateness = run.lateness_ms;
    let healthy = lateness.len();
    let p99 = sys::quantile(&mut lateness, 0.99);
    outcome.rows.push(
        Row::new(
            "F5",
            format!("healthy-check lateness p99, 10% hanging, {size} @ {interval} s"),
            Value::new(p99, "ms"),
        )
        .against(baseline_name, Value::new(baseline, "ms"))
        .ratio_at_most(2.0),
    );
    outcome.notes.push(format!(
        "F5 {size}: every tenth target hangs until the {TIMEOUT_SECONDS} s timeout; \
         {healthy} healthy checks in {} intervals",
        plan.cycles
    ));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::LatenessHistogram;

    #[test]
    fn the_lateness_histogram_gives_bucket_bounds_and_the_share_within_100_ms() {
        let metrics = "# TYPE catalogd_check_lateness_seconds histogram\n\
            catalogd_check_lateness_seconds_bucket{le=\"0.001\"} 500\n\
            catalogd_check_lateness_seconds_bucket{le=\"0.01\"} 900\n\
            catalogd_check_lateness_seconds_bucket{le=\"0.1\"} 985\n\
            catalogd_check_lateness_seconds_bucket{le=\"1\"} 999\n\
            catalogd_check_lateness_seconds_bucket{le=\"+Inf\"} 1000\n\
            catalogd_check_lateness_seconds_sum 12.5\n\
            catalogd_check_lateness_seconds_count 1000\n\
            catalogd_check_latency_seconds_bucket{le=\"0.1\"} 7\n";
        let histogram = LatenessHistogram::parse(metrics).expect("parsed");
        assert_eq!(histogram.total(), 1000.0);
        assert_eq!(histogram.share_within(0.1), Some(0.985));
        assert_eq!(histogram.quantile_bound(0.5), 0.001);
        assert_eq!(histogram.quantile_bound(0.99), 1.0);
        assert_eq!(histogram.quantile_bound(0.9999), f64::INFINITY);
        let note = histogram.note("1M");
        assert!(note.contains("98.50% started within 100 ms"), "{note}");
        assert!(note.contains("p99 ≤ 1000 ms"), "{note}");
        assert!(note.contains("p99.9 ≤ 1000 ms"), "{note}");
        // No checks yet (or no such family): nothing to say.
        assert!(LatenessHistogram::parse(
            "catalogd_check_lateness_seconds_bucket{le=\"+Inf\"} 0\n"
        )
        .is_none());
        assert!(LatenessHistogram::parse("").is_none());
    }
}
