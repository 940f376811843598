//! The workload decision: validation, annotations carried into the pod template, the rolling
//! hash and the Pod webhook's label, and clean removal.

use kafka_expose::config::Settings;
use kafka_expose::engine::exposure::Skip;
use kafka_expose::engine::workload::{WorkloadKind, WorkloadOutcome, mutate_workload};
use kafka_expose::offline::{self, Options};
use serde_json::{Value, json};

fn sts(annotations: Value, template_meta: Option<Value>) -> Value {
    let mut template = json!({
        "spec": {"containers": [{
            "name": "broker",
            "image": "apache/kafka:3.9.1",
            "env": [
                {"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092,CONTROLLER://:9093"},
                {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://x:9092"},
                {"name": "KAFKA_CONTROLLER_LISTENER_NAMES", "value": "CONTROLLER"},
                {"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"}
            ]
        }]}
    });
    if let Some(m) = template_meta {
        template["metadata"] = m;
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "kafka", "namespace": "kafka", "annotations": annotations},
        "spec": {
            "replicas": 3,
            "serviceName": "kafka-headless",
            "selector": {"matchLabels": {"app": "kafka"}},
            "template": template
        }
    })
}

fn mutate(obj: &Value) -> (Value, kafka_expose::engine::workload::WorkloadDecision) {
    let d =
        mutate_workload(obj, WorkloadKind::StatefulSet, &Settings::default()).expect("a decision");
    let mut out = obj.clone();
    json_patch::patch(&mut out, &d.patch).expect("the patch applies to the object as sent");
    (out, d)
}

fn tpl_ann(obj: &Value) -> &serde_json::Map<String, Value> {
    obj["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .unwrap()
}

#[test]
fn a_template_without_metadata_gets_annotations_hash_and_label() {
    let obj = sts(
        json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31000"}),
        None,
    );
    let (out, d) = mutate(&obj);
    assert!(
        matches!(d.outcome, WorkloadOutcome::Exposed { adapter: "env", .. }),
        "{:?}",
        d.outcome
    );
    let ann = tpl_ann(&out);
    assert_eq!(ann["kafka-expose.io/expose"], "nodeport");
    assert_eq!(ann["kafka-expose.io/port-base"], "31000");
    assert_eq!(ann["kafka-expose.io/inherited"], "expose,port-base");
    assert_eq!(
        ann["kafka-expose.io/config-hash"].as_str().unwrap().len(),
        16
    );
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"]["kafka-expose.io/exposed"],
        "true"
    );
}

#[test]
fn the_template_wins_and_keeps_its_own_keys() {
    let obj = sts(
        json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31000"}),
        Some(
            json!({"labels": {"app": "kafka"}, "annotations": {"kafka-expose.io/port-base": "30100"}}),
        ),
    );
    let (out, _) = mutate(&obj);
    let ann = tpl_ann(&out);
    assert_eq!(ann["kafka-expose.io/port-base"], "30100");
    assert_eq!(ann["kafka-expose.io/inherited"], "expose");
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"]["app"],
        "kafka"
    );
}

#[test]
fn a_changed_configuration_changes_the_hash_and_so_rolls_the_brokers() {
    let (first, _) = mutate(&sts(json!({"kafka-expose.io/expose": "nodeport"}), None));
    let mut changed = first.clone();
    changed["metadata"]["annotations"]["kafka-expose.io/port-base"] = json!("31000");
    let (second, _) = mutate(&changed);
    assert_ne!(
        tpl_ann(&first)["kafka-expose.io/config-hash"],
        tpl_ann(&second)["kafka-expose.io/config-hash"]
    );
    assert_eq!(tpl_ann(&second)["kafka-expose.io/port-base"], "31000");
    let (third, d) = mutate(&second);
    assert!(d.patch.is_empty(), "stable once applied: {:?}", d.patch);
    assert_eq!(third, second);
}

#[test]
fn removing_the_annotation_removes_what_was_added_and_keeps_the_users_keys() {
    let obj = sts(
        json!({"kafka-expose.io/expose": "nodeport"}),
        Some(
            json!({"labels": {"app": "kafka"}, "annotations": {"kafka-expose.io/listener-name": "OUTSIDE", "other": "x"}}),
        ),
    );
    let (exposed, _) = mutate(&obj);
    let mut removed = exposed.clone();
    removed["metadata"]["annotations"] = json!({});
    let (out, d) = mutate(&removed);
    assert_eq!(d.outcome, WorkloadOutcome::Skipped(Skip::NotRequested));
    let ann = tpl_ann(&out);
    assert_eq!(
        ann.keys().cloned().collect::<Vec<_>>(),
        vec![
            "kafka-expose.io/listener-name".to_string(),
            "other".to_string()
        ]
    );
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"],
        json!({"app": "kafka"})
    );
}

#[test]
fn expose_off_unexposes_like_removal() {
    let (exposed, _) = mutate(&sts(json!({"kafka-expose.io/expose": "nodeport"}), None));
    let mut off = exposed.clone();
    off["metadata"]["annotations"]["kafka-expose.io/expose"] = json!("off");
    let (out, d) = mutate(&off);
    assert_eq!(d.outcome, WorkloadOutcome::Skipped(Skip::NotRequested));
    assert!(
        out["spec"]["template"]["metadata"]["labels"]
            .get("kafka-expose.io/exposed")
            .is_none()
    );
}

#[test]
fn ordinals_start_is_carried_to_the_pods() {
    let mut obj = sts(json!({"kafka-expose.io/expose": "nodeport"}), None);
    obj["spec"]["ordinals"] = json!({"start": 1});
    let (out, _) = mutate(&obj);
    assert_eq!(tpl_ann(&out)["kafka-expose.io/ordinals-start"], "1");
}

/// The value of `name` in the first container of a pod `mutate` rendered.
fn env_value<'a>(pod: &'a Value, name: &str) -> &'a str {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("{name} not set"))
}

fn node_port_of<'a>(out: &'a offline::Output, service: &str) -> &'a Value {
    &out.objects
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == service)
        .unwrap_or_else(|| panic!("no Service {service}"))["spec"]["ports"][0]["nodePort"]
}

#[test]
fn with_ordinals_start_each_broker_is_on_base_plus_its_ordinal() {
    let mut obj = sts(json!({"kafka-expose.io/expose": "nodeport"}), None);
    obj["spec"]["ordinals"] = json!({"start": 1});
    let out = offline::run(vec![obj], &Options::default()).unwrap();
    let pods: Vec<&Value> = out.objects.iter().filter(|o| o["kind"] == "Pod").collect();
    let names: Vec<&str> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kafka-1", "kafka-2", "kafka-3"]);
    for (pod, port) in pods.iter().zip(["32401", "32402", "32403"]) {
        assert_eq!(env_value(pod, "KAFKA_EXPOSE_EXTERNAL_PORT"), port);
    }
    assert_eq!(node_port_of(&out, "kafka-1-external"), 32401);
    assert_eq!(node_port_of(&out, "kafka-3-external"), 32403);
}

#[test]
fn a_first_ordinal_that_pushes_the_last_broker_out_of_range_is_refused() {
    let mut obj = sts(
        json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32764"}),
        None,
    );
    obj["spec"]["ordinals"] = json!({"start": 2});
    let e = mutate_workload(&obj, WorkloadKind::StatefulSet, &Settings::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ports 32766-32768"), "{e}");
    assert!(e.contains("at most 32763 fits"), "{e}");
}

#[test]
fn deployments_with_ordinals_0_and_1_share_a_port_base_without_overlapping() {
    let deployment = |name: &str, ordinal: &str| {
        let mut d = sts(
            json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31000",
                   "kafka-expose.io/ordinal": ordinal}),
            None,
        );
        d["kind"] = json!("Deployment");
        d["metadata"]["name"] = json!(name);
        d["spec"]["replicas"] = json!(1);
        d
    };
    let out = offline::run(
        vec![deployment("broker-a", "0"), deployment("broker-b", "1")],
        &Options::default(),
    )
    .unwrap();
    assert_eq!(node_port_of(&out, "broker-a-0-external"), 31000);
    assert_eq!(node_port_of(&out, "broker-b-1-external"), 31001);
    let ports: Vec<&str> = out
        .objects
        .iter()
        .filter(|o| o["kind"] == "Pod")
        .map(|p| env_value(p, "KAFKA_EXPOSE_EXTERNAL_PORT"))
        .collect();
    assert_eq!(ports, ["31000", "31001"]);
}

#[test]
fn a_workload_without_a_broker_is_left_alone_and_the_brokers_are_exposed() {
    // An exporter beside the brokers, reached by the same --set: no ordinal, and no refusal.
    let mut exporter = sts(json!({}), None);
    exporter["kind"] = json!("Deployment");
    exporter["metadata"]["name"] = json!("kafka-exporter");
    exporter["spec"]["replicas"] = json!(1);
    exporter["spec"]["template"]["spec"]["containers"] = json!([{
        "name": "kafka-exporter", "image": "danielqsj/kafka-exporter:v1.7.0",
        "args": ["--kafka.server=kafka:9092"]
    }]);
    let opts = Options {
        set: vec![("expose".into(), "nodeport".into())],
        ..Options::default()
    };
    let out = offline::run(vec![exporter, sts(json!({}), None)], &opts).unwrap();
    let report = offline::explain(&out);
    assert!(
        report.contains("Deployment kafka/kafka-exporter: left alone: no Kafka broker container"),
        "{report}"
    );
    assert!(
        report.contains("StatefulSet kafka/kafka: exposed by nodeport"),
        "{report}"
    );
    assert_eq!(node_port_of(&out, "kafka-2-external"), 32402);
}

#[test]
fn an_explicit_port_base_contradicting_the_charts_own_scheme_is_refused() {
    let docs = offline::read_documents(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/charts/cp-helm-charts-cp-kafka.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let opts = Options {
        set: vec![
            ("expose".into(), "nodeport".into()),
            ("port-base".into(), "32000".into()),
        ],
        ..Options::default()
    };
    let e = kafka_expose::engine::error_chain(&offline::run(docs, &opts).unwrap_err());
    assert!(e.contains("kafka-expose.io/port-base=\"32000\""), "{e}");
    assert!(e.contains("set it to 31090"), "{e}");
}

#[test]
fn two_workloads_claiming_the_same_node_ports_are_refused() {
    let mut a = sts(json!({"kafka-expose.io/expose": "nodeport"}), None);
    let mut b = a.clone();
    a["metadata"]["name"] = json!("kafka-a");
    b["metadata"]["name"] = json!("kafka-b");
    b["metadata"]["annotations"]["kafka-expose.io/port-base"] = json!("32402");
    let e = offline::run(vec![a.clone(), b], &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("StatefulSet kafka-a and StatefulSet kafka-b overlap at 32402"),
        "{e}"
    );
    let mut c = a.clone();
    c["metadata"]["name"] = json!("kafka-c");
    c["metadata"]["annotations"]["kafka-expose.io/port-base"] = json!("32403");
    offline::run(vec![a, c], &Options::default()).expect("adjacent ranges do not clash");
}

#[test]
fn a_deployment_broker_is_exposed_by_its_ordinal() {
    // Its refusal without an ordinal or with two replicas is config::fit's unit test.
    let mut d = sts(json!({"kafka-expose.io/expose": "nodeport"}), None);
    d["kind"] = json!("Deployment");
    d["spec"]["replicas"] = json!(1);
    d["metadata"]["annotations"]["kafka-expose.io/ordinal"] = json!("4");
    let out = offline::run(vec![d], &Options::default()).unwrap();
    let pod = out.objects.iter().find(|o| o["kind"] == "Pod").unwrap();
    assert!(
        pod["metadata"]["generateName"]
            .as_str()
            .unwrap()
            .starts_with("kafka-")
    );
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "KAFKA_EXPOSE_EXTERNAL_PORT" && e["value"] == "32404")
    );
    let svc = out
        .objects
        .iter()
        .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "kafka-4-external")
        .unwrap();
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app": "kafka", "kafka-expose.io/exposed": "true"})
    );
}

#[test]
fn a_workload_with_a_bad_shape_is_an_error_not_a_panic() {
    for bad in [
        json!({"spec": {"replicas": "three"}}),
        json!("text"),
        json!({"spec": {"template": 5}}),
    ] {
        assert!(
            mutate_workload(&bad, WorkloadKind::StatefulSet, &Settings::default()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_key_listed_twice_as_inherited_is_removed_once() {
    let obj = sts(
        json!({}),
        Some(
            json!({"annotations": {"kafka-expose.io/expose": "nodeport", "kafka-expose.io/inherited": "expose,expose"}}),
        ),
    );
    let (out, d) = mutate(&obj);
    assert_eq!(d.outcome, WorkloadOutcome::Skipped(Skip::NotRequested));
    assert_eq!(
        tpl_ann(&out).len(),
        0,
        "the copied key and the bookkeeping are gone"
    );
}

#[test]
fn mutate_refuses_workloads_of_removed_api_versions_naming_the_version() {
    for (api, kind) in [
        ("apps/v1beta1", "StatefulSet"),
        ("apps/v1beta2", "Deployment"),
        ("extensions/v1beta1", "Deployment"),
    ] {
        let mut obj = sts(json!({"kafka-expose.io/expose": "nodeport"}), None);
        obj["apiVersion"] = json!(api);
        obj["kind"] = json!(kind);
        let e = offline::run(vec![obj], &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{kind} kafka is \"{api}\"")), "{e}");
        assert!(e.contains("convert it to apps/v1"), "{e}");
    }
}

#[test]
fn an_exposed_workload_carries_the_exposed_label_itself_and_loses_it_with_the_annotation() {
    // Exposed by its template's annotation alone: the reconciler, which watches workloads as
    // metadata, sees it by the label on the workload.
    let obj = sts(
        json!({}),
        Some(json!({"annotations": {"kafka-expose.io/expose": "nodeport"}})),
    );
    let (exposed, _) = mutate(&obj);
    assert_eq!(
        exposed["metadata"]["labels"]["kafka-expose.io/exposed"],
        "true"
    );
    let mut removed = exposed.clone();
    removed["spec"]["template"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("kafka-expose.io/expose");
    let (out, _) = mutate(&removed);
    assert!(
        out["metadata"]["labels"]
            .get("kafka-expose.io/exposed")
            .is_none(),
        "{}",
        out["metadata"]
    );
}

#[test]
fn a_workload_sent_without_metadata_gets_it_before_its_label() {
    // Found by the `decisions` fuzz target: exposed by its template alone, with no `metadata`,
    // the workload's exposed label was added under a parent that did not exist.
    let mut obj = sts(
        json!({}),
        Some(json!({"annotations": {"kafka-expose.io/expose": "nodeport"}})),
    );
    obj.as_object_mut().unwrap().remove("metadata");
    let (out, d) = mutate(&obj);
    assert!(!d.patch.is_empty());
    assert_eq!(out["metadata"]["labels"]["kafka-expose.io/exposed"], "true");
}

/// Decides `obj` with a policy layer, as the policy controller does, and applies the patch.
fn with_policy(
    obj: &Value,
    layer: kafka_expose::engine::workload::PolicyLayer,
) -> (Value, kafka_expose::engine::workload::WorkloadDecision) {
    use kafka_expose::engine::workload::{Workload, decide_workload};
    let mut w = Workload::from_value(WorkloadKind::StatefulSet, obj).unwrap();
    w.policy = layer;
    let d = decide_workload(&w, &Settings::default()).expect("a decision");
    let mut out = obj.clone();
    json_patch::patch(&mut out, &d.patch).expect("the patch applies");
    (out, d)
}

fn prod_stamp() -> kafka_expose::engine::workload::PolicyLayer {
    use kafka_expose::engine::workload::{PolicyLayer, Stamp};
    PolicyLayer::Set(Stamp {
        policy: "prod".into(),
        values: [
            ("expose", "nodeport"),
            ("port-base", "31000"),
            ("external-traffic-policy", "Local"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    })
}

#[test]
fn a_policy_stamp_exposes_an_unannotated_workload_and_any_later_write_keeps_it() {
    let obj = sts(json!({"team": "data"}), None);
    let (stamped, d) = with_policy(&obj, prod_stamp());
    assert!(matches!(d.outcome, WorkloadOutcome::Exposed { .. }));
    let ann = tpl_ann(&stamped);
    assert_eq!(ann["kafka-expose.io/expose"], "nodeport");
    assert_eq!(ann["kafka-expose.io/port-base"], "31000");
    assert_eq!(ann["kafka-expose.io/policy"], "prod");
    assert_eq!(
        ann["kafka-expose.io/policy-keys"],
        "expose,external-traffic-policy,port-base"
    );
    assert_eq!(
        stamped["metadata"]["labels"]["kafka-expose.io/policy"],
        "prod"
    );
    assert_eq!(
        stamped["spec"]["template"]["metadata"]["labels"]["kafka-expose.io/exposed"],
        "true"
    );
    // The workload webhook, knowing nothing of policies, sees the same configuration in the
    // stamped template: no change, so no roll outside the pacing.
    let (again, d2) = mutate(&stamped);
    assert_eq!(again, stamped, "{:?}", d2.patch);
}

#[test]
fn the_workloads_own_annotations_win_over_the_policy_key_by_key() {
    let obj = sts(json!({"kafka-expose.io/port-base": "32000"}), None);
    let (out, _) = with_policy(&obj, prod_stamp());
    let ann = tpl_ann(&out);
    assert_eq!(ann["kafka-expose.io/port-base"], "32000");
    assert_eq!(ann["kafka-expose.io/inherited"], "port-base");
    assert_eq!(
        ann["kafka-expose.io/policy-keys"],
        "expose,external-traffic-policy"
    );
    assert_eq!(ann["kafka-expose.io/external-traffic-policy"], "Local");
}

#[test]
fn clearing_a_stamp_removes_all_it_added_and_leaves_the_users_keys() {
    let obj = sts(
        json!({}),
        Some(json!({"annotations": {"kafka-expose.io/listener-name": "OUTSIDE", "team": "data"}})),
    );
    let (stamped, _) = with_policy(&obj, prod_stamp());
    assert_eq!(
        tpl_ann(&stamped)["kafka-expose.io/listener-name"],
        "OUTSIDE"
    );
    let (cleared, d) = with_policy(&stamped, kafka_expose::engine::workload::PolicyLayer::Clear);
    assert!(matches!(
        d.outcome,
        WorkloadOutcome::Skipped(Skip::NotRequested)
    ));
    let ann = tpl_ann(&cleared);
    let left: Vec<&String> = ann.keys().collect();
    assert_eq!(left, ["kafka-expose.io/listener-name", "team"]);
    let labels = cleared["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(labels.is_empty(), "{labels:?}");
}

#[test]
fn a_changed_policy_restamps_and_drops_the_keys_it_no_longer_sets() {
    use kafka_expose::engine::workload::{PolicyLayer, Stamp};
    let obj = sts(json!({}), None);
    let (stamped, first) = with_policy(&obj, prod_stamp());
    let changed = PolicyLayer::Set(Stamp {
        policy: "prod".into(),
        values: [("expose", "nodeport"), ("port-base", "31010")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    let (out, second) = with_policy(&stamped, changed);
    let ann = tpl_ann(&out);
    assert_eq!(ann["kafka-expose.io/port-base"], "31010");
    assert!(!ann.contains_key("kafka-expose.io/external-traffic-policy"));
    assert_eq!(ann["kafka-expose.io/policy-keys"], "expose,port-base");
    let hash = |d: &kafka_expose::engine::workload::WorkloadDecision| match &d.outcome {
        WorkloadOutcome::Exposed { hash, .. } => hash.clone(),
        other => panic!("{other:?}"),
    };
    assert_ne!(hash(&first), hash(&second), "the change rolls the brokers");
}

mod stamp_properties {
    use super::*;
    use kafka_expose::engine::workload::{PolicyLayer, Stamp, Workload, decide_workload};
    use proptest::prelude::*;

    fn values() -> impl Strategy<Value = std::collections::BTreeMap<String, String>> {
        prop::collection::btree_map(
            prop::sample::select(vec![
                "port-base",
                "external-traffic-policy",
                "bootstrap-node-port",
                "listener-name",
            ]),
            prop::sample::select(vec![
                "31000", "31100", "Local", "Cluster", "EXTERNAL", "OUTSIDE",
            ]),
            0..4,
        )
        .prop_map(|m| {
            let mut m: std::collections::BTreeMap<String, String> = m
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.insert("expose".into(), "nodeport".into());
            m
        })
    }

    fn decide(obj: &Value, layer: PolicyLayer) -> Option<(Value, usize, Option<Stamp>)> {
        let mut w = Workload::from_value(WorkloadKind::StatefulSet, obj).unwrap();
        w.policy = layer;
        // Values that do not parse together are refused like annotations: nothing to check.
        let d = decide_workload(&w, &Settings::default()).ok()?;
        let mut out = obj.clone();
        json_patch::patch(&mut out, &d.patch).unwrap();
        let again = Workload::from_value(WorkloadKind::StatefulSet, &out).unwrap();
        Some((out, d.patch.len(), again.stamp()))
    }

    proptest! {
        /// A stamp, beneath any own annotations, reads back as what was wanted; a later write
        /// that knows nothing of policies changes nothing; and clearing it leaves the
        /// workload as if never stamped.
        #[test]
        fn a_stamp_reads_back_survives_other_writes_and_clears(
            policy in values(),
            own in values(),
            annotate in any::<bool>(),
        ) {
            let meta: serde_json::Map<String, Value> = if annotate {
                own.iter()
                    .filter(|(k, _)| k.as_str() != "expose")
                    .map(|(k, v)| (format!("kafka-expose.io/{k}"), json!(v)))
                    .collect()
            } else {
                Default::default()
            };
            let obj = sts(Value::Object(meta.clone()), None);
            let stamp = Stamp { policy: "prod".into(), values: policy.clone() };
            let Some((stamped, _, read)) = decide(&obj, PolicyLayer::Set(stamp)) else {
                return Ok(());
            };
            let read = read.expect("a stamp");
            prop_assert_eq!(&read.policy, "prod");
            for (k, v) in &policy {
                let own_wins = meta.contains_key(&format!("kafka-expose.io/{k}"));
                prop_assert_eq!(read.values.contains_key(k), !own_wins, "{}", k);
                if !own_wins {
                    prop_assert_eq!(read.values.get(k), Some(v));
                }
            }
            let (kept, ops, _) = decide(&stamped, PolicyLayer::Keep).unwrap();
            prop_assert_eq!(ops, 0, "{}", kept);
            let (cleared, _, gone) = decide(&stamped, PolicyLayer::Clear).unwrap();
            prop_assert!(gone.is_none());
            let never = decide(&obj, PolicyLayer::Clear).map(|(o, _, _)| o).unwrap();
            // The same keys as a workload never stamped (an emptied map may stay behind).
            let keys = |v: &Value| -> Vec<String> {
                v["spec"]["template"]["metadata"]["annotations"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default()
            };
            prop_assert_eq!(keys(&cleared), keys(&never));
            prop_assert_eq!(
                cleared["metadata"]["labels"].get("kafka-expose.io/policy"),
                None
            );
        }
    }
}
