//! Senders: authenticate a delivery, then parse it into events.
//!
//! Each kind (SPEC §4) decides how a delivery proves it is authentic and what its body means. The
//! handler calls [`authenticate`] before looking at the body, then [`parse`]. Both are pure: no
//! I/O, so they are unit-tested with the vendors' vectors.

pub mod signature;
pub mod standard;

use axum::http::{header, HeaderMap};
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{SourceAuth, SourceKind, SourceSettings};
use crate::domain::Event;

/// Why a delivery was refused; each maps to one status and error code of SPEC §4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    MissingSignature(String),
    InvalidSignature(String),
    TimestampOutOfTolerance(String),
    InvalidToken(String),
    UnsupportedMediaType(String),
    Malformed(String),
    InvalidEvent(String),
}

/// What an authentic delivery said.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Events(Vec<Event>),
    /// Authentic, but nothing about offboarding.
    Ignored(String),
}

/// The result of authentication: the sender's delivery id, when its kind has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub delivery_id: Option<String>,
}

/// Checks the delivery's signature or token. Runs before the body is parsed.
pub fn authenticate(
    src: &SourceSettings,
    headers: &HeaderMap,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<Authenticated, SourceError> {
    let webhook_id = header_str(headers, "webhook-id");
    match &src.auth {
        SourceAuth::Signature { keys } => {
            let sig = header_str(headers, "webhook-signature").ok_or_else(|| {
                SourceError::MissingSignature("webhook-signature header is missing".into())
            })?;
            let id = webhook_id.clone().ok_or_else(|| {
                SourceError::MissingSignature("webhook-id header is missing".into())
            })?;
            let ts = header_str(headers, "webhook-timestamp").ok_or_else(|| {
                SourceError::MissingSignature("webhook-timestamp header is missing".into())
            })?;
            if !signature::verify(keys, &id, &ts, body, &sig) {
                return Err(SourceError::InvalidSignature(
                    "webhook-signature does not match this body with any configured secret".into(),
                ));
            }
            let sent: i64 = ts.trim().parse().map_err(|_| {
                SourceError::InvalidSignature(
                    "webhook-timestamp is not integer Unix seconds".into(),
                )
            })?;
            let skew = (now.as_second() - sent).unsigned_abs();
            if skew > src.tolerance.as_secs() {
                return Err(SourceError::TimestampOutOfTolerance(format!(
                    "webhook-timestamp is {skew} s away from now; the tolerance is {} s",
                    src.tolerance.as_secs()
                )));
            }
        }
        SourceAuth::Bearer { token } => {
            let given = authorization(headers, "Bearer")?;
            if !ct_eq(given.as_bytes(), token.expose_secret().as_bytes()) {
                return Err(SourceError::InvalidToken(
                    "the bearer token is not valid for this source".into(),
                ));
            }
        }
        SourceAuth::Basic { username, password } => {
            let given = authorization(headers, "Basic")?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(given.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    SourceError::InvalidToken(
                        "basic credentials are not base64 of user:password".into(),
                    )
                })?;
            let (user, pass) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
            // Both comparisons always run, so timing does not tell which part was wrong.
            let user_ok = ct_eq(user.as_bytes(), username.as_bytes());
            let pass_ok = ct_eq(pass.as_bytes(), password.expose_secret().as_bytes());
            if !(user_ok & pass_ok) {
                return Err(SourceError::InvalidToken(
                    "the basic credentials are not valid for this source".into(),
                ));
            }
        }
    }
    Ok(Authenticated {
        delivery_id: webhook_id,
    })
}

/// Checks the content type this kind accepts.
pub fn check_content_type(kind: SourceKind, headers: &HeaderMap) -> Result<(), SourceError> {
    let ct = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match kind {
        SourceKind::Standard if essence == "application/json" => Ok(()),
        SourceKind::Standard => Err(SourceError::UnsupportedMediaType(if ct.is_empty() {
            "Content-Type is missing; send application/json".into()
        } else {
            format!("Content-Type {ct:?} is not accepted; send application/json")
        })),
    }
}

/// Parses an authentic body into events.
pub fn parse(
    kind: SourceKind,
    body: &[u8],
    received_at: jiff::Timestamp,
) -> Result<Parsed, SourceError> {
    match kind {
        SourceKind::Standard => standard::parse(body, received_at),
    }
}

/// The dedupe key of a delivery: the sender's delivery id where its kind has one, else the
/// SHA-256 of the raw body.
pub fn dedupe_key(auth: &Authenticated, body: &[u8]) -> String {
    match &auth.delivery_id {
        Some(id) => format!("id:{id}"),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn authorization(headers: &HeaderMap, scheme: &str) -> Result<String, SourceError> {
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

/// Constant-time equality that also hides the length: both sides are hashed first.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{decode_whsec, SourceKind};
    use axum::http::HeaderValue;
    use secrecy::SecretString;
    use std::time::Duration;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn signed_source() -> SourceSettings {
        SourceSettings {
            name: "hr".into(),
            kind: SourceKind::Standard,
            auth: SourceAuth::Signature {
                keys: vec![decode_whsec(SECRET, "k").unwrap()],
            },
            tolerance: Duration::from_secs(300),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn signed(body: &[u8], ts: i64) -> HeaderMap {
        let key = decode_whsec(SECRET, "k").unwrap();
        let sig = signature::sign(key.expose_secret(), "msg_1", &ts.to_string(), body);
        headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", &ts.to_string()),
            ("webhook-signature", &sig),
        ])
    }

    #[test]
    fn a_fresh_correct_signature_passes_and_yields_the_delivery_id() {
        let now = jiff::Timestamp::now();
        let got = authenticate(
            &signed_source(),
            &signed(b"{}", now.as_second()),
            b"{}",
            now,
        )
        .unwrap();
        assert_eq!(got.delivery_id.as_deref(), Some("msg_1"));
    }

    #[test]
    fn missing_headers_are_missing_signature() {
        let now = jiff::Timestamp::now();
        let mut h = signed(b"{}", now.as_second());
        h.remove("webhook-signature");
        assert!(matches!(
            authenticate(&signed_source(), &h, b"{}", now),
            Err(SourceError::MissingSignature(_))
        ));
        let mut h = signed(b"{}", now.as_second());
        h.remove("webhook-timestamp");
        assert!(matches!(
            authenticate(&signed_source(), &h, b"{}", now),
            Err(SourceError::MissingSignature(_))
        ));
    }

    #[test]
    fn a_correct_signature_outside_the_tolerance_either_way_is_out_of_tolerance() {
        let now = jiff::Timestamp::now();
        for skew in [-301i64, 301] {
            let h = signed(b"{}", now.as_second() + skew);
            assert!(matches!(
                authenticate(&signed_source(), &h, b"{}", now),
                Err(SourceError::TimestampOutOfTolerance(_))
            ));
        }
        let h = signed(b"{}", now.as_second() - 299);
        assert!(authenticate(&signed_source(), &h, b"{}", now).is_ok());
    }

    #[test]
    fn a_wrong_signature_with_a_stale_timestamp_is_invalid_signature() {
        let now = jiff::Timestamp::now();
        let h = signed(b"{}", now.as_second() - 10_000);
        assert!(matches!(
            authenticate(&signed_source(), &h, b"{\"x\":1}", now),
            Err(SourceError::InvalidSignature(_))
        ));
    }

    #[test]
    fn bearer_and_basic_tokens_are_checked() {
        let now = jiff::Timestamp::now();
        let mut src = signed_source();
        src.auth = SourceAuth::Bearer {
            token: SecretString::from("tok-123".to_string()),
        };
        assert!(authenticate(
            &src,
            &headers(&[("authorization", "Bearer tok-123")]),
            b"",
            now
        )
        .is_ok());
        assert!(matches!(
            authenticate(
                &src,
                &headers(&[("authorization", "Bearer nope")]),
                b"",
                now
            ),
            Err(SourceError::InvalidToken(_))
        ));
        assert!(matches!(
            authenticate(
                &src,
                &headers(&[("authorization", "Basic tok-123")]),
                b"",
                now
            ),
            Err(SourceError::InvalidToken(_))
        ));
        assert!(matches!(
            authenticate(&src, &HeaderMap::new(), b"", now),
            Err(SourceError::MissingSignature(_))
        ));

        src.auth = SourceAuth::Basic {
            username: "wd".into(),
            password: SecretString::from("pw".to_string()),
        };
        let good = base64::engine::general_purpose::STANDARD.encode("wd:pw");
        let bad = base64::engine::general_purpose::STANDARD.encode("wd:px");
        assert!(authenticate(
            &src,
            &headers(&[("authorization", &format!("Basic {good}"))]),
            b"",
            now
        )
        .is_ok());
        assert!(matches!(
            authenticate(
                &src,
                &headers(&[("authorization", &format!("Basic {bad}"))]),
                b"",
                now
            ),
            Err(SourceError::InvalidToken(_))
        ));
    }

    #[test]
    fn json_is_accepted_with_parameters_and_other_types_are_not() {
        let ok = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(check_content_type(SourceKind::Standard, &ok).is_ok());
        let ok = headers(&[("content-type", "Application/JSON")]);
        assert!(check_content_type(SourceKind::Standard, &ok).is_ok());
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            let h = headers(&[("content-type", bad)]);
            assert!(
                check_content_type(SourceKind::Standard, &h).is_err(),
                "{bad}"
            );
        }
        assert!(check_content_type(SourceKind::Standard, &HeaderMap::new()).is_err());
    }

    #[test]
    fn the_dedupe_key_is_the_delivery_id_or_the_body_hash() {
        let with = Authenticated {
            delivery_id: Some("msg_1".into()),
        };
        assert_eq!(dedupe_key(&with, b"a"), "id:msg_1");
        let without = Authenticated { delivery_id: None };
        assert_eq!(dedupe_key(&without, b"a"), dedupe_key(&without, b"a"));
        assert_ne!(dedupe_key(&without, b"a"), dedupe_key(&without, b"b"));
    }
}
