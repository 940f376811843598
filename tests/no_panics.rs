//! Property tests, the stable-toolchain twins of the fuzz targets in `fuzz/`: whatever the input
//! (a properties file, annotations, listener lists, a pod or workload, an admission body),
//! nothing panics, and the edits that must be idempotent are. CI runs them in bounded time;
//! `fuzz/run.sh` runs the fuzzers for as long as asked.

mod support;

use std::collections::BTreeMap;

use kafka_expose::config::{Requested, Settings, WorkloadFacts, check_against_workload, parse};
use kafka_expose::engine::pod::{PodContext, mutate_pod};
use kafka_expose::engine::workload::{WorkloadKind, mutate_workload};
use kafka_expose::kafka::SecurityProtocol;
use kafka_expose::kafka::external::{External, add_external};
use kafka_expose::kafka::listeners::{ListenerSet, parse_listeners, parse_protocol_map};
use kafka_expose::kafka::properties::{Request, patch};
use kafka_expose::names::keys;
use kafka_expose::offline::{self, Options, controller_pods};
use kafka_expose::webhook::admission::FailureMode;
use kafka_expose::webhook::{AppState, answer};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Text that stresses parsers: separators, escapes, references, multibyte characters.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(",".to_string()),
        Just("://".to_string()),
        Just(":".to_string()),
        Just("\\".to_string()),
        Just("é".to_string()),
        Just("[::1]".to_string()),
        Just("$(KAFKA_EXPOSE_EXTERNAL_HOST)".to_string()),
        Just("$((31090 + ${KAFKA_BROKER_ID}))".to_string()),
        Just("{ordinal}".to_string()),
        "[A-Za-z_]{1,8}",
        "[0-9]{1,6}",
        "\\PC{0,6}",
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..max).prop_map(|v| v.concat())
}

/// One line of a properties file.
fn properties_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("listeners"),
        Just("advertised.listeners"),
        Just("listener.security.protocol.map"),
        Just("inter.broker.listener.name"),
        Just("controller.listener.names"),
        Just("process.roles"),
        Just("listener.name.client.plain.sasl.jaas.config"),
        Just("listener.name.external.ssl.key"),
        Just("#"),
        Just("!"),
        Just(""),
        Just("a\\é"),
    ];
    let sep = prop_oneof![Just("="), Just(" = "), Just(":"), Just(" "), Just("\\=")];
    (key, sep, text(6), prop::bool::ANY)
        .prop_map(|(k, s, v, cont)| format!("{k}{s}{v}{}", if cont { "\\" } else { "" }))
}

fn properties_file() -> impl Strategy<Value = String> {
    let eol = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    (prop::collection::vec(properties_line(), 0..10), eol).prop_map(|(lines, eol)| lines.join(eol))
}

fn request() -> Request {
    Request {
        listener_name: "EXTERNAL".into(),
        container_port: 9095,
        advertised_host: "10.0.0.5".into(),
        advertised_port: 32401,
        security_protocol: None,
    }
}

fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("nodeport".to_string()),
        Just("loadbalancer".to_string()),
        Just("hostport".to_string()),
        Just("off".to_string()),
        Just("host-ip".to_string()),
        Just("template:k-{ordinal}.example.com".to_string()),
        Just("static:a.example.com,b.example.com".to_string()),
        Just("32766".to_string()),
        Just("0".to_string()),
        Just("65535".to_string()),
        Just("{\"a/b\":\"{pod}\"}".to_string()),
        Just("10.0.0.0/8,::/0".to_string()),
        Just("adopt".to_string()),
        Just("SASL_SSL".to_string()),
        text(5),
    ]
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        prop::sample::select(keys::ALL.to_vec()).prop_map(str::to_string),
        text(3),
    ];
    prop::collection::btree_map(key, annotation_value(), 0..8)
}

/// The fixtures' workloads and the pods their controllers create, as `mutate` renders them.
fn fixture_objects() -> Vec<Value> {
    let mut out = Vec::new();
    for name in [
        "apache-kafka-kraft.yaml",
        "bitnami-23.0.7.yaml",
        "bitnami-26.11.4.yaml",
        "bitnami-32.4.4.yaml",
        "cp-helm-charts-cp-kafka.yaml",
        "yolean-kubernetes-kafka.yaml",
    ] {
        for doc in support::fixture(name) {
            if doc["kind"] == "StatefulSet" {
                let w = kafka_expose::engine::workload::Workload::from_value(
                    WorkloadKind::StatefulSet,
                    &doc,
                )
                .unwrap();
                out.extend(controller_pods(&w, &doc).into_iter().take(1));
                out.push(doc);
            }
        }
    }
    out
}

/// A fixture object with annotations set on it and its template, and one env value replaced.
fn perturbed() -> impl Strategy<Value = Value> {
    let objects = fixture_objects();
    (
        prop::sample::select(objects),
        annotations(),
        annotations(),
        text(6),
        0usize..40,
    )
        .prop_map(|(mut obj, meta, tpl, env_value, env_index)| {
            let prefixed = |m: BTreeMap<String, String>| -> Value {
                m.into_iter()
                    .map(|(k, v)| (format!("kafka-expose.io/{k}"), Value::String(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            obj["metadata"]["annotations"] = prefixed(meta);
            let containers = if obj["kind"] == "Pod" {
                obj["spec"]["containers"].as_array_mut()
            } else {
                obj["spec"]["template"]["metadata"]["annotations"] = prefixed(tpl);
                obj["spec"]["template"]["spec"]["containers"].as_array_mut()
            };
            if let Some(env) = containers
                .and_then(|c| c.first_mut())
                .and_then(|c| c["env"].as_array_mut())
                && !env.is_empty()
            {
                let i = env_index % env.len();
                env[i]["value"] = Value::String(env_value);
            }
            obj
        })
}

fn review(object: &Value) -> Vec<u8> {
    let (group, kind, resource) = match object["kind"].as_str() {
        Some("Pod") => ("", "Pod", "pods"),
        _ => ("apps", "StatefulSet", "statefulsets"),
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": group, "version": "v1", "kind": kind},
                    "resource": {"group": group, "version": "v1", "resource": resource},
                    "namespace": "kafka", "operation": "CREATE", "userInfo": {}, "object": object}
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_properties_editor_never_panics_and_its_edit_is_idempotent(text in properties_file()) {
        if let Ok(once) = patch(&text, &request()) {
            let twice = patch(&once.text, &request()).expect("the edited file edits again");
            prop_assert_eq!(twice.text, once.text);
        }
    }

    #[test]
    fn annotation_parsing_never_panics(ann in annotations(), replicas in 0u32..300) {
        if let Ok(Requested::Expose(cfg)) = parse(&ann) {
            for kind in ["StatefulSet", "Deployment"] {
                let facts = WorkloadFacts { ordinals_start: replicas % 3, kind, name: "kafka", replicas };
                let _ = check_against_workload(&cfg, cfg.port_base_or_default(), &facts, &Settings::default());
            }
        }
    }

    #[test]
    fn listener_parsing_never_panics_and_the_edit_is_idempotent(
        fields in prop::collection::vec(prop::option::of(text(8)), 6)
    ) {
        let f = |i: usize| fields[i].as_deref();
        let set = ListenerSet {
            listeners: f(0),
            advertised: f(1),
            protocol_map: f(2),
            inter_broker: f(3),
            controller_names: f(4),
            process_roles: f(5),
        };
        for v in [set.listeners, set.advertised].into_iter().flatten() {
            let _ = parse_listeners(v);
        }
        let _ = set.protocol_map.map(parse_protocol_map);
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
        prop_assert_eq!(twice.listeners, once.listeners);
        prop_assert_eq!(twice.advertised, once.advertised);
        prop_assert_eq!(twice.protocol_map, once.protocol_map);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_decisions_never_panic_and_their_patches_apply(obj in perturbed()) {
        let settings = Settings::default();
        let lb = |s: &str| s.len().is_multiple_of(2).then(|| "203.0.113.7".to_string());
        let ctx = PodContext { settings: &settings, namespace: Some("kafka"), lb_address: &lb };
        if let Ok(d) = mutate_pod(&obj, &ctx) {
            let mut out = obj.clone();
            json_patch::patch(&mut out, &d.patch).expect("the Pod decision's patch applies");
            let again = mutate_pod(&out, &ctx).expect("a mutated pod decides again");
            prop_assert!(again.patch.is_empty(), "not idempotent: {:?}", again.patch);
        }
        for kind in [WorkloadKind::StatefulSet, WorkloadKind::Deployment] {
            if let Ok(d) = mutate_workload(&obj, kind, &settings) {
                let mut out = obj.clone();
                json_patch::patch(&mut out, &d.patch).expect("the workload patch applies");
            }
        }
        if obj["kind"] == "StatefulSet" {
            let _ = offline::run(vec![obj.clone()], &Options::default());
        }
    }

    #[test]
    fn the_admission_handler_answers_every_body(
        obj in perturbed(),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        cut in 0usize..4000,
    ) {
        let state = AppState::standalone(Settings::default(), FailureMode::Open);
        let body = review(&obj);
        let _ = answer(&state, &body);
        let _ = answer(&state, &body[..cut.min(body.len())]);
        let _ = answer(&state, &noise);
    }
}
