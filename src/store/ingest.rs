//! Storing a delivery: dedupe, then each event is planned against the employee's history
//! ([`crate::domain::lifecycle`]) and applied, all in one transaction, durably committed before
//! the sender is answered.
//!
//! Two paths, one per backend, both with "each delivery succeeds or fails alone":
//! - **SQLite** (one writer): deliveries that arrive together are committed together (group
//!   commit) by the intake writer ([`super::sqlite_intake`]) with one fsync; one delivery the
//!   database refuses is stored alone, and so are the others of its batch.
//! - **PostgreSQL** (several replicas): each delivery is its own transaction on its own
//!   connection (PostgreSQL groups concurrent commits itself). Before reading an employee's
//!   history the transaction takes an advisory lock per identifier (employee id, email), in sorted
//!   order so two deliveries never deadlock: deliveries about one employee that reach different
//!   replicas at once are planned one after the other, never both against the same old history.

use serde_json::json;
use sqlx::Acquire;
use tokio::sync::oneshot;

use super::actions::append_audit;
use super::db::{Db, Row};
use super::models::{AuditEntry, Ended, Ingested, NewDelivery, NewEvent};
use super::sqlite_intake::{Job, Msg};
use super::{from_ms, Backend, Store, StoreError};
use crate::domain::lifecycle::{self, History, LastDeactivation, OpenAction, Plan, Switches};
use crate::domain::{new_id, ActionKind, Status, Step};

/// "The same employee": the employee id, or the email ignoring case ($1, $2; NULL matches nothing).
const SAME_EMPLOYEE: &str = "(employee_id = $1 OR email_lc = $2)";

impl Store {
    /// Stores a delivery with its events and the actions they cause, and returns once that is
    /// durably committed. A delivery whose dedupe key is already stored is a duplicate and stores
    /// nothing.
    ///
    /// On SQLite, deliveries that arrive together are committed together (group commit) by the
    /// intake writer ([`super::sqlite_intake`]) with one durable commit, so a burst costs one
    /// fsync instead of one each. Nobody is answered before the commit that holds their delivery.
    pub async fn ingest(
        &self,
        delivery: &NewDelivery,
        events: &[NewEvent],
        switches: &Switches,
    ) -> Result<Ingested, StoreError> {
        let Some(intake) = &self.intake else {
            // PostgreSQL: each delivery in its own transaction; the pool bounds how many run at once.
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.begin().await?;
            let outcome = ingest_in(&mut tx, self.backend, delivery, events, switches).await?;
            match outcome {
                Ingested::Duplicate { .. } => tx.rollback().await?,
                Ingested::Stored { .. } => tx.commit().await?,
            }
            return Ok(outcome);
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            delivery: delivery.clone(),
            events: events.to_vec(),
            switches: switches.clone(),
            reply,
        };
        let stopped = || StoreError::Unavailable("the intake writer has stopped".into());
        intake
            .send(Msg::Deliver(job))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Stores one delivery inside an open transaction, on either access path.
pub(super) async fn ingest_in<D: Db>(
    tx: &mut D,
    backend: Backend,
    d: &NewDelivery,
    events: &[NewEvent],
    switches: &Switches,
) -> Result<Ingested, StoreError> {
    // The insert comes first so that a SQLite transaction takes the write lock at once.
    let inserted = tx
        .row(
            "INSERT INTO deliveries (id, source, dedupe_key, received_at, content_type, body, body_sha256, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id",
            &[
                (&d.id).into(),
                (&d.source).into(),
                (&d.dedupe_key).into(),
                d.received_at.into(),
                (&d.content_type).into(),
                (&d.body).into(),
                (&d.body_sha256).into(),
                (&d.request_id).into(),
            ],
        )
        .await?;
    if inserted.is_none() {
        let existing = tx
            .row(
                "SELECT id FROM deliveries WHERE source = $1 AND dedupe_key = $2",
                &[(&d.source).into(), (&d.dedupe_key).into()],
            )
            .await?
            .ok_or_else(|| StoreError::Unavailable("a conflicting delivery vanished".into()))?
            .text(0)?;
        return Ok(Ingested::Duplicate {
            delivery_id: existing,
        });
    }
    if backend == Backend::Postgres {
        lock_employees(tx, events).await?;
    }
    let mut action_ids = Vec::new();
    let mut ended = Vec::new();
    let mut next_run_at: Option<i64> = None;
    for ev in events {
        let email_lc = ev.email.as_ref().map(|e| e.to_lowercase());
        let history = history(tx, ev.employee_id.as_deref(), email_lc.as_deref()).await?;
        let incoming = lifecycle::Incoming {
            kind: ev.kind,
            source: &d.source,
            occurred_at: ev.occurred_at,
            runnable: ev.runnable,
        };
        let plan = lifecycle::plan(incoming, &history, switches);
        let (created, outcome) = apply(tx, d, ev, email_lc.as_deref(), &plan, &mut ended).await?;
        if let Some((_, Some(run_at))) = &created {
            next_run_at = Some(next_run_at.map_or(*run_at, |n| n.min(*run_at)));
        }
        let created = created.map(|(id, _)| id);
        tx.exec(
            "INSERT INTO events (id, delivery_id, action_id, type, sender_type, employee_id, email, email_lc, name, effective_at, \
             occurred_at, created_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                (&ev.id).into(),
                (&d.id).into(),
                (&created).into(),
                ev.kind.as_str().into(),
                (&ev.sender_type).into(),
                (&ev.employee_id).into(),
                (&ev.email).into(),
                email_lc.as_deref().into(),
                (&ev.name).into(),
                (&ev.effective_at).into(),
                ev.occurred_at.into(),
                d.received_at.into(),
                outcome.as_str().into(),
            ],
        )
        .await?;
        if let Some(id) = created {
            action_ids.push(id);
        }
    }
    Ok(Ingested::Stored {
        delivery_id: d.id.clone(),
        action_ids,
        ended,
        next_run_at,
    })
}

/// Takes a transaction-scoped advisory lock for each identifier of the delivery's employees, in
/// sorted order (so that two deliveries never wait on each other in a cycle). A hash collision
/// only makes two unrelated employees wait for each other briefly.
async fn lock_employees<D: Db>(tx: &mut D, events: &[NewEvent]) -> Result<(), StoreError> {
    let mut keys: Vec<String> = events
        .iter()
        .flat_map(|e| {
            let id = e.employee_id.as_ref().map(|i| format!("employee_id:{i}"));
            let email = e
                .email
                .as_ref()
                .map(|m| format!("email:{}", m.to_lowercase()));
            id.into_iter().chain(email)
        })
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        tx.rows(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0)) IS NULL AS waited",
            &[key.as_str().into()],
        )
        .await?;
    }
    Ok(())
}

fn parse_status(status: &str) -> Result<Status, StoreError> {
    status
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("stored status {status:?}")))
}

async fn history<D: Db>(
    tx: &mut D,
    employee_id: Option<&str>,
    email_lc: Option<&str>,
) -> Result<History, StoreError> {
    let who = [employee_id.into(), email_lc.into()];
    let newest = tx
        .row(&format!("SELECT id, occurred_at FROM events WHERE {SAME_EMPLOYEE} ORDER BY occurred_at DESC, id DESC LIMIT 1"), &who)
        .await?
        .map(|r| Ok::<_, StoreError>((r.text(0)?, r.int(1)?)))
        .transpose()?;
    let open_rows = tx
        .rows(
            &format!(
                "SELECT id, source, kind, status, write_sent, wf_user_id FROM actions \
                 WHERE status IN ('scheduled', 'pending', 'held', 'in_progress') AND {SAME_EMPLOYEE} ORDER BY id"
            ),
            &who,
        )
        .await?;
    let mut open = Vec::new();
    for r in open_rows {
        let kind = r.text(2)?;
        open.push(OpenAction {
            id: r.text(0)?,
            source: r.text(1)?,
            kind: ActionKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("stored kind {kind:?}")))?,
            status: parse_status(&r.text(3)?)?,
            write_sent: r.int(4)? != 0,
            user_id: r.opt_text(5)?,
        });
    }
    let last = tx
        .row(
            &format!(
                "SELECT id, source, status, reason, write_sent, wf_user_id FROM actions WHERE kind = 'deactivate' \
                 AND status NOT IN ('skipped', 'cancelled') AND {SAME_EMPLOYEE} ORDER BY id DESC LIMIT 1"
            ),
            &who,
        )
        .await?;
    let last_deactivation = match last {
        None => None,
        Some(r) => Some(LastDeactivation {
            id: r.text(0)?,
            source: r.text(1)?,
            status: parse_status(&r.text(2)?)?,
            reason: r.opt_text(3)?.and_then(|x| x.parse().ok()),
            write_sent: r.int(4)? != 0,
            user_id: r.opt_text(5)?,
        }),
    };
    let reactivation_open = open.iter().any(|a| a.kind == ActionKind::Reactivate);
    Ok(History {
        newest_event: newest,
        open,
        last_deactivation,
        reactivation_open,
    })
}

/// Applies a plan; returns the created action (its id, and when it may first run if it is
/// runnable) and a short outcome for the event row, and pushes the actions it ended at once to
/// `ended` (for metrics).
async fn apply<D: Db>(
    tx: &mut D,
    d: &NewDelivery,
    ev: &NewEvent,
    email_lc: Option<&str>,
    plan: &Plan,
    ended: &mut Vec<Ended>,
) -> Result<(Option<(String, Option<i64>)>, String), StoreError> {
    let now = d.received_at;
    let mut outcome = Vec::new();
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
    let Some(create) = &plan.create else {
        if let Some(newer) = &plan.stale_because_of {
            outcome.push(format!("stale: {newer} is newer"));
        }
        if outcome.is_empty() {
            outcome.push("nothing to change".into());
        }
        return Ok((None, outcome.join("; ")));
    };
    let id = new_id("act");
    let terminal = create.status.is_terminal();
    if let (true, Some(reason)) = (terminal, create.reason) {
        ended.push((create.kind, create.status, reason));
    }
    let run_at = if create.status == Status::Pending && create.user_id.is_some() {
        now
    } else {
        ev.due_at
    };
    tx.exec(
        "INSERT INTO actions (id, kind, status, reason, due_at, run_at, created_at, updated_at, source, employee_id, email, email_lc, \
         employee_name, wf_user_id, done_at, delivery_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            (&id).into(),
            create.kind.as_str().into(),
            create.status.as_str().into(),
            create.reason.map(|r| r.as_str()).into(),
            ev.due_at.into(),
            run_at.into(),
            now.into(),
            (&d.source).into(),
            (&ev.employee_id).into(),
            (&ev.email).into(),
            email_lc.into(),
            (&ev.name).into(),
            (&create.user_id).into(),
            terminal.then_some(now).into(),
            (&d.id).into(),
        ],
    )
    .await?;
    let mut detail = ev.detail.clone();
    if let Some(newer) = &plan.stale_because_of {
        detail["superseded_by_event"] = json!(newer);
        detail["why"] =
            json!("an event with a later HR timestamp was already stored for this employee");
    }
    if let Some(note) = &create.note {
        detail["note"] = json!(note);
    }
    let mut entries = vec![AuditEntry::new(from_ms(now), Step::Received, detail)];
    if terminal {
        entries.push(AuditEntry::new(
            from_ms(now),
            Step::Finished,
            json!({"status": create.status.as_str(), "reason": create.reason.map(|r| r.as_str())}),
        ));
    }
    append_audit(tx, &id, &entries).await?;
    outcome.push(format!("created {id}"));
    let runnable = matches!(create.status, Status::Pending | Status::Scheduled);
    Ok((Some((id, runnable.then_some(run_at))), outcome.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::Switches;

    fn delivery(id: &str, key: &str) -> NewDelivery {
        NewDelivery {
            id: id.into(),
            source: "hr".into(),
            dedupe_key: key.into(),
            received_at: 1,
            content_type: None,
            body: "{}".into(),
            body_sha256: "x".into(),
            request_id: None,
        }
    }

    #[tokio::test]
    async fn a_delivery_the_database_refuses_fails_alone_in_its_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url.into(), crate::domain::clock::Clock::system())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let sw = Switches {
            reactivate_on_rehire: false,
            reactivate_on_cancel: false,
        };
        // The same primary key twice: the database refuses the second, whichever it is.
        let (a, b, c) = (
            delivery("dlv_same", "k1"),
            delivery("dlv_same", "k2"),
            delivery("dlv_other", "k3"),
        );
        let (ra, rb, rc) = tokio::join!(
            store.ingest(&a, &[], &sw),
            store.ingest(&b, &[], &sw),
            store.ingest(&c, &[], &sw)
        );
        let refused: Vec<&StoreError> = [&ra, &rb]
            .into_iter()
            .filter_map(|r| r.as_ref().err())
            .collect();
        assert_eq!(refused.len(), 1, "{ra:?} {rb:?}");
        assert!(matches!(refused[0], StoreError::Conflict(_)), "{refused:?}");
        assert!(!refused[0].is_unavailable());
        assert!(matches!(rc, Ok(Ingested::Stored { .. })), "{rc:?}");
    }
}
