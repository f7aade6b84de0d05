//! The employee `data` object of offboard's own event format: the `data` of a `standard`
//! delivery (SPEC §4.1), of a CloudEvent, and the body of `POST /admin/v1/actions`.
//! `{"employee_id", "email", "name", "effective_at"}`, at least one identifier. Pure parsing.

use serde_json::{Map, Value};

use crate::domain::{Effective, EmployeeRef};
use crate::sources::SourceError;

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

pub fn looks_like_email(s: &str) -> bool {
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
