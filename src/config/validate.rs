//! From raw settings to validated ones: every error names its key.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::raw::*;
use super::*;

pub(super) fn validate(raw: Raw) -> Result<Settings, ConfigError> {
    let server = ServerSettings {
        bind: raw
            .server
            .bind
            .parse()
            .map_err(|e| bad("server.bind", format!("{e} (expected host:port)")))?,
        max_body_bytes: positive(raw.server.max_body_bytes, "server.max_body_bytes")?,
        request_timeout: duration(&raw.server.request_timeout, "server.request_timeout")?,
        header_read_timeout: positive_duration(
            &raw.server.header_read_timeout,
            "server.header_read_timeout",
        )?,
        idle_timeout: positive_duration(&raw.server.idle_timeout, "server.idle_timeout")?,
        max_connections: positive(raw.server.max_connections, "server.max_connections")?,
        shutdown_grace: duration(&raw.server.shutdown_grace, "server.shutdown_grace")?,
        admin_bind: match raw.server.admin_bind.trim() {
            "" => None,
            a => Some(
                a.parse()
                    .map_err(|e| bad("server.admin_bind", format!("{e} (expected host:port)")))?,
            ),
        },
        tls: match (raw.server.tls_cert.trim(), raw.server.tls_key.trim()) {
            ("", "") => None,
            ("", _) => return Err(bad("server.tls_cert", "is required with server.tls_key")),
            (_, "") => return Err(bad("server.tls_key", "is required with server.tls_cert")),
            (cert, key) => Some(TlsFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
        },
        auth_failures_per_minute: raw.server.auth_failures_per_minute,
        client_ip_header: match raw.server.client_ip_header.trim() {
            "" => None,
            h => Some(
                axum::http::HeaderName::try_from(h)
                    .map_err(|_| bad("server.client_ip_header", "is not a valid header name"))?,
            ),
        },
    };
    if server.admin_bind == Some(server.bind) && server.bind.port() != 0 {
        return Err(bad(
            "server.admin_bind",
            "is the same address as server.bind; leave it empty for one listener",
        ));
    }

    // database.url has a non-empty default (and the container image sets one), so a url_file
    // replaces it rather than conflicting with it.
    let inline_url = if raw.database.url_file.is_some() {
        None
    } else {
        raw.database.url
    };
    let db_url = secret_value(inline_url, raw.database.url_file, "database.url")?
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
        if crate::store::is_in_memory_sqlite(u) {
            return Err(bad("database.url", crate::store::IN_MEMORY_REFUSED));
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
        max_future_skew: duration(&raw.lifecycle.max_future_skew, "lifecycle.max_future_skew")?,
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
        reactivation_brake_max: raw.safety.reactivation_brake_max,
        require_approval_for_reactivation: raw.safety.require_approval_for_reactivation,
    };

    let admin = AdminSettings {
        token: secret_value(raw.admin.token, raw.admin.token_file, "admin.token")?,
        console: raw.admin.console,
        console_session: duration(&raw.admin.console_session, "admin.console_session")?,
        console_secure_cookie: raw.admin.console_secure_cookie,
    };
    if admin.console_session.is_zero() {
        return Err(bad("admin.console_session", "must be longer than 0 s"));
    }
    let notify = NotifySettings {
        webhook_url: match secret_value(
            raw.notify.webhook_url,
            raw.notify.webhook_url_file,
            "notify.webhook_url",
        )? {
            None => None,
            // The URL's parse error names no part of it: the URL is the secret.
            Some(u) => Some(
                http_url(u.expose_secret(), "notify.webhook_url").map_err(|_| {
                    bad(
                        "notify.webhook_url",
                        "is not an http:// or https:// URL with a host",
                    )
                })?,
            ),
        },
    };
    let log = LogSettings {
        format: match raw.log.format.as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            _ => return Err(bad("log.format", "must be json or pretty")),
        },
        pii: raw.log.pii,
        level: log_level(raw.log.level)?,
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
    let mut hr_apis = BTreeMap::new();
    for (name, mut src) in raw.sources {
        // `[sources.<name>.api]` is the HR vendor's API (§4.3), built apart from the kind.
        let api = src.as_object_mut().and_then(|t| t.remove("api"));
        let validated = validate_source(&name, src)?;
        if let Some(api) = api {
            hr_apis.insert(
                name.clone(),
                crate::hrapi::build(&name, validated.kind(), api)?,
            );
        }
        sources.insert(name, validated);
    }
    Ok(Settings {
        server,
        database: DatabaseSettings { url: db_url },
        workfront,
        matching: MatchingSettings {
            order,
            employee_id_field: field,
            email_mod: match raw.matching.email_mod.trim() {
                m @ ("cieq" | "eq") => m.to_string(),
                other => {
                    return Err(bad(
                        "matching.email_mod",
                        format!("unknown modifier {other:?}; use cieq (case-insensitive) or eq"),
                    ))
                }
            },
        },
        retry,
        lifecycle,
        safety,
        admin,
        notify,
        retention: RetentionSettings {
            payload_days: raw.retention.payload_days,
            audit_days: raw.retention.audit_days,
            interval: positive_duration(&raw.retention.interval, "retention.interval")?,
        },
        reconcile: ReconcileSettings {
            interval: match raw.reconcile.interval.trim() {
                "" => None,
                i => Some(positive_duration(i, "reconcile.interval")?),
            },
            lookback: lookback(&raw.reconcile.lookback)?,
            apply: raw.reconcile.apply,
        },
        log,
        worker,
        sources,
        hr_apis,
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
    let auth = crate::workfront::auth::build(crate::workfront::auth::Input {
        base_url: base_url.clone(),
        auth: raw.auth.trim().to_string(),
        api_key: raw.api_key,
        api_key_file: raw.api_key_file,
        api_key_in: raw.api_key_in,
        client_id: raw.client_id,
        client_secret: raw.client_secret,
        client_secret_file: raw.client_secret_file,
        customer_id: raw.customer_id,
        user_id: raw.user_id,
        private_key: raw.private_key,
        private_key_file: raw.private_key_file,
        ims_token_url: raw.ims_token_url,
        scopes: raw.scopes.unwrap_or_default(),
        ims_org_id: raw.ims_org_id,
    })?;
    if raw.max_concurrency == 0 {
        return Err(bad("workfront.max_concurrency", "must be at least 1"));
    }
    Ok(WorkfrontSettings {
        base_url,
        api_version: version.to_string(),
        auth,
        max_concurrency: raw.max_concurrency,
        adaptive_concurrency: raw.adaptive_concurrency,
        connect_timeout: positive_duration(&raw.connect_timeout, "workfront.connect_timeout")?,
        request_timeout: positive_duration(&raw.request_timeout, "workfront.request_timeout")?,
    })
}

/// Source names that actions of operators and reconciliations carry.
const RESERVED_SOURCE_NAMES: &[&str] = &[
    crate::domain::lifecycle::OPERATOR_SOURCE,
    crate::domain::reconcile::RECONCILE_SOURCE,
];

fn validate_source(
    name: &str,
    table: serde_json::Value,
) -> Result<std::sync::Arc<dyn crate::sources::Source>, ConfigError> {
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
    // Actions record their source by name: an HR source must never pass for an operator.
    if RESERVED_SOURCE_NAMES.contains(&name) {
        return Err(bad(
            &format!("sources.{name}"),
            format!("{name:?} is reserved for actions made by operators; choose another name"),
        ));
    }
    crate::sources::registry::build(name, table)
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
pub fn secret_value(
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

/// `reconcile.lookback`: whole days (`"30d"`) or any duration.
fn lookback(s: &str) -> Result<Duration, ConfigError> {
    match s.trim().strip_suffix('d').map(|n| n.trim().parse::<u64>()) {
        Some(Ok(days)) if days > 0 => Ok(Duration::from_secs(days * 86_400)),
        Some(_) => Err(bad(
            "reconcile.lookback",
            "must be a positive number of days like \"30d\"",
        )),
        None => positive_duration(s, "reconcile.lookback"),
    }
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

/// `log.level`: a level, or comma-separated `target=level` directives beside at most one level
/// (`info,offboard=debug`). A bare word that is not a level is refused, though the filter syntax
/// would read it as "this target at every level": it is nearly always a misspelt level.
fn log_level(level: String) -> Result<String, ConfigError> {
    let refuse = |why: String| {
        bad(
            "log.level",
            format!("must be a level (error, warn, info, debug, trace, off) or directives like \"info,offboard=debug\": {why}"),
        )
    };
    for directive in level.split(',').map(str::trim) {
        let lvl = directive
            .rsplit_once('=')
            .map_or(directive, |(_, l)| l.trim());
        if lvl.is_empty()
            || lvl
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
        {
            return Err(refuse(format!("{directive:?} names no level")));
        }
    }
    level
        .parse::<tracing_subscriber::filter::Targets>()
        .map_err(|e| refuse(e.to_string()))?;
    Ok(level)
}

fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}
