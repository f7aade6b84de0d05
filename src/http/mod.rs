//! HTTP: routes, the request-id/timeout middleware, and the handlers.
//!
//! | route | module |
//! |---|---|
//! | `POST /webhooks/{source}` | [`webhooks`] |
//! | `/admin/v1/...` | [`admin`], [`operator`], [`reconcile`] |
//! | `/console/...` (HTML for operators) | [`console`] |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | [`health`] |
//! | `GET /openapi.json` | [`openapi`] |
//!
//! Handlers are thin: verify, parse, store in one transaction, answer. None calls Workfront.

pub mod admin;
pub mod console;
pub mod error;
pub mod health;
pub mod openapi;
pub mod operator;
pub mod reconcile;
pub mod serve;
pub mod webhooks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::config::Settings;
use crate::domain::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::worker::Health;
pub use error::ApiError;

/// What every handler shares, behind one `Arc`: axum clones the state for each request and
/// each middleware layer, and a profile of intake at 16 senders spent 4% of the request threads
/// cloning and dropping a dozen separate reference counts (shared between the cores).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles in [`AppState`].
pub struct Shared {
    pub store: Store,
    pub settings: Arc<Settings>,
    /// Wakes the worker when new work is stored.
    pub wake: Arc<Notify>,
    /// Wakes the reconciliation runner when a report is created.
    pub reconcile_wake: Arc<Notify>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// The service's one clock (the store holds the same).
    pub clock: Clock,
    /// Authentication failures per client address (SPEC §10).
    pub auth_failures: Arc<std::sync::Mutex<crate::domain::failures::AuthFailures>>,
}

/// The routes of each listener: with `admin_bind`, the public one serves webhooks and health,
/// the operator one the admin API, metrics and the OpenAPI document; without, one serves all.
pub struct Routers {
    pub public: Router,
    pub operator: Option<Router>,
}

/// Everything on one router (one listener).
pub fn router(state: AppState) -> Router {
    let (public, operator, document) = parts(&state.settings);
    finish(public.merge(operator).merge(document), state)
}

pub fn routers(state: AppState) -> Routers {
    let (public, operator, document) = parts(&state.settings);
    if state.settings.server.admin_bind.is_none() {
        return Routers {
            public: finish(public.merge(operator).merge(document), state),
            operator: None,
        };
    }
    Routers {
        public: finish(public, state.clone()),
        operator: Some(finish(operator.merge(document), state)),
    }
}

/// (public routes, operator routes, the OpenAPI document's route). The document describes both
/// surfaces' JSON APIs; the console's pages are not in it. It is built on its first request, not
/// here: building it is most of start-up's allocations and code ([`openapi`]).
fn parts(settings: &Settings) -> (Router<AppState>, Router<AppState>, Router<AppState>) {
    let public = Router::new()
        .route("/webhooks/{source}", post(webhooks::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    let operator = Router::new()
        .route("/admin/v1/actions", get(admin::list).post(admin::create))
        .route("/admin/v1/actions/{id}", get(admin::show))
        .route("/admin/v1/actions/{id}/approve", post(operator::approve))
        .route("/admin/v1/actions/{id}/retry", post(operator::retry))
        .route("/admin/v1/actions/{id}/cancel", post(operator::cancel))
        .route("/admin/v1/brake/release", post(operator::release_brake))
        .route("/admin/v1/reconciliations", post(reconcile::create))
        .route("/admin/v1/reconciliations/{id}", get(reconcile::show))
        .route("/metrics", get(health::metrics));
    let document = Router::new().route("/openapi.json", get(openapi::serve));
    let operator = if settings.admin.console {
        operator.merge(console::routes())
    } else {
        operator
    };
    (public, operator, document)
}

/// The fallbacks and layers every listener has.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let timeout = state.settings.server.request_timeout;
    routes
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.settings.server.max_body_bytes))
        // The admin token before any extractor: before the path, the query or the body is read.
        .layer(middleware::from_fn_with_state(state.clone(), admin::gate))
        // Outside the gate, so that an address over its failures is refused before any check.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_auth_failures,
        ))
        .layer(middleware::from_fn_with_state(timeout, request_context))
        .with_state(state)
}

/// The per-address limiter on authentication failures ([`crate::domain::failures`]), for the
/// routes that authenticate: webhooks and the admin API. A 401 counts; over the limit, 429
/// `too_many_failures` with `Retry-After`, before the signature or token is looked at.
async fn limit_auth_failures(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !(path.starts_with("/webhooks/")
        || path == "/admin"
        || path.starts_with("/admin/")
        || path == "/console/login")
    {
        return next.run(req).await;
    }
    let Some(addr) = client_address(&req, app.settings.server.client_ip_header.as_ref()) else {
        return next.run(req).await;
    };
    let now = app.clock.now_ms();
    let blocked = app
        .auth_failures
        .lock()
        .expect("limiter lock")
        .blocked(addr, now);
    if let Some(wait) = blocked {
        tracing::warn!(client = %addr, "authentication failures over server.auth_failures_per_minute; refused unchecked");
        return ApiError::TooManyFailures(wait).into_response();
    }
    let resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::UNAUTHORIZED {
        app.auth_failures
            .lock()
            .expect("limiter lock")
            .failed(addr, app.clock.now_ms());
    }
    resp
}

/// The client's address: the last entry of `client_ip_header` when configured (the one the
/// trusted ingress appended; earlier entries are the client's to forge), else the TCP peer.
fn client_address(
    req: &Request,
    header: Option<&axum::http::HeaderName>,
) -> Option<std::net::IpAddr> {
    if let Some(h) = header {
        let last = req
            .headers()
            .get_all(h)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .and_then(|v| v.parse().ok());
        if last.is_some() {
            return last;
        }
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Gives every request an id (echoed as `x-request-id`, used in error bodies and logs), a span,
/// and a deadline. The deadline answers 408 only while nothing was handed to storage; once a
/// delivery is with the store, the request waits for its real outcome (stored, duplicate, or 503).
async fn request_context(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let id = crate::domain::new_id("req");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route);
    let work = async move {
        let started = std::time::Instant::now();
        let handed = Arc::new(AtomicBool::new(false));
        let run = error::HANDED_TO_STORAGE.scope(handed.clone(), next.run(req));
        tokio::pin!(run);
        let mut resp = match tokio::time::timeout(timeout, &mut run).await {
            Ok(resp) => resp,
            Err(_) if handed.load(Ordering::SeqCst) => {
                tracing::info!("request deadline passed while storing; waiting for the outcome");
                run.await
            }
            Err(_) => ApiError::Timeout.into_response(),
        };
        tracing::debug!(
            status = resp.status().as_u16(),
            millis = started.elapsed().as_millis() as u64,
            "answered"
        );
        if let Ok(v) = HeaderValue::from_str(&error::current_request_id()) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    };
    error::REQUEST_ID.scope(id, work.instrument(span)).await
}
