//! Claim rate against the size of the backlog (issue 11: "flat claiming").
//!
//! For each backlog size, a fresh store holds that many runnable terminations (one per employee,
//! all due now, as after a layoff's effective instant); the benchmark then claims one action at a
//! time and finishes it, as the worker does when one slot frees up, and reports claims per second.
//! The target: the rate with 20,000 runnable at least 0.8× the rate with 200.
//!
//! `cargo bench --bench claim`. Environment: `BENCH_BACKLOGS` (comma-separated sizes, default
//! `200,2000,20000`), `BENCH_CLAIMS` (claims measured per run, default 1000), `BENCH_REPEATS`
//! (default 3), `BENCH_DATABASE_URL` (a PostgreSQL database to use instead of a SQLite file; it
//! is emptied first).

use std::time::{Duration, Instant};

use offboard::domain::clock::Clock;
use offboard::domain::lifecycle::Switches;
use offboard::domain::{EventType, Status, Step};
use offboard::store::{AuditEntry, NewDelivery, NewEvent, Store, Update};
use secrecy::SecretString;
use serde_json::json;

fn env_list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().expect("a number"))
        .collect()
}

async fn store_with_backlog(url: &str, backlog: usize) -> Store {
    let store = Store::connect(&SecretString::from(url.to_string()), Clock::system())
        .await
        .expect("store");
    store.migrate().await.expect("migrations");
    let now = store.clock().now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..backlog {
        let store = store.clone();
        let permit = permits.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let delivery = NewDelivery {
                id: offboard::domain::new_id("dlv"),
                source: "hr".into(),
                dedupe_key: format!("claim-{i}"),
                received_at: now,
                content_type: Some("application/json".into()),
                body: "{}".into(),
                body_sha256: String::new(),
                request_id: None,
            };
            let event = NewEvent {
                id: offboard::domain::new_id("evt"),
                kind: EventType::Terminated,
                sender_type: "standard".into(),
                employee_id: Some(format!("E-{i}")),
                email: Some(format!("user{i}@example.com")),
                name: None,
                effective_at: None,
                occurred_at: now,
                due_at: now,
                runnable: Status::Pending,
                detail: json!({}),
            };
            store
                .ingest(
                    delivery,
                    vec![event],
                    Switches {
                        reactivate_on_rehire: false,
                        reactivate_on_cancel: false,
                    },
                )
                .await
                .expect("ingest");
            drop(permit);
        });
    }
    tasks.join_all().await;
    store
}

/// Drops every table of the benchmark's PostgreSQL database, so each run starts empty.
async fn empty_postgres(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        .execute(&mut conn)
        .await
        .expect("schema reset");
}

/// One run: a fresh store with `backlog` runnable actions, then `claims` claims, each finished.
async fn claims_per_second(pg: Option<&str>, backlog: usize, claims: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let url = match pg {
        Some(url) => {
            empty_postgres(url).await;
            url.to_string()
        }
        None => format!("sqlite://{}", dir.path().join("claim.db").display()),
    };
    let store = store_with_backlog(&url, backlog).await;
    let lease = Duration::from_secs(10).as_millis() as i64;
    let started = Instant::now();
    let mut done = 0;
    while done < claims.min(backlog) {
        let now = store.clock().now_ms();
        let got = store
            .claim_due("bench", now, lease, 1)
            .await
            .expect("claim");
        let action = got.into_iter().next().expect("an action is runnable");
        let update = Update {
            status: Some(Status::Succeeded),
            release: true,
            done: true,
            ..Update::default()
        };
        let audit = [AuditEntry::new(
            jiff::Timestamp::now(),
            Step::Finished,
            json!({}),
        )];
        assert!(store
            .record(&action.id, "bench", &update, &audit)
            .await
            .expect("record"));
        done += 1;
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    store.close().await;
    rate
}

#[tokio::main]
async fn main() {
    let backlogs = env_list("BENCH_BACKLOGS", "200,2000,20000");
    let claims = env_list("BENCH_CLAIMS", "1000")[0];
    let repeats = env_list("BENCH_REPEATS", "3")[0];
    let pg = std::env::var("BENCH_DATABASE_URL").ok();
    println!(
        "claim rate, one action per claim then finished ({}; {claims} claims per run, {repeats} runs \
         of each size, the sizes taking turns)",
        if pg.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    // Sizes take turns within each repeat, so that a slow spell of a shared machine falls on all
    // of them rather than on one size's runs.
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); backlogs.len()];
    for _ in 0..repeats {
        for (k, &backlog) in backlogs.iter().enumerate() {
            rates[k].push(claims_per_second(pg.as_deref(), backlog, claims).await);
        }
    }
    let mut first_median = None;
    for (backlog, mut rates) in backlogs.into_iter().zip(rates) {
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = rates[rates.len() / 2];
        let base = *first_median.get_or_insert(median);
        println!(
            "backlog {backlog:>6}: claims/s min {:.0} median {median:.0} max {:.0} ({:.2}x the first size)",
            rates[0],
            rates[rates.len() - 1],
            median / base
        );
    }
}
