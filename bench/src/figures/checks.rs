//! F4, check efficiency: completed checks per CPU-second of the checking process, with a new
//! TCP connection per check (blackbox_exporter's own mode) and with keep-alive, at the same
//! check rate against the same targets (the bench-target fleet, `GET /ok/{i}`), for
//! - prometheus-blackbox-exporter, driven at R probes/s by this runner (`/probe?module=
//!   http_2xx`, the driver's own CPU is not counted: only the exporter's process is read);
//! - catalogd, with N = R × I `http` integrations at interval I, so its own scheduler runs the
//!   same R checks/s (`egress.keep_alive` off, then on);
//! - bench-client, a bare hyper loop at R requests/s (new connection, then keep-alive): the
//!   machine's limit.
//!
//! Each process's CPU (user + system, all threads) is read from /proc over the same steady
//! window, after a warm-up; completed checks are counted over that window (catalogd:
//! `catalogd_checks_total{outcome="success"}`, cross-checked with the fleet's served counter).
//!
//! Expected duration: smoke ~25 s, quick ~75 s, full ~3.5 min (five runs of warm-up plus a
//! 30 s window at 500 checks/s).

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::Outcome;
use crate::report::{Row, Value};
use crate::seed::{seed, Seed, Target};
use crate::services::{poll, release_bin, DaemonDir, TargetFleet};
use crate::sys::cpu_time;
use crate::Tier;

/// The fleet's listening addresses (127.0.0.1 … .8): checks spread over several peers, as a
/// real fleet's would.
const ADDRS: u32 = 8;
const UNIT: &str = "checks/CPU-s";

struct Sizes {
    /// Checks (probes, requests) per second, the same for every contender.
    rate: u32,
    /// catalogd's check interval: N = rate × interval integrations.
    interval: u32,
    warmup: Duration,
    window: Duration,
}

fn sizes(tier: Tier) -> Sizes {
    match tier {
        Tier::Smoke => Sizes {
            rate: 100,
            interval: 10,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(3),
        },
        Tier::Quick => Sizes {
            rate: 300,
            interval: 10,
            warmup: Duration::from_secs(4),
            window: Duration::from_secs(10),
        },
        Tier::Full => Sizes {
            rate: 500,
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

    fn describe(&self, who: &str, rate: u32) -> String {
        let expected = f64::from(rate) * self.window.as_secs_f64();
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
            "{who}: {} completed of {expected:.0} due in {:.1} s{served}, {:.0} ms CPU, {per_check_us:.0} µs CPU per check",
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
    let ours_new = catalogd(&fleet, &client, &sizes, false)
        .await
        .context("catalogd, new connections")?;
    let ours_kept = catalogd(&fleet, &client, &sizes, true)
        .await
        .context("catalogd, keep-alive")?;
    let bare_new = bare(&fleet, &sizes, false).context("bare client, new connections")?;
    let bare_kept = bare(&fleet, &sizes, true).context("bare client, keep-alive")?;

    let rate = sizes.rate;
    let value = |m: &Measured| Value::new(m.per_cpu_second(), UNIT);
    let mut outcome = Outcome::default();
    outcome.rows.push(
        Row::new(
            "F4",
            format!("checks per CPU-second, new connection per check, {rate}/s"),
            value(&ours_new),
        )
        .against("blackbox_exporter", value(&blackbox))
        .ratio_at_least(10.0),
    );
    outcome.rows.push(
        Row::new(
            "F4",
            format!("checks per CPU-second, keep-alive, {rate}/s"),
            value(&ours_kept),
        )
        .against("blackbox_exporter (new connections)", value(&blackbox)),
    );
    outcome.rows.push(
        Row::new(
            "F4",
            format!("share of the machine's limit, new connections, {rate}/s"),
            value(&ours_new),
        )
        .against("bare hyper loop", value(&bare_new))
        .ratio_at_least(0.6),
    );
    outcome.rows.push(
        Row::new(
            "F4",
            format!("share of the machine's limit, keep-alive, {rate}/s"),
            value(&ours_kept),
        )
        .against("bare hyper loop, keep-alive", value(&bare_kept))
        .ratio_at_least(0.6),
    );
    let versus = |m: &Measured| m.per_cpu_second() / blackbox.per_cpu_second();
    if versus(&ours_new) < 10.0 {
        outcome.notes.push(format!(
            "≥ 10× blackbox_exporter with new connections missed ({:.1}×): the bare hyper loop \
             doing only the requests, with nothing else, reaches {:.1}× here, so the target is \
             above this machine's limit for a new TCP connection per check (connect, accept, \
             close and the thread wake-ups around them are kernel work both pay). With \
             keep-alive catalogd reaches {:.1}× (bare loop {:.1}×); closing the rest would take \
             fewer wake-ups per check (batching due checks per timer tick, fewer runtime \
             threads), not less user-space work",
            versus(&ours_new),
            versus(&bare_new),
            versus(&ours_kept),
            versus(&bare_kept),
        ));
    }
    for (who, m) in [
        ("blackbox_exporter", &blackbox),
        ("catalogd new connections", &ours_new),
        ("catalogd keep-alive", &ours_kept),
        ("bare hyper new connections", &bare_new),
        ("bare hyper keep-alive", &bare_kept),
    ] {
        outcome.notes.push(m.describe(who, rate));
    }
    if tier != Tier::Full {
        outcome.notes.push(format!(
            "{} tier: {rate} checks/s over a {} s window; CPU is read in 10 ms ticks, so short windows are coarse",
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
    keep_alive: bool,
) -> anyhow::Result<Measured> {
    // The extra text lands in the `[egress]` section DaemonDir opens last.
    let dir = DaemonDir::new(
        "sqlite://{dir}/catalogd.db?mode=rwc",
        &format!("keep_alive = {keep_alive}\n"),
    )?;
    let url = format!("sqlite://{}/catalogd.db?mode=rwc", dir.path().display());
    let count = (sizes.rate * sizes.interval) as usize;
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
    // Started when checks flow at (nearly) the full rate: phases are spread over the
    // interval from the first cycle on.
    let rate = f64::from(sizes.rate);
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

/// bench-client at the same rate against the same URLs.
fn bare(fleet: &TargetFleet, sizes: &Sizes, keep_alive: bool) -> anyhow::Result<Measured> {
    let mut command = Command::new(release_bin("bench-client"));
    command.args([
        "--port",
        &fleet.port.to_string(),
        "--addrs",
        &fleet.addrs.to_string(),
        "--rate",
        &sizes.rate.to_string(),
        "--warmup",
        &sizes.warmup.as_secs_f64().to_string(),
        "--window",
        &sizes.window.as_secs_f64().to_string(),
    ]);
    if keep_alive {
        command.arg("--keep-alive");
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("running bench-client (did scripts/bench.sh build it?)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("bench-client failed: {text}");
    }
    let field = |name: &str| -> anyhow::Result<u64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .with_context(|| format!("bench-client said {text:?}"))
    };
    Ok(Measured {
        completed: field("completed")?,
        cpu: Duration::from_millis(field("cpu_ms")?),
        window: Duration::from_millis(field("window_ms")?),
        served: None,
    })
}
