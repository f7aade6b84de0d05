//! Thin payloads enriched from the HR vendor's API (SPEC §4.3), against one local fake per vendor
//! API: the endpoints the worker calls, their authentication, Personio's token and pages, and
//! failure injection (the API down for a while).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use crate::harness::*;
use crate::wait;

const VENDORS: [&str; 4] = ["bamboohr", "hibob", "gusto", "personio"];

#[derive(Default)]
struct FakeState {
    /// HR employee id -> (work email, termination date).
    people: Mutex<HashMap<String, (String, Option<String>)>>,
    /// Answer 503 to this many requests first.
    down: AtomicUsize,
    /// Requests answered with data (authenticated).
    served: AtomicUsize,
    tokens: AtomicUsize,
}

/// A vendor API on 127.0.0.1, only that vendor's routes.
struct FakeVendor {
    base: String,
    state: Arc<FakeState>,
}

type S = State<Arc<FakeState>>;

fn basic(headers: &HeaderMap, user: &str, pass: &str) -> bool {
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Basic {want}").as_str())
}

fn bearer(headers: &HeaderMap, token: &str) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {token}").as_str())
}

/// The common part: down, auth, unknown.
/// Errors as a proxy (503, HTML) or the vendor (401, 404) would answer them.
fn gate(
    st: &FakeState,
    authorized: bool,
    id: &str,
) -> Result<(String, Option<String>), (StatusCode, &'static str)> {
    if st
        .down
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "<html>down</html>"));
    }
    if !authorized {
        return Err((StatusCode::UNAUTHORIZED, r#"{"error": "unauthorized"}"#));
    }
    let person = st.people.lock().unwrap().get(id).cloned();
    match person {
        Some(p) => {
            st.served.fetch_add(1, Ordering::SeqCst);
            Ok(p)
        }
        None => Err((StatusCode::NOT_FOUND, r#"{"error": "not found"}"#)),
    }
}

async fn bamboo(
    State(st): S,
    Path(id): Path<String>,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if !q
        .get("fields")
        .is_some_and(|f| f.contains("workEmail") && f.contains("terminationDate"))
    {
        return (StatusCode::BAD_REQUEST, "fields missing").into_response();
    }
    match gate(&st, basic(&h, "bamboo-key", "x"), &id) {
        Ok((email, date)) => Json(json!({"id": id, "workEmail": email,
            "terminationDate": date.unwrap_or_else(|| "0000-00-00".into()), "status": "Inactive"}))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn bob(State(st): S, Path(id): Path<String>, h: HeaderMap) -> Response {
    match gate(&st, basic(&h, "svc-user", "bob-token"), &id) {
        Ok((email, date)) => Json(json!({"id": id, "email": email, "internal": {"terminationDate": date, "status": "Terminated"}})).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn gusto_employee(State(st): S, Path(id): Path<String>, h: HeaderMap) -> Response {
    match gate(&st, bearer(&h, "gusto-token"), &id) {
        Ok((email, _)) => Json(json!({"uuid": id, "email": "personal@home.example", "work_email": email, "terminated": true})).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn gusto_terminations(State(st): S, Path(id): Path<String>, h: HeaderMap) -> Response {
    match gate(&st, bearer(&h, "gusto-token"), &id) {
        Ok((_, date)) => Json(match date {
            Some(d) => json!([{"uuid": "t1", "effective_date": "2001-01-01", "cancelled": true}, {"uuid": "t2", "effective_date": d}]),
            None => json!([]),
        })
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn personio_token(State(st): S, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some("personio-id")
        && form.get("client_secret").map(String::as_str) == Some("personio-secret");
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let n = st.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({"access_token": format!("ptok-{n}"), "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

fn personio_authorized(st: &FakeState, h: &HeaderMap) -> bool {
    let n = st.tokens.load(Ordering::SeqCst);
    n > 0 && bearer(h, &format!("ptok-{n}"))
}

async fn personio_person(State(st): S, Path(id): Path<String>, h: HeaderMap) -> Response {
    match gate(&st, personio_authorized(&st, &h), &id) {
        Ok((email, _)) => {
            Json(json!({"id": id, "email": email, "first_name": "X"})).into_response()
        }
        Err(r) => r.into_response(),
    }
}

async fn personio_employments(
    State(st): S,
    Path(id): Path<String>,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    match gate(&st, personio_authorized(&st, &h), &id) {
        // Two pages: the date is on the second.
        Ok((_, date)) => Json(if q.get("cursor").is_none() {
            json!({"_data": [{"id": "e1", "termination": {"termination_date": null}}],
                "_meta": {"links": {"next": {"href": format!("/v2/persons/{id}/employments?cursor=2")}}}})
        } else {
            json!({"_data": [{"id": "e2", "termination": {"termination_date": date}}], "_meta": {"links": {}}})
        })
        .into_response(),
        Err(r) => r.into_response(),
    }
}

impl FakeVendor {
    async fn start(kind: &str) -> FakeVendor {
        let state = Arc::new(FakeState::default());
        let router = match kind {
            "bamboohr" => {
                Router::new().route("/api/gateway.php/acme/v1/employees/{id}", get(bamboo))
            }
            "hibob" => Router::new().route("/v1/people/{id}", get(bob)),
            "gusto" => Router::new()
                .route("/v1/employees/{id}", get(gusto_employee))
                .route("/v1/employees/{id}/terminations", get(gusto_terminations)),
            "personio" => Router::new()
                .route("/v2/auth/token", post(personio_token))
                .route("/v2/persons/{id}", get(personio_person))
                .route("/v2/persons/{id}/employments", get(personio_employments)),
            other => panic!("no fake for {other}"),
        }
        .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeVendor {
            base: format!("http://{addr}"),
            state,
        }
    }

    fn know(&self, id: &str, email: &str, date: Option<&str>) {
        self.state
            .people
            .lock()
            .unwrap()
            .insert(id.into(), (email.into(), date.map(str::to_string)));
    }

    /// The source table of this vendor, with its `api`.
    fn config(&self, kind: &str) -> String {
        let (auth, api) = match kind {
            "bamboohr" => ("secret = \"bamboo-private-key-1\"", format!("base_url = \"{}/api/gateway.php/acme\"\napi_key = \"bamboo-key\"", self.base)),
            "hibob" => ("secret = \"bob-secret-1\"", format!("base_url = \"{}\"\nservice_user_id = \"svc-user\"\ntoken = \"bob-token\"", self.base)),
            "gusto" => ("secret = \"gusto-verification-token-1\"", format!("base_url = \"{}\"\naccess_token = \"gusto-token\"", self.base)),
            "personio" => ("token = \"personio-token-1\"", format!("base_url = \"{}\"\nclient_id = \"personio-id\"\nclient_secret = \"personio-secret\"", self.base)),
            other => panic!("{other}"),
        };
        format!(
            "[sources.v]\nkind = \"{kind}\"\n{auth}\n[sources.v.api]\n{api}\ntimeout = \"2s\"\n"
        )
    }
}

/// A thin termination of HR employee `id` in `kind`'s own format.
fn thin_termination(app: &TestApp, kind: &str, id: &str) -> String {
    let now = app.clock.now();
    match kind {
        "bamboohr" => json!({"employees": [{"id": id, "action": "Updated", "changedFields": ["Employment Status"],
            "fields": {"Employment Status": {"value": "Terminated"}}}]}),
        "hibob" => json!({"companyId": 1, "type": "employee.left", "triggeredBy": "system",
            "triggeredAt": now.to_zoned(jiff::tz::TimeZone::UTC).strftime("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
            "version": "v2", "data": {"employeeId": id}}),
        "gusto" => json!({"uuid": format!("u-{id}-{}", now.as_millisecond()), "event_type": "employee.termination_effective",
            "resource_type": "Company", "resource_uuid": "c-1", "entity_type": "Employee", "entity_uuid": id, "timestamp": now.as_second()}),
        "personio" => json!({"company_id": "c1", "event_name": "employment.terminated", "occurred_at": now.to_string(),
            "payload": {"employment": {"id": "emp-1", "person": {"id": id}}}, "meta": {}}),
        other => panic!("{other}"),
    }
    .to_string()
}

async fn app_for(kind: &str, fake: &FakeVendor) -> TestApp {
    spawn_app_with(options(&fake.config(kind))).await
}

async fn send(app: &TestApp, kind: &str, id: &str) -> String {
    let body = thin_termination(app, kind, id);
    let headers = app.settings.sources["v"].sign(body.as_bytes(), app.clock.now());
    let mut req = app.http.post(format!("{}/webhooks/v", app.base)).body(body);
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "{kind}");
    let v: Value = resp.json().await.unwrap();
    v["actions"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{kind}: {v}"))
        .to_string()
}

fn lookups(action: &Value) -> Vec<Value> {
    action["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["step"] == "hr_lookup")
        .map(|e| e["detail"].clone())
        .collect()
}

#[tokio::test]
async fn each_vendor_api_gives_the_work_email_that_matches_a_thin_delivery() {
    for kind in VENDORS {
        let fake = FakeVendor::start(kind).await;
        // H-77 is unknown to Workfront: only the email from the vendor can find Jane.
        fake.know("H-77", "jane.doe@example.com", None);
        let app = app_for(kind, &fake).await;
        let id = send(&app, kind, "H-77").await;
        let done = app.wait_for_status(&id, "succeeded").await;
        assert_eq!(done["workfront_user"]["ID"], JANE, "{kind}");
        assert_eq!(app.is_active(JANE), Some(false), "{kind}");
        let l = lookups(&done);
        assert_eq!(l.len(), 1, "{kind}: asked once: {l:?}");
        assert_eq!(l[0]["vendor"], kind);
        assert_eq!(l[0]["email"], "jane.doe@example.com", "{kind}");
        assert_eq!(
            done["employee"]["email"], "jane.doe@example.com",
            "{kind}: stored"
        );
        assert!(fake.state.served.load(Ordering::SeqCst) >= 1, "{kind}");
        let log = done.to_string();
        for secret in [
            "bamboo-key",
            "bob-token",
            "gusto-token",
            "personio-secret",
            "ptok-",
        ] {
            assert!(!log.contains(secret), "{kind}: {secret} in the audit");
        }
    }
}

#[tokio::test]
async fn while_the_vendor_api_is_down_the_action_waits_pending_hr_api_then_completes() {
    for kind in VENDORS {
        let fake = FakeVendor::start(kind).await;
        fake.know("H-77", "jane.doe@example.com", None);
        fake.state.down.store(usize::MAX / 2, Ordering::SeqCst);
        let app = app_for(kind, &fake).await;
        let id = send(&app, kind, "H-77").await;
        app.wait_for_action(&id, "pending/hr_api", |a| {
            a["status"] == "pending" && a["reason"] == "hr_api"
        })
        .await;
        // Several outages in a row never make it fail, and nothing reached Workfront.
        wait::until_true("a few more tries", Duration::from_secs(10), || {
            usize::MAX / 2 - fake.state.down.load(Ordering::SeqCst) >= 3
        })
        .await;
        assert_eq!(app.puts(), 0, "{kind}");
        fake.state.down.store(0, Ordering::SeqCst);
        let done = app.wait_for_status(&id, "succeeded").await;
        let l = lookups(&done);
        assert!(l.iter().any(|d| d["ok"] == false && d["error"].as_str().is_some_and(|e| e.contains("503"))), "{kind}: {l:?}");
        assert_eq!(l.last().unwrap()["ok"], true, "{kind}");
        assert_eq!(app.is_active(JANE), Some(false), "{kind}");
    }
}

#[tokio::test]
async fn an_employee_the_vendor_does_not_know_is_matched_on_the_employee_id_alone() {
    for kind in VENDORS {
        let fake = FakeVendor::start(kind).await;
        let app = app_for(kind, &fake).await;
        // E-1042 is Jane's extRefID in Workfront; the vendor does not know it.
        let id = send(&app, kind, "E-1042").await;
        let done = app.wait_for_status(&id, "succeeded").await;
        let l = lookups(&done);
        assert_eq!(l[0]["found"], false, "{kind}");
        assert!(l[0]["note"].as_str().unwrap().contains("employee id alone"));
        assert_eq!(app.is_active(JANE), Some(false), "{kind}");
    }
}

#[tokio::test]
async fn a_termination_date_from_the_vendor_schedules_the_action_for_that_date() {
    for kind in VENDORS {
        let fake = FakeVendor::start(kind).await;
        fake.know("H-77", "jane.doe@example.com", Some("2099-01-31"));
        let app = app_for(kind, &fake).await;
        let id = send(&app, kind, "H-77").await;
        let a = app.wait_for_status(&id, "scheduled").await;
        // The date read per `[lifecycle] date_only_means` (by default: access ends after that day).
        let due = a["due_at"].as_str().unwrap();
        assert!(
            due.starts_with("2099-01-31") || due.starts_with("2099-02-01"),
            "{kind}: {due}"
        );
        assert_eq!(lookups(&a)[0]["termination_date"], "2099-01-31");
        assert_eq!(app.puts(), 0);
        assert_eq!(app.is_active(JANE), Some(true));
    }
}
