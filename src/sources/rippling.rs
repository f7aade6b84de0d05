//! Kind `rippling`: Rippling partner webhooks (reference §4; every fact there is third-party).
//!
//! **Authentication**: a static `Authorization: Bearer <token>`; no HMAC is documented.
//! **Body**: `application/x-www-form-urlencoded` with `event_name`, `company_id`,
//! `company_primary_email` and `id` (the employee). Workflow Studio's "Trigger a Webhook" sends a
//! JSON body of the admin's own design, so JSON with the same field names (and optionally
//! `email`) is accepted too. `company_primary_email` is the company's address, never the
//! employee's, and is not used. `employee.terminated` and `employee.deleted` (access to the app
//! removed, including by termination) terminate; anything else is `200 ignored`. No delivery id:
//! the body's hash dedupes.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common;
use super::{Outcome, Request, Source, SourceError};
use crate::config::ConfigError;
use crate::domain::EventType;

const FORM: &str = "application/x-www-form-urlencoded";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::common::secret_list")]
    tokens: Option<Vec<SecretString>>,
}

#[derive(Debug)]
pub struct Rippling {
    token: common::Tokens,
}

impl Rippling {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = super::registry::table(name, table)?;
        Ok(Rippling {
            token: common::required_tokens(name, t.token, t.token_file, t.tokens)?,
        })
    }
}

impl Source for Rippling {
    fn kind(&self) -> &'static str {
        "rippling"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        common::check_bearer(req.headers, &self.token)?;
        common::require_media_type(req.headers, &[FORM, "application/json"])?;
        let fields: Map<String, Value> = if common::media_type(req.headers) == FORM {
            let text = std::str::from_utf8(req.body)
                .map_err(|_| SourceError::Malformed("the form is not UTF-8".into()))?;
            url::form_urlencoded::parse(text.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        } else {
            common::json_object(req.body)?
        };
        let body = Value::Object(fields);
        let Some(kind) = common::text_at(&body, &[&["event_name"], &["event"]]) else {
            return Err(SourceError::Malformed("`event_name` is missing".into()));
        };
        if kind != "employee.terminated" && kind != "employee.deleted" {
            return Ok(Outcome::Ignored(format!(
                "Rippling event {kind:?} does not concern offboarding"
            )));
        }
        let employee_id = common::text_at(&body, &[&["id"], &["employee_id"]]);
        let email = common::email(
            common::text_at(&body, &[&["email"], &["work_email"]]),
            "email",
        )?;
        common::require_identifier(&employee_id, &email, "give `id`")?;
        Ok(Outcome::Events {
            events: vec![common::event(
                EventType::Terminated,
                &kind,
                employee_id,
                email,
                None,
                None,
                req.now,
            )],
            dedupe_key: common::body_hash_key(req.body),
        })
    }

    fn sign(&self, _body: &[u8], _now: jiff::Timestamp) -> Vec<(String, String)> {
        vec![
            ("Content-Type".into(), FORM.into()),
            (
                "Authorization".into(),
                format!("Bearer {}", self.token.first().expose_secret()),
            ),
        ]
    }

    fn describe(&self) -> Value {
        json!({"kind": "rippling", "token": "[redacted]"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;

    fn source() -> Rippling {
        Rippling::from_table("r", json!({"token": "rip-tok"})).unwrap()
    }

    #[test]
    fn a_form_encoded_termination_or_deletion_names_the_employee() {
        for kind in ["employee.terminated", "employee.deleted"] {
            let body = format!(
                "event_name={kind}&company_id=c1&company_primary_email=hr%40acme.example&id=emp-77"
            );
            let e = events(receive_signed(&source(), body.as_bytes(), now(), None).unwrap());
            assert_eq!(e[0].employee.employee_id.as_deref(), Some("emp-77"));
            assert_eq!(
                e[0].employee.email, None,
                "the company's address is not the employee's"
            );
        }
        let other = b"event_name=employee.updated&id=1";
        assert!(matches!(
            receive_signed(&source(), other, now(), None),
            Ok(Outcome::Ignored(_))
        ));
    }

    #[test]
    fn json_from_workflow_studio_and_a_wrong_token_or_type() {
        let h = |tok: &str, ct: &str| {
            headers(&[
                ("content-type".into(), ct.into()),
                ("authorization".into(), format!("Bearer {tok}")),
            ])
        };
        let json_body = br#"{"event_name":"employee.terminated","email":"jane.doe@example.com"}"#;
        let e = events(
            receive_with(
                &source(),
                &h("rip-tok", "application/json"),
                json_body,
                now(),
                None,
            )
            .unwrap(),
        );
        assert_eq!(e[0].employee.email.as_deref(), Some("jane.doe@example.com"));
        assert!(matches!(
            receive_with(&source(), &h("nope", FORM), b"id=1", now(), None),
            Err(SourceError::InvalidToken(_))
        ));
        assert!(matches!(
            receive_with(&source(), &h("rip-tok", "text/plain"), b"id=1", now(), None),
            Err(SourceError::UnsupportedMediaType(_))
        ));
    }
}
