//! Workfront credentials: one plug-in point, one file per mode (SPEC §5.1).
//!
//! - [`api_key`]: the `apiKey` header (or `?apiKey=`).
//! - [`oauth_jwt`]: a Workfront OAuth2 machine-to-machine app: an RS256 JWT exchanged for a token
//!   sent as `sessionID`.
//! - [`ims`]: an Adobe IMS server-to-server credential: a client-credentials token sent as
//!   `Authorization: Bearer` (+ `x-gw-ims-org-id`).
//!
//! The client asks [`Credentials::attach`] for what to add to each request and calls
//! [`Credentials::invalidate`] once after a 401, so the next attach renews the token; it never
//! knows which mode it talks to. Token modes share one token per process in [`token::Cache`]:
//! renewed before it expires, and however many calls find it expired at once, one renewal runs.

pub mod api_key;
pub mod ims;
pub mod oauth_jwt;
mod token;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use futures_core::future::BoxFuture;
use secrecy::SecretString;

use super::Failure;
use crate::config::{bad, ConfigError};

/// What to add to one request: headers (sensitive values), query pairs, and the generation of
/// the token used (to invalidate exactly that one after a 401).
#[derive(Debug, Default)]
pub struct Attach {
    pub headers: Vec<(&'static str, String)>,
    pub query: Vec<(String, String)>,
    pub generation: u64,
}

/// One way of proving who offboard is to Workfront.
pub trait Credentials: Send + Sync + Debug {
    /// The mode's name in configuration.
    fn mode(&self) -> &'static str;

    /// What to add to a request, obtaining or renewing a token when needed (token endpoint
    /// trouble is a [`Failure`], usually `Auth`).
    fn attach<'a>(&'a self, http: &'a reqwest::Client) -> BoxFuture<'a, Result<Attach, Failure>>;

    /// Workfront refused the credentials of `generation`: the next attach renews them (modes
    /// without a token have nothing to renew).
    fn invalidate(&self, generation: u64);

    /// The mode's settings, secrets redacted, for `check-config`.
    fn describe(&self) -> serde_json::Value;
}

/// The `[workfront]` keys the modes read (each mode takes what it needs).
pub struct Input {
    pub base_url: url::Url,
    pub auth: String,
    pub api_key: Option<SecretString>,
    pub api_key_file: Option<PathBuf>,
    pub api_key_in: String,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub private_key: Option<SecretString>,
    pub private_key_file: Option<PathBuf>,
    pub ims_token_url: Option<String>,
    pub scopes: Vec<String>,
    pub ims_org_id: Option<String>,
}

/// The registry: the one place that matches on `workfront.auth`.
pub fn build(input: Input) -> Result<Arc<dyn Credentials>, ConfigError> {
    Ok(match input.auth.as_str() {
        "api_key" => Arc::new(api_key::ApiKey::new(input)?),
        "oauth_jwt" => Arc::new(oauth_jwt::OAuthJwt::new(input)?),
        "ims" => Arc::new(ims::Ims::new(input)?),
        other => {
            return Err(bad(
                "workfront.auth",
                format!("unknown value {other:?}; use api_key, oauth_jwt or ims"),
            ))
        }
    })
}

/// A required, non-empty plain value.
fn required(value: Option<String>, key: &str, mode: &str) -> Result<String, ConfigError> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(key, format!("is required with auth = \"{mode}\"")))
}

/// A required secret, inline or as `<key>_file`.
fn required_secret(
    value: Option<SecretString>,
    file: Option<PathBuf>,
    key: &str,
    mode: &str,
) -> Result<SecretString, ConfigError> {
    crate::config::secret_value(value, file, key)?
        .ok_or_else(|| bad(key, format!("is required with auth = \"{mode}\"")))
}

/// A token endpoint's answer as a failure: refusals are credential trouble (the actions wait
/// with `workfront_auth`), unreachable endpoints are retried like any connection error.
fn token_failure(what: &str, status: Option<u16>, detail: String) -> Failure {
    match status {
        Some(s) if s >= 500 => Failure::Server {
            status: s,
            message: Some(format!("{what}: {detail}")),
        },
        Some(s) => Failure::Auth {
            status: s,
            message: format!("{what} was refused ({s}): {detail}"),
        },
        None => Failure::Connect(format!("{what}: {detail}")),
    }
}

/// POSTs a form to a token endpoint and reads `{access_token|sessionID|session_id, expires_in}`.
async fn fetch_token(
    http: &reqwest::Client,
    what: &str,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(SecretString, Option<std::time::Duration>), Failure> {
    let resp = http
        .post(url)
        .form(form)
        .send()
        .await
        .map_err(|e| token_failure(what, None, e.without_url().to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| token_failure(what, None, e.without_url().to_string()))?;
    if !(200..300).contains(&status) {
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(token_failure(what, Some(status), text));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| token_failure(what, Some(status), "the answer is not JSON".into()))?;
    let token = ["access_token", "sessionID", "session_id"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|t| t.as_str()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| token_failure(what, Some(401), "the answer holds no token".into()))?;
    let ttl = v
        .get("expires_in")
        .and_then(|e| {
            e.as_u64()
                .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
        })
        .map(std::time::Duration::from_secs);
    Ok((SecretString::from(token.to_string()), ttl))
}
