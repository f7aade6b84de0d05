//! `workfront-sim`: a local stand-in for the Workfront endpoints offboard uses.
//!
//! It answers `GET user/search`, `GET user/{ID}` and `PUT user/{ID}` under
//! `/attask/api/{version}/` the way `reference/workfront-api.md` describes Workfront: filters with
//! `_Mod` modifiers (`eq`, `ne`, `cieq`, `cine`, `contains`, `cicontains`, `isnull`, `notnull`),
//! custom fields as `DE:<label>` (held in a user's `parameterValues`), `fields=` projection,
//! `$$LIMIT`/`$$FIRST`, `updates=` (query or JSON body), errors as `{"error":{"class","message"}}`,
//! 401 for a wrong `apiKey` (header or query), and 429 beyond a cap on concurrent requests, which
//! is how Workfront throttles.
//!
//! For tests and demos it adds latency, random failures (`fail_rate`), scripted faults
//! (`POST /__sim/faults`: a status with Workfront's error body, a 200 with an error body, a hang,
//! a JSON body of one's own, a proxy's HTML page, a redirect, a write whose answer is lost), a
//! request log (`GET /__sim/requests`) and the users (`GET /__sim/users`). Every request runs to
//! its end even when the caller goes away, as on a real server.

mod auth;
mod handlers;

pub use auth::{SimIms, SimOAuth, DEFAULT_TOKEN_TTL};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Sample users for the demo and quick trials.
pub const SAMPLE_USERS: &str = include_str!("sample-users.json");

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub latency: Duration,
    pub max_concurrency: usize,
    /// Probability in [0, 1] that a Workfront request fails with 500.
    pub fail_rate: f64,
    pub api_key: Option<String>,
    pub users: Vec<Map<String, Value>>,
    /// Serve the OAuth2 JWT exchange for this app.
    pub oauth: Option<SimOAuth>,
    /// Serve an IMS token endpoint for this credential.
    pub ims: Option<SimIms>,
    /// How long issued tokens are accepted.
    pub token_ttl: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: Duration::ZERO,
            max_concurrency: 10,
            fail_rate: 0.0,
            api_key: None,
            users: sample_users(),
            oauth: None,
            ims: None,
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

pub fn sample_users() -> Vec<Map<String, Value>> {
    serde_json::from_str(SAMPLE_USERS).expect("the embedded sample users are valid JSON")
}

/// Parses a users file: a JSON array of USER objects, each with at least an `ID`.
pub fn parse_users(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let users: Vec<Map<String, Value>> = serde_json::from_str(text)
        .map_err(|e| format!("users file must be a JSON array of objects: {e}"))?;
    for (i, u) in users.iter().enumerate() {
        if !u.get("ID").is_some_and(Value::is_string) {
            return Err(format!("user #{i} has no string \"ID\""));
        }
    }
    Ok(users)
}

/// A fault to inject into the next matching Workfront requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// HTTP status to answer.
    pub status: u16,
    /// How many requests it applies to.
    #[serde(default = "one")]
    pub count: u32,
    /// Only requests of this method (GET, PUT); all when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Error class for the body (`{"error":{"class",..}}`).
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// Apply the write, then drop the answer (simulates an answer lost in transit, answered 504).
    #[serde(default)]
    pub apply_then_fail: bool,
    /// Hang this long before answering (longer than the client's timeout: a timeout). With
    /// `status` 0 the request is then answered normally.
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer with this JSON body instead of a Workfront error (e.g. a 200 `data` that does not
    /// show the new state).
    #[serde(default)]
    pub body: Option<Value>,
    /// Answer with this HTML page (a proxy's error page).
    #[serde(default)]
    pub html: Option<String>,
    /// Answer a redirect to this `Location` (a tenant that moved).
    #[serde(default)]
    pub location: Option<String>,
}

impl Fault {
    /// A fault that answers `status` once with Workfront's error body.
    pub fn status(status: u16) -> Fault {
        Fault {
            status,
            count: 1,
            method: None,
            class: None,
            message: None,
            apply_then_fail: false,
            delay_ms: 0,
            body: None,
            html: None,
            location: None,
        }
    }
}

fn one() -> u32 {
    1
}

/// One request as logged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub at: String,
    /// Concurrent Workfront requests in flight when this one was admitted.
    pub in_flight: usize,
}

/// Counters a load test polls (`GET /__sim/stats`) without copying the users or the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub users: usize,
    pub inactive: usize,
    /// Workfront requests answered, 429s included.
    pub requests: usize,
    pub rate_limited: usize,
    /// PUTs answered other than 429.
    pub writes: usize,
    /// The most requests ever admitted at once.
    pub max_in_flight: usize,
}

pub struct SimState {
    pub(crate) users: Mutex<Vec<Map<String, Value>>>,
    /// Per field, the positions in `users` by case-folded value, built on a field's first search
    /// (Workfront's database has indexes; a simulator that scans 20,000 users per call under a
    /// lock would measure itself). Lock order: `users`, then `index`.
    pub(crate) index: Mutex<std::collections::HashMap<String, handlers::FieldIndex>>,
    pub(crate) log: Mutex<Vec<LoggedRequest>>,
    pub(crate) faults: Mutex<VecDeque<Fault>>,
    pub(crate) api_key: Mutex<Option<String>>,
    /// Search modifiers answered as unsupported (a tenant whose API does not honour `cieq`).
    pub(crate) refused_modifiers: Mutex<Vec<String>>,
    pub(crate) tokens: Mutex<Vec<auth::Issued>>,
    pub(crate) tokens_issued: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
    /// PUTs being answered right now.
    pub(crate) writes_in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    pub(crate) config: SimConfig,
}

/// A handle on a simulator's state (shared with its server).
#[derive(Clone)]
pub struct Sim {
    pub(crate) state: Arc<SimState>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        Sim {
            state: Arc::new(SimState {
                users: Mutex::new(config.users.clone()),
                index: Mutex::new(Default::default()),
                log: Mutex::new(Vec::new()),
                faults: Mutex::new(VecDeque::new()),
                api_key: Mutex::new(config.api_key.clone()),
                refused_modifiers: Mutex::new(Vec::new()),
                tokens: Mutex::new(Vec::new()),
                tokens_issued: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                writes_in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                config,
            }),
        }
    }

    pub fn router(&self) -> axum::Router {
        handlers::router(self.state.clone())
    }

    /// Binds `addr` and serves until the task is dropped or aborted.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<RunningSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RunningSim {
            addr,
            sim: self,
            handle,
        })
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn stats(&self) -> SimStats {
        let (users, inactive) = {
            let users = self.state.users.lock().unwrap();
            let inactive = users
                .iter()
                .filter(|u| u.get("isActive") == Some(&Value::Bool(false)))
                .count();
            (users.len(), inactive)
        };
        let log = self.state.log.lock().unwrap();
        SimStats {
            users,
            inactive,
            requests: log.len(),
            rate_limited: log.iter().filter(|r| r.status == 429).count(),
            writes: log
                .iter()
                .filter(|r| r.method == "PUT" && r.status != 429)
                .count(),
            max_in_flight: self.state.max_in_flight.load(Ordering::SeqCst),
        }
    }

    pub fn users(&self) -> Vec<Map<String, Value>> {
        self.state.users.lock().unwrap().clone()
    }

    pub fn user(&self, id: &str) -> Option<Map<String, Value>> {
        self.users()
            .into_iter()
            .find(|u| u.get("ID").and_then(Value::as_str) == Some(id))
    }

    pub fn push_fault(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push_back(fault);
    }

    /// Answers searches with this `_Mod` as an unsupported modifier from now on.
    pub fn refuse_modifier(&self, modifier: &str) {
        self.state
            .refused_modifiers
            .lock()
            .unwrap()
            .push(modifier.to_string());
    }

    pub fn set_api_key(&self, key: Option<String>) {
        *self.state.api_key.lock().unwrap() = key;
    }

    /// How many tokens the token endpoints issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens_issued.load(Ordering::SeqCst)
    }

    /// Ends every token issued so far (as if their lifetime had passed).
    pub fn expire_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    /// PUTs (writes) being answered right now.
    pub fn writes_in_flight(&self) -> usize {
        self.state.writes_in_flight.load(Ordering::SeqCst)
    }

    /// Workfront requests being answered right now.
    pub fn state_in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most Workfront requests that were ever admitted at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

pub struct RunningSim {
    pub addr: SocketAddr,
    pub sim: Sim,
    pub handle: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
