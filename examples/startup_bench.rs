//! Start-up benchmark (issue 3): N monitored integrations in the store, then the real
//! `catalogd serve` binary is started and timed until every actor runs and until every
//! integration has had its first check; prints the time, the daemon's RSS and how evenly the
//! first checks spread over one interval.
//!
//! `cargo build --release && cargo run --release --example startup_bench -- [N] [interval_s]`
//! (defaults: 100000 integrations, 60 s). Uses the in-memory provider, so it measures the
//! engine and the store, not the network.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use catalogd::integration::{Integration, IntegrationSpec, IntegrationType};
use catalogd::store::{self, StoreOptions};
use catalogd_actors::{Clock, Status, SystemClock, Thresholds};
use futures::StreamExt;
use sqlx::Connection;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let interval: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/catalogd.db", dir.path().display());

    let setup = Instant::now();
    let store = store::open(&StoreOptions {
        url: url.clone(),
        password: None,
        max_connections: 4,
        sqlite_synchronous_full: false,
        default_thresholds: Thresholds::default(),
    })
    .await
    .unwrap();
    let clock = SystemClock;
    futures::stream::iter(0..n)
        .for_each_concurrent(4, |i| {
            let store = store.clone();
            let now = clock.now();
            async move {
                let spec = IntegrationSpec {
                    name: format!("bench-{i:07}"),
                    description: None,
                    kind: IntegrationType::Host,
                    provider: "in-memory".into(),
                    base_url: None,
                    auth_ref: None,
                    configuration: Default::default(),
                    environment: None,
                    tags: vec![],
                    owner_id: None,
                    health_check: catalogd::integration::HealthCheck {
                        interval_seconds: Some(interval),
                        ..Default::default()
                    },
                };
                let mut integration = Integration::new("bench", spec, "bench", now);
                integration.status = Status::Active;
                store.create(&integration).await.unwrap();
            }
        })
        .await;
    drop(store);
    eprintln!("setup: {n} active integrations in {:?}", setup.elapsed());

    let key = dir.path().join("jwt.key");
    std::fs::write(&key, "bench-key-0123456789abcdef0123456789").unwrap();
    let config = dir.path().join("catalogd.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nurl = \"{url}\"\nsqlite_synchronous = \"normal\"\n\
             [auth]\njwt_secret_file = \"{}\"\n[log]\nlevel = \"warn,catalogd::startup=info\"\n",
            key.display()
        ),
    )
    .unwrap();
    let binary = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("catalogd"))
        .unwrap();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let mut child = Command::new(&binary)
        .args(["serve", "--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("build the daemon first: cargo build --release");
    let pid = child.id();
    // The listening address is in the log.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.split("addr=").nth(1) {
                let _ = tx.send(addr.split_whitespace().next().unwrap().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("daemon listening");
    let client = reqwest::Client::new();
    let all_actors = loop {
        let ready: serde_json::Value = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["checks"]["actors"].as_u64() == Some(n as u64) {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rss_actors = rss_kib(pid);

    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(u64::from(interval) * 3 + 60);
    let all_checked = loop {
        let checked: i64 =
            sqlx::query_scalar("SELECT count(DISTINCT integration_id) FROM check_results")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if checked as usize >= n {
            break started.elapsed();
        }
        assert!(Instant::now() < deadline, "only {checked} of {n} checked");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let rss_checked = rss_kib(pid);
    // How the first checks spread over the interval: per-second buckets after start.
    let firsts: Vec<(i64,)> =
        sqlx::query_as("SELECT min(checked_at) FROM check_results GROUP BY integration_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let origin = started_at.timestamp_micros();
    let mut buckets = vec![0usize; interval as usize * 3 + 120];
    let last = buckets.len() - 1;
    for (first,) in &firsts {
        let second = ((first - origin).max(0) / 1_000_000) as usize;
        buckets[second.min(last)] += 1;
    }
    let busiest = buckets.iter().max().copied().unwrap_or(0);
    let even = n as f64 / f64::from(interval);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();

    println!(
        "figure, startup_all_actors_running_s, {:.2}, n={n}",
        all_actors.as_secs_f64()
    );
    println!(
        "figure, startup_all_first_checks_s, {:.2}, interval={interval}s",
        all_checked.as_secs_f64()
    );
    println!(
        "figure, rss_per_integration_kib, {:.2}, rss={} MiB after first checks ({} MiB when all actors ran)",
        rss_checked as f64 / n as f64,
        rss_checked / 1024,
        rss_actors / 1024
    );
    println!(
        "figure, busiest_second_of_first_checks, {busiest}, even spread = {even:.0}/s, ratio {:.2}",
        busiest as f64 / even
    );
}
