//! HR vendor APIs (SPEC §4.3): the work email and termination date of a thin delivery's employee.
//!
//! One plug-in point: [`HrApi`], one file per vendor (its config, its calls, its tests), and
//! [`build`], the only `match` on the vendor. The worker asks before matching; a vendor that
//! cannot be reached (timeout, connection, 5xx, 429, refused credentials, an answer that is not
//! JSON, a redirect) is [`ApiDown`], and the action waits (`pending/hr_api`); an employee the
//! vendor does not know (404) is [`Lookup::Unknown`], and matching uses the employee id alone.

pub mod bamboohr;
pub mod gusto;
pub mod hibob;
pub mod personio;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use serde_json::Value;

use crate::config::{bad, ConfigError};

/// What the vendor said about an employee.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub email: Option<String>,
    pub terminated_on: Option<jiff::civil::Date>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(Person),
    /// The vendor does not know this employee id (404).
    Unknown,
}

/// Someone the vendor lists as having left (scheduled reconciliation).
#[derive(Debug, Clone, PartialEq)]
pub struct Leaver {
    pub employee_id: String,
    pub email: Option<String>,
    pub terminated_on: jiff::civil::Date,
}

/// The vendor API could not answer now; try again later.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiDown(pub String);

pub trait HrApi: Send + Sync + Debug {
    fn vendor(&self) -> &'static str;
    /// Looks the employee up. `http` follows no redirects; each vendor sets its own timeout.
    fn lookup<'a>(
        &'a self,
        http: &'a reqwest::Client,
        employee_id: &'a str,
    ) -> BoxFuture<'a, Result<Lookup, ApiDown>>;
    /// Everyone whose termination date is in `since..=today` (scheduled reconciliation, §12).
    fn leavers<'a>(
        &'a self,
        http: &'a reqwest::Client,
        since: jiff::civil::Date,
        today: jiff::civil::Date,
    ) -> BoxFuture<'a, Result<Vec<Leaver>, ApiDown>>;
    /// The settings with credentials redacted, for `check-config`.
    fn describe(&self) -> Value;
}

/// The vendors that have an API client, by source kind.
pub const KINDS: &[&str] = &["bamboohr", "hibob", "gusto", "personio"];

/// Builds `[sources.<source>.api]` for a source of `kind`.
pub fn build(source: &str, kind: &str, table: Value) -> Result<Arc<dyn HrApi>, ConfigError> {
    let key = format!("sources.{source}.api");
    Ok(match kind {
        "bamboohr" => Arc::new(bamboohr::BambooHrApi::from_table(&key, table)?),
        "hibob" => Arc::new(hibob::HiBobApi::from_table(&key, table)?),
        "gusto" => Arc::new(gusto::GustoApi::from_table(&key, table)?),
        "personio" => Arc::new(personio::PersonioApi::from_table(&key, table)?),
        other => {
            return Err(bad(
                &key,
                format!(
                    "kind {other:?} has no HR API client; only {} do",
                    KINDS.join(", ")
                ),
            ))
        }
    })
}

/// `base_url` and `timeout`, common to every vendor.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base: url::Url,
    pub timeout: Duration,
}

impl Endpoint {
    pub fn parse(
        key: &str,
        base_url: &str,
        timeout: Option<&str>,
    ) -> Result<Endpoint, ConfigError> {
        let base = url::Url::parse(base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| bad(&format!("{key}.base_url"), "must be an http(s) URL"))?;
        let timeout = match timeout {
            None => Duration::from_secs(10),
            Some(t) => crate::config::parse_duration(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    bad(
                        &format!("{key}.timeout"),
                        "must be a positive duration like \"10s\"",
                    )
                })?,
        };
        Ok(Endpoint { base, timeout })
    }

    /// `{base_url}/{segments…}`, each segment percent-encoded (an employee id is never more
    /// than one path segment, whatever it holds).
    pub fn url(&self, segments: &[&str]) -> url::Url {
        let mut u = self.base.clone();
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        u
    }

    pub fn describe(&self) -> Value {
        let mut shown = self.base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        serde_json::json!({"base_url": shown.as_str(), "timeout": crate::cli::fmt_duration(self.timeout)})
    }
}

/// Sends a request and reads its JSON: `Ok(None)` for 404 (unknown employee), [`ApiDown`] for
/// everything that is no answer about the employee.
pub async fn get_json(
    req: reqwest::RequestBuilder,
    vendor: &str,
) -> Result<Option<Value>, ApiDown> {
    let resp = req
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            let why = if e.is_timeout() {
                "timed out"
            } else {
                "cannot be reached"
            };
            ApiDown(format!("the {vendor} API {why}: {}", without_url(&e)))
        })?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        let what = match status.as_u16() {
            401 | 403 => "refuses the credentials",
            429 => "asks us to slow down",
            300..=399 => "redirects elsewhere",
            500..=599 => "fails",
            _ => "refuses the request",
        };
        return Err(ApiDown(format!(
            "the {vendor} API {what} (HTTP {})",
            status.as_u16()
        )));
    }
    let body = resp.bytes().await.map_err(|e| {
        ApiDown(format!(
            "the {vendor} API answer was cut off: {}",
            without_url(&e)
        ))
    })?;
    serde_json::from_slice(&body).map(Some).map_err(|_| {
        ApiDown(format!(
            "the {vendor} API answered something that is not JSON"
        ))
    })
}

/// A reqwest error's text without its URL (which holds the employee id, and may hold a token).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), "…");
    }
    text
}

/// The first text found at one of `paths` (each a list of keys).
pub fn text_at(v: &Value, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| {
        let mut at = v;
        for k in *path {
            at = at.get(*k)?;
        }
        at.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

/// A vendor date: `YYYY-MM-DD` or the date of a date-time; blank and `0000-00-00` are none.
pub fn date(text: Option<String>) -> Option<jiff::civil::Date> {
    let t = text?;
    let day = t.get(..10).unwrap_or(&t);
    day.parse().ok()
}

/// A leaver from one listed employee, if they left within `since..=today`.
pub fn leaver(
    id: Option<String>,
    email_text: Option<String>,
    terminated_on: Option<jiff::civil::Date>,
    since: jiff::civil::Date,
    today: jiff::civil::Date,
) -> Option<Leaver> {
    let day = terminated_on.filter(|d| *d >= since && *d <= today)?;
    Some(Leaver {
        employee_id: id?,
        email: email(email_text),
        terminated_on: day,
    })
}

/// The list under `key` of a listing's answer. Anything else is no answer, never "nobody left":
/// a listing read as empty would hide every leaver.
pub fn list_at<'v>(answer: &'v Value, key: &str, vendor: &str) -> Result<&'v Vec<Value>, ApiDown> {
    answer[key]
        .as_array()
        .ok_or_else(|| ApiDown(format!("{vendor}'s listing has no `{key}` list")))
}

/// Pages of a listing are read up to this many.
pub const MAX_PAGES: usize = 200;

/// A work email only when it is one.
pub fn email(text: Option<String>) -> Option<String> {
    text.filter(|e| crate::intake::data::looks_like_email(e))
}

pub fn required_secret(
    key: &str,
    name: &str,
    value: Option<secrecy::SecretString>,
    file: Option<std::path::PathBuf>,
) -> Result<secrecy::SecretString, ConfigError> {
    let full = format!("{key}.{name}");
    crate::config::secret_value(value, file, &full)?
        .ok_or_else(|| bad(&full, "is required (or give it as a file)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_encode_each_segment() {
        let e =
            Endpoint::parse("k", "https://api.example.com/api/gateway.php/acme/", None).unwrap();
        assert_eq!(
            e.url(&["v1", "employees", "a/b?c"]).as_str(),
            "https://api.example.com/api/gateway.php/acme/v1/employees/a%2Fb%3Fc"
        );
        assert_eq!(e.timeout, Duration::from_secs(10));
        assert!(Endpoint::parse("k", "ftp://x", None).is_err());
        assert!(Endpoint::parse("k", "https://x", Some("0s")).is_err());
    }

    #[test]
    fn a_listing_without_its_list_is_a_failure_never_an_empty_listing() {
        let ok = serde_json::json!({"employees": []});
        assert!(list_at(&ok, "employees", "V").unwrap().is_empty());
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"employees": null}),
            serde_json::json!({"employees": {"a": 1}}),
            serde_json::json!("<html>"),
        ] {
            let e = list_at(&bad, "employees", "V").unwrap_err();
            assert!(e.0.contains("no `employees` list"), "{}", e.0);
        }
    }

    #[test]
    fn vendor_dates_read_dates_and_date_times_and_drop_zero_dates() {
        assert_eq!(
            date(Some("2026-11-30".into())),
            Some(jiff::civil::date(2026, 11, 30))
        );
        assert_eq!(
            date(Some("2026-11-30T00:00:00Z".into())),
            Some(jiff::civil::date(2026, 11, 30))
        );
        assert_eq!(date(Some("0000-00-00".into())), None);
        assert_eq!(date(None), None);
    }

    #[test]
    fn only_vendor_kinds_with_a_client_accept_an_api_table() {
        let e = build("hr", "deel", serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources.hr.api") && e.contains("bamboohr"),
            "{e}"
        );
    }
}
