//! The admin API under `/admin/v1`. The token is checked by [`gate`], a layer in front of every
//! `/admin` route (and of unknown `/admin` paths), before any extractor reads the path, the query
//! or the body: without a valid token every such request is 401 (403 when no token is configured)
//! with the JSON error body, whatever else is wrong with it. Extractors then answer their own
//! rejections in the same JSON format ([`ActionId`], [`query`]).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::current_request_id;
use super::openapi::{ActionList, ActionView, ErrorBody, ManualAction};
use super::{ApiError, AppState};
use crate::domain::{new_id, Event, EventType, Reason, Status};
use crate::intake::data::parse_data;
use crate::intake::{self, Incoming};
use crate::store::{ActionDetail, ActionFilter, ActionRecord, Ingested};

/// The source name recorded for actions created through the admin API.
pub const ADMIN_SOURCE: &str = crate::domain::lifecycle::OPERATOR_SOURCE;
const MAX_LIMIT: u32 = 500;

pub fn check_token(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.settings.admin.token else {
        return Err(ApiError::AdminDisabled);
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let ok: bool = Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(token.expose_secret().as_bytes()))
        .into();
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The layer that guards `/admin`: the token first, before anything of the request is read.
pub async fn gate(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/admin" || path.starts_with("/admin/") {
        if let Err(e) = check_token(&app, req.headers()) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// The filter of `GET /admin/v1/actions` from its query parameters; every wrong value is a 400
/// that names the parameter (fuzzed: `fuzz/fuzz_targets/admin_query.rs`).
pub fn action_filter(q: &HashMap<String, String>) -> Result<ActionFilter, ApiError> {
    let known = ["status", "reason", "source", "employee", "limit", "cursor"];
    if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter {k:?}; use {}",
            known.join(", ")
        )));
    }
    if let Some(k) = q.keys().find(|k| crate::domain::has_nul(q[*k].as_str())) {
        return Err(ApiError::BadRequest(format!(
            "query parameter {k:?} contains U+0000"
        )));
    }
    let nonempty = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    // The enumerated and typed values are taken exactly as the document lists them (empty: no
    // filter); only the free texts are trimmed.
    let exact = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(ActionFilter {
        status: exact("status")
            .map(|s| s.parse::<Status>())
            .transpose()
            .map_err(ApiError::BadRequest)?,
        reason: exact("reason")
            .map(|s| s.parse::<Reason>())
            .transpose()
            .map_err(ApiError::BadRequest)?,
        source: nonempty("source"),
        employee: nonempty("employee"),
        cursor: match exact("cursor") {
            Some(c) if is_action_id(&c) => Some(c),
            Some(c) => {
                return Err(ApiError::BadRequest(format!(
                    "cursor {c:?} is not one this API gave out"
                )))
            }
            None => None,
        },
        limit: match q.get("limit") {
            None => 50,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}"
                    )))
                }
            },
        },
        oldest_first: false,
    })
}

/// The `{id}` of an action route: an id this API gives out, else 404 (a path that does not even
/// decode is 400), always with the JSON error body.
pub struct ActionId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ActionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("the path is not valid: {e}")))?;
        if !is_action_id(&id) {
            return Err(ApiError::NotFound(format!(
                "no action {:?}; action ids look like act_ and 32 hex digits",
                id.chars().take(80).collect::<String>()
            )));
        }
        Ok(ActionId(id))
    }
}

/// A query string, or a JSON 400 when it does not parse.
pub(super) fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("the query string is not valid: {e}")))
}

#[utoipa::path(get, path = "/admin/v1/actions", tag = "admin", security(("admin_token" = [])),
    params(
        ("status" = Option<String>, Query, description = "scheduled, pending, in_progress, succeeded, skipped, held, cancelled, failed"),
        ("reason" = Option<String>, Query, description = "a reason of SPEC §6"),
        ("source" = Option<String>, Query, description = "a configured source name, or admin"),
        ("employee" = Option<String>, Query, description = "employee id, or email (case-insensitive)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1 to 500, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "the actions, newest first, and the cursor of the next page", body = ActionList),
        (status = 400, description = "bad_request: an unknown parameter or value", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_disabled", body = ErrorBody),
    ))]
pub async fn list(
    State(app): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ActionList>, ApiError> {
    let filter = action_filter(&query(q)?)?;
    let actions = app.store.list_actions(&filter).await?;
    let next_cursor = (actions.len() as u32 == filter.limit)
        .then(|| actions.last().map(|a| a.id.clone()))
        .flatten();
    Ok(Json(ActionList {
        actions: actions.iter().map(action_json).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/admin/v1/actions/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "act_...")),
    responses(
        (status = 200, description = "the action with its events and audit trail", body = ActionView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_disabled", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub async fn show(
    State(app): State<AppState>,
    ActionId(id): ActionId,
) -> Result<Json<ActionView>, ApiError> {
    let detail = app
        .store
        .get_action(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no action {id:?}")))?;
    Ok(Json(detail_json(&detail)))
}

/// `POST /admin/v1/actions`: a manual deactivation; the body is the `data` object of SPEC §4.1.
#[utoipa::path(post, path = "/admin/v1/actions", tag = "admin", security(("admin_token" = [])),
    request_body = ManualAction,
    responses(
        (status = 202, description = "the new deactivation", body = ActionView),
        (status = 400, description = "malformed_payload", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_disabled", body = ErrorBody),
        (status = 422, description = "invalid_event: no identifier or a bad date", body = ErrorBody),
        (status = 503, description = "unavailable", body = ErrorBody),
    ))]
pub async fn create(State(app): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    // Typed first (an operator API is exact: strings, no unknown keys), then the same checks as
    // a delivery's `data` (identifiers, email, date).
    let typed: ManualAction = serde_json::from_slice(&body).map_err(|e| {
        ApiError::MalformedPayload(format!(
            "body must be a JSON object like {{\"email\": \"...\"}} with employee_id, email, name and effective_at as strings: {e}"
        ))
    })?;
    let Value::Object(data) = serde_json::to_value(&typed).map_err(|_| ApiError::Internal)? else {
        return Err(ApiError::Internal);
    };
    let fields = parse_data(&data)?;
    let now = app.clock.now();
    let event = Event {
        kind: EventType::Terminated,
        sender_type: "admin.manual_deactivation".into(),
        employee: fields.employee,
        name: fields.name,
        effective: fields.effective,
        occurred_at: now,
    };
    let incoming = Incoming {
        source: ADMIN_SOURCE,
        // Every manual request is a new action.
        dedupe_key: new_id("manual"),
        content_type: Some("application/json".into()),
        body: &body,
        request_id: Some(current_request_id()),
        received_at: now,
    };
    super::error::mark_handed_to_storage();
    let Ingested::Stored {
        action_ids, ended, ..
    } = intake::store(&app.store, &app.settings, incoming, &[event]).await?
    else {
        return Err(ApiError::Internal);
    };
    for (kind, status, reason) in ended {
        app.metrics.action(kind, status, reason);
    }
    app.wake.notify_one();
    let id = action_ids.first().ok_or(ApiError::Internal)?;
    let detail = app.store.get_action(id).await?.ok_or(ApiError::Internal)?;
    tracing::info!(action_id = %id, "manual deactivation stored");
    Ok((StatusCode::ACCEPTED, Json(detail_json(&detail))).into_response())
}

/// `act_` and 32 lower-case hex digits: the only ids (and cursors) this API gives out.
pub fn is_action_id(s: &str) -> bool {
    s.strip_prefix("act_").is_some_and(|h| {
        h.len() == 32
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An action as the API shows it (SPEC §6), without events and audit.
pub fn action_json(a: &ActionRecord) -> ActionView {
    ActionView::of(a)
}

/// An action with its events and audit trail.
pub fn detail_json(d: &ActionDetail) -> ActionView {
    ActionView::detail(d)
}
