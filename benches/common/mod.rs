//! Pieces the benchmarks share: child processes that die with the benchmark, free ports, a
//! process's CPU and memory from `/proc`, signed deliveries, and min / median / max.

// Each benchmark uses a subset of these.
#![allow(dead_code)]

use std::process::Child;

use offboard::config::SecretKey;
use secrecy::ExposeSecret;

/// A child process killed (and reaped) when dropped, so a failed run leaves nothing behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 now (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// CPU milliseconds (user + system) and resident KiB of a process, from `/proc`.
pub fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = 100.0; // USER_HZ on Linux
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = field(11) + field(12);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu / ticks * 1000.0, rss_kib)
}

/// Resident memory of a process in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    proc_stat(pid).1 as f64 / 1024.0
}

/// A delivery to `{base}/webhooks/hr`, signed as the standard source expects.
pub fn signed(
    http: &reqwest::Client,
    base: &str,
    key: &SecretKey,
    id: &str,
    body: String,
) -> reqwest::RequestBuilder {
    let ts = jiff::Timestamp::now().as_second().to_string();
    let sig = offboard::sources::signature::sign(key.expose_secret(), id, &ts, body.as_bytes());
    http.post(format!("{base}/webhooks/hr"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts)
        .header("webhook-signature", sig)
        .body(body)
}

/// "min / median / max" of `values` with `decimals` digits.
pub fn spread(mut values: Vec<f64>, decimals: usize) -> String {
    values.sort_by(f64::total_cmp);
    let (min, median, max) = (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    );
    format!("{min:.decimals$} / {median:.decimals$} / {max:.decimals$}")
}

/// The offboard binary to measure: this build's, or `BENCH_OFFBOARD` (another build, to compare
/// two builds on one machine at one time).
pub fn offboard_bin() -> std::path::PathBuf {
    std::env::var_os("BENCH_OFFBOARD")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_offboard").into())
}

/// `offboard serve --config CONFIG` ([`offboard_bin`]) as its own process; its log goes to this
/// process's stderr.
pub fn serve(config: &std::path::Path) -> Killed {
    let child = std::process::Command::new(offboard_bin())
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("offboard starts");
    Killed(child)
}

/// Polls `url` every millisecond until it answers 200 (30 s at most), and returns how long that
/// took (start-up time is a measured figure).
pub async fn wait_ready(http: &reqwest::Client, url: &str, what: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status() == 200 {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{what} did not become ready at {url}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
