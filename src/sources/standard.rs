//! Kind `standard`: the vendor-neutral format of SPEC §4.1, for any HR system or middleware.
//!
//! Signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`; secret
//! `whsec_<base64>`; several during rotation; `tolerance` both ways), or for senders that cannot
//! sign, `auth = "bearer"` (`token`) or `auth = "basic"` (`username`, `password`). Dedupe key:
//! `webhook-id` (the body's hash for bearer and basic). Body:
//! `{"type": "...", "timestamp": "RFC 3339", "data": {"employee_id", "email", "name", "effective_at"}}`
//! where `data` is the shared object of [`crate::intake::data`].

use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::common;
use super::{signature, Outcome, Request, Source, SourceError};
use crate::config::{bad, decode_whsec, parse_duration, secret_value, ConfigError, SecretKey};
use crate::domain::{parse_rfc3339, Event, EventType};
use crate::intake::data::parse_data;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    auth: Option<String>,
    secret: Option<SecretString>,
    secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::common::secret_list")]
    secrets: Option<Vec<SecretString>>,
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::common::secret_list")]
    tokens: Option<Vec<SecretString>>,
    username: Option<String>,
    password: Option<SecretString>,
    password_file: Option<PathBuf>,
    tolerance: Option<String>,
}

/// How a `standard` source proves a delivery is authentic.
#[derive(Debug)]
enum Auth {
    /// Standard Webhooks HMAC-SHA256 with these keys (decoded `whsec_` secrets).
    Signature {
        keys: Vec<SecretKey>,
    },
    Bearer {
        token: common::Tokens,
    },
    Basic {
        username: String,
        password: SecretString,
    },
}

#[derive(Debug)]
pub struct Standard {
    auth: Auth,
    tolerance: Duration,
}

impl Standard {
    pub fn from_table(name: &str, table: Value) -> Result<Self, ConfigError> {
        let t: Table = super::registry::table(name, table)?;
        let key = |k: &str| format!("sources.{name}.{k}");
        let tolerance = match &t.tolerance {
            Some(s) => parse_duration(s).map_err(|e| bad(&key("tolerance"), e))?,
            None => Duration::from_secs(300),
        };
        let auth = match t.auth.as_deref().unwrap_or("signature") {
            "signature" => Auth::Signature {
                keys: common::signing_keys(name, t.secret, t.secret_file, t.secrets, decode_whsec)?,
            },
            "bearer" => Auth::Bearer {
                token: common::required_tokens(name, t.token, t.token_file, t.tokens)?,
            },
            "basic" => Auth::Basic {
                username: t
                    .username
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| bad(&key("username"), "is required with auth = \"basic\""))?,
                password: secret_value(t.password, t.password_file, &key("password"))?
                    .ok_or_else(|| bad(&key("password"), "is required with auth = \"basic\""))?,
            },
            other => {
                return Err(bad(
                    &key("auth"),
                    format!("unknown value {other:?}; use signature, bearer or basic"),
                ))
            }
        };
        Ok(Standard { auth, tolerance })
    }

    /// Checks the delivery's signature or credentials; gives the Standard Webhooks `webhook-id`.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: jiff::Timestamp,
    ) -> Result<Option<String>, SourceError> {
        match &self.auth {
            Auth::Signature { keys } => {
                let sig = common::signature_header(headers, "webhook-signature")?;
                let id = common::signature_header(headers, "webhook-id")?;
                let ts = common::signature_header(headers, "webhook-timestamp")?;
                if !signature::verify(keys, &id, &ts, body, &sig) {
                    return Err(SourceError::InvalidSignature(
                        "webhook-signature does not match this body with any configured secret"
                            .into(),
                    ));
                }
                check_timestamp(&ts, now, self.tolerance)?;
                Ok(Some(id))
            }
            Auth::Bearer { token } => common::check_bearer(headers, token).map(|_| None),
            Auth::Basic { username, password } => {
                common::check_basic(headers, username, password).map(|_| None)
            }
        }
    }
}

/// A signed Unix-seconds timestamp must be a plausible integer and within `tolerance` of now,
/// past or future (shared with the kinds that sign a timestamp).
pub fn check_timestamp(
    ts: &str,
    now: jiff::Timestamp,
    tolerance: Duration,
) -> Result<(), SourceError> {
    let sent: i64 = ts
        .trim()
        .parse()
        .ok()
        .filter(|s: &i64| s.unsigned_abs() < 1 << 40)
        .ok_or_else(|| {
            SourceError::InvalidSignature("the signed timestamp is not integer Unix seconds".into())
        })?;
    let skew = (now.as_second() - sent).unsigned_abs();
    if skew > tolerance.as_secs() {
        return Err(SourceError::TimestampOutOfTolerance(format!(
            "the signed timestamp is {skew} s away from now; the tolerance is {} s",
            tolerance.as_secs()
        )));
    }
    Ok(())
}

impl Source for Standard {
    fn kind(&self) -> &'static str {
        "standard"
    }

    fn receive(&self, req: &Request<'_>) -> Result<Outcome, SourceError> {
        let id = self.authenticate(req.headers, req.body, req.now)?;
        common::require_media_type(req.headers, &["application/json"])?;
        let dedupe_key = match id {
            Some(id) => format!("id:{id}"),
            None => common::body_hash_key(req.body),
        };
        Ok(match parse(req.body, req.now)? {
            Parsed::Ignored(reason) => Outcome::Ignored(reason),
            Parsed::Events(events) => Outcome::Events { events, dedupe_key },
        })
    }

    fn sign(&self, body: &[u8], now: jiff::Timestamp) -> Vec<(String, String)> {
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        match &self.auth {
            Auth::Signature { keys } => {
                let id = crate::domain::new_id("msg");
                let ts = now.as_second().to_string();
                let sig = signature::sign(keys[0].expose_secret(), &id, &ts, body);
                headers.push(("webhook-id".into(), id));
                headers.push(("webhook-timestamp".into(), ts));
                headers.push(("webhook-signature".into(), sig));
            }
            Auth::Bearer { token } => headers.push((
                "Authorization".into(),
                format!("Bearer {}", token.first().expose_secret()),
            )),
            Auth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose_secret());
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                headers.push(("Authorization".into(), format!("Basic {b64}")));
            }
        }
        headers
    }

    fn describe(&self) -> Value {
        let auth = match &self.auth {
            Auth::Signature { keys } => {
                json!({"auth": "signature", "secrets": vec!["[redacted]"; keys.len()]})
            }
            Auth::Bearer { .. } => json!({"auth": "bearer", "token": "[redacted]"}),
            Auth::Basic { username, .. } => {
                json!({"auth": "basic", "username": username, "password": "[redacted]"})
            }
        };
        let mut v =
            json!({"kind": "standard", "tolerance": crate::cli::fmt_duration(self.tolerance)});
        if let (Value::Object(a), Value::Object(b)) = (&mut v, auth) {
            a.extend(b);
        }
        v
    }
}

/// What a standard body said.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Events(Vec<Event>),
    Ignored(String),
}

pub fn parse(body: &[u8], received_at: jiff::Timestamp) -> Result<Parsed, SourceError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SourceError::Malformed(format!("body is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(SourceError::Malformed("body must be a JSON object".into()));
    };
    let sender_type = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(SourceError::Malformed("`type` must be a string".into())),
        None => return Err(SourceError::Malformed("`type` is missing".into())),
    };
    let Some(kind) = EventType::parse(&sender_type) else {
        return Ok(Parsed::Ignored(format!(
            "event type {sender_type:?} does not concern offboarding"
        )));
    };
    let occurred_at = match obj.get("timestamp") {
        None | Some(Value::Null) => received_at,
        Some(Value::String(s)) => parse_rfc3339(s).ok_or_else(|| {
            SourceError::InvalidEvent(format!("`timestamp` {s:?} is not an RFC 3339 date-time"))
        })?,
        Some(_) => {
            return Err(SourceError::Malformed(
                "`timestamp` must be a string".into(),
            ))
        }
    };
    let data = match obj.get("data") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(SourceError::Malformed("`data` must be an object".into())),
        None => return Err(SourceError::Malformed("`data` is missing".into())),
    };
    let fields = parse_data(data)?;
    Ok(Parsed::Events(vec![Event {
        kind,
        sender_type,
        employee: fields.employee,
        name: fields.name,
        effective: fields.effective,
        occurred_at,
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Effective;

    fn now() -> jiff::Timestamp {
        "2026-11-28T15:00:00Z".parse().unwrap()
    }

    fn events(body: &str) -> Vec<Event> {
        match parse(body.as_bytes(), now()).unwrap() {
            Parsed::Events(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_spec_example_parses_into_one_termination() {
        let e = events(
            r#"{"type":"employee.terminated","timestamp":"2026-11-28T14:03:00Z",
            "data":{"employee_id":"E-1042","email":"jane.doe@example.com","name":"Jane Doe","effective_at":"2026-12-01"}}"#,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, EventType::Terminated);
        assert_eq!(e[0].employee.employee_id.as_deref(), Some("E-1042"));
        assert_eq!(e[0].employee.email.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(
            e[0].effective,
            Some(Effective::Date(jiff::civil::date(2026, 12, 1)))
        );
        assert_eq!(e[0].occurred_at, "2026-11-28T14:03:00Z".parse().unwrap());
    }

    #[test]
    fn other_types_are_ignored() {
        let p = parse(br#"{"type":"employee.updated","data":{}}"#, now()).unwrap();
        assert!(matches!(p, Parsed::Ignored(r) if r.contains("employee.updated")));
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        for body in [
            "not json",
            "[1,2]",
            "\"x\"",
            "{}",
            r#"{"type":1}"#,
            r#"{"type":"employee.terminated"}"#,
            r#"{"type":"employee.terminated","data":[]}"#,
        ] {
            assert!(
                matches!(
                    parse(body.as_bytes(), now()),
                    Err(SourceError::Malformed(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn unusable_events_are_invalid() {
        for body in [
            r#"{"type":"employee.terminated","data":{"name":"Nobody"}}"#,
            r#"{"type":"employee.terminated","data":{"employee_id":"  ","email":""}}"#,
            r#"{"type":"employee.terminated","data":{"email":"not-an-email"}}"#,
            r#"{"type":"employee.terminated","data":{"email":"a@b.c","effective_at":"2026-02-30"}}"#,
            r#"{"type":"employee.terminated","data":{"email":"a@b.c","effective_at":"next week"}}"#,
            r#"{"type":"employee.terminated","timestamp":"yesterday","data":{"email":"a@b.c"}}"#,
            r#"{"type":"employee.terminated","data":{"employee_id":["x"]}}"#,
        ] {
            assert!(
                matches!(
                    parse(body.as_bytes(), now()),
                    Err(SourceError::InvalidEvent(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn numeric_employee_ids_are_kept_as_text_and_a_missing_timestamp_is_the_receipt_time() {
        let e = events(r#"{"type":"employee.terminated","data":{"employee_id":1042}}"#);
        assert_eq!(e[0].employee.employee_id.as_deref(), Some("1042"));
        assert_eq!(e[0].occurred_at, now());
        assert_eq!(e[0].effective, None);
    }

    mod auth {
        use super::super::*;
        use axum::http::{HeaderName, HeaderValue};

        const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

        fn source(table: Value) -> Standard {
            Standard::from_table("hr", table).unwrap()
        }

        fn signed_source() -> Standard {
            source(json!({"secret": SECRET}))
        }

        fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
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
            let got = signed_source()
                .authenticate(&signed(b"{}", now.as_second()), b"{}", now)
                .unwrap();
            assert_eq!(got.as_deref(), Some("msg_1"));
        }

        #[test]
        fn missing_headers_are_missing_signature() {
            let now = jiff::Timestamp::now();
            for header in ["webhook-signature", "webhook-timestamp", "webhook-id"] {
                let mut h = signed(b"{}", now.as_second());
                h.remove(header);
                assert!(matches!(
                    signed_source().authenticate(&h, b"{}", now),
                    Err(SourceError::MissingSignature(_))
                ));
            }
        }

        #[test]
        fn a_correct_signature_outside_the_tolerance_either_way_is_out_of_tolerance() {
            let now = jiff::Timestamp::now();
            for skew in [-301i64, 301] {
                let h = signed(b"{}", now.as_second() + skew);
                assert!(matches!(
                    signed_source().authenticate(&h, b"{}", now),
                    Err(SourceError::TimestampOutOfTolerance(_))
                ));
            }
            let h = signed(b"{}", now.as_second() - 299);
            assert!(signed_source().authenticate(&h, b"{}", now).is_ok());
        }

        #[test]
        fn implausible_timestamps_are_invalid_signature_without_overflow() {
            let now = jiff::Timestamp::now();
            for ts in [
                "99999999999999999999",
                "-9223372036854775808",
                "1e9",
                "",
                " 12 3",
            ] {
                assert!(
                    matches!(
                        check_timestamp(ts, now, Duration::from_secs(300)),
                        Err(SourceError::InvalidSignature(_))
                    ),
                    "{ts:?}"
                );
            }
        }

        #[test]
        fn a_wrong_signature_with_a_stale_timestamp_is_invalid_signature() {
            let now = jiff::Timestamp::now();
            let h = signed(b"{}", now.as_second() - 10_000);
            assert!(matches!(
                signed_source().authenticate(&h, b"{\"x\":1}", now),
                Err(SourceError::InvalidSignature(_))
            ));
        }

        #[test]
        fn bearer_and_basic_tokens_are_checked() {
            let now = jiff::Timestamp::now();
            let bearer = source(json!({"auth": "bearer", "token": "tok-123"}));
            let ok = headers(&[("authorization", "Bearer tok-123")]);
            assert!(bearer.authenticate(&ok, b"", now).is_ok());
            for bad in ["Bearer nope", "Basic tok-123"] {
                let h = headers(&[("authorization", bad)]);
                assert!(matches!(
                    bearer.authenticate(&h, b"", now),
                    Err(SourceError::InvalidToken(_))
                ));
            }
            assert!(matches!(
                bearer.authenticate(&HeaderMap::new(), b"", now),
                Err(SourceError::MissingSignature(_))
            ));
            let basic = source(json!({"auth": "basic", "username": "wd", "password": "pw"}));
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let good = headers(&[("authorization", &format!("Basic {}", b64("wd:pw")))]);
            assert!(basic.authenticate(&good, b"", now).is_ok());
            let wrong = headers(&[("authorization", &format!("Basic {}", b64("wd:px")))]);
            assert!(matches!(
                basic.authenticate(&wrong, b"", now),
                Err(SourceError::InvalidToken(_))
            ));
        }

        #[test]
        fn signing_and_receiving_agree_and_json_with_a_charset_is_accepted() {
            let s = signed_source();
            let now = jiff::Timestamp::now();
            let body = br#"{"type":"employee.terminated","data":{"employee_id":"E1"}}"#;
            let mut h = HeaderMap::new();
            for (k, v) in s.sign(body, now) {
                h.insert(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(&v).unwrap(),
                );
            }
            h.insert(
                "content-type",
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            let tz = jiff::tz::TimeZone::UTC;
            let req = Request {
                headers: &h,
                query: None,
                body,
                now,
                timezone: &tz,
            };
            assert!(matches!(s.receive(&req), Ok(Outcome::Events { .. })));
            h.insert("content-type", HeaderValue::from_static("text/plain"));
            let req = Request {
                headers: &h,
                query: None,
                body,
                now,
                timezone: &tz,
            };
            assert!(matches!(
                s.receive(&req),
                Err(SourceError::UnsupportedMediaType(_))
            ));
        }
    }
}
