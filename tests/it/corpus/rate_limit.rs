//! Per-tenant rate limits against a `catalogd serve` child process: a noisy tenant sends far
//! above its `http.rate_limit` while a quiet tenant measures its own latency. The quiet
//! tenant's p99 under the flood stays within 2× its idle p99 and it never meets a 429; the
//! noisy tenant gets 429 `rate_limited` with an integer `Retry-After` >= 1, and after waiting
//! that long it is served again; the probes and the document are never limited.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalogd_testkit::Daemon;
use serde_json::Value;

use crate::storm::{admin_token, scripted, JWT_KEY};

/// Every tenant's budget: 200 requests a second, 100 at once. The quiet tenant stays below it
/// (one request every 6 ms at most, about 160 a second).
const PER_SECOND: u32 = 200;
const BURST: u32 = 100;
const QUIET_PACE: Duration = Duration::from_millis(6);
/// Latency samples per phase; four phases alternate idle and flood, so a change in the
/// machine's background load hits both alike.
const SAMPLES: usize = 300;
const PHASES: usize = 4;
/// The flood: this many connections, each sending at most `FLOOD_RATE_EACH` requests a
/// second (together 10× the tenant's limit), without honouring `Retry-After`.
const FLOOD_CONNECTIONS: usize = 4;
const FLOOD_RATE_EACH: u64 = 500;

fn start_daemon(dir: &std::path::Path) -> Daemon {
    let key = dir.join("jwt.key");
    std::fs::write(&key, JWT_KEY).unwrap();
    let config = dir.join("catalogd.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[http.rate_limit]\nper_second = {PER_SECOND}\n\
             burst = {BURST}\n[database]\nurl = \"sqlite://{}/catalogd.db\"\n\
             sqlite_synchronous = \"normal\"\n[auth]\njwt_secret_file = \"{}\"\n\
             [log]\nlevel = \"info,tower_http=warn,catalogd::control=warn\"\n[nats]\nurl = \"\"\n",
            dir.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_catalogd"));
    command.current_dir(dir).env_remove("RUST_LOG").args([
        "serve",
        "--config",
        config.to_str().unwrap(),
    ]);
    Daemon::start(command, Duration::from_secs(60)).expect("catalogd serve starts")
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let rank = (samples.len() * 99).div_ceil(100);
    samples[rank.saturating_sub(1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_tenant_is_limited_and_does_not_slow_a_quiet_one() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path());
    let client = crate::helpers::http_client(Duration::from_secs(30));
    let quiet = admin_token("quiet");
    let noisy = admin_token("noisy");
    // Each tenant lists a page of 20 drafts: real work per request, the same for both.
    for (token, tenant) in [(&quiet, "quiet"), (&noisy, "noisy")] {
        for i in 0..20 {
            let response = client
                .post(format!("{}/api/v1/integrations", daemon.api))
                .bearer_auth(token)
                .json(&scripted(&format!("{tenant}-{i:02}"), &["success"], 60))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            // The noisy tenant's set-up stays within its own budget.
            tokio::time::sleep(Duration::from_millis(1000 / u64::from(PER_SECOND))).await;
        }
    }
    let list = format!("{}/api/v1/integrations?limit=20", daemon.api);

    // The quiet tenant measures sequential requests; it sends well below its limit.
    let quiet_client = crate::helpers::http_client(Duration::from_secs(30));
    let measure = |phase: usize| {
        let client = quiet_client.clone();
        let list = list.clone();
        let quiet = quiet.clone();
        async move {
            let mut samples = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                let started = Instant::now();
                let response = client.get(&list).bearer_auth(&quiet).send().await.unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                samples.push(started.elapsed());
                assert_eq!(
                    status, 200,
                    "phase {phase}: the quiet tenant was refused: {body}"
                );
                assert_eq!(body["items"].as_array().unwrap().len(), 20);
                tokio::time::sleep(QUIET_PACE).await;
            }
            samples
        }
    };
    let _ = measure(0).await; // warm-up (connections, caches)

    let flood_counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let mut idle = Vec::new();
    let mut flooded = Vec::new();
    let mut retry_after_seen = Vec::new();
    let mut flood_time = Duration::ZERO;
    for phase in 1..=PHASES {
        if phase % 2 == 1 {
            idle.extend(measure(phase).await);
            continue;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flood_started = Instant::now();
        let mut flood = Vec::new();
        for _ in 0..FLOOD_CONNECTIONS {
            let client = crate::helpers::http_client(Duration::from_secs(30));
            let (list, noisy, stop, counts) = (
                list.clone(),
                noisy.clone(),
                stop.clone(),
                flood_counts.clone(),
            );
            flood.push(tokio::spawn(async move {
                let mut retry_after = Vec::new();
                let mut tick =
                    tokio::time::interval(Duration::from_micros(1_000_000 / FLOOD_RATE_EACH));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let response = client.get(&list).bearer_auth(&noisy).send().await.unwrap();
                    match response.status().as_u16() {
                        200 => counts.0.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            let header = response
                                .headers()
                                .get("retry-after")
                                .map(|v| v.to_str().unwrap().to_owned());
                            let content_type = response
                                .headers()
                                .get("content-type")
                                .map(|v| v.to_str().unwrap().to_owned());
                            let body: Value = response.json().await.unwrap();
                            assert_eq!(body["code"], "rate_limited", "{body}");
                            assert_eq!(body["status"], 429, "{body}");
                            assert_eq!(content_type.as_deref(), Some("application/problem+json"));
                            retry_after.push(header.expect("Retry-After on a 429"));
                            counts.1.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("the noisy tenant got {other}"),
                    };
                }
                retry_after
            }));
        }
        // Let the flood empty the noisy tenant's bucket before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        flooded.extend(measure(phase).await);
        stop.store(true, Ordering::Relaxed);
        for task in flood {
            retry_after_seen.extend(task.await.unwrap());
        }
        flood_time += flood_started.elapsed();
    }

    let (served, limited) = (
        flood_counts.0.load(Ordering::Relaxed),
        flood_counts.1.load(Ordering::Relaxed),
    );
    let (idle_p99, flood_p99) = (p99(idle.clone()), p99(flooded.clone()));
    println!(
        "rate limit: quiet tenant p99 idle {idle_p99:?} ({} samples), under flood {flood_p99:?} \
         ({} samples); noisy tenant served {served}, refused {limited} (429)",
        idle.len(),
        flooded.len()
    );
    assert!(limited > 0, "the noisy tenant was never limited");
    // The limiter let through no more than the budget: a full burst per flood phase (the
    // bucket refills while the quiet tenant measures alone) plus the rate over the floods,
    // and a tenth for the seconds the clocks disagree on.
    let flood_phases = PHASES / 2;
    let budget = (BURST as f64 * flood_phases as f64
        + f64::from(PER_SECOND) * flood_time.as_secs_f64())
        * 1.1;
    assert!(
        (served as f64) <= budget,
        "served {served} in {flood_time:?}, over the budget {budget:.0}"
    );
    for value in &retry_after_seen {
        let seconds: u64 = value.parse().expect("Retry-After is whole seconds");
        assert!(seconds >= 1, "Retry-After {value}");
    }
    assert!(
        flood_p99 <= idle_p99 * 2,
        "the quiet tenant's p99 went from {idle_p99:?} idle to {flood_p99:?} under the flood"
    );

    // Empty the noisy bucket again, then: the probes and the document are not limited, even
    // with the noisy tenant's token; after Retry-After the noisy tenant is served.
    let mut retry_after = None;
    for _ in 0..(BURST * 4) {
        let response = client.get(&list).bearer_auth(&noisy).send().await.unwrap();
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            break;
        }
    }
    let retry_after = retry_after.expect("the noisy tenant is limited again");
    for path in ["/healthz", "/readyz", "/api/v1/openapi.json"] {
        let response = client
            .get(format!("{}{path}", daemon.api))
            .bearer_auth(&noisy)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let response = client.get(&list).bearer_auth(&noisy).send().await.unwrap();
    assert_eq!(response.status(), 200, "served again after Retry-After");
}
