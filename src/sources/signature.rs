//! Standard Webhooks signatures (spec v1.0.0): HMAC-SHA256 over `{id}.{timestamp}.{body}`, sent as
//! a space-separated list of `v1,<base64>` entries in `webhook-signature`; any entry that matches
//! any configured key passes. Comparison is constant-time (`hmac`'s `verify_slice`), and the whole
//! MAC must be present: a bare `v1,` or a truncated value fails.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

use crate::config::SecretKey;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for this message: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = mac(key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// True when any `v1` entry of `header` is a valid signature under any of `keys`.
pub fn verify(keys: &[SecretKey], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let candidates: Vec<Vec<u8>> = header
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .filter(|sig| !sig.is_empty())
        .collect();
    if candidates.is_empty() {
        return false;
    }
    // Every key against every entry, without stopping early, so timing does not reveal which
    // key matched.
    let mut ok = false;
    for key in keys {
        let base = mac(key.expose_secret(), id, timestamp, body);
        for sig in &candidates {
            ok |= base.clone().verify_slice(sig).is_ok();
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode_whsec;

    fn key(s: &str) -> SecretKey {
        decode_whsec(s, "test").unwrap()
    }

    const RUST_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const RUST_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const RUST_TS: &str = "1649367553";
    const RUST_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const RUST_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn reference_vector_from_the_rust_library_signs_and_verifies() {
        let k = key(RUST_SECRET);
        assert_eq!(
            sign(k.expose_secret(), RUST_ID, RUST_TS, RUST_BODY),
            RUST_SIG
        );
        assert!(verify(&[k], RUST_ID, RUST_TS, RUST_BODY, RUST_SIG));
    }

    #[test]
    fn reference_vector_from_the_javascript_library_signs_and_verifies() {
        let k = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sign(k.expose_secret(), id, ts, body), sig);
        assert!(verify(&[k], id, ts, body, sig));
    }

    #[test]
    fn the_secret_works_without_its_whsec_prefix() {
        let k = key("C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        assert!(verify(&[k], RUST_ID, RUST_TS, RUST_BODY, RUST_SIG));
    }

    #[test]
    fn a_bare_v1_prefix_and_a_truncated_signature_fail() {
        let k = key(RUST_SECRET);
        assert!(!verify(
            std::slice::from_ref(&k),
            RUST_ID,
            RUST_TS,
            RUST_BODY,
            "v1,"
        ));
        assert!(!verify(
            std::slice::from_ref(&k),
            RUST_ID,
            RUST_TS,
            RUST_BODY,
            "v1"
        ));
        assert!(!verify(
            std::slice::from_ref(&k),
            RUST_ID,
            RUST_TS,
            RUST_BODY,
            ""
        ));
        let truncated = &RUST_SIG[..RUST_SIG.len() - 8];
        assert!(!verify(
            std::slice::from_ref(&k),
            RUST_ID,
            RUST_TS,
            RUST_BODY,
            truncated
        ));
        // A truncated MAC that is still valid base64 (first 16 bytes).
        let full = STANDARD.decode(&RUST_SIG[3..]).unwrap();
        let half = format!("v1,{}", STANDARD.encode(&full[..16]));
        assert!(!verify(&[k], RUST_ID, RUST_TS, RUST_BODY, &half));
    }

    #[test]
    fn any_matching_entry_in_a_list_passes_and_other_versions_are_ignored() {
        let k = key(RUST_SECRET);
        let header = format!("v1a,AAAA v2,abcd v1,Zm9vYmFy {RUST_SIG}");
        assert!(verify(
            std::slice::from_ref(&k),
            RUST_ID,
            RUST_TS,
            RUST_BODY,
            &header
        ));
        assert!(!verify(
            &[k],
            RUST_ID,
            RUST_TS,
            RUST_BODY,
            "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        ));
    }

    #[test]
    fn rotation_accepts_a_signature_under_any_configured_key() {
        let old = key(RUST_SECRET);
        let new = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(verify(
            &[new.clone(), old],
            RUST_ID,
            RUST_TS,
            RUST_BODY,
            RUST_SIG
        ));
        assert!(!verify(&[new], RUST_ID, RUST_TS, RUST_BODY, RUST_SIG));
    }

    #[test]
    fn tampering_with_body_id_or_timestamp_fails() {
        let k = key(RUST_SECRET);
        assert!(!verify(
            std::slice::from_ref(&k),
            RUST_ID,
            RUST_TS,
            b"{}",
            RUST_SIG
        ));
        assert!(!verify(
            std::slice::from_ref(&k),
            "msg_other",
            RUST_TS,
            RUST_BODY,
            RUST_SIG
        ));
        assert!(!verify(&[k], RUST_ID, "1649367554", RUST_BODY, RUST_SIG));
    }
}
