//! Annotation parsing on any set of keys and values: no panic. Lines are `key=value`.
#![no_main]

use std::collections::BTreeMap;

use kafka_expose::config::{Settings, WorkloadFacts, check_against_workload, parse};
use kafka_expose::config::Requested;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ann: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(Requested::Expose(cfg)) = parse(&ann) {
        let replicas = data.first().copied().unwrap_or(3) as u32;
        for kind in ["StatefulSet", "Deployment"] {
            let facts = WorkloadFacts {
                ordinals_start: replicas % 3,
                kind,
                name: "kafka",
                replicas,
            };
            let _ = check_against_workload(&cfg, cfg.port_base_or_default(), &facts, &Settings::default());
        }
    }
});
