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
use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::ingest::{ingest_all, Job, Msg, MAX_BATCH, QUEUE};
use super::lite::{self, now_or_never, to_store, Lite};
use super::models::Ingested;
use super::{Backend, StoreError};

/// Opens the writer's connection to the database file and starts its thread; the thread ends
/// when the last sender is dropped.
pub(super) fn spawn(
    path: &Path,
    write: Arc<tokio::sync::Mutex<()>>,
) -> Result<mpsc::Sender<Msg>, StoreError> {
    let conn = lite::open(path, "PRAGMA synchronous = FULL;")?;
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
    let tx = lite::begin(conn)?;
    let outcomes = now_or_never(ingest_all(&mut Lite(&tx), Backend::Sqlite, jobs))?;
    tx.commit().map_err(to_store)?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use crate::domain::clock::Clock;
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
