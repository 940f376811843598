//! The properties that the fuzz targets (`fuzz/`) and the property tests (`tests/no_panics.rs`)
//! both check, in one place: each function panics when its property fails.

use std::collections::BTreeMap;

use kafka_expose::config::{Requested, Settings, WorkloadFacts, check_against_workload, parse};
use kafka_expose::engine::pod::{PodContext, mutate_pod};
use kafka_expose::engine::workload::{WorkloadKind, mutate_workload};
use kafka_expose::kafka::SecurityProtocol;
use kafka_expose::kafka::external::{External, add_external};
use kafka_expose::kafka::listeners::{ListenerSet, parse_listeners, parse_protocol_map};
use kafka_expose::kafka::properties::{Request, patch, patch_or_keep};
use kafka_expose::webhook::admission::FailureMode;
use kafka_expose::webhook::{AppState, answer};
use serde_json::Value;

/// The properties editor does not panic, and its edit applied to its own output changes nothing.
pub fn properties_edit(text: &str) {
    let req = Request {
        listener_name: "EXTERNAL".into(),
        container_port: 9095,
        advertised_host: "10.0.0.5".into(),
        advertised_port: 32401,
        security_protocol: None,
        tls: None,
    };
    if let Ok(once) = patch(text, &req) {
        let twice = patch(&once.text, &req).expect("the edited file edits again");
        assert_eq!(twice.text, once.text, "the edit is idempotent");
    }
}

/// The step that runs in the broker's pod never stops it: on any configuration it either makes
/// the edit (which then edits nothing more) or keeps the text byte for byte and says why, naming
/// the fix.
pub fn properties_step_keeps_or_edits(text: &str, container_port: u16) {
    let req = Request {
        listener_name: "EXTERNAL".into(),
        container_port,
        advertised_host: "10.0.0.5".into(),
        advertised_port: 32401,
        security_protocol: None,
        tls: None,
    };
    let once = patch_or_keep(text, &req);
    match &once.kept {
        Some(why) => {
            assert_eq!(
                once.text, text,
                "a kept configuration is the chart's, unchanged"
            );
            assert!(!once.changed);
            let message = why.kept_message();
            assert!(
                message.starts_with(kafka_expose::names::KEPT_MARK)
                    && message.contains("kafka-expose.io/"),
                "{message}"
            );
        }
        None => {
            let twice = patch_or_keep(&once.text, &req);
            assert_eq!(twice.kept, None, "its own edit is not kept as the chart's");
            assert_eq!(twice.text, once.text, "the edit is idempotent");
        }
    }
}

/// The launch step, on any file and any `kafka-server-start.sh` arguments: it never fails, it
/// either keeps the chart's start exactly (the arguments as given, nothing written) and says why,
/// or starts the image's script on an edited copy with the `--override` arguments folded into it,
/// and that copy, started again, edits nothing more.
pub fn launch_step_keeps_or_edits(text: &str, args: &[String], container_port: u16) {
    use kafka_expose::kafka::launch::{Settings, plan};
    use std::ffi::OsString;
    let settings = Ok(Settings {
        request: Request {
            listener_name: "EXTERNAL".into(),
            container_port,
            advertised_host: "10.0.0.5".into(),
            advertised_port: 32401,
            security_protocol: None,
            tls: None,
        },
        dir: "/kafka-expose-launch".into(),
        script: "/opt/kafka/bin/kafka-server-start.sh".into(),
    });
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let p = plan(&args, &settings, |_| Ok(text.to_string()));
    match (&p.kept, &p.write) {
        (Some(why), None) => {
            assert_eq!(p.args, args, "a kept start is the chart's, unchanged");
            assert!(why.starts_with(kafka_expose::names::KEPT_MARK), "{why}");
        }
        (None, Some((path, edited))) => {
            assert!(
                p.args.contains(&path.clone().into_os_string()),
                "the image's script is given the edited copy: {:?}",
                p.args
            );
            // Well-formed overrides are in the copy; a malformed one is passed on for Kafka to
            // refuse, as it would have without kafka-expose.
            let setting = |v: &str| v.split_once('=').is_some_and(|(k, _)| !k.trim().is_empty());
            let words: Vec<String> = p
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let mut i = 1;
            while i < words.len() {
                let (left, taken) = match words[i].strip_prefix("--override=") {
                    Some(v) => (setting(v), 1),
                    None if words[i] == "--override" => {
                        (words.get(i + 1).is_some_and(|v| setting(v)), 2)
                    }
                    None => (false, 1),
                };
                assert!(!left, "the overrides are in the copy: {words:?}");
                i += taken;
            }
            let again = plan(&p.args, &settings, |_| Ok(edited.clone()));
            assert_eq!(again.kept, None, "its own edit is not kept as the chart's");
            assert_eq!(
                again.write.map(|w| w.1).as_ref(),
                Some(edited),
                "idempotent"
            );
        }
        other => panic!("kept and written at once: {other:?}"),
    }
}

/// Configurations a chart could produce with listener EXTERNAL already in them, in every form:
/// bound on kafka-expose's port or another, advertised only, in the protocol map only, in lower
/// case, bound and advertised by the chart's own external access, and kafka-expose's port taken
/// by a listener of another name; on a plain and on a SASL chart.
pub fn charts_with_the_listener_present() -> Vec<String> {
    let bases = [
        "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://k-0.h:9092\n",
        "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\ninter.broker.listener.name=INTERNAL\nlisteners=CLIENT://:9092,INTERNAL://:9094,CONTROLLER://:9093\nadvertised.listeners=CLIENT://k-0.h:9092,INTERNAL://k-0.h:9094\nlistener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\nlistener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_u=\"p\";\n",
    ];
    let forms = [
        ("listeners", ",EXTERNAL://:9095"),
        ("listeners", ",EXTERNAL://:9096"),
        ("listeners", ",EXTERNAL://0.0.0.0:31190"),
        ("listeners", ",external://:9096"),
        ("listeners", ",OUTSIDE://:9095"),
        ("advertised.listeners", ",EXTERNAL://10.1.2.3:31190"),
        ("listener.security.protocol.map", ",EXTERNAL:SASL_SSL"),
        ("both", ""),
    ];
    let mut out = Vec::new();
    for base in bases {
        for (key, add) in forms {
            let mut text = String::new();
            for line in base.lines() {
                text.push_str(line);
                if line.starts_with(&format!("{key}=")) {
                    text.push_str(add);
                }
                text.push('\n');
            }
            if key == "listener.security.protocol.map" && !base.contains(key) {
                text.push_str(
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SASL_SSL\n",
                );
            }
            if key == "both" {
                // As a chart's init script appends its external access: listeners, advertised
                // address and protocol, after the file was copied.
                text.push_str("listeners=PLAINTEXT://:9092,CLIENT://:9092,EXTERNAL://:9095\nadvertised.listeners=CLIENT://k-0.h:9092,EXTERNAL://10.1.2.3:31190\nlistener.security.protocol.map=CLIENT:PLAINTEXT,EXTERNAL:PLAINTEXT\n");
            }
            out.push(text);
        }
    }
    out
}

/// Annotation parsing, and the fit against a workload, do not panic.
pub fn annotations(ann: &BTreeMap<String, String>, replicas: u32) {
    restart_reads(ann);
    if let Ok(Requested::Expose(cfg)) = parse(ann) {
        for kind in ["StatefulSet", "Deployment"] {
            let facts = WorkloadFacts {
                ordinals_start: replicas % 3,
                kind,
                name: "kafka",
                replicas,
            };
            let _ = check_against_workload(
                &cfg,
                cfg.port_base_or_default(),
                &facts,
                &Settings::default(),
            );
        }
    }
}

/// Listener lists and protocol maps parse without panicking, and adding the external listener to
/// its own output changes nothing. `fields`: listeners, advertised listeners, protocol map,
/// inter-broker listener, controller listeners, process roles.
pub fn listener_edit(fields: [Option<&str>; 6]) {
    let set = ListenerSet {
        listeners: fields[0],
        advertised: fields[1],
        protocol_map: fields[2],
        inter_broker: fields[3],
        controller_names: fields[4],
        process_roles: fields[5],
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
}

/// The Pod and workload decisions on any object do not panic, their patches apply, and a
/// mutated pod decides again to an empty patch.
pub fn decisions(obj: &Value) {
    let settings = Settings::default();
    let lb = |s: &str| s.len().is_multiple_of(2).then(|| "203.0.113.7".to_string());
    let ctx = PodContext {
        settings: &settings,
        namespace: Some("kafka"),
        lb_address: &lb,
        route: &|_| Some("accepted".into()),
    };
    if let Ok(d) = mutate_pod(obj, &ctx) {
        let mut out = obj.clone();
        json_patch::patch(&mut out, &d.patch).expect("the Pod decision's patch applies");
        let again = mutate_pod(&out, &ctx).expect("a mutated pod decides again");
        assert!(again.patch.is_empty(), "not idempotent: {:?}", again.patch);
    }
    for kind in [WorkloadKind::StatefulSet, WorkloadKind::Deployment] {
        if let Ok(d) = mutate_workload(obj, kind, &settings) {
            let mut out = obj.clone();
            json_patch::patch(&mut out, &d.patch).expect("the workload decision's patch applies");
        }
    }
}

/// The admission handler answers any body without panicking.
pub fn admission(body: &[u8]) {
    thread_local! {
        static STATES: [AppState; 2] = [
            AppState::standalone(Settings::default(), FailureMode::Open),
            with_caches(),
        ];
    }
    STATES.with(|states| {
        for s in states {
            // With no Service lister the answer awaits nothing: one poll completes it.
            let mut fut = std::pin::pin!(answer(s, body));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(
                fut.as_mut().poll(&mut cx).is_ready(),
                "the answer without a Service lister awaits nothing"
            );
        }
    });
}

/// A state with the caches a cluster gives: a policy that selects every workload, and every pod
/// an exposed `node:` broker on a node with an ExternalIP. So that every decision path runs.
fn with_caches() -> AppState {
    use kafka_expose::api::KafkaExposePolicy;
    use kafka_expose::engine::binding::BindingFacts;
    use kafka_expose::engine::policy::PolicyView;

    struct Caches(Vec<KafkaExposePolicy>);
    impl PolicyView for Caches {
        fn active(&self) -> bool {
            true
        }
        fn live(&self) -> Vec<KafkaExposePolicy> {
            self.0.clone()
        }
        fn namespace_labels(&self, _: &str) -> BTreeMap<String, String> {
            BTreeMap::new()
        }
    }
    impl BindingFacts for Caches {
        fn broker(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
            Some(BTreeMap::from([(
                "advertised-host".to_string(),
                "node:ExternalDNS,ExternalIP".to_string(),
            )]))
        }
        fn node_addresses(&self, node: &str) -> Option<Vec<(String, String)>> {
            (!node.is_empty()).then(|| vec![("ExternalIP".into(), "203.0.113.1".into())])
        }
    }
    let policy = |name: &str, mode: &str| -> KafkaExposePolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kafka-expose.io/v1alpha1", "kind": "KafkaExposePolicy",
            "metadata": {"name": name},
            "spec": {"mode": mode, "exposure": {"expose": "nodeport", "portBase": 31000}}
        }))
        .expect("a policy")
    };
    let caches = std::sync::Arc::new(Caches(vec![
        policy("enforce", "Enforce"),
        policy("audit", "Audit"),
    ]));
    let mut s = AppState::standalone(Settings::default(), FailureMode::Open);
    s.policies = Some(caches.clone());
    s.bindings = Some(caches);
    s
}

/// A Kafka response frame decodes or is refused with a reason: no panic, and no allocation sized
/// by a count the frame cannot hold (libFuzzer's malloc limit catches those; without the guard a
/// property test aborts on one). The first byte picks the version (high nibble) and the API
/// (low); the rest is the frame after its size: correlation id, then body.
pub fn kafka_response(data: &[u8]) {
    use kafka_expose::check::client::decode;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, DescribeConfigsRequest, MetadataRequest,
        SaslAuthenticateRequest, SaslHandshakeRequest,
    };
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let frame = bytes::Bytes::copy_from_slice(rest);
    let id = rest
        .get(..4)
        .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let v = i16::from(pick >> 4);
    let w = "fuzz";
    let _ = match (pick & 0x0f) % 5 {
        0 => decode::<ApiVersionsRequest>(ApiKey::ApiVersions, v, id, frame, w).map(drop),
        1 => decode::<MetadataRequest>(ApiKey::Metadata, v, id, frame, w).map(drop),
        2 => decode::<DescribeConfigsRequest>(ApiKey::DescribeConfigs, v, id, frame, w).map(drop),
        3 => decode::<SaslHandshakeRequest>(ApiKey::SaslHandshake, v, id, frame, w).map(drop),
        _ => decode::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate, v, id, frame, w).map(drop),
    };
}

/// A certificates' Secret as the cluster holds it (any text in ca.crt and tls.crt): reading it
/// and deciding its renewal never panic, and a pair that cannot be read is re-issued.
pub fn certificate_secret(ca: &str, cert: &str) {
    use kafka_expose::cluster::certs::{RenewPolicy, Renewal, plan};
    let _ = kafka_expose::certs::inspect(ca);
    let _ = kafka_expose::certs::split_pem(ca);
    let stored = kafka_expose::certs::Bundle {
        ca_pem: ca.to_string(),
        cert_pem: cert.to_string(),
        key_pem: String::new(),
    };
    let wanted = kafka_expose::certs::dns_names("kafka-expose", "kafka-expose");
    let decision = plan(
        &stored,
        Some(0),
        1_700_000_000,
        &wanted,
        &RenewPolicy::default(),
    );
    if kafka_expose::certs::inspect(cert).is_err() {
        assert!(
            matches!(decision, Renewal::Reissue(_)),
            "an unreadable pair is re-issued: {decision:?}"
        );
    }
}

/// A broker's certificate Secret of any content (`external-tls`): the gate's checks and the
/// reconciler's renewal plan never panic, never put key text in a refusal, and a key store is
/// written only for a certificate that names the host.
pub fn broker_certificate(chain: &str, key: &str, ca: &str, host: &str) {
    use kafka_expose::cmd::gate::stores_for;
    use kafka_expose::kafka::tls::ClientAuth;
    for auth in [ClientAuth::None, ClientAuth::Required] {
        match stores_for(chain, key, Some(ca), host, auth) {
            Ok((store, _, _)) => {
                let facts =
                    kafka_expose::certs::inspect(chain).expect("a certificate it accepted reads");
                assert!(kafka_expose::certs::names_host(&facts[0].names, host));
                assert!(store.starts_with(key.trim_end()));
            }
            Err(why) => {
                // A refusal repeats the host and the certificate's names, which are public: a
                // key line that is also in them (arbitrary input) proves nothing.
                let secret_line = key.lines().find(|l| {
                    l.len() > 16
                        && !l.starts_with("-----")
                        && !host.contains(l)
                        && !chain.contains(l)
                });
                if let Some(l) = secret_line {
                    assert!(!why.contains(l), "key text in a refusal: {why}");
                }
            }
        }
    }
    let _ = kafka_expose::certs::resign_reason(
        Some(chain),
        Some(ca),
        ca,
        &[host.to_string(), chain.to_string()],
        0,
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(180),
    );
    let _ = kafka_expose::certs::names_host(&[chain.to_string(), ca.to_string()], host);
}

/// The `certificates` fuzz target's input, split as it splits it: `ca NUL cert` for the webhook's
/// certificates Secret, and `chain NUL key NUL ca NUL host` for a broker's (`external-tls`). The
/// fuzz target and the replay of its findings both run it.
pub fn certificate_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (ca, cert) = text.split_once('\0').unwrap_or((&text, &text));
    certificate_secret(ca, cert);
    let mut parts = text.splitn(4, '\0');
    let (chain, key, ca, host) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("203.0.113.7"),
    );
    broker_certificate(chain, key, ca, host);
}

/// What the restarts read from the cluster, on any annotations: a broker pod carrying them, its
/// node's addresses and a load balancer's, a workload's restart record, a gate's message. No
/// panic, and a record that reads back writes itself the same.
pub fn restart_reads(ann: &BTreeMap<String, String>) {
    use kafka_expose::engine::restart::{
        Record, SecretCert, loaded_serial, pod_facts, stale, unusable_renewal,
    };
    let prefixed: BTreeMap<String, String> = ann
        .iter()
        .map(|(k, v)| (format!("kafka-expose.io/{k}"), v.clone()))
        .chain(ann.clone())
        .collect();
    // Built from JSON, so that the fuzz crate needs no Kubernetes types of its own.
    let Ok(pod) = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "kafka-1", "annotations": prefixed}}),
    ) else {
        return;
    };
    let addresses: Vec<(String, String)> =
        ann.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let current = ann.get("current").map(|c| SecretCert {
        secret: "s".into(),
        facts: kafka_expose::certs::CertFacts {
            serial: c.clone(),
            not_after: c.len() as i64,
            names: ann.values().cloned().collect(),
        },
    });
    if let Some(f) = pod_facts(
        &pod,
        "kafka",
        Some(&addresses),
        |s| ann.get(s).cloned(),
        ann.get("serial").map(String::as_str),
        current,
        4,
    ) {
        let _ = (stale(&f), unusable_renewal(&f));
    }
    for v in ann.values() {
        if let Some(r) = Record::parse(v) {
            assert_eq!(Record::parse(&r.to_string()), Some(r));
        }
        let _ = loaded_serial(v);
    }
}
