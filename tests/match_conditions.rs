//! The webhook match conditions, proven without a 1.28 API server: the CEL expressions the chart
//! renders and the server registers (`engine::registration`) are evaluated with the `cel` crate,
//! and the API server's choice of webhooks (rules, namespaceSelector, objectSelector, then every
//! match condition) is modelled here as admission plugins make it.
//!
//! The CEL used is the part Kubernetes' evaluator (cel-go with the Kubernetes libraries) shares
//! with the `cel` crate: field selection, `has()` on map fields, `== null` / `!= null`, `&&`,
//! `||`, `!`, the conditional `? :`, the `exists` macro over a map's keys, `startsWith`, and
//! `matches` with an anchored RE2 pattern (only `(?s:.)`, `(?s:.*)` and escaped literals).
//! Nothing else: no extension library, no optional types, no string formatting.
//!
//! - every fixture, as rendered: unannotated it calls nothing; annotated, stamped, or exposed
//!   and then edited, it calls the workload webhook;
//! - a property test over generated workloads, namespaces and policies: wherever the webhook
//!   patches, refuses or warns, the API server would have called it (no false negative);
//! - the counts of BENCHMARKS.md: unrelated Deployment writes and pod bindings that reach
//!   kafka-expose, today and under the conditions.

mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};
use kafka_expose::api::KafkaExposePolicy;
use kafka_expose::config::Settings;
use kafka_expose::engine::registration::{self, Wanted};
use kafka_expose::webhook::admission::FailureMode;
use kafka_expose::webhook::{AppState, router};
use kube::core::SelectorExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use support::https::{response_of, review};

/// Evaluates `expr` as the API server does for a match condition. An error is a failure, not
/// a "no": the API server would apply the failure policy.
fn eval(expr: &str, object: &Value, old: &Value) -> bool {
    let program = cel::Program::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let mut ctx = cel::Context::default();
    ctx.add_variable("object", cel::to_value(object).unwrap())
        .unwrap();
    ctx.add_variable("oldObject", cel::to_value(old).unwrap())
        .unwrap();
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => b,
        other => panic!("{expr}\non {object}\nand {old}: {other:?}"),
    }
}

/// The chart's workload webhook, as rendered for 1.28+ (its key condition and exclusions).
fn chart_webhook(conditions: bool) -> MutatingWebhook {
    serde_json::from_value(json!({
        "name": registration::WORKLOADS_WEBHOOK,
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "kx", "namespace": "kafka-expose", "path": "/mutate", "port": 443}},
        "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                   "resources": ["statefulsets", "deployments"], "scope": "Namespaced"}],
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kafka-expose"]},
            {"key": "kafka-expose.io/webhook", "operator": "NotIn", "values": ["disabled"]}]},
        "matchPolicy": "Equivalent", "sideEffects": "None", "timeoutSeconds": 5,
        "failurePolicy": "Ignore", "reinvocationPolicy": "IfNeeded",
        "matchConditions": if conditions { json!([registration::keys_condition()]) } else { Value::Null },
    }))
    .unwrap()
}

/// Every webhook the API server would hold: the chart's, and what the server registers for
/// `policies` (and the bindings webhook when `bindings`).
fn configuration(policies: &[KafkaExposePolicy], bindings: bool) -> Vec<MutatingWebhook> {
    let base = MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some("kx".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        webhooks: Some(vec![chart_webhook(true)]),
    };
    let registered = registration::plan(&Wanted {
        base: &base,
        name: "kx-registered",
        policies,
        bindings,
        bindings_timeout_seconds: 2,
    });
    base.webhooks
        .into_iter()
        .flatten()
        .chain(
            registered
                .into_iter()
                .flat_map(|r| r.webhooks.unwrap_or_default()),
        )
        .collect()
}

/// A request as the API server matches webhooks against it.
struct Req<'a> {
    resource: &'a str,
    operation: &'a str,
    namespace_labels: &'a BTreeMap<String, String>,
    object: &'a Value,
    old: &'a Value,
}

fn labels_of(o: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default()
}

fn selects(
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    match sel {
        None => true,
        Some(s) => kube::core::Selector::try_from(s.clone())
            .expect("a valid selector")
            .matches(labels),
    }
}

/// The webhooks of `hooks` the API server calls for `r`, by name.
fn called(hooks: &[MutatingWebhook], r: &Req<'_>) -> Vec<String> {
    hooks
        .iter()
        .filter(|h| {
            let rule = h.rules.iter().flatten().any(|rule| {
                rule.resources.iter().flatten().any(|x| x == r.resource)
                    && rule.operations.iter().flatten().any(|o| o == r.operation)
            });
            // An objectSelector matches when the new or the old object's labels do.
            let object = selects(h.object_selector.as_ref(), &labels_of(r.object))
                || (!r.old.is_null() && selects(h.object_selector.as_ref(), &labels_of(r.old)));
            rule && selects(h.namespace_selector.as_ref(), r.namespace_labels)
                && object
                && h.match_conditions
                    .iter()
                    .flatten()
                    .all(|c| eval(&c.expression, r.object, r.old))
        })
        .map(|h| h.name.clone())
        .collect()
}

fn namespace(name: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("kubernetes.io/metadata.name".into(), name.into());
    l
}

/// `v` as the API server sends it (in a review, and to CEL): decoded into its Go type and
/// encoded again, so a field a chart rendered as `null` is absent.
fn as_served(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(as_served);
        }
        Value::Array(a) => a.iter_mut().for_each(as_served),
        _ => {}
    }
}

/// Every StatefulSet and Deployment of every chart fixture, as rendered, as served.
fn fixture_workloads() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/charts");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    for f in files {
        for d in support::fixture(&f) {
            if matches!(d["kind"].as_str(), Some("StatefulSet" | "Deployment")) {
                let mut d = d;
                as_served(&mut d);
                out.push((f.clone(), d));
            }
        }
    }
    assert!(out.len() >= 12, "{}", out.len());
    out
}

fn resource_of(o: &Value) -> &'static str {
    if o["kind"] == "Deployment" {
        "deployments"
    } else {
        "statefulsets"
    }
}

fn set_annotation(o: &mut Value, at: &str, key: &str, value: &str) {
    let meta = o.pointer_mut(at).unwrap().as_object_mut().unwrap();
    let ann = meta.entry("annotations").or_insert(json!({}));
    if ann.is_null() {
        *ann = json!({});
    }
    ann[key] = json!(value);
}

#[test]
fn every_fixture_calls_the_webhook_only_with_a_key() {
    let hooks = configuration(&[], false);
    let ns = namespace("kafka", &[]);
    for (file, w) in fixture_workloads() {
        let r = |object: &Value, old: &Value, op: &str| {
            called(
                &hooks,
                &Req {
                    resource: resource_of(object),
                    operation: op,
                    namespace_labels: &ns,
                    object,
                    old,
                },
            )
        };
        let null = Value::Null;
        assert!(
            r(&w, &null, "CREATE").is_empty(),
            "{file}: unannotated, not called"
        );
        assert!(r(&w, &w, "UPDATE").is_empty(), "{file}");
        let want = vec![registration::WORKLOADS_WEBHOOK.to_string()];
        // A user's annotation, a label, a key on the pod template only, a policy's stamp.
        let mut annotated = w.clone();
        set_annotation(
            &mut annotated,
            "/metadata",
            "kafka-expose.io/expose",
            "nodeport",
        );
        assert_eq!(r(&annotated, &null, "CREATE"), want, "{file}");
        let mut labelled = w.clone();
        labelled["metadata"]["labels"]["kafka-expose.io/policy"] = json!("prod");
        assert_eq!(r(&labelled, &null, "CREATE"), want, "{file}");
        let mut template = w.clone();
        set_annotation(
            &mut template,
            "/spec/template/metadata",
            "kafka-expose.io/config-hash",
            "x",
        );
        assert_eq!(r(&template, &null, "CREATE"), want, "{file}");
        // The annotation taken off again: the update still reaches the webhook (the old object
        // has it), which then takes its changes out.
        assert_eq!(r(&w, &annotated, "UPDATE"), want, "{file}");
    }
}

/// Policies as the watches would hold them.
struct FakePolicies {
    policies: Vec<KafkaExposePolicy>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl kafka_expose::engine::policy::PolicyView for FakePolicies {
    fn active(&self) -> bool {
        !self.policies.is_empty()
    }
    fn live(&self) -> Vec<KafkaExposePolicy> {
        self.policies.clone()
    }
    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces.get(namespace).cloned().unwrap_or_default()
    }
}

/// The webhook's answer to `review`: whether it acted (a patch, a refusal or a warning).
async fn acts(state: AppState, review: &Value) -> (bool, String) {
    let body = serde_json::to_vec(review).unwrap();
    let resp = router(state)
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let (resp, patch) = response_of(&bytes);
    let warned = resp["warnings"].as_array().is_some_and(|w| !w.is_empty());
    (
        patch.is_some() || resp["allowed"] != true || warned,
        resp.to_string(),
    )
}

fn policy(i: usize, spec: Value) -> KafkaExposePolicy {
    KafkaExposePolicy::new(&format!("p{i}"), serde_json::from_value(spec).unwrap())
}

const NAMESPACES: [(&str, &[(&str, &str)]); 4] = [
    ("prod", &[("env", "prod"), ("team", "data")]),
    ("dev", &[("env", "dev")]),
    ("edge", &[("team", "edge")]),
    ("plain", &[]),
];

fn policy_spec() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("Enforce"), Just("Audit")],
        prop_oneof![
            Just(Value::Null),
            Just(json!({"matchLabels": {"env": "prod"}})),
            Just(json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["edge"]}]})),
            Just(json!({"matchExpressions": [{"key": "env", "operator": "Exists"}]})),
        ],
        prop_oneof![
            Just(Value::Null),
            Just(json!({"matchLabels": {"app": "kafka"}})),
            Just(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})),
        ],
        prop_oneof![
            Just(json!([])),
            Just(json!(["kafka*"])),
            Just(json!(["b?oker", "web"])),
            Just(json!(["*"])),
        ],
        prop_oneof![
            Just(Value::Null),
            Just(json!(["StatefulSet", "Deployment"])),
            Just(json!(["Deployment"])),
        ],
        prop_oneof![Just(json!([])), Just(json!(["dev"]))],
        0u16..3,
    )
        .prop_map(|(mode, ns_sel, sel, names, kinds, exclude, port)| {
            let mut m = json!({"names": names});
            if !ns_sel.is_null() {
                m["namespaceSelector"] = ns_sel;
            }
            if !sel.is_null() {
                m["selector"] = sel;
            }
            if !kinds.is_null() {
                m["kinds"] = kinds;
            }
            json!({"mode": mode, "match": m, "exclude": {"namespaces": exclude},
                   "exposure": {"expose": "nodeport", "portBase": 31000 + port * 100}})
        })
}

/// A workload: a fixture's, or an unrelated one, renamed and relabelled, with or without keys.
fn workload() -> impl Strategy<Value = (Value, String)> {
    let bases: Vec<Value> = fixture_workloads().into_iter().map(|(_, w)| w).collect();
    let unrelated = unrelated_deployment(0);
    (
        0..bases.len() + 1,
        prop_oneof![Just("kafka"), Just("kafka-2"), Just("broker"), Just("web")],
        prop_oneof![Just(None), Just(Some("kafka")), Just(Some("web"))],
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some(("/metadata", "kafka-expose.io/expose", "nodeport"))),
            Just(Some(("/metadata", "kafka-expose.io/expose", "off"))),
            Just(Some((
                "/metadata",
                "kafka-expose.io/port-base",
                "not a port"
            ))),
            Just(Some((
                "/spec/template/metadata",
                "kafka-expose.io/config-hash",
                "x"
            ))),
            Just(Some((
                "/metadata",
                "example.com/note",
                "kafka-expose.io/expose"
            ))),
        ],
        0..NAMESPACES.len(),
    )
        .prop_map(move |(b, name, app, tier, key, ns)| {
            let mut w = bases.get(b).cloned().unwrap_or_else(|| unrelated.clone());
            w["metadata"]["name"] = json!(name);
            w["metadata"]["namespace"] = json!(NAMESPACES[ns].0);
            let labels = w["metadata"]
                .as_object_mut()
                .unwrap()
                .entry("labels")
                .or_insert(json!({}));
            if labels.is_null() {
                *labels = json!({});
            }
            match app {
                Some(a) => labels["app"] = json!(a),
                None => {
                    labels.as_object_mut().unwrap().remove("app");
                }
            }
            if tier {
                labels["tier"] = json!("backend");
            }
            match key {
                Some(("labels", k, v)) => w["metadata"]["labels"][k] = json!(v),
                Some((at, k, v)) => set_annotation(&mut w, at, k, v),
                None => {}
            }
            (w, NAMESPACES[ns].0.to_string())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// No false negative: wherever the webhook patches, refuses or warns, the API server, with
    /// the chart's condition and the webhooks the server registers for the same policies,
    /// would have called it.
    #[test]
    fn wherever_the_webhook_acts_the_conditions_call_it(
        (w, ns) in workload(),
        old in prop::option::of(workload()),
        specs in prop::collection::vec(policy_spec(), 0..3),
    ) {
        let policies: Vec<KafkaExposePolicy> =
            specs.into_iter().enumerate().map(|(i, s)| policy(i, s)).collect();
        let namespaces: BTreeMap<String, BTreeMap<String, String>> = NAMESPACES
            .iter()
            .map(|(n, l)| (n.to_string(), namespace(n, l)))
            .collect();
        let mut state = AppState::standalone(Settings::default(), FailureMode::Open);
        state.policies = Some(std::sync::Arc::new(FakePolicies {
            policies: policies.clone(),
            namespaces: namespaces.clone(),
        }));
        let kind = w["kind"].as_str().unwrap().to_string();
        // An update replaces an object of the same kind, name and namespace.
        let old = old.map(|(mut o, _)| {
            o["kind"] = json!(kind);
            o["metadata"]["name"] = w["metadata"]["name"].clone();
            o["metadata"]["namespace"] = w["metadata"]["namespace"].clone();
            o
        });
        let op = if old.is_some() { "UPDATE" } else { "CREATE" };
        let mut rev = review("u1", "apps", &kind, op, &w);
        rev["request"]["oldObject"] = old.clone().unwrap_or(Value::Null);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (acted, answer) = rt.block_on(acts(state, &rev));
        let old = old.unwrap_or(Value::Null);
        let hooks = configuration(&policies, false);
        let calls = called(&hooks, &Req {
            resource: resource_of(&w),
            operation: op,
            namespace_labels: &namespaces[&ns],
            object: &w,
            old: &old,
        });
        prop_assert!(!acted || !calls.is_empty(),
            "the webhook acts ({answer}) but no webhook is called\nobject {w}\nold {old}\npolicies {}",
            serde_json::to_string(&policies).unwrap());
    }
}

/// A Deployment as clusters hold thousands of: no kafka-expose key anywhere, the usual
/// annotations of the tools that wrote it.
fn unrelated_deployment(i: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{i}"), "namespace": format!("team-{}", i % 37),
            "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": format!("web-{i}"),
                       "helm.sh/chart": "web-1.2.3"},
            "annotations": {"deployment.kubernetes.io/revision": (i % 9 + 1).to_string(),
                            "meta.helm.sh/release-name": format!("web-{i}")}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/instance": format!("web-{i}")}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/instance": format!("web-{i}")},
                                      "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                         "ports": [{"containerPort": 8080}]}]}}}
    })
}

/// The figures of BENCHMARKS.md ("Calls that reach kafka-expose"): 1,000 unrelated Deployment
/// writes (half creates, half updates) and 1,000 unrelated pod bindings, counted as the API
/// server would send them, today (1.20-1.27, or the chart before match conditions, with the
/// static bindings webhook) and under the conditions, with and without policies that select
/// none of them, and with a `node:` broker somewhere in the cluster.
#[test]
fn unrelated_writes_and_bindings_reach_kafka_expose_only_where_they_must() {
    let unrelated: Vec<Value> = (0..1000).map(unrelated_deployment).collect();
    let count = |hooks: &[MutatingWebhook]| -> usize {
        unrelated
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let ns = namespace(d["metadata"]["namespace"].as_str().unwrap(), &[]);
                let (op, old) = if i % 2 == 0 {
                    ("CREATE", Value::Null)
                } else {
                    ("UPDATE", d.clone())
                };
                called(
                    hooks,
                    &Req {
                        resource: "deployments",
                        operation: op,
                        namespace_labels: &ns,
                        object: d,
                        old: &old,
                    },
                )
                .len()
            })
            .sum()
    };
    let today = count(&[chart_webhook(false)]);
    let selective = policy(
        0,
        json!({"mode": "Enforce", "match": {"selector": {"matchLabels": {"app": "kafka"}},
                                            "kinds": ["StatefulSet", "Deployment"]},
               "exposure": {"expose": "nodeport", "portBase": 31000}}),
    );
    let by_name = policy(
        1,
        json!({"mode": "Audit", "match": {"names": ["kafka*"], "kinds": ["Deployment"]},
               "exposure": {"expose": "nodeport", "portBase": 32000}}),
    );
    let conditions = count(&configuration(&[], false));
    let with_policies = count(&configuration(&[selective, by_name], false));
    // Bindings: a Binding has no labels and no kafka-expose key; a webhook on them is called
    // for every scheduling wherever it is registered.
    let bindings = |hooks: &[MutatingWebhook]| -> usize {
        let ns = namespace("team-1", &[]);
        (0..1000)
            .map(|i| {
                let b = json!({"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": format!("web-{i}-abcde"), "namespace": "team-1"},
                    "target": {"kind": "Node", "name": "node-1"}});
                called(
                    hooks,
                    &Req {
                        resource: "pods/binding",
                        operation: "CREATE",
                        namespace_labels: &ns,
                        object: &b,
                        old: &Value::Null,
                    },
                )
                .len()
            })
            .sum()
    };
    let static_bindings = {
        let base = chart_webhook(false);
        vec![registration::bindings_webhook(&base, 2)]
    };
    let bindings_today = bindings(&static_bindings);
    let bindings_unused = bindings(&configuration(&[], false));
    let bindings_used = bindings(&configuration(&[], true));
    println!(
        "unrelated Deployment writes reaching kafka-expose, of 1000: today {today}, under the \
         conditions {conditions}, with two policies selecting none of them {with_policies}"
    );
    println!(
        "unrelated pod bindings reaching kafka-expose, of 1000: today {bindings_today}, with no \
         node: user {bindings_unused}, while a node: broker or policy exists {bindings_used}"
    );
    assert_eq!(today, 1000);
    assert_eq!(conditions, 0);
    assert_eq!(with_policies, 0);
    assert_eq!(bindings_today, 1000);
    assert_eq!(bindings_unused, 0);
    assert_eq!(bindings_used, 1000);
}
