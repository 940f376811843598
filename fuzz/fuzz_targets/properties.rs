//! The `server.properties` editor on any text: no panic, and an edit applied to its own output
//! changes nothing.
#![no_main]

use kafka_expose::kafka::properties::{Request, patch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let req = Request {
        listener_name: "EXTERNAL".into(),
        container_port: 9095,
        advertised_host: "10.0.0.5".into(),
        advertised_port: 32401,
        security_protocol: None,
    };
    if let Ok(once) = patch(&text, &req) {
        let twice = patch(&once.text, &req).expect("the edited file edits again");
        assert_eq!(twice.text, once.text, "the edit is idempotent");
    }
});
