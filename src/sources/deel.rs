//! Kind `deel`: Deel webhooks (reference §6, §16.5).
//!
//! **Signature**: `x-deel-signature` = hex HMAC-SHA256 of the literal `POST` followed by the raw
//! body, keyed with the webhook's signing key (its bytes). No timestamp is signed.
//!
//! **Events**: `contract.terminated` (a termination completed; `data.resource.completion_date` is
//! its date) terminates; everything else is `200 ignored` — Deel disables an endpoint after 10
//! consecutive failures, so an authentic delivery is never answered 4xx for its type. The employee
//! is the worker when the resource names one (`worker.id`, `worker_id`, `employee_id`), else the
//! contract (`id`): put the same id in Workfront's `extRefID`. The email, when present, comes from
//! `worker.email`, `worker_email` or `email`. Dedupe on `data.meta.tracking_id` (unconfirmed as
//! unique, but stable across redeliveries), else the body's hash.

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common;
use super::{Outcome, Request, Source, SourceError};
use crate::config::{ConfigError, SecretKey};
use crate::domain::EventType;

const SIGNATURE: &str = "x-deel-signature";

#[derive(Debug)]
pub struct Deel {
    keys: Vec<SecretKey>,
}

impl Deel {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        Ok(Deel {
            keys: common::vendor_keys(name, table)?,
        })
    }
}

impl Source for Deel {
    fn kind(&self) -> &'static str {
        "deel"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        let sig = common::signature_header(req.headers, SIGNATURE)?;
        let given = common::decode_signature(&sig, false).unwrap_or_default();
        if !common::any_key_matches(&self.keys, &given, |k| {
            common::hmac_sha256(k, &[b"POST", req.body])
        }) {
            return Err(SourceError::InvalidSignature(format!(
                "{SIGNATURE} does not match \"POST\" + this body with any configured secret"
            )));
        }
        common::require_media_type(req.headers, &["application/json"])?;
        let body = Value::Object(common::json_object(req.body)?);
        let Some(kind) = common::text_at(&body, &[&["data", "meta", "event_type"]]) else {
            return Err(SourceError::Malformed(
                "`data.meta.event_type` is missing".into(),
            ));
        };
        if kind != "contract.terminated" {
            return Ok(Outcome::Ignored(format!(
                "Deel event {kind:?} does not concern offboarding"
            )));
        }
        let r = body
            .pointer("/data/resource")
            .cloned()
            .unwrap_or(Value::Null);
        let employee_id = common::text_at(
            &r,
            &[&["worker", "id"], &["worker_id"], &["employee_id"], &["id"]],
        );
        let email = common::email(
            common::text_at(&r, &[&["worker", "email"], &["worker_email"], &["email"]]),
            "data.resource.worker.email",
        )?;
        common::require_identifier(&employee_id, &email, "give `data.resource.id`")?;
        let name = common::text_at(&r, &[&["worker", "full_name"], &["worker_name"]]);
        let effective = common::effective(
            common::text_at(&r, &[&["completion_date"]]),
            "data.resource.completion_date",
        )?;
        let occurred_at = body
            .get("timestamp")
            .and_then(|t| common::vendor_time(t, req.timezone))
            .unwrap_or(req.now);
        let dedupe_key = match common::text_at(&body, &[&["data", "meta", "tracking_id"]]) {
            Some(t) => format!("id:{t}"),
            None => common::body_hash_key(req.body),
        };
        Ok(Outcome::Events {
            events: vec![common::event(
                EventType::Terminated,
                &kind,
                employee_id,
                email,
                name,
                effective,
                occurred_at,
            )],
            dedupe_key,
        })
    }

    fn sign(&self, body: &[u8], _now: jiff::Timestamp) -> Vec<(String, String)> {
        let sig = hex::encode(common::hmac_sha256(
            self.keys[0].expose_secret(),
            &[b"POST", body],
        ));
        vec![
            ("Content-Type".into(), "application/json".into()),
            (SIGNATURE.into(), sig),
        ]
    }

    fn describe(&self) -> Value {
        json!({"kind": "deel", "secrets": vec!["[redacted]"; self.keys.len()]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;

    fn source() -> Deel {
        Deel::from_table("d", json!({"secret": "deel-key"})).unwrap()
    }

    const BODY: &[u8] = br#"{"data":{"meta":{"event_type":"contract.terminated","event_type_id":"1","organization_id":"o","organization_name":"Acme","tracking_id":"trk-1"},"resource":{"id":"c-9","completion_date":"2026-12-01","worker":{"id":"w-5","email":"jane.doe@example.com"}}},"timestamp":"2026-11-28T14:03:00.000Z"}"#;

    #[test]
    fn the_signature_covers_post_then_the_body() {
        let with_post = hex::encode(common::hmac_sha256(b"deel-key", &[b"POST", BODY]));
        let body_only = hex::encode(common::hmac_sha256(b"deel-key", &[BODY]));
        let h = |sig: &str| {
            headers(&[
                ("content-type".into(), "application/json".into()),
                (SIGNATURE.into(), sig.into()),
            ])
        };
        assert!(receive_with(&source(), &h(&with_post), BODY, now(), None).is_ok());
        assert!(matches!(
            receive_with(&source(), &h(&body_only), BODY, now(), None),
            Err(SourceError::InvalidSignature(_))
        ));
    }

    #[test]
    fn a_contract_termination_names_the_worker_its_date_and_dedupes_on_tracking_id() {
        let Outcome::Events { events, dedupe_key } =
            receive_signed(&source(), BODY, now(), None).unwrap()
        else {
            panic!()
        };
        assert_eq!(events[0].employee.employee_id.as_deref(), Some("w-5"));
        assert_eq!(
            events[0].employee.email.as_deref(),
            Some("jane.doe@example.com")
        );
        assert_eq!(
            events[0].effective.as_ref().unwrap().to_string(),
            "2026-12-01"
        );
        assert_eq!(dedupe_key, "id:trk-1");
        let other =
            br#"{"data":{"meta":{"event_type":"contract.status.updated"},"resource":{"id":"c"}}}"#;
        assert!(matches!(
            receive_signed(&source(), other, now(), None),
            Ok(Outcome::Ignored(_))
        ));
    }
}
