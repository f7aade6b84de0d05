//! `offboard demo`: the zero-setup tour.
//!
//! Starts the Workfront simulator with sample users and the service on a temporary SQLite file,
//! sends a signed sample termination, prints each audited step as it happens, and exits 0 once the
//! user is inactive in the simulator. Everything listens on 127.0.0.1; nothing leaves the machine.

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::config::Settings;
use crate::sim::{Sim, SimConfig};
use crate::Application;

const EMPLOYEE_ID: &str = "E-1042";
const USER_ID: &str = "5f1c0a7e0000a1b2c3d4e5f600000001";

fn random_token(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| fastrand::u8(..)).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

pub async fn run() -> ExitCode {
    match tour().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn tour() -> Result<(), crate::BoxError> {
    let api_key = random_token(18);
    let sim = Sim::new(SimConfig {
        api_key: Some(api_key.clone()),
        latency: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .serve(([127, 0, 0, 1], 0).into())
    .await?;
    println!(
        "1. Workfront simulator listening on {} with {} sample users",
        sim.base_url(),
        sim.sim.users().len()
    );

    let dir = tempfile_dir()?;
    let db = dir.join("offboard-demo.db");
    let secret = format!("whsec_{}", random_token(32));
    let admin = random_token(24);
    let overlay = format!(
        r#"
[server]
bind = "127.0.0.1:0"
[database]
url = "sqlite://{db}"
[workfront]
base_url = "{wf}"
api_key = "{api_key}"
[retry]
schedule = ["200ms", "500ms", "1s"]
[admin]
token = "{admin}"
[log]
format = "pretty"
level = "warn"
[sources.demo]
kind = "standard"
secret = "{secret}"
"#,
        db = db.display(),
        wf = sim.base_url(),
    );
    let settings = Settings::from_toml(&overlay)?;
    crate::telemetry::init(&settings.log);
    let app = Application::build(settings.clone()).await?;
    let base = format!("http://{}", app.addr());
    println!("2. offboard listening on {base}, database {}", db.display());

    let body = json!({
        "type": "employee.terminated",
        "timestamp": jiff::Timestamp::now().to_string(),
        "data": {"employee_id": EMPLOYEE_ID, "email": "jane.doe@example.com", "name": "Jane Doe", "effective_at": jiff::Timestamp::now().to_string()}
    })
    .to_string();
    let http = reqwest::Client::new();
    let mut req = http
        .post(format!("{base}/webhooks/demo"))
        .body(body.clone());
    for (k, v) in
        crate::cli::sign_headers(&settings, "demo", body.as_bytes(), jiff::Timestamp::now())?
    {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let answer: Value = resp.json().await?;
    println!("3. POST /webhooks/demo (signed, Standard Webhooks) -> {status} {answer}");
    let action_id = answer["actions"][0]
        .as_str()
        .ok_or("the service accepted no action")?
        .to_string();

    println!("4. the worker takes action {action_id}:");
    let mut shown = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let detail = loop {
        let detail: Value = http
            .get(format!("{base}/admin/v1/actions/{action_id}"))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        let audit = detail["audit"].as_array().cloned().unwrap_or_default();
        for entry in audit.iter().skip(shown) {
            println!(
                "   {}  {:<16} {}",
                entry["at"].as_str().unwrap_or(""),
                entry["step"].as_str().unwrap_or(""),
                summary(entry)
            );
        }
        shown = audit.len();
        let status = detail["status"].as_str().unwrap_or("");
        if matches!(
            status,
            "succeeded" | "failed" | "skipped" | "held" | "cancelled"
        ) {
            break detail;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the action did not finish within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let user = sim.sim.user(USER_ID).ok_or("the sample user is missing")?;
    println!(
        "5. action {} is {}/{}; Workfront user {} ({}) isActive = {}",
        action_id,
        detail["status"].as_str().unwrap_or(""),
        detail["reason"].as_str().unwrap_or(""),
        USER_ID,
        user["name"].as_str().unwrap_or(""),
        user["isActive"]
    );
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    if user.get("isActive") == Some(&Value::Bool(false)) {
        println!(
            "done: Jane Doe is deactivated in the simulator, and every step is in the audit trail."
        );
        Ok(())
    } else {
        Err("the user is still active in the simulator".into())
    }
}

fn summary(entry: &Value) -> String {
    let d = &entry["detail"];
    match entry["step"].as_str().unwrap_or("") {
        "workfront_call" => format!("{} -> {}", d["request"].as_str().unwrap_or(""), d["status"]),
        _ => d.to_string(),
    }
}

/// A fresh directory under the system temp dir.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("offboard-demo-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
