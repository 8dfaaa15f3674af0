//! F4, check efficiency: completed checks per CPU-second of the checking process, with a new
//! TCP connection per check (blackbox_exporter's own mode and catalogd's default) and with
//! keep-alive, against the same targets (the bench-target fleet, `GET /ok/{i}`):
//! - prometheus-blackbox-exporter, driven at R probes/s by this runner (`/probe?module=
//!   http_2xx`; the driver's own CPU is not counted: only the exporter's process is read);
//! - catalogd at the same R (N = R × I `http` integrations at interval I, so its own scheduler
//!   runs R checks/s): the ratio to blackbox_exporter;
//! - catalogd at a high rate H (new connections, then keep-alive), the regime of a large
//!   fleet (a million integrations at 60 s is 16.7k checks/s), where per-wake-up costs are
//!   shared between checks, as they are for the baseline;
//! - the machine's limit: `wrk -t1 -c16` (a plain C epoll client, saturated) with
//!   `Connection: close` (a new connection per request), then keep-alive, against the same
//!   fleet; its requests are counted by the fleet over the window.
//!
//! Each process's CPU (user + system, all threads) is read from /proc over the same steady
//! window, after a warm-up; completed checks are counted over that window (catalogd:
//! `catalogd_checks_total{outcome="success"}`, cross-checked with the fleet's served counter).
//!
//! Expected duration: smoke ~30 s, quick ~90 s, full ~4.5 min.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::Outcome;
use crate::report::{Row, Value};
use crate::seed::{seed, Seed, Target};
use crate::services::{poll, DaemonDir, TargetFleet};
use crate::sys::cpu_time;
use crate::Tier;

/// The fleet's listening addresses (127.0.0.1 … .8): checks spread over several peers, as a
/// real fleet's would.
const ADDRS: u32 = 8;
const UNIT: &str = "checks/CPU-s";

struct Sizes {
    /// Checks (probes) per second for blackbox_exporter and catalogd side by side.
    rate: u32,
    /// catalogd's high rate, against the saturated wrk.
    high: u32,
    /// catalogd's check interval: N = rate × interval integrations.
    interval: u32,
    warmup: Duration,
    window: Duration,
}

fn sizes(tier: Tier) -> Sizes {
    match tier {
        Tier::Smoke => Sizes {
            rate: 100,
            high: 400,
            interval: 10,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(3),
        },
        Tier::Quick => Sizes {
            rate: 300,
            high: 3_000,
            interval: 10,
            warmup: Duration::from_secs(4),
            window: Duration::from_secs(10),
        },
        Tier::Full => Sizes {
            rate: 500,
            high: 5_000,
            interval: 10,
            warmup: Duration::from_secs(8),
            window: Duration::from_secs(30),
        },
    }
}

/// What one contender did over the window.
#[derive(Debug, Clone, Copy)]
struct Measured {
    completed: u64,
    cpu: Duration,
    window: Duration,
    /// Requests the fleet served over the window (cross-check), when read.
    served: Option<u64>,
}

impl Measured {
    fn per_cpu_second(&self) -> f64 {
        let cpu = self.cpu.as_secs_f64();
        if cpu == 0.0 {
            // Below the clock tick: report the floor of one tick rather than infinity.
            return self.completed as f64 / 0.01;
        }
        self.completed as f64 / cpu
    }

    fn describe(&self, who: &str, rate: Option<u32>) -> String {
        let due = rate
            .map(|rate| format!(" of {:.0} due", f64::from(rate) * self.window.as_secs_f64()))
            .unwrap_or_default();
        let per_check_us = if self.completed == 0 {
            f64::NAN
        } else {
            self.cpu.as_secs_f64() * 1e6 / self.completed as f64
        };
        let served = self
            .served
            .map(|s| format!(", fleet served {s}"))
            .unwrap_or_default();
        format!(
            "{who}: {} completed{due} in {:.1} s{served}, {:.0} ms CPU, {per_check_us:.0} µs CPU per check",
            self.completed,
            self.window.as_secs_f64(),
            self.cpu.as_secs_f64() * 1e3,
        )
    }
}

pub async fn run(tier: Tier) -> anyhow::Result<Outcome> {
    let sizes = sizes(tier);
    let fleet = TargetFleet::start(ADDRS)?;
    let client = reqwest::Client::new();

    let blackbox = blackbox(&fleet, &client, &sizes)
        .await
        .context("blackbox_exporter")?;
    let ours_low = catalogd(&fleet, &client, &sizes, sizes.rate, false)
        .await
        .context("catalogd, new connections")?;
    let ours_new = catalogd(&fleet, &client, &sizes, sizes.high, false)
        .await
        .context("catalogd, new connections, high rate")?;
    let ours_kept = catalogd(&fleet, &client, &sizes, sizes.high, true)
        .await
        .context("catalogd, keep-alive, high rate")?;
    let wrk_new = wrk(&fleet, &client, &sizes, false)
        .await
        .context("wrk, new connections")?;
    let wrk_kept = wrk(&fleet, &client, &sizes, true)
        .await
        .context("wrk, keep-alive")?;

    let (rate, high) = (sizes.rate, sizes.high);
    let value = |m: &Measured| Value::new(m.per_cpu_second(), UNIT);
    let mut outcome = Outcome::default();
    outcome.rows.push(
        Row::new(
            "F4",
            format!("checks per CPU-second, new connection per check, {rate}/s"),
            value(&ours_low),
        )
        .against(format!("blackbox_exporter at {rate}/s"), value(&blackbox))
        .ratio_at_least(10.0),
    );
    outcome.rows.push(
        Row::new(
            "F4",
            format!("checks per CPU-second, new connection per check, {high}/s"),
            value(&ours_new),
        )
        .against("wrk -c16, Connection: close, saturated", value(&wrk_new))
        .ratio_at_least(0.35),
    );
    outcome.rows.push(
        Row::new(
            "F4",
            format!("checks per CPU-second, new connection per check, {high}/s"),
            value(&ours_new),
        )
        .against(format!("blackbox_exporter at {rate}/s"), value(&blackbox))
        .ratio_at_least(10.0),
    );
    outcome.rows.push(
        Row::new(
            "F4",
            format!("checks per CPU-second, keep-alive, {high}/s"),
            value(&ours_kept),
        )
        .against("wrk -c16, keep-alive, saturated", value(&wrk_kept)),
    );
    for (who, m, at) in [
        ("blackbox_exporter", &blackbox, Some(rate)),
        ("catalogd new connections", &ours_low, Some(rate)),
        ("catalogd new connections", &ours_new, Some(high)),
        ("catalogd keep-alive", &ours_kept, Some(high)),
        ("wrk -t1 -c16 -H 'Connection: close'", &wrk_new, None),
        ("wrk -t1 -c16 (keep-alive)", &wrk_kept, None),
    ] {
        outcome.notes.push(m.describe(who, at));
    }
    outcome.notes.push(format!(
        "blackbox_exporter is driven at {rate}/s (at {high}/s it would need about {:.1} CPUs \
         of this 2-core box); catalogd is measured at both rates; wrk runs saturated (its \
         best case: every wake-up serves many connections)",
        f64::from(high) / blackbox.per_cpu_second()
    ));
    if tier != Tier::Full {
        outcome.notes.push(format!(
            "{} tier: a {} s window; CPU is read in 10 ms ticks, so short windows are coarse",
            tier.name(),
            sizes.window.as_secs()
        ));
    }
    Ok(outcome)
}

/// A free loopback port (bound, read, released).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// prometheus-blackbox-exporter with an `http_2xx` module, probed at `rate` per second.
async fn blackbox(
    fleet: &TargetFleet,
    client: &reqwest::Client,
    sizes: &Sizes,
) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n",
    )?;
    let port = free_port()?;
    let child = Command::new("prometheus-blackbox-exporter")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning prometheus-blackbox-exporter (did scripts/bench.sh install it?)")?;
    let child = Killed(child);
    let pid = child.0.id();
    let base = format!("http://127.0.0.1:{port}");
    poll(
        "blackbox_exporter healthy",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let response = client.get(format!("{base}/-/healthy")).send().await.ok()?;
            response.status().is_success().then_some(())
        },
    )
    .await?;

    // The fixed-rate driver: probe `i` targets fleet URL `i`, as catalogd's integration `i`.
    let succeeded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + sizes.warmup + sizes.window;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut window: Option<(Instant, Duration, u64, u64)> = None;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let now = ticker.tick().await.into_std();
        if now >= end {
            break;
        }
        if window.is_none() && now >= started + sizes.warmup {
            window = Some((
                now,
                cpu_time(pid),
                succeeded.load(Ordering::Relaxed),
                fleet.served(client).await?,
            ));
        }
        let due = (now.duration_since(started).as_secs_f64() * f64::from(sizes.rate)) as u64;
        while sent < due {
            let target = format!("{}/ok/{sent}", fleet.base_url(sent as usize));
            let url = format!("{base}/probe?module=http_2xx&target={target}");
            let client = client.clone();
            let (succeeded, failed) = (succeeded.clone(), failed.clone());
            tasks.spawn(async move {
                let ok = match client.get(url).send().await {
                    Ok(response) => response
                        .text()
                        .await
                        .is_ok_and(|body| body.lines().any(|l| l == "probe_success 1")),
                    Err(_) => false,
                };
                if ok { succeeded } else { failed }.fetch_add(1, Ordering::Relaxed);
            });
            sent += 1;
        }
        while tasks.try_join_next().is_some() {}
    }
    let (t0, cpu0, done0, served0) = window.context("the window never started")?;
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    let elapsed = t0.elapsed();
    let completed = succeeded.load(Ordering::Relaxed) - done0;
    let served = fleet.served(client).await?.saturating_sub(served0);
    tasks.shutdown().await;
    if completed == 0 {
        bail!(
            "no probe succeeded ({} failed)",
            failed.load(Ordering::Relaxed)
        );
    }
    Ok(Measured {
        completed,
        cpu,
        window: elapsed,
        served: Some(served),
    })
}

/// Successful checks so far, from catalogd's `/metrics`.
fn successful_checks(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("catalogd_checks_total{") && l.contains("outcome=\"success\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// catalogd with N = rate × interval `http` integrations against the fleet.
async fn catalogd(
    fleet: &TargetFleet,
    client: &reqwest::Client,
    sizes: &Sizes,
    rate: u32,
    keep_alive: bool,
) -> anyhow::Result<Measured> {
    // The extra text lands in the `[egress]` section DaemonDir opens last.
    let dir = DaemonDir::new(
        "sqlite://{dir}/catalogd.db?mode=rwc",
        &format!("keep_alive = {keep_alive}\n"),
    )?;
    let url = format!("sqlite://{}/catalogd.db?mode=rwc", dir.path().display());
    let count = (rate * sizes.interval) as usize;
    let target = |i: usize| Target::http(format!("{}/ok/{i}", fleet.base_url(i)));
    seed(
        &url,
        &Seed {
            tenant: "bench",
            count,
            interval_seconds: sizes.interval,
            timeout_seconds: 5,
            status: catalogd_actors::Status::Active,
            target: &target,
        },
    )
    .await?;
    let daemon = dir.start(Duration::from_secs(60))?;
    let pid = daemon.pid();
    // For whoever profiles the run (perf record -p).
    eprintln!("# F4: catalogd pid {pid} at {rate} checks/s, keep_alive = {keep_alive}");
    // Started when checks flow at (nearly) the full rate: phases are spread over the
    // interval from the first cycle on.
    let rate = f64::from(rate);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (Instant::now(), 0.0);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = Instant::now();
        let done = successful_checks(&daemon.scrape(client).await?);
        let per_second = (done - last.1) / now.duration_since(last.0).as_secs_f64();
        if last.1 > 0.0 && per_second >= 0.8 * rate {
            break;
        }
        if now >= deadline {
            bail!("catalogd did not reach {rate} checks/s within 60 s ({per_second:.0}/s)");
        }
        last = (now, done);
    }
    tokio::time::sleep(sizes.warmup).await;
    // The CPU window lies between the two scrapes, so rendering `/metrics` (thousands of
    // per-integration series) is not billed to the checks.
    let done0 = successful_checks(&daemon.scrape(client).await?);
    let cpu0 = cpu_time(pid);
    let t0 = Instant::now();
    let served0 = fleet.served(client).await?;
    tokio::time::sleep(sizes.window).await;
    let served = fleet.served(client).await?.saturating_sub(served0);
    let elapsed = t0.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    let done = successful_checks(&daemon.scrape(client).await?);
    Ok(Measured {
        completed: (done - done0).max(0.0) as u64,
        cpu,
        window: elapsed,
        served: Some(served),
    })
}

/// `wrk -t1 -c16` against the fleet for warm-up + window, saturated: its CPU is read over the
/// window, and the requests over the window are counted by the fleet (wrk's own total includes
/// the warm-up). `-H 'Connection: close'` makes every request a new connection.
async fn wrk(
    fleet: &TargetFleet,
    client: &reqwest::Client,
    sizes: &Sizes,
    keep_alive: bool,
) -> anyhow::Result<Measured> {
    let seconds = (sizes.warmup + sizes.window).as_secs() + 2;
    let mut command = Command::new("wrk");
    command.args(["-t1", "-c16", &format!("-d{seconds}s")]);
    if !keep_alive {
        command.args(["-H", "Connection: close"]);
    }
    let child = command
        .arg(format!("{}/ok/0", fleet.base_url(0)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning wrk (did scripts/bench.sh install it?)")?;
    let pid = child.id();
    tokio::time::sleep(sizes.warmup).await;
    let (cpu0, served0, t0) = (cpu_time(pid), fleet.served(client).await?, Instant::now());
    tokio::time::sleep(sizes.window).await;
    let (cpu, served, window) = (
        cpu_time(pid).saturating_sub(cpu0),
        fleet.served(client).await?.saturating_sub(served0),
        t0.elapsed(),
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || served == 0 {
        bail!("wrk failed or served nothing: {text}");
    }
    // Errors (non-2xx, socket errors) would make the count not the requests it claims.
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw errors: {text}");
    }
    Ok(Measured {
        completed: served,
        cpu,
        window,
        served: Some(served),
    })
}
