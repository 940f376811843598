//! The reconciler against a real kube-apiserver + etcd + kube-controller-manager.
//!
//! `tests/run.sh` starts the control plane (tests/e2e/control-plane.sh) and points
//! `KAFKA_EXPOSE_E2E_ENV` at it. Without it these tests fail: they never pass silently.
//!
//! Each test works in a namespace of its own with a reconciler scoped to it, and NodePort bases of
//! its own, so the tests run in parallel. There is no kubelet or scheduler: a background task
//! plays their part, binding each pod to a Node and marking it Running and Ready with a host IP.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use kafka_expose::cluster::caches::ServiceCache;
use kafka_expose::cluster::{leader, runtime};
use kafka_expose::config::Settings;
use kafka_expose::metrics::{Metrics, Readiness};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use serde_json::{Value, json};
use support::cluster::{
    HOST_IP, ca_secret, client, env, eventually, fake_kubelet, fresh_namespace, managed, names,
    node_port, wait_signed, wait_status,
};

/// The API server restart test takes this for writing; every other test for reading.
static APISERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// One reconciler, scoped to a namespace.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    cache: ServiceCache,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

fn start_reconciler(c: &Client, ns: &str) -> Running {
    start(c, ns, None)
}

/// A reconciler scoped to `ns`, reconciling only while it holds `lease` when one is given: the
/// same start as `serve`'s.
fn start(c: &Client, ns: &str, lease: Option<leader::Election>) -> Running {
    let readiness = Arc::new(Readiness::default());
    readiness.set_listening();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(Metrics::default());
    let runtime::Spawned { caches, task } = runtime::spawn(
        c.clone(),
        Arc::new(Settings::default()),
        metrics.clone(),
        readiness.clone(),
        runtime::Options {
            namespace: Some(ns.to_string()),
            lb_pending_warning: Duration::from_secs(300),
            periods: runtime::Periods::default(),
            policy_client: None,
            registrar: None,
        },
        lease,
        async move {
            let _ = rx.await;
        },
    );
    Running {
        stop,
        task,
        cache: caches.services,
        readiness,
        metrics,
    }
}

impl Running {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// The apache/kafka fixture's StatefulSet in `ns`, with these annotations.
fn apache_sts(ns: &str, annotations: Value) -> StatefulSet {
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["metadata"]["annotations"] = annotations;
    serde_json::from_value(sts).unwrap()
}

async fn wait_services(c: &Client, ns: &str, want: &[&str]) -> Vec<Service> {
    wait_services_within(Duration::from_secs(30), c, ns, want).await
}

async fn wait_services_within(
    limit: Duration,
    c: &Client,
    ns: &str,
    want: &[&str],
) -> Vec<Service> {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(limit, &format!("Services {want:?}"), || async {
        let got = managed(c, ns).await;
        if names(&got) == want {
            Ok(got)
        } else {
            Err(format!("{:?}", names(&got)))
        }
    })
    .await
}

async fn scale(c: &Client, ns: &str, name: &str, replicas: i32) {
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .unwrap();
}

async fn annotate(c: &Client, ns: &str, name: &str, ann: Value) {
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": ann}})),
    )
    .await
    .unwrap();
}

async fn events(c: &Client, ns: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(c.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// The names of a three-broker workload's Services.
const THREE_BROKERS: [&str; 4] = [
    "kafka-0-external",
    "kafka-1-external",
    "kafka-2-external",
    "kafka-external-bootstrap",
];

/// Creates the apache/kafka StatefulSet exposed on NodePorts from `base`, and waits for its
/// four Services.
async fn expose_three_brokers(c: &Client, ns: &str, base: u16) -> StatefulSet {
    let sts = create_sts(
        c,
        ns,
        &apache_sts(
            ns,
            json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": base.to_string(), "kafka-expose.io/bootstrap-node-port": (base + 50).to_string()}),
        ),
    )
    .await;
    wait_services(c, ns, &THREE_BROKERS).await;
    sts
}

/// Waits until StatefulSet `kafka` publishes `want` as its bootstrap address.
async fn wait_bootstrap(c: &Client, ns: &str, want: &str) {
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    eventually(
        Duration::from_secs(60),
        "the bootstrap annotation",
        || async {
            let s = api.get("kafka").await.map_err(|e| e.to_string())?;
            match s.annotations().get("kafka-expose.io/bootstrap-servers") {
                Some(v) if v == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

async fn create_sts(c: &Client, ns: &str, sts: &StatefulSet) -> StatefulSet {
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), sts)
        .await
        .unwrap()
}

#[tokio::test]
async fn annotating_creates_a_node_port_service_per_broker_and_a_bootstrap_owned_by_the_workload() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-annotate";
    let c = fresh_namespace(ns).await;
    let kubelet = fake_kubelet(c.clone(), ns);
    let r = start_reconciler(&c, ns);
    let sts = create_sts(
        &c,
        ns,
        &apache_sts(
            ns,
            json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30100", "kafka-expose.io/bootstrap-node-port": "30150"}),
        ),
    )
    .await;
    let started = Instant::now();
    let svcs = wait_services(&c, ns, &THREE_BROKERS).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "within seconds: {:?}",
        started.elapsed()
    );
    for (i, s) in svcs.iter().take(3).enumerate() {
        assert_eq!(node_port(s), Some(30100 + i as i32));
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector
                .as_ref()
                .unwrap()
                .get("statefulset.kubernetes.io/pod-name"),
            Some(&format!("kafka-{i}"))
        );
        assert_eq!(
            spec.ports.as_ref().unwrap()[0].target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9094))
        );
    }
    for s in &svcs {
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", sts.uid().unwrap().as_str())
        );
        assert_eq!(owner.controller, Some(true));
    }
    // The bootstrap address is published once the brokers run on a node.
    let boot_port = node_port(&svcs[3]).unwrap();
    let want = format!("{HOST_IP}:{boot_port}");
    wait_bootstrap(&c, ns, &want).await;
    // The reconciler writes the annotation, then publishes the Event: read until it is there.
    eventually(
        Duration::from_secs(30),
        "an Event carrying the bootstrap address",
        || async {
            let evs = events(&c, ns).await;
            evs.iter()
                .any(|e| {
                    e.reason.as_deref() == Some("BootstrapAddress")
                        && e.note.as_deref().is_some_and(|n| n.contains(&want))
                })
                .then_some(())
                .ok_or_else(|| format!("{} Events, none with {want}", evs.len()))
        },
    )
    .await;
    assert!(
        r.readiness.is_ready(),
        "readiness follows the synced caches"
    );
    r.shutdown().await;
    kubelet.abort();
}

#[tokio::test]
async fn the_bitnami_32_chart_annotated_gets_its_services() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-bitnami";
    let c = fresh_namespace(ns).await;
    let r = start_reconciler(&c, ns);
    let mut sts = support::statefulset("bitnami-32.4.4.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30200", "kafka-expose.io/bootstrap-node-port": "30250"});
    create_sts(&c, ns, &serde_json::from_value(sts).unwrap()).await;
    let svcs = wait_services(
        &c,
        ns,
        &[
            "my-kafka-controller-0-external",
            "my-kafka-controller-1-external",
            "my-kafka-controller-2-external",
            "my-kafka-controller-external-bootstrap",
        ],
    )
    .await;
    assert_eq!(node_port(&svcs[2]), Some(30202));
    assert_eq!(
        svcs[2].spec.as_ref().unwrap().ports.as_ref().unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9095)),
        "9094 is the chart's inter-broker port"
    );
    r.shutdown().await;
}

/// Run-time adoption reaches the workload: a broker whose injected step kept the chart's
/// configuration (the step's own termination message, as the kubelet keeps it) puts the pod,
/// the reason and the fix in the workload's status, with a Warning Event; the Services stay.
#[tokio::test]
async fn a_broker_whose_step_kept_the_charts_listener_is_in_the_workloads_status() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-kept";
    let c = fresh_namespace(ns).await;
    let kubelet = fake_kubelet(c.clone(), ns);
    let r = start_reconciler(&c, ns);
    // The chart's ServiceAccount, which its pods name.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.clone(), ns);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "my-kafka"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut sts = support::statefulset("bitnami-32.4.4.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/adapter": "properties", "kafka-expose.io/port-base": "30260", "kafka-expose.io/bootstrap-node-port": "30259"});
    create_sts(&c, ns, &serde_json::from_value(sts).unwrap()).await;
    wait_status(
        &c,
        ns,
        "my-kafka-controller",
        Duration::from_secs(30),
        |s| s == "ok",
    )
    .await;

    // What the real step writes on a file to which the chart's start added its own EXTERNAL.
    let dir = std::env::temp_dir().join(format!("kx-e2e-kept-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("server.properties"),
        "listeners=CLIENT://:9092,INTERNAL://:9094,CONTROLLER://:9093,EXTERNAL://:9095\nadvertised.listeners=CLIENT://k:9092,INTERNAL://k:9094,EXTERNAL://192.0.2.7:31191\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-expose"))
        .args(["patch-properties", "--file"])
        .arg(dir.join("server.properties"))
        .args([
            "--container-port",
            "9096",
            "--advertised-host",
            "192.0.2.7",
            "--advertised-port",
            "30261",
            "--termination-message-path",
        ])
        .arg(dir.join("termination-log"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let message = std::fs::read_to_string(dir.join("termination-log")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // Broker 1 restarts as the kubelet runs it: the webhook's label, its init container's
    // status with that message, not Ready until its broker container is (the stand-in kubelet
    // makes it Ready again).
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    pods.patch(
        "my-kafka-controller-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"kafka-expose.io/exposed": "true"}}})),
    )
    .await
    .unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
        "initContainerStatuses": [{
            "name": "kafka-expose-properties", "ready": true, "restartCount": 0,
            "image": "ghcr.io/kafka-expose/kafka-expose:0.1.0", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}}
        }]
    }});
    pods.patch_status(
        "my-kafka-controller-1",
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .unwrap();
    let said = wait_status(&c, ns, "my-kafka-controller", Duration::from_secs(30), |s| {
        s.starts_with("error: pod my-kafka-controller-1: kafka-expose kept the chart's configuration: listener EXTERNAL is already in it (EXTERNAL://:9095)")
    })
    .await;
    assert!(said.contains("kafka-expose.io/adapter=adopt"), "{said}");
    let warned = eventually(Duration::from_secs(10), "the Warning Event", || async {
        events(&c, ns)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ChartListenerKept"))
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert!(
        warned
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("pod my-kafka-controller-1"),
        "{warned:?}"
    );
    // The other brokers stay exposed: the Services and the bootstrap are kept.
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let sts = api.get("my-kafka-controller").await.unwrap();
    assert!(
        sts.annotations()
            .contains_key("kafka-expose.io/bootstrap-servers")
    );
    wait_services(
        &c,
        ns,
        &[
            "my-kafka-controller-0-external",
            "my-kafka-controller-1-external",
            "my-kafka-controller-2-external",
            "my-kafka-controller-external-bootstrap",
        ],
    )
    .await;
    kubelet.abort();
    r.shutdown().await;
}

#[tokio::test]
async fn scaling_three_to_five_to_two_follows_with_exactly_those_services() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-scale";
    let c = fresh_namespace(ns).await;
    let r = start_reconciler(&c, ns);
    expose_three_brokers(&c, ns, 30300).await;
    scale(&c, ns, "kafka", 5).await;
    let svcs = wait_services(
        &c,
        ns,
        &[
            "kafka-0-external",
            "kafka-1-external",
            "kafka-2-external",
            "kafka-3-external",
            "kafka-4-external",
            "kafka-external-bootstrap",
        ],
    )
    .await;
    assert_eq!(node_port(&svcs[4]), Some(30304));
    scale(&c, ns, "kafka", 2).await;
    wait_services(
        &c,
        ns,
        &[
            "kafka-0-external",
            "kafka-1-external",
            "kafka-external-bootstrap",
        ],
    )
    .await;
    r.shutdown().await;
}

#[tokio::test]
async fn a_node_port_held_by_another_service_is_reported_and_heals_once_freed() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-conflict";
    let c = fresh_namespace(ns).await;
    let svc_api: Api<Service> = Api::namespaced(c.clone(), ns);
    let blocker: Service = serde_json::from_value(json!({
        "metadata": {"name": "blocker"},
        "spec": {"type": "NodePort", "selector": {"app": "other"},
                 "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30402}]}
    }))
    .unwrap();
    svc_api
        .create(&PostParams::default(), &blocker)
        .await
        .unwrap();
    let r = start_reconciler(&c, ns);
    create_sts(
        &c,
        ns,
        &apache_sts(
            ns,
            json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30400", "kafka-expose.io/bootstrap-node-port": "30450"}),
        ),
    )
    .await;
    wait_services(
        &c,
        ns,
        &[
            "kafka-0-external",
            "kafka-1-external",
            "kafka-external-bootstrap",
        ],
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "a Warning Event naming the port",
        || async {
            let evs = events(&c, ns).await;
            evs.iter()
                .find(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.contains("kafka-2-external") && n.contains("30402"))
                })
                .map(|_| ())
                .ok_or_else(|| {
                    format!(
                        "{:?}",
                        evs.iter().map(|e| e.note.clone()).collect::<Vec<_>>()
                    )
                })
        },
    )
    .await;
    wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| {
        s.starts_with("error: Service kafka-2-external (NodePort 30402)")
    })
    .await;
    svc_api
        .delete("blocker", &DeleteParams::default())
        .await
        .unwrap();
    let svcs = wait_services(&c, ns, &THREE_BROKERS).await;
    assert_eq!(node_port(&svcs[2]), Some(30402));
    r.shutdown().await;
}

#[tokio::test]
async fn expose_off_removes_every_managed_service_and_leaves_the_users_own() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-off";
    let c = fresh_namespace(ns).await;
    let svc_api: Api<Service> = Api::namespaced(c.clone(), ns);
    let own: Service = serde_json::from_value(json!({
        "metadata": {"name": "kafka-9-external", "labels": {"kafka-expose.io/workload": "kafka"}},
        "spec": {"selector": {"app": "kafka"}, "ports": [{"port": 9092, "protocol": "TCP"}]}
    }))
    .unwrap();
    let own = svc_api.create(&PostParams::default(), &own).await.unwrap();
    let r = start_reconciler(&c, ns);
    create_sts(
        &c,
        ns,
        &apache_sts(
            ns,
            json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30500", "kafka-expose.io/bootstrap-node-port": "30550"}),
        ),
    )
    .await;
    let all = [
        "kafka-0-external",
        "kafka-1-external",
        "kafka-2-external",
        "kafka-external-bootstrap",
    ];
    wait_services(&c, ns, &all).await;
    annotate(&c, ns, "kafka", json!({"kafka-expose.io/expose": "off"})).await;
    wait_services(&c, ns, &[]).await;
    annotate(
        &c,
        ns,
        "kafka",
        json!({"kafka-expose.io/expose": "nodeport"}),
    )
    .await;
    wait_services(&c, ns, &all).await;
    annotate(&c, ns, "kafka", json!({"kafka-expose.io/expose": null})).await;
    wait_services(&c, ns, &[]).await;
    let still = svc_api.get("kafka-9-external").await.unwrap();
    assert_eq!(
        still.resource_version(),
        own.resource_version(),
        "the user's Service is untouched"
    );
    r.shutdown().await;
}

#[tokio::test]
async fn two_instances_converge_and_then_leave_the_services_alone() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-two";
    let c = fresh_namespace(ns).await;
    let a = start_reconciler(&c, ns);
    let b = start_reconciler(&c, ns);
    expose_three_brokers(&c, ns, 30600).await;
    let sts_api = Api::<StatefulSet>::namespaced(c.clone(), ns);
    // Each instance reconciles the workload again: a reconciliation of one object never
    // overlaps the next, so once both have started another, whatever they did before is stored.
    let round = |n: u64| {
        let (c, sts_api, a, b) = (&c, &sts_api, &a, &b);
        async move {
            let counts = (
                a.metrics.reconciliations.get(),
                b.metrics.reconciliations.get(),
            );
            annotate(c, ns, "kafka", json!({"e2e/poke": n.to_string()})).await;
            eventually(
                Duration::from_secs(30),
                "both instances reconcile again",
                || async {
                    let now = (
                        a.metrics.reconciliations.get(),
                        b.metrics.reconciliations.get(),
                    );
                    if now.0 > counts.0 && now.1 > counts.1 {
                        Ok(())
                    } else {
                        Err(format!("{counts:?} -> {now:?}"))
                    }
                },
            )
            .await;
            let s = sts_api.get("kafka").await.unwrap();
            s.annotations().get("kafka-expose.io/status").cloned()
        }
    };
    // Converged: both instances have reconciled since the Services exist, and the status is
    // not an error. (Two instances without a Lease may race to create the same NodePort
    // Service; the loser's create fails with "port is already allocated" and its retry heals
    // it. That is what the Lease is for.)
    let mut n = 0;
    eventually(Duration::from_secs(60), "a converged status", || {
        n += 1;
        let r = round(n);
        async move {
            match r.await {
                Some(s) if !s.starts_with("error") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let versions = |svcs: Vec<Service>| -> Vec<(String, Option<String>)> {
        svcs.into_iter()
            .map(|s| (s.name_any(), s.resource_version()))
            .collect()
    };
    // What kafka-expose writes on the workload: its annotations, and its field manager's
    // entries. The StatefulSet controller's own status writes move the resourceVersion, so that
    // is not what is compared.
    let ours = |s: &StatefulSet| {
        let mut ann = s.annotations().clone();
        ann.remove("e2e/poke");
        let entries: Vec<String> = s
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.manager.as_deref() == Some("kafka-expose"))
            .map(|m| serde_json::to_string(m).unwrap())
            .collect();
        (ann, entries)
    };
    let before = versions(managed(&c, ns).await);
    let sts_before = ours(&sts_api.get("kafka").await.unwrap());
    // Two more rounds: nothing may be written.
    for m in 0..2 {
        round(1000 + m).await;
    }
    assert_eq!(
        versions(managed(&c, ns).await),
        before,
        "no flapping between instances"
    );
    assert_eq!(
        ours(&sts_api.get("kafka").await.unwrap()),
        sts_before,
        "the workload's annotations and kafka-expose's fields are not rewritten either"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_restarted_reconciler_catches_up_on_what_changed_while_it_was_down() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-restart";
    let c = fresh_namespace(ns).await;
    let r = start_reconciler(&c, ns);
    expose_three_brokers(&c, ns, 30700).await;
    r.shutdown().await;
    scale(&c, ns, "kafka", 1).await;
    // The StatefulSet controller has acted on the scale-down: a running reconciler would have
    // seen it by now too.
    let sts_api = Api::<StatefulSet>::namespaced(c.clone(), ns);
    eventually(
        Duration::from_secs(30),
        "the scale-down observed",
        || async {
            let s = sts_api.get("kafka").await.map_err(|e| e.to_string())?;
            let st = s.status.clone().unwrap_or_default();
            if st.observed_generation == s.metadata.generation && st.replicas == 1 {
                Ok(())
            } else {
                Err(format!("{st:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        managed(&c, ns).await.len(),
        4,
        "nothing changes while it is down"
    );
    let r = start_reconciler(&c, ns);
    wait_services(&c, ns, &["kafka-0-external", "kafka-external-bootstrap"]).await;
    r.shutdown().await;
}

#[tokio::test]
async fn the_garbage_collector_removes_the_services_with_their_workload() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-gc";
    let c = fresh_namespace(ns).await;
    let r = start_reconciler(&c, ns);
    expose_three_brokers(&c, ns, 30800).await;
    // Stop the reconciler first: the garbage collector alone must remove them.
    r.shutdown().await;
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .delete("kafka", &DeleteParams::background())
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "garbage collection", || async {
        let left = managed(&c, ns).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", names(&left)))
        }
    })
    .await;
}

#[tokio::test]
async fn loadbalancer_services_publish_their_ingress_and_hold_brokers_until_it_exists() {
    use kafka_expose::webhook::admission::{FailureMode, decide_pod};
    // LoadBalancer Services take NodePorts at random on 1.20, which could land on another test's
    // fixed ports: this test runs alone and frees them at its end.
    let _exclusive = APISERVER.write().await;
    let ns = "e2e-lb";
    let c = fresh_namespace(ns).await;
    let r = start_reconciler(&c, ns);
    let sts = create_sts(
        &c,
        ns,
        &apache_sts(ns, json!({"kafka-expose.io/expose": "loadbalancer", "kafka-expose.io/advertised-host": "loadbalancer"})),
    )
    .await;
    let svcs = wait_services(&c, ns, &THREE_BROKERS).await;
    for s in &svcs {
        assert_eq!(
            s.spec.as_ref().unwrap().type_.as_deref(),
            Some("LoadBalancer")
        );
    }

    // The Pod decision reads addresses from the reconciler's cache: broker 1 waits for its own.
    let lookup = r.cache.clone();
    let mut w = kafka_expose::engine::workload::Workload::from_statefulset(sts.clone());
    w.template.metadata.get_or_insert_default();
    let mut pod: Value = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kafka-1", "namespace": ns,
                     "annotations": {"kafka-expose.io/expose": "loadbalancer", "kafka-expose.io/advertised-host": "loadbalancer"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka", "uid": sts.uid().unwrap(), "controller": true}]},
        "spec": serde_json::to_value(w.template.spec.clone().unwrap()).unwrap()
    });
    pod["spec"]["hostname"] = json!("kafka-1");
    let review = |pod: &Value| -> kube::core::admission::AdmissionRequest<Pod> {
        let r: kube::core::admission::AdmissionReview<Pod> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "lb", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": ns, "operation": "CREATE", "userInfo": {}, "object": pod}
        }))
        .unwrap();
        r.try_into().unwrap()
    };
    let settings = Settings::default();
    let denied = decide_pod(&review(&pod), &settings, FailureMode::Open, &lookup);
    assert!(!denied.response.allowed);
    assert!(
        denied
            .response
            .result
            .message
            .contains(&format!("{ns}/kafka-1-external")),
        "{}",
        denied.response.result.message
    );

    // A cloud controller would set the ingress; the test does.
    let svc_api: Api<Service> = Api::namespaced(c.clone(), ns);
    for (name, ip) in [
        ("kafka-1-external", "203.0.113.21"),
        ("kafka-external-bootstrap", "203.0.113.20"),
    ] {
        svc_api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
            )
            .await
            .unwrap();
    }
    let allowed = eventually(Duration::from_secs(20), "the broker admitted", || async {
        let d = decide_pod(&review(&pod), &settings, FailureMode::Open, &lookup);
        if d.response.allowed {
            Ok(d)
        } else {
            Err(d.response.result.message.clone())
        }
    })
    .await;
    let patch: Value = serde_json::from_slice(allowed.response.patch.as_ref().unwrap()).unwrap();
    assert!(patch.to_string().contains("203.0.113.21"), "{patch}");

    wait_bootstrap(&c, ns, "203.0.113.20:9094").await;
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .delete("kafka", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the LoadBalancer Services removed",
        || async {
            let left = managed(&c, ns).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", names(&left)))
            }
        },
    )
    .await;
    r.shutdown().await;
}

#[tokio::test]
async fn the_reconciler_recovers_when_the_api_server_restarts_under_it() {
    let _exclusive = APISERVER.write().await;
    let ns = "e2e-apiserver";
    let c = fresh_namespace(ns).await;
    let r = start_reconciler(&c, ns);
    expose_three_brokers(&c, ns, 30900).await;
    let dir = env()["KAFKA_EXPOSE_E2E_DIR"].clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/control-plane.sh");
    let out = tokio::process::Command::new("bash")
        .args([script, "restart-apiserver", &dir, "3"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = client().await;
    scale(&c, ns, "kafka", 2).await;
    // The watches come back through their backoff (up to 30 s between tries).
    let started = Instant::now();
    wait_services_within(
        Duration::from_secs(120),
        &c,
        ns,
        &[
            "kafka-0-external",
            "kafka-1-external",
            "kafka-external-bootstrap",
        ],
    )
    .await;
    eprintln!("converged {:?} after the restart", started.elapsed());
    r.shutdown().await;
}

#[tokio::test]
async fn with_leader_election_one_instance_reconciles_and_a_standby_takes_over() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-leader";
    let c = fresh_namespace(ns).await;
    let election = |id: &str| {
        let mut e = leader::Election::new(ns, "kafka-expose-reconciler", id);
        e.duration = Duration::from_secs(6);
        e.renew_every = Duration::from_secs(2);
        e
    };
    let a = start(&c, ns, Some(election("replica-a")));
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(c.clone(), ns);
    let holder = |l: k8s_openapi::api::coordination::v1::Lease| {
        l.spec.and_then(|s| s.holder_identity).unwrap_or_default()
    };
    // Replica a holds the Lease before b starts.
    eventually(Duration::from_secs(20), "replica-a leads", || async {
        match leases.get_opt("kafka-expose-reconciler").await {
            Ok(Some(l)) if holder(l.clone()) == "replica-a" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let b = start(&c, ns, Some(election("replica-b")));
    expose_three_brokers(&c, ns, 31900).await;
    assert_eq!(
        holder(leases.get("kafka-expose-reconciler").await.unwrap()),
        "replica-a"
    );
    // The leader stops and gives the Lease up; the standby takes over and reconciles.
    a.shutdown().await;
    scale(&c, ns, "kafka", 1).await;
    wait_services(&c, ns, &["kafka-0-external", "kafka-external-bootstrap"]).await;
    assert_eq!(
        holder(leases.get("kafka-expose-reconciler").await.unwrap()),
        "replica-b"
    );
    b.shutdown().await;
    let released = holder(leases.get("kafka-expose-reconciler").await.unwrap());
    assert_eq!(released, "", "a stopping leader releases the Lease");
}

#[tokio::test]
async fn a_charts_own_per_broker_services_are_left_exactly_as_they_were() {
    // cp-helm-charts with nodeport.enabled makes my-cp-cp-kafka-<i>-nodeport (31090 + i); the
    // e2e_webhook suite runs the plain cp-helm chart on the same NodePorts, in another binary
    // after this one, so this test removes what it made.
    let _shared = APISERVER.read().await;
    let ns = "e2e-chart-services";
    let c = fresh_namespace(ns).await;
    let docs = support::fixture("cp-helm-charts-cp-kafka-nodeport.yaml");
    let svc_api: Api<Service> = Api::namespaced(c.clone(), ns);
    let helm = PostParams {
        field_manager: Some("helm".into()),
        ..PostParams::default()
    };
    let mut chart_services = Vec::new();
    for d in docs.iter().filter(|d| {
        d["kind"] == "Service"
            && d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-nodeport"))
    }) {
        let mut d = d.clone();
        d["metadata"]["namespace"] = json!(ns);
        let s: Service = serde_json::from_value(d).unwrap();
        chart_services.push(svc_api.create(&helm, &s).await.unwrap());
    }
    assert_eq!(chart_services.len(), 3);
    let mut sts = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "my-cp-cp-kafka")
        .unwrap()
        .clone();
    sts["metadata"]["namespace"] = json!(ns);
    let sts: StatefulSet = serde_json::from_value(sts).unwrap();
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .create(&helm, &sts)
        .await
        .unwrap();

    let r = start_reconciler(&c, ns);
    annotate(
        &c,
        ns,
        "my-cp-cp-kafka",
        json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/bootstrap-node-port": "31095"}),
    )
    .await;
    let mine = wait_services(&c, ns, &["my-cp-cp-kafka-external-bootstrap"]).await;
    assert_eq!(node_port(&mine[0]), Some(31095));
    // The reconciler runs again after its Service exists; a poke of the workload makes it run
    // once more, and since one object's reconciliations never overlap, the one before has then
    // finished. Then look.
    for _ in 0..2 {
        let ran = r.metrics.reconciliations.get();
        annotate(
            &c,
            ns,
            "my-cp-cp-kafka",
            json!({"e2e/poke": ran.to_string()}),
        )
        .await;
        eventually(
            Duration::from_secs(30),
            "one more reconciliation",
            || async {
                let now = r.metrics.reconciliations.get();
                if now > ran {
                    Ok(())
                } else {
                    Err(format!("{ran} -> {now}"))
                }
            },
        )
        .await;
    }
    assert_eq!(
        names(&managed(&c, ns).await),
        ["my-cp-cp-kafka-external-bootstrap"],
        "only the bootstrap is added"
    );
    for before in &chart_services {
        let after = svc_api.get(&before.name_any()).await.unwrap();
        assert_eq!(
            after.resource_version(),
            before.resource_version(),
            "{} is untouched",
            before.name_any()
        );
        let managers = |s: &Service| -> Vec<String> {
            s.metadata
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|m| m.manager.clone())
                .collect()
        };
        assert_eq!(managers(&after), managers(before));
        assert_eq!(managers(&after), ["helm"]);
    }
    r.shutdown().await;
    // The workload too: a cluster-wide reconciler of a later suite would otherwise expose it
    // again, now on the NodePorts the chart Services freed.
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .delete("my-cp-cp-kafka", &DeleteParams::background())
        .await
        .unwrap();
    for s in chart_services {
        let _ = svc_api
            .delete(&s.name_any(), &DeleteParams::default())
            .await;
    }
    let _ = svc_api
        .delete(
            "my-cp-cp-kafka-external-bootstrap",
            &DeleteParams::default(),
        )
        .await;
}

#[tokio::test]
async fn one_broker_deployments_with_ordinals_0_and_1_share_a_port_base() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-deployments";
    let c = fresh_namespace(ns).await;
    let r = start_reconciler(&c, ns);
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(c.clone(), ns);
    for (name, ordinal, bootstrap) in [("broker-a", "0", "32005"), ("broker-b", "1", "32006")] {
        let sts = support::statefulset("apache-kafka-kraft.yaml");
        let mut template = sts["spec"]["template"].clone();
        template["metadata"]["labels"] = json!({"app": name});
        // The StatefulSet's volume claim is not a Deployment's.
        for c in template["spec"]["containers"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("volumeMounts");
        }
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "annotations": {
                "kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32000",
                "kafka-expose.io/ordinal": ordinal, "kafka-expose.io/bootstrap-node-port": bootstrap}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template}
        });
        api.create(&PostParams::default(), &serde_json::from_value(d).unwrap())
            .await
            .unwrap();
    }
    let svcs = wait_services(
        &c,
        ns,
        &[
            "broker-a-0-external",
            "broker-a-external-bootstrap",
            "broker-b-1-external",
            "broker-b-external-bootstrap",
        ],
    )
    .await;
    assert_eq!(node_port(&svcs[0]), Some(32000));
    assert_eq!(node_port(&svcs[2]), Some(32001));
    r.shutdown().await;
}

/// A Deployment that has nothing to do with Kafka, as `kubectl apply` leaves it, with no
/// replicas (there is no scheduler).
fn unrelated_deployment(ns: &str, i: usize) -> k8s_openapi::api::apps::v1::Deployment {
    let env: Vec<Value> = (0..30)
        .map(|j| json!({"name": format!("SETTING_{j}"), "value": format!("a value of some length {j}")}))
        .collect();
    let last_applied = "x".repeat(4000);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("web-{i}"), "namespace": ns,
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
                     "labels": {"app": format!("web-{i}")}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("web-{i}")}},
                 "template": {"metadata": {"labels": {"app": format!("web-{i}")}},
                              "spec": {"containers": [
                                  {"name": "web", "image": "example/web:1.0", "env": env},
                                  {"name": "sidecar", "image": "example/sidecar:1.0", "env": env}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn among_many_unrelated_workloads_only_the_exposed_one_is_held_and_read_in_full() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-footprint";
    let c = fresh_namespace(ns).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(c.clone(), ns);
    const UNRELATED: usize = 150;
    let creates = (0..UNRELATED).map(|i| {
        let d = unrelated_deployment(ns, i);
        let api = deployments.clone();
        async move { api.create(&PostParams::default(), &d).await.map(|_| ()) }
    });
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    let r = start_reconciler(&c, ns);
    let sts = apache_sts(
        ns,
        json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32200", "kafka-expose.io/bootstrap-node-port": "32210"}),
    );
    create_sts(&c, ns, &sts).await;
    wait_services(
        &c,
        ns,
        &[
            "kafka-0-external",
            "kafka-1-external",
            "kafka-2-external",
            "kafka-external-bootstrap",
        ],
    )
    .await;
    // Both lists were read, and only the exposed workload is held (the gauge is refreshed
    // every 2 s).
    eventually(
        Duration::from_secs(20),
        "only the exposed workload held",
        || async {
            let (held, synced) = (
                r.metrics.workloads_held.get(),
                r.metrics.workload_lists_synced.get(),
            );
            if held == 1 && synced == 2 {
                Ok(())
            } else {
                Err(format!("{held} held, {synced} lists synced"))
            }
        },
    )
    .await;
    // An unrelated workload that changes is still not read.
    deployments
        .patch(
            "web-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.metrics.workloads_held.get(), 1);
    let (candidates, others) = r.metrics.full_reads_so_far();
    assert!(candidates >= 1, "the exposed StatefulSet was read in full");
    assert_eq!(others, 0, "no unrelated workload was read in full");
    r.shutdown().await;
}

/// `kafka-expose check` with a kubeconfig, run as a user runs it, on a workload whose broker 2
/// is not Ready. Fake brokers stand where kube-proxy would forward the NodePorts on the node
/// (loopback here); broker 2's pod is not Ready, so nothing answers at its port.
#[tokio::test]
async fn check_with_a_kubeconfig_shows_each_brokers_service_and_endpoints_and_where_broker_2_breaks()
 {
    use support::kafka::{self, Behaviour};
    let _shared = APISERVER.read().await;
    let ns = "e2e-check";
    let c = fresh_namespace(ns).await;
    let kubelet = support::cluster::fake_kubelet_ready(
        c.clone(),
        ns,
        "e2e-node",
        |_| "127.0.0.1".into(),
        |pod| pod != "kafka-2",
    );
    let r = start_reconciler(&c, ns);
    expose_three_brokers(&c, ns, 31700).await;
    wait_bootstrap(&c, ns, "127.0.0.1:31750").await;
    // The real Endpoints controller: brokers 0 and 1 ready, broker 2 not.
    let eps: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(c.clone(), ns);
    eventually(Duration::from_secs(60), "the Endpoints", || async {
        let count = |name: &str| {
            let eps = eps.clone();
            let name = name.to_string();
            async move {
                let e = eps.get(&name).await.map_err(|e| e.to_string())?;
                let subsets = e.subsets.unwrap_or_default();
                let ready: usize = subsets
                    .iter()
                    .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                    .sum();
                let not: usize = subsets
                    .iter()
                    .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
                    .sum();
                Ok::<_, String>((ready, not))
            }
        };
        let got = (
            count("kafka-0-external").await?,
            count("kafka-1-external").await?,
            count("kafka-2-external").await?,
        );
        if got == ((1, 0), (1, 0), (0, 1)) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;

    let adv = Arc::new(std::sync::Mutex::new(vec![
        (0, "127.0.0.1".to_string(), 31700u16),
        (1, "127.0.0.1".to_string(), 31701),
        (2, "127.0.0.1".to_string(), 31702),
    ]));
    let bind = |port: u16| async move {
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("loopback port {port}: {e}"))
    };
    let _b0 = kafka::start_on(bind(31700).await, Behaviour::new(0, adv.clone()));
    let _b1 = kafka::start_on(bind(31701).await, Behaviour::new(1, adv.clone()));
    let _boot = kafka::start_on(bind(31750).await, Behaviour::new(0, adv.clone()));

    let run = |extra: Vec<&'static str>| {
        let kubeconfig = env()["KUBECONFIG"].clone();
        async move {
            tokio::process::Command::new(support::serve::BIN)
                .args(["check", "-n", ns])
                .args(extra)
                .env("KUBECONFIG", kubeconfig)
                .output()
                .await
                .unwrap()
        }
    };
    let out = run(vec!["-o", "json"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let target = &report["targets"][0];
    assert_eq!(target["workload"]["name"], "kafka");
    assert_eq!(target["bootstrap"]["answered_by"], "127.0.0.1:31750");
    let brokers = target["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 3, "{target}");
    for (i, b) in brokers.iter().enumerate() {
        assert_eq!(b["node_id"], i as i64);
        let path = &b["cluster"];
        assert_eq!(path["pod"], format!("kafka-{i}"));
        assert_eq!(path["node"], "e2e-node");
        assert_eq!(path["service"]["name"], format!("kafka-{i}-external"));
        assert_eq!(path["service"]["type"], "NodePort");
        assert_eq!(path["service"]["node_port"], 31700 + i as i64);
        assert!(
            path["service"]["external"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("127.0.0.1:{}", 31700 + i))),
            "{path}"
        );
    }
    for b in &brokers[..2] {
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["identity"], "confirmed");
        assert_eq!(b["cluster"]["pod_ready"], true);
        assert_eq!(b["cluster"]["service"]["ready_endpoints"], 1);
    }
    let b2 = &brokers[2];
    assert_eq!(b2["ok"], false);
    assert_eq!(b2["problem"]["kind"], "connection-refused", "{b2}");
    assert_eq!(b2["cluster"]["pod_ready"], false);
    assert_eq!(b2["cluster"]["service"]["ready_endpoints"], 0);
    assert_eq!(b2["cluster"]["service"]["not_ready_endpoints"], 1);
    assert_eq!(b2["diagnosis"]["kind"], "no-ready-endpoint", "{b2}");

    // The same, for people, and for the one workload by name.
    let out = run(vec!["kafka"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    println!("kafka-expose check -n {ns} kafka\n{text}");
    assert!(text.contains("StatefulSet e2e-check/kafka"), "{text}");
    assert!(
        text.contains(
            "breaks: Service kafka-2-external has no ready endpoint: pod kafka-2 is not Ready"
        ),
        "{text}"
    );
    assert!(
        text.contains("cluster: Service kafka-0-external NodePort 31700, 1 ready endpoint(s)"),
        "{text}"
    );

    // Without the bootstrap listener: the bootstrap fails, and the report says what the
    // bootstrap Service shows. (This suite runs no webhook, so the brokers lack the label the
    // bootstrap Service selects on.)
    drop(_boot);
    let out = run(vec!["-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let boot = &report["targets"][0]["bootstrap"];
    assert_eq!(boot["problem"]["kind"], "connection-refused", "{boot}");
    assert_eq!(boot["service"]["name"], "kafka-external-bootstrap");
    assert_eq!(boot["service"]["node_port"], 31750);
    assert_eq!(boot["diagnosis"]["kind"], "no-ready-endpoint", "{boot}");
    assert!(
        boot["diagnosis"]["message"]
            .as_str()
            .unwrap()
            .contains("selects no pod"),
        "{boot}"
    );
    // Each broker is dialled at its Service's address instead: 0 and 1 answer there, so only
    // the bootstrap's path is broken; 2 does not, and its Service says why.
    let rows = report["targets"][0]["brokers"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "one row per broker the cluster knows");
    for (i, b) in rows.iter().enumerate().take(2) {
        assert_eq!(b["probed_at"], format!("127.0.0.1:{}", 31700 + i), "{b}");
        assert_eq!(b["reachable"], true, "{b}");
        assert_eq!(b["ok"], false, "nothing advertised it: {b}");
        assert_eq!(b["problem"]["kind"], "bootstrap-unanswered");
    }
    assert_eq!(rows[2]["reachable"], false);
    assert_eq!(
        rows[2]["problem"]["kind"], "connection-refused",
        "{}",
        rows[2]
    );
    assert_eq!(rows[2]["diagnosis"]["kind"], "no-ready-endpoint");

    let out = run(vec!["no-such-workload"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no StatefulSet or Deployment no-such-workload")
    );
    r.shutdown().await;
    kubelet.abort();
}

#[tokio::test]
async fn with_a_ca_each_broker_gets_a_secret_naming_its_node_ip_or_its_templated_name() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-ca";
    let c = fresh_namespace(ns).await;
    let kubelet = fake_kubelet(c.clone(), ns);
    let r = start_reconciler(&c, ns);
    let ca = ca_secret(&c, ns).await;
    let sts = create_sts(
        &c,
        ns,
        &apache_sts(
            ns,
            json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32010",
                   "kafka-expose.io/bootstrap-node-port": "32013", "kafka-expose.io/external-tls": "ca:kafka-ca"}),
        ),
    )
    .await;
    for i in 0..3 {
        // The brokers advertise their nodes' IPs: the fake kubelet puts every pod at HOST_IP.
        let s = wait_signed(&c, ns, i, &[HOST_IP], &ca).await;
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", sts.uid().unwrap().as_str())
        );
        assert_eq!(
            s.labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("kafka-expose")
        );
    }
    let first = wait_signed(&c, ns, 0, &[HOST_IP], &ca).await;

    // A templated name: the certificates follow the host, each signed again.
    annotate(
        &c,
        ns,
        "kafka",
        json!({"kafka-expose.io/advertised-host": "template:kafka-{ordinal}.e2e.example.com"}),
    )
    .await;
    for i in 0..3 {
        wait_signed(&c, ns, i, &[&format!("kafka-{i}.e2e.example.com")], &ca).await;
    }
    let again = wait_signed(&c, ns, 0, &["kafka-0.e2e.example.com"], &ca).await;
    assert_ne!(
        again.data, first.data,
        "a new key and certificate for the new host"
    );
    eventually(
        Duration::from_secs(30),
        "a CertificateSigned Event per broker's Secret",
        || async {
            let evs = events(&c, ns).await;
            let signed: Vec<String> = evs
                .iter()
                .filter(|e| e.reason.as_deref() == Some("CertificateSigned"))
                .filter_map(|e| e.related.as_ref()?.name.clone())
                .collect();
            let all = (0..3).all(|i| signed.contains(&format!("kafka-{i}-external-tls")));
            all.then_some(()).ok_or(format!("{signed:?}"))
        },
    )
    .await;
    r.shutdown().await;
    kubelet.abort();
}

#[tokio::test]
async fn a_secret_kafka_expose_did_not_make_is_left_alone_and_reported_and_a_missing_ca_is_named() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-ca-theirs";
    let c = fresh_namespace(ns).await;
    let kubelet = fake_kubelet(c.clone(), ns);
    let r = start_reconciler(&c, ns);
    create_sts(
        &c,
        ns,
        &apache_sts(
            ns,
            json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32020",
                   "kafka-expose.io/bootstrap-node-port": "32023", "kafka-expose.io/external-tls": "ca:kafka-ca"}),
        ),
    )
    .await;
    wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| {
        s.contains("CA Secret e2e-ca-theirs/kafka-ca is not there")
    })
    .await;

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), ns);
    let theirs: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "kafka-1-external-tls"}, "stringData": {"note": "the user's"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let ca = ca_secret(&c, ns).await;
    wait_signed(&c, ns, 0, &[HOST_IP], &ca).await;
    wait_signed(&c, ns, 2, &[HOST_IP], &ca).await;
    wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| {
        s.contains(
            "Secret e2e-ca-theirs/kafka-1-external-tls exists and kafka-expose did not make it",
        )
    })
    .await;
    let still = secrets.get("kafka-1-external-tls").await.unwrap();
    assert_eq!(
        still.data.unwrap().keys().collect::<Vec<_>>(),
        ["note"],
        "never taken over"
    );
    r.shutdown().await;
    kubelet.abort();
}

#[tokio::test]
async fn a_sixty_second_certificate_is_signed_again_before_it_ends() {
    let _shared = APISERVER.read().await;
    let ns = "e2e-ca-renew";
    let c = fresh_namespace(ns).await;
    let kubelet = fake_kubelet(c.clone(), ns);
    let r = start_reconciler(&c, ns);
    let ca = ca_secret(&c, ns).await;
    let mut sts = apache_sts(
        ns,
        json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32030",
               "kafka-expose.io/bootstrap-node-port": "32033", "kafka-expose.io/external-tls": "ca:kafka-ca",
               "kafka-expose.io/external-tls-duration": "60s", "kafka-expose.io/external-tls-renew-before": "45s"}),
    );
    sts.spec.replicas = Some(1);
    create_sts(&c, ns, &sts).await;
    let first = wait_signed(&c, ns, 0, &[HOST_IP], &ca).await;
    let end = |s: &k8s_openapi::api::core::v1::Secret| {
        let pem = String::from_utf8(s.data.as_ref().unwrap()["tls.crt"].0.clone()).unwrap();
        kafka_expose::certs::inspect(&pem).unwrap()[0].not_after
    };
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), ns);
    // Signed with 60 s to go, it is due 15 s later (45 s before its end).
    let renewed = eventually(
        Duration::from_secs(40),
        "the certificate signed again",
        || async {
            let s = api
                .get("kafka-0-external-tls")
                .await
                .map_err(|e| e.to_string())?;
            (end(&s) > end(&first))
                .then_some(s)
                .ok_or("not yet".to_string())
        },
    )
    .await;
    let left = end(&renewed) - kafka_expose::cluster::unix_now();
    assert!(
        left > 30,
        "the new one runs for its whole duration: {left}s left"
    );
    r.shutdown().await;
    kubelet.abort();
}

/// `external-tls: ca:` behind LoadBalancers: each broker's certificate is signed once its
/// Service has an ingress, for that IP or that hostname.
#[tokio::test]
async fn with_a_ca_a_loadbalancer_broker_gets_a_certificate_for_its_ingress() {
    // LoadBalancer Services take random NodePorts on 1.20: alone, as the other LoadBalancer test.
    let _exclusive = APISERVER.write().await;
    let ns = "e2e-ca-lb";
    let c = fresh_namespace(ns).await;
    let kubelet = fake_kubelet(c.clone(), ns);
    let r = start_reconciler(&c, ns);
    let ca = ca_secret(&c, ns).await;
    let mut sts = apache_sts(
        ns,
        json!({"kafka-expose.io/expose": "loadbalancer", "kafka-expose.io/advertised-host": "loadbalancer",
               "kafka-expose.io/external-tls": "ca:kafka-ca"}),
    );
    sts.spec.replicas = Some(2);
    create_sts(&c, ns, &sts).await;
    wait_services(
        &c,
        ns,
        &[
            "kafka-0-external",
            "kafka-1-external",
            "kafka-external-bootstrap",
        ],
    )
    .await;
    let svc_api: Api<Service> = Api::namespaced(c.clone(), ns);
    for (name, ingress) in [
        ("kafka-0-external", json!({"ip": "203.0.113.41"})),
        (
            "kafka-1-external",
            json!({"hostname": "lb-1.e2e.example.com"}),
        ),
    ] {
        svc_api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [ingress]}}})),
            )
            .await
            .unwrap();
    }
    // The bootstrap LoadBalancer may hand a connection to either broker: each certificate names
    // its address too, so none is signed while it has none.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), ns);
    let early = secrets.get_opt("kafka-0-external-tls").await.unwrap();
    assert!(
        early.is_none(),
        "signed before the bootstrap had an address"
    );
    svc_api
        .patch_status(
            "kafka-external-bootstrap",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.40"}]}}}),
            ),
        )
        .await
        .unwrap();
    // Until now no bootstrap address was known; the reconciler kept looking, and signs as it comes.
    wait_signed(&c, ns, 0, &["203.0.113.41", "203.0.113.40"], &ca).await;
    wait_signed(&c, ns, 1, &["lb-1.e2e.example.com", "203.0.113.40"], &ca).await;
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .delete("kafka", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the LoadBalancer Services removed",
        || async {
            let left = managed(&c, ns).await;
            left.is_empty()
                .then_some(())
                .ok_or(format!("{:?}", names(&left)))
        },
    )
    .await;
    r.shutdown().await;
    kubelet.abort();
}
