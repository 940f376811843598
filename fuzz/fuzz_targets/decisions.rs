//! The Pod and the workload decision on any JSON: no panic, a patch that applies, and a
//! mutated pod that decides again to nothing.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(obj) = serde_json::from_slice(data) {
        checks::decisions(&obj);
    }
});
