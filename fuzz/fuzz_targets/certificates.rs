//! A certificates' Secret as the cluster holds it: any text in ca.crt and tls.crt is read and
//! its renewal planned without a panic, and a pair that cannot be read is re-issued. The same
//! text as a broker's certificate Secret (`external-tls`): the gate's checks and the signing
//! plan never panic, and never put key text in a refusal.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ca, cert) = text.split_once('\0').unwrap_or((&text, &text));
    checks::certificate_secret(ca, cert);
    let mut parts = text.splitn(4, '\0');
    let (chain, key, ca, host) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("203.0.113.7"),
    );
    checks::broker_certificate(chain, key, ca, host);
});
