//! Verify-and-parse of kind `standard` on arbitrary bodies: signed (reaching the parser) and unsigned
//! (which must never pass). Any panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    offboard::sources::fuzzing::receive("standard", body);
});
