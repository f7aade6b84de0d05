//! Logging: JSON lines by default (`log.format = "pretty"` for people), filtered by `RUST_LOG` or
//! `log.level`. Emails are masked where the code logs them unless `log.pii`; secrets are never
//! logged (they are `secrecy` types whose `Debug` is redacted).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber; later calls are no-ops (tests build many apps in one process).
pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// An email as it may appear in logs.
pub fn show_email(email: &str, pii: bool) -> String {
    if pii {
        email.to_string()
    } else {
        crate::domain::mask_email(email)
    }
}
