//! Throughput, CPU and memory for a burst of terminations.
//!
//! Runs the release `offboard serve` as its own process (so its CPU time and memory are its own)
//! against an in-process Workfront simulator holding N users, sends N signed terminations, and
//! waits until all N users are inactive. Prints: acknowledgement latency, time to the last
//! deactivation, CPU milliseconds per termination, and resident memory idle before and after.
//!
//! `cargo bench --bench terminations` (N=500, SQLite). Environment: `BENCH_N`, `BENCH_LATENCY`
//! (simulated Workfront latency, default 0ms), `BENCH_DATABASE_URL` (e.g. a PostgreSQL database),
//! `BENCH_SIM_CAP` (the simulator's concurrency cap, default 10), `BENCH_MAX_CONCURRENCY`
//! (offboard's `workfront.max_concurrency`, default 5). It also prints the 429s and the floor:
//! Workfront calls × latency / cap.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use offboard::sim::{Sim, SimConfig};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu / ticks * 1000.0, rss_kib)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let latency = std::env::var("BENCH_LATENCY")
        .ok()
        .map(|v| offboard::config::parse_duration(&v).unwrap())
        .unwrap_or(Duration::ZERO);
    let env_usize = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let cap = env_usize("BENCH_SIM_CAP", 10);
    let max_concurrency = env_usize("BENCH_MAX_CONCURRENCY", 5);
    let users: Vec<Map<String, Value>> = (0..n)
        .map(|i| {
            serde_json::from_value(json!({"ID": format!("{i:032x}"), "name": format!("User {i}"), "emailAddr": format!("user{i}@example.com"),
                "isActive": true, "isAdmin": false, "extRefID": format!("B-{i}")}))
            .unwrap()
        })
        .collect();
    let sim = Sim::new(SimConfig {
        users,
        latency,
        max_concurrency: cap,
        api_key: Some("bench-key".into()),
        ..SimConfig::default()
    })
    .serve(([127, 0, 0, 1], 0).into())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n[database]\nurl = \"{db}\"\n[workfront]\nbase_url = \"{}\"\napi_key = \"bench-key\"\nmax_concurrency = {max_concurrency}\n\
             [safety]\nbrake_max = 100000\n[log]\nlevel = \"warn\"\n[sources.hr]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("offboard starts");
    let pid = child.id();
    let _guard = Killed(child);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "offboard did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu_idle_ms, rss_idle) = proc_stat(pid);

    let key = offboard::config::decode_whsec(SECRET, "bench").unwrap();
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..n {
        let body =
            json!({"type": "employee.terminated", "timestamp": jiff::Timestamp::now().to_string(),
            "data": {"employee_id": format!("B-{i}"), "email": format!("user{i}@example.com")}})
            .to_string();
        let id = format!("msg_bench_{i}");
        let ts = jiff::Timestamp::now().as_second().to_string();
        let sig =
            offboard::sources::signature::sign(key.expose_secret(), &id, &ts, body.as_bytes());
        let req = http
            .post(format!("{base}/webhooks/hr"))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts)
            .header("webhook-signature", sig)
            .body(body);
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
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let inactive = sim
            .sim
            .users()
            .iter()
            .filter(|u| u.get("isActive") == Some(&Value::Bool(false)))
            .count();
        if inactive == n {
            break;
        }
        assert!(Instant::now() < deadline, "only {inactive}/{n} deactivated");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = started.elapsed();
    let (cpu_ms, rss_busy) = proc_stat(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, rss_after) = proc_stat(pid);
    let requests = sim.sim.requests();
    let puts = requests.iter().filter(|r| r.method == "PUT").count();
    let limited = requests.iter().filter(|r| r.status == 429).count();
    let answered = requests.len() - limited;
    let floor = answered as f64 * latency.as_secs_f64() / cap as f64;
    println!(
        "terminations:                 {n} (simulated Workfront latency {latency:?}, database {})",
        if db.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        }
    );
    println!(
        "all acknowledged (202) after: {:.3} s; ack latency p50 {:.1} ms, p99 {:.1} ms",
        acked.as_secs_f64(),
        lat[lat.len() / 2].as_secs_f64() * 1000.0,
        lat[lat.len() * 99 / 100].as_secs_f64() * 1000.0
    );
    println!(
        "all deactivated after:        {:.3} s ({puts} writes)",
        done.as_secs_f64()
    );
    println!(
        "Workfront:                    cap {cap}, max_concurrency {max_concurrency}; {answered} calls answered, {limited} 429s ({:.1}%); floor {floor:.2} s, {:.2}x the floor",
        limited as f64 * 100.0 / requests.len().max(1) as f64,
        if floor > 0.0 { done.as_secs_f64() / floor } else { 0.0 }
    );
    println!(
        "offboard CPU:                 {:.0} ms in all, {:.2} ms per termination",
        cpu_ms - cpu_idle_ms,
        (cpu_ms - cpu_idle_ms) / n as f64
    );
    println!("offboard resident memory:     idle {:.1} MiB before, {:.1} MiB at the end, {:.1} MiB idle after", rss_idle as f64 / 1024.0, rss_busy as f64 / 1024.0, rss_after as f64 / 1024.0);
}
