//! `engine-fleet`, the engine alone (the benchmark runner's baseline for F1 and F2; it lives
//! here rather than as an example of catalogd-actors so that building it does not build that
//! crate's test dependencies). Memory per integration: spawns N monitor actors (default 100,000) with a no-op probe at a
//! long interval and prints the resident memory they add, next to the cost of N idle bare
//! ractor actors as a baseline.
//!
//! ```text
//! cargo run --release -p catalogd-bench --bin engine-fleet -- [N]
//! cargo run --release -p catalogd-bench --bin engine-fleet -- load N INTERVAL_SECS RUN_SECS
//! ```
//!
//! Each measurement runs in a fresh child process (the allocator does not hand freed memory
//! back reliably, so measuring one after the other in one process would mislead):
//! - `bare`: N ractor actors with no state and no timer;
//! - `paused`: the engine with N paused integrations (an idle actor each, no timer);
//! - `active`: the engine with N active integrations (an actor and an armed timer each).
//!
//! The store's own rows are in memory before the measurement starts and are not counted;
//! the targets are bare ids, so a real target's size (URL, configuration) comes on top.
//!
//! `load` runs N active integrations at a short interval with a no-op probe and prints the
//! check rate and how late checks started against their schedule (the last line,
//! `steady_lateness_us n= p50= p99= p999=`, is what the benchmark runner reads).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalogd_actors::testing::{spec, MemoryLedger, NoopProbe};
use catalogd_actors::{CheckReport, Clock, Engine, EngineOptions, Status, SystemClock};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    match first.as_deref() {
        Some(mode @ ("bare" | "paused" | "active")) => {
            let n = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
            measure(mode, n);
        }
        Some("load") => {
            let mut number = |default| args.next().and_then(|n| n.parse().ok()).unwrap_or(default);
            let (n, interval, run) = (number(100_000), number(10), number(30));
            load(
                n as usize,
                Duration::from_secs(interval),
                Duration::from_secs(run),
            );
        }
        other => {
            let n: usize = other.and_then(|n| n.parse().ok()).unwrap_or(100_000);
            println!("{n} actors, resident memory added per actor:");
            let exe = std::env::current_exe().expect("own path");
            for mode in ["bare", "paused", "active"] {
                let status = Command::new(&exe)
                    .args([mode, &n.to_string()])
                    .status()
                    .expect("child runs");
                assert!(status.success(), "{mode} failed");
            }
        }
    }
}

fn measure(mode: &str, n: usize) {
    runtime().block_on(async {
        match mode {
            "bare" => {
                let before = rss_bytes();
                let started = Instant::now();
                let mut actors = Vec::with_capacity(n);
                for _ in 0..n {
                    let (actor, _) = Actor::spawn(None, Idle, ()).await.expect("spawn");
                    actors.push(actor);
                }
                report(mode, n, before, started.elapsed());
                for actor in actors {
                    actor.stop(None);
                }
            }
            _ => {
                let status = if mode == "paused" {
                    Status::Paused
                } else {
                    Status::Active
                };
                let ledger = fleet(n, status, Duration::from_secs(24 * 3600));
                let before = rss_bytes();
                let (engine, elapsed) = start(&ledger).await;
                assert_eq!(engine.actor_count().await.unwrap(), n);
                // Let the spawning garbage (pages, spawn futures) be freed before measuring.
                tokio::time::sleep(Duration::from_millis(500)).await;
                report(mode, n, before, elapsed);
                engine.stop().await;
            }
        }
    });
}

fn load(n: usize, interval: Duration, run: Duration) {
    runtime().block_on(async {
        let ledger = fleet(n, Status::Active, interval);
        let started = Instant::now();
        let (engine, spawned) = start(&ledger).await;
        let spawned_at = SystemClock.now();
        tokio::time::sleep(run.saturating_sub(spawned)).await;
        let checks = engine.counters().checks_started();
        let elapsed = started.elapsed();
        // Checks that start while a million actors are being stopped are late by design.
        let stopped_at = SystemClock.now();
        engine.stop().await;
        println!(
            "{n} integrations every {interval:?}: spawned in {spawned:.2?}, {checks} checks in {elapsed:.1?} ({:.0}/s)",
            checks as f64 / elapsed.as_secs_f64(),
        );
        // Checks that started while the fleet was still being spawned, and those after.
        let mut reports = ledger.reports();
        reports.retain(|r| r.started_at < stopped_at);
        let steady_from = spawned_at + chrono::Duration::seconds(1);
        let (during, after): (Vec<&CheckReport>, Vec<&CheckReport>) =
            reports.iter().partition(|r| r.started_at < steady_from);
        for (phase, reports) in [("during spawn", during), ("steady state", after)] {
            let mut lateness: Vec<Duration> = reports.iter().map(|r| r.lateness).collect();
            if lateness.is_empty() {
                continue;
            }
            lateness.sort();
            let at = |p: f64| lateness[((lateness.len() - 1) as f64 * p) as usize];
            println!(
                "  {phase}: {} checks, lateness p50 {:.2?}, p99 {:.2?}, max {:.2?}",
                lateness.len(),
                at(0.5),
                at(0.99),
                at(1.0),
            );
            if phase == "steady state" {
                // For the benchmark runner (bench/src/figures/fleet.rs).
                println!(
                    "steady_lateness_us n={} p50={} p99={} p999={}",
                    lateness.len(),
                    at(0.5).as_micros(),
                    at(0.99).as_micros(),
                    at(0.999).as_micros(),
                );
            }
        }
    });
}

/// Two worker threads, like the machine the daemon's figures are quoted for.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A store holding `n` integrations in `status`, checked every `interval`.
fn fleet(n: usize, status: Status, interval: Duration) -> Arc<MemoryLedger<Uuid>> {
    let ledger = Arc::new(MemoryLedger::new());
    for i in 0..n {
        let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + i as u128);
        ledger.insert(spec(id, status, interval));
    }
    ledger
}

/// Starts the engine with a no-op probe and waits for the whole fleet to be spawned.
async fn start(ledger: &Arc<MemoryLedger<Uuid>>) -> (Engine<Uuid>, Duration) {
    let started = Instant::now();
    let engine = Engine::start(
        ledger.clone(),
        Arc::new(NoopProbe),
        Arc::new(SystemClock),
        EngineOptions::default(),
    )
    .await
    .expect("engine starts");
    engine.spawned().await.expect("spawned");
    (engine, started.elapsed())
}

fn report(mode: &str, n: usize, before: u64, elapsed: Duration) {
    let added = rss_bytes().saturating_sub(before);
    println!(
        "  {mode:>6}: {:>6.0} B/actor ({:.1} MiB total), spawned in {:.2?} ({:.1} µs/actor)",
        added as f64 / n as f64,
        added as f64 / (1024.0 * 1024.0),
        elapsed,
        elapsed.as_secs_f64() * 1e6 / n as f64,
    );
}

/// VmRSS from `/proc/self/status`, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("VmRSS line")
}

/// An actor that does nothing: the baseline cost of a ractor actor.
struct Idle;

#[ractor::async_trait]
impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}
