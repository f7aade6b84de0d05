//! SQLite through rusqlite, on threads of the store's own: the intake writer
//! ([`super::sqlite_intake`]) and the worker's connection ([`Runner`]), which runs the worker's
//! hot path (claiming, the write gate, recording each step).
//!
//! Why not sqlx here: sqlx runs each SQLite statement on a thread of its own and hands every
//! statement and every row across threads. A termination's worker path was about ten statements
//! on the pool, and a profile of 3,000 terminations spent a quarter of the process's samples
//! finishing context switches (futex waits and wakes). A [`Runner`] runs a whole transaction on
//! its thread, with cached prepared statements: one hand-over in and one out.
//!
//! The code that runs there is the store's ordinary [`Db`] code: its awaits are synchronous
//! rusqlite calls, so its future completes in its first poll ([`now_or_never`]).

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::db::{Arg, Db, Row, Work};
use super::StoreError;

/// WAL frames (pages) after which a committing connection checkpoints, on every connection of the
/// store (SQLite's default is 1,000). A checkpoint runs inside the commit that crosses the mark,
/// on the intake writer's thread while deliveries wait: it syncs the WAL, copies its pages into
/// the database file and syncs that. With a mark four times higher, each hot page (the last leaf
/// of every B-tree intake appends to) is copied once where it was copied four times, and two
/// syncs are paid where eight were. On a day this machine's disk took 0.7 ms a sync, the writer's
/// commit fell from 340-390 to 295-310 µs per batch at 16 senders, and intake was faster in 10 of
/// 11 alternated runs (by 8% at the median, -3% to +30%); on a day it took 0.28 ms, 3-5% in single
/// runs (BENCHMARKS.md). The WAL file grows to about 16 MiB (4,000 pages of 4 KiB) and keeps that
/// size; recovery after a crash reads it once.
pub(super) const WAL_AUTOCHECKPOINT: u32 = 4000;

/// Opens a connection to the database file with the store's settings; `pragmas` adds the ones
/// that differ by use (durability, cache).
pub(super) fn open(path: &Path, pragmas: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(to_store)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
         PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(to_store)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)
        .map_err(to_store)?;
    conn.execute_batch(pragmas).map_err(to_store)?;
    // Statement shapes: a few per chunk size of each multi-row statement (see `db::chunks`).
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A connection on a thread of its own that runs one transaction per call ([`Runner::transact`]),
/// in the order they come. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct Runner {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Runner {
    /// Starts the thread. Each transaction takes the store's in-process write turn (`write`)
    /// first, as every write of the store does, so that the process's connections alternate
    /// instead of meeting in SQLite's busy handler.
    pub(super) fn spawn(
        mut conn: Connection,
        name: &str,
        write: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Runner, StoreError> {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    let _turn = write.blocking_lock();
                    // A panic in one job drops its reply (its caller sees "unavailable") and
                    // leaves the connection serving the next.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start {name}: {e}")))?;
        Ok(Runner { jobs })
    }

    /// Runs `work` in one transaction (`BEGIN IMMEDIATE`) on the runner's thread and commits it;
    /// an error rolls it back. The work runs to its end even if the caller stops waiting: a
    /// change that reached the store is applied or refused whole, never left half-done.
    pub(super) async fn transact<W: Work>(&self, work: W) -> Result<W::Out, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn: &mut Connection| {
            let _ = reply.send(in_transaction(conn, work));
        });
        self.jobs.send(job).map_err(|_| {
            StoreError::Unavailable("the SQLite worker connection has stopped".into())
        })?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the SQLite worker connection failed a transaction".into())
        })?
    }

    pub(super) fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

fn in_transaction<W: Work>(conn: &mut Connection, work: W) -> Result<W::Out, StoreError> {
    let tx = begin(conn)?;
    let out = now_or_never(work.run(&mut Lite(&tx)))?;
    tx.commit().map_err(to_store)?;
    Ok(out)
}

/// Runs a future whose every await is a synchronous rusqlite call, so it completes in its first
/// poll: no runtime, no thread hand-over.
pub(super) fn now_or_never<T>(
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(StoreError::Unavailable(
            "a SQLite statement did not complete synchronously".into(),
        )),
    }
}

/// A rusqlite connection inside a transaction.
pub(super) struct Lite<'c>(pub(super) &'c Connection);

impl Lite<'_> {
    fn prepare(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<rusqlite::CachedStatement<'_>, StoreError> {
        let mut stmt = self.0.prepare_cached(&numbered(sql)).map_err(to_store)?;
        // `?N` is parameter N (a repeated `?N` is one value), so each binds by its position.
        // Binding `$N` by its name cost a linear search of the statement's names per value,
        // quadratic in a multi-row statement's hundreds of values, and a formatted name each.
        let count = stmt.parameter_count();
        for (i, a) in args.iter().enumerate().take(count) {
            match *a {
                Arg::Text(v) => stmt.raw_bind_parameter(i + 1, v),
                Arg::Int(v) => stmt.raw_bind_parameter(i + 1, v),
            }
            .map_err(to_store)?;
        }
        Ok(stmt)
    }
}

/// The store's SQL in SQLite's spelling:
/// - its `$N` parameters (PostgreSQL's spelling, which sqlx's SQLite driver also takes) become
///   `?N`, outside quoted text;
/// - `INSERT INTO` becomes `INSERT OR ROLLBACK INTO`. Statements here always run inside a
///   transaction that is rolled back whole on any error ([`begin`]'s callers), so a statement
///   that fails need not undo only itself. With the default (`ABORT`) SQLite must be able to,
///   and it keeps a statement journal of every page a multi-row insert changes: 6% of the
///   intake writer's time in a profile (BENCHMARKS.md, 2026-12-06). A refused row still fails
///   with its constraint's error. (Foreign keys, checked per statement, still make SQLite keep
///   one for the tables that have them; deferring them to the commit takes a
///   `PRAGMA defer_foreign_keys` per transaction, which expires every prepared statement: the
///   intake writer then ran at half its speed.)
pub(super) fn numbered(sql: &str) -> String {
    const INSERT: &str = "INSERT INTO ";
    let (head, body) = match sql.strip_prefix(INSERT) {
        Some(rest) => ("INSERT OR ROLLBACK INTO ", rest),
        None => ("", sql),
    };
    let mut out = String::with_capacity(head.len() + body.len());
    out.push_str(head);
    // Copied in runs between the parameters: a multi-row insert is kilobytes of text. (`$`
    // and `'` are ASCII, so every run starts and ends on a character boundary.)
    let bytes = body.as_bytes();
    let mut quoted = false;
    let mut copied = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\'' {
            quoted = !quoted;
        } else if b == b'$' && !quoted && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push_str(&body[copied..i]);
            out.push('?');
            copied = i + 1;
        }
    }
    out.push_str(&body[copied..]);
    out
}

/// Begins a transaction the way every transaction on these connections begins: `IMMEDIATE`,
/// so a writer from another process is waited for (`busy_timeout`) instead of upgrading a
/// stale snapshot.
pub(super) fn begin(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(to_store)
}

impl Db for Lite<'_> {
    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let mut stmt = self.prepare(sql, args)?;
        Ok(stmt.raw_execute().map_err(to_store)? as u64)
    }

    async fn rows(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.prepare(sql, args)?;
        let width = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(to_store)? {
            let cells = (0..width)
                .map(|i| r.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(to_store)?;
            out.push(Row::Lite(cells));
        }
        Ok(out)
    }
}

/// Sorted as [`StoreError`]'s `From<sqlx::Error>` sorts SQLite's errors.
pub(super) fn to_store(e: rusqlite::Error) -> StoreError {
    let text = e.to_string();
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => {
                const UNIQUE: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;
                const PRIMARY_KEY: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
                match f.extended_code {
                    UNIQUE | PRIMARY_KEY => StoreError::Conflict(text),
                    _ => StoreError::BadData(text),
                }
            }
            ErrorCode::TooBig | ErrorCode::TypeMismatch => StoreError::BadData(text),
            _ => StoreError::Unavailable(text),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(text),
        _ => StoreError::Unavailable(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_parameters_become_numbered_ones_outside_quoted_text() {
        assert_eq!(
            numbered(
                "UPDATE t SET a = $1, b = '$2 $', c = $12 WHERE d = $1 AND e = 'it''s $3' || $3"
            ),
            "UPDATE t SET a = ?1, b = '$2 $', c = ?12 WHERE d = ?1 AND e = 'it''s $3' || ?3"
        );
        assert_eq!(numbered("SELECT '$' || $x, $"), "SELECT '$' || $x, $");
        assert_eq!(
            numbered("INSERT INTO t (a, b) VALUES ($1, 'é$2')"),
            "INSERT OR ROLLBACK INTO t (a, b) VALUES (?1, 'é$2')"
        );
    }

    #[test]
    fn a_repeated_parameter_is_one_value_and_each_binds_to_its_number() {
        let conn = Connection::open_in_memory().unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        let rows = now_or_never(Db::rows(
            &mut Lite(&tx),
            "SELECT $2 || $1 || $2, $3 + 1",
            &["a".into(), "b".into(), 41i64.into()],
        ))
        .unwrap();
        assert_eq!(rows.len(), 1);
        let Row::Lite(cells) = &rows[0] else {
            panic!("not a SQLite row")
        };
        assert_eq!(cells[0], rusqlite::types::Value::Text("bab".into()));
        assert_eq!(cells[1], rusqlite::types::Value::Integer(42));
    }

    #[tokio::test]
    async fn every_connection_of_the_store_checkpoints_after_the_same_number_of_frames() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), "PRAGMA synchronous = NORMAL;").unwrap();
        let own: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(own, i64::from(WAL_AUTOCHECKPOINT));
        drop(conn);
        // The pool's connections (operators' changes, the CLI) are set up elsewhere: a
        // connection left at SQLite's 1,000 would checkpoint in its commits instead.
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store =
            crate::store::Store::connect(&url.into(), crate::domain::clock::Clock::system())
                .await
                .unwrap();
        let pooled: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(pooled, i64::from(WAL_AUTOCHECKPOINT));
        assert_ne!(
            WAL_AUTOCHECKPOINT, 1000,
            "SQLite's default would make this test vacuous"
        );
    }

    fn runner(dir: &tempfile::TempDir) -> Runner {
        let conn = open(&dir.path().join("t.db"), "PRAGMA synchronous = NORMAL;").unwrap();
        conn.execute_batch(
            "CREATE TABLE t (v INTEGER NOT NULL); \
             CREATE TABLE p (id TEXT PRIMARY KEY); \
             CREATE TABLE c (id TEXT PRIMARY KEY, p TEXT NOT NULL REFERENCES p (id));",
        )
        .unwrap();
        Runner::spawn(conn, "test-runner", Arc::new(tokio::sync::Mutex::new(()))).unwrap()
    }

    /// Inserts each value in turn; `None` is refused by the table.
    struct Insert(Vec<Option<i64>>);
    impl Work for Insert {
        type Out = ();
        async fn run<D: Db>(self, db: &mut D) -> Result<(), StoreError> {
            for v in self.0 {
                db.exec("INSERT INTO t (v) VALUES ($1)", &[v.into()])
                    .await?;
            }
            Ok(())
        }
    }

    struct Count;
    impl Work for Count {
        type Out = i64;
        async fn run<D: Db>(self, db: &mut D) -> Result<i64, StoreError> {
            db.row("SELECT COUNT(*) FROM t", &[]).await?.unwrap().int(0)
        }
    }

    /// Inserts a row, then panics.
    struct Panics;
    impl Work for Panics {
        type Out = ();
        async fn run<D: Db>(self, db: &mut D) -> Result<(), StoreError> {
            db.exec("INSERT INTO t (v) VALUES (7)", &[]).await?;
            panic!("a bug in one transaction")
        }
    }

    #[tokio::test]
    async fn a_transaction_that_fails_leaves_nothing_and_the_next_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(&dir);
        let failed = r.transact(Insert(vec![Some(1), None])).await;
        assert!(matches!(failed, Err(StoreError::BadData(_))), "{failed:?}");
        assert_eq!(
            r.transact(Count).await.unwrap(),
            0,
            "the first insert was rolled back"
        );
        r.transact(Insert(vec![Some(2)])).await.unwrap();
        assert_eq!(r.transact(Count).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_panicking_transaction_is_unavailable_and_the_connection_serves_on() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(&dir);
        let panicked = r.transact(Panics).await;
        assert!(
            matches!(panicked, Err(StoreError::Unavailable(_))),
            "{panicked:?}"
        );
        assert_eq!(
            r.transact(Count).await.unwrap(),
            0,
            "the panicking transaction was rolled back"
        );
        assert!(!r.is_closed());
    }

    /// Runs each statement with its arguments, in order.
    struct Statements(Vec<(&'static str, Vec<&'static str>)>);
    impl Work for Statements {
        type Out = ();
        async fn run<D: Db>(self, db: &mut D) -> Result<(), StoreError> {
            for (sql, args) in self.0 {
                let args: Vec<Arg<'_>> = args.into_iter().map(Arg::from).collect();
                db.exec(sql, &args).await?;
            }
            Ok(())
        }
    }

    struct CountBoth;
    impl Work for CountBoth {
        type Out = (i64, i64);
        async fn run<D: Db>(self, db: &mut D) -> Result<(i64, i64), StoreError> {
            let r = db
                .row(
                    "SELECT (SELECT COUNT(*) FROM p), (SELECT COUNT(*) FROM c)",
                    &[],
                )
                .await?
                .unwrap();
            Ok((r.int(0)?, r.int(1)?))
        }
    }

    #[tokio::test]
    async fn a_multi_row_insert_with_a_duplicate_key_is_a_conflict_and_its_transaction_leaves_nothing(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(&dir);
        let failed = r
            .transact(Statements(vec![
                ("INSERT INTO p (id) VALUES ($1)", vec!["a"]),
                (
                    "INSERT INTO p (id) VALUES ($1), ($2), ($3)",
                    vec!["b", "c", "b"],
                ),
            ]))
            .await;
        assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
        assert_eq!(r.transact(CountBoth).await.unwrap(), (0, 0));
        r.transact(Statements(vec![(
            "INSERT INTO p (id) VALUES ($1), ($2)",
            vec!["b", "c"],
        )]))
        .await
        .unwrap();
        assert_eq!(r.transact(CountBoth).await.unwrap(), (2, 0));
    }

    #[tokio::test]
    async fn a_row_without_its_parent_is_refused_and_its_transaction_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = runner(&dir);
        let failed = r
            .transact(Statements(vec![
                ("INSERT INTO p (id) VALUES ($1)", vec!["p1"]),
                (
                    "INSERT INTO c (id, p) VALUES ($1, $2), ($3, $4)",
                    vec!["c1", "p1", "c2", "nobody"],
                ),
            ]))
            .await;
        assert!(matches!(failed, Err(StoreError::BadData(_))), "{failed:?}");
        assert_eq!(r.transact(CountBoth).await.unwrap(), (0, 0));
    }
}
