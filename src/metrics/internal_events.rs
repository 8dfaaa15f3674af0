//! Internal events: each occurrence the daemon measures is one type here whose `emit` writes
//! the log line and the metrics together, from one place (STYLE.md "Telemetry", after
//! vector's `internal_events`). Call sites build the event and call [`InternalEvent::emit`];
//! they never call `metrics::` macros or log the same occurrence themselves.
//!
//! Labels come from small bounded sets only: integration type, provider name (built-in or a
//! loaded plugin), outcome, failure class, status, HTTP method, route template, status code,
//! lifecycle event kind.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use catalogd_actors::{CheckOutcome, CheckReport, Status};
use metrics::{counter, gauge, histogram, Counter, Histogram};
use uuid::Uuid;

use super::names;

/// Something that happened, emitted as a log line and its metrics.
pub trait InternalEvent {
    fn emit(self);
}

/// A health check (scheduled, or a manual test applied by the owning actor) finished.
#[derive(Debug, Clone, Copy)]
pub struct CheckCompleted<'a> {
    pub integration_id: Uuid,
    pub kind: &'static str,
    pub provider: &'a str,
    pub report: &'a CheckReport,
}

/// The `outcome` label of a check.
pub fn outcome_label(outcome: CheckOutcome) -> &'static str {
    match outcome {
        CheckOutcome::Success => "success",
        CheckOutcome::Failure(_) => "failure",
        CheckOutcome::Skipped => "skipped",
    }
}

/// The `failure_class` label of a check; `none` unless it failed.
pub fn failure_class_label(outcome: CheckOutcome) -> &'static str {
    match outcome {
        CheckOutcome::Failure(class) => class.as_str(),
        CheckOutcome::Success | CheckOutcome::Skipped => "none",
    }
}

/// The metric handles of one (type, provider, outcome, failure class).
struct CheckHandles {
    checks: Counter,
    duration: Histogram,
}

/// `(type, outcome, failure_class)`: all three are `&'static str` from bounded sets.
type StaticLabels = (&'static str, &'static str, &'static str);

/// Check metric handles by provider, then by the static labels, registered once each. The
/// `counter!`/`histogram!` macros would build a label set (the provider copied twice) and
/// look it up in the recorder's registry on every check; this read-locked lookup by `&str`
/// allocates nothing. The sets are bounded (providers are built-ins and loaded plugins).
static CHECK_HANDLES: LazyLock<RwLock<HashMap<String, HashMap<StaticLabels, CheckHandles>>>> =
    LazyLock::new(|| {
        // Handles bind to the recorder installed when they are created: install it first.
        super::handle();
        RwLock::new(HashMap::new())
    });

static LATENESS: LazyLock<Histogram> = LazyLock::new(|| {
    super::handle();
    histogram!(names::CHECK_LATENESS)
});

fn with_check_handles(provider: &str, labels: StaticLabels, use_them: impl Fn(&CheckHandles)) {
    {
        let handles = CHECK_HANDLES.read().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = handles.get(provider).and_then(|by| by.get(&labels)) {
            use_them(found);
            return;
        }
    }
    let (kind, outcome, failure_class) = labels;
    let mut handles = CHECK_HANDLES.write().unwrap_or_else(|e| e.into_inner());
    let found = handles
        .entry(provider.to_owned())
        .or_default()
        .entry(labels)
        .or_insert_with(|| CheckHandles {
            checks: counter!(
                names::CHECKS_TOTAL,
                "type" => kind,
                "provider" => provider.to_owned(),
                "outcome" => outcome,
                "failure_class" => failure_class,
            ),
            duration: histogram!(
                names::CHECK_DURATION,
                "type" => kind,
                "provider" => provider.to_owned(),
                "outcome" => outcome,
            ),
        });
    use_them(found);
}

impl InternalEvent for CheckCompleted<'_> {
    fn emit(self) {
        let outcome = outcome_label(self.report.outcome);
        let failure_class = failure_class_label(self.report.outcome);
        let latency = self.report.latency;
        tracing::debug!(
            integration_id = %self.integration_id,
            r#type = self.kind,
            provider = self.provider,
            outcome,
            failure_class,
            latency_ms = latency.as_millis() as u64,
            lateness_ms = self.report.lateness.as_millis() as u64,
            "health check finished"
        );
        let skipped = self.report.outcome == CheckOutcome::Skipped;
        with_check_handles(
            self.provider,
            (self.kind, outcome, failure_class),
            |handles| {
                handles.checks.increment(1);
                if !skipped {
                    handles.duration.record(latency.as_secs_f64());
                }
            },
        );
        if !skipped {
            LATENESS.record(self.report.lateness.as_secs_f64());
        }
    }
}

/// A lifecycle transition caused by a check was committed to the store.
#[derive(Debug, Clone, Copy)]
pub struct TransitionCommitted {
    pub integration_id: Uuid,
    pub from: Status,
    pub to: Status,
}

impl InternalEvent for TransitionCommitted {
    fn emit(self) {
        // The engine logs the transition at info level from the actor; this line adds
        // nothing but the fact that it was counted, so it stays at debug.
        tracing::debug!(
            integration_id = %self.integration_id,
            from = %self.from,
            to = %self.to,
            "transition counted"
        );
        counter!(
            names::TRANSITIONS_TOTAL,
            "from" => self.from.as_str(),
            "to" => self.to.as_str(),
        )
        .increment(1);
    }
}

/// A REST request was answered. The request log line itself is written by the `TraceLayer`
/// around the router (same method, route template and status).
#[derive(Debug, Clone, Copy)]
pub struct HttpRequestServed<'a> {
    pub method: &'static str,
    pub route: &'a str,
    pub status: u16,
    pub duration: Duration,
}

/// The `method` label: the standard methods, anything else as `other` (bounded).
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl InternalEvent for HttpRequestServed<'_> {
    fn emit(self) {
        counter!(
            names::HTTP_REQUESTS_TOTAL,
            "method" => self.method,
            "route" => self.route.to_owned(),
            "status" => self.status.to_string(),
        )
        .increment(1);
        histogram!(
            names::HTTP_REQUEST_DURATION,
            "method" => self.method,
            "route" => self.route.to_owned(),
        )
        .record(self.duration.as_secs_f64());
    }
}

/// The NATS relay published a lifecycle event: JetStream acknowledged it, or core NATS
/// flushed it. No log line: at thousands of events a second it would drown the log, and
/// failures are logged by the relay (rate-limited).
#[derive(Debug, Clone, Copy)]
pub struct EventPublished<'a> {
    /// `integration.<kind>`; the `type` label is the kind.
    pub event_type: &'a str,
    /// From the publish to its ack (or to the flush).
    pub duration: Duration,
}

impl InternalEvent for EventPublished<'_> {
    fn emit(self) {
        histogram!(names::EVENT_PUBLISH_DURATION).record(self.duration.as_secs_f64());
        let kind = self
            .event_type
            .strip_prefix("integration.")
            .unwrap_or(self.event_type);
        counter!(names::EVENTS_PUBLISHED_TOTAL, "type" => kind.to_owned()).increment(1);
    }
}

/// The relay counted the outbox rows not yet published (every sweep interval).
#[derive(Debug, Clone, Copy)]
pub struct OutboxBacklogCounted {
    pub backlog: u64,
}

impl InternalEvent for OutboxBacklogCounted {
    fn emit(self) {
        gauge!(names::OUTBOX_BACKLOG).set(self.backlog as f64);
    }
}

/// The per-integration gauges were refreshed from the store (and the health history).
#[derive(Debug, Clone, Copy)]
pub struct GaugesRefreshed {
    pub integrations: usize,
    pub uptimes: usize,
    pub duration: Duration,
}

impl InternalEvent for GaugesRefreshed {
    fn emit(self) {
        gauge!(names::METRICS_REFRESH_DURATION).set(self.duration.as_secs_f64());
        tracing::debug!(
            integrations = self.integrations,
            uptimes = self.uptimes,
            duration_ms = self.duration.as_millis() as u64,
            "metrics gauges refreshed"
        );
    }
}

/// Refreshing the gauges failed; the previous values stay until the next attempt.
pub struct GaugesRefreshFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for GaugesRefreshFailed<'_> {
    fn emit(self) {
        tracing::warn!(error = %self.error, "could not refresh the metrics gauges");
    }
}
