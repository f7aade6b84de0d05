//! The command line: `check-config`, `sign`, `healthcheck`, `--help`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::*;
use crate::wait;

const TEN_SECONDS: std::time::Duration = std::time::Duration::from_secs(10);

fn offboard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_offboard"));
    c.env_remove("OFFBOARD_CONFIG");
    c
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("offboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_prints_the_settings_without_secrets_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &format!(
        "[workfront]\napi_key = \"super-secret-key\"\n[admin]\ntoken = \"admintoken\"\n[sources.hr]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n"
    ));
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"hr\""), "{stdout}");
    for secret in ["super-secret-key", "admintoken", &SECRET[6..]] {
        assert!(!stdout.contains(secret), "{secret} leaked: {stdout}");
    }
    assert!(stdout.contains("[redacted]"));
}

#[test]
fn check_config_names_the_bad_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[retry]\nschedule = [\"10s\", \"whenever\"]\n");
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retry.schedule[1]"));
}

#[test]
fn environment_variables_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[safety]\nbrake_max = 10\n");
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("OFFBOARD__SAFETY__BRAKE_MAX", "7")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["safety"]["brake_max"], 7);
}

#[test]
fn serve_refuses_an_invalid_configuration_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[workfront]\nmax_concurrency = 0\n");
    let out = offboard()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("workfront.max_concurrency"));
}

#[tokio::test]
async fn sign_prints_headers_that_the_service_accepts() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        &format!("[sources.hr]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n"),
    );
    let body = termination(Some("E-1043"), None);
    let mut child = offboard()
        .args(["sign", "--source", "hr", "--config"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let headers: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(headers.len(), 4, "{headers:?}");
    let a = app.post_raw("hr", &headers, body.into_bytes()).await;
    assert_eq!(a.status.as_u16(), 202, "{}", a.body);
}

#[test]
fn sign_names_the_unknown_source() {
    let out = offboard()
        .args(["sign", "--source", "nope"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[tokio::test]
async fn healthcheck_follows_readyz() {
    let app = spawn_app().await;
    let url = format!("{}/readyz", app.base);
    let ok = tokio::task::spawn_blocking(move || {
        offboard().args(["healthcheck", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(ok.status.success());
    let bad = offboard()
        .args(["healthcheck", "http://127.0.0.1:1/readyz"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn help_lists_every_command() {
    let out = offboard().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "serve",
        "demo",
        "check-config",
        "healthcheck",
        "migrate",
        "sign",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
}

async fn actions_cli(app: &TestApp, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = offboard();
    cmd.arg("actions")
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

#[tokio::test]
async fn the_actions_cli_lists_shows_and_approves_against_a_running_instance() {
    let app = spawn_app().await;
    let id = app.terminate(Some("E-1001"), None).await;
    app.wait_for_status(&id, "held").await;

    let list = actions_cli(&app, &["list", "--status", "held"], Some(ADMIN_TOKEN)).await;
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&id) && text.contains("admin_user"), "{text}");

    let json = actions_cli(&app, &["list", "--json"], Some(ADMIN_TOKEN)).await;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["actions"][0]["id"], id.as_str());

    let approve = actions_cli(
        &app,
        &[
            "approve",
            &id,
            "--operator",
            "dana",
            "--note",
            "confirmed with HR",
        ],
        Some(ADMIN_TOKEN),
    )
    .await;
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    app.wait_for_status(&id, "succeeded").await;

    let show = actions_cli(&app, &["show", &id], Some(ADMIN_TOKEN)).await;
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("operator_approved") && text.contains("dana"),
        "{text}"
    );
    assert!(text.contains("succeeded/deactivated"), "{text}");
}

#[tokio::test]
async fn the_actions_cli_reports_refusals_and_a_missing_token() {
    let app = spawn_app().await;
    let id = app.terminate(Some("E-1043"), None).await;
    app.wait_for_status(&id, "succeeded").await;
    let retry = actions_cli(&app, &["retry", &id], Some(ADMIN_TOKEN)).await;
    assert_eq!(retry.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&retry.stderr).contains("conflict"));
    let wrong = actions_cli(&app, &["list"], Some("wrong")).await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("unauthorized"));
    let none = actions_cli(&app, &["list"], None).await;
    assert_eq!(none.status.code(), Some(2));
    let release = actions_cli(&app, &["release-brake"], Some(ADMIN_TOKEN)).await;
    assert!(String::from_utf8_lossy(&release.stdout).contains("released 0"));
}

/// Runs `check-config --connect` against the simulator with `api_key`.
async fn check_connect(app: &TestApp, api_key: &str) -> std::process::Output {
    check_connect_with(app, api_key, "").await
}

async fn check_connect_with(app: &TestApp, api_key: &str, extra: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        &format!(
            "[workfront]\nbase_url = \"{}\"\napi_key = \"{api_key}\"\n{extra}",
            app.sim.base_url()
        ),
    );
    tokio::task::spawn_blocking(move || {
        let out = offboard()
            .args(["check-config", "--connect", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        drop(dir);
        out
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn check_config_connect_proves_the_workfront_credentials() {
    let app = spawn_app().await;
    let good = check_connect(&app, API_KEY).await;
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stderr).contains("Workfront answered"));
    let bad = check_connect(&app, "wrong").await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("refused the credentials"));
}

#[tokio::test]
async fn check_config_connect_tries_the_exact_search_the_worker_sends() {
    let app = spawn_app().await;
    app.sim.sim.refuse_modifier("cieq");
    let refused = check_connect(&app, API_KEY).await;
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("emailAddr_Mod=cieq") && stderr.contains("unknown modifier"),
        "{stderr}"
    );
    let exact = check_connect_with(&app, API_KEY, "[matching]\nemail_mod = \"eq\"\n").await;
    assert!(
        exact.status.success(),
        "{}",
        String::from_utf8_lossy(&exact.stderr)
    );
    assert!(String::from_utf8_lossy(&exact.stderr).contains("emailAddr_Mod=eq"));
}

#[tokio::test]
async fn email_mod_eq_matches_the_email_exactly_and_cieq_ignores_case() {
    let exact = spawn_app_with(options("[matching]\nemail_mod = \"eq\"")).await;
    let id = exact.terminate(None, Some("Jane.Doe@Example.com")).await;
    let a = exact.wait_for_status(&id, "skipped").await;
    assert_eq!(a["reason"], "not_found");
    let id = exact.terminate(None, Some("jane.doe@example.com")).await;
    exact.wait_for_status(&id, "succeeded").await;
    let loose = spawn_app().await;
    let id = loose.terminate(None, Some("Jane.Doe@Example.com")).await;
    assert_eq!(
        loose.wait_for_status(&id, "succeeded").await["reason"],
        "deactivated"
    );
}

#[test]
fn migrate_creates_and_migrates_a_sqlite_file_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let path = write_config(
        &dir,
        &format!("[database]\nurl = \"sqlite://{}\"\n", db.display()),
    );
    let out = offboard()
        .args(["migrate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());
    use std::os::unix::fs::PermissionsExt;
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let file = file.unwrap().path();
        if file.to_string_lossy().contains("m.db") {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
        }
    }
    // Running it again is a no-op.
    assert!(offboard()
        .args(["migrate", "--config"])
        .arg(&path)
        .output()
        .unwrap()
        .status
        .success());
}

#[test]
fn the_demo_runs_with_no_configuration_and_exits_0() {
    let out = offboard()
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("succeeded/deactivated"), "{stdout}");
    assert!(stdout.contains("done: Jane Doe is deactivated"), "{stdout}");
}

fn sim_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_workfront-sim"))
}

#[test]
fn the_simulator_refuses_a_bad_users_file_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.json");
    std::fs::write(&users, r#"[{"name": "no id"}]"#).unwrap();
    let out = sim_bin().arg("--users").arg(&users).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no string \"ID\""));
    let out = sim_bin().args(["--fail-rate", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sim_bin().args(["--latency", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_simulator_serves_a_users_file_and_refuses_bad_faults() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.json");
    std::fs::write(
        &users,
        r#"[{"ID": "abc", "name": "A B", "emailAddr": "a@b.example", "isActive": true}]"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = sim_bin()
        .args(["--bind", &format!("127.0.0.1:{port}"), "--api-key", "k"])
        .arg("--users")
        .arg(&users)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let search = format!("{base}/attask/api/v21.0/user/search?emailAddr=A@B.EXAMPLE&emailAddr_Mod=cieq&fields=isActive");
    let (http, search) = (&http, &search);
    let found: serde_json::Value =
        wait::until("the simulator to start", TEN_SECONDS, || async move {
            match http.get(search).header("apiKey", "k").send().await {
                Ok(r) => Ok(r.json().await.unwrap()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    assert_eq!(found["data"][0]["ID"], "abc");
    assert_eq!(found["data"][0]["isActive"], true);
    let unauth = http
        .get(format!("{base}/attask/api/v21.0/user/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status().as_u16(), 401);
    // The counters a load test polls: the search and the refused GET, nobody deactivated yet.
    let stats: serde_json::Value = http
        .get(format!("{base}/__sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["users"], 1, "{stats}");
    assert_eq!(stats["inactive"], 0, "{stats}");
    assert_eq!(stats["requests"], 2, "{stats}");
    assert_eq!(stats["rate_limited"], 0, "{stats}");
    assert_eq!(stats["writes"], 0, "{stats}");
    let bad = http
        .post(format!("{base}/__sim/faults"))
        .body("{\"count\": 0, \"status\": 500}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn the_simulator_binary_serves_the_jwt_exchange_that_check_config_connect_proves() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = sim_bin()
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--oauth-client-id", "c", "--oauth-client-secret", "s"])
        .args(["--oauth-customer-id", "cust", "--oauth-user-id", "u"])
        .arg("--oauth-public-key")
        .arg(format!("{fixtures}/oauth-test-public.pem"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let users = format!("{base}/__sim/users");
    let users = &users;
    wait::until("the simulator to start", TEN_SECONDS, || async move {
        reqwest::get(users)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        &format!(
            "[workfront]\nbase_url = \"{base}\"\nauth = \"oauth_jwt\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             customer_id = \"cust\"\nuser_id = \"u\"\nprivate_key_file = \"{fixtures}/oauth-test-private.pem\"\n"
        ),
    );
    let out = tokio::task::spawn_blocking(move || {
        offboard()
            .args(["check-config", "--connect", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn secrets_from_the_environment_are_taken_as_written_and_lists_are_still_split() {
    let sim = crate::processes::sim_with_users(1, std::time::Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/env.db", dir.path().display());
    let config = crate::processes::write_config(dir.path(), "env", &db, &sim.base_url(), "");
    // Each of these was once parsed as a number or a boolean and re-printed: 000123 became 123.
    for token in ["000123", "12e3", "TRUE"] {
        let replica = crate::processes::Replica::start_with_env(
            &config,
            &[
                ("OFFBOARD__ADMIN__TOKEN", token),
                ("OFFBOARD__RETRY__SCHEDULE", "1s,2s"),
                ("OFFBOARD__SAFETY__DRY_RUN", "true"),
            ],
        )
        .await;
        let http = reqwest::Client::new();
        let url = format!("{}/admin/v1/actions", replica.base);
        let ok = http.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(ok.status(), 200, "the token {token} as written");
        let retyped = match token {
            "000123" => "123",
            "12e3" => "12000",
            _ => "true",
        };
        let refused = http.get(&url).bearer_auth(retyped).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{token} read as {retyped}");
    }
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&config)
        .env("OFFBOARD__RETRY__SCHEDULE", "1s,2s")
        .env("OFFBOARD__SAFETY__DRY_RUN", "true")
        .env("OFFBOARD__SAFETY__BRAKE_MAX", "9")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["retry"]["schedule"], serde_json::json!(["1s", "2s"]));
    assert_eq!(v["safety"]["dry_run"], true);
    assert_eq!(v["safety"]["brake_max"], 9);
}

#[test]
fn a_secret_of_the_wrong_shape_is_named_by_key_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[sources.hr2]\nkind = \"standard\"\n");
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("OFFBOARD__SOURCES__HR2__SECRETS__0", "whsec_tWMkLEAKLEAK")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sources.hr2") && stderr.contains("secrets"),
        "{stderr}"
    );
    assert!(!stderr.contains("tWMk"), "{stderr}");
    let numeric = write_config(
        &dir,
        "[sources.hr2]\nkind = \"standard\"\nsecret = 98765432\n",
    );
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&numeric)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("an integer"), "{stderr}");
    assert!(!stderr.contains("98765432"), "{stderr}");
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("OFFBOARD__SOURCES__HR2__SECRET", "whsec_tWMkLEAKLEAK==")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sources.hr2"), "{stderr}");
    assert!(!stderr.contains("tWMk"), "{stderr}");
}

#[test]
fn check_config_hides_user_info_query_passwords_and_the_notification_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[database]\nurl = \"postgres://db.internal/offboard?user=svc&password=hunter2\"\n\
         [workfront]\nbase_url = \"https://wfuser:wfpass@acme.my.workfront.com\"\n\
         [notify]\nwebhook_url = \"https://hooks.slack.com/services/T000/B000/XXXXSLACKSECRET\"\n",
    );
    let out = offboard()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["hunter2", "wfuser", "wfpass", "XXXXSLACKSECRET"] {
        assert!(!stdout.contains(secret), "{secret} shown: {stdout}");
    }
    assert!(stdout.contains("password=***"), "{stdout}");
}

#[tokio::test]
async fn the_log_masks_every_email_in_any_script_even_in_a_refusal_message() {
    let sim = crate::processes::sim_with_users(1, std::time::Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/log.db", dir.path().display());
    let config = crate::processes::write_config(dir.path(), "log", &db, &sim.base_url(), "");
    let log = dir.path().join("offboard.log");
    let replica = crate::processes::Replica::start_with(
        &config,
        &[("OFFBOARD__LOG__LEVEL", "info")],
        Some(&log),
    )
    .await;
    let http = reqwest::Client::new();
    let send = |id: &'static str, email: &'static str| {
        let body = crate::harness::termination(None, Some(email));
        let mut req = http
            .post(format!("{}/webhooks/hr", replica.base))
            .body(body.clone());
        let ts = jiff::Timestamp::now().as_second();
        for (k, v) in crate::harness::signed_headers(crate::harness::SECRET, id, ts, &body) {
            req = req.header(k, v);
        }
        req.send()
    };
    // Refused: the address has no dot in its domain, and the refusal quotes it.
    let refused = send("msg_log_1", "ÜNÏ.user@exämple").await.unwrap();
    assert_eq!(refused.status(), 422);
    // Accepted: the worker searches Workfront for it and logs what it found.
    let stored = send("msg_log_2", "Ünï.other@exämple.com").await.unwrap();
    assert_eq!(stored.status(), 202);
    let text = crate::wait::until(
        "the worker to log the unknown user",
        std::time::Duration::from_secs(20),
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("delivery refused") && text.contains("Ü***@exämple.com") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    for raw in [
        "ÜNÏ.user",
        "NÏ.user",
        "Ünï.other",
        "nï.other",
        "user@",
        "other@",
        "other%40",
    ] {
        assert!(!text.contains(raw), "{raw} in the log:\n{text}");
    }
    assert!(text.contains("Ü***@exämple"), "{text}");
}
