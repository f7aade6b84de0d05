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

use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;

use crate::worker::retry::RetryPolicy;

/// The defaults, documented key by key; embedded so the binary needs no file to start.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// An invalid configuration, naming the key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}
impl std::error::Error for ConfigError {}

fn bad(key: &str, why: impl fmt::Display) -> ConfigError {
    ConfigError(format!("`{key}`: {why}"))
}

// ---------------------------------------------------------------------------------------------
// Raw (as written) settings.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: RawServer,
    database: RawDatabase,
    workfront: RawWorkfront,
    matching: RawMatching,
    retry: RawRetry,
    lifecycle: RawLifecycle,
    safety: RawSafety,
    admin: RawAdmin,
    notify: RawNotify,
    retention: RawRetention,
    log: RawLog,
    worker: RawWorker,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: String,
    max_body_bytes: usize,
    request_timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<SecretString>,
    url_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkfront {
    base_url: String,
    api_version: String,
    auth: String,
    api_key: Option<SecretString>,
    api_key_file: Option<PathBuf>,
    api_key_in: String,
    max_concurrency: usize,
    connect_timeout: String,
    request_timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatching {
    order: Vec<String>,
    employee_id_field: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    schedule: Vec<String>,
    jitter: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    timezone: String,
    date_only_means: String,
    reactivate_on_rehire: bool,
    reactivate_on_cancel: bool,
    reactivation_access_level_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    dry_run: bool,
    require_approval: bool,
    protect_admins: bool,
    protected: Vec<String>,
    brake_max: u32,
    brake_window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    webhook_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    payload_days: u32,
    audit_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: String,
    pii: bool,
    level: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    poll_interval: String,
    lease: String,
    auth_probe_interval: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: String,
    auth: Option<String>,
    secret: Option<SecretString>,
    secret_file: Option<PathBuf>,
    secrets: Option<Vec<SecretString>>,
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    username: Option<String>,
    password: Option<SecretString>,
    password_file: Option<PathBuf>,
    tolerance: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Validated settings.

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
    pub log: LogSettings,
    pub worker: WorkerSettings,
    pub sources: BTreeMap<String, SourceSettings>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
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
        let raw = self.url.expose_secret();
        match url::Url::parse(raw) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => raw.to_string(),
        }
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
    pub auth: WorkfrontAuth,
    pub max_concurrency: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum WorkfrontAuth {
    /// API key, sent as header `apiKey` or as query parameter `apiKey`.
    ApiKey { key: SecretString, in_query: bool },
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOnlyMeans {
    StartOfDay,
    EndOfDay,
}

#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    pub date_only_means: DateOnlyMeans,
    pub reactivate_on_rehire: bool,
    pub reactivate_on_cancel: bool,
    pub reactivation_access_level_id: Option<String>,
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
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// `None`: the admin API answers 403.
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub webhook_url: Option<url::Url>,
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub payload_days: u32,
    pub audit_days: u32,
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

#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub name: String,
    pub kind: SourceKind,
    pub auth: SourceAuth,
    pub tolerance: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Standard,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Standard => "standard",
        }
    }
}

/// How a source proves a delivery is authentic.
#[derive(Debug, Clone)]
pub enum SourceAuth {
    /// Standard Webhooks HMAC-SHA256; several keys during rotation (decoded `whsec_` secrets).
    Signature {
        keys: Vec<SecretKey>,
    },
    Bearer {
        token: SecretString,
    },
    Basic {
        username: String,
        password: SecretString,
    },
}

/// Raw key bytes of a signing secret.
pub type SecretKey = std::sync::Arc<SecretBox<[u8]>>;

// ---------------------------------------------------------------------------------------------
// Loading.

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
        builder = builder.add_source(
            config::Environment::with_prefix("OFFBOARD")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("matching.order")
                .with_list_parse_key("retry.schedule")
                .with_list_parse_key("safety.protected")
                .try_parsing(true),
        );
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
            .map_err(|e| ConfigError(e.to_string()))?;
        validate(raw)
    }
}

fn validate(raw: Raw) -> Result<Settings, ConfigError> {
    let server = ServerSettings {
        bind: raw
            .server
            .bind
            .parse()
            .map_err(|e| bad("server.bind", format!("{e} (expected host:port)")))?,
        max_body_bytes: positive(raw.server.max_body_bytes, "server.max_body_bytes")?,
        request_timeout: duration(&raw.server.request_timeout, "server.request_timeout")?,
    };

    // database.url has a non-empty default (and the container image sets one), so a url_file
    // replaces it rather than conflicting with it.
    let inline_url = if raw.database.url_file.is_some() { None } else { raw.database.url };
    let db_url = secret(inline_url, raw.database.url_file, "database.url")?
        .ok_or_else(|| bad("database.url", "is required"))?;
    {
        let u = db_url.expose_secret();
        if !(u.starts_with("sqlite:")
            || u.starts_with("postgres://")
            || u.starts_with("postgresql://"))
        {
            return Err(bad(
                "database.url",
                "must start with sqlite: or postgres:// (postgresql://)",
            ));
        }
    }

    let workfront = validate_workfront(raw.workfront)?;

    let mut order = Vec::new();
    for (i, name) in raw.matching.order.iter().enumerate() {
        let id = match name.as_str() {
            "employee_id" => Identifier::EmployeeId,
            "email" => Identifier::Email,
            other => {
                return Err(bad(
                    &format!("matching.order[{i}]"),
                    format!("unknown identifier {other:?}; use \"employee_id\" or \"email\""),
                ))
            }
        };
        if order.contains(&id) {
            return Err(bad("matching.order", format!("{name:?} is listed twice")));
        }
        order.push(id);
    }
    if order.is_empty() {
        return Err(bad("matching.order", "must name at least one identifier"));
    }
    let field = raw.matching.employee_id_field.trim().to_string();
    let field_ok = field == "extRefID"
        || field == "ssoUsername"
        || (field.starts_with("DE:") && field.len() > 3);
    if !field_ok {
        return Err(bad(
            "matching.employee_id_field",
            "must be extRefID, ssoUsername or \"DE:<custom field label>\"",
        ));
    }

    let mut schedule = Vec::new();
    for (i, s) in raw.retry.schedule.iter().enumerate() {
        schedule.push(duration(s, &format!("retry.schedule[{i}]"))?);
    }
    if !(0.0..=1.0).contains(&raw.retry.jitter) {
        return Err(bad("retry.jitter", "must be between 0.0 and 1.0"));
    }
    let retry = RetryPolicy::new(schedule, raw.retry.jitter);

    let timezone = jiff::tz::TimeZone::get(&raw.lifecycle.timezone).map_err(|e| {
        bad(
            "lifecycle.timezone",
            format!("{e} (expected an IANA name like Europe/Berlin)"),
        )
    })?;
    let lifecycle = LifecycleSettings {
        timezone,
        timezone_name: raw.lifecycle.timezone.clone(),
        date_only_means: match raw.lifecycle.date_only_means.as_str() {
            "end_of_day" => DateOnlyMeans::EndOfDay,
            "start_of_day" => DateOnlyMeans::StartOfDay,
            _ => {
                return Err(bad(
                    "lifecycle.date_only_means",
                    "must be end_of_day or start_of_day",
                ))
            }
        },
        reactivate_on_rehire: raw.lifecycle.reactivate_on_rehire,
        reactivate_on_cancel: raw.lifecycle.reactivate_on_cancel,
        reactivation_access_level_id: non_empty(raw.lifecycle.reactivation_access_level_id),
    };

    let safety = SafetySettings {
        dry_run: raw.safety.dry_run,
        require_approval: raw.safety.require_approval,
        protect_admins: raw.safety.protect_admins,
        protected: raw
            .safety
            .protected
            .iter()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty())
            .collect(),
        brake_max: raw.safety.brake_max,
        brake_window: duration(&raw.safety.brake_window, "safety.brake_window")?,
    };

    let admin = AdminSettings {
        token: secret(raw.admin.token, raw.admin.token_file, "admin.token")?,
    };
    let notify = NotifySettings {
        webhook_url: match non_empty(raw.notify.webhook_url) {
            None => None,
            Some(u) => Some(http_url(&u, "notify.webhook_url")?),
        },
    };
    let log = LogSettings {
        format: match raw.log.format.as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            _ => return Err(bad("log.format", "must be json or pretty")),
        },
        pii: raw.log.pii,
        level: raw.log.level,
    };
    let worker = WorkerSettings {
        poll_interval: positive_duration(&raw.worker.poll_interval, "worker.poll_interval")?,
        lease: positive_duration(&raw.worker.lease, "worker.lease")?,
        auth_probe_interval: positive_duration(
            &raw.worker.auth_probe_interval,
            "worker.auth_probe_interval",
        )?,
    };
    let mut sources = BTreeMap::new();
    for (name, src) in raw.sources {
        let validated = validate_source(&name, src)?;
        sources.insert(name, validated);
    }
    Ok(Settings {
        server,
        database: DatabaseSettings { url: db_url },
        workfront,
        matching: MatchingSettings {
            order,
            employee_id_field: field,
        },
        retry,
        lifecycle,
        safety,
        admin,
        notify,
        retention: RetentionSettings {
            payload_days: raw.retention.payload_days,
            audit_days: raw.retention.audit_days,
        },
        log,
        worker,
        sources,
    })
}

fn validate_workfront(raw: RawWorkfront) -> Result<WorkfrontSettings, ConfigError> {
    let base_url = http_url(&raw.base_url, "workfront.base_url")?;
    let version = raw.api_version.trim();
    let version_ok = version
        .strip_prefix('v')
        .map(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or(false);
    if !version_ok {
        return Err(bad("workfront.api_version", "must look like v21.0"));
    }
    let auth = match raw.auth.as_str() {
        "api_key" => {
            let key = secret(raw.api_key, raw.api_key_file, "workfront.api_key")?
                .unwrap_or_else(|| SecretString::from(String::new()));
            let in_query = match raw.api_key_in.as_str() {
                "header" => false,
                "query" => true,
                _ => return Err(bad("workfront.api_key_in", "must be header or query")),
            };
            WorkfrontAuth::ApiKey { key, in_query }
        }
        "oauth_jwt" | "ims" => {
            return Err(bad(
                "workfront.auth",
                format!(
                    "{:?} is not supported by this version yet; use api_key",
                    raw.auth
                ),
            ))
        }
        other => {
            return Err(bad(
                "workfront.auth",
                format!("unknown value {other:?}; use api_key"),
            ))
        }
    };
    if raw.max_concurrency == 0 {
        return Err(bad("workfront.max_concurrency", "must be at least 1"));
    }
    Ok(WorkfrontSettings {
        base_url,
        api_version: version.to_string(),
        auth,
        max_concurrency: raw.max_concurrency,
        connect_timeout: positive_duration(&raw.connect_timeout, "workfront.connect_timeout")?,
        request_timeout: positive_duration(&raw.request_timeout, "workfront.request_timeout")?,
    })
}

fn validate_source(name: &str, raw: RawSource) -> Result<SourceSettings, ConfigError> {
    let key = |k: &str| format!("sources.{name}.{k}");
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(bad(
            &format!("sources.{name}"),
            "source names may only contain letters, digits, '-' and '_'",
        ));
    }
    let kind = match raw.kind.as_str() {
        "standard" => SourceKind::Standard,
        other => {
            return Err(bad(
                &key("kind"),
                format!("unsupported kind {other:?}; this version supports: standard"),
            ))
        }
    };
    let tolerance = match &raw.tolerance {
        Some(t) => positive_duration(t, &key("tolerance"))?,
        None => Duration::from_secs(300),
    };
    let auth = match raw.auth.as_deref().unwrap_or("signature") {
        "signature" => {
            let mut all = Vec::new();
            if let Some(one) = secret(raw.secret, raw.secret_file, &key("secret"))? {
                all.push((key("secret"), one));
            }
            for (i, s) in raw.secrets.unwrap_or_default().into_iter().enumerate() {
                if !s.expose_secret().is_empty() {
                    all.push((format!("{}[{i}]", key("secrets")), s));
                }
            }
            if all.is_empty() {
                return Err(bad(
                    &key("secret"),
                    "a signing secret is required (secret, secret_file or secrets)",
                ));
            }
            let keys = all
                .iter()
                .map(|(k, s)| decode_whsec(s.expose_secret(), k))
                .collect::<Result<Vec<_>, _>>()?;
            SourceAuth::Signature { keys }
        }
        "bearer" => SourceAuth::Bearer {
            token: secret(raw.token, raw.token_file, &key("token"))?
                .ok_or_else(|| bad(&key("token"), "is required with auth = \"bearer\""))?,
        },
        "basic" => SourceAuth::Basic {
            username: raw
                .username
                .filter(|u| !u.is_empty())
                .ok_or_else(|| bad(&key("username"), "is required with auth = \"basic\""))?,
            password: secret(raw.password, raw.password_file, &key("password"))?
                .ok_or_else(|| bad(&key("password"), "is required with auth = \"basic\""))?,
        },
        other => {
            return Err(bad(
                &key("auth"),
                format!("unknown value {other:?}; use signature, bearer or basic"),
            ))
        }
    };
    Ok(SourceSettings {
        name: name.to_string(),
        kind,
        auth,
        tolerance,
    })
}

/// Decodes a Standard Webhooks secret (`whsec_` + base64; the prefix is optional as in the
/// reference libraries) into key bytes. Shorter than 24 bytes is refused: the spec asks for at
/// least that much randomness.
pub fn decode_whsec(secret: &str, key: &str) -> Result<SecretKey, ConfigError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad(key, "must be whsec_ followed by base64"))?;
    if bytes.len() < 24 {
        return Err(bad(key, "must decode to at least 24 bytes of key"));
    }
    Ok(std::sync::Arc::new(SecretBox::new(
        bytes.into_boxed_slice(),
    )))
}

/// Resolves a secret given inline or as `<key>_file`. Empty counts as unset, so the default
/// `""` can be overridden by a file; giving both non-empty is ambiguous and refused.
fn secret(
    inline: Option<SecretString>,
    file: Option<PathBuf>,
    key: &str,
) -> Result<Option<SecretString>, ConfigError> {
    let inline = inline.filter(|s| !s.expose_secret().is_empty());
    let file = file.filter(|p| !p.as_os_str().is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(bad(
            key,
            format!("is given both inline and as {key}_file; keep one"),
        )),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                bad(
                    &format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let trimmed = text.strip_suffix('\n').unwrap_or(&text);
            let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
            if trimmed.is_empty() {
                return Err(bad(
                    &format!("{key}_file"),
                    format!("{} is empty", path.display()),
                ));
            }
            Ok(Some(SecretString::from(trimmed.to_string())))
        }
        (None, None) => Ok(None),
    }
}

/// Parses `"10s"`, `"2m"`, `"1h"`, `"500ms"` (jiff's friendly format, ISO 8601 also accepted).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s.trim().parse().map_err(|_| {
        format!("{s:?} is not a duration (examples: \"500ms\", \"10s\", \"2m\", \"1h\")")
    })?;
    Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))
}

fn duration(s: &str, key: &str) -> Result<Duration, ConfigError> {
    parse_duration(s).map_err(|e| bad(key, e))
}

fn positive_duration(s: &str, key: &str) -> Result<Duration, ConfigError> {
    let d = duration(s, key)?;
    if d.is_zero() {
        return Err(bad(key, "must be greater than zero"));
    }
    Ok(d)
}

fn positive(v: usize, key: &str) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(bad(key, "must be greater than zero"));
    }
    Ok(v)
}

fn http_url(s: &str, key: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(s.trim()).map_err(|e| bad(key, format!("{e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(bad(key, "must be an http:// or https:// URL"));
    }
    if u.host().is_none() {
        return Err(bad(key, "must name a host"));
    }
    Ok(u)
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_spec() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.server.bind.port(), 8080);
        assert_eq!(s.server.max_body_bytes, 262_144);
        assert_eq!(s.workfront.max_concurrency, 5);
        assert_eq!(s.retry.schedule().len(), 10);
        assert_eq!(s.retry.schedule()[3], Duration::from_secs(600));
        assert_eq!(
            s.matching.order,
            vec![Identifier::EmployeeId, Identifier::Email]
        );
        assert!(s.admin.token.is_none());
        assert!(s.sources.is_empty());
    }

    #[test]
    fn durations_accept_friendly_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn a_bad_value_is_reported_with_its_key() {
        let err = Settings::from_toml("[retry]\nschedule = [\"10s\", \"often\"]").unwrap_err();
        assert!(err.0.contains("retry.schedule[1]"), "{err}");
        let err = Settings::from_toml("[lifecycle]\ntimezone = \"Mars/Olympus\"").unwrap_err();
        assert!(err.0.contains("lifecycle.timezone"), "{err}");
        let err = Settings::from_toml("[server]\nbind = \"nowhere\"").unwrap_err();
        assert!(err.0.contains("server.bind"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let err = Settings::from_toml("[safety]\ndry_rnu = true").unwrap_err();
        assert!(err.0.contains("dry_rnu"), "{err}");
    }

    #[test]
    fn source_secrets_must_be_whsec_base64_of_24_bytes() {
        let err =
            Settings::from_toml("[sources.a]\nkind=\"standard\"\nsecret=\"whsec_!!\"").unwrap_err();
        assert!(err.0.contains("sources.a.secret"), "{err}");
        let err = Settings::from_toml("[sources.a]\nkind=\"standard\"\nsecret=\"whsec_YWJj\"")
            .unwrap_err();
        assert!(err.0.contains("24 bytes"), "{err}");
        let err = Settings::from_toml("[sources.a]\nkind=\"bamboo\"\nsecret=\"x\"").unwrap_err();
        assert!(err.0.contains("sources.a.kind"), "{err}");
        let ok = Settings::from_toml(
            "[sources.a]\nkind=\"standard\"\nsecrets=[\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\", \"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
        )
        .unwrap();
        match &ok.sources["a"].auth {
            SourceAuth::Signature { keys } => assert_eq!(keys.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_can_come_from_files_and_never_show_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cr3t-api-key\n").unwrap();
        let s = Settings::from_toml(&format!(
            "[workfront]\napi_key_file = {:?}\n[admin]\ntoken = \"admintok\"\n[database]\nurl = \"postgres://u:dbpass@h/db\"",
            path.display().to_string()
        ))
        .unwrap();
        let WorkfrontAuth::ApiKey { key, .. } = &s.workfront.auth;
        assert_eq!(key.expose_secret(), "s3cr3t-api-key");
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(!debug.contains("admintok"), "{debug}");
        assert!(!debug.contains("dbpass"), "{debug}");
        assert!(debug.contains("postgres://u:***@h/db"), "{debug}");
    }

    #[test]
    fn a_database_url_file_replaces_the_default_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, "postgres://u:pw@db/offboard\n").unwrap();
        let s = Settings::from_toml(&format!("[database]\nurl_file = {:?}", path.display().to_string())).unwrap();
        assert_eq!(s.database.url.expose_secret(), "postgres://u:pw@db/offboard");
    }

    #[test]
    fn a_secret_given_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "x").unwrap();
        let err = Settings::from_toml(&format!(
            "[admin]\ntoken = \"a\"\ntoken_file = {:?}",
            path.display().to_string()
        ))
        .unwrap_err();
        assert!(err.0.contains("admin.token"), "{err}");
    }
}
