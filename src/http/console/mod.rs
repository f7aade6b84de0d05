//! `GET /console`: the operator console (SPEC §11), server-rendered HTML on the operator listener.
//!
//! - Sign-in with the admin token and the operator's name ([`session`]: a signed `HttpOnly`,
//!   `SameSite=Strict` cookie, `Secure` with TLS or `admin.console_secure_cookie`, expiring after
//!   `admin.console_session`). A wrong token is a 401 and counts against the per-address limit on
//!   authentication failures, as on the admin API.
//! - Every handler but sign-in and the two assets takes an [`Operator`], checked from the request
//!   head before anything else is read: without a valid session a request is sent to sign-in and
//!   sees no data. Without `admin.token` the console refuses to run (403), as the admin API does.
//! - Every change is a POST carrying the session's CSRF token (403 without it, and nothing is
//!   changed); POSTs that a browser marks as coming from another site are refused as well.
//! - Changes go through the same functions as the admin API ([`super::operator`],
//!   [`super::reconcile::store_list`]), with the operator's name in the audit.
//! - Pages are maud templates ([`pages`]) with one small stylesheet and one optional script, all
//!   compiled in; a strict Content-Security-Policy allows nothing else.

pub mod pages;
pub mod session;

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::admin::{action_filter, detail_json, is_action_id};
use super::operator::{self, OpBody};
use super::{ApiError, AppState};
use crate::domain::reconcile::{is_reconciliation_id, Outcome};
use crate::domain::{Reason, Status};
use crate::intake::leavers::{self, Leaver};
use crate::store::{ActionDetail, ActionFilter, ActionRecord, LeaverRecord, ReconciliationRecord};
use pages::{Candidate, Frame, Nav};
use session::{Keys, Session};

/// The largest change form (a note and a few fields).
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Held actions per page of the queue.
const QUEUE_PAGE: u32 = 50;
/// Actions per page of the list.
const LIST_PAGE: u32 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(queue))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/actions", get(actions))
        .route("/console/actions/{id}", get(action))
        .route("/console/actions/{id}/{verb}", post(change))
        .route("/console/brake", get(brake))
        .route("/console/brake/release", post(release))
        .route(
            "/console/reconciliations",
            get(reconciliations).post(reconcile),
        )
        .route("/console/reconciliations/{id}", get(reconciliation))
        .route(
            "/console/reconciliations/{id}/report.csv",
            get(reconciliation_csv),
        )
        .route("/console/reconciliations/{id}/apply", post(apply_gaps))
        .route(
            "/console/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", pages::CSS) }),
        )
        .route(
            "/console/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", pages::JS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A page with the console's headers: no caching of operator data, no framing, nothing loaded
/// from anywhere but this binary.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut resp = (status, pages::render(markup)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn bare(status: StatusCode, title: &str, content: Markup) -> Response {
    let frame = Frame {
        title,
        nav: Nav::None,
        session: None,
        refresh: None,
    };
    page(status, pages::layout(&frame, content))
}

/// A signed-in operator, taken from the request head before anything else is read.
pub struct Operator {
    session: Session,
    keys: Keys,
    csrf: String,
    secure: bool,
}

impl Operator {
    fn name(&self) -> &str {
        &self.session.operator
    }

    fn frame<'a>(&'a self, title: &'a str, nav: Nav) -> Frame<'a> {
        Frame {
            title,
            nav,
            session: Some((self.name(), &self.csrf)),
            refresh: None,
        }
    }

    fn show(&self, title: &str, nav: Nav, content: Markup) -> Response {
        page(
            StatusCode::OK,
            pages::layout(&self.frame(title, nav), content),
        )
    }

    fn problem(&self, e: &ApiError, back: &str) -> Response {
        let status = e.status();
        page(
            status,
            pages::layout(
                &self.frame("Not done", Nav::None),
                pages::problem(status.as_u16(), &e.message(), back),
            ),
        )
    }

    /// Refuses a change whose form lacks this session's CSRF token: 403, nothing changed.
    fn refuse_without_csrf(&self, form: &HashMap<String, String>) -> Option<Response> {
        match form.get("csrf") {
            Some(t) if self.keys.csrf_ok(&self.session, t) => None,
            _ => {
                tracing::warn!(operator = %self.name(), "console change refused: missing or wrong CSRF token");
                Some(bare(
                    StatusCode::FORBIDDEN,
                    "Refused",
                    pages::problem(
                        403,
                        "This form is not from this session (missing or wrong CSRF token). Nothing was changed; reload the page and try again.",
                        "/console",
                    ),
                ))
            }
        }
    }

    fn op_body(&self, form: &HashMap<String, String>) -> OpBody {
        OpBody {
            workfront_user_id: field(form, "workfront_user_id"),
            r#override: None,
            operator: Some(self.name().to_string()),
            note: field(form, "note").map(|n| n.chars().take(500).collect()),
        }
    }
}

fn disabled() -> Response {
    bare(
        StatusCode::FORBIDDEN,
        "Console disabled",
        pages::problem(
            403,
            "The console is disabled because no admin token is configured (admin.token or admin.token_file).",
            "/console/login",
        ),
    )
}

fn keys(app: &AppState) -> Option<Keys> {
    app.settings
        .admin
        .token
        .as_ref()
        .map(|t| Keys::from_token(t.expose_secret()))
}

/// A request that the browser says comes from another site (`Sec-Fetch-Site`). `Origin` is not
/// compared with `Host`: an ingress may rewrite `Host`. The CSRF token is the guard that counts;
/// this refuses the obvious cases before a body is read.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s != "same-origin" && s != "none")
}

/// Where sign-in may send the operator back to: console pages only.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/console")
        && !next.contains("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        next
    } else {
        "/console"
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Some(keys) = keys(app) else {
            return Err(disabled());
        };
        if parts.method == Method::POST && cross_site(&parts.headers) {
            return Err(bare(
                StatusCode::FORBIDDEN,
                "Refused",
                pages::problem(403, "A change from another site is refused.", "/console"),
            ));
        }
        let session = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| session::cookie_value(h, session::COOKIE))
            .and_then(|v| keys.open(v, app.clock.now_ms()));
        let Some(session) = session else {
            // Back to where they were after signing in (pages only; a change is not replayed).
            let next = if parts.method == Method::GET {
                parts
                    .uri
                    .path_and_query()
                    .map_or("/console", |p| p.as_str())
            } else {
                "/console"
            };
            let mut to = url::form_urlencoded::Serializer::new(String::new());
            to.append_pair("next", safe_next(next));
            return Err(Redirect::to(&format!("/console/login?{}", to.finish())).into_response());
        };
        let csrf = keys.csrf(&session);
        Ok(Operator {
            session,
            keys,
            csrf,
            secure: secure_cookie(app),
        })
    }
}

fn secure_cookie(app: &AppState) -> bool {
    app.settings.server.tls.is_some() || app.settings.admin.console_secure_cookie
}

fn field(form: &HashMap<String, String>, key: &str) -> Option<String> {
    form.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

async fn read_form(body: Body, limit: usize) -> Result<HashMap<String, String>, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

// ---- sign-in -----------------------------------------------------------------------------------

async fn login_page(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if app.settings.admin.token.is_none() {
        return disabled();
    }
    let next = q.get("next").map_or("/console", |n| safe_next(n));
    bare(StatusCode::OK, "Sign in", pages::login(None, next))
}

async fn login(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let (Some(token), Some(keys)) = (&app.settings.admin.token, keys(&app)) else {
        return disabled();
    };
    if cross_site(&headers) {
        return bare(
            StatusCode::FORBIDDEN,
            "Refused",
            pages::problem(
                403,
                "A sign-in from another site is refused.",
                "/console/login",
            ),
        );
    }
    let form = match read_form(body, MAX_FORM_BYTES).await {
        Ok(f) => f,
        Err(e) => {
            return bare(
                e.status(),
                "Sign in",
                pages::login(Some(&e.message()), "/console"),
            )
        }
    };
    let next = form.get("next").map_or("/console", |n| safe_next(n));
    let given = form.get("token").map(String::as_str).unwrap_or_default();
    let ok: bool = Sha256::digest(given.trim().as_bytes())
        .ct_eq(&Sha256::digest(token.expose_secret().as_bytes()))
        .into();
    if !ok {
        tracing::warn!("console sign-in refused: wrong admin token");
        return bare(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            pages::login(Some("That is not the admin token."), next),
        );
    }
    let operator = match session::operator_name(form.get("operator").map_or("", |s| s.as_str())) {
        Ok(n) => n,
        Err(why) => {
            return bare(
                StatusCode::BAD_REQUEST,
                "Sign in",
                pages::login(Some(why), next),
            )
        }
    };
    let ttl = app.settings.admin.console_session;
    let expires = app.clock.now_ms() + ttl.as_millis() as i64;
    let value = keys.issue(&operator, &crate::domain::new_id("ses"), expires);
    tracing::info!(operator = %operator, "console sign-in");
    let mut resp = see_other(next);
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(
        &value,
        ttl.as_secs(),
        secure_cookie(&app),
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(op: Operator, body: Body) -> Response {
    let form = match read_form(body, MAX_FORM_BYTES).await {
        Ok(f) => f,
        Err(e) => return op.problem(&e, "/console"),
    };
    if let Some(r) = op.refuse_without_csrf(&form) {
        return r;
    }
    tracing::info!(operator = %op.name(), "console sign-out");
    let mut resp = see_other("/console/login");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie("", 0, op.secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

// ---- actions -----------------------------------------------------------------------------------

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

async fn queue(
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

async fn action(
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

async fn change(
    op: Operator,
    State(app): State<AppState>,
    Path((id, verb)): Path<(String, String)>,
    body: Body,
) -> Response {
    let back = format!("/console/actions/{id}");
    let form = match read_form(body, MAX_FORM_BYTES).await {
        Ok(f) => f,
        Err(e) => return op.problem(&e, &back),
    };
    if let Some(r) = op.refuse_without_csrf(&form) {
        return r;
    }
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

async fn actions(
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

async fn brake(
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

async fn release(op: Operator, State(app): State<AppState>, body: Body) -> Response {
    let form = match read_form(body, MAX_FORM_BYTES).await {
        Ok(f) => f,
        Err(e) => return op.problem(&e, "/console/brake"),
    };
    if let Some(r) = op.refuse_without_csrf(&form) {
        return r;
    }
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let e = ApiError::BadRequest("confirm the release by ticking the box first".into());
        return op.problem(&e, "/console/brake");
    }
    match operator::release(&app, &op.op_body(&form)).await {
        Ok(_) => see_other("/console/brake?done=released"),
        Err(e) => op.problem(&e, "/console/brake"),
    }
}

// ---- reconciliations ---------------------------------------------------------------------------

async fn reconciliations(op: Operator, State(app): State<AppState>) -> Response {
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

async fn reconcile(op: Operator, State(app): State<AppState>, body: Body) -> Response {
    let back = "/console/reconciliations";
    // Form-encoding makes a CSV up to three times longer.
    let form = match read_form(body, 3 * super::reconcile::MAX_LIST_BYTES).await {
        Ok(f) => f,
        Err(e) => return op.problem(&e, back),
    };
    if let Some(r) = op.refuse_without_csrf(&form) {
        return r;
    }
    let csv = form.get("csv").map_or("", String::as_str);
    let list = match leavers::parse_csv(csv.as_bytes()).map_err(super::reconcile::list_error) {
        Ok(l) => l,
        Err(e) => return op.problem(&e, back),
    };
    let apply = form.get("apply").map(String::as_str) == Some("yes");
    match super::reconcile::store_list(&app, list.rows, apply, &origin(&op)).await {
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

async fn reconciliation(
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

async fn reconciliation_csv(
    op: Operator,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let back = "/console/reconciliations";
    let rows = match load_report(&app, &id).await {
        Ok((_, rows)) => rows,
        Err(e) => return op.problem(&e, back),
    };
    match super::reconcile::to_csv(&rows) {
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
async fn apply_gaps(
    op: Operator,
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let back = format!("/console/reconciliations/{id}");
    let form = match read_form(body, MAX_FORM_BYTES).await {
        Ok(f) => f,
        Err(e) => return op.problem(&e, &back),
    };
    if let Some(r) = op.refuse_without_csrf(&form) {
        return r;
    }
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
    match super::reconcile::store_list(&app, gaps, true, &origin(&op)).await {
        Ok(new) => see_other(&format!("/console/reconciliations/{new}")),
        Err(e) => op.problem(&e, &back),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_sends_back_to_console_pages_only() {
        assert_eq!(
            safe_next("/console/actions?status=held"),
            "/console/actions?status=held"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/console//evil",
            "/admin/v1/actions",
            "/console\\x",
            "/console/a b",
        ] {
            assert_eq!(safe_next(bad), "/console", "{bad:?}");
        }
    }

    #[test]
    fn posts_from_another_site_are_told_apart_from_same_origin_ones() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(!cross_site(&h(&[])), "curl sends no Sec-Fetch-Site");
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&h(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(
            !cross_site(&h(&[("sec-fetch-site", "none")])),
            "typed into the address bar"
        );
    }
}
