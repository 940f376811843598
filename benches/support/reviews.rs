//! Review bodies shared by the benchmarks.

use serde_json::{Value, json};

/// The UPDATE review of a Deployment that has nothing to do with Kafka: three containers with
/// 30 variables each, as `kubectl apply` leaves it, with its `oldObject`.
pub fn deployment_update() -> Vec<u8> {
    let env: Vec<Value> = (0..30)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("a value of some length {i}")}))
        .collect();
    let containers: Vec<Value> = ["web", "sidecar", "metrics"]
        .iter()
        .map(|n| {
            json!({"name": n, "image": format!("registry.example/{n}:1.4.2"), "env": env,
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}})
        })
        .collect();
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "d1", "resourceVersion": "1234",
                     "labels": {"app": "web", "team": "shop"},
                     "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": containers}}}
    });
    let mut old = object.clone();
    old["spec"]["replicas"] = json!(2);
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "bench", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                    "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                    "namespace": "shop", "operation": "UPDATE", "userInfo": {"username": "bench"},
                    "object": object, "oldObject": old, "dryRun": false}
    }))
    .unwrap()
}

/// The CREATE review of `pod`.
pub fn pod_create(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "kafka", "operation": "CREATE", "userInfo": {"username": "bench"},
                    "object": pod, "dryRun": false}
    }))
    .unwrap()
}

/// The CREATE review of pod `pod`'s Binding to node `node`, as the scheduler sends it.
pub fn binding_create(pod: &str, node: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "bench", "kind": {"group": "", "version": "v1", "kind": "Binding"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "subResource": "binding", "name": pod,
                    "namespace": "kafka", "operation": "CREATE",
                    "userInfo": {"username": "system:kube-scheduler"},
                    "object": {"apiVersion": "v1", "kind": "Binding",
                               "metadata": {"name": pod, "namespace": "kafka", "uid": "p1"},
                               "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
                    "dryRun": false}
    }))
    .unwrap()
}

/// Binding caches as a cluster gives them: one exposed `node:` broker, `kafka/kafka-0`, and its
/// node with three addresses; every other pod is unrelated.
pub struct BenchBindings;

impl kafka_expose::engine::binding::BindingFacts for BenchBindings {
    fn broker(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        (namespace == "kafka" && pod == "kafka-0").then(|| {
            [(
                "advertised-host".to_string(),
                "node:ExternalDNS,ExternalIP".to_string(),
            )]
            .into()
        })
    }
    fn node_addresses(&self, _: &str) -> Option<Vec<(String, String)>> {
        Some(vec![
            ("InternalIP".into(), "10.0.0.7".into()),
            ("ExternalIP".into(), "203.0.113.7".into()),
            ("Hostname".into(), "ip-10-0-0-7".into()),
        ])
    }
}

/// A webhook state with [`BenchBindings`].
pub fn state_with_bindings() -> kafka_expose::webhook::AppState {
    let mut s = kafka_expose::webhook::AppState::standalone(
        kafka_expose::config::Settings::default(),
        kafka_expose::webhook::admission::FailureMode::Open,
    );
    s.bindings = Some(std::sync::Arc::new(BenchBindings));
    s
}
