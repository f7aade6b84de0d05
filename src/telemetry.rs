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

/// Masks every email address in a log line (`jane.doe@example.com` → `j***@example.com`),
/// wherever it stands: in JSON strings, query strings, messages.
pub fn mask_emails(text: &str) -> String {
    let local = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let start = out.chars().rev().take_while(|c| local(*c)).count();
            let has_domain = chars.get(i + 1).is_some_and(|c| domain(*c));
            if start > 0 && has_domain {
                let keep: String = out.chars().rev().take(start).last().into_iter().collect();
                let cut = out.len()
                    - out
                        .chars()
                        .rev()
                        .take(start)
                        .map(char::len_utf8)
                        .sum::<usize>();
                out.truncate(cut);
                out.push_str(&keep);
                out.push_str("***");
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emails_inside_json_log_details_are_masked() {
        let line = json!({"emailAddr": "jane.doe@example.com", "name": "Jane"}).to_string();
        let masked = mask_emails(&line);
        assert!(masked.contains("j***@example.com"), "{masked}");
        assert!(!masked.contains("jane.doe"), "{masked}");
        assert!(masked.contains("\"Jane\""));
    }

    #[test]
    fn emails_inside_query_strings_and_sentences_are_masked() {
        let line = "GET user/search?emailAddr=Jane.Doe+x@Example.com&emailAddr_Mod=cieq for a@b.co, not @handles or x@";
        let masked = mask_emails(line);
        assert_eq!(masked, "GET user/search?emailAddr=J***@Example.com&emailAddr_Mod=cieq for a***@b.co, not @handles or x@");
    }
}
