//! The one clock of a running service.
//!
//! Everything that decides by time (due times, HR-timestamp skew, signature tolerance, the brake's
//! window, leases, retention) asks the [`Clock`] held by the application state and the store,
//! never the system clock directly. In production it is the system clock; tests use
//! [`Clock::manual`] and move it forward instead of waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

/// The system clock, optionally shifted forward by tests.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds added to the system time; `None` for the plain system clock.
    shift_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that runs with the system clock and can be moved forward with [`Clock::advance`].
    pub fn manual() -> Clock {
        Clock {
            shift_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    pub fn now(&self) -> Timestamp {
        let wall = Timestamp::now();
        match &self.shift_ms {
            None => wall,
            Some(shift) => {
                let ms = wall.as_millisecond() + shift.load(Ordering::SeqCst);
                Timestamp::from_millisecond(ms).unwrap_or(wall)
            }
        }
    }

    /// Milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// Moves a manual clock forward (every clone sees it); the system clock cannot be moved.
    pub fn advance(&self, by: Duration) {
        let shift = self
            .shift_ms
            .as_ref()
            .expect("only a Clock::manual() can be advanced");
        shift.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_forward_for_every_clone() {
        let clock = Clock::manual();
        let other = clock.clone();
        let before = other.now();
        clock.advance(Duration::from_secs(3600));
        let after = other.now();
        assert!(after.as_millisecond() - before.as_millisecond() >= 3_600_000);
    }

    #[test]
    #[should_panic(expected = "manual")]
    fn the_system_clock_cannot_be_moved() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
