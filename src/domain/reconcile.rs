//! Reconciliation (SPEC §12): what Workfront says now about someone who left.
//!
//! A list of leavers is checked row by row with the worker's matching (search only). Each row ends
//! with one [`Outcome`]; [`decide`] is the one place that turns what was found into it. `active`
//! is a **gap**: someone who left still has access.

use std::fmt;

/// The source of the deactivations a reconciliation creates for its gaps (a reserved name).
pub const RECONCILE_SOURCE: &str = "reconcile";

/// What a reconciliation found for one leaver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Their Workfront user is deactivated: fine.
    Inactive,
    /// Their Workfront user is still active and nothing of ours is on the way: a gap.
    Active,
    /// No Workfront user matches them.
    NotFound,
    /// Several Workfront users match them; nothing is decided for an operator.
    Ambiguous,
    /// An action of ours is already waiting for them (scheduled, pending, running or held).
    Pending,
    /// The row names nobody (no identifier) or cannot be read.
    Invalid,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Inactive,
        Outcome::Active,
        Outcome::NotFound,
        Outcome::Ambiguous,
        Outcome::Pending,
        Outcome::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Inactive => "inactive",
            Outcome::Active => "active",
            Outcome::NotFound => "not_found",
            Outcome::Ambiguous => "ambiguous",
            Outcome::Pending => "pending",
            Outcome::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the search found, reduced to what the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    NoOne,
    /// Exactly one user; whether Workfront says it is active (`None`: the answer did not say,
    /// which is read as active: an unknown state is not proof of lost access).
    One {
        active: Option<bool>,
    },
    Several,
}

/// The outcome of one leaver: `open_action` is whether an action of ours waits for them.
///
/// A user already inactive is `inactive` even with an action waiting (the proof is Workfront's
/// state); otherwise a waiting action makes it `pending`, not a gap, since offboard is on it.
pub fn decide(found: Found, open_action: bool) -> Outcome {
    match found {
        Found::One {
            active: Some(false),
        } => Outcome::Inactive,
        _ if open_action => Outcome::Pending,
        Found::One { .. } => Outcome::Active,
        Found::NoOne => Outcome::NotFound,
        Found::Several => Outcome::Ambiguous,
    }
}

/// `rec_` and 32 lower-case hex digits: the only reconciliation ids this API gives out.
pub fn is_reconciliation_id(s: &str) -> bool {
    s.strip_prefix("rec_").is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inactive_user_is_inactive_even_with_an_action_waiting() {
        let found = Found::One {
            active: Some(false),
        };
        assert_eq!(decide(found, false), Outcome::Inactive);
        assert_eq!(decide(found, true), Outcome::Inactive);
    }

    #[test]
    fn an_active_user_is_a_gap_unless_an_action_waits() {
        let found = Found::One { active: Some(true) };
        assert_eq!(decide(found, false), Outcome::Active);
        assert_eq!(decide(found, true), Outcome::Pending);
    }

    #[test]
    fn a_user_whose_state_workfront_did_not_say_counts_as_active() {
        assert_eq!(decide(Found::One { active: None }, false), Outcome::Active);
    }

    #[test]
    fn no_match_and_several_matches_are_reported_as_such_unless_an_action_waits() {
        assert_eq!(decide(Found::NoOne, false), Outcome::NotFound);
        assert_eq!(decide(Found::Several, false), Outcome::Ambiguous);
        assert_eq!(decide(Found::NoOne, true), Outcome::Pending);
        assert_eq!(decide(Found::Several, true), Outcome::Pending);
    }

    #[test]
    fn outcomes_round_trip_through_their_names() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("gap"), None);
    }

    #[test]
    fn reconciliation_ids_are_rec_and_32_hex_digits() {
        assert!(is_reconciliation_id(&crate::domain::new_id("rec")));
        assert!(!is_reconciliation_id("rec_123"));
        assert!(!is_reconciliation_id(
            "act_0123456789abcdef0123456789abcdef"
        ));
        assert!(!is_reconciliation_id(
            "rec_0123456789ABCDEF0123456789ABCDEF"
        ));
    }
}
