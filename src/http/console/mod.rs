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
//!
//! Files: this one holds the routes, the session gate and sign-in; [`actions`] the queue, an
//! action, the list and the brake; [`reports`] the reconciliations.

mod actions;
pub mod pages;
mod reports;
pub mod session;

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::operator::OpBody;
use super::{ApiError, AppState};
use pages::{Frame, Nav};
use session::{Keys, Session};

/// The largest change form (a note and a few fields).
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Held actions per page of the queue.
const QUEUE_PAGE: u32 = 50;
/// Actions per page of the list.
const LIST_PAGE: u32 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(actions::queue))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/actions", get(actions::actions))
        .route("/console/actions/{id}", get(actions::action))
        .route("/console/actions/{id}/{verb}", post(actions::change))
        .route("/console/brake", get(actions::brake))
        .route("/console/brake/release", post(actions::release))
        .route(
            "/console/reconciliations",
            get(reports::reconciliations).post(reports::reconcile),
        )
        .route(
            "/console/reconciliations/{id}",
            get(reports::reconciliation),
        )
        .route(
            "/console/reconciliations/{id}/report.csv",
            get(reports::reconciliation_csv),
        )
        .route(
            "/console/reconciliations/{id}/apply",
            post(reports::apply_gaps),
        )
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

    /// The form of a change: read (at most `limit` bytes), then refused unless it carries this
    /// session's CSRF token. The refusal is the page to answer (boxed: a response is large).
    async fn change_form(
        &self,
        body: Body,
        limit: usize,
        back: &str,
    ) -> Result<HashMap<String, String>, Box<Response>> {
        let form = read_form(body, limit)
            .await
            .map_err(|e| Box::new(self.problem(&e, back)))?;
        match self.refuse_without_csrf(&form) {
            Some(refused) => Err(Box::new(refused)),
            None => Ok(form),
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
    if let Err(refused) = op.change_form(body, MAX_FORM_BYTES, "/console").await {
        return *refused;
    }
    tracing::info!(operator = %op.name(), "console sign-out");
    let mut resp = see_other("/console/login");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie("", 0, op.secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
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
