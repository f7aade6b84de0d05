//! The signature and token checks on arbitrary headers: Standard Webhooks' `webhook-signature`
//! list (only the exact signature of this message under the key passes, in any position), the
//! bearer and basic checks, and `whsec_` secret decoding. Any panic, or a pass for anything but
//! the right credential, is a finding.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (id, ts, header, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let key = offboard::config::decode_whsec("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "k")
        .expect("a valid secret");
    let right = {
        use secrecy::ExposeSecret;
        offboard::sources::signature::sign(key.expose_secret(), id, ts, body.as_bytes())
    };
    let passed = offboard::sources::signature::verify(&[key], id, ts, body.as_bytes(), header);
    let holds_right = header.split_ascii_whitespace().any(|e| e == right);
    assert_eq!(passed, holds_right, "header {header:?}");

    let _ = offboard::config::decode_whsec(header, "k");

    if let Ok(v) = HeaderValue::from_str(header) {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", v);
        let tokens = offboard::sources::common::required_tokens(
            "fuzz",
            Some(SecretString::from("tok-3b1d")),
            None,
            None,
        )
        .expect("a token");
        if offboard::sources::common::check_bearer(&headers, &tokens).is_ok() {
            assert!(
                header.trim().ends_with("tok-3b1d"),
                "bearer passed: {header:?}"
            );
        }
        let password = SecretString::from("pw-9");
        if offboard::sources::common::check_basic(&headers, "workday", &password).is_ok() {
            assert!(
                header.to_ascii_lowercase().contains("basic"),
                "basic passed: {header:?}"
            );
        }
    }
});
