//! Kind `standard`: the vendor-neutral body of SPEC §4.1.
//!
//! `{"type": "...", "timestamp": "RFC 3339", "data": {"employee_id", "email", "name", "effective_at"}}`.
//! The same `data` object is what `POST /admin/v1/actions` takes, so [`parse_data`] serves both.

use serde_json::{Map, Value};

use super::{Parsed, SourceError};
use crate::domain::{parse_rfc3339, Effective, EmployeeRef, Event, EventType};

pub fn parse(body: &[u8], received_at: jiff::Timestamp) -> Result<Parsed, SourceError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SourceError::Malformed(format!("body is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(SourceError::Malformed("body must be a JSON object".into()));
    };
    let sender_type = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(SourceError::Malformed("`type` must be a string".into())),
        None => return Err(SourceError::Malformed("`type` is missing".into())),
    };
    let Some(kind) = EventType::parse(&sender_type) else {
        return Ok(Parsed::Ignored(format!(
            "event type {sender_type:?} does not concern offboarding"
        )));
    };
    let occurred_at = match obj.get("timestamp") {
        None | Some(Value::Null) => received_at,
        Some(Value::String(s)) => parse_rfc3339(s).ok_or_else(|| {
            SourceError::InvalidEvent(format!("`timestamp` {s:?} is not an RFC 3339 date-time"))
        })?,
        Some(_) => {
            return Err(SourceError::Malformed(
                "`timestamp` must be a string".into(),
            ))
        }
    };
    let data = match obj.get("data") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(SourceError::Malformed("`data` must be an object".into())),
        None => return Err(SourceError::Malformed("`data` is missing".into())),
    };
    let fields = parse_data(data)?;
    Ok(Parsed::Events(vec![Event {
        kind,
        sender_type,
        employee: fields.employee,
        name: fields.name,
        effective: fields.effective,
        occurred_at,
    }]))
}

/// The employee fields of a `data` object.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFields {
    pub employee: EmployeeRef,
    pub name: Option<String>,
    pub effective: Option<Effective>,
}

/// Reads `employee_id`, `email`, `name`, `effective_at`. At least one identifier is required.
pub fn parse_data(data: &Map<String, Value>) -> Result<DataFields, SourceError> {
    let employee_id = match data.get("employee_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        // Some HR systems use numeric ids; keep their decimal form.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(SourceError::InvalidEvent(
                "`data.employee_id` must be a string".into(),
            ))
        }
    };
    let email = match data.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                None
            } else if !looks_like_email(s) {
                return Err(SourceError::InvalidEvent(format!(
                    "`data.email` {s:?} is not an email address"
                )));
            } else {
                Some(s.to_string())
            }
        }
        Some(_) => {
            return Err(SourceError::InvalidEvent(
                "`data.email` must be a string".into(),
            ))
        }
    };
    if employee_id.is_none() && email.is_none() {
        return Err(SourceError::InvalidEvent(
            "the event names no employee: give `data.employee_id` and/or `data.email`".into(),
        ));
    }
    let name = match data.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    };
    let effective = match data.get("effective_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(Effective::parse(s).ok_or_else(|| {
            SourceError::InvalidEvent(format!(
                "`data.effective_at` {s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time"
            ))
        })?),
        Some(_) => {
            return Err(SourceError::InvalidEvent(
                "`data.effective_at` must be a string".into(),
            ))
        }
    };
    Ok(DataFields {
        employee: EmployeeRef { employee_id, email },
        name,
        effective,
    })
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-28T15:00:00Z".parse().unwrap()
    }

    fn events(body: &str) -> Vec<Event> {
        match parse(body.as_bytes(), now()).unwrap() {
            Parsed::Events(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_spec_example_parses_into_one_termination() {
        let e = events(
            r#"{"type":"employee.terminated","timestamp":"2026-11-28T14:03:00Z",
            "data":{"employee_id":"E-1042","email":"jane.doe@example.com","name":"Jane Doe","effective_at":"2026-12-01"}}"#,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, EventType::Terminated);
        assert_eq!(e[0].employee.employee_id.as_deref(), Some("E-1042"));
        assert_eq!(e[0].employee.email.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(
            e[0].effective,
            Some(Effective::Date(jiff::civil::date(2026, 12, 1)))
        );
        assert_eq!(e[0].occurred_at, "2026-11-28T14:03:00Z".parse().unwrap());
    }

    #[test]
    fn other_types_are_ignored() {
        let p = parse(br#"{"type":"employee.updated","data":{}}"#, now()).unwrap();
        assert!(matches!(p, Parsed::Ignored(r) if r.contains("employee.updated")));
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        for body in [
            "not json",
            "[1,2]",
            "\"x\"",
            "{}",
            r#"{"type":1}"#,
            r#"{"type":"employee.terminated"}"#,
            r#"{"type":"employee.terminated","data":[]}"#,
        ] {
            assert!(
                matches!(
                    parse(body.as_bytes(), now()),
                    Err(SourceError::Malformed(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn unusable_events_are_invalid() {
        for body in [
            r#"{"type":"employee.terminated","data":{"name":"Nobody"}}"#,
            r#"{"type":"employee.terminated","data":{"employee_id":"  ","email":""}}"#,
            r#"{"type":"employee.terminated","data":{"email":"not-an-email"}}"#,
            r#"{"type":"employee.terminated","data":{"email":"a@b.c","effective_at":"2026-02-30"}}"#,
            r#"{"type":"employee.terminated","data":{"email":"a@b.c","effective_at":"next week"}}"#,
            r#"{"type":"employee.terminated","timestamp":"yesterday","data":{"email":"a@b.c"}}"#,
            r#"{"type":"employee.terminated","data":{"employee_id":["x"]}}"#,
        ] {
            assert!(
                matches!(
                    parse(body.as_bytes(), now()),
                    Err(SourceError::InvalidEvent(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn numeric_employee_ids_are_kept_as_text_and_a_missing_timestamp_is_the_receipt_time() {
        let e = events(r#"{"type":"employee.terminated","data":{"employee_id":1042}}"#);
        assert_eq!(e[0].employee.employee_id.as_deref(), Some("1042"));
        assert_eq!(e[0].occurred_at, now());
        assert_eq!(e[0].effective, None);
    }
}
