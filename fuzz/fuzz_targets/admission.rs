//! The admission handler on any body: no panic, an answer every time.
#![no_main]

use kafka_expose::config::Settings;
use kafka_expose::webhook::admission::FailureMode;
use kafka_expose::webhook::{AppState, answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static STATE: AppState = AppState::standalone(Settings::default(), FailureMode::Open);
    }
    STATE.with(|s| {
        let _ = answer(s, data);
    });
});
