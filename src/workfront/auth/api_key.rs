//! `auth = "api_key"`: the key as header `apiKey` (default) or query parameter `apiKey`
//! (`api_key_in = "query"`). Keys are made at Setup > System > Customer Info and expire monthly
//! by default; an expired key makes actions wait with `workfront_auth`, never fail.

use futures_core::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{Attach, Credentials, Input};
use crate::config::{bad, ConfigError};
use crate::workfront::Failure;

#[derive(Debug)]
pub struct ApiKey {
    key: SecretString,
    in_query: bool,
}

impl ApiKey {
    pub fn new(input: Input) -> Result<Self, ConfigError> {
        let key =
            crate::config::secret_value(input.api_key, input.api_key_file, "workfront.api_key")?
                .unwrap_or_else(|| SecretString::from(String::new()));
        let in_query = match input.api_key_in.as_str() {
            "header" => false,
            "query" => true,
            _ => return Err(bad("workfront.api_key_in", "must be header or query")),
        };
        Ok(ApiKey { key, in_query })
    }
}

impl Credentials for ApiKey {
    fn mode(&self) -> &'static str {
        "api_key"
    }

    fn attach<'a>(&'a self, _http: &'a reqwest::Client) -> BoxFuture<'a, Result<Attach, Failure>> {
        let key = self.key.expose_secret().to_string();
        let attach = if self.in_query {
            Attach {
                query: vec![("apiKey".into(), key)],
                ..Attach::default()
            }
        } else {
            Attach {
                headers: vec![("apiKey", key)],
                ..Attach::default()
            }
        };
        Box::pin(async move { Ok(attach) })
    }

    fn invalidate(&self, _generation: u64) {}

    fn describe(&self) -> Value {
        json!({"auth": "api_key",
            "api_key": if self.key.expose_secret().is_empty() { "[not set]" } else { "[redacted]" },
            "api_key_in": if self.in_query { "query" } else { "header" }})
    }
}
