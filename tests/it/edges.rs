//! Guarantees at the edges (issue 8): hostile events, one sender's trouble stays its own, who may
//! undo what, the admin token first, Workfront IDs checked, reactivation safeguards, leases that
//! are renewed and work that resumes at once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use offboard::sim::SimConfig;

use crate::harness::*;
use crate::wait;

fn event(kind: &str, employee_id: &str, at: jiff::Timestamp, effective: Option<&str>) -> String {
    json!({"type": kind, "timestamp": at.to_string(),
        "data": {"employee_id": employee_id, "effective_at": effective}})
    .to_string()
}

async fn action_count(app: &TestApp) -> usize {
    let a = app.admin_get("/admin/v1/actions?limit=500").await;
    a.body["actions"].as_array().unwrap().len()
}

fn hours(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(n)
}

#[tokio::test]
async fn a_cancellation_dated_far_in_the_future_is_refused_and_cannot_block_a_real_termination() {
    let app = spawn_app().await;
    let far = "9000-01-01T00:00:00Z".parse().unwrap();
    let a = app
        .post_delivery(&event(
            "employee.termination_cancelled",
            "E-1042",
            far,
            None,
        ))
        .await;
    assert_error(&a, 422, "invalid_event");
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_future_skew"));
    // Just beyond the configured skew is refused too; within it is accepted.
    let beyond = jiff::Timestamp::now() + hours(25);
    let a = app
        .post_delivery(&event("employee.rehired", "E-1042", beyond, None))
        .await;
    assert_error(&a, 422, "invalid_event");
    assert_eq!(action_count(&app).await, 0, "nothing stored");
    let id = app.terminate(Some("E-1042"), None).await;
    let action = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(action["reason"], "deactivated");
    assert_eq!(app.is_active(JANE), Some(false));
}

#[tokio::test]
async fn an_hr_event_dated_ahead_never_supersedes_an_operators_manual_deactivation() {
    let app = spawn_app().await;
    let soon = jiff::Timestamp::now() + hours(20);
    let a = app
        .post_delivery(&event(
            "employee.termination_cancelled",
            "E-1042",
            soon,
            None,
        ))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let manual = app
        .admin_post("/admin/v1/actions", json!({"employee_id": "E-1042"}))
        .await;
    assert_eq!(manual.status, StatusCode::ACCEPTED, "{}", manual.body);
    let id = manual.body["id"].as_str().unwrap();
    let done = app.wait_for_status(id, "succeeded").await;
    assert_eq!(done["reason"], "deactivated");
    assert_eq!(done["source"], "admin");
    // A later HR cancellation cannot cancel or reverse it either.
    let later = jiff::Timestamp::now() + hours(21);
    let a = app
        .post_delivery(&event(
            "employee.termination_cancelled",
            "E-1042",
            later,
            None,
        ))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["actions"], json!([]), "no reactivation created");
    assert_eq!(app.is_active(JANE), Some(false));
}

#[tokio::test]
async fn a_cancellation_only_touches_terminations_of_its_own_source() {
    let app = spawn_app().await;
    let now = jiff::Timestamp::now();
    let id = first_action(
        &app.post_delivery(&event(
            "employee.terminated",
            "E-1043",
            now,
            Some("2099-01-01"),
        ))
        .await,
    );
    // The bearer source `wd` cancels "its" termination of the same employee.
    let body = event(
        "employee.termination_cancelled",
        "E-1043",
        now + jiff::SignedDuration::from_secs(1),
        None,
    );
    let a = app
        .post_raw(
            "wd",
            &[
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), format!("Bearer {BEARER_TOKEN}")),
            ],
            body.into_bytes(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let action = app.admin_get_action(&id).await;
    assert_eq!(action["status"], "scheduled", "{action:#}");
    // Its own source can cancel it.
    let own = event(
        "employee.termination_cancelled",
        "E-1043",
        now + jiff::SignedDuration::from_secs(2),
        None,
    );
    assert_eq!(app.post_delivery(&own).await.status, StatusCode::ACCEPTED);
    let action = app.admin_get_action(&id).await;
    assert_eq!(
        (&action["status"], &action["reason"]),
        (&json!("cancelled"), &json!("termination_cancelled"))
    );
}

fn first_action(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    answer.body["actions"][0].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_no_end_date_of_9999_12_31_is_refused_never_due_now() {
    let app = spawn_app().await;
    let a = app
        .post_delivery(&event(
            "employee.terminated",
            "E-1042",
            jiff::Timestamp::now(),
            Some("9999-12-31"),
        ))
        .await;
    assert_error(&a, 422, "invalid_event");
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("9999-12-31"));
    assert_eq!(action_count(&app).await, 0);
    assert_eq!(app.puts(), 0);
    assert_eq!(app.is_active(JANE), Some(true));
}

#[tokio::test]
async fn a_nul_in_a_field_is_refused_alone_while_the_deliveries_around_it_are_stored() {
    let app = spawn_app().await;
    for round in 0..3 {
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..24 {
            sends.spawn(app.delivery(termination(Some(&format!("R{round}-{i}")), None)));
        }
        let bad =
            json!({"type": "employee.terminated", "timestamp": jiff::Timestamp::now().to_string(),
            "data": {"employee_id": format!("M-{round}"), "name": "Mallory\u{0000}"}})
            .to_string();
        assert!(bad.contains("\\u0000"));
        let bad = app.post_delivery(&bad).await;
        assert_error(&bad, 422, "invalid_event");
        for a in sends.join_all().await {
            assert_eq!(a.status, StatusCode::ACCEPTED, "round {round}: {}", a.body);
        }
    }
    assert_eq!(action_count(&app).await, 72);
    // Filters and cursors holding U+0000 are the request's fault, not the database's.
    for q in [
        "employee=a%00b",
        "source=hr%00",
        "cursor=act_%00",
        "status=pending%00",
    ] {
        let a = app.admin_get(&format!("/admin/v1/actions?{q}")).await;
        assert_error(&a, 400, "bad_request");
    }
}

#[tokio::test]
async fn a_408_is_only_sent_when_nothing_was_stored() {
    // A deadline so short that some requests pass it before storage and some while storing.
    let app = spawn_app_with(options("[server]\nrequest_timeout = \"1ms\"")).await;
    let mut answers = Vec::new();
    for i in 0..40 {
        let id = format!("msg_deadline_{i}");
        let body = termination(Some(&format!("T-{i}")), None);
        let a = app
            .post_signed(&id, jiff::Timestamp::now().as_second(), &body)
            .await;
        answers.push((i, a));
    }
    // Read the store directly: the admin API has the same 1 ms deadline.
    let filter = offboard::store::ActionFilter {
        limit: 500,
        ..Default::default()
    };
    let stored_ids: Vec<String> = app
        .app()
        .store()
        .list_actions(&filter)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|a| a.employee_id)
        .collect();
    let mut timeouts = 0;
    for (i, a) in &answers {
        let was_stored = stored_ids.contains(&format!("T-{i}"));
        match a.status.as_u16() {
            408 => {
                timeouts += 1;
                assert!(!was_stored, "T-{i} was answered 408 but stored");
            }
            202 => assert!(was_stored, "T-{i} was answered 202 but not stored"),
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    eprintln!("{timeouts} of 40 cut off before storage; the rest got their real outcome");
}

#[tokio::test]
async fn reactivations_have_their_own_brake_approval_and_a_notification_each() {
    let receiver = Receiver::start().await;
    let app = spawn_app_with(options(&format!(
        "[lifecycle]\nreactivate_on_rehire = true\n[safety]\nreactivation_brake_max = 1\n[notify]\nwebhook_url = \"{}\"",
        receiver.url
    )))
    .await;
    for e in ["E-1042", "E-1043"] {
        let id = app.terminate(Some(e), None).await;
        app.wait_for_status(&id, "succeeded").await;
    }
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let first = first_action(
        &app.post_delivery(&event("employee.rehired", "E-1042", later, None))
            .await,
    );
    let done = app.wait_for_status(&first, "succeeded").await;
    assert_eq!(done["reason"], "reactivated");
    let second = first_action(
        &app.post_delivery(&event("employee.rehired", "E-1043", later, None))
            .await,
    );
    let held = app.wait_for_status(&second, "held").await;
    assert_eq!(held["reason"], "rate_brake");
    assert_eq!(app.is_active(JANE), Some(true));
    assert_eq!(app.is_active(JOHN), Some(false), "held by the brake");
    receiver
        .wait_for("the reactivation", |n| {
            n["action_id"] == first.as_str() && n["reason"] == "reactivated"
        })
        .await;
    receiver
        .wait_for("the reactivation brake", |n| {
            n["text"].as_str().unwrap_or("").contains("reactivation") && n["reason"] == "rate_brake"
        })
        .await;

    let strict = spawn_app_with(options(
        "[lifecycle]\nreactivate_on_rehire = true\n[safety]\nrequire_approval_for_reactivation = true",
    ))
    .await;
    let id = strict.terminate(Some("E-1042"), None).await;
    strict.wait_for_status(&id, "succeeded").await;
    let rehire = first_action(
        &strict
            .post_delivery(&event("employee.rehired", "E-1042", later, None))
            .await,
    );
    let held = strict.wait_for_status(&rehire, "held").await;
    assert_eq!(held["reason"], "approval_required");
    assert_eq!(strict.is_active(JANE), Some(false));
}

#[tokio::test]
async fn an_operators_workfront_id_is_checked_before_it_reaches_a_url() {
    let app = spawn_app().await;
    let id = app.terminate(Some("E-2000"), None).await;
    app.wait_for_status(&id, "held").await;
    let before = app.sim.sim.requests().len();
    for bad in ["..", "../../x", "a/b", "a%2Fb", " ", "x?y=1"] {
        let a = app
            .admin_post(
                &format!("/admin/v1/actions/{id}/approve"),
                json!({"workfront_user_id": bad, "override": true}),
            )
            .await;
        if bad.trim().is_empty() {
            // Blank is "no user given": an ambiguous match needs one.
            assert_error(&a, 400, "bad_request");
        } else {
            assert_error(&a, 400, "bad_request");
            assert!(a.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a Workfront ID"));
        }
    }
    // Still held, so no worker will touch it: the requests so far are all there will be.
    assert_eq!(app.admin_get_action(&id).await["status"], "held");
    assert_eq!(
        app.sim.sim.requests().len(),
        before,
        "no request reached Workfront"
    );
}

#[tokio::test]
async fn the_admin_token_is_checked_before_the_path_the_query_or_the_body() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let big = vec![b'x'; 300 * 1024];
    let cases: Vec<(reqwest::Method, String, Option<Vec<u8>>)> = vec![
        (reqwest::Method::GET, "/admin/v1/actions/%FF".into(), None),
        (
            reqwest::Method::GET,
            "/admin/v1/actions?limit=%FF%FE&x".into(),
            None,
        ),
        (reqwest::Method::POST, "/admin/v1/actions".into(), Some(big)),
        (reqwest::Method::GET, "/admin/v1/nothing-here".into(), None),
        (reqwest::Method::DELETE, "/admin/v1/actions".into(), None),
    ];
    for (method, path, body) in cases {
        let mut req = http.request(method.clone(), format!("{}{path}", app.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {path}");
        let v: Value = resp.json().await.expect("a JSON error body");
        assert_eq!(v["error"]["code"], "unauthorized", "{method} {path}: {v}");
    }
    // With the token, a path that does not decode is a JSON 400, not plain text.
    let resp = http
        .get(format!("{}/admin/v1/actions/%FF", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status() == 400 || resp.status() == 404,
        "{}",
        resp.status()
    );
    let v: Value = resp.json().await.expect("a JSON error body");
    assert!(v["error"]["code"].is_string(), "{v}");
}

#[tokio::test]
async fn a_lease_is_renewed_while_a_slow_action_runs_so_it_is_never_taken_over() {
    let mut opts = options("[worker]\nlease = \"300ms\"");
    opts.sim = SimConfig {
        api_key: Some(API_KEY.into()),
        latency: Duration::from_millis(500),
        ..SimConfig::default()
    };
    let app = spawn_app_with(opts).await;
    let id = app.terminate(Some("E-1043"), None).await;
    let action = app.wait_for_status(&id, "succeeded").await;
    let steps = TestApp::steps(&action);
    assert!(!steps.contains(&"resumed".to_string()), "{steps:?}");
    assert_eq!(
        steps.iter().filter(|s| *s == "attempt_started").count(),
        1,
        "{steps:?}"
    );
    assert_eq!(app.puts(), 1);
}

#[tokio::test]
async fn unfinished_work_resumes_soon_after_a_crash_not_after_a_long_lease() {
    // SQLite: the restarted process resumes its own work at start, even with a long lease.
    // PostgreSQL (replicas): the short lease, renewed while alive, runs out within seconds.
    let lease = if std::env::var("DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        "2s"
    } else {
        "1h"
    };
    let mut opts = options(&format!("[worker]\nlease = \"{lease}\""));
    opts.sim = SimConfig {
        api_key: Some(API_KEY.into()),
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let mut app = spawn_app_with(opts).await;
    let id = app.terminate(Some("E-1043"), None).await;
    app.wait_until_workfront_is_called().await;
    app.crash();
    let restarted = std::time::Instant::now();
    app.restart().await;
    let action = app.wait_for_status(&id, "succeeded").await;
    assert!(
        restarted.elapsed() < Duration::from_secs(10),
        "resumed within 10 s"
    );
    assert!(TestApp::steps(&action).contains(&"resumed".to_string()));
    assert_eq!(app.is_active(JOHN), Some(false));
}

#[tokio::test]
async fn authentication_is_checked_before_the_body_is_parsed() {
    let app = spawn_app().await;
    let ts = jiff::Timestamp::now().as_second();
    // A malformed body with a wrong signature: 401, not 400.
    let mut headers = signed_headers(SECRET, "msg_x", ts, "{\"other\": 1}");
    let a = app
        .post_raw("hr", &headers, b"not json at all".to_vec())
        .await;
    assert_error(&a, 401, "invalid_signature");
    // No signature at all on a body that is not JSON: 401 too.
    headers.retain(|(k, _)| k == "content-type");
    let a = app.post_raw("hr", &headers, b"[1, 2".to_vec()).await;
    assert_error(&a, 401, "missing_signature");
    // An implausible webhook-timestamp is a signature failure, without overflow.
    for bad in ["99999999999999999999999", "-1e9", "1.5"] {
        let body = termination(Some("E-1042"), None);
        let mut h = signed_headers(SECRET, "msg_y", ts, &body);
        let key = offboard::config::decode_whsec(SECRET, "t").unwrap();
        use secrecy::ExposeSecret;
        let sig =
            offboard::sources::signature::sign(key.expose_secret(), "msg_y", bad, body.as_bytes());
        for (k, v) in h.iter_mut() {
            if k == "webhook-timestamp" {
                *v = bad.into();
            }
            if k == "webhook-signature" {
                *v = sig.clone();
            }
        }
        let a = app.post_raw("hr", &h, body.into_bytes()).await;
        assert_error(&a, 401, "invalid_signature");
    }
    assert_eq!(action_count(&app).await, 0);
}

#[tokio::test]
async fn deliveries_are_acknowledged_at_once_while_workfront_hangs() {
    let mut opts = options("[workfront]\nrequest_timeout = \"30s\"");
    opts.sim = SimConfig {
        api_key: Some(API_KEY.into()),
        latency: Duration::from_secs(20),
        ..SimConfig::default()
    };
    let app = spawn_app_with(opts).await;
    let first = app.terminate(Some("E-1042"), None).await;
    // The worker is now stuck on Workfront.
    app.wait_until_workfront_is_called().await;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = std::time::Instant::now();
        let a = app
            .post_delivery(&termination(Some(&format!("H-{i}")), None))
            .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    }
    // Generous for a shared machine: the point is that nothing waits for the 20 s Workfront.
    assert!(slowest < Duration::from_secs(5), "slowest ack {slowest:?}");
    assert_eq!(app.admin_get_action(&first).await["status"], "in_progress");
}

#[tokio::test]
async fn the_retention_task_purges_bodies_on_its_schedule_without_a_restart() {
    let app = spawn_app_with(options(
        "[retention]\npayload_days = 0\ninterval = \"200ms\"",
    ))
    .await;
    let id = app.terminate(Some("E-1043"), None).await;
    let action = app.wait_for_status(&id, "succeeded").await;
    let delivery = action["events"][0]["delivery_id"].as_str().unwrap();
    let app = &app;
    wait::until(
        "the body to be purged on schedule",
        Duration::from_secs(10),
        || async move {
            match app.app().store().delivery_body(delivery).await.unwrap() {
                None => Ok(()),
                Some(_) => Err("the body is still stored".into()),
            }
        },
    )
    .await;
    // The audit trail stays readable.
    let again = app.admin_get_action(&id).await;
    assert_eq!(again["status"], "succeeded");
    assert!(!TestApp::steps(&again).is_empty());
}

#[tokio::test]
async fn shutdown_refuses_new_deliveries_and_gives_back_what_it_did_not_finish() {
    let mut opts = options("[worker]\nlease = \"1h\"");
    opts.sim = SimConfig {
        api_key: Some(API_KEY.into()),
        latency: Duration::from_millis(800),
        ..SimConfig::default()
    };
    let mut app = spawn_app_with(opts).await;
    let id = app.terminate(Some("E-1043"), None).await;
    app.wait_until_workfront_is_called().await;
    let running = app.app.take().unwrap();
    let base = app.base.clone();
    let stopping = tokio::spawn(running.stop());
    // The stop closes the listener within moments: deliveries are refused from then on.
    let base = &base;
    let late = wait::until(
        "the listener to close",
        Duration::from_secs(10),
        || async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/webhooks/hr"))
                .body("{}")
                .send()
                .await;
            match r {
                Err(e) => Ok(e),
                Ok(r) => Err(format!("still accepting during shutdown: {}", r.status())),
            }
        },
    )
    .await;
    assert!(late.is_connect() || late.is_request(), "{late}");
    stopping.await.unwrap();
    // The in-flight call finished (or its lease was given back): a new process completes it at
    // once, although the lease is an hour.
    app.restart().await;
    let done = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(done["reason"], "deactivated");
    assert_eq!(app.puts(), 1);
}

#[tokio::test]
async fn the_audit_records_a_workfront_request_as_sent_so_a_crafted_email_reads_as_one_value() {
    let app = spawn_app().await;
    let crafted = "x&emailAddr_Mod=cicontains&emailAddr=a@example.com";
    let id = app.terminate(None, Some(crafted)).await;
    let action = app
        .wait_for_action(&id, "a Workfront search to be recorded", |a| {
            a["audit"]
                .as_array()
                .is_some_and(|s| s.iter().any(|e| e["step"] == "workfront_call"))
        })
        .await;
    let requests: Vec<String> = action["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["step"] == "workfront_call")
        .map(|e| e["detail"]["request"].as_str().unwrap().to_string())
        .collect();
    let search = &requests[0];
    assert!(
        search.contains("emailAddr=x%26emailAddr_Mod%3Dcicontains%26emailAddr%3Da%40example.com&emailAddr_Mod=cieq"),
        "{search}"
    );
    assert!(!search.contains("&emailAddr_Mod=cicontains"), "{search}");
    assert_eq!(search.matches("emailAddr_Mod=").count(), 1, "{search}");
}
