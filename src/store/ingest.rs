//! Storing deliveries: dedupe, then each event is planned against the employee's history
//! ([`crate::domain::lifecycle`]) and applied, durably committed before the sender is answered.
//!
//! Deliveries that arrive together are stored together, on both backends, by an intake writer
//! ([`super::sqlite_intake`], [`super::pg_intake`]): one transaction and one durable commit for
//! the batch, and a few multi-row statements for all of it ([`ingest_all`]) instead of about ten
//! statements per delivery. One delivery the database refuses fails alone: its batch is redone
//! one delivery per transaction.
//!
//! How a batch stays exactly what storing its deliveries one by one would have done:
//! - **Dedupe** is one `INSERT … ON CONFLICT DO NOTHING RETURNING id`; a delivery whose row was
//!   not inserted is a duplicate (also of an earlier one in the same batch).
//! - **Rounds.** An event is planned against its employee's history, which earlier events of the
//!   batch may change. So events are put in rounds ([`rounds`]): an event goes one round after
//!   the last earlier event sharing an identifier (employee id or email) with it, and each round
//!   reads the histories of all its events in one query ([`super::history`]), plans them, and writes what they create
//!   before the next round reads. Where two events of a round see one stored row (an employee id
//!   of one person stored with the email of another), that round is redone one event at a time.
//! - **Locks** (PostgreSQL, several replicas): before anything else the transaction takes an
//!   advisory lock per identifier of the whole batch, in sorted order, and inserts deliveries in
//!   (source, dedupe key) order, so concurrent batches never wait on each other in a cycle, and
//!   deliveries about one employee that reach different replicas at once are planned one after
//!   the other, never both against the same old history.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use super::apply::{apply, Applied, Writes};
use super::db::{chunks, insert_rows, Cell, Db, Insert};
use super::history::{self, Who};
use super::models::{Ended, Ingested, NewDelivery, NewEvent};
use super::{Backend, Store, StoreError};
use crate::domain::lifecycle::{self, History, Switches};

/// Deliveries committed together at most.
pub(super) const MAX_BATCH: usize = 64;

/// Deliveries waiting for the writers at most; a full queue makes senders wait (backpressure).
pub(super) const QUEUE: usize = 1024;

/// One delivery waiting for an intake writer.
pub(super) struct Job {
    pub(super) delivery: NewDelivery,
    pub(super) events: Vec<NewEvent>,
    pub(super) switches: Switches,
    pub(super) reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

/// What an intake writer is sent.
// Nearly every message is a delivery: boxing it would only add an allocation to each.
#[allow(clippy::large_enum_variant)]
pub(super) enum Msg {
    Deliver(Job),
    /// Finish and end (the store is closing); later deliveries are refused.
    Stop,
}

impl Store {
    /// Stores a delivery with its events and the actions they cause, and returns once that is
    /// durably committed. A delivery whose dedupe key is already stored is a duplicate and stores
    /// nothing. Deliveries that arrive together are committed together by the intake writer;
    /// nobody is answered before the commit that holds their delivery.
    pub async fn ingest(
        &self,
        delivery: NewDelivery,
        events: Vec<NewEvent>,
        switches: Switches,
    ) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Taken by value: copying a delivery and its events' JSON for the writer was 5% of the
        // request threads' time in a profile at 16 senders.
        let job = Job {
            delivery,
            events,
            switches,
            reply,
        };
        let stopped = || StoreError::Unavailable("the intake writer has stopped".into());
        self.intake
            .send(Msg::Deliver(job))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Stores every delivery of `jobs` inside one open transaction; one outcome per job, in order.
/// Any error means the transaction must be rolled back.
pub(super) async fn ingest_all<D: Db>(
    tx: &mut D,
    backend: Backend,
    jobs: &[Job],
) -> Result<Vec<Ingested>, StoreError> {
    if backend == Backend::Postgres {
        lock_employees(tx, jobs.iter().flat_map(|j| &j.events)).await?;
    }
    let inserted = insert_deliveries(tx, jobs).await?;
    let mut outcomes: Vec<Option<Ingested>> = vec![None; jobs.len()];
    for (i, job) in jobs.iter().enumerate() {
        if !inserted.contains(job.delivery.id.as_str()) {
            let existing = tx
                .row(
                    "SELECT id FROM deliveries WHERE source = $1 AND dedupe_key = $2",
                    &[
                        (&job.delivery.source).into(),
                        (&job.delivery.dedupe_key).into(),
                    ],
                )
                .await?
                .ok_or_else(|| StoreError::Unavailable("a conflicting delivery vanished".into()))?
                .text(0)?;
            outcomes[i] = Some(Ingested::Duplicate {
                delivery_id: existing,
            });
        }
    }
    // Every event of the stored deliveries, in order, with its employee's identifiers.
    let items: Vec<Item<'_>> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| outcomes[*i].is_none())
        .flat_map(|(i, job)| {
            job.events.iter().map(move |ev| Item {
                job: i,
                ev,
                email_lc: ev.email.as_ref().map(|e| e.to_lowercase()),
            })
        })
        .collect();
    let keys: Vec<Vec<String>> = items.iter().map(Item::keys).collect();
    let round_of = rounds(&keys);
    let mut done: Vec<Option<Applied>> = (0..items.len()).map(|_| None).collect();
    for round in 0..round_of.iter().max().map_or(0, |m| m + 1) {
        let members: Vec<usize> = (0..items.len()).filter(|i| round_of[*i] == round).collect();
        let who: Vec<Who<'_>> = members.iter().map(|&m| items[m].who()).collect();
        let histories = history::read(tx, backend, &who).await?;
        let separate = overlapping(&histories);
        let mut writes = Writes::default();
        for (at, &i) in members.iter().enumerate() {
            let history = if separate && at > 0 {
                // Redone alone: reads what the events before it in this round wrote.
                writes.flush(tx).await?;
                history::read(tx, backend, &[items[i].who()])
                    .await?
                    .remove(0)
            } else {
                histories[at].clone()
            };
            let item = &items[i];
            let job = &jobs[item.job];
            let plan = lifecycle::plan(
                lifecycle::Incoming {
                    kind: item.ev.kind,
                    source: &job.delivery.source,
                    occurred_at: item.ev.occurred_at,
                    runnable: item.ev.runnable,
                },
                &history,
                &job.switches,
            );
            done[i] = Some(apply(tx, &job.delivery, item, &plan, &mut writes).await?);
        }
        writes.flush(tx).await?;
    }
    let mut stored: Vec<(Vec<String>, Vec<Ended>, Option<i64>)> =
        (0..jobs.len()).map(|_| Default::default()).collect();
    for (item, applied) in items.iter().zip(done) {
        let applied = applied.ok_or_else(|| {
            StoreError::Unavailable("an event of the batch was not planned".into())
        })?;
        let (ids, ended, next) = &mut stored[item.job];
        ended.extend(applied.ended);
        if let Some(id) = applied.created {
            ids.push(id);
        }
        if let Some(run_at) = applied.run_at {
            *next = Some(next.map_or(run_at, |n: i64| n.min(run_at)));
        }
    }
    Ok(outcomes
        .into_iter()
        .zip(stored)
        .zip(jobs)
        .map(|((outcome, (action_ids, ended, next_run_at)), job)| {
            outcome.unwrap_or_else(|| Ingested::Stored {
                delivery_id: job.delivery.id.clone(),
                action_ids,
                ended,
                next_run_at,
            })
        })
        .collect())
}

/// One event of a batch being planned.
pub(super) struct Item<'a> {
    pub(super) job: usize,
    pub(super) ev: &'a NewEvent,
    pub(super) email_lc: Option<String>,
}

impl Item<'_> {
    fn who(&self) -> Who<'_> {
        Who {
            employee_id: self.ev.employee_id.as_deref(),
            email_lc: self.email_lc.as_deref(),
        }
    }

    fn keys(&self) -> Vec<String> {
        let id = self
            .ev
            .employee_id
            .as_ref()
            .map(|i| format!("employee_id:{i}"));
        let email = self.email_lc.as_ref().map(|m| format!("email:{m}"));
        id.into_iter().chain(email).collect()
    }
}

/// The round of each item: one after the last earlier item sharing a key with it, else 0. Items
/// of one round share no key, and items sharing a key keep their order.
fn rounds(keys: &[Vec<String>]) -> Vec<usize> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    keys.iter()
        .map(|ks| {
            let round = ks
                .iter()
                .filter_map(|k| last.get(k.as_str()).map(|r| r + 1))
                .max()
                .unwrap_or(0);
            for k in ks {
                last.insert(k, round);
            }
            round
        })
        .collect()
}

/// Whether two histories of a round hold one stored row (which one event may change before the
/// other reads it).
fn overlapping(histories: &[History]) -> bool {
    let mut seen = HashSet::new();
    histories.iter().any(|h| {
        let ids: HashSet<&str> = h
            .newest_event
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(h.open.iter().map(|a| a.id.as_str()))
            .chain(h.last_deactivation.iter().map(|d| d.id.as_str()))
            .collect();
        ids.into_iter().any(|id| !seen.insert(id))
    })
}

/// Inserts the batch's deliveries in (source, dedupe key) order; returns the ids of those that
/// were not duplicates.
async fn insert_deliveries<D: Db>(tx: &mut D, jobs: &[Job]) -> Result<HashSet<String>, StoreError> {
    let mut order: Vec<&NewDelivery> = jobs.iter().map(|j| &j.delivery).collect();
    order.sort_by(|a, b| (&a.source, &a.dedupe_key).cmp(&(&b.source, &b.dedupe_key)));
    let rows: Vec<Vec<Cell>> = order
        .iter()
        .map(|d| {
            vec![
                (&d.id).into(),
                (&d.source).into(),
                (&d.dedupe_key).into(),
                d.received_at.into(),
                (&d.content_type).into(),
                (&d.body).into(),
                (&d.body_sha256).into(),
                (&d.request_id).into(),
            ]
        })
        .collect();
    static DELIVERIES: Insert = Insert::new(
        "INSERT INTO deliveries (id, source, dedupe_key, received_at, content_type, body, body_sha256, request_id)",
        "ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING id",
    );
    insert_rows(tx, &DELIVERIES, &rows)
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect()
}

/// Takes a transaction-scoped advisory lock for each identifier of the events, in sorted order
/// (so that two batches never wait on each other in a cycle). A hash collision only makes two
/// unrelated employees wait for each other briefly.
async fn lock_employees<'e, D: Db>(
    tx: &mut D,
    events: impl Iterator<Item = &'e NewEvent>,
) -> Result<(), StoreError> {
    let mut keys: Vec<String> = events
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
    // A VALUES list is scanned in its order, and each chunk after the one before.
    let rows: Vec<Vec<Cell>> = keys.into_iter().map(|k| vec![k.into()]).collect();
    for range in chunks(rows.len()) {
        let sql = format!(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (VALUES {}) AS v(k)",
            super::db::placeholders(range.len(), 1)
        );
        let args: Vec<_> = rows[range].iter().flatten().map(Cell::arg).collect();
        tx.rows(&sql, &args).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventType, Status};
    use serde_json::json;

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
            store.ingest(a, vec![], sw.clone()),
            store.ingest(b, vec![], sw.clone()),
            store.ingest(c, vec![], sw.clone())
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

    #[test]
    fn rounds_put_events_sharing_an_identifier_in_later_rounds_in_order() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let keys = vec![
            k(&["employee_id:1", "email:a"]),
            k(&["employee_id:2"]),
            k(&["email:a"]),
            k(&[]),
            k(&["employee_id:2", "email:a"]),
            k(&["employee_id:3"]),
        ];
        assert_eq!(rounds(&keys), vec![0, 0, 1, 0, 2, 0]);
    }

    fn event(id: &str, kind: EventType, employee: &str, email: &str, at: i64) -> NewEvent {
        NewEvent {
            id: id.into(),
            kind,
            sender_type: "t".into(),
            employee_id: Some(employee.into()),
            email: Some(email.into()),
            name: None,
            effective_at: None,
            occurred_at: at,
            due_at: 4_000_000_000_000,
            runnable: Status::Scheduled,
            detail: json!({}),
        }
    }

    fn job(key: &str, events: Vec<NewEvent>) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            delivery: delivery(&format!("dlv_{key}_{}", fastrand::u32(..)), key),
            events,
            switches: Switches {
                reactivate_on_rehire: true,
                reactivate_on_cancel: true,
            },
            reply,
        }
    }

    /// Every delivery kind that depends on an earlier one: a cancel and a rehire after a
    /// termination of the same person, a stale termination, a duplicate key, one email under two
    /// employee ids, and two people whose identifiers both match one stored row.
    fn scenario() -> (Vec<Job>, Vec<Job>) {
        use EventType::*;
        let before = vec![job(
            "k0",
            vec![event("evt_0", Terminated, "E4", "e5@x.co", 10)],
        )];
        let batch = vec![
            job("k1", vec![event("evt_1", Terminated, "E1", "e1@x.co", 100)]),
            job("k2", vec![event("evt_2", Terminated, "E2", "E2@x.co", 100)]),
            job(
                "k3",
                vec![event("evt_3", TerminationCancelled, "E1", "e1@x.co", 200)],
            ),
            job("k2", vec![event("evt_4", Terminated, "E2", "e2@x.co", 100)]),
            job("k5", vec![event("evt_5", Terminated, "E3", "e2@x.co", 150)]),
            job("k6", vec![event("evt_6", Rehired, "E1", "e1@x.co", 300)]),
            job("k7", vec![event("evt_7", Terminated, "E1", "e1@x.co", 50)]),
            job("k8", vec![event("evt_8", Terminated, "E4", "e4@x.co", 100)]),
            job("k9", vec![event("evt_9", Terminated, "E5", "e5@x.co", 100)]),
            job(
                "k10",
                vec![
                    event("evt_10", Terminated, "E6", "e6@x.co", 100),
                    event("evt_11", TerminationCancelled, "E6", "e6@x.co", 200),
                ],
            ),
        ];
        (before, batch)
    }

    /// What the database holds, without the generated ids.
    async fn contents(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        let actions = sqlx::query(
            "SELECT kind, status, reason, employee_id, email_lc, delivery_id FROM actions",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        for r in actions {
            use sqlx::Row as _;
            let dlv: String = r.get(5);
            out.push(format!(
                "action {} {} {:?} {:?} {:?} from {}",
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<Option<String>, _>(2),
                r.get::<Option<String>, _>(3),
                r.get::<Option<String>, _>(4),
                dlv.split('_').nth(1).unwrap_or_default(),
            ));
        }
        let events = sqlx::query("SELECT id, CAST(CASE WHEN action_id IS NULL THEN 1 ELSE 0 END AS BIGINT), outcome FROM events")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        for r in events {
            use sqlx::Row as _;
            let outcome: String = r.get(2);
            let kinds: Vec<&str> = outcome
                .split("; ")
                .map(|o| o.split(' ').next().unwrap_or_default())
                .collect();
            out.push(format!(
                "event {} without action {} {kinds:?}",
                r.get::<String, _>(0),
                r.get::<i64, _>(1) == 1
            ));
        }
        let audit = sqlx::query("SELECT step FROM audit")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        for r in audit {
            use sqlx::Row as _;
            out.push(format!("audit {}", r.get::<String, _>(0)));
        }
        out.sort();
        out
    }

    async fn store_at(url: String) -> Store {
        let store = Store::connect(&url.into(), crate::domain::clock::Clock::system())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Stores `before` and then `batch` in one transaction, or each delivery in its own.
    async fn run(store: &Store, together: bool) -> Vec<Ingested> {
        let (before, batch) = scenario();
        let mut outcomes = Vec::new();
        let groups: Vec<Vec<Job>> = if together {
            vec![before, batch]
        } else {
            before.into_iter().chain(batch).map(|j| vec![j]).collect()
        };
        for group in groups {
            let mut tx = store.pool.begin().await.unwrap();
            outcomes.extend(ingest_all(&mut tx, store.backend, &group).await.unwrap());
            tx.commit().await.unwrap();
        }
        outcomes
    }

    async fn a_batch_stores_exactly_what_one_by_one_would(urls: [String; 2]) {
        let [one, many] = urls;
        let (alone, together) = (store_at(one).await, store_at(many).await);
        let a = run(&alone, false).await;
        let b = run(&together, true).await;
        let shape = |o: &Ingested| match o {
            Ingested::Stored {
                action_ids,
                ended,
                next_run_at,
                ..
            } => format!("stored {} {ended:?} {next_run_at:?}", action_ids.len()),
            Ingested::Duplicate { .. } => "duplicate".into(),
        };
        assert_eq!(
            a.iter().map(shape).collect::<Vec<_>>(),
            b.iter().map(shape).collect::<Vec<_>>()
        );
        assert!(
            matches!(&b[4], Ingested::Duplicate { delivery_id } if delivery_id.starts_with("dlv_k2_"))
        );
        let (ca, cb) = (contents(&alone).await, contents(&together).await);
        assert_eq!(ca, cb);
        assert!(ca.iter().any(|r| r.contains("cancelled")), "{ca:#?}");
        // The stale termination is recorded as superseded at once.
        assert!(
            ca.iter()
                .any(|r| r.contains("skipped Some(\"superseded\") Some(\"E1\")")
                    && r.ends_with("k7")),
            "{ca:#?}"
        );
    }

    #[tokio::test]
    async fn a_batch_stores_exactly_what_one_by_one_would_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = |n: &str| format!("sqlite://{}", dir.path().join(n).display());
        a_batch_stores_exactly_what_one_by_one_would([url("a.db"), url("b.db")]).await;
    }

    /// PostgreSQL ([`crate::store::test_postgres_database`]; under CI a missing server fails).
    #[tokio::test]
    async fn a_batch_stores_exactly_what_one_by_one_would_on_postgres() {
        let Some(a) = crate::store::test_postgres_database().await else {
            return;
        };
        let b = crate::store::test_postgres_database().await.unwrap();
        a_batch_stores_exactly_what_one_by_one_would([a, b]).await;
    }
}
