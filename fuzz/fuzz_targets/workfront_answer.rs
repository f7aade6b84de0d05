//! The Workfront answer parser on arbitrary answers (status and body): JSON or HTML from a proxy,
//! error bodies with any status, data of any shape. Any panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = 100 + (u16::from_le_bytes([data[0], data[1]]) % 500);
    offboard::workfront::fuzzing::answer(status, &data[2..]);
});
