//! Every vendor kind (SPEC §4.2) over HTTP with realistic payloads: a termination that ends in a
//! deactivated simulator user, rehire or cancellation where the vendor has them, an ignored
//! event, a wrong signature or token (401, nothing stored, no Workfront call), replays and
//! duplicates, handshakes, and `check-config` / `offboard sign` for all nine kinds at once.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;

/// Secrets of the vendor sources (different from `registry::example_table`'s, which sign the
/// "wrong" deliveries).
pub const VENDOR_SOURCES: &str = r#"
[lifecycle]
reactivate_on_rehire = true
[sources.bamboo]
kind = "bamboohr"
secret = "bamboo-private-key-1"
[sources.bob]
kind = "hibob"
secret = "bob-secret-1"
[sources.gusto]
kind = "gusto"
secret = "gusto-verification-token-1"
[sources.personio]
kind = "personio"
token = "personio-token-1"
[sources.deel]
kind = "deel"
secret = "deel-signing-key-1"
[sources.rippling]
kind = "rippling"
token = "rippling-token-1"
[sources.factorial]
kind = "factorial"
token = "factorial-challenge-1"
[sources.ce]
kind = "cloudevents"
token = "ce-token-1"
"#;

async fn vendor_app() -> TestApp {
    spawn_app_with(options(VENDOR_SOURCES)).await
}

impl TestApp {
    /// POSTs `body` to `/webhooks/{source}` signed the way its kind expects.
    async fn post_kind(&self, source: &str, body: &str, query: &str) -> Answer {
        let headers = self.settings.sources[source].sign(body.as_bytes(), self.clock.now());
        self.post_to(source, query, &headers, body).await
    }

    /// The same, signed by a source of the same kind with other secrets.
    async fn post_kind_wrongly(&self, source: &str, body: &str, query: &str) -> Answer {
        let kind = self.settings.sources[source].kind();
        let other = offboard::sources::registry::build(
            "other",
            offboard::sources::registry::example_table(kind),
        )
        .unwrap();
        let headers = other.sign(body.as_bytes(), self.clock.now());
        self.post_to(source, query, &headers, body).await
    }

    async fn post_to(
        &self,
        source: &str,
        query: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> Answer {
        let mut req = self
            .http
            .post(format!("{}/webhooks/{source}{query}", self.base))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            request_id,
        }
    }

    async fn action_count(&self) -> usize {
        self.admin_get("/admin/v1/actions?limit=500").await.body["actions"]
            .as_array()
            .unwrap()
            .len()
    }
}

/// The checks every kind gets: a wrong signature or token stores nothing and calls nobody; the
/// termination deactivates JANE; the same delivery again is a duplicate; an unrelated event is
/// ignored.
async fn exercise(app: &TestApp, source: &str, termination: &str, query: &str, unrelated: &str) {
    let wrong = app.post_kind_wrongly(source, termination, query).await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "{source}: {}",
        wrong.body
    );
    let code = wrong.body["error"]["code"].as_str().unwrap();
    assert!(
        ["invalid_signature", "invalid_token"].contains(&code),
        "{source}: {code}"
    );
    assert_eq!(app.action_count().await, 0, "{source}: nothing stored");
    assert!(
        app.sim.sim.requests().is_empty(),
        "{source}: no Workfront call"
    );

    let a = app.post_kind(source, termination, query).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{source}: {}", a.body);
    let id = a.body["actions"][0].as_str().unwrap().to_string();
    let done = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(done["reason"], "deactivated", "{source}");
    assert_eq!(done["source"], source);
    assert_eq!(app.is_active(JANE), Some(false), "{source}");

    let again = app.post_kind(source, termination, query).await;
    assert_eq!(again.status, StatusCode::OK, "{source}: {}", again.body);
    assert_eq!(again.body["status"], "duplicate", "{source}");

    let ignored = app.post_kind(source, unrelated, query).await;
    assert_eq!(ignored.status, StatusCode::OK, "{source}: {}", ignored.body);
    assert_eq!(ignored.body["status"], "ignored", "{source}");
    assert!(ignored.body["reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert_eq!(app.action_count().await, 1, "{source}: nothing more stored");
}

fn later(app: &TestApp, secs: i64) -> jiff::Timestamp {
    app.clock.now() + jiff::SignedDuration::from_secs(secs)
}

#[tokio::test]
async fn bamboohr_field_based_terminations_rehires_and_replays() {
    let app = vendor_app().await;
    let termination = json!({"employees": [{"id": "E-1042", "action": "Updated",
        "changedFields": ["Employment Status"],
        "fields": {"Employment Status": {"value": "Terminated"}, "Employment Status: Date": {"value": "2020-01-31"},
                   "Work Email": {"value": "jane.doe@example.com"}, "First name": {"value": "Jane"}}}]})
    .to_string();
    let unrelated = json!({"employees": [{"id": "E-1042", "changedFields": ["First name"],
        "fields": {"First name": {"value": "Janet"}}}]})
    .to_string();
    exercise(&app, "bamboo", &termination, "", &unrelated).await;
    // Event-based deliveries carry no values: ignored, with the reason.
    let event_based = r#"{"type":"employee.updated","timestamp":"2026-01-31T18:42:00+0000","data":{"companyId":"1","employeeId":"E-1043","changedFields":["status"]}}"#;
    let a = app.post_kind("bamboo", event_based, "").await;
    assert_eq!(a.body["status"], "ignored", "{}", a.body);
    // A replayed delivery (correctly signed ten minutes ago) is refused.
    let old = later(&app, -600);
    let headers = app.settings.sources["bamboo"].sign(termination.as_bytes(), old);
    let replay = app.post_to("bamboo", "", &headers, &termination).await;
    assert_error(&replay, 401, "timestamp_out_of_tolerance");
    // A rehire: Status back to Active.
    let rehire = json!({"employees": [{"id": "E-1042", "changedFields": ["Status"],
        "timestamp": later(&app, 5).to_string(), "fields": {"Status": {"value": "Active"}}}]})
    .to_string();
    let a = app.post_kind("bamboo", &rehire, "").await;
    let id = a.body["actions"][0].as_str().unwrap().to_string();
    assert_eq!(
        app.wait_for_status(&id, "succeeded").await["reason"],
        "reactivated"
    );
    assert_eq!(app.is_active(JANE), Some(true));
}

#[tokio::test]
async fn hibob_terminations_activations_and_the_ping() {
    let app = vendor_app().await;
    let at = app.clock.now().to_zoned(jiff::tz::TimeZone::UTC);
    let triggered = at.strftime("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    let termination = json!({"companyId": 636192, "type": "employee.left", "triggeredBy": "system",
        "triggeredAt": triggered, "version": "v2", "data": {"employeeId": "E-1042"}})
    .to_string();
    let unrelated =
        json!({"companyId": 636192, "type": "employee.updated", "triggeredAt": triggered,
        "version": "v2", "data": {"employeeId": "E-1042"}})
        .to_string();
    // The ping, unsigned, creates nothing.
    for ping in ["Ping test", r#"{"text":"Ping test"}"#] {
        let a = app
            .post_to(
                "bob",
                "",
                &[("Content-Type".into(), "text/plain".into())],
                ping,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    exercise(&app, "bob", &termination, "", &unrelated).await;
    let (d, t) = (
        later(&app, 60).to_zoned(jiff::tz::TimeZone::UTC),
        "%Y-%m-%dT%H:%M:%S",
    );
    let activated = json!({"type": "employee.activated", "triggeredAt": d.strftime(t).to_string(),
        "version": "v2", "data": {"employeeId": "E-1042"}})
    .to_string();
    let a = app.post_kind("bob", &activated, "").await;
    let id = a.body["actions"][0].as_str().unwrap().to_string();
    assert_eq!(
        app.wait_for_status(&id, "succeeded").await["reason"],
        "reactivated"
    );
}

fn gusto(kind: &str, uuid: &str, at: jiff::Timestamp) -> String {
    json!({"uuid": uuid, "event_type": kind, "resource_type": "Company", "resource_uuid": "c-1",
        "entity_type": "Employee", "entity_uuid": "E-1042", "timestamp": at.as_second()})
    .to_string()
}

#[tokio::test]
async fn gusto_effective_events_cancellations_the_handshake_and_uuid_dedupe() {
    let app = vendor_app().await;
    let hs = app
        .post_to(
            "gusto",
            "",
            &[("Content-Type".into(), "application/json".into())],
            r#"{"verification_token":"gusto-verification-token-1"}"#,
        )
        .await;
    assert_eq!(hs.status, StatusCode::OK, "{}", hs.body);
    assert!(
        !hs.body.to_string().contains("verification-token-1"),
        "masked"
    );
    let now = app.clock.now();
    // Recorded, not effective: nothing happens yet.
    let recorded = app
        .post_kind("gusto", &gusto("employee.terminated", "u-0", now), "")
        .await;
    assert_eq!(recorded.body["status"], "ignored", "{}", recorded.body);
    let effective = gusto("employee.termination_effective", "u-1", now);
    exercise(
        &app,
        "gusto",
        &effective,
        "",
        &gusto("employee.updated", "u-2", now),
    )
    .await;
    // The same uuid with another body is still a duplicate.
    let same_uuid = gusto("employee.terminated_effective", "u-1", later(&app, 1));
    assert_eq!(
        app.post_kind("gusto", &same_uuid, "").await.body["status"],
        "duplicate"
    );
    // A cancellation after the fact reverses it (reactivate_on_cancel).
    let cancel = gusto("employee.termination_cancelled", "u-3", later(&app, 2));
    let a = app.post_kind("gusto", &cancel, "").await;
    let id = a.body["actions"][0].as_str().unwrap().to_string();
    assert_eq!(
        app.wait_for_status(&id, "succeeded").await["reason"],
        "reactivated"
    );
    assert_eq!(app.is_active(JANE), Some(true));
}

#[tokio::test]
async fn personio_terminations_with_the_verbatim_token() {
    let app = vendor_app().await;
    let body = |event: &str| {
        json!({"company_id": "c1", "event_name": event, "occurred_at": jiff::Timestamp::now().to_string(),
            "payload": {"employment": {"id": "emp-1", "person": {"id": "E-1042"}}}, "meta": {}})
        .to_string()
    };
    exercise(
        &app,
        "personio",
        &body("employment.terminated"),
        "",
        &body("person.updated"),
    )
    .await;
    let missing = app
        .post_to(
            "personio",
            "",
            &[("Content-Type".into(), "application/json".into())],
            &body("employment.terminated"),
        )
        .await;
    assert_error(&missing, 401, "missing_signature");
}

#[tokio::test]
async fn deel_contract_terminations_dedupe_on_the_tracking_id() {
    let app = vendor_app().await;
    let body = |event: &str, tracking: &str| {
        json!({"data": {"meta": {"event_type": event, "event_type_id": "1", "organization_id": "o",
            "organization_name": "Acme", "tracking_id": tracking},
            "resource": {"id": "contract-9", "completion_date": "2020-01-31",
                "worker": {"id": "E-1042", "email": "jane.doe@example.com"}}},
            "timestamp": jiff::Timestamp::now().to_string()})
        .to_string()
    };
    exercise(
        &app,
        "deel",
        &body("contract.terminated", "trk-1"),
        "",
        &body("contract.status.updated", "trk-2"),
    )
    .await;
    let redelivered = app
        .post_kind("deel", &body("contract.terminated", "trk-1"), "")
        .await;
    assert_eq!(redelivered.body["status"], "duplicate");
}

#[tokio::test]
async fn rippling_form_encoded_terminations_with_a_bearer_token() {
    let app = vendor_app().await;
    let termination = "event_name=employee.terminated&company_id=c1&company_primary_email=hr%40acme.example&id=E-1042";
    let unrelated = "event_name=employee.updated&company_id=c1&id=E-1042";
    exercise(&app, "rippling", termination, "", unrelated).await;
}

#[tokio::test]
async fn factorial_bare_employee_objects_with_the_event_in_the_query() {
    let app = vendor_app().await;
    let employee = r#"{"id":"E-1042","first_name":"Jane","last_name":"Doe","email":"jane.doe@example.com","terminated_on":"2020-01-31"}"#;
    let other = r#"{"id":"E-1043","first_name":"John","last_name":"Smith","email":"john.smith@example.com"}"#;
    let wrong_event = app
        .post_kind("factorial", other, "?event=employee_created")
        .await;
    assert_eq!(wrong_event.body["status"], "ignored");
    exercise(
        &app,
        "factorial",
        employee,
        "?event=employee_terminated",
        r#"{"type":"employee_created","id":"x"}"#,
    )
    .await;
    // Unterminated: the termination is cancelled, and the deactivation reversed.
    let undo = app
        .post_kind(
            "factorial",
            &employee.replace("2020-01-31", "2020-02-01"),
            "?event=employee_unterminated",
        )
        .await;
    let id = undo.body["actions"][0].as_str().unwrap().to_string();
    assert_eq!(
        app.wait_for_status(&id, "succeeded").await["reason"],
        "reactivated"
    );
}

#[tokio::test]
async fn cloudevents_in_structured_and_binary_mode() {
    let app = vendor_app().await;
    let event = |id: &str, t: &str| {
        json!({"specversion": "1.0", "id": id, "source": "/hr/workday", "type": t,
            "time": jiff::Timestamp::now().to_string(), "data": {"employee_id": "E-1042"}})
        .to_string()
    };
    exercise(
        &app,
        "ce",
        &event("ev-1", "com.acme.hr.employee.terminated"),
        "",
        &event("ev-2", "com.acme.hr.employee.created"),
    )
    .await;
    // Binary mode: attributes in headers, data in the body.
    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Authorization".to_string(), "Bearer ce-token-1".to_string()),
        ("ce-specversion".to_string(), "1.0".to_string()),
        ("ce-id".to_string(), "ev-3".to_string()),
        ("ce-source".to_string(), "/hr/workday".to_string()),
        ("ce-type".to_string(), "employee.terminated".to_string()),
    ];
    let a = app
        .post_to("ce", "", &headers, r#"{"employee_id":"E-1043"}"#)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.body["actions"][0].as_str().unwrap().to_string();
    app.wait_for_status(&id, "succeeded").await;
    assert_eq!(app.is_active(JOHN), Some(false));
    // The same source and id again, in the other mode: a duplicate.
    let again = app
        .post_to("ce", "", &headers, r#"{"employee_id":"E-1043"}"#)
        .await;
    assert_eq!(again.body["status"], "duplicate");
}

#[test]
fn check_config_starts_with_all_nine_kinds_and_redacts_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offboard.toml");
    let text =
        format!("{VENDOR_SOURCES}\n[sources.hr]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .env_remove("OFFBOARD_CONFIG")
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = shown["sources"].as_object().unwrap();
    let kinds: std::collections::BTreeSet<&str> = sources
        .values()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 9, "{kinds:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [
        "bamboo-private-key-1",
        "bob-secret-1",
        "gusto-verification-token-1",
        "personio-token-1",
        "deel-signing-key-1",
        "rippling-token-1",
        "factorial-challenge-1",
        "ce-token-1",
        &SECRET[6..],
    ] {
        assert!(!stdout.contains(secret), "{secret} leaked");
    }
}

#[tokio::test]
async fn offboard_sign_prints_headers_the_service_accepts_for_every_kind() {
    let app = vendor_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offboard.toml");
    std::fs::write(&path, VENDOR_SOURCES).unwrap();
    let cases = [
        (
            "bamboo",
            r#"{"employees":[{"id":"E-1043","fields":{"Employment Status":"Terminated"}}]}"#,
        ),
        (
            "bob",
            r#"{"type":"employee.left","data":{"employeeId":"E-1043"}}"#,
        ),
        (
            "gusto",
            r#"{"uuid":"s-1","event_type":"employee.termination_effective","entity_uuid":"E-1043"}"#,
        ),
        (
            "personio",
            r#"{"event_name":"employment.terminated","payload":{"person_id":"E-1043"}}"#,
        ),
        (
            "deel",
            r#"{"data":{"meta":{"event_type":"contract.terminated"},"resource":{"id":"E-1043"}}}"#,
        ),
        ("rippling", "event_name=employee.terminated&id=E-1043"),
        (
            "factorial",
            r#"{"type":"employee_terminated","id":"E-1043"}"#,
        ),
        (
            "ce",
            r#"{"specversion":"1.0","id":"s-1","source":"sign","type":"employee.terminated","data":{"employee_id":"E-1043"}}"#,
        ),
    ];
    for (source, body) in cases {
        let headers = sign_with_cli(&path, source, body);
        let a = app.post_to(source, "", &headers, body).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{source}: {}", a.body);
    }
}
