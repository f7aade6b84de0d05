//! An employee's history as intake plans against it ([`crate::domain::lifecycle::History`]): the
//! newest stored event, the open actions and the last deactivation of everyone who shares the
//! employee id or the email (ignoring case), for several employees in one statement.
//!
//! The two backends get the same rows from differently written SQL, because each planner needs
//! something else to stay fast:
//! - **SQLite** plans each statement shape once per connection (cached) and walks the employee id
//!   and email indexes for `(employee_id = ? OR email_lc = ?)` ("MULTI-INDEX OR"). Items are
//!   read in [`chunks`], three `UNION ALL` parts each.
//! - **PostgreSQL** got the same `UNION ALL` at 0.9–10 ms of planning per execution, and where it
//!   switched to its generic plan, that plan `BitmapAnd`ed the employee's index with the index on
//!   `status` (or on `kind`), reading every open action of every employee: 1 ms for one item at
//!   7,000 open actions, growing with the backlog (statistics lag a table that a layoff fills
//!   within seconds). So [`PG_HISTORIES`] is one statement whatever the number of items (their
//!   identifiers are one JSON parameter), planned once per connection, in which each employee's
//!   rows are found through the employee id and email indexes alone (`LATERAL`, which can only
//!   run per item), materialised, and only then fetched by primary key and filtered (`OFFSET 0`
//!   keeps the fetch from being flattened into a join the planner could turn around).

use std::borrow::Cow;

use serde_json::json;

use super::db::{chunks, Arg, Db, PerChunkSize, Row};
use super::{Backend, StoreError};
use crate::domain::lifecycle::{History, LastDeactivation, OpenAction};
use crate::domain::{ActionKind, Status};

/// Whose history to read: an employee id and a lower-cased email (either may be missing; a
/// missing one matches nothing).
#[derive(Debug, Clone, Copy)]
pub(super) struct Who<'a> {
    pub(super) employee_id: Option<&'a str>,
    pub(super) email_lc: Option<&'a str>,
}

/// The history of each of `who`, in order.
pub(super) async fn read<D: Db>(
    tx: &mut D,
    backend: Backend,
    who: &[Who<'_>],
) -> Result<Vec<History>, StoreError> {
    if backend == Backend::Postgres {
        let keys: Vec<_> = who
            .iter()
            .enumerate()
            .map(|(i, w)| json!({"i": i, "e": w.employee_id, "m": w.email_lc}))
            .collect();
        let keys = serde_json::Value::Array(keys).to_string();
        let rows = tx.rows(PG_HISTORIES, &[keys.as_str().into()]).await?;
        return assemble(rows, who.len());
    }
    let mut out = Vec::with_capacity(who.len());
    for range in chunks(who.len()) {
        let part = &who[range];
        let args: Vec<Arg<'_>> = part
            .iter()
            .flat_map(|w| [w.employee_id.into(), w.email_lc.into()])
            .collect();
        let rows = tx.rows(&lite_histories_of(part.len()), &args).await?;
        out.extend(assemble(rows, part.len())?);
    }
    Ok(out)
}

/// Columns of both forms: 0 item, 1 part (0 newest event, 1 open action, 2 last deactivation),
/// 2 id, 3 source, 4 kind, 5 status, 6 reason, 7 write_sent, 8 wf_user_id, 9 occurred_at.
const PG_HISTORIES: &str = "\
    WITH k AS MATERIALIZED (\
      SELECT i, e, m FROM json_to_recordset(CAST($1 AS json)) AS k(i bigint, e text, m text)), \
    mine AS MATERIALIZED (SELECT k.i, x.id FROM k CROSS JOIN LATERAL \
      (SELECT id FROM actions WHERE employee_id = k.e UNION SELECT id FROM actions WHERE email_lc = k.m) AS x), \
    act AS MATERIALIZED (SELECT mine.i, s.* FROM mine CROSS JOIN LATERAL \
      (SELECT id, source, kind, status, reason, write_sent, wf_user_id FROM actions WHERE id = mine.id OFFSET 0) AS s) \
    SELECT k.i, CAST(0 AS BIGINT) AS part, x.id, CAST(NULL AS TEXT) AS source, CAST(NULL AS TEXT) AS kind, \
      CAST(NULL AS TEXT) AS status, CAST(NULL AS TEXT) AS reason, CAST(0 AS BIGINT) AS write_sent, \
      CAST(NULL AS TEXT) AS wf_user_id, x.occurred_at \
    FROM k CROSS JOIN LATERAL (SELECT id, occurred_at FROM \
      (SELECT id, occurred_at FROM events WHERE employee_id = k.e \
       UNION ALL SELECT id, occurred_at FROM events WHERE email_lc = k.m) AS y \
      ORDER BY occurred_at DESC, id DESC LIMIT 1) AS x \
    UNION ALL SELECT i, 1, id, source, kind, status, NULL, write_sent, wf_user_id, 0 FROM act \
      WHERE status IN ('scheduled', 'pending', 'held', 'in_progress') \
    UNION ALL SELECT i, 2, id, source, kind, status, reason, write_sent, wf_user_id, 0 FROM \
      (SELECT DISTINCT ON (i) * FROM act WHERE kind = 'deactivate' AND status NOT IN ('skipped', 'cancelled') \
       ORDER BY i, id DESC) AS d";

/// [`lite_histories`] for `n` items, built once per chunk size.
fn lite_histories_of(n: usize) -> Cow<'static, str> {
    static BUILT: PerChunkSize = PerChunkSize::new();
    BUILT.get(n, || lite_histories(n))
}

/// The SQLite form for `n` items: three parts per item; item `k` binds `$2k+1` (employee id) and
/// `$2k+2` (lower-cased email).
///
/// Written so that SQLite opens no temporary B-tree: each one is a pager of its own, opened,
/// filled and freed per execution, and the older form (`ORDER BY … LIMIT 1` for the newest
/// event and the last deactivation, `IN (…)` lists for the statuses) opened four per item, a
/// tenth of the intake writer's time in a profile (BENCHMARKS.md, 2026-12-06). So:
/// - "the row with the largest X" is `MAX(X)` with the row's other columns beside it (SQLite
///   takes them from that row), and the newest event is the largest id among the events at the
///   largest `occurred_at`, exactly what `ORDER BY occurred_at DESC, id DESC LIMIT 1` picked;
/// - statuses are compared one by one instead of in a list.
fn lite_histories(n: usize) -> String {
    const T: &str = "CAST(NULL AS TEXT)";
    const ZERO: &str = "CAST(0 AS BIGINT)";
    const OPEN: &str =
        "(status = 'scheduled' OR status = 'pending' OR status = 'held' OR status = 'in_progress')";
    let parts: Vec<String> = (0..n)
        .map(|k| {
            let who = format!("(employee_id = ${} OR email_lc = ${})", 2 * k + 1, 2 * k + 2);
            let i = format!("CAST({k} AS BIGINT)");
            format!(
                "SELECT {i} AS i, CAST(0 AS BIGINT) AS part, id, {T} AS source, {T} AS kind, {T} AS status, {T} AS reason, \
                 {ZERO} AS write_sent, {T} AS wf_user_id, occurred_at FROM (SELECT MAX(id) AS id, occurred_at FROM events \
                 WHERE {who} AND occurred_at = (SELECT MAX(occurred_at) FROM events WHERE {who})) AS e{k} WHERE id IS NOT NULL \
                 UNION ALL SELECT {i}, CAST(1 AS BIGINT), id, source, kind, status, {T}, write_sent, wf_user_id, {ZERO} FROM actions \
                 WHERE {OPEN} AND {who} \
                 UNION ALL SELECT {i}, CAST(2 AS BIGINT), id, source, kind, status, reason, write_sent, wf_user_id, {ZERO} FROM \
                 (SELECT MAX(id) AS id, source, kind, status, reason, write_sent, wf_user_id FROM actions WHERE kind = 'deactivate' \
                 AND status <> 'skipped' AND status <> 'cancelled' AND {who}) AS d{k} WHERE id IS NOT NULL"
            )
        })
        .collect();
    parts.join(" UNION ALL ")
}

/// Sorts the rows of either form into one history per item.
fn assemble(rows: Vec<Row>, n: usize) -> Result<Vec<History>, StoreError> {
    let mut out: Vec<History> = (0..n)
        .map(|_| History {
            newest_event: None,
            open: Vec::new(),
            last_deactivation: None,
            reactivation_open: false,
        })
        .collect();
    for r in rows {
        let h = usize::try_from(r.int(0)?)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| StoreError::Corrupt("a history row of no item".into()))?;
        match r.int(1)? {
            0 => h.newest_event = Some((r.text(2)?, r.int(9)?)),
            1 => h.open.push(open_action(&r)?),
            _ => h.last_deactivation = Some(last_deactivation(&r)?),
        }
    }
    for h in &mut out {
        h.open.sort_by(|a, b| a.id.cmp(&b.id));
        h.reactivation_open = h.open.iter().any(|a| a.kind == ActionKind::Reactivate);
    }
    Ok(out)
}

fn parse_status(status: &str) -> Result<Status, StoreError> {
    status
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("stored status {status:?}")))
}

fn open_action(r: &Row) -> Result<OpenAction, StoreError> {
    let kind = r.text(4)?;
    Ok(OpenAction {
        id: r.text(2)?,
        source: r.text(3)?,
        kind: ActionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("stored kind {kind:?}")))?,
        status: parse_status(&r.text(5)?)?,
        write_sent: r.int(7)? != 0,
        user_id: r.opt_text(8)?,
    })
}

fn last_deactivation(r: &Row) -> Result<LastDeactivation, StoreError> {
    Ok(LastDeactivation {
        id: r.text(2)?,
        source: r.text(3)?,
        status: parse_status(&r.text(5)?)?,
        reason: r.opt_text(6)?.and_then(|x| x.parse().ok()),
        write_sent: r.int(7)? != 0,
        user_id: r.opt_text(8)?,
    })
}

#[cfg(test)]
mod tests {
    use sqlx::Row as _;

    use super::*;

    /// Rows that the plan's scans of `actions` (and of its indexes) produced, from `EXPLAIN
    /// ANALYZE` text: each scan node's `rows=N loops=M`.
    fn action_rows_read(plan: &[String]) -> u64 {
        plan.iter()
            .filter(|l| l.contains(" on actions"))
            .map(|l| {
                let num = |key: &str| -> u64 {
                    l.rsplit_once(key)
                        .and_then(|(_, rest)| rest.split([' ', ')']).next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                };
                num("rows=") * num("loops=")
            })
            .sum()
    }

    /// The plan a layoff met: a table filled within seconds while its statistics still say it is
    /// empty. PostgreSQL's generic plan of the old form read every open action to find one
    /// employee's (a `BitmapAnd` with the index on `status`); this form must read only the
    /// employee's own rows, with the generic plan and with a custom one.
    #[tokio::test]
    async fn on_postgres_a_history_reads_only_the_employees_own_rows_whatever_the_backlog() {
        let Some((store, mut conn)) = crate::store::test_postgres_store().await else {
            return;
        };
        sqlx::query("ANALYZE actions")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO actions (id, kind, status, due_at, run_at, created_at, updated_at, source, employee_id, email, email_lc) \
             SELECT 'act_' || g, 'deactivate', 'scheduled', 1, 1, 1, 1, 'hr', 'L-' || g, 'l' || g || '@x.co', 'l' || g || '@x.co' \
             FROM generate_series(1, 3000) AS g",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let one = r#"[{"i": 0, "e": "L-7", "m": "l7@x.co"}]"#;
        sqlx::query(&format!(
            "PREPARE h(text) AS {}",
            PG_HISTORIES.replace("$1", "$1::text")
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        for mode in ["force_generic_plan", "force_custom_plan"] {
            sqlx::query(&format!("SET plan_cache_mode = {mode}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN ANALYZE EXECUTE h('{one}')"))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
            let read = action_rows_read(&plan);
            assert!(
                (1..=10).contains(&read),
                "{mode}: the plan read {read} rows of actions for one employee with one action:\n{}",
                plan.join("\n")
            );
        }
        // And it reads the right history.
        let mut tx = store.pool.begin().await.unwrap();
        let who = Who {
            employee_id: Some("L-7"),
            email_lc: Some("l7@x.co"),
        };
        let h = read(&mut tx, Backend::Postgres, &[who]).await.unwrap();
        assert_eq!(h[0].open.len(), 1);
        assert_eq!(h[0].open[0].id, "act_7");
        assert_eq!(
            h[0].last_deactivation.as_ref().map(|d| d.id.as_str()),
            Some("act_7")
        );
    }

    /// A migrated SQLite file, and a connection to it as the intake writer opens one.
    async fn lite_db(dir: &tempfile::TempDir) -> rusqlite::Connection {
        let path = dir.path().join("history.db");
        let url = format!("sqlite://{}", path.display());
        let store =
            crate::store::Store::connect(&url.into(), crate::domain::clock::Clock::system())
                .await
                .unwrap();
        store.migrate().await.unwrap();
        crate::store::lite::open(&path, "").unwrap()
    }

    #[tokio::test]
    async fn on_sqlite_a_history_opens_no_temporary_btree() {
        let dir = tempfile::tempdir().unwrap();
        let conn = lite_db(&dir).await;
        for n in [1, 2, 8] {
            let sql = crate::store::lite::numbered(&lite_histories(n));
            let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let mut rows = stmt.raw_query();
            let mut opcodes: Vec<String> = Vec::new();
            while let Some(r) = rows.next().unwrap() {
                opcodes.push(r.get(1).unwrap());
            }
            assert!(opcodes.iter().any(|o| o == "OpenRead"), "{opcodes:?}");
            let temporary: Vec<&String> = opcodes
                .iter()
                .filter(|o| ["OpenEphemeral", "SorterOpen", "OpenAutoindex"].contains(&o.as_str()))
                .collect();
            assert!(temporary.is_empty(), "{n} items: {temporary:?}");
        }
    }

    #[tokio::test]
    async fn on_sqlite_ties_go_to_the_largest_id_and_ended_deactivations_are_not_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let conn = lite_db(&dir).await;
        conn.execute_batch(
            "INSERT INTO deliveries (id, source, dedupe_key, received_at, body_sha256) VALUES ('dlv_1', 'hr', 'k', 1, 'x'); \
             INSERT INTO events (id, delivery_id, type, sender_type, employee_id, email_lc, occurred_at, created_at) VALUES \
               ('evt_a', 'dlv_1', 'termination', 't', 'L-1', NULL, 5, 1), \
               ('evt_c', 'dlv_1', 'termination', 't', NULL, 'l1@x.co', 5, 1), \
               ('evt_d', 'dlv_1', 'termination', 't', 'L-1', NULL, 4, 1), \
               ('evt_b', 'dlv_1', 'termination', 't', 'L-1', NULL, 3, 1), \
               ('evt_z', 'dlv_1', 'termination', 't', 'L-2', NULL, 9, 1); \
             INSERT INTO actions (id, kind, status, reason, due_at, run_at, created_at, updated_at, source, employee_id, email_lc) VALUES \
               ('act_1', 'deactivate', 'completed', 'deactivated', 1, 1, 1, 1, 'hr', 'L-1', NULL), \
               ('act_2', 'deactivate', 'scheduled', NULL, 1, 1, 1, 1, 'hr', NULL, 'l1@x.co'), \
               ('act_3', 'deactivate', 'skipped', 'superseded', 1, 1, 1, 1, 'hr', 'L-1', 'l1@x.co'), \
               ('act_4', 'reactivate', 'held', 'rate_brake', 1, 1, 1, 1, 'hr', 'L-1', NULL), \
               ('act_9', 'deactivate', 'scheduled', NULL, 1, 1, 1, 1, 'hr', 'L-2', NULL);",
        )
        .unwrap();
        let who = [
            Who {
                employee_id: Some("L-1"),
                email_lc: Some("l1@x.co"),
            },
            Who {
                employee_id: Some("L-3"),
                email_lc: None,
            },
        ];
        let h = read(&mut crate::store::lite::Lite(&conn), Backend::Sqlite, &who)
            .await
            .unwrap();
        assert_eq!(h[0].newest_event, Some(("evt_c".to_string(), 5)));
        let open: Vec<&str> = h[0].open.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(open, ["act_2", "act_4"]);
        assert!(h[0].reactivation_open);
        assert_eq!(
            h[0].last_deactivation.as_ref().map(|d| d.id.as_str()),
            Some("act_2")
        );
        assert_eq!(h[1].newest_event, None);
        assert!(h[1].open.is_empty() && h[1].last_deactivation.is_none());
    }

    #[test]
    fn action_rows_read_sums_rows_times_loops_of_the_scans_of_actions() {
        let plan = [
            "Nested Loop (actual time=0.1..0.2 rows=1 loops=1)".to_string(),
            "  ->  Bitmap Index Scan on actions_runnable  (cost=0.00..17.57 rows=59 width=0) (actual time=0.149..0.149 rows=3000 loops=1)".to_string(),
            "  ->  Index Scan using actions_pkey on actions  (cost=0.28..8.30 rows=1 width=1) (actual time=0.01..0.01 rows=1 loops=2)".to_string(),
            "  ->  Seq Scan on events  (actual time=0.01..0.01 rows=5 loops=1)".to_string(),
        ];
        assert_eq!(action_rows_read(&plan), 3002);
    }
}
