//! The simulator's token endpoints (SPEC §5.1) and the check of every API request's credentials.
//!
//! - `POST /integrations/oauth2/api/v1/jwt/exchange` (form `client_id`, `client_secret`,
//!   `jwt_token`): the JWT must be RS256, verify against the configured public key, and carry the
//!   configured `iss` (customer id) and `sub` (user id) and an `exp` in the future; answers
//!   `{"access_token", "token_type": "sessionID", "expires_in"}`. The token is then accepted as
//!   header `sessionID` until it expires.
//! - `POST /ims/token/v3` (form `grant_type=client_credentials`, `client_id`, `client_secret`,
//!   `scope`): answers `{"access_token", "token_type": "bearer", "expires_in"}`, accepted as
//!   `Authorization: Bearer` until it expires.
//! - Otherwise the `apiKey` header or query parameter, as before.
//!
//! Tokens expire after `token_ttl`; [`super::Sim::expire_tokens`] ends every token at once.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

use super::handlers::Shared;

/// A Workfront OAuth2 machine-to-machine app, as the simulator knows it.
#[derive(Debug, Clone)]
pub struct SimOAuth {
    pub client_id: String,
    pub client_secret: String,
    pub customer_id: String,
    pub user_id: String,
    /// PEM of the public key the app's JWTs are verified with.
    pub public_key_pem: String,
}

/// An Adobe IMS server-to-server credential, as the simulator knows it.
#[derive(Debug, Clone)]
pub struct SimIms {
    pub client_id: String,
    pub client_secret: String,
}

/// A token the simulator gave out.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) token: String,
    /// `sessionID` (JWT exchange) or `bearer` (IMS).
    pub(crate) kind: &'static str,
    pub(crate) until: Instant,
}

fn token_error(status: StatusCode, message: &str) -> Response {
    // The token endpoints' own error shape (as a public client models it).
    (
        status,
        Json(json!({"statusCode": status.as_u16(), "error": true, "type": "invalid_client", "message": message})),
    )
        .into_response()
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn issue(st: &Shared, kind: &'static str) -> Response {
    let token = format!("{kind}-{}", uuid::Uuid::now_v7().simple());
    let ttl = st.config.token_ttl;
    st.tokens.lock().unwrap().push(Issued {
        token: token.clone(),
        kind,
        until: Instant::now() + ttl,
    });
    st.tokens_issued
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let token_type = if kind == "sessionID" {
        "sessionID"
    } else {
        "bearer"
    };
    Json(json!({"access_token": token, "token_type": token_type, "expires_in": ttl.as_secs()}))
        .into_response()
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
}

pub(crate) async fn jwt_exchange(State(st): State<Shared>, body: Bytes) -> Response {
    let Some(app) = st.config.oauth.clone() else {
        return token_error(StatusCode::NOT_FOUND, "no OAuth2 application is configured");
    };
    let pairs = form(&body);
    if field(&pairs, "client_id") != app.client_id
        || field(&pairs, "client_secret") != app.client_secret
    {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid client_id or client_secret",
        );
    }
    let Ok(key) = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()) else {
        return token_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the simulator's public key is not a PEM",
        );
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.set_issuer(&[app.customer_id.as_str()]);
    validation.leeway = 0;
    match jsonwebtoken::decode::<Claims>(field(&pairs, "jwt_token"), &key, &validation) {
        Ok(data) if data.claims.sub == app.user_id && data.claims.iss == app.customer_id => {
            issue(&st, "sessionID")
        }
        Ok(_) => token_error(
            StatusCode::UNAUTHORIZED,
            "the JWT's sub is not the app's user",
        ),
        Err(e) => token_error(StatusCode::UNAUTHORIZED, &format!("invalid JWT: {e}")),
    }
}

pub(crate) async fn ims_token(State(st): State<Shared>, body: Bytes) -> Response {
    let Some(cred) = st.config.ims.clone() else {
        return token_error(StatusCode::NOT_FOUND, "no IMS credential is configured");
    };
    let pairs = form(&body);
    if field(&pairs, "grant_type") != "client_credentials" {
        return token_error(
            StatusCode::BAD_REQUEST,
            "grant_type must be client_credentials",
        );
    }
    if field(&pairs, "client_id") != cred.client_id
        || field(&pairs, "client_secret") != cred.client_secret
    {
        return token_error(StatusCode::UNAUTHORIZED, "invalid client credentials");
    }
    issue(&st, "bearer")
}

/// Whether a request to the API carries valid credentials: a live token, or the API key.
pub(crate) fn authorized(st: &Shared, headers: &HeaderMap, query: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let live = |kind: &str, token: &str| {
        let now = Instant::now();
        st.tokens
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.kind == kind && t.token == token && t.until > now)
    };
    if let Some(session) = header("sessionID") {
        return live("sessionID", session);
    }
    if let Some(bearer) = header("authorization").and_then(|a| a.strip_prefix("Bearer ")) {
        return live("bearer", bearer);
    }
    let expected = st.api_key.lock().unwrap().clone();
    let Some(expected) = expected else {
        // No API key configured: the simulator is open (unless it only issues tokens).
        return st.config.oauth.is_none() && st.config.ims.is_none();
    };
    let in_query = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "apiKey")
        .map(|(_, v)| v.into_owned());
    header("apiKey").map(str::to_string).or(in_query).as_deref() == Some(expected.as_str())
}

/// The default lifetime of the simulator's tokens.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
