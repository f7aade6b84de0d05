//! The admin API's query parsing on arbitrary query strings, as axum hands them over: every input
//! is a filter or a 400 naming the problem, never a panic, and an accepted limit is within 1–500.
#![no_main]

use std::collections::HashMap;

use axum::extract::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/admin/v1/actions?{q}").parse::<axum::http::Uri>() else {
        return;
    };
    let Ok(Query(params)) = Query::<HashMap<String, String>>::try_from_uri(&uri) else {
        return;
    };
    if let Ok(filter) = offboard::http::admin::action_filter(&params) {
        assert!((1..=500).contains(&filter.limit), "limit {}", filter.limit);
    }
});
