//! Logging: JSON lines by default (`log.format = "pretty"` for people), filtered by `RUST_LOG` or
//! `log.level`. Emails are masked where the code logs them unless `log.pii`; secrets are never
//! logged (they are `secrecy` types whose `Debug` is redacted).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber; later calls are no-ops (tests build many apps in one process).
///
/// The filter is `tracing_subscriber`'s `Targets` (a default level and `target=level` directives),
/// not `EnvFilter`: the latter compiles regular expressions at start-up for the span and field
/// filters that nobody here uses, and with the regex engine in the binary it cost about 0.8 MiB of
/// idle resident memory (BENCHMARKS.md, 2026-12-06). `log.level` is checked when the
/// configuration is read; a `RUST_LOG` that does not parse is reported and ignored.
pub fn init(log: &LogSettings) {
    // `log.level` was checked when the configuration was read; INFO only if that was bypassed.
    let configured = || {
        log.level
            .parse()
            .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => v.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!(
                "RUST_LOG is not a valid filter ({e}); using log.level {:?}",
                log.level
            );
            configured()
        }),
        _ => configured(),
    };
    let pii = log.pii;
    let writer = move || -> Box<dyn std::io::Write> {
        if pii {
            Box::new(std::io::stderr())
        } else {
            Box::new(Masked(std::io::stderr()))
        }
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let _ = match log.format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => tracing_subscriber::registry()
            .with(filter)
            .with(layer.compact())
            .try_init(),
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
/// wherever it stands: in JSON strings, query strings (also percent-encoded, `%40`), messages,
/// and in any script (`ÜNÏ.user@exämple.com` → `Ü***@exämple.com`).
pub fn mask_emails(text: &str) -> String {
    // Every log line passes here: most hold no address, and cost no more than this scan.
    if !text.contains('@') && !text.contains("%40") {
        return text.to_string();
    }
    let local = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let domain = |c: char| c.is_alphanumeric() || ".-".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let at = if chars[i] == '@' {
            1
        } else if chars[i] == '%'
            && chars.get(i + 1) == Some(&'4')
            && chars.get(i + 2) == Some(&'0')
        {
            3
        } else {
            0
        };
        if at > 0 {
            let start = out.chars().rev().take_while(|c| local(*c)).count();
            let has_domain = chars.get(i + at).is_some_and(|c| domain(*c));
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
            out.extend(&chars[i..i + at]);
            i += at;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The log writer when `log.pii` is off: each formatted line (the fmt layer writes one event per
/// `write_all`) goes out with every email masked, so no message, field or error text can carry
/// one, whoever wrote the log call.
struct Masked<W>(W);

impl<W: std::io::Write> std::io::Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        self.0.write_all(mask_emails(&line).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
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

    #[test]
    fn emails_in_any_script_and_percent_encoded_are_masked() {
        assert_eq!(
            mask_emails("ÜNÏ.user@exämple.com and 山田.太郎@例え.jp"),
            "Ü***@exämple.com and 山***@例え.jp"
        );
        assert_eq!(
            mask_emails("user/search?emailAddr=jane.doe%40example.com&x=1"),
            "user/search?emailAddr=j***%40example.com&x=1"
        );
        // A percent-encoded byte that is not an at sign is left alone.
        assert_eq!(mask_emails("a%41b.com"), "a%41b.com");
    }

    #[test]
    fn the_log_writer_masks_every_line_it_is_given() {
        use std::io::Write;
        let mut w = Masked(Vec::new());
        let line = b"{\"message\":\"delivery refused\",\"error\":\"bad jane@y.co\"}\n";
        // The whole buffer counts as written, so the formatter never retries a part.
        assert_eq!(w.write(line).unwrap(), line.len());
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(
            out,
            "{\"message\":\"delivery refused\",\"error\":\"bad j***@y.co\"}\n"
        );
    }
}
