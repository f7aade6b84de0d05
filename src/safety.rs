//! Safety decisions, in one place: may this deactivation go ahead?
//!
//! Checked in this order, the first that applies wins: protected users (`protected_user`),
//! Workfront admins (`admin_user`), approval mode (`approval_required`). An operator's approval
//! lifts these holds. Dry run does not hold: every step runs and is audited, and only the write is
//! replaced by `skipped/dry_run`. Reactivations restore access, so they have their own approval
//! switch (`require_approval_for_reactivation`) and their own brake; protection and admin holds
//! are about taking access away and do not apply to them.

use crate::config::SafetySettings;
use crate::domain::{ActionKind, Reason};
use crate::workfront::User;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Proceed,
    Hold(Reason, String),
}

pub fn decide(s: &SafetySettings, kind: ActionKind, user: &User, approved: bool) -> Decision {
    if approved {
        return Decision::Proceed;
    }
    if kind == ActionKind::Reactivate {
        if s.require_approval_for_reactivation {
            return Decision::Hold(
                Reason::ApprovalRequired,
                "safety.require_approval_for_reactivation is on".into(),
            );
        }
        return Decision::Proceed;
    }
    let id = user.id.to_lowercase();
    let email = user.email.as_deref().map(str::to_lowercase);
    let username = user.username.as_deref().map(str::to_lowercase);
    if let Some(p) = s
        .protected
        .iter()
        .find(|p| **p == id || Some(*p) == email.as_ref() || Some(*p) == username.as_ref())
    {
        return Decision::Hold(
            Reason::ProtectedUser,
            format!("{p} is listed in safety.protected"),
        );
    }
    if s.protect_admins && user.is_admin == Some(true) {
        return Decision::Hold(
            Reason::AdminUser,
            "the user is a Workfront admin and safety.protect_admins is on".into(),
        );
    }
    if s.require_approval {
        return Decision::Hold(
            Reason::ApprovalRequired,
            "safety.require_approval is on".into(),
        );
    }
    Decision::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> SafetySettings {
        SafetySettings {
            dry_run: false,
            require_approval: false,
            protect_admins: true,
            protected: vec!["ceo@example.com".into(), "abc123".into()],
            brake_max: 25,
            brake_window: Duration::from_secs(3600),
            reactivation_brake_max: 10,
            require_approval_for_reactivation: false,
        }
    }

    fn user(id: &str, email: &str, admin: bool) -> User {
        User {
            id: id.into(),
            name: None,
            email: Some(email.into()),
            username: Some(email.into()),
            ext_ref_id: None,
            is_active: Some(true),
            is_admin: Some(admin),
        }
    }

    #[test]
    fn protected_users_are_held_by_email_or_id_ignoring_case() {
        let s = settings();
        assert!(matches!(
            decide(
                &s,
                ActionKind::Deactivate,
                &user("x", "CEO@example.com", false),
                false
            ),
            Decision::Hold(Reason::ProtectedUser, _)
        ));
        assert!(matches!(
            decide(
                &s,
                ActionKind::Deactivate,
                &user("ABC123", "a@example.com", false),
                false
            ),
            Decision::Hold(Reason::ProtectedUser, _)
        ));
    }

    #[test]
    fn admins_are_held_unless_protection_is_off() {
        let mut s = settings();
        assert!(matches!(
            decide(
                &s,
                ActionKind::Deactivate,
                &user("x", "a@example.com", true),
                false
            ),
            Decision::Hold(Reason::AdminUser, _)
        ));
        s.protect_admins = false;
        assert_eq!(
            decide(
                &s,
                ActionKind::Deactivate,
                &user("x", "a@example.com", true),
                false
            ),
            Decision::Proceed
        );
    }

    #[test]
    fn approval_mode_holds_everything_until_approved() {
        let mut s = settings();
        s.require_approval = true;
        let u = user("x", "a@example.com", false);
        assert!(matches!(
            decide(&s, ActionKind::Deactivate, &u, false),
            Decision::Hold(Reason::ApprovalRequired, _)
        ));
        assert_eq!(
            decide(&s, ActionKind::Deactivate, &u, true),
            Decision::Proceed
        );
    }

    #[test]
    fn reactivations_ignore_deactivation_holds_but_obey_their_own_approval_switch() {
        let mut s = settings();
        s.require_approval = true;
        let protected_admin = user("abc123", "ceo@example.com", true);
        assert_eq!(
            decide(&s, ActionKind::Reactivate, &protected_admin, false),
            Decision::Proceed
        );
        s.require_approval_for_reactivation = true;
        assert!(matches!(
            decide(&s, ActionKind::Reactivate, &protected_admin, false),
            Decision::Hold(Reason::ApprovalRequired, _)
        ));
        assert_eq!(
            decide(&s, ActionKind::Reactivate, &protected_admin, true),
            Decision::Proceed,
            "an operator's approval lifts it"
        );
    }
}
