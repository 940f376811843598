//! The cost of the Pod decision on each fixture's first broker pod and on a pod with 1,500
//! environment variables, against a baseline measured in the same run: deserializing the same pod
//! into the typed `Pod`, which any admission path pays. Ratios travel across machines; the
//! absolute figures are for this machine and this moment.
//!
//! A second table times the admission handler whole (`webhook::answer`: the raw-bytes check, then
//! the head for a review that passes through, or else the typed parse and the decision; the
//! encoded review, the metrics), without HTTP or TLS,
//! against one scan of the same body into `serde::de::IgnoredAny`, the least any JSON reader pays.
//!
//! Run: `cargo bench --bench engine`.

#[path = "support/reviews.rs"]
mod reviews;

use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kafka_expose::config::Settings;
use kafka_expose::engine::pod::{PodContext, mutate_pod};
use kafka_expose::engine::workload::{Workload, WorkloadKind};
use kafka_expose::offline::{self, Options, controller_pods};
use serde_json::{Value, json};

/// Median time per call of `f`, over rounds of `inner` calls for about `budget`.
fn measure(budget: Duration, inner: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..inner {
        f();
    }
    let mut rounds = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || rounds.len() < 5 {
        let t = Instant::now();
        for _ in 0..inner {
            f();
        }
        rounds.push(t.elapsed() / inner);
    }
    rounds.sort();
    rounds[rounds.len() / 2]
}

fn fixture_pod(name: &str) -> Value {
    let path = format!("{}/tests/data/charts/{name}", env!("CARGO_MANIFEST_DIR"));
    let docs = offline::read_documents(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut set = vec![("expose".to_string(), "nodeport".to_string())];
    if name.starts_with("yolean") {
        set.extend([
            ("adapter".into(), "adopt".into()),
            ("listener-name".into(), "OUTSIDE".into()),
            ("container-port".into(), "9094".into()),
        ]);
    }
    let out = offline::run(
        docs,
        &Options {
            set,
            ..Options::default()
        },
    )
    .unwrap();
    let sts = out
        .objects
        .iter()
        .find(|o| {
            o["kind"] == "StatefulSet"
                && o.pointer("/spec/template/metadata/labels/kafka-expose.io~1exposed")
                    .is_some()
        })
        .unwrap();
    let w = Workload::from_value(WorkloadKind::StatefulSet, sts).unwrap();
    controller_pods(&w, sts).remove(0)
}

fn big_pod() -> Value {
    big_pod_of(1500)
}

/// An exposed apache/kafka pod whose broker has `vars` environment variables.
fn big_pod_of(vars: usize) -> Value {
    let mut env = vec![
        json!({"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092,CONTROLLER://:9093"}),
        json!({"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://kafka-0.h:9092"}),
        json!({"name": "KAFKA_CONTROLLER_LISTENER_NAMES", "value": "CONTROLLER"}),
    ];
    for i in 0..vars.saturating_sub(3) {
        env.push(json!({"name": format!("APP_SETTING_{i}"), "value": format!("value-{i}")}));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kafka-0", "namespace": "kafka",
                     "annotations": {"kafka-expose.io/expose": "nodeport"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka", "uid": "u", "controller": true}]},
        "spec": {"containers": [{"name": "broker", "image": "apache/kafka:3.9.1", "env": env}]}
    })
}

fn main() {
    // `cargo test --all-targets` runs benchmark binaries without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // `--repeat REVIEW N`: answer one review N times and stop; `benches/instructions.sh` runs
    // this under callgrind to count instructions, which a shared machine does not disturb.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--repeat") {
        let which = args.get(i + 1).map_or("", String::as_str);
        let n: u32 = args.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(0);
        repeat(which, n);
        return;
    }
    let settings = Settings::default();
    let no_lb = |_: &str| None;
    let ctx = PodContext {
        settings: &settings,
        namespace: Some("kafka"),
        lb_address: &no_lb,
        route: &|_| None,
    };
    let mut cases: Vec<(String, Value)> = [
        "apache-kafka-kraft.yaml",
        "bitnami-23.0.7.yaml",
        "bitnami-26.11.4.yaml",
        "bitnami-32.4.4.yaml",
        "bitnami-32.4.4-split.yaml",
        "cp-helm-charts-cp-kafka.yaml",
        "yolean-kubernetes-kafka.yaml",
    ]
    .iter()
    .map(|f| (f.trim_end_matches(".yaml").to_string(), fixture_pod(f)))
    .collect();
    cases.push(("pod with 1,500 env vars".into(), big_pod()));

    println!("| pod | parse (baseline) | mutate | mutate / parse |");
    println!("|---|---:|---:|---:|");
    for (name, pod) in &cases {
        let budget = Duration::from_millis(600);
        let parse = measure(budget, 20, || {
            black_box(serde_json::from_value::<Pod>(black_box(pod.clone())).unwrap());
        });
        let decide = measure(budget, 20, || {
            black_box(mutate_pod(black_box(pod), &ctx).unwrap());
        });
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.2} |",
            parse.as_secs_f64() * 1e6,
            decide.as_secs_f64() * 1e6,
            decide.as_secs_f64() / parse.as_secs_f64()
        );
    }

    let state = reviews::state_with_bindings();
    let reviews = [
        ("unrelated Deployment UPDATE", reviews::deployment_update()),
        (
            "Binding of an unrelated pod",
            reviews::binding_create("web-7d9f8-abcde", "node-a"),
        ),
        (
            "Binding of a node: broker",
            reviews::binding_create("kafka-0", "node-a"),
        ),
        (
            "apache-kafka-kraft broker pod CREATE",
            reviews::pod_create(&cases[0].1),
        ),
        (
            "pod with 1,500 env vars CREATE",
            reviews::pod_create(&big_pod()),
        ),
    ];
    println!();
    println!("| review | bytes | one scan (baseline) | answer | answer / scan |");
    println!("|---|---:|---:|---:|---:|");
    for (name, body) in &reviews {
        let budget = Duration::from_millis(600);
        let scan = measure(budget, 20, || {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).unwrap());
        });
        let answer = measure(budget, 20, || {
            black_box(answer_now(&state, black_box(body)));
        });
        println!(
            "| {name} | {} | {:.1} µs | {:.1} µs | {:.2} |",
            body.len(),
            scan.as_secs_f64() * 1e6,
            answer.as_secs_f64() * 1e6,
            answer.as_secs_f64() / scan.as_secs_f64()
        );
    }
}

/// Answers review `which` (`unrelated`, `pod`, `big-pod`, `big-pod-3000`, `binding`,
/// `binding-broker`; `scan-` before one of
/// them scans it instead) `n` times.
fn repeat(which: &str, n: u32) {
    let (scan, review) = match which.strip_prefix("scan-") {
        Some(r) => (true, r),
        None => (false, which),
    };
    let body = match review {
        "unrelated" => reviews::deployment_update(),
        "pod" => reviews::pod_create(&fixture_pod("apache-kafka-kraft.yaml")),
        "big-pod" => reviews::pod_create(&big_pod()),
        "big-pod-3000" => reviews::pod_create(&big_pod_of(3000)),
        "binding" => reviews::binding_create("web-7d9f8-abcde", "node-a"),
        "binding-broker" => reviews::binding_create("kafka-0", "node-a"),
        other => panic!(
            "no review {other:?}: unrelated, pod, big-pod, big-pod-3000, binding, binding-broker"
        ),
    };
    let state = reviews::state_with_bindings();
    for _ in 0..n {
        if scan {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap());
        } else {
            black_box(answer_now(&state, black_box(&body)));
        }
    }
}

/// The handler's answer; with no cluster it awaits nothing, so one poll completes it.
fn answer_now(state: &kafka_expose::webhook::AppState, body: &[u8]) -> axum::response::Response {
    let mut fut = std::pin::pin!(kafka_expose::webhook::answer(state, body));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => panic!("the answer awaited something"),
    }
}
