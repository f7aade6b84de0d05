//! `auth = "oauth_jwt"`: a Workfront OAuth2 application of type "Machine to Machine (JWT)"
//! (Setup > System > OAuth2 Applications). An RS256 JWT (`iss` = `customer_id`, `sub` =
//! `user_id`, `exp` five minutes ahead) signed with `private_key` (PEM, PKCS#8 or PKCS#1) is
//! exchanged at `{base_url}/integrations/oauth2/api/v1/jwt/exchange` (form fields `client_id`,
//! `client_secret`, `jwt_token`) for a token sent as header `sessionID`. The answer's field names
//! are unconfirmed: `access_token`, `sessionID` or `session_id` are read, and `expires_in` when
//! present.

use std::time::Duration;

use futures_core::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{json, Value};

use super::token::Cache;
use super::{fetch_token, required, required_secret, token_failure, Attach, Credentials, Input};
use crate::config::{bad, ConfigError};
use crate::workfront::Failure;

/// How far ahead the JWT expires (Adobe recommends a few minutes; at most an hour).
const JWT_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    exp: u64,
    iat: u64,
}

pub struct OAuthJwt {
    exchange_url: String,
    client_id: String,
    client_secret: SecretString,
    customer_id: String,
    user_id: String,
    key: EncodingKey,
    token: Cache,
}

impl std::fmt::Debug for OAuthJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthJwt")
            .field("exchange_url", &self.exchange_url)
            .field("client_id", &self.client_id)
            .field("customer_id", &self.customer_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl OAuthJwt {
    pub fn new(input: Input) -> Result<Self, ConfigError> {
        const MODE: &str = "oauth_jwt";
        let pem = required_secret(
            input.private_key,
            input.private_key_file,
            "workfront.private_key",
            MODE,
        )?;
        let key = EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()).map_err(|_| {
            bad(
                "workfront.private_key",
                "is not an RSA private key in PEM (PKCS#8 or PKCS#1)",
            )
        })?;
        let base = input.base_url.as_str().trim_end_matches('/');
        Ok(OAuthJwt {
            exchange_url: format!("{base}/integrations/oauth2/api/v1/jwt/exchange"),
            client_id: required(input.client_id, "workfront.client_id", MODE)?,
            client_secret: required_secret(
                input.client_secret,
                input.client_secret_file,
                "workfront.client_secret",
                MODE,
            )?,
            customer_id: required(input.customer_id, "workfront.customer_id", MODE)?,
            user_id: required(input.user_id, "workfront.user_id", MODE)?,
            key,
            token: Cache::default(),
        })
    }

    /// A freshly signed JWT for the exchange.
    pub fn jwt(&self) -> Result<String, Failure> {
        let now = jiff::Timestamp::now().as_second().max(0) as u64;
        let claims = Claims {
            iss: &self.customer_id,
            sub: &self.user_id,
            exp: now + JWT_LIFETIME.as_secs(),
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| token_failure("signing the JWT", Some(400), e.to_string()))
    }
}

impl Credentials for OAuthJwt {
    fn mode(&self) -> &'static str {
        "oauth_jwt"
    }

    fn attach<'a>(&'a self, http: &'a reqwest::Client) -> BoxFuture<'a, Result<Attach, Failure>> {
        Box::pin(async move {
            let (token, generation) = self
                .token
                .get(|| async {
                    let jwt = self.jwt()?;
                    let form = [
                        ("client_id", self.client_id.as_str()),
                        ("client_secret", self.client_secret.expose_secret()),
                        ("jwt_token", jwt.as_str()),
                    ];
                    fetch_token(
                        http,
                        "the Workfront JWT exchange",
                        &self.exchange_url,
                        &form,
                    )
                    .await
                })
                .await?;
            Ok(Attach {
                headers: vec![("sessionID", token)],
                query: Vec::new(),
                generation,
            })
        })
    }

    fn invalidate(&self, generation: u64) {
        self.token.invalidate(generation);
    }

    fn describe(&self) -> Value {
        json!({"auth": "oauth_jwt", "client_id": self.client_id, "client_secret": "[redacted]",
            "customer_id": self.customer_id, "user_id": self.user_id, "private_key": "[redacted]",
            "exchange_url": self.exchange_url})
    }
}
