//! The Workfront client: search users, read one, set `isActive`.
//!
//! Every call goes to `{base_url}/attask/api/{version}/...`, holds one permit of a semaphore sized
//! `workfront.max_concurrency` (Workfront caps concurrent requests per customer), and has connect
//! and request timeouts. Failure is data: a call returns an [`Exchange`] (what was sent and
//! answered, secrets excluded, for the audit trail) and a `Result<_, Failure>`; [`Failure::class`]
//! is the one place that decides what is retried.
//!
//! Workfront reports errors as `{"error":{"class","message"}}`, sometimes with HTTP 200, so the body
//! is checked whatever the status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::WorkfrontSettings;

mod answer;
pub mod auth;
pub mod limit;

pub use answer::{classify, read_answer};

/// The USER fields offboard reads.
pub const USER_FIELDS: &str = "ID,name,emailAddr,username,isActive,isAdmin,extRefID,ssoUsername";

/// A Workfront user as far as offboard cares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "emailAddr", default)]
    pub email: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// The HR employee id, where the tenant keeps it there (shown to operators who choose
    /// between candidates).
    #[serde(rename = "extRefID", default, deserialize_with = "loose_string")]
    pub ext_ref_id: Option<String>,
    #[serde(rename = "isActive", default, deserialize_with = "loose_bool")]
    pub is_active: Option<bool>,
    #[serde(rename = "isAdmin", default, deserialize_with = "loose_bool")]
    pub is_admin: Option<bool>,
}

/// Display only, so never a reason to refuse an answer: a number is kept in its decimal form and
/// any other shape is dropped.
fn loose_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// Workfront documents `isActive` as a JSON boolean, but its own examples send `"false"`; accept both.
fn loose_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    })
}

/// Why a call did not give an answer to use.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// 429: too many concurrent requests.
    RateLimited,
    /// 5xx (other than 501).
    Server {
        status: u16,
        message: Option<String>,
    },
    /// 401/403, or an authentication error class.
    Auth {
        status: u16,
        message: String,
    },
    /// Any other refusal (4xx, 501, or an `error` body with 2xx).
    Rejected {
        status: u16,
        class: Option<String>,
        message: String,
    },
    /// The requested object does not exist (404 on a read by ID).
    NotFound,
    Timeout,
    Connect(String),
    /// 2xx with a body we cannot read.
    BadResponse(String),
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again per `[retry]`.
    Retryable,
    /// Credentials: wait until they work again.
    Auth,
    /// Final.
    Final,
}

impl Failure {
    pub fn class(&self) -> FailureClass {
        match self {
            Failure::RateLimited
            | Failure::Server { .. }
            | Failure::Timeout
            | Failure::Connect(_) => FailureClass::Retryable,
            // An unreadable success may be a proxy page or a truncated answer: try again.
            Failure::BadResponse(_) => FailureClass::Retryable,
            Failure::Auth { .. } => FailureClass::Auth,
            Failure::Rejected { .. } | Failure::NotFound => FailureClass::Final,
        }
    }

    /// A stable code for metrics and the audit trail.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::RateLimited => "rate_limited",
            Failure::Server { .. } => "server_error",
            Failure::Auth { .. } => "auth",
            Failure::Rejected { .. } => "rejected",
            Failure::NotFound => "not_found",
            Failure::Timeout => "timeout",
            Failure::Connect(_) => "connect",
            Failure::BadResponse(_) => "bad_response",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::RateLimited => "Workfront answered 429: too many concurrent requests".into(),
            Failure::Server { status, message } => format!(
                "Workfront answered {status}{}",
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            Failure::Auth { status, message } => {
                format!("Workfront refused the credentials ({status}): {message}")
            }
            Failure::Rejected {
                status,
                class,
                message,
            } => {
                format!(
                    "Workfront rejected the request ({status}{}): {message}",
                    class.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
                )
            }
            Failure::NotFound => "Workfront has no such object".into(),
            Failure::Timeout => "Workfront did not answer in time".into(),
            Failure::Connect(m) => format!("cannot reach Workfront: {m}"),
            Failure::BadResponse(m) => format!("Workfront's answer could not be read: {m}"),
        }
    }
}

/// One request and its answer, as recorded in the audit trail (no secrets).
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub op: &'static str,
    pub request: String,
    pub status: Option<u16>,
    pub response: Option<Value>,
    pub millis: u64,
    /// A 429's `Retry-After`, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// How many 429s this call waited out before its answer.
    #[serde(skip_serializing_if = "is_zero")]
    pub slowed_down: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Exchange {
    pub fn to_json(&self) -> Value {
        json!(self)
    }
}

/// How often one call waits out a 429 before the action is rescheduled.
const RATE_LIMIT_RETRIES: u32 = 4;

/// A call's answer and its record.
pub struct Call<T> {
    pub result: Result<T, Failure>,
    pub exchange: Exchange,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    api_base: String,
    auth: Arc<dyn auth::Credentials>,
    limiter: Arc<dyn limit::Limiter>,
}

impl Client {
    pub fn new(
        settings: &WorkfrontSettings,
        limiter: Arc<dyn limit::Limiter>,
    ) -> Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("offboard/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = settings.base_url.as_str().trim_end_matches('/');
        Ok(Client {
            http,
            api_base: format!("{base}/attask/api/{}", settings.api_version),
            auth: settings.auth.clone(),
            limiter,
        })
    }

    /// `GET user/search?{field}={value}&{field}_Mod={modifier}&fields=...&$$LIMIT=2`. Two are asked
    /// for so that an ambiguous identifier shows as two.
    pub async fn search_users(&self, field: &str, value: &str, modifier: &str) -> Call<Vec<User>> {
        let query = vec![
            (field.to_string(), value.to_string()),
            (format!("{field}_Mod"), modifier.to_string()),
            ("fields".into(), USER_FIELDS.into()),
            ("$$LIMIT".into(), "2".into()),
        ];
        let call = self.send("search", Method::GET, "user/search", query).await;
        map_call(call, |data| {
            serde_json::from_value::<Vec<User>>(data).map_err(|e| e.to_string())
        })
    }

    /// `GET user/{ID}?fields=...`; `Failure::NotFound` when there is no such user.
    pub async fn get_user(&self, id: &str) -> Call<User> {
        if let Some(refused) = refuse_id("get", id) {
            return refused;
        }
        let query = vec![("fields".into(), USER_FIELDS.into())];
        let call = self
            .send(
                "get",
                Method::GET,
                &format!("user/{}", urlencode(id)),
                query,
            )
            .await;
        map_call(call, |data| {
            serde_json::from_value::<User>(data).map_err(|e| e.to_string())
        })
    }

    /// `PUT user/{ID}?updates={"isActive":..}&fields=ID,isActive,...`; the answer must show the
    /// new state.
    pub async fn set_active(
        &self,
        id: &str,
        active: bool,
        access_level_id: Option<&str>,
    ) -> Call<User> {
        if let Some(refused) = refuse_id("update", id) {
            return refused;
        }
        let mut updates = json!({ "isActive": active });
        if let (true, Some(level)) = (active, access_level_id) {
            updates["accessLevelID"] = json!(level);
        }
        let query = vec![
            ("updates".into(), updates.to_string()),
            ("fields".into(), USER_FIELDS.into()),
        ];
        let call = self
            .send(
                "update",
                Method::PUT,
                &format!("user/{}", urlencode(id)),
                query,
            )
            .await;
        let mut call = map_call(call, |data| {
            serde_json::from_value::<User>(data).map_err(|e| e.to_string())
        });
        if let Ok(user) = &call.result {
            if user.is_active != Some(active) {
                call.result = Err(Failure::BadResponse(format!(
                    "the answer does not show isActive={active} (it shows {:?})",
                    user.is_active
                )));
            }
        }
        call
    }

    /// The current concurrency limit (fleet-wide on PostgreSQL).
    pub fn concurrency_limit(&self) -> f64 {
        self.limiter.limit()
    }

    /// A read-only call that proves base URL and credentials: `GET user/search?fields=ID&$$LIMIT=1`.
    pub async fn probe(&self) -> Call<()> {
        let query = vec![
            ("fields".into(), "ID".into()),
            ("$$LIMIT".into(), "1".into()),
        ];
        let call = self.send("probe", Method::GET, "user/search", query).await;
        map_call(call, |_| Ok(()))
    }

    async fn send(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        query: Vec<(String, String)>,
    ) -> Call<Value> {
        // Shown as sent: encoded exactly as reqwest's `.query()` encodes it (form-urlencoded), so
        // a crafted value such as `x@y.co&emailAddr_Mod=cicontains` reads as the one parameter it
        // was on the wire, never as injected ones. Credentials are added after this.
        let shown = format!(
            "{method} {path}?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish()
        );
        let url = format!("{}/{}", self.api_base, path);
        let started = Instant::now();
        let mut exchange = Exchange {
            op,
            request: shown,
            status: None,
            response: None,
            millis: 0,
            retry_after_secs: None,
            slowed_down: 0,
        };
        let mut result;
        let mut slowed = 0u32;
        loop {
            let permit = match self.limiter.acquire().await {
                Ok(p) => p,
                Err(f) => {
                    result = Err(f);
                    break;
                }
            };
            result = Err(Failure::Timeout);
            // One refresh of the credentials after a refusal, then the refusal stands.
            for attempt in 0..2 {
                let attach = match self.auth.attach(&self.http).await {
                    Ok(a) => a,
                    Err(f) => {
                        result = Err(f);
                        break;
                    }
                };
                let (answer, refused) = self
                    .exchange_once(
                        &method,
                        &url,
                        &query,
                        attach.headers,
                        attach.query,
                        &mut exchange,
                    )
                    .await;
                result = answer;
                if !(refused && attempt == 0) {
                    break;
                }
                tracing::info!("Workfront refused the credentials; renewing them once");
                self.auth.invalidate(attach.generation);
            }
            let admitted_slots = permit.admitted_slots;
            drop(permit);
            match &result {
                // 429 is "slow down", not a failure: lower the limit and try again shortly,
                // honouring Retry-After, a few times within this call.
                Err(Failure::RateLimited) => {
                    self.limiter.rate_limited(admitted_slots).await;
                    if slowed >= RATE_LIMIT_RETRIES {
                        break;
                    }
                    slowed += 1;
                    exchange.slowed_down = slowed;
                    let backoff =
                        Duration::from_millis(200 * (1 << slowed) + fastrand::u64(0..200));
                    let wait = exchange
                        .retry_after_secs
                        .map(|s| Duration::from_secs(s.min(30)))
                        .unwrap_or(backoff);
                    tokio::time::sleep(wait).await;
                }
                Err(_) if exchange.status.is_none() => break,
                _ => {
                    self.limiter.succeeded().await;
                    break;
                }
            }
        }
        exchange.millis = started.elapsed().as_millis() as u64;
        Call { result, exchange }
    }

    /// One HTTP exchange; also says whether Workfront refused the credentials with a 401/403.
    async fn exchange_once(
        &self,
        method: &Method,
        url: &str,
        query: &[(String, String)],
        headers: Vec<(&'static str, String)>,
        extra_query: Vec<(String, String)>,
        exchange: &mut Exchange,
    ) -> (Result<Value, Failure>, bool) {
        let mut header_map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&value) {
                v.set_sensitive(true);
                header_map.insert(name, v);
            }
        }
        let sent = self
            .http
            .request(method.clone(), url)
            .query(query)
            .query(&extra_query)
            .headers(header_map)
            .send()
            .await;
        let result = match sent {
            Err(e) => Err(transport_failure(e)),
            Ok(resp) if resp.status().is_redirection() => {
                // Never followed: it would carry the credentials elsewhere. A tenant that moved
                // needs a new base_url, so this is credential trouble that waits, not a failure.
                let status = resp.status().as_u16();
                exchange.status = Some(status);
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    // Without its query: it may echo the apiKey we sent.
                    .map(|l| l.split(['?', '#']).next().unwrap_or("").to_string())
                    .unwrap_or_else(|| "(no Location)".into());
                exchange.response = Some(json!({ "location": location }));
                Err(Failure::Auth {
                    status,
                    message: format!(
                        "Workfront redirected to {location}; the redirect is not followed (check workfront.base_url)"
                    ),
                })
            }
            Ok(resp) => {
                let status = resp.status();
                exchange.status = Some(status.as_u16());
                exchange.retry_after_secs = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                match resp.bytes().await {
                    Err(e) => Err(transport_failure(e)),
                    Ok(body) => {
                        let (kept, result) = read_answer(status, &body);
                        exchange.response = Some(kept);
                        result
                    }
                }
            }
        };
        // Only a plain 401/403 is worth one renewal; a redirect or an auth error class would
        // not change with a new token of the same credentials.
        let refused = matches!(exchange.status, Some(401 | 403));
        (result, refused)
    }
}

/// An ID that is not letters and digits never reaches a URL (it could change the path).
fn refuse_id<T>(op: &'static str, id: &str) -> Option<Call<T>> {
    if crate::domain::is_workfront_id(id) {
        return None;
    }
    Some(Call {
        result: Err(Failure::Rejected {
            status: 0,
            class: None,
            message: format!("{id:?} is not a Workfront ID (letters and digits); nothing was sent"),
        }),
        exchange: Exchange {
            op,
            request: "(not sent)".into(),
            status: None,
            response: None,
            millis: 0,
            retry_after_secs: None,
            slowed_down: 0,
        },
    })
}

fn map_call<T>(call: Call<Value>, f: impl FnOnce(Value) -> Result<T, String>) -> Call<T> {
    Call {
        result: call.result.and_then(|v| f(v).map_err(Failure::BadResponse)),
        exchange: call.exchange,
    }
}

fn transport_failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    // Without the URL: with api_key_in = "query" it would carry the key.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    Failure::Connect(text)
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_active_is_read_as_bool_or_string() {
        let u: User = serde_json::from_value(json!({"ID": "a", "isActive": "false"})).unwrap();
        assert_eq!(u.is_active, Some(false));
        let u: User =
            serde_json::from_value(json!({"ID": "a", "isActive": true, "isAdmin": null})).unwrap();
        assert_eq!(u.is_active, Some(true));
        assert_eq!(u.is_admin, None);
    }

    #[test]
    fn an_ext_ref_id_of_any_shape_never_makes_a_user_unreadable() {
        let ext = |v: Value| {
            serde_json::from_value::<User>(json!({"ID": "a", "extRefID": v}))
                .expect("the user is read whatever extRefID holds")
                .ext_ref_id
        };
        assert_eq!(ext(json!("E-1042")), Some("E-1042".into()));
        assert_eq!(ext(json!(1042)), Some("1042".into()));
        assert_eq!(ext(json!(null)), None);
        assert_eq!(ext(json!({"nested": 1})), None);
        assert_eq!(ext(json!([1])), None);
    }
}

/// Entry points for `fuzz/` (the Workfront answer parser on arbitrary answers).
pub mod fuzzing {
    use super::*;

    /// An answer as it comes off the wire, through [`read_answer`] as [`Client`]'s calls do,
    /// then each operation's reading of `data`. Any panic is a finding; every answer must end as
    /// data or as a [`Failure`].
    pub fn answer(status: u16, body: &[u8]) {
        let Ok(status) = StatusCode::from_u16(status) else {
            return;
        };
        let (kept, result) = read_answer(status, body);
        if let Value::String(excerpt) = &kept {
            // At most 500 characters of a body that is not JSON go to the audit.
            assert!(
                excerpt.chars().count() <= 500 || serde_json::from_slice::<Value>(body).is_ok()
            );
        }
        match result {
            Ok(data) => {
                let _ = serde_json::from_value::<Vec<User>>(data.clone());
                let _ = serde_json::from_value::<User>(data);
            }
            Err(f) => {
                let _ = (f.class(), f.code(), f.message());
            }
        }
    }
}
