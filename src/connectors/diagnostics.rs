//! Staged diagnostics of a connection test (DNS → TCP → TLS → HTTP → authenticated call) and
//! the report the REST `/test` endpoint returns.
//!
//! The egress client reports its connection phases to a [`Diagnostics`] (it is an
//! [`Observer`]); connectors open and close the request-level stages (`http`, `auth`, and
//! connector-specific ones) around their calls. Recording stops at the first failing stage.
//! For the periodic checks the recorder is disabled and costs nothing.
//!
//! Stage messages are fixed phrases and status codes, built by catalogd: never upstream
//! bodies, header values or secrets.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use catalogd_actors::FailureClass;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Failure;
use crate::egress::{EgressError, Observer, Phase, PhaseInfo};

/// One stage of a connection test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageReport {
    /// `dns`, `egress`, `tcp`, `tls`, `http`, `auth`, or a connector-specific stage such as
    /// `script` or `config`.
    pub name: String,
    pub success: bool,
    pub duration_ms: u64,
    /// A short fixed phrase: a status code, "connection refused", "certificate not trusted".
    pub message: String,
}

/// The result of `POST /{id}/test` (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTestReport {
    pub success: bool,
    pub latency_ms: u64,
    #[schema(value_type = Option<String>, example = "http_status")]
    pub failure_class: Option<FailureClass>,
    pub tested_at: DateTime<Utc>,
    pub stages: Vec<StageReport>,
    /// Present and `true` when nothing was tested (offline mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

impl ConnectionTestReport {
    /// The report as a check outcome, for callers that feed test results to the lifecycle.
    pub fn outcome(&self) -> catalogd_actors::CheckOutcome {
        use catalogd_actors::CheckOutcome;
        match (self.skipped, self.success, self.failure_class) {
            (true, _, _) => CheckOutcome::Skipped,
            (false, true, _) => CheckOutcome::Success,
            (false, false, class) => CheckOutcome::Failure(class.unwrap_or(FailureClass::Internal)),
        }
    }
}

/// Records the stages of one connection test.
#[derive(Debug)]
pub struct Diagnostics {
    enabled: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    stages: Vec<StageReport>,
    /// Once a stage has failed nothing more is recorded.
    failed: bool,
    /// The request-level stage the connector has open, and when it began.
    request: Option<(&'static str, Instant)>,
    /// Time spent exchanging HTTP messages within the open request-level stage.
    exchange_time: Duration,
    /// The innermost stage in progress, blamed if the test times out.
    open: Option<(&'static str, Instant)>,
}

impl Diagnostics {
    /// A recorder that records nothing: the periodic health checks.
    pub fn disabled() -> Diagnostics {
        Diagnostics {
            enabled: false,
            state: Mutex::new(State::default()),
        }
    }

    pub fn enabled() -> Diagnostics {
        Diagnostics {
            enabled: true,
            state: Mutex::new(State::default()),
        }
    }

    /// Opens a request-level stage (`http`, `auth`, ...).
    pub fn enter(&self, stage: &'static str) {
        self.with(|state| {
            let now = Instant::now();
            state.request = Some((stage, now));
            state.exchange_time = Duration::ZERO;
            state.open = Some((stage, now));
        });
    }

    /// Closes the request-level stage opened by [`Diagnostics::enter`]. Its duration is the
    /// time spent in HTTP exchanges, or the whole stage when it made none.
    pub fn leave(&self, stage: &'static str, result: Result<Cow<'_, str>, &Failure>) {
        self.with(|state| {
            let began = match state.request.take() {
                Some((open, began)) if open == stage => began,
                _ => Instant::now(),
            };
            let duration = if state.exchange_time.is_zero() {
                began.elapsed()
            } else {
                state.exchange_time
            };
            state.open = None;
            let (success, message) = match result {
                Ok(message) => (true, message.into_owned()),
                Err(failure) => (false, failure.message.to_string()),
            };
            state.record(stage, success, duration, message);
        });
    }

    /// Runs `body` as the request-level stage `stage`, recording its result with `message`
    /// on success.
    pub async fn stage<T, F>(
        &self,
        stage: &'static str,
        body: F,
        message: impl FnOnce(&T) -> Cow<'static, str>,
    ) -> Result<T, Failure>
    where
        F: std::future::Future<Output = Result<T, Failure>>,
    {
        self.enter(stage);
        let result = body.await;
        match &result {
            Ok(value) => self.leave(stage, Ok(message(value))),
            Err(failure) => self.leave(stage, Err(failure)),
        }
        result
    }

    /// Blames the innermost open stage for a timeout.
    pub fn timed_out(&self, after: Duration) {
        self.with(|state| {
            let (stage, began) = state
                .open
                .or(state.request)
                .unwrap_or(("check", Instant::now()));
            let message = format!("timed out after {} ms", after.as_millis());
            state.record(stage, false, began.elapsed(), message);
        });
    }

    /// The recorded stages. A failure that no stage recorded (bad configuration found
    /// before any stage opened) becomes a `config` stage, or a `check` stage for other
    /// classes.
    pub fn finish(self, failure: Option<&Failure>) -> Vec<StageReport> {
        let mut state = self
            .state
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(failure) = failure {
            if !state.failed {
                let name = match (state.open, failure.class) {
                    (Some((stage, _)), _) => stage,
                    (None, FailureClass::Config) => "config",
                    (None, _) => "check",
                };
                state.record(name, false, Duration::ZERO, failure.message.to_string());
            }
        }
        state.stages
    }

    fn with(&self, f: impl FnOnce(&mut State)) {
        if self.enabled {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut state);
        }
    }
}

impl State {
    /// Appends a stage. A stage that already succeeded (a second connection in the same
    /// test) is not repeated; after a failure nothing more is recorded.
    fn record(&mut self, name: &'static str, success: bool, duration: Duration, message: String) {
        if self.failed || (success && self.stages.iter().any(|stage| stage.name == name)) {
            return;
        }
        self.failed = !success;
        self.stages.push(StageReport {
            name: name.to_owned(),
            success,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            message,
        });
    }

    /// After a connection phase ends, the request-level stage is the one in progress again.
    fn reopen_request(&mut self) {
        self.open = self.request;
    }
}

fn phase_stage(phase: Phase) -> &'static str {
    match phase {
        Phase::Dns => "dns",
        Phase::Policy => "egress",
        Phase::Tcp => "tcp",
        Phase::Tls => "tls",
        Phase::Http => "http",
    }
}

fn phase_message(info: PhaseInfo) -> String {
    match info {
        PhaseInfo::Resolved { addresses: 1 } => "resolved 1 address".to_owned(),
        PhaseInfo::Resolved { addresses } => format!("resolved {addresses} addresses"),
        PhaseInfo::AddressLiteral => "address literal, no lookup".to_owned(),
        PhaseInfo::Allowed => "allowed".to_owned(),
        PhaseInfo::Connected => "connected".to_owned(),
        PhaseInfo::Handshake { protocol } => format!("{protocol} handshake complete"),
        PhaseInfo::Status(status) => format!("HTTP {status}"),
    }
}

impl Observer for Diagnostics {
    fn begin(&self, phase: Phase) {
        self.with(|state| {
            let name = match (phase, state.request) {
                (Phase::Http, Some((request, _))) => request,
                (phase, _) => phase_stage(phase),
            };
            state.open = Some((name, Instant::now()));
        });
    }

    fn end(&self, phase: Phase, result: Result<PhaseInfo, &EgressError>) {
        self.with(|state| {
            let elapsed = state
                .open
                .map(|(_, began)| began.elapsed())
                .unwrap_or_default();
            match (phase, result) {
                // The exchange belongs to the request-level stage, which the connector
                // closes once it has judged the response.
                (Phase::Http, _) => state.exchange_time += elapsed,
                // The policy check is a stage of its own only when it refuses.
                (Phase::Policy, Ok(_)) => {}
                (phase, Ok(info)) => {
                    state.record(phase_stage(phase), true, elapsed, phase_message(info))
                }
                (phase, Err(error)) => {
                    state.record(phase_stage(phase), false, elapsed, error.to_string())
                }
            }
            state.reopen_request();
        });
    }

    /// Periodic checks (diagnostics off) may use kept-alive connections; a connection test
    /// always opens its own, so that its DNS, TCP and TLS stages are real.
    fn reuse_connections(&self) -> bool {
        !self.enabled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_until_the_first_failure_and_deduplicates_successes() {
        let diagnostics = Diagnostics::enabled();
        diagnostics.enter("http");
        diagnostics.begin(Phase::Dns);
        diagnostics.end(Phase::Dns, Ok(PhaseInfo::Resolved { addresses: 2 }));
        diagnostics.begin(Phase::Tcp);
        diagnostics.end(Phase::Tcp, Ok(PhaseInfo::Connected));
        diagnostics.begin(Phase::Http);
        diagnostics.end(Phase::Http, Ok(PhaseInfo::Status(401)));
        diagnostics.leave("http", Ok("HTTP 401".into()));
        diagnostics.enter("auth");
        diagnostics.begin(Phase::Dns);
        diagnostics.end(Phase::Dns, Ok(PhaseInfo::Resolved { addresses: 2 }));
        diagnostics.begin(Phase::Tcp);
        diagnostics.end(Phase::Tcp, Err(&EgressError::Connect("connection refused")));
        let failure = Failure::new(FailureClass::Connect, "connection refused");
        diagnostics.leave("auth", Err(&failure));
        let stages = diagnostics.finish(Some(&failure));
        let names: Vec<_> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["dns", "tcp", "http", "tcp"]);
        assert_eq!(stages[0].message, "resolved 2 addresses");
        assert!(!stages[3].success);
        assert_eq!(stages[3].message, "connection refused");
    }

    #[test]
    fn a_timeout_blames_the_open_stage() {
        let diagnostics = Diagnostics::enabled();
        diagnostics.enter("http");
        diagnostics.begin(Phase::Http);
        diagnostics.timed_out(Duration::from_millis(250));
        let stages = diagnostics.finish(None);
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0].name, "http");
        assert_eq!(stages[0].message, "timed out after 250 ms");
    }

    #[test]
    fn disabled_records_nothing() {
        let diagnostics = Diagnostics::disabled();
        diagnostics.enter("http");
        diagnostics.leave("http", Ok("HTTP 200".into()));
        assert!(diagnostics.finish(None).is_empty());
    }
}
