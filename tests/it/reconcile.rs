//! Reconciliation (SPEC §12): lists of leavers checked against the simulator, row by row.

use std::time::Duration;

use offboard::sim::{Fault, SimConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;
use crate::wait;

/// Posts a list; returns the 202 body.
async fn post_list(app: &TestApp, content_type: &str, query: &str, body: String) -> Answer {
    let req = app
        .http
        .post(format!("{}/admin/v1/reconciliations{query}", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", content_type)
        .body(body);
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        request_id,
    }
}

/// Posts a list and waits for its report to be done.
async fn reconcile(app: &TestApp, content_type: &str, query: &str, body: String) -> Value {
    let a = post_list(app, content_type, query, body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["status"], "running");
    let id = a.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("rec_"), "{id}");
    wait_for_report(app, &id).await
}

async fn wait_for_report(app: &TestApp, id: &str) -> Value {
    wait::until(
        "the reconciliation to be done",
        Duration::from_secs(30),
        || async {
            let r = app
                .admin_get(&format!("/admin/v1/reconciliations/{id}"))
                .await;
            if r.status == StatusCode::OK && r.body["status"] == "done" {
                Ok(r.body)
            } else {
                Err(r.body.to_string())
            }
        },
    )
    .await
}

fn outcomes(report: &Value) -> Vec<String> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// A termination for John effective in 2099: an action of ours waits for him.
async fn john_scheduled(app: &TestApp) -> String {
    let body = json!({"type": "employee.terminated", "data": {"employee_id": "E-1043", "effective_at": "2099-01-01"}});
    let a = app.post_delivery(&body.to_string()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.body["actions"][0].as_str().unwrap().to_string();
    app.wait_for_status(&id, "scheduled").await;
    id
}

fn mixed_csv() -> String {
    [
        "Name,email,employee_id,terminated_on,Department",
        "Jane,jane.doe@example.com,,2026-11-30,Sales",
        "Old,,E-0999,2025-01-31,Ops",
        "Nobody,nobody@example.com,,,",
        "Sam,,E-2000,,",
        "John,,E-1043,2026-12-31,",
        "Blank,,,2026-11-30,",
    ]
    .join("\n")
}

fn mixed_json() -> String {
    json!({"leavers": [
        {"email": "jane.doe@example.com", "terminated_on": "2026-11-30"},
        {"employee_id": "E-0999"},
        {"email": "nobody@example.com"},
        {"employee_id": "E-2000"},
        {"employee_id": "E-1043"},
        {"terminated_on": "2026-11-30"},
    ]})
    .to_string()
}

const EXPECTED: [&str; 6] = [
    "active",
    "inactive",
    "not_found",
    "ambiguous",
    "pending",
    "invalid",
];

fn check_mixed(report: &Value, john_action: &str) {
    assert_eq!(outcomes(report), EXPECTED, "{report}");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows[0]["workfront_user"]["ID"], JANE);
    assert_eq!(
        rows[0]["workfront_user"]["emailAddr"],
        "jane.doe@example.com"
    );
    assert_eq!(rows[0]["action_id"], Value::Null, "no apply: no action");
    assert_eq!(rows[1]["workfront_user"]["ID"], OLD_LEAVER);
    assert_eq!(rows[2]["workfront_user"], Value::Null);
    assert!(rows[3]["detail"].as_str().unwrap().contains("candidates"));
    assert_eq!(rows[4]["action_id"], john_action);
    assert!(rows[5]["detail"]
        .as_str()
        .unwrap()
        .contains("no employee_id"));
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["row"], i as i64 + 1);
    }
    let c = &report["counts"];
    for (name, n) in [
        ("inactive", 1),
        ("active", 1),
        ("not_found", 1),
        ("ambiguous", 1),
        ("pending", 1),
        ("invalid", 1),
        ("unchecked", 0),
    ] {
        assert_eq!(c[name], n, "{name}: {c}");
    }
    assert_eq!(report["total"], 6);
    assert_eq!(report["apply"], false);
    assert!(report["finished_at"].is_string());
}

#[tokio::test]
async fn a_reconciliation_reports_every_outcome_row_by_row_from_json_and_csv_and_writes_nothing() {
    let app = spawn_app().await;
    let john = john_scheduled(&app).await;

    let from_json = reconcile(&app, "application/json", "", mixed_json()).await;
    check_mixed(&from_json, &john);
    let from_csv = reconcile(&app, "text/csv", "", mixed_csv()).await;
    check_mixed(&from_csv, &john);
    assert_eq!(from_csv["rows"][0]["terminated_on"], "2026-11-30");

    // Search only: no write reached Workfront, Jane is still active.
    assert_eq!(app.puts(), 0);
    assert_eq!(app.is_active(JANE), Some(true));

    // The same report as CSV, one line per row in input order.
    let id = from_csv["id"].as_str().unwrap();
    let resp = app
        .http
        .get(format!("{}/admin/v1/reconciliations/{id}", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert!(lines[0].starts_with("row,employee_id,email,terminated_on,outcome,workfront_user_id"));
    for (i, outcome) in EXPECTED.iter().enumerate() {
        let cells: Vec<&str> = lines[i + 1].split(',').collect();
        assert_eq!(cells[0], (i + 1).to_string(), "{}", lines[i + 1]);
        assert_eq!(cells[4], *outcome, "{}", lines[i + 1]);
    }
    assert!(lines[1].contains(JANE) && lines[1].contains("jane.doe@example.com"));
    assert!(lines[5].contains(&john));

    // The gap is visible to monitoring.
    let m = app.metrics().await;
    assert_eq!(metric(&m, "offboard_reconcile_gaps"), Some(1.0), "{m}");
}

#[tokio::test]
async fn applying_deactivates_each_gap_through_the_brake_and_a_second_run_writes_nothing_twice() {
    let users: Vec<serde_json::Map<String, Value>> = (0..100)
        .map(|i| {
            json!({"ID": format!("{i:032x}"), "name": format!("Leaver {i}"),
                "emailAddr": format!("leaver{i}@example.com"), "extRefID": format!("L-{i}"), "isActive": true})
            .as_object()
            .unwrap()
            .clone()
        })
        .collect();
    let app = spawn_app_with(Options {
        sim: SimConfig {
            users,
            api_key: Some(API_KEY.into()),
            ..SimConfig::default()
        },
        ..options("[safety]\nbrake_max = 25\nbrake_window = \"1h\"")
    })
    .await;
    let mut csv = String::from("employee_id,email\n");
    for i in 0..100 {
        csv.push_str(&format!("L-{i},leaver{i}@example.com\n"));
    }

    let first = reconcile(&app, "text/csv", "?apply=true", csv.clone()).await;
    assert_eq!(first["apply"], true);
    assert_eq!(first["counts"]["active"], 100, "{}", first["counts"]);
    let actions: Vec<String> = first["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["action_id"]
                .as_str()
                .expect("every gap got an action")
                .to_string()
        })
        .collect();

    // Through the normal pipeline: 25 written, the brake holds the other 75.
    let settled = wait::until(
        "every deactivation to settle",
        Duration::from_secs(30),
        || async {
            let mut done = (0, 0);
            for id in &actions {
                let a = app.admin_get_action(id).await;
                match (a["status"].as_str(), a["reason"].as_str()) {
                    (Some("succeeded"), _) => done.0 += 1,
                    (Some("held"), Some("rate_brake")) => done.1 += 1,
                    _ => return Err(format!("{id} is {} {}", a["status"], a["reason"])),
                }
            }
            Ok(done)
        },
    )
    .await;
    assert_eq!(settled, (25, 75));
    assert_eq!(app.puts(), 25);
    let a = app.admin_get_action(&actions[0]).await;
    assert_eq!(a["source"], "reconcile");
    assert_eq!(a["events"][0]["sender_type"], "reconcile.gap");

    // The same list again: the 25 are inactive, the 75 wait in the brake; nothing new is made.
    let second = reconcile(&app, "text/csv", "?apply=true", csv).await;
    let c = &second["counts"];
    assert_eq!(
        (
            c["inactive"].as_i64(),
            c["pending"].as_i64(),
            c["active"].as_i64()
        ),
        (Some(25), Some(75), Some(0)),
        "{c}"
    );
    for r in second["rows"].as_array().unwrap() {
        if r["outcome"] == "pending" {
            assert!(actions.contains(&r["action_id"].as_str().unwrap().to_string()));
        }
    }
    let list = app.admin_get("/admin/v1/actions?limit=500").await;
    assert_eq!(list.body["actions"].as_array().unwrap().len(), 100);
    assert_eq!(app.puts(), 25);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "offboard_reconcile_gaps"), Some(0.0), "{m}");
}

#[tokio::test]
async fn a_failing_search_leaves_the_row_unchecked_until_workfront_answers_never_a_false_not_found()
{
    let app = spawn_app().await;
    for _ in 0..3 {
        app.sim.sim.push_fault(Fault::status(503));
    }
    let body = json!({"leavers": [{"email": "jane.doe@example.com"}, {"employee_id": "E-0999"}]});
    let report = reconcile(&app, "application/json", "", body.to_string()).await;
    assert_eq!(outcomes(&report), ["active", "inactive"], "{report}");
    let searches = app
        .sim
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("search"))
        .count();
    assert!(
        searches >= 5,
        "the failed searches were asked again: {searches}"
    );
}

#[tokio::test]
async fn lists_of_the_wrong_shape_get_a_clear_error_and_store_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            "application/json",
            "",
            "not json".to_string(),
            400,
            "malformed_payload",
        ),
        (
            "application/json",
            "",
            "{\"people\": []}".into(),
            400,
            "malformed_payload",
        ),
        (
            "application/json",
            "",
            "{\"leavers\": []}".into(),
            422,
            "invalid_event",
        ),
        (
            "text/csv",
            "",
            "employee_id,email\n".into(),
            422,
            "invalid_event",
        ),
        (
            "text/csv",
            "",
            "name,team\nJane,Sales\n".into(),
            422,
            "invalid_event",
        ),
        (
            "application/xml",
            "",
            "<leavers/>".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "text/csv",
            "?apply=yes",
            "email\na@example.com\n".into(),
            400,
            "bad_request",
        ),
        (
            "text/csv",
            "?dry=1",
            "email\na@example.com\n".into(),
            400,
            "bad_request",
        ),
    ];
    for (ct, q, body, status, code) in cases {
        let a = post_list(&app, ct, q, body.clone()).await;
        assert_error(&a, status, code);
    }
    let a = app
        .admin_get("/admin/v1/reconciliations/rec_0123456789abcdef0123456789abcdef")
        .await;
    assert_error(&a, 404, "not_found");
    let a = app.admin_get("/admin/v1/reconciliations/rec_x").await;
    assert_error(&a, 404, "not_found");
    // Without the token nothing is read.
    let resp = app
        .http
        .post(format!("{}/admin/v1/reconciliations", app.base))
        .header("content-type", "text/csv")
        .body("email\njane.doe@example.com\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A list larger than the limit is refused before it is read.
    let big = "email\n".to_string() + &"x@example.com\n".repeat(17 * 1024 * 1024 / 14 + 1);
    let a = post_list(&app, "text/csv", "", big).await;
    assert_error(&a, 413, "payload_too_large");
    assert_eq!(app.sim.sim.requests().len(), 0, "nothing reached Workfront");
}

#[tokio::test]
async fn the_reconcile_cli_exits_0_without_gaps_1_with_gaps_2_on_usage_and_3_when_refused() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.csv");
    std::fs::write(&clean, "employee_id\nE-0999\n").unwrap();
    let gap = dir.path().join("gap.json");
    std::fs::write(
        &gap,
        json!({"leavers": [{"email": "jane.doe@example.com"}]}).to_string(),
    )
    .unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "employee_id\n").unwrap();

    let ok = reconcile_cli(
        &app,
        &["--leavers", clean.to_str().unwrap()],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.starts_with("ROW") && out.contains("inactive") && out.contains(OLD_LEAVER),
        "{out}"
    );

    let gaps = reconcile_cli(
        &app,
        &["--leavers", gap.to_str().unwrap(), "--format", "json"],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        gaps.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&gaps.stderr)
    );
    let v: Value = serde_json::from_slice(&gaps.stdout).unwrap();
    assert_eq!(v["rows"][0]["outcome"], "active");
    assert_eq!(
        app.is_active(JANE),
        Some(true),
        "no --apply: nothing written"
    );

    let csv = reconcile_cli(
        &app,
        &["--leavers", gap.to_str().unwrap(), "--format", "csv"],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(csv.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&csv.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .contains(",active,"));

    let missing = dir.path().join("missing.csv");
    let usage = reconcile_cli(
        &app,
        &["--leavers", missing.to_str().unwrap()],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(usage.status.code(), Some(2));
    let no_token = reconcile_cli(&app, &["--leavers", clean.to_str().unwrap()], None).await;
    assert_eq!(no_token.status.code(), Some(2));
    let bad_args = reconcile_cli(&app, &["--format", "xml"], Some(ADMIN_TOKEN)).await;
    assert_eq!(bad_args.status.code(), Some(2));

    let wrong = reconcile_cli(&app, &["--leavers", clean.to_str().unwrap()], Some("wrong")).await;
    assert_eq!(wrong.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("unauthorized"));
    let refused = reconcile_cli(
        &app,
        &["--leavers", empty.to_str().unwrap()],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid_event"));

    let applied = reconcile_cli(
        &app,
        &["--leavers", gap.to_str().unwrap(), "--apply"],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(
        applied.status.code(),
        Some(1),
        "the gap was there when checked"
    );
    wait::until_true("Jane to be deactivated", Duration::from_secs(10), || {
        app.is_active(JANE) == Some(false)
    })
    .await;
    let after = reconcile_cli(
        &app,
        &["--leavers", gap.to_str().unwrap()],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(after.status.code(), Some(0));
}

async fn reconcile_cli(app: &TestApp, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
    cmd.arg("reconcile")
        .args(args)
        .env("OFFBOARD_URL", &app.base)
        .env_remove("OFFBOARD_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("OFFBOARD_ADMIN_TOKEN", t);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}
