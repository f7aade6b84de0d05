//! The adaptive concurrency limit (AIMD), decided: Workfront caps concurrent requests per
//! customer at a number offboard may not know. On a 429 the limit drops to `DECREASE` of itself
//! (0.8: gentler than halving, so the fleet keeps most of its pace around the cap) — once per
//! generation of calls: a 429 lowers it only while the limit is still at least the number of
//! slots the call was admitted under, so a burst of 429s from calls admitted under an older,
//! higher limit (or a replica's stale copy of it) counts once, and an unknown cap is found within
//! a few round trips. After a run of `RUN` × limit successes it grows by one, so it probes above
//! the cap rarely. It never leaves `1..=max`.

/// The share of the limit kept after a 429.
pub const DECREASE: f64 = 0.8;

/// Successes per unit of limit before the limit grows by one.
pub const RUN: u64 = 32;

/// The limit after a 429 on a call admitted when `admitted_slots` calls were allowed.
pub fn after_rate_limited(limit: f64, admitted_slots: usize) -> Option<f64> {
    (limit >= admitted_slots as f64).then(|| (limit * DECREASE).max(1.0))
}

/// The limit after `successes` in a row: one more per `RUN` × `limit` successes, at most `max`.
pub fn after_successes(limit: f64, successes: u64, max: usize) -> Option<f64> {
    let needed = RUN * limit.ceil().max(1.0) as u64;
    (successes >= needed && limit < max as f64).then(|| (limit + 1.0).min(max as f64))
}

/// The number of calls the limit allows at once.
pub fn slots(limit: f64, max: usize) -> usize {
    (limit.floor() as usize).clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_lowers_the_limit_once_per_generation_of_calls_and_never_below_one() {
        assert_eq!(after_rate_limited(10.0, 10), Some(8.0));
        assert_eq!(
            after_rate_limited(8.0, 10),
            None,
            "admitted under the older limit"
        );
        assert_eq!(
            after_rate_limited(8.0, 8),
            Some(6.4),
            "admitted under the current one"
        );
        assert_eq!(after_rate_limited(1.0, 1), Some(1.0));
    }

    #[test]
    fn successes_raise_the_limit_slowly_up_to_max() {
        assert_eq!(after_successes(4.0, 4 * RUN - 1, 10), None);
        assert_eq!(after_successes(4.0, 4 * RUN, 10), Some(5.0));
        assert_eq!(after_successes(10.0, 1000, 10), None, "never above max");
        assert_eq!(after_successes(9.5, 10 * RUN, 10), Some(10.0));
    }

    #[test]
    fn slots_are_whole_and_within_bounds() {
        assert_eq!(slots(3.7, 10), 3);
        assert_eq!(slots(0.2, 10), 1);
        assert_eq!(slots(50.0, 10), 10);
    }
}
