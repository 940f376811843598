//! Property tests, the stable-toolchain twins of the fuzz targets in `fuzz/`: whatever the input
//! (a properties file, annotations, listener lists, a pod or workload, an admission body),
//! nothing panics, and the edits that must be idempotent are. CI runs them in bounded time;
//! `fuzz/run.sh` runs the fuzzers for as long as asked.

mod support;

use std::collections::BTreeMap;

use kafka_expose::engine::workload::WorkloadKind;
use kafka_expose::names::keys;
use kafka_expose::offline::{self, Options, controller_pods};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::checks;

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
    let sep = prop_oneof![
        Just("="),
        Just(" = "),
        Just(":"),
        Just(" "),
        Just("\\="),
        Just("")
    ];
    (key, sep, text(6), prop::bool::ANY)
        .prop_map(|(k, s, v, cont)| format!("{k}{s}{v}{}", if cont { "\\" } else { "" }))
}

fn properties_file() -> impl Strategy<Value = String> {
    let eol = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    (prop::collection::vec(properties_line(), 0..10), eol).prop_map(|(lines, eol)| lines.join(eol))
}

/// What follows the file on `kafka-server-start.sh`: overrides of the listener settings (the
/// external listener among them, in every form), `--override=k=v`, malformed ones, others.
fn start_argument() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("--override".to_string()),
        Just("listeners=CLIENT://:9092,EXTERNAL://:9095".to_string()),
        Just("--override=advertised.listeners=EXTERNAL://10.1.2.3:31190".to_string()),
        Just("--override=listener.security.protocol.map=PLAINTEXT:PLAINTEXT".to_string()),
        Just("--override=broker.id=2".to_string()),
        Just("--override=".to_string()),
        Just("--override=novalue".to_string()),
        Just("-daemon".to_string()),
        "[ -~]{0,24}".prop_map(|s| s),
        "listeners=[A-Z]{1,8}://:[0-9]{2,5}".prop_map(|s| s),
    ]
}

fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("nodeport".to_string()),
        Just("loadbalancer".to_string()),
        Just("hostport".to_string()),
        Just("shared-loadbalancer".to_string()),
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
        Just("ca:kafka-ca".to_string()),
        Just("secret:{pod}-external-tls".to_string()),
        Just("issuer:ClusterIssuer/x".to_string()),
        Just("required".to_string()),
        Just("60s".to_string()),
        Just("2160h".to_string()),
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
        prop::bool::weighted(0.2),
    )
        .prop_map(|(mut obj, meta, tpl, env_value, env_index, drop_value)| {
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
                if drop_value {
                    // `{name: X}` alone: an empty value to the kubelet.
                    if let Some(var) = env[i].as_object_mut() {
                        var.remove("value");
                    }
                } else {
                    env[i]["value"] = Value::String(env_value);
                }
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
        checks::properties_edit(&text);
    }

    #[test]
    fn the_step_in_the_pod_keeps_or_edits_and_never_fails(
        text in properties_file(),
        chart in prop::sample::select(checks::charts_with_the_listener_present()),
        extra in properties_file(),
        port in prop::sample::select(vec![9092u16, 9093, 9094, 9095, 9096, 31190]),
    ) {
        checks::properties_step_keeps_or_edits(&text, port);
        checks::properties_step_keeps_or_edits(&format!("{chart}{extra}"), port);
    }

    #[test]
    fn the_launch_step_keeps_or_edits_and_never_fails(
        text in properties_file(),
        chart in prop::sample::select(checks::charts_with_the_listener_present()),
        args in prop::collection::vec(start_argument(), 0..6),
        daemon in any::<bool>(),
        port in prop::sample::select(vec![9092u16, 9093, 9094, 9095, 9096, 31190]),
    ) {
        let mut all: Vec<String> = Vec::new();
        if daemon {
            all.push("-daemon".into());
        }
        all.push("/etc/kafka/server.properties".into());
        all.extend(args.iter().cloned());
        checks::launch_step_keeps_or_edits(&text, &all, port);
        checks::launch_step_keeps_or_edits(&chart, &all, port);
        // And whatever comes first, a file or not.
        checks::launch_step_keeps_or_edits(&chart, &args, port);
    }

    #[test]
    fn annotation_parsing_never_panics(ann in annotations(), replicas in 0u32..300) {
        checks::annotations(&ann, replicas);
    }

    #[test]
    fn listener_parsing_never_panics_and_the_edit_is_idempotent(
        fields in prop::collection::vec(prop::option::of(text(8)), 6)
    ) {
        let f = |i: usize| fields[i].as_deref();
        checks::listener_edit([f(0), f(1), f(2), f(3), f(4), f(5)]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_decisions_never_panic_and_their_patches_apply(obj in perturbed()) {
        checks::decisions(&obj);
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
        let body = review(&obj);
        checks::admission(&body);
        checks::admission(&body[..cut.min(body.len())]);
        checks::admission(&noise);
    }
}

/// The fuzz seeds for Kafka responses: frames `check` could read from a broker.
fn response_seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/responses");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn every_response_seed_is_a_frame_the_client_decodes() {
    use kafka_expose::check::client::decode;
    use kafka_protocol::messages::*;
    let seeds = response_seeds();
    assert_eq!(seeds.len(), 5);
    for s in seeds {
        let (pick, rest) = s.split_first().unwrap();
        let f = bytes::Bytes::copy_from_slice(rest);
        let v = i16::from(pick >> 4);
        let ok = match (pick & 0x0f) % 5 {
            0 => decode::<ApiVersionsRequest>(ApiKey::ApiVersions, v, 1, f, "seed").is_ok(),
            1 => decode::<MetadataRequest>(ApiKey::Metadata, v, 1, f, "seed").is_ok(),
            2 => decode::<DescribeConfigsRequest>(ApiKey::DescribeConfigs, v, 1, f, "seed").is_ok(),
            3 => decode::<SaslHandshakeRequest>(ApiKey::SaslHandshake, v, 1, f, "seed").is_ok(),
            _ => {
                decode::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate, v, 1, f, "seed").is_ok()
            }
        };
        assert!(ok, "seed {pick:#x} decodes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any bytes, and seeds with bytes overwritten (counts and lengths among them): decoded or
    /// refused, never a panic or a reservation the frame cannot back.
    #[test]
    fn kafka_responses_from_any_bytes_decode_or_are_refused(
        noise in prop::collection::vec(any::<u8>(), 0..96),
        seed in 0usize..5,
        at in 0usize..96,
        with in prop::collection::vec(any::<u8>(), 1..5),
        pick in any::<u8>(),
    ) {
        checks::kafka_response(&noise);
        let mut s = response_seeds()[seed].clone();
        for (i, b) in with.iter().enumerate() {
            let j = (1 + at + i).min(s.len() - 1);
            s[j] = *b;
        }
        checks::kafka_response(&s);
        s[0] = pick;
        checks::kafka_response(&s);
    }
}

/// `pem` with `with` written over its base64 from byte `at` (clear of its first and last lines).
fn overwritten(pem: &str, at: usize, with: &str) -> String {
    let mut bytes = pem.as_bytes().to_vec();
    for (i, b) in with.bytes().enumerate() {
        let j = (30 + at + i).min(bytes.len() - 30);
        bytes[j] = b;
    }
    String::from_utf8(bytes).unwrap()
}

/// A real certificate's PEM, to mutate.
fn certificate_pem() -> String {
    kafka_expose::certs::generate(&kafka_expose::certs::dns_names(
        "kafka-expose",
        "kafka-expose",
    ))
    .unwrap()
    .cert_pem
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a Secret's ca.crt and tls.crt hold (noise, or a real certificate with bytes of
    /// its base64 overwritten or cut), reading it and planning its renewal never panic.
    #[test]
    fn a_certificates_secret_of_any_content_is_read_and_planned(
        noise in "\\PC{0,200}",
        at in 0usize..600,
        with in "[A-Za-z0-9+/=]{1,8}",
        cut in 0usize..700,
    ) {
        checks::certificate_secret(&noise, &noise);
        let pem = certificate_pem();
        let mutated = overwritten(&pem, at, &with);
        checks::certificate_secret(&mutated, &mutated);
        checks::certificate_secret(&pem, &pem[..cut.min(pem.len())]);
    }
}

/// A broker certificate signed for `203.0.113.7`, its key and its CA, to mutate.
fn broker_pair() -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = p.self_signed(&key).unwrap().pem();
    let (cert, leaf_key) = kafka_expose::certs::sign_broker(
        &ca_pem,
        &key.serialize_pem(),
        &["203.0.113.7".into()],
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    (cert, leaf_key, ca_pem)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a broker's certificate Secret holds and whatever host it is checked for, the
    /// gate's checks and the renewal plan never panic, accept only a certificate naming the host,
    /// and never put key text in a refusal.
    #[test]
    fn a_brokers_certificate_of_any_content_is_checked_without_a_panic(
        noise in "\\PC{0,200}",
        at in 0usize..600,
        with in "[A-Za-z0-9+/=]{1,8}",
        cut in 0usize..900,
        host in prop_oneof![Just("203.0.113.7".to_string()), Just("[203.0.113.7]".to_string()), Just("*.example.com".to_string()), text(3)],
    ) {
        let (cert, key, ca) = broker_pair();
        checks::broker_certificate(&noise, &noise, &noise, &host);
        checks::broker_certificate(&cert, &key, &ca, &host);
        let mutated = overwritten(&cert, at, &with);
        checks::broker_certificate(&mutated, &key, &ca, &host);
        checks::broker_certificate(&cert[..cut.min(cert.len())], &key, &ca, &host);
        checks::broker_certificate(&cert, &key[..cut.min(key.len())], &ca, &host);
    }
}

/// The certificates fuzz target's findings (fuzz/regressions/certificates), replayed as the
/// target splits them: each stays fixed.
#[test]
fn the_certificates_fuzz_findings_stay_fixed() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/certificates");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        checks::certificate_input(&std::fs::read(entry.unwrap().path()).unwrap());
        replayed += 1;
    }
    assert!(replayed > 0);
}
