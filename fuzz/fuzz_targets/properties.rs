//! The `server.properties` editor on any text: no panic, and an edit applied to its own output
//! changes nothing.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::properties_edit(&String::from_utf8_lossy(data));
});
