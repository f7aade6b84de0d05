//! Console sessions: a signed cookie, no server-side state, so that every replica accepts a
//! sign-in made on another and nothing has to be cleaned up.
//!
//! The cookie is `v1.<expires_ms>.<session id>.<operator, base64url>.<HMAC-SHA256, base64url>`,
//! keyed by a key derived from `admin.token`: rotating the token ends every session. The CSRF
//! token of a session is another HMAC of its id under the same key, so a form's token is valid
//! for that session only and a page from another origin cannot know it.
//!
//! Signing out clears the cookie in the browser; a copy taken before would stay valid until it
//! expires (`admin.console_session`), as with any stateless session. The cookie is `HttpOnly` and
//! `SameSite=Strict`, which is what keeps such a copy out of reach.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "offboard_session";
/// The longest operator name kept (it goes into every audit entry the operator causes).
pub const MAX_OPERATOR_CHARS: usize = 80;

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub operator: String,
    pub id: String,
    pub expires_ms: i64,
}

/// The key that signs sessions, derived from the admin token.
pub struct Keys {
    key: [u8; 32],
}

impl Keys {
    pub fn from_token(token: &str) -> Keys {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"offboard console session key v1");
        Keys {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The cookie value of a new session.
    pub fn issue(&self, operator: &str, id: &str, expires_ms: i64) -> String {
        let payload = format!(
            "v1.{expires_ms}.{id}.{}",
            URL_SAFE_NO_PAD.encode(operator.as_bytes())
        );
        let mac = self.mac(&[payload.as_bytes()]);
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// The session a cookie value stands for, if it was signed with this key and has not expired.
    pub fn open(&self, value: &str, now_ms: i64) -> Option<Session> {
        let (payload, mac) = value.rsplit_once('.')?;
        let given = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let expected = self.mac(&[payload.as_bytes()]);
        if !bool::from(given.as_slice().ct_eq(&expected)) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("v1"), Some(exp), Some(id), Some(op), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires_ms: i64 = exp.parse().ok()?;
        if now_ms >= expires_ms {
            return None;
        }
        let operator = String::from_utf8(URL_SAFE_NO_PAD.decode(op).ok()?).ok()?;
        Some(Session {
            operator,
            id: id.to_string(),
            expires_ms,
        })
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(self.mac(&[b"csrf.", session.id.as_bytes()]))
    }

    /// Whether `given` is the CSRF token of `session` (compared in constant time).
    pub fn csrf_ok(&self, session: &Session, given: &str) -> bool {
        given.as_bytes().ct_eq(self.csrf(session).as_bytes()).into()
    }
}

/// The operator's name as typed at sign-in: trimmed, 1 to [`MAX_OPERATOR_CHARS`] characters, no
/// control characters (it is shown in pages and written into audit trails).
pub fn operator_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("enter your name: it is written into the audit trail of every change you make");
    }
    if name.chars().count() > MAX_OPERATOR_CHARS {
        return Err("the name is too long (at most 80 characters)");
    }
    if name.chars().any(char::is_control) {
        return Err("the name may not contain control characters");
    }
    Ok(name.to_string())
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value for a session (or, with `max_age_s` 0, one that clears it).
pub fn set_cookie(value: &str, max_age_s: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/console; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_token("the-admin-token")
    }

    #[test]
    fn a_session_opens_with_the_key_that_issued_it_until_it_expires() {
        let k = keys();
        let v = k.issue("Ann Operator", "s1", 10_000);
        let s = k.open(&v, 9_999).expect("valid");
        assert_eq!(s.operator, "Ann Operator");
        assert_eq!(s.id, "s1");
        assert_eq!(k.open(&v, 10_000), None, "expired at expires_ms");
    }

    #[test]
    fn another_admin_token_or_a_changed_byte_does_not_open_a_session() {
        let v = keys().issue("Ann", "s1", 10_000);
        assert_eq!(Keys::from_token("rotated-token").open(&v, 0), None);
        // Another operator name or expiry with the old signature.
        let forged = v.replacen("10000", "99999", 1);
        assert_eq!(keys().open(&forged, 0), None);
        let (payload, mac) = v.rsplit_once('.').unwrap();
        let other = format!("v1.10000.s1.{}", URL_SAFE_NO_PAD.encode("Eve"));
        assert_eq!(keys().open(&format!("{other}.{mac}"), 0), None);
        assert!(keys().open(&format!("{payload}.{mac}"), 0).is_some());
        for junk in ["", ".", "v1", "v1.1.2.3.4.5", "x.y", "v1.a.b.c.!!"] {
            assert_eq!(keys().open(junk, 0), None, "{junk:?}");
        }
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session_and_one_admin_token() {
        let k = keys();
        let a = k.open(&k.issue("Ann", "s1", 10), 0).unwrap();
        let b = k.open(&k.issue("Ann", "s2", 10), 0).unwrap();
        let t = k.csrf(&a);
        assert!(k.csrf_ok(&a, &t));
        assert!(!k.csrf_ok(&b, &t), "another session's token");
        assert!(!k.csrf_ok(&a, ""));
        assert!(!Keys::from_token("other").csrf_ok(&a, &t));
    }

    #[test]
    fn operator_names_are_trimmed_and_bounded() {
        assert_eq!(operator_name("  Ann  ").unwrap(), "Ann");
        assert!(operator_name("   ").is_err());
        assert!(operator_name(&"a".repeat(81)).is_err());
        assert!(operator_name("Ann\nEve").is_err());
        assert_eq!(operator_name("Zoë Ñ").unwrap(), "Zoë Ñ");
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_with_its_attributes() {
        assert_eq!(
            cookie_value("a=1; offboard_session=v1.x; b=2", COOKIE),
            Some("v1.x")
        );
        assert_eq!(cookie_value("xoffboard_session=1", COOKIE), None);
        let c = set_cookie("v", 60, false);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age=60")
        );
        assert!(!c.contains("Secure"));
        assert!(set_cookie("v", 60, true).ends_with("; Secure"));
    }
}
