//! Safety and operator control: the brake, approvals (also of ambiguous matches), retry, cancel,
//! notifications and metrics.

use std::time::Duration;

use offboard::sim::Fault;
use serde_json::json;

use crate::harness::*;

/// The sample users plus a plain active one, `E-5001`.
fn brake_opts(max: u32, window: &str, notify: &str) -> Options {
    let mut opts = options(&format!("[safety]\nbrake_max = {max}\nbrake_window = \"{window}\"\n[notify]\nwebhook_url = \"{notify}\""));
    let extra = json!({"ID": EXTRA, "name": "Extra User", "emailAddr": "extra@example.com", "isActive": true, "isAdmin": false, "extRefID": "E-5001"});
    opts.sim.users.push(serde_json::from_value(extra).unwrap());
    opts
}

const EXTRA: &str = "5f1c0a7e0000a1b2c3d4e5f600005001";

/// Three users the brake tests terminate in order (all active in the sample data).
const WAVE: [(&str, &str); 4] = [
    ("E-1042", JANE),
    ("E-1043", JOHN),
    ("E-3001", KIM),
    ("E-0999", OLD_LEAVER),
];

#[tokio::test]
async fn the_brake_lets_exactly_brake_max_through_and_holds_the_next_with_one_notification() {
    let hook = Receiver::start().await;
    let app = spawn_app_with(brake_opts(2, "1h", &hook.url)).await;
    let mut ids = Vec::new();
    for (emp, _) in &WAVE[..2] {
        let id = app.terminate(Some(emp), None).await;
        app.wait_for_status(&id, "succeeded").await;
        ids.push(id);
    }
    assert_eq!(app.puts(), 2, "brake_max deactivations pass");
    let third = app.terminate(Some(WAVE[2].0), None).await;
    let held = app.wait_for_status(&third, "held").await;
    assert_eq!(held["reason"], "rate_brake");
    assert_eq!(
        held["workfront_user"]["ID"], KIM,
        "the held action names the user"
    );
    assert_eq!(app.is_active(KIM), Some(true));
    let note = hook
        .wait_for("brake engaged", |v| v["reason"] == "rate_brake")
        .await;
    assert!(note["text"].as_str().unwrap().contains("brake"), "{note}");
    assert_eq!(note["action_id"], third.as_str());

    // A second held action in the same engagement sends no second brake notification. The admin
    // hold after it is the sentinel: once its notification is in, the brake hold before it has
    // long been decided.
    let fourth = app.terminate(Some("E-5001"), None).await;
    assert_eq!(
        app.wait_for_status(&fourth, "held").await["reason"],
        "rate_brake"
    );
    let m = app.metrics().await;
    assert_eq!(metric(&m, "offboard_brake_engaged"), Some(1.0), "{m}");
    let sentinel = app.terminate(Some("E-1001"), None).await;
    hook.wait_for("the sentinel hold", |v| v["action_id"] == sentinel.as_str())
        .await;
    assert_eq!(
        hook.received()
            .iter()
            .filter(|v| v["reason"] == "rate_brake")
            .count(),
        1
    );

    // Release: the held deactivation goes ahead.
    let released = app
        .admin_post(
            "/admin/v1/brake/release",
            json!({"operator": "alice", "note": "HR confirmed"}),
        )
        .await;
    assert_eq!(released.status.as_u16(), 200, "{}", released.body);
    assert!(released.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == third.as_str()));
    app.wait_for_status(&fourth, "succeeded").await;
    let done = app.wait_for_status(&third, "succeeded").await;
    assert!(TestApp::steps(&done).contains(&"brake_released".to_string()));
    assert!(done["audit"].to_string().contains("alice"));
    assert_eq!(app.is_active(KIM), Some(false));
    assert_eq!(
        metric(&app.metrics().await, "offboard_brake_engaged"),
        Some(0.0)
    );
}

#[tokio::test]
async fn the_brake_window_slides_so_later_deactivations_pass_again() {
    let app = spawn_app_with(brake_opts(1, "1h", "")).await;
    let first = app.terminate(Some(WAVE[0].0), None).await;
    app.wait_for_status(&first, "succeeded").await;
    let second = app.terminate(Some(WAVE[1].0), None).await;
    assert_eq!(
        app.wait_for_status(&second, "held").await["reason"],
        "rate_brake"
    );
    // The first write becomes older than the window.
    app.advance(Duration::from_secs(3601));
    let third = app.terminate(Some(WAVE[2].0), None).await;
    app.wait_for_status(&third, "succeeded").await;
}

#[tokio::test]
async fn the_brake_counts_across_a_restart() {
    let mut app = spawn_app_with(brake_opts(1, "1h", "")).await;
    let first = app.terminate(Some(WAVE[0].0), None).await;
    app.wait_for_status(&first, "succeeded").await;
    app.restart().await;
    let second = app.terminate(Some(WAVE[1].0), None).await;
    assert_eq!(
        app.wait_for_status(&second, "held").await["reason"],
        "rate_brake"
    );
}

#[tokio::test]
async fn an_ambiguous_match_is_resolved_by_approving_one_candidate() {
    let app = spawn_app().await;
    let id = app.terminate(Some("E-2000"), None).await;
    let held = app.wait_for_status(&id, "held").await;
    let candidates: Vec<String> = held["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(candidates.len(), 2);
    let path = format!("/admin/v1/actions/{id}/approve");

    assert_error(&app.admin_post(&path, json!({})).await, 400, "bad_request");
    assert_error(
        &app.admin_post(&path, json!({"workfront_user_id": JOHN}))
            .await,
        400,
        "bad_request",
    );

    let approved = app
        .admin_post(
            &path,
            json!({"workfront_user_id": candidates[1], "operator": "bob"}),
        )
        .await;
    assert_eq!(approved.status.as_u16(), 200, "{}", approved.body);
    let done = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(done["workfront_user"]["ID"], candidates[1].as_str());
    assert_eq!(app.is_active(&candidates[1]), Some(false));
    assert_eq!(
        app.is_active(&candidates[0]),
        Some(true),
        "the other candidate is untouched"
    );
    assert!(TestApp::steps(&done).contains(&"operator_approved".to_string()));
}

#[tokio::test]
async fn an_override_to_a_user_outside_the_candidates_is_allowed_and_audited() {
    let app = spawn_app().await;
    let id = app.terminate(Some("E-2000"), None).await;
    app.wait_for_status(&id, "held").await;
    let ok = app
        .admin_post(
            &format!("/admin/v1/actions/{id}/approve"),
            json!({"workfront_user_id": KIM, "override": true}),
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200, "{}", ok.body);
    let done = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(done["workfront_user"]["ID"], KIM);
    let approval = done["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "operator_approved")
        .unwrap()
        .clone();
    assert_eq!(approval["detail"]["override"], true);
}

#[tokio::test]
async fn approving_lifts_admin_protection_and_approval_holds() {
    let app = spawn_app_with(options("[safety]\nrequire_approval = true")).await;
    let admin = app.terminate(Some("E-1001"), None).await;
    assert_eq!(
        app.wait_for_status(&admin, "held").await["reason"],
        "admin_user"
    );
    let normal = app.terminate(Some("E-1043"), None).await;
    assert_eq!(
        app.wait_for_status(&normal, "held").await["reason"],
        "approval_required"
    );
    for id in [&admin, &normal] {
        let a = app
            .admin_post(&format!("/admin/v1/actions/{id}/approve"), json!({}))
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.body);
        app.wait_for_status(id, "succeeded").await;
    }
    assert_eq!(app.is_active(ADA_ADMIN), Some(false));
}

#[tokio::test]
async fn operations_that_do_not_fit_the_status_are_409() {
    let app = spawn_app().await;
    let id = app.terminate(Some("E-1043"), None).await;
    app.wait_for_status(&id, "succeeded").await;
    for op in ["approve", "retry", "cancel"] {
        let a = app
            .admin_post(&format!("/admin/v1/actions/{id}/{op}"), json!({}))
            .await;
        assert_error(&a, 409, "conflict");
        assert!(a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("succeeded"));
    }
}

#[tokio::test]
async fn operator_endpoints_check_the_token_first_and_404_unknown_ids() {
    let app = spawn_app().await;
    for op in ["approve", "retry", "cancel"] {
        let path = format!("/admin/v1/actions/act_nope/{op}");
        assert_error(
            &app.admin_post_raw(&path, None, "{}").await,
            401,
            "unauthorized",
        );
        assert_error(
            &app.admin_post_raw(&path, Some("wrong"), "{}").await,
            401,
            "unauthorized",
        );
        assert_error(
            &app.admin_post_raw(&path, Some(ADMIN_TOKEN), "{}").await,
            404,
            "not_found",
        );
    }
    assert_error(
        &app.admin_post_raw("/admin/v1/brake/release", Some("wrong"), "")
            .await,
        401,
        "unauthorized",
    );
    assert_error(
        &app.admin_post_raw(
            "/admin/v1/actions/act_00000000000000000000000000000000/cancel",
            Some(ADMIN_TOKEN),
            "{\"colour\":1}",
        )
        .await,
        400,
        "bad_request",
    );
    let disabled = spawn_app_with(options("[admin]\ntoken = \"\"")).await;
    assert_error(
        &disabled
            .admin_post_raw("/admin/v1/brake/release", Some("x"), "")
            .await,
        403,
        "admin_disabled",
    );
}

#[tokio::test]
async fn a_failed_action_retried_by_an_operator_gets_a_fresh_budget() {
    let app = spawn_app().await;
    app.sim.sim.push_fault(Fault {
        status: 500,
        count: 4,
        method: None,
        class: None,
        message: None,
        apply_then_fail: false,
        ..Fault::status(0)
    });
    let id = app.terminate(Some("E-1043"), None).await;
    let failed = app.wait_for_status(&id, "failed").await;
    assert_eq!(failed["reason"], "retries_exhausted");
    let r = app
        .admin_post(
            &format!("/admin/v1/actions/{id}/retry"),
            json!({"operator": "carol"}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    let done = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(done["attempts"], 1, "the budget starts again");
    assert!(TestApp::steps(&done).contains(&"operator_retry".to_string()));
}

#[tokio::test]
async fn a_scheduled_action_can_be_cancelled_by_an_operator() {
    let app = spawn_app().await;
    let body = json!({"type": "employee.terminated", "data": {"employee_id": "E-1043", "effective_at": "2099-01-01"}}).to_string();
    let a = app.post_delivery(&body).await;
    let id = a.body["actions"][0].as_str().unwrap().to_string();
    assert_eq!(app.admin_get_action(&id).await["status"], "scheduled");
    let c = app
        .admin_post(
            &format!("/admin/v1/actions/{id}/cancel"),
            json!({"note": "HR withdrew it"}),
        )
        .await;
    assert_eq!(c.status.as_u16(), 200, "{}", c.body);
    assert_eq!(c.body["status"], "cancelled");
    assert_eq!(c.body["reason"], "operator");
    assert!(c.body["audit"].to_string().contains("HR withdrew it"));
    assert_eq!(app.puts(), 0);
}

#[tokio::test]
async fn holds_and_failures_are_notified_and_a_dead_endpoint_harms_nothing() {
    let hook = Receiver::start().await;
    let app = spawn_app_with(options(&format!(
        "[notify]\nwebhook_url = \"{}\"",
        hook.url
    )))
    .await;
    let held = app.terminate(Some("E-1001"), None).await;
    app.wait_for_status(&held, "held").await;
    let n = hook
        .wait_for("for the admin hold", |v| v["action_id"] == held.as_str())
        .await;
    assert_eq!(
        (n["status"].as_str(), n["reason"].as_str()),
        (Some("held"), Some("admin_user"))
    );
    assert!(n["text"].as_str().unwrap().contains("held/admin_user"));

    app.sim.sim.push_fault(Fault {
        status: 400,
        count: 1,
        method: Some("PUT".into()),
        class: None,
        message: Some("no".into()),
        apply_then_fail: false,
        ..Fault::status(0)
    });
    let failed = app.terminate(Some("E-1043"), None).await;
    app.wait_for_status(&failed, "failed").await;
    hook.wait_for("for the failure", |v| {
        v["action_id"] == failed.as_str() && v["status"] == "failed"
    })
    .await;

    let dead = spawn_app_with(options(
        "[notify]\nwebhook_url = \"http://127.0.0.1:1/nothing\"",
    ))
    .await;
    let id = dead.terminate(Some("E-1001"), None).await;
    dead.wait_for_status(&id, "held").await;
    let ok = dead.terminate(Some("E-1043"), None).await;
    dead.wait_for_status(&ok, "succeeded").await;
}

#[tokio::test]
async fn auth_trouble_is_notified_once() {
    let hook = Receiver::start().await;
    let app = spawn_app_with(options(&format!(
        "[notify]\nwebhook_url = \"{}\"",
        hook.url
    )))
    .await;
    app.sim.sim.set_api_key(Some("other".into()));
    let a = app.terminate(Some("E-1043"), None).await;
    let b = app.terminate(Some("E-3001"), None).await;
    hook.wait_for("auth trouble", |v| v["reason"] == "workfront_auth")
        .await;
    for id in [&a, &b] {
        app.wait_for_action(id, "waiting on auth", |x| x["reason"] == "workfront_auth")
            .await;
    }
    // Sentinel: with the key working again, an admin hold notifies; auth trouble was told once.
    app.sim.sim.set_api_key(Some(API_KEY.into()));
    let sentinel = app.terminate(Some("E-1001"), None).await;
    hook.wait_for("the sentinel hold", |v| v["action_id"] == sentinel.as_str())
        .await;
    assert_eq!(
        hook.received()
            .iter()
            .filter(|v| v["reason"] == "workfront_auth")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_metrics_scrape_shows_the_counters_move() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    assert_eq!(
        metric(
            &before,
            "offboard_deliveries_total{source=\"hr\",result=\"accepted\"}"
        ),
        None
    );
    let id = app.terminate(Some("E-1043"), None).await;
    app.wait_for_status(&id, "succeeded").await;
    let _ = app.post_delivery("nonsense").await;
    let future = json!({"type": "employee.terminated", "data": {"employee_id": "E-3001", "effective_at": "2099-01-01"}}).to_string();
    app.post_delivery(&future).await;
    let m = app.metrics().await;
    assert_eq!(
        metric(
            &m,
            "offboard_deliveries_total{source=\"hr\",result=\"accepted\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "offboard_deliveries_total{source=\"hr\",result=\"malformed_payload\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "offboard_actions_total{kind=\"deactivate\",status=\"succeeded\",reason=\"deactivated\"}"), Some(1.0));
    assert_eq!(
        metric(
            &m,
            "offboard_workfront_requests_total{op=\"update\",outcome=\"ok\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "offboard_actions_waiting{status=\"scheduled\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "offboard_effective_to_done_seconds_count"),
        Some(1.0)
    );
    assert!(
        metric(
            &m,
            "offboard_last_delivery_timestamp_seconds{source=\"hr\"}"
        )
        .unwrap()
            > 1.7e9
    );
    assert!(m.contains("offboard_workfront_request_seconds_bucket"));
}
