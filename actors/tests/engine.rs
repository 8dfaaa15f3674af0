//! The engine driven through its public handle, against the in-memory ports.
//!
//! Most tests run on tokio's paused clock: timers fire exactly at their deadlines and time
//! jumps ahead whenever everything is idle, so schedules can be asserted to the millisecond
//! and long stretches cost nothing. The tests about hanging and panicking probes run in real
//! time on a multi-threaded runtime, because what they show is that one integration's
//! trouble does not delay the others' real schedule.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use catalogd_actors::testing::{spec, Behaviour, MemoryLedger, ScriptedProbe, TestClock};
use catalogd_actors::{
    CheckOutcome, CheckReport, Engine, EngineOptions, EventKind, FailureClass, FlapOptions,
    MonitorSpec, Status, Thresholds,
};
use catalogd_testkit::eventually;
use tokio::time::Instant;
use uuid::Uuid;

const SUCCESS: Behaviour = Behaviour::Outcome(CheckOutcome::Success);

fn fail(class: FailureClass) -> Behaviour {
    Behaviour::Outcome(CheckOutcome::Failure(class))
}

fn options() -> EngineOptions {
    EngineOptions {
        reconcile_interval: Duration::from_secs(3600),
        restart_backoff_base: Duration::from_millis(50),
        restart_backoff_max: Duration::from_millis(800),
        failed_backoff_max: Duration::from_secs(4),
        flap: FlapOptions::default(),
        network_guard: None,
    }
}

struct Harness {
    ledger: Arc<MemoryLedger<Uuid>>,
    probe: Arc<ScriptedProbe>,
    engine: Engine<Uuid>,
}

async fn start(
    specs: impl IntoIterator<Item = MonitorSpec<Uuid>>,
    probe: ScriptedProbe,
    options: EngineOptions,
) -> Harness {
    let ledger = Arc::new(MemoryLedger::new());
    for spec in specs {
        ledger.insert(spec);
    }
    let probe = Arc::new(probe);
    let engine = start_on(&ledger, &probe, options).await;
    engine.spawned().await.expect("fleet spawned");
    Harness {
        ledger,
        probe,
        engine,
    }
}

/// Starts an engine on an existing store; the fleet is then being spawned.
async fn start_on(
    ledger: &Arc<MemoryLedger<Uuid>>,
    probe: &Arc<ScriptedProbe>,
    options: EngineOptions,
) -> Engine<Uuid> {
    Engine::start(
        ledger.clone(),
        probe.clone(),
        Arc::new(TestClock::new()),
        options,
    )
    .await
    .expect("engine starts")
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n)
}

fn with_thresholds(mut spec: MonitorSpec<Uuid>, d: u32, f: u32, r: u32) -> MonitorSpec<Uuid> {
    spec.thresholds = Thresholds {
        degraded_after: d,
        failed_after: f,
        recover_after: r,
    };
    spec
}

/// Serialises the real-time tests: they measure how late checks start, and two of them
/// sharing the machine's cores would measure each other.
async fn real_time() -> tokio::sync::MutexGuard<'static, ()> {
    static REAL_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    REAL_TIME.lock().await
}

/// Keeps the expected panic messages of scripted probes out of the test output.
fn quiet_scripted_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.to_string();
            if !message.contains("scripted probe panic")
                && !message.contains("scripted ledger panic")
            {
                default_hook(info);
            }
        }));
    });
}

fn gaps_ms(times: &[Instant]) -> Vec<u128> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect()
}

fn percentile(mut values: Vec<Duration>, p: f64) -> Duration {
    values.sort();
    values[((values.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(start_paused = true)]
async fn transitions_happen_exactly_at_each_integrations_thresholds() {
    use Status::*;
    let (a, b, c) = (id(1), id(2), id(3));
    let second = Duration::from_secs(1);
    let probe = ScriptedProbe::new(SUCCESS);
    // a: 7 failures then successes, thresholds 3/5/1.
    probe.script(a, |call| {
        if call < 7 {
            fail(FailureClass::HttpStatus)
        } else {
            SUCCESS
        }
    });
    // b: 6 failures then successes, thresholds 2/4/2.
    probe.script(b, |call| {
        if call < 6 {
            fail(FailureClass::Connect)
        } else {
            SUCCESS
        }
    });
    // c: failures that never count.
    probe.script(c, |call| {
        if call % 2 == 0 {
            fail(FailureClass::RateLimited)
        } else {
            fail(FailureClass::Config)
        }
    });
    let h = start(
        [
            with_thresholds(spec(a, Active, second), 3, 5, 1),
            with_thresholds(spec(b, Active, second), 2, 4, 2),
            spec(c, Active, second),
        ],
        probe,
        options(),
    )
    .await;

    eventually(
        "every integration checked 10 times",
        Duration::from_secs(60),
        || [a, b, c].iter().all(|&id| h.ledger.history(id).len() >= 10),
    )
    .await;

    // The index of the check result that caused each commit: none early, none late.
    assert_eq!(
        h.ledger.transitions(a),
        [
            (2, Active, Degraded),
            (4, Degraded, Failed),
            (7, Failed, Active)
        ]
    );
    assert_eq!(
        h.ledger.transitions(b),
        [
            (1, Active, Degraded),
            (3, Degraded, Failed),
            (7, Failed, Active)
        ]
    );
    assert_eq!(h.ledger.transitions(c), []);
    assert_eq!(h.ledger.get(c).unwrap().lifecycle.status, Active);
    assert_eq!(h.ledger.get(a).unwrap().lifecycle.status, Active);
    let degraded = h.ledger.history(a)[2];
    assert_eq!(degraded.lifecycle.consecutive_failures, 3);
    assert_eq!(
        degraded.report.outcome,
        CheckOutcome::Failure(FailureClass::HttpStatus)
    );

    // Failed integrations back off: 1 s at the transition, then 2 s, then the 4 s cap;
    // after recovery, back to the interval.
    let gaps = gaps_ms(&h.probe.call_times(a));
    assert_eq!(&gaps[3..8], [1000, 1000, 2000, 4000, 1000], "{gaps:?}");
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn paused_integrations_are_never_probed_and_resume_checks_at_once() {
    let (paused, active) = (id(1), id(2));
    let interval = Duration::from_secs(1);
    let h = start(
        [
            spec(paused, Status::Paused, interval),
            spec(active, Status::Active, interval),
        ],
        ScriptedProbe::new(SUCCESS),
        options(),
    )
    .await;
    assert_eq!(
        h.engine.actor_count().await.unwrap(),
        2,
        "paused ones get an idle actor"
    );

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.probe.calls(paused), 0);
    assert!(h.probe.calls(active) >= 59);

    // Resume: counters reset, status active, and a check at once — not at the next slot.
    h.ledger
        .update(paused, |s| s.lifecycle.status = Status::Active);
    let resumed_at = Instant::now();
    h.engine.changed(paused, true);
    eventually(
        "resumed integration checked",
        Duration::from_secs(5),
        || h.probe.calls(paused) == 1,
    )
    .await;
    assert!(resumed_at.elapsed() < Duration::from_millis(50));

    // Pause the other one: it stops at once, whatever its schedule.
    h.ledger
        .update(active, |s| s.lifecycle.status = Status::Paused);
    h.engine.changed(active, false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = h.probe.calls(active);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.probe.calls(active), calls);
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn submit_spawns_and_verifies_at_once_drafts_get_no_actor() {
    let (submitted, draft) = (id(1), id(2));
    let h = start([], ScriptedProbe::new(SUCCESS), options()).await;
    let hour = Duration::from_secs(3600);

    h.ledger.insert(spec(draft, Status::Draft, hour));
    h.engine.changed(draft, false);
    h.ledger
        .insert(spec(submitted, Status::PendingVerification, hour));
    h.engine.changed(submitted, true);

    eventually("verification committed", Duration::from_secs(1), || {
        h.ledger.transitions(submitted) == [(0, Status::PendingVerification, Status::Active)]
    })
    .await;
    assert_eq!(h.engine.actor_count().await.unwrap(), 1);
    assert_eq!(h.probe.calls(draft), 0);

    // Delete: the actor stops and is not restarted.
    h.ledger.remove(submitted);
    h.engine.deleted(submitted);
    assert_eq!(h.engine.actor_count().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    assert_eq!(h.probe.calls(submitted), 1);
    assert_eq!(h.engine.counters().restarts(), 0);
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn first_checks_of_a_fleet_are_spread_over_the_interval() {
    let interval = Duration::from_secs(10);
    let ids: Vec<Uuid> = (0..1000).map(id).collect();
    let started = Instant::now();
    let h = start(
        ids.iter().map(|&id| spec(id, Status::Active, interval)),
        ScriptedProbe::new(SUCCESS),
        options(),
    )
    .await;
    eventually(
        "every integration checked once",
        Duration::from_secs(11),
        || h.probe.first_calls().len() == ids.len(),
    )
    .await;

    let offsets: Vec<Duration> = h
        .probe
        .first_calls()
        .values()
        .map(|first| *first - started)
        .collect();
    assert!(offsets.iter().all(|offset| *offset < interval));
    let mut seconds = [0usize; 10];
    let mut tenths = [0usize; 100];
    for offset in &offsets {
        seconds[offset.as_secs() as usize] += 1;
        tenths[(offset.as_millis() / 100) as usize] += 1;
    }
    // Uniform would be 100 per second and 10 per tenth of a second.
    assert!(
        seconds.iter().all(|&n| (60..=140).contains(&n)),
        "{seconds:?}"
    );
    assert!(tenths.iter().all(|&n| n <= 30), "{tenths:?}");

    // A restarted engine keeps every phase: the slots depend only on the id and interval.
    let before: HashMap<Uuid, Duration> = h
        .probe
        .first_calls()
        .into_iter()
        .map(|(id, t)| (id, t - started))
        .collect();
    h.engine.stop().await;
    let probe = Arc::new(ScriptedProbe::new(SUCCESS));
    let restarted_at = Instant::now();
    let engine = start_on(&h.ledger, &probe, options()).await;
    eventually(
        "every integration checked again",
        Duration::from_secs(11),
        || probe.first_calls().len() == ids.len(),
    )
    .await;
    for (id, first) in probe.first_calls() {
        assert_eq!(first - restarted_at, before[&id]);
    }
    engine.stop().await;
}

/// A fleet of three spawn pages whose later pages load only when the test says so, checked
/// every 2 s: the actors of the first page run meanwhile.
async fn start_with_later_pages_held() -> (Harness, Vec<Uuid>) {
    let interval = Duration::from_secs(2);
    let ids: Vec<Uuid> = (0..2500).map(id).collect();
    let ledger = Arc::new(MemoryLedger::new());
    for &id in &ids {
        ledger.insert(spec(id, Status::Active, interval));
    }
    ledger.hold_later_pages(true);
    let probe = Arc::new(ScriptedProbe::new(SUCCESS));
    let engine = start_on(&ledger, &probe, options()).await;
    eventually("the first page running", Duration::from_secs(1), || {
        engine.counters().actors() == 1024
    })
    .await;
    let h = Harness {
        ledger,
        probe,
        engine,
    };
    (h, ids)
}

/// While the initial fleet is being spawned, the running actors skip their slots instead of
/// checking: at a million integrations their checks kept the spawn from finishing. Once
/// every actor runs, each is checked at its next slot, so the fleet is spread over its
/// interval and nothing fires at once.
#[tokio::test(start_paused = true)]
async fn checks_wait_for_the_initial_spawn_and_then_keep_their_slots() {
    let (h, ids) = start_with_later_pages_held().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.probe.total_calls(), 0, "checks during the spawn");

    h.ledger.hold_later_pages(false);
    h.engine.spawned().await.unwrap();
    let released = Instant::now();
    eventually("every integration checked", Duration::from_secs(3), || {
        h.probe.first_calls().len() == ids.len()
    })
    .await;
    let mut quarters = [0usize; 4];
    for first in h.probe.first_calls().values() {
        let offset = *first - released;
        // A slot at the very instant of the release may have been skipped still.
        assert!(offset <= Duration::from_secs(2), "{offset:?}");
        quarters[(offset.as_millis().min(1999) / 500) as usize] += 1;
    }
    // Uniform would be 625 in each half second.
    assert!(
        quarters.iter().all(|&n| (500..=750).contains(&n)),
        "{quarters:?}"
    );
    h.engine.stop().await;
}

/// The hold is bounded: a store that never serves the rest of the fleet does not keep the
/// running actors from checking for more than a minute.
#[tokio::test(start_paused = true)]
async fn the_start_up_hold_ends_after_a_minute_even_if_the_spawn_does_not() {
    let (h, ids) = start_with_later_pages_held().await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(h.probe.total_calls(), 0, "checks during the hold");
    eventually("the first page checked", Duration::from_secs(3), || {
        h.probe.first_calls().len() == 1024
    })
    .await;
    assert!(ids[1024..].iter().all(|&id| h.probe.calls(id) == 0));
    h.ledger.hold_later_pages(false);
    h.engine.spawned().await.unwrap();
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rest_change_that_wins_the_race_is_adopted() {
    let a = id(1);
    let probe = ScriptedProbe::new(fail(FailureClass::Connect));
    let h = start(
        [spec(a, Status::Active, Duration::from_secs(1))],
        probe,
        options(),
    )
    .await;
    eventually("first failure", Duration::from_secs(2), || {
        h.ledger.history(a).len() == 1
    })
    .await;

    // A pause committed by REST whose notification has not reached the engine yet.
    let version = h
        .ledger
        .update(a, |s| {
            s.lifecycle.status = Status::Paused;
            s.lifecycle.consecutive_failures = 0;
        })
        .unwrap();
    // The third failure would degrade it: the commit is stale, the actor adopts the pause.
    eventually("third check", Duration::from_secs(5), || {
        h.probe.calls(a) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.probe.calls(a), 3, "paused: no further request");
    assert_eq!(h.ledger.transitions(a), []);
    let stored = h.ledger.get(a).unwrap();
    assert_eq!(
        (stored.lifecycle.status, stored.version),
        (Status::Paused, version)
    );
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_actor_whose_integration_vanished_stops_for_good() {
    let a = id(1);
    let h = start(
        [with_thresholds(
            spec(a, Status::Active, Duration::from_secs(1)),
            1,
            2,
            1,
        )],
        ScriptedProbe::new(fail(FailureClass::Dns)),
        options(),
    )
    .await;
    // Deleted with no notification (say, by another daemon); reconciliation is an hour away.
    h.ledger.remove(a);
    eventually("actor stopped", Duration::from_secs(2), || {
        h.engine.counters().actors() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(h.probe.calls(a), 1, "its first failure found the row gone");
    assert_eq!(h.engine.actor_count().await.unwrap(), 0);
    assert_eq!(h.engine.counters().restarts(), 0);
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_storage_error_neither_kills_the_actor_nor_loses_the_transition() {
    let a = id(1);
    let h = start(
        [spec(a, Status::Active, Duration::from_secs(1))],
        ScriptedProbe::new(fail(FailureClass::Timeout)),
        options(),
    )
    .await;
    eventually("two failures", Duration::from_secs(3), || {
        h.ledger.history(a).len() == 2
    })
    .await;
    h.ledger.set_unavailable(true);
    eventually("third check", Duration::from_secs(3), || {
        h.probe.calls(a) == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.ledger.set_unavailable(false);

    // The third failure's commit failed, so the in-memory state stayed at two failures and
    // the fourth failure commits the transition.
    eventually("degraded committed", Duration::from_secs(3), || {
        !h.ledger.transitions(a).is_empty()
    })
    .await;
    assert_eq!(
        h.ledger.transitions(a),
        [(2, Status::Active, Status::Degraded)]
    );
    assert_eq!(h.probe.calls(a), 4);
    assert_eq!(h.ledger.history(a)[2].lifecycle.consecutive_failures, 3);
    assert_eq!(h.engine.counters().restarts(), 0);
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn delivered_test_results_are_applied_by_the_owning_actor() {
    let (pending, active) = (id(1), id(2));
    let hour = Duration::from_secs(3600);
    let h = start(
        [
            spec(pending, Status::PendingVerification, hour),
            with_thresholds(spec(active, Status::Active, hour), 1, 2, 1),
        ],
        ScriptedProbe::new(SUCCESS),
        options(),
    )
    .await;
    let report = |outcome| CheckReport {
        outcome,
        started_at: chrono::Utc::now(),
        latency: Duration::from_millis(12),
        lateness: Duration::ZERO,
    };
    h.engine.deliver(pending, report(CheckOutcome::Success));
    h.engine
        .deliver(active, report(CheckOutcome::Failure(FailureClass::Auth)));
    h.engine.deliver(id(99), report(CheckOutcome::Success));
    eventually("both applied", Duration::from_secs(1), || {
        h.ledger.transitions(pending).len() == 1 && h.ledger.transitions(active).len() == 1
    })
    .await;
    assert_eq!(
        h.ledger.transitions(pending),
        [(0, Status::PendingVerification, Status::Active)]
    );
    assert_eq!(
        h.ledger.transitions(active),
        [(0, Status::Active, Status::Degraded)]
    );
    assert_eq!(
        h.ledger.history(pending)[0].report.latency,
        Duration::from_millis(12)
    );
    assert_eq!(
        h.probe.total_calls(),
        0,
        "a delivered result is not a probe call"
    );
    h.engine.stop().await;
}

/// A manual test's result reaches the integration's state even when its actor is not
/// running: crashed and waiting for its restart, or not spawned (here: its row appeared behind
/// the engine's back and no change notification came).
#[tokio::test(start_paused = true)]
async fn delivered_results_wait_for_an_actor_that_is_not_running() {
    quiet_scripted_panics();
    let (crashed, unspawned) = (id(1), id(2));
    let hour = Duration::from_secs(3600);
    let ledger = Arc::new(MemoryLedger::new());
    ledger.insert(spec(crashed, Status::PendingVerification, hour));
    // The first result the actor records crashes it; its restart waits the backoff (1 s).
    ledger.crash_on_record(crashed, |call| call == 0);
    let probe = Arc::new(ScriptedProbe::new(fail(FailureClass::Connect)));
    let options = EngineOptions {
        restart_backoff_base: Duration::from_secs(1),
        ..options()
    };
    let engine = start_on(&ledger, &probe, options).await;
    engine.spawned().await.unwrap();
    engine.changed(crashed, true);
    eventually("the actor crashed", Duration::from_secs(5), || {
        engine.counters().restarts() == 1
    })
    .await;
    let report = CheckReport {
        outcome: CheckOutcome::Success,
        started_at: chrono::Utc::now(),
        latency: Duration::from_millis(7),
        lateness: Duration::ZERO,
    };
    engine.deliver(crashed, report);
    ledger.insert(spec(unspawned, Status::PendingVerification, hour));
    engine.deliver(unspawned, report);
    eventually(
        "both verified by the delivered success",
        Duration::from_secs(5),
        || {
            ledger.transitions(crashed) == [(1, Status::PendingVerification, Status::Active)]
                && ledger.transitions(unspawned)
                    == [(0, Status::PendingVerification, Status::Active)]
        },
    )
    .await;
    assert_eq!(engine.actor_count().await.unwrap(), 2);
    // A result for an integration nobody monitors is dropped, not kept.
    engine.deliver(id(99), report);
    assert_eq!(engine.actor_count().await.unwrap(), 2);
    engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reconciliation_repairs_drift_within_one_interval() {
    let (kept, added, removed) = (id(1), id(2), id(3));
    let second = Duration::from_secs(1);
    let reconcile = Duration::from_secs(5);
    let h = start(
        [
            spec(kept, Status::Active, second),
            spec(removed, Status::Active, second),
        ],
        ScriptedProbe::new(SUCCESS),
        EngineOptions {
            reconcile_interval: reconcile,
            ..options()
        },
    )
    .await;
    let within = reconcile + Duration::from_millis(50);

    // Added behind the engine's back: spawned, and checked at its first slot.
    h.ledger.insert(spec(added, Status::Active, second));
    let changed_at = Instant::now();
    eventually("added integration checked", within + second, || {
        h.probe.calls(added) > 0
    })
    .await;
    assert_eq!(h.engine.actor_count().await.unwrap(), 3);
    assert!(changed_at.elapsed() <= within + second);

    // Removed behind its back: stopped.
    h.ledger.remove(removed);
    let mut count = 3;
    let changed_at = Instant::now();
    while count != 2 {
        assert!(
            changed_at.elapsed() <= within,
            "not stopped within a reconcile interval"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        count = h.engine.actor_count().await.unwrap();
    }
    let calls = h.probe.calls(removed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.probe.calls(removed), calls);

    // Changed behind its back (paused by another daemon): reloaded, so it stops probing.
    h.ledger
        .update(kept, |s| s.lifecycle.status = Status::Paused);
    tokio::time::sleep(within).await;
    let calls = h.probe.calls(kept);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.probe.calls(kept), calls);
    assert!(h.probe.calls(added) >= 20, "the others keep going");
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_changed_interval_is_adopted_at_once() {
    let a = id(1);
    let h = start(
        [spec(a, Status::Active, Duration::from_secs(3600))],
        ScriptedProbe::new(SUCCESS),
        options(),
    )
    .await;
    h.ledger.update(a, |s| {
        s.interval = Duration::from_secs(1);
        s.timeout = Duration::from_millis(500);
    });
    h.engine.changed(a, false);
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let calls = h.probe.calls(a);
    assert!((10..=11).contains(&calls), "{calls}");
    h.engine.stop().await;
}

/// 100 active integrations checked every second, each check a success.
async fn hundred_active_every_second() -> (Harness, Vec<Uuid>) {
    let ids: Vec<Uuid> = (0..100).map(id).collect();
    let h = start(
        ids.iter()
            .map(|&id| spec(id, Status::Active, Duration::from_secs(1))),
        ScriptedProbe::new(SUCCESS),
        options(),
    )
    .await;
    (h, ids)
}

#[tokio::test(start_paused = true)]
async fn stop_stops_every_actor() {
    let (h, ids) = hundred_active_every_second().await;
    assert_eq!(h.engine.counters().actors(), 100);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        ids.iter().all(|&id| h.probe.calls(id) >= 1),
        "checked before the stop"
    );
    h.engine.stop().await;
    assert!(!h.engine.is_running());
    assert!(h.engine.actor_count().await.is_err());
    let calls = h.probe.total_calls();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(h.probe.total_calls(), calls);
    assert_eq!(h.engine.counters().checks_in_flight(), 0);
}

/// An actor stuck in a commit (a database that stopped answering) does not keep the engine
/// from stopping: the stop waits `STOP_TIMEOUT` (10 s) for it, then kills what is left.
#[tokio::test(start_paused = true)]
async fn stop_gives_up_on_an_actor_stuck_in_a_commit_after_ten_seconds() {
    let (h, ids) = hundred_active_every_second().await;
    let stuck = id(1000);
    h.ledger.hang_commits(true);
    h.ledger.insert(spec(
        stuck,
        Status::PendingVerification,
        Duration::from_secs(3600),
    ));
    h.engine.changed(stuck, true);
    eventually("the verification checked", Duration::from_secs(1), || {
        h.probe.calls(stuck) == 1
    })
    .await;
    // Its commit of pending_verification → active now waits on the ledger.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.ledger.transitions(stuck).is_empty());
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(60), h.engine.stop())
        .await
        .expect("the stop gives up on the stuck actor");
    let took = stopping.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_secs(11)).contains(&took),
        "{took:?}"
    );
    assert!(!h.engine.is_running());
    // The others were stopped, not merely abandoned: none checks again.
    let calls: usize = ids.iter().map(|&id| h.probe.calls(id)).sum();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        ids.iter().map(|&id| h.probe.calls(id)).sum::<usize>(),
        calls
    );
}

/// Told to stop (a SIGTERM), the engine starts no scheduled check while the daemon drains,
/// but its actors still run: a resumed integration is still checked at once, as its
/// request asked.
#[tokio::test(start_paused = true)]
async fn a_draining_engine_starts_no_scheduled_check_but_still_handles_changes() {
    let (h, ids) = hundred_active_every_second().await;
    eventually("every integration checked", Duration::from_secs(3), || {
        ids.iter().all(|&id| h.probe.calls(id) >= 1)
    })
    .await;
    h.engine.drain();
    // A check started just before the drain still finishes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = h.probe.total_calls();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        h.probe.total_calls(),
        calls,
        "scheduled checks while draining"
    );
    assert_eq!(h.engine.counters().actors(), 100);

    let resumed = ids[7];
    let before = h.probe.calls(resumed);
    h.engine.changed(resumed, true);
    eventually(
        "the resumed integration checked",
        Duration::from_secs(1),
        || h.probe.calls(resumed) == before + 1,
    )
    .await;
    h.engine.stop().await;
    assert!(!h.engine.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_times_out_and_delays_nobody() {
    let _real_time = real_time().await;
    let interval = Duration::from_millis(200);
    let hanging = id(0);
    let others: Vec<Uuid> = (1..=200).map(id).collect();
    let probe = ScriptedProbe::new(SUCCESS);
    probe.always(hanging, Behaviour::Hang);
    let mut hanging_spec = spec(hanging, Status::Active, interval);
    hanging_spec.timeout = Duration::from_millis(100);
    hanging_spec.thresholds.degraded_after = 100;
    let h = start(
        std::iter::once(hanging_spec)
            .chain(others.iter().map(|&id| spec(id, Status::Active, interval))),
        probe,
        options(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let timeouts = h.ledger.history(hanging);
    assert!(timeouts.len() >= 10, "{}", timeouts.len());
    for entry in &timeouts {
        assert_eq!(
            entry.report.outcome,
            CheckOutcome::Failure(FailureClass::Timeout)
        );
        assert!(entry.report.latency >= Duration::from_millis(100));
        assert!(
            entry.report.latency < interval,
            "{:?}",
            entry.report.latency
        );
    }
    for &other in &others {
        assert!(h.ledger.history(other).len() >= 12, "{other} fell behind");
    }
    let lateness: Vec<Duration> = others
        .iter()
        .flat_map(|&other| h.ledger.history(other))
        .map(|entry| entry.report.lateness)
        .collect();
    let p99 = percentile(lateness, 0.99);
    println!("lateness p99 with a hanging target: {p99:?}");
    assert!(p99 < Duration::from_millis(100), "{p99:?}");
    h.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_probe_is_a_failed_check_of_class_internal_and_nobody_else_notices() {
    let _real_time = real_time().await;
    let interval = Duration::from_millis(100);
    let panicking = id(0);
    let others: Vec<Uuid> = (1..=1000).map(id).collect();
    let probe = ScriptedProbe::new(SUCCESS);
    probe.always(panicking, Behaviour::Panic);
    quiet_scripted_panics();
    let h = start(
        std::iter::once(panicking)
            .chain(others.iter().copied())
            .map(|id| spec(id, Status::Active, interval)),
        probe,
        options(),
    )
    .await;
    let counters = h.engine.counters();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Every panic is a failed check of class `internal`, counted like any failure: degraded
    // after 3, failed after 5 (default thresholds).
    let history = h.ledger.history(panicking);
    assert!(history.len() >= 6, "{} checks in 5 s", history.len());
    assert!(
        history
            .iter()
            .all(|entry| entry.report.outcome == CheckOutcome::Failure(FailureClass::Internal)),
        "{history:?}"
    );
    assert_eq!(
        h.ledger.transitions(panicking),
        [
            (2, Status::Active, Status::Degraded),
            (4, Status::Degraded, Status::Failed)
        ]
    );
    // The actor was never restarted and kept checking: on its 100 ms slots until it failed
    // (a slot is skipped when a check starts too late on this loaded box), then with the
    // failed backoff (DESIGN §4).
    assert_eq!(
        counters.restarts(),
        0,
        "a connector's panic is not the actor's"
    );
    let gaps = gaps_ms(&h.probe.call_times(panicking));
    println!("gaps between checks of the panicking connector (ms): {gaps:?}");
    assert!(gaps[..4].iter().sum::<u128>() < 1000, "{gaps:?}");

    // The supervisor is alive and everyone else kept their schedule.
    assert_eq!(h.engine.actor_count().await.unwrap(), 1001);
    for &other in &others {
        assert!(h.ledger.history(other).len() >= 40, "{other} fell behind");
    }
    let lateness: Vec<Duration> = others
        .iter()
        .flat_map(|&other| h.ledger.history(other))
        .map(|entry| entry.report.lateness)
        .collect();
    let (p99, max) = (
        percentile(lateness.clone(), 0.99),
        percentile(lateness, 1.0),
    );
    println!("lateness of 1000 neighbours: p99 {p99:?}, max {max:?}");
    assert!(p99 < Duration::from_millis(100), "{p99:?}");
    h.engine.stop().await;
}

#[tokio::test(start_paused = true)]
async fn restart_backoff_doubles_and_resets_after_a_healthy_run() {
    quiet_scripted_panics();
    let a = id(1);
    // The actor itself crashes (its ledger panics while it records a result) on these checks.
    let ledger = Arc::new(MemoryLedger::new());
    ledger.insert(spec(a, Status::Active, Duration::from_millis(100)));
    ledger.crash_on_record(a, |call| call < 4 || call == 40);
    let probe = Arc::new(ScriptedProbe::new(SUCCESS));
    // Backoff 50 ms doubling to 800 ms; a run of 1.6 s without a crash resets it.
    let engine = start_on(&ledger, &probe, options()).await;
    let h = Harness {
        engine,
        ledger,
        probe,
    };
    eventually("42 checks", Duration::from_secs(30), || {
        h.probe.calls(a) >= 42
    })
    .await;
    let gaps = gaps_ms(&h.probe.call_times(a));
    // Four crashes in a row wait 50, 100, 200 and 400 ms; each restarted actor then checks
    // at its next 100 ms slot (the phase is kept), so a gap is its backoff rounded up to a
    // slot — or one slot more when the restart lands a hair after a slot boundary.
    let on_slot_after = |gap: u128, backoff: u128| {
        gap >= backoff && gap <= backoff + 100 && gap.is_multiple_of(100)
    };
    for (gap, backoff) in gaps.iter().zip([50, 100, 200, 400]) {
        assert!(on_slot_after(*gap, backoff), "{gaps:?}");
    }
    assert!(gaps[4..40].iter().all(|&gap| gap == 100), "{gaps:?}");
    // After 3.6 s of healthy checks the next crash starts from the base again (not 800 ms).
    assert!(on_slot_after(gaps[40], 50), "{gaps:?}");
    assert_eq!(h.engine.counters().restarts(), 5);
    assert_eq!(h.engine.actor_count().await.unwrap(), 1);
    h.engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawning_a_large_fleet_does_not_hold_up_notifications() {
    let _real_time = real_time().await;
    let hour = Duration::from_secs(3600);
    let fleet: Vec<Uuid> = (1..=50_000).map(id).collect();
    let ledger = Arc::new(MemoryLedger::new());
    for &id in &fleet {
        ledger.insert(spec(id, Status::Active, hour));
    }
    let probe = Arc::new(ScriptedProbe::new(SUCCESS));
    let engine = start_on(&ledger, &probe, options()).await;
    let submitted = id(0);
    ledger.insert(spec(submitted, Status::PendingVerification, hour));
    let started = Instant::now();
    engine.changed(submitted, true);
    // Deleted before its page is spawned: never spawned.
    ledger.remove(*fleet.last().unwrap());
    engine.deleted(*fleet.last().unwrap());
    eventually(
        "submitted integration checked",
        Duration::from_secs(60),
        || probe.calls(submitted) == 1,
    )
    .await;
    let checked_after = started.elapsed();
    engine.spawned().await.unwrap();
    let spawned_after = started.elapsed();
    println!("50k fleet: new integration checked after {checked_after:?}, fleet spawned after {spawned_after:?}");
    assert!(
        checked_after < spawned_after / 2,
        "{checked_after:?} vs {spawned_after:?}"
    );
    assert_eq!(engine.actor_count().await.unwrap(), fleet.len());
    assert_eq!(engine.counters().actors(), fleet.len() as u64);
    engine.stop().await;
}

#[tokio::test]
async fn start_fails_when_the_store_cannot_list_integrations() {
    let ledger = Arc::new(MemoryLedger::<Uuid>::new());
    ledger.set_unavailable(true);
    let started = Engine::start(
        ledger,
        Arc::new(ScriptedProbe::new(SUCCESS)),
        Arc::new(TestClock::new()),
        options(),
    )
    .await;
    assert!(matches!(
        started,
        Err(catalogd_actors::EngineError::Ledger(_))
    ));
}

/// A node of a cluster gives up shards (release) and takes others (rescan): released actors
/// stop at once and stop probing; a rescan spawns what the ledger lists now and leaves the
/// running actors alone.
#[tokio::test(start_paused = true)]
async fn released_actors_stop_at_once_and_a_rescan_spawns_what_the_ledger_now_lists() {
    let ids: Vec<Uuid> = (0..20).map(id).collect();
    let h = start(
        ids.iter()
            .map(|&id| spec(id, Status::Active, Duration::from_secs(1))),
        ScriptedProbe::new(SUCCESS),
        options(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let released: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| id.as_u128() % 2 == 0)
        .collect();
    let stopped = h
        .engine
        .release(|id| id.as_u128() % 2 == 0, Duration::from_secs(5))
        .await;
    assert_eq!(stopped, released.len());
    assert_eq!(
        h.engine.actor_count().await.unwrap(),
        ids.len() - released.len()
    );
    let calls: Vec<usize> = released.iter().map(|id| h.probe.calls(*id)).collect();
    let kept_calls = h.probe.calls(id(1));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: Vec<usize> = released.iter().map(|id| h.probe.calls(*id)).collect();
    assert_eq!(calls, after, "released actors no longer probe");
    assert!(
        h.probe.calls(id(1)) >= kept_calls + 4,
        "the others keep going"
    );

    // The shards come back, with one more integration: a rescan spawns the missing ones.
    h.ledger
        .insert(spec(id(100), Status::Active, Duration::from_secs(1)));
    h.engine.rescan();
    eventually(
        "rescan spawned the released and the new",
        Duration::from_secs(5),
        || {
            h.probe.calls(id(100)) > 0
                && released
                    .iter()
                    .zip(&after)
                    .all(|(id, before)| h.probe.calls(*id) > *before)
        },
    )
    .await;
    assert_eq!(h.engine.actor_count().await.unwrap(), ids.len() + 1);
    h.engine.stop().await;
}

// --- DESIGN §10: dependencies and flapping ----------------------------------------------------

/// A chain A ← B ← C on one engine: when A degrades, B and C hear of it from the supervisor
/// (no store read per check): their failures become class `dependency`, count towards
/// nothing, and `suppressed_by` names A; when A recovers, the suppression lifts and their
/// counters start from zero.
#[tokio::test(start_paused = true)]
async fn a_failing_dependency_suppresses_its_dependents_through_the_engine() {
    let interval = Duration::from_secs(10);
    let (a, b, c) = (id(1), id(2), id(3));
    let mut spec_b = spec(b, Status::Active, interval);
    spec_b.depends_on = Arc::from([a]);
    let mut spec_c = spec(c, Status::Active, interval);
    spec_c.depends_on = Arc::from([b]);
    let probe = ScriptedProbe::new(fail(FailureClass::Connect));
    let a_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let up = a_up.clone();
    probe.script(a, move |_| {
        if up.load(std::sync::atomic::Ordering::SeqCst) {
            SUCCESS
        } else {
            fail(FailureClass::Connect)
        }
    });
    let h = start(
        [
            with_thresholds(spec(a, Status::Active, interval), 1, 100, 1),
            with_thresholds(spec_b, 3, 100, 1),
            with_thresholds(spec_c, 3, 100, 1),
        ],
        probe,
        options(),
    )
    .await;
    eventually("a degraded", Duration::from_secs(60), || {
        h.ledger.get(a).unwrap().lifecycle.status == Status::Degraded
    })
    .await;
    eventually("b and c suppressed by a", Duration::from_secs(60), || {
        *h.ledger.get(b).unwrap().suppressed_by == [a]
            && *h.ledger.get(c).unwrap().suppressed_by == [a]
    })
    .await;
    eventually(
        "both counted as suppressed",
        Duration::from_secs(10),
        || h.engine.counters().suppressed() == 2,
    )
    .await;
    // Ten more intervals of failures: B and C stay active.
    tokio::time::sleep(interval * 10).await;
    for dependent in [b, c] {
        assert_eq!(
            h.ledger.get(dependent).unwrap().lifecycle.status,
            Status::Active
        );
        let history = h.ledger.history(dependent);
        let dependency = history
            .iter()
            .filter(|e| e.report.outcome == CheckOutcome::Failure(FailureClass::Dependency))
            .count();
        assert!(dependency >= 9, "{dependency} dependency failures");
        assert!(h.ledger.transitions(dependent).is_empty());
    }
    // A recovers: the suppression lifts, and B and C count from zero: degraded only after
    // three failures of their own.
    a_up.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("suppression lifted", Duration::from_secs(60), || {
        h.ledger.get(b).unwrap().suppressed_by.is_empty()
            && h.ledger.get(c).unwrap().suppressed_by.is_empty()
    })
    .await;
    eventually("b degraded", Duration::from_secs(120), || {
        h.ledger.get(b).unwrap().lifecycle.status == Status::Degraded
    })
    .await;
    let history = h.ledger.history(b);
    let last_dependency = history
        .iter()
        .rposition(|e| e.report.outcome == CheckOutcome::Failure(FailureClass::Dependency))
        .unwrap();
    let own: Vec<_> = history[last_dependency + 1..]
        .iter()
        .map(|e| e.lifecycle.consecutive_failures)
        .collect();
    assert_eq!(own, [1, 2, 3], "counting started fresh");
    // B is now degraded by its own failures, so C is suppressed by B (C, failing too, may
    // have degraded by its own fresh failures first: the two count at the same pace).
    eventually("c suppressed by b", Duration::from_secs(60), || {
        *h.ledger.get(c).unwrap().suppressed_by == [b] && h.engine.counters().suppressed() == 1
    })
    .await;
    h.engine.stop().await;
}

/// A target that flips at every check flaps: after `threshold` transitions one `flapping`
/// event, then none while it flips; once it holds still for a window, one `stable` event
/// with its final status.
#[tokio::test(start_paused = true)]
async fn a_flipping_target_flaps_then_settles() {
    let interval = Duration::from_secs(10);
    let flipping = id(1);
    let probe = ScriptedProbe::new(SUCCESS);
    // Fails on odd calls for the first 12 checks, then fails for good.
    probe.script(flipping, |call| {
        if call < 12 && call % 2 == 0 {
            SUCCESS
        } else {
            fail(FailureClass::HttpStatus)
        }
    });
    let h = start(
        [with_thresholds(
            spec(flipping, Status::Active, interval),
            1,
            100,
            1,
        )],
        probe,
        EngineOptions {
            flap: FlapOptions {
                threshold: 4,
                window: Duration::from_secs(120),
            },
            ..options()
        },
    )
    .await;
    eventually("flapping", Duration::from_secs(600), || {
        h.engine.counters().flapping() == 1
    })
    .await;
    eventually("stable", Duration::from_secs(600), || {
        h.ledger
            .events(flipping)
            .last()
            .is_some_and(|(kind, _)| *kind == EventKind::Stable)
    })
    .await;
    let events = h.ledger.events(flipping);
    assert_eq!(
        events,
        [
            (EventKind::Unhealthy, Status::Degraded),
            (EventKind::Healthy, Status::Active),
            (EventKind::Unhealthy, Status::Degraded),
            (EventKind::Flapping, Status::Active),
            (EventKind::Stable, Status::Degraded),
        ]
    );
    // Every transition was committed all the same: 11 status changes, and the commit of
    // `stable` (status unchanged).
    assert_eq!(h.ledger.transitions(flipping).len(), 11 + 1);
    assert!(!h.ledger.get(flipping).unwrap().flap.flapping);
    eventually("none counted as flapping", Duration::from_secs(10), || {
        h.engine.counters().flapping() == 0
    })
    .await;
    h.engine.stop().await;
}

/// A maintenance window (DESIGN §10) opening while an integration is failing its checks:
/// the checks go on, marked, and count towards nothing (no transition, no `unhealthy`);
/// `maintenance_started` and `maintenance_ended` are published; after the window, with the
/// target still down, counting starts fresh: degraded only after `degraded_after` new
/// failures.
#[tokio::test(start_paused = true)]
async fn a_maintenance_window_holds_the_status_and_counting_starts_fresh_after_it() {
    use catalogd_actors::testing::TestWindow;
    let interval = Duration::from_secs(10);
    let failing = id(1);
    let ledger = Arc::new(MemoryLedger::new());
    ledger.insert(with_thresholds(
        spec(failing, Status::Active, interval),
        3,
        100,
        1,
    ));
    let probe = Arc::new(ScriptedProbe::new(fail(FailureClass::Connect)));
    let clock = Arc::new(TestClock::new());
    let engine = Engine::start(ledger.clone(), probe.clone(), clock.clone(), options())
        .await
        .expect("engine starts");
    engine.spawned().await.expect("fleet spawned");

    eventually("two failures counted", Duration::from_secs(60), || {
        ledger.get(failing).unwrap().lifecycle.consecutive_failures == 2
    })
    .await;
    // The window opens now, while the integration is one failure from degraded.
    let window_id = Uuid::from_u128(42);
    let opens = catalogd_actors::Clock::now(&*clock);
    let closes = opens + chrono::Duration::seconds(60);
    ledger.add_window(TestWindow {
        window_id,
        integrations: vec![failing],
        starts_at: opens,
        ends_at: closes,
    });
    engine.calendar_changed();
    eventually("in maintenance", Duration::from_secs(5), || {
        ledger.get(failing).unwrap().maintenance.is_some()
            && engine.counters().in_maintenance() == 1
    })
    .await;
    let stored = ledger.get(failing).unwrap();
    assert_eq!(stored.maintenance.unwrap().window_id, window_id);
    assert_eq!(stored.maintenance.unwrap().ends_at, closes);
    assert_eq!(
        stored.lifecycle.consecutive_failures, 0,
        "counting starts fresh"
    );
    let during = probe.calls(failing);

    eventually("out of maintenance", Duration::from_secs(120), || {
        ledger.get(failing).unwrap().maintenance.is_none()
    })
    .await;
    assert_eq!(engine.counters().in_maintenance(), 0);
    let checked_in_window = probe.calls(failing) - during;
    assert!(
        checked_in_window >= 5,
        "still checked in the window: {checked_in_window}"
    );
    let history = ledger.history(failing);
    let marked = history.iter().filter(|e| e.maintenance).count();
    assert!(marked >= 5, "{marked} checks marked as in maintenance");
    assert!(
        history
            .iter()
            .filter(|e| e.maintenance)
            .all(|e| e.lifecycle.consecutive_failures == 0 && e.transition.is_none()),
        "a check in maintenance counts towards nothing"
    );
    assert_eq!(
        ledger.get(failing).unwrap().lifecycle.status,
        Status::Active
    );

    eventually(
        "degraded after the window",
        Duration::from_secs(120),
        || ledger.get(failing).unwrap().lifecycle.status == Status::Degraded,
    )
    .await;
    let history = ledger.history(failing);
    let last_marked = history.iter().rposition(|e| e.maintenance).unwrap();
    let after: Vec<u32> = history[last_marked + 1..]
        .iter()
        .map(|e| e.lifecycle.consecutive_failures)
        .collect();
    assert_eq!(after, [1, 2, 3], "counting started fresh after the window");
    let events: Vec<EventKind> = ledger.events(failing).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        events,
        [
            EventKind::MaintenanceStarted,
            EventKind::MaintenanceEnded,
            EventKind::Unhealthy
        ]
    );
    engine.stop().await;
}

/// Records the network guard's changes.
#[derive(Default)]
struct GuardChanges(std::sync::Mutex<Vec<catalogd_actors::NetworkChange>>);

impl catalogd_actors::NetworkGuardReporter for GuardChanges {
    fn changed(&self, change: &catalogd_actors::NetworkChange) {
        self.0.lock().unwrap().push(*change);
    }
}

/// The network guard (DESIGN §10) shared by a fleet whose every check fails with `connect`:
/// from the 20th check on the network is impaired, the transitions are held (the failures
/// still counted) for the hold, and then each integration's next check makes the transition
/// its counters call for — straight to failed.
#[tokio::test(start_paused = true)]
async fn the_network_guard_holds_a_fleet_wide_outage_for_the_hold_only() {
    let second = Duration::from_secs(1);
    let hold = Duration::from_secs(20);
    let ids: Vec<Uuid> = (1..=30).map(id).collect();
    let changes = Arc::new(GuardChanges::default());
    let guard = Arc::new(catalogd_actors::NetworkGuard::new(
        catalogd_actors::NetworkGuardOptions {
            window: Duration::from_secs(10),
            ratio: 0.5,
            hold,
        },
        changes.clone(),
    ));
    let h = start(
        ids.iter().map(|&id| spec(id, Status::Active, second)),
        ScriptedProbe::new(fail(FailureClass::Connect)),
        EngineOptions {
            network_guard: Some(guard.clone()),
            ..options()
        },
    )
    .await;
    let began = Instant::now();
    eventually("every integration failed", Duration::from_secs(120), || {
        ids.iter()
            .all(|&id| h.ledger.get(id).unwrap().lifecycle.status == Status::Failed)
    })
    .await;
    // Nothing moved within the hold; then every integration went straight to failed, at a
    // check whose counters were past failed_after (5): none was lost while held.
    assert!(began.elapsed() >= hold, "{:?}", began.elapsed());
    for &id in &ids {
        let transitions = h.ledger.transitions(id);
        assert_eq!(transitions.len(), 1, "{transitions:?}");
        let (index, from, to) = transitions[0];
        assert_eq!((from, to), (Status::Active, Status::Failed));
        assert!(index >= 18, "{id}: transitioned at check {index}");
        assert_eq!(
            h.ledger.events(id),
            [(EventKind::Unhealthy, Status::Failed)]
        );
    }
    assert!(guard.impaired());
    let seen = changes.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].impaired && seen[0].checks >= 20, "{seen:?}");
}
