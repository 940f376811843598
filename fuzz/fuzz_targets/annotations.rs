//! Annotation parsing on any set of keys and values: no panic. Lines are `key=value`.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ann: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    checks::annotations(&ann, data.first().copied().unwrap_or(3) as u32);
});
