//! SPEC §8 proven with real processes: several replicas on PostgreSQL, `kill -9` at random
//! moments on each backend, the database going away, and graceful shutdown.
//!
//! Tests that need PostgreSQL run when one is given ([`postgres_url`]); in CI a missing one fails
//! them instead of letting them pass.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::harness::{database_url, fresh_postgres_database, postgres_url, ADMIN_TOKEN};
use crate::processes::*;
use crate::wait;

async fn wait_for(what: &str, secs: u64, done: impl FnMut() -> bool) {
    wait::until_true(what, Duration::from_secs(secs), done).await
}

/// Waits until every action listed by `base` satisfies `settled`, `n` of them, and returns them.
async fn wait_for_actions(
    what: &str,
    secs: u64,
    base: &str,
    n: usize,
    settled: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let http = reqwest::Client::new();
    let (http, settled) = (&http, &settled);
    wait::until(what, Duration::from_secs(secs), || async move {
        let actions = all_actions(http, base).await;
        let open = actions.iter().filter(|a| !settled(a)).count();
        if actions.len() == n && open == 0 {
            Ok(actions)
        } else {
            Err(format!("{} actions, {open} not settled", actions.len()))
        }
    })
    .await
}

/// Sends terminations `range` to the bases round-robin, each until the service acknowledges it.
async fn send_all(bases: Vec<String>, range: std::ops::Range<usize>, parallel: usize) {
    let http = reqwest::Client::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for i in range {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (http, bases) = (http.clone(), bases.clone());
        tasks.spawn(async move {
            // Like a sender, try again (on the next replica) until the service acknowledges it;
            // a refusal other than "unavailable" is a defect.
            let mut attempt = 0;
            let what = format!("termination {i} to be acknowledged");
            wait::until(&what, Duration::from_secs(30), || {
                let (http, base) = (http.clone(), bases[(i + attempt) % bases.len()].clone());
                attempt += 1;
                async move {
                    match send_termination(&http, &base, i).await {
                        202 | 200 => Ok(()),
                        s => {
                            assert!(s == 0 || s >= 500, "termination {i} refused with {s}");
                            Err(format!("{base} answered {s}"))
                        }
                    }
                }
            })
            .await;
            drop(permit);
        });
    }
    tasks.join_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgres_work_500_terminations_once_each() {
    let Some(pg) = postgres_url() else { return };
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database(&pg).await;
    let n = 500;
    let sim = sim_with_users(n, Duration::from_millis(5)).await;
    let config = write_config(
        dir.path(),
        "r",
        &db,
        &sim.base_url(),
        "[safety]\nbrake_max = 100000",
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&config).await);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    send_all(bases.clone(), 0..n, 24).await;
    wait_for("every user to be inactive", 120, || {
        inactive_count(&sim) == n
    })
    .await;
    let writes = writes_per_user(&sim);
    assert_eq!(writes.len(), n);
    assert!(writes.values().all(|&w| w == 1), "a user was written twice");
    // A user is inactive a moment before its action's outcome is recorded: wait for the records.
    let actions = wait_for_actions(
        "every action to be recorded as done",
        30,
        &bases[1],
        n,
        |a| a["status"] != "pending" && a["status"] != "in_progress",
    )
    .await;
    assert_eq!(actions.len(), n);
    assert!(actions
        .iter()
        .all(|a| a["status"] == "succeeded" && a["reason"] == "deactivated"));
    eprintln!(
        "3 replicas, {n} terminations: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brake_holds_across_replicas() {
    let Some(pg) = postgres_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database(&pg).await;
    let sim = sim_with_users(30, Duration::from_millis(5)).await;
    let config = write_config(
        dir.path(),
        "r",
        &db,
        &sim.base_url(),
        "[safety]\nbrake_max = 10\nbrake_window = \"1h\"",
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&config).await);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    send_all(bases.clone(), 0..30, 30).await;
    let actions = wait_for_actions("the actions to settle", 60, &bases[0], 30, |a| {
        a["status"] == "succeeded" || a["status"] == "held"
    })
    .await;
    let held = actions
        .iter()
        .filter(|a| a["reason"] == "rate_brake")
        .count();
    assert_eq!((30 - held, held), (10, 20));
    assert_eq!(inactive_count(&sim), 10);
}

async fn kill_nine_during_a_run(db: String, dir: &std::path::Path) {
    let n = 200;
    let sim = sim_with_users(n, Duration::from_millis(10)).await;
    let config = write_config(
        dir,
        "k",
        &db,
        &sim.base_url(),
        "[safety]\nbrake_max = 100000\n[worker]\nlease = \"1s\"\npoll_interval = \"100ms\"",
    );
    let mut replica = Replica::start(&config).await;
    let base = replica.base.clone();
    let sender = tokio::spawn(send_all(vec![base.clone()], 0..n, 8));
    let mut kills = 0;
    for k in 0..4 {
        // Kill at a random point of the run: after a random share of the users are written.
        let target = k * n / 5 + fastrand::usize(1..n / 5);
        wait_for("progress before the next kill", 60, || {
            inactive_count(&sim) >= target
        })
        .await;
        // Then kill while a write is on the wire (if one comes within a second), so the kills
        // really interrupt writes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while sim.sim.writes_in_flight() == 0 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        replica.kill9();
        kills += 1;
        replica.restart().await;
    }
    sender.await.unwrap();
    wait_for("every acknowledged termination to be done", 120, || {
        inactive_count(&sim) == n
    })
    .await;
    // Exactly one applied write per user: a landed write whose answer was lost is found by
    // reading the user again, never written a second time.
    let writes = writes_per_user(&sim);
    assert_eq!(writes.len(), n);
    let twice: Vec<_> = writes.iter().filter(|(_, &w)| w != 1).collect();
    assert!(
        twice.is_empty(),
        "users not written exactly once: {twice:?}"
    );
    let what = format!("every action to succeed after {kills} kills");
    wait_for_actions(&what, 30, &base, n, |a| a["status"] == "succeeded").await;
    let http = reqwest::Client::new();
    // The kills really interrupted work: actions were resumed from a dead process, and writes
    // landed whose answers the dead process never read.
    let (mut resumed, mut lost_answers) = (0, 0);
    for a in all_actions(&http, &base).await {
        let id = a["id"].as_str().unwrap();
        let detail: Value = http
            .get(format!("{base}/admin/v1/actions/{id}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let audit = detail["audit"].as_array().unwrap();
        resumed += audit.iter().filter(|e| e["step"] == "resumed").count();
        lost_answers += audit
            .iter()
            .filter(|e| e["step"] == "state_checked" && e["detail"]["earlier_write_landed"] == true)
            .count();
        assert_eq!(
            detail["reason"], "deactivated",
            "ours, not already_inactive: {id}"
        );
    }
    eprintln!("{kills} kills: {resumed} actions resumed, {lost_answers} landed writes whose answer was lost");
    assert!(resumed >= 1, "no kill interrupted an action");
    assert!(lost_answers >= 1, "no kill interrupted a write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    kill_nine_during_a_run(db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_on_postgres() {
    let Some(pg) = postgres_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database(&pg).await;
    kill_nine_during_a_run(db, dir.path()).await;
}

/// A TCP proxy in front of PostgreSQL that can be cut (every connection dropped, new ones
/// refused) and restored.
struct Outage {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Outage {
    async fn start(target: String) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused in effect
                }
                let token = cut2.lock().unwrap().clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        Outage { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut t = self.cut.lock().unwrap();
        t.cancel();
        *t = CancellationToken::new();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_makes_webhooks_503_and_service_recovers_by_itself() {
    let Some(pg) = postgres_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database(&pg).await;
    let parsed = url::Url::parse(&pg).unwrap();
    let proxy = Outage::start(format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    ))
    .await;
    let mut via_proxy = url::Url::parse(&db).unwrap();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let sim = sim_with_users(3, Duration::ZERO).await;
    let config = write_config(dir.path(), "o", via_proxy.as_str(), &sim.base_url(), "");
    let replica = Replica::start(&config).await;
    let http = reqwest::Client::new();
    assert_eq!(send_termination(&http, &replica.base, 0).await, 202);

    proxy.down();
    let mut status = 0;
    for _ in 0..3 {
        status = send_termination(&http, &replica.base, 1).await;
        if status == 503 {
            break;
        }
    }
    assert_eq!(status, 503, "the sender is told to retry");
    let ready = http
        .get(format!("{}/readyz", replica.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    proxy.restore();
    let (http, base) = (&http, &replica.base);
    wait::until(
        "intake to recover",
        Duration::from_secs(30),
        || async move {
            match send_termination(http, base, 1).await {
                202 => Ok(()),
                s => Err(format!("answered {s}")),
            }
        },
    )
    .await;
    wait_for("both users inactive", 30, || inactive_count(&sim) == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_calls_gives_back_leases_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let sim = sim_with_users(2, Duration::from_millis(700)).await;
    let config = write_config(dir.path(), "t", &db, &sim.base_url(), "");
    let mut replica = Replica::start(&config).await;
    let http = reqwest::Client::new();
    for i in 0..2 {
        assert_eq!(send_termination(&http, &replica.base, i).await, 202);
    }
    wait_for("a Workfront call in flight", 10, || {
        sim.sim.state_in_flight() > 0
    })
    .await;
    let base = replica.base.clone();
    let code = replica.terminate().await;
    assert_eq!(code, Some(0));
    assert!(sim.sim.state_in_flight() == 0, "no call was cut off");
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "intake stopped"
    );
    // Whatever was not finished was given back, not left leased: a new process finishes it at once.
    let mut replica = Replica::start(&config).await;
    wait_for("both users inactive", 20, || inactive_count(&sim) == 2).await;
    let actions = all_actions(&http, &replica.base).await;
    assert!(actions.iter().all(|a| a["status"] == "succeeded"));
    assert!(writes_per_user(&sim).values().all(|&w| w == 1));
    replica.kill9();
}

/// Two in-process replicas sharing one fresh PostgreSQL database.
async fn two_replicas_on_postgres(pg: &str) -> (crate::harness::TestApp, offboard::Application) {
    let opts = crate::harness::Options {
        database: Some(fresh_postgres_database(pg).await),
        ..crate::harness::options("[log]\nlevel = \"error\"")
    };
    let a = crate::harness::spawn_app_with(opts).await;
    let b = a.replica().await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_and_its_cancellation_reaching_two_replicas_at_once_resolve_as_if_sent_in_turn(
) {
    let Some(pg) = postgres_url() else { return };
    let (a, b) = two_replicas_on_postgres(&pg).await;
    let b_base = format!("http://{}", b.addr());
    let pairs = 60;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pairs {
        let at = jiff::Timestamp::now();
        let term = serde_json::json!({"type": "employee.terminated", "timestamp": at.to_string(),
            "data": {"employee_id": format!("RACE-{i}"), "effective_at": "2099-01-01"}})
        .to_string();
        let cancel = serde_json::json!({"type": "employee.termination_cancelled",
            "timestamp": (at + jiff::SignedDuration::from_secs(1)).to_string(),
            "data": {"employee_id": format!("RACE-{i}")}})
        .to_string();
        let to_a = a.delivery(term);
        let to_b = crate::harness::signed_delivery(&a.http, &b_base, "hr", cancel, a.clock.now());
        tasks.spawn(async move {
            let (x, y) = tokio::join!(to_a, to_b);
            assert_eq!(x.status, 202, "{}", x.body);
            assert_eq!(y.status, 202, "{}", y.body);
        });
    }
    tasks.join_all().await;
    let actions = all_actions(&a.http, &a.base).await;
    let deactivations: Vec<&Value> = actions
        .iter()
        .filter(|x| x["kind"] == "deactivate")
        .collect();
    assert_eq!(deactivations.len(), pairs);
    for d in deactivations {
        let outcome = format!(
            "{}/{}",
            d["status"].as_str().unwrap(),
            d["reason"].as_str().unwrap_or("")
        );
        assert!(
            outcome == "cancelled/termination_cancelled" || outcome == "skipped/superseded",
            "{} survived its cancellation as {outcome}",
            d["employee"]["employee_id"]
        );
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_id_sent_to_two_replicas_at_once_is_stored_once() {
    let Some(pg) = postgres_url() else { return };
    let (a, b) = two_replicas_on_postgres(&pg).await;
    let b_base = format!("http://{}", b.addr());
    for round in 0..20 {
        let body = crate::harness::termination(Some(&format!("DUP-{round}")), None);
        let id = format!("msg_twice_{round}");
        let ts = jiff::Timestamp::now().as_second();
        let headers = crate::harness::signed_headers(crate::harness::SECRET, &id, ts, &body);
        let send = |base: String| {
            let (http, headers, body) = (a.http.clone(), headers.clone(), body.clone());
            async move {
                let mut req = http.post(format!("{base}/webhooks/hr")).body(body);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap();
                (status, v)
            }
        };
        let (x, y) = tokio::join!(send(a.base.clone()), send(b_base.clone()));
        let mut statuses = [x.0, y.0];
        statuses.sort();
        assert_eq!(statuses, [200, 202], "round {round}: {x:?} {y:?}");
        let dup = if x.0 == 200 { &x.1 } else { &y.1 };
        assert_eq!(dup["status"], "duplicate");
    }
    let actions = all_actions(&a.http, &a.base).await;
    assert_eq!(actions.len(), 20, "one action per webhook id");
    b.stop().await;
}

/// Runs `n` terminations through three replicas on PostgreSQL against a simulator with a cap,
/// returning (the most calls it ever saw at once, its 429s, its requests, the limit metric).
async fn three_replicas_against_a_cap(
    pg: &str,
    cap: usize,
    max: usize,
    n: usize,
) -> (usize, usize, usize, f64) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database(pg).await;
    let sim = sim_with_cap(n, Duration::from_millis(15), cap).await;
    let config = write_config_wf(
        dir.path(),
        "cap",
        &db,
        &sim.base_url(),
        &format!("max_concurrency = {max}"),
        "[safety]\nbrake_max = 100000",
    );
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&config).await);
    }
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    send_all(bases.clone(), 0..n, 24).await;
    wait_for("every user to be inactive", 180, || {
        inactive_count(&sim) == n
    })
    .await;
    let requests = sim.sim.requests();
    let limited = requests.iter().filter(|r| r.status == 429).count();
    let metrics = reqwest::get(format!("{}/metrics", bases[0]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let limit =
        crate::harness::metric(&metrics, "offboard_workfront_concurrency_limit").unwrap_or(-1.0);
    (sim.sim.max_in_flight(), limited, requests.len(), limit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_never_exceed_the_fleet_cap_together() {
    let Some(pg) = postgres_url() else { return };
    let (peak, limited, total, _) = three_replicas_against_a_cap(&pg, 5, 5, 300).await;
    eprintln!("cap 5, max_concurrency 5: peak {peak}, {limited} 429s of {total} requests");
    assert!(peak <= 5, "{peak} calls in flight at once");
    assert_eq!(limited, 0, "no 429 when the cap is known");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_cap_is_found_with_few_429s_and_the_limit_settles_near_it() {
    let Some(pg) = postgres_url() else { return };
    let (peak, limited, total, limit) = three_replicas_against_a_cap(&pg, 3, 10, 600).await;
    let share = limited as f64 / total as f64;
    eprintln!(
        "hidden cap 3, max_concurrency 10: peak {peak}, {limited} 429s of {total} ({:.1}%), limit {limit}",
        share * 100.0
    );
    assert!(share < 0.05, "{limited} of {total} requests were 429s");
    assert!((1.0..=5.0).contains(&limit), "the limit settled at {limit}");
}
