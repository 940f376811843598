//! The `server.properties` editor on any text: no panic, an edit applied to its own output
//! changes nothing, and the step that runs in the pod either edits or keeps the text as it is,
//! never failing (the chart may already hold the listener or its port).
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    checks::properties_edit(&text);
    for port in [9092, 9095] {
        checks::properties_step_keeps_or_edits(&text, port);
    }
});
