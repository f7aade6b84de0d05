//! Kind `factorial`: Factorial webhooks (reference §10, §16.6).
//!
//! **Authentication**: the subscription's `challenge`, echoed by Factorial in the
//! `x-factorial-wh-challenge` header of every delivery, is this source's `token` (compared in
//! constant time); `Authorization: Bearer <token>` is accepted too. No HMAC, no timestamp: the
//! body's hash dedupes.
//!
//! **Body**: the bare employee object (`{"id", "email", "first_name", "last_name",
//! "terminated_on", ...}`) with no event name. The event comes from a `type` or `event` field when
//! present, else from the URL's `?event=` parameter, else from the source's `event` key (one
//! source per subscription type). `employee_terminated` (v2:
//! `Employees::Events::EmployeeTerminated`) terminates, due at `terminated_on`;
//! `employee_unterminated` (v2: `...EmployeeUnterminated`) cancels the termination.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{self, header_str};
use super::{Outcome, Request, Source, SourceError};
use crate::config::{bad, ConfigError};
use crate::domain::EventType;

const CHALLENGE: &str = "x-factorial-wh-challenge";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::common::secret_list")]
    tokens: Option<Vec<SecretString>>,
    event: Option<String>,
}

#[derive(Debug)]
pub struct Factorial {
    token: common::Tokens,
    event: Option<String>,
}

fn event_type(name: &str) -> Option<EventType> {
    match name.trim() {
        "employee_terminated" | "Employees::Events::EmployeeTerminated" => {
            Some(EventType::Terminated)
        }
        "employee_unterminated" | "Employees::Events::EmployeeUnterminated" => {
            Some(EventType::TerminationCancelled)
        }
        _ => None,
    }
}

impl Factorial {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = super::registry::table(name, table)?;
        let event = t.event.filter(|e| !e.trim().is_empty());
        if let Some(e) = &event {
            if event_type(e).is_none() {
                return Err(bad(
                    &format!("sources.{name}.event"),
                    format!(
                        "unknown event {e:?}; use employee_terminated or employee_unterminated"
                    ),
                ));
            }
        }
        Ok(Factorial {
            token: common::required_tokens(name, t.token, t.token_file, t.tokens)?,
            event,
        })
    }

    fn authenticate(&self, req: &Request<'_>) -> Result<(), SourceError> {
        if let Some(challenge) = header_str(req.headers, CHALLENGE) {
            if self
                .token
                .any(|t| common::ct_eq(challenge.as_bytes(), t.as_bytes()))
            {
                return Ok(());
            }
            return Err(SourceError::InvalidToken(format!(
                "{CHALLENGE} is not valid for this source"
            )));
        }
        if header_str(req.headers, "authorization").is_some() {
            return common::check_bearer(req.headers, &self.token);
        }
        Err(SourceError::MissingSignature(format!(
            "{CHALLENGE} (or Authorization: Bearer) header is missing"
        )))
    }
}

impl Source for Factorial {
    fn kind(&self) -> &'static str {
        "factorial"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        self.authenticate(req)?;
        common::require_media_type(req.headers, &["application/json"])?;
        let body = Value::Object(common::json_object(req.body)?);
        let from_query = req.query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "event")
                .map(|(_, v)| v.into_owned())
        });
        let named = common::text_at(&body, &[&["type"], &["event"]])
            .or(from_query)
            .or_else(|| self.event.clone());
        let Some(name) = named else {
            return Ok(Outcome::Ignored(
                "the delivery names no event: add ?event=employee_terminated to the webhook URL or set the source's `event`".into(),
            ));
        };
        let Some(kind) = event_type(&name) else {
            return Ok(Outcome::Ignored(format!(
                "Factorial event {name:?} does not concern offboarding"
            )));
        };
        let employee_id = common::text_at(&body, &[&["id"], &["employee_id"]]);
        let email = common::email(
            common::text_at(&body, &[&["email"], &["login_email"]]),
            "email",
        )?;
        common::require_identifier(&employee_id, &email, "give `id` or `email`")?;
        let name_text = match (
            common::text_at(&body, &[&["first_name"]]),
            common::text_at(&body, &[&["last_name"]]),
        ) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (f, l) => f.or(l),
        };
        let effective = match kind {
            EventType::Terminated => common::effective(
                common::text_at(&body, &[&["terminated_on"]]),
                "terminated_on",
            )?,
            _ => None,
        };
        Ok(Outcome::Events {
            events: vec![common::event(
                kind,
                &name,
                employee_id,
                email,
                name_text,
                effective,
                req.now,
            )],
            dedupe_key: common::body_hash_key(req.body),
        })
    }

    fn sign(&self, _body: &[u8], _now: jiff::Timestamp) -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), "application/json".into()),
            (
                CHALLENGE.into(),
                self.token.first().expose_secret().to_string(),
            ),
        ]
    }

    fn describe(&self) -> Value {
        json!({"kind": "factorial", "token": "[redacted]", "event": self.event})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;

    fn source(event: Option<&str>) -> Factorial {
        Factorial::from_table("f", json!({"token": "chal-1", "event": event})).unwrap()
    }

    const EMPLOYEE: &[u8] = br#"{"id":52,"first_name":"Bob","last_name":"Macri","email":"bob.macri@example.com","terminated_on":"2026-12-01"}"#;

    #[test]
    fn the_event_comes_from_the_body_then_the_query_then_the_source() {
        let from_query = events(
            receive_signed(
                &source(None),
                EMPLOYEE,
                now(),
                Some("event=employee_terminated"),
            )
            .unwrap(),
        );
        assert_eq!(from_query[0].kind, EventType::Terminated);
        assert_eq!(from_query[0].employee.employee_id.as_deref(), Some("52"));
        assert_eq!(
            from_query[0].effective.as_ref().unwrap().to_string(),
            "2026-12-01"
        );
        let from_source = events(
            receive_signed(
                &source(Some("employee_unterminated")),
                EMPLOYEE,
                now(),
                None,
            )
            .unwrap(),
        );
        assert_eq!(from_source[0].kind, EventType::TerminationCancelled);
        let body = br#"{"type":"Employees::Events::EmployeeTerminated","id":1}"#;
        let from_body = events(
            receive_signed(&source(Some("employee_unterminated")), body, now(), None).unwrap(),
        );
        assert_eq!(from_body[0].kind, EventType::Terminated);
        assert!(matches!(
            receive_signed(&source(None), EMPLOYEE, now(), None),
            Ok(Outcome::Ignored(_))
        ));
        assert!(
            Factorial::from_table("f", json!({"token": "t", "event": "employee_created"})).is_err()
        );
    }

    #[test]
    fn the_challenge_header_or_a_bearer_token_authenticates() {
        let h = |k: &str, v: &str| {
            headers(&[
                ("content-type".into(), "application/json".into()),
                (k.into(), v.into()),
            ])
        };
        let q = Some("event=employee_terminated");
        assert!(receive_with(
            &source(None),
            &h("authorization", "Bearer chal-1"),
            EMPLOYEE,
            now(),
            q
        )
        .is_ok());
        assert!(matches!(
            receive_with(&source(None), &h(CHALLENGE, "wrong"), EMPLOYEE, now(), q),
            Err(SourceError::InvalidToken(_))
        ));
        assert!(matches!(
            receive_with(&source(None), &headers(&[]), EMPLOYEE, now(), q),
            Err(SourceError::MissingSignature(_))
        ));
    }
}
