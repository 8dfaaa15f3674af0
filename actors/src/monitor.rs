//! One monitor actor per integration. It owns that integration's health state (DESIGN §8):
//! it runs checks on the integration's schedule, feeds each result to the lifecycle state
//! machine and commits what comes out. Nothing else writes the health state while it lives.
//!
//! A check never runs inside a handler: it runs in its own task and reports back with a
//! [`MonitorMsg::CheckDone`] message, so pause, reconfigure and delete are handled at once even
//! while a target hangs. Timers are messages too ([`MonitorMsg::Tick`]), re-armed after each
//! check, so at most one check per integration is ever in flight.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt as _;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::Clock;
use crate::counters::{EngineCounters, FlagSet, Flags};
use crate::flap::{self, FlapOptions};
use crate::lifecycle::{self, CheckOutcome, EventKind, FailureClass, Input, Lifecycle, Transition};
use crate::network_guard::{self, NetworkGuard};
use crate::ports::{CheckReport, Commit, Ledger, MonitorSpec, Probe};
use crate::schedule;
use crate::supervisor::SupervisorMsg;

/// The exit reason of an actor that stopped itself because its integration is gone from
/// the store (deleted, or turned back into a draft). The supervisor does not restart it.
pub(crate) const GONE: &str = "integration gone";

/// What every monitor actor of one engine shares: the ports and the engine's time base.
/// Read-only, so it lives behind one `Arc` instead of being copied into each actor.
pub(crate) struct MonitorContext<T> {
    pub(crate) ledger: Arc<dyn Ledger<T>>,
    pub(crate) probe: Arc<dyn Probe<T>>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The instant schedule times count from (see [`schedule`]). Shared by all actors so
    /// that a restarted actor finds its slots where its predecessor left them.
    pub(crate) epoch: Instant,
    /// The wall-clock time at `epoch`, since the Unix epoch (from the injected clock).
    /// Schedule times are wall-clock times: every engine, in every process, puts an
    /// integration's slots at the same instants (give or take their clocks' skew), so a
    /// monitor that moves to another node keeps its slots and is not checked twice within an
    /// interval.
    pub(crate) wall: Duration,
    pub(crate) failed_backoff_max: Duration,
    /// `monitor.flap_threshold` and `monitor.flap_window`.
    pub(crate) flap: FlapOptions,
    /// The engine-wide network guard (DESIGN §10), if on.
    pub(crate) network_guard: Option<Arc<NetworkGuard>>,
    pub(crate) counters: Arc<EngineCounters>,
    /// `true` once the supervisor has spawned the whole initial fleet.
    pub(crate) fleet_spawned: watch::Receiver<bool>,
    /// Schedule time after which slots are checked even if the initial spawn is not done
    /// (the store may be failing the page loads): the end of the start-up hold.
    pub(crate) hold_until: Duration,
    /// Set when the engine is told to stop: no check starts after that (see
    /// [`Engine::drain`](crate::Engine::drain)).
    pub(crate) draining: Arc<AtomicBool>,
}

/// The longest the start-up hold (see [`MonitorContext::holds`]) lasts.
pub(crate) const START_HOLD_MAX: Duration = Duration::from_secs(60);

impl<T> MonitorContext<T> {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.epoch) + self.wall
    }

    /// Whether a slot due now is skipped rather than checked: while the initial fleet is
    /// being spawned, at most [`START_HOLD_MAX`]. A million actors spawn in tens of seconds
    /// on two cores; the first ones' checks, each spread over its interval, would otherwise
    /// compete with the spawn, and at that scale kept it from ever finishing (807k of 1M
    /// running after 300 s, BENCHMARKS.md F3). A skipped slot is only moved to the next one,
    /// so the fleet stays spread over its interval, as after a restart.
    /// The same holds from [`Engine::drain`](crate::Engine::drain) on: a check started while
    /// the daemon stops would only be cut off.
    fn holds(&self, now: Duration) -> bool {
        (now < self.hold_until && !*self.fleet_spawned.borrow())
            || self.draining.load(Ordering::Relaxed)
    }

    /// The instant of schedule time `due`.
    fn instant(&self, due: Duration) -> Instant {
        self.epoch + due.saturating_sub(self.wall)
    }
}

/// The actor. `self` holds only the shared, read-only context; everything that changes is
/// in [`MonitorState`].
pub(crate) struct Monitor<T> {
    context: Arc<MonitorContext<T>>,
}

impl<T> Monitor<T> {
    pub(crate) fn new(context: Arc<MonitorContext<T>>) -> Self {
        Monitor { context }
    }
}

pub(crate) struct MonitorArgs<T> {
    pub(crate) spec: MonitorSpec<T>,
    /// Check at once instead of waiting for the integration's first slot (submit, resume).
    pub(crate) check_now: bool,
}

/// Payloads are boxed so that the enum stays two words: ractor allocates every message.
pub(crate) enum MonitorMsg<T> {
    /// The timer armed with this generation fired. Older generations were cancelled.
    Tick(u32),
    /// The check started by the last tick (or by `check_now`) finished.
    CheckDone(Box<FinishedCheck>),
    /// The result of a manual connection test, applied as if it were a scheduled check.
    Deliver(Box<CheckReport>),
    /// The stored integration changed: adopt this spec.
    Reconfigure {
        spec: Box<MonitorSpec<T>>,
        check_now: bool,
    },
    /// From the supervisor: the degraded or failed integrations this one depends on,
    /// directly or through others (DESIGN §10), sorted; empty when none.
    Suppress(Box<[Uuid]>),
    /// The maintenance timer armed with this generation fired: a window opens or closes.
    CalendarTick(u32),
    /// From the supervisor: the maintenance windows changed; ask the calendar again.
    Recalendar,
}

pub(crate) struct FinishedCheck {
    /// The slot the check was due at, since the epoch.
    due: Duration,
    started_at: DateTime<Utc>,
    lateness: Duration,
    latency: Duration,
    /// `Err` carries the message of a probe that panicked.
    result: Result<CheckOutcome, String>,
}

pub(crate) struct MonitorState<T> {
    spec: MonitorSpec<T>,
    timer: Timer,
    /// `Some` while a check is in flight, saying what to do once it is done.
    in_flight: Option<AfterCheck>,
    /// Whether `spec.suppressed_by` is what the store holds; a failed write is retried with
    /// the next check.
    suppression_stored: bool,
    /// This actor's share of the engine's flapping, suppressed and maintenance counts.
    flags: Flags,
    /// Fires when the calendar said the integration's maintenance next changes (DESIGN §10).
    calendar: Timer,
}

impl<T> MonitorState<T> {
    fn flag_set(&self) -> FlagSet {
        FlagSet {
            flapping: self.spec.flap.flapping,
            suppressed: !self.spec.suppressed_by.is_empty(),
            maintenance: self.spec.maintenance.is_some(),
        }
    }
}

/// How soon a maintenance change that could not be committed is tried again.
const CALENDAR_RETRY: Duration = Duration::from_secs(5);

/// What to do when the check in flight finishes. Ordered: a later request can only
/// strengthen an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AfterCheck {
    /// Schedule the next check one step after this one was due.
    Continue,
    /// The status or interval changed meanwhile: go back to the integration's phase.
    Rephase,
    /// A `check_now` arrived meanwhile: check again at once.
    CheckNow,
}

/// The one timer of an actor. Each arming bumps the generation, so a tick that was already
/// in the mailbox when the timer was cancelled is recognised and ignored.
#[derive(Default)]
struct Timer {
    handle: Option<JoinHandle<()>>,
    generation: u32,
    /// The slot the armed timer fires at, since the epoch.
    due: Duration,
}

impl Timer {
    fn cancel(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
        self.generation = self.generation.wrapping_add(1);
    }
}

impl Drop for Timer {
    /// A stopped or crashed actor must not leave a sleeping task behind for up to an interval.
    fn drop(&mut self) {
        self.cancel();
    }
}

/// What applying a check result did to the actor.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// The state moved as the state machine said (or stayed, on a storage error).
    Kept,
    /// A concurrent change won: the stored spec was adopted instead.
    Adopted,
    /// The integration is gone; the actor is stopping.
    Stopped,
}

#[ractor::async_trait]
impl<T: Send + Sync + 'static> Actor for Monitor<T> {
    type Msg = MonitorMsg<T>;
    type State = MonitorState<T>;
    type Arguments = MonitorArgs<T>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: MonitorArgs<T>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let flags = Flags::new(
            self.context.counters.clone(),
            args.spec.integration_id,
            args.spec.tenant_id.clone(),
        );
        let mut state = MonitorState {
            spec: args.spec,
            timer: Timer::default(),
            in_flight: None,
            suppression_stored: true,
            flags,
            calendar: Timer::default(),
        };
        let flag_set = state.flag_set();
        state.flags.set(flag_set);
        // The calendar is in memory: ask it now, and only message ourselves (to commit) in
        // the rare case that the stored maintenance is not what it says.
        let view = self
            .context
            .ledger
            .maintenance(&state.spec, self.context.clock.now());
        if view.current != state.spec.maintenance {
            let _ = myself.cast(MonitorMsg::Recalendar);
        } else {
            self.arm_calendar(&myself, &mut state, view.next_change);
        }
        // Arming only spawns a timer (or a check) task that messages this actor later, so it
        // is safe before the actor runs and keeps `post_start` free.
        if args.check_now {
            self.replan(&myself, &mut state, true);
        } else if state.spec.lifecycle.status.is_monitored() {
            // Not the slot of the last stored check again: a monitor that moved here from
            // another node (or an earlier run) keeps its rhythm. The last check started a
            // little after its slot, so half an interval after it is past that slot and
            // before the next one, which is not skipped.
            let now = self.context.now();
            let not_before = state
                .spec
                .last_check
                .and_then(|at| u64::try_from(at.timestamp_micros()).ok())
                .map(|micros| Duration::from_micros(micros) + state.spec.interval / 2)
                .unwrap_or_default();
            let due = self.phase_slot(
                &state.spec,
                now.max(not_before).min(now + state.spec.interval),
            );
            self.arm(&myself, &mut state, due);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let handled = self.handle_message(myself, message, state).await;
        let flag_set = state.flag_set();
        state.flags.set(flag_set);
        handled
    }
}

impl<T: Send + Sync + 'static> Monitor<T> {
    async fn handle_message(
        &self,
        myself: ActorRef<MonitorMsg<T>>,
        message: MonitorMsg<T>,
        state: &mut MonitorState<T>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MonitorMsg::Tick(generation) => {
                if generation == state.timer.generation && state.in_flight.is_none() {
                    state.timer.handle = None;
                    let due = state.timer.due;
                    let now = self.context.now();
                    if self.context.holds(now) {
                        let next = self.next_slot(&state.spec, due, now);
                        self.arm(&myself, state, next);
                    } else {
                        self.start_check(&myself, state, due);
                    }
                }
            }
            MonitorMsg::CheckDone(finished) => self.check_done(&myself, state, *finished).await?,
            MonitorMsg::Deliver(report) => {
                let before = state.spec.lifecycle.status;
                let applied = self.apply(&myself, state, *report).await;
                if applied != Applied::Stopped && state.spec.lifecycle.status != before {
                    // E.g. a manual test recovered a failed integration: leave its backoff.
                    self.replan(&myself, state, false);
                }
            }
            MonitorMsg::Suppress(suppressed_by) => {
                if *suppressed_by == *state.spec.suppressed_by {
                    return Ok(());
                }
                // When the dependencies recover, counting starts fresh (DESIGN §10): the
                // failures counted before the suppression began are not this one's either.
                if suppressed_by.is_empty() {
                    state.spec.lifecycle.consecutive_failures = 0;
                    state.spec.lifecycle.consecutive_successes = 0;
                }
                tracing::info!(
                    integration_id = %state.spec.integration_id,
                    suppressed_by = suppressed_by.len(),
                    "dependency suppression changed"
                );
                state.spec.suppressed_by = Arc::from(suppressed_by);
                state.suppression_stored = false;
                self.store_suppression(&myself, state).await;
            }
            MonitorMsg::CalendarTick(generation) => {
                if generation == state.calendar.generation {
                    state.calendar.handle = None;
                    self.recalendar(&myself, state).await;
                }
            }
            MonitorMsg::Recalendar => {
                self.recalendar(&myself, state).await;
            }
            MonitorMsg::Reconfigure { spec, check_now } => {
                if spec.version < state.spec.version {
                    // Loaded before this actor's own latest commit: it holds the newer row.
                    if check_now {
                        self.replan(&myself, state, true);
                    }
                    return Ok(());
                }
                let before = (state.spec.lifecycle.status, state.spec.interval);
                adopt(&mut state.spec, *spec, check_now);
                let after = (state.spec.lifecycle.status, state.spec.interval);
                let idle = state.timer.handle.is_none() && state.in_flight.is_none();
                if check_now || before != after || idle {
                    self.replan(&myself, state, check_now);
                }
                // Its tags or environment may have changed, and with them its windows.
                if self.recalendar(&myself, state).await == Applied::Stopped {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Decides the next check from scratch: none while not monitored (paused: no request at
    /// all), at once on `check_now`, otherwise at the integration's next phase slot.
    fn replan(
        &self,
        myself: &ActorRef<MonitorMsg<T>>,
        state: &mut MonitorState<T>,
        check_now: bool,
    ) {
        state.timer.cancel();
        if !state.spec.lifecycle.status.is_monitored() {
            return;
        }
        if let Some(after) = &mut state.in_flight {
            let wanted = if check_now {
                AfterCheck::CheckNow
            } else {
                AfterCheck::Rephase
            };
            *after = (*after).max(wanted);
            return;
        }
        let now = self.context.now();
        if check_now {
            self.start_check(myself, state, now);
        } else {
            let due = self.phase_slot(&state.spec, now);
            self.arm(myself, state, due);
        }
    }

    /// The slot after the one due at `due`: one step later (the failed state's backoff
    /// included), whole slots skipped if that has passed too.
    fn next_slot(&self, spec: &MonitorSpec<T>, due: Duration, now: Duration) -> Duration {
        let step = schedule::step(
            spec.interval,
            spec.lifecycle,
            spec.thresholds,
            self.context.failed_backoff_max,
        );
        schedule::next_due(due, step, spec.interval, now)
    }

    fn phase_slot(&self, spec: &MonitorSpec<T>, now: Duration) -> Duration {
        let offset = schedule::phase_offset(spec.integration_id, spec.interval);
        schedule::first_due(now, spec.interval, offset)
    }

    fn arm(&self, myself: &ActorRef<MonitorMsg<T>>, state: &mut MonitorState<T>, due: Duration) {
        state.timer.cancel();
        let generation = state.timer.generation;
        let at = self.context.instant(due);
        let myself = myself.clone();
        state.timer.due = due;
        state.timer.handle = Some(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            // The actor may be gone by now; then there is nobody left to tell.
            let _ = myself.cast(MonitorMsg::Tick(generation));
        }));
    }

    /// Arms the maintenance timer for `at` (none for `None`).
    fn arm_calendar(
        &self,
        myself: &ActorRef<MonitorMsg<T>>,
        state: &mut MonitorState<T>,
        at: Option<DateTime<Utc>>,
    ) {
        state.calendar.cancel();
        let Some(at) = at else {
            return;
        };
        let generation = state.calendar.generation;
        let due = Duration::from_micros(u64::try_from(at.timestamp_micros()).unwrap_or_default());
        let at = self.context.instant(due);
        let myself = myself.clone();
        state.calendar.handle = Some(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = myself.cast(MonitorMsg::CalendarTick(generation));
        }));
    }

    /// Asks the calendar which window the integration is in now and commits a change with
    /// its audit entry and event (DESIGN §10): `maintenance_started` on entering,
    /// `maintenance_ended` on leaving, none when one window hands over to the next. Either
    /// way the counters start fresh: failures from before a window do not count after it.
    /// Then arms the timer for the calendar's next change.
    async fn recalendar(
        &self,
        myself: &ActorRef<MonitorMsg<T>>,
        state: &mut MonitorState<T>,
    ) -> Applied {
        let view = self
            .context
            .ledger
            .maintenance(&state.spec, self.context.clock.now());
        if view.current == state.spec.maintenance {
            self.arm_calendar(myself, state, view.next_change);
            return Applied::Kept;
        }
        let event = match (state.spec.maintenance, view.current) {
            (None, Some(_)) => Some(EventKind::MaintenanceStarted),
            (Some(_), None) => Some(EventKind::MaintenanceEnded),
            _ => None,
        };
        let id = state.spec.integration_id;
        let lifecycle = Lifecycle::reset(state.spec.lifecycle.status);
        let committed = self
            .context
            .ledger
            .commit_maintenance(&state.spec, lifecycle, view.current, event)
            .await;
        let retry = || Some(self.context.clock.now() + CALENDAR_RETRY);
        match committed {
            Ok(Commit::Committed(committed)) => {
                tracing::info!(
                    integration_id = %id,
                    window_id = ?view.current.map(|m| m.window_id),
                    event = event.map(|e| e.as_str()),
                    "maintenance changed"
                );
                keep_own(&mut state.spec, committed);
                report_version(myself, &state.spec);
                self.arm_calendar(myself, state, view.next_change);
                Applied::Kept
            }
            Ok(Commit::Stale(Some(stored))) => {
                adopt(&mut state.spec, stored, false);
                report_version(myself, &state.spec);
                self.arm_calendar(myself, state, retry());
                Applied::Adopted
            }
            Ok(Commit::Stale(None)) => stop_gone(myself, state),
            Err(error) => {
                tracing::warn!(integration_id = %id, %error, "could not commit a maintenance change; retrying");
                self.arm_calendar(myself, state, retry());
                Applied::Kept
            }
        }
    }

    fn start_check(
        &self,
        myself: &ActorRef<MonitorMsg<T>>,
        state: &mut MonitorState<T>,
        due: Duration,
    ) {
        state.in_flight = Some(AfterCheck::Continue);
        let context = self.context.clone();
        let target = state.spec.target.clone();
        let timeout = state.spec.timeout;
        let myself = myself.clone();
        let started = Instant::now();
        let started_at = context.clock.now();
        let lateness = started.saturating_duration_since(context.instant(due));
        tokio::spawn(async move {
            let result = {
                let _in_flight = context.counters.check_started();
                run_check(context.probe.clone(), target, timeout).await
            };
            let finished = FinishedCheck {
                due,
                started_at,
                lateness,
                latency: started.elapsed(),
                result,
            };
            let _ = myself.cast(MonitorMsg::CheckDone(Box::new(finished)));
        });
    }

    async fn check_done(
        &self,
        myself: &ActorRef<MonitorMsg<T>>,
        state: &mut MonitorState<T>,
        finished: FinishedCheck,
    ) -> Result<(), ActorProcessingErr> {
        let mut after = state.in_flight.take().unwrap_or(AfterCheck::Continue);
        // A panicking probe is a bug in a connector, not a property of the target: it is a
        // failed check of class `internal`, counted like any failure (an integration whose
        // checks cannot run is not healthy), and the actor keeps its schedule. Restarting the
        // actor would change nothing about the connector and only lose its place.
        let outcome = finished.result.unwrap_or_else(|panic| {
            tracing::error!(
                integration_id = %state.spec.integration_id,
                %panic,
                "the connector panicked; recorded as a failed check of class internal"
            );
            CheckOutcome::Failure(FailureClass::Internal)
        });
        let report = CheckReport {
            outcome,
            started_at: finished.started_at,
            latency: finished.latency,
            lateness: finished.lateness,
        };
        match self.apply(myself, state, report).await {
            Applied::Stopped => return Ok(()),
            Applied::Adopted => after = after.max(AfterCheck::Rephase),
            Applied::Kept => {}
        }
        if !state.spec.lifecycle.status.is_monitored() {
            state.timer.cancel();
            return Ok(());
        }
        let now = self.context.now();
        match after {
            AfterCheck::CheckNow => self.start_check(myself, state, now),
            AfterCheck::Rephase => {
                let due = self.phase_slot(&state.spec, now);
                self.arm(myself, state, due);
            }
            AfterCheck::Continue => {
                let due = self.next_slot(&state.spec, finished.due, now);
                self.arm(myself, state, due);
            }
        }
        Ok(())
    }

    /// Writes `spec.suppressed_by` to the store. A failure leaves `suppression_stored`
    /// false, and the next check tries again; a gone integration (or a lost shard) stops the
    /// actor, as a transition's commit would.
    async fn store_suppression(
        &self,
        myself: &ActorRef<MonitorMsg<T>>,
        state: &mut MonitorState<T>,
    ) -> Applied {
        let spec = &state.spec;
        match self
            .context
            .ledger
            .suppress(spec, &spec.suppressed_by)
            .await
        {
            Ok(Commit::Committed(_)) | Ok(Commit::Stale(Some(_))) => {
                state.suppression_stored = true;
                Applied::Kept
            }
            Ok(Commit::Stale(None)) => stop_gone(myself, state),
            Err(error) => {
                tracing::warn!(
                    integration_id = %spec.integration_id,
                    %error,
                    "could not store the dependency suppression; retrying at the next check"
                );
                Applied::Kept
            }
        }
    }

    /// Feeds one result to the state machine and the flap detector and persists what comes
    /// out: a commit with audit entry (and the event flap detection lets through) when the
    /// status or the flapping flag changes, a non-blocking record otherwise.
    async fn apply(
        &self,
        myself: &ActorRef<MonitorMsg<T>>,
        state: &mut MonitorState<T>,
        report: CheckReport,
    ) -> Applied {
        if !state.suppression_stored
            && self.store_suppression(myself, state).await == Applied::Stopped
        {
            return Applied::Stopped;
        }
        // The network guard sees the check as it came (before any relabelling below), if it
        // went over the network.
        let network_held = self.context.network_guard.as_ref().is_some_and(|guard| {
            self.context.probe.reaches_network(&state.spec.target)
                && guard.observe(report.outcome, self.context.clock.now())
        });
        // A window that has closed but whose timer has not fired yet is left first, so this
        // check counts afresh after it.
        if state
            .spec
            .maintenance
            .is_some_and(|m| m.ends_at <= self.context.clock.now())
            && self.recalendar(myself, state).await == Applied::Stopped
        {
            return Applied::Stopped;
        }
        let spec = &state.spec;
        let id = spec.integration_id;
        // In a maintenance window the check is stored, marked (the ledger sees
        // `spec.maintenance`), and counts towards nothing: no transition, the status from
        // before the window holds, the flap detector sees nothing (DESIGN §10).
        if spec.maintenance.is_some() {
            self.context.ledger.record(spec, spec.lifecycle, &report);
            return Applied::Kept;
        }
        // While a dependency is degraded or failed, a failure is the dependency's: class
        // `dependency`, which counts towards nothing (DESIGN §10).
        let report = match report.outcome {
            CheckOutcome::Failure(_) if !spec.suppressed_by.is_empty() => CheckReport {
                outcome: CheckOutcome::Failure(FailureClass::Dependency),
                ..report
            },
            _ => report,
        };
        let transition = match lifecycle::apply(
            spec.lifecycle,
            Input::Check(report.outcome),
            spec.thresholds,
        ) {
            Ok(transition) => transition,
            Err(refused) => {
                // Checks are valid input in every status; keep going if that ever changes.
                tracing::error!(integration_id = %id, %refused, "check result refused");
                return Applied::Kept;
            }
        };
        // While the network is impaired (within the hold), a move to degraded/failed is
        // counted but not made (DESIGN §10; see `network_guard`).
        let transition = if network_held {
            network_guard::hold(transition)
        } else {
            transition
        };
        let flap = flap::observe(
            &spec.flap,
            self.context.clock.now(),
            transition.status_changed(),
            self.context.flap,
        );
        let transition = Transition {
            event: flap.published(transition.event),
            ..transition
        };
        if !transition.status_changed() && flap.change.is_none() {
            self.context.ledger.record(spec, transition.state, &report);
            state.spec.lifecycle = transition.state;
            // Only forgetting transitions that left the window: nothing to store yet.
            state.spec.flap = flap.state;
            return Applied::Kept;
        }
        let committed = self
            .context
            .ledger
            .commit_transition(spec, &transition, &flap.state, &report)
            .await;
        match committed {
            Ok(Commit::Committed(committed)) => {
                tracing::info!(
                    integration_id = %id,
                    from = %transition.from,
                    to = %committed.lifecycle.status,
                    event = transition.event.map(|e| e.as_str()),
                    flapping = flap.state.flapping,
                    "lifecycle transition committed"
                );
                keep_own(&mut state.spec, committed);
                report_version(myself, &state.spec);
                Applied::Kept
            }
            Ok(Commit::Stale(Some(stored))) => {
                tracing::info!(
                    integration_id = %id,
                    stored_version = stored.version,
                    "integration changed concurrently; adopting the stored state"
                );
                adopt(&mut state.spec, stored, false);
                report_version(myself, &state.spec);
                Applied::Adopted
            }
            Ok(Commit::Stale(None)) => stop_gone(myself, state),
            Err(error) => {
                // Keep the in-memory state as it was: the next check's result is applied to
                // it again, so the transition is retried then, neither lost nor doubled.
                tracing::warn!(
                    integration_id = %id,
                    %error,
                    "could not commit a lifecycle transition; retrying at the next check"
                );
                Applied::Kept
            }
        }
    }
}

/// Runs one check under its timeout.
///
/// A panic in the probe surfaces here as `Err` instead of silently killing the task that
/// must report back, and a probe that hangs is dropped (cancelled) when its timeout expires.
/// Both happen in the check's own task: a second task per check, as this once was, cost a
/// spawn, a schedule and a join wake-up more, 16.7k a second at a million integrations.
async fn run_check<T: Send + Sync + 'static>(
    probe: Arc<dyn Probe<T>>,
    target: Arc<T>,
    timeout: Duration,
) -> Result<CheckOutcome, String> {
    // Unwind safety: the probe is shared with every other check of this engine, as it was
    // when each check ran in a task whose panic tokio caught; nothing here outlives the panic.
    let check = AssertUnwindSafe(probe.check(&target, timeout)).catch_unwind();
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(panic)) => Err(panic_message(panic)),
        Err(_elapsed) => Ok(CheckOutcome::Failure(FailureClass::Timeout)),
    }
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "(non-string panic payload)".to_owned(),
        },
    }
}

/// Adopts a spec read from the store.
///
/// The stored consecutive-result counters may lag behind the actor's own: the actor is their
/// only writer and `Ledger::record` is batched. So unless the status changed (pause, resume,
/// activate and transitions reset the counters) or the caller asks for a fresh start
/// (`check_now`: submit, resume), the actor keeps the counters it has.
///
/// The flap detector's state and the suppression are the actor's own (the store holds what
/// the actor last wrote, and the supervisor tells it when the suppression changes), so they
/// are kept too.
fn adopt<T>(current: &mut MonitorSpec<T>, stored: MonitorSpec<T>, check_now: bool) {
    let keep_counters = !check_now && stored.lifecycle.status == current.lifecycle.status;
    let lifecycle = if keep_counters {
        current.lifecycle
    } else {
        stored.lifecycle
    };
    let flap = std::mem::take(&mut current.flap);
    let suppressed_by = current.suppressed_by.clone();
    *current = MonitorSpec {
        lifecycle,
        flap,
        suppressed_by,
        ..stored
    };
}

/// The integration is gone from the store (deleted, turned back into a draft) or this node
/// lost it: both timers stop and the actor stops, not to be restarted.
fn stop_gone<T>(myself: &ActorRef<MonitorMsg<T>>, state: &mut MonitorState<T>) -> Applied {
    tracing::info!(integration_id = %state.spec.integration_id, "integration gone; stopping its monitor");
    state.timer.cancel();
    state.calendar.cancel();
    myself.stop(Some(GONE.to_owned()));
    Applied::Stopped
}

/// Takes the spec a commit returned, keeping the suppression: the actor owns it, and the row
/// may not hold it yet.
fn keep_own<T>(current: &mut MonitorSpec<T>, committed: MonitorSpec<T>) {
    let suppressed_by = current.suppressed_by.clone();
    *current = committed;
    current.suppressed_by = suppressed_by;
}

/// Tells the supervisor which version of the row this actor now holds, so that its
/// reconciliation pass does not mistake the actor's own commits for drift, and its status,
/// which the supervisor passes on to the integrations that depend on it (DESIGN §10).
fn report_version<T>(myself: &ActorRef<MonitorMsg<T>>, spec: &MonitorSpec<T>) {
    if let Some(supervisor) = myself.try_get_supervisor() {
        let _ = supervisor.send_message(SupervisorMsg::VersionSeen {
            id: spec.integration_id,
            version: spec.version,
            status: spec.lifecycle.status,
        });
    }
}
