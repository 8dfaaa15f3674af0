//! The network guard (DESIGN §10): when most of this engine's checks fail at once with a
//! network class, the fault is most likely catalogd's own network, so transitions to
//! degraded/failed are held for a bounded time.
//!
//! Every check outcome of the engine is fed to one shared [`NetworkGuard`] (class and time;
//! the time comes from the injected clock). Within `window` (whole seconds; at least
//! [`MIN_CHECKS`] checks), when at least `ratio` of all checks failed with `dns`, `connect`
//! or `timeout`, the network is *impaired*: [`NetworkGuard::observe`] then answers "hold"
//! until `hold` after the impairment began, never longer, however long it lasts (a real mass
//! outage is not hidden for long). When the ratio falls below half of `ratio` (or the window
//! is empty), the network is *restored*: hysteresis, as flap detection's "stable at half the
//! threshold", so a fleet failing right at the ratio does not cross it back and forth with
//! every check. [`MIN_CHECKS`] is needed to begin an impairment, not to go on with one:
//! checks that time out complete slowly, so an outage thins the window. Each change is reported
//! once, in order, through the [`NetworkGuardReporter`] port (the daemon publishes an event).
//!
//! **What "held" means.** The monitor keeps counting: a check whose lifecycle transition would
//! move the integration to degraded or failed is recorded with its counters (consecutive
//! failures go on growing) but without the status change, its event or its audit entry
//! ([`hold`]). Once the hold has expired or the network is restored, the next failing check
//! transitions as usual, from the counters it has then (an active integration past
//! `failed_after` goes straight to failed). Transitions to active are never held.
//!
//! **Cost.** A million monitors share one guard at ~17k checks/s: the window is a ring of
//! per-second buckets with running sums, behind one short `Mutex` (O(1) per check, amortised;
//! never a list of checks). [`Detector`] is the pure state machine, with no lock, clock or I/O.
//!
//! Each engine (each node of a cluster) judges its own network from its own checks.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::lifecycle::{CheckOutcome, FailureClass, Status, Transition};

/// The fewest checks in the window that can make the network impaired: below it, a handful
/// of failing integrations is not evidence about the network.
pub const MIN_CHECKS: u64 = 20;

/// `monitor.network_guard_window`, `_ratio` and `_hold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkGuardOptions {
    /// Counted in whole seconds (rounded up; at least one).
    pub window: Duration,
    /// In `(0, 1]`.
    pub ratio: f64,
    pub hold: Duration,
}

impl Default for NetworkGuardOptions {
    fn default() -> Self {
        NetworkGuardOptions {
            window: Duration::from_secs(60),
            ratio: 0.5,
            hold: Duration::from_secs(300),
        }
    }
}

/// Whether a failure of this class says something about the network between catalogd and
/// its targets.
pub fn is_network_failure(class: FailureClass) -> bool {
    matches!(
        class,
        FailureClass::Dns | FailureClass::Connect | FailureClass::Timeout
    )
}

/// A change of the network's state, reported once each way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkChange {
    /// `true`: impaired (it began at `at`); `false`: restored.
    pub impaired: bool,
    /// When the change was observed.
    pub at: DateTime<Utc>,
    /// When the impairment began (for a restoration: the one that ended).
    pub since: DateTime<Utc>,
    /// Until when transitions are (were) held: `since + hold`.
    pub held_until: DateTime<Utc>,
    /// Checks in the window at the change, and how many of them failed with a network class.
    pub checks: u64,
    pub network_failures: u64,
    /// `network_failures / checks` (0 for an empty window).
    pub ratio: f64,
}

/// What the engine's owner is told of each change. Called under the guard's lock, in the
/// order of the changes: it must not block (hand the change to a task).
pub trait NetworkGuardReporter: Send + Sync + 'static {
    fn changed(&self, change: &NetworkChange);
}

/// The answer for one check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Transitions to degraded/failed are held now.
    pub holding: bool,
    pub change: Option<NetworkChange>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    checks: u32,
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Impairment {
    since: DateTime<Utc>,
    held_until: DateTime<Utc>,
}

/// The guard's pure state machine: the window's buckets and whether the network is impaired.
/// Times only move forward: an earlier time than one already seen (checks of several actors
/// race to the lock) counts as the latest one seen.
#[derive(Debug, Clone)]
pub struct Detector {
    options: NetworkGuardOptions,
    hold: TimeDelta,
    /// One per second of the window; second `s` lives at `s mod len`.
    buckets: Box<[Bucket]>,
    /// The latest time seen and its second (the newest bucket).
    latest: Option<DateTime<Utc>>,
    head: i64,
    /// Sums over the buckets of the window.
    checks: u64,
    failures: u64,
    impaired: Option<Impairment>,
}

impl Detector {
    pub fn new(options: NetworkGuardOptions) -> Self {
        let seconds = options.window.as_secs() + u64::from(options.window.subsec_nanos() > 0);
        let seconds = seconds.clamp(1, 24 * 3600) as usize;
        Detector {
            options,
            hold: TimeDelta::from_std(options.hold).unwrap_or(TimeDelta::MAX),
            buckets: vec![Bucket::default(); seconds].into_boxed_slice(),
            latest: None,
            head: i64::MIN,
            checks: 0,
            failures: 0,
            impaired: None,
        }
    }

    /// Counts one check outcome at `now` (skipped checks count as nothing) and says whether
    /// transitions are held and whether the network's state changed.
    pub fn observe(&mut self, outcome: CheckOutcome, now: DateTime<Utc>) -> Step {
        let now = self.advance(now);
        let network = match outcome {
            CheckOutcome::Skipped => None,
            CheckOutcome::Success => Some(false),
            CheckOutcome::Failure(class) => Some(is_network_failure(class)),
        };
        if let Some(network) = network {
            let len = self.buckets.len() as i64;
            let bucket = &mut self.buckets[self.head.rem_euclid(len) as usize];
            bucket.checks = bucket.checks.saturating_add(1);
            self.checks += 1;
            if network {
                bucket.failures = bucket.failures.saturating_add(1);
                self.failures += 1;
            }
        }
        self.evaluate(now)
    }

    /// Moves the window to `now` without a check (buckets that left it are forgotten), so the
    /// state follows the clock even when no checks arrive.
    pub fn refresh(&mut self, now: DateTime<Utc>) -> Step {
        let now = self.advance(now);
        self.evaluate(now)
    }

    /// Whether the network is impaired now (as of the latest time seen).
    pub fn impaired(&self) -> bool {
        self.impaired.is_some()
    }

    /// `(checks, network failures)` in the window as of the latest time seen.
    pub fn counts(&self) -> (u64, u64) {
        (self.checks, self.failures)
    }

    /// The time the detector works with: `now`, or the latest time seen if that is later.
    /// Rotates the buckets up to its second.
    fn advance(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = match self.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        self.latest = Some(now);
        let second = now.timestamp();
        if second <= self.head {
            return now;
        }
        let len = self.buckets.len() as i64;
        if self.head == i64::MIN || second - self.head >= len {
            self.buckets.fill(Bucket::default());
            self.checks = 0;
            self.failures = 0;
        } else {
            for gone in self.head + 1..=second {
                let bucket = &mut self.buckets[gone.rem_euclid(len) as usize];
                self.checks -= u64::from(bucket.checks);
                self.failures -= u64::from(bucket.failures);
                *bucket = Bucket::default();
            }
        }
        self.head = second;
        now
    }

    fn evaluate(&mut self, now: DateTime<Utc>) -> Step {
        let ratio = if self.checks == 0 {
            0.0
        } else {
            self.failures as f64 / self.checks as f64
        };
        // Hysteresis, as flap detection has: an impairment begins at the ratio with at least
        // `MIN_CHECKS` checks, and ends only once the ratio has fallen below half of it (or
        // the window is empty). A fleet failing right at the ratio (half of it down, at the
        // default 0.5) would otherwise cross it back and forth with every check; and checks
        // that time out complete slowly, so an outage thins the window.
        let failures = self.failures as f64;
        let checks = self.checks as f64;
        let over = if self.impaired.is_some() {
            self.checks > 0 && failures >= self.options.ratio / 2.0 * checks
        } else {
            self.checks >= MIN_CHECKS && failures >= self.options.ratio * checks
        };
        let change = |impaired: bool, episode: Impairment| NetworkChange {
            impaired,
            at: now,
            since: episode.since,
            held_until: episode.held_until,
            checks: self.checks,
            network_failures: self.failures,
            ratio,
        };
        let change = match (self.impaired, over) {
            (None, true) => {
                let episode = Impairment {
                    since: now,
                    held_until: now
                        .checked_add_signed(self.hold)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                };
                self.impaired = Some(episode);
                Some(change(true, episode))
            }
            (Some(episode), false) => {
                self.impaired = None;
                Some(change(false, episode))
            }
            _ => None,
        };
        Step {
            holding: self
                .impaired
                .is_some_and(|episode| now < episode.held_until),
            change,
        }
    }
}

/// The guard every monitor of one engine shares: the [`Detector`] behind a short lock, the
/// reporter, and the flag `/metrics` reads without the lock.
pub struct NetworkGuard {
    detector: Mutex<Detector>,
    reporter: Arc<dyn NetworkGuardReporter>,
    impaired: AtomicBool,
}

impl fmt::Debug for NetworkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkGuard")
            .field("impaired", &self.impaired())
            .finish_non_exhaustive()
    }
}

impl NetworkGuard {
    pub fn new(options: NetworkGuardOptions, reporter: Arc<dyn NetworkGuardReporter>) -> Self {
        NetworkGuard {
            detector: Mutex::new(Detector::new(options)),
            reporter,
            impaired: AtomicBool::new(false),
        }
    }

    /// Counts one check outcome; `true` while transitions to degraded/failed are held.
    pub fn observe(&self, outcome: CheckOutcome, now: DateTime<Utc>) -> bool {
        self.step(|detector| detector.observe(outcome, now))
    }

    /// Moves the window to `now` (call it every second or so: a guard no check reaches any
    /// more still notices that the window emptied).
    pub fn refresh(&self, now: DateTime<Utc>) {
        self.step(|detector| detector.refresh(now));
    }

    /// Whether the network is impaired (the `catalogd_network_impaired` gauge).
    pub fn impaired(&self) -> bool {
        self.impaired.load(Ordering::Relaxed)
    }

    fn step(&self, step: impl FnOnce(&mut Detector) -> Step) -> bool {
        let mut detector = self
            .detector
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let step = step(&mut detector);
        if let Some(change) = &step.change {
            self.impaired.store(change.impaired, Ordering::Relaxed);
            // Under the lock, so the reporter sees the changes in their order.
            self.reporter.changed(change);
        }
        step.holding
    }
}

/// A transition as the guard lets it through while it holds: one that would move to degraded
/// or failed keeps the status it came from (with the counters the check produced), without an
/// event; every other transition is unchanged.
pub fn hold(transition: Transition) -> Transition {
    let to = transition.state.status;
    if !transition.status_changed() || !matches!(to, Status::Degraded | Status::Failed) {
        return transition;
    }
    Transition {
        state: crate::lifecycle::Lifecycle {
            status: transition.from,
            ..transition.state
        },
        event: None,
        ..transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{self, Input, Lifecycle, Thresholds};
    use proptest::prelude::*;

    const CONNECT: CheckOutcome = CheckOutcome::Failure(FailureClass::Connect);
    const HTTP: CheckOutcome = CheckOutcome::Failure(FailureClass::HttpStatus);
    const OK: CheckOutcome = CheckOutcome::Success;

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + millis).unwrap()
    }

    fn options(window: u64, ratio: f64, hold: u64) -> NetworkGuardOptions {
        NetworkGuardOptions {
            window: Duration::from_secs(window),
            ratio,
            hold: Duration::from_secs(hold),
        }
    }

    #[test]
    fn a_mass_network_failure_impairs_holds_for_the_hold_then_lets_go_and_restores() {
        let mut detector = Detector::new(options(10, 0.5, 30));
        // 19 network failures are not enough evidence; the 20th check is.
        for i in 0..19 {
            assert_eq!(detector.observe(CONNECT, at(i * 10)).change, None);
        }
        let step = detector.observe(CONNECT, at(190));
        let change = step.change.expect("impaired");
        assert!(step.holding && change.impaired);
        assert_eq!((change.checks, change.network_failures), (20, 20));
        assert_eq!(change.since, at(190));
        assert_eq!(change.held_until, at(30_190));
        // Still impaired 29 s later: held. At 30 s: impaired, no longer held.
        for second in 1..30 {
            for _ in 0..3 {
                let step = detector.observe(CONNECT, at(190 + second * 1000));
                assert!(step.holding && step.change.is_none(), "{second}");
            }
        }
        let step = detector.observe(CONNECT, at(30_190));
        assert!(!step.holding && step.change.is_none() && detector.impaired());
        // The network comes back: successes push the ratio under one half.
        let mut restored = None;
        for i in 0..100 {
            if let Some(change) = detector.observe(OK, at(31_000 + i)).change {
                restored = Some(change);
                break;
            }
        }
        let restored = restored.expect("restored");
        assert!(!restored.impaired && restored.ratio < 0.25);
        assert_eq!(restored.since, at(190));
        assert!(!detector.impaired());
    }

    #[test]
    fn other_failure_classes_and_skips_are_not_network_failures() {
        let mut detector = Detector::new(options(60, 0.5, 300));
        for i in 0..100 {
            let outcome = [HTTP, CheckOutcome::Skipped][i as usize % 2];
            assert_eq!(detector.observe(outcome, at(i)).change, None);
        }
        assert_eq!(detector.counts(), (50, 0));
        for class in FailureClass::ALL {
            let expected = matches!(
                class,
                FailureClass::Dns | FailureClass::Connect | FailureClass::Timeout
            );
            assert_eq!(is_network_failure(class), expected, "{class}");
        }
    }

    #[test]
    fn checks_leave_the_window_by_whole_seconds_and_an_idle_guard_restores_on_refresh() {
        let mut detector = Detector::new(options(5, 0.5, 300));
        for i in 0..20 {
            detector.observe(CONNECT, at(i));
        }
        assert!(detector.impaired());
        // Second 0 is in the window until second 5 begins.
        assert!(detector.refresh(at(4_999)).change.is_none());
        assert_eq!(detector.counts(), (20, 20));
        let step = detector.refresh(at(5_000));
        assert_eq!(step.change.map(|c| c.impaired), Some(false));
        assert_eq!(detector.counts(), (0, 0));
    }

    #[test]
    fn a_ratio_hovering_at_the_threshold_is_one_impairment_until_it_halves() {
        let mut detector = Detector::new(options(60, 0.5, 300));
        let mut changes = Vec::new();
        // Half the fleet down: failures and successes alternate, the ratio at 0.5 ± one check.
        for i in 0..200 {
            let outcome = if i % 2 == 0 { OK } else { CONNECT };
            changes.extend(detector.observe(outcome, at(i)).change);
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].impaired);
        // Back up: restored only once fewer than a quarter of the checks failed.
        for i in 0..400 {
            if let Some(change) = detector.observe(OK, at(200 + i)).change {
                assert!(!change.impaired && change.ratio < 0.25, "{change:?}");
                assert_eq!(change.checks, 200 + i as u64 + 1);
                return;
            }
        }
        panic!("never restored");
    }

    #[test]
    fn the_ratio_is_of_all_checks_in_the_window() {
        let mut detector = Detector::new(options(60, 0.4, 300));
        for i in 0..30 {
            detector.observe(OK, at(i));
        }
        // 19 of 49 < 0.4; 20 of 50 = 0.4.
        for i in 0..19 {
            assert!(detector.observe(CONNECT, at(100 + i)).change.is_none());
        }
        let change = detector.observe(CONNECT, at(200)).change.unwrap();
        assert!(change.impaired);
        assert_eq!((change.checks, change.network_failures), (50, 20));
        assert!((change.ratio - 0.4).abs() < 1e-9);
    }

    #[test]
    fn holding_keeps_the_counters_and_the_status_and_lets_recovery_through() {
        let thresholds = Thresholds::default();
        let check = |state: Lifecycle, outcome| {
            lifecycle::apply(state, Input::Check(outcome), thresholds).unwrap()
        };
        let mut state = Lifecycle {
            status: Status::Active,
            consecutive_failures: 0,
            consecutive_successes: 0,
        };
        for failures in 1..=6 {
            let held = hold(check(state, CONNECT));
            assert_eq!(held.state.status, Status::Active);
            assert_eq!(held.event, None);
            assert_eq!(held.state.consecutive_failures, failures);
            state = held.state;
        }
        // After the hold: the next failure goes straight to failed (6 + 1 >= failed_after).
        let through = check(state, CONNECT);
        assert_eq!(through.state.status, Status::Failed);
        // Recovery is never held.
        let degraded = Lifecycle {
            status: Status::Degraded,
            consecutive_failures: 3,
            consecutive_successes: 0,
        };
        let recovered = hold(check(degraded, OK));
        assert_eq!(recovered.state.status, Status::Active);
        assert!(recovered.event.is_some());
        // Degraded to failed is held too.
        let degraded = Lifecycle {
            consecutive_failures: 4,
            ..degraded
        };
        assert_eq!(
            hold(check(degraded, CONNECT)).state.status,
            Status::Degraded
        );
    }

    struct Recorder(Mutex<Vec<NetworkChange>>);

    impl NetworkGuardReporter for Recorder {
        fn changed(&self, change: &NetworkChange) {
            self.0.lock().unwrap().push(*change);
        }
    }

    #[test]
    fn the_shared_guard_reports_each_change_once_and_sets_its_flag() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let guard = NetworkGuard::new(options(10, 0.5, 60), recorder.clone());
        for i in 0..25 {
            guard.observe(CONNECT, at(i));
        }
        assert!(guard.impaired());
        guard.refresh(at(20_000));
        assert!(!guard.impaired());
        let seen: Vec<bool> = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.impaired)
            .collect();
        assert_eq!(seen, [true, false]);
    }

    fn outcome() -> impl Strategy<Value = CheckOutcome> {
        prop_oneof![
            Just(OK),
            Just(CONNECT),
            Just(CheckOutcome::Failure(FailureClass::Dns)),
            Just(CheckOutcome::Failure(FailureClass::Timeout)),
            Just(HTTP),
            Just(CheckOutcome::Skipped),
        ]
    }

    proptest! {
        /// Over random outcomes at random (sometimes backwards) times: never held beyond
        /// `hold` after the impairment began, never impaired from fewer than `MIN_CHECKS`
        /// checks or below the ratio, never still impaired below half the ratio or with an
        /// empty window, never unimpaired at the ratio with `MIN_CHECKS` checks, the counts are exactly those of a naive
        /// window over every check, and the changes alternate, starting with an impairment.
        #[test]
        fn the_guard_never_holds_beyond_the_hold_and_matches_a_naive_window(
            window in 1u64..8,
            ratio in 0.05f64..=1.0,
            hold_seconds in 0u64..20,
            steps in proptest::collection::vec((outcome(), -500i64..1500), 1..400),
        ) {
            let options = options(window, ratio, hold_seconds);
            let mut detector = Detector::new(options);
            let mut time = 0i64;
            let mut latest = DateTime::<Utc>::MIN_UTC;
            let mut seen: Vec<(i64, bool)> = Vec::new();
            let mut since: Option<DateTime<Utc>> = None;
            let mut last_change: Option<bool> = None;
            for (outcome, delta) in steps {
                time += delta;
                let now = at(time);
                latest = latest.max(now);
                let step = detector.observe(outcome, now);
                match outcome {
                    CheckOutcome::Skipped => {}
                    CheckOutcome::Failure(class) => seen.push((latest.timestamp(), is_network_failure(class))),
                    CheckOutcome::Success => seen.push((latest.timestamp(), false)),
                }
                let second = latest.timestamp();
                let in_window: Vec<bool> = seen
                    .iter()
                    .filter(|(s, _)| *s > second - window as i64)
                    .map(|(_, network)| *network)
                    .collect();
                let checks = in_window.len() as u64;
                let failures = in_window.iter().filter(|n| **n).count() as u64;
                prop_assert_eq!(detector.counts(), (checks, failures));
                if let Some(change) = step.change {
                    prop_assert_ne!(last_change, Some(change.impaired));
                    if last_change.is_none() {
                        prop_assert!(change.impaired);
                    }
                    last_change = Some(change.impaired);
                    since = change.impaired.then_some(change.since);
                }
                if let Some(change) = step.change.filter(|c| c.impaired) {
                    prop_assert!(change.checks >= MIN_CHECKS && checks >= MIN_CHECKS);
                }
                if let Some(change) = step.change.filter(|c| c.impaired) {
                    prop_assert!(failures as f64 >= ratio * checks as f64, "{:?}", change);
                }
                if detector.impaired() {
                    prop_assert!(checks >= 1);
                    prop_assert!(failures as f64 >= ratio / 2.0 * checks as f64);
                } else {
                    prop_assert!(checks < MIN_CHECKS || (failures as f64) < ratio * checks as f64);
                }
                if step.holding {
                    let since = since.expect("held only while impaired");
                    prop_assert!(latest < since + TimeDelta::seconds(hold_seconds as i64));
                }
            }
        }
    }
}
