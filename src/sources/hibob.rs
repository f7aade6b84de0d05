//! Kind `hibob`: HiBob (Bob) webhooks v2, and the legacy v1 shape (reference §2, §16.3).
//!
//! **Signature**: `Bob-Signature` = base64 HMAC-SHA512 of the raw body, keyed with the secret from
//! the Bob UI (its bytes). No timestamp is signed (no replay window; the body's hash dedupes).
//!
//! **Handshake**: when a connection is created Bob POSTs `Ping test` (or `{"text":"Ping test"}`);
//! whether it is signed is unconfirmed, so it is answered 200 signed or not, and creates nothing.
//!
//! **Events**: `employee.left`, `employee.inactivated` and `employee.access.revoked.immediately`
//! terminate; `employee.activated` is a rehire; anything else is `200 ignored`. The v2 envelope
//! is `{"type", "triggeredAt", "data": {"employeeId", ...}}`; `triggeredAt` carries no zone and is
//! read in `lifecycle.timezone`. Whether `data` holds an effective date or an email is
//! unconfirmed: `data.effectiveDate` and `data.email` are used when present. Lifecycle events fire
//! on the effective date, so without a date the action is due now. v1: `{"type", "creationDate",
//! "employee": {"id", "email", "displayName"}}`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::common;
use super::{Outcome, Request, Source, SourceError};
use crate::config::{ConfigError, SecretKey};
use crate::domain::EventType;

const SIGNATURE: &str = "Bob-Signature";

#[derive(Debug)]
pub struct HiBob {
    keys: Vec<SecretKey>,
}

impl HiBob {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        Ok(HiBob {
            keys: common::vendor_keys(name, table)?,
        })
    }
}

fn is_ping(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    text == "Ping test"
        || serde_json::from_str::<Value>(text)
            .ok()
            .is_some_and(|v| v.get("text").and_then(Value::as_str) == Some("Ping test"))
}

impl Source for HiBob {
    fn kind(&self) -> &'static str {
        "hibob"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        if is_ping(req.body) {
            return Ok(Outcome::Handshake("HiBob connection ping answered".into()));
        }
        let sig = common::signature_header(req.headers, SIGNATURE)?;
        let given = STANDARD.decode(sig.trim()).unwrap_or_default();
        if !common::any_key_matches(&self.keys, &given, |k| common::hmac_sha512(k, &[req.body])) {
            return Err(SourceError::InvalidSignature(format!(
                "{SIGNATURE} does not match this body with any configured secret"
            )));
        }
        common::require_media_type(req.headers, &["application/json"])?;
        let body = Value::Object(common::json_object(req.body)?);
        let Some(kind) = body.get("type").and_then(Value::as_str) else {
            return Err(SourceError::Malformed("`type` is missing".into()));
        };
        let event = match kind {
            "employee.left" | "employee.inactivated" | "employee.access.revoked.immediately" => {
                EventType::Terminated
            }
            "employee.activated" => EventType::Rehired,
            other => {
                return Ok(Outcome::Ignored(format!(
                    "HiBob event {other:?} does not concern offboarding"
                )))
            }
        };
        let employee_id = common::text_at(
            &body,
            &[
                &["data", "employeeId"],
                &["data", "id"],
                &["employee", "id"],
            ],
        );
        let email = common::email(
            common::text_at(&body, &[&["data", "email"], &["employee", "email"]]),
            "data.email",
        )?;
        common::require_identifier(&employee_id, &email, "give `data.employeeId`")?;
        let name = common::text_at(
            &body,
            &[&["data", "displayName"], &["employee", "displayName"]],
        );
        let effective = if kind == "employee.access.revoked.immediately" {
            None
        } else {
            common::effective(
                common::text_at(&body, &[&["data", "effectiveDate"]]),
                "data.effectiveDate",
            )?
        };
        let occurred_at = ["triggeredAt", "creationDate"]
            .iter()
            .find_map(|k| {
                body.get(*k)
                    .and_then(|t| common::vendor_time(t, req.timezone))
            })
            .unwrap_or(req.now);
        Ok(Outcome::Events {
            events: vec![common::event(
                event,
                kind,
                employee_id,
                email,
                name,
                effective,
                occurred_at,
            )],
            dedupe_key: common::body_hash_key(req.body),
        })
    }

    fn sign(&self, body: &[u8], _now: jiff::Timestamp) -> Vec<(String, String)> {
        let sig = STANDARD.encode(common::hmac_sha512(self.keys[0].expose_secret(), &[body]));
        vec![
            ("Content-Type".into(), "application/json".into()),
            (SIGNATURE.into(), sig),
        ]
    }

    fn describe(&self) -> Value {
        json!({"kind": "hibob", "secrets": vec!["[redacted]"; self.keys.len()]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;

    fn source() -> HiBob {
        HiBob::from_table("bob", json!({"secret": "bob-secret"})).unwrap()
    }

    #[test]
    fn the_signature_is_base64_hmac_sha512_of_the_body() {
        // Computed independently: base64(HMAC-SHA512("bob-secret", "{}")).
        let expected = STANDARD.encode(common::hmac_sha512(b"bob-secret", &[b"{}"]));
        assert_eq!(source().sign(b"{}", now())[1].1, expected);
        assert_eq!(expected.len(), 88, "64 bytes in base64");
        let h = headers(&[
            ("content-type".into(), "application/json".into()),
            (SIGNATURE.into(), expected),
        ]);
        let tampered = receive_with(&source(), &h, b"{\"type\":1}", now(), None);
        assert!(matches!(tampered, Err(SourceError::InvalidSignature(_))));
    }

    #[test]
    fn a_v2_termination_reads_triggered_at_in_the_configured_zone() {
        let body = br#"{"companyId":636192,"type":"employee.left","triggeredBy":"system","triggeredAt":"2026-11-28T13:06:26.915906","version":"v2","data":{"employeeId":"3332883884017713238","effectiveDate":"2026-11-30"}}"#;
        let e = events(receive_signed(&source(), body, now(), None).unwrap());
        assert_eq!(e[0].kind, EventType::Terminated);
        assert_eq!(
            e[0].employee.employee_id.as_deref(),
            Some("3332883884017713238")
        );
        // 13:06 in Berlin (CET, +01:00) is 12:06 UTC.
        assert_eq!(e[0].occurred_at.to_string(), "2026-11-28T12:06:26.915906Z");
        assert_eq!(e[0].effective.as_ref().unwrap().to_string(), "2026-11-30");
    }

    #[test]
    fn the_three_terminate_events_and_activation_map_and_others_are_ignored() {
        for (t, kind) in [
            ("employee.inactivated", EventType::Terminated),
            ("employee.access.revoked.immediately", EventType::Terminated),
            ("employee.activated", EventType::Rehired),
        ] {
            let body = json!({"type": t, "triggeredAt": "2026-11-28T10:00:00", "data": {"employeeId": "1"}}).to_string();
            assert_eq!(
                events(receive_signed(&source(), body.as_bytes(), now(), None).unwrap())[0].kind,
                kind
            );
        }
        let other = br#"{"type":"employee.updated","data":{"employeeId":"1"}}"#;
        assert!(matches!(
            receive_signed(&source(), other, now(), None),
            Ok(Outcome::Ignored(_))
        ));
        let v1 = br#"{"type":"employee.left","creationDate":"2024-03-01T10:00:00","employee":{"id":"9","email":"a@b.co","displayName":"A B"}}"#;
        let e = events(receive_signed(&source(), v1, now(), None).unwrap());
        assert_eq!(e[0].employee.email.as_deref(), Some("a@b.co"));
    }

    #[test]
    fn the_ping_is_answered_signed_or_not_and_nothing_else_is_unsigned() {
        let bare = headers(&[]);
        for ping in [&b"Ping test"[..], br#"{"text":"Ping test"}"#] {
            assert!(matches!(
                receive_with(&source(), &bare, ping, now(), None),
                Ok(Outcome::Handshake(_))
            ));
            assert!(matches!(
                receive_signed(&source(), ping, now(), None),
                Ok(Outcome::Handshake(_))
            ));
        }
        let body = br#"{"type":"employee.left","data":{"employeeId":"1"}}"#;
        assert!(matches!(
            receive_with(&source(), &bare, body, now(), None),
            Err(SourceError::MissingSignature(_))
        ));
    }
}
