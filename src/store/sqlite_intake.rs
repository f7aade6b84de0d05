//! The SQLite intake writer: one thread with its own connection (rusqlite), which commits the
//! deliveries that arrive together in one transaction (group commit), written with a few
//! multi-row statements ([`super::ingest::ingest_all`]), and a second thread that makes those
//! commits durable and only then answers their senders.
//!
//! Why its own access path: sqlx runs each SQLite statement on a worker thread and hands every
//! statement and every row across threads. A delivery was about ten statements, so a profile of
//! intake at 16 concurrent senders spent most of its time in thread wake-ups (futex waits and
//! wakes, ~50% of samples) and under 2% in SQLite itself. Here a whole batch runs on one thread
//! with cached prepared statements, and the only hand-overs are one per delivery in and out.
//!
//! - **Acknowledged means durable.** A batch is committed to the write-ahead log
//!   (`synchronous = NORMAL`: SQLite writes the WAL but does not sync it at commit), and its
//!   answers go to the syncer ([`sync_then_answer`]), which `fdatasync`s the WAL file and only
//!   then answers everyone whose commit came before that call. The writer meanwhile stores the
//!   next batch ([`fill_and_commit`]). Before, the writer's commit did the sync itself
//!   (`synchronous = FULL`), and at 16 senders it spent 60% of its time blocked in it (0.4-0.6 ms
//!   a sync on this machine's disk) while the next batch waited. One sync also covers everything committed before it, so the
//!   syncer answers every batch it found waiting at once.
//! - Why that is as durable as `FULL`: after an OS crash SQLite recovers every transaction whose
//!   frames, up to its commit frame, are in the WAL file on disk, and the sync came after the
//!   commit had written them. SQLite overwrites WAL frames only after a checkpoint has copied them
//!   into the database file and synced it (which `NORMAL` does), so an answered commit is either
//!   in the synced WAL or in the synced database.
//! - A sync that fails (an I/O error) fails every delivery it covered, and intake stops: after a
//!   failed `fdatasync` Linux may report later syncs as successful although the pages were lost,
//!   so no later answer could be trusted. `/readyz` then reports the writer stopped, and senders
//!   retry after the restart an operator must make.
//! - A delivery the database refuses fails alone: its batch is rolled back and redone one
//!   delivery per transaction ([`commit_batch`]).
//! - The writer takes the store's in-process write turn (a fair lock, shared with every write on
//!   the sqlx pool) for each batch, so it and the worker alternate instead of meeting in
//!   SQLite's busy handler, which polls with growing sleeps; transactions begin `IMMEDIATE`, so
//!   a writer from another process (the CLI) is waited for (`busy_timeout`), never upgraded into
//!   a stale snapshot.
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, Notify};

use super::ingest::{ingest_all, Job, Msg, MAX_BATCH, QUEUE};
use super::lite::{self, now_or_never, to_store, Lite};
use super::models::Ingested;
use super::{Backend, StoreError};

/// Opens the writer's connection to the database file and starts its thread and the syncer's;
/// both end when the last sender is dropped.
pub(super) fn spawn(
    path: &Path,
    write: Arc<tokio::sync::Mutex<()>>,
) -> Result<mpsc::Sender<Msg>, StoreError> {
    // NORMAL: the commit writes the WAL without syncing it; the syncer does (see the module docs).
    let conn = lite::open(path, "PRAGMA synchronous = NORMAL;")?;
    let mut wal = WalFile::of(&conn)?;
    let (tx, rx) = mpsc::channel::<Msg>(QUEUE);
    let (answers, committed) = std::sync::mpsc::channel::<Vec<Answer>>();
    let to_sync = ToSync {
        answers,
        unsynced: Arc::new(AtomicUsize::new(0)),
        synced: Arc::new(Notify::new()),
    };
    let (unsynced, synced) = (to_sync.unsynced.clone(), to_sync.synced.clone());
    let cannot =
        |e: std::io::Error| StoreError::Unavailable(format!("cannot start the intake writer: {e}"));
    std::thread::Builder::new()
        .name("sqlite-sync".into())
        .spawn(move || sync_then_answer(committed, &unsynced, &synced, || wal.sync()))
        .map_err(cannot)?;
    std::thread::Builder::new()
        .name("sqlite-intake".into())
        .spawn(move || run(conn, rx, &write, &to_sync))
        .map_err(cannot)?;
    Ok(tx)
}

/// A delivery's answer, waiting for the sync that makes its commit durable.
type Answer = (
    oneshot::Sender<Result<Ingested, StoreError>>,
    Result<Ingested, StoreError>,
);

/// The writer's side of the hand-over to the syncer.
struct ToSync {
    answers: std::sync::mpsc::Sender<Vec<Answer>>,
    /// Batches handed over and not answered yet.
    unsynced: Arc<AtomicUsize>,
    /// Notified when a sync ends and fewer than two batches wait.
    synced: Arc<Notify>,
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    write: &tokio::sync::Mutex<()>,
    to_sync: &ToSync,
) {
    // Only to wait for a delivery or the end of a sync, whichever comes first.
    let Ok(waiter) = tokio::runtime::Builder::new_current_thread().build() else {
        tracing::error!("cannot start the intake writer's waiter; intake stops");
        return;
    };
    let mut stop = false;
    while !stop {
        let Some(Msg::Deliver(first)) = rx.blocking_recv() else {
            break;
        };
        let mut batch = vec![first];
        stop = take_waiting(&mut rx, &mut batch);
        let turn = write.blocking_lock();
        let committed =
            fill_and_commit(&mut conn, &mut rx, &mut batch, &mut stop, to_sync, &waiter);
        drop(turn);
        let answers: Vec<Answer> = match committed {
            Ok(outcomes) => batch
                .into_iter()
                .zip(outcomes)
                .map(|(job, outcome)| (job.reply, outcome))
                .collect(),
            Err(e) => batch
                .into_iter()
                .map(|job| (job.reply, Err(e.clone())))
                .collect(),
        };
        to_sync.unsynced.fetch_add(1, Ordering::AcqRel);
        // The syncer has stopped only after a failed sync: nothing committed since can be
        // trusted to be durable, so intake stops too (the queue closes; `/readyz` says so).
        if let Err(std::sync::mpsc::SendError(answers)) = to_sync.answers.send(answers) {
            for (reply, _) in answers {
                let _ = reply.send(Err(not_durable()));
            }
            break;
        }
    }
}

/// Moves the deliveries already queued into `batch`, up to [`MAX_BATCH`]; true if the store is
/// closing (a `Stop` was among them).
fn take_waiting(rx: &mut mpsc::Receiver<Msg>, batch: &mut Vec<Job>) -> bool {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Msg::Deliver(job)) => batch.push(job),
            Ok(Msg::Stop) => return true,
            Err(_) => break,
        }
    }
    false
}

/// Stores `batch` in one transaction and commits it. The syncer keeps at most one commit waiting
/// behind the sync it is running: while it has two (one being synced, one waiting), deliveries
/// that arrive are stored in this same transaction (and added to `batch`), up to [`MAX_BATCH`],
/// and the commit is made as soon as the syncer has finished one. So the syncer always has the
/// next commit ready when a sync ends (no wake-up of the writer between two syncs), the writer's
/// work overlaps the syncs, and the commits are as few and as full as the syncs allow (each writes
/// a page of every B-tree it touches, whatever its size). Measured against waiting for the syncer
/// to be idle, this took 16 senders from 10,300-11,900 to 12,000-12,100 deliveries/s
/// (BENCHMARKS.md).
///
/// If the database refuses one delivery of the batch (its own data, not the database being
/// unavailable), the batch is rolled back and each delivery is committed alone, so the refusal
/// stays that delivery's and each answer is that delivery's own outcome. (Savepoints per delivery
/// did the same at a cost paid by every batch: their sub-journal was a fifth of the writer's time
/// in a profile.) The outer error fails every delivery of the batch: the database is unavailable
/// and nothing of it was committed.
fn fill_and_commit(
    conn: &mut Connection,
    rx: &mut mpsc::Receiver<Msg>,
    batch: &mut Vec<Job>,
    stop: &mut bool,
    to_sync: &ToSync,
    waiter: &tokio::runtime::Runtime,
) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
    let together = (|| -> Result<Vec<Ingested>, StoreError> {
        let tx = lite::begin(conn)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        loop {
            let stored = now_or_never(ingest_all(
                &mut Lite(&tx),
                Backend::Sqlite,
                &batch[outcomes.len()..],
            ))?;
            outcomes.extend(stored);
            if *stop || batch.len() >= MAX_BATCH || to_sync.unsynced.load(Ordering::Acquire) < 2 {
                break;
            }
            let woke = waiter.block_on(async {
                tokio::select! {
                    msg = rx.recv() => Some(msg),
                    () = to_sync.synced.notified() => None,
                }
            });
            match woke {
                Some(Some(Msg::Deliver(job))) => {
                    batch.push(job);
                    *stop = take_waiting(rx, batch);
                }
                Some(Some(Msg::Stop) | None) => *stop = true,
                // The sync ended (or an old notification): the loop looks again.
                None => {}
            }
        }
        tx.commit().map_err(to_store)?;
        Ok(outcomes)
    })();
    match together {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        Err(e) if e.is_unavailable() => Err(e),
        Err(_) => Ok(batch
            .iter()
            .map(|job| {
                let one = commit_alone(conn, job);
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

/// One delivery in a transaction of its own.
fn commit_alone(conn: &mut Connection, job: &Job) -> Result<Ingested, StoreError> {
    let tx = lite::begin(conn)?;
    let mut outcome = now_or_never(ingest_all(
        &mut Lite(&tx),
        Backend::Sqlite,
        std::slice::from_ref(job),
    ))?;
    tx.commit().map_err(to_store)?;
    Ok(outcome.remove(0))
}

fn not_durable() -> StoreError {
    StoreError::Unavailable(
        "the database file could not be synced to disk; intake has stopped until offboard is restarted"
            .into(),
    )
}

/// The syncer: waits for committed batches, syncs once for all that are waiting, then answers
/// them, and tells the writer when fewer than two are left (it may commit again). A failed sync
/// fails what it covered and ends the thread (see the module docs).
fn sync_then_answer(
    committed: std::sync::mpsc::Receiver<Vec<Answer>>,
    unsynced: &AtomicUsize,
    synced: &Notify,
    mut sync: impl FnMut() -> std::io::Result<()>,
) {
    while let Ok(mut answers) = committed.recv() {
        // Everything received here was committed before this sync starts, so it covers them all.
        let mut batches = 1;
        while let Ok(more) = committed.try_recv() {
            answers.extend(more);
            batches += 1;
        }
        if let Err(e) = sync() {
            tracing::error!(error = %e, deliveries = answers.len(),
                "cannot sync the SQLite write-ahead log to disk: these deliveries are refused and intake stops until offboard is restarted");
            for (reply, _) in answers {
                let _ = reply.send(Err(not_durable()));
            }
            // Release a writer waiting for this sync (it holds the write turn and an open
            // transaction): its next hand-over then fails, and intake stops.
            unsynced.store(0, Ordering::Release);
            synced.notify_one();
            return;
        }
        for (reply, outcome) in answers {
            let _ = reply.send(outcome);
        }
        if unsynced.fetch_sub(batches, Ordering::AcqRel) - batches < 2 {
            synced.notify_one();
        }
    }
}

/// The connection's write-ahead log file, as the syncer syncs it.
struct WalFile {
    path: PathBuf,
    /// The open file and its (device, inode); opened at the first sync, since SQLite creates the
    /// file at the connection's first transaction.
    open: Option<(File, (u64, u64))>,
}

impl WalFile {
    /// The WAL of the connection's main database: SQLite names it after the database's full path
    /// as SQLite resolved it (symbolic links followed), which `path()` returns.
    fn of(conn: &Connection) -> Result<WalFile, StoreError> {
        match conn.path() {
            Some(db) if !db.is_empty() => Ok(WalFile {
                path: PathBuf::from(format!("{db}-wal")),
                open: None,
            }),
            _ => Err(StoreError::Unavailable(
                "the intake writer's database has no file".into(),
            )),
        }
    }

    /// `fdatasync`s the file SQLite writes now. The path is checked on every sync: if it names
    /// another file than the one held (the WAL was deleted and made again), that one is opened.
    /// A missing WAL is an error, never a silent success.
    fn sync(&mut self) -> std::io::Result<()> {
        let meta = std::fs::metadata(&self.path)?;
        let id = (meta.dev(), meta.ino());
        let file = match &self.open {
            Some((file, held)) if *held == id => file,
            _ => {
                let file = File::open(&self.path)?;
                let held = file.metadata()?;
                &self.open.insert((file, (held.dev(), held.ino()))).0
            }
        };
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc as std_mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{oneshot, Notify};

    use super::{sync_then_answer, Answer, WalFile};
    use crate::domain::clock::Clock;
    use crate::store::models::Ingested;
    use crate::store::{Store, StoreError};

    fn duplicate(id: &str) -> Result<Ingested, StoreError> {
        Ok(Ingested::Duplicate {
            delivery_id: id.into(),
        })
    }

    /// A syncer on its own thread whose every sync waits for the test's word (`Ok` or an error),
    /// after saying that it started.
    struct Syncer {
        batches: std_mpsc::Sender<Vec<Answer>>,
        unsynced: Arc<AtomicUsize>,
        synced: Arc<Notify>,
        started: std_mpsc::Receiver<()>,
        finish: std_mpsc::Sender<std::io::Result<()>>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Syncer {
        fn start() -> Syncer {
            let (batches, committed) = std_mpsc::channel();
            let (unsynced, synced) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
            let (said, started) = std_mpsc::channel();
            let (finish, word) = std_mpsc::channel::<std::io::Result<()>>();
            let (u, n) = (unsynced.clone(), synced.clone());
            let thread = std::thread::spawn(move || {
                sync_then_answer(committed, &u, &n, || {
                    let _ = said.send(());
                    word.recv().expect("the test gives its word")
                })
            });
            Syncer {
                batches,
                unsynced,
                synced,
                started,
                finish,
                thread,
            }
        }

        /// Waits, as the writer does, for the syncer's word until no batch waits for a sync.
        /// (A word can be an earlier one: the syncer also speaks when one batch is left.)
        async fn until_nothing_waits(&self) {
            while self.unsynced.load(Ordering::Acquire) > 0 {
                tokio::time::timeout(Duration::from_secs(10), self.synced.notified())
                    .await
                    .expect("the syncer tells the writer when batches were answered");
            }
        }

        /// Hands over one committed batch of one delivery, as the writer does.
        fn commit(&self, id: &str) -> oneshot::Receiver<Result<Ingested, StoreError>> {
            let (reply, answer) = oneshot::channel();
            self.unsynced.fetch_add(1, Ordering::AcqRel);
            self.batches
                .send(vec![(reply, duplicate(id))])
                .expect("the syncer runs");
            answer
        }
    }

    #[tokio::test]
    async fn a_delivery_is_answered_only_after_the_sync_that_covers_its_commit() {
        let s = Syncer::start();
        let mut first = s.commit("d1");
        s.started.recv().unwrap();
        // Committed while the first sync runs: it needs a sync of its own.
        let mut second = s.commit("d2");
        assert!(matches!(
            first.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        s.finish.send(Ok(())).unwrap();
        assert!(
            matches!(first.await.unwrap(), Ok(Ingested::Duplicate { delivery_id }) if delivery_id == "d1")
        );
        s.started.recv().unwrap();
        assert!(matches!(
            second.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        s.finish.send(Ok(())).unwrap();
        assert!(
            matches!(second.await.unwrap(), Ok(Ingested::Duplicate { delivery_id }) if delivery_id == "d2")
        );
        // And the writer is told that nothing waits any more.
        s.until_nothing_waits().await;
    }

    #[tokio::test]
    async fn one_sync_answers_every_batch_committed_before_it_started() {
        let s = Syncer::start();
        let first = s.commit("d1");
        s.started.recv().unwrap();
        let (second, third) = (s.commit("d2"), s.commit("d3"));
        s.finish.send(Ok(())).unwrap();
        first.await.unwrap().unwrap();
        s.started.recv().unwrap();
        s.finish.send(Ok(())).unwrap();
        second.await.unwrap().unwrap();
        third.await.unwrap().unwrap();
        // Two syncs for three batches: the writer is told that nothing waits, and no third sync
        // started.
        s.until_nothing_waits().await;
        assert!(s.started.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_failed_sync_refuses_what_it_covered_releases_the_writer_and_takes_no_later_commit() {
        let s = Syncer::start();
        let answer = s.commit("d1");
        s.started.recv().unwrap();
        // A second commit waits behind the failing sync: the writer waits for the syncer now.
        let waiting = s.commit("d2");
        s.finish
            .send(Err(std::io::Error::other("the disk went away")))
            .unwrap();
        let err = answer.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable(m) if m.contains("could not be synced")),
            "{err}"
        );
        // The writer is not left waiting for a sync that will never come.
        s.until_nothing_waits().await;
        s.thread.join().unwrap();
        // The batch waiting behind the failed sync is never answered as stored.
        assert!(!matches!(waiting.await, Ok(Ok(_))));
        // The writer's next hand-over fails, which stops intake (see `run`).
        let (reply, _answer) = oneshot::channel();
        assert!(s.batches.send(vec![(reply, duplicate("d3"))]).is_err());
    }

    #[test]
    fn the_wal_is_synced_by_its_path_even_after_it_is_made_again_and_never_silently_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (a);")
            .unwrap();
        let mut wal = WalFile::of(&conn).unwrap();
        let path = dir.path().join("t.db-wal");
        assert_eq!(
            wal.path.canonicalize().unwrap(),
            path.canonicalize().unwrap()
        );
        wal.sync().unwrap();
        drop(conn);
        // The last connection closed: SQLite checkpointed and deleted the WAL.
        assert!(!path.exists());
        assert_eq!(wal.sync().unwrap_err().kind(), std::io::ErrorKind::NotFound);
        // A new file at the path is the one synced from now on. (A file removed while held can
        // keep its inode number, so the test only requires that the new one is held.)
        std::fs::write(&path, b"").unwrap();
        wal.sync().unwrap();
        let now = wal.open.as_ref().unwrap().1;
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(now, (meta.dev(), meta.ino()));
    }

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
