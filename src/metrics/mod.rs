//! Prometheus metrics (DESIGN §7), served on `metrics.listen` at `/metrics`, on a listener of
//! its own so that scrapes never queue behind REST requests (and the port can be firewalled
//! apart).
//!
//! Three sources make up one scrape:
//!
//! - **Counted occurrences** — checks, transitions, REST requests, and the NATS relay's
//!   publishes — go through the `metrics` facade into one global
//!   `metrics-exporter-prometheus` recorder, installed once per process ([`handle`]). They are
//!   emitted only by the [`internal_events`] types, each of which writes its log line and its metrics
//!   together.
//! - **Engine counters** (`catalogd_actors`, `catalogd_actor_restarts_total`) are read from the
//!   engine's lock-free [`EngineCounters`] at scrape time: no second bookkeeping.
//! - **Store-derived gauges** (`catalogd_integrations` and the per-integration series) come
//!   from [`IntegrationGauges`], refreshed in the background by [`Refresher`]: counts and
//!   labels every `metrics.refresh`, uptime ratios from the health history every
//!   `metrics.uptime_refresh` — never on the scrape path, which at 100k integrations would
//!   mean 100k uptime queries per scrape.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use catalogd_actors::{EngineCounters, NetworkGuard};
use futures_util::StreamExt as _;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub mod gzip;
mod integrations;
pub mod internal_events;

pub use integrations::{
    render_cluster, render_engine, status_value, IntegrationGauges, Refresher, Stable,
};

use crate::cluster::Ownership;
use crate::store::history::{HistoryWriter, WriterCounters};

/// Every metric name, so that emitters, descriptions and tests agree.
pub mod names {
    pub const CHECKS_TOTAL: &str = "catalogd_checks_total";
    pub const CHECK_DURATION: &str = "catalogd_check_duration_seconds";
    pub const CHECK_LATENESS: &str = "catalogd_check_lateness_seconds";
    pub const INTEGRATIONS: &str = "catalogd_integrations";
    pub const TRANSITIONS_TOTAL: &str = "catalogd_transitions_total";
    pub const EVENTS_PUBLISHED_TOTAL: &str = "catalogd_events_published_total";
    pub const OUTBOX_BACKLOG: &str = "catalogd_outbox_backlog";
    pub const METRICS_REFRESH_DURATION: &str = "catalogd_metrics_refresh_duration_seconds";
    pub const EVENT_PUBLISH_DURATION: &str = "catalogd_event_publish_duration_seconds";
    pub const ACTORS: &str = "catalogd_actors";
    pub const ACTOR_RESTARTS_TOTAL: &str = "catalogd_actor_restarts_total";
    pub const INTEGRATIONS_FLAPPING: &str = "catalogd_integrations_flapping";
    pub const INTEGRATIONS_SUPPRESSED: &str = "catalogd_integrations_suppressed";
    pub const INTEGRATION_SUPPRESSED: &str = "catalogd_integration_suppressed";
    pub const INTEGRATIONS_IN_MAINTENANCE: &str = "catalogd_integrations_in_maintenance";
    pub const INTEGRATION_MAINTENANCE: &str = "catalogd_integration_maintenance";
    pub const HTTP_REQUESTS_TOTAL: &str = "catalogd_http_requests_total";
    pub const HTTP_REQUEST_DURATION: &str = "catalogd_http_request_duration_seconds";
    pub const INTEGRATION_UP: &str = "catalogd_integration_up";
    pub const INTEGRATION_STATUS: &str = "catalogd_integration_status";
    pub const INTEGRATION_CHECK_DURATION: &str = "catalogd_integration_check_duration_seconds";
    pub const INTEGRATION_UPTIME: &str = "catalogd_integration_uptime_ratio";
    pub const INTEGRATION_INFO: &str = "catalogd_integration_info";
    pub const CLUSTER_NODES: &str = "catalogd_cluster_nodes";
    pub const CLUSTER_SHARDS: &str = "catalogd_cluster_shards";
    pub const SHARDS_OWNED: &str = "catalogd_shards_owned";
    pub const SHARD_TAKEOVERS_TOTAL: &str = "catalogd_shard_takeovers_total";
    pub const SHARD_LOSSES_TOTAL: &str = "catalogd_shard_losses_total";
    pub const FENCED_WRITES_TOTAL: &str = "catalogd_fenced_writes_total";
    pub const NETWORK_IMPAIRED: &str = "catalogd_network_impaired";
    pub const CHECK_RESULTS_WRITTEN_TOTAL: &str = "catalogd_check_results_written_total";
    pub const CHECK_RESULTS_DROPPED_TOTAL: &str = "catalogd_check_results_dropped_total";
    pub const CHECK_RESULTS_QUEUED: &str = "catalogd_check_results_queued";
}

/// Health checks take from about a millisecond (a local cache, a refused connection) to the
/// 30 s the longest allowed timeout lets them run.
pub const CHECK_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How late a check starts: normally a few milliseconds; seconds mean the engine is behind.
pub const LATENESS_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0,
];

/// REST requests: sub-millisecond reads up to the 30 s request time limit.
pub const HTTP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Publishing one event to NATS (JetStream acknowledgement included).
pub const PUBLISH_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How often the recorder's histogram samples are folded into their buckets when nobody
/// scrapes: the interval `metrics-exporter-prometheus` uses for the recorders it installs.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide recorder, installed (with its buckets and descriptions) on first use.
/// Several daemons in one process (tests) share it; the store-derived gauges are per daemon.
///
/// A histogram's samples wait in a list until the recorder's upkeep folds them into the
/// buckets, and a recorder built by hand (as this one is) leaves that to its owner. A scrape
/// runs it, so a daemon that nobody scraped kept every check's latency and lateness: about
/// 17 bytes a check, 0.6 GB an hour at 10k checks a second. A thread of its own runs it every
/// [`UPKEEP_INTERVAL`] (as the library's installed recorders do), whatever runtime is
/// running, for as long as the process lives.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = [
            (names::CHECK_DURATION, &CHECK_BUCKETS[..]),
            (names::CHECK_LATENESS, &LATENESS_BUCKETS[..]),
            (names::HTTP_REQUEST_DURATION, &HTTP_BUCKETS[..]),
            (names::EVENT_PUBLISH_DURATION, &PUBLISH_BUCKETS[..]),
        ]
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .expect("bucket lists are not empty")
        });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            // Only another library installing a recorder first can cause this; our metrics
            // would then go there and `/metrics` would show the store-derived gauges only.
            tracing::error!(%error, "a metrics recorder is already installed");
        }
        describe();
        let upkept = handle.clone();
        let upkeep = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkept.run_upkeep();
            });
        if let Err(error) = upkeep {
            tracing::error!(%error, "the metrics upkeep thread did not start; histogram samples are folded at scrapes only");
        }
        handle
    })
}

/// HELP and TYPE (and unit) of every recorder metric, including those the NATS relay emits.
fn describe() {
    describe_counter!(
        names::CHECKS_TOTAL,
        Unit::Count,
        "Health checks finished, by integration type, provider, outcome and failure class."
    );
    describe_histogram!(
        names::CHECK_DURATION,
        Unit::Seconds,
        "Duration of health checks, by integration type, provider and outcome."
    );
    describe_histogram!(
        names::CHECK_LATENESS,
        Unit::Seconds,
        "How late health checks started against their schedule."
    );
    describe_counter!(
        names::TRANSITIONS_TOTAL,
        Unit::Count,
        "Lifecycle transitions caused by health checks, by status before and after."
    );
    describe_counter!(
        names::EVENTS_PUBLISHED_TOTAL,
        Unit::Count,
        "Lifecycle events published to NATS, by event type."
    );
    describe_gauge!(
        names::OUTBOX_BACKLOG,
        Unit::Count,
        "Events in the outbox not yet published to NATS."
    );
    describe_gauge!(
        names::METRICS_REFRESH_DURATION,
        Unit::Seconds,
        "How long the last pass of the store-derived gauges' refresh took (every integration \
         read, and their uptime ratios when due); the next waits at least nine times as long."
    );
    describe_histogram!(
        names::EVENT_PUBLISH_DURATION,
        Unit::Seconds,
        "Time to publish one event to NATS, acknowledgement included."
    );
    describe_counter!(
        names::HTTP_REQUESTS_TOTAL,
        Unit::Count,
        "REST requests answered, by method, route template and status code."
    );
    describe_histogram!(
        names::HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Duration of REST requests, by method and route template."
    );
}

/// What `/metrics` renders: the global recorder, this daemon's engine counters and gauges.
#[derive(Clone)]
pub struct Exporter {
    pub handle: &'static PrometheusHandle,
    pub engine: Arc<EngineCounters>,
    pub gauges: IntegrationGauges,
    /// This node's shards and cluster counters (DESIGN §9).
    pub cluster: Option<Arc<Ownership>>,
    /// The network guard (DESIGN §10); `None` when it is off (the gauge is then 0).
    pub network_guard: Option<Arc<NetworkGuard>>,
    /// The history writer, whose queue refuses results when the database falls behind.
    pub history: Option<HistoryWriter>,
}

impl Exporter {
    pub fn new(engine: Arc<EngineCounters>, gauges: IntegrationGauges) -> Self {
        Exporter {
            handle: handle(),
            engine,
            gauges,
            cluster: None,
            network_guard: None,
            history: None,
        }
    }

    /// Renders the history writer's counters too.
    pub fn with_history(mut self, writer: HistoryWriter) -> Self {
        self.history = Some(writer);
        self
    }

    /// Renders `catalogd_network_impaired` from this guard.
    pub fn with_network_guard(mut self, guard: Option<Arc<NetworkGuard>>) -> Self {
        self.network_guard = guard;
        self
    }

    /// Renders this node's cluster metrics too.
    pub fn with_cluster(mut self, ownership: Arc<Ownership>) -> Self {
        self.cluster = Some(ownership);
        self
    }

    /// The whole exposition text.
    pub fn render(&self) -> String {
        let chunks = self.render_chunks();
        let mut out = String::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in &chunks {
            // Every chunk is rendered by us from `&str`s: always UTF-8.
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        }
        out
    }

    /// The whole exposition text in pieces, to be sent one after another: the live part
    /// rendered now, the stable parts shared with their cache (at 100k integrations they are
    /// ~80 MB that a scrape need not copy).
    pub fn render_chunks(&self) -> Vec<Bytes> {
        let (live, stable) = self.render_parts();
        let mut chunks = vec![Bytes::from(live)];
        chunks.extend(stable.iter().map(|stable| stable.text().clone()));
        chunks
    }

    /// The whole exposition as one gzip member: the live part compressed now, each stable
    /// part as compressed when it last changed (or now, if no scrape compressed it yet). What
    /// is compressed now is compressed in parallel, in pieces.
    pub fn render_gzip(&self) -> Vec<u8> {
        let (live, stable) = self.render_parts();
        let missing: Vec<&Stable> = stable
            .iter()
            .filter(|s| s.gzip().is_none())
            .map(|s| &**s)
            .collect();
        let mut texts: Vec<&[u8]> = vec![live.as_bytes()];
        texts.extend(missing.iter().map(|s| &s.text()[..]));
        let mut compressed = gzip::compress_all(&texts).into_iter();
        let live = compressed.next().unwrap_or_default();
        for (stable, parts) in missing.iter().zip(compressed) {
            stable.set_gzip(parts);
        }
        let mut parts: Vec<&gzip::Part> = live.iter().collect();
        for stable in &stable {
            parts.extend(stable.gzip().unwrap_or_default());
        }
        gzip::member(&parts)
    }

    /// The text rendered at every scrape (recorder, engine, counts and durations) and the
    /// cached per-integration families.
    fn render_parts(&self) -> (String, Vec<Arc<Stable>>) {
        (self.render_live(), self.gauges.stable())
    }

    /// The text rendered at every scrape: recorder, engine, cluster, counts and durations.
    fn render_live(&self) -> String {
        self.handle.run_upkeep();
        let mut out = self.handle.render();
        render_engine(&mut out, &self.engine, self.gauges.per_integration());
        if let Some(ownership) = &self.cluster {
            render_cluster(&mut out, ownership);
        }
        let impaired = self.network_guard.as_ref().is_some_and(|g| g.impaired());
        let _ = writeln!(
            out,
            "# HELP {name} 1 while this node's network guard judges its network impaired (DESIGN §10).\n# TYPE {name} gauge\n{name} {}",
            u8::from(impaired),
            name = names::NETWORK_IMPAIRED,
        );
        if let Some(history) = &self.history {
            render_history(&mut out, &history.counters());
        }
        self.gauges.render_live(&mut out);
        out
    }

    /// `GET /metrics`; anything else is 404.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .with_state(self)
    }
}

/// The history writer's counters. Not in DESIGN §7: a check never waits for the database,
/// so when the writer falls behind (a slow disk, an outage, a box short of CPU) its bounded
/// queue refuses results, and an operator must be able to see that the history has gaps.
fn render_history(out: &mut String, counters: &WriterCounters) {
    let _ = writeln!(
        out,
        "# HELP {written} Check results written to the history.\n# TYPE {written} counter\n{written} {}",
        counters.written,
        written = names::CHECK_RESULTS_WRITTEN_TOTAL,
    );
    let _ = writeln!(
        out,
        "# HELP {dropped} Check results not written to the history: the queue was full \
         (the database fell behind the checks) or every retry of the write failed.\n\
         # TYPE {dropped} counter\n\
         {dropped}{{reason=\"queue_full\"}} {}\n{dropped}{{reason=\"write_failed\"}} {}",
        counters.dropped,
        counters.failed,
        dropped = names::CHECK_RESULTS_DROPPED_TOTAL,
    );
    let _ = writeln!(
        out,
        "# HELP {queued} Check results waiting to be written to the history.\n# TYPE {queued} gauge\n{queued} {}",
        counters.queued,
        queued = names::CHECK_RESULTS_QUEUED,
    );
}

async fn scrape(State(exporter): State<Exporter>, headers: HeaderMap) -> impl IntoResponse {
    // Prometheus always asks for gzip: at 100k integrations with per-integration series that
    // is about a sixteenth of the bytes (README, cardinality budget).
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    // Rendering is CPU work proportional to the series count (tens of ms at 100k integrations
    // with per-integration series, more after a family changed): keep it off the async workers.
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    if gzip {
        let body = tokio::task::spawn_blocking(move || exporter.render_gzip())
            .await
            .unwrap_or_default();
        response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return (response_headers, Body::from(body));
    }
    // Plain text: the cached families go out at once, as they are (shared with the cache, not
    // copied), while the live part is rendered on another thread and sent last; the families'
    // order does not matter to the format. At 100k integrations the cached part is ~80 MB, so
    // the live render (tens of ms) overlaps its transfer instead of preceding it.
    let gauges = exporter.gauges.clone();
    let live = tokio::task::spawn_blocking(move || Bytes::from(exporter.render_live()));
    let stable = tokio::task::spawn_blocking(move || gauges.stable())
        .await
        .unwrap_or_default();
    let chunks = futures_util::stream::iter(stable.into_iter().map(|s| s.text().clone()))
        .chain(futures_util::stream::once(async move {
            live.await.unwrap_or_default()
        }))
        .map(Ok::<_, std::convert::Infallible>);
    (response_headers, Body::from_stream(chunks))
}

/// Logs where the exporter listens (tests of daemon processes read the port from it).
pub fn log_listening(addr: SocketAddr) {
    tracing::info!(%addr, "metrics listening");
}

#[cfg(test)]
mod tests {
    /// The recorder comes with the thread that folds its histogram samples when nobody
    /// scrapes (without it, every check's samples stay in memory until a scrape).
    #[test]
    fn the_recorder_is_upkept_without_scrapes() {
        let _ = super::handle();
        // A new thread names itself once it runs: poll for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let threads = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
            let names: Vec<String> = threads
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect();
            if names.iter().any(|name| name == "metrics-upkeep") {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{names:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
