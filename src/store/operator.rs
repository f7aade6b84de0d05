//! The write gate with the mass-change brake, and the operators' changes.
//!
//! The brake ([`crate::domain::brake`] decides) counts writes of the action's kind started within
//! the sliding window, in the store, so the count survives restarts and is shared by replicas.
//! Counting and marking the write happen in one transaction; on PostgreSQL an advisory lock
//! serialises that transaction across replicas (on SQLite the single writer does). Each kind has
//! its own engagement row in `brake` (1 = deactivations, 2 = reactivations).

use sqlx::Row as _;

use super::actions::{action_from_row, append_audit, Update, ACTION_COLS};
use super::db::{Db, Row, Work};
use super::models::{ActionRecord, AuditEntry, WfUserRef};
use super::{Backend, Store, StoreError};
use crate::domain::brake::{self, BrakeDecision, BrakeLimit};
use crate::domain::{ActionKind, Reason, Status, Step};

/// An arbitrary, fixed key for the brake's advisory lock.
const BRAKE_LOCK: i64 = 0x0ff_b0a2d;

/// The brake that applies to one write: its kind's limit.
#[derive(Debug, Clone, Copy)]
pub struct Brake {
    pub kind: ActionKind,
    pub limit: BrakeLimit,
}

/// The `brake` row of a kind of write.
fn brake_row(kind: ActionKind) -> i64 {
    match kind {
        ActionKind::Deactivate => 1,
        ActionKind::Reactivate => 2,
    }
}

/// What the write gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Marked as written (write_sent, write_at): go ahead.
    Proceed,
    /// Held by the brake; `first` when this hold engaged it (notify once per engagement).
    Braked { first: bool, recent: i64 },
    /// Another worker holds the action now.
    LeaseLost,
    /// HR cancelled the termination while it was being worked on: it ended
    /// `cancelled/termination_cancelled` without a write.
    Cancelled,
}

/// Why an operator's change was refused.
#[derive(Debug)]
pub enum OpError {
    NotFound,
    /// The action is not in a status that allows this change; the current status is given.
    Conflict(Status),
    Store(StoreError),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}
impl From<sqlx::Error> for OpError {
    fn from(e: sqlx::Error) -> Self {
        OpError::Store(e.into())
    }
}

/// An operator's change to one action.
#[derive(Debug, Clone)]
pub enum OpChange {
    /// Held → pending, approved (and the chosen user, for an ambiguous match).
    Approve { user: Option<WfUserRef> },
    /// Failed → pending with a fresh retry budget.
    Retry,
    /// Scheduled, pending, held or failed → cancelled/operator.
    Cancel,
}

impl OpChange {
    fn allowed(&self) -> &'static [Status] {
        match self {
            OpChange::Approve { .. } => &[Status::Held],
            OpChange::Retry => &[Status::Failed],
            OpChange::Cancel => &[
                Status::Scheduled,
                Status::Pending,
                Status::Held,
                Status::Failed,
            ],
        }
    }
}

/// The write gate's read: the cancellation flag, the brake's count and its engagement. The count
/// stops one past the limit: the decision needs no more, and a count that read every write of a
/// large layoff would cost O(writes) per write. The partial index on (write_at, kind) of written
/// actions makes what it does read index entries only (migrations 0008 and 0013).
const GATE_READ: &str = "SELECT a.cancel_requested AS stop, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM actions w WHERE w.kind = $4 AND w.write_at >= $3 LIMIT $6) AS c) AS recent, \
    (SELECT engaged FROM brake WHERE id = $5) AS engaged \
    FROM actions a WHERE a.id = $1 AND a.lease_owner = $2";

/// [`Store::begin_write`].
struct BeginWrite {
    backend: Backend,
    now: jiff::Timestamp,
    id: String,
    owner: String,
    user: Option<WfUserRef>,
    audit: Vec<AuditEntry>,
    brake: Option<Brake>,
}

impl Work for BeginWrite {
    type Out = Gate;

    async fn run<D: Db>(self, db: &mut D) -> Result<Gate, StoreError> {
        let BeginWrite {
            backend,
            now: at,
            id,
            owner,
            user,
            audit,
            brake,
        } = self;
        let now = at.as_millisecond();
        let id = id.as_str();
        let owner = owner.as_str();
        let window_ms = brake.map(|b| b.limit.window_ms).unwrap_or(0);
        let kind = brake.map(|b| b.kind).unwrap_or(ActionKind::Deactivate);
        if backend == Backend::Postgres {
            db.exec("SELECT pg_advisory_xact_lock($1)", &[BRAKE_LOCK.into()])
                .await?;
        }
        let row = db
            .row(
                GATE_READ,
                &[
                    id.into(),
                    owner.into(),
                    (now - window_ms).into(),
                    kind.as_str().into(),
                    brake_row(kind).into(),
                    brake.map_or(0, |b| i64::from(b.limit.max) + 1).into(),
                ],
            )
            .await?;
        // Lease lost: nothing is changed, so committing the transaction is a rollback.
        let Some(row) = row else {
            return Ok(Gate::LeaseLost);
        };
        let stop = row.int(0)? != 0;
        let recent = row.int(1)?;
        let engaged = row.opt_int(2)?.unwrap_or(0) != 0;
        let user_id = user.as_ref().map(|u| u.id.as_str());
        let user_name = user.as_ref().and_then(|u| u.name.as_deref());
        let user_email = user.as_ref().and_then(|u| u.email.as_deref());
        let mut entries = audit;

        // A cancellation that arrived while the action was being worked on stops it here.
        if stop {
            let stopped = db
                .exec(
                    "UPDATE actions SET status = 'cancelled', reason = 'termination_cancelled', lease_owner = NULL, lease_until = NULL, \
                     updated_at = $2, done_at = $2 WHERE id = $1 AND lease_owner = $3",
                    &[id.into(), now.into(), owner.into()],
                )
                .await?;
            if stopped == 0 {
                return Ok(Gate::LeaseLost);
            }
            entries.push(AuditEntry::new(at, Step::Finished, serde_json::json!({"status": "cancelled", "reason": "termination_cancelled", "write_sent": false})));
            append_audit(db, id, &entries).await?;
            return Ok(Gate::Cancelled);
        }

        let decision = brake.map(|b| (b, brake::decide(recent, b.limit, engaged)));
        if let Some((b, BrakeDecision::Hold { newly_engaged })) = decision {
            let held = db
                .exec(
                    "UPDATE actions SET status = 'held', reason = 'rate_brake', lease_owner = NULL, lease_until = NULL, \
                     wf_user_id = COALESCE($2, wf_user_id), wf_user_name = COALESCE($3, wf_user_name), \
                     wf_user_email = COALESCE($4, wf_user_email), updated_at = $5 WHERE id = $1 AND lease_owner = $6",
                    &[
                        id.into(),
                        user_id.into(),
                        user_name.into(),
                        user_email.into(),
                        now.into(),
                        owner.into(),
                    ],
                )
                .await?;
            if held == 0 {
                return Ok(Gate::LeaseLost);
            }
            if newly_engaged {
                db.exec(
                    "UPDATE brake SET engaged = 1, engaged_at = $1 WHERE id = $2",
                    &[now.into(), brake_row(b.kind).into()],
                )
                .await?;
            }
            entries.push(AuditEntry::new(
                at,
                Step::SafetyHold,
                serde_json::json!({"reason": "rate_brake", "kind": b.kind.as_str(), "writes_in_window": recent,
                    "brake_max": b.limit.max, "brake_window_ms": b.limit.window_ms, "brake_newly_engaged": newly_engaged}),
            ));
            entries.push(AuditEntry::new(
                at,
                Step::Finished,
                serde_json::json!({"status": "held", "reason": "rate_brake"}),
            ));
            append_audit(db, id, &entries).await?;
            return Ok(Gate::Braked {
                first: newly_engaged,
                recent,
            });
        }
        // Marked first: if the lease was lost, nothing has been changed yet.
        let marked = db
            .exec(
                "UPDATE actions SET write_sent = 1, write_at = $2, wf_user_id = COALESCE($3, wf_user_id), \
                 wf_user_name = COALESCE($4, wf_user_name), wf_user_email = COALESCE($5, wf_user_email), updated_at = $2 \
                 WHERE id = $1 AND lease_owner = $6",
                &[
                    id.into(),
                    now.into(),
                    user_id.into(),
                    user_name.into(),
                    user_email.into(),
                    owner.into(),
                ],
            )
            .await?;
        if marked == 0 {
            return Ok(Gate::LeaseLost);
        }
        if let Some((b, BrakeDecision::Pass { disengage: true })) = decision {
            // Writes of this kind flow again: the engagement is over.
            db.exec(
                "UPDATE brake SET engaged = 0, engaged_at = NULL WHERE id = $1",
                &[brake_row(b.kind).into()],
            )
            .await?;
        }
        if brake.is_some() {
            entries.push(AuditEntry::new(
                at,
                Step::BrakeChecked,
                serde_json::json!({"kind": kind.as_str(), "writes_in_window": recent}),
            ));
        }
        append_audit(db, id, &entries).await?;
        Ok(Gate::Proceed)
    }
}

impl Store {
    /// Checks the brake (when given) and, if the write may go ahead, marks it as sent, all in one
    /// transaction. `update` and `audit` are recorded either way. Three statements on the common
    /// path: read (cancellation flag, brake count, engagement), mark, audit.
    pub async fn begin_write(
        &self,
        id: &str,
        owner: &str,
        update: &Update,
        audit: &[AuditEntry],
        brake: Option<Brake>,
    ) -> Result<Gate, StoreError> {
        self.transact(BeginWrite {
            backend: self.backend,
            now: self.clock.now(),
            id: id.to_owned(),
            owner: owner.to_owned(),
            user: update.user.clone(),
            audit: audit.to_vec(),
            brake,
        })
        .await
    }

    /// Applies an operator's change if the action's status allows it, with its audit entry.
    pub async fn operator_change(
        &self,
        id: &str,
        change: &OpChange,
        audit: AuditEntry,
    ) -> Result<ActionRecord, OpError> {
        let now = self.clock.now_ms();
        let (_turn, mut tx) = self.begin().await?;
        let sql = format!("SELECT {ACTION_COLS} FROM actions WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(OpError::NotFound)?;
        let current = action_from_row(&Row::Any(row))?;
        if !change.allowed().contains(&current.status) {
            tx.rollback().await?;
            return Err(OpError::Conflict(current.status));
        }
        let q = match change {
            OpChange::Approve { user } => sqlx::query(
                "UPDATE actions SET status = 'pending', reason = NULL, approved = 1, run_at = $2, updated_at = $2, \
                 wf_user_id = COALESCE($3, wf_user_id), wf_user_name = CASE WHEN $3 IS NULL THEN wf_user_name ELSE $4 END, \
                 wf_user_email = CASE WHEN $3 IS NULL THEN wf_user_email ELSE $5 END WHERE id = $1 AND status = $6",
            )
            .bind(id)
            .bind(now)
            .bind(user.as_ref().map(|u| u.id.clone()))
            .bind(user.as_ref().and_then(|u| u.name.clone()))
            .bind(user.as_ref().and_then(|u| u.email.clone()))
            .bind(current.status.as_str()),
            OpChange::Retry => sqlx::query(
                "UPDATE actions SET status = 'pending', reason = NULL, attempts = 0, run_at = $2, updated_at = $2, done_at = NULL \
                 WHERE id = $1 AND status = $3",
            )
            .bind(id)
            .bind(now)
            .bind(current.status.as_str()),
            OpChange::Cancel => sqlx::query(
                "UPDATE actions SET status = 'cancelled', reason = 'operator', updated_at = $2, done_at = $2 WHERE id = $1 AND status = $3",
            )
            .bind(id)
            .bind(now)
            .bind(current.status.as_str()),
        };
        if q.execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(OpError::Conflict(current.status));
        }
        append_audit(&mut tx, id, std::slice::from_ref(&audit)).await?;
        let row = sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(action_from_row(&Row::Any(row))?)
    }

    /// Approves every action held by the brake and disengages it; returns their ids.
    pub async fn release_brake(&self, audit: AuditEntry) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now_ms();
        let (_turn, mut tx) = self.begin().await?;
        let ids: Vec<String> = sqlx::query(
            "UPDATE actions SET status = 'pending', reason = NULL, approved = 1, run_at = $1, updated_at = $1 \
             WHERE status = 'held' AND reason = 'rate_brake' RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        for id in &ids {
            append_audit(&mut tx, id, std::slice::from_ref(&audit)).await?;
        }
        sqlx::query("UPDATE brake SET engaged = 0, engaged_at = NULL")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Whether the brake (of either kind) is engaged now.
    pub async fn brake_engaged(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT MAX(engaged) AS engaged FROM brake")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<i64>, _>("engaged"))
            .transpose()?
            .flatten()
            .unwrap_or(0)
            != 0)
    }

    /// How many actions wait in each non-terminal status.
    pub async fn waiting_counts(&self) -> Result<Vec<(Status, Option<Reason>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, reason, COUNT(*) AS n FROM actions WHERE status IN ('scheduled', 'pending', 'in_progress', 'held') \
             GROUP BY status, reason",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let status: String = r.try_get("status")?;
            let reason: Option<String> = r.try_get("reason")?;
            if let Ok(s) = status.parse() {
                out.push((s, reason.and_then(|x| x.parse().ok()), r.try_get("n")?));
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Retention: clears raw delivery bodies older than `payload_days` and deletes audit rows
    /// older than `audit_days`, as of `now` (ms). Actions, events and the hash of each body stay.
    /// Returns (bodies cleared, audit rows deleted).
    ///
    /// Neither table has an index on its time (migration 0014: each was a B-tree more that every
    /// intake commit wrote). Rows are found in id order instead, which is the order they were
    /// stored in (a delivery's id holds a UUIDv7, an audit row's is a sequence): up to the first
    /// row that is not old yet. Only rows older than the cutoff are touched, whatever the ids
    /// say; an old row stored after a newer one (clocks of two replicas) waits for a later run.
    pub async fn purge(
        &self,
        now: i64,
        payload_days: u32,
        audit_days: u32,
    ) -> Result<(u64, u64), StoreError> {
        const DAY: i64 = 86_400_000;
        let _turn = self.writing().await;
        let bodies = self
            .purge_in_id_order::<String>(
                now - i64::from(payload_days) * DAY,
                "SELECT id FROM deliveries WHERE received_at >= $1 ORDER BY id LIMIT 1",
                "UPDATE deliveries SET body = NULL WHERE body IS NOT NULL AND received_at < $1",
            )
            .await?;
        let audit = self
            .purge_in_id_order::<i64>(
                now - i64::from(audit_days) * DAY,
                "SELECT id FROM audit WHERE at >= $1 ORDER BY id LIMIT 1",
                "DELETE FROM audit WHERE at < $1",
            )
            .await?;
        Ok((bodies, audit))
    }

    /// Runs `change` (whose `$1` is the cutoff) on the rows before the first one, in id order,
    /// that `first_new` finds at or after the cutoff; on every row if none is. `Id` is the type
    /// of the table's ids (text for deliveries, an integer for audit rows).
    async fn purge_in_id_order<Id>(
        &self,
        cutoff: i64,
        first_new: &str,
        change: &str,
    ) -> Result<u64, StoreError>
    where
        Id: for<'r> sqlx::Decode<'r, sqlx::Any>
            + for<'q> sqlx::Encode<'q, sqlx::Any>
            + sqlx::Type<sqlx::Any>
            + Send
            + Unpin,
    {
        let first: Option<Id> = sqlx::query_scalar(first_new)
            .bind(cutoff)
            .fetch_optional(&self.pool)
            .await?;
        let changed = match first {
            Some(id) => {
                sqlx::query(&format!("{change} AND id < $2"))
                    .bind(cutoff)
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
            None => sqlx::query(change).bind(cutoff).execute(&self.pool).await?,
        };
        Ok(changed.rows_affected())
    }

    /// The raw body of a delivery, while retention keeps it.
    pub async fn delivery_body(&self, delivery_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT body FROM deliveries WHERE id = $1")
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>("body"))
            .transpose()?
            .flatten())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::GATE_READ;
    use crate::domain::clock::Clock;
    use crate::store::Store;

    /// Migration 0013 made the index partial (written actions only); the brake's count must still
    /// be answered from it, not from the table.
    #[tokio::test]
    async fn on_sqlite_the_brake_count_reads_the_partial_index_of_written_actions() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gate.db").display());
        let store = Store::connect(&url.into(), Clock::system()).await.unwrap();
        store.migrate().await.unwrap();
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {GATE_READ}"))
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(3))
            .collect();
        assert!(
            plan.iter()
                .any(|l| l.contains("COVERING INDEX actions_write_at_kind")),
            "{plan:#?}"
        );
    }

    #[tokio::test]
    async fn on_postgres_the_brake_count_can_use_the_partial_index_of_written_actions() {
        let Some((_store, mut conn)) = crate::store::test_postgres_store().await else {
            return;
        };
        // An empty table is read whole more cheaply than through any index; with sequential
        // scans priced out, an index that can answer the count is used.
        for sql in [
            "SET enable_seqscan = off".to_string(),
            format!("PREPARE g(text, text, bigint, text, bigint, bigint) AS {GATE_READ}"),
        ] {
            sqlx::query(&sql).execute(&mut conn).await.unwrap();
        }
        let plan: Vec<String> =
            sqlx::query("EXPLAIN EXECUTE g('act_1', 'w', 0, 'deactivate', 1, 26)")
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
        assert!(
            plan.iter().any(|l| l.contains("actions_write_at_kind")),
            "{}",
            plan.join("\n")
        );
    }

    /// Deliveries and audit rows stored in id order 1, 2, 3 at times 1,000, 100,000 and 2,000
    /// (the third from a replica whose clock is behind); purges as of 50,000 and then 200,000.
    async fn purge_walks_in_id_order_and_touches_only_old_rows(store: &Store) {
        for sql in [
            "INSERT INTO deliveries (id, source, dedupe_key, received_at, body, body_sha256) VALUES \
             ('dlv_1', 'hr', 'k1', 1000, 'a', 'x'), ('dlv_2', 'hr', 'k2', 100000, 'b', 'x'), \
             ('dlv_3', 'hr', 'k3', 2000, 'c', 'x')",
            "INSERT INTO actions (id, kind, status, due_at, run_at, created_at, updated_at, source) \
             VALUES ('act_1', 'deactivate', 'scheduled', 1, 1, 1, 1, 'hr')",
            "INSERT INTO audit (action_id, at, step, detail) VALUES ('act_1', 1000, 's1', '{}')",
            "INSERT INTO audit (action_id, at, step, detail) VALUES ('act_1', 100000, 's2', '{}')",
            "INSERT INTO audit (action_id, at, step, detail) VALUES ('act_1', 2000, 's3', '{}')",
        ] {
            sqlx::query(sql).execute(&store.pool).await.unwrap();
        }
        let kept = || async {
            let bodies: Vec<String> =
                sqlx::query_scalar("SELECT id FROM deliveries WHERE body IS NOT NULL ORDER BY id")
                    .fetch_all(&store.pool)
                    .await
                    .unwrap();
            let steps: Vec<String> = sqlx::query_scalar("SELECT step FROM audit ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
            (bodies, steps)
        };
        // Up to the first row that is not old: the third, old too, waits for a later run.
        assert_eq!(store.purge(50_000, 0, 0).await.unwrap(), (1, 1));
        assert_eq!(
            kept().await,
            (
                vec!["dlv_2".into(), "dlv_3".into()],
                vec!["s2".into(), "s3".into()]
            )
        );
        // Nothing is new any more: every old row goes.
        assert_eq!(store.purge(200_000, 0, 0).await.unwrap(), (2, 2));
        assert_eq!(kept().await, (vec![], vec![]));
    }

    #[tokio::test]
    async fn on_sqlite_the_purge_walks_in_id_order_and_touches_only_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("purge.db").display());
        let store = Store::connect(&url.into(), Clock::system()).await.unwrap();
        store.migrate().await.unwrap();
        purge_walks_in_id_order_and_touches_only_old_rows(&store).await;
    }

    #[tokio::test]
    async fn on_postgres_the_purge_walks_in_id_order_and_touches_only_old_rows() {
        let Some((store, _conn)) = crate::store::test_postgres_store().await else {
            return;
        };
        purge_walks_in_id_order_and_touches_only_old_rows(&store).await;
    }
}
