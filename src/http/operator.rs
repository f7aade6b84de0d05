//! Operators steering actions: approve (also resolving an ambiguous match), retry, cancel, and
//! releasing the brake. Each change is refused with 409 when the action's status does not allow
//! it, and is audited with what was done, by whom (the optional `operator` field) and the request id.
//! The changes themselves ([`approve_action`], [`retry_action`], [`cancel_action`],
//! [`release`]) serve the JSON API and the console alike.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::{detail_json, ActionId};
use super::error::current_request_id;
use super::openapi::{
    ActionView, BrakeReleaseBody, BrakeReleased, ErrorBody, OperatorBody, OperatorResponses,
};
use super::{ApiError, AppState};
use crate::domain::{Reason, Status, Step};
use crate::store::{ActionDetail, AuditEntry, OpChange, OpError, WfUserRef};

/// The optional body of the operator endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpBody {
    /// Approve only: the Workfront user to act on (required for an ambiguous match).
    pub workfront_user_id: Option<String>,
    /// Approve only: allow a user that is not among the candidates (audited); null is false.
    pub r#override: Option<bool>,
    /// Who did it, for the audit trail.
    pub operator: Option<String>,
    pub note: Option<String>,
}

fn op_body(body: &Bytes) -> Result<OpBody, ApiError> {
    // No body, or JSON null: nothing to say.
    if body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<Value>(body).is_ok_and(|v| v.is_null())
    {
        return Ok(OpBody::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

fn audit(app: &AppState, step: Step, body: &OpBody, extra: Value) -> AuditEntry {
    let mut detail =
        json!({"operator": body.operator, "note": body.note, "request_id": current_request_id()});
    if let (Value::Object(d), Value::Object(e)) = (&mut detail, extra) {
        d.extend(e);
    }
    AuditEntry::new(app.clock.now(), step, detail)
}

async fn apply(
    app: &AppState,
    id: &str,
    change: OpChange,
    entry: AuditEntry,
    verb: &str,
) -> Result<ActionDetail, ApiError> {
    match app.store.operator_change(id, &change, entry).await {
        Ok(changed) => {
            if let (OpChange::Cancel, Some(reason)) = (&change, changed.reason) {
                app.metrics.action(changed.kind, changed.status, reason);
            }
            app.wake.notify_one();
            let detail = app.store.get_action(id).await?.ok_or(ApiError::Internal)?;
            tracing::info!(action_id = %id, operation = verb, "operator change applied");
            Ok(detail)
        }
        Err(OpError::NotFound) => Err(ApiError::NotFound(format!("no action {id:?}"))),
        Err(OpError::Conflict(status)) => Err(ApiError::Conflict(conflict_message(verb, status))),
        Err(OpError::Store(e)) => Err(e.into()),
    }
}

fn conflict_message(verb: &str, status: Status) -> String {
    let allowed = match verb {
        "approve" => "held",
        "retry" => "failed",
        _ => "scheduled, pending, held or failed",
    };
    format!("cannot {verb} an action that is {status}; only {allowed} actions can be")
}

#[utoipa::path(post, path = "/admin/v1/actions/{id}/approve", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "act_...")),
    request_body(content = Option<OperatorBody>, description = "optional"),
    responses(OperatorResponses))]
pub async fn approve(
    State(app): State<AppState>,
    ActionId(id): ActionId,
    body: Bytes,
) -> Result<Json<ActionView>, ApiError> {
    let detail = approve_action(&app, &id, op_body(&body)?).await?;
    Ok(Json(detail_json(&detail)))
}

/// Approves a held action (resolving an ambiguous match with `body.workfront_user_id`).
pub async fn approve_action(
    app: &AppState,
    id: &str,
    body: OpBody,
) -> Result<ActionDetail, ApiError> {
    let detail = app
        .store
        .get_action(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no action {id:?}")))?;
    let action = &detail.action;
    if action.status != Status::Held {
        return Err(ApiError::Conflict(conflict_message(
            "approve",
            action.status,
        )));
    }
    let chosen = body
        .workfront_user_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let user: Option<WfUserRef> = match (action.reason, chosen) {
        (Some(Reason::AmbiguousMatch), None) => {
            return Err(ApiError::BadRequest(
                "an ambiguous match needs {\"workfront_user_id\": \"<one of the candidates>\"}"
                    .into(),
            ))
        }
        (_, None) => None,
        (_, Some(uid)) if !crate::domain::is_workfront_id(uid) => {
            return Err(ApiError::BadRequest(format!(
                "workfront_user_id {:?} is not a Workfront ID (letters and digits only)",
                uid.chars().take(80).collect::<String>()
            )))
        }
        (_, Some(uid)) => {
            let known = action
                .candidates
                .iter()
                .chain(action.user.iter())
                .find(|c| c.id == uid)
                .cloned();
            match (known, body.r#override.unwrap_or(false)) {
                (Some(c), _) => Some(c),
                (None, true) => Some(WfUserRef { id: uid.to_string(), name: None, email: None }),
                (None, false) => {
                    return Err(ApiError::BadRequest(format!(
                        "{uid:?} is not a candidate of this action; send \"override\": true to act on it anyway"
                    )))
                }
            }
        }
    };
    let entry = audit(
        app,
        Step::OperatorApproved,
        &body,
        json!({"previous_reason": action.reason.map(|r| r.as_str()), "workfront_user_id": user.as_ref().map(|u| u.id.clone()),
               "override": body.r#override.unwrap_or(false) && user.is_some()}),
    );
    apply(app, id, OpChange::Approve { user }, entry, "approve").await
}

#[utoipa::path(post, path = "/admin/v1/actions/{id}/retry", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "act_...")),
    request_body(content = Option<OperatorBody>, description = "optional"),
    responses(OperatorResponses))]
pub async fn retry(
    State(app): State<AppState>,
    ActionId(id): ActionId,
    body: Bytes,
) -> Result<Json<ActionView>, ApiError> {
    let detail = retry_action(&app, &id, op_body(&body)?).await?;
    Ok(Json(detail_json(&detail)))
}

/// Gives a failed action a fresh retry budget.
pub async fn retry_action(
    app: &AppState,
    id: &str,
    body: OpBody,
) -> Result<ActionDetail, ApiError> {
    let entry = audit(
        app,
        Step::OperatorRetry,
        &body,
        json!({"retry_budget": app.settings.retry.max_attempts()}),
    );
    apply(app, id, OpChange::Retry, entry, "retry").await
}

#[utoipa::path(post, path = "/admin/v1/actions/{id}/cancel", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "act_...")),
    request_body(content = Option<OperatorBody>, description = "optional"),
    responses(OperatorResponses))]
pub async fn cancel(
    State(app): State<AppState>,
    ActionId(id): ActionId,
    body: Bytes,
) -> Result<Json<ActionView>, ApiError> {
    let detail = cancel_action(&app, &id, op_body(&body)?).await?;
    Ok(Json(detail_json(&detail)))
}

/// Cancels an action that has not finished.
pub async fn cancel_action(
    app: &AppState,
    id: &str,
    body: OpBody,
) -> Result<ActionDetail, ApiError> {
    let entry = audit(app, Step::OperatorCancelled, &body, json!({}));
    apply(app, id, OpChange::Cancel, entry, "cancel").await
}

/// `POST /admin/v1/brake/release`: approves everything the brake holds.
#[utoipa::path(post, path = "/admin/v1/brake/release", tag = "admin", security(("admin_token" = [])),
    request_body(content = Option<BrakeReleaseBody>, description = "optional: operator and note"),
    responses(
        (status = 200, description = "the actions released from the brake", body = BrakeReleased),
        (status = 400, description = "bad_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_disabled", body = ErrorBody),
    ))]
pub async fn release_brake(
    State(app): State<AppState>,
    body: Bytes,
) -> Result<Json<BrakeReleased>, ApiError> {
    let body = op_body(&body)?;
    if body.workfront_user_id.is_some() || body.r#override.unwrap_or(false) {
        return Err(ApiError::BadRequest(
            "brake release takes only operator and note".into(),
        ));
    }
    let ids = release(&app, &body).await?;
    Ok(Json(BrakeReleased {
        released: ids.len(),
        actions: ids,
    }))
}

/// Approves everything the brake holds; the ids of the released actions.
pub async fn release(app: &AppState, body: &OpBody) -> Result<Vec<String>, ApiError> {
    let ids = app
        .store
        .release_brake(audit(app, Step::BrakeReleased, body, json!({})))
        .await?;
    app.wake.notify_one();
    tracing::warn!(released = ids.len(), operator = ?body.operator, "operator released the brake");
    Ok(ids)
}
