//! The simulator's HTTP surface.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::{parse_users, Fault, LoggedRequest, SimState};

pub(crate) type Shared = Arc<SimState>;

/// Fields a USER has in this simulator beyond those present on the users themselves.
const KNOWN_FIELDS: &[&str] = &[
    "ID",
    "objCode",
    "name",
    "firstName",
    "lastName",
    "emailAddr",
    "username",
    "isActive",
    "isAdmin",
    "extRefID",
    "ssoUsername",
    "accessLevelID",
    "licenseType",
    "homeGroupID",
    "companyID",
    "managerID",
    "title",
    "lastLoginDate",
    "scheduleDeactivationDate",
    "parameterValues",
];

pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/attask/api/{version}/user/search", get(search))
        .route(
            "/attask/api/{version}/user/{id}",
            get(get_user).put(put_user),
        )
        .layer(middleware::from_fn_with_state(state.clone(), gate));
    Router::new()
        .route("/__sim/requests", get(log))
        .route("/__sim/stats", get(stats))
        .route("/__sim/users", get(users).put(replace_users))
        .route("/__sim/faults", axum::routing::post(add_fault))
        .route(
            "/integrations/oauth2/api/v1/jwt/exchange",
            axum::routing::post(super::auth::jwt_exchange),
        )
        .route("/ims/token/v3", axum::routing::post(super::auth::ims_token))
        .merge(api)
        .with_state(state)
}

fn wf_error(status: StatusCode, class: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"class": class, "message": message}})),
    )
        .into_response()
}

/// Runs each Workfront request in its own task, as a real server does: a request that reached
/// the server is carried out even when its caller goes away mid-request (a killed offboard does
/// not undo a PUT), and the in-flight count and the log are kept for it.
async fn gate(State(st): State<Shared>, req: Request, next: Next) -> Response {
    match tokio::spawn(admit(st, req, next)).await {
        Ok(resp) => resp,
        Err(_) => wf_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "com.attask.common.InternalServerErrorException",
            "the simulator failed",
        ),
    }
}

/// Everything Workfront does around a request: the concurrency cap (429), authentication,
/// latency, injected faults, and the request log.
async fn admit(st: Shared, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let shown_query = redact_key(&query);
    let is_write = method == "PUT";
    if is_write {
        st.writes_in_flight.fetch_add(1, Ordering::SeqCst);
    }
    let admitted = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let response = if admitted > st.config.max_concurrency {
        wf_error(
            StatusCode::TOO_MANY_REQUESTS,
            "com.attask.common.TooManyRequestsException",
            "Too many concurrent API requests for the given customer",
        )
    } else {
        st.max_in_flight.fetch_max(admitted, Ordering::SeqCst);
        handle(&st, req, next, &query).await
    };
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    if is_write {
        st.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    st.log.lock().unwrap().push(LoggedRequest {
        method,
        path,
        query: shown_query,
        status: response.status().as_u16(),
        at: jiff::Timestamp::now().to_string(),
        in_flight: admitted,
    });
    response
}

async fn handle(st: &Shared, req: Request, next: Next, query: &str) -> Response {
    if !st.config.latency.is_zero() {
        tokio::time::sleep(st.config.latency).await;
    }
    if !super::auth::authorized(st, req.headers(), query) {
        return wf_error(
            StatusCode::UNAUTHORIZED,
            "com.attask.common.AuthenticationException",
            "You are not currently logged in.",
        );
    }
    let fault = {
        let mut faults = st.faults.lock().unwrap();
        let method = req.method().as_str().to_string();
        let pos = faults.iter().position(|f| {
            f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&method))
        });
        pos.map(|i| {
            let f = &mut faults[i];
            let out = f.clone();
            f.count = f.count.saturating_sub(1);
            if f.count == 0 {
                faults.remove(i);
            }
            out
        })
    };
    if let Some(f) = fault {
        if f.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms)).await;
            if f.status == 0 {
                return next.run(req).await;
            }
        }
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if f.apply_then_fail {
            let _ = next.run(req).await;
        }
        if let Some(location) = &f.location {
            let mut resp = status.into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(location) {
                resp.headers_mut().insert(axum::http::header::LOCATION, v);
            }
            return resp;
        }
        if let Some(page) = f.html {
            return (status, axum::response::Html(page)).into_response();
        }
        if let Some(body) = f.body {
            return (status, Json(body)).into_response();
        }
        let class = f
            .class
            .as_deref()
            .unwrap_or("com.attask.common.InternalServerErrorException");
        let message = f.message.as_deref().unwrap_or("injected fault");
        return wf_error(status, class, message);
    }
    if st.config.fail_rate > 0.0 && fastrand::f64() < st.config.fail_rate {
        return wf_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "com.attask.common.InternalServerErrorException",
            "random failure",
        );
    }
    next.run(req).await
}

/// The query as logged: decoded for people, with the API key masked.
fn redact_key(query: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            if k == "apiKey" {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn pairs(query: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn field_value<'a>(user: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    if field.starts_with("DE:") {
        user.get("parameterValues").and_then(|p| p.get(field))
    } else {
        user.get(field)
    }
    .filter(|v| !v.is_null())
}

fn as_text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

fn known_field(st: &SimState, field: &str) -> bool {
    field.starts_with("DE:")
        || KNOWN_FIELDS.contains(&field)
        || st
            .users
            .lock()
            .unwrap()
            .iter()
            .any(|u| u.contains_key(field))
}

fn version_model(version: &str) -> String {
    version.trim_start_matches('v').replace('.', "_")
}

fn unsupported_field(version: &str, field: &str) -> Response {
    wf_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "com.attask.common.InvalidParameterException",
        &format!(
            "APIModel V{} does not support field {field} (User)",
            version_model(version)
        ),
    )
}

/// Unicode case-insensitive equality without allocating (a search compares every user).
fn same_ignoring_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// The case folding of [`same_ignoring_case`], as an index key.
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// One field's index: positions in the user table by case-folded value.
pub(crate) type FieldIndex = std::collections::HashMap<String, Vec<usize>>;

/// Positions (ascending) of the users whose `field` may equal `value` (`eq` or `cieq`): every
/// match is among them; the caller still applies its filters. Builds the field's index on first
/// use; `users` is the locked table the positions refer to.
fn candidates(st: &SimState, users: &[Map<String, Value>], field: &str, value: &str) -> Vec<usize> {
    let mut index = st.index.lock().unwrap();
    let by_value = index.entry(field.to_string()).or_insert_with(|| {
        let mut m = FieldIndex::new();
        for (i, u) in users.iter().enumerate() {
            if let Some(v) = field_value(u, field) {
                m.entry(fold(&as_text(v))).or_default().push(i);
            }
        }
        m
    });
    by_value.get(&fold(value)).cloned().unwrap_or_default()
}

fn matches(value: Option<&Value>, modifier: &str, wanted: &str) -> Option<bool> {
    let text = value.map(as_text);
    Some(match modifier {
        "eq" => text.as_deref() == Some(wanted),
        "ne" => text.as_deref() != Some(wanted),
        "cieq" => text.is_some_and(|t| same_ignoring_case(&t, wanted)),
        "cine" => text.is_none_or(|t| !same_ignoring_case(&t, wanted)),
        "contains" => text.is_some_and(|t| t.contains(wanted)),
        "cicontains" => text.is_some_and(|t| t.to_lowercase().contains(&wanted.to_lowercase())),
        "isnull" => text.is_none(),
        "notnull" => text.is_some(),
        _ => return None,
    })
}

/// Projects a user onto `fields=` (always with ID, name, objCode), or an error naming a bad field.
fn project(
    st: &SimState,
    user: &Map<String, Value>,
    fields: Option<&str>,
    version: &str,
) -> Result<Value, Box<Response>> {
    let mut out = Map::new();
    for key in ["ID", "name", "objCode"] {
        if let Some(v) = user.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.entry("objCode").or_insert(json!("USER"));
    for f in fields
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        if f == "*" {
            for (k, v) in user {
                out.insert(k.clone(), v.clone());
            }
            continue;
        }
        if !known_field(st, f) {
            return Err(Box::new(unsupported_field(version, f)));
        }
        out.insert(
            f.to_string(),
            field_value(user, f).cloned().unwrap_or(Value::Null),
        );
    }
    Ok(Value::Object(out))
}

async fn search(
    State(st): State<Shared>,
    Path(version): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let params = pairs(&q);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let limit: usize = match get("$$LIMIT").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if l <= 2000 => l,
        Some(_) => {
            return wf_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "java.lang.IllegalArgumentException",
                "$$LIMIT must be a number no greater than 2000",
            )
        }
    };
    let first: usize = get("$$FIRST").and_then(|f| f.parse().ok()).unwrap_or(0);
    let reserved = |k: &str| {
        matches!(
            k,
            "fields" | "$$LIMIT" | "$$FIRST" | "apiKey" | "sessionID" | "method"
        ) || k.ends_with("_Mod")
            || k.ends_with("_Sort")
            || k.ends_with("_Range")
    };
    let mut filters = Vec::new();
    for (k, v) in &params {
        if reserved(k) {
            continue;
        }
        if !known_field(&st, k) {
            return unsupported_field(&version, k);
        }
        let modifier = get(&format!("{k}_Mod")).unwrap_or_else(|| "eq".into());
        if st.refused_modifiers.lock().unwrap().contains(&modifier) {
            return wf_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "com.attask.common.InvalidParameterException",
                &format!("unknown modifier {modifier} for {k}"),
            );
        }
        filters.push((k.clone(), modifier, v.clone()));
    }
    // Filtered under the lock, cloning only what matched: a search must not cost a copy of the
    // whole user table (the simulator would then be slower than the service it measures).
    let mut found = Vec::new();
    let users = st.users.lock().unwrap();
    // An equality filter narrows the search through the index; the rest are checked per user.
    let positions: Vec<usize> = match filters.iter().find(|(_, m, _)| m == "eq" || m == "cieq") {
        Some((field, _, wanted)) => candidates(&st, &users, field, wanted),
        None => (0..users.len()).collect(),
    };
    for user in positions.iter().map(|&i| &users[i]) {
        let mut all = true;
        for (field, modifier, wanted) in &filters {
            match matches(field_value(user, field), modifier, wanted) {
                Some(ok) => all &= ok,
                None => {
                    return wf_error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "com.attask.common.InvalidParameterException",
                        &format!("unknown modifier {modifier} for {field}"),
                    )
                }
            }
        }
        if all {
            found.push(user.clone());
        }
    }
    drop(users);
    let mut data = Vec::new();
    for user in found.iter().skip(first).take(limit) {
        match project(&st, user, get("fields").as_deref(), &version) {
            Ok(v) => data.push(v),
            Err(resp) => return *resp,
        }
    }
    Json(json!({ "data": data })).into_response()
}

/// The position of the user with this ID in the locked table.
fn position(st: &SimState, users: &[Map<String, Value>], id: &str) -> Option<usize> {
    candidates(st, users, "ID", id)
        .into_iter()
        .find(|&i| users[i].get("ID").and_then(Value::as_str) == Some(id))
}

fn find(st: &SimState, id: &str) -> Option<Map<String, Value>> {
    let users = st.users.lock().unwrap();
    position(st, &users, id).map(|i| users[i].clone())
}

fn not_found(id: &str) -> Response {
    wf_error(
        StatusCode::NOT_FOUND,
        "com.attask.common.NotFoundException",
        &format!("USER with ID {id} does not exist"),
    )
}

async fn get_user(
    State(st): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let params = pairs(&q);
    let fields = params
        .iter()
        .find(|(k, _)| k == "fields")
        .map(|(_, v)| v.clone());
    match find(&st, &id) {
        None => not_found(&id),
        Some(user) => match project(&st, &user, fields.as_deref(), &version) {
            Ok(v) => Json(json!({ "data": v })).into_response(),
            Err(resp) => *resp,
        },
    }
}

async fn put_user(
    State(st): State<Shared>,
    Path((version, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let params = pairs(&q);
    let fields = params
        .iter()
        .find(|(k, _)| k == "fields")
        .map(|(_, v)| v.clone());
    let updates_text = params
        .iter()
        .find(|(k, _)| k == "updates")
        .map(|(_, v)| v.clone());
    let updates: Value = match (updates_text, body.is_empty()) {
        (Some(t), _) => match serde_json::from_str(&t) {
            Ok(v) => v,
            Err(e) => {
                return wf_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "com.attask.common.JSONException",
                    &format!("updates is not JSON: {e}"),
                )
            }
        },
        (None, false) => match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return wf_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "com.attask.common.JSONException",
                    &format!("body is not JSON: {e}"),
                )
            }
        },
        (None, true) => Value::Object(Map::new()),
    };
    let Value::Object(updates) = updates else {
        return wf_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "com.attask.common.JSONException",
            "updates must be a JSON object",
        );
    };
    for k in updates.keys() {
        if !known_field(&st, k) || k == "ID" || k == "objCode" {
            return unsupported_field(&version, k);
        }
    }
    let updated = {
        let mut users = st.users.lock().unwrap();
        let Some(at) = position(&st, &users, &id) else {
            return not_found(&id);
        };
        // The indexes of the fields written are stale now (positions do not move).
        let custom = updates.contains_key("parameterValues");
        st.index.lock().unwrap().retain(|field, _| {
            let written = updates.contains_key(field) || (custom && field.starts_with("DE:"));
            !written
        });
        let user = &mut users[at];
        for (k, v) in updates {
            let v = match (k.as_str(), &v) {
                // Workfront's documented example sends "false" as a string; it stores a boolean.
                ("isActive" | "isAdmin", Value::String(s)) => {
                    Value::Bool(s.eq_ignore_ascii_case("true"))
                }
                _ => v,
            };
            user.insert(k, v);
        }
        user.clone()
    };
    match project(&st, &updated, fields.as_deref(), &version) {
        Ok(v) => Json(json!({ "data": v })).into_response(),
        Err(resp) => *resp,
    }
}

async fn log(State(st): State<Shared>) -> Json<Value> {
    Json(json!({ "requests": *st.log.lock().unwrap() }))
}

async fn stats(State(st): State<Shared>) -> Json<super::SimStats> {
    Json(super::Sim { state: st }.stats())
}

async fn users(State(st): State<Shared>) -> Json<Value> {
    Json(json!({ "users": *st.users.lock().unwrap() }))
}

async fn replace_users(State(st): State<Shared>, body: String) -> Response {
    match parse_users(&body) {
        Ok(list) => {
            let mut users = st.users.lock().unwrap();
            *users = list;
            st.index.lock().unwrap().clear();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": e}})),
        )
            .into_response(),
    }
}

async fn add_fault(State(st): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(f) if f.count > 0 => {
            st.faults.lock().unwrap().push_back(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "count must be at least 1"}})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": e.to_string()}})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Sim, SimConfig};

    fn users() -> Vec<Map<String, Value>> {
        serde_json::from_value(json!([
            {"ID": "a1", "name": "Ann", "emailAddr": "Ann@Example.com", "isActive": true, "extRefID": "E-1"},
            {"ID": "b2", "name": "Bob", "emailAddr": "bob@example.com", "isActive": true, "extRefID": "E-2"},
            {"ID": "c3", "name": "Cy", "emailAddr": "ANN@example.com", "isActive": false, "extRefID": "E-3"}
        ]))
        .unwrap()
    }

    async fn get(base: &str, path_and_query: &str) -> Value {
        reqwest::get(format!("{base}/attask/api/v21.0/{path_and_query}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn ids(v: &Value) -> Vec<&str> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["ID"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn indexed_searches_match_like_a_scan_and_follow_writes() {
        let sim = Sim::new(SimConfig {
            users: users(),
            ..SimConfig::default()
        })
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
        let base = sim.base_url();
        // cieq finds both spellings, in table order; eq only the exact one.
        let found = get(
            &base,
            "user/search?emailAddr=ann@EXAMPLE.com&emailAddr_Mod=cieq&fields=ID",
        )
        .await;
        assert_eq!(ids(&found), ["a1", "c3"]);
        let exact = get(
            &base,
            "user/search?emailAddr=Ann@Example.com&emailAddr_Mod=eq&fields=ID",
        )
        .await;
        assert_eq!(ids(&exact), ["a1"]);
        // Every filter still applies to what the index found.
        let both = get(
            &base,
            "user/search?emailAddr=ann@example.com&emailAddr_Mod=cieq&isActive=true&fields=ID",
        )
        .await;
        assert_eq!(ids(&both), ["a1"]);
        // A write to an indexed field is seen by the next search.
        let active = get(&base, "user/search?isActive=true&fields=ID").await;
        assert_eq!(ids(&active), ["a1", "b2"]);
        let put = reqwest::Client::new()
            .put(format!(
                "{base}/attask/api/v21.0/user/b2?updates={{\"isActive\":false}}&fields=ID,isActive"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200);
        let active = get(&base, "user/search?isActive=true&fields=ID").await;
        assert_eq!(ids(&active), ["a1"]);
        // Replacing the table replaces the indexes.
        let replaced = reqwest::Client::new()
            .put(format!("{base}/__sim/users"))
            .body(r#"[{"ID": "z9", "name": "Zed", "emailAddr": "ann@example.com", "isActive": true}]"#)
            .send()
            .await
            .unwrap();
        assert!(replaced.status().is_success());
        let found = get(
            &base,
            "user/search?emailAddr=ANN@example.com&emailAddr_Mod=cieq&fields=ID",
        )
        .await;
        assert_eq!(ids(&found), ["z9"]);
        assert_eq!(get(&base, "user/z9?fields=ID").await["data"]["ID"], "z9");
    }
}
