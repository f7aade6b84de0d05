//! The registry: the one place that knows every kind by name. It turns a `[sources.<name>]`
//! table into the kind's [`Source`], refusing unknown kinds and (through each kind's
//! `deny_unknown_fields` table) unknown keys, with errors that name the key.

use std::sync::Arc;

use serde_json::{json, Value};

use super::Source;
use super::{bamboohr, cloudevents, deel, factorial, gusto, hibob, personio, rippling, standard};
use crate::config::{bad, ConfigError};

/// Every kind this version speaks.
pub const KINDS: &[&str] = &[
    "standard",
    "bamboohr",
    "hibob",
    "gusto",
    "personio",
    "deel",
    "rippling",
    "factorial",
    "cloudevents",
];

/// Builds source `name` from its table (which holds `kind` and the kind's own keys).
pub fn build(name: &str, table: Value) -> Result<Arc<dyn Source>, ConfigError> {
    let Value::Object(mut map) = table else {
        return Err(bad(&format!("sources.{name}"), "must be a table"));
    };
    let kind = match map.remove("kind") {
        Some(Value::String(k)) => k,
        Some(_) => return Err(bad(&format!("sources.{name}.kind"), "must be a string")),
        None => {
            return Err(bad(
                &format!("sources.{name}.kind"),
                format!("is required: one of {}", KINDS.join(", ")),
            ))
        }
    };
    let table = Value::Object(map);
    Ok(match kind.as_str() {
        "standard" => Arc::new(standard::Standard::from_table(name, table)?),
        "bamboohr" => Arc::new(bamboohr::BambooHr::from_table(name, table)?),
        "hibob" => Arc::new(hibob::HiBob::from_table(name, table)?),
        "gusto" => Arc::new(gusto::Gusto::from_table(name, table)?),
        "personio" => Arc::new(personio::Personio::from_table(name, table)?),
        "deel" => Arc::new(deel::Deel::from_table(name, table)?),
        "rippling" => Arc::new(rippling::Rippling::from_table(name, table)?),
        "factorial" => Arc::new(factorial::Factorial::from_table(name, table)?),
        "cloudevents" => Arc::new(cloudevents::CloudEvents::from_table(name, table)?),
        other => {
            return Err(bad(
                &format!("sources.{name}.kind"),
                format!(
                    "unknown kind {other:?}; this version speaks {}",
                    KINDS.join(", ")
                ),
            ))
        }
    })
}

/// Deserializes a kind's table, naming the source in the error.
pub fn table<T: serde::de::DeserializeOwned>(name: &str, table: Value) -> Result<T, ConfigError> {
    serde_json::from_value(table).map_err(|e| {
        bad(
            &format!("sources.{name}"),
            crate::config::redact::values(&e.to_string()),
        )
    })
}

/// A valid table for every kind, with fixed test secrets (fuzzing and tests).
#[doc(hidden)]
pub fn example_table(kind: &str) -> Value {
    let secret = "test-secret-0123456789abcdef";
    match kind {
        "standard" => {
            json!({"kind": "standard", "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"})
        }
        "personio" | "rippling" | "factorial" | "cloudevents" => {
            json!({"kind": kind, "token": secret})
        }
        _ => json!({"kind": kind, "secret": secret}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_take_the_old_and_the_new_token_during_a_rotation() {
        let tables = [
            json!({"kind": "standard", "auth": "bearer", "token": "tok-new", "tokens": ["tok-old"]}),
            json!({"kind": "personio", "tokens": "tok-new,tok-old"}),
            json!({"kind": "rippling", "tokens": ["tok-new", "tok-old"]}),
            json!({"kind": "factorial", "tokens": ["tok-new", "tok-old"], "event": "employee_terminated"}),
            json!({"kind": "cloudevents", "token": "tok-new", "tokens": ["tok-old"]}),
        ];
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        for table in tables {
            let kind = table["kind"].as_str().unwrap().to_string();
            let source = build("hr", table).unwrap();
            // What `offboard sign` sends carries the first token.
            let signed = format!("{:?}", source.sign(b"{}", now));
            assert!(signed.contains("tok-new"), "{kind}: {signed}");
            for (token, passes) in [("tok-new", true), ("tok-old", true), ("tok-gone", false)] {
                let mut headers = axum::http::HeaderMap::new();
                headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
                let req = crate::sources::Request {
                    headers: &headers,
                    query: None,
                    body: b"{}",
                    now,
                    timezone: &tz,
                };
                let authenticated = match source.receive(&req) {
                    Ok(_) => true,
                    Err(e) => !e.is_authentication(),
                };
                assert_eq!(authenticated, passes, "{kind} with {token}");
            }
        }
    }

    #[test]
    fn a_token_source_without_any_token_names_the_key() {
        let e = build("hr", json!({"kind": "rippling", "tokens": []}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources.hr.token"), "{e}");
    }

    #[test]
    fn every_kind_builds_from_its_example_and_reports_its_name() {
        for kind in KINDS {
            let s = build("x", example_table(kind)).unwrap();
            assert_eq!(s.kind(), *kind);
            let shown = s.describe().to_string();
            assert!(!shown.contains("test-secret"), "{kind}: {shown}");
        }
    }

    #[test]
    fn unknown_kinds_and_unknown_keys_are_refused_naming_the_key() {
        let e = build("hr", json!({"kind": "workday"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources.hr.kind") && e.contains("bamboohr"),
            "{e}"
        );
        let e = build("hr", json!({"secret": "x"})).unwrap_err().to_string();
        assert!(e.contains("sources.hr.kind"), "{e}");
        for kind in KINDS {
            let mut t = example_table(kind);
            t["colour"] = json!("blue");
            let e = build("hr", t).unwrap_err().to_string();
            assert!(
                e.contains("colour") && e.contains("sources.hr"),
                "{kind}: {e}"
            );
        }
    }
}
