//! F10, cluster (issue 12): 1, 2 and 3 `catalogd serve` processes on one PostgreSQL sharing
//! one fleet — checks delivered and CPU per check against the 1-daemon run, the per-integration
//! gap after a SIGKILL and after a graceful leave, double polls, and the lease/heartbeat
//! traffic on PostgreSQL, which must grow with shards and nodes, never with integrations.
//!
//! - **Scaling**: N active `http` integrations (`/ok/{i}` on the target fleet) at a short
//!   interval, seeded once. Daemons join one at a time on the same database; after each join
//!   the runner waits until the cluster has settled (every node sees k nodes, the shards
//!   owned add up to the total and are balanced within one, the actors add up to N), lets a
//!   warm-up pass and measures a window: checks delivered per second (the fleet's own request
//!   counter, so a double poll counts and a missed check does not) and CPU-seconds of all
//!   daemons (utime + stime from /proc) per check. Baseline: the 1-daemon window of the same
//!   run. PostgreSQL's own CPU is not counted.
//! - **Takeover**: with 3 daemons, one is SIGKILLed. `bench-target` keeps, per integration,
//!   the time of its last request and the longest gap between two requests in a window the
//!   runner opens at the kill (`/gaps`), read just before the kill too, so for every
//!   integration of the shards the victim held (`cluster_shards` just before the kill) the
//!   runner knows, from the target's side, the time from the kill to its next check (the
//!   takeover time, against DESIGN §9's bound `interval + lease_ttl + renew_interval`) and
//!   the whole gap from its last check before the kill to the next (up to one interval
//!   more). Then one survivor leaves with SIGTERM (it hands its shards over): the gap's p99
//!   against `interval + lease_ttl` (no integration may wait for a lease to expire).
//! - **Double polls**: requests for the same integration less than ¾ of an interval apart,
//!   over the joins, the kill and the leave, as a share of all requests (issue: below 1%,
//!   and only during handovers).
//! - **Lease traffic**: row writes to `cluster_shards` and `cluster_nodes` per second
//!   (`pg_stat_user_tables`) at 1, 2 and 3 daemons in the scaling run; and, with 3 daemons
//!   on an idle fleet (every integration paused: actors, no checks) at two catalog sizes,
//!   those and the database's transactions per second (`pg_stat_database`;
//!   pg_stat_statements is not loaded), measured once the one-off work after start-up (each
//!   node reads the uptime windows of every integration it starts monitoring) is over. The
//!   larger size against the smaller one: a ratio near 1 means the lease traffic does not
//!   grow with integrations. PostgreSQL publishes a backend's counters about once a second,
//!   so short smoke windows are rough.
//!
//! Expected duration: smoke ≈ 50 s, quick ≈ 3 min, full ≈ 15 min (seeding 1M paused rows, and
//! 3 daemons spawning 1M actors between them).

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use catalogd_actors::Status;
use serde_json::Value as Json;
use uuid::Uuid;

use super::fleet::{ok_target, size_name};
use super::Outcome;
use crate::report::{Row, Value};
use crate::seed::{self, Backend, Seed, Target};
use crate::services::{self, Daemon, DaemonDir, TargetFleet};
use crate::sys;
use crate::Tier;

const ADDRS: u32 = 64;
const TENANT: &str = "bench";
const TIMEOUT_SECONDS: u32 = 2;
const NODES: usize = 3;

struct Plan {
    /// Active integrations of the scaling and takeover run, and their interval (s).
    n: usize,
    interval: u32,
    lease_ttl: Duration,
    renew_interval: Duration,
    /// Measurement window of each scaling step, in intervals, after a warm-up.
    window_intervals: u32,
    warm_up: Duration,
    /// The two idle (paused) catalog sizes of the lease-traffic comparison.
    idle_sizes: [usize; 2],
    /// Measurement window on the idle fleet.
    idle_window: Duration,
}

fn plan(tier: Tier) -> Plan {
    match tier {
        Tier::Smoke => Plan {
            n: 1_000,
            interval: 2,
            lease_ttl: Duration::from_secs(3),
            renew_interval: Duration::from_secs(1),
            window_intervals: 1,
            warm_up: Duration::from_secs(1),
            idle_sizes: [500, 2_500],
            idle_window: Duration::from_secs(2),
        },
        Tier::Quick => Plan {
            n: 10_000,
            interval: 5,
            lease_ttl: Duration::from_secs(6),
            renew_interval: Duration::from_secs(2),
            window_intervals: 3,
            warm_up: Duration::from_secs(5),
            idle_sizes: [10_000, 100_000],
            idle_window: Duration::from_secs(20),
        },
        // The daemon's defaults (lease_ttl 15 s, renew_interval lease_ttl / 3).
        Tier::Full => Plan {
            n: 20_000,
            interval: 10,
            lease_ttl: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            window_intervals: 3,
            warm_up: Duration::from_secs(10),
            idle_sizes: [10_000, 1_000_000],
            idle_window: Duration::from_secs(60),
        },
    }
}

impl Plan {
    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval))
    }

    /// DESIGN §9's promise after an owner dies: `interval + lease_ttl + renew_interval`.
    fn bound(&self) -> Duration {
        self.interval() + self.lease_ttl + self.renew_interval
    }

    /// Two requests for one integration closer than this are a double poll.
    fn close(&self) -> Duration {
        self.interval() * 3 / 4
    }
}

/// One `catalogd serve` of the cluster, with its directory (which must outlive it).
struct Node {
    id: String,
    daemon: Daemon,
    _dir: DaemonDir,
}

/// Spawns the daemons named `ids` on `url` at once (none waits for another to be up), then
/// waits for each one's listeners.
fn start_nodes(plan: &Plan, url: &str, ids: &[String]) -> anyhow::Result<Vec<Node>> {
    let mut spawned = Vec::new();
    for id in ids {
        let dir = DaemonDir::new(
            url,
            &format!(
                "[cluster]\nnode_id = \"{id}\"\nlease_ttl = \"{}ms\"\nrenew_interval = \"{}ms\"\n",
                plan.lease_ttl.as_millis(),
                plan.renew_interval.as_millis()
            ),
        )?;
        let mut command = Command::new(services::release_bin("catalogd"));
        command
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .args(["serve", "--config", dir.config.to_str().unwrap()]);
        spawned.push((id.clone(), Daemon::spawn(command)?, dir));
    }
    let mut nodes = Vec::new();
    for (id, mut daemon, dir) in spawned {
        daemon
            .wait_ready(Instant::now() + Duration::from_secs(300))
            .with_context(|| format!("starting {id}"))?;
        nodes.push(Node {
            id,
            daemon,
            _dir: dir,
        });
    }
    Ok(nodes)
}

/// What every node's `/readyz` says about the cluster.
#[derive(Debug, Default)]
struct ClusterView {
    /// (node id, nodes seen, shards owned, actors) per node.
    nodes: Vec<(String, u64, u64, u64)>,
    shards_total: u64,
}

impl ClusterView {
    async fn read(nodes: &[Node], client: &reqwest::Client) -> anyhow::Result<ClusterView> {
        let mut view = ClusterView::default();
        for node in nodes {
            let ready = node.daemon.readyz(client).await?;
            // DESIGN §9's `cluster` object (top level; under `checks` in the core's first cut).
            let cluster = if ready["cluster"].is_object() {
                &ready["cluster"]
            } else {
                &ready["checks"]["cluster"]
            };
            let field = |v: &Json| v.as_u64().unwrap_or(0);
            view.shards_total = field(&cluster["shardsTotal"]);
            view.nodes.push((
                node.id.clone(),
                field(&cluster["nodes"]),
                field(&cluster["shardsOwned"]),
                field(&ready["checks"]["actors"]),
            ));
        }
        Ok(view)
    }

    /// Every node sees all `k` of them, the shards owned add up to the total, balanced within
    /// one, and the actors add up to the monitored integrations.
    fn settled(&self, k: usize, actors: u64) -> bool {
        let owned: Vec<u64> = self.nodes.iter().map(|n| n.2).collect();
        self.shards_total > 0
            && self.nodes.len() == k
            && self.nodes.iter().all(|n| n.1 == k as u64)
            && owned.iter().sum::<u64>() == self.shards_total
            && owned.iter().max().unwrap_or(&0) - owned.iter().min().unwrap_or(&0) <= 1
            && self.nodes.iter().map(|n| n.3).sum::<u64>() == actors
    }
}

/// Waits until the `nodes` have settled (see [`ClusterView::settled`]); returns how long it
/// took and the view.
async fn wait_settled(
    nodes: &[Node],
    actors: u64,
    limit: Duration,
    client: &reqwest::Client,
) -> anyhow::Result<(Duration, ClusterView)> {
    let began = Instant::now();
    let mut last = ClusterView::default();
    while began.elapsed() < limit {
        if let Ok(view) = ClusterView::read(nodes, client).await {
            if view.settled(nodes.len(), actors) {
                return Ok((began.elapsed(), view));
            }
            last = view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{} daemons did not settle within {:.0} s (want {actors} actors); last view \
         (node, nodes seen, shards owned, actors): {:?} of {} shards",
        nodes.len(),
        limit.as_secs_f64(),
        last.nodes,
        last.shards_total
    )
}

/// Counters of the database the daemons share.
#[derive(Debug, Clone, Copy)]
struct PgCounters {
    at: Instant,
    /// Committed + rolled back transactions of this database.
    xacts: f64,
    /// Rows inserted, updated and deleted in the cluster tables.
    lease_writes: f64,
}

impl PgCounters {
    async fn read(pool: &sqlx::PgPool) -> anyhow::Result<PgCounters> {
        let (xacts,): (i64,) = sqlx::query_as(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
             WHERE datname = current_database()",
        )
        .fetch_one(pool)
        .await?;
        let (writes,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint \
             FROM pg_stat_user_tables WHERE relname IN ('cluster_shards', 'cluster_nodes')",
        )
        .fetch_one(pool)
        .await?;
        Ok(PgCounters {
            at: Instant::now(),
            xacts: xacts as f64,
            lease_writes: writes as f64,
        })
    }

    /// (transactions/s, lease row writes/s) from `self` to `later`.
    fn rates(&self, later: &PgCounters) -> (f64, f64) {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        (
            (later.xacts - self.xacts) / secs,
            (later.lease_writes - self.lease_writes) / secs,
        )
    }
}

/// One integration's gap record from `bench-target`'s `/gaps`.
#[derive(Debug, Clone, Copy)]
struct Gap {
    max_ms: u64,
    close: u64,
    requests: u64,
    /// The gap still open now; `None` if never requested.
    since_last_ms: Option<u64>,
}

impl Gap {
    /// The longest gap of the window, the one still open included.
    fn longest_ms(&self) -> u64 {
        self.max_ms.max(self.since_last_ms.unwrap_or(u64::MAX))
    }
}

async fn gaps_reset(
    fleet: &TargetFleet,
    client: &reqwest::Client,
    close: Duration,
) -> anyhow::Result<()> {
    client
        .get(format!(
            "http://127.0.0.1:{}/gaps/reset?close_ms={}",
            fleet.port,
            close.as_millis()
        ))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn gaps(
    fleet: &TargetFleet,
    client: &reqwest::Client,
    upto: usize,
) -> anyhow::Result<Vec<Gap>> {
    let text = client
        .get(format!("http://127.0.0.1:{}/gaps?upto={upto}", fleet.port))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .map(|line| {
            let f: Vec<i64> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .with_context(|| format!("/gaps line {line:?}"))?;
            anyhow::ensure!(f.len() == 4, "/gaps line {line:?}");
            Ok(Gap {
                max_ms: f[0] as u64,
                close: f[1] as u64,
                requests: f[2] as u64,
                since_last_ms: (f[3] >= 0).then_some(f[3] as u64),
            })
        })
        .collect()
}

/// (double polls, requests) in the gap window so far.
fn double_polls(gaps: &[Gap]) -> (u64, u64) {
    gaps.iter()
        .fold((0, 0), |(c, r), g| (c + g.close, r + g.requests))
}

/// The seed index of every integration (names are `bench-{i:07}`) by id.
async fn seed_indices(pool: &sqlx::PgPool) -> anyhow::Result<HashMap<Uuid, usize>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as("SELECT integration_id, name FROM integrations")
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|(id, name)| {
            let i = name
                .strip_prefix("bench-")
                .and_then(|i| i.parse().ok())
                .with_context(|| format!("seeded name {name:?}"))?;
            Ok((id, i))
        })
        .collect()
}

/// The seed indices of the integrations in the shards `node` holds now (`cluster_shards`).
async fn held_by(
    pool: &sqlx::PgPool,
    node: &str,
    shards: u32,
    indices: &HashMap<Uuid, usize>,
) -> anyhow::Result<Vec<usize>> {
    let held: Vec<(i32,)> = sqlx::query_as("SELECT shard FROM cluster_shards WHERE owner = $1")
        .bind(node)
        .fetch_all(pool)
        .await?;
    let held: HashSet<u32> = held.into_iter().map(|(s,)| s as u32).collect();
    Ok(indices
        .iter()
        .filter(|(id, _)| held.contains(&catalogd::cluster::shard_of(**id, shards)))
        .map(|(_, &i)| i)
        .collect())
}

/// Waits until every integration in `which` has been requested since the gap window opened
/// (or `limit` passes), then returns their longest gaps (ms) and how many were not requested.
async fn wait_rechecked(
    fleet: &TargetFleet,
    client: &reqwest::Client,
    n: usize,
    which: &[usize],
    limit: Duration,
) -> anyhow::Result<(Vec<f64>, usize, Vec<Gap>)> {
    let began = Instant::now();
    loop {
        let all = gaps(fleet, client, n).await?;
        let missing = which.iter().filter(|&&i| all[i].requests == 0).count();
        if missing == 0 || began.elapsed() > limit {
            let longest = which.iter().map(|&i| all[i].longest_ms() as f64).collect();
            return Ok((longest, missing, all));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of a metric over the nodes' `/metrics`.
async fn metric_over(nodes: &[Node], client: &reqwest::Client, name: &str) -> f64 {
    let mut sum = 0.0;
    for node in nodes {
        if let Ok(text) = node.daemon.scrape(client).await {
            sum += services::metric_sum(&text, name).unwrap_or(0.0);
        }
    }
    sum
}

/// One scaling step's window.
struct Step {
    checks_per_s: f64,
    cpu_us_per_check: f64,
    xacts: f64,
    lease_writes: f64,
}

pub async fn run(tier: Tier) -> anyhow::Result<Outcome> {
    let plan = plan(tier);
    let mut outcome = Outcome::default();
    let fleet = TargetFleet::start_on_fleet_port(ADDRS)?;
    let url = seed::seeded_copy(
        Backend::Postgres,
        &Seed {
            tenant: TENANT,
            count: plan.n,
            interval_seconds: plan.interval,
            timeout_seconds: TIMEOUT_SECONDS,
            status: Status::Active,
            target: &ok_target,
        },
        "f10-ok",
    )
    .await?;
    let scaled = scaling(&plan, &fleet, &url, &mut outcome).await;
    seed::release(&url).await;
    scaled?;
    drop(fleet);

    let mut idle = Vec::new();
    let mut quiet_after = Vec::new();
    for size in plan.idle_sizes {
        let url = seed::seeded_copy(
            Backend::Postgres,
            &Seed {
                tenant: TENANT,
                count: size,
                interval_seconds: 60,
                timeout_seconds: TIMEOUT_SECONDS,
                status: Status::Paused,
                target: &|i| Target::http(format!("http://127.0.0.1:9/ok/{i}")),
            },
            "f10-paused",
        )
        .await?;
        let measured = idle_traffic(&plan, &url, size).await;
        seed::release(&url).await;
        let (rates, quiet) =
            measured.with_context(|| format!("idle fleet of {}", size_name(size)))?;
        idle.push(rates);
        quiet_after.push(quiet);
    }
    let [small, big] = plan.idle_sizes.map(size_name);
    let (s, b) = (idle[0], idle[1]);
    let vs = format!("idle fleet of {small}");
    outcome.rows.extend([
        Row::new(
            "F10",
            format!("PostgreSQL transactions/s, 3 daemons, idle fleet of {big}"),
            Value::new(b.0, "/s"),
        )
        .against(&vs, Value::new(s.0, "/s"))
        .ratio_at_most(1.25),
        Row::new(
            "F10",
            format!("lease + heartbeat row writes/s, 3 daemons, idle fleet of {big}"),
            Value::new(b.1, "/s"),
        )
        .against(&vs, Value::new(s.1, "/s"))
        .ratio_at_most(1.25),
    ]);
    for (size, quiet) in plan.idle_sizes.iter().zip(&quiet_after) {
        outcome
            .notes
            .push(format!("idle fleet of {}: {quiet}", size_name(*size)));
    }
    outcome.notes.push(format!(
        "lease traffic: 3 daemons, lease_ttl {} ms, renew_interval {} ms, every integration \
         paused (an actor each, no checks), measured over {:.0} s after the actors had spawned \
         and the shards settled, once the database had gone quiet (below {QUIET_XACTS} \
         transactions/s); row writes = n_tup_ins + n_tup_upd + n_tup_del of cluster_shards \
         and cluster_nodes (pg_stat_user_tables), transactions = pg_stat_database \
         xact_commit + xact_rollback",
        plan.lease_ttl.as_millis(),
        plan.renew_interval.as_millis(),
        plan.idle_window.as_secs_f64()
    ));
    Ok(outcome)
}

/// Scaling (1, 2, 3 daemons joining), then the SIGKILL takeover and a graceful leave.
async fn scaling(
    plan: &Plan,
    fleet: &TargetFleet,
    url: &str,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let n = plan.n;
    let size = size_name(n);
    let interval = plan.interval();
    let client = reqwest::Client::new();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let indices = seed_indices(&pool).await?;
    anyhow::ensure!(indices.len() == n, "seeded {} of {n}", indices.len());
    let settle_limit = (plan.lease_ttl + plan.renew_interval) * 4 + Duration::from_secs(30);
    gaps_reset(fleet, &client, plan.close()).await?;
    let mut nodes: Vec<Node> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut settle_times = Vec::new();
    let mut busy_after_join = Vec::new();
    for k in 1..=NODES {
        nodes.extend(start_nodes(plan, url, &[format!("bench-{k}")])?);
        let (took, _) = wait_settled(&nodes, n as u64, settle_limit, &client).await?;
        settle_times.push(took);
        let (_, busy) = wait_quiet(&pool, settle_limit).await?;
        busy_after_join.push(busy);
        tokio::time::sleep(plan.warm_up).await;
        let window = interval * plan.window_intervals;
        let served = fleet.served(&client).await?;
        let cpu: Vec<Duration> = nodes
            .iter()
            .map(|n| sys::cpu_time(n.daemon.pid()))
            .collect();
        let pg = PgCounters::read(&pool).await?;
        let began = Instant::now();
        tokio::time::sleep(window).await;
        let served = fleet.served(&client).await? - served;
        let secs = began.elapsed().as_secs_f64();
        let cpu: f64 = nodes
            .iter()
            .zip(&cpu)
            .map(|(n, before)| {
                sys::cpu_time(n.daemon.pid())
                    .saturating_sub(*before)
                    .as_secs_f64()
            })
            .sum();
        let (xacts, lease_writes) = pg.rates(&PgCounters::read(&pool).await?);
        steps.push(Step {
            checks_per_s: served as f64 / secs,
            cpu_us_per_check: cpu * 1e6 / (served as f64).max(1.0),
            xacts,
            lease_writes,
        });
    }
    let joins = double_polls(&gaps(fleet, &client, n).await?);

    // SIGKILL the second node; the gap window opens at the kill.
    let shards = ClusterView::read(&nodes, &client).await?.shards_total as u32;
    let victim = nodes.remove(1);
    let victims = held_by(&pool, &victim.id, shards, &indices).await?;
    anyhow::ensure!(!victims.is_empty(), "{} held no integration", victim.id);
    // The gap still open per integration just before the kill: the first check after it
    // comes `longest gap - open gap` after this instant.
    let open_at_kill = gaps(fleet, &client, n).await?;
    gaps_reset(fleet, &client, plan.close()).await?;
    let mut victim = victim;
    let killed = Instant::now();
    victim.daemon.kill();
    let (mut kill_gaps, unchecked, after_kill) =
        wait_rechecked(fleet, &client, n, &victims, plan.bound() * 3).await?;
    let mut to_next_check: Vec<f64> = victims
        .iter()
        .map(|&i| {
            let longest = after_kill[i].longest_ms();
            longest.saturating_sub(open_at_kill[i].since_last_ms.unwrap_or(0)) as f64
        })
        .collect();
    let rechecked_in = killed.elapsed();
    let (resettled, _) = wait_settled(&nodes, n as u64, settle_limit, &client).await?;
    let takeovers = metric_over(&nodes, &client, "catalogd_shard_takeovers_total").await;
    let fenced = metric_over(&nodes, &client, "catalogd_fenced_writes_total").await;
    let kill = double_polls(&after_kill);

    // A graceful leave: the last node goes with SIGTERM, handing its shards over.
    let leaver = nodes.pop().expect("two survivors");
    let leavers = held_by(&pool, &leaver.id, shards, &indices).await?;
    gaps_reset(fleet, &client, plan.close()).await?;
    let mut leaver = leaver;
    let left = Instant::now();
    let status = leaver.daemon.terminate()?;
    let stop_took = left.elapsed();
    let (mut leave_gaps, leave_unchecked, after_leave) =
        wait_rechecked(fleet, &client, n, &leavers, plan.bound() * 3).await?;
    let leave = double_polls(&after_leave);
    for mut node in nodes {
        if let Err(e) = node.daemon.terminate() {
            outcome.notes.push(format!("{}: {e:#}; killed", node.id));
        }
    }
    pool.close().await;

    // Rows.
    let expected = n as f64 / f64::from(plan.interval);
    let base = &steps[0];
    outcome.rows.push(
        Row::new(
            "F10",
            format!("checks delivered/s, 1 daemon, {size} @ {} s", plan.interval),
            Value::new(base.checks_per_s, "/s"),
        )
        .against("N / interval", Value::new(expected, "/s"))
        .ratio_at_least(0.95),
    );
    for (k, step) in steps.iter().enumerate().skip(1) {
        outcome.rows.push(
            Row::new(
                "F10",
                format!("checks delivered/s, {} daemons, {size}", k + 1),
                Value::new(step.checks_per_s, "/s"),
            )
            .against("1 daemon", Value::new(base.checks_per_s, "/s"))
            .ratio_at_least(0.95),
        );
    }
    outcome.rows.push(Row::new(
        "F10",
        format!("CPU per check, 1 daemon, {size}"),
        Value::new(base.cpu_us_per_check, "µs"),
    ));
    for (k, step) in steps.iter().enumerate().skip(1) {
        outcome.rows.push(
            Row::new(
                "F10",
                format!("CPU per check, {} daemons summed, {size}", k + 1),
                Value::new(step.cpu_us_per_check, "µs"),
            )
            .against("1 daemon", Value::new(base.cpu_us_per_check, "µs")),
        );
    }
    let bound = plan.bound().as_secs_f64();
    let bound_name = "bound interval + lease_ttl + renew_interval";
    let p50 = sys::quantile(&mut to_next_check, 0.5) / 1e3;
    let p99 = sys::quantile(&mut to_next_check, 0.99) / 1e3;
    let mut p99_row = Row::new(
        "F10",
        format!(
            "takeover: SIGKILL of 1 of 3 daemons → next check, p99, {size} @ {} s",
            plan.interval
        ),
        Value::new(p99, "s"),
    )
    .against(bound_name, Value::new(bound, "s"))
    .ratio_at_most(1.0);
    if unchecked > 0 {
        p99_row.met = Some(false);
    }
    let gap_p50 = sys::quantile(&mut kill_gaps, 0.5) / 1e3;
    let gap_p99 = sys::quantile(&mut kill_gaps, 0.99) / 1e3;
    outcome.rows.extend([
        Row::new(
            "F10",
            format!(
                "takeover: SIGKILL of 1 of 3 daemons → next check, p50, {size} @ {} s",
                plan.interval
            ),
            Value::new(p50, "s"),
        )
        .against(bound_name, Value::new(bound, "s")),
        p99_row,
        Row::new(
            "F10",
            format!(
                "gap per integration across the SIGKILL (last check before → next), p50, {size}"
            ),
            Value::new(gap_p50, "s"),
        )
        .against(bound_name, Value::new(bound, "s")),
        Row::new(
            "F10",
            format!(
                "gap per integration across the SIGKILL (last check before → next), p99, {size}"
            ),
            Value::new(gap_p99, "s"),
        )
        .against(bound_name, Value::new(bound, "s")),
    ]);
    let leave_p99 = sys::quantile(&mut leave_gaps, 0.99) / 1e3;
    let no_ttl = (interval + plan.lease_ttl).as_secs_f64();
    let mut leave_row = Row::new(
        "F10",
        format!(
            "gap per integration after a graceful leave (SIGTERM), p99, {size} @ {} s",
            plan.interval
        ),
        Value::new(leave_p99, "s"),
    )
    .against("interval + lease_ttl", Value::new(no_ttl, "s"))
    .ratio_at_most(1.0);
    if leave_unchecked > 0 {
        leave_row.met = Some(false);
    }
    outcome.rows.push(leave_row);
    for (k, step) in steps.iter().enumerate() {
        let mut row = Row::new(
            "F10",
            format!(
                "lease + heartbeat row writes/s, {} daemon(s), {size}",
                k + 1
            ),
            Value::new(step.lease_writes, "/s"),
        );
        if k > 0 {
            row = row.against("1 daemon", Value::new(base.lease_writes, "/s"));
        }
        outcome.rows.push(row);
    }
    let (close, requests) = (joins.0 + kill.0 + leave.0, joins.1 + kill.1 + leave.1);
    let share = 100.0 * close as f64 / (requests as f64).max(1.0);
    outcome.rows.push(
        Row::new(
            "F10",
            format!(
                "double polls (< ¾ interval apart), 2 joins + SIGKILL + leave, {size} @ {} s",
                plan.interval
            ),
            Value::new(share, "%"),
        )
        .at_most(1.0, "1%"),
    );

    outcome.notes.push(format!(
        "scaling: {size} active http integrations at {} s (expected {expected:.0} checks/s), \
         lease_ttl {} ms, renew_interval {} ms; daemons joined one at a time and settled in \
         {:?} ms; each window {} interval(s) after {} s of warm-up; PostgreSQL \
         transactions/s at 1, 2, 3 daemons (check results, fence checks, leases): {:?}, \
         each window opened once the database was quiet (transactions/s each second \
         before: {busy_after_join:?}); CPU is the daemons' only (not PostgreSQL's, not the fleet's)",
        plan.interval,
        plan.lease_ttl.as_millis(),
        plan.renew_interval.as_millis(),
        settle_times
            .iter()
            .map(|d| d.as_millis())
            .collect::<Vec<_>>(),
        plan.window_intervals,
        plan.warm_up.as_secs(),
        steps
            .iter()
            .map(|s| s.xacts.round())
            .collect::<Vec<_>>()
    ));
    outcome.notes.push(format!(
        "SIGKILL of {}: {} integrations in its shards, {unchecked} not checked again within \
         {:.0} s; all checked again {:.1} s after the kill; the 2 survivors settled {:.1} s \
         after that, took over {takeovers} shards in all (catalogd_shard_takeovers_total), \
         fenced writes {fenced}",
        victim.id,
        victims.len(),
        (plan.bound() * 3).as_secs_f64(),
        rechecked_in.as_secs_f64(),
        resettled.as_secs_f64(),
    ));
    outcome.notes.push(format!(
        "graceful leave of {}: {} integrations handed over, {leave_unchecked} not checked \
         again; SIGTERM → exit {:.1} s ({status}); double polls: {} of {} requests during \
         the joins, {} of {} after the kill, {} of {} after the leave",
        leaver.id,
        leavers.len(),
        stop_took.as_secs_f64(),
        joins.0,
        joins.1,
        kill.0,
        kill.1,
        leave.0,
        leave.1
    ));
    Ok(())
}

/// Below this many transactions per second the database counts as quiet: the lease traffic
/// of 3 daemons is a few dozen, and check results are written in batches (a few a second);
/// the work each node does once per integration it starts monitoring (reading its uptime
/// windows) is thousands a second until it is done.
const QUIET_XACTS: f64 = 200.0;

/// Waits, up to `limit`, until the database is quiet: the one-off work after shards
/// settle (each node reads the uptime windows of every integration it starts monitoring)
/// must be over before a window opens. Returns the last reading and the busy seconds'
/// transaction rates.
async fn wait_quiet(
    pool: &sqlx::PgPool,
    limit: Duration,
) -> anyhow::Result<(PgCounters, Vec<f64>)> {
    let began = Instant::now();
    let mut busy = Vec::new();
    let mut last = PgCounters::read(pool).await?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = PgCounters::read(pool).await?;
        let (xacts, _) = last.rates(&now);
        last = now;
        if xacts < QUIET_XACTS || began.elapsed() > limit {
            return Ok((last, busy));
        }
        busy.push(xacts.round());
    }
}

/// (transactions/s, lease row writes/s) of 3 daemons on an idle fleet of `size` paused
/// integrations, and what went before the window (a note).
async fn idle_traffic(plan: &Plan, url: &str, size: usize) -> anyhow::Result<((f64, f64), String)> {
    let client = reqwest::Client::new();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let ids: Vec<String> = (1..=NODES).map(|k| format!("idle-{k}")).collect();
    let nodes = start_nodes(plan, url, &ids)?;
    // Spawning is CPU-bound: about 30 s per million actors here, plus the shards settling.
    let limit = (plan.lease_ttl + plan.renew_interval) * 4
        + Duration::from_secs(60 + 120 * size as u64 / 1_000_000);
    let (settled, _) = wait_settled(&nodes, size as u64, limit, &client).await?;
    let (last, busy) = wait_quiet(&pool, limit).await?;
    let quiet = format!(
        "settled {:.1} s after start; then {} s until quiet (transactions/s each second: \
         {busy:?})",
        settled.as_secs_f64(),
        busy.len()
    );
    let before = last;
    tokio::time::sleep(plan.idle_window).await;
    let rates = before.rates(&PgCounters::read(&pool).await?);
    for mut node in nodes {
        let _ = node.daemon.terminate();
    }
    pool.close().await;
    Ok((rates, quiet))
}
