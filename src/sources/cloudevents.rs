//! Kind `cloudevents`: CloudEvents 1.0 over HTTP (reference §12), for middleware and event
//! brokers (SAP Event Hub, Workday Event Broker bridges, iPaaS flows).
//!
//! **Authentication**: `Authorization: Bearer <token>` (the CloudEvents webhook spec's scheme).
//! **Modes**: *structured* (`Content-Type: application/cloudevents+json`: every attribute in the
//! JSON body, `data` an object) and *binary* (attributes as percent-encoded `ce-*` headers, the
//! body is `data` as `application/json`). *Batched* mode is refused with 415, as the spec allows
//! for a receiver that did not ask for it. Required: `specversion` `1.0`, `id`, `source`, `type`.
//! `time` (RFC 3339) orders events; without it the receipt time does. Dedupe on `source` + `id`.
//!
//! **Types**: those of SPEC §4.1 (`employee.terminated`, `employee.termination_cancelled`,
//! `employee.rehired`) and the vendors' names of effective events (`employee.left`,
//! `employee.inactivated`, `employee.access.revoked.immediately`, `employee.termination_effective`,
//! `employee.terminated_effective`, `employment.terminated`, `contract.terminated`,
//! `employee_terminated` terminate; `employee_unterminated` cancels; `employee.rehire_effective`,
//! `employee.activated` rehire), each optionally behind a reverse-DNS prefix
//! (`com.example.hr.employee.terminated`). `data` is the `data` object of SPEC §4.1.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common;
use super::{Outcome, Request, Source, SourceError};
use crate::config::ConfigError;
use crate::domain::{parse_rfc3339, EventType};
use crate::intake::data::parse_data;

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::common::secret_list")]
    tokens: Option<Vec<SecretString>>,
}

#[derive(Debug)]
pub struct CloudEvents {
    token: common::Tokens,
}

/// Offboard's meaning of a CloudEvents `type`.
fn event_type(t: &str) -> Option<EventType> {
    const TERMINATED: &[&str] = &[
        "employee.terminated",
        "employee.left",
        "employee.inactivated",
        "employee.access.revoked.immediately",
        "employee.termination_effective",
        "employee.terminated_effective",
        "employment.terminated",
        "contract.terminated",
        "employee_terminated",
    ];
    const CANCELLED: &[&str] = &["employee.termination_cancelled", "employee_unterminated"];
    const REHIRED: &[&str] = &[
        "employee.rehired",
        "employee.rehire_effective",
        "employee.activated",
    ];
    let ends = |names: &[&str]| {
        names
            .iter()
            .any(|n| t == *n || t.ends_with(&format!(".{n}")))
    };
    if ends(TERMINATED) {
        Some(EventType::Terminated)
    } else if ends(CANCELLED) {
        Some(EventType::TerminationCancelled)
    } else if ends(REHIRED) {
        Some(EventType::Rehired)
    } else {
        None
    }
}

impl CloudEvents {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = super::registry::table(name, table)?;
        Ok(CloudEvents {
            token: common::required_tokens(name, t.token, t.token_file, t.tokens)?,
        })
    }

    /// The attributes and `data` of the event, in either mode.
    fn attributes(&self, req: &Request<'_>) -> Result<(Map<String, Value>, Value), SourceError> {
        let media = common::media_type(req.headers);
        if media == BATCH {
            return Err(SourceError::UnsupportedMediaType(
                "batched CloudEvents are not accepted; send one event per request".into(),
            ));
        }
        if media == STRUCTURED {
            let mut body = common::json_object(req.body)?;
            let data = body.remove("data").unwrap_or(Value::Null);
            return Ok((body, data));
        }
        common::require_media_type(req.headers, &["application/json", STRUCTURED])?;
        let mut attrs = Map::new();
        for (name, value) in req.headers {
            let Some(attr) = name.as_str().strip_prefix("ce-") else {
                continue;
            };
            let raw = value
                .to_str()
                .map_err(|_| SourceError::Malformed(format!("header {name} is not text")))?;
            let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| {
                SourceError::Malformed(format!("header {name} is not UTF-8 once decoded"))
            })?;
            attrs.insert(attr.to_string(), Value::String(decoded.into_owned()));
        }
        let data: Value = serde_json::from_slice(req.body)
            .map_err(|e| SourceError::Malformed(format!("body is not JSON: {e}")))?;
        Ok((attrs, data))
    }
}

impl Source for CloudEvents {
    fn kind(&self) -> &'static str {
        "cloudevents"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        common::check_bearer(req.headers, &self.token)?;
        let (attrs, data) = self.attributes(req)?;
        let attr = |k: &str| {
            attrs
                .get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        match attr("specversion") {
            Some("1.0") => {}
            Some(v) => {
                return Err(SourceError::Malformed(format!(
                    "specversion {v:?} is not supported; send 1.0"
                )))
            }
            None => {
                return Err(SourceError::Malformed(
                    "the `specversion` attribute is missing".into(),
                ))
            }
        }
        let (Some(id), Some(source), Some(t)) = (attr("id"), attr("source"), attr("type")) else {
            return Err(SourceError::Malformed(
                "the `id`, `source` and `type` attributes are required".into(),
            ));
        };
        let Some(kind) = event_type(t) else {
            return Ok(Outcome::Ignored(format!(
                "CloudEvents type {t:?} does not concern offboarding"
            )));
        };
        let Value::Object(data) = data else {
            return Err(SourceError::Malformed(
                "`data` must be a JSON object".into(),
            ));
        };
        let fields = parse_data(&data)?;
        let occurred_at = match attr("time") {
            None => req.now,
            Some(s) => parse_rfc3339(s).ok_or_else(|| {
                SourceError::InvalidEvent(format!("`time` {s:?} is not an RFC 3339 date-time"))
            })?,
        };
        let event = common::event(
            kind,
            t,
            fields.employee.employee_id,
            fields.employee.email,
            fields.name,
            fields.effective,
            occurred_at,
        );
        Ok(Outcome::Events {
            events: vec![event],
            dedupe_key: format!("ce:{source}\n{id}"),
        })
    }

    fn sign(&self, body: &[u8], _now: jiff::Timestamp) -> Vec<(String, String)> {
        // Structured mode when the body is a CloudEvent, binary mode with generated attributes
        // when it is only the `data` object.
        let structured = serde_json::from_slice::<Value>(body)
            .ok()
            .is_some_and(|v| v.get("specversion").is_some());
        let mut headers = vec![(
            "Authorization".to_string(),
            format!("Bearer {}", self.token.first().expose_secret()),
        )];
        if structured {
            headers.push((
                "Content-Type".into(),
                format!("{STRUCTURED}; charset=utf-8"),
            ));
        } else {
            headers.push(("Content-Type".into(), "application/json".into()));
            headers.push(("ce-specversion".into(), "1.0".into()));
            headers.push(("ce-id".into(), crate::domain::new_id("evt")));
            headers.push(("ce-source".into(), "offboard-sign".into()));
            headers.push(("ce-type".into(), "employee.terminated".into()));
        }
        headers
    }

    fn describe(&self) -> Value {
        json!({"kind": "cloudevents", "token": "[redacted]"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::common::test_support::*;

    fn source() -> CloudEvents {
        CloudEvents::from_table("ce", json!({"token": "ce-tok"})).unwrap()
    }

    fn auth(extra: &[(&str, &str)]) -> axum::http::HeaderMap {
        let mut pairs = vec![("authorization".to_string(), "Bearer ce-tok".to_string())];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        headers(&pairs)
    }

    #[test]
    fn structured_mode_reads_attributes_and_data_and_dedupes_on_source_and_id() {
        let body = br#"{"specversion":"1.0","id":"e-1","source":"/hr/workday","type":"com.acme.hr.employee.terminated",
            "time":"2026-11-28T14:03:00Z","data":{"employee_id":"E-1042","effective_at":"2026-12-01"}}"#;
        let h = auth(&[(
            "content-type",
            "application/cloudevents+json; charset=UTF-8",
        )]);
        let Outcome::Events { events, dedupe_key } =
            receive_with(&source(), &h, body, now(), None).unwrap()
        else {
            panic!()
        };
        assert_eq!(events[0].kind, EventType::Terminated);
        assert_eq!(events[0].employee.employee_id.as_deref(), Some("E-1042"));
        assert_eq!(events[0].occurred_at.to_string(), "2026-11-28T14:03:00Z");
        assert_eq!(dedupe_key, "ce:/hr/workday\ne-1");
    }

    #[test]
    fn binary_mode_reads_percent_encoded_headers() {
        let h = auth(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "b%20-2"),
            ("ce-source", "urn:hr"),
            ("ce-type", "employee_unterminated"),
        ]);
        let Outcome::Events { events, dedupe_key } = receive_with(
            &source(),
            &h,
            br#"{"email":"jane.doe@example.com"}"#,
            now(),
            None,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(events[0].kind, EventType::TerminationCancelled);
        assert_eq!(dedupe_key, "ce:urn:hr\nb -2");
        let bad_utf8 = auth(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "%FF"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]);
        assert!(matches!(
            receive_with(&source(), &bad_utf8, b"{}", now(), None),
            Err(SourceError::Malformed(_))
        ));
    }

    #[test]
    fn wrong_versions_missing_attributes_batches_and_other_types() {
        let h = auth(&[("content-type", STRUCTURED)]);
        for body in [&br#"{"specversion":"0.3","id":"1","source":"s","type":"employee.terminated","data":{}}"#[..], br#"{"id":"1","source":"s","type":"x"}"#, br#"{"specversion":"1.0","source":"s","type":"x"}"#] {
            assert!(matches!(receive_with(&source(), &h, body, now(), None), Err(SourceError::Malformed(_))));
        }
        let other =
            br#"{"specversion":"1.0","id":"1","source":"s","type":"employee.created","data":{}}"#;
        assert!(matches!(
            receive_with(&source(), &h, other, now(), None),
            Ok(Outcome::Ignored(_))
        ));
        let batch = auth(&[("content-type", BATCH)]);
        assert!(matches!(
            receive_with(&source(), &batch, b"[]", now(), None),
            Err(SourceError::UnsupportedMediaType(_))
        ));
        let no_token = headers(&[("content-type".into(), STRUCTURED.into())]);
        assert!(matches!(
            receive_with(&source(), &no_token, other, now(), None),
            Err(SourceError::MissingSignature(_))
        ));
    }
}
