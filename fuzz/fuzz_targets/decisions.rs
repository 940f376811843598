//! The Pod and the workload decision on any JSON: no panic, and a patch that applies.
#![no_main]

use kafka_expose::config::Settings;
use kafka_expose::engine::pod::{PodContext, mutate_pod};
use kafka_expose::engine::workload::{WorkloadKind, mutate_workload};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let settings = Settings::default();
    let lb = |s: &str| s.len().is_multiple_of(2).then(|| "203.0.113.7".to_string());
    let ctx = PodContext {
        settings: &settings,
        namespace: Some("kafka"),
        lb_address: &lb,
    };
    if let Ok(d) = mutate_pod(&obj, &ctx) {
        let mut out = obj.clone();
        json_patch::patch(&mut out, &d.patch).expect("the Pod decision's patch applies");
    }
    for kind in [WorkloadKind::StatefulSet, WorkloadKind::Deployment] {
        if let Ok(d) = mutate_workload(&obj, kind, &settings) {
            let mut out = obj.clone();
            json_patch::patch(&mut out, &d.patch).expect("the workload decision's patch applies");
        }
    }
});
