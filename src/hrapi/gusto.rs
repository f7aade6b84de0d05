//! Gusto: `GET {base_url}/v1/employees/{id}` (the work email is `work_email`, else `email`) and
//! `GET {base_url}/v1/employees/{id}/terminations` (a list; the latest `effective_date` of a
//! termination that is not cancelled), with `Authorization: Bearer {access_token}`, where
//! `base_url` is `https://api.gusto.com` (or the demo host).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    date, email, get_json, required_secret, text_at, ApiDown, Endpoint, HrApi, Lookup, Person,
};
use crate::config::ConfigError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    base_url: String,
    access_token: Option<SecretString>,
    access_token_file: Option<std::path::PathBuf>,
    timeout: Option<String>,
}

#[derive(Debug)]
pub struct GustoApi {
    endpoint: Endpoint,
    token: SecretString,
}

impl GustoApi {
    pub fn from_table(key: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = serde_json::from_value(table).map_err(|e| crate::config::bad(key, e))?;
        Ok(GustoApi {
            endpoint: Endpoint::parse(key, &t.base_url, t.timeout.as_deref())?,
            token: required_secret(key, "access_token", t.access_token, t.access_token_file)?,
        })
    }
}

/// The latest effective date among terminations that are not cancelled.
fn termination_date(list: &Value) -> Option<jiff::civil::Date> {
    list.as_array()?
        .iter()
        .filter(|t| t.get("cancelled").and_then(Value::as_bool) != Some(true))
        .filter_map(|t| date(text_at(t, &[&["effective_date"]])))
        .max()
}

impl HrApi for GustoApi {
    fn vendor(&self) -> &'static str {
        "gusto"
    }

    fn lookup<'a>(
        &'a self,
        http: &'a reqwest::Client,
        employee_id: &'a str,
    ) -> futures_core::future::BoxFuture<'a, Result<Lookup, ApiDown>> {
        Box::pin(async move {
            let get = |segments: &[&str]| {
                http.get(self.endpoint.url(segments))
                    .timeout(self.endpoint.timeout)
                    .bearer_auth(self.token.expose_secret())
            };
            let Some(employee) = get_json(get(&["v1", "employees", employee_id]), "Gusto").await?
            else {
                return Ok(Lookup::Unknown);
            };
            let terminations = get_json(
                get(&["v1", "employees", employee_id, "terminations"]),
                "Gusto",
            )
            .await?
            .unwrap_or(Value::Null);
            Ok(Lookup::Found(Person {
                email: email(text_at(&employee, &[&["work_email"], &["email"]])),
                terminated_on: termination_date(&terminations),
            }))
        })
    }

    fn describe(&self) -> Value {
        let mut v = self.endpoint.describe();
        v["access_token"] = json!("[redacted]");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_termination_that_is_not_cancelled_counts() {
        let list = json!([
            {"effective_date": "2026-12-31", "cancelled": true},
            {"effective_date": "2026-11-30"},
            {"effective_date": "2026-10-01", "cancelled": false},
        ]);
        assert_eq!(
            termination_date(&list),
            Some(jiff::civil::date(2026, 11, 30))
        );
        assert_eq!(termination_date(&json!([])), None);
        assert_eq!(termination_date(&json!({"error": "x"})), None);
    }
}
