//! Effective dates, cancellations, rehires, order, and retention.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

fn event(kind: &str, employee_id: &str, at: jiff::Timestamp, effective: Option<String>) -> String {
    json!({"type": kind, "timestamp": at.to_string(), "data": {"employee_id": employee_id, "effective_at": effective}}).to_string()
}

fn secs(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(n)
}

async fn send(app: &TestApp, body: &str) -> Value {
    let a = app.post_delivery(body).await;
    assert!(a.status.is_success(), "{}", a.body);
    a.body
}

fn first_action(answer: &Value) -> String {
    answer["actions"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no action in {answer}"))
        .to_string()
}

/// Posts an event for `employee_id` and returns the action it created.
async fn act(
    app: &TestApp,
    kind: &str,
    employee_id: &str,
    at: jiff::Timestamp,
    effective: Option<&str>,
) -> String {
    first_action(
        &send(
            app,
            &event(kind, employee_id, at, effective.map(str::to_string)),
        )
        .await,
    )
}

#[tokio::test]
async fn a_future_termination_is_scheduled_and_executed_when_due() {
    let app = spawn_app().await;
    let now = app.clock.now();
    // Stored to the millisecond.
    let due = jiff::Timestamp::from_millisecond((now + secs(3600)).as_millisecond()).unwrap();
    let id = act(
        &app,
        "employee.terminated",
        "E-1043",
        now,
        Some(&due.to_string()),
    )
    .await;
    let a = app.admin_get_action(&id).await;
    assert_eq!(a["status"], "scheduled");
    assert_eq!(
        a["due_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap(),
        due
    );
    // A sentinel due now is worked while ours waits: nothing is written before the due time.
    let sentinel = app.terminate(Some("E-1042"), None).await;
    app.wait_for_status(&sentinel, "succeeded").await;
    assert_eq!(app.puts(), 1, "only the sentinel's write");
    assert_eq!(app.admin_get_action(&id).await["status"], "scheduled");
    assert_eq!(app.is_active(JOHN), Some(true));
    app.advance(Duration::from_secs(3600));
    let done = app.wait_for_status(&id, "succeeded").await;
    let written = done["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "written")
        .expect("a written step");
    let at: jiff::Timestamp = written["at"].as_str().unwrap().parse().unwrap();
    assert!(at >= due, "written at {at}, due at {due}");
}

#[tokio::test]
async fn a_date_only_effective_date_is_read_in_the_configured_zone() {
    let app = spawn_app_with(options("[lifecycle]\ntimezone = \"Europe/Berlin\"")).await;
    let now = jiff::Timestamp::now();
    let id = act(
        &app,
        "employee.terminated",
        "E-1043",
        now,
        Some("2099-07-01"),
    )
    .await;
    let a = app.admin_get_action(&id).await;
    assert_eq!(
        a["due_at"], "2099-07-01T22:00:00Z",
        "00:00 of 2 July in Berlin (CEST)"
    );
    assert_eq!(a["status"], "scheduled");
}

#[tokio::test]
async fn an_action_whose_due_time_passed_while_the_service_was_down_runs_after_restart() {
    let mut app = spawn_app().await;
    let now = app.clock.now();
    let due = now + secs(3600);
    let id = act(
        &app,
        "employee.terminated",
        "E-1043",
        now,
        Some(&due.to_string()),
    )
    .await;
    app.app.take().unwrap().stop().await;
    app.advance(Duration::from_secs(3601));
    assert_eq!(app.puts(), 0, "nothing ran while down");
    app.restart().await;
    app.wait_for_status(&id, "succeeded").await;
    assert_eq!(app.is_active(JOHN), Some(false));
}

#[tokio::test]
async fn a_cancellation_before_execution_cancels_the_termination() {
    let app = spawn_app().await;
    let now = jiff::Timestamp::now();
    let id = act(
        &app,
        "employee.terminated",
        "E-1043",
        now,
        Some("2099-01-01"),
    )
    .await;
    let cancel = send(
        &app,
        &event(
            "employee.termination_cancelled",
            "E-1043",
            now + secs(1),
            None,
        ),
    )
    .await;
    assert_eq!(cancel["status"], "accepted");
    assert_eq!(
        cancel["actions"].as_array().unwrap().len(),
        0,
        "nothing to undo"
    );
    let a = app.admin_get_action(&id).await;
    assert_eq!(
        (a["status"].as_str(), a["reason"].as_str()),
        (Some("cancelled"), Some("termination_cancelled"))
    );
    assert!(TestApp::steps(&a).contains(&"cancelled_by_hr".to_string()));
    assert_eq!(app.puts(), 0);
    let m = app.metrics().await;
    let cancelled = "offboard_actions_total{kind=\"deactivate\",status=\"cancelled\",reason=\"termination_cancelled\"}";
    assert_eq!(metric(&m, cancelled), Some(1.0), "{m}");
}

#[tokio::test]
async fn a_cancellation_after_execution_reactivates_the_same_user() {
    let app = spawn_app().await;
    let now = jiff::Timestamp::now();
    let id = act(&app, "employee.terminated", "E-1043", now, None).await;
    app.wait_for_status(&id, "succeeded").await;
    assert_eq!(app.is_active(JOHN), Some(false));
    let cancel = send(
        &app,
        &event(
            "employee.termination_cancelled",
            "E-1043",
            now + secs(1),
            None,
        ),
    )
    .await;
    let re = first_action(&cancel);
    let a = app.wait_for_status(&re, "succeeded").await;
    assert_eq!(
        (a["kind"].as_str(), a["reason"].as_str()),
        (Some("reactivate"), Some("reactivated"))
    );
    assert_eq!(a["workfront_user"]["ID"], JOHN);
    assert_eq!(app.is_active(JOHN), Some(true));
}

#[tokio::test]
async fn a_cancellation_after_execution_leaves_the_user_inactive_when_reactivate_on_cancel_is_off()
{
    let app = spawn_app_with(options("[lifecycle]\nreactivate_on_cancel = false")).await;
    let now = jiff::Timestamp::now();
    let id = act(&app, "employee.terminated", "E-1043", now, None).await;
    app.wait_for_status(&id, "succeeded").await;
    let cancel = send(
        &app,
        &event(
            "employee.termination_cancelled",
            "E-1043",
            now + secs(1),
            None,
        ),
    )
    .await;
    assert!(cancel["actions"].as_array().unwrap().is_empty());
    assert_eq!(app.is_active(JOHN), Some(false));
}

#[tokio::test]
async fn a_rehire_reactivates_with_the_configured_access_level_when_enabled() {
    let app = spawn_app_with(options(
        "[lifecycle]\nreactivate_on_rehire = true\nreactivation_access_level_id = \"LEVEL-2\"",
    ))
    .await;
    let now = jiff::Timestamp::now();
    let id = act(&app, "employee.terminated", "E-1043", now, None).await;
    app.wait_for_status(&id, "succeeded").await;
    let re = act(&app, "employee.rehired", "E-1043", now + secs(1), None).await;
    let a = app.wait_for_status(&re, "succeeded").await;
    assert_eq!(a["reason"], "reactivated");
    let user = app.sim.sim.user(JOHN).unwrap();
    assert_eq!(user["isActive"], true);
    assert_eq!(user["accessLevelID"], "LEVEL-2");
}

#[tokio::test]
async fn a_rehire_is_recorded_as_reactivation_disabled_when_the_switch_is_off() {
    let app = spawn_app().await;
    let now = jiff::Timestamp::now();
    let id = act(&app, "employee.terminated", "E-1043", now, None).await;
    app.wait_for_status(&id, "succeeded").await;
    let re = act(&app, "employee.rehired", "E-1043", now + secs(1), None).await;
    let a = app.admin_get_action(&re).await;
    assert_eq!(
        (a["status"].as_str(), a["reason"].as_str()),
        (Some("skipped"), Some("reactivation_disabled"))
    );
    assert_eq!(app.is_active(JOHN), Some(false));
}

#[tokio::test]
async fn a_cancellation_that_arrives_before_its_termination_wins() {
    let app = spawn_app().await;
    let t1 = jiff::Timestamp::now() - secs(60);
    let cancel = send(
        &app,
        &event(
            "employee.termination_cancelled",
            "E-1043",
            t1 + secs(30),
            None,
        ),
    )
    .await;
    assert!(cancel["actions"].as_array().unwrap().is_empty());
    let late = send(&app, &event("employee.terminated", "E-1043", t1, None)).await;
    let id = first_action(&late);
    let a = app.admin_get_action(&id).await;
    assert_eq!(
        (a["status"].as_str(), a["reason"].as_str()),
        (Some("skipped"), Some("superseded"))
    );
    assert!(a["audit"][0]["detail"]["superseded_by_event"]
        .as_str()
        .unwrap()
        .starts_with("evt_"));
    // The superseded action was final when stored: no worker ever takes it.
    assert!(a["done_at"].is_string());
    assert_eq!(app.puts(), 0);
    assert_eq!(app.is_active(JOHN), Some(true));
}

#[tokio::test]
async fn duplicates_and_reordering_mixed_end_in_the_state_of_the_newest_event() {
    let app = spawn_app().await;
    let t0 = jiff::Timestamp::now() - secs(600);
    let term1 = event(
        "employee.terminated",
        "E-1043",
        t0,
        Some("2099-01-01".into()),
    );
    let now = jiff::Timestamp::now().as_second();
    let first = app.post_signed("msg_t1", now, &term1).await;
    let dup = app.post_signed("msg_t1", now, &term1).await;
    assert_eq!(dup.body["status"], "duplicate");
    // Newer: HR cancels, then terminates again effective now.
    send(
        &app,
        &event(
            "employee.termination_cancelled",
            "E-1043",
            t0 + secs(100),
            None,
        ),
    )
    .await;
    let again = act(&app, "employee.terminated", "E-1043", t0 + secs(200), None).await;
    // A stale cancellation (older than the re-termination) arrives late and changes nothing.
    send(
        &app,
        &event(
            "employee.termination_cancelled",
            "E-1043",
            t0 + secs(150),
            None,
        ),
    )
    .await;
    let done = app.wait_for_status(&again, "succeeded").await;
    assert_eq!(done["reason"], "deactivated");
    let first_id = first.body["actions"][0].as_str().unwrap();
    assert_eq!(app.admin_get_action(first_id).await["status"], "cancelled");
    assert_eq!(app.puts(), 1, "exactly one write");
    assert_eq!(app.is_active(JOHN), Some(false));
}

#[tokio::test]
async fn a_newer_termination_replaces_an_earlier_scheduled_one() {
    let app = spawn_app().await;
    let now = jiff::Timestamp::now();
    let old = act(
        &app,
        "employee.terminated",
        "E-1043",
        now,
        Some("2099-01-01"),
    )
    .await;
    let new = act(
        &app,
        "employee.terminated",
        "E-1043",
        now + secs(1),
        Some("2099-02-01"),
    )
    .await;
    let a = app.admin_get_action(&old).await;
    assert_eq!(
        (a["status"].as_str(), a["reason"].as_str()),
        (Some("skipped"), Some("superseded"))
    );
    assert_eq!(app.admin_get_action(&new).await["status"], "scheduled");
}

#[tokio::test]
async fn the_same_employee_is_recognised_by_email_ignoring_case() {
    let app = spawn_app().await;
    let now = jiff::Timestamp::now();
    let term = json!({"type": "employee.terminated", "timestamp": now.to_string(),
        "data": {"email": "John.Smith@example.com", "effective_at": "2099-01-01"}})
    .to_string();
    let id = first_action(&send(&app, &term).await);
    let cancel =
        json!({"type": "employee.termination_cancelled", "timestamp": (now + secs(1)).to_string(),
        "data": {"employee_id": "E-1043", "email": "john.smith@EXAMPLE.com"}})
        .to_string();
    send(&app, &cancel).await;
    assert_eq!(app.admin_get_action(&id).await["status"], "cancelled");
}

#[tokio::test]
async fn purging_payloads_keeps_the_audit_trail_readable() {
    let app = spawn_app().await;
    let answer = send(
        &app,
        &termination(Some("E-1043"), Some("john.smith@example.com")),
    )
    .await;
    let id = first_action(&answer);
    let delivery = answer["delivery_id"].as_str().unwrap();
    app.wait_for_status(&id, "succeeded").await;
    let store = app.app().store();
    assert!(store
        .delivery_body(delivery)
        .await
        .unwrap()
        .unwrap()
        .contains("john.smith"));
    let now = jiff::Timestamp::now().as_millisecond();
    // Nothing is old enough yet.
    assert_eq!(store.purge(now, 30, 400).await.unwrap(), (0, 0));
    let later = now + 31 * 86_400_000;
    let (bodies, audit) = store.purge(later, 30, 400).await.unwrap();
    assert_eq!((bodies, audit), (1, 0));
    assert_eq!(store.delivery_body(delivery).await.unwrap(), None);
    let a = app.admin_get_action(&id).await;
    assert!(TestApp::steps(&a).len() >= 5, "the audit trail stays");
    assert_eq!(a["events"][0]["type"], "employee.terminated");
    let much_later = now + 401 * 86_400_000;
    let (_, audit) = store.purge(much_later, 30, 400).await.unwrap();
    assert!(audit >= 5);
}

#[tokio::test]
async fn a_cancellation_that_arrives_while_the_action_is_being_worked_on_stops_it_before_the_write()
{
    let mut opts = options("");
    opts.sim.latency = Duration::from_millis(400);
    let app = spawn_app_with(opts).await;
    let now = jiff::Timestamp::now();
    let id = act(&app, "employee.terminated", "E-1043", now, None).await;
    app.wait_until_workfront_is_called().await;
    send(
        &app,
        &event(
            "employee.termination_cancelled",
            "E-1043",
            now + secs(1),
            None,
        ),
    )
    .await;
    let a = app.wait_for_status(&id, "cancelled").await;
    assert_eq!(a["reason"], "termination_cancelled");
    assert!(TestApp::steps(&a).contains(&"cancel_requested".to_string()));
    assert_eq!(app.puts(), 0);
    assert_eq!(app.is_active(JOHN), Some(true));
}
