//! The policy controller's rollouts on the real control plane, in the cases a rollout meets in a
//! cluster: the leader changes in the middle of one, a policy's selector is narrowed in place, a
//! StatefulSet holds a partition, a Deployment is paused.
//!
//! The leader runs in-process (`runtime::spawn`, scoped to each test's namespace), with passes
//! every second. Policies are cluster-scoped and a leader writes the status of every policy it
//! sees, so the tests take turns (one lock), and this suite is a binary of its own.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kafka_expose::api::{KafkaExposePolicy, KafkaExposePolicyStatus, WorkloadState};
use kafka_expose::cluster::{leader, runtime};
use kafka_expose::config::Settings;
use kafka_expose::metrics::{Metrics, Readiness};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::cluster::{client, eventually, fake_kubelet_on, namespace, sts_rolling, wait_event};
use support::serve::{apply_crd, remove_policy};

/// One test at a time: see the module's comment.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ROLLING: &str = "kafka-expose.io/rolling";
const STAMP: &str = "kafka-expose.io/policy";

/// A leader, in-process, scoped to one namespace.
struct Leader {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

fn lead(c: &Client, ns: &str, election: Option<leader::Election>) -> Leader {
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    readiness.set_listening();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = runtime::spawn(
        c.clone(),
        Arc::new(Settings::default()),
        metrics.clone(),
        readiness,
        runtime::Options {
            namespace: Some(ns.into()),
            lb_pending_warning: Duration::from_secs(300),
            periods: runtime::Periods {
                policy_active: Duration::from_secs(1),
                policy_idle: Duration::from_secs(2),
                ..runtime::Periods::default()
            },
            policy_client: None,
            registrar: None,
        },
        election,
        async move {
            let _ = rx.await;
        },
    );
    Leader {
        stop,
        task: spawned.task,
        metrics,
    }
}

impl Leader {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// Namespace `ns`, made anew with the label the test's policy selects, and a stand-in kubelet.
async fn setup(ns: &str) -> (Client, tokio::task::JoinHandle<()>) {
    let c = client().await;
    namespace(&c, ns).await;
    Api::<Namespace>::all(c.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e-pc": ns}}})),
        )
        .await
        .unwrap();
    let kubelet = fake_kubelet_on(c.clone(), ns, &format!("{ns}-node"), |_| {
        "192.0.2.40".to_string()
    });
    (c, kubelet)
}

/// The apache/kafka StatefulSet as `name` in `ns`, its selector its own, with `labels`.
fn apache(ns: &str, name: &str, replicas: u32, labels: Value) -> Value {
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["name"] = json!(name);
    sts["metadata"]["namespace"] = json!(ns);
    sts["metadata"]["labels"] = labels;
    sts["spec"]["replicas"] = json!(replicas);
    sts["spec"]["selector"] = json!({"matchLabels": {"app": name}});
    sts["spec"]["template"]["metadata"]["labels"] = json!({"app": name});
    sts
}

async fn create_sts(c: &Client, ns: &str, sts: Value) {
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(sts).unwrap(),
        )
        .await
        .unwrap();
}

async fn settled(c: &Client, ns: &str) {
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    eventually(
        Duration::from_secs(90),
        "every StatefulSet settled",
        || async {
            let l = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            match l.items.iter().find(|s| sts_rolling(s)) {
                None => Ok(()),
                Some(s) => Err(format!("{} rolls", s.name_any())),
            }
        },
    )
    .await;
}

/// Samples the StatefulSets of `ns` until stopped; returns the most seen rolling at once, and
/// the most seen carrying the controller's rollout mark at once.
fn sampler(c: &Client, ns: &str) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(usize, usize)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (most, marked) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let s = stop.clone();
    let task = tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) {
            if let Ok(l) = api.list(&ListParams::default()).await {
                most.fetch_max(
                    l.items.iter().filter(|w| sts_rolling(w)).count(),
                    Ordering::SeqCst,
                );
                marked.fetch_max(
                    l.items
                        .iter()
                        .filter(|w| w.labels().contains_key(ROLLING))
                        .count(),
                    Ordering::SeqCst,
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (most.load(Ordering::SeqCst), marked.load(Ordering::SeqCst))
    });
    (stop, task)
}

fn policy(name: &str, ns: &str, selector: Value, extra: Value) -> KafkaExposePolicy {
    let mut spec = json!({
        "mode": "Enforce",
        "match": {"namespaceSelector": {"matchLabels": {"e2e-pc": ns}}, "selector": selector},
        "exposure": {"expose": "nodeport", "portPool": {"from": 32700, "to": 32799, "blockSize": 4}},
        "rollout": {"maxConcurrent": 1}
    });
    if let (Some(s), Some(x)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "kafka-expose.io/v1alpha1", "kind": "KafkaExposePolicy",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

async fn status(api: &Api<KafkaExposePolicy>, name: &str) -> KafkaExposePolicyStatus {
    api.get(name)
        .await
        .ok()
        .and_then(|p| p.status)
        .unwrap_or_default()
}

/// Waits until policy `name` lists exactly `want` (workload name, state).
async fn states(api: &Api<KafkaExposePolicy>, name: &str, want: &[(&str, WorkloadState)]) {
    let want: BTreeSet<(String, WorkloadState)> =
        want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    eventually(
        Duration::from_secs(120),
        &format!("{name}: {want:?}"),
        || async {
            let got: BTreeSet<(String, WorkloadState)> = status(api, name)
                .await
                .workloads
                .into_iter()
                .map(|w| (w.name, w.state))
                .collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_new_leader_resumes_a_rollout_and_never_two_workloads_roll_at_once() {
    let _turn = TURN.lock().await;
    let ns = "pc-leader";
    let (c, kubelet) = setup(ns).await;
    let api = apply_crd(&c).await;
    remove_policy(&api, "e2e-pc-leader").await;
    for n in ["kafka-a", "kafka-b", "kafka-c"] {
        create_sts(&c, ns, apache(ns, n, 1, json!({"app": n, "tier": "lead"}))).await;
    }
    settled(&c, ns).await;
    let election = |id: &str| {
        let mut e = leader::Election::new(ns, &format!("kafka-expose-reconciler-{ns}"), id);
        e.duration = Duration::from_secs(6);
        e.renew_every = Duration::from_secs(2);
        e
    };
    let leases: Api<Lease> = Api::namespaced(c.clone(), ns);
    let holder = || async {
        leases
            .get_opt(&format!("kafka-expose-reconciler-{ns}"))
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .unwrap_or_default()
    };
    let a = lead(&c, ns, Some(election("replica-a")));
    eventually(Duration::from_secs(20), "replica-a leads", || async {
        match holder().await.as_str() {
            "replica-a" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let b = lead(&c, ns, Some(election("replica-b")));
    let (stop, sampled) = sampler(&c, ns);
    api.create(
        &PostParams::default(),
        &policy(
            "e2e-pc-leader",
            ns,
            json!({"matchLabels": {"tier": "lead"}}),
            json!({}),
        ),
    )
    .await
    .unwrap();

    // Replica a starts the first workload's roll; it stops in the middle of it.
    let sts_api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let first = eventually(Duration::from_secs(60), "a rollout started", || async {
        let l = sts_api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        l.items
            .iter()
            .find(|s| s.labels().contains_key(ROLLING))
            .map(|s| s.name_any())
            .ok_or_else(|| "no rollout mark yet".to_string())
    })
    .await;
    a.shutdown().await;
    eventually(Duration::from_secs(30), "replica-b leads", || async {
        match holder().await.as_str() {
            "replica-b" => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;

    // Replica b resumes from what the cluster shows: the mark on the first, then the others.
    states(
        &api,
        "e2e-pc-leader",
        &[
            ("kafka-a", WorkloadState::UpToDate),
            ("kafka-b", WorkloadState::UpToDate),
            ("kafka-c", WorkloadState::UpToDate),
        ],
    )
    .await;
    settled(&c, ns).await;
    eventually(Duration::from_secs(30), "every mark removed", || async {
        let l = sts_api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        match l.items.iter().find(|s| s.labels().contains_key(ROLLING)) {
            None => Ok(()),
            Some(s) => Err(format!("{} still marked", s.name_any())),
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (most, marked) = sampled.await.unwrap();
    assert!(
        b.metrics.policy_passes.get() > 0,
        "replica b ran the passes that finished it"
    );
    assert_eq!(most, 1, "one workload rolled at a time (first: {first})");
    assert_eq!(marked, 1, "one rollout mark at a time");
    b.shutdown().await;
    remove_policy(&api, "e2e-pc-leader").await;
    kubelet.abort();
}

#[tokio::test]
async fn a_policy_narrowed_in_place_reverts_the_workloads_it_leaves_one_at_a_time() {
    let _turn = TURN.lock().await;
    let ns = "pc-narrow";
    let (c, kubelet) = setup(ns).await;
    let api = apply_crd(&c).await;
    remove_policy(&api, "e2e-pc-narrow").await;
    for (n, tier) in [
        ("kafka-keep", "keep"),
        ("kafka-x", "drop"),
        ("kafka-y", "drop"),
    ] {
        create_sts(&c, ns, apache(ns, n, 1, json!({"app": n, "tier": tier}))).await;
    }
    settled(&c, ns).await;
    let l = lead(&c, ns, None);
    let both = json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["keep", "drop"]}]});
    api.create(
        &PostParams::default(),
        &policy("e2e-pc-narrow", ns, both, json!({})),
    )
    .await
    .unwrap();
    states(
        &api,
        "e2e-pc-narrow",
        &[
            ("kafka-keep", WorkloadState::UpToDate),
            ("kafka-x", WorkloadState::UpToDate),
            ("kafka-y", WorkloadState::UpToDate),
        ],
    )
    .await;
    settled(&c, ns).await;

    // Narrowed in place: the same policy now selects `keep` only.
    let (stop, sampled) = sampler(&c, ns);
    api.patch(
        "e2e-pc-narrow",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"match": {"selector": {"matchExpressions": null, "matchLabels": {"tier": "keep"}}}}})),
    )
    .await
    .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let sts_api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    eventually(
        Duration::from_secs(120),
        "the dropped ones reverted",
        || async {
            for w in status(&api, "e2e-pc-narrow").await.workloads {
                seen.lock().unwrap().insert((w.name, w.state));
            }
            for n in ["kafka-x", "kafka-y"] {
                let s = sts_api.get(n).await.map_err(|e| e.to_string())?;
                let tpl = s
                    .spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.clone())
                    .unwrap_or_default();
                if s.labels().contains_key(STAMP)
                    || tpl.keys().any(|k| k.starts_with("kafka-expose.io/"))
                {
                    return Err(format!("{n} still carries the policy"));
                }
            }
            Ok(())
        },
    )
    .await;
    states(
        &api,
        "e2e-pc-narrow",
        &[("kafka-keep", WorkloadState::UpToDate)],
    )
    .await;
    settled(&c, ns).await;
    stop.store(true, Ordering::SeqCst);
    let (most, marked) = sampled.await.unwrap();
    assert_eq!(most, 1, "reverted one at a time");
    assert_eq!(marked, 1, "one rollout mark at a time");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(_, s)| *s == WorkloadState::Reverting),
        "the status said Reverting on the way: {seen:?}"
    );
    let keep = sts_api.get("kafka-keep").await.unwrap();
    assert!(
        keep.labels().contains_key(STAMP),
        "the one kept stays stamped"
    );
    l.shutdown().await;
    remove_policy(&api, "e2e-pc-narrow").await;
    kubelet.abort();
}

#[tokio::test]
async fn a_partitioned_statefulset_is_up_to_date_once_the_brokers_above_the_partition_roll() {
    let _turn = TURN.lock().await;
    let ns = "pc-partition";
    let (c, kubelet) = setup(ns).await;
    let api = apply_crd(&c).await;
    remove_policy(&api, "e2e-pc-partition").await;
    let mut sts = apache(ns, "kafka", 3, json!({"app": "kafka", "tier": "part"}));
    sts["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    create_sts(&c, ns, sts).await;
    settled(&c, ns).await;
    let l = lead(&c, ns, None);
    api.create(
        &PostParams::default(),
        &policy(
            "e2e-pc-partition",
            ns,
            json!({"matchLabels": {"tier": "part"}}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    states(
        &api,
        "e2e-pc-partition",
        &[("kafka", WorkloadState::UpToDate)],
    )
    .await;
    let s = status(&api, "e2e-pc-partition").await;
    assert!(
        s.workloads[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("partition 2: brokers below ordinal 2 keep their configuration"),
        "{s:?}"
    );
    // Broker 2 runs the new revision; brokers 0 and 1 keep theirs.
    let sts = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get("kafka")
        .await
        .unwrap();
    let st = sts.status.unwrap();
    assert_ne!(
        st.current_revision, st.update_revision,
        "the partition holds"
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    for (pod, revision) in [
        ("kafka-0", &st.current_revision),
        ("kafka-1", &st.current_revision),
        ("kafka-2", &st.update_revision),
    ] {
        let p = pods.get(pod).await.unwrap();
        assert_eq!(
            p.labels().get("controller-revision-hash"),
            revision.as_ref(),
            "{pod}"
        );
    }
    l.shutdown().await;
    remove_policy(&api, "e2e-pc-partition").await;
    kubelet.abort();
}

#[tokio::test]
async fn a_paused_deployment_is_skipped_until_it_is_resumed() {
    let _turn = TURN.lock().await;
    let ns = "pc-paused";
    let (c, kubelet) = setup(ns).await;
    let api = apply_crd(&c).await;
    remove_policy(&api, "e2e-pc-paused").await;
    let sts = apache(ns, "kafka", 1, json!({}));
    // The StatefulSet's `data` comes from its claim template; a Deployment's from a volume.
    let mut pod = sts["spec"]["template"]["spec"].clone();
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    pod["volumes"] = json!(
        volumes
            .into_iter()
            .chain([json!({"name": "data", "emptyDir": {}})])
            .collect::<Vec<_>>()
    );
    let dep: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kafka-single", "namespace": ns, "labels": {"tier": "paused"},
                     "annotations": {"kafka-expose.io/ordinal": "0"}},
        "spec": {"paused": true, "replicas": 1,
                 "selector": {"matchLabels": {"app": "kafka-single"}},
                 "template": {"metadata": {"labels": {"app": "kafka-single"}},
                              "spec": pod}}
    }))
    .unwrap();
    let deps: Api<Deployment> = Api::namespaced(c.clone(), ns);
    deps.create(&PostParams::default(), &dep).await.unwrap();
    let template_before = deps.get("kafka-single").await.unwrap().spec.template;
    let l = lead(&c, ns, None);
    api.create(
        &PostParams::default(),
        &policy(
            "e2e-pc-paused",
            ns,
            json!({"matchLabels": {"tier": "paused"}}),
            json!({"match": {"namespaceSelector": {"matchLabels": {"e2e-pc": ns}},
                             "selector": {"matchLabels": {"tier": "paused"}},
                             "kinds": ["Deployment"]}}),
        ),
    )
    .await
    .unwrap();
    states(
        &api,
        "e2e-pc-paused",
        &[("kafka-single", WorkloadState::Skipped)],
    )
    .await;
    wait_event(&c, ns, "PolicySkipped", "paused").await;
    assert_eq!(
        deps.get("kafka-single").await.unwrap().spec.template,
        template_before,
        "a paused Deployment's template is left alone"
    );

    // Resumed: stamped, and rolled by its own controller.
    deps.patch(
        "kafka-single",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    states(
        &api,
        "e2e-pc-paused",
        &[("kafka-single", WorkloadState::UpToDate)],
    )
    .await;
    let d = deps.get("kafka-single").await.unwrap();
    assert!(d.labels().contains_key(STAMP), "stamped once resumed");
    l.shutdown().await;
    remove_policy(&api, "e2e-pc-paused").await;
    kubelet.abort();
}
