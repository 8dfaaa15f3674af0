//! Flap detection (DESIGN §10) as a pure function: `(flap state, time, transitioned?) → flap
//! state + what to publish`.
//!
//! An integration that changes status `threshold` times within `window` is *flapping*: its
//! status, transitions and audit go on, but its `healthy`/`unhealthy` events are held back and
//! one `flapping` event is published instead. Once the transitions in the window have fallen
//! to half the threshold, one `stable` event carries the status it then has, so a subscriber
//! that applies the events always ends with the true status.
//!
//! The state is the times of the latest transitions (at most `threshold` of them: when the
//! count in the window is at most the threshold, those are exactly the ones in it) and the
//! flag. The monitor actor owns it and the store persists it with every transition, so a
//! restarted actor (or another node's, after a handover) counts on from the same times. The
//! clock is the caller's: nothing here reads one.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::lifecycle::EventKind;

/// `monitor.flap_threshold` and `monitor.flap_window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapOptions {
    /// Transitions within `window` that make an integration flapping; 0 switches detection
    /// off.
    pub threshold: u32,
    pub window: Duration,
}

impl Default for FlapOptions {
    fn default() -> Self {
        FlapOptions {
            threshold: 6,
            window: Duration::from_secs(30 * 60),
        }
    }
}

impl FlapOptions {
    /// At or below this many transitions in the window, a flapping integration is stable
    /// again (half the threshold, rounded down).
    pub fn stable_at(&self) -> usize {
        (self.threshold / 2) as usize
    }
}

/// What the actor keeps (and the store persists) about an integration's recent transitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlapState {
    pub flapping: bool,
    /// Times of the latest transitions, oldest first; at most `threshold` of them.
    pub transitions: Vec<DateTime<Utc>>,
}

/// A change of the flapping flag, each published as its own event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlapChange {
    /// `integration.flapping`.
    Started,
    /// `integration.stable`, with the status the integration has now.
    Stopped,
}

/// The result of [`observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlapStep {
    pub state: FlapState,
    pub change: Option<FlapChange>,
}

impl FlapStep {
    /// The event to publish for a check whose lifecycle transition emits `event`: a change of
    /// the flag replaces it (the `flapping` or `stable` event carries the new status anyway),
    /// and while flapping, `healthy` and `unhealthy` are held back.
    pub fn published(&self, event: Option<EventKind>) -> Option<EventKind> {
        match self.change {
            Some(FlapChange::Started) => Some(EventKind::Flapping),
            Some(FlapChange::Stopped) => Some(EventKind::Stable),
            None if self.state.flapping => {
                event.filter(|e| !matches!(e, EventKind::Healthy | EventKind::Unhealthy))
            }
            None => event,
        }
    }
}

/// Feeds one check result at time `now` (`transitioned`: its status changed) to the flap
/// state. Transitions older than the window are forgotten; a transition that brings the count
/// to the threshold starts flapping; a count at or below half the threshold (checked at every
/// result, so a flapping integration that has settled becomes stable at its next check) stops
/// it. With the threshold 0, nothing flaps (and a stored flag is cleared).
pub fn observe(
    state: &FlapState,
    now: DateTime<Utc>,
    transitioned: bool,
    options: FlapOptions,
) -> FlapStep {
    let window = TimeDelta::from_std(options.window).unwrap_or(TimeDelta::MAX);
    let since = now.checked_sub_signed(window);
    let mut transitions: Vec<DateTime<Utc>> = state
        .transitions
        .iter()
        .copied()
        .filter(|at| since.is_none_or(|since| *at > since))
        .collect();
    if transitioned {
        transitions.push(now);
    }
    let keep = options.threshold as usize;
    if transitions.len() > keep {
        transitions.drain(..transitions.len() - keep);
    }
    let count = transitions.len();
    let flapping = if options.threshold == 0 {
        false
    } else if state.flapping {
        count > options.stable_at()
    } else {
        transitioned && count >= keep
    };
    let change = match (state.flapping, flapping) {
        (false, true) => Some(FlapChange::Started),
        (true, false) => Some(FlapChange::Stopped),
        _ => None,
    };
    FlapStep {
        state: FlapState {
            flapping,
            transitions,
        },
        change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{
        self, CheckOutcome, FailureClass, Input, Lifecycle, Status, Thresholds,
    };
    use proptest::prelude::*;

    const OPTIONS: FlapOptions = FlapOptions {
        threshold: 6,
        window: Duration::from_secs(1800),
    };

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::minutes(minutes)
    }

    #[test]
    fn six_transitions_in_the_window_flap_and_three_are_stable() {
        let mut state = FlapState::default();
        let mut changes = Vec::new();
        for minute in 0..6 {
            let step = observe(&state, at(minute), true, OPTIONS);
            changes.push(step.change);
            state = step.state;
        }
        assert_eq!(changes[..5], [None; 5]);
        assert_eq!(changes[5], Some(FlapChange::Started));
        assert!(state.flapping);
        // Checks without transitions: at minute 31 the first two have left the window (4
        // remain), at minute 32 the third (3 = half the threshold): stable.
        let step = observe(&state, at(31), false, OPTIONS);
        assert_eq!((step.change, step.state.transitions.len()), (None, 4));
        let step = observe(&step.state, at(32), false, OPTIONS);
        assert_eq!(step.change, Some(FlapChange::Stopped));
        assert!(!step.state.flapping);
    }

    #[test]
    fn transitions_spread_beyond_the_window_never_flap() {
        let mut state = FlapState::default();
        for n in 0..50 {
            let step = observe(&state, at(n * 7), true, OPTIONS);
            assert_eq!(step.change, None, "transition {n}");
            assert!(step.state.transitions.len() <= 6);
            state = step.state;
        }
    }

    #[test]
    fn threshold_zero_switches_detection_off_and_clears_a_stored_flag() {
        let off = FlapOptions {
            threshold: 0,
            ..OPTIONS
        };
        let flapping = FlapState {
            flapping: true,
            transitions: vec![at(0)],
        };
        let step = observe(&flapping, at(1), true, off);
        assert_eq!(step.change, Some(FlapChange::Stopped));
        assert!(step.state.transitions.is_empty());
        assert_eq!(
            observe(&FlapState::default(), at(1), true, off).change,
            None
        );
    }

    #[test]
    fn published_events() {
        use EventKind::*;
        let quiet = FlapStep {
            state: FlapState::default(),
            change: None,
        };
        let flapping = FlapStep {
            state: FlapState {
                flapping: true,
                transitions: vec![],
            },
            change: None,
        };
        let started = FlapStep {
            change: Some(FlapChange::Started),
            ..flapping.clone()
        };
        let stopped = FlapStep {
            change: Some(FlapChange::Stopped),
            ..quiet.clone()
        };
        // (step, lifecycle event, published)
        let rows = [
            (&quiet, Some(Healthy), Some(Healthy)),
            (&quiet, Some(Unhealthy), Some(Unhealthy)),
            (&quiet, None, None),
            (&flapping, Some(Healthy), None),
            (&flapping, Some(Unhealthy), None),
            (&flapping, None, None),
            (&started, Some(Unhealthy), Some(Flapping)),
            (&stopped, Some(Healthy), Some(Stable)),
            (&stopped, None, Some(Stable)),
        ];
        for (step, event, expected) in rows {
            assert_eq!(step.published(event), expected, "{step:?} {event:?}");
        }
    }

    // --- Property: a subscriber always learns the true status --------------------------------
    //
    // The whole path of a check as the monitor runs it: the lifecycle state machine, then the
    // flap detector, then what is published. A subscriber applies `healthy`, `unhealthy`,
    // `flapping` and `stable` with the status they carry. Whatever the outcomes and the times
    // between them, once the integration has stayed in one status for a window (checks go on,
    // so the detector sees the count fall), the subscriber's status is the true one; and while
    // flapping, no healthy/unhealthy event is published.

    /// One check: its outcome and the minutes since the previous one.
    fn any_check() -> impl Strategy<Value = (bool, i64)> {
        (any::<bool>(), 0i64..20)
    }

    fn any_options() -> impl Strategy<Value = FlapOptions> {
        (0u32..9, 1u64..90).prop_map(|(threshold, minutes)| FlapOptions {
            threshold,
            window: Duration::from_secs(minutes * 60),
        })
    }

    fn any_thresholds() -> impl Strategy<Value = Thresholds> {
        (1u32..4, 1u32..6, 1u32..3).prop_map(|(d, f, r)| Thresholds {
            degraded_after: d,
            failed_after: d.max(f),
            recover_after: r,
        })
    }

    struct Run {
        lifecycle: Lifecycle,
        flap: FlapState,
        now: DateTime<Utc>,
        subscriber: Status,
        published: Vec<EventKind>,
    }

    impl Run {
        fn check(&mut self, success: bool, thresholds: Thresholds, options: FlapOptions) {
            let outcome = if success {
                CheckOutcome::Success
            } else {
                CheckOutcome::Failure(FailureClass::Connect)
            };
            let transition =
                lifecycle::apply(self.lifecycle, Input::Check(outcome), thresholds).unwrap();
            let step = observe(&self.flap, self.now, transition.status_changed(), options);
            if let Some(event) = step.published(transition.event) {
                // Every event carries the status after its commit.
                self.subscriber = transition.state.status;
                self.published.push(event);
            }
            self.lifecycle = transition.state;
            self.flap = step.state;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn a_subscriber_ends_with_the_true_status(
            options in any_options(),
            thresholds in any_thresholds(),
            checks in proptest::collection::vec(any_check(), 0..120),
            last in any::<bool>(),
        ) {
            let mut run = Run {
                lifecycle: Lifecycle { status: Status::Active, ..Lifecycle::new() },
                flap: FlapState::default(),
                now: at(0),
                subscriber: Status::Active,
                published: Vec::new(),
            };
            for (success, minutes) in checks {
                run.now += TimeDelta::minutes(minutes);
                let flapping_before = run.flap.flapping;
                let before = run.published.len();
                run.check(success, thresholds, options);
                prop_assert!(run.flap.transitions.len() <= options.threshold as usize);
                if flapping_before && run.flap.flapping {
                    prop_assert_eq!(run.published.len(), before, "an event while flapping");
                }
            }
            // Then one outcome for long enough to settle: the status stops changing after at
            // most `failed_after` checks, and a window later the count has fallen to zero.
            let minutes = options.window.as_secs().div_ceil(60) as i64;
            for _ in 0..(thresholds.failed_after as i64 + minutes + 2) {
                run.now += TimeDelta::minutes(1);
                run.check(last, thresholds, options);
            }
            prop_assert!(!run.flap.flapping);
            prop_assert_eq!(run.subscriber, run.lifecycle.status);
        }
    }
}
