//! `spawn_app()`: the service on port 0 with a fresh database, an in-process Workfront simulator,
//! millisecond retries, and helpers named after our API.
//!
//! The database is a SQLite file in a temporary directory, or, when `DATABASE_URL` is set, a new
//! PostgreSQL database created for the test.

use std::time::Duration;

use offboard::config::Settings;
use offboard::domain::clock::Clock;
use offboard::sim::{RunningSim, Sim, SimConfig};
use offboard::Application;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::wait;

pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const API_KEY: &str = "test-api-key";
pub const BEARER_TOKEN: &str = "bearer-token-123";

pub const JANE: &str = "5f1c0a7e0000a1b2c3d4e5f600000001";
pub const JOHN: &str = "5f1c0a7e0000a1b2c3d4e5f600000002";
pub const ADA_ADMIN: &str = "5f1c0a7e0000a1b2c3d4e5f600000003";
pub const OLD_LEAVER: &str = "5f1c0a7e0000a1b2c3d4e5f600000004";
pub const KIM: &str = "5f1c0a7e0000a1b2c3d4e5f600000007";

pub struct TestApp {
    pub app: Option<Application>,
    pub base: String,
    pub sim: RunningSim,
    pub http: reqwest::Client,
    pub settings: Settings,
    /// The clock of the app and its replicas: move it with [`TestApp::advance`].
    pub clock: Clock,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
pub struct Options {
    /// Extra TOML laid over the test defaults.
    pub overlay: String,
    pub sim: SimConfig,
    /// The database to use instead of the default (a fresh SQLite file, or `DATABASE_URL`).
    pub database: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            overlay: String::new(),
            sim: SimConfig {
                api_key: Some(API_KEY.into()),
                ..SimConfig::default()
            },
            database: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub fn options(overlay: &str) -> Options {
    Options {
        overlay: overlay.to_string(),
        ..Options::default()
    }
}

/// PostgreSQL for the tests that need it: `DATABASE_URL` when it points at PostgreSQL, else
/// `OFFBOARD_TEST_POSTGRES_URL`. Under CI (`CI` set) a missing one is a failure, not a pass:
/// `.ci/run` provides PostgreSQL, so a PostgreSQL test that cannot run there is a defect.
/// Elsewhere (`cargo test` on a machine with only the toolchain) the test says it did not run.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .or_else(|| std::env::var("OFFBOARD_TEST_POSTGRES_URL").ok())
        .filter(|u| !u.is_empty());
    if url.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs PostgreSQL and CI is set: give DATABASE_URL or OFFBOARD_TEST_POSTGRES_URL"
        );
        eprintln!(
            "not run here: this test needs PostgreSQL (DATABASE_URL or OFFBOARD_TEST_POSTGRES_URL)"
        );
    }
    url
}

pub async fn database_url(dir: &std::path::Path) -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => fresh_postgres_database(&url).await,
        _ => format!("sqlite://{}", dir.join("offboard.db").display()),
    }
}

/// A new, empty database on the PostgreSQL server of `url`, for one test.
pub async fn fresh_postgres_database(url: &str) -> String {
    {
        {
            sqlx::any::install_default_drivers();
            let name = format!("offboard_test_{}", uuid_like());
            let mut conn = sqlx::AnyConnection::connect(url)
                .await
                .expect("DATABASE_URL must be reachable");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let mut parsed = url::Url::parse(url).expect("the PostgreSQL URL is a URL");
            parsed.set_path(&format!("/{name}"));
            parsed.to_string()
        }
    }
}

fn uuid_like() -> String {
    format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

pub async fn spawn_app_with(opts: Options) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::new(opts.sim.clone())
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let db = match &opts.database {
        Some(db) => db.clone(),
        None => database_url(dir.path()).await,
    };
    let base_overlay = format!(
        r#"
[server]
bind = "127.0.0.1:0"
[database]
url = "{db}"
[workfront]
base_url = "{wf}"
api_key = "{API_KEY}"
[retry]
schedule = ["10ms", "20ms", "30ms"]
jitter = 0.0
[admin]
token = "{ADMIN_TOKEN}"
[log]
level = "warn"
[worker]
poll_interval = "50ms"
lease = "2s"
auth_probe_interval = "100ms"
[sources.hr]
kind = "standard"
secrets = ["{SECRET}", "{OLD_SECRET}"]
[sources.wd]
kind = "standard"
auth = "bearer"
token = "{BEARER_TOKEN}"
[sources.basic]
kind = "standard"
auth = "basic"
username = "workday"
password = "pw-1"
"#,
        wf = sim.base_url()
    );
    // `{sim}` in an overlay is the simulator's base URL (for token endpoints that live on it).
    let overlay = opts.overlay.replace("{sim}", &sim.base_url());
    let settings =
        Settings::from_toml_layers(&[&base_overlay, &overlay]).expect("test settings are valid");
    offboard::telemetry::init(&settings.log);
    let clock = Clock::manual();
    let app = Application::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("the app starts");
    let base = format!("http://{}", app.addr());
    TestApp {
        app: Some(app),
        base,
        sim,
        http: reqwest::Client::new(),
        settings,
        clock,
        _dir: dir,
    }
}

pub fn termination(employee_id: Option<&str>, email: Option<&str>) -> String {
    json!({
        "type": "employee.terminated",
        "timestamp": jiff::Timestamp::now().to_string(),
        "data": {"employee_id": employee_id, "email": email, "name": "Someone"}
    })
    .to_string()
}

pub fn signed_headers(secret: &str, id: &str, ts: i64, body: &str) -> Vec<(String, String)> {
    let key = offboard::config::decode_whsec(secret, "test").unwrap();
    use secrecy::ExposeSecret;
    let sig = offboard::sources::signature::sign(
        key.expose_secret(),
        id,
        &ts.to_string(),
        body.as_bytes(),
    );
    vec![
        ("content-type".into(), "application/json".into()),
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), sig),
    ]
}

/// A delivery to `{base}/webhooks/{source}` signed with [`SECRET`] and a fresh webhook id.
pub fn signed_delivery(
    http: &reqwest::Client,
    base: &str,
    source: &str,
    body: String,
    now: jiff::Timestamp,
) -> impl std::future::Future<Output = Answer> + Send + 'static {
    let http = http.clone();
    let url = format!("{base}/webhooks/{source}");
    async move {
        let id = format!("msg_{}", uuid_like());
        let headers = signed_headers(SECRET, &id, now.as_second(), &body);
        let mut req = http.post(url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        answer(req.send().await.expect("request sent")).await
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub request_id: Option<String>,
}

impl TestApp {
    pub fn app(&self) -> &Application {
        self.app.as_ref().expect("the app is running")
    }

    /// POSTs `body` to `/webhooks/hr`, signed now with a fresh webhook id.
    pub async fn post_delivery(&self, body: &str) -> Answer {
        let id = format!("msg_{}", uuid_like());
        self.post_signed(&id, self.clock.now().as_second(), body)
            .await
    }

    /// A signed delivery to `/webhooks/hr` as a task of its own (for concurrent sends).
    pub fn delivery(
        &self,
        body: String,
    ) -> impl std::future::Future<Output = Answer> + Send + 'static {
        signed_delivery(&self.http, &self.base, "hr", body, self.clock.now())
    }

    pub async fn post_signed(&self, id: &str, ts: i64, body: &str) -> Answer {
        self.post_raw(
            "hr",
            &signed_headers(SECRET, id, ts, body),
            body.as_bytes().to_vec(),
        )
        .await
    }

    pub async fn post_raw(
        &self,
        source: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .http
            .post(format!("{}/webhooks/{source}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        answer(req.send().await.expect("request sent")).await
    }

    pub async fn admin_get(&self, path_and_query: &str) -> Answer {
        let req = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        answer(req.send().await.unwrap()).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Answer {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body);
        answer(req.send().await.unwrap()).await
    }

    pub async fn admin_get_action(&self, id: &str) -> Value {
        let a = self.admin_get(&format!("/admin/v1/actions/{id}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body
    }

    /// Waits until the action satisfies `done` (10 s at most), polling the admin API.
    pub async fn wait_for_action(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let done = &done;
        wait::until(what, Duration::from_secs(10), || async move {
            let a = self.admin_get_action(id).await;
            if done(&a) {
                Ok(a)
            } else {
                Err(format!("action is {a:#}"))
            }
        })
        .await
    }

    /// Waits until the action reaches `status`.
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        self.wait_for_action(id, status, |a| a["status"] == status)
            .await
    }

    /// Posts a termination and returns the id of the action it created.
    pub async fn terminate(&self, employee_id: Option<&str>, email: Option<&str>) -> String {
        let a = self.post_delivery(&termination(employee_id, email)).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
        a.body["actions"][0].as_str().unwrap().to_string()
    }

    pub fn puts(&self) -> usize {
        self.sim
            .sim
            .requests()
            .iter()
            .filter(|r| r.method == "PUT")
            .count()
    }

    pub fn is_active(&self, user_id: &str) -> Option<bool> {
        self.sim
            .sim
            .user(user_id)
            .and_then(|u| u.get("isActive").and_then(Value::as_bool))
    }

    /// Another replica on the same database and simulator (its own port and worker).
    pub async fn replica(&self) -> Application {
        Application::build_with_clock(self.settings.clone(), self.clock.clone())
            .await
            .expect("the replica starts")
    }

    /// Waits until the simulator is answering a Workfront call (10 s at most).
    pub async fn wait_until_workfront_is_called(&self) {
        wait::until_true(
            "the worker to call Workfront",
            Duration::from_secs(10),
            || self.sim.sim.state_in_flight() > 0,
        )
        .await;
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Value {
        self.http
            .get(format!("{}/openapi.json", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /readyz` as JSON.
    pub async fn readyz(&self) -> Value {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Moves the service's clock forward (instead of waiting for time to pass).
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Stops the app as a crash would: no clean-up, leases left behind.
    pub fn crash(&mut self) {
        self.app.take().expect("running").abort();
    }

    /// Starts a new app on the same database and simulator.
    pub async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        let app = Application::build_with_clock(self.settings.clone(), self.clock.clone())
            .await
            .expect("the app restarts");
        self.base = format!("http://{}", app.addr());
        self.app = Some(app);
    }

    pub fn steps(action: &Value) -> Vec<String> {
        action["audit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["step"].as_str().unwrap().to_string())
            .collect()
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        request_id,
    }
}

/// Asserts an error answer: status, code, and the full error shape.
pub fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        a.body
    );
    let rid = a.body["error"]["request_id"].as_str().unwrap_or("");
    assert!(rid.starts_with("req_"), "{}", a.body);
    assert_eq!(a.request_id.as_deref(), Some(rid));
}

/// A local notification receiver: collects every JSON body POSTed to it.
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            got,
            _task: task,
        }
    }

    pub fn received(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until a notification matching `pred` arrived.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let pred = &pred;
        wait::until(what, Duration::from_secs(10), || async move {
            let got = self.received();
            got.iter()
                .find(|v| pred(v))
                .cloned()
                .ok_or_else(|| format!("notifications {got:?}"))
        })
        .await
    }
}

impl TestApp {
    pub async fn admin_post_raw(&self, path: &str, token: Option<&str>, body: &str) -> Answer {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of one metric line (exact name and labels as rendered), if present.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `offboard sign --source SOURCE --config CONFIG` with `body` on standard input and returns
/// the headers it prints.
pub fn sign_with_cli(config: &std::path::Path, source: &str, body: &str) -> Vec<(String, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .env_remove("OFFBOARD_CONFIG")
        .args(["sign", "--source", source, "--config"])
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "offboard sign --source {source} failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}
