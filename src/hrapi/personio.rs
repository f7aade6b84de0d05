//! Personio (API v2): `POST {base_url}/v2/auth/token` (form `grant_type=client_credentials`,
//! `client_id`, `client_secret`) gives a bearer token with `expires_in`; then
//! `GET {base_url}/v2/persons/{id}` (the work email is `email`) and
//! `GET {base_url}/v2/persons/{id}/employments` (`_data[]`, each with
//! `termination.termination_date`; pages follow `_meta.links.next.href`). `base_url` is
//! `https://api.personio.de`. The token is kept until a minute before it expires, and fetched
//! again once when an answer says 401.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    date, email, get_json, required_secret, text_at, ApiDown, Endpoint, HrApi, Lookup, Person,
};
use crate::config::ConfigError;

use super::MAX_PAGES;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    base_url: String,
    client_id: Option<SecretString>,
    client_id_file: Option<std::path::PathBuf>,
    client_secret: Option<SecretString>,
    client_secret_file: Option<std::path::PathBuf>,
    timeout: Option<String>,
}

#[derive(Debug)]
pub struct PersonioApi {
    endpoint: Endpoint,
    client_id: SecretString,
    client_secret: SecretString,
    token: Mutex<Option<(SecretString, Instant)>>,
}

impl PersonioApi {
    pub fn from_table(key: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = serde_json::from_value(table)
            .map_err(|e| crate::config::bad(key, crate::config::redact::values(&e.to_string())))?;
        Ok(PersonioApi {
            endpoint: Endpoint::parse(key, &t.base_url, t.timeout.as_deref())?,
            client_id: required_secret(key, "client_id", t.client_id, t.client_id_file)?,
            client_secret: required_secret(
                key,
                "client_secret",
                t.client_secret,
                t.client_secret_file,
            )?,
            token: Mutex::new(None),
        })
    }

    async fn token(&self, http: &reqwest::Client) -> Result<SecretString, ApiDown> {
        if let Some((t, until)) = self.token.lock().unwrap().as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.expose_secret()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        let req = http
            .post(self.endpoint.url(&["v2", "auth", "token"]))
            .timeout(self.endpoint.timeout)
            .form(&form);
        let v = get_json(req, "Personio")
            .await?
            .ok_or_else(|| ApiDown("the Personio token endpoint is not there (404)".into()))?;
        let token = text_at(&v, &[&["access_token"]])
            .ok_or_else(|| ApiDown("the Personio token answer has no access_token".into()))?;
        let ttl = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(60).max(1));
        let token = SecretString::from(token);
        *self.token.lock().unwrap() = Some((token.clone(), until));
        Ok(token)
    }

    /// A GET with the token; a 401 drops the token and tries once more with a new one.
    async fn get(&self, http: &reqwest::Client, url: url::Url) -> Result<Option<Value>, ApiDown> {
        for fresh in [false, true] {
            if fresh {
                *self.token.lock().unwrap() = None;
            }
            let token = self.token(http).await?;
            let req = http
                .get(url.clone())
                .timeout(self.endpoint.timeout)
                .bearer_auth(token.expose_secret());
            match get_json(req, "Personio").await {
                Err(ApiDown(why)) if !fresh && why.contains("HTTP 401") => continue,
                other => return other,
            }
        }
        unreachable!("the loop returns on its second pass")
    }
}

impl PersonioApi {
    /// The latest termination date among the person's employments (all pages).
    async fn termination(
        &self,
        http: &reqwest::Client,
        person: &str,
    ) -> Result<Option<jiff::civil::Date>, ApiDown> {
        let mut terminated_on = None;
        let first = self.endpoint.url(&["v2", "persons", person, "employments"]);
        for page in self.pages(http, first).await? {
            for e in page["_data"].as_array().into_iter().flatten() {
                terminated_on =
                    terminated_on.max(date(text_at(e, &[&["termination", "termination_date"]])));
            }
        }
        Ok(terminated_on)
    }

    /// Every page from `first`, following `_meta.links.next.href`. Only links on the same host
    /// are followed: a page must not send our token away.
    async fn pages(&self, http: &reqwest::Client, first: url::Url) -> Result<Vec<Value>, ApiDown> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page = self.get(http, url).await?.unwrap_or(Value::Null);
            next = text_at(&page, &[&["_meta", "links", "next", "href"]])
                .and_then(|h| self.endpoint.base.join(&h).ok())
                .filter(|u| u.host() == self.endpoint.base.host() && out.len() + 1 < MAX_PAGES);
            out.push(page);
        }
        Ok(out)
    }
}

impl HrApi for PersonioApi {
    fn vendor(&self) -> &'static str {
        "personio"
    }

    fn lookup<'a>(
        &'a self,
        http: &'a reqwest::Client,
        employee_id: &'a str,
    ) -> futures_core::future::BoxFuture<'a, Result<Lookup, ApiDown>> {
        Box::pin(async move {
            let Some(person) = self
                .get(http, self.endpoint.url(&["v2", "persons", employee_id]))
                .await?
            else {
                return Ok(Lookup::Unknown);
            };
            let terminated_on = self.termination(http, employee_id).await?;
            Ok(Lookup::Found(Person {
                email: email(text_at(&person, &[&["email"]])),
                terminated_on,
            }))
        })
    }

    /// `GET /v2/persons` (all pages); for each person not `ACTIVE`, their employments' date.
    fn leavers<'a>(
        &'a self,
        http: &'a reqwest::Client,
        since: jiff::civil::Date,
        today: jiff::civil::Date,
    ) -> futures_core::future::BoxFuture<'a, Result<Vec<super::Leaver>, ApiDown>> {
        Box::pin(async move {
            let mut first = self.endpoint.url(&["v2", "persons"]);
            first.query_pairs_mut().append_pair("limit", "50");
            let mut out = Vec::new();
            for page in self.pages(http, first).await? {
                for p in super::list_at(&page, "_data", "Personio")? {
                    let status = text_at(p, &[&["status"]]).unwrap_or_default();
                    let Some(id) =
                        text_at(p, &[&["id"]]).or_else(|| p["id"].as_i64().map(|n| n.to_string()))
                    else {
                        continue;
                    };
                    if status.eq_ignore_ascii_case("active") {
                        continue;
                    }
                    let day = self.termination(http, &id).await?;
                    out.extend(super::leaver(
                        Some(id),
                        text_at(p, &[&["email"]]),
                        day,
                        since,
                        today,
                    ));
                }
            }
            Ok(out)
        })
    }

    fn describe(&self) -> Value {
        let mut v = self.endpoint.describe();
        v["client_id"] = json!("[redacted]");
        v["client_secret"] = json!("[redacted]");
        v
    }
}
