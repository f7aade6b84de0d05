//! `GET /healthz` (the process answers) and `GET /readyz` (the database is reachable and migrated;
//! `degraded` while Workfront refuses our credentials: intake still works, writes wait).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::openapi::Readiness;
use super::AppState;

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the process answers")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "ready or degraded", body = super::openapi::Readiness),
    (status = 503, description = "unavailable: the database cannot be reached", body = super::openapi::Readiness),
))]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let auth = if app.health.auth_failing() {
        "failing"
    } else {
        "ok"
    };
    match app.store.ready().await {
        Ok(()) => {
            let status = if app.health.auth_failing() {
                "degraded"
            } else {
                "ready"
            };
            let mut r = readiness(status, "ok", auth);
            r.workfront_auth_problem = app.health.auth_problem();
            (StatusCode::OK, Json(r))
        }
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(readiness("unavailable", "unavailable", auth)),
            )
        }
    }
}

fn readiness(status: &str, database: &str, workfront_auth: &str) -> Readiness {
    Readiness {
        status: status.into(),
        database: database.into(),
        workfront_auth: workfront_auth.into(),
        workfront_auth_problem: None,
    }
}

/// `GET /metrics`: Prometheus text exposition (OpenMetrics flavour).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let body = app.metrics.render(&app.store).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
