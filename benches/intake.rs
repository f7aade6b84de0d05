//! Durable intake against this machine's ceiling (issue 11, item 4).
//!
//! Three processes: this load generator; the release `offboard serve`; and the ceiling, which is
//! this same binary re-run as `--ceiling PORT`, a bare axum handler that reads the body and
//! answers 202. The ceiling is what this machine and this load generator can do at all, and it
//! is measured in the same run, so the ratio does not depend on how busy the machine is that day.
//!
//! Every request is a distinct, correctly signed delivery (its own `webhook-id`), a termination
//! effective in 2099. offboard therefore commits each delivery before its 202, and no Workfront
//! work follows (Workfront is unreachable on purpose). Both targets get the same requests.
//!
//! - Closed loop: `c` senders, each sending its next delivery when the last is answered, for
//!   `BENCH_SECONDS`. Prints req/s and p99 for c in `BENCH_CONCURRENCY`.
//! - Open loop: `BENCH_RATE` deliveries per second whatever the answers, for `BENCH_SECONDS`.
//!   Prints p50/p99 of the acknowledgement.
//! - Start-up: from spawning offboard to `/readyz` 200, and the idle resident memory.
//!
//! `cargo bench --bench intake`. Environment: `BENCH_SECONDS` (default 3), `BENCH_CONCURRENCY`
//! (default `1,16,64`), `BENCH_RATE` (default 1000), `BENCH_REPEATS` (default 3; min / median /
//! max are printed), `BENCH_DATABASE_URL` (a PostgreSQL database instead of a SQLite file),
//! `BENCH_OFFBOARD` (another build of offboard to measure instead of this one).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, proc_stat, rss_mib, serve, signed, spread, wait_ready, Killed};
use offboard::config::SecretKey;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The ceiling: read the body, answer 202.
async fn serve_ceiling(port: u16) {
    let app = axum::Router::new().route(
        "/webhooks/hr",
        axum::routing::post(|body: axum::body::Bytes| async move {
            drop(body);
            axum::http::StatusCode::ACCEPTED
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// Builds distinct signed deliveries.
struct Deliveries {
    key: SecretKey,
    run: String,
    next: AtomicUsize,
}

impl Deliveries {
    fn request(&self, http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            r#"{{"type":"employee.terminated","data":{{"employee_id":"L-{i}","email":"leaver{i}@example.com","effective_at":"2099-01-01"}}}}"#
        );
        signed(
            http,
            base,
            &self.key,
            &format!("msg_intake_{}_{i}", self.run),
            body,
        )
    }
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// `c` senders back to back for `secs`: (req/s, p99 ms, deliveries answered).
async fn closed_loop(d: &Arc<Deliveries>, base: &str, c: usize, secs: f64) -> (f64, f64, usize) {
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (d, http, base) = (d.clone(), http.clone(), base.to_string());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let r = d.request(&http, &base).send().await.expect("answered");
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut lat: Vec<Duration> = tasks.join_all().await.concat();
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    (lat.len() as f64 / elapsed, percentile(&lat, 99), lat.len())
}

/// `rate` deliveries per second for `secs`, each sent on schedule: (p50 ms, p99 ms).
async fn open_loop(d: &Arc<Deliveries>, base: &str, rate: f64, secs: f64) -> (f64, f64) {
    let http = reqwest::Client::new();
    let n = (rate * secs) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        tick.tick().await;
        let req = d.request(&http, base);
        tasks.spawn(async move {
            let t = Instant::now();
            let r = req.send().await.expect("answered");
            assert_eq!(r.status(), 202);
            t.elapsed()
        });
    }
    let mut lat = tasks.join_all().await;
    lat.sort();
    (percentile(&lat, 50), percentile(&lat, 99))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--ceiling") {
        let port: u16 = args[2].parse().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(serve_ceiling(port));
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(bench());
}

async fn bench() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
    let secs: f64 = env("BENCH_SECONDS", "3").parse().unwrap();
    let levels: Vec<usize> = env("BENCH_CONCURRENCY", "1,16,64")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let rate: f64 = env("BENCH_RATE", "1000").parse().unwrap();
    let repeats: usize = env("BENCH_REPEATS", "3").parse::<usize>().unwrap().max(1);
    let db_url = std::env::var("BENCH_DATABASE_URL").ok();
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();

    let ceiling_port = free_port();
    let ceiling = Command::new(std::env::current_exe().unwrap())
        .args(["--ceiling", &ceiling_port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("the ceiling starts");
    let _ceiling = Killed(ceiling);
    let ceiling_base = format!("http://127.0.0.1:{ceiling_port}");

    let port = free_port();
    let db = db_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("intake.db").display()));
    let config = dir.path().join("intake.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n[database]\nurl = \"{db}\"\n\
             [workfront]\nbase_url = \"http://127.0.0.1:9\"\napi_key = \"unused\"\n\
             [log]\nlevel = \"warn\"\n[sources.hr]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n"
        ),
    )
    .unwrap();
    // Migrations run once before the timed start, so start → ready is a restart's figure.
    let status = Command::new(common::offboard_bin())
        .args(["migrate", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("offboard migrate runs");
    assert!(status.success(), "offboard migrate failed");
    let spawned = Instant::now();
    let service = serve(&config);
    let pid = service.0.id();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &format!("{base}/readyz"), "offboard").await;
    let ready = spawned.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_mib(pid);
    // The ceiling has no /readyz: it is up when it answers a delivery.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .post(format!("{ceiling_base}/webhooks/hr"))
        .body("{}")
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the ceiling did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let d = Arc::new(Deliveries {
        key: offboard::config::decode_whsec(SECRET, "bench").unwrap(),
        run: uuid::Uuid::now_v7().simple().to_string(),
        next: AtomicUsize::new(0),
    });
    println!(
        "durable intake, {} database, {secs} s per measurement, {repeats} repeats (min / median / max)",
        if db_url.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    println!(
        "start -> ready {:.1} ms (migrated database), idle RSS {idle_rss:.1} MiB",
        ready.as_secs_f64() * 1000.0
    );
    for &c in &levels {
        let (mut ours, mut ceil, mut ratio, mut p99, mut ceil_p99, mut cpu) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..repeats {
            let (cr, cp, _) = closed_loop(&d, &ceiling_base, c, secs).await;
            let cpu_before = proc_stat(pid).0;
            let (or, op, n) = closed_loop(&d, &base, c, secs).await;
            // offboard's own CPU per delivery: steadier than req/s on a shared machine, so
            // it is what two builds are compared on.
            cpu.push((proc_stat(pid).0 - cpu_before) * 1000.0 / n.max(1) as f64);
            ours.push(or);
            ceil.push(cr);
            ratio.push(or * 100.0 / cr);
            p99.push(op);
            ceil_p99.push(cp);
        }
        println!(
            "c = {c:>3}: offboard {} req/s (p99 {} ms, CPU {} µs per delivery); ceiling {} req/s (p99 {} ms); offboard = {} % of the ceiling",
            spread(ours, 0),
            spread(p99, 1),
            spread(cpu, 0),
            spread(ceil, 0),
            spread(ceil_p99, 1),
            spread(ratio, 1)
        );
    }
    let (mut p50s, mut p99s) = (vec![], vec![]);
    for _ in 0..repeats {
        let (p50, p99) = open_loop(&d, &base, rate, secs).await;
        p50s.push(p50);
        p99s.push(p99);
    }
    println!(
        "open loop at {rate:.0} deliveries/s: offboard ack p50 {} ms, p99 {} ms",
        spread(p50s, 1),
        spread(p99s, 1)
    );
    println!("RSS after the load: {:.1} MiB", rss_mib(pid));
}
