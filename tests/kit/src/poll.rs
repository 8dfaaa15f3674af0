//! Waiting for a condition with a deadline: the one way every test and the benchmark runner
//! wait, instead of sleeping and hoping.
//!
//! A condition is a closure, plain or `async`, returning `bool` (holds or not) or `Option<T>`
//! (holds with a value). Time is tokio's, so the same helper works on a paused test clock,
//! where the deadline is virtual, and in real time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] tries its condition.
pub const EVERY: Duration = Duration::from_millis(10);

/// What a condition answers: whether it holds, and with which value.
pub trait Outcome {
    type Value;
    fn holds(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn holds(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn holds(self) -> Option<T> {
        self
    }
}

/// Marks a plain closure condition (the type parameter lets one function take both kinds).
pub struct Plain;
/// Marks an `async` closure condition.
pub struct Async;

/// A condition to poll: `|| bool`, `|| Option<T>`, or either returned by a future.
pub trait Condition<Kind> {
    type Outcome: Outcome;
    fn check(&mut self) -> impl Future<Output = Self::Outcome>;
}

impl<F, O> Condition<Plain> for F
where
    F: FnMut() -> O,
    O: Outcome,
{
    type Outcome = O;
    fn check(&mut self) -> impl Future<Output = O> {
        std::future::ready(self())
    }
}

impl<F, Fut, O> Condition<Async> for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Outcome,
{
    type Outcome = O;
    fn check(&mut self) -> impl Future<Output = O> {
        self()
    }
}

/// The condition did not hold before the deadline.
#[derive(Debug)]
pub struct TimedOut {
    pub what: String,
    pub within: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not within {:?}: {}", self.within, self.what)
    }
}

impl std::error::Error for TimedOut {}

/// Tries `condition` every `every` until it holds or `within` has passed; tries once more at
/// the deadline, so a condition that holds by then is never reported as late.
pub async fn poll<K, C>(
    what: &str,
    within: Duration,
    every: Duration,
    mut condition: C,
) -> Result<<C::Outcome as Outcome>::Value, TimedOut>
where
    C: Condition<K>,
{
    let deadline = Instant::now() + within;
    loop {
        let late = Instant::now() >= deadline;
        if let Some(value) = condition.check().await.holds() {
            return Ok(value);
        }
        if late {
            return Err(TimedOut {
                what: what.to_owned(),
                within,
            });
        }
        tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Waits until `condition` holds (every [`EVERY`]) and returns its value; panics with `what`
/// if it does not within `within`.
pub async fn eventually<K, C>(
    what: &str,
    within: Duration,
    condition: C,
) -> <C::Outcome as Outcome>::Value
where
    C: Condition<K>,
{
    match poll(what, within, EVERY, condition).await {
        Ok(value) => value,
        Err(timed_out) => panic!("{timed_out}"),
    }
}

/// Whether `condition` holds within `within`, for tests that assert on the answer.
pub async fn holds_within<K, C>(within: Duration, condition: C) -> bool
where
    C: Condition<K>,
{
    poll("", within, EVERY, condition).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_and_async_conditions_with_and_without_values() {
        let mut n = 0;
        eventually("plain", Duration::from_secs(5), || {
            n += 1;
            n > 2
        })
        .await;
        let value = eventually("async value", Duration::from_secs(5), || async { Some(7) }).await;
        assert_eq!(value, 7);
        assert!(!holds_within(Duration::from_millis(30), || false).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_on_the_test_clock() {
        let started = Instant::now();
        let timed_out = poll("never", Duration::from_secs(60), EVERY, || false)
            .await
            .unwrap_err();
        assert_eq!(timed_out.to_string(), "not within 60s: never");
        assert_eq!(Instant::now() - started, Duration::from_secs(60));
    }

    #[tokio::test]
    #[should_panic(expected = "not within 20ms: the answer")]
    async fn eventually_panics_with_the_description() {
        eventually("the answer", Duration::from_millis(20), || async { false }).await;
    }
}
