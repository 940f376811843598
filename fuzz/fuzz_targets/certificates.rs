//! A certificates' Secret as the cluster holds it: any text in ca.crt and tls.crt is read and
//! its renewal planned without a panic, and a pair that cannot be read is re-issued. The same
//! text as a broker's certificate Secret (`external-tls`): the gate's checks and the signing
//! plan never panic, and never put key text in a refusal.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::certificate_input(data);
});
