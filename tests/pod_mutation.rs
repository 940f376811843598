//! The Pod decision on hand-made pods: patches apply to the pod exactly as sent, parents first,
//! and nothing is ever added twice.

use kafka_expose::config::Settings;
use kafka_expose::engine::exposure::Skip;
use kafka_expose::engine::pod::{PodContext, PodDecision, PodOutcome, mutate_pod};
use serde_json::{Value, json};

fn settings() -> Settings {
    Settings::default()
}

fn decide_with(pod: &Value, lb: &dyn Fn(&str) -> Option<String>) -> PodDecision {
    let s = settings();
    let ctx = PodContext {
        settings: &s,
        namespace: Some("kafka"),
        lb_address: lb,
        route: &|_| None,
    };
    mutate_pod(pod, &ctx).expect("a decision")
}

fn decide(pod: &Value) -> PodDecision {
    decide_with(pod, &|_| None)
}

/// The error the Pod decision gives, with no namespace from the request.
fn refusal(pod: &Value) -> String {
    let s = settings();
    let ctx = PodContext {
        settings: &s,
        namespace: None,
        lb_address: &|_| None,
        route: &|_| None,
    };
    mutate_pod(pod, &ctx).unwrap_err().to_string()
}

fn apply(pod: &Value, d: &PodDecision) -> Value {
    let mut out = pod.clone();
    json_patch::patch(&mut out, &d.patch).expect("the patch applies to the pod as sent");
    out
}

/// A StatefulSet pod of an apache/kafka broker, as the API server sends it at CREATE.
fn apache_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"kafka-expose.io/expose": "nodeport"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka",
                                  "uid": "u1", "controller": true}]
        },
        "spec": {"containers": [{
            "name": "broker",
            "image": "apache/kafka:3.9.1",
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092,CONTROLLER://:9093"},
                {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://$(POD_NAME).h:9092"},
                {"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"},
                {"name": "KAFKA_CONTROLLER_LISTENER_NAMES", "value": "CONTROLLER"}
            ]
        }]}
    })
}

fn env_of(pod: &Value) -> Vec<(String, Option<String>)> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e.get("value").and_then(Value::as_str).map(str::to_string),
            )
        })
        .collect()
}

fn value_of(pod: &Value, name: &str) -> String {
    env_of(pod)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn a_pod_without_labels_gets_the_label_map_created_first() {
    let pod = apache_pod("kafka-2");
    let out = apply(&pod, &decide(&pod));
    assert_eq!(
        out["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "kafka-2"
    );
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_PORT"), "32402");
}

#[test]
fn a_label_key_with_a_slash_is_added_to_existing_labels_escaped() {
    let mut pod = apache_pod("kafka-1");
    pod["metadata"]["labels"] = json!({"app": "kafka"});
    let d = decide(&pod);
    let paths: Vec<String> = d
        .patch
        .iter()
        .map(|op| {
            serde_json::to_value(op).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        paths.contains(&"/metadata/labels/statefulset.kubernetes.io~1pod-name".to_string()),
        "{paths:?}"
    );
    let out = apply(&pod, &d);
    assert_eq!(out["metadata"]["labels"]["app"], "kafka");
    assert_eq!(
        out["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "kafka-1"
    );
}

#[test]
fn a_container_without_env_or_ports_gets_them_created() {
    let pod = json!({
        "metadata": {
            "name": "cp-0",
            "annotations": {"kafka-expose.io/expose": "nodeport"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "cp", "uid": "u", "controller": true}]
        },
        "spec": {"containers": [{
            "name": "kafka",
            "image": "confluentinc/cp-kafka:7.6.0",
            "command": ["sh", "-c", "export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://x:9092,EXTERNAL://${HOST_IP}:$((31090 + ${HOSTNAME##*-})) && exec /etc/confluent/docker/run"]
        }]}
    });
    let d = decide(&pod);
    let out = apply(&pod, &d);
    assert!(
        matches!(
            d.outcome,
            PodOutcome::Mutated {
                adapter: "adopt",
                ..
            }
        ),
        "{:?}",
        d.outcome
    );
    assert_eq!(
        out["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "cp-0"
    );
    assert_eq!(
        out["spec"]["containers"][0]["ports"][0]["containerPort"],
        31090
    );
    assert_eq!(
        out["spec"]["containers"][0]["ports"][0]["name"],
        "kx-external"
    );
    assert!(
        out["spec"]["containers"][0].get("env").is_none(),
        "adopt adds no env"
    );
}

#[test]
fn injected_variables_precede_every_variable_that_references_them() {
    let pod = apache_pod("kafka-0");
    let out = apply(&pod, &decide(&pod));
    let env = env_of(&out);
    for (i, (_, value)) in env.iter().enumerate() {
        let Some(value) = value else { continue };
        for (j, (name, _)) in env.iter().enumerate() {
            if value.contains(&format!("$({name})")) {
                assert!(
                    j < i,
                    "{name} (at {j}) is defined after its reference at {i}"
                );
            }
        }
    }
    assert_eq!(
        value_of(&out, "KAFKA_ADVERTISED_LISTENERS"),
        "PLAINTEXT://$(POD_NAME).h:9092,EXTERNAL://$(KAFKA_EXPOSE_EXTERNAL_HOST):$(KAFKA_EXPOSE_EXTERNAL_PORT)"
    );
    assert_eq!(
        value_of(&out, "KAFKA_LISTENERS"),
        "PLAINTEXT://:9092,CONTROLLER://:9093,EXTERNAL://:9094"
    );
    assert_eq!(
        value_of(&out, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"),
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT"
    );
}

#[test]
fn reinvocation_adds_nothing_even_after_another_webhook_changed_the_env() {
    let pod = apache_pod("kafka-0");
    let mut out = apply(&pod, &decide(&pod));
    out["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"name": "OTHER_WEBHOOK", "value": "1"}));
    let again = decide(&out);
    assert!(again.patch.is_empty(), "{:?}", again.patch);
    let names: Vec<String> = env_of(&out).into_iter().map(|(n, _)| n).collect();
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len(), "no duplicate variable: {names:?}");
}

#[test]
fn the_pod_index_label_gives_the_ordinal_before_the_name() {
    let mut pod = apache_pod("kafka-7");
    pod["metadata"]["labels"] = json!({"apps.kubernetes.io/pod-index": "3"});
    let d = decide(&pod);
    assert!(
        matches!(d.outcome, PodOutcome::Mutated { ordinal: 3, .. }),
        "{:?}",
        d.outcome
    );
}

#[test]
fn with_ordinals_start_the_port_still_follows_the_broker_ordinal() {
    // Broker n on base + n, as its broker id suggests, whatever the StatefulSet's first ordinal.
    let mut pod = apache_pod("kafka-1");
    pod["metadata"]["annotations"]["kafka-expose.io/ordinals-start"] = json!("1");
    let out = apply(&pod, &decide(&pod));
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_PORT"), "32401");
    let mut pod = apache_pod("kafka-5");
    pod["metadata"]["annotations"]["kafka-expose.io/ordinals-start"] = json!("4");
    let out = apply(&pod, &decide(&pod));
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_PORT"), "32405");
}

#[test]
fn a_pod_outside_a_statefulset_takes_its_ordinal_from_the_annotation() {
    let mut pod = apache_pod("");
    pod["metadata"] = json!({
        "generateName": "broker-a-5f6d-",
        "labels": {"pod-template-hash": "5f6d"},
        "annotations": {"kafka-expose.io/expose": "nodeport", "kafka-expose.io/ordinal": "2"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "broker-a-5f6d", "uid": "u", "controller": true}]
    });
    let out = apply(&pod, &decide(&pod));
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_PORT"), "32402");
    assert!(
        out["metadata"]["labels"]
            .get("statefulset.kubernetes.io/pod-name")
            .is_none(),
        "a pod whose name is not known yet gets no pod-name label"
    );
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("kafka-expose.io/ordinal");
    let err = refusal(&pod);
    assert!(err.contains("kafka-expose.io/ordinal"), "{err}");
}

#[test]
fn a_controller_only_pod_is_allowed_with_a_warning_and_no_patch() {
    let mut pod = apache_pod("kafka-0");
    pod["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "KAFKA_PROCESS_ROLES", "value": "controller"}));
    let d = decide(&pod);
    assert!(
        matches!(d.outcome, PodOutcome::Skipped(Skip::ControllerOnly { .. })),
        "{:?}",
        d.outcome
    );
    assert!(d.patch.is_empty());
    assert!(
        d.warnings[0].contains("KRaft controller only"),
        "{:?}",
        d.warnings
    );
}

#[test]
fn a_loadbalancer_broker_waits_for_its_service_address_then_advertises_it() {
    let mut pod = apache_pod("kafka-1");
    pod["metadata"]["annotations"] = json!({
        "kafka-expose.io/expose": "loadbalancer",
        "kafka-expose.io/advertised-host": "loadbalancer"
    });
    let d = decide(&pod);
    match &d.outcome {
        PodOutcome::WaitForAddress { service, message } => {
            assert_eq!(service, "kafka-1-external");
            assert!(message.contains("kafka/kafka-1-external"), "{message}");
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    assert!(d.patch.is_empty());
    let lb = |svc: &str| (svc == "kafka-1-external").then(|| "203.0.113.7".to_string());
    let out = apply(&pod, &decide_with(&pod, &lb));
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_HOST"), "203.0.113.7");
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_PORT"), "9094");
}

#[test]
fn a_script_that_builds_advertised_listeners_itself_is_unsupported_and_untouched() {
    let mut pod = apache_pod("kafka-0");
    pod["spec"]["containers"][0]["command"] = json!([
        "sh",
        "-c",
        "export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://$(hostname -f):9092 && exec /etc/kafka/docker/run"
    ]);
    let d = decide(&pod);
    assert!(
        matches!(d.outcome, PodOutcome::Skipped(Skip::Unsupported(_))),
        "{:?}",
        d.outcome
    );
    assert!(d.patch.is_empty());
    assert!(
        d.warnings[0].contains("sets advertised.listeners itself"),
        "{:?}",
        d.warnings
    );
}

#[test]
fn an_explicit_container_port_the_broker_uses_is_refused_with_a_free_one() {
    let mut pod = apache_pod("kafka-0");
    pod["metadata"]["annotations"]["kafka-expose.io/container-port"] = json!("9093");
    let err = refusal(&pod);
    assert!(
        err.contains("kafka-expose.io/container-port=\"9093\""),
        "{err}"
    );
    assert!(err.contains("listener CONTROLLER"), "{err}");
    assert!(err.contains("e.g. 9094"), "{err}");
}

#[test]
fn a_weaker_explicit_protocol_is_applied_with_a_warning() {
    let mut pod = apache_pod("kafka-0");
    pod["spec"]["containers"][0]["env"][3]["value"] =
        json!("CONTROLLER:PLAINTEXT,PLAINTEXT:SASL_SSL");
    pod["metadata"]["annotations"]["kafka-expose.io/security-protocol"] = json!("PLAINTEXT");
    let d = decide(&pod);
    let out = apply(&pod, &d);
    assert!(value_of(&out, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP").ends_with("EXTERNAL:PLAINTEXT"));
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("weaker than the client listener")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn the_client_listener_settings_are_copied_to_the_external_listener() {
    let mut pod = apache_pod("kafka-0");
    let env = pod["spec"]["containers"][0]["env"].as_array_mut().unwrap();
    env[3]["value"] = json!("CONTROLLER:PLAINTEXT,PLAINTEXT:SASL_SSL");
    env.push(
        json!({"name": "KAFKA_LISTENER_NAME_PLAINTEXT_SCRAM___SHA___512_SASL_JAAS_CONFIG",
                    "valueFrom": {"secretKeyRef": {"name": "jaas", "key": "config"}}}),
    );
    let out = apply(&pod, &decide(&pod));
    let copied = out["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "KAFKA_LISTENER_NAME_EXTERNAL_SCRAM___SHA___512_SASL_JAAS_CONFIG")
        .expect("the JAAS config is copied");
    assert_eq!(copied["valueFrom"]["secretKeyRef"]["name"], "jaas");
    assert!(value_of(&out, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP").ends_with("EXTERNAL:SASL_SSL"));
}

#[test]
fn hostport_mode_binds_the_node_port_of_each_broker() {
    let mut pod = apache_pod("kafka-2");
    pod["metadata"]["annotations"]["kafka-expose.io/expose"] = json!("hostport");
    pod["metadata"]["annotations"]["kafka-expose.io/port-base"] = json!("19092");
    let out = apply(&pod, &decide(&pod));
    let port = &out["spec"]["containers"][0]["ports"][0];
    assert_eq!(port["hostPort"], 19094);
    assert_eq!(port["containerPort"], 9094);
}

#[test]
fn a_malformed_pod_is_an_error_not_a_panic() {
    let s = settings();
    let ctx = PodContext {
        settings: &s,
        namespace: None,
        lb_address: &|_| None,
        route: &|_| None,
    };
    for bad in [
        json!({"metadata": {"annotations": {"kafka-expose.io/expose": "nodeport"}}, "spec": {"containers": "x"}}),
        json!([1, 2, 3]),
        json!({"metadata": "nope"}),
    ] {
        assert!(mutate_pod(&bad, &ctx).is_err(), "{bad}");
    }
    let not_exposed = json!({"metadata": {"name": "x"}, "spec": {"containers": []}});
    assert_eq!(
        mutate_pod(&not_exposed, &ctx).unwrap().outcome,
        PodOutcome::Skipped(Skip::NotRequested)
    );
}

#[test]
fn a_large_pod_is_mutated_with_operations_that_grow_with_the_change() {
    let mut pod = apache_pod("kafka-0");
    let env = pod["spec"]["containers"][0]["env"].as_array_mut().unwrap();
    for i in 0..1500 {
        env.push(json!({"name": format!("FILLER_{i}"), "value": "x"}));
    }
    let d = decide(&pod);
    assert!(d.patch.len() <= 12, "{} operations", d.patch.len());
    apply(&pod, &d);
}

#[test]
fn a_listener_variable_without_a_value_member_gets_one_and_the_patch_applies() {
    // Found by the decisions fuzz target: `{name: KAFKA_ADVERTISED_LISTENERS}` with no `value`
    // (an empty string to the kubelet) got a `replace` of a member that does not exist.
    let mut pod = apache_pod("kafka-0");
    for e in pod["spec"]["containers"][0]["env"].as_array_mut().unwrap() {
        if e["name"] == "KAFKA_ADVERTISED_LISTENERS" {
            e.as_object_mut().unwrap().remove("value");
        }
    }
    let out = apply(&pod, &decide(&pod));
    assert!(
        value_of(&out, "KAFKA_ADVERTISED_LISTENERS").contains("EXTERNAL://"),
        "{out}"
    );
    assert!(decide(&out).patch.is_empty());
}

#[test]
fn a_shared_load_balancer_broker_waits_for_the_one_service_then_names_its_own_port() {
    let mut pod = apache_pod("kafka-2");
    pod["metadata"]["annotations"] = json!({
        "kafka-expose.io/expose": "shared-loadbalancer",
        "kafka-expose.io/port-base": "9100"
    });
    let d = decide(&pod);
    match &d.outcome {
        PodOutcome::WaitForAddress { service, message } => {
            assert_eq!(service, "kafka-external");
            assert!(message.contains("kafka/kafka-external"), "{message}");
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    assert!(d.patch.is_empty());
    let lb = |svc: &str| (svc == "kafka-external").then(|| "203.0.113.9".to_string());
    let d = decide_with(&pod, &lb);
    let out = apply(&pod, &d);
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_HOST"), "203.0.113.9");
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_PORT"), "9102");
    let ports = out["spec"]["containers"][0]["ports"].as_array().unwrap();
    let mine: Vec<&Value> = ports
        .iter()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("kx-")))
        .collect();
    assert_eq!(
        mine,
        [&json!({"name": "kx-b2", "containerPort": 9094, "protocol": "TCP"})],
        "one port, named for this broker alone, on the external listener's container port"
    );
    assert!(value_of(&out, "KAFKA_LISTENERS").contains("EXTERNAL://:9094"));
    // Applied to its own output, nothing more.
    assert!(decide_with(&out, &lb).patch.is_empty());
}

#[test]
fn a_shared_load_balancer_broker_with_one_dns_name_is_not_held() {
    let mut pod = apache_pod("kafka-1");
    pod["metadata"]["annotations"] = json!({
        "kafka-expose.io/expose": "shared-loadbalancer",
        "kafka-expose.io/advertised-host": "static:kafka.example.com"
    });
    let out = apply(&pod, &decide(&pod));
    assert_eq!(
        value_of(&out, "KAFKA_EXPOSE_EXTERNAL_HOST"),
        "kafka.example.com"
    );
    assert_eq!(value_of(&out, "KAFKA_EXPOSE_EXTERNAL_PORT"), "32401");
}

fn tls_pod(name: &str, tls: &str) -> Value {
    let mut pod = apache_pod(name);
    pod["metadata"]["annotations"]["kafka-expose.io/external-tls"] = json!(tls);
    pod
}

#[test]
fn external_tls_puts_the_pem_settings_in_the_images_variables_and_the_gate_on_the_secret() {
    let mut pod = tls_pod("kafka-1", "secret:{statefulset}-{ordinal}-cert");
    pod["metadata"]["annotations"]["kafka-expose.io/external-tls-client-auth"] = json!("required");
    let d = decide(&pod);
    let out = apply(&pod, &d);
    assert!(value_of(&out, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP").ends_with(",EXTERNAL:SSL"));
    for (var, want) in [
        ("KAFKA_LISTENER_NAME_EXTERNAL_SSL_KEYSTORE_TYPE", "PEM"),
        (
            "KAFKA_LISTENER_NAME_EXTERNAL_SSL_KEYSTORE_LOCATION",
            "/kafka-expose-tls/keystore.pem",
        ),
        ("KAFKA_LISTENER_NAME_EXTERNAL_SSL_CLIENT_AUTH", "required"),
        ("KAFKA_LISTENER_NAME_EXTERNAL_SSL_TRUSTSTORE_TYPE", "PEM"),
        (
            "KAFKA_LISTENER_NAME_EXTERNAL_SSL_TRUSTSTORE_LOCATION",
            "/kafka-expose-tls/truststore.pem",
        ),
    ] {
        assert_eq!(value_of(&out, var), want, "{var}");
    }
    let gate = &out["spec"]["initContainers"][0];
    assert_eq!(gate["name"], "kafka-expose-gate");
    assert_eq!(
        gate["args"],
        json!([
            "gate",
            "--host",
            "$(KAFKA_EXPOSE_EXTERNAL_HOST)",
            "--tls-secret-dir",
            "/kafka-expose-tls-secret",
            "--tls-dir",
            "/kafka-expose-tls",
            "--tls-client-auth",
            "required",
            "--timeout",
            "120s"
        ])
    );
    let gate_env: Vec<&str> = gate["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        gate_env.ends_with(&["KAFKA_EXPOSE_EXTERNAL_HOST", "KAFKA_EXPOSE_EXTERNAL_PORT"]),
        "{gate_env:?}"
    );
    let volumes = out["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes[0]["secret"]["secretName"], "kafka-1-cert");
    assert_eq!(volumes[1]["emptyDir"]["medium"], "Memory");
    let mounts = out["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    assert_eq!(
        mounts,
        &vec![
            json!({"name": "kafka-expose-tls", "mountPath": "/kafka-expose-tls", "readOnly": true})
        ],
        "the broker reads the PEM stores and never mounts the Secret"
    );
    assert!(
        d.warnings.iter().any(|w| w.contains("its own certificate")),
        "{:?}",
        d.warnings
    );
    let again = decide(&out);
    assert!(again.patch.is_empty(), "nothing twice: {:?}", again.patch);
}

#[test]
fn client_certificates_may_be_checked_against_a_ca_of_another_secret() {
    let mut pod = tls_pod("kafka-1", "ca:kafka-ca");
    let ann = &mut pod["metadata"]["annotations"];
    ann["kafka-expose.io/external-tls-client-auth"] = json!("required");
    ann["kafka-expose.io/external-tls-client-ca"] = json!("clients-ca");
    let d = decide(&pod);
    let out = apply(&pod, &d);
    let gate = &out["spec"]["initContainers"][0];
    let args: Vec<&str> = gate["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--tls-client-ca-dir", "/kafka-expose-tls-client-ca"]),
        "{args:?}"
    );
    let ca = out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "kafka-expose-tls-client-ca")
        .expect("the client CA's volume");
    assert_eq!(
        ca["secret"],
        json!({"secretName": "clients-ca", "optional": true, "defaultMode": 0o444,
               "items": [{"key": "ca.crt", "path": "ca.crt"}]}),
        "its ca.crt alone: no key of that Secret reaches the pod"
    );
    assert!(
        gate["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/kafka-expose-tls-client-ca"),
        "the gate reads it"
    );
    let mounts = &out["spec"]["containers"][0]["volumeMounts"];
    assert!(
        !mounts.to_string().contains("client-ca"),
        "the broker reads only the trust store the gate writes: {mounts}"
    );
    // Without clients presenting certificates, a client CA is a mistake, said so.
    let mut none = tls_pod("kafka-1", "ca:kafka-ca");
    none["metadata"]["annotations"]["kafka-expose.io/external-tls-client-ca"] = json!("clients-ca");
    let said = refusal(&none);
    assert!(
        said.contains("external-tls-client-auth=requested or required"),
        "{said}"
    );
}

#[test]
fn a_node_address_broker_with_external_tls_has_one_gate_for_both() {
    let mut pod = tls_pod("kafka-0", "secret:{pod}-tls");
    pod["metadata"]["annotations"]["kafka-expose.io/advertised-host"] = json!("node:ExternalIP");
    let out = apply(&pod, &decide(&pod));
    let inits = out["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 1);
    let args = inits[0]["args"].as_array().unwrap();
    assert_eq!(
        args[1], "--file",
        "the host comes from the node's annotation"
    );
    assert!(args.contains(&json!("--tls-secret-dir")));
    let names: Vec<&str> = out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kafka-expose-node",
            "kafka-expose-tls-secret",
            "kafka-expose-tls"
        ]
    );
}

#[test]
fn external_tls_is_refused_with_the_reason_where_it_cannot_work() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 6] = [
        (
            "issuer:Certificate/kafka-ca",
            |_| {},
            "is not a cert-manager issuer kind",
        ),
        ("secret:Kafka_TLS", |_| {}, "is not a Secret name"),
        (
            "secret:{pod}-tls",
            |p| p["spec"]["containers"][0]["image"] = json!("confluentinc/cp-kafka:6.0.1"),
            "needs Kafka 2.7",
        ),
        (
            "secret:{pod}-tls",
            |p| {
                p["spec"]["containers"][0]["image"] =
                    json!("docker.io/bitnami/kafka:2.6.0-debian-10-r1")
            },
            "Kafka 2.6",
        ),
        (
            "secret:{pod}-tls",
            |p| {
                p["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "KAFKA_SSL_KEYSTORE_PASSWORD", "value": "changeit"}));
            },
            "ssl.keystore.password",
        ),
        (
            "secret:{pod}-tls",
            |p| {
                p["metadata"]["annotations"]["kafka-expose.io/adapter"] = json!("adopt");
            },
            "adopted listener is the chart's own",
        ),
    ];
    for (tls, edit, want) in cases {
        let mut pod = tls_pod("kafka-0", tls);
        edit(&mut pod);
        let e = refusal(&pod);
        assert!(e.contains(want) && e.contains("external-tls"), "{tls}: {e}");
    }
    let mut pod = apache_pod("kafka-0");
    pod["metadata"]["annotations"]["kafka-expose.io/external-tls-client-auth"] = json!("required");
    assert!(refusal(&pod).contains("applies only with kafka-expose.io/external-tls"));
    let mut pod = tls_pod("kafka-0", "secret:{pod}-tls");
    pod["spec"]["containers"][0]["image"] = json!("confluentinc/cp-kafka:7.6.1");
    let out = apply(&pod, &decide(&pod));
    assert_eq!(
        value_of(&out, "KAFKA_LISTENER_NAME_EXTERNAL_SSL_KEYSTORE_TYPE"),
        "PEM"
    );
}

/// `expose=gateway`: a broker is held until the Gateway accepts its route (the reconciler puts
/// what the Gateway said on the broker's Service), and is told the Gateway's reason meanwhile.
#[test]
fn a_gateway_broker_is_held_until_its_route_is_accepted() {
    let mut pod = apache_pod("kafka-2");
    pod["metadata"]["annotations"] = json!({
        "kafka-expose.io/expose": "gateway",
        "kafka-expose.io/gateway": "infra/public",
        "kafka-expose.io/advertised-host": "template:kafka-{ordinal}.example.com",
        "kafka-expose.io/external-tls": "ca:kafka-ca",
    });
    let s = settings();
    let decide_said = |said: Option<&str>| {
        let route = |svc: &str| {
            assert_eq!(svc, "kafka-2-external");
            said.map(str::to_string)
        };
        let ctx = PodContext {
            settings: &s,
            namespace: Some("kafka"),
            lb_address: &|_| None,
            route: &route,
        };
        mutate_pod(&pod, &ctx).expect("a decision")
    };
    for (said, wanted) in [
        (None, "has no status from Gateway infra/public yet"),
        (
            Some("pending"),
            "has no status from Gateway infra/public yet",
        ),
        (
            Some("refused: NotAllowedByListeners: no listener allows routes from namespace kafka"),
            "is not accepted by Gateway infra/public: NotAllowedByListeners: no listener allows routes from namespace kafka",
        ),
    ] {
        match decide_said(said).outcome {
            PodOutcome::WaitForAddress { service, message } => {
                assert_eq!(service, "kafka-2-external");
                assert!(
                    message.contains("broker 2 waits for its route: TLSRoute kafka-2-external"),
                    "{message}"
                );
                assert!(message.contains(wanted), "{message}");
            }
            other => panic!("held: {other:?}"),
        }
    }
    let d = decide_said(Some("accepted"));
    match &d.outcome {
        PodOutcome::Mutated { advertised, .. } => {
            assert_eq!(advertised, "kafka-2.example.com:443")
        }
        other => panic!("released: {other:?}"),
    }
    let out = apply(&pod, &d);
    assert!(
        env_of(&out).contains(&(
            "KAFKA_EXPOSE_EXTERNAL_HOST".into(),
            Some("kafka-2.example.com".into())
        )),
        "{out}"
    );
}
