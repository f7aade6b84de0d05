//! Matching (SPEC §5): which Workfront searches an employee needs, and what their answers mean.
//!
//! Shared by the pipeline and reconciliation, so that a reconciliation reports exactly what a
//! deactivation would have found. Both functions are pure; the caller runs the searches.

use crate::config::{Identifier, MatchingSettings};
use crate::workfront::User;

/// One `user/search` to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Search {
    pub ident: Identifier,
    pub field: String,
    pub value: String,
    pub modifier: String,
}

/// What matching found.
#[derive(Debug)]
pub(crate) enum Match {
    One(User),
    NoOne,
    Ambiguous(Vec<User>),
}

/// The searches for the identifiers the employee has, in `matching.order`.
pub(crate) fn searches(
    m: &MatchingSettings,
    employee_id: Option<&str>,
    email: Option<&str>,
) -> Vec<Search> {
    m.order
        .iter()
        .filter_map(|ident| {
            let (field, value, modifier) = match ident {
                Identifier::EmployeeId => (m.employee_id_field.as_str(), employee_id?, "eq"),
                Identifier::Email => ("emailAddr", email?, m.email_mod.as_str()),
            };
            Some(Search {
                ident: *ident,
                field: field.to_string(),
                value: value.to_string(),
                modifier: modifier.to_string(),
            })
        })
        .collect()
}

/// Every search that finds someone must find the same single user: two users for one search, or
/// different users for different identifiers, is ambiguous.
pub(crate) fn decide(answers: Vec<Vec<User>>) -> Match {
    let mut found: Vec<User> = Vec::new();
    let mut ambiguous = false;
    for users in answers {
        ambiguous |= users.len() > 1;
        for u in users {
            if !found.iter().any(|f| f.id == u.id) {
                found.push(u);
            }
        }
    }
    match found.len() {
        0 => Match::NoOne,
        1 if !ambiguous => Match::One(found.remove(0)),
        _ => Match::Ambiguous(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MatchingSettings {
        MatchingSettings {
            order: vec![Identifier::EmployeeId, Identifier::Email],
            employee_id_field: "extRefID".into(),
            email_mod: "cieq".into(),
        }
    }

    fn user(id: &str) -> User {
        serde_json::from_value(serde_json::json!({ "ID": id })).unwrap()
    }

    #[test]
    fn searches_follow_the_order_and_skip_identifiers_the_employee_lacks() {
        let s = searches(&settings(), Some("E1"), Some("a@example.com"));
        assert_eq!(
            s.iter()
                .map(|s| (s.field.as_str(), s.value.as_str(), s.modifier.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("extRefID", "E1", "eq"),
                ("emailAddr", "a@example.com", "cieq")
            ]
        );
        let only_email = searches(&settings(), None, Some("a@example.com"));
        assert_eq!(only_email.len(), 1);
        assert_eq!(only_email[0].ident, Identifier::Email);
        assert!(searches(&settings(), None, None).is_empty());
    }

    #[test]
    fn the_same_user_found_by_both_identifiers_is_one_match() {
        assert!(
            matches!(decide(vec![vec![user("u1")], vec![user("u1")]]), Match::One(u) if u.id == "u1")
        );
        assert!(matches!(
            decide(vec![vec![], vec![user("u1")]]),
            Match::One(_)
        ));
    }

    #[test]
    fn different_users_or_two_for_one_search_are_ambiguous_and_none_is_no_one() {
        assert!(
            matches!(decide(vec![vec![user("u1")], vec![user("u2")]]), Match::Ambiguous(c) if c.len() == 2)
        );
        assert!(matches!(
            decide(vec![vec![user("u1"), user("u2")]]),
            Match::Ambiguous(_)
        ));
        // Two answers from one search with the same ID still mean the search was not unique.
        assert!(matches!(
            decide(vec![vec![user("u1"), user("u1")]]),
            Match::Ambiguous(_)
        ));
        assert!(matches!(decide(vec![vec![], vec![]]), Match::NoOne));
    }
}
