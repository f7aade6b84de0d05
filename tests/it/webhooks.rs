//! `POST /webhooks/{source}`: every row of the response table (SPEC §4), each signature failure,
//! dedupe, and "nothing is stored for a rejected delivery".

use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

async fn stored_action_count(app: &TestApp) -> usize {
    let a = app.admin_get("/admin/v1/actions?limit=500").await;
    a.body["actions"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_signed_termination_is_accepted_and_the_user_is_deactivated() {
    let app = spawn_app().await;
    let a = app
        .post_delivery(&termination(Some("E-1042"), Some("jane.doe@example.com")))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["status"], "accepted");
    assert!(a.body["delivery_id"].as_str().unwrap().starts_with("dlv_"));
    let id = a.body["actions"][0].as_str().unwrap();
    let action = app.wait_for_status(id, "succeeded").await;
    assert_eq!(action["reason"], "deactivated");
    assert_eq!(action["workfront_user"]["ID"], JANE);
    assert_eq!(action["employee"]["employee_id"], "E-1042");
    assert_eq!(action["events"][0]["type"], "employee.terminated");
    assert_eq!(app.is_active(JANE), Some(false));
    assert_eq!(app.is_active(JOHN), Some(true), "nobody else is touched");
    let steps = TestApp::steps(&action);
    for step in [
        "received",
        "attempt_started",
        "searched",
        "matched",
        "safety_passed",
        "workfront_call",
        "written",
        "finished",
    ] {
        assert!(
            steps.contains(&step.to_string()),
            "{step} missing from {steps:?}"
        );
    }
}

#[tokio::test]
async fn a_redelivery_with_the_same_webhook_id_is_a_duplicate_even_if_re_signed_later() {
    let app = spawn_app().await;
    let body = termination(Some("E-1042"), None);
    let now = jiff::Timestamp::now().as_second();
    let first = app.post_signed("msg_same", now, &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let other_body = termination(Some("E-1043"), None);
    let again = app.post_signed("msg_same", now + 5, &other_body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["delivery_id"], first.body["delivery_id"]);
    assert_eq!(stored_action_count(&app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_store_exactly_one_delivery() {
    let app = spawn_app().await;
    let body = termination(Some("E-1042"), None);
    let headers = signed_headers(
        SECRET,
        "msg_race",
        jiff::Timestamp::now().as_second(),
        &body,
    );
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let mut req = app
            .http
            .post(format!("{}/webhooks/hr", app.base))
            .body(body.clone());
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        sends.spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        });
    }
    let answers = sends.join_all().await;
    let accepted = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    let duplicates = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::OK && b["status"] == "duplicate")
        .count();
    assert_eq!((accepted, duplicates), (1, 11), "{answers:?}");
    assert_eq!(stored_action_count(&app).await, 1);
}

#[tokio::test]
async fn an_event_that_does_not_concern_offboarding_is_ignored_and_not_stored() {
    let app = spawn_app().await;
    let a = app
        .post_delivery(
            &json!({"type": "employee.updated", "data": {"employee_id": "E-1"}}).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "ignored");
    assert!(a.body["reason"]
        .as_str()
        .unwrap()
        .contains("employee.updated"));
    assert_eq!(stored_action_count(&app).await, 0);
}

#[tokio::test]
async fn unparseable_bodies_are_malformed_payload() {
    let app = spawn_app().await;
    for body in ["not json", "[1,2,3]", "\"text\"", r#"{"data":{}}"#] {
        let a = app.post_delivery(body).await;
        assert_error(&a, 400, "malformed_payload");
    }
    assert_eq!(stored_action_count(&app).await, 0);
}

#[tokio::test]
async fn events_without_an_employee_or_with_impossible_dates_are_invalid_event() {
    let app = spawn_app().await;
    let no_id = json!({"type": "employee.terminated", "data": {"name": "Nobody"}}).to_string();
    assert_error(&app.post_delivery(&no_id).await, 422, "invalid_event");
    let bad_date = json!({"type": "employee.terminated", "data": {"email": "a@example.com", "effective_at": "2026-02-30"}}).to_string();
    assert_error(&app.post_delivery(&bad_date).await, 422, "invalid_event");
    let unknown_date = json!({"type": "employee.terminated", "data": {"email": "a@example.com", "effective_at": "soon"}}).to_string();
    assert_error(
        &app.post_delivery(&unknown_date).await,
        422,
        "invalid_event",
    );
    assert_eq!(stored_action_count(&app).await, 0);
}

#[tokio::test]
async fn an_unknown_source_is_404() {
    let app = spawn_app().await;
    let body = termination(Some("E-1042"), None);
    let a = app
        .post_raw(
            "nope",
            &signed_headers(SECRET, "msg_1", jiff::Timestamp::now().as_second(), &body),
            body.into_bytes(),
        )
        .await;
    assert_error(&a, 404, "unknown_source");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_not_stored() {
    let app = spawn_app_with(options("[server]\nmax_body_bytes = 1024")).await;
    let big = json!({"type": "employee.terminated", "data": {"email": "a@example.com", "name": "x".repeat(2000)}}).to_string();
    assert_error(&app.post_delivery(&big).await, 413, "payload_too_large");
    assert_eq!(stored_action_count(&app).await, 0);
}

#[tokio::test]
async fn other_content_types_are_415_and_json_with_a_charset_is_accepted() {
    let app = spawn_app().await;
    let body = termination(Some("E-1042"), None);
    let now = jiff::Timestamp::now().as_second();
    let mut h = signed_headers(SECRET, "msg_ct1", now, &body);
    h[0].1 = "text/plain".into();
    assert_error(
        &app.post_raw("hr", &h, body.clone().into_bytes()).await,
        415,
        "unsupported_media_type",
    );
    let mut h = signed_headers(SECRET, "msg_ct2", now, &body);
    h[0].1 = "application/json; charset=utf-8".into();
    assert_eq!(
        app.post_raw("hr", &h, body.into_bytes()).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn each_signature_failure_gets_its_own_code_and_stores_nothing() {
    let app = spawn_app().await;
    let body = termination(Some("E-1042"), None);
    let now = jiff::Timestamp::now().as_second();

    let mut missing = signed_headers(SECRET, "msg_a", now, &body);
    missing.retain(|(k, _)| k != "webhook-signature");
    assert_error(
        &app.post_raw("hr", &missing, body.clone().into_bytes())
            .await,
        401,
        "missing_signature",
    );

    let wrong_secret = signed_headers(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "msg_b",
        now,
        &body,
    );
    assert_error(
        &app.post_raw("hr", &wrong_secret, body.clone().into_bytes())
            .await,
        401,
        "invalid_signature",
    );

    for bad in ["v1,", "v1", "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPen"] {
        let mut h = signed_headers(SECRET, "msg_c", now, &body);
        h[3].1 = bad.into();
        assert_error(
            &app.post_raw("hr", &h, body.clone().into_bytes()).await,
            401,
            "invalid_signature",
        );
    }
    let mut truncated = signed_headers(SECRET, "msg_d", now, &body);
    let full = truncated[3].1.clone();
    truncated[3].1 = full[..full.len() - 6].to_string();
    assert_error(
        &app.post_raw("hr", &truncated, body.clone().into_bytes())
            .await,
        401,
        "invalid_signature",
    );

    let tampered = signed_headers(SECRET, "msg_e", now, &body);
    let other = termination(Some("E-9999"), None);
    assert_error(
        &app.post_raw("hr", &tampered, other.into_bytes()).await,
        401,
        "invalid_signature",
    );

    let mut other_id = signed_headers(SECRET, "msg_f", now, &body);
    other_id[1].1 = "msg_g".into();
    assert_error(
        &app.post_raw("hr", &other_id, body.clone().into_bytes())
            .await,
        401,
        "invalid_signature",
    );

    for skew in [-600, 600] {
        let stale = signed_headers(SECRET, "msg_h", now + skew, &body);
        assert_error(
            &app.post_raw("hr", &stale, body.clone().into_bytes()).await,
            401,
            "timestamp_out_of_tolerance",
        );
    }
    assert_eq!(stored_action_count(&app).await, 0);
}

#[tokio::test]
async fn a_signature_with_the_previous_secret_passes_during_rotation() {
    let app = spawn_app().await;
    let body = termination(Some("E-1043"), None);
    let h = signed_headers(
        OLD_SECRET,
        "msg_rot",
        jiff::Timestamp::now().as_second(),
        &body,
    );
    let a = app.post_raw("hr", &h, body.into_bytes()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
}

#[tokio::test]
async fn bearer_sources_check_the_token() {
    let app = spawn_app().await;
    let body = termination(Some("E-1043"), None).into_bytes();
    let ct = ("content-type".to_string(), "application/json".to_string());
    assert_error(
        &app.post_raw("wd", std::slice::from_ref(&ct), body.clone())
            .await,
        401,
        "missing_signature",
    );
    let wrong = ("authorization".to_string(), "Bearer nope".to_string());
    assert_error(
        &app.post_raw("wd", &[ct.clone(), wrong], body.clone()).await,
        401,
        "invalid_token",
    );
    let right = (
        "authorization".to_string(),
        format!("Bearer {BEARER_TOKEN}"),
    );
    let a = app
        .post_raw("wd", &[ct.clone(), right.clone()], body.clone())
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    // No delivery id: the body hash dedupes.
    let again = app.post_raw("wd", &[ct, right], body).await;
    assert_eq!(again.body["status"], "duplicate");
}

#[tokio::test]
async fn basic_sources_check_user_and_password() {
    let app = spawn_app().await;
    let body = termination(Some("E-1043"), None).into_bytes();
    let ct = ("content-type".to_string(), "application/json".to_string());
    let enc = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    let wrong = ("authorization".to_string(), enc("workday:pw-2"));
    assert_error(
        &app.post_raw("basic", &[ct.clone(), wrong], body.clone())
            .await,
        401,
        "invalid_token",
    );
    let right = ("authorization".to_string(), enc("workday:pw-1"));
    assert_eq!(
        app.post_raw("basic", &[ct, right], body).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_database_outage_is_503_so_the_sender_retries() {
    let app = spawn_app().await;
    app.app().store().close().await;
    let a = app.post_delivery(&termination(Some("E-1042"), None)).await;
    assert_error(&a, 503, "unavailable");
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let a = app.admin_get("/nowhere").await;
    assert_error(&a, 404, "not_found");
    let resp = app
        .http
        .get(format!("{}/webhooks/hr", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
