//! The one way these tests wait: poll a condition until it holds or a deadline passes.
//!
//! Tests never sleep a fixed time and then assert; they ask "is it so yet?" every few
//! milliseconds and fail with the last state they saw when the deadline passes. The poll interval
//! only bounds how quickly a test notices, never whether it passes.

use std::future::Future;
use std::time::Duration;

/// How often a condition is asked again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `probe` until it returns `Ok`, and returns that value. `Err` carries what the probe saw,
/// so a timeout names the state the test was stuck in.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut ask = tokio::time::interval(POLL);
    ask.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ask.tick().await;
        match probe().await {
            Ok(v) => return v,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last seen: {seen}"
            ),
        }
    }
}

/// [`until`] for a synchronous condition.
pub async fn until_true(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    until(what, within, || {
        let ok = done();
        async move {
            if ok {
                Ok(())
            } else {
                Err("not yet".into())
            }
        }
    })
    .await
}
