//! The benchmark's target fleet: one small HTTP/1.1 server listening on many loopback
//! addresses (127.0.0.1 … 127.0.0.K, one port) so that a million new connections a minute
//! do not run out of (source, destination) port pairs. Paths are the knobs:
//!
//! - `/ok…` → 200 (any path starting with `/ok`, so each integration can have its own)
//! - `/status/{code}` → that status
//! - `/delay/{ms}` → 200 after `ms` milliseconds
//! - `/hang` → never answers (the client's timeout ends it)
//! - `/stats` → `served distinct`: requests served so far (this one excluded), and how many
//!   distinct `n` of `/ok/{n}` paths were served (n < 2^21: one bit each), so a benchmark can
//!   tell exactly when every integration has been checked once
//! - `/reset` → forgets the distinct paths seen (between two daemons on one fleet)
//! - `/gaps/reset?close_ms=C` → starts a gap window: for each `n` of `/ok/{n}`, the longest
//!   time between two consecutive requests, and how many requests came within `C` ms of the
//!   previous one (double polls), are counted from now on; the time of each `n`'s last
//!   request is kept, so the gap that spans the reset counts
//! - `/gaps?upto=N` → one line per `n < N`: `max_gap_ms close requests since_last_ms`
//!   (`since_last_ms` is the gap still open now; `-1` if `n` was never requested)
//!
//! `bench-target --addrs K [--threads T] [--port P]` prints `listening port=P addrs=K` on its
//! first line. Without `--port` it picks a free one.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn arg(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let addrs = arg("--addrs", 64).clamp(1, 250);
    let threads = arg("--threads", 2).max(1) as usize;
    let port = arg("--port", 0) as u16;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(serve(addrs, port))
}

/// Paths `/ok/{n}` with n below this are counted as distinct.
const DISTINCT_MAX: usize = 1 << 21;

/// One bit per `n` of `/ok/{n}` seen, and how many bits are set.
struct Seen {
    bits: Vec<AtomicU64>,
    distinct: AtomicU64,
}

fn seen() -> &'static Seen {
    static SEEN: OnceLock<Seen> = OnceLock::new();
    SEEN.get_or_init(|| Seen {
        bits: (0..DISTINCT_MAX / 64).map(|_| AtomicU64::new(0)).collect(),
        distinct: AtomicU64::new(0),
    })
}

fn mark(n: usize) {
    if n >= DISTINCT_MAX {
        return;
    }
    let seen = seen();
    let bit = 1u64 << (n % 64);
    if seen.bits[n / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0 {
        seen.distinct.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per `n` of `/ok/{n}` (n < [`GAPS_MAX`]): when it was last requested (ms since start, + 1;
/// 0 = never), and in the current gap window its longest gap, its requests and how many of
/// them came within `close_ms` of the previous one. Allocated, and kept from then on, at the
/// first `/gaps/reset`: fleets that never ask for gaps pay nothing for them.
struct Gaps {
    started: std::time::Instant,
    close_ms: AtomicU64,
    last: Vec<AtomicU64>,
    max_gap: Vec<AtomicU32>,
    requests: Vec<AtomicU32>,
    close: Vec<AtomicU32>,
}

static GAPS_ON: AtomicBool = AtomicBool::new(false);

/// The benchmark fleets that track gaps are far smaller than the distinct-path bitset.
const GAPS_MAX: usize = 1 << 20;

fn gaps() -> &'static Gaps {
    static GAPS: OnceLock<Gaps> = OnceLock::new();
    GAPS.get_or_init(|| Gaps {
        started: std::time::Instant::now(),
        close_ms: AtomicU64::new(0),
        last: (0..GAPS_MAX).map(|_| AtomicU64::new(0)).collect(),
        max_gap: (0..GAPS_MAX).map(|_| AtomicU32::new(0)).collect(),
        requests: (0..GAPS_MAX).map(|_| AtomicU32::new(0)).collect(),
        close: (0..GAPS_MAX).map(|_| AtomicU32::new(0)).collect(),
    })
}

impl Gaps {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    fn record(&self, n: usize) {
        if n >= GAPS_MAX {
            return;
        }
        let now = self.now_ms();
        let previous = self.last[n].swap(now, Ordering::Relaxed);
        self.requests[n].fetch_add(1, Ordering::Relaxed);
        if previous != 0 {
            let gap = now.saturating_sub(previous);
            self.max_gap[n].fetch_max(gap.min(u64::from(u32::MAX)) as u32, Ordering::Relaxed);
            if gap < self.close_ms.load(Ordering::Relaxed) {
                self.close[n].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn reset(&self, close_ms: u64) {
        self.close_ms.store(close_ms, Ordering::Relaxed);
        for counters in [&self.max_gap, &self.requests, &self.close] {
            for c in counters {
                c.store(0, Ordering::Relaxed);
            }
        }
    }

    fn report(&self, upto: usize) -> String {
        use std::fmt::Write as _;
        let now = self.now_ms();
        let mut out = String::with_capacity(upto.min(GAPS_MAX) * 16);
        for n in 0..upto.min(GAPS_MAX) {
            let last = self.last[n].load(Ordering::Relaxed);
            let since = if last == 0 {
                -1
            } else {
                now.saturating_sub(last) as i64
            };
            let _ = writeln!(
                out,
                "{} {} {} {since}",
                self.max_gap[n].load(Ordering::Relaxed),
                self.close[n].load(Ordering::Relaxed),
                self.requests[n].load(Ordering::Relaxed),
            );
        }
        out
    }
}

/// `name=value` from a query string.
fn query_param(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

async fn serve(addrs: u32, port: u16) -> std::io::Result<()> {
    let served = Arc::new(AtomicU64::new(0));
    // The first listener picks a free port (or takes `--port`); the others take the same port
    // on their address. If one of them finds it taken, start over on another port, unless the
    // port was given.
    let listeners = 'attempt: loop {
        let first = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for host in 2..=addrs {
            let ip = Ipv4Addr::new(127, 0, 0, host as u8);
            match TcpListener::bind(SocketAddr::from((ip, port))).await {
                Ok(l) => listeners.push(l),
                Err(e) if port != 0 => return Err(e),
                Err(_) => continue 'attempt,
            }
        }
        break listeners;
    };
    let port = listeners[0].local_addr()?.port();
    println!("listening port={port} addrs={addrs}");
    let mut tasks = Vec::new();
    for listener in listeners {
        let served = served.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let served = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, served.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

async fn answer(
    req: Request<Incoming>,
    served: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path == "/reset" {
        let seen = seen();
        for word in &seen.bits {
            word.store(0, Ordering::Relaxed);
        }
        seen.distinct.store(0, Ordering::Relaxed);
        return Ok(Response::new(Full::new(Bytes::from_static(b"reset\n"))));
    }
    if path == "/gaps/reset" {
        gaps().reset(query_param(&req, "close_ms").unwrap_or(0));
        GAPS_ON.store(true, Ordering::Relaxed);
        return Ok(Response::new(Full::new(Bytes::from_static(b"reset\n"))));
    }
    if path == "/gaps" {
        let upto = query_param(&req, "upto").unwrap_or(0) as usize;
        return Ok(Response::new(Full::new(Bytes::from(gaps().report(upto)))));
    }
    if path == "/stats" {
        let n = served.load(Ordering::Relaxed);
        let distinct = seen().distinct.load(Ordering::Relaxed);
        return Ok(Response::new(Full::new(Bytes::from(format!(
            "{n} {distinct}"
        )))));
    }
    served.fetch_add(1, Ordering::Relaxed);
    let status = if let Some(rest) = path.strip_prefix("/ok") {
        if let Some(n) = rest.strip_prefix('/').and_then(|n| n.parse::<usize>().ok()) {
            mark(n);
            if GAPS_ON.load(Ordering::Relaxed) {
                gaps().record(n);
            }
        }
        StatusCode::OK
    } else if let Some(code) = path.strip_prefix("/status/") {
        code.parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST)
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.parse::<u64>().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        StatusCode::OK
    } else if path == "/hang" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    *response.status_mut() = status;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gap window counts requests and close ones from the reset on, keeps the last request
    /// across the reset (so the gap spanning it counts) and reports never-requested paths.
    #[test]
    fn gaps_span_the_reset_and_count_close_requests() {
        let gaps = gaps();
        gaps.reset(60_000);
        gaps.record(7);
        std::thread::sleep(Duration::from_millis(30));
        gaps.reset(60_000);
        gaps.record(7);
        gaps.record(7);
        let report = gaps.report(8);
        let lines: Vec<Vec<i64>> = report
            .lines()
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[0], vec![0, 0, 0, -1], "never requested");
        let [max, close, requests, since] = lines[7][..] else {
            panic!("{report}")
        };
        assert!(max >= 30, "the gap spanning the reset counts: {report}");
        assert_eq!((close, requests), (2, 2), "{report}");
        assert!((0..30).contains(&since), "{report}");
    }
}
