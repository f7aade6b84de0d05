//! The console's reconciliation pages: upload a list, watch and read the report, download it as
//! CSV, apply its gaps. Lists are stored through [`crate::http::reconcile::store_list`], as the
//! admin API stores them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::pages::{self, Nav};
use super::{page, see_other, Operator, MAX_FORM_BYTES};
use crate::domain::reconcile::{is_reconciliation_id, Outcome};
use crate::http::reconcile::{list_error, store_list, to_csv, MAX_LIST_BYTES};
use crate::http::{ApiError, AppState};
use crate::intake::leavers::{self, Leaver};
use crate::store::{LeaverRecord, ReconciliationRecord};

pub(super) async fn reconciliations(op: Operator, State(app): State<AppState>) -> Response {
    match app.store.list_reconciliations(20).await {
        Ok(list) => op.show(
            "Reconciliations",
            Nav::Reconciliations,
            pages::reconciliations(&list, &op.csrf),
        ),
        Err(e) => op.problem(&e.into(), "/console/reconciliations"),
    }
}

fn origin(op: &Operator) -> String {
    format!("console:{}", op.name())
}

pub(super) async fn reconcile(op: Operator, State(app): State<AppState>, body: Body) -> Response {
    let back = "/console/reconciliations";
    // Form-encoding makes a CSV up to three times longer.
    let form = match op.change_form(body, 3 * MAX_LIST_BYTES, back).await {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let csv = form.get("csv").map_or("", String::as_str);
    let list = match leavers::parse_csv(csv.as_bytes()).map_err(list_error) {
        Ok(l) => l,
        Err(e) => return op.problem(&e, back),
    };
    let apply = form.get("apply").map(String::as_str) == Some("yes");
    match store_list(&app, list.rows, apply, &origin(&op)).await {
        Ok(id) => see_other(&format!("/console/reconciliations/{id}")),
        Err(e) => op.problem(&e, back),
    }
}

/// A report and its rows; 404 for an id this service never gave out or does not know.
async fn load_report(
    app: &AppState,
    id: &str,
) -> Result<(ReconciliationRecord, Vec<LeaverRecord>), ApiError> {
    let missing = || ApiError::NotFound("no such reconciliation".into());
    if !is_reconciliation_id(id) {
        return Err(missing());
    }
    let report = app
        .store
        .get_reconciliation(id)
        .await?
        .ok_or_else(missing)?;
    let rows = app.store.reconciliation_rows(id).await?;
    Ok((report, rows))
}

pub(super) async fn reconciliation(
    op: Operator,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    match load_report(&app, &id).await {
        Ok((r, rows)) => {
            let mut frame = op.frame("Reconciliation", Nav::Reconciliations);
            if !r.done {
                frame.refresh = Some(2);
            }
            page(
                StatusCode::OK,
                pages::layout(&frame, pages::reconciliation(&r, &rows, &op.csrf)),
            )
        }
        Err(e) => op.problem(&e, "/console/reconciliations"),
    }
}

pub(super) async fn reconciliation_csv(
    op: Operator,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let back = "/console/reconciliations";
    let rows = match load_report(&app, &id).await {
        Ok((_, rows)) => rows,
        Err(e) => return op.problem(&e, back),
    };
    match to_csv(&rows) {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}.csv\""),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot write the report as CSV");
            op.problem(&ApiError::Internal, back)
        }
    }
}

/// Applies a finished report's gaps: its `active` rows become a new reconciliation with apply, so
/// each is checked again and deactivated through the normal pipeline if still active.
pub(super) async fn apply_gaps(
    op: Operator,
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let back = format!("/console/reconciliations/{id}");
    let form = match op.change_form(body, MAX_FORM_BYTES, &back).await {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let e = ApiError::BadRequest("confirm by ticking the box first".into());
        return op.problem(&e, &back);
    }
    let rows = match load_report(&app, &id).await {
        Ok((r, rows)) if r.done => rows,
        Ok(_) => {
            let e = ApiError::Conflict("the report is still running".into());
            return op.problem(&e, &back);
        }
        Err(e) => return op.problem(&e, &back),
    };
    let gaps: Vec<Leaver> = rows
        .into_iter()
        .filter(|r| r.outcome == Some(Outcome::Active))
        .map(|r| Leaver {
            employee_id: r.employee_id,
            email: r.email,
            terminated_on: r.terminated_on,
            invalid: None,
        })
        .collect();
    if gaps.is_empty() {
        return op.problem(
            &ApiError::Conflict("this report has no gap to apply".into()),
            &back,
        );
    }
    match store_list(&app, gaps, true, &origin(&op)).await {
        Ok(new) => see_other(&format!("/console/reconciliations/{new}")),
        Err(e) => op.problem(&e, &back),
    }
}
