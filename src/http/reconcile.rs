//! `POST /admin/v1/reconciliations` and `GET /admin/v1/reconciliations/{id}` (SPEC §12).
//!
//! The handler parses the list, stores the report with all its rows in one transaction and
//! answers 202 with the report's id; the runner ([`crate::worker::reconcile`]) checks the rows
//! in the background. Lists are larger than deliveries (10,000 leavers are ~400 KB of CSV), so
//! this route reads up to [`MAX_LIST_BYTES`] instead of `server.max_body_bytes`; it is behind
//! the admin token, which is checked before any byte of the body is read.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::admin::query;
use super::openapi::{ErrorBody, WorkfrontUserView};
use super::{ApiError, AppState};
use crate::domain::new_id;
use crate::domain::reconcile::{is_reconciliation_id, Outcome};
use crate::intake::leavers::{self, Leavers, LeaversError};
use crate::store::{LeaverRecord, NewLeaverRow, ReconciliationRecord};

/// The largest list accepted, in bytes (about 400,000 leavers of CSV).
pub const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// One leaver of a JSON list (other keys are ignored).
#[derive(Serialize, ToSchema)]
pub struct LeaverInput {
    /// A string, or a number (kept in its decimal form).
    pub employee_id: Option<String>,
    pub email: Option<String>,
    /// `YYYY-MM-DD`.
    pub terminated_on: Option<String>,
}

/// A JSON list of leavers.
#[derive(Serialize, ToSchema)]
pub struct LeaversBody {
    /// Rows shaped as `LeaverInput`. A row that is not (a field that is not a string, an
    /// `employee_id` that is not a string or a number, a row that is not an object) is kept and
    /// reported `invalid`, so one bad row never costs the others; hence any value is accepted here.
    #[schema(min_items = 1, value_type = Vec<serde_json::Value>)]
    pub leavers: Vec<serde_json::Value>,
    /// Create the missing deactivations (default false).
    pub apply: Option<bool>,
}

/// What `POST` answers.
#[derive(Serialize, ToSchema)]
pub struct ReconciliationCreated {
    /// `rec_` and 32 hex digits.
    pub id: String,
    /// `running` (or `done` when it already finished).
    pub status: String,
    pub total: usize,
}

/// Rows per outcome.
#[derive(Serialize, ToSchema)]
pub struct OutcomeCounts {
    pub inactive: i64,
    /// Gaps: people who left and still have access.
    pub active: i64,
    pub not_found: i64,
    pub ambiguous: i64,
    pub pending: i64,
    pub invalid: i64,
    /// Rows not checked yet (while `running`).
    pub unchecked: i64,
}

/// One leaver of a report.
#[derive(Serialize, ToSchema)]
pub struct LeaverView {
    /// 1-based position in the list that was sent.
    pub row: i64,
    pub employee_id: Option<String>,
    pub email: Option<String>,
    pub terminated_on: Option<String>,
    /// `inactive`, `active`, `not_found`, `ambiguous`, `pending`, `invalid`; null while unchecked.
    pub outcome: Option<String>,
    pub workfront_user: Option<WorkfrontUserView>,
    /// The action that handles this person (`pending`, or created by `apply` for `active`).
    pub action_id: Option<String>,
    /// Why a row is invalid, the candidates of an ambiguous match, or (while unchecked) why the
    /// last check failed.
    pub detail: Option<String>,
}

/// A reconciliation report (SPEC §12).
#[derive(Serialize, ToSchema)]
pub struct ReconciliationView {
    pub id: String,
    /// `running` or `done`.
    pub status: String,
    pub apply: bool,
    /// `request`, or `schedule:<source>` for scheduled runs.
    pub origin: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub total: i64,
    pub counts: OutcomeCounts,
    /// In input order.
    pub rows: Vec<LeaverView>,
}

#[utoipa::path(post, path = "/admin/v1/reconciliations", operation_id = "create_reconciliation", tag = "admin", security(("admin_token" = [])),
    params(("apply" = Option<bool>, Query, description = "create the missing deactivations (also `apply` in a JSON body)")),
    request_body(description = "CSV with a header row (`Content-Type: text/csv`; columns employee_id, email, terminated_on, others ignored), or JSON {\"leavers\": [{\"employee_id\", \"email\", \"terminated_on\"}], \"apply\": false}",
        content((LeaversBody = "application/json"), (String = "text/csv"))),
    responses(
        (status = 202, description = "the report was stored and runs in the background", body = ReconciliationCreated),
        (status = 400, description = "malformed_payload: neither CSV nor the JSON shape; bad_request: an unknown query parameter", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_disabled", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "invalid_event: no row, no identifier column, or too many rows", body = ErrorBody),
        (status = 503, description = "unavailable", body = ErrorBody),
    ))]
pub async fn create(
    State(app): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    if let Some(k) = q.keys().find(|k| k.as_str() != "apply") {
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter {k:?}; use apply"
        )));
    }
    let apply_query = match q.get("apply").map(String::as_str) {
        None => false,
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "apply must be true or false, not {other:?}"
            )))
        }
    };
    let media = crate::sources::common::media_type(&headers);
    let csv = match media.as_str() {
        "text/csv" | "application/csv" => true,
        "" | "application/json" => false,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send text/csv or application/json, not {other:?}"
            )))
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_LIST_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_LIST_BYTES));
    }
    let bytes = axum::body::to_bytes(body, MAX_LIST_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(MAX_LIST_BYTES))?;
    let parsed = if csv {
        leavers::parse_csv(&bytes)
    } else {
        leavers::parse_json(&bytes)
    };
    let Leavers { rows, apply } = parsed.map_err(list_error)?;
    let total = rows.len();
    let id = store_list(&app, rows, apply || apply_query, "request").await?;
    let created = ReconciliationCreated {
        status: "running".into(),
        total,
        id: id.clone(),
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/admin/v1/reconciliations/{id}"))],
        Json(created),
    )
        .into_response())
}

/// A list refused as a whole: 400 `malformed_payload` or 422 `invalid_event`.
pub fn list_error(e: LeaversError) -> ApiError {
    match e {
        LeaversError::Malformed(m) => ApiError::MalformedPayload(m),
        LeaversError::Unusable(m) => ApiError::InvalidEvent(m),
    }
}

/// Stores a parsed list as a new report (`origin`: `request`, `console:<operator>`, ...) and
/// wakes the runner; the report's id.
pub async fn store_list(
    app: &AppState,
    rows: Vec<leavers::Leaver>,
    apply: bool,
    origin: &str,
) -> Result<String, ApiError> {
    let id = new_id("rec");
    let rows: Vec<NewLeaverRow> = rows
        .into_iter()
        .map(|r| NewLeaverRow {
            employee_id: r.employee_id,
            email: r.email,
            terminated_on: r.terminated_on,
            invalid: r.invalid,
        })
        .collect();
    app.store
        .create_reconciliation(&id, apply, origin, &rows)
        .await?;
    app.reconcile_wake.notify_one();
    tracing::info!(reconciliation_id = %id, rows = rows.len(), apply, origin, "reconciliation stored");
    Ok(id)
}

#[utoipa::path(get, path = "/admin/v1/reconciliations/{id}", operation_id = "show_reconciliation", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "rec_ and 32 hex digits")),
    responses(
        (status = 200, description = "the report (JSON, or CSV with `Accept: text/csv`)",
            content((ReconciliationView = "application/json"), (String = "text/csv"))),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_disabled", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 503, description = "unavailable", body = ErrorBody),
    ))]
pub async fn show(
    State(app): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::BadRequest(format!("the path is not valid: {e}")))?;
    let missing = || {
        ApiError::NotFound(format!(
            "no reconciliation {:?}",
            id.chars().take(80).collect::<String>()
        ))
    };
    if !is_reconciliation_id(&id) {
        return Err(missing());
    }
    let report = app
        .store
        .get_reconciliation(&id)
        .await?
        .ok_or_else(missing)?;
    let rows = app.store.reconciliation_rows(&id).await?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        let text = to_csv(&rows).map_err(|e| {
            tracing::error!(error = %e, "cannot write the report as CSV");
            ApiError::Internal
        })?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response());
    }
    Ok(Json(view(&report, &rows)).into_response())
}

fn view(r: &ReconciliationRecord, rows: &[LeaverRecord]) -> ReconciliationView {
    let checked: i64 = r.counts.iter().map(|(_, n)| n).sum();
    ReconciliationView {
        id: r.id.clone(),
        status: if r.done { "done" } else { "running" }.into(),
        apply: r.apply,
        origin: r.origin.clone(),
        created_at: crate::store::from_ms(r.created_at).to_string(),
        finished_at: r.finished_at.map(|t| crate::store::from_ms(t).to_string()),
        total: r.total,
        counts: OutcomeCounts {
            inactive: r.count(Outcome::Inactive),
            active: r.count(Outcome::Active),
            not_found: r.count(Outcome::NotFound),
            ambiguous: r.count(Outcome::Ambiguous),
            pending: r.count(Outcome::Pending),
            invalid: r.count(Outcome::Invalid),
            unchecked: r.total - checked,
        },
        rows: rows.iter().map(row_view).collect(),
    }
}

fn row_view(r: &LeaverRecord) -> LeaverView {
    LeaverView {
        row: r.idx + 1,
        employee_id: r.employee_id.clone(),
        email: r.email.clone(),
        terminated_on: r.terminated_on.clone(),
        outcome: r.outcome.map(|o| o.as_str().to_string()),
        workfront_user: r.user.as_ref().map(WorkfrontUserView::of),
        action_id: r.action_id.clone(),
        detail: r.detail.clone(),
    }
}

/// The report as CSV, one line per row. Cells that a spreadsheet would run as a formula (`=`,
/// `+`, `-`, `@`, tab, CR first) get a leading `'`: the values come from HR exports and
/// Workfront, and an auditor opens this file in a spreadsheet.
pub fn to_csv(rows: &[LeaverRecord]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "row",
        "employee_id",
        "email",
        "terminated_on",
        "outcome",
        "workfront_user_id",
        "workfront_user_name",
        "workfront_user_email",
        "action_id",
        "detail",
    ])?;
    for r in rows {
        let user = r.user.as_ref();
        let cells = [
            Some((r.idx + 1).to_string()),
            r.employee_id.clone(),
            r.email.clone(),
            r.terminated_on.clone(),
            r.outcome.map(|o| o.as_str().to_string()),
            user.map(|u| u.id.clone()),
            user.and_then(|u| u.name.clone()),
            user.and_then(|u| u.email.clone()),
            r.action_id.clone(),
            r.detail.clone(),
        ];
        w.write_record(
            cells
                .iter()
                .map(|c| defuse(c.as_deref().unwrap_or("")).into_owned()),
        )?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn defuse(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_defused_and_others_kept() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse("jane@example.com"), "jane@example.com");
        assert_eq!(defuse(""), "");
    }

    #[test]
    fn the_csv_report_has_a_header_and_one_quoted_line_per_row() {
        let rows = vec![LeaverRecord {
            idx: 0,
            employee_id: Some("E,1".into()),
            email: Some("a@example.com".into()),
            terminated_on: None,
            outcome: Some(Outcome::Active),
            detail: None,
            user: Some(crate::store::WfUserRef {
                id: "u1".into(),
                name: Some("Ann".into()),
                email: Some("a@example.com".into()),
            }),
            action_id: Some("act_1".into()),
        }];
        let text = to_csv(&rows).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("row,employee_id,email"));
        assert_eq!(
            lines.next().unwrap(),
            "1,\"E,1\",a@example.com,,active,u1,Ann,a@example.com,act_1,"
        );
        assert_eq!(lines.next(), None);
    }
}
