//! HTTP: routes, the request-id/timeout middleware, and the handlers.
//!
//! | route | module |
//! |---|---|
//! | `POST /webhooks/{source}` | [`webhooks`] |
//! | `/admin/v1/...` | [`admin`], [`operator`], [`reconcile`] |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | [`health`] |
//! | `GET /openapi.json` | [`openapi`] |
//!
//! Handlers are thin: verify, parse, store in one transaction, answer. None calls Workfront.

pub mod admin;
pub mod error;
pub mod health;
pub mod openapi;
pub mod operator;
pub mod reconcile;
pub mod webhooks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use axum::Router;
use tokio::sync::Notify;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Settings;
use crate::domain::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::worker::Health;
pub use error::ApiError;

/// Cheap handles shared by all handlers.
#[derive(Clone)]
pub struct AppState {
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
}

pub fn router(state: AppState) -> Router {
    let timeout = state.settings.server.request_timeout;
    let (routes, api) = OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(webhooks::receive))
        .routes(routes!(admin::list, admin::create))
        .routes(routes!(admin::show))
        .routes(routes!(operator::approve))
        .routes(routes!(operator::retry))
        .routes(routes!(operator::cancel))
        .routes(routes!(operator::release_brake))
        .routes(routes!(reconcile::create))
        .routes(routes!(reconcile::show))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts();
    let document = Arc::new(api);
    routes
        .route(
            "/openapi.json",
            get(move || async move { Json(document.clone()) }),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.settings.server.max_body_bytes))
        // The admin token before any extractor: before the path, the query or the body is read.
        .layer(middleware::from_fn_with_state(state.clone(), admin::gate))
        .layer(middleware::from_fn_with_state(timeout, request_context))
        .with_state(state)
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
