//! The command line: `check-config`, `sign`, `healthcheck`, `--help`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::*;

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
