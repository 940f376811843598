//! Admission answers through `router(state)`, without sockets.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kafka_expose::config::Settings;
use kafka_expose::engine::pod::{PodContext, mutate_pod};
use kafka_expose::engine::workload::{Workload, WorkloadKind, mutate_workload};
use kafka_expose::offline::controller_pods;
use kafka_expose::webhook::admission::FailureMode;
use kafka_expose::webhook::{AppState, MAX_BODY_BYTES, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use support::https::{response_of, review};

fn state() -> AppState {
    AppState::standalone(Settings::default(), FailureMode::Open)
}

async fn post(state: AppState, body: Body, len: Option<usize>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::post("/mutate").header("content-type", "application/json");
    if let Some(n) = len {
        req = req.header("content-length", n.to_string());
    }
    let resp = router(state)
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, bytes)
}

async fn admit(state: AppState, review: &Value) -> (Value, Option<Value>) {
    let body = serde_json::to_vec(review).unwrap();
    let n = body.len();
    let (status, bytes) = post(state, Body::from(body), Some(n)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    response_of(&bytes)
}

const FIXTURES: [&str; 7] = [
    "apache-kafka-kraft.yaml",
    "bitnami-23.0.7.yaml",
    "bitnami-26.11.4.yaml",
    "bitnami-32.4.4.yaml",
    "bitnami-32.4.4-split.yaml",
    "cp-helm-charts-cp-kafka.yaml",
    "yolean-kubernetes-kafka.yaml",
];

fn annotate(obj: &mut Value, fixture: &str) {
    let ann = obj["metadata"]
        .as_object_mut()
        .unwrap()
        .entry("annotations")
        .or_insert(json!({}));
    if ann.is_null() {
        *ann = json!({});
    }
    ann["kafka-expose.io/expose"] = json!("nodeport");
    if fixture.starts_with("yolean") {
        ann["kafka-expose.io/adapter"] = json!("adopt");
        ann["kafka-expose.io/listener-name"] = json!("OUTSIDE");
        ann["kafka-expose.io/container-port"] = json!("9094");
    }
}

#[tokio::test]
async fn every_fixture_workload_and_pod_review_gets_the_engines_patch_and_its_uid() {
    let settings = Settings::default();
    for fixture in FIXTURES {
        for (i, mut sts) in support::fixture(fixture)
            .into_iter()
            .filter(|d| d["kind"] == "StatefulSet")
            .enumerate()
        {
            annotate(&mut sts, fixture);
            let uid = format!("{fixture}-{i}");
            let (resp, patch) = admit(
                state(),
                &review(&uid, "apps", "StatefulSet", "CREATE", &sts),
            )
            .await;
            assert_eq!(resp["uid"], uid.as_str());
            assert_eq!(resp["allowed"], true, "{fixture}: {resp}");
            let engine = mutate_workload(&sts, WorkloadKind::StatefulSet, &settings).unwrap();
            let want = serde_json::to_value(&engine.patch).unwrap();
            assert_eq!(
                patch.clone().unwrap_or(json!([])),
                want,
                "{fixture}: the engine's patch"
            );
            assert_eq!(
                resp["warnings"].as_array().map(Vec::len).unwrap_or(0),
                engine.warnings.len()
            );

            let mut mutated = sts.clone();
            json_patch::patch(&mut mutated, &engine.patch).unwrap();
            let w = Workload::from_value(WorkloadKind::StatefulSet, &mutated).unwrap();
            for pod in controller_pods(&w, &mutated) {
                let uid = format!("{uid}-{}", pod["metadata"]["name"]);
                let (resp, patch) = admit(state(), &review(&uid, "", "Pod", "CREATE", &pod)).await;
                assert_eq!(resp["uid"], uid.as_str());
                let no_lb = |_: &str| None;
                let ctx = PodContext {
                    settings: &settings,
                    namespace: pod["metadata"]["namespace"].as_str(),
                    lb_address: &no_lb,
                    route: &|_| None,
                };
                let engine = mutate_pod(&pod, &ctx).unwrap();
                let want = serde_json::to_value(&engine.patch).unwrap();
                assert_eq!(patch.unwrap_or(json!([])), want, "{fixture}: pod patch");
            }
        }
    }
}

fn apache_sts() -> Value {
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    annotate(&mut sts, "apache");
    sts
}

#[tokio::test]
async fn an_invalid_workload_is_denied_with_the_engines_message() {
    let mut sts = apache_sts();
    sts["metadata"]["annotations"]["kafka-expose.io/port-base"] = json!("40000");
    let (resp, patch) = admit(
        state(),
        &review("u1", "apps", "StatefulSet", "UPDATE", &sts),
    )
    .await;
    assert_eq!(resp["allowed"], false);
    assert!(patch.is_none());
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(msg.contains("kafka-expose.io/port-base=\"40000\""), "{msg}");
}

#[tokio::test]
async fn an_update_that_leaves_a_stored_invalid_workload_as_it_was_is_not_blocked() {
    // Scaled past the NodePort range through the scale subresource, which no webhook sees.
    let mut old = apache_sts();
    old["metadata"]["annotations"]["kafka-expose.io/port-base"] = json!("32766");
    old["spec"]["replicas"] = json!(5);
    // The reconciler writes its status; a user adds a label.
    let mut new = old.clone();
    new["metadata"]["annotations"]["kafka-expose.io/status"] = json!("invalid-configuration");
    new["metadata"]["labels"] = json!({"team": "streaming"});
    let mut r = review("u2", "apps", "StatefulSet", "UPDATE", &new);
    r["request"]["oldObject"] = old.clone();
    let (resp, patch) = admit(state(), &r).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(patch.is_none());
    let warning = resp["warnings"][0].as_str().unwrap();
    assert!(warning.contains("port-base=\"32766\""), "{warning}");
    assert!(warning.contains("stored so already"), "{warning}");

    // A change that makes it invalid in another way is refused.
    new["spec"]["replicas"] = json!(6);
    let mut r = review("u3", "apps", "StatefulSet", "UPDATE", &new);
    r["request"]["oldObject"] = old;
    let (resp, _) = admit(state(), &r).await;
    assert_eq!(resp["allowed"], false, "{resp}");
}

#[tokio::test]
async fn unknown_kinds_deletes_subresources_and_connects_are_allowed_untouched() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "annotations": {"kafka-expose.io/expose": "nodeport"}}});
    let (resp, patch) = admit(state(), &review("u", "", "ConfigMap", "CREATE", &cm)).await;
    assert_eq!(resp["allowed"], true);
    assert!(patch.is_none());

    let sts = apache_sts();
    let mut del = review("u2", "apps", "StatefulSet", "DELETE", &sts);
    del["request"]["oldObject"] = sts.clone();
    del["request"]["object"] = Value::Null;
    let (resp, patch) = admit(state(), &del).await;
    assert_eq!((resp["allowed"].clone(), patch), (json!(true), None));

    let mut sub = review("u3", "apps", "StatefulSet", "UPDATE", &sts);
    sub["request"]["subResource"] = json!("scale");
    let (resp, patch) = admit(state(), &sub).await;
    assert_eq!((resp["allowed"].clone(), patch), (json!(true), None));

    let mut connect = review(
        "u4",
        "",
        "Pod",
        "CONNECT",
        &json!({"kind": "PodExecOptions", "apiVersion": "v1"}),
    );
    connect["request"]["subResource"] = json!("exec");
    let (resp, _) = admit(state(), &connect).await;
    assert_eq!(resp["allowed"], true);
}

#[tokio::test]
async fn a_dry_run_gets_the_same_answer() {
    let sts = apache_sts();
    let normal = review("same", "apps", "StatefulSet", "CREATE", &sts);
    let mut dry = normal.clone();
    dry["request"]["dryRun"] = json!(true);
    assert_eq!(admit(state(), &normal).await, admit(state(), &dry).await);
}

#[tokio::test]
async fn a_pod_the_engine_fails_on_follows_the_failure_mode() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "b", "annotations": {"kafka-expose.io/expose": "nodeport"}},
        "spec": {"containers": [{"name": "kafka", "image": "apache/kafka:3.9.1",
                  "env": [{"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092"}]}]}
    });
    let r = review("p", "", "Pod", "CREATE", &pod);
    let (open, patch) = admit(state(), &r).await;
    assert_eq!(open["allowed"], true);
    assert!(patch.is_none());
    assert!(
        open["warnings"][0]
            .as_str()
            .unwrap()
            .contains("pod allowed unchanged"),
        "{open}"
    );
    let closed = AppState::standalone(Settings::default(), FailureMode::Closed);
    let (denied, _) = admit(closed, &r).await;
    assert_eq!(denied["allowed"], false);
    assert!(
        denied["status"]["message"]
            .as_str()
            .unwrap()
            .contains("kafka-expose.io/ordinal"),
        "{denied}"
    );
}

#[tokio::test]
async fn malformed_empty_and_oversized_bodies_are_refused_with_a_reason() {
    let (s, b) = post(state(), Body::empty(), Some(0)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).starts_with("empty body"));

    let (s, b) = post(state(), Body::from("{not json"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&b).starts_with("malformed AdmissionReview"));

    let (s, _) = post(
        state(),
        Body::from(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a review without a request");

    let (s, _) = post(state(), Body::from(r#"{"request": {"uid": 5}}"#), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a missing or mistyped field");

    // Declared too large: refused before anything is read.
    let (s, b) = post(state(), Body::from("x"), Some(MAX_BODY_BYTES + 1)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&b).starts_with("body too large"));

    // Sent without a declared length: cut off at the limit.
    let (s, _) = post(state(), Body::from(vec![b' '; MAX_BODY_BYTES + 1]), None).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn readyz_turns_true_once_listening_and_false_when_draining() {
    use kafka_expose::webhook::admin_router;
    let s = state();
    let get = |s: AppState| async move {
        let resp = admin_router(s)
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        get(s.clone()).await,
        (StatusCode::SERVICE_UNAVAILABLE, "not ready".into())
    );
    s.readiness.set_listening();
    assert_eq!(get(s.clone()).await, (StatusCode::OK, "ok".into()));
    s.readiness.set_draining();
    assert_eq!(
        get(s.clone()).await,
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down".into())
    );
}

/// The API server sends compact JSON, in which a candidate's kind shows as `"kind":"Pod"` and the
/// webhook reads it once on that guess; pretty-printed, the same review hides the guess and is
/// read head first. Both must get the same answer, byte for byte, including when the bytes
/// suggest a kind the request is not (a StatefulSet owned by a Pod) and when the request passes
/// through (a Pod's DELETE, a Pod's status update).
#[tokio::test]
async fn a_review_gets_the_same_answer_whether_its_kind_shows_in_its_bytes_or_not() {
    let mut sts = apache_sts();
    let settings = Settings::default();
    let engine = mutate_workload(&sts, WorkloadKind::StatefulSet, &settings).unwrap();
    let mut mutated = sts.clone();
    json_patch::patch(&mut mutated, &engine.patch).unwrap();
    let w = Workload::from_value(WorkloadKind::StatefulSet, &mutated).unwrap();
    let pod = controller_pods(&w, &mutated).remove(0);
    sts["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "x"}]);

    let mut delete = review("d", "", "Pod", "DELETE", &pod);
    delete["request"]["oldObject"] = pod.clone();
    delete["request"]["object"] = Value::Null;
    let mut status = review("s", "", "Pod", "UPDATE", &pod);
    status["request"]["subResource"] = json!("status");
    // Reads as a Pod (every field of one is optional but the spec's containers), and is not one.
    let template = json!({
        "apiVersion": "v1", "kind": "PodTemplate",
        "metadata": {"name": "t", "annotations": {"kafka-expose.io/expose": "nodeport"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "x"}]},
        "template": pod.clone()
    });
    // A request for a resource named Pod in another group, whose object reads as a core Pod
    // (an aggregated API could serve one); k8s-openapi refuses an object of another
    // apiVersion, so only the request's kind tells them apart.
    let custom = pod.clone();
    let reviews = [
        (
            "a custom Pod",
            review("c", "example.com", "Pod", "CREATE", &custom),
        ),
        (
            "a PodTemplate",
            review("t", "", "PodTemplate", "CREATE", &template),
        ),
        (
            "a StatefulSet owned by a Pod",
            review("w", "apps", "StatefulSet", "CREATE", &sts),
        ),
        ("a broker pod", review("p", "", "Pod", "CREATE", &pod)),
        ("a Pod's DELETE", delete),
        ("a Pod's status update", status),
    ];
    for (what, r) in reviews {
        let compact = serde_json::to_vec(&r).unwrap();
        let pretty = serde_json::to_vec_pretty(&r).unwrap();
        assert!(
            String::from_utf8_lossy(&compact).contains(r#""kind":"Pod""#),
            "{what}: the guess applies"
        );
        let (n, m) = (compact.len(), pretty.len());
        let once = post(state(), Body::from(compact), Some(n)).await;
        let head_first = post(state(), Body::from(pretty), Some(m)).await;
        assert_eq!(once.0, StatusCode::OK, "{what}");
        assert_eq!(
            String::from_utf8_lossy(&once.1),
            String::from_utf8_lossy(&head_first.1),
            "{what}"
        );
    }
    let (resp, patch) = admit(state(), &review("w", "apps", "StatefulSet", "CREATE", &sts)).await;
    assert_eq!(resp["allowed"], true);
    assert!(
        patch.is_some(),
        "the StatefulSet is decided as a StatefulSet: {resp}"
    );
    let (resp, patch) = admit(
        state(),
        &review("t", "", "PodTemplate", "CREATE", &template),
    )
    .await;
    assert_eq!(
        (&resp["allowed"], &resp["warnings"], patch),
        (&json!(true), &Value::Null, None),
        "a PodTemplate is allowed untouched"
    );
    let (resp, patch) = admit(
        state(),
        &review("c", "example.com", "Pod", "CREATE", &custom),
    )
    .await;
    assert_eq!(
        (&resp["allowed"], &resp["warnings"], patch),
        (&json!(true), &Value::Null, None),
        "a Pod of another group is allowed untouched"
    );
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "kafka-expose.io/v1alpha1", "kind": "KafkaExposePolicy",
           "metadata": {"name": "prod"}, "spec": spec})
}

/// 1.20 has no CEL: the webhook validates policies, with the annotations' parser, and names the
/// field. The object reaches a mutating webhook before the CRD's schema is checked, so a policy
/// that does not even decode is denied with the reason too.
#[tokio::test]
async fn policies_are_validated_naming_the_field() {
    let bad = policy(
        json!({"mode": "Enforce", "exposure": {"expose": "nodeport", "advertisedHost": "no such"},
                            "match": {"kinds": []}}),
    );
    let (resp, patch) = admit(
        state(),
        &review("p1", "kafka-expose.io", "KafkaExposePolicy", "CREATE", &bad),
    )
    .await;
    assert_eq!((&resp["allowed"], patch), (&json!(false), None));
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.exposure.advertisedHost=\"no such\""),
        "{msg}"
    );
    assert!(msg.contains("spec.match.kinds"), "{msg}");

    let undecodable = policy(json!({"mode": "Sometimes", "exposure": {"expose": "nodeport"}}));
    let (resp, _) = admit(
        state(),
        &review(
            "p2",
            "kafka-expose.io",
            "KafkaExposePolicy",
            "UPDATE",
            &undecodable,
        ),
    )
    .await;
    assert_eq!(resp["allowed"], false);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(msg.contains("unknown variant `Sometimes`"), "{msg}");

    let good = policy(json!({"mode": "Audit", "exposure": {"expose": "nodeport",
                             "portPool": {"from": 31000, "to": 31999, "blockSize": 10}}}));
    let (resp, patch) = admit(
        state(),
        &review(
            "p3",
            "kafka-expose.io",
            "KafkaExposePolicy",
            "CREATE",
            &good,
        ),
    )
    .await;
    assert_eq!((&resp["allowed"], patch), (&json!(true), None));
    assert!(
        resp["warnings"][0]
            .as_str()
            .unwrap()
            .contains("is in Audit mode: it changes nothing"),
        "{resp}"
    );

    let mut long = good.clone();
    long["metadata"]["name"] = json!("p".repeat(64));
    let (resp, _) = admit(
        state(),
        &review(
            "p5",
            "kafka-expose.io",
            "KafkaExposePolicy",
            "CREATE",
            &long,
        ),
    )
    .await;
    assert_eq!(resp["allowed"], false);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("metadata.name: 64 characters, at most 63"),
        "{msg}"
    );

    let mut status = review("p4", "kafka-expose.io", "KafkaExposePolicy", "UPDATE", &bad);
    status["request"]["subResource"] = json!("status");
    let (resp, _) = admit(state(), &status).await;
    assert_eq!(
        (&resp["allowed"], &resp["warnings"]),
        (&json!(true), &Value::Null),
        "a status update passes through"
    );
}

/// Policies as the watches would hold them: a fixed list, and namespace labels.
struct FakePolicies {
    policies: Vec<kafka_expose::api::KafkaExposePolicy>,
    namespaces: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

impl kafka_expose::engine::policy::PolicyView for FakePolicies {
    fn active(&self) -> bool {
        !self.policies.is_empty()
    }
    fn live(&self) -> Vec<kafka_expose::api::KafkaExposePolicy> {
        self.policies.clone()
    }
    fn namespace_labels(&self, namespace: &str) -> std::collections::BTreeMap<String, String> {
        self.namespaces.get(namespace).cloned().unwrap_or_default()
    }
}

fn with_policies(specs: &[(&str, Value)]) -> AppState {
    let mut s = state();
    s.policies = Some(std::sync::Arc::new(FakePolicies {
        policies: specs
            .iter()
            .map(|(name, spec)| {
                kafka_expose::api::KafkaExposePolicy::new(
                    name,
                    serde_json::from_value(spec.clone()).unwrap(),
                )
            })
            .collect(),
        namespaces: [
            (
                "prod".to_string(),
                [("env".to_string(), "prod".to_string())].into(),
            ),
            (
                "dev".to_string(),
                [("env".to_string(), "dev".to_string())].into(),
            ),
        ]
        .into(),
    }));
    s
}

fn unannotated_sts(ns: &str) -> Value {
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts
}

/// An Enforce policy applies at CREATE as if annotated, decided from the workload's metadata
/// and its namespace's labels; the same body elsewhere, or with no policy, is left alone.
#[tokio::test]
async fn an_enforced_policy_exposes_a_new_workload_as_if_annotated() {
    let enforce = json!({"mode": "Enforce",
        "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
        "exposure": {"expose": "nodeport", "portBase": 31000}});
    let s = with_policies(&[("prod", enforce)]);
    let sts = unannotated_sts("prod");
    let (resp, patch) = admit(
        s.clone(),
        &review("w1", "apps", "StatefulSet", "CREATE", &sts),
    )
    .await;
    assert_eq!(resp["allowed"], true);
    let mut out = sts.clone();
    let ops: json_patch::Patch = serde_json::from_value(patch.expect("a patch")).unwrap();
    json_patch::patch(&mut out, &ops).unwrap();
    let ann = &out["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["kafka-expose.io/expose"], "nodeport");
    assert_eq!(ann["kafka-expose.io/port-base"], "31000");
    assert_eq!(ann["kafka-expose.io/policy"], "prod");
    assert_eq!(out["metadata"]["labels"]["kafka-expose.io/policy"], "prod");

    // Another namespace, and no policy at all: untouched, no warning.
    for (state, ns) in [(s.clone(), "dev"), (state(), "prod")] {
        let (resp, patch) = admit(
            state,
            &review("w2", "apps", "StatefulSet", "CREATE", &unannotated_sts(ns)),
        )
        .await;
        assert_eq!((&resp["warnings"], patch), (&Value::Null, None), "{ns}");
    }

    // A metadata-only UPDATE of an unstamped workload is left to the paced controller.
    let mut update = review("w3", "apps", "StatefulSet", "UPDATE", &sts);
    let mut old = sts.clone();
    old["metadata"]["labels"]["team"] = json!("data");
    update["request"]["oldObject"] = old;
    let (resp, patch) = admit(s, &update).await;
    assert_eq!((&resp["allowed"], patch), (&json!(true), None));
}

/// With a pool, the webhook does not allocate (the one leader does, without races): it says
/// so. An Audit policy is reported on the workload's write and changes nothing.
#[tokio::test]
async fn a_pool_waits_for_the_controller_and_audit_only_warns() {
    let pooled = json!({"mode": "Enforce",
        "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
        "exposure": {"expose": "nodeport", "portPool": {"from": 31000, "to": 31099, "blockSize": 10}}});
    let audit = json!({"mode": "Audit",
        "match": {"selector": {"matchLabels": {"app": "kafka"}}},
        "exposure": {"expose": "loadbalancer"}});
    let s = with_policies(&[("pooled", pooled), ("watch", audit)]);
    let (resp, patch) = admit(
        s.clone(),
        &review(
            "p1",
            "apps",
            "StatefulSet",
            "CREATE",
            &unannotated_sts("prod"),
        ),
    )
    .await;
    assert_eq!(patch, None);
    let warnings = resp["warnings"].to_string();
    assert!(
        warnings.contains(
            "policy pooled exposes this workload once the policy controller gives it a block"
        ),
        "{warnings}"
    );
    assert!(
        warnings.contains("policy watch (Audit) matches this workload"),
        "{warnings}"
    );
    let (resp, patch) = admit(
        s,
        &review(
            "p2",
            "apps",
            "StatefulSet",
            "CREATE",
            &unannotated_sts("dev"),
        ),
    )
    .await;
    assert_eq!(patch, None, "Audit changes nothing");
    assert!(resp["warnings"].to_string().contains("(Audit)"), "{resp}");
}

struct OneBroker;

impl kafka_expose::engine::binding::BindingFacts for OneBroker {
    fn broker(&self, ns: &str, pod: &str) -> Option<std::collections::BTreeMap<String, String>> {
        (ns == "kafka" && pod == "kafka-0").then(|| {
            [(
                "advertised-host".to_string(),
                "node:ExternalDNS,ExternalIP".to_string(),
            )]
            .into()
        })
    }
    fn node_addresses(&self, node: &str) -> Option<Vec<(String, String)>> {
        match node {
            "public" => Some(vec![
                ("InternalIP".into(), "10.0.0.1".into()),
                ("ExternalIP".into(), "203.0.113.1".into()),
            ]),
            "private" => Some(vec![("InternalIP".into(), "10.0.0.2".into())]),
            _ => None,
        }
    }
}

fn binding_review(pod: &str, node: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "b", "kind": {"group": "", "version": "v1", "kind": "Binding"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "subResource": "binding", "name": pod, "namespace": "kafka",
                    "operation": "CREATE", "userInfo": {"username": "system:kube-scheduler"},
                    "object": {"apiVersion": "v1", "kind": "Binding",
                               "metadata": {"name": pod, "namespace": "kafka"},
                               "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
                    "dryRun": false}
    })
}

/// A broker's Binding gets its node's address as an annotation; any other Binding, a node
/// without the types, and a server without caches all leave it as it was.
#[tokio::test]
async fn a_brokers_binding_carries_its_nodes_address_and_no_other_is_touched() {
    let mut s = state();
    s.bindings = Some(std::sync::Arc::new(OneBroker));
    let (resp, patch) = admit(s.clone(), &binding_review("kafka-0", "public")).await;
    assert_eq!(resp["allowed"], true);
    assert_eq!(
        patch,
        Some(json!([{"op": "add", "path": "/metadata/annotations",
                     "value": {"kafka-expose.io/external-host": "203.0.113.1"}}]))
    );
    let (resp, patch) = admit(s.clone(), &binding_review("web-1", "public")).await;
    assert_eq!(
        (&resp["allowed"], &resp["warnings"], patch),
        (&json!(true), &Value::Null, None)
    );
    let (resp, patch) = admit(s, &binding_review("kafka-0", "private")).await;
    assert_eq!(
        (&resp["allowed"], patch),
        (&json!(true), None),
        "never denied"
    );
    assert!(
        resp["warnings"][0]
            .as_str()
            .unwrap()
            .contains("node private has no address of the types ExternalDNS, ExternalIP"),
        "{resp}"
    );
    let (resp, patch) = admit(state(), &binding_review("kafka-0", "public")).await;
    assert_eq!((&resp["allowed"], patch), (&json!(true), None));
}
