//! The mass-change brake, decided: may one more write of this kind go ahead?
//!
//! More than `max` writes of one kind (deactivations, or reactivations with their own limit)
//! within the sliding window: the rest are held `rate_brake` until an operator releases them. The
//! store counts the window's writes and applies the decision in the write gate's transaction.

/// A brake's limit for one kind of write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrakeLimit {
    pub max: u32,
    pub window_ms: i64,
}

/// What the brake says about one more write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrakeDecision {
    /// Go ahead; `disengage` when the brake was engaged and writes flow again.
    Pass { disengage: bool },
    /// Hold it; `newly_engaged` when this hold engages the brake (one notification per engagement).
    Hold { newly_engaged: bool },
}

/// `recent`: writes of this kind already started within the window; `engaged`: the brake's flag.
pub fn decide(recent: i64, limit: BrakeLimit, engaged: bool) -> BrakeDecision {
    if recent >= i64::from(limit.max) {
        BrakeDecision::Hold {
            newly_engaged: !engaged,
        }
    } else {
        BrakeDecision::Pass { disengage: engaged }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: BrakeLimit = BrakeLimit {
        max: 3,
        window_ms: 1000,
    };

    #[test]
    fn writes_up_to_the_limit_pass_and_the_next_is_held() {
        for recent in 0..3 {
            assert_eq!(
                decide(recent, LIMIT, false),
                BrakeDecision::Pass { disengage: false }
            );
        }
        assert_eq!(
            decide(3, LIMIT, false),
            BrakeDecision::Hold {
                newly_engaged: true
            }
        );
        assert_eq!(
            decide(4, LIMIT, true),
            BrakeDecision::Hold {
                newly_engaged: false
            }
        );
    }

    #[test]
    fn an_engaged_brake_disengages_once_the_window_has_room() {
        assert_eq!(
            decide(1, LIMIT, true),
            BrakeDecision::Pass { disengage: true }
        );
    }

    #[test]
    fn a_zero_limit_holds_every_write() {
        let zero = BrakeLimit {
            max: 0,
            window_ms: 1,
        };
        assert!(matches!(decide(0, zero, false), BrakeDecision::Hold { .. }));
    }
}
