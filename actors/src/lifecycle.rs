//! The lifecycle state machine of DESIGN §4 as one pure function: `(state, input) → (state, effects)`.
//!
//! Nothing here performs I/O or reads a clock. Callers (the REST handlers today, the monitor actors
//! later) feed it inputs and persist what comes out, so the rules live in exactly one place and
//! can be checked exhaustively by property tests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an integration is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    PendingVerification,
    Active,
    Degraded,
    Failed,
    Paused,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Draft,
        Status::PendingVerification,
        Status::Active,
        Status::Degraded,
        Status::Failed,
        Status::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::PendingVerification => "pending_verification",
            Status::Active => "active",
            Status::Degraded => "degraded",
            Status::Failed => "failed",
            Status::Paused => "paused",
        }
    }

    /// Whether a monitor actor probes the integration in this status. Drafts are not yet
    /// submitted and paused integrations must see no request at all.
    pub fn is_monitored(self) -> bool {
        !matches!(self, Status::Draft | Status::Paused)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Why a check failed. A bounded set, so it can be a metric label and an event field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    Timeout,
    Dns,
    Connect,
    Tls,
    HttpStatus,
    Auth,
    RateLimited,
    Assertion,
    Config,
    Internal,
    /// A dependency (DESIGN §10) is degraded or failed: the failure is its, not this one's.
    Dependency,
}

impl FailureClass {
    pub const ALL: [FailureClass; 11] = [
        FailureClass::Timeout,
        FailureClass::Dns,
        FailureClass::Connect,
        FailureClass::Tls,
        FailureClass::HttpStatus,
        FailureClass::Auth,
        FailureClass::RateLimited,
        FailureClass::Assertion,
        FailureClass::Config,
        FailureClass::Internal,
        FailureClass::Dependency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Timeout => "timeout",
            FailureClass::Dns => "dns",
            FailureClass::Connect => "connect",
            FailureClass::Tls => "tls",
            FailureClass::HttpStatus => "http_status",
            FailureClass::Auth => "auth",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Assertion => "assertion",
            FailureClass::Config => "config",
            FailureClass::Internal => "internal",
            FailureClass::Dependency => "dependency",
        }
    }

    /// `rate_limited` says nothing about the target's health and `config` is our side's
    /// problem (unresolvable AuthRef, egress policy), so neither moves an integration towards
    /// degraded or failed (DESIGN §4); nor does `dependency`, whose cause is another
    /// integration's (DESIGN §10).
    pub fn counts_towards_unhealthy(self) -> bool {
        !matches!(
            self,
            FailureClass::RateLimited | FailureClass::Config | FailureClass::Dependency
        )
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of lifecycle event a transition emits; `integration.<name>` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
    Paused,
    Resumed,
    Healthy,
    Unhealthy,
    Activated,
    /// A manual connection test ran (DESIGN §12), whether or not the status changed. No
    /// transition emits it; the test's own commit does.
    Tested,
    /// Flap detection (DESIGN §10): the integration started flapping.
    Flapping,
    /// Flap detection: the integration stopped flapping; carries its current status.
    Stable,
    /// The integration entered a maintenance window (DESIGN §10).
    MaintenanceStarted,
    /// The integration left its maintenance window; counting starts fresh.
    MaintenanceEnded,
}

impl EventKind {
    pub const ALL: [EventKind; 13] = [
        EventKind::Created,
        EventKind::Updated,
        EventKind::Deleted,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::Healthy,
        EventKind::Unhealthy,
        EventKind::Activated,
        EventKind::Tested,
        EventKind::Flapping,
        EventKind::Stable,
        EventKind::MaintenanceStarted,
        EventKind::MaintenanceEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Healthy => "healthy",
            EventKind::Unhealthy => "unhealthy",
            EventKind::Activated => "activated",
            EventKind::Tested => "tested",
            EventKind::Flapping => "flapping",
            EventKind::Stable => "stable",
            EventKind::MaintenanceStarted => "maintenance_started",
            EventKind::MaintenanceEnded => "maintenance_ended",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Consecutive-result thresholds. Each integration may override them; `monitor.*` gives the
/// defaults (3 / 5 / 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    pub degraded_after: u32,
    pub failed_after: u32,
    pub recover_after: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            degraded_after: 3,
            failed_after: 5,
            recover_after: 1,
        }
    }
}

/// The part of an integration that the state machine reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub status: Status,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
}

impl Lifecycle {
    /// The state of a freshly created integration.
    pub fn new() -> Self {
        Lifecycle {
            status: Status::Draft,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }

    fn with_status(self, status: Status) -> Self {
        Lifecycle { status, ..self }
    }

    /// The same status with both counters at zero: counting starts fresh.
    pub fn reset(status: Status) -> Self {
        Lifecycle {
            status,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

/// The outcome of one health check or connection test, as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckOutcome {
    Success,
    Failure(FailureClass),
    /// Offline mode: the check was not run. Nothing is counted and the status holds.
    Skipped,
}

/// Everything that can happen to an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Submit,
    Check(CheckOutcome),
    Pause,
    Resume,
    Activate,
    Update,
    Delete,
}

impl Input {
    /// The name operators see in errors and audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Input::Submit => "submit",
            Input::Check(_) => "check",
            Input::Pause => "pause",
            Input::Resume => "resume",
            Input::Activate => "activate",
            Input::Update => "update",
            Input::Delete => "delete",
        }
    }
}

/// What the caller must do besides storing the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub state: Lifecycle,
    /// The event to audit and publish; `None` when only counters moved.
    pub event: Option<EventKind>,
    /// Run a check now rather than at the next tick (submit, resume).
    pub check_now: bool,
    /// The integration is gone; its actor must stop.
    pub deleted: bool,
}

impl Transition {
    /// Whether the status itself changed (as opposed to counters or an `updated` event).
    pub fn status_changed(&self) -> bool {
        self.from != self.state.status
    }
}

/// An input that the lifecycle table does not allow from the current status (a 409 at the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} an integration that is {}", input.as_str(), from.as_str())]
pub struct InvalidTransition {
    pub from: Status,
    pub input: Input,
}

/// Creating an integration: it starts as a draft and emits `integration.created`.
pub fn create() -> Transition {
    Transition {
        from: Status::Draft,
        state: Lifecycle::new(),
        event: Some(EventKind::Created),
        check_now: false,
        deleted: false,
    }
}

/// The lifecycle table of DESIGN §4.
pub fn apply(
    current: Lifecycle,
    input: Input,
    thresholds: Thresholds,
) -> Result<Transition, InvalidTransition> {
    use Status::*;

    let from = current.status;
    let invalid = || InvalidTransition { from, input };
    let to = |state: Lifecycle, event: Option<EventKind>| Transition {
        from,
        state,
        event,
        check_now: false,
        deleted: false,
    };

    let transition = match input {
        Input::Submit => match from {
            Draft => Transition {
                check_now: true,
                ..to(
                    Lifecycle::reset(PendingVerification),
                    Some(EventKind::Updated),
                )
            },
            _ => return Err(invalid()),
        },
        Input::Pause => match from {
            PendingVerification | Active | Degraded | Failed => {
                to(Lifecycle::reset(Paused), Some(EventKind::Paused))
            }
            _ => return Err(invalid()),
        },
        Input::Resume => match from {
            Paused => Transition {
                check_now: true,
                ..to(Lifecycle::reset(Active), Some(EventKind::Resumed))
            },
            _ => return Err(invalid()),
        },
        Input::Activate => match from {
            Draft | PendingVerification | Failed => {
                to(Lifecycle::reset(Active), Some(EventKind::Activated))
            }
            _ => return Err(invalid()),
        },
        Input::Update => to(current, Some(EventKind::Updated)),
        Input::Delete => Transition {
            deleted: true,
            ..to(current, Some(EventKind::Deleted))
        },
        Input::Check(outcome) => check(current, outcome, thresholds, to),
    };
    Ok(transition)
}

fn check(
    current: Lifecycle,
    outcome: CheckOutcome,
    thresholds: Thresholds,
    to: impl Fn(Lifecycle, Option<EventKind>) -> Transition,
) -> Transition {
    use Status::*;

    // Drafts and paused integrations are never probed; a result that arrives anyway (a check
    // that was already in flight when the pause committed) must not move them.
    if !current.status.is_monitored() {
        return to(current, None);
    }
    match outcome {
        CheckOutcome::Skipped => to(current, None),
        CheckOutcome::Failure(class) if !class.counts_towards_unhealthy() => to(current, None),
        CheckOutcome::Failure(_) => {
            let counted = Lifecycle {
                consecutive_failures: current.consecutive_failures.saturating_add(1),
                consecutive_successes: 0,
                ..current
            };
            let failures = counted.consecutive_failures;
            match current.status {
                Active if failures >= thresholds.degraded_after.max(1) => {
                    // With failed_after <= degraded_after the integration skips straight to
                    // failed rather than needing one more failure than configured.
                    let status = if failures >= thresholds.failed_after {
                        Failed
                    } else {
                        Degraded
                    };
                    to(counted.with_status(status), Some(EventKind::Unhealthy))
                }
                Degraded if failures >= thresholds.failed_after => {
                    to(counted.with_status(Failed), Some(EventKind::Unhealthy))
                }
                _ => to(counted, None),
            }
        }
        CheckOutcome::Success => {
            let counted = Lifecycle {
                consecutive_failures: 0,
                consecutive_successes: current.consecutive_successes.saturating_add(1),
                ..current
            };
            match current.status {
                PendingVerification => to(Lifecycle::reset(Active), Some(EventKind::Healthy)),
                Degraded | Failed
                    if counted.consecutive_successes >= thresholds.recover_after.max(1) =>
                {
                    to(Lifecycle::reset(Active), Some(EventKind::Healthy))
                }
                _ => to(counted, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Thresholds = Thresholds {
        degraded_after: 3,
        failed_after: 5,
        recover_after: 1,
    };

    fn state(status: Status) -> Lifecycle {
        Lifecycle::reset(status)
    }

    /// Every row of the DESIGN §4 table, and every input the table does not list (a 409).
    #[test]
    fn table_rows() {
        use EventKind as E;
        use Input as I;
        use Status::*;
        let ok = Some;
        // (from, input, Some((to, event)) or None for a refused input)
        type Row = (Status, Input, Option<(Status, EventKind)>);
        let rows: &[Row] = &[
            (Draft, I::Submit, ok((PendingVerification, E::Updated))),
            (PendingVerification, I::Submit, None),
            (Active, I::Submit, None),
            (Paused, I::Submit, None),
            (PendingVerification, I::Pause, ok((Paused, E::Paused))),
            (Active, I::Pause, ok((Paused, E::Paused))),
            (Degraded, I::Pause, ok((Paused, E::Paused))),
            (Failed, I::Pause, ok((Paused, E::Paused))),
            (Draft, I::Pause, None),
            (Paused, I::Pause, None),
            (Paused, I::Resume, ok((Active, E::Resumed))),
            (Active, I::Resume, None),
            (Draft, I::Resume, None),
            (Draft, I::Activate, ok((Active, E::Activated))),
            (PendingVerification, I::Activate, ok((Active, E::Activated))),
            (Failed, I::Activate, ok((Active, E::Activated))),
            (Active, I::Activate, None),
            (Degraded, I::Activate, None),
            (Paused, I::Activate, None),
        ];
        for &(from, input, expected) in rows {
            let got = apply(state(from), input, T);
            match expected {
                Some((to, event)) => {
                    let t = got.unwrap_or_else(|e| panic!("{from} {input:?}: {e}"));
                    assert_eq!(t.state.status, to, "{from} {input:?}");
                    assert_eq!(t.event, Some(event), "{from} {input:?}");
                }
                None => assert_eq!(
                    got,
                    Err(InvalidTransition { from, input }),
                    "{from} {input:?}"
                ),
            }
        }
        for from in Status::ALL {
            let update = apply(state(from), Input::Update, T).unwrap();
            assert_eq!(
                (update.state.status, update.event),
                (from, Some(E::Updated))
            );
            let delete = apply(state(from), Input::Delete, T).unwrap();
            assert!(delete.deleted);
            assert_eq!(delete.event, Some(E::Deleted));
        }
        assert_eq!(create().state.status, Draft);
        assert_eq!(create().event, Some(E::Created));
    }

    #[test]
    fn submit_and_resume_check_at_once() {
        assert!(
            apply(state(Status::Draft), Input::Submit, T)
                .unwrap()
                .check_now
        );
        assert!(
            apply(state(Status::Paused), Input::Resume, T)
                .unwrap()
                .check_now
        );
    }

    #[test]
    fn three_failures_degrade_five_fail_one_success_recovers() {
        let fail = Input::Check(CheckOutcome::Failure(FailureClass::HttpStatus));
        let mut s = state(Status::Active);
        let mut statuses = Vec::new();
        for _ in 0..6 {
            s = apply(s, fail, T).unwrap().state;
            statuses.push(s.status);
        }
        use Status::*;
        assert_eq!(
            statuses,
            [Active, Active, Degraded, Degraded, Failed, Failed]
        );
        let t = apply(s, Input::Check(CheckOutcome::Success), T).unwrap();
        assert_eq!(
            (t.state.status, t.event),
            (Active, Some(EventKind::Healthy))
        );
    }

    // --- Model test -------------------------------------------------------------------------
    //
    // A deliberately naive reference model: it keeps the whole history of check results since
    // the last reset and derives the status from counting, instead of the incremental counters
    // of `apply`. The two must agree on every sequence of inputs.

    #[derive(Debug, Clone)]
    struct Model {
        status: Status,
        results: Vec<bool>, // counted check results since the last reset, true = success
    }

    impl Model {
        fn trailing(&self, success: bool) -> u32 {
            self.results
                .iter()
                .rev()
                .take_while(|&&r| r == success)
                .count() as u32
        }

        fn step(&mut self, input: Input, t: Thresholds) -> Result<Option<EventKind>, ()> {
            use Status::*;
            let reset = |m: &mut Model, s| {
                m.status = s;
                m.results.clear();
            };
            match (input, self.status) {
                (Input::Submit, Draft) => {
                    reset(self, PendingVerification);
                    Ok(Some(EventKind::Updated))
                }
                (Input::Pause, PendingVerification | Active | Degraded | Failed) => {
                    reset(self, Paused);
                    Ok(Some(EventKind::Paused))
                }
                (Input::Resume, Paused) => {
                    reset(self, Active);
                    Ok(Some(EventKind::Resumed))
                }
                (Input::Activate, Draft | PendingVerification | Failed) => {
                    reset(self, Active);
                    Ok(Some(EventKind::Activated))
                }
                (Input::Update, _) => Ok(Some(EventKind::Updated)),
                (Input::Delete, _) => Ok(Some(EventKind::Deleted)),
                (Input::Check(_), Draft | Paused) => Ok(None),
                (Input::Check(CheckOutcome::Skipped), _) => Ok(None),
                (Input::Check(CheckOutcome::Failure(c)), _) if !c.counts_towards_unhealthy() => {
                    Ok(None)
                }
                (Input::Check(CheckOutcome::Failure(_)), status) => {
                    self.results.push(false);
                    let n = self.trailing(false);
                    let next = match status {
                        Active if n >= t.failed_after && n >= t.degraded_after.max(1) => Failed,
                        Active if n >= t.degraded_after.max(1) => Degraded,
                        Degraded if n >= t.failed_after => Failed,
                        s => s,
                    };
                    let event = (next != status).then_some(EventKind::Unhealthy);
                    self.status = next;
                    Ok(event)
                }
                (Input::Check(CheckOutcome::Success), status) => {
                    self.results.push(true);
                    let n = self.trailing(true);
                    match status {
                        PendingVerification => {
                            reset(self, Active);
                            Ok(Some(EventKind::Healthy))
                        }
                        Degraded | Failed if n >= t.recover_after.max(1) => {
                            reset(self, Active);
                            Ok(Some(EventKind::Healthy))
                        }
                        _ => Ok(None),
                    }
                }
                _ => Err(()),
            }
        }
    }

    fn any_outcome() -> impl Strategy<Value = CheckOutcome> {
        prop_oneof![
            4 => Just(CheckOutcome::Success),
            6 => proptest::sample::select(FailureClass::ALL.to_vec()).prop_map(CheckOutcome::Failure),
            1 => Just(CheckOutcome::Skipped),
        ]
    }

    fn any_input() -> impl Strategy<Value = Input> {
        prop_oneof![
            1 => Just(Input::Submit),
            1 => Just(Input::Pause),
            1 => Just(Input::Resume),
            1 => Just(Input::Activate),
            1 => Just(Input::Update),
            12 => any_outcome().prop_map(Input::Check),
        ]
    }

    fn any_thresholds() -> impl Strategy<Value = Thresholds> {
        (1u32..6, 1u32..9, 1u32..4).prop_map(|(d, f, r)| Thresholds {
            degraded_after: d,
            failed_after: f,
            recover_after: r,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_reference_model(
            thresholds in any_thresholds(),
            inputs in proptest::collection::vec(any_input(), 0..80),
        ) {
            let mut real = Lifecycle::new();
            let mut model = Model { status: Status::Draft, results: vec![] };
            for input in inputs {
                let expected = model.step(input, thresholds);
                match apply(real, input, thresholds) {
                    Ok(t) => {
                        prop_assert_eq!(Ok(t.event), expected, "{:?} from {}", input, real.status);
                        prop_assert_eq!(t.from, real.status);
                        real = t.state;
                        prop_assert_eq!(real.status, model.status);
                        // Counters always match what the model derives from its history.
                        prop_assert_eq!(real.consecutive_failures, model.trailing(false));
                    }
                    Err(e) => {
                        prop_assert!(expected.is_err(), "{:?} from {} refused: {}", input, real.status, e);
                    }
                }
            }
        }

        /// Invariants that hold whatever happens: a status change always carries an event,
        /// and non-counting failures never change anything.
        #[test]
        fn status_changes_always_emit_events(
            thresholds in any_thresholds(),
            inputs in proptest::collection::vec(any_input(), 0..80),
        ) {
            let mut s = Lifecycle::new();
            for input in inputs {
                if let Ok(t) = apply(s, input, thresholds) {
                    if t.status_changed() {
                        prop_assert!(t.event.is_some());
                    }
                    if let Input::Check(CheckOutcome::Failure(c)) = input {
                        if !c.counts_towards_unhealthy() {
                            prop_assert_eq!(t.state, s);
                        }
                    }
                    if matches!(s.status, Status::Paused) && matches!(input, Input::Check(_)) {
                        prop_assert_eq!(t.state, s);
                    }
                    s = t.state;
                }
            }
        }
    }
}
