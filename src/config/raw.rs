//! Settings as written: deserialized with unknown keys denied, so a typo names its key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) server: RawServer,
    pub(super) database: RawDatabase,
    pub(super) workfront: RawWorkfront,
    pub(super) matching: RawMatching,
    pub(super) retry: RawRetry,
    pub(super) lifecycle: RawLifecycle,
    pub(super) safety: RawSafety,
    pub(super) admin: RawAdmin,
    pub(super) notify: RawNotify,
    pub(super) retention: RawRetention,
    pub(super) reconcile: RawReconcile,
    pub(super) log: RawLog,
    pub(super) worker: RawWorker,
    #[serde(default)]
    /// Each kind reads its own table (`crate::sources::registry`).
    pub(super) sources: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) bind: String,
    pub(super) max_body_bytes: usize,
    pub(super) request_timeout: String,
    pub(super) header_read_timeout: String,
    pub(super) idle_timeout: String,
    pub(super) max_connections: usize,
    pub(super) shutdown_grace: String,
    pub(super) admin_bind: String,
    pub(super) tls_cert: String,
    pub(super) tls_key: String,
    pub(super) auth_failures_per_minute: u32,
    pub(super) client_ip_header: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: Option<SecretString>,
    pub(super) url_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkfront {
    pub(super) base_url: String,
    pub(super) api_version: String,
    pub(super) auth: String,
    pub(super) api_key: Option<SecretString>,
    pub(super) api_key_file: Option<PathBuf>,
    pub(super) api_key_in: String,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<SecretString>,
    pub(super) client_secret_file: Option<PathBuf>,
    pub(super) customer_id: Option<String>,
    pub(super) user_id: Option<String>,
    pub(super) private_key: Option<SecretString>,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) ims_token_url: Option<String>,
    pub(super) scopes: Option<Vec<String>>,
    pub(super) ims_org_id: Option<String>,
    pub(super) max_concurrency: usize,
    pub(super) adaptive_concurrency: bool,
    pub(super) connect_timeout: String,
    pub(super) request_timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatching {
    pub(super) order: Vec<String>,
    pub(super) employee_id_field: String,
    pub(super) email_mod: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) schedule: Vec<String>,
    pub(super) jitter: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLifecycle {
    pub(super) timezone: String,
    pub(super) date_only_means: String,
    pub(super) reactivate_on_rehire: bool,
    pub(super) reactivate_on_cancel: bool,
    pub(super) reactivation_access_level_id: String,
    pub(super) max_future_skew: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSafety {
    pub(super) dry_run: bool,
    pub(super) require_approval: bool,
    pub(super) protect_admins: bool,
    pub(super) protected: Vec<String>,
    pub(super) brake_max: u32,
    pub(super) brake_window: String,
    pub(super) reactivation_brake_max: u32,
    pub(super) require_approval_for_reactivation: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) token: Option<SecretString>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) console: bool,
    pub(super) console_session: String,
    pub(super) console_secure_cookie: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    /// A secret: a Slack or Teams webhook URL lets anyone post into the channel.
    pub(super) webhook_url: Option<SecretString>,
    pub(super) webhook_url_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) payload_days: u32,
    pub(super) audit_days: u32,
    pub(super) interval: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReconcile {
    pub(super) interval: String,
    pub(super) lookback: String,
    pub(super) apply: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: String,
    pub(super) pii: bool,
    pub(super) level: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorker {
    pub(super) poll_interval: String,
    pub(super) lease: String,
    pub(super) auth_probe_interval: String,
}
