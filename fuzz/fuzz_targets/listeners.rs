//! Listener lists and protocol maps on any text: no panic, and adding the external listener to
//! its own output changes nothing. Lines are listeners, advertised listeners, protocol map,
//! inter-broker listener, controller listeners and process roles.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut next = || lines.next().filter(|l| !l.is_empty());
    checks::listener_edit([next(), next(), next(), next(), next(), next()]);
});
