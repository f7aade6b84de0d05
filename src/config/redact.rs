//! Keeping secrets out of configuration output (SPEC §9): error messages name the key and the type
//! found, never the value (a secret given the wrong shape must not be printed back), and URLs
//! shown by `check-config` lose their user-info and the values of credential-like query
//! parameters.

/// A loader error, with every value it quoted replaced by its type.
pub fn config_error(e: &config::ConfigError) -> String {
    use config::ConfigError as E;
    let place = |key: &Option<String>, origin: &Option<String>| {
        let mut s = String::new();
        if let Some(k) = key {
            s.push_str(&format!(" for key `{k}`"));
        }
        if let Some(o) = origin {
            s.push_str(&format!(" in {o}"));
        }
        s
    };
    match e {
        E::At { error, origin, key } => {
            format!("{}{}", config_error(error), place(key, origin))
        }
        // A TOML syntax error quotes the offending line, which may be a secret's.
        E::FileParse { uri, cause } => {
            let kept: Vec<String> = cause
                .to_string()
                .lines()
                .filter(|l| !is_snippet(l))
                .map(values)
                .collect();
            let mut s = kept.join("; ");
            if let Some(u) = uri {
                s.push_str(&format!(" in {u}"));
            }
            s
        }
        other => values(&other.to_string()),
    }
}

/// A line of a parser's source excerpt (`3 | secret = …` or the `  |   ^` under it).
fn is_snippet(line: &str) -> bool {
    let t = line.trim_start();
    let t = t.trim_start_matches(|c: char| c.is_ascii_digit());
    t.starts_with('|') || t.starts_with(" |")
}

/// Replaces the values serde quotes in its messages (`string "…"`, ``integer `…` ``, and the like)
/// with their type; field and variant names (in backticks after other words) are kept.
pub fn values(message: &str) -> String {
    const QUOTED: &[(&str, char, &str)] = &[
        ("string \"", '"', "a string"),
        ("integer `", '`', "an integer"),
        ("floating point `", '`', "a number"),
        ("boolean `", '`', "a boolean"),
        ("character `", '`', "a character"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        for (prefix, close, name) in QUOTED {
            if let Some(after) = rest.strip_prefix(prefix) {
                // serde escapes quotes inside a string value with `\"`.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == *close {
                        end = Some(i);
                        break;
                    }
                }
                out.push_str(name);
                rest = match end {
                    Some(i) => &after[i + close.len_utf8()..],
                    None => "",
                };
                continue 'scan;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Query parameters whose value is treated as a credential in a shown URL.
fn credential_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "pass", "pwd", "secret", "token", "key", "sig", "auth", "cred", "session",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A URL as `check-config` shows it: user-info replaced by `***`, credential-like query values
/// (`password`, `token`, `sig`, `api_key`, …) by `***`. Text that is not a URL is shown as
/// `[redacted]` unless it has no `@` and no `?`, since it cannot be taken apart safely.
pub fn url(text: &str) -> String {
    let Ok(mut u) = url::Url::parse(text) else {
        return if text.contains('@') || text.contains('?') {
            "[redacted]".into()
        } else {
            text.to_string()
        };
    };
    if !u.username().is_empty() {
        let _ = u.set_username("***");
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if credential_param(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_keep_the_field_and_lose_the_value() {
        let m = values(r#"invalid type: string "whsec_tWMk\"x", expected a sequence at `secrets`"#);
        assert_eq!(
            m,
            "invalid type: a string, expected a sequence at `secrets`"
        );
        let m = values("invalid type: integer `123456`, expected a string");
        assert_eq!(m, "invalid type: an integer, expected a string");
        let m = values("unknown field `scret`, expected one of `secret`, `secrets`");
        assert_eq!(
            m,
            "unknown field `scret`, expected one of `secret`, `secrets`"
        );
    }

    #[test]
    fn a_type_error_from_the_loader_names_the_key_and_never_the_value() {
        let e = crate::config::Settings::from_toml("[safety]\nprotected = \"whsec_tWMkSECRET\"\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("tWMk"), "{e}");
        assert!(
            e.contains("safety.protected") && e.contains("a string"),
            "{e}"
        );
    }

    #[test]
    fn a_toml_syntax_error_does_not_quote_the_line() {
        let err = config::Config::builder()
            .add_source(config::File::from_str(
                "[admin]\ntoken = sekrit-value-123\n",
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("sekrit"), "the premise: {err}");
        let s = config_error(&err);
        assert!(!s.contains("sekrit"), "{s}");
        assert!(s.contains("line 2"), "{s}");
    }

    #[test]
    fn shown_urls_lose_user_info_and_credential_query_values() {
        assert_eq!(
            url("postgres://db.internal/offboard?user=svc&password=hunter2&sslmode=require"),
            "postgres://db.internal/offboard?user=svc&password=***&sslmode=require"
        );
        assert_eq!(
            url("https://user:pw@wf.example.com/attask"),
            "https://***:***@wf.example.com/attask"
        );
        assert_eq!(
            url("https://hooks.example.com/x?sig=abc&api_key=k&v=1"),
            "https://hooks.example.com/x?sig=***&api_key=***&v=1"
        );
        assert_eq!(url("sqlite://offboard.db"), "sqlite://offboard.db");
        assert_eq!(url("not a url @ with ?x"), "[redacted]");
    }
}
