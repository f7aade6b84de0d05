//! A reconciliation of N leavers against a Workfront with a concurrency cap (issue 12).
//!
//! Runs the release `offboard serve` and `workfront-sim` (N users, every third still active, one
//! in ten missing from Workfront) as processes of their own, posts one CSV list of N leavers
//! (employee id and email, so each row takes 2 searches), and waits for the report to be done.
//! Prints the time from the POST to `done` against the floor N × 2 searches × latency / cap, the
//! 429s the simulator answered, the most calls it saw at once, the service's CPU per row and its
//! peak resident memory; with `BENCH_REPEATS` > 1 also min / median / max.
//!
//! `cargo bench --bench reconcile`. Environment: `BENCH_N` (default 10000), `BENCH_LATENCY`
//! (default 25ms), `BENCH_SIM_CAP` (the simulator's cap and offboard's
//! `workfront.max_concurrency`, default 10), `BENCH_REPEATS` (default 1), `BENCH_DATABASE_URL`
//! (a PostgreSQL database instead of a SQLite file).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, proc_stat, serve, spread, wait_ready, Killed};
use offboard::sim::SimStats;
use serde_json::{json, Value};

const TOKEN: &str = "bench-admin-token";

struct Run {
    done_s: f64,
    floor_s: f64,
    stats: SimStats,
    cpu_per_row_ms: f64,
    rss_peak_mib: f64,
    counts: Value,
}

fn duration(text: &str) -> Duration {
    let ms: f64 = if let Some(v) = text.strip_suffix("ms") {
        v.parse().unwrap()
    } else if let Some(v) = text.strip_suffix('s') {
        v.parse::<f64>().unwrap() * 1000.0
    } else {
        panic!("BENCH_LATENCY like 25ms or 1s")
    };
    Duration::from_secs_f64(ms / 1000.0)
}

async fn run_once(n: usize, latency: &str, cap: usize, db: Option<String>) -> Run {
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<Value> = (0..n)
        .filter(|i| i % 10 != 9)
        .map(|i| {
            json!({"ID": format!("{i:032x}"), "name": format!("Leaver {i}"), "emailAddr": format!("leaver{i}@example.com"),
                "isActive": i % 3 == 0, "isAdmin": false, "extRefID": format!("L-{i}")})
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
        .args(["--latency", latency])
        .args(["--max-concurrency", &cap.to_string()])
        .args(["--api-key", "bench-key"])
        .stderr(Stdio::null())
        .spawn()
        .expect("workfront-sim starts");
    let _sim = Killed(sim);
    wait_ready(&http, &format!("{sim_base}/__sim/stats"), "workfront-sim").await;

    let port = free_port();
    let db = db.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n[database]\nurl = \"{db}\"\n[workfront]\nbase_url = \"{sim_base}\"\napi_key = \"bench-key\"\n\
             max_concurrency = {cap}\n[admin]\ntoken = \"{TOKEN}\"\n[log]\nlevel = \"warn\"\n"
        ),
    )
    .unwrap();
    let service = serve(&config);
    let pid = service.0.id();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &format!("{base}/readyz"), "offboard").await;
    let (cpu_before, _) = proc_stat(pid);

    let mut csv = String::from("employee_id,email,terminated_on\n");
    for i in 0..n {
        csv.push_str(&format!("L-{i},leaver{i}@example.com,2026-11-30\n"));
    }
    let started = Instant::now();
    let created: Value = http
        .post(format!("{base}/admin/v1/reconciliations"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("the list is posted")
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("a report id").to_string();
    let mut rss_peak = 0;
    let report = loop {
        rss_peak = rss_peak.max(proc_stat(pid).1);
        let r: Value = http
            .get(format!("{base}/admin/v1/reconciliations/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["status"] == "done" {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let done_s = started.elapsed().as_secs_f64();
    let (cpu_after, _) = proc_stat(pid);
    let stats: SimStats = http
        .get(format!("{sim_base}/__sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let floor_s = n as f64 * 2.0 * duration(latency).as_secs_f64() / cap as f64;
    Run {
        done_s,
        floor_s,
        stats,
        cpu_per_row_ms: (cpu_after - cpu_before) / n as f64,
        rss_peak_mib: rss_peak as f64 / 1024.0,
        counts: report["counts"].clone(),
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_N").map_or(10_000, |v| v.parse().unwrap());
    let latency = std::env::var("BENCH_LATENCY").unwrap_or_else(|_| "25ms".into());
    let cap: usize = std::env::var("BENCH_SIM_CAP").map_or(10, |v| v.parse().unwrap());
    let repeats: usize = std::env::var("BENCH_REPEATS").map_or(1, |v| v.parse().unwrap());
    let db = std::env::var("BENCH_DATABASE_URL").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs: Vec<Run> = (0..repeats)
        .map(|_| rt.block_on(run_once(n, &latency, cap, db.clone())))
        .collect();
    println!(
        "reconciliation of {n} leavers, Workfront at {latency} with a cap of {cap}, {} database, {repeats} run(s)",
        if db.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    for r in &runs {
        println!(
            "done in {:.2} s = {:.2}x the floor of {:.2} s; {} Workfront requests, {} answered 429, at most {} at once; \
             CPU {:.3} ms per row, peak RSS {:.1} MiB; counts {}",
            r.done_s,
            r.done_s / r.floor_s,
            r.floor_s,
            r.stats.requests,
            r.stats.rate_limited,
            r.stats.max_in_flight,
            r.cpu_per_row_ms,
            r.rss_peak_mib,
            r.counts
        );
        assert_eq!(r.counts["unchecked"], 0, "every row has an answer");
    }
    if runs.len() > 1 {
        println!(
            "min / median / max: done {} s, ratio to the floor {}, CPU per row {} ms",
            spread(runs.iter().map(|r| r.done_s).collect(), 2),
            spread(runs.iter().map(|r| r.done_s / r.floor_s).collect(), 2),
            spread(runs.iter().map(|r| r.cpu_per_row_ms).collect(), 3)
        );
    }
}
