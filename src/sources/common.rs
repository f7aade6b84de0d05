//! Pieces every kind shares: reading headers, content types, HMACs, constant-time comparison,
//! bearer and basic credentials, signing keys from configuration, JSON helpers.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::SourceError;
use crate::config::{bad, secret_value, ConfigError, SecretKey};

/// A header's value, trimmed; `None` when missing, empty or not text.
pub fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The media type of `Content-Type`, lower-cased, without parameters ("" when missing).
pub fn media_type(headers: &HeaderMap) -> String {
    header_str(headers, header::CONTENT_TYPE.as_str())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Accepts one of `allowed` media types (parameters such as `charset` are fine), else 415.
pub fn require_media_type(headers: &HeaderMap, allowed: &[&str]) -> Result<(), SourceError> {
    let got = media_type(headers);
    if allowed.contains(&got.as_str()) {
        return Ok(());
    }
    Err(SourceError::UnsupportedMediaType(if got.is_empty() {
        format!("Content-Type is missing; send {}", allowed.join(" or "))
    } else {
        format!(
            "Content-Type {got:?} is not accepted by this source; send {}",
            allowed.join(" or ")
        )
    }))
}

/// Constant-time equality that also hides the length: both sides are hashed first.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

pub fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// True when `given` (already decoded) equals `expected(key)` for any key. Every key is tried
/// without stopping early, so timing does not tell which matched.
pub fn any_key_matches(
    keys: &[SecretKey],
    given: &[u8],
    expected: impl Fn(&[u8]) -> Vec<u8>,
) -> bool {
    if given.is_empty() {
        return false;
    }
    let mut ok = false;
    for key in keys {
        ok |= ct_eq(&expected(key.expose_secret()), given);
    }
    ok
}

/// Decodes a hex signature (any case), or base64 when `base64_too`.
pub fn decode_signature(text: &str, base64_too: bool) -> Option<Vec<u8>> {
    let t = text.trim();
    hex::decode(t)
        .ok()
        .or_else(|| base64_too.then(|| STANDARD.decode(t).ok()).flatten())
}

/// A signature header that must be present.
pub fn signature_header(headers: &HeaderMap, name: &str) -> Result<String, SourceError> {
    header_str(headers, name)
        .ok_or_else(|| SourceError::MissingSignature(format!("{name} header is missing")))
}

/// `Authorization: Bearer <token>` must carry one of `tokens`.
pub fn check_bearer(headers: &HeaderMap, tokens: &Tokens) -> Result<(), SourceError> {
    let given = authorization(headers, "Bearer")?;
    if tokens.any(|t| ct_eq(given.as_bytes(), t.as_bytes())) {
        Ok(())
    } else {
        Err(SourceError::InvalidToken(
            "the bearer token is not valid for this source".into(),
        ))
    }
}

/// `Authorization: Basic <base64 user:password>` must carry these credentials.
pub fn check_basic(
    headers: &HeaderMap,
    username: &str,
    password: &SecretString,
) -> Result<(), SourceError> {
    let given = authorization(headers, "Basic")?;
    let decoded = STANDARD
        .decode(given.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            SourceError::InvalidToken("basic credentials are not base64 of user:password".into())
        })?;
    let (user, pass) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    // Both comparisons always run, so timing does not tell which part was wrong.
    let user_ok = ct_eq(user.as_bytes(), username.as_bytes());
    let pass_ok = ct_eq(pass.as_bytes(), password.expose_secret().as_bytes());
    if user_ok & pass_ok {
        Ok(())
    } else {
        Err(SourceError::InvalidToken(
            "the basic credentials are not valid for this source".into(),
        ))
    }
}

pub fn authorization(headers: &HeaderMap, scheme: &str) -> Result<String, SourceError> {
    let value = header_str(headers, header::AUTHORIZATION.as_str())
        .ok_or_else(|| SourceError::MissingSignature("Authorization header is missing".into()))?;
    let (given_scheme, rest) = value.split_once(' ').unwrap_or((value.as_str(), ""));
    if !given_scheme.eq_ignore_ascii_case(scheme) || rest.trim().is_empty() {
        return Err(SourceError::InvalidToken(format!(
            "Authorization must use the {scheme} scheme"
        )));
    }
    Ok(rest.trim().to_string())
}

/// The signing keys of a source from `secret`, `secret_file` and `secrets` (rotation), each
/// turned into key bytes by `decode` (vendors: the string's own bytes).
pub fn signing_keys(
    source: &str,
    secret: Option<SecretString>,
    secret_file: Option<std::path::PathBuf>,
    secrets: Option<Vec<SecretString>>,
    decode: impl Fn(&str, &str) -> Result<SecretKey, ConfigError>,
) -> Result<Vec<SecretKey>, ConfigError> {
    let key = |k: &str| format!("sources.{source}.{k}");
    let mut all = Vec::new();
    if let Some(one) = secret_value(secret, secret_file, &key("secret"))? {
        all.push((key("secret"), one));
    }
    for (i, s) in secrets.unwrap_or_default().into_iter().enumerate() {
        if !s.expose_secret().is_empty() {
            all.push((format!("{}[{i}]", key("secrets")), s));
        }
    }
    if all.is_empty() {
        return Err(bad(
            &key("secret"),
            "a signing secret is required (secret, secret_file or secrets)",
        ));
    }
    all.iter()
        .map(|(k, s)| decode(s.expose_secret(), k))
        .collect()
}

/// `secrets` as a list, or as one comma-separated string (how the environment gives it:
/// `OFFBOARD__SOURCES__HR__SECRETS=whsec_new,whsec_old`); never echoed in an error.
pub fn secret_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<SecretString>>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let v: Option<OneOrMany> = serde::Deserialize::deserialize(d).map_err(|_| {
        serde::de::Error::custom(
            "`secrets` must be a list of strings (or one comma-separated string)",
        )
    })?;
    Ok(v.map(|v| match v {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_string()))
            .collect(),
        OneOrMany::Many(all) => all.into_iter().map(SecretString::from).collect(),
    }))
}

/// The table of a kind whose only keys are its signing secret (`secret`, `secret_file`,
/// `secrets` during rotation): HiBob, Gusto, Deel.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretTable {
    secret: Option<SecretString>,
    secret_file: Option<std::path::PathBuf>,
    #[serde(default, deserialize_with = "secret_list")]
    secrets: Option<Vec<SecretString>>,
}

/// The vendor signing keys of source `name` from its table (the secrets' own bytes).
pub fn vendor_keys(name: &str, table: Value) -> Result<Vec<SecretKey>, ConfigError> {
    let t: SecretTable = super::registry::table(name, table)?;
    signing_keys(name, t.secret, t.secret_file, t.secrets, raw_key)
}

/// A vendor secret: the bytes of the string the vendor issued, as-is.
pub fn raw_key(secret: &str, _key: &str) -> Result<SecretKey, ConfigError> {
    Ok(std::sync::Arc::new(SecretBox::new(
        secret.as_bytes().to_vec().into_boxed_slice(),
    )))
}

/// The tokens a source accepts: `token` (or `token_file`) and, during a rotation, `tokens` — so
/// the sender can be switched to the new token while the old one still works (SECURITY.md).
#[derive(Debug)]
pub struct Tokens(Vec<SecretString>);

impl Tokens {
    /// The first configured token: the one `offboard sign` and the tests send.
    pub fn first(&self) -> &SecretString {
        &self.0[0]
    }

    /// True when `matches` holds for any token; every token is compared, so timing does not
    /// tell which one matched.
    pub fn any(&self, matches: impl Fn(&str) -> bool) -> bool {
        self.0
            .iter()
            .fold(false, |hit, t| matches(t.expose_secret()) | hit)
    }
}

/// The required tokens of source `source` from `token` / `token_file` / `tokens` (a list, or
/// one comma-separated string from the environment).
pub fn required_tokens(
    source: &str,
    token: Option<SecretString>,
    token_file: Option<std::path::PathBuf>,
    tokens: Option<Vec<SecretString>>,
) -> Result<Tokens, ConfigError> {
    let key = format!("sources.{source}.token");
    let mut all: Vec<SecretString> = secret_value(token, token_file, &key)?.into_iter().collect();
    all.extend(
        tokens
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.expose_secret().is_empty()),
    );
    if all.is_empty() {
        return Err(bad(
            &key,
            "a token is required (token, token_file or tokens)",
        ));
    }
    Ok(Tokens(all))
}

/// The body as a JSON object, else `malformed_payload`.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, SourceError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SourceError::Malformed(format!("body is not JSON: {e}")))?;
    match value {
        Value::Object(o) => Ok(o),
        _ => Err(SourceError::Malformed("body must be a JSON object".into())),
    }
}

/// The first of `paths` (each a list of keys into nested objects) that holds a string or a
/// number, as text.
pub fn text_at(root: &Value, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| {
        let mut v = root;
        for k in *path {
            v = v.get(k)?;
        }
        scalar_text(v)
    })
}

/// A string (trimmed, non-empty) or a number, as text.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The SHA-256 of the raw body: the dedupe key of kinds without a delivery id.
pub fn body_hash_key(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// An email as the vendors send it, checked like the standard kind does (`None` for blank).
pub fn email(value: Option<String>, field: &str) -> Result<Option<String>, SourceError> {
    match value {
        None => Ok(None),
        Some(s) if crate::intake::data::looks_like_email(&s) => Ok(Some(s)),
        Some(s) => Err(SourceError::InvalidEvent(format!(
            "`{field}` {s:?} is not an email address"
        ))),
    }
}

/// At least one identifier, else `invalid_event`.
pub fn require_identifier(
    employee_id: &Option<String>,
    email: &Option<String>,
    what: &str,
) -> Result<(), SourceError> {
    if employee_id.is_none() && email.is_none() {
        return Err(SourceError::InvalidEvent(format!(
            "the event names no employee: {what}"
        )));
    }
    Ok(())
}

/// An effective date or time as vendors send it; blank and `0000-00-00` (BambooHR's "no date")
/// are none; anything else that is no date is `invalid_event`.
pub fn effective(
    value: Option<String>,
    field: &str,
) -> Result<Option<crate::domain::Effective>, SourceError> {
    match value.as_deref().map(str::trim) {
        None | Some("") | Some("0000-00-00") => Ok(None),
        Some(s) => crate::domain::Effective::parse(s).map(Some).ok_or_else(|| {
            SourceError::InvalidEvent(format!(
                "`{field}` {s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time"
            ))
        }),
    }
}

/// A vendor's time: RFC 3339, `+0000`-style offsets, integer Unix seconds, or a local time
/// without a zone (HiBob's `triggeredAt`), read in `tz`. `None` when it is none of these.
pub fn vendor_time(value: &Value, tz: &jiff::tz::TimeZone) -> Option<jiff::Timestamp> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .and_then(|s| jiff::Timestamp::from_second(s).ok()),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(secs) = s.parse::<i64>() {
                return jiff::Timestamp::from_second(secs).ok();
            }
            if let Some(t) = crate::domain::parse_rfc3339(s) {
                return Some(t);
            }
            if let Ok(t) =
                jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%z", s).and_then(|p| p.to_timestamp())
            {
                return Some(t);
            }
            s.parse::<jiff::civil::DateTime>()
                .ok()
                .and_then(|dt| dt.to_zoned(tz.clone()).ok())
                .map(|z| z.timestamp())
        }
        _ => None,
    }
}

/// The first characters of a token and a mask, for logs that must help without leaking it.
pub fn masked(token: &str) -> String {
    let head: String = token.chars().take(4).collect();
    format!("{head}***")
}

/// An event of offboard's vocabulary from a vendor's delivery.
pub fn event(
    kind: crate::domain::EventType,
    sender_type: &str,
    employee_id: Option<String>,
    email: Option<String>,
    name: Option<String>,
    effective: Option<crate::domain::Effective>,
    occurred_at: jiff::Timestamp,
) -> crate::domain::Event {
    crate::domain::Event {
        kind,
        sender_type: sender_type.to_string(),
        employee: crate::domain::EmployeeRef { employee_id, email },
        name,
        effective,
        occurred_at,
    }
}

#[cfg(test)]
pub mod test_support {
    //! Building requests in the kinds' unit tests.
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    pub fn headers(pairs: &[(String, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Receives `body` signed by the source itself, at `now`.
    pub fn receive_signed(
        s: &dyn crate::sources::Source,
        body: &[u8],
        now: jiff::Timestamp,
        query: Option<&str>,
    ) -> Result<crate::sources::Outcome, SourceError> {
        let h = headers(&s.sign(body, now));
        receive_with(s, &h, body, now, query)
    }

    pub fn receive_with(
        s: &dyn crate::sources::Source,
        h: &HeaderMap,
        body: &[u8],
        now: jiff::Timestamp,
        query: Option<&str>,
    ) -> Result<crate::sources::Outcome, SourceError> {
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        s.receive(&crate::sources::Request {
            headers: h,
            query,
            body,
            now,
            timezone: &tz,
        })
    }

    pub fn events(o: crate::sources::Outcome) -> Vec<crate::domain::Event> {
        match o {
            crate::sources::Outcome::Events { events, .. } => events,
            other => panic!("expected events, got {other:?}"),
        }
    }

    pub fn now() -> jiff::Timestamp {
        "2026-11-28T15:00:00Z".parse().unwrap()
    }
}
