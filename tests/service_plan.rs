//! The Service plan: complete Services from an exposed workload.

use k8s_openapi::api::core::v1::Service;
use kafka_expose::config::Settings;
use kafka_expose::engine::exposure::{Decision, Skip};
use kafka_expose::engine::services;
use kafka_expose::engine::workload::{Workload, WorkloadKind};
use serde_json::{Value, json};

fn workload(annotations: Value) -> Workload {
    let obj = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "kafka", "namespace": "streaming", "uid": "1234-5678", "annotations": annotations},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "kafka"}},
            "template": {"metadata": {"labels": {"app": "kafka"}}, "spec": {"containers": [{
                "name": "broker",
                "image": "apache/kafka:3.9.1",
                "env": [
                    {"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092"},
                    {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://x:9092"}
                ]
            }]}}
        }
    });
    Workload::from_value(WorkloadKind::StatefulSet, &obj).unwrap()
}

fn services(annotations: Value) -> Vec<Value> {
    let w = workload(annotations);
    let Decision::Expose(exposure) = w.exposure(&Settings::default()).unwrap() else {
        panic!("not exposed");
    };
    let svcs = services::plan(&w, &exposure);
    svcs.iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect()
}

#[test]
fn loadbalancer_services_carry_class_source_ranges_policy_and_rendered_annotations() {
    let svcs = services(json!({
        "kafka-expose.io/expose": "loadbalancer",
        "kafka-expose.io/advertised-host": "template:{pod}.kafka.example.com",
        "kafka-expose.io/load-balancer-class": "example.com/internal",
        "kafka-expose.io/load-balancer-source-ranges": "203.0.113.0/24, 2001:db8::/32",
        "kafka-expose.io/external-traffic-policy": "Local",
        "kafka-expose.io/service-annotations": "{\"external-dns.alpha.kubernetes.io/hostname\": \"{pod}.kafka.example.com\"}"
    }));
    assert_eq!(svcs.len(), 3);
    let b1 = &svcs[1];
    assert_eq!(b1["metadata"]["name"], "kafka-1-external");
    assert_eq!(b1["metadata"]["namespace"], "streaming");
    assert_eq!(
        b1["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
        "kafka-1.kafka.example.com"
    );
    assert_eq!(
        b1["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kafka-expose"
    );
    assert_eq!(
        b1["metadata"]["labels"]["kafka-expose.io/workload"],
        "kafka"
    );
    assert_eq!(
        b1["metadata"]["ownerReferences"][0],
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka", "uid": "1234-5678",
               "controller": true, "blockOwnerDeletion": true})
    );
    let spec = &b1["spec"];
    assert_eq!(spec["type"], "LoadBalancer");
    assert_eq!(spec["loadBalancerClass"], "example.com/internal");
    assert_eq!(
        spec["loadBalancerSourceRanges"],
        json!(["203.0.113.0/24", "2001:db8::/32"])
    );
    assert_eq!(spec["externalTrafficPolicy"], "Local");
    assert_eq!(
        spec["selector"],
        json!({"statefulset.kubernetes.io/pod-name": "kafka-1"})
    );
    assert_eq!(
        spec["ports"],
        json!([{"name": "kafka-external", "protocol": "TCP", "port": 9094, "targetPort": 9094}])
    );
    let boot = &svcs[2];
    assert_eq!(boot["metadata"]["name"], "kafka-external-bootstrap");
    assert_eq!(
        boot["metadata"]["labels"]["kafka-expose.io/role"],
        "bootstrap"
    );
    assert_eq!(
        boot["spec"]["selector"],
        json!({"app": "kafka", "kafka-expose.io/exposed": "true"})
    );
    assert!(boot["metadata"].get("annotations").is_none());
}

#[test]
fn nodeport_services_pin_base_plus_index_and_the_bootstrap_node_port() {
    let svcs = services(json!({
        "kafka-expose.io/expose": "nodeport",
        "kafka-expose.io/port-base": "30500",
        "kafka-expose.io/bootstrap-node-port": "30499"
    }));
    let ports: Vec<&Value> = svcs.iter().map(|s| &s["spec"]["ports"][0]).collect();
    assert_eq!(ports[0]["nodePort"], 30500);
    assert_eq!(ports[1]["nodePort"], 30501);
    assert_eq!(ports[1]["port"], 30501);
    assert_eq!(ports[2]["nodePort"], 30499);
    for s in &svcs {
        assert_eq!(s["spec"]["type"], "NodePort");
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
        assert!(s["spec"].get("loadBalancerClass").is_none());
    }
}

#[test]
fn with_external_tls_a_nodeport_bootstrap_reaches_only_the_brokers_on_the_node_dialled() {
    // A connection to node A's bootstrap port must not reach a broker on node B: that broker's
    // certificate names B's address, and a verifying client dialled A's.
    let svcs = services(json!({
        "kafka-expose.io/expose": "nodeport",
        "kafka-expose.io/external-tls": "ca:kafka-ca"
    }));
    let policy = |s: &Value| s["spec"]["externalTrafficPolicy"].clone();
    assert_eq!(svcs[2]["metadata"]["name"], "kafka-external-bootstrap");
    assert_eq!(policy(&svcs[2]), "Local");
    assert_eq!(
        policy(&svcs[0]),
        "Cluster",
        "a broker's own port: as configured"
    );
    // A LoadBalancer bootstrap keeps the configured policy: its address is in every certificate.
    let lb = services(json!({
        "kafka-expose.io/expose": "loadbalancer",
        "kafka-expose.io/external-tls": "ca:kafka-ca"
    }));
    assert_eq!(policy(&lb[2]), "Cluster");
}

#[test]
fn hostport_plans_only_a_cluster_ip_bootstrap() {
    let svcs = services(json!({"kafka-expose.io/expose": "hostport"}));
    assert_eq!(svcs.len(), 1);
    assert_eq!(svcs[0]["spec"]["type"], "ClusterIP");
}

#[test]
fn workloads_that_get_no_services_say_why() {
    let none = workload(json!({}));
    let none = none.exposure(&Settings::default()).unwrap();
    assert!(
        matches!(none, Decision::Skip(Skip::NotRequested)),
        "{none:?}"
    );
    let off = workload(json!({"kafka-expose.io/expose": "off"}));
    let off = off.exposure(&Settings::default()).unwrap();
    assert!(matches!(off, Decision::Skip(Skip::NotRequested)), "{off:?}");
}

fn foreign(name: &str, node_port: i32, selector: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "streaming", "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "spec": {"type": "NodePort", "selector": selector,
                 "ports": [{"port": 9094, "nodePort": node_port}]}
    }))
    .unwrap()
}

#[test]
fn services_that_others_made_are_never_twinned_or_taken_over() {
    let w = workload(
        json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30500"}),
    );
    let Decision::Expose(e) = w.exposure(&Settings::default()).unwrap() else {
        panic!("not exposed");
    };
    let existing = vec![
        // Routes broker 0's advertised port to it: kafka-expose adds nothing for broker 0.
        foreign(
            "chart-0",
            30500,
            json!({"statefulset.kubernetes.io/pod-name": "kafka-0"}),
        ),
        // Holds broker 1's Service name, routing elsewhere: a conflict, left to its owner.
        foreign("kafka-1-external", 31999, json!({"app": "other"})),
    ];
    let plan = services::plan_around(&w, &e, &services::routes(&w, &e), &existing);
    let names: Vec<&str> = plan
        .services
        .iter()
        .map(|s| s.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["kafka-external-bootstrap"]);
    assert_eq!(plan.served_by_others, [(0, "chart-0".to_string())]);
    assert_eq!(plan.conflicts.len(), 1, "{:?}", plan.conflicts);
    assert!(
        plan.conflicts[0].starts_with("Service kafka-1-external: it exists, made by Helm"),
        "{:?}",
        plan.conflicts
    );
    // A NodePort held by a Service of another name is a conflict too.
    let held = vec![foreign("blocker", 30501, json!({"app": "other"}))];
    let plan = services::plan_around(&w, &e, &services::routes(&w, &e), &held);
    assert!(
        plan.conflicts[0].starts_with(
            "Service kafka-1-external (NodePort 30501): the port is held by Service blocker"
        ),
        "{:?}",
        plan.conflicts
    );
    assert_eq!(plan.services.len(), 2);
}

#[test]
fn a_service_kafka_expose_made_for_another_workload_is_not_taken_over_but_its_own_are_replanned() {
    let w = workload(json!({"kafka-expose.io/expose": "nodeport"}));
    let Decision::Expose(e) = w.exposure(&Settings::default()).unwrap() else {
        panic!("not exposed");
    };
    let managed = |name: &str, workload: &str| -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "streaming", "labels": {
                "app.kubernetes.io/managed-by": "kafka-expose", "kafka-expose.io/workload": workload}},
            "spec": {"type": "LoadBalancer", "selector": {"app": "other"}, "ports": [{"port": 9094}]}
        }))
        .unwrap()
    };
    // Workload kafka-1's shared Service holds the name of this workload's broker 1 Service.
    let existing = vec![
        managed("kafka-1-external", "kafka-1"),
        managed("kafka-0-external", "kafka"),
    ];
    let plan = services::plan_around(&w, &e, &services::routes(&w, &e), &existing);
    let names: Vec<&str> = plan
        .services
        .iter()
        .map(|s| s.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["kafka-0-external", "kafka-external-bootstrap"]);
    assert_eq!(
        plan.conflicts,
        [
            "Service kafka-1-external: it exists, made by kafka-expose for workload kafka-1; kafka-expose does not take it over"
        ]
    );
}

#[test]
fn a_shared_load_balancer_is_one_service_with_a_port_per_broker_targeting_its_named_port() {
    let svcs = services(json!({
        "kafka-expose.io/expose": "shared-loadbalancer",
        "kafka-expose.io/port-base": "9100",
        "kafka-expose.io/load-balancer-class": "example.com/vip",
        "kafka-expose.io/load-balancer-source-ranges": "203.0.113.0/24",
        "kafka-expose.io/service-annotations": "{\"external-dns.alpha.kubernetes.io/hostname\": \"{statefulset}.{namespace}.example.com\"}"
    }));
    assert_eq!(
        svcs.len(),
        1,
        "no per-broker Services, no bootstrap Service"
    );
    let s = &svcs[0];
    assert_eq!(s["metadata"]["name"], "kafka-external");
    assert_eq!(
        s["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"],
        "kafka.streaming.example.com"
    );
    assert_eq!(
        s["metadata"]["labels"]["kafka-expose.io/role"],
        "shared-loadbalancer"
    );
    let spec = &s["spec"];
    assert_eq!(spec["type"], "LoadBalancer");
    assert_eq!(spec["externalTrafficPolicy"], "Cluster");
    assert_eq!(spec["loadBalancerClass"], "example.com/vip");
    assert_eq!(spec["loadBalancerSourceRanges"], json!(["203.0.113.0/24"]));
    assert_eq!(
        spec["selector"],
        json!({"app": "kafka", "kafka-expose.io/exposed": "true"})
    );
    assert_eq!(
        spec["ports"],
        json!([
            {"name": "broker-0", "protocol": "TCP", "port": 9100, "targetPort": "kx-b0"},
            {"name": "broker-1", "protocol": "TCP", "port": 9101, "targetPort": "kx-b1"}
        ])
    );
}
