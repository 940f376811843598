//! Listener lists and protocol maps on any text: no panic, and adding the external listener to
//! its own output changes nothing. Lines are listeners, advertised listeners, protocol map,
//! inter-broker listener, controller listeners and process roles.
#![no_main]

use kafka_expose::kafka::SecurityProtocol;
use kafka_expose::kafka::external::{External, add_external};
use kafka_expose::kafka::listeners::{ListenerSet, parse_listeners, parse_protocol_map};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut next = || lines.next().filter(|l| !l.is_empty());
    let set = ListenerSet {
        listeners: next(),
        advertised: next(),
        protocol_map: next(),
        inter_broker: next(),
        controller_names: next(),
        process_roles: next(),
    };
    for v in [set.listeners, set.advertised].into_iter().flatten() {
        for l in parse_listeners(v) {
            let _ = l.port_number();
            let _ = l.to_string();
        }
    }
    let _ = set.protocol_map.map(parse_protocol_map);
    let _ = set.is_controller_only();
    let client = set.client_listener();
    let ext = External {
        name: "EXTERNAL",
        bind_port: 9095,
        advertised_host: "$(KAFKA_EXPOSE_EXTERNAL_HOST)",
        advertised_port: "$(KAFKA_EXPOSE_EXTERNAL_PORT)",
        protocol: client.map_or(SecurityProtocol::Plaintext, |c| c.protocol),
    };
    let once = add_external(&set, &ext);
    let again = ListenerSet {
        listeners: Some(&once.listeners),
        advertised: Some(&once.advertised),
        protocol_map: Some(&once.protocol_map),
        ..set
    };
    let twice = add_external(&again, &ext);
    assert_eq!(twice.listeners, once.listeners);
    assert_eq!(twice.advertised, once.advertised);
    assert_eq!(twice.protocol_map, once.protocol_map);
});
