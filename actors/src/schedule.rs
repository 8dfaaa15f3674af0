//! The pure schedule math of monitor actors: phase offsets, next due times, and the two
//! capped exponential backoffs (failed integrations and crashed actors).
//!
//! Times here are [`Duration`]s since the Unix epoch by the engine's clock (read once when the
//! engine starts, then advanced by the monotonic clock), so the math is plain arithmetic that
//! property tests can check, and every actor of every engine (every node of a cluster) agrees
//! on where the slots of an interval fall.
//!
//! An integration with interval `i` and phase offset `o` is checked at the slots
//! `o + k·i`. Everything below keeps due times on those slots: backoff steps are whole
//! multiples of the interval and skipping missed checks skips whole slots. A restarted actor
//! therefore keeps its phase, and a fleet whose phases were spread stays spread.

use std::time::Duration;

use uuid::Uuid;

use crate::lifecycle::{Lifecycle, Status, Thresholds};

/// The shortest interval the schedule works with. Configuration refuses anything under a
/// second; this only keeps the arithmetic away from a division by zero.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// The deterministic phase of an integration within its interval, in `[0, interval)`.
///
/// Derived from the id alone, so a million integrations with the same interval spread
/// uniformly over it, and a restarted actor (or daemon) lands on the same slots again.
/// UUIDv7 ids share their leading timestamp bits, so all 128 bits are mixed.
pub fn phase_offset(id: Uuid, interval: Duration) -> Duration {
    let interval = nanos(interval.max(MIN_INTERVAL));
    let (high, low) = id.as_u64_pair();
    let mixed = splitmix64(high ^ splitmix64(low));
    from_nanos(u128::from(mixed) % interval)
}

/// The first slot `offset + k·interval` (k ≥ 0) at or after `now`.
pub fn first_due(now: Duration, interval: Duration, offset: Duration) -> Duration {
    let interval = nanos(interval.max(MIN_INTERVAL));
    let offset = nanos(offset) % interval;
    let now = nanos(now);
    if now <= offset {
        return from_nanos(offset);
    }
    from_nanos(offset + (now - offset).div_ceil(interval) * interval)
}

/// When to check next, after the check that was due at `last_due`.
///
/// The next check is due `step` after the last one was *due* (not after it ran), so the
/// schedule does not drift by the check's latency. If that time has already passed, the
/// check runs at once when it is less than one interval late; when whole slots were missed
/// (the process was suspended, the runtime starved), they are skipped and the check waits
/// for its next slot, so a fleet that fell behind does not fire all at once.
pub fn next_due(last_due: Duration, step: Duration, interval: Duration, now: Duration) -> Duration {
    let interval = nanos(interval.max(MIN_INTERVAL));
    let next = nanos(last_due) + nanos(step.max(MIN_INTERVAL));
    let now = nanos(now);
    if next >= now || now - next < interval {
        return from_nanos(next);
    }
    from_nanos(next + (now - next).div_ceil(interval) * interval)
}

/// The time between two checks of an integration in this lifecycle state.
///
/// Failed integrations keep probing, backing off exponentially: `interval × 2^n` where `n`
/// counts the failures beyond `failed_after`, capped at `failed_backoff_max` rounded down to
/// a whole number of intervals (so the phase survives), and never below one interval.
pub fn step(
    interval: Duration,
    lifecycle: Lifecycle,
    thresholds: Thresholds,
    failed_backoff_max: Duration,
) -> Duration {
    let interval = interval.max(MIN_INTERVAL);
    if lifecycle.status != Status::Failed {
        return interval;
    }
    let beyond = lifecycle
        .consecutive_failures
        .saturating_sub(thresholds.failed_after);
    let max_multiple = (nanos(failed_backoff_max) / nanos(interval)).max(1);
    from_nanos(nanos(interval) * doubled(beyond, max_multiple))
}

/// How long the supervisor waits before re-spawning an actor that crashed for the
/// `attempt`-th time in a row (1-based): `base × 2^(attempt−1)`, capped at `max`.
pub fn restart_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let base = nanos(base.max(MIN_INTERVAL));
    let max = nanos(max);
    let cap_multiple = (max / base).max(1);
    from_nanos((base * doubled(attempt.saturating_sub(1), cap_multiple)).min(max.max(base)))
}

/// `2^exponent`, but at most `cap`.
fn doubled(exponent: u32, cap: u128) -> u128 {
    if exponent >= 127 {
        return cap;
    }
    (1u128 << exponent).min(cap)
}

fn nanos(duration: Duration) -> u128 {
    duration.as_nanos()
}

fn from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

/// Sebastiano Vigna's splitmix64 finaliser: a cheap, well-distributed 64-bit mix, stable
/// across Rust releases (unlike `DefaultHasher`), so phases do not move on an upgrade.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn failed(consecutive_failures: u32) -> Lifecycle {
        Lifecycle {
            status: Status::Failed,
            consecutive_failures,
            consecutive_successes: 0,
        }
    }

    const T: Thresholds = Thresholds {
        degraded_after: 3,
        failed_after: 5,
        recover_after: 1,
    };

    #[test]
    fn first_due_lands_on_the_phase() {
        assert_eq!(first_due(secs(0), secs(10), secs(3)), secs(3));
        assert_eq!(first_due(secs(3), secs(10), secs(3)), secs(3));
        assert_eq!(first_due(secs(4), secs(10), secs(3)), secs(13));
        assert_eq!(first_due(secs(25), secs(10), secs(3)), secs(33));
    }

    #[test]
    fn next_due_does_not_drift_and_skips_whole_missed_slots() {
        // On time or a little late: exactly one step after the last due time.
        assert_eq!(next_due(secs(3), secs(10), secs(10), secs(5)), secs(13));
        assert_eq!(next_due(secs(3), secs(10), secs(10), secs(19)), secs(13));
        // A whole slot missed: wait for the next slot after now, on the same phase.
        assert_eq!(next_due(secs(3), secs(10), secs(10), secs(24)), secs(33));
        assert_eq!(next_due(secs(3), secs(10), secs(10), secs(33)), secs(33));
        // Backoff steps are whole intervals, so the phase is kept.
        assert_eq!(next_due(secs(3), secs(40), secs(10), secs(5)), secs(43));
    }

    #[test]
    fn failed_integrations_back_off_exponentially_up_to_the_cap() {
        let steps: Vec<u64> = (4..=12)
            .map(|failures| {
                let lifecycle = if failures < 5 {
                    Lifecycle {
                        status: Status::Degraded,
                        ..failed(failures)
                    }
                } else {
                    failed(failures)
                };
                step(secs(60), lifecycle, T, secs(600)).as_secs()
            })
            .collect();
        // Degraded at 4, failed at 5 (0 beyond), then 1, 2, 3, ... beyond; capped at 600 s.
        assert_eq!(steps, [60, 60, 120, 240, 480, 600, 600, 600, 600]);
        // A cap that is not a whole number of intervals is rounded down to one.
        assert_eq!(step(secs(60), failed(12), T, secs(590)), secs(540));
        // A cap under the interval never shortens it.
        assert_eq!(step(secs(60), failed(9), T, secs(10)), secs(60));
    }

    #[test]
    fn restart_delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=8)
            .map(|attempt| restart_delay(secs(1), secs(60), attempt).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        // A base above the cap is still waited in full.
        assert_eq!(restart_delay(secs(5), secs(2), 3), secs(5));
        assert_eq!(restart_delay(secs(1), secs(60), u32::MAX), secs(60));
    }

    /// Sequential ids are the worst case for a weak mix; they must still spread evenly.
    #[test]
    fn phases_of_sequential_ids_spread_evenly() {
        let interval = secs(10);
        let mut buckets = [0u32; 100];
        for i in 0..100_000u128 {
            let offset = phase_offset(Uuid::from_u128(i), interval);
            buckets[(offset.as_millis() / 100) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min(), buckets.iter().max());
        assert!(
            *min.unwrap() > 800 && *max.unwrap() < 1200,
            "{min:?}..{max:?}"
        );
    }

    fn duration(max_secs: u64) -> impl Strategy<Value = Duration> {
        (0..max_secs * 1_000_000).prop_map(Duration::from_micros)
    }

    fn positive(max_secs: u64) -> impl Strategy<Value = Duration> {
        (1..max_secs * 1_000_000).prop_map(Duration::from_micros)
    }

    proptest! {
        #[test]
        fn phase_offset_is_within_the_interval_and_stable(id: u128, interval in positive(3600)) {
            let offset = phase_offset(Uuid::from_u128(id), interval);
            prop_assert!(offset < interval);
            prop_assert_eq!(offset, phase_offset(Uuid::from_u128(id), interval));
        }

        #[test]
        fn first_due_is_the_next_slot(now in duration(100_000), interval in positive(3600), id: u128) {
            let offset = phase_offset(Uuid::from_u128(id), interval);
            let due = first_due(now, interval, offset);
            prop_assert!(due >= now);
            prop_assert!(due - now < interval);
            prop_assert_eq!(nanos(due - offset) % nanos(interval), 0);
        }

        #[test]
        fn next_due_keeps_the_phase_and_never_runs_a_slot_early(
            last_due in duration(100_000),
            multiple in 1u32..64,
            interval in positive(3600),
            ahead in duration(20_000),
        ) {
            let step = interval * multiple;
            let now = last_due + ahead;
            let due = next_due(last_due, step, interval, now);
            prop_assert!(due >= last_due + step);
            prop_assert_eq!(nanos(due - last_due) % nanos(interval), 0);
            if due < now {
                // Late, but by less than one interval, and only the planned slot.
                prop_assert_eq!(due, last_due + step);
                prop_assert!(now - due < interval);
            } else if due > last_due + step {
                // Slots were skipped: it is the first slot after now.
                prop_assert!(due - now < interval);
            }
        }

        #[test]
        fn failed_step_is_whole_intervals_capped_and_monotonic(
            interval in positive(600),
            max in duration(36_000),
            failures in 5u32..200,
        ) {
            let this = step(interval, failed(failures), T, max);
            let next = step(interval, failed(failures + 1), T, max);
            prop_assert_eq!(nanos(this) % nanos(interval), 0);
            prop_assert!(this >= interval);
            prop_assert!(this <= max.max(interval));
            prop_assert!(next >= this);
        }

        #[test]
        fn restart_delay_is_capped_and_monotonic(base in positive(10), max in positive(600), attempt in 1u32..100) {
            let this = restart_delay(base, max, attempt);
            prop_assert!(this <= max.max(base));
            prop_assert!(this >= base.min(max));
            prop_assert!(restart_delay(base, max, attempt + 1) >= this);
        }
    }
}
