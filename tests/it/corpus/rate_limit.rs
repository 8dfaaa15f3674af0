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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::storm::{admin_token, scripted, JWT_KEY};

/// Every tenant's budget: 50 requests a second, 25 at once. The quiet tenant stays below it
/// (one request every 20 ms at most). The noisy tenant's admitted share costs the daemon (a
/// debug build, on a shared 2-core box) a small fraction of a core; what it sends beyond is
/// refused cheaply.
const PER_SECOND: u32 = 50;
const BURST: u32 = 25;
const QUIET_PACE: Duration = Duration::from_millis(20);
/// The page both tenants list: five drafts each.
const PAGE: usize = 5;
/// Latency samples per phase; ten short phases alternate idle and flood, so a change in the
/// machine's background load hits both alike.
const SAMPLES: usize = 120;
const PHASES: usize = 10;
/// The flood: this many connections, each sending at most `FLOOD_RATE_EACH` requests a
/// second (together 10× the tenant's limit), without honouring `Retry-After`. The flood runs
/// on a thread and runtime of its own, so it does not delay the quiet tenant's client in the
/// test's runtime (which would be measured as the daemon's latency).
const FLOOD_CONNECTIONS: usize = 4;
const FLOOD_RATE_EACH: u64 = 125;

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

/// The noisy tenant's flood until `stop`, `(served, refused)` counted in `counts`; returns
/// every `Retry-After` it was given. Each connection writes one prepared request on a
/// keep-alive socket and reads the answer by hand: a flood costs its sender far less CPU than
/// a full client would, so what slows the daemon is the daemon's own work.
fn flood(
    api: String,
    path: String,
    noisy: String,
    stop: Arc<AtomicBool>,
    counts: Arc<(AtomicUsize, AtomicUsize)>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let address = api.trim_start_matches("http://").to_owned();
            let request = format!(
                "GET {path} HTTP/1.1\r\nhost: flood\r\nauthorization: Bearer {noisy}\r\n\r\n"
            );
            let mut connections = Vec::new();
            for _ in 0..FLOOD_CONNECTIONS {
                let (address, request, stop, counts) = (
                    address.clone(),
                    request.clone(),
                    stop.clone(),
                    counts.clone(),
                );
                connections.push(tokio::spawn(async move {
                    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
                    let mut retry_after = Vec::new();
                    let mut tick =
                        tokio::time::interval(Duration::from_micros(1_000_000 / FLOOD_RATE_EACH));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        socket.write_all(request.as_bytes()).await.unwrap();
                        let (status, headers, body) = read_response(&mut socket).await;
                        match status {
                            200 => counts.0.fetch_add(1, Ordering::Relaxed),
                            429 => {
                                let body: Value = serde_json::from_slice(&body).unwrap();
                                assert_eq!(body["code"], "rate_limited", "{body}");
                                assert_eq!(body["status"], 429, "{body}");
                                assert!(
                                    headers.contains("content-type: application/problem+json"),
                                    "{headers}"
                                );
                                let value = headers
                                    .lines()
                                    .find_map(|line| line.strip_prefix("retry-after: "))
                                    .expect("Retry-After on a 429");
                                retry_after.push(value.trim().to_owned());
                                counts.1.fetch_add(1, Ordering::Relaxed)
                            }
                            other => panic!("the noisy tenant got {other}: {headers}"),
                        };
                    }
                    retry_after
                }));
            }
            let mut retry_after = Vec::new();
            for connection in connections {
                retry_after.extend(connection.await.unwrap());
            }
            retry_after
        })
    })
}

/// One HTTP/1.1 response with a `content-length`: its status, its head (lower-cased) and
/// its body.
async fn read_response(socket: &mut tokio::net::TcpStream) -> (u16, String, Vec<u8>) {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the daemon closed the flood's connection");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buffer.len() < head_end + length {
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the daemon closed the flood's connection");
        buffer.extend_from_slice(&chunk[..n]);
    }
    (status, head, buffer[head_end..head_end + length].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_tenant_is_limited_and_does_not_slow_a_quiet_one() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path());
    let client = crate::helpers::http_client(Duration::from_secs(30));
    let quiet = admin_token("quiet");
    let noisy = admin_token("noisy");
    // Each tenant lists a page of drafts: the same work per request for both.
    for (token, tenant) in [(&quiet, "quiet"), (&noisy, "noisy")] {
        for i in 0..PAGE {
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
    let list = format!("{}/api/v1/integrations?limit={PAGE}", daemon.api);

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
                assert_eq!(body["items"].as_array().unwrap().len(), PAGE);
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
        let flood = flood(
            daemon.api.clone(),
            format!("/api/v1/integrations?limit={PAGE}"),
            noisy.clone(),
            stop.clone(),
            flood_counts.clone(),
        );
        // Let the flood empty the noisy tenant's bucket before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        flooded.extend(measure(phase).await);
        stop.store(true, Ordering::Relaxed);
        let values = tokio::task::spawn_blocking(move || flood.join().expect("the flood"))
            .await
            .unwrap();
        retry_after_seen.extend(values);
        flood_time += flood_started.elapsed();
    }

    let (served, limited) = (
        flood_counts.0.load(Ordering::Relaxed),
        flood_counts.1.load(Ordering::Relaxed),
    );
    let (idle_p99, flood_p99) = (p99(idle.clone()), p99(flooded.clone()));
    let median = |samples: &[Duration]| {
        let mut samples = samples.to_vec();
        samples.sort();
        samples[samples.len() / 2]
    };
    println!(
        "rate limit: quiet tenant p99 idle {idle_p99:?} (p50 {:?}, {} samples), under flood \
         {flood_p99:?} (p50 {:?}, {} samples); noisy tenant served {served}, refused {limited} \
         (429) in {flood_time:?} of flood",
        median(&idle),
        idle.len(),
        median(&flooded),
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
