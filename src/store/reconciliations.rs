//! Reconciliation reports (SPEC §12): a report and its rows, worked on under a lease.
//!
//! A report is created with all its rows in one transaction (rows that name nobody already carry
//! `invalid`). A runner claims a `running` report whose lease is free or expired, checks its
//! unchecked rows page by page, records each page's outcomes in one transaction, renews the lease
//! as it goes, and marks the report `done` once no row is unchecked. A runner that dies leaves its
//! lease to expire; another (or the next process) takes the report over where it stopped.

use sqlx::Row as _;

use super::db::{insert_rows, Cell, Insert};
use super::{Store, StoreError, WfUserRef};
use crate::domain::reconcile::Outcome;

/// A row to store with a new report.
#[derive(Debug, Clone)]
pub struct NewLeaverRow {
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub terminated_on: Option<String>,
    /// Set: the row is stored as `invalid` with this reason.
    pub invalid: Option<String>,
}

/// A report without its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconciliationRecord {
    pub id: String,
    pub apply: bool,
    pub done: bool,
    pub origin: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub total: i64,
    /// Rows per outcome (only outcomes that occur); unchecked rows are `total` minus their sum.
    pub counts: Vec<(Outcome, i64)>,
}

impl ReconciliationRecord {
    pub fn count(&self, o: Outcome) -> i64 {
        self.counts
            .iter()
            .find(|(k, _)| *k == o)
            .map_or(0, |(_, n)| *n)
    }
}

/// One leaver of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaverRecord {
    pub idx: i64,
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub terminated_on: Option<String>,
    /// `None` while unchecked.
    pub outcome: Option<Outcome>,
    pub detail: Option<String>,
    pub user: Option<WfUserRef>,
    pub action_id: Option<String>,
}

/// What checking one row found.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    pub idx: i64,
    /// `None`: not decided yet (Workfront failed); `detail` says why and the row is tried again.
    pub outcome: Option<Outcome>,
    pub detail: Option<String>,
    pub user: Option<WfUserRef>,
    pub action_id: Option<String>,
}

const ROW_COLS: &str = "idx, employee_id, email, terminated_on, outcome, detail, wf_user_id, wf_user_name, wf_user_email, action_id";

impl Store {
    /// Stores a new `running` report with its rows, in input order.
    pub async fn create_reconciliation(
        &self,
        id: &str,
        apply: bool,
        origin: &str,
        rows: &[NewLeaverRow],
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let (_turn, mut tx) = self.begin().await?;
        sqlx::query(
            "INSERT INTO reconciliations (id, apply, status, origin, created_at, total) VALUES ($1, $2, 'running', $3, $4, $5)",
        )
        .bind(id)
        .bind(i64::from(apply))
        .bind(origin)
        .bind(now)
        .bind(rows.len() as i64)
        .execute(&mut *tx)
        .await?;
        let cells: Vec<Vec<Cell>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                vec![
                    Cell::from(id),
                    Cell::from(i as i64),
                    Cell::from(&r.employee_id),
                    Cell::from(&r.email),
                    Cell::from(&r.terminated_on),
                    Cell::from(r.invalid.as_ref().map(|_| Outcome::Invalid.as_str())),
                    Cell::from(&r.invalid),
                ]
            })
            .collect();
        static ROWS: Insert = Insert::new(
            "INSERT INTO reconciliation_rows (reconciliation_id, idx, employee_id, email, terminated_on, outcome, detail)",
            "",
        );
        insert_rows(&mut tx, &ROWS, &cells).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the oldest `running` report whose lease is free or expired, for `lease_ms`.
    /// Returns its id and whether it applies. The guarded update lets one replica win.
    pub async fn claim_reconciliation(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let now = self.clock.now_ms();
        let _turn = self.writing().await;
        let row = sqlx::query(
            "UPDATE reconciliations SET lease_owner = $1, lease_until = $2 \
             WHERE id = (SELECT id FROM reconciliations WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $3) \
                         ORDER BY created_at, id LIMIT 1) \
             AND status = 'running' AND (lease_until IS NULL OR lease_until < $3) RETURNING id, apply",
        )
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get::<i64, _>("apply")? != 0)))
            .transpose()
    }

    /// Extends `owner`'s lease; false when it was lost (another runner took the report over).
    pub async fn renew_reconciliation(
        &self,
        id: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let until = self.clock.now_ms() + lease_ms;
        let _turn = self.writing().await;
        let done = sqlx::query(
            "UPDATE reconciliations SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Up to `limit` unchecked rows after `after` (an `idx`; -1 for the start), in order.
    pub async fn unchecked_rows(
        &self,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LeaverRecord>, StoreError> {
        let sql = format!(
            "SELECT {ROW_COLS} FROM reconciliation_rows WHERE reconciliation_id = $1 AND outcome IS NULL AND idx > $2 ORDER BY idx LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(leaver_from_row).collect()
    }

    /// Records a page of results, if `owner` still holds the report; false when the lease was
    /// lost (the results are dropped: the new holder checks those rows itself).
    pub async fn record_rows(
        &self,
        id: &str,
        owner: &str,
        results: &[RowResult],
    ) -> Result<bool, StoreError> {
        let (_turn, mut tx) = self.begin().await?;
        let held = sqlx::query(
            "SELECT 1 AS held FROM reconciliations WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(false);
        }
        for r in results {
            let user = r.user.as_ref();
            sqlx::query(
                "UPDATE reconciliation_rows SET outcome = $3, detail = $4, wf_user_id = $5, wf_user_name = $6, \
                 wf_user_email = $7, action_id = $8 WHERE reconciliation_id = $1 AND idx = $2 AND outcome IS NULL",
            )
            .bind(id)
            .bind(r.idx)
            .bind(r.outcome.map(Outcome::as_str))
            .bind(r.detail.as_deref())
            .bind(user.map(|u| u.id.as_str()))
            .bind(user.and_then(|u| u.name.as_deref()))
            .bind(user.and_then(|u| u.email.as_deref()))
            .bind(r.action_id.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Marks the report `done` when no row is unchecked; true when it is done now.
    pub async fn finish_reconciliation(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let _turn = self.writing().await;
        let done = sqlx::query(
            "UPDATE reconciliations SET status = 'done', finished_at = $3, lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running' \
             AND NOT EXISTS (SELECT 1 FROM reconciliation_rows r WHERE r.reconciliation_id = $1 AND r.outcome IS NULL)",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives back `owner`'s leases on reports (shutdown), so another replica continues at once.
    pub async fn release_reconciliations(&self, owner: &str) -> Result<u64, StoreError> {
        let _turn = self.writing().await;
        let done = sqlx::query(
            "UPDATE reconciliations SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A report with its counts, without rows.
    pub async fn get_reconciliation(
        &self,
        id: &str,
    ) -> Result<Option<ReconciliationRecord>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT id, apply, status, origin, created_at, finished_at, total FROM reconciliations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let counts = sqlx::query(
            "SELECT outcome, COUNT(*) AS n FROM reconciliation_rows WHERE reconciliation_id = $1 AND outcome IS NOT NULL GROUP BY outcome",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|c| {
            let name: String = c.try_get("outcome")?;
            let outcome = Outcome::parse(&name)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown outcome {name:?}")))?;
            Ok((outcome, c.try_get::<i64, _>("n")?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(ReconciliationRecord {
            id: r.try_get("id")?,
            apply: r.try_get::<i64, _>("apply")? != 0,
            done: r.try_get::<String, _>("status")? == "done",
            origin: r.try_get("origin")?,
            created_at: r.try_get("created_at")?,
            finished_at: r.try_get("finished_at")?,
            total: r.try_get("total")?,
            counts,
        }))
    }

    /// The newest reports first, at most `limit`, with their counts.
    pub async fn list_reconciliations(
        &self,
        limit: u32,
    ) -> Result<Vec<ReconciliationRecord>, StoreError> {
        let ids: Vec<String> = sqlx::query(&format!(
            "SELECT id FROM reconciliations ORDER BY created_at DESC, id DESC LIMIT {limit}"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, sqlx::Error>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.get_reconciliation(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every row of a report, in input order.
    pub async fn reconciliation_rows(&self, id: &str) -> Result<Vec<LeaverRecord>, StoreError> {
        let sql = format!(
            "SELECT {ROW_COLS} FROM reconciliation_rows WHERE reconciliation_id = $1 ORDER BY idx"
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.pool).await?;
        rows.iter().map(leaver_from_row).collect()
    }

    /// The open deactivation (scheduled, pending, in progress or held) of this employee, oldest
    /// first: reconciliation reports such a person as `pending`.
    pub async fn open_deactivation(
        &self,
        employee_id: Option<&str>,
        email: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        if employee_id.is_none() && email.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id FROM actions WHERE kind = 'deactivate' AND status IN ('scheduled', 'pending', 'in_progress', 'held') \
             AND (employee_id = $1 OR email_lc = $2) ORDER BY id LIMIT 1",
        )
        .bind(employee_id)
        .bind(email.map(str::to_lowercase))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get("id")).transpose().map_err(Into::into)
    }

    /// The action a delivery created (a reconciliation's re-run finds the one it made before).
    pub async fn action_of_delivery(
        &self,
        source: &str,
        dedupe_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT a.id FROM actions a JOIN deliveries d ON d.id = a.delivery_id WHERE d.source = $1 AND d.dedupe_key = $2 \
             ORDER BY a.id LIMIT 1",
        )
        .bind(source)
        .bind(dedupe_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get("id")).transpose().map_err(Into::into)
    }

    /// The `active` rows of the latest finished report of each origin (`offboard_reconcile_gaps`).
    pub async fn reconcile_gaps(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM reconciliation_rows r JOIN reconciliations c ON c.id = r.reconciliation_id \
             WHERE r.outcome = 'active' AND c.status = 'done' \
             AND c.id = (SELECT c2.id FROM reconciliations c2 WHERE c2.origin = c.origin AND c2.status = 'done' \
                         ORDER BY c2.finished_at DESC, c2.id DESC LIMIT 1)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Takes schedule `name` for `lease_ms` when it is due and nobody runs it (one replica at a
    /// time); true when this runner has it.
    pub async fn claim_schedule(
        &self,
        name: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let (_turn, mut tx) = self.begin().await?;
        sqlx::query(
            "INSERT INTO schedules (name, next_at) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let taken = sqlx::query(
            "UPDATE schedules SET lease_owner = $2, lease_until = $3 WHERE name = $1 AND next_at <= $4 \
             AND (lease_until IS NULL OR lease_until < $4)",
        )
        .bind(name)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(taken == 1)
    }

    /// Ends `owner`'s run of schedule `name`; it is due again at `next_at`.
    pub async fn finish_schedule(
        &self,
        name: &str,
        owner: &str,
        next_at: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.writing().await;
        sqlx::query(
            "UPDATE schedules SET next_at = $3, lease_owner = NULL, lease_until = NULL WHERE name = $1 AND lease_owner = $2",
        )
        .bind(name)
        .bind(owner)
        .bind(next_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes reports created before `before` (retention), rows first.
    pub async fn purge_reconciliations(&self, before: i64) -> Result<u64, StoreError> {
        let (_turn, mut tx) = self.begin().await?;
        sqlx::query(
            "DELETE FROM reconciliation_rows WHERE reconciliation_id IN (SELECT id FROM reconciliations WHERE created_at < $1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM reconciliations WHERE created_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

fn leaver_from_row(r: &sqlx::any::AnyRow) -> Result<LeaverRecord, StoreError> {
    let outcome = match r.try_get::<Option<String>, _>("outcome")? {
        None => None,
        Some(name) => Some(
            Outcome::parse(&name)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown outcome {name:?}")))?,
        ),
    };
    let user = r
        .try_get::<Option<String>, _>("wf_user_id")?
        .map(|id| -> Result<WfUserRef, StoreError> {
            Ok(WfUserRef {
                id,
                name: r.try_get("wf_user_name")?,
                email: r.try_get("wf_user_email")?,
            })
        })
        .transpose()?;
    Ok(LeaverRecord {
        idx: r.try_get("idx")?,
        employee_id: r.try_get("employee_id")?,
        email: r.try_get("email")?,
        terminated_on: r.try_get("terminated_on")?,
        outcome,
        detail: r.try_get("detail")?,
        user,
        action_id: r.try_get("action_id")?,
    })
}
