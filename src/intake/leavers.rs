//! A list of leavers for a reconciliation (SPEC §12): CSV with a header row, or JSON
//! `{"leavers": [{...}, ...], "apply": false}`. Pure parsing.
//!
//! Columns (CSV, matched case-insensitively) and keys (JSON) are `employee_id`, `email` and
//! `terminated_on`; others are ignored, so an HR export can be sent as it is. A row that names
//! nobody, or whose email or date cannot be read, is kept as `invalid` with the reason: the rest
//! of the list still runs, and the report shows every row in input order.

use serde_json::Value;

use crate::domain::has_nul;

/// At most this many rows per reconciliation: a company's leavers of many years, and a bound on
/// what one request can make the service store.
pub const MAX_ROWS: usize = 100_000;

/// One row as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leaver {
    pub employee_id: Option<String>,
    pub email: Option<String>,
    /// `YYYY-MM-DD`, as given.
    pub terminated_on: Option<String>,
    /// Why the row is `invalid` (`None`: it is checked against Workfront).
    pub invalid: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Leavers {
    pub rows: Vec<Leaver>,
    /// The JSON body's `apply` (CSV: always false; the query string says it).
    pub apply: bool,
}

/// Why a list was refused as a whole.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaversError {
    /// Neither CSV nor the JSON shape: 400 `malformed_payload`.
    Malformed(String),
    /// No row at all, or no identifier column, or too many rows: 422 `invalid_event`.
    Unusable(String),
}

/// Parses a CSV list (header row first).
pub fn parse_csv(body: &[u8]) -> Result<Leavers, LeaversError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body); // Excel writes a BOM
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| LeaversError::Malformed(format!("the CSV header cannot be read: {e}")))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (id_col, email_col, date_col) = (
        column("employee_id"),
        column("email"),
        column("terminated_on"),
    );
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(LeaversError::Unusable("the list is empty".into()));
    }
    if id_col.is_none() && email_col.is_none() {
        return Err(LeaversError::Unusable(
            "the header row names neither `employee_id` nor `email`".into(),
        ));
    }
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            LeaversError::Malformed(format!("CSV line {} cannot be read: {e}", n + 2))
        })?;
        if record.iter().all(str::is_empty) {
            continue; // a blank line
        }
        let cell = |c: Option<usize>| c.and_then(|i| record.get(i)).map(str::to_string);
        rows.push(checked(cell(id_col), cell(email_col), cell(date_col), None));
        if rows.len() > MAX_ROWS {
            return Err(too_many());
        }
    }
    finish(rows, false)
}

/// Parses `{"leavers": [...], "apply": bool}`.
pub fn parse_json(body: &[u8]) -> Result<Leavers, LeaversError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| LeaversError::Malformed(format!("the body is neither JSON nor CSV: {e}")))?;
    let shape = || {
        LeaversError::Malformed(
            "expected {\"leavers\": [{\"employee_id\": ..., \"email\": ...}, ...], \"apply\": false} (or CSV with Content-Type: text/csv)".into(),
        )
    };
    let Value::Object(root) = value else {
        return Err(shape());
    };
    let apply = match root.get("apply") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(LeaversError::Malformed(
                "`apply` must be true or false".into(),
            ))
        }
    };
    let Some(Value::Array(list)) = root.get("leavers") else {
        return Err(shape());
    };
    if list.len() > MAX_ROWS {
        return Err(too_many());
    }
    let rows = list.iter().map(json_row).collect();
    finish(rows, apply)
}

fn json_row(v: &Value) -> Leaver {
    let Value::Object(o) = v else {
        return invalid("the row is not an object");
    };
    let mut wrong = None;
    let mut text = |key: &str| match o.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        // Numeric employee ids are common in exports; keep their decimal form.
        Some(Value::Number(n)) if key == "employee_id" => Some(n.to_string()),
        Some(_) => {
            wrong.get_or_insert_with(|| format!("`{key}` must be a string"));
            None
        }
    };
    let (id, email, date) = (text("employee_id"), text("email"), text("terminated_on"));
    checked(id, email, date, wrong)
}

/// Trims, drops blanks, and checks what would make the row unusable.
fn checked(
    employee_id: Option<String>,
    email: Option<String>,
    terminated_on: Option<String>,
    wrong: Option<String>,
) -> Leaver {
    let clean = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let mut row = Leaver {
        employee_id: clean(employee_id),
        email: clean(email),
        terminated_on: clean(terminated_on),
        invalid: wrong,
    };
    let texts = [&row.employee_id, &row.email, &row.terminated_on];
    let bad_email = row
        .email
        .as_ref()
        .filter(|e| !crate::intake::data::looks_like_email(e));
    let bad_date = row
        .terminated_on
        .as_ref()
        .filter(|d| d.parse::<jiff::civil::Date>().is_err());
    let problem = if texts.iter().any(|t| t.as_deref().is_some_and(has_nul)) {
        Some("a field contains U+0000".to_string())
    } else if row.employee_id.is_none() && row.email.is_none() {
        Some("the row names no employee_id and no email".to_string())
    } else if let Some(e) = bad_email {
        Some(format!("`email` {e:?} is not an email address"))
    } else {
        bad_date.map(|d| format!("`terminated_on` {d:?} is not a date (YYYY-MM-DD)"))
    };
    if row.invalid.is_none() {
        row.invalid = problem;
    }
    row
}

fn invalid(why: &str) -> Leaver {
    Leaver {
        invalid: Some(why.to_string()),
        ..Leaver::default()
    }
}

fn too_many() -> LeaversError {
    LeaversError::Unusable(format!("the list has more than {MAX_ROWS} rows; split it"))
}

fn finish(rows: Vec<Leaver>, apply: bool) -> Result<Leavers, LeaversError> {
    if rows.is_empty() {
        return Err(LeaversError::Unusable("the list has no row".into()));
    }
    Ok(Leavers { rows, apply })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: Option<&str>, email: Option<&str>, date: Option<&str>) -> Leaver {
        Leaver {
            employee_id: id.map(str::to_string),
            email: email.map(str::to_string),
            terminated_on: date.map(str::to_string),
            invalid: None,
        }
    }

    #[test]
    fn csv_columns_are_found_by_name_in_any_order_and_case_and_others_are_ignored() {
        let body = "\u{feff}Name,EMAIL,Employee_ID,Terminated_On\nJane,jane@example.com,E1,2026-11-30\nBob,,E2,\n";
        let list = parse_csv(body.as_bytes()).unwrap();
        assert_eq!(
            list.rows,
            vec![
                ok(Some("E1"), Some("jane@example.com"), Some("2026-11-30")),
                ok(Some("E2"), None, None),
            ]
        );
        assert!(!list.apply);
    }

    #[test]
    fn csv_rows_without_identifier_or_with_a_bad_email_or_date_are_invalid_and_kept_in_place() {
        let body = "employee_id,email,terminated_on\n,,2026-01-01\nE2,not-an-email,\nE3,,2026-02-30\nE4,,\n";
        let rows = parse_csv(body.as_bytes()).unwrap().rows;
        assert_eq!(rows.len(), 4);
        assert!(rows[0]
            .invalid
            .as_deref()
            .unwrap()
            .contains("no employee_id"));
        assert!(rows[1].invalid.as_deref().unwrap().contains("not an email"));
        assert!(rows[2].invalid.as_deref().unwrap().contains("not a date"));
        assert_eq!(rows[3], ok(Some("E4"), None, None));
    }

    #[test]
    fn csv_quoted_cells_with_commas_and_short_rows_are_read() {
        let body = "email,employee_id\n\"jane@example.com\",\"E,1\"\nbob@example.com\n\n";
        let rows = parse_csv(body.as_bytes()).unwrap().rows;
        assert_eq!(
            rows,
            vec![
                ok(Some("E,1"), Some("jane@example.com"), None),
                ok(None, Some("bob@example.com"), None)
            ]
        );
    }

    #[test]
    fn a_csv_without_an_identifier_column_or_without_rows_is_unusable() {
        assert!(matches!(
            parse_csv(b"name,department\nJane,Sales\n"),
            Err(LeaversError::Unusable(m)) if m.contains("neither")
        ));
        assert!(matches!(
            parse_csv(b"employee_id,email\n"),
            Err(LeaversError::Unusable(_))
        ));
        assert!(matches!(parse_csv(b""), Err(LeaversError::Unusable(_))));
    }

    #[test]
    fn a_csv_that_is_not_utf8_is_malformed() {
        assert!(matches!(
            parse_csv(b"employee_id\n\xff\xfe\n"),
            Err(LeaversError::Malformed(_))
        ));
    }

    #[test]
    fn json_lists_read_string_and_numeric_ids_and_the_apply_flag() {
        let body = br#"{"apply": true, "leavers": [{"employee_id": 42, "email": " a@example.com "}, {"email": "b@example.com", "terminated_on": "2026-11-01", "name": "B"}]}"#;
        let list = parse_json(body).unwrap();
        assert!(list.apply);
        assert_eq!(
            list.rows,
            vec![
                ok(Some("42"), Some("a@example.com"), None),
                ok(None, Some("b@example.com"), Some("2026-11-01")),
            ]
        );
    }

    #[test]
    fn json_rows_of_the_wrong_shape_are_invalid_and_the_rest_still_run() {
        let body = br#"{"leavers": ["E1", {"employee_id": ["E2"]}, {}, {"employee_id": "E4"}]}"#;
        let rows = parse_json(body).unwrap().rows;
        assert!(rows[0]
            .invalid
            .as_deref()
            .unwrap()
            .contains("not an object"));
        assert!(rows[1]
            .invalid
            .as_deref()
            .unwrap()
            .contains("must be a string"));
        assert!(rows[2].invalid.is_some());
        assert_eq!(rows[3], ok(Some("E4"), None, None));
    }

    #[test]
    fn json_of_another_shape_is_malformed_and_an_empty_list_unusable() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{\"people\": []}",
            b"{\"leavers\": {}}",
            b"{\"leavers\": [], \"apply\": \"yes\"}",
        ] {
            assert!(
                matches!(parse_json(body), Err(LeaversError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_json(b"{\"leavers\": []}"),
            Err(LeaversError::Unusable(_))
        ));
    }

    #[test]
    fn a_field_with_nul_makes_the_row_invalid() {
        let rows = parse_json(br#"{"leavers": [{"employee_id": "E\u00001"}]}"#)
            .unwrap()
            .rows;
        assert!(rows[0].invalid.as_deref().unwrap().contains("U+0000"));
    }
}
