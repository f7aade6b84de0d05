//! The vocabulary of offboarding, free of I/O.
//!
//! A delivery carries events ([`Event`]); an event about a termination becomes an action
//! ([`ActionKind`]) with a due time ([`due`]); an action moves through [`Status`]es, and ends with a
//! [`Reason`]; each thing done to it is a [`Step`] of its audit trail. The string forms are part of the public contract (SPEC §6) and are what the store
//! persists, so they never change.

pub mod brake;
pub mod clock;
pub mod concurrency;
pub mod due;
pub mod failures;
pub mod lifecycle;
pub mod reconcile;
pub mod retry;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The HR facts offboard acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "employee.terminated")]
    Terminated,
    #[serde(rename = "employee.termination_cancelled")]
    TerminationCancelled,
    #[serde(rename = "employee.rehired")]
    Rehired,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Terminated => "employee.terminated",
            EventType::TerminationCancelled => "employee.termination_cancelled",
            EventType::Rehired => "employee.rehired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "employee.terminated" => Some(EventType::Terminated),
            "employee.termination_cancelled" => Some(EventType::TerminationCancelled),
            "employee.rehired" => Some(EventType::Rehired),
            _ => None,
        }
    }
}

/// Who an event is about, as the HR system named them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmployeeRef {
    pub employee_id: Option<String>,
    pub email: Option<String>,
}

/// When an event takes effect, as the sender wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effective {
    /// An instant (RFC 3339 with an offset).
    At(jiff::Timestamp),
    /// A calendar date, read per `[lifecycle]`.
    Date(jiff::civil::Date),
}

impl Effective {
    /// Parses `YYYY-MM-DD` or an RFC 3339 date-time; `None` for anything else (including
    /// impossible dates such as 2026-02-30).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() == 10 {
            return s.parse::<jiff::civil::Date>().ok().map(Effective::Date);
        }
        parse_rfc3339(s).map(Effective::At)
    }
}

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effective::At(t) => write!(f, "{t}"),
            Effective::Date(d) => write!(f, "{d}"),
        }
    }
}

/// An RFC 3339 date-time with a `Z` or numeric offset; local times without an offset are refused,
/// because they would be read in an unknown zone.
pub fn parse_rfc3339(s: &str) -> Option<jiff::Timestamp> {
    let has_t = s.contains('T') || s.contains('t') || s.contains(' ');
    if !has_t {
        return None;
    }
    s.parse::<jiff::Timestamp>().ok()
}

/// One HR fact found in a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventType,
    /// The type as the sender named it (kept for the audit trail).
    pub sender_type: String,
    pub employee: EmployeeRef,
    pub name: Option<String>,
    pub effective: Option<Effective>,
    /// When the HR fact happened, per the sender; orders events of one employee.
    pub occurred_at: jiff::Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Deactivate,
    Reactivate,
}

/// Generates `as_str`, `Display`, `FromStr` and serde for a closed set of contract strings.
macro_rules! contract_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of: {}",
                        stringify!($name).to_lowercase(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

contract_enum!(Status {
    Scheduled => "scheduled",
    Pending => "pending",
    InProgress => "in_progress",
    Succeeded => "succeeded",
    Skipped => "skipped",
    Held => "held",
    Cancelled => "cancelled",
    Failed => "failed",
});

contract_enum!(Reason {
    Deactivated => "deactivated",
    Reactivated => "reactivated",
    AlreadyInactive => "already_inactive",
    AlreadyActive => "already_active",
    DryRun => "dry_run",
    NotFound => "not_found",
    Superseded => "superseded",
    ReactivationDisabled => "reactivation_disabled",
    ApprovalRequired => "approval_required",
    AmbiguousMatch => "ambiguous_match",
    ProtectedUser => "protected_user",
    AdminUser => "admin_user",
    RateBrake => "rate_brake",
    TerminationCancelled => "termination_cancelled",
    Operator => "operator",
    RetriesExhausted => "retries_exhausted",
    WorkfrontRejected => "workfront_rejected",
    WorkfrontAuth => "workfront_auth",
    HrApi => "hr_api",
});

contract_enum!(Step {
    Received => "received",
    Superseded => "superseded",
    CancelledByHr => "cancelled_by_hr",
    CancelRequested => "cancel_requested",
    Resumed => "resumed",
    HrLookup => "hr_lookup",
    AttemptStarted => "attempt_started",
    WorkfrontCall => "workfront_call",
    Searched => "searched",
    Matched => "matched",
    NotFound => "not_found",
    AmbiguousMatch => "ambiguous_match",
    UserGone => "user_gone",
    SafetyPassed => "safety_passed",
    SafetyHold => "safety_hold",
    StateChecked => "state_checked",
    DryRun => "dry_run",
    BrakeChecked => "brake_checked",
    Written => "written",
    RetryScheduled => "retry_scheduled",
    RetriesExhausted => "retries_exhausted",
    WorkfrontAuth => "workfront_auth",
    Rejected => "rejected",
    Finished => "finished",
    OperatorApproved => "operator_approved",
    OperatorRetry => "operator_retry",
    OperatorCancelled => "operator_cancelled",
    BrakeReleased => "brake_released",
});

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Deactivate => "deactivate",
            ActionKind::Reactivate => "reactivate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deactivate" => Some(ActionKind::Deactivate),
            "reactivate" => Some(ActionKind::Reactivate),
            _ => None,
        }
    }
}

impl Status {
    /// Statuses an action never leaves by itself.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Skipped | Status::Cancelled | Status::Failed
        )
    }
}

/// A Workfront object ID as it may reach a URL: letters and digits only (Workfront's IDs are 32
/// hex digits; anything else, such as `..` or `/`, could change the request's path).
pub fn is_workfront_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether a text holds U+0000, which PostgreSQL cannot store and no HR field legitimately has.
pub fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// The hostile-input rules of SPEC §4 that hold for every kind, checked before anything is
/// stored: an HR timestamp further ahead than `max_future_skew` (it would order itself after every
/// real event of that employee and make them stale), and U+0000 in a stored field.
pub fn check_event(
    e: &Event,
    now: jiff::Timestamp,
    max_future_skew: std::time::Duration,
) -> Result<(), String> {
    let limit =
        jiff::SignedDuration::try_from(max_future_skew).unwrap_or(jiff::SignedDuration::MAX);
    let latest = now.checked_add(limit).unwrap_or(jiff::Timestamp::MAX);
    if e.occurred_at > latest {
        return Err(format!(
            "the event's timestamp {} is more than {}s ahead of now (lifecycle.max_future_skew)",
            e.occurred_at,
            max_future_skew.as_secs()
        ));
    }
    let texts = [
        Some(e.sender_type.as_str()),
        e.employee.employee_id.as_deref(),
        e.employee.email.as_deref(),
        e.name.as_deref(),
    ];
    if texts.into_iter().flatten().any(has_nul) {
        return Err("a field of the event contains U+0000, which cannot be stored".into());
    }
    Ok(())
}

/// Masks an email for logs: `jane.doe@example.com` → `j***@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// A new random, time-ordered id with a type prefix (`act_`, `dlv_`, `evt_`): ordering by id is
/// ordering by creation, which the admin API's cursor relies on.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_dates_accept_dates_and_rfc3339_and_refuse_impossible_ones() {
        assert_eq!(
            Effective::parse("2026-12-01"),
            Some(Effective::Date(jiff::civil::date(2026, 12, 1)))
        );
        assert!(matches!(
            Effective::parse("2026-12-01T09:00:00+01:00"),
            Some(Effective::At(_))
        ));
        assert!(matches!(
            Effective::parse("2026-12-01T09:00:00Z"),
            Some(Effective::At(_))
        ));
        assert_eq!(Effective::parse("2026-02-30"), None);
        assert_eq!(Effective::parse("2026-12-01T09:00:00"), None, "no offset");
        assert_eq!(Effective::parse("tomorrow"), None);
        assert_eq!(Effective::parse(""), None);
    }

    #[test]
    fn contract_strings_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), *s);
        }
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>().unwrap(), *r);
        }
        for st in Step::ALL {
            assert_eq!(st.as_str().parse::<Step>().unwrap(), *st);
        }
        assert!("done".parse::<Status>().unwrap_err().contains("scheduled"));
    }

    #[test]
    fn emails_are_masked_to_first_letter_and_domain() {
        assert_eq!(mask_email("jane.doe@example.com"), "j***@example.com");
        assert_eq!(mask_email("nonsense"), "***");
    }

    fn event(occurred_at: &str, name: &str) -> Event {
        Event {
            kind: EventType::Terminated,
            sender_type: "employee.terminated".into(),
            employee: EmployeeRef {
                employee_id: Some("E1".into()),
                email: None,
            },
            name: Some(name.into()),
            effective: None,
            occurred_at: occurred_at.parse().unwrap(),
        }
    }

    #[test]
    fn events_too_far_in_the_future_or_holding_nul_are_refused() {
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert!(check_event(&event("2026-11-29T12:00:00Z", "Jane"), now, day).is_ok());
        let far = check_event(&event("2026-11-29T12:00:01Z", "Jane"), now, day).unwrap_err();
        assert!(far.contains("max_future_skew"), "{far}");
        assert!(check_event(&event("9000-01-01T00:00:00Z", "Jane"), now, day).is_err());
        assert!(
            check_event(&event("2026-11-28T12:00:00Z", "Mallory\0"), now, day)
                .unwrap_err()
                .contains("U+0000")
        );
        // A huge skew setting saturates instead of overflowing.
        assert!(check_event(
            &event("9000-01-01T00:00:00Z", "x"),
            now,
            std::time::Duration::MAX
        )
        .is_ok());
    }

    #[test]
    fn workfront_ids_are_letters_and_digits_only() {
        assert!(is_workfront_id("5f1c0a7e0000a1b2c3d4e5f600000001"));
        for bad in ["", "..", "a/b", "a b", "a%2F", "ä", &"a".repeat(65)] {
            assert!(!is_workfront_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id("act");
        let b = new_id("act");
        assert!(a < b, "{a} {b}");
        assert!(a.starts_with("act_") && a.len() == 36);
    }
}
