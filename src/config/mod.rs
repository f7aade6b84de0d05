//! Settings: layered loading (embedded defaults → file → `OFFBOARD__*` environment) and validation
//! into domain types.
//!
//! Raw settings are deserialized with unknown keys denied, so a typo is an error that names the key.
//! Validation then turns strings into durations, URLs, time zones and secrets; every error names the
//! key it is about. Secrets are `secrecy` types, so the derived `Debug` of [`Settings`] is safe to
//! log and is what `check-config` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::domain::retry::RetryPolicy;

mod raw;
pub mod redact;
#[cfg(test)]
mod tests;
mod validate;

use raw::Raw;
pub use validate::{decode_whsec, parse_duration, secret_value};

/// The defaults, documented key by key; embedded so the binary needs no file to start.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The keys whose value in the environment is a comma-separated list.
const LIST_KEYS: &[&str] = &[
    "matching.order",
    "retry.schedule",
    "safety.protected",
    "workfront.scopes",
];

/// An invalid configuration, naming the key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}
impl std::error::Error for ConfigError {}

/// A configuration error about `key`.
pub fn bad(key: &str, why: impl fmt::Display) -> ConfigError {
    ConfigError(format!("`{key}`: {why}"))
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub workfront: WorkfrontSettings,
    pub matching: MatchingSettings,
    pub retry: RetryPolicy,
    pub lifecycle: LifecycleSettings,
    pub safety: SafetySettings,
    pub admin: AdminSettings,
    pub notify: NotifySettings,
    pub retention: RetentionSettings,
    pub reconcile: ReconcileSettings,
    pub log: LogSettings,
    pub worker: WorkerSettings,
    /// Each configured sender, built by [`crate::sources::registry`].
    pub sources: BTreeMap<String, std::sync::Arc<dyn crate::sources::Source>>,
    /// The HR vendor APIs of the sources that have `[sources.<name>.api]` (§4.3), by source.
    pub hr_apis: BTreeMap<String, std::sync::Arc<dyn crate::hrapi::HrApi>>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// A connection that began a request but has not finished its headers by then is closed.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once, per listener; beyond, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// After SIGTERM, in-flight work gets this long; then the process exits anyway.
    pub shutdown_grace: Duration,
    /// The operator surface's own listener; `None` = `bind` serves everything.
    pub admin_bind: Option<SocketAddr>,
    /// PEM certificate chain and private key; both or neither.
    pub tls: Option<TlsFiles>,
    /// Authentication failures per client address and minute before it is answered 429; 0 = off.
    pub auth_failures_per_minute: u32,
    /// A header the trusted ingress appends the client's address to (its last entry is taken);
    /// `None` = the TCP peer's address.
    pub client_ip_header: Option<axum::http::HeaderName>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The database URL may carry a password, so it is a secret; `Debug` shows it with the password
/// masked.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: SecretString,
}

impl DatabaseSettings {
    /// The URL with any password replaced by `***`, for logs and `check-config`.
    pub fn redacted_url(&self) -> String {
        redact::url(self.url.expose_secret())
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.redacted_url())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct WorkfrontSettings {
    pub base_url: url::Url,
    pub api_version: String,
    /// How offboard proves who it is ([`crate::workfront::auth`]).
    pub auth: std::sync::Arc<dyn crate::workfront::auth::Credentials>,
    pub max_concurrency: usize,
    /// On 429 the fleet's limit drops; it climbs back slowly, never above `max_concurrency`.
    pub adaptive_concurrency: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identifier {
    EmployeeId,
    Email,
}

impl Identifier {
    pub fn as_str(self) -> &'static str {
        match self {
            Identifier::EmployeeId => "employee_id",
            Identifier::Email => "email",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MatchingSettings {
    pub order: Vec<Identifier>,
    pub employee_id_field: String,
    /// The search modifier for `emailAddr`: `cieq` (case-insensitive) or `eq`.
    pub email_mod: String,
}

pub use crate::domain::due::DateOnlyMeans;

#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    pub date_only_means: DateOnlyMeans,
    pub reactivate_on_rehire: bool,
    pub reactivate_on_cancel: bool,
    pub reactivation_access_level_id: Option<String>,
    /// Events whose HR timestamp lies further ahead than this are refused (422).
    pub max_future_skew: Duration,
}

#[derive(Debug, Clone)]
pub struct SafetySettings {
    pub dry_run: bool,
    pub require_approval: bool,
    pub protect_admins: bool,
    /// Lower-cased emails and Workfront IDs.
    pub protected: Vec<String>,
    pub brake_max: u32,
    pub brake_window: Duration,
    /// The brake for reactivations: their own count, in the same window.
    pub reactivation_brake_max: u32,
    pub require_approval_for_reactivation: bool,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// `None`: the admin API answers 403 (and the console refuses to run).
    pub token: Option<SecretString>,
    /// `GET /console` is served (SPEC §11).
    pub console: bool,
    /// How long a console sign-in lasts.
    pub console_session: Duration,
    /// Mark the session cookie `Secure` even without `server.tls_cert` (behind a TLS ingress).
    pub console_secure_cookie: bool,
}

#[derive(Clone)]
pub struct NotifySettings {
    /// A secret (a Slack webhook URL is a credential): never printed.
    pub webhook_url: Option<url::Url>,
}

impl fmt::Debug for NotifySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifySettings")
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub payload_days: u32,
    pub audit_days: u32,
    /// How often the purge runs.
    pub interval: Duration,
}

/// `[reconcile]` (SPEC §12): scheduled reconciliations against the sources' HR APIs.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// `None`: only on request.
    pub interval: Option<Duration>,
    /// Scheduled runs check people who left within this period.
    pub lookback: Duration,
    pub apply: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub pii: bool,
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub poll_interval: Duration,
    pub lease: Duration,
    pub auth_probe_interval: Duration,
}

/// Raw key bytes of a signing secret.
pub type SecretKey = std::sync::Arc<SecretBox<[u8]>>;

impl Settings {
    /// Loads defaults, then `file` (or `OFFBOARD_CONFIG`), then the environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env_file = std::env::var_os("OFFBOARD_CONFIG").map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(env_file);
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = &file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        // Values from the environment stay strings (the typed fields convert them), so a secret
        // such as `000123` or `TRUE` is never re-typed into `123` or `true`; only the keys that
        // are lists are split on commas, from a second layer that holds nothing else.
        let env = || {
            config::Environment::with_prefix("OFFBOARD")
                .prefix_separator("__")
                .separator("__")
        };
        let lists: std::collections::HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| {
                let key = k.to_ascii_lowercase().replace("__", ".");
                LIST_KEYS.iter().any(|l| key == format!("offboard.{l}"))
            })
            .collect();
        builder = builder.add_source(env().try_parsing(false));
        let mut list_layer = env()
            .list_separator(",")
            .try_parsing(true)
            .source(Some(lists));
        for key in LIST_KEYS {
            list_layer = list_layer.with_list_parse_key(key);
        }
        builder = builder.add_source(list_layer);
        Self::from_config(builder)
    }

    /// Defaults overlaid with a TOML string: used by the demo and tests.
    pub fn from_toml(overlay: &str) -> Result<Settings, ConfigError> {
        Self::from_toml_layers(&[overlay])
    }

    /// Defaults overlaid with several TOML strings, later winning key by key.
    pub fn from_toml_layers(layers: &[&str]) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        for layer in layers {
            builder = builder.add_source(config::File::from_str(layer, config::FileFormat::Toml));
        }
        Self::from_config(builder)
    }

    fn from_config(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
    ) -> Result<Settings, ConfigError> {
        let raw: Raw = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(redact::config_error(&e)))?;
        validate::validate(raw)
    }
}
