//! The footprint at scale, on the real control plane: `serve`'s memory against the number of
//! unrelated Deployments in the cluster, and how long 100 exposed StatefulSets of 3 brokers take
//! to get all their Services.
//!
//! Run: `benches/footprint.sh`, which starts a control plane of its own (so that the counts are
//! exact) and runs `cargo bench --bench footprint` against it. The report is printed and written
//! to `target/bench-footprint.md`.
//!
//! - Memory: Deployments are created as `kubectl apply` leaves them (two containers, 30 variables
//!   each, a `last-applied-configuration` copy: about 23 KB stored), with no replicas (there is no
//!   scheduler). For each count, a fresh `serve` (release build, reconciler and webhook) is
//!   started, waited on until its reconciler has read both workload lists, given 10 s to settle,
//!   and its resident set (VmRSS) and peak (VmHWM) read. The baseline is the empty cluster.
//! - Convergence: with the largest count present, 100 StatefulSets annotated `expose=nodeport`
//!   are created at once; the time is from the first create to the last of the 400 Services.

#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../tests/support/net.rs"]
mod net;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

const COUNTS: [usize; 3] = [0, 2_000, 10_000];
const STATEFULSETS: usize = 100;

fn deployment(i: usize) -> Deployment {
    let env: Vec<Value> = (0..30)
        .map(|j| json!({"name": format!("APP_SETTING_{j}"), "value": format!("a setting value of moderate length, number {j}, for the web tier")}))
        .collect();
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{i}"), "namespace": "footprint",
                     "labels": {"app": format!("web-{i}"), "team": "shop"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("web-{i}")}},
                 "template": {"metadata": {"labels": {"app": format!("web-{i}")}},
                              "spec": {"containers": [
                                  {"name": "web", "image": "registry.example/web:1.4.2", "env": env,
                                   "ports": [{"containerPort": 8080, "protocol": "TCP"}]},
                                  {"name": "sidecar", "image": "registry.example/sidecar:2.0.1", "env": env}]}}}
    });
    // What `kubectl apply` stores beside the object: a copy of it.
    let copy = serde_json::to_string(&d).unwrap();
    d["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": copy});
    serde_json::from_value(d).unwrap()
}

async fn create_deployments(c: &Client, range: std::ops::Range<usize>) {
    let api: Api<Deployment> = Api::namespaced(c.clone(), "footprint");
    let results: Vec<_> = futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                for _ in 0..5 {
                    match api.create(&PostParams::default(), &deployment(i)).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                        Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                Err(i)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed: Vec<usize> = results.into_iter().filter_map(Result::err).collect();
    assert!(failed.is_empty(), "Deployments not created: {failed:?}");
}

/// Every StatefulSet and Deployment in the cluster.
async fn workloads(c: &Client) -> usize {
    let lp = ListParams::default();
    let s = Api::<StatefulSet>::all(c.clone())
        .list_metadata(&lp)
        .await
        .unwrap()
        .items
        .len();
    let d = Api::<Deployment>::all(c.clone())
        .list_metadata(&lp)
        .await
        .unwrap()
        .items
        .len();
    s + d
}

struct Serve {
    child: Child,
    admin: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(kubeconfig: &str, dir: &std::path::Path) -> Self {
        let (port, admin) = (net::free_port(), net::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-expose"))
            .args(["serve", "--dev-certs", "--cert-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, admin }
    }

    fn metric(&self, name: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .reduce(|a, b| a + b)
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the reconciler has read both workload lists.
    async fn wait_listed(&self) -> Duration {
        let start = Instant::now();
        loop {
            if self.metric("kafka_expose_workload_lists_synced") == Some(2.0) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "serve did not read the workload lists"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn statefulset(i: usize) -> StatefulSet {
    let base = 30000 + 4 * i;
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": format!("kafka-{i}"), "namespace": "converge",
                     "annotations": {"kafka-expose.io/expose": "nodeport",
                                     "kafka-expose.io/port-base": base.to_string(),
                                     "kafka-expose.io/bootstrap-node-port": (base + 3).to_string()}},
        "spec": {"replicas": 3, "serviceName": format!("kafka-{i}-headless"),
                 "selector": {"matchLabels": {"app": format!("kafka-{i}")}},
                 "template": {"metadata": {"labels": {"app": format!("kafka-{i}")}},
                              "spec": {"containers": [{"name": "broker", "image": "apache/kafka:3.9.1",
                                  "env": [
                                      {"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092,CONTROLLER://:9093"},
                                      {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://$(POD_NAME).h:9092"},
                                      {"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"},
                                      {"name": "KAFKA_CONTROLLER_LISTENER_NAMES", "value": "CONTROLLER"}]}]}}}
    }))
    .unwrap()
}

fn main() {
    // `cargo test --all-targets` runs benchmark binaries without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(run());
    println!("{out}");
    let _ = std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-footprint.md"),
        &out,
    );
}

async fn run() -> String {
    let env = cluster::env();
    let kubeconfig = env["KUBECONFIG"].clone();
    let c = cluster::client().await;
    cluster::namespace(&c, "footprint").await;
    let dir = std::env::temp_dir().join(format!("kx-footprint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut out = String::from(
        "| unrelated Deployments | workloads in the cluster | held by the reconciler | time to list them | RSS | peak RSS | RSS above the empty cluster, per Deployment |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut have = 0;
    let mut empty_rss = 0u64;
    let mut last: Option<Serve> = None;
    for n in COUNTS {
        let t = Instant::now();
        create_deployments(&c, have..n).await;
        if n > have {
            eprintln!(
                "footprint: {} Deployments created in {:.0?}",
                n - have,
                t.elapsed()
            );
        }
        have = n;
        drop(last.take());
        let total = workloads(&c).await;
        let serve = Serve::start(&kubeconfig, &dir);
        let took = serve.wait_listed().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rss, hwm) = (serve.status_kib("VmRSS:"), serve.status_kib("VmHWM:"));
        let held = serve.metric("kafka_expose_workloads_held").unwrap_or(-1.0);
        if n == 0 {
            empty_rss = rss;
        }
        let per = if n == 0 {
            "".to_string()
        } else {
            format!(
                "{:.2} KB",
                (rss as f64 - empty_rss as f64) / n as f64 * 1.024
            )
        };
        out.push_str(&format!(
            "| {n} | {total} | {held} | {:.1} s | {:.1} MB | {:.1} MB | {per} |\n",
            took.as_secs_f64(),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ));
        eprintln!("footprint: {n} unrelated: RSS {rss} KiB, peak {hwm} KiB");
        last = Some(serve);
    }

    // Convergence, with the last count still present and its serve running.
    let serve = last.expect("a serve");
    cluster::namespace(&c, "converge").await;
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), "converge");
    let svcs: Api<Service> = Api::namespaced(c.clone(), "converge");
    let start = Instant::now();
    let creates = (0..STATEFULSETS).map(|i| {
        let sts = sts.clone();
        async move { sts.create(&PostParams::default(), &statefulset(i)).await }
    });
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    let created = start.elapsed();
    let want = STATEFULSETS * 4;
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=kafka-expose");
    let converged = loop {
        let n = svcs.list_metadata(&lp).await.unwrap().items.len();
        if n >= want {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "only {n} of {want} Services after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_exposed = serve.status_kib("VmRSS:");
    let errors = serve.metric("kafka_expose_reconcile_errors").unwrap_or(0.0);
    let reconciliations = serve.metric("kafka_expose_reconciliations").unwrap_or(0.0);
    out.push_str(&format!(
        "\n| StatefulSets × brokers | created in | every Service (of {want}) in | reconciliations | failed reconciliations | RSS after, beside the unrelated Deployments |\n|---|---:|---:|---:|---:|---:|\n| {STATEFULSETS} × 3 | {:.2} s | {:.2} s | {reconciliations:.0} | {errors:.0} | {:.1} MB |\n",
        created.as_secs_f64(),
        converged.as_secs_f64(),
        rss_exposed as f64 / 1024.0
    ));
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
    out
}
