//! `auth = "ims"`: an Adobe IMS OAuth server-to-server credential (Adobe Developer Console,
//! API "Adobe Workfront"). `POST {ims_token_url}` with `grant_type=client_credentials`,
//! `client_id`, `client_secret` and `scope` (the comma-joined `scopes`); the token is sent as
//! `Authorization: Bearer`, with `x-gw-ims-org-id` when `ims_org_id` is set (which header set
//! Workfront requires is unconfirmed: both are sent when configured).

use futures_core::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::token::Cache;
use super::{fetch_token, required, required_secret, Attach, Credentials, Input};
use crate::config::ConfigError;
use crate::workfront::Failure;

#[derive(Debug)]
pub struct Ims {
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    scope: String,
    org_id: Option<String>,
    token: Cache,
}

impl Ims {
    pub fn new(input: Input) -> Result<Self, ConfigError> {
        const MODE: &str = "ims";
        let token_url = required(input.ims_token_url, "workfront.ims_token_url", MODE)?;
        url::Url::parse(&token_url)
            .map_err(|e| crate::config::bad("workfront.ims_token_url", e))?;
        Ok(Ims {
            token_url,
            client_id: required(input.client_id, "workfront.client_id", MODE)?,
            client_secret: required_secret(
                input.client_secret,
                input.client_secret_file,
                "workfront.client_secret",
                MODE,
            )?,
            scope: input
                .scopes
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(","),
            org_id: input.ims_org_id.filter(|o| !o.trim().is_empty()),
            token: Cache::default(),
        })
    }
}

impl Credentials for Ims {
    fn mode(&self) -> &'static str {
        "ims"
    }

    fn attach<'a>(&'a self, http: &'a reqwest::Client) -> BoxFuture<'a, Result<Attach, Failure>> {
        Box::pin(async move {
            let (token, generation) = self
                .token
                .get(|| async {
                    let form = [
                        ("grant_type", "client_credentials"),
                        ("client_id", self.client_id.as_str()),
                        ("client_secret", self.client_secret.expose_secret()),
                        ("scope", self.scope.as_str()),
                    ];
                    fetch_token(http, "the Adobe IMS token request", &self.token_url, &form).await
                })
                .await?;
            let mut headers = vec![("authorization", format!("Bearer {token}"))];
            if let Some(org) = &self.org_id {
                headers.push(("x-gw-ims-org-id", org.clone()));
            }
            Ok(Attach {
                headers,
                query: Vec::new(),
                generation,
            })
        })
    }

    fn invalidate(&self, generation: u64) {
        self.token.invalidate(generation);
    }

    fn describe(&self) -> Value {
        json!({"auth": "ims", "ims_token_url": self.token_url, "client_id": self.client_id,
            "client_secret": "[redacted]", "scopes": self.scope, "ims_org_id": self.org_id})
    }
}
