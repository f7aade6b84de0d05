//! Storing a delivery: dedupe, then each event is planned against the employee's history
//! ([`crate::domain::lifecycle`]) and applied, all in one transaction, durably committed before
//! the sender is answered.
//!
//! Two paths, one per backend, both with "each delivery succeeds or fails alone":
//! - **SQLite** (one writer): deliveries that arrive together are committed together (group
//!   commit), each in its own savepoint, so one delivery the database refuses is rolled back alone
//!   and the others still commit with one fsync.
//! - **PostgreSQL** (several replicas): each delivery is its own transaction on its own
//!   connection (PostgreSQL groups concurrent commits itself). Before reading an employee's
//!   history the transaction takes an advisory lock per identifier (employee id, email), in sorted
//!   order so two deliveries never deadlock: deliveries about one employee that reach different
//!   replicas at once are planned one after the other, never both against the same old history.

use serde_json::json;
use sqlx::{Acquire, Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::actions::append_audit;
use super::models::{AuditEntry, Ended, Ingested, NewDelivery, NewEvent};
use super::{from_ms, Backend, Store, StoreError};
use crate::domain::lifecycle::{self, History, LastDeactivation, OpenAction, Plan, Switches};
use crate::domain::{new_id, ActionKind, Status, Step};

/// "The same employee": the employee id, or the email ignoring case ($1, $2; NULL matches nothing).
const SAME_EMPLOYEE: &str = "(employee_id = $1 OR email_lc = $2)";

/// Deliveries committed together at most (group commit).
const MAX_BATCH: usize = 64;

/// One delivery waiting for the intake writer.
pub(super) struct Job {
    delivery: NewDelivery,
    events: Vec<NewEvent>,
    switches: Switches,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

impl Store {
    /// Stores a delivery with its events and the actions they cause, and returns once that is
    /// durably committed. A delivery whose dedupe key is already stored is a duplicate and stores
    /// nothing.
    ///
    /// Deliveries that arrive together are committed together (group commit): each in its own
    /// savepoint, all with one durable commit, so a burst costs one fsync instead of one each.
    /// Nobody is answered before the commit that holds their delivery.
    pub async fn ingest(
        &self,
        delivery: &NewDelivery,
        events: &[NewEvent],
        switches: &Switches,
    ) -> Result<Ingested, StoreError> {
        if self.backend == Backend::Postgres {
            // Each delivery in its own transaction; the pool bounds how many run at once.
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.begin().await?;
            let outcome = ingest_in(&mut tx, self.backend, delivery, events, switches).await?;
            match outcome {
                Ingested::Duplicate { .. } => tx.rollback().await?,
                Ingested::Stored { .. } => tx.commit().await?,
            }
            return Ok(outcome);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            delivery: delivery.clone(),
            events: events.to_vec(),
            switches: switches.clone(),
            reply,
        };
        self.intake
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the intake writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the intake writer has stopped".into()))?
    }
}

/// Starts the intake writer of a store; it ends when the last sender is dropped.
pub(super) fn spawn_writer(pool: AnyPool, backend: Backend) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(1024);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            match commit_batch(&pool, backend, &batch).await {
                Ok(outcomes) => {
                    for (job, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = job.reply.send(outcome);
                    }
                }
                Err(e) => {
                    for job in batch {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    tx
}

/// Commits a batch: the outer error fails every delivery of it (the database is unavailable); an
/// inner error is that one delivery's, rolled back to its savepoint while the others commit.
async fn commit_batch(
    pool: &AnyPool,
    backend: Backend,
    batch: &[Job],
) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Sqlite {
        // Acknowledged means durable: this commit is fsynced (and with it every earlier one).
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await?;
    }
    let result = async {
        let mut tx = conn.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            let mut one = Acquire::begin(&mut tx).await?;
            match ingest_in(&mut one, backend, &job.delivery, &job.events, &job.switches).await {
                Ok(outcome @ Ingested::Duplicate { .. }) => {
                    one.rollback().await?;
                    outcomes.push(Ok(outcome));
                }
                Ok(outcome @ Ingested::Stored { .. }) => {
                    one.commit().await?;
                    outcomes.push(Ok(outcome));
                }
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => {
                    tracing::warn!(delivery_id = %job.delivery.id, error = %e, "the database refused one delivery; the rest of its batch goes on");
                    one.rollback().await?;
                    outcomes.push(Err(e));
                }
            }
        }
        tx.commit().await?;
        Ok::<_, StoreError>(outcomes)
    }
    .await;
    if backend == Backend::Sqlite {
        // Back to the connection's default; if this fails it stays on the safer setting.
        let _ = sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await;
    }
    result
}

async fn ingest_in(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    d: &NewDelivery,
    events: &[NewEvent],
    switches: &Switches,
) -> Result<Ingested, StoreError> {
    // The insert comes first so that a SQLite transaction takes the write lock at once.
    let inserted = sqlx::query(
        "INSERT INTO deliveries (id, source, dedupe_key, received_at, content_type, body, body_sha256, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(&d.id)
    .bind(&d.source)
    .bind(&d.dedupe_key)
    .bind(d.received_at)
    .bind(&d.content_type)
    .bind(&d.body)
    .bind(&d.body_sha256)
    .bind(&d.request_id)
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_none() {
        let existing: String =
            sqlx::query("SELECT id FROM deliveries WHERE source = $1 AND dedupe_key = $2")
                .bind(&d.source)
                .bind(&d.dedupe_key)
                .fetch_one(&mut **tx)
                .await?
                .try_get("id")?;
        return Ok(Ingested::Duplicate {
            delivery_id: existing,
        });
    }
    if backend == Backend::Postgres {
        lock_employees(tx, events).await?;
    }
    let mut action_ids = Vec::new();
    let mut ended = Vec::new();
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
        if let Some(id) = &created {
            action_ids.push(id.clone());
        }
        sqlx::query(
            "INSERT INTO events (id, delivery_id, action_id, type, sender_type, employee_id, email, email_lc, name, effective_at, \
             occurred_at, created_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&ev.id)
        .bind(&d.id)
        .bind(created)
        .bind(ev.kind.as_str())
        .bind(&ev.sender_type)
        .bind(&ev.employee_id)
        .bind(&ev.email)
        .bind(email_lc.as_deref())
        .bind(&ev.name)
        .bind(&ev.effective_at)
        .bind(ev.occurred_at)
        .bind(d.received_at)
        .bind(outcome)
        .execute(&mut **tx)
        .await?;
    }
    Ok(Ingested::Stored {
        delivery_id: d.id.clone(),
        action_ids,
        ended,
    })
}

/// Takes a transaction-scoped advisory lock for each identifier of the delivery's employees, in
/// sorted order (so that two deliveries never wait on each other in a cycle). A hash collision
/// only makes two unrelated employees wait for each other briefly.
async fn lock_employees(
    tx: &mut Transaction<'_, Any>,
    events: &[NewEvent],
) -> Result<(), StoreError> {
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
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0)) IS NULL AS waited")
            .bind(key)
            .fetch_one(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn history(
    tx: &mut Transaction<'_, Any>,
    employee_id: Option<&str>,
    email_lc: Option<&str>,
) -> Result<History, StoreError> {
    let newest = sqlx::query(&format!("SELECT id, occurred_at FROM events WHERE {SAME_EMPLOYEE} ORDER BY occurred_at DESC, id DESC LIMIT 1"))
        .bind(employee_id)
        .bind(email_lc)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("occurred_at")?)))
        .transpose()?;
    let open_rows = sqlx::query(&format!(
        "SELECT id, source, kind, status, write_sent, wf_user_id FROM actions \
         WHERE status IN ('scheduled', 'pending', 'held', 'in_progress') AND {SAME_EMPLOYEE} ORDER BY id"
    ))
    .bind(employee_id)
    .bind(email_lc)
    .fetch_all(&mut **tx)
    .await?;
    let mut open = Vec::new();
    for r in open_rows {
        let kind: String = r.try_get("kind")?;
        let status: String = r.try_get("status")?;
        open.push(OpenAction {
            id: r.try_get("id")?,
            source: r.try_get("source")?,
            kind: ActionKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("stored kind {kind:?}")))?,
            status: status
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("stored status {status:?}")))?,
            write_sent: r.try_get::<i64, _>("write_sent")? != 0,
            user_id: r.try_get("wf_user_id")?,
        });
    }
    let last = sqlx::query(&format!(
        "SELECT id, source, status, reason, write_sent, wf_user_id FROM actions WHERE kind = 'deactivate' \
         AND status NOT IN ('skipped', 'cancelled') AND {SAME_EMPLOYEE} ORDER BY id DESC LIMIT 1"
    ))
    .bind(employee_id)
    .bind(email_lc)
    .fetch_optional(&mut **tx)
    .await?;
    let last_deactivation = match last {
        None => None,
        Some(r) => {
            let status: String = r.try_get("status")?;
            let reason: Option<String> = r.try_get("reason")?;
            Some(LastDeactivation {
                id: r.try_get("id")?,
                source: r.try_get("source")?,
                status: status
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("stored status {status:?}")))?,
                reason: reason.and_then(|x| x.parse().ok()),
                write_sent: r.try_get::<i64, _>("write_sent")? != 0,
                user_id: r.try_get("wf_user_id")?,
            })
        }
    };
    let reactivation_open = open.iter().any(|a| a.kind == ActionKind::Reactivate);
    Ok(History {
        newest_event: newest,
        open,
        last_deactivation,
        reactivation_open,
    })
}

/// Applies a plan; returns the created action's id and a short outcome for the event row, and
/// pushes the actions it ended at once to `ended` (for metrics).
async fn apply(
    tx: &mut Transaction<'_, Any>,
    d: &NewDelivery,
    ev: &NewEvent,
    email_lc: Option<&str>,
    plan: &Plan,
    ended: &mut Vec<Ended>,
) -> Result<(Option<String>, String), StoreError> {
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
            let changed = sqlx::query(
                "UPDATE actions SET status = $2, reason = $3, updated_at = $4, done_at = $4 \
                 WHERE id = $1 AND status IN ('scheduled', 'pending', 'held') RETURNING kind",
            )
            .bind(id)
            .bind(status)
            .bind(reason)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(row) = changed {
                let kind: String = row.try_get("kind")?;
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
        sqlx::query("UPDATE actions SET cancel_requested = 1, updated_at = $2 WHERE id = $1 AND status = 'in_progress'")
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
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
    sqlx::query(
        "INSERT INTO actions (id, kind, status, reason, due_at, run_at, created_at, updated_at, source, employee_id, email, email_lc, \
         employee_name, wf_user_id, done_at, delivery_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&id)
    .bind(create.kind.as_str())
    .bind(create.status.as_str())
    .bind(create.reason.map(|r| r.as_str()))
    .bind(ev.due_at)
    .bind(if create.status == Status::Pending && create.user_id.is_some() { now } else { ev.due_at })
    .bind(now)
    .bind(&d.source)
    .bind(&ev.employee_id)
    .bind(&ev.email)
    .bind(email_lc)
    .bind(&ev.name)
    .bind(&create.user_id)
    .bind(terminal.then_some(now))
    .bind(&d.id)
    .execute(&mut **tx)
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
    Ok((Some(id), outcome.join("; ")))
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
