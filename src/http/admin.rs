//! The admin API under `/admin/v1`: the token is checked before anything else (401 without or with
//! a wrong token, 403 when no token is configured), then the request.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::current_request_id;
use super::{ApiError, AppState};
use crate::domain::{new_id, Event, EventType, Reason, Status};
use crate::intake::{self, Incoming};
use crate::sources::standard::parse_data;
use crate::store::{from_ms, ActionDetail, ActionFilter, ActionRecord, Ingested};

/// The source name recorded for actions created through the admin API.
pub const ADMIN_SOURCE: &str = "admin";
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

pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    check_token(&app, &headers)?;
    let known = ["status", "reason", "source", "employee", "limit", "cursor"];
    if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter {k:?}; use {}",
            known.join(", ")
        )));
    }
    let nonempty = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let filter = ActionFilter {
        status: nonempty("status")
            .map(|s| s.parse::<Status>())
            .transpose()
            .map_err(ApiError::BadRequest)?,
        reason: nonempty("reason")
            .map(|s| s.parse::<Reason>())
            .transpose()
            .map_err(ApiError::BadRequest)?,
        source: nonempty("source"),
        employee: nonempty("employee"),
        cursor: match nonempty("cursor") {
            Some(c) if c.starts_with("act_") && c.len() == 36 => Some(c),
            Some(c) => {
                return Err(ApiError::BadRequest(format!(
                    "cursor {c:?} is not one this API gave out"
                )))
            }
            None => None,
        },
        limit: match nonempty("limit") {
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
    };
    let actions = app.store.list_actions(&filter).await?;
    let next_cursor = (actions.len() as u32 == filter.limit)
        .then(|| actions.last().map(|a| a.id.clone()))
        .flatten();
    Ok(Json(json!({
        "actions": actions.iter().map(action_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

pub async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_token(&app, &headers)?;
    let detail = app
        .store
        .get_action(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no action {id:?}")))?;
    Ok(Json(detail_json(&detail)))
}

/// `POST /admin/v1/actions`: a manual deactivation; the body is the `data` object of SPEC §4.1.
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_token(&app, &headers)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::MalformedPayload(format!("body is not JSON: {e}")))?;
    let Value::Object(data) = value else {
        return Err(ApiError::MalformedPayload(
            "body must be a JSON object like {\"email\": \"...\"}".into(),
        ));
    };
    let fields = parse_data(&data)?;
    let now = jiff::Timestamp::now();
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
    let Ingested::Stored { action_ids, .. } =
        intake::store(&app.store, &app.settings, incoming, &[event]).await?
    else {
        return Err(ApiError::Internal);
    };
    app.wake.notify_one();
    let id = action_ids.first().ok_or(ApiError::Internal)?;
    let detail = app.store.get_action(id).await?.ok_or(ApiError::Internal)?;
    tracing::info!(action_id = %id, "manual deactivation stored");
    Ok((StatusCode::ACCEPTED, Json(detail_json(&detail))).into_response())
}

fn ts(ms: i64) -> String {
    from_ms(ms).to_string()
}

/// An action as the API shows it (SPEC §6).
pub fn action_json(a: &ActionRecord) -> Value {
    json!({
        "id": a.id,
        "kind": a.kind.as_str(),
        "status": a.status.as_str(),
        "reason": a.reason.map(|r| r.as_str()),
        "due_at": ts(a.due_at),
        "next_attempt_at": matches!(a.status, Status::Pending | Status::Scheduled).then(|| ts(a.run_at)),
        "created_at": ts(a.created_at),
        "updated_at": ts(a.updated_at),
        "done_at": a.done_at.map(ts),
        "source": a.source,
        "employee": {"employee_id": a.employee_id, "email": a.email, "name": a.employee_name},
        "workfront_user": a.user,
        "candidates": a.candidates,
        "attempts": a.attempts,
        "last_error": a.last_error,
    })
}

pub fn detail_json(d: &ActionDetail) -> Value {
    let mut v = action_json(&d.action);
    v["events"] = json!(d.events);
    v["audit"] = json!(d.audit);
    v
}
