//! BambooHR: `GET {base_url}/v1/employees/{id}?fields=workEmail,terminationDate,status,employmentHistoryStatus`
//! with HTTP Basic (`api_key` as the user, `x` as the password) and `Accept: application/json`.
//! `base_url` is the company's API root, `https://api.bamboohr.com/api/gateway.php/{company}`.
//! An unset `terminationDate` comes back as `0000-00-00` or empty: none.

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
    api_key: Option<SecretString>,
    api_key_file: Option<std::path::PathBuf>,
    timeout: Option<String>,
}

#[derive(Debug)]
pub struct BambooHrApi {
    endpoint: Endpoint,
    api_key: SecretString,
}

impl BambooHrApi {
    pub fn from_table(key: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = serde_json::from_value(table)
            .map_err(|e| crate::config::bad(key, crate::config::redact::values(&e.to_string())))?;
        Ok(BambooHrApi {
            endpoint: Endpoint::parse(key, &t.base_url, t.timeout.as_deref())?,
            api_key: required_secret(key, "api_key", t.api_key, t.api_key_file)?,
        })
    }
}

impl HrApi for BambooHrApi {
    fn vendor(&self) -> &'static str {
        "bamboohr"
    }

    fn lookup<'a>(
        &'a self,
        http: &'a reqwest::Client,
        employee_id: &'a str,
    ) -> futures_core::future::BoxFuture<'a, Result<Lookup, ApiDown>> {
        Box::pin(async move {
            let mut url = self.endpoint.url(&["v1", "employees", employee_id]);
            url.query_pairs_mut().append_pair(
                "fields",
                "workEmail,terminationDate,status,employmentHistoryStatus",
            );
            let req = http
                .get(url)
                .timeout(self.endpoint.timeout)
                .basic_auth(self.api_key.expose_secret(), Some("x"));
            let Some(v) = get_json(req, "BambooHR").await? else {
                return Ok(Lookup::Unknown);
            };
            Ok(Lookup::Found(Person {
                email: email(text_at(&v, &[&["workEmail"]])),
                terminated_on: date(text_at(&v, &[&["terminationDate"]])),
            }))
        })
    }

    /// A custom report of every employee (`onlyCurrent=false` includes the terminated).
    fn leavers<'a>(
        &'a self,
        http: &'a reqwest::Client,
        since: jiff::civil::Date,
        today: jiff::civil::Date,
    ) -> futures_core::future::BoxFuture<'a, Result<Vec<super::Leaver>, ApiDown>> {
        Box::pin(async move {
            let mut url = self.endpoint.url(&["v1", "reports", "custom"]);
            url.query_pairs_mut()
                .append_pair("format", "JSON")
                .append_pair("onlyCurrent", "false");
            let req = http
                .post(url)
                .timeout(self.endpoint.timeout)
                .basic_auth(self.api_key.expose_secret(), Some("x"))
                .json(&json!({"title": "offboard leavers", "fields": ["id", "workEmail", "terminationDate", "status"]}));
            let report = get_json(req, "BambooHR")
                .await?
                .ok_or_else(|| ApiDown("the BambooHR report endpoint is not there (404)".into()))?;
            Ok(super::list_at(&report, "employees", "BambooHR")?
                .iter()
                .filter_map(|e| {
                    super::leaver(
                        text_at(e, &[&["id"]]).or_else(|| e["id"].as_i64().map(|n| n.to_string())),
                        text_at(e, &[&["workEmail"]]),
                        date(text_at(e, &[&["terminationDate"]])),
                        since,
                        today,
                    )
                })
                .collect())
        })
    }

    fn describe(&self) -> Value {
        let mut v = self.endpoint.describe();
        v["api_key"] = json!("[redacted]");
        v
    }
}
