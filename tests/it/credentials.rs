//! Workfront credentials (SPEC §5.1): the OAuth2 JWT exchange and an IMS token against the
//! simulator's token endpoints, one renewal for many concurrent calls, renewal after a refusal,
//! `check-config --connect` for each mode, and an API key that expires with work pending.

use std::process::Command;

use offboard::sim::{SimConfig, SimIms, SimOAuth};
use reqwest::StatusCode;

use crate::harness::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn oauth_sim() -> SimConfig {
    SimConfig {
        api_key: None,
        oauth: Some(SimOAuth {
            client_id: "wf-client".into(),
            client_secret: "wf-client-secret".into(),
            customer_id: "cust-1".into(),
            user_id: "user-1".into(),
            public_key_pem: std::fs::read_to_string(fixture("oauth-test-public.pem")).unwrap(),
        }),
        ..SimConfig::default()
    }
}

fn oauth_overlay(key: &str) -> String {
    format!(
        "[workfront]\nauth = \"oauth_jwt\"\nclient_id = \"wf-client\"\nclient_secret = \"wf-client-secret\"\n\
         customer_id = \"cust-1\"\nuser_id = \"user-1\"\nprivate_key_file = \"{}\"\nmax_concurrency = 5\n",
        fixture(key)
    )
}

fn ims_sim() -> SimConfig {
    SimConfig {
        api_key: None,
        ims: Some(SimIms {
            client_id: "ims-client".into(),
            client_secret: "ims-secret".into(),
        }),
        ..SimConfig::default()
    }
}

/// The IMS overlay needs the simulator's address: the token URL is on it.
fn ims_overlay(sim_base: &str, secret: &str) -> String {
    format!(
        "[workfront]\nauth = \"ims\"\nims_token_url = \"{sim_base}/ims/token/v3\"\nclient_id = \"ims-client\"\n\
         client_secret = \"{secret}\"\nscopes = [\"openid\", \"AdobeID\"]\nims_org_id = \"ORG@AdobeOrg\"\n"
    )
}

async fn terminate_many(app: &TestApp, n: usize) -> Vec<String> {
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..n {
        let email = [
            "jane.doe@example.com",
            "john.smith@example.com",
            "kim.lee@example.com",
        ][i % 3];
        sends.spawn(app.delivery(termination(None, Some(email))));
    }
    sends
        .join_all()
        .await
        .into_iter()
        .map(|a| {
            assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
            a.body["actions"][0].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn an_oauth2_jwt_token_is_issued_once_for_concurrent_calls_and_renewed_after_a_refusal() {
    let opts = Options {
        overlay: oauth_overlay("oauth-test-private.pem"),
        sim: oauth_sim(),
        database: None,
    };
    let app = spawn_app_with(opts).await;
    let ids = terminate_many(&app, 20).await;
    for id in &ids {
        app.wait_for_action(id, "done", |a| {
            a["status"] == "succeeded" || a["status"] == "skipped"
        })
        .await;
    }
    assert_eq!(app.sim.sim.tokens_issued(), 1, "one token for all calls");
    assert_eq!(app.is_active(JANE), Some(false));
    // Workfront forgets the token (it expired): the next call is refused once, renews, succeeds.
    app.sim.sim.expire_tokens();
    let id = app.terminate(Some("E-3001"), None).await;
    let done = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(
        done["attempts"], 1,
        "the renewal happened inside the attempt"
    );
    assert_eq!(app.sim.sim.tokens_issued(), 2);
    assert!(
        !done.to_string().contains("sessionID-"),
        "tokens never reach the audit"
    );
}

#[tokio::test]
async fn an_ims_token_is_sent_as_bearer_and_renewed_after_it_expires() {
    let opts = Options {
        overlay: ims_overlay("{sim}", "ims-secret"),
        sim: ims_sim(),
        database: None,
    };
    let app = spawn_app_with(opts).await;
    let id = app.terminate(Some("E-1043"), None).await;
    app.wait_for_status(&id, "succeeded").await;
    assert_eq!(app.sim.sim.tokens_issued(), 1);
    app.sim.sim.expire_tokens();
    let id = app.terminate(Some("E-1042"), None).await;
    app.wait_for_status(&id, "succeeded").await;
    assert_eq!(app.sim.sim.tokens_issued(), 2);
}

fn check_connect(overlay: &str, base: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offboard.toml");
    std::fs::write(&path, format!("{overlay}base_url = \"{base}\"\n")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_offboard"))
        .env_remove("OFFBOARD_CONFIG")
        .args(["check-config", "--connect", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[tokio::test]
async fn check_config_connect_proves_each_token_mode_and_names_a_wrong_key_or_secret() {
    let sim = offboard::sim::Sim::new(SimConfig {
        ims: ims_sim().ims,
        ..oauth_sim()
    })
    .serve(([127, 0, 0, 1], 0).into())
    .await
    .unwrap();
    let base = sim.base_url();
    let run = |overlay: String| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || check_connect(&overlay, &base))
    };
    let good = run(oauth_overlay("oauth-test-private.pem")).await.unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let wrong_key = run(oauth_overlay("oauth-other-private-pkcs1.pem"))
        .await
        .unwrap();
    assert_eq!(wrong_key.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong_key.stderr);
    assert!(
        stderr.contains("JWT exchange was refused") && stderr.contains("invalid JWT"),
        "{stderr}"
    );
    let good = run(ims_overlay(&base, "ims-secret")).await.unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let wrong = run(ims_overlay(&base, "not-the-secret")).await.unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("IMS token request was refused"), "{stderr}");
    assert!(
        !stderr.contains("not-the-secret"),
        "the secret is not echoed"
    );
    let stdout = String::from_utf8_lossy(&wrong.stdout);
    assert!(!stdout.contains("not-the-secret") && stdout.contains("[redacted]"));
}

#[tokio::test]
async fn an_api_key_that_expires_with_50_actions_pending_loses_none_of_them() {
    let users: Vec<serde_json::Map<String, serde_json::Value>> = (0..50)
        .map(|i| {
            serde_json::json!({"ID": format!("{i:032x}"), "name": format!("Person {i}"),
                "emailAddr": format!("p{i}@example.com"), "extRefID": format!("P-{i}"), "isActive": true})
            .as_object()
            .unwrap()
            .clone()
        })
        .collect();
    let opts = Options {
        overlay: "[safety]\nbrake_max = 1000".into(),
        sim: SimConfig {
            api_key: Some(API_KEY.into()),
            users,
            ..SimConfig::default()
        },
        database: None,
    };
    let app = spawn_app_with(opts).await;
    app.sim.sim.set_api_key(Some("rotated-away".into()));
    let mut ids = Vec::new();
    for i in 0..50 {
        let a = app
            .post_delivery(&termination(Some(&format!("P-{i}")), None))
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED);
        ids.push(a.body["actions"][0].as_str().unwrap().to_string());
    }
    for id in &ids {
        app.wait_for_action(id, "waiting for credentials", |a| {
            a["reason"] == "workfront_auth"
        })
        .await;
    }
    let ready = app.readyz().await;
    assert_eq!(ready["status"], "degraded");
    app.sim.sim.set_api_key(Some(API_KEY.into()));
    for id in &ids {
        let done = app.wait_for_status(id, "succeeded").await;
        assert_eq!(done["reason"], "deactivated");
    }
    let inactive = app
        .sim
        .sim
        .users()
        .iter()
        .filter(|u| u.get("isActive") == Some(&serde_json::Value::Bool(false)))
        .count();
    assert_eq!(inactive, 50);
}

#[tokio::test]
async fn a_tenant_that_moved_makes_actions_wait_until_base_url_is_fixed_and_the_process_restarted()
{
    // A base_url that only redirects, as Workfront does for a tenant moved to *.adobe.com.
    let redirector = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::MOVED_PERMANENTLY,
            [(
                axum::http::header::LOCATION,
                "https://acme.my.workfront.adobe.com/attask/api/v21.0/user/search",
            )],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let moved = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, redirector).await;
    });
    let mut app = spawn_app_with(options(&format!("[workfront]\nbase_url = \"{moved}\""))).await;
    let id = app.terminate(Some("E-1043"), None).await;
    let waiting = app
        .wait_for_action(&id, "waiting for credentials", |a| {
            a["reason"] == "workfront_auth"
        })
        .await;
    assert_eq!(waiting["status"], "pending");
    let ready = app.readyz().await;
    assert_eq!(ready["status"], "degraded");
    assert!(ready["workfront_auth_problem"]
        .as_str()
        .unwrap()
        .contains("acme.my.workfront.adobe.com"));
    assert!(
        app.sim.sim.requests().is_empty(),
        "nothing reached the real tenant"
    );
    // The operator fixes base_url and restarts: the waiting action completes, none was lost.
    app.settings.workfront.base_url = app.sim.base_url().parse().unwrap();
    app.restart().await;
    let done = app.wait_for_status(&id, "succeeded").await;
    assert_eq!(done["reason"], "deactivated");
    assert_eq!(app.is_active(JOHN), Some(false));
    server.abort();
}
