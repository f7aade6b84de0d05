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

/// (id, email, termination date) as a listing gives them.
type Listed = Vec<(String, String, Option<String>)>;
/// What a fake answers when it refuses a listing.
type Refusal = (StatusCode, &'static str);

/// Everyone the fake knows, as (id, email, date), for the listings; plus someone still employed.
fn everyone(st: &FakeState, h_ok: bool) -> Result<Listed, Refusal> {
    gate_list(st, h_ok)?;
    let mut all: Vec<_> = st
        .people
        .lock()
        .unwrap()
        .iter()
        .map(|(id, (e, d))| (id.clone(), e.clone(), d.clone()))
        .collect();
    all.push(("H-1".into(), "still.here@example.com".into(), None));
    all.sort();
    Ok(all)
}

fn gate_list(st: &FakeState, authorized: bool) -> Result<(), Refusal> {
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
    st.served.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn bamboo_report(State(st): S, q: Query<HashMap<String, String>>, h: HeaderMap) -> Response {
    if q.get("onlyCurrent").map(String::as_str) != Some("false") {
        return (
            StatusCode::BAD_REQUEST,
            "onlyCurrent=false is needed to see leavers",
        )
            .into_response();
    }
    match everyone(&st, basic(&h, "bamboo-key", "x")) {
        Ok(all) => Json(json!({"fields": [], "employees": all.iter().map(|(id, e, d)|
            json!({"id": id, "workEmail": e, "terminationDate": d.clone().unwrap_or_else(|| "0000-00-00".into())})).collect::<Vec<_>>()}))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn bob_search(State(st): S, h: HeaderMap, Json(body): Json<Value>) -> Response {
    if body["showInactive"] != true {
        return (
            StatusCode::BAD_REQUEST,
            "showInactive is needed to see leavers",
        )
            .into_response();
    }
    match everyone(&st, basic(&h, "svc-user", "bob-token")) {
        Ok(all) => Json(json!({"employees": all.iter().map(|(id, e, d)|
            json!({"id": id, "email": e, "internal": {"terminationDate": d}})).collect::<Vec<_>>()}))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

async fn gusto_company(
    State(st): S,
    Path(company): Path<String>,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if company != "co-1" {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    // 150 more employees sort first, so the leavers are on the second page of 100.
    let per: usize = q.get("per").and_then(|p| p.parse().ok()).unwrap_or(25);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    match everyone(&st, bearer(&h, "gusto-token")) {
        Ok(mut all) => {
            all.extend((0..150).map(|i| (format!("F-{i:03}"), format!("f{i}@example.com"), None)));
            all.sort();
            let shown: Vec<Value> = all
                .iter()
                .skip((page.max(1) - 1) * per)
                .take(per)
                .map(|(id, e, d)| {
                    let terminations: Vec<Value> =
                        d.iter().map(|d| json!({"effective_date": d})).collect();
                    json!({"uuid": id, "work_email": e, "terminations": terminations})
                })
                .collect();
            Json(shown).into_response()
        }
        Err(r) => r.into_response(),
    }
}

async fn personio_persons(
    State(st): S,
    q: Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    match everyone(&st, personio_authorized(&st, &h)) {
        Ok(all) => {
            let status = |d: &Option<String>| if d.is_some() { "INACTIVE" } else { "ACTIVE" };
            let data: Vec<Value> = all
                .iter()
                .map(|(id, e, d)| json!({"id": id, "email": e, "status": status(d)}))
                .collect();
            // Two pages: the first person alone, then the rest.
            Json(if q.get("cursor").is_none() {
                json!({"_data": data[..1], "_meta": {"links": {"next": {"href": "/v2/persons?limit=50&cursor=2"}}}})
            } else {
                json!({"_data": data[1..], "_meta": {"links": {}}})
            })
            .into_response()
        }
        Err(r) => r.into_response(),
    }
}

impl FakeVendor {
    async fn start(kind: &str) -> FakeVendor {
        let state = Arc::new(FakeState::default());
        let router = match kind {
            "bamboohr" => Router::new()
                .route("/api/gateway.php/acme/v1/employees/{id}", get(bamboo))
                .route(
                    "/api/gateway.php/acme/v1/reports/custom",
                    post(bamboo_report),
                ),
            "hibob" => Router::new()
                .route("/v1/people/{id}", get(bob))
                .route("/v1/people/search", post(bob_search)),
            "gusto" => Router::new()
                .route("/v1/employees/{id}", get(gusto_employee))
                .route("/v1/companies/{company}/employees", get(gusto_company))
                .route("/v1/employees/{id}/terminations", get(gusto_terminations)),
            "personio" => Router::new()
                .route("/v2/auth/token", post(personio_token))
                .route("/v2/persons", get(personio_persons))
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
            "gusto" => ("secret = \"gusto-verification-token-1\"", format!("base_url = \"{}\"\naccess_token = \"gusto-token\"\ncompany_id = \"co-1\"", self.base)),
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

#[tokio::test]
async fn a_scheduled_reconciliation_finds_a_leaver_no_webhook_announced_and_with_apply_deactivates_them(
) {
    for kind in VENDORS {
        let fake = FakeVendor::start(kind).await;
        let app0 = app_for(kind, &fake).await;
        let today = app0.clock.now().to_zoned(jiff::tz::TimeZone::UTC).date();
        drop(app0);
        // Kim left yesterday and no webhook said so; Jane left long before the lookback.
        fake.know(
            "H-88",
            "kim.lee@example.com",
            Some(&today.yesterday().unwrap().to_string()),
        );
        fake.know("H-90", "jane.doe@example.com", Some("2001-01-31"));
        let overlay = format!(
            "{}\n[reconcile]\ninterval = \"6h\"\nlookback = \"30d\"\napply = true\n",
            fake.config(kind)
        );
        let app = spawn_app_with(options(&overlay)).await;
        wait::until_true(
            &format!("{kind}: Kim to be deactivated by the scheduled run"),
            Duration::from_secs(15),
            || app.is_active(KIM) == Some(false),
        )
        .await;
        let list = app.admin_get("/admin/v1/actions?source=reconcile").await;
        let actions = list.body["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 1, "{kind}: {}", list.body);
        assert_eq!(actions[0]["employee"]["email"], "kim.lee@example.com");
        assert_eq!(
            app.is_active(JANE),
            Some(true),
            "{kind}: outside the lookback"
        );
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "offboard_reconcile_gaps"),
            Some(1.0),
            "{kind}: {m}"
        );
    }
}

#[tokio::test]
async fn a_scheduled_reconciliation_without_apply_reports_and_notifies_the_gap_and_writes_nothing()
{
    let receiver = Receiver::start().await;
    let fake = FakeVendor::start("hibob").await;
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    fake.know(
        "H-88",
        "kim.lee@example.com",
        Some(&today.yesterday().unwrap().to_string()),
    );
    let overlay = format!(
        "{}\n[reconcile]\ninterval = \"6h\"\n[notify]\nwebhook_url = \"{}\"\n",
        fake.config("hibob"),
        receiver.url
    );
    let app = spawn_app_with(options(&overlay)).await;
    let note = receiver
        .wait_for("the gap notification", |n| {
            n["text"]
                .as_str()
                .is_some_and(|t| t.contains("still active"))
        })
        .await;
    assert!(
        note["text"].as_str().unwrap().contains("1 leaver"),
        "{note}"
    );
    assert_eq!(app.is_active(KIM), Some(true));
    assert_eq!(app.puts(), 0);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "offboard_reconcile_gaps"), Some(1.0), "{m}");
}

#[tokio::test]
async fn a_scheduled_reconciliation_whose_listing_fails_notifies_the_operator_and_writes_nothing() {
    let receiver = Receiver::start().await;
    let fake = FakeVendor::start("bamboohr").await;
    fake.state.down.store(usize::MAX / 2, Ordering::SeqCst);
    let overlay = format!(
        "{}\n[reconcile]\ninterval = \"6h\"\napply = true\n[notify]\nwebhook_url = \"{}\"\n",
        fake.config("bamboohr"),
        receiver.url
    );
    let app = spawn_app_with(options(&overlay)).await;
    let note = receiver
        .wait_for("the listing failure notification", |n| {
            n["text"]
                .as_str()
                .is_some_and(|t| t.contains("could not list its leavers"))
        })
        .await;
    assert!(note["text"].as_str().unwrap().contains("503"), "{note}");
    assert_eq!(app.puts(), 0);
}
