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
    /// The company whose terminated employees scheduled reconciliation lists.
    company_id: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug)]
pub struct GustoApi {
    endpoint: Endpoint,
    token: SecretString,
    company_id: Option<String>,
}

impl GustoApi {
    pub fn from_table(key: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = serde_json::from_value(table)
            .map_err(|e| crate::config::bad(key, crate::config::redact::values(&e.to_string())))?;
        Ok(GustoApi {
            endpoint: Endpoint::parse(key, &t.base_url, t.timeout.as_deref())?,
            token: required_secret(key, "access_token", t.access_token, t.access_token_file)?,
            company_id: t.company_id.filter(|c| !c.trim().is_empty()),
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

    /// `GET /v1/companies/{company_id}/employees?terminated=true`, page by page (`page`, `per`),
    /// each employee with its `terminations`.
    fn leavers<'a>(
        &'a self,
        http: &'a reqwest::Client,
        since: jiff::civil::Date,
        today: jiff::civil::Date,
    ) -> futures_core::future::BoxFuture<'a, Result<Vec<super::Leaver>, ApiDown>> {
        Box::pin(async move {
            const PER: usize = 100;
            let Some(company) = &self.company_id else {
                return Err(ApiDown(
                    "listing Gusto's leavers needs `company_id` in the source's [api] table".into(),
                ));
            };
            let mut out = Vec::new();
            for page in 1..=super::MAX_PAGES {
                let mut url = self
                    .endpoint
                    .url(&["v1", "companies", company, "employees"]);
                url.query_pairs_mut()
                    .append_pair("terminated", "true")
                    .append_pair("page", &page.to_string())
                    .append_pair("per", &PER.to_string());
                let req = http
                    .get(url)
                    .timeout(self.endpoint.timeout)
                    .bearer_auth(self.token.expose_secret());
                let list = get_json(req, "Gusto")
                    .await?
                    .ok_or_else(|| ApiDown(format!("Gusto knows no company {company:?} (404)")))?;
                // Anything but a list is no answer: an empty listing would read as "nobody left".
                let employees = list.as_array().cloned().ok_or_else(|| {
                    ApiDown("Gusto's employee listing is not a JSON array".into())
                })?;
                out.extend(employees.iter().filter_map(|e| {
                    super::leaver(
                        text_at(e, &[&["uuid"], &["id"]]),
                        text_at(e, &[&["work_email"], &["email"]]),
                        termination_date(&e["terminations"]),
                        since,
                        today,
                    )
                }));
                if employees.len() < PER {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn describe(&self) -> Value {
        let mut v = self.endpoint.describe();
        v["access_token"] = json!("[redacted]");
        v["company_id"] = json!(self.company_id);
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
