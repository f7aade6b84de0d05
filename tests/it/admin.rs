//! The admin API basics: token first, list with filters and cursor, show, manual deactivation,
//! and the health endpoints.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn the_token_is_checked_before_anything_else() {
    let app = spawn_app().await;
    for path in ["/admin/v1/actions", "/admin/v1/actions/act_unknown"] {
        let none = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        let wrong = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = wrong.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let post = app
        .http
        .post(format!("{}/admin/v1/actions", app.base))
        .json(&json!({"email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_403() {
    let app = spawn_app_with(options("[admin]\ntoken = \"\"")).await;
    let a = app.admin_get("/admin/v1/actions").await;
    assert_error(&a, 403, "admin_disabled");
}

#[tokio::test]
async fn an_unknown_action_is_404() {
    let app = spawn_app().await;
    assert_error(
        &app.admin_get("/admin/v1/actions/act_nope").await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn a_manual_deactivation_is_accepted_and_carried_out() {
    let app = spawn_app().await;
    let a = app
        .admin_post(
            "/admin/v1/actions",
            json!({"email": "kim.lee@example.com", "name": "Kim Lee"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["source"], "admin");
    assert_eq!(a.body["kind"], "deactivate");
    let id = a.body["id"].as_str().unwrap();
    let action = app.wait_for_status(id, "succeeded").await;
    assert_eq!(action["workfront_user"]["ID"], KIM);
    assert_eq!(app.is_active(KIM), Some(false));
}

#[tokio::test]
async fn a_manual_deactivation_with_bad_input_is_refused_clearly() {
    let app = spawn_app().await;
    let req = |body: &'static str| {
        app.http
            .post(format!("{}/admin/v1/actions", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
    };
    let resp = req("nope").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = req(r#"{"name": "No Identifier"}"#).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_event");
}

#[tokio::test]
async fn the_list_is_newest_first_filtered_and_paged_with_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for who in ["E-0000", "E-0001", "E-0002", "E-0999", "E-1043"] {
        ids.push(app.terminate(Some(who), None).await);
    }
    for id in &ids {
        app.wait_for_action(id, "a final status", |a| {
            a["status"] == "succeeded" || a["status"] == "skipped"
        })
        .await;
    }
    let first = app.admin_get("/admin/v1/actions?limit=2").await;
    let page: Vec<&str> = first.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, vec![ids[4].as_str(), ids[3].as_str()]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .admin_get(&format!("/admin/v1/actions?limit=2&cursor={cursor}"))
        .await;
    let page: Vec<&str> = second.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, vec![ids[2].as_str(), ids[1].as_str()]);
    let third = app
        .admin_get(&format!(
            "/admin/v1/actions?limit=2&cursor={}",
            second.body["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(third.body["actions"].as_array().unwrap().len(), 1);
    assert!(third.body["next_cursor"].is_null());

    let skipped = app
        .admin_get("/admin/v1/actions?status=skipped&reason=not_found")
        .await;
    assert_eq!(skipped.body["actions"].as_array().unwrap().len(), 3);
    let one = app
        .admin_get("/admin/v1/actions?employee=E-0999&source=hr")
        .await;
    assert_eq!(one.body["actions"][0]["reason"], "already_inactive");
    let none = app.admin_get("/admin/v1/actions?source=other").await;
    assert_eq!(none.body["actions"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = spawn_app().await;
    for q in [
        "status=done",
        "reason=whatever",
        "limit=0",
        "limit=501",
        "limit=x",
        "cursor=abc",
        "colour=red",
    ] {
        assert_error(
            &app.admin_get(&format!("/admin/v1/actions?{q}")).await,
            400,
            "bad_request",
        );
    }
}

#[tokio::test]
async fn an_action_shows_the_fields_of_the_spec() {
    let app = spawn_app().await;
    let id = app
        .terminate(Some("E-1043"), Some("john.smith@example.com"))
        .await;
    let a = app.wait_for_status(&id, "succeeded").await;
    for key in [
        "id",
        "kind",
        "status",
        "reason",
        "due_at",
        "created_at",
        "updated_at",
        "source",
        "employee",
        "workfront_user",
        "candidates",
        "attempts",
        "events",
        "audit",
    ] {
        assert!(a.get(key).is_some(), "{key} missing: {a:#}");
    }
    assert_eq!(a["employee"]["email"], "john.smith@example.com");
    assert_eq!(a["workfront_user"]["emailAddr"], "john.smith@example.com");
    let first = &a["audit"][0];
    assert!(first["at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !a["audit"].to_string().contains(API_KEY),
        "no secret in the audit trail"
    );
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    let h = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), StatusCode::OK);
    let r: serde_json::Value = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready");
}
