//! Real `offboard serve` processes for the durability tests: several replicas on one database,
//! `kill -9`, SIGTERM. Each process gets a config file and a port of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use offboard::sim::{Sim, SimConfig};
use serde_json::{json, Map, Value};

use crate::harness::{signed_headers, ADMIN_TOKEN, API_KEY, SECRET};
use crate::wait;

pub struct Replica {
    pub child: Option<Child>,
    pub base: String,
    config: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    /// Where the process's log goes (appended across restarts); nowhere when `None`.
    log: Option<PathBuf>,
}

/// A free port below the ephemeral range, so that no client socket of another test can take it
/// while a replica is restarted on it.
fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..30_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A config for a replica: `extra` TOML lines are appended.
pub fn write_config(dir: &Path, name: &str, db: &str, workfront: &str, extra: &str) -> PathBuf {
    write_config_wf(dir, name, db, workfront, "", extra)
}

/// As [`write_config`], with extra lines for the `[workfront]` table.
pub fn write_config_wf(
    dir: &Path,
    name: &str,
    db: &str,
    workfront: &str,
    wf_extra: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "[database]\nurl = \"{db}\"\n[workfront]\nbase_url = \"{workfront}\"\napi_key = \"{API_KEY}\"\n{wf_extra}\n\
         [retry]\nschedule = [\"50ms\", \"100ms\", \"200ms\", \"400ms\"]\njitter = 0.0\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\
         [log]\nlevel = \"warn\"\n[sources.hr]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n{extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Replica {
    pub async fn start(config: &Path) -> Replica {
        Self::start_with_env(config, &[]).await
    }

    /// As [`Replica::start`], with these `OFFBOARD__…` variables in the environment.
    pub async fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Replica {
        Self::start_with(config, env, None).await
    }

    /// As [`Replica::start_with_env`], logging to `log`.
    pub async fn start_with(config: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Replica {
        let mut r = Replica {
            log: log.map(Path::to_path_buf),
            child: None,
            base: String::new(),
            config: config.to_path_buf(),
            port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_offboard"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("OFFBOARD__SERVER__BIND", format!("127.0.0.1:{}", self.port))
            .env_remove("OFFBOARD_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(match &self.log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap(),
                ),
                None => Stdio::null(),
            })
            .spawn()
            .expect("offboard starts");
        self.child = Some(child);
        self.base = format!("http://127.0.0.1:{}", self.port);
        let http = reqwest::Client::new();
        let (http, base) = (&http, &self.base);
        let what = format!("the replica on {base} to become ready");
        wait::until(&what, Duration::from_secs(20), || async move {
            match http.get(format!("{base}/readyz")).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("readyz {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// SIGKILL: no clean-up at all.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// SIGTERM; returns the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::task::spawn_blocking(move || c.wait().unwrap().code())
            .await
            .unwrap()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `n` active users with employee ids `P-0` … and a simulator serving them.
pub async fn sim_with_users(n: usize, latency: Duration) -> offboard::sim::RunningSim {
    sim_with_cap(n, latency, 50).await
}

/// A simulator with `n` users that answers 429 beyond `cap` concurrent requests.
pub async fn sim_with_cap(n: usize, latency: Duration, cap: usize) -> offboard::sim::RunningSim {
    let users: Vec<Map<String, Value>> = (0..n)
        .map(|i| {
            serde_json::from_value(json!({"ID": format!("{i:032x}"), "name": format!("P {i}"), "emailAddr": format!("p{i}@example.com"),
                "isActive": true, "isAdmin": false, "extRefID": format!("P-{i}")}))
            .unwrap()
        })
        .collect();
    Sim::new(SimConfig {
        users,
        latency,
        max_concurrency: cap,
        api_key: Some(API_KEY.into()),
        ..SimConfig::default()
    })
    .serve(([127, 0, 0, 1], 0).into())
    .await
    .unwrap()
}

/// Sends termination `i` to `base`; retries on connection errors and 5xx, as an HR sender would.
pub async fn send_termination(http: &reqwest::Client, base: &str, i: usize) -> u16 {
    let body = json!({"type": "employee.terminated", "timestamp": jiff::Timestamp::now().to_string(), "data": {"employee_id": format!("P-{i}")}}).to_string();
    let mut req = http.post(format!("{base}/webhooks/hr")).body(body.clone());
    for (k, v) in signed_headers(
        SECRET,
        &format!("msg_p_{i}"),
        jiff::Timestamp::now().as_second(),
        &body,
    ) {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// PUTs the simulator answered 200, per user ID.
pub fn writes_per_user(
    sim: &offboard::sim::RunningSim,
) -> std::collections::HashMap<String, usize> {
    let mut out = std::collections::HashMap::new();
    for r in sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.status == 200)
    {
        let id = r.path.rsplit('/').next().unwrap().to_string();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

pub fn inactive_count(sim: &offboard::sim::RunningSim) -> usize {
    sim.sim
        .users()
        .iter()
        .filter(|u| u.get("isActive") == Some(&Value::Bool(false)))
        .count()
}

/// All actions through the admin API of `base` (paging through).
pub async fn all_actions(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/admin/v1/actions?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(page["actions"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}
