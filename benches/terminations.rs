//! Throughput, CPU and memory for a burst of terminations.
//!
//! Runs the release `offboard serve` and the `workfront-sim` simulator (holding N users) as
//! processes of their own, so that neither the load generator nor the simulator takes CPU from
//! the service's runtime or counts in its CPU time and memory. It sends N signed terminations
//! from `BENCH_SENDERS` concurrent senders and waits until all N users are inactive. Per run it prints:
//! acknowledgement latency, time to the last deactivation against the floor (Workfront calls ×
//! latency / cap), 429s, CPU milliseconds per termination, and resident memory; with
//! `BENCH_REPEATS` > 1 also min / median / max of the main figures.
//!
//! `cargo bench --bench terminations` (N=500, SQLite). Environment: `BENCH_N`, `BENCH_LATENCY`
//! (simulated Workfront latency, default 0ms), `BENCH_DATABASE_URL` (e.g. a PostgreSQL database;
//! each run's deliveries carry ids of their own, so runs can share it), `BENCH_SIM_CAP` (the
//! simulator's concurrency cap, default 10), `BENCH_MAX_CONCURRENCY` (offboard's
//! `workfront.max_concurrency`, default 5), `BENCH_REPEATS` (default 1), `BENCH_EMAIL=0` (send
//! only the employee id: 2 Workfront calls per termination instead of 3), `BENCH_LAYOFF_IN` (e.g.
//! `60s`: a layoff, every termination effective at that one instant, the drain timed from it),
//! `BENCH_SENDERS` (concurrent senders, default 32), `BENCH_INTAKE_RATE` (future-dated deliveries per second sent during the drain; their
//! acknowledgement p99 is printed), `BENCH_OFFBOARD` (another build of offboard to measure).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, proc_stat, serve, signed, spread, wait_ready, Killed};
use offboard::sim::SimStats;
use serde_json::json;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

struct Params {
    n: usize,
    latency: String,
    cap: usize,
    max_concurrency: usize,
    db: Option<String>,
    /// Send the email beside the employee id (then both are searched, 3 calls per termination).
    with_email: bool,
    /// A layoff: every termination effective at one instant this far ahead; the drain is timed
    /// from that instant.
    layoff_in: Option<Duration>,
    /// Future-dated deliveries per second sent while the backlog drains (their ack is timed).
    intake_rate: Option<f64>,
    /// Concurrent senders of the terminations.
    senders: usize,
}

/// The figures of one run.
struct Run {
    acked_s: f64,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    done_s: f64,
    floor_s: f64,
    stats: SimStats,
    cpu_per_termination_ms: f64,
    rss_idle_mib: f64,
    rss_end_mib: f64,
    rss_peak_mib: f64,
    call_ms: f64,
    /// Acknowledgement p99 of the deliveries sent while draining.
    drain_ack_p99_ms: Option<f64>,
}

async fn run_once(p: &Params) -> Run {
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<serde_json::Value> = (0..p.n)
        .map(|i| {
            json!({"ID": format!("{i:032x}"), "name": format!("User {i}"), "emailAddr": format!("user{i}@example.com"),
                "isActive": true, "isAdmin": false, "extRefID": format!("B-{i}")})
        })
        .collect();
    let users_file = dir.path().join("users.json");
    std::fs::write(&users_file, serde_json::to_string(&users).unwrap()).unwrap();
    let sim_port = free_port();
    let sim_base = format!("http://127.0.0.1:{sim_port}");
    let sim = Command::new(env!("CARGO_BIN_EXE_workfront-sim"))
        .args(["--bind", &format!("127.0.0.1:{sim_port}")])
        .arg("--users")
        .arg(&users_file)
        .args(["--latency", &p.latency])
        .args(["--max-concurrency", &p.cap.to_string()])
        .args(["--api-key", "bench-key"])
        .stderr(Stdio::null())
        .spawn()
        .expect("workfront-sim starts");
    let _sim = Killed(sim);
    wait_ready(&http, &format!("{sim_base}/__sim/stats"), "workfront-sim").await;

    let port = free_port();
    let db =
        p.db.clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n[database]\nurl = \"{db}\"\n[workfront]\nbase_url = \"{sim_base}\"\napi_key = \"bench-key\"\nmax_concurrency = {}\n\
             [safety]\nbrake_max = 1000000\n[log]\nlevel = \"warn\"\n[sources.hr]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n",
            p.max_concurrency
        ),
    )
    .unwrap();
    let service = serve(&config);
    let pid = service.0.id();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &format!("{base}/readyz"), "offboard").await;
    // Let start-up work settle before the idle reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu_idle_ms, rss_idle) = proc_stat(pid);

    let key = offboard::config::decode_whsec(SECRET, "bench").unwrap();
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    let effective = p.layoff_in.map(|d| {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::try_from(d).unwrap();
        (Instant::now() + d, at.to_string())
    });
    let mut sends = tokio::task::JoinSet::new();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(p.senders));
    for i in 0..p.n {
        let mut data = json!({"employee_id": format!("B-{i}")});
        if p.with_email {
            data["email"] = json!(format!("user{i}@example.com"));
        }
        if let Some((_, at)) = &effective {
            data["effective_at"] = json!(at);
        }
        let body = json!({"type": "employee.terminated", "timestamp": jiff::Timestamp::now().to_string(), "data": data})
            .to_string();
        let req = signed(&http, &base, &key, &format!("msg_bench_{run_id}_{i}"), body);
        let permit = permits.clone().acquire_owned().await.unwrap();
        sends.spawn(async move {
            let t = Instant::now();
            let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            drop(permit);
            (status, t.elapsed())
        });
    }
    let acks = sends.join_all().await;
    let acked = started.elapsed();
    assert!(
        acks.iter().all(|(s, _)| *s == 202),
        "every delivery is accepted"
    );
    let mut lat: Vec<Duration> = acks.iter().map(|(_, d)| *d).collect();
    lat.sort();
    let stats_url = format!("{sim_base}/__sim/stats");
    let stats = || async {
        http.get(&stats_url)
            .send()
            .await
            .unwrap()
            .json::<SimStats>()
            .await
            .unwrap()
    };
    // A layoff is timed from its effective instant, once every delivery is acknowledged.
    let started = match &effective {
        None => started,
        Some((due, _)) => {
            assert!(
                Instant::now() < *due,
                "the deliveries took {:.1} s to acknowledge, past the layoff's instant: raise BENCH_LAYOFF_IN",
                acked.as_secs_f64()
            );
            tokio::time::sleep_until((*due).into()).await;
            *due
        }
    };
    // Intake while the backlog drains: future-dated deliveries at a fixed rate.
    let stop_intake = tokio_util::sync::CancellationToken::new();
    let drain_intake = p.intake_rate.map(|rate| {
        let (http, base, key, run_id, stop) = (
            http.clone(),
            base.clone(),
            key.clone(),
            run_id.clone(),
            stop_intake.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut sent = tokio::task::JoinSet::new();
            let mut i = 0;
            while !stop.is_cancelled() {
                tick.tick().await;
                i += 1;
                let body = format!(
                    r#"{{"type":"employee.terminated","data":{{"employee_id":"F-{i}","effective_at":"2099-01-01"}}}}"#
                );
                let req = signed(&http, &base, &key, &format!("msg_later_{run_id}_{i}"), body);
                sent.spawn(async move {
                    let t = Instant::now();
                    let r = req.send().await.expect("answered");
                    assert_eq!(r.status(), 202);
                    t.elapsed()
                });
            }
            sent.join_all().await
        })
    });
    let mut rss_peak = 0;
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let s = stats().await;
        rss_peak = rss_peak.max(proc_stat(pid).1);
        if s.inactive == p.n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {}/{} deactivated",
            s.inactive,
            p.n
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed();
    stop_intake.cancel();
    let drain_ack_p99_ms = match drain_intake {
        None => None,
        Some(task) => {
            let mut lat = task.await.unwrap();
            lat.sort();
            lat.get(lat.len() * 99 / 100)
                .map(|d| d.as_secs_f64() * 1000.0)
        }
    };
    let (cpu_ms, rss_end) = proc_stat(pid);
    let stats = stats().await;
    let latency = offboard::config::parse_duration(&p.latency).unwrap();
    let answered = stats.requests - stats.rate_limited;
    let floor = answered as f64 * latency.as_secs_f64() / p.cap as f64;
    // A Workfront call as offboard saw it, the wait for a free slot included.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sum_of = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let call_ms = sum_of("offboard_workfront_request_seconds_sum") * 1000.0
        / sum_of("offboard_workfront_request_seconds_count").max(1.0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Run {
        acked_s: acked.as_secs_f64(),
        ack_p50_ms: ms(lat[lat.len() / 2]),
        ack_p99_ms: ms(lat[lat.len() * 99 / 100]),
        done_s: done.as_secs_f64(),
        floor_s: floor,
        stats,
        cpu_per_termination_ms: (cpu_ms - cpu_idle_ms) / p.n as f64,
        rss_idle_mib: rss_idle as f64 / 1024.0,
        rss_end_mib: rss_end as f64 / 1024.0,
        rss_peak_mib: rss_peak.max(rss_end) as f64 / 1024.0,
        drain_ack_p99_ms,
        call_ms,
    }
}

#[tokio::main]
async fn main() {
    let env_usize = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let p = Params {
        n: env_usize("BENCH_N", 500),
        latency: std::env::var("BENCH_LATENCY").unwrap_or_else(|_| "0ms".into()),
        cap: env_usize("BENCH_SIM_CAP", 10),
        max_concurrency: env_usize("BENCH_MAX_CONCURRENCY", 5),
        db: std::env::var("BENCH_DATABASE_URL").ok(),
        with_email: std::env::var("BENCH_EMAIL").map_or(true, |v| v != "0"),
        layoff_in: std::env::var("BENCH_LAYOFF_IN")
            .ok()
            .map(|v| offboard::config::parse_duration(&v).unwrap()),
        senders: env_usize("BENCH_SENDERS", 32),
        intake_rate: std::env::var("BENCH_INTAKE_RATE")
            .ok()
            .map(|v| v.parse().unwrap()),
    };
    let repeats = env_usize("BENCH_REPEATS", 1).max(1);
    println!(
        "{} terminations ({}), Workfront latency {}, cap {}, max_concurrency {}, database {}, {repeats} run(s)",
        p.n,
        if p.with_email { "employee id and email: 3 calls each" } else { "employee id only: 2 calls each" },
        p.latency,
        p.cap,
        p.max_concurrency,
        if p.db.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    let mut runs = Vec::new();
    for r in 1..=repeats {
        let run = run_once(&p).await;
        let s = &run.stats;
        println!(
            "run {r}: acknowledged in {:.3} s (p50 {:.1} ms, p99 {:.1} ms); all inactive after {:.3} s = {:.2}x the floor of {:.2} s; \
             {} calls, {} 429s ({:.2}%), {} writes, at most {} in flight; a call as offboard saw it {:.1} ms; \
             CPU {:.2} ms per termination; RSS idle {:.1} MiB, peak {:.1} MiB, at the end {:.1} MiB{}",
            run.acked_s, run.ack_p50_ms, run.ack_p99_ms, run.done_s,
            if run.floor_s > 0.0 { run.done_s / run.floor_s } else { 0.0 }, run.floor_s,
            s.requests, s.rate_limited, s.rate_limited as f64 * 100.0 / s.requests.max(1) as f64,
            s.writes, s.max_in_flight, run.call_ms, run.cpu_per_termination_ms, run.rss_idle_mib,
            run.rss_peak_mib, run.rss_end_mib,
            run.drain_ack_p99_ms.map(|p| format!("; ack p99 of deliveries during the drain {p:.1} ms")).unwrap_or_default()
        );
        assert_eq!(s.writes, p.n, "one write per termination");
        runs.push(run);
    }
    if repeats > 1 {
        let of = |f: fn(&Run) -> f64| spread(runs.iter().map(f).collect(), 2);
        println!("min / median / max over {repeats} runs:");
        println!("  all inactive after (s):    {}", of(|r| r.done_s));
        println!(
            "  x the floor:               {}",
            of(|r| if r.floor_s > 0.0 {
                r.done_s / r.floor_s
            } else {
                0.0
            })
        );
        println!(
            "  429s (% of calls):         {}",
            of(|r| r.stats.rate_limited as f64 * 100.0 / r.stats.requests.max(1) as f64)
        );
        println!("  ack p99 (ms):              {}", of(|r| r.ack_p99_ms));
        println!(
            "  CPU per termination (ms):  {}",
            of(|r| r.cpu_per_termination_ms)
        );
        println!("  RSS peak (MiB):            {}", of(|r| r.rss_peak_mib));
        println!("  RSS at the end (MiB):      {}", of(|r| r.rss_end_mib));
        if runs.iter().all(|r| r.drain_ack_p99_ms.is_some()) {
            println!(
                "  ack p99 while draining (ms): {}",
                of(|r| r.drain_ack_p99_ms.unwrap_or_default())
            );
        }
    }
}
