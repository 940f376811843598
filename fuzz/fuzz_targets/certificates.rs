//! A certificates' Secret as the cluster holds it: any text in ca.crt and tls.crt is read and
//! its renewal planned without a panic, and a pair that cannot be read is re-issued.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ca, cert) = text.split_once('\0').unwrap_or((&text, &text));
    checks::certificate_secret(ca, cert);
});
