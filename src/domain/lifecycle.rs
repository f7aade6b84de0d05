//! What a new HR event does to an employee's actions.
//!
//! **The same employee**: two events or actions are about the same employee when they share the
//! HR employee id, or the email address ignoring case. (Either identifier may be missing from one
//! of them; one shared identifier is enough.)
//!
//! **Order**: events apply in the order of their HR timestamps (`occurred_at`), whatever order they
//! arrive in. An event older than the newest event already stored for the employee is stale: a
//! stale termination or rehire becomes an action `skipped/superseded` that points at the newer
//! event; a stale cancellation changes nothing.
//!
//! A fresh event:
//! - **termination**: earlier open actions (scheduled, pending, held) are `skipped/superseded`; a new
//!   deactivation is created, due at its effective time.
//! - **cancellation**: open deactivations are `cancelled/termination_cancelled`; one being worked
//!   on is asked to stop before its write; if the last deactivation was done by us
//!   (`succeeded/deactivated`, or a write may already be on its way) and `reactivate_on_cancel` is on,
//!   a reactivation of that same Workfront user follows.
//! - **rehire**: open actions are superseded; a reactivation is created when
//!   `reactivate_on_rehire` is on, else an action `skipped/reactivation_disabled` records it.
//!
//! **Who may undo what** (SPEC §6): a cancellation only cancels or reverses terminations of its own
//! source. Nothing from an HR source supersedes, cancels or reverses an operator's manual
//! deactivation (source [`OPERATOR_SOURCE`]): a rehire after one is created
//! `held/approval_required`, so only an operator can undo it. An operator's own event is never
//! stale: it is a decision made now, whatever HR timestamps say.
//!
//! This module decides; the store reads the history and applies the plan in the delivery's
//! transaction.

use super::{ActionKind, EventType, Reason, Status};

/// The source name of actions created by operators (`POST /admin/v1/actions`).
pub const OPERATOR_SOURCE: &str = "admin";

/// An action of the employee that has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAction {
    pub id: String,
    pub source: String,
    pub kind: ActionKind,
    pub status: Status,
    pub write_sent: bool,
    pub user_id: Option<String>,
}

/// The employee's most recent deactivation, finished or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDeactivation {
    pub id: String,
    pub source: String,
    pub status: Status,
    pub reason: Option<Reason>,
    pub write_sent: bool,
    pub user_id: Option<String>,
}

/// What the store knows about the employee before this event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The newest stored event: its id and HR time (ms).
    pub newest_event: Option<(String, i64)>,
    /// Scheduled, pending, held and in-progress actions.
    pub open: Vec<OpenAction>,
    pub last_deactivation: Option<LastDeactivation>,
    /// An unfinished reactivation already exists.
    pub reactivation_open: bool,
}

/// A new action to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub kind: ActionKind,
    pub status: Status,
    pub reason: Option<Reason>,
    /// Act on this Workfront user rather than searching (undoing our own deactivation).
    pub user_id: Option<String>,
    pub note: Option<String>,
}

/// The decision for one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Open actions to end `skipped/superseded`.
    pub supersede: Vec<String>,
    /// Open deactivations to end `cancelled/termination_cancelled`.
    pub cancel: Vec<String>,
    /// In-progress deactivations to stop before their write.
    pub request_cancel: Vec<String>,
    pub create: Option<Create>,
    /// The newer event that made this one stale.
    pub stale_because_of: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Switches {
    pub reactivate_on_rehire: bool,
    pub reactivate_on_cancel: bool,
}

/// The event being planned.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub kind: EventType,
    /// The configured source it came from ([`OPERATOR_SOURCE`] for operators).
    pub source: &'a str,
    /// HR time of the fact (ms).
    pub occurred_at: i64,
    /// The status a new action starts in (scheduled when due in the future, else pending).
    pub runnable: Status,
}

pub fn plan(event: Incoming<'_>, history: &History, switches: &Switches) -> Plan {
    let Incoming {
        kind,
        source,
        occurred_at,
        runnable,
    } = event;
    let by_operator = source == OPERATOR_SOURCE;
    let mut plan = Plan::default();
    if let Some((newer, at)) = history.newest_event.as_ref().filter(|_| !by_operator) {
        if occurred_at < *at {
            plan.stale_because_of = Some(newer.clone());
            plan.create = match kind {
                EventType::Terminated => Some(superseded(ActionKind::Deactivate)),
                EventType::Rehired => Some(superseded(ActionKind::Reactivate)),
                EventType::TerminationCancelled => None,
            };
            return plan;
        }
    }
    // HR never ends an operator's action; an operator's event may end any waiting one.
    let waiting = |a: &&OpenAction| {
        a.status != Status::InProgress && (by_operator || a.source != OPERATOR_SOURCE)
    };
    let operator_deactivated = history
        .open
        .iter()
        .any(|a| a.kind == ActionKind::Deactivate && a.source == OPERATOR_SOURCE)
        || history
            .last_deactivation
            .as_ref()
            .is_some_and(|d| d.source == OPERATOR_SOURCE);
    match kind {
        EventType::Terminated => {
            plan.supersede = history
                .open
                .iter()
                .filter(waiting)
                .map(|a| a.id.clone())
                .collect();
            plan.create = Some(Create {
                kind: ActionKind::Deactivate,
                status: runnable,
                reason: None,
                user_id: None,
                note: None,
            });
        }
        EventType::Rehired => {
            plan.supersede = history
                .open
                .iter()
                .filter(waiting)
                .map(|a| a.id.clone())
                .collect();
            plan.create = Some(if switches.reactivate_on_rehire && operator_deactivated {
                Create {
                    kind: ActionKind::Reactivate,
                    status: Status::Held,
                    reason: Some(Reason::ApprovalRequired),
                    user_id: None,
                    note: Some(
                        "an operator deactivated this employee; only an operator can reverse it"
                            .into(),
                    ),
                }
            } else if switches.reactivate_on_rehire {
                Create {
                    kind: ActionKind::Reactivate,
                    status: runnable,
                    reason: None,
                    user_id: None,
                    note: None,
                }
            } else {
                Create {
                    kind: ActionKind::Reactivate,
                    status: Status::Skipped,
                    reason: Some(Reason::ReactivationDisabled),
                    user_id: None,
                    note: Some("lifecycle.reactivate_on_rehire is off".into()),
                }
            });
        }
        EventType::TerminationCancelled => {
            // Only terminations of the cancellation's own source.
            for a in history
                .open
                .iter()
                .filter(|a| a.kind == ActionKind::Deactivate && a.source == source)
            {
                match a.status {
                    Status::InProgress => plan.request_cancel.push(a.id.clone()),
                    _ => plan.cancel.push(a.id.clone()),
                }
            }
            // Undo our own deactivation: one that succeeded by writing, or one whose write may
            // already be on its way.
            let undo = history.last_deactivation.as_ref().filter(|d| {
                d.source == source
                    && ((d.status == Status::Succeeded && d.reason == Some(Reason::Deactivated))
                        || (d.status == Status::InProgress && d.write_sent))
            });
            if let (Some(d), true, false) = (
                undo,
                switches.reactivate_on_cancel,
                history.reactivation_open,
            ) {
                plan.create = Some(Create {
                    kind: ActionKind::Reactivate,
                    status: Status::Pending,
                    reason: None,
                    user_id: d.user_id.clone(),
                    note: Some(format!("undoes {}", d.id)),
                });
            }
        }
    }
    plan
}

fn superseded(kind: ActionKind) -> Create {
    Create {
        kind,
        status: Status::Skipped,
        reason: Some(Reason::Superseded),
        user_id: None,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: Switches = Switches {
        reactivate_on_rehire: true,
        reactivate_on_cancel: true,
    };
    const OFF: Switches = Switches {
        reactivate_on_rehire: false,
        reactivate_on_cancel: false,
    };

    /// The plan of an event from source "hr".
    fn plan(kind: EventType, at: i64, h: &History, sw: &Switches, runnable: Status) -> Plan {
        from("hr", kind, at, h, sw, runnable)
    }

    fn from(
        source: &str,
        kind: EventType,
        at: i64,
        h: &History,
        sw: &Switches,
        runnable: Status,
    ) -> Plan {
        super::plan(
            Incoming {
                kind,
                source,
                occurred_at: at,
                runnable,
            },
            h,
            sw,
        )
    }

    fn open(id: &str, kind: ActionKind, status: Status) -> OpenAction {
        OpenAction {
            id: id.into(),
            source: "hr".into(),
            kind,
            status,
            write_sent: false,
            user_id: None,
        }
    }

    fn done(reason: Reason) -> LastDeactivation {
        LastDeactivation {
            id: "act_d".into(),
            source: "hr".into(),
            status: Status::Succeeded,
            reason: Some(reason),
            write_sent: true,
            user_id: Some("U1".into()),
        }
    }

    #[test]
    fn a_first_termination_creates_a_deactivation() {
        let p = plan(
            EventType::Terminated,
            10,
            &History::default(),
            &ON,
            Status::Scheduled,
        );
        assert_eq!(p.create.unwrap().status, Status::Scheduled);
        assert!(p.supersede.is_empty() && p.stale_because_of.is_none());
    }

    #[test]
    fn an_older_event_than_the_newest_stored_is_stale() {
        let h = History {
            newest_event: Some(("evt_new".into(), 20)),
            ..Default::default()
        };
        let p = plan(EventType::Terminated, 10, &h, &ON, Status::Pending);
        assert_eq!(p.stale_because_of.as_deref(), Some("evt_new"));
        assert_eq!(p.create.unwrap().reason, Some(Reason::Superseded));
        let p = plan(
            EventType::TerminationCancelled,
            10,
            &h,
            &ON,
            Status::Pending,
        );
        assert!(p.create.is_none() && p.cancel.is_empty());
    }

    #[test]
    fn an_event_with_the_same_time_as_the_newest_is_applied() {
        let h = History {
            newest_event: Some(("evt_a".into(), 20)),
            ..Default::default()
        };
        assert!(plan(EventType::Terminated, 20, &h, &ON, Status::Pending)
            .stale_because_of
            .is_none());
    }

    #[test]
    fn a_newer_termination_supersedes_waiting_actions_but_not_one_in_progress() {
        let h = History {
            newest_event: Some(("e".into(), 5)),
            open: vec![
                open("a", ActionKind::Deactivate, Status::Scheduled),
                open("b", ActionKind::Deactivate, Status::InProgress),
            ],
            ..Default::default()
        };
        let p = plan(EventType::Terminated, 10, &h, &ON, Status::Pending);
        assert_eq!(p.supersede, vec!["a".to_string()]);
        assert!(p.create.is_some());
    }

    #[test]
    fn a_cancellation_cancels_waiting_deactivations_and_stops_one_in_progress() {
        let h = History {
            open: vec![
                open("a", ActionKind::Deactivate, Status::Held),
                open("b", ActionKind::Deactivate, Status::InProgress),
                open("c", ActionKind::Reactivate, Status::Pending),
            ],
            ..Default::default()
        };
        let p = plan(
            EventType::TerminationCancelled,
            10,
            &h,
            &ON,
            Status::Pending,
        );
        assert_eq!(p.cancel, vec!["a".to_string()]);
        assert_eq!(p.request_cancel, vec!["b".to_string()]);
        assert!(p.create.is_none(), "nothing was deactivated yet");
    }

    #[test]
    fn a_cancellation_after_our_deactivation_reactivates_the_same_user_when_enabled() {
        let h = History {
            last_deactivation: Some(done(Reason::Deactivated)),
            ..Default::default()
        };
        let c = plan(
            EventType::TerminationCancelled,
            10,
            &h,
            &ON,
            Status::Pending,
        )
        .create
        .unwrap();
        assert_eq!(
            (c.kind, c.user_id.as_deref()),
            (ActionKind::Reactivate, Some("U1"))
        );
        assert!(plan(
            EventType::TerminationCancelled,
            10,
            &h,
            &OFF,
            Status::Pending
        )
        .create
        .is_none());
    }

    #[test]
    fn a_cancellation_never_reactivates_a_user_that_was_inactive_before_us() {
        let h = History {
            last_deactivation: Some(done(Reason::AlreadyInactive)),
            ..Default::default()
        };
        assert!(plan(
            EventType::TerminationCancelled,
            10,
            &h,
            &ON,
            Status::Pending
        )
        .create
        .is_none());
    }

    #[test]
    fn a_cancellation_of_a_write_under_way_queues_a_reactivation() {
        let mut d = done(Reason::Deactivated);
        d.status = Status::InProgress;
        d.reason = None;
        let h = History {
            open: vec![open("act_d", ActionKind::Deactivate, Status::InProgress)],
            last_deactivation: Some(d),
            ..Default::default()
        };
        let p = plan(
            EventType::TerminationCancelled,
            10,
            &h,
            &ON,
            Status::Pending,
        );
        assert_eq!(p.request_cancel, vec!["act_d".to_string()]);
        assert_eq!(p.create.unwrap().kind, ActionKind::Reactivate);
    }

    #[test]
    fn a_rehire_reactivates_only_when_enabled_and_supersedes_waiting_deactivations() {
        let h = History {
            open: vec![open("a", ActionKind::Deactivate, Status::Scheduled)],
            ..Default::default()
        };
        let on = plan(EventType::Rehired, 10, &h, &ON, Status::Pending);
        assert_eq!(on.supersede, vec!["a".to_string()]);
        assert_eq!(on.create.unwrap().status, Status::Pending);
        let off = plan(EventType::Rehired, 10, &h, &OFF, Status::Pending)
            .create
            .unwrap();
        assert_eq!(
            (off.status, off.reason),
            (Status::Skipped, Some(Reason::ReactivationDisabled))
        );
    }

    #[test]
    fn a_cancellation_from_another_source_neither_cancels_nor_reverses() {
        let h = History {
            open: vec![open("a", ActionKind::Deactivate, Status::Scheduled)],
            last_deactivation: Some(done(Reason::Deactivated)),
            ..Default::default()
        };
        let p = from(
            "other",
            EventType::TerminationCancelled,
            10,
            &h,
            &ON,
            Status::Pending,
        );
        assert!(p.cancel.is_empty() && p.request_cancel.is_empty());
        assert!(
            p.create.is_none(),
            "no reactivation of another source's work"
        );
    }

    #[test]
    fn hr_events_never_end_or_reverse_an_operators_deactivation() {
        let mut manual = open("m", ActionKind::Deactivate, Status::Pending);
        manual.source = OPERATOR_SOURCE.into();
        let h = History {
            open: vec![manual],
            ..Default::default()
        };
        let t = plan(EventType::Terminated, 10, &h, &ON, Status::Pending);
        assert!(t.supersede.is_empty(), "{t:?}");
        let c = plan(
            EventType::TerminationCancelled,
            10,
            &h,
            &ON,
            Status::Pending,
        );
        assert!(c.cancel.is_empty() && c.create.is_none(), "{c:?}");
        let r = plan(EventType::Rehired, 10, &h, &ON, Status::Pending);
        assert!(r.supersede.is_empty(), "{r:?}");
        let created = r.create.unwrap();
        assert_eq!(
            (created.kind, created.status, created.reason),
            (
                ActionKind::Reactivate,
                Status::Held,
                Some(Reason::ApprovalRequired)
            )
        );
        let mut done_by_operator = done(Reason::Deactivated);
        done_by_operator.source = OPERATOR_SOURCE.into();
        let h = History {
            last_deactivation: Some(done_by_operator),
            ..Default::default()
        };
        let r = plan(EventType::Rehired, 10, &h, &ON, Status::Pending).create;
        assert_eq!(r.unwrap().status, Status::Held);
    }

    #[test]
    fn an_operators_event_is_never_stale_and_may_end_waiting_hr_actions() {
        let h = History {
            newest_event: Some(("evt_future".into(), i64::MAX)),
            open: vec![open("a", ActionKind::Reactivate, Status::Pending)],
            ..Default::default()
        };
        let p = from(
            OPERATOR_SOURCE,
            EventType::Terminated,
            10,
            &h,
            &ON,
            Status::Pending,
        );
        assert!(p.stale_because_of.is_none());
        assert_eq!(p.supersede, vec!["a".to_string()]);
        assert_eq!(p.create.unwrap().status, Status::Pending);
    }
}
