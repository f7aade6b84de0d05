//! The console's action pages: the review queue, an action's story, the filtered list, and the
//! brake. Changes go through [`crate::http::operator`], as the admin API's do.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::pages::{self, Candidate, Nav};
use super::{see_other, Operator, LIST_PAGE, MAX_FORM_BYTES, QUEUE_PAGE};
use crate::domain::{Reason, Status};
use crate::http::admin::{action_filter, detail_json, is_action_id};
use crate::http::operator;
use crate::http::{ApiError, AppState};
use crate::store::{ActionDetail, ActionFilter, ActionRecord};

/// The candidates of an ambiguous match with the fields the worker saw (its `ambiguous_match`
/// audit step), else as stored with the action.
fn candidates(d: &ActionDetail) -> Vec<Candidate> {
    let seen = d
        .audit
        .iter()
        .rev()
        .find(|e| e.step == "ambiguous_match")
        .and_then(|e| e.detail.get("candidates"))
        .and_then(|c| c.as_array());
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    match seen {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|c| {
                Some(Candidate {
                    id: text(c, "ID")?,
                    name: text(c, "name"),
                    email: text(c, "emailAddr"),
                    username: text(c, "username"),
                    ext_ref_id: text(c, "extRefID"),
                    active: c.get("isActive").and_then(|x| x.as_bool()),
                    admin: c.get("isAdmin").and_then(|x| x.as_bool()),
                })
            })
            .collect(),
        _ => d
            .action
            .candidates
            .iter()
            .map(|u| Candidate {
                id: u.id.clone(),
                name: u.name.clone(),
                email: u.email.clone(),
                username: None,
                ext_ref_id: None,
                active: None,
                admin: None,
            })
            .collect(),
    }
}

fn done_message(q: &HashMap<String, String>) -> Option<&'static str> {
    Some(match q.get("done")?.as_str() {
        "approve" => "Approved. offboard carries it out now; this page shows the outcome.",
        "cancel" => "Cancelled.",
        "retry" => "Retrying with a fresh retry budget.",
        "released" => "The brake was released; the held actions run now.",
        _ => return None,
    })
}

pub(super) async fn queue(
    op: Operator,
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let filter = ActionFilter {
            status: Some(Status::Held),
            cursor: q.get("after").filter(|c| is_action_id(c)).cloned(),
            limit: QUEUE_PAGE,
            oldest_first: true,
            ..Default::default()
        };
        let held = app.store.list_actions(&filter).await?;
        let mut shown = Vec::with_capacity(held.len());
        for a in held {
            let c = if a.reason == Some(Reason::AmbiguousMatch) {
                match app.store.get_action(&a.id).await? {
                    Some(d) => candidates(&d),
                    None => Vec::new(),
                }
            } else {
                Vec::new()
            };
            shown.push((a, c));
        }
        let total = app
            .store
            .status_counts()
            .await?
            .iter()
            .find(|(s, _)| *s == Status::Held)
            .map_or(0, |(_, n)| *n);
        Ok::<_, ApiError>((shown, total))
    }
    .await;
    match result {
        Ok((shown, total)) => {
            let next = (shown.len() == QUEUE_PAGE as usize)
                .then(|| shown.last().map(|(a, _)| a.id.clone()))
                .flatten();
            let content = maud::html! {
                (pages::flash(done_message(&q)))
                (pages::queue(&shown, total, next.as_deref(), &op.csrf))
            };
            op.show("Review queue", Nav::Queue, content)
        }
        Err(e) => op.problem(&e, "/console"),
    }
}

pub(super) async fn action(
    op: Operator,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let missing = || {
        ApiError::NotFound(format!(
            "no action {:?}",
            id.chars().take(80).collect::<String>()
        ))
    };
    if !is_action_id(&id) {
        return op.problem(&missing(), "/console/actions");
    }
    match app.store.get_action(&id).await {
        Ok(Some(d)) => {
            let raw = serde_json::to_string_pretty(&detail_json(&d)).unwrap_or_default();
            let content = maud::html! {
                (pages::flash(done_message(&q)))
                (pages::action(&d, &candidates(&d), &raw, &op.csrf))
            };
            op.show(&format!("Action {id}"), Nav::Actions, content)
        }
        Ok(None) => op.problem(&missing(), "/console/actions"),
        Err(e) => op.problem(&e.into(), "/console/actions"),
    }
}

pub(super) async fn change(
    op: Operator,
    State(app): State<AppState>,
    Path((id, verb)): Path<(String, String)>,
    body: Body,
) -> Response {
    let back = format!("/console/actions/{id}");
    let form = match op.change_form(body, MAX_FORM_BYTES, &back).await {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    if !is_action_id(&id) {
        return op.problem(&ApiError::NotFound("no such action".into()), "/console");
    }
    let body = op.op_body(&form);
    let done = match verb.as_str() {
        "approve" => operator::approve_action(&app, &id, body).await,
        "cancel" => operator::cancel_action(&app, &id, body).await,
        "retry" => operator::retry_action(&app, &id, body).await,
        _ => return op.problem(&ApiError::NotFound("no such operation".into()), &back),
    };
    match done {
        Ok(_) => see_other(&format!("{back}?done={verb}")),
        Err(e) => op.problem(&e, &back),
    }
}

pub(super) async fn actions(
    op: Operator,
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let mut filter = action_filter(&q)?;
        filter.limit = LIST_PAGE;
        let rows = app.store.list_actions(&filter).await?;
        let mut counts = app.store.status_counts().await?;
        counts.sort_by_key(|(s, _)| Status::ALL.iter().position(|x| x == s));
        Ok::<_, ApiError>((rows, counts))
    }
    .await;
    let get = |k: &str| q.get(k).map_or("", String::as_str);
    match result {
        Ok((rows, counts)) => {
            let next = (rows.len() == LIST_PAGE as usize)
                .then(|| rows.last().map(|a: &ActionRecord| a.id.clone()))
                .flatten();
            let lq = pages::ListQuery {
                status: get("status"),
                reason: get("reason"),
                source: get("source"),
                employee: get("employee"),
            };
            op.show(
                "Actions",
                Nav::Actions,
                pages::actions(&rows, &counts, &lq, next.as_deref()),
            )
        }
        Err(e) => op.problem(&e, "/console/actions"),
    }
}

// ---- brake -------------------------------------------------------------------------------------

pub(super) async fn brake(
    op: Operator,
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let result = async {
        let engaged = app.store.brake_engaged().await?;
        let held = app
            .store
            .list_actions(&ActionFilter {
                status: Some(Status::Held),
                reason: Some(Reason::RateBrake),
                limit: 500,
                oldest_first: true,
                ..Default::default()
            })
            .await?;
        Ok::<_, ApiError>((engaged, held))
    }
    .await;
    match result {
        Ok((engaged, held)) => {
            let content = maud::html! {
                (pages::flash(done_message(&q)))
                (pages::brake(engaged, &held, &op.csrf))
            };
            op.show("Brake", Nav::Brake, content)
        }
        Err(e) => op.problem(&e, "/console/brake"),
    }
}

pub(super) async fn release(op: Operator, State(app): State<AppState>, body: Body) -> Response {
    let form = match op.change_form(body, MAX_FORM_BYTES, "/console/brake").await {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let e = ApiError::BadRequest("confirm the release by ticking the box first".into());
        return op.problem(&e, "/console/brake");
    }
    match operator::release(&app, &op.op_body(&form)).await {
        Ok(_) => see_other("/console/brake?done=released"),
        Err(e) => op.problem(&e, "/console/brake"),
    }
}
