//! The small commands: `check-config`, `healthcheck`, `migrate`, `sign`.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::config::Settings;
use crate::store::Store;

/// Exit code for an invalid configuration.
pub const EXIT_CONFIG: u8 = 2;

pub fn load_or_exit(file: Option<&Path>) -> Result<Settings, ExitCode> {
    Settings::load(file).map_err(|e| {
        eprintln!("offboard: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The effective settings with every secret redacted, as `check-config` prints them.
pub fn effective(s: &Settings) -> Value {
    let secret_state = |set: bool| if set { "[redacted]" } else { "" };
    let wf_auth = s.workfront.auth.describe();
    let sources: serde_json::Map<String, Value> = s
        .sources
        .iter()
        .map(|(name, src)| {
            let mut v = src.describe();
            merge(&mut v, json!({"url_path": format!("/webhooks/{name}")}));
            if let Some(api) = s.hr_apis.get(name) {
                merge(&mut v, json!({"api": api.describe()}));
            }
            (name.clone(), v)
        })
        .collect();
    let mut workfront = json!({
        "base_url": crate::config::redact::url(s.workfront.base_url.as_str()), "api_version": s.workfront.api_version,
        "max_concurrency": s.workfront.max_concurrency, "adaptive_concurrency": s.workfront.adaptive_concurrency,
        "connect_timeout": fmt_duration(s.workfront.connect_timeout), "request_timeout": fmt_duration(s.workfront.request_timeout),
    });
    merge(&mut workfront, wf_auth);
    json!({
        "server": {"bind": s.server.bind.to_string(), "max_body_bytes": s.server.max_body_bytes, "request_timeout": fmt_duration(s.server.request_timeout),
            "header_read_timeout": fmt_duration(s.server.header_read_timeout), "idle_timeout": fmt_duration(s.server.idle_timeout),
            "max_connections": s.server.max_connections, "shutdown_grace": fmt_duration(s.server.shutdown_grace),
            "admin_bind": s.server.admin_bind.map(|a| a.to_string()).unwrap_or_default(),
            "tls_cert": s.server.tls.as_ref().map(|t| t.cert.display().to_string()).unwrap_or_default(),
            "tls_key": s.server.tls.as_ref().map(|t| t.key.display().to_string()).unwrap_or_default(),
            "auth_failures_per_minute": s.server.auth_failures_per_minute,
            "client_ip_header": s.server.client_ip_header.as_ref().map(|h| h.as_str()).unwrap_or_default()},
        "database": {"url": s.database.redacted_url()},
        "workfront": workfront,
        "matching": {"order": s.matching.order.iter().map(|i| i.as_str()).collect::<Vec<_>>(), "employee_id_field": s.matching.employee_id_field,
            "email_mod": s.matching.email_mod},
        "retry": {"schedule": s.retry.schedule().iter().map(|d| fmt_duration(*d)).collect::<Vec<_>>(), "max_attempts": s.retry.max_attempts()},
        "lifecycle": {"timezone": s.lifecycle.timezone_name, "date_only_means": s.lifecycle.date_only_means.as_str(),
            "reactivate_on_rehire": s.lifecycle.reactivate_on_rehire, "reactivate_on_cancel": s.lifecycle.reactivate_on_cancel,
            "reactivation_access_level_id": s.lifecycle.reactivation_access_level_id,
            "max_future_skew": fmt_duration(s.lifecycle.max_future_skew)},
        "safety": {"dry_run": s.safety.dry_run, "require_approval": s.safety.require_approval, "protect_admins": s.safety.protect_admins,
            "protected": s.safety.protected, "brake_max": s.safety.brake_max, "brake_window": fmt_duration(s.safety.brake_window),
            "reactivation_brake_max": s.safety.reactivation_brake_max,
            "require_approval_for_reactivation": s.safety.require_approval_for_reactivation},
        "admin": {"token": secret_state(s.admin.token.is_some()), "enabled": s.admin.token.is_some()},
        "notify": {"webhook_url": secret_state(s.notify.webhook_url.is_some())},
        "retention": {"payload_days": s.retention.payload_days, "audit_days": s.retention.audit_days,
            "interval": fmt_duration(s.retention.interval)},
        "reconcile": {"interval": s.reconcile.interval.map(fmt_duration).unwrap_or_default(),
            "lookback": fmt_duration(s.reconcile.lookback), "apply": s.reconcile.apply},
        "log": {"format": format!("{:?}", s.log.format).to_lowercase(), "pii": s.log.pii, "level": s.log.level},
        "worker": {"poll_interval": fmt_duration(s.worker.poll_interval), "lease": fmt_duration(s.worker.lease),
            "auth_probe_interval": fmt_duration(s.worker.auth_probe_interval)},
        "sources": sources,
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

pub fn fmt_duration(d: std::time::Duration) -> String {
    format!(
        "{:#}",
        jiff::SignedDuration::try_from(d).unwrap_or_default()
    )
}

pub async fn check_config(file: Option<&Path>, connect: bool) -> ExitCode {
    let settings = match load_or_exit(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&effective(&settings)).unwrap_or_default()
    );
    if settings.sources.is_empty() {
        eprintln!("warning: no [sources.<name>] is configured; every delivery will be answered 404 unknown_source");
    }
    if settings.admin.token.is_none() {
        eprintln!("note: admin.token is empty; the admin API answers 403");
    }
    if !connect {
        eprintln!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let limiter = std::sync::Arc::new(crate::workfront::limit::Local::new(
        settings.workfront.max_concurrency,
        false,
    ));
    let client = match crate::workfront::Client::new(&settings.workfront, limiter) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot build the Workfront client: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let call = client.probe().await;
    match call.result {
        Ok(()) => {
            eprintln!(
                "configuration is valid; Workfront answered {} in {} ms",
                call.exchange.request, call.exchange.millis
            );
            // The exact searches the worker sends, so a tenant that refuses a modifier or a
            // field is caught now rather than at the first termination.
            let m = &settings.matching;
            let searches = [
                (
                    "emailAddr",
                    "offboard-probe@example.invalid",
                    m.email_mod.as_str(),
                ),
                (m.employee_id_field.as_str(), "offboard-probe", "eq"),
            ];
            for (field, value, modifier) in searches {
                let call = client.search_users(field, value, modifier).await;
                if let Err(f) = call.result {
                    eprintln!(
                        "configuration is valid, but Workfront refuses the search the worker will send ({}): {}",
                        call.exchange.request,
                        f.message()
                    );
                    return ExitCode::from(EXIT_CONFIG);
                }
                eprintln!("Workfront accepts {}", call.exchange.request);
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!(
                "configuration is valid, but the Workfront check failed: {}",
                f.message()
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

pub async fn migrate(file: Option<&Path>) -> ExitCode {
    let settings = match load_or_exit(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = async {
        let store = Store::connect(
            &settings.database.url,
            crate::domain::clock::Clock::system(),
        )
        .await?;
        store.migrate().await?;
        store.close().await;
        Ok::<_, crate::store::StoreError>(())
    }
    .await;
    match result {
        Ok(()) => {
            eprintln!("migrations applied to {}", settings.database.redacted_url());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("offboard: {e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn healthcheck(url: &str) -> ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
    {
        Ok(c) => c,
        Err(_) => return ExitCode::FAILURE,
    };
    match client.get(url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("{url} answered {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The headers source `name` expects for `body`, one `Name: value` per line.
pub fn sign_headers(
    settings: &Settings,
    name: &str,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<Vec<(String, String)>, String> {
    let src = settings.sources.get(name).ok_or_else(|| {
        let known: Vec<&str> = settings.sources.keys().map(String::as_str).collect();
        format!(
            "no source named {name:?} is configured (configured: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )
    })?;
    Ok(src.sign(body, now))
}

pub fn sign(file: Option<&Path>, source: &str) -> ExitCode {
    let settings = match load_or_exit(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("offboard: cannot read the body from standard input: {e}");
        return ExitCode::FAILURE;
    }
    match sign_headers(&settings, source, &body, jiff::Timestamp::now()) {
        Ok(headers) => {
            for (k, v) in headers {
                println!("{k}: {v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("offboard: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
