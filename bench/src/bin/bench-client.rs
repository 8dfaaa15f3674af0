//! `bench-client`: the machine's limit for F4 — a bare hyper loop sending the same requests
//! catalogd's checks send (`GET /ok/{i}` against the target fleet), at a fixed rate, with a
//! new TCP connection per request or with keep-alive. It runs as its own process so that its
//! CPU time is read the same way as the daemon's: from /proc, whole process.
//!
//! `bench-client --port P --addrs K --rate R --warmup S --window S [--keep-alive]` prints
//! one line at the end: `completed=N errors=E cpu_ms=C window_ms=W`, counted over the window
//! only (after the warm-up).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Args {
    port: u16,
    addrs: u32,
    rate: f64,
    warmup: Duration,
    window: Duration,
    keep_alive: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| -> Option<&str> {
        let i = argv.iter().position(|a| a == name)?;
        argv.get(i + 1).map(String::as_str)
    };
    let number = |name: &str, default: f64| -> f64 {
        value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    Args {
        port: value("--port")
            .and_then(|v| v.parse().ok())
            .expect("--port"),
        addrs: number("--addrs", 1.0) as u32,
        rate: number("--rate", 100.0),
        warmup: Duration::from_secs_f64(number("--warmup", 2.0)),
        window: Duration::from_secs_f64(number("--window", 5.0)),
        keep_alive: argv.iter().any(|a| a == "--keep-alive"),
    }
}

/// Idle keep-alive connections per target address (the same reuse catalogd's opt-in pool
/// does, without a policy or an idle bound: this is the floor, not a product).
type Pool = Mutex<HashMap<SocketAddr, Vec<SendRequest<Empty<Bytes>>>>>;

struct Shared {
    port: u16,
    addrs: u32,
    keep_alive: bool,
    pool: Pool,
    completed: AtomicU64,
    errors: AtomicU64,
}

async fn connect(address: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn one(shared: &Shared, i: u64) -> anyhow::Result<()> {
    let host = (i % u64::from(shared.addrs)) as u8 + 1;
    let address = SocketAddr::from(([127, 0, 0, host], shared.port));
    let pooled = if shared.keep_alive {
        shared
            .pool
            .lock()
            .unwrap()
            .get_mut(&address)
            .and_then(Vec::pop)
    } else {
        None
    };
    let mut sender = match pooled {
        Some(sender) => sender,
        None => connect(address).await?,
    };
    sender.ready().await?;
    let request = hyper::Request::get(format!("/ok/{i}"))
        .header(
            hyper::header::HOST,
            format!("127.0.0.{host}:{}", shared.port),
        )
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    anyhow::ensure!(status.is_success(), "status {status}");
    if shared.keep_alive {
        shared
            .pool
            .lock()
            .unwrap()
            .entry(address)
            .or_default()
            .push(sender);
    }
    Ok(())
}

/// User + system CPU time of this process (all threads), from /proc like the runner reads
/// the daemon's.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // CLK_TCK is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn main() -> anyhow::Result<()> {
    let args = args();
    // Two worker threads, like the daemon's runtime on this box.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shared = Arc::new(Shared {
            port: args.port,
            addrs: args.addrs.max(1),
            keep_alive: args.keep_alive,
            pool: Mutex::new(HashMap::new()),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let started = Instant::now();
        let end = started + args.warmup + args.window;
        // One tick per request: the loop wakes as often as the requests are due, no more
        // (a faster ticker would bill its own wake-ups to the limit).
        let period = Duration::from_secs_f64(1.0 / args.rate).max(Duration::from_micros(100));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = 0u64;
        let mut window_start: Option<(Instant, Duration, u64, u64)> = None;
        loop {
            let now = ticker.tick().await;
            let now = now.into_std();
            if now >= end {
                break;
            }
            if window_start.is_none() && now >= started + args.warmup {
                window_start = Some((
                    now,
                    cpu_time(),
                    shared.completed.load(Ordering::Relaxed),
                    shared.errors.load(Ordering::Relaxed),
                ));
            }
            // Fixed rate: as many requests as are due by now, whatever the previous ones did.
            let due = (now.duration_since(started).as_secs_f64() * args.rate) as u64;
            while sent < due {
                let shared = shared.clone();
                let i = sent;
                tokio::spawn(async move {
                    match one(&shared, i).await {
                        Ok(()) => shared.completed.fetch_add(1, Ordering::Relaxed),
                        Err(_) => shared.errors.fetch_add(1, Ordering::Relaxed),
                    };
                });
                sent += 1;
            }
        }
        let (t0, cpu0, completed0, errors0) =
            window_start.ok_or_else(|| anyhow::anyhow!("the window never started"))?;
        let cpu = cpu_time().saturating_sub(cpu0);
        let window = t0.elapsed();
        println!(
            "completed={} errors={} cpu_ms={} window_ms={}",
            shared.completed.load(Ordering::Relaxed) - completed0,
            shared.errors.load(Ordering::Relaxed) - errors0,
            cpu.as_millis(),
            window.as_millis()
        );
        Ok(())
    })
}
