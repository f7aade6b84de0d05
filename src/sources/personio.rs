//! Kind `personio`: Personio webhooks v2 (reference §5, §16.4).
//!
//! **Authentication**: `auth_type = TOKEN` puts the configured token *verbatim* in
//! `Authorization`. The source's `token` is compared with the header as sent, and also with the
//! header's value after a `Bearer ` prefix (admins often add one on one side only). No HMAC, no
//! timestamp: the body's hash dedupes.
//!
//! **Events**: `employment.terminated` (fired on the termination date) terminates; everything else
//! is `200 ignored`. Envelope `{"company_id", "event_name", "occurred_at", "payload", "meta"}`. The
//! payload's fields are unconfirmed, so the person id is taken from any of `payload.person_id`,
//! `payload.person.id`, `payload.employee_id`, `payload.employment.person_id`,
//! `payload.employment.person.id`, else the employment id (`payload.employment_id`,
//! `payload.employment.id`, `payload.id`); an email from `payload.email` or
//! `payload.person.email`; a date from `payload.termination_date` or `payload.last_working_date`.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{self, header_str};
use super::{Outcome, Request, Source, SourceError};
use crate::config::ConfigError;
use crate::domain::EventType;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::common::secret_list")]
    tokens: Option<Vec<SecretString>>,
}

#[derive(Debug)]
pub struct Personio {
    token: common::Tokens,
}

impl Personio {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = super::registry::table(name, table)?;
        Ok(Personio {
            token: common::required_tokens(name, t.token, t.token_file, t.tokens)?,
        })
    }

    fn authenticate(&self, req: &Request<'_>) -> Result<(), SourceError> {
        let given = header_str(req.headers, "authorization").ok_or_else(|| {
            SourceError::MissingSignature("Authorization header is missing".into())
        })?;
        let strip = |s: &str| {
            s.strip_prefix("Bearer ")
                .or_else(|| s.strip_prefix("bearer "))
                .map(str::trim)
                .unwrap_or(s)
                .to_string()
        };
        // All comparisons run, so timing does not tell which form matched.
        let matches = |token: &str| {
            let verbatim = common::ct_eq(given.as_bytes(), token.as_bytes());
            let unprefixed = common::ct_eq(strip(&given).as_bytes(), strip(token).as_bytes());
            verbatim | unprefixed
        };
        if self.token.any(matches) {
            Ok(())
        } else {
            Err(SourceError::InvalidToken(
                "the Authorization token is not valid for this source".into(),
            ))
        }
    }
}

impl Source for Personio {
    fn kind(&self) -> &'static str {
        "personio"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        self.authenticate(req)?;
        common::require_media_type(req.headers, &["application/json"])?;
        let body = Value::Object(common::json_object(req.body)?);
        let Some(kind) = body.get("event_name").and_then(Value::as_str) else {
            return Err(SourceError::Malformed("`event_name` is missing".into()));
        };
        if kind != "employment.terminated" {
            return Ok(Outcome::Ignored(format!(
                "Personio event {kind:?} does not concern offboarding"
            )));
        }
        let p = body.get("payload").cloned().unwrap_or(Value::Null);
        let employee_id = common::text_at(
            &p,
            &[
                &["person_id"],
                &["person", "id"],
                &["employee_id"],
                &["employment", "person_id"],
                &["employment", "person", "id"],
                &["employment_id"],
                &["employment", "id"],
                &["id"],
            ],
        );
        let email = common::email(
            common::text_at(&p, &[&["email"], &["person", "email"]]),
            "payload.email",
        )?;
        common::require_identifier(
            &employee_id,
            &email,
            "give a person or employment id in `payload`",
        )?;
        let effective = common::effective(
            common::text_at(
                &p,
                &[
                    &["termination_date"],
                    &["last_working_date"],
                    &["termination", "termination_date"],
                ],
            ),
            "payload.termination_date",
        )?;
        let occurred_at = body
            .get("occurred_at")
            .and_then(|t| common::vendor_time(t, req.timezone))
            .unwrap_or(req.now);
        Ok(Outcome::Events {
            events: vec![common::event(
                EventType::Terminated,
                kind,
                employee_id,
                email,
                None,
                effective,
                occurred_at,
            )],
            dedupe_key: common::body_hash_key(req.body),
        })
    }

    fn sign(&self, _body: &[u8], _now: jiff::Timestamp) -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), "application/json".into()),
            (
                "Authorization".into(),
                self.token.first().expose_secret().to_string(),
            ),
        ]
    }

    fn describe(&self) -> Value {
        json!({"kind": "personio", "token": "[redacted]"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;

    fn source(token: &str) -> Personio {
        Personio::from_table("p", json!({"token": token})).unwrap()
    }

    const BODY: &[u8] = br#"{"company_id":"1","event_name":"employment.terminated","occurred_at":"2026-11-28T00:00:00Z","payload":{"employment":{"id":"emp-7","person":{"id":"per-42"}}}}"#;

    #[test]
    fn the_verbatim_token_passes_with_or_without_a_bearer_prefix_on_either_side() {
        for (configured, sent) in [
            ("tok", "tok"),
            ("Bearer tok", "Bearer tok"),
            ("tok", "Bearer tok"),
            ("Bearer tok", "tok"),
        ] {
            let h = headers(&[
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), sent.into()),
            ]);
            assert!(
                receive_with(&source(configured), &h, BODY, now(), None).is_ok(),
                "{configured} / {sent}"
            );
        }
        let h = headers(&[
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), "nope".into()),
        ]);
        assert!(matches!(
            receive_with(&source("tok"), &h, BODY, now(), None),
            Err(SourceError::InvalidToken(_))
        ));
        assert!(matches!(
            receive_with(&source("tok"), &headers(&[]), BODY, now(), None),
            Err(SourceError::MissingSignature(_))
        ));
    }

    #[test]
    fn the_person_id_is_found_under_any_spelling_before_the_employment_id() {
        let e = events(receive_signed(&source("t"), BODY, now(), None).unwrap());
        assert_eq!(e[0].employee.employee_id.as_deref(), Some("per-42"));
        for payload in [
            json!({"person_id": 5}),
            json!({"person": {"id": "5"}}),
            json!({"employment_id": "5"}),
            json!({"id": "5"}),
        ] {
            let b = json!({"event_name": "employment.terminated", "payload": payload}).to_string();
            let e = events(receive_signed(&source("t"), b.as_bytes(), now(), None).unwrap());
            assert_eq!(e[0].employee.employee_id.as_deref(), Some("5"));
        }
        let none = br#"{"event_name":"employment.terminated","payload":{}}"#;
        assert!(matches!(
            receive_signed(&source("t"), none, now(), None),
            Err(SourceError::InvalidEvent(_))
        ));
        let other = br#"{"event_name":"person.updated","payload":{"id":"5"}}"#;
        assert!(matches!(
            receive_signed(&source("t"), other, now(), None),
            Ok(Outcome::Ignored(_))
        ));
    }
}
