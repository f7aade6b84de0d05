//! HiBob: `GET {base_url}/v1/people/{id}` with HTTP Basic (`service_user_id`, `token`), where
//! `base_url` is `https://api.hibob.com`. The work email is `email` (also read from
//! `work.email`); the termination date is read from `internal.terminationDate` (also
//! `work.terminationDate`, `terminationDate`): which of these a tenant returns depends on the
//! fields its service user may see, so all are tried (UNCONFIRMED in the vendor's reference).

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
    service_user_id: Option<SecretString>,
    service_user_id_file: Option<std::path::PathBuf>,
    token: Option<SecretString>,
    token_file: Option<std::path::PathBuf>,
    timeout: Option<String>,
}

#[derive(Debug)]
pub struct HiBobApi {
    endpoint: Endpoint,
    user: SecretString,
    token: SecretString,
}

impl HiBobApi {
    pub fn from_table(key: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = serde_json::from_value(table)
            .map_err(|e| crate::config::bad(key, crate::config::redact::values(&e.to_string())))?;
        Ok(HiBobApi {
            endpoint: Endpoint::parse(key, &t.base_url, t.timeout.as_deref())?,
            user: required_secret(
                key,
                "service_user_id",
                t.service_user_id,
                t.service_user_id_file,
            )?,
            token: required_secret(key, "token", t.token, t.token_file)?,
        })
    }
}

impl HrApi for HiBobApi {
    fn vendor(&self) -> &'static str {
        "hibob"
    }

    fn lookup<'a>(
        &'a self,
        http: &'a reqwest::Client,
        employee_id: &'a str,
    ) -> futures_core::future::BoxFuture<'a, Result<Lookup, ApiDown>> {
        Box::pin(async move {
            let req = http
                .get(self.endpoint.url(&["v1", "people", employee_id]))
                .timeout(self.endpoint.timeout)
                .basic_auth(self.user.expose_secret(), Some(self.token.expose_secret()));
            let Some(v) = get_json(req, "HiBob").await? else {
                return Ok(Lookup::Unknown);
            };
            Ok(Lookup::Found(Person {
                email: email(text_at(&v, &[&["email"], &["work", "email"]])),
                terminated_on: date(text_at(
                    &v,
                    &[
                        &["internal", "terminationDate"],
                        &["work", "terminationDate"],
                        &["terminationDate"],
                    ],
                )),
            }))
        })
    }

    /// `POST /v1/people/search` with `showInactive`, reading the same fields as a lookup.
    fn leavers<'a>(
        &'a self,
        http: &'a reqwest::Client,
        since: jiff::civil::Date,
        today: jiff::civil::Date,
    ) -> futures_core::future::BoxFuture<'a, Result<Vec<super::Leaver>, ApiDown>> {
        Box::pin(async move {
            let req = http
                .post(self.endpoint.url(&["v1", "people", "search"]))
                .timeout(self.endpoint.timeout)
                .basic_auth(self.user.expose_secret(), Some(self.token.expose_secret()))
                .json(&json!({"showInactive": true,
                    "fields": ["root.id", "root.email", "internal.terminationDate", "internal.status"]}));
            let found = get_json(req, "HiBob")
                .await?
                .ok_or_else(|| ApiDown("the HiBob search endpoint is not there (404)".into()))?;
            Ok(super::list_at(&found, "employees", "HiBob")?
                .iter()
                .filter_map(|e| {
                    super::leaver(
                        text_at(e, &[&["id"], &["root", "id"]]),
                        text_at(e, &[&["email"], &["root", "email"], &["work", "email"]]),
                        date(text_at(
                            e,
                            &[
                                &["internal", "terminationDate"],
                                &["work", "terminationDate"],
                                &["terminationDate"],
                            ],
                        )),
                        since,
                        today,
                    )
                })
                .collect())
        })
    }

    fn describe(&self) -> Value {
        let mut v = self.endpoint.describe();
        v["service_user_id"] = json!("[redacted]");
        v["token"] = json!("[redacted]");
        v
    }
}
