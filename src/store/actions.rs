//! Queries on deliveries, actions, events and the audit trail.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::db::{Arg, Db, Row, Work};
use super::models::*;
use super::{Backend, Store, StoreError};
use crate::domain::{ActionKind, Reason, Status};

pub(super) const ACTION_COLS: &str = "id, kind, status, reason, due_at, run_at, created_at, updated_at, source, \
    employee_id, email, employee_name, wf_user_id, wf_user_name, wf_user_email, candidates, attempts, \
    write_sent, lease_owner, prev_owner, last_error, done_at, approved, delivery_id, hr_looked_up_at";

/// When the action in `table` may next be claimed (NULL: never, it rests), exactly as indexed by
/// `actions_claimable` (migration 0007): the databases use an index on an expression only for the
/// same expression.
fn claimable(table: &str) -> String {
    format!(
        "(CASE WHEN {table}.status IN ('scheduled', 'pending') THEN {table}.run_at \
         WHEN {table}.status = 'in_progress' THEN {table}.lease_until END)"
    )
}

/// A change to an action made by the worker that holds its lease. `None` leaves a column alone.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub status: Option<Status>,
    /// `Some(None)` clears the reason.
    pub reason: Option<Option<Reason>>,
    pub run_at: Option<i64>,
    /// Overrides the attempt counter (an attempt that Workfront refused for credentials is given back).
    pub attempts: Option<u32>,
    pub write_sent: Option<bool>,
    pub user: Option<WfUserRef>,
    pub candidates: Option<Vec<WfUserRef>>,
    pub last_error: Option<Option<String>>,
    /// Give the lease back (any status but `in_progress`).
    pub release: bool,
    pub done: bool,
    /// The work email the HR vendor's API gave (sets `email` and its lower-case form).
    pub email: Option<String>,
    /// A new due time (the termination date the HR vendor's API gave).
    pub due_at: Option<i64>,
    /// Record that the HR vendor's API was asked (at the update's time).
    pub hr_looked_up: bool,
}

/// Filters of `GET /admin/v1/actions`.
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    pub status: Option<Status>,
    pub reason: Option<Reason>,
    pub source: Option<String>,
    /// Matches the employee id exactly or the email case-insensitively.
    pub employee: Option<String>,
    /// Only actions past this id in the order asked for (the previous page's last id).
    pub cursor: Option<String>,
    pub limit: u32,
    /// Oldest first (the console's review queue) instead of newest first.
    pub oldest_first: bool,
}

impl Store {
    /// Claims up to `limit` actions that are due (or whose lease expired) for `owner`.
    pub async fn claim_due(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        self.transact(Claim {
            backend: self.backend,
            owner: owner.to_owned(),
            now,
            lease_ms,
            limit,
        })
        .await
    }

    /// Applies `update` and appends `audit` in one transaction, if `owner` still holds the lease.
    /// Returns false when the lease was lost (another worker took the action over).
    pub async fn record(
        &self,
        id: &str,
        owner: &str,
        update: &Update,
        audit: &[AuditEntry],
    ) -> Result<bool, StoreError> {
        self.transact(Record {
            now: self.clock.now_ms(),
            id: id.to_owned(),
            owner: owner.to_owned(),
            update: update.clone(),
            audit: audit.to_vec(),
        })
        .await
    }

    /// Gives back every lease `owner` holds, so another worker may take those actions at once
    /// (graceful shutdown). The actions become `pending` again.
    pub async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let now = self.clock.now_ms();
        let _turn = self.writing().await;
        let done = sqlx::query(
            "UPDATE actions SET status = 'pending', lease_owner = NULL, lease_until = NULL, attempts = attempts - 1, \
             updated_at = $2 WHERE lease_owner = $1 AND status = 'in_progress'",
        )
        .bind(owner)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Heartbeat: extends the leases `owner` holds on these actions (the ones it is working on) to
    /// `until`. A lease whose action is no longer being worked on (its attempt died with the
    /// database) is not renewed, so it expires and the action is tried again.
    pub async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        until: i64,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "UPDATE actions SET lease_until = $2 WHERE lease_owner = $1 AND status = 'in_progress' AND id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(owner).bind(until);
        for id in ids {
            q = q.bind(id.as_str());
        }
        let _turn = self.writing().await;
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    /// At the start of a single-process deployment (SQLite): every action still `in_progress` was
    /// left by an earlier process of ours that died, so its lease is ended now and the work resumes
    /// at once instead of after the lease.
    pub async fn expire_orphaned_leases(&self) -> Result<u64, StoreError> {
        let _turn = self.writing().await;
        let done = sqlx::query(
            "UPDATE actions SET lease_until = 0 WHERE status = 'in_progress' AND lease_until > 0",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The earliest time at which something becomes runnable, if anything waits.
    pub async fn next_run_at(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT MIN({c}) AS t FROM actions WHERE {c} IS NOT NULL",
            c = claimable("actions")
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("t")?)
    }

    pub async fn get_action(&self, id: &str) -> Result<Option<ActionDetail>, StoreError> {
        let sql = format!("SELECT {ACTION_COLS} FROM actions WHERE id = $1");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let action = action_from_row(&Row::Any(row))?;
        let events = sqlx::query(
            "SELECT e.id, e.delivery_id, e.type, e.sender_type, e.employee_id, e.email, e.name, e.effective_at, \
             e.occurred_at, d.received_at FROM events e JOIN deliveries d ON d.id = e.delivery_id \
             WHERE e.action_id = $1 ORDER BY e.occurred_at, e.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(EventRecord {
                id: r.try_get("id")?,
                delivery_id: r.try_get("delivery_id")?,
                kind: r.try_get("type")?,
                sender_type: r.try_get("sender_type")?,
                employee_id: r.try_get("employee_id")?,
                email: r.try_get("email")?,
                name: r.try_get("name")?,
                effective_at: r.try_get("effective_at")?,
                occurred_at: r.try_get("occurred_at")?,
                received_at: r.try_get("received_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let audit =
            sqlx::query("SELECT at, step, detail FROM audit WHERE action_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    let detail: String = r.try_get("detail")?;
                    Ok(AuditRecord {
                        at: r.try_get("at")?,
                        step: r.try_get("step")?,
                        detail: serde_json::from_str(&detail)
                            .unwrap_or(serde_json::Value::String(detail)),
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(ActionDetail {
            action,
            events,
            audit,
        }))
    }

    /// Actions newest first, filtered; at most `filter.limit`.
    pub async fn list_actions(
        &self,
        filter: &ActionFilter,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        // Each `?` becomes the next numbered placeholder.
        let mut push = |clause: &str, values: Vec<String>| {
            let mut out = String::new();
            let mut values = values.into_iter();
            for (i, part) in clause.split('?').enumerate() {
                if i > 0 {
                    binds.push(values.next().unwrap_or_default());
                    out.push_str(&format!("${}", binds.len()));
                }
                out.push_str(part);
            }
            clauses.push(out);
        };
        if let Some(s) = filter.status {
            push("status = ?", vec![s.as_str().to_string()]);
        }
        if let Some(r) = filter.reason {
            push("reason = ?", vec![r.as_str().to_string()]);
        }
        if let Some(s) = &filter.source {
            push("source = ?", vec![s.clone()]);
        }
        if let Some(e) = &filter.employee {
            push(
                "(employee_id = ? OR email_lc = ?)",
                vec![e.clone(), e.to_lowercase()],
            );
        }
        if let Some(c) = &filter.cursor {
            let past = if filter.oldest_first {
                "id > ?"
            } else {
                "id < ?"
            };
            push(past, vec![c.clone()]);
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {ACTION_COLS} FROM actions {where_sql} ORDER BY id {} LIMIT {}",
            if filter.oldest_first { "ASC" } else { "DESC" },
            filter.limit
        );
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        actions_from_rows(rows)
    }

    /// How many actions there are in each status (only statuses that occur).
    pub async fn status_counts(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        sqlx::query("SELECT status, COUNT(*) AS n FROM actions GROUP BY status")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let name: String = r.try_get("status")?;
                let status = name
                    .parse::<Status>()
                    .map_err(|_| StoreError::Corrupt(format!("unknown status {name:?}")))?;
                Ok((status, r.try_get::<i64, _>("n")?))
            })
            .collect()
    }
}

/// The `candidates` column's JSON format (Workfront's own field names, as written since the first
/// version): private to the store, so the rest of the code sees plain [`WfUserRef`]s.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredUser {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "emailAddr", default)]
    email: Option<String>,
}

impl From<StoredUser> for WfUserRef {
    fn from(u: StoredUser) -> Self {
        WfUserRef {
            id: u.id,
            name: u.name,
            email: u.email,
        }
    }
}

/// [`Store::claim_due`].
struct Claim {
    backend: Backend,
    owner: String,
    now: i64,
    lease_ms: i64,
    limit: u32,
}

impl Work for Claim {
    type Out = Vec<ActionRecord>;

    async fn run<D: Db>(self, db: &mut D) -> Result<Vec<ActionRecord>, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // One action per employee at a time, in order: an action is not claimed while another
        // action of the same employee (same employee id, or same email ignoring case) is being
        // worked on, or is claimable and older.
        //
        // Flat in the backlog: the outer query walks the `actions_claimable` index in order and
        // stops after `limit` actions it may take; the per-employee check looks only at that
        // employee's own actions (through the employee id and email indexes). A lease that ends
        // at `now` has run out.
        let sql = format!(
            "UPDATE actions SET status = 'in_progress', prev_owner = lease_owner, lease_owner = $1, lease_until = $2, \
             updated_at = $3, attempts = attempts + 1 \
             WHERE id IN (SELECT a.id FROM actions a \
               WHERE {claimable_a} <= $3 \
               AND NOT EXISTS (SELECT 1 FROM actions b WHERE b.id <> a.id \
                 AND ((a.employee_id IS NOT NULL AND b.employee_id = a.employee_id) OR (a.email_lc IS NOT NULL AND b.email_lc = a.email_lc)) \
                 AND ((b.status = 'in_progress' AND b.lease_until > $3) OR (b.id < a.id AND {claimable_b} <= $3))) \
               ORDER BY {claimable_a} LIMIT $4{lock}) \
             RETURNING {ACTION_COLS}",
            claimable_a = claimable("a"),
            claimable_b = claimable("b"),
        );
        let args = [
            self.owner.as_str().into(),
            (self.now + self.lease_ms).into(),
            self.now.into(),
            i64::from(self.limit).into(),
        ];
        db.rows(&sql, &args)
            .await?
            .iter()
            .map(action_from_row)
            .collect()
    }
}

/// [`Store::record`].
struct Record {
    now: i64,
    id: String,
    owner: String,
    update: Update,
    audit: Vec<AuditEntry>,
}

impl Work for Record {
    type Out = bool;

    async fn run<D: Db>(self, db: &mut D) -> Result<bool, StoreError> {
        let Record {
            now,
            id,
            owner,
            update,
            audit,
        } = self;
        let candidates = update.candidates.as_deref().map(candidates_json);
        let user = update.user.as_ref();
        // Lower-cased as intake does (Rust's Unicode rules; SQLite's LOWER is ASCII only).
        let email_lc = update.email.as_deref().map(str::to_lowercase);
        let changed = db
            .exec(
                "UPDATE actions SET \
                   status = COALESCE($3, status), \
                   reason = CASE WHEN $4 = 1 THEN $5 ELSE reason END, \
                   run_at = COALESCE($6, run_at), \
                   write_sent = COALESCE($7, write_sent), \
                   wf_user_id = COALESCE($8, wf_user_id), \
                   wf_user_name = CASE WHEN $8 IS NULL THEN wf_user_name ELSE $9 END, \
                   wf_user_email = CASE WHEN $8 IS NULL THEN wf_user_email ELSE $10 END, \
                   candidates = COALESCE($11, candidates), \
                   last_error = CASE WHEN $12 = 1 THEN $13 ELSE last_error END, \
                   lease_owner = CASE WHEN $14 = 1 THEN NULL ELSE lease_owner END, \
                   lease_until = CASE WHEN $14 = 1 THEN NULL ELSE lease_until END, \
                   done_at = CASE WHEN $15 = 1 THEN $16 ELSE done_at END, \
                   attempts = COALESCE($17, attempts), \
                   email = COALESCE($18, email), \
                   email_lc = COALESCE($21, email_lc), \
                   due_at = COALESCE($19, due_at), \
                   hr_looked_up_at = CASE WHEN $20 = 1 THEN $16 ELSE hr_looked_up_at END, \
                   updated_at = $16 \
                 WHERE id = $1 AND lease_owner = $2",
                &[
                    id.as_str().into(),
                    owner.as_str().into(),
                    update.status.map(|s| s.as_str()).into(),
                    i64::from(update.reason.is_some()).into(),
                    update.reason.flatten().map(|r| r.as_str()).into(),
                    update.run_at.into(),
                    update.write_sent.map(i64::from).into(),
                    user.map(|u| u.id.as_str()).into(),
                    user.and_then(|u| u.name.as_deref()).into(),
                    user.and_then(|u| u.email.as_deref()).into(),
                    (&candidates).into(),
                    i64::from(update.last_error.is_some()).into(),
                    update.last_error.as_ref().and_then(|e| e.as_deref()).into(),
                    i64::from(update.release).into(),
                    i64::from(update.done).into(),
                    now.into(),
                    update.attempts.map(i64::from).into(),
                    (&update.email).into(),
                    update.due_at.into(),
                    i64::from(update.hr_looked_up).into(),
                    (&email_lc).into(),
                ],
            )
            .await?;
        // Lease lost: nothing was changed, so committing the empty transaction is a rollback.
        if changed == 0 {
            return Ok(false);
        }
        append_audit(db, &id, &audit).await?;
        Ok(true)
    }
}

fn candidates_json(users: &[WfUserRef]) -> String {
    let stored: Vec<StoredUser> = users
        .iter()
        .map(|u| StoredUser {
            id: u.id.clone(),
            name: u.name.clone(),
            email: u.email.clone(),
        })
        .collect();
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".into())
}

/// Appends audit entries in one statement (one round trip to the database, however many).
pub(super) async fn append_audit<D: Db>(
    tx: &mut D,
    action_id: &str,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..entries.len())
        .map(|i| {
            format!(
                "(${}, ${}, ${}, ${})",
                4 * i + 1,
                4 * i + 2,
                4 * i + 3,
                4 * i + 4
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO audit (action_id, at, step, detail) VALUES {}",
        rows.join(", ")
    );
    let details: Vec<String> = entries.iter().map(|e| e.detail.to_string()).collect();
    let mut args: Vec<Arg<'_>> = Vec::with_capacity(4 * entries.len());
    for (e, detail) in entries.iter().zip(&details) {
        args.extend::<[Arg<'_>; 4]>([
            action_id.into(),
            e.at.into(),
            e.step.as_str().into(),
            detail.into(),
        ]);
    }
    tx.exec(&sql, &args).await?;
    Ok(())
}

/// Reads an action from a row of [`ACTION_COLS`], by position.
pub(super) fn action_from_row(r: &Row) -> Result<ActionRecord, StoreError> {
    let kind = r.text(1)?;
    let status = r.text(2)?;
    let reason = r.opt_text(3)?;
    let user_id = r.opt_text(12)?;
    let candidates = r.opt_text(15)?;
    let corrupt = |what: &str, v: &str| {
        StoreError::Corrupt(format!("stored {what} {v:?} is not known to this version"))
    };
    Ok(ActionRecord {
        id: r.text(0)?,
        kind: ActionKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        status: status.parse().map_err(|_| corrupt("status", &status))?,
        reason: match reason {
            Some(r) => Some(r.parse().map_err(|_| corrupt("reason", &r))?),
            None => None,
        },
        due_at: r.int(4)?,
        run_at: r.int(5)?,
        created_at: r.int(6)?,
        updated_at: r.int(7)?,
        source: r.text(8)?,
        employee_id: r.opt_text(9)?,
        email: r.opt_text(10)?,
        employee_name: r.opt_text(11)?,
        user: user_id
            .map(|id| {
                Ok::<_, StoreError>(WfUserRef {
                    id,
                    name: r.opt_text(13)?,
                    email: r.opt_text(14)?,
                })
            })
            .transpose()?,
        candidates: candidates
            .and_then(|c| serde_json::from_str::<Vec<StoredUser>>(&c).ok())
            .map(|c| c.into_iter().map(WfUserRef::from).collect())
            .unwrap_or_default(),
        attempts: r.int(16)?.max(0) as u32,
        write_sent: r.int(17)? != 0,
        lease_owner: r.opt_text(18)?,
        prev_owner: r.opt_text(19)?,
        last_error: r.opt_text(20)?,
        done_at: r.opt_int(21)?,
        approved: r.int(22)? != 0,
        delivery_id: r.opt_text(23)?,
        hr_looked_up: r.opt_int(24)?.is_some(),
    })
}

/// Reads actions from sqlx's rows of [`ACTION_COLS`].
pub(super) fn actions_from_rows(rows: Vec<AnyRow>) -> Result<Vec<ActionRecord>, StoreError> {
    rows.into_iter()
        .map(|r| action_from_row(&Row::Any(r)))
        .collect()
}
