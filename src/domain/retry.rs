//! The retry policy: a small value type.
//!
//! An action gets a first attempt, then one more per entry of `schedule`, waiting that entry's
//! duration multiplied by a random factor in `[1 - jitter, 1 + jitter]` (so a burst of failures does
//! not come back as a burst). After the last entry the action is `failed/retries_exhausted`.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter: f64,
}

impl RetryPolicy {
    /// `jitter` is clamped into `0.0..=1.0`.
    pub fn new(schedule: Vec<Duration>, jitter: f64) -> Self {
        Self {
            schedule,
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    pub fn schedule(&self) -> &[Duration] {
        &self.schedule
    }

    /// How many attempts an action gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }

    /// After `attempts` failed attempts (1 = the first one failed): how long to wait before the
    /// next, or `None` when the budget is spent. `unit` is a random number in `[0, 1)`.
    pub fn next_delay(&self, attempts: u32, unit: f64) -> Option<Duration> {
        let base = *self.schedule.get(attempts.checked_sub(1)? as usize)?;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Some(base.mul_f64(factor.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy::new(
            vec![
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            jitter,
        )
    }

    #[test]
    fn each_schedule_entry_gives_one_more_attempt_then_none() {
        let p = policy(0.0);
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.next_delay(1, 0.5), Some(Duration::from_secs(10)));
        assert_eq!(p.next_delay(2, 0.5), Some(Duration::from_secs(30)));
        assert_eq!(p.next_delay(3, 0.5), Some(Duration::from_secs(120)));
        assert_eq!(p.next_delay(4, 0.5), None);
        assert_eq!(p.next_delay(0, 0.5), None);
    }

    #[test]
    fn an_empty_schedule_means_a_single_attempt() {
        let p = RetryPolicy::new(vec![], 0.2);
        assert_eq!(p.max_attempts(), 1);
        assert_eq!(p.next_delay(1, 0.3), None);
    }

    #[test]
    fn jitter_stays_within_its_band_for_any_random_draw() {
        let p = policy(0.2);
        // A property over many draws, including both ends of the unit interval.
        let mut draws: Vec<f64> = (0..=1000).map(|i| i as f64 / 1000.0).collect();
        draws.extend((0..1000).map(|_| fastrand::f64()));
        for attempt in 1..=3u32 {
            let base = p.schedule()[attempt as usize - 1];
            for &u in &draws {
                let d = p.next_delay(attempt, u).unwrap();
                assert!(
                    d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                    "{d:?} for {u}"
                );
            }
        }
        assert_eq!(p.next_delay(1, 0.0), Some(Duration::from_secs(8)));
        assert_eq!(p.next_delay(1, 1.0), Some(Duration::from_secs(12)));
    }

    #[test]
    fn jitter_out_of_range_is_clamped() {
        let p = RetryPolicy::new(vec![Duration::from_secs(10)], 5.0);
        assert_eq!(p.next_delay(1, 0.0), Some(Duration::ZERO));
    }
}
