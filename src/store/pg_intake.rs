//! The PostgreSQL intake writers: a few tasks, each committing the deliveries that arrived
//! together in one transaction on a connection of the pool ([`super::ingest::ingest_all`]).
//!
//! Why: a delivery stored alone costs about a dozen round trips (begin, dedupe insert, locks,
//! three history reads, three inserts, commit), each a parse-bind-execute in a PostgreSQL
//! backend. Measured at 64 concurrent senders, PostgreSQL's backends used more CPU than
//! offboard itself and the two cores were full at 537 deliveries/s. A batch needs a handful of
//! statements in all, whatever its size.
//!
//! Several writers, so that one batch is collected while another commits and PostgreSQL's group
//! commit still has company; each batch takes its advisory locks in sorted order first and
//! inserts its deliveries in key order, so two batches (of this replica or another) never wait
//! on each other in a cycle.

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{mpsc, Mutex};

use super::ingest::{ingest_all, Job, Msg, MAX_BATCH, QUEUE};
use super::models::Ingested;
use super::{Backend, StoreError};

/// Batches committed at once by one replica at most (each holds a pool connection meanwhile; the
/// pool has 8, so the worker, the admin API and `/readyz` keep 3). Measured at 64 senders
/// (BENCHMARKS.md, 2026-12-06): 3 writers took 5,400 deliveries/s with p99 39 ms, 5 took 7,900
/// with p99 14 ms, while PostgreSQL's own time per batch stayed under half of each writer's.
const WRITERS: usize = 5;

/// Starts the writers; they end when the store closes ([`Msg::Stop`]) or the last sender is
/// dropped.
pub(super) fn spawn(pool: AnyPool) -> mpsc::Sender<Msg> {
    let (tx, rx) = mpsc::channel::<Msg>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..WRITERS {
        tokio::spawn(run(pool.clone(), rx.clone()));
    }
    tx
}

async fn run(pool: AnyPool, rx: Arc<Mutex<mpsc::Receiver<Msg>>>) {
    while let Some(batch) = next_batch(&rx).await {
        match commit_batch(&pool, &batch).await {
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

/// Waits for a delivery and takes what else is queued behind it; `None` once the queue is
/// closed and empty. A stop closes the queue: what was queued before it is still stored.
async fn next_batch(rx: &Mutex<mpsc::Receiver<Msg>>) -> Option<Vec<Job>> {
    let mut rx = rx.lock().await;
    let mut batch = Vec::new();
    loop {
        let msg = if batch.is_empty() {
            rx.recv().await?
        } else {
            match rx.try_recv() {
                Ok(msg) => msg,
                Err(_) => return Some(batch),
            }
        };
        match msg {
            Msg::Deliver(job) => batch.push(job),
            Msg::Stop => rx.close(),
        }
        if batch.len() == MAX_BATCH {
            return Some(batch);
        }
    }
}

/// Commits a batch in one transaction; if the database refuses it for anything but being
/// unavailable (one delivery's data, or a deadlock with another replica's batch), each delivery
/// is redone in its own transaction, so each answer is that delivery's own outcome.
async fn commit_batch(
    pool: &AnyPool,
    batch: &[Job],
) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
    match commit_together(pool, batch).await {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        Err(e) if batch.len() == 1 => Ok(vec![Err(e)]),
        Err(e) if e.is_unavailable() && !e.is_contention() => Err(e),
        Err(_) => {
            let mut outcomes = Vec::with_capacity(batch.len());
            for job in batch {
                let one = commit_together(pool, std::slice::from_ref(job))
                    .await
                    .map(|mut o| o.remove(0));
                if let Err(e) = &one {
                    if !e.is_unavailable() {
                        tracing::warn!(delivery_id = %job.delivery.id, error = %e, "the database refused one delivery; the rest of its batch is stored");
                    }
                }
                outcomes.push(one);
            }
            Ok(outcomes)
        }
    }
}

async fn commit_together(pool: &AnyPool, jobs: &[Job]) -> Result<Vec<Ingested>, StoreError> {
    let mut tx = pool.begin().await?;
    let outcomes = ingest_all(&mut tx, Backend::Postgres, jobs).await?;
    tx.commit().await?;
    Ok(outcomes)
}
