//! Kind `bamboohr`: BambooHR's webhooks (reference/hr-webhooks.md §1, §16.1).
//!
//! **Signature**: `X-BambooHR-Signature` = lowercase hex HMAC-SHA256, keyed with the webhook's
//! private key (its bytes as issued), over the raw body immediately followed by the raw
//! `X-BambooHR-Timestamp` value. The timestamp's format is unconfirmed: a replay window
//! (`tolerance`, 5 min) applies only when it parses as integer Unix seconds; any other value is
//! still covered by the signature.
//!
//! **Field-based deliveries** (`{"employees": [{"id", "action", "changedFields", "fields"}]}`,
//! several employees per delivery): each field's value may be `{"value": …}` or a plain string,
//! named by display name (`Employment Status`) or API alias (`employmentHistoryStatus`). An
//! employee is terminated when the employment status is one of `terminated_statuses`
//! (`["Terminated"]`, any case), or when `Status` is `Inactive` *with* a termination date —
//! `Inactive` alone is not a termination (future hires are inactive). The date is the effective
//! date (`0000-00-00` is no date). `Status` changed to `Active` is a rehire.
//!
//! **Event-based deliveries** (`{"type": "employee.updated", "data": {"employeeId",
//! "changedFields"}}`) carry field names only, never values: whether the status became
//! "terminated" cannot be told from them, so they are answered `200 ignored` with that reason
//! (use field-based webhooks with the status fields posted).
//!
//! No delivery id: the body's SHA-256 dedupes. BambooHR never retries a 4xx.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common;
use super::{Outcome, Request, Source, SourceError};
use crate::config::{bad, parse_duration, ConfigError, SecretKey};
use crate::domain::{Event, EventType};

const SIGNATURE: &str = "X-BambooHR-Signature";
const TIMESTAMP: &str = "X-BambooHR-Timestamp";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    secret: Option<SecretString>,
    secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::common::secret_list")]
    secrets: Option<Vec<SecretString>>,
    tolerance: Option<String>,
    terminated_statuses: Option<Vec<String>>,
}

#[derive(Debug)]
pub struct BambooHr {
    keys: Vec<SecretKey>,
    tolerance: Duration,
    terminated_statuses: Vec<String>,
}

const EMPLOYMENT_STATUS: &[&str] = &[
    "Employment Status",
    "employmentHistoryStatus",
    "employmentStatus",
];
const STATUS: &[&str] = &["Status", "status"];
const TERMINATION_DATE: &[&str] = &[
    "Termination Date",
    "terminationDate",
    "Employment Status: Date",
    "employmentHistoryStatusDate",
];
const WORK_EMAIL: &[&str] = &["Work Email", "workEmail", "Email", "email"];

impl BambooHr {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = super::registry::table(name, table)?;
        let tolerance = match &t.tolerance {
            Some(s) => {
                parse_duration(s).map_err(|e| bad(&format!("sources.{name}.tolerance"), e))?
            }
            None => Duration::from_secs(300),
        };
        let terminated_statuses = t
            .terminated_statuses
            .unwrap_or_else(|| vec!["Terminated".into()])
            .into_iter()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        if terminated_statuses.is_empty() {
            return Err(bad(
                &format!("sources.{name}.terminated_statuses"),
                "must name at least one employment status",
            ));
        }
        Ok(BambooHr {
            keys: common::signing_keys(name, t.secret, t.secret_file, t.secrets, common::raw_key)?,
            tolerance,
            terminated_statuses,
        })
    }

    fn verify(&self, req: &Request<'_>) -> Result<(), SourceError> {
        let sig = common::signature_header(req.headers, SIGNATURE)?;
        let ts = common::signature_header(req.headers, TIMESTAMP)?;
        let given = common::decode_signature(&sig, false).unwrap_or_default();
        let ok = common::any_key_matches(&self.keys, &given, |k| {
            common::hmac_sha256(k, &[req.body, ts.as_bytes()])
        });
        if !ok {
            return Err(SourceError::InvalidSignature(format!(
                "{SIGNATURE} does not match this body and {TIMESTAMP} with any configured secret"
            )));
        }
        if ts.parse::<i64>().is_ok() {
            super::standard::check_timestamp(&ts, req.now, self.tolerance)?;
        }
        Ok(())
    }

    fn employee(
        &self,
        e: &Value,
        now: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Result<Option<Event>, SourceError> {
        let Some(obj) = e.as_object() else {
            return Err(SourceError::Malformed(
                "each of `employees` must be an object".into(),
            ));
        };
        if obj
            .get("action")
            .and_then(Value::as_str)
            .is_some_and(|a| a.eq_ignore_ascii_case("deleted"))
        {
            return Ok(None);
        }
        let empty = Map::new();
        let fields = obj
            .get("fields")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let changed: Vec<String> = obj
            .get("changedFields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let get = |names: &[&str]| field(fields, names);
        let employment = get(EMPLOYMENT_STATUS).map(|s| s.to_lowercase());
        let status = get(STATUS).map(|s| s.to_lowercase());
        let date = common::effective(get(TERMINATION_DATE), "Termination Date")?;
        let terminated = employment
            .as_ref()
            .is_some_and(|s| self.terminated_statuses.contains(s))
            || (status.as_deref() == Some("inactive") && date.is_some());
        let status_changed = changed
            .iter()
            .any(|c| STATUS.contains(&c.as_str()) || EMPLOYMENT_STATUS.contains(&c.as_str()));
        let rehired = !terminated && status_changed && status.as_deref() == Some("active");
        if !terminated && !rehired {
            return Ok(None);
        }
        let employee_id = common::text_at(e, &[&["id"], &["employeeId"]])
            .or_else(|| get(&["Employee #", "employeeNumber"]));
        let email = common::email(get(WORK_EMAIL), "Work Email")?;
        common::require_identifier(&employee_id, &email, "give `id` or post Work Email")?;
        let name = match (
            get(&["First name", "firstName"]),
            get(&["Last name", "lastName"]),
        ) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (f, l) => f.or(l),
        };
        let occurred_at = obj
            .get("timestamp")
            .and_then(|t| common::vendor_time(t, tz))
            .unwrap_or(now);
        let (kind, sender_type, effective) = if terminated {
            (
                EventType::Terminated,
                "employee_with_fields.updated: terminated",
                date,
            )
        } else {
            (
                EventType::Rehired,
                "employee_with_fields.updated: active",
                None,
            )
        };
        Ok(Some(common::event(
            kind,
            sender_type,
            employee_id,
            email,
            name,
            effective,
            occurred_at,
        )))
    }
}

/// A posted field's value, `{"value": x}` or `x`, by any of its names.
fn field(fields: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        let v = fields.get(*n)?;
        let v = v.get("value").unwrap_or(v);
        common::scalar_text(v)
    })
}

impl Source for BambooHr {
    fn kind(&self) -> &'static str {
        "bamboohr"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        self.verify(req)?;
        common::require_media_type(req.headers, &["application/json"])?;
        let body = common::json_object(req.body)?;
        if let Some(kind) = body.get("type").and_then(Value::as_str) {
            return Ok(Outcome::Ignored(format!(
                "event-based BambooHR webhook {kind:?} names changed fields but not their values; \
                 use a field-based webhook that posts Status, Employment Status and Termination Date"
            )));
        }
        let Some(employees) = body.get("employees").and_then(Value::as_array) else {
            return Err(SourceError::Malformed(
                "expected `employees` (field-based) or `type` (event-based)".into(),
            ));
        };
        let mut events = Vec::new();
        for e in employees {
            if let Some(ev) = self.employee(e, req.now, req.timezone)? {
                events.push(ev);
            }
        }
        if events.is_empty() {
            return Ok(Outcome::Ignored(format!(
                "none of the {} employees in this delivery became terminated or active",
                employees.len()
            )));
        }
        Ok(Outcome::Events {
            events,
            dedupe_key: common::body_hash_key(req.body),
        })
    }

    fn sign(&self, body: &[u8], now: jiff::Timestamp) -> Vec<(String, String)> {
        let ts = now.as_second().to_string();
        let sig = hex::encode(common::hmac_sha256(
            self.keys[0].expose_secret(),
            &[body, ts.as_bytes()],
        ));
        vec![
            ("Content-Type".into(), "application/json".into()),
            (TIMESTAMP.into(), ts),
            (SIGNATURE.into(), sig),
        ]
    }

    fn describe(&self) -> Value {
        json!({"kind": "bamboohr", "secrets": vec!["[redacted]"; self.keys.len()],
            "tolerance": crate::cli::fmt_duration(self.tolerance), "terminated_statuses": self.terminated_statuses})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;

    fn source() -> BambooHr {
        BambooHr::from_table("b", json!({"secret": "123b929362d51613054f71e5e5d4bf2c"})).unwrap()
    }

    #[test]
    fn the_fusebit_fixture_verifies_as_body_then_timestamp() {
        let body = br#"{"employees":[{"changedFields":["First name"],"fields":{"Employee #":{"value":"300"},"First name":{"value":"Tefi"},"Last name":{"value":"Adams"}},"id":"5"}]}"#;
        let h = headers(&[
            ("content-type".into(), "application/json".into()),
            (TIMESTAMP.into(), "1658248023".into()),
            (
                SIGNATURE.into(),
                "56491dd9c2b352bc5f4fc627159aae20ddff9c8cb19f239a6de6771dc5310bac".into(),
            ),
        ]);
        let at = jiff::Timestamp::from_second(1_658_248_023).unwrap();
        // Authentic, and only a first-name change: ignored.
        assert!(matches!(
            receive_with(&source(), &h, body, at, None),
            Ok(Outcome::Ignored(_))
        ));
        // Five minutes later the replay window has closed.
        let later = jiff::Timestamp::from_second(1_658_248_023 + 301).unwrap();
        assert!(matches!(
            receive_with(&source(), &h, body, later, None),
            Err(SourceError::TimestampOutOfTolerance(_))
        ));
        let mut tampered = body.to_vec();
        tampered[20] ^= 1;
        assert!(matches!(
            receive_with(&source(), &h, &tampered, at, None),
            Err(SourceError::InvalidSignature(_))
        ));
    }

    #[test]
    fn a_non_integer_timestamp_is_signed_but_opens_no_replay_window() {
        let s = source();
        let body = br#"{"employees":[]}"#;
        let ts = "2026-05-21T14:00:00Z";
        let sig = hex::encode(common::hmac_sha256(
            b"123b929362d51613054f71e5e5d4bf2c",
            &[body, ts.as_bytes()],
        ));
        let h = headers(&[
            ("content-type".into(), "application/json".into()),
            (TIMESTAMP.into(), ts.into()),
            (SIGNATURE.into(), sig),
        ]);
        assert!(matches!(
            receive_with(&s, &h, body, now(), None),
            Ok(Outcome::Ignored(_))
        ));
    }

    #[test]
    fn terminated_status_in_either_field_shape_is_a_termination_with_its_date() {
        let body = json!({"employees": [
            {"id": "1042", "action": "Updated", "changedFields": ["Employment Status"],
             "fields": {"Employment Status": {"value": "Terminated"}, "Employment Status: Date": {"value": "2026-12-01"},
                        "Work Email": {"value": "jane.doe@example.com"}, "First name": "Jane", "Last name": "Doe"}},
            {"id": 7, "changedFields": ["status"], "fields": {"status": "Inactive", "terminationDate": "2026-12-02"}},
            {"id": "8", "changedFields": ["status"], "fields": {"status": "Inactive", "terminationDate": "0000-00-00"}},
            {"id": "9", "changedFields": ["Status"], "fields": {"Status": {"value": "Active"}}}
        ]});
        let e =
            events(receive_signed(&source(), body.to_string().as_bytes(), now(), None).unwrap());
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].kind, EventType::Terminated);
        assert_eq!(e[0].employee.employee_id.as_deref(), Some("1042"));
        assert_eq!(e[0].employee.email.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(e[0].name.as_deref(), Some("Jane Doe"));
        assert_eq!(e[0].effective.as_ref().unwrap().to_string(), "2026-12-01");
        assert_eq!(e[1].employee.employee_id.as_deref(), Some("7"));
        // Employee 8: Inactive without a date is a future hire, not a termination.
        assert_eq!(e[2].kind, EventType::Rehired);
        assert_eq!(e[2].employee.employee_id.as_deref(), Some("9"));
    }

    #[test]
    fn event_based_deliveries_and_other_changes_are_ignored_and_bad_shapes_refused() {
        let s = source();
        let ev = br#"{"type":"employee.updated","timestamp":"2026-01-31T18:42:00+0000","data":{"companyId":"1","employeeId":"5","changedFields":["status"]}}"#;
        assert!(
            matches!(receive_signed(&s, ev, now(), None), Ok(Outcome::Ignored(r)) if r.contains("field-based"))
        );
        for bad in [&b"[1]"[..], b"{}", b"not json"] {
            assert!(matches!(
                receive_signed(&s, bad, now(), None),
                Err(SourceError::Malformed(_))
            ));
        }
        let bad_date = br#"{"employees":[{"id":"1","fields":{"Employment Status":"Terminated","Termination Date":"2026-02-30"}}]}"#;
        assert!(matches!(
            receive_signed(&s, bad_date, now(), None),
            Err(SourceError::InvalidEvent(_))
        ));
    }

    #[test]
    fn configured_statuses_decide_what_terminated_means() {
        let s = BambooHr::from_table(
            "b",
            json!({"secret": "k", "terminated_statuses": ["Left", "Retired"]}),
        )
        .unwrap();
        let body = br#"{"employees":[{"id":"1","fields":{"Employment Status":"retired"}},{"id":"2","fields":{"Employment Status":"Terminated"}}]}"#;
        let e = events(receive_signed(&s, body, now(), None).unwrap());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].employee.employee_id.as_deref(), Some("1"));
    }
}
