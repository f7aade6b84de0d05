//! Kind `gusto`: Gusto webhooks (reference §3, §16.2).
//!
//! **Handshake**: the first POST of a subscription is `{"verification_token": "..."}`; it is
//! answered 200 and logged with the token masked (the token is also the signing secret: put it
//! in `secret`, then verify the subscription with Gusto's `PUT /v1/webhook_subscriptions/{uuid}/verify`).
//!
//! **Signature**: `X-Gusto-Signature` = HMAC-SHA256 of the raw body keyed with the verification
//! token. Its encoding is unconfirmed: lowercase hex (every public implementation) and base64 are
//! both accepted. No timestamp is signed; dedupe on the event's `uuid`.
//!
//! **Events** (thin: ids only): the *effective* events act — `employee.termination_effective` and
//! `employee.terminated_effective` (both spellings exist in Gusto's docs) terminate, due now;
//! `employee.rehire_effective` is a rehire; `employee.termination_cancelled` cancels. The
//! *recorded* events `employee.terminated` and `employee.rehired` (a termination or rehire was
//! entered, effective later) and `employee.rehire_cancelled` are `200 ignored` with that reason:
//! acting on them would deactivate people before their last day. The employee id is
//! `entity_uuid` (or the older numeric `entity_id`); `timestamp` is Unix seconds.

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common;
use super::{Outcome, Request, Source, SourceError};
use crate::config::{ConfigError, SecretKey};
use crate::domain::EventType;

const SIGNATURE: &str = "X-Gusto-Signature";

#[derive(Debug)]
pub struct Gusto {
    keys: Vec<SecretKey>,
}

impl Gusto {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        Ok(Gusto {
            keys: common::vendor_keys(name, table)?,
        })
    }
}

impl Source for Gusto {
    fn kind(&self) -> &'static str {
        "gusto"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(req.body) {
            if let (1, Some(Value::String(token))) = (o.len(), o.get("verification_token")) {
                return Ok(Outcome::Handshake(format!(
                    "Gusto verification token {} received: set it as this source's secret and verify the subscription",
                    common::masked(token)
                )));
            }
        }
        let sig = common::signature_header(req.headers, SIGNATURE)?;
        let given = common::decode_signature(&sig, true).unwrap_or_default();
        if !common::any_key_matches(&self.keys, &given, |k| common::hmac_sha256(k, &[req.body])) {
            return Err(SourceError::InvalidSignature(format!(
                "{SIGNATURE} does not match this body with any configured secret"
            )));
        }
        common::require_media_type(req.headers, &["application/json"])?;
        let body = Value::Object(common::json_object(req.body)?);
        let Some(kind) = body.get("event_type").and_then(Value::as_str) else {
            return Err(SourceError::Malformed("`event_type` is missing".into()));
        };
        let event = match kind {
            "employee.termination_effective" | "employee.terminated_effective" => EventType::Terminated,
            "employee.termination_cancelled" => EventType::TerminationCancelled,
            "employee.rehire_effective" => EventType::Rehired,
            "employee.terminated" | "employee.rehired" => {
                return Ok(Outcome::Ignored(format!(
                    "{kind} records a change that takes effect later; offboard acts on the matching *_effective event"
                )))
            }
            other => {
                return Ok(Outcome::Ignored(format!(
                    "Gusto event {other:?} does not concern offboarding"
                )))
            }
        };
        let employee_id = common::text_at(&body, &[&["entity_uuid"], &["entity_id"]]);
        common::require_identifier(&employee_id, &None, "give `entity_uuid`")?;
        let occurred_at = body
            .get("timestamp")
            .and_then(|t| common::vendor_time(t, req.timezone))
            .unwrap_or(req.now);
        let dedupe_key = match common::text_at(&body, &[&["uuid"]]) {
            Some(uuid) => format!("id:{uuid}"),
            None => common::body_hash_key(req.body),
        };
        Ok(Outcome::Events {
            events: vec![common::event(
                event,
                kind,
                employee_id,
                None,
                None,
                None,
                occurred_at,
            )],
            dedupe_key,
        })
    }

    fn sign(&self, body: &[u8], _now: jiff::Timestamp) -> Vec<(String, String)> {
        let sig = hex::encode(common::hmac_sha256(self.keys[0].expose_secret(), &[body]));
        vec![
            ("Content-Type".into(), "application/json".into()),
            (SIGNATURE.into(), sig),
        ]
    }

    fn describe(&self) -> Value {
        json!({"kind": "gusto", "secrets": vec!["[redacted]"; self.keys.len()]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;
    use base64::Engine;

    fn source() -> Gusto {
        Gusto::from_table("g", json!({"secret": "gusto-token"})).unwrap()
    }

    fn body(kind: &str) -> String {
        json!({"uuid": "03ffbf0c-0000-4000-8000-000000000001", "event_type": kind, "resource_type": "Company",
            "resource_uuid": "c1", "entity_type": "Employee", "entity_uuid": "e-uuid-1", "timestamp": 1_764_330_000})
        .to_string()
    }

    #[test]
    fn both_spellings_of_the_effective_termination_terminate_and_dedupe_on_uuid() {
        for kind in [
            "employee.termination_effective",
            "employee.terminated_effective",
        ] {
            let out = receive_signed(&source(), body(kind).as_bytes(), now(), None).unwrap();
            let Outcome::Events { events, dedupe_key } = out else {
                panic!()
            };
            assert_eq!(events[0].kind, EventType::Terminated);
            assert_eq!(events[0].employee.employee_id.as_deref(), Some("e-uuid-1"));
            assert_eq!(events[0].occurred_at.as_second(), 1_764_330_000);
            assert_eq!(dedupe_key, "id:03ffbf0c-0000-4000-8000-000000000001");
        }
    }

    #[test]
    fn recorded_events_are_ignored_and_cancel_and_rehire_effective_map() {
        for kind in [
            "employee.terminated",
            "employee.rehired",
            "employee.rehire_cancelled",
            "employee.updated",
        ] {
            assert!(
                matches!(
                    receive_signed(&source(), body(kind).as_bytes(), now(), None),
                    Ok(Outcome::Ignored(_))
                ),
                "{kind}"
            );
        }
        let c = events(
            receive_signed(
                &source(),
                body("employee.termination_cancelled").as_bytes(),
                now(),
                None,
            )
            .unwrap(),
        );
        assert_eq!(c[0].kind, EventType::TerminationCancelled);
        let r = events(
            receive_signed(
                &source(),
                body("employee.rehire_effective").as_bytes(),
                now(),
                None,
            )
            .unwrap(),
        );
        assert_eq!(r[0].kind, EventType::Rehired);
    }

    #[test]
    fn hex_in_any_case_and_base64_signatures_pass_and_a_wrong_one_fails() {
        let b = body("employee.termination_effective");
        let mac = common::hmac_sha256(b"gusto-token", &[b.as_bytes()]);
        for sig in [
            hex::encode(&mac),
            hex::encode_upper(&mac),
            base64::engine::general_purpose::STANDARD.encode(&mac),
        ] {
            let h = headers(&[
                ("content-type".into(), "application/json".into()),
                (SIGNATURE.into(), sig),
            ]);
            assert!(receive_with(&source(), &h, b.as_bytes(), now(), None).is_ok());
        }
        let h = headers(&[
            ("content-type".into(), "application/json".into()),
            (SIGNATURE.into(), hex::encode([0u8; 32])),
        ]);
        assert!(matches!(
            receive_with(&source(), &h, b.as_bytes(), now(), None),
            Err(SourceError::InvalidSignature(_))
        ));
    }

    #[test]
    fn the_verification_token_is_a_handshake_with_the_token_masked() {
        let out = receive_with(
            &source(),
            &headers(&[]),
            br#"{"verification_token":"asecrettoken123"}"#,
            now(),
            None,
        )
        .unwrap();
        let Outcome::Handshake(text) = out else {
            panic!("{out:?}")
        };
        assert!(
            text.contains("asec***") && !text.contains("asecrettoken123"),
            "{text}"
        );
    }
}
