//! Kafka response frames as `check` reads them from a broker: any bytes decode or are refused
//! with a reason. A count the frame cannot hold must be refused before the decoder reserves
//! memory for it; libFuzzer's malloc limit reports any such reservation as a finding.
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::kafka_response(data);
});
