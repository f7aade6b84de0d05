//! The configuration loader on arbitrary TOML laid over the defaults, with a known admin token in
//! a layer below: it must never panic, and its errors must never print that secret (unless the
//! input itself holds the text, which an error may then quote as a key name).
#![no_main]

use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fz-admin-secret-7f3a9c01";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let below = format!("[admin]\ntoken = \"{SECRET}\"\n");
    if let Err(e) = offboard::config::Settings::from_toml_layers(&[&below, &text]) {
        if !text.contains(SECRET) {
            assert!(
                !e.to_string().contains(SECRET),
                "a config error printed a secret: {e}"
            );
        }
    }
});
