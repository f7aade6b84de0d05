//! Applying one event's plan ([`crate::domain::lifecycle::Plan`]) inside an intake
//! transaction: the actions it ends or stops are updated at once, and the rows it creates (the
//! action, its audit entries, the event) are gathered in [`Writes`] and written with a few
//! multi-row statements at the end of the round ([`super::ingest`]).

use serde_json::json;

use super::actions::append_audit;
use super::db::{insert_rows, Cell, Db, Insert, Row};
use super::ingest::Item;
use super::models::{AuditEntry, Ended, NewDelivery};
use super::{from_ms, StoreError};
use crate::domain::lifecycle::Plan;
use crate::domain::{new_id, ActionKind, Status, Step};

/// Rows a round creates, written together at its end ([`insert_rows`]): actions first, since
/// audit entries and events refer to them.
#[derive(Default)]
pub(super) struct Writes {
    actions: Vec<Vec<Cell>>,
    audit: Vec<Vec<Cell>>,
    events: Vec<Vec<Cell>>,
}

impl Writes {
    /// One audit row; `detail` is its JSON text.
    fn audit(&mut self, action_id: &str, at: i64, step: Step, detail: String) {
        self.audit.push(vec![
            action_id.into(),
            at.into(),
            step.as_str().into(),
            detail.into(),
        ]);
    }

    pub(super) async fn flush<D: Db>(&mut self, tx: &mut D) -> Result<(), StoreError> {
        static ACTIONS: Insert = Insert::new(
            "INSERT INTO actions (id, kind, status, reason, due_at, run_at, created_at, updated_at, source, employee_id, \
             email, email_lc, employee_name, wf_user_id, done_at, delivery_id)",
            "",
        );
        static AUDIT: Insert = Insert::new("INSERT INTO audit (action_id, at, step, detail)", "");
        static EVENTS: Insert = Insert::new(
            "INSERT INTO events (id, delivery_id, action_id, type, sender_type, employee_id, email, email_lc, name, \
             effective_at, occurred_at, created_at, outcome)",
            "",
        );
        insert_rows(tx, &ACTIONS, &std::mem::take(&mut self.actions)).await?;
        insert_rows(tx, &AUDIT, &std::mem::take(&mut self.audit)).await?;
        insert_rows(tx, &EVENTS, &std::mem::take(&mut self.events)).await?;
        Ok(())
    }
}

/// What applying one event's plan did.
pub(super) struct Applied {
    /// The action it created.
    pub(super) created: Option<String>,
    /// When that action may first run, if it is runnable.
    pub(super) run_at: Option<i64>,
    /// The actions it ended at once (for metrics).
    pub(super) ended: Vec<Ended>,
}

/// Applies a plan: actions it ends or asks to stop are updated at once (rare: a rehire, a
/// cancelled termination); the action it creates, its audit entries and the event row are
/// gathered in `writes`.
pub(super) async fn apply<D: Db>(
    tx: &mut D,
    d: &NewDelivery,
    item: &Item<'_>,
    plan: &Plan,
    writes: &mut Writes,
) -> Result<Applied, StoreError> {
    let ev = item.ev;
    let now = d.received_at;
    let mut outcome = Vec::new();
    let mut ended = Vec::new();
    let changes = [
        (
            &plan.supersede,
            "skipped",
            "superseded",
            Step::Superseded,
            "superseded_by_event",
        ),
        (
            &plan.cancel,
            "cancelled",
            "termination_cancelled",
            Step::CancelledByHr,
            "cancelled_by_event",
        ),
    ];
    for (ids, status, reason, step, key) in changes {
        for id in ids {
            let changed: Option<Row> = tx
                .row(
                    "UPDATE actions SET status = $2, reason = $3, updated_at = $4, done_at = $4 \
                     WHERE id = $1 AND status IN ('scheduled', 'pending', 'held') RETURNING kind",
                    &[id.into(), status.into(), reason.into(), now.into()],
                )
                .await?;
            if let Some(row) = changed {
                let kind = row.text(0)?;
                if let (Some(k), Ok(st), Ok(re)) =
                    (ActionKind::parse(&kind), status.parse(), reason.parse())
                {
                    ended.push((k, st, re));
                }
                append_audit(
                    tx,
                    id,
                    &[AuditEntry::new(
                        from_ms(now),
                        step,
                        json!({ key: ev.id, "delivery_id": d.id, "type": ev.kind.as_str() }),
                    )],
                )
                .await?;
                outcome.push(format!("{status}/{reason} {id}"));
            }
        }
    }
    for id in &plan.request_cancel {
        tx.exec(
            "UPDATE actions SET cancel_requested = 1, updated_at = $2 WHERE id = $1 AND status = 'in_progress'",
            &[id.into(), now.into()],
        )
        .await?;
        append_audit(
            tx,
            id,
            &[AuditEntry::new(
                from_ms(now),
                Step::CancelRequested,
                json!({ "cancelled_by_event": ev.id, "delivery_id": d.id }),
            )],
        )
        .await?;
        outcome.push(format!("asked {id} to stop before its write"));
    }
    let mut applied = Applied {
        created: None,
        run_at: None,
        ended,
    };
    if let Some(create) = &plan.create {
        let id = new_id("act");
        let terminal = create.status.is_terminal();
        if let (true, Some(reason)) = (terminal, create.reason) {
            applied.ended.push((create.kind, create.status, reason));
        }
        let run_at = if create.status == Status::Pending && create.user_id.is_some() {
            now
        } else {
            ev.due_at
        };
        writes.actions.push(vec![
            (&id).into(),
            create.kind.as_str().into(),
            create.status.as_str().into(),
            create.reason.map(|r| r.as_str()).into(),
            ev.due_at.into(),
            run_at.into(),
            now.into(),
            now.into(),
            (&d.source).into(),
            (&ev.employee_id).into(),
            (&ev.email).into(),
            item.email_lc.as_deref().into(),
            (&ev.name).into(),
            (&create.user_id).into(),
            terminal.then_some(now).into(),
            (&d.id).into(),
        ]);
        // The event's detail is written as it is, unless this plan adds to it (a copy of the
        // JSON for every delivery was 1.5% of the intake writer's time in a profile).
        let received = if plan.stale_because_of.is_none() && create.note.is_none() {
            ev.detail.to_string()
        } else {
            let mut detail = ev.detail.clone();
            if let Some(newer) = &plan.stale_because_of {
                detail["superseded_by_event"] = json!(newer);
                detail["why"] = json!(
                    "an event with a later HR timestamp was already stored for this employee"
                );
            }
            if let Some(note) = &create.note {
                detail["note"] = json!(note);
            }
            detail.to_string()
        };
        writes.audit(&id, now, Step::Received, received);
        if terminal {
            let finished = json!({"status": create.status.as_str(), "reason": create.reason.map(|r| r.as_str())});
            writes.audit(&id, now, Step::Finished, finished.to_string());
        }
        outcome.push(format!("created {id}"));
        let runnable = matches!(create.status, Status::Pending | Status::Scheduled);
        applied.run_at = runnable.then_some(run_at);
        applied.created = Some(id);
    } else {
        if let Some(newer) = &plan.stale_because_of {
            outcome.push(format!("stale: {newer} is newer"));
        }
        if outcome.is_empty() {
            outcome.push("nothing to change".into());
        }
    }
    writes.events.push(vec![
        (&ev.id).into(),
        (&d.id).into(),
        (&applied.created).into(),
        ev.kind.as_str().into(),
        (&ev.sender_type).into(),
        (&ev.employee_id).into(),
        (&ev.email).into(),
        item.email_lc.as_deref().into(),
        (&ev.name).into(),
        (&ev.effective_at).into(),
        ev.occurred_at.into(),
        d.received_at.into(),
        outcome.join("; ").into(),
    ]);
    Ok(applied)
}
