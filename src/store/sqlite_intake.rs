//! The SQLite intake writer: one thread with its own connection (rusqlite), which commits the
//! deliveries that arrive together in one transaction (group commit), written with a few
//! multi-row statements ([`super::ingest::ingest_all`]).
//!
//! Why its own access path: sqlx runs each SQLite statement on a worker thread and hands every
//! statement and every row across threads. A delivery was about ten statements, so a profile of
//! intake at 16 concurrent senders spent most of its time in thread wake-ups (futex waits and
//! wakes, ~50% of samples) and under 2% in SQLite itself. Here a whole batch runs on one thread
//! with cached prepared statements, and the only hand-overs are one per delivery in and out.
//!
//! - Acknowledged means durable: this connection runs with `synchronous = FULL`, so its commit is
//!   fsynced (and with it every earlier commit of the file) before any of its senders is answered.
//! - A delivery the database refuses fails alone: its batch is rolled back and redone one
//!   delivery per transaction ([`commit_batch`]).
//! - The writer takes the store's in-process write turn (a fair lock, shared with every write on
//!   the sqlx pool) for each batch, so it and the worker alternate instead of meeting in
//!   SQLite's busy handler, which polls with growing sleeps; transactions begin `IMMEDIATE`, so
//!   a writer from another process (the CLI) is waited for (`busy_timeout`), never upgraded into
//!   a stale snapshot.
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use tokio::sync::mpsc;

use super::db::{Arg, Db, Row};
use super::ingest::{ingest_all, Job, Msg, MAX_BATCH, QUEUE};
use super::models::Ingested;
use super::{Backend, StoreError};

/// Opens the writer's connection to the database file and starts its thread; the thread ends
/// when the last sender is dropped.
pub(super) fn spawn(
    path: &Path,
    write: Arc<tokio::sync::Mutex<()>>,
) -> Result<mpsc::Sender<Msg>, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(to_store)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
         PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(to_store)?;
    // Statement shapes: a few per chunk size of each multi-row statement (see `db::chunks`).
    conn.set_prepared_statement_cache_capacity(128);
    let (tx, rx) = mpsc::channel::<Msg>(QUEUE);
    std::thread::Builder::new()
        .name("sqlite-intake".into())
        .spawn(move || run(conn, rx, &write))
        .map_err(|e| StoreError::Unavailable(format!("cannot start the intake writer: {e}")))?;
    Ok(tx)
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Msg>, write: &tokio::sync::Mutex<()>) {
    let mut stop = false;
    while !stop {
        let Some(Msg::Deliver(first)) = rx.blocking_recv() else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Deliver(job)) => batch.push(job),
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let turn = write.blocking_lock();
        let committed = commit_batch(&mut conn, &batch);
        drop(turn);
        match committed {
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
}

/// Commits a batch in one transaction. If the database refuses one delivery of it (its own data,
/// not the database being unavailable), the batch is rolled back and each delivery is committed
/// alone, so the refusal stays that delivery's and each answer is that delivery's own outcome.
/// (Savepoints per delivery did the same at a cost paid by every batch: their sub-journal was a
/// fifth of the writer's time in a profile.) The outer error fails every delivery of the batch:
/// the database is unavailable and nothing of it was committed.
fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
    match commit_together(conn, batch) {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        Err(e) if e.is_unavailable() => Err(e),
        Err(_) => Ok(batch
            .iter()
            .map(|job| {
                let one = commit_together(conn, std::slice::from_ref(job)).map(|mut o| o.remove(0));
                match &one {
                    Err(e) if !e.is_unavailable() => {
                        tracing::warn!(delivery_id = %job.delivery.id, error = %e, "the database refused one delivery; the rest of its batch is stored");
                    }
                    _ => {}
                }
                one
            })
            .collect()),
    }
}

/// All of `jobs` in one transaction, or none of them (the first error rolls back).
fn commit_together(conn: &mut Connection, jobs: &[Job]) -> Result<Vec<Ingested>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(to_store)?;
    let outcomes = now_or_never(ingest_all(&mut Lite(&tx), Backend::Sqlite, jobs))?;
    tx.commit().map_err(to_store)?;
    Ok(outcomes)
}

/// Runs a future whose every await is a synchronous rusqlite call, so it completes in its first
/// poll: no runtime, no thread hand-over.
fn now_or_never<T>(fut: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(StoreError::Unavailable(
            "the intake writer's statement did not complete synchronously".into(),
        )),
    }
}

/// The writer's connection inside its batch's transaction.
struct Lite<'c>(&'c Connection);

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

/// The store's SQL with its `$N` parameters (PostgreSQL's spelling, which sqlx's SQLite driver
/// also takes) written as SQLite's `?N`, outside quoted text.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        let parameter = c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if parameter { '?' } else { c });
    }
    out
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
fn to_store(e: rusqlite::Error) -> StoreError {
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
    use super::numbered;
    use crate::domain::clock::Clock;

    #[test]
    fn dollar_parameters_become_numbered_ones_outside_quoted_text() {
        assert_eq!(
            numbered(
                "UPDATE t SET a = $1, b = '$2 $', c = $12 WHERE d = $1 AND e = 'it''s $3' || $3"
            ),
            "UPDATE t SET a = ?1, b = '$2 $', c = ?12 WHERE d = ?1 AND e = 'it''s $3' || ?3"
        );
        assert_eq!(numbered("SELECT '$' || $x, $"), "SELECT '$' || $x, $");
    }

    #[test]
    fn a_repeated_parameter_is_one_value_and_each_binds_to_its_number() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        let rows = super::now_or_never(crate::store::db::Db::rows(
            &mut super::Lite(&tx),
            "SELECT $2 || $1 || $2, $3 + 1",
            &["a".into(), "b".into(), 41i64.into()],
        ))
        .unwrap();
        assert_eq!(rows.len(), 1);
        let super::Row::Lite(cells) = &rows[0] else {
            panic!("not a SQLite row")
        };
        assert_eq!(cells[0], rusqlite::types::Value::Text("bab".into()));
        assert_eq!(cells[1], rusqlite::types::Value::Integer(42));
    }
    use crate::store::{Store, StoreError};

    #[tokio::test]
    async fn an_in_memory_sqlite_database_is_refused_with_the_reason() {
        for url in ["sqlite::memory:", "sqlite://:memory:"] {
            let err = Store::connect(&url.to_string().into(), Clock::system())
                .await
                .err()
                .unwrap_or_else(|| panic!("{url} was accepted"));
            assert!(
                matches!(&err, StoreError::Unavailable(m) if m.contains("in-memory")),
                "{url}: {err}"
            );
        }
    }
}
