//! Policies against the real control plane, as a platform team would use them: an Audit policy
//! over three `env=prod` namespaces, switched to Enforce, overridden and contested, stalled, and
//! deleted; with `kafka-expose serve` registered as the install registers it, running under the
//! install's ServiceAccount and RBAC, watching every namespace.
//!
//! Policies are cluster-scoped, so this suite is a binary of its own: cargo runs test binaries
//! one after another, and no other suite's server runs beside this one. Its one test is long,
//! so its Node gets a heartbeat.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use kafka_expose::api::{KafkaExposePolicy, KafkaExposePolicyStatus, WorkloadState};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::cluster::{
    client, eventually, fake_kubelet_on, managed, namespace, node_heartbeat, sts_rolling,
};
use support::serve::{TAG, Webhook, apply_crd, apply_value, install_rbac, scratch};
use support::{Image, effective_config, listeners, node_ip};

const NODE: &str = "e2e-policy-node";
const PROD: [&str; 3] = ["pol-a", "pol-b", "pol-c"];
const DEV: &str = "pol-dev";
const POOL: (u16, u16) = (32500, 32599);
const HIGH_POOL: (u16, u16) = (32600, 32699);

async fn labelled_namespace(c: &Client, name: &str, env: &str, tag: &str) {
    namespace(c, name).await;
    Api::<Namespace>::all(c.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {TAG: tag, "env": env}}})),
        )
        .await
        .unwrap();
}

/// The apache/kafka fixture's StatefulSet in `ns`, unannotated, as `helm install` leaves it.
fn apache(ns: &str) -> Value {
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts
}

fn ordinal_of(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn pods(c: &Client, ns: &str) -> Vec<Pod> {
    let mut p: Vec<Pod> = Api::<Pod>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    p.sort_by_key(|p| p.name_any());
    p
}

/// Each pod's name, uid and resourceVersion: what "left as it was" is checked against.
async fn pod_identities(c: &Client, ns: &str) -> Vec<(String, String, String)> {
    pods(c, ns)
        .await
        .into_iter()
        .map(|p| {
            (
                p.name_any(),
                p.uid().unwrap_or_default(),
                p.resource_version().unwrap_or_default(),
            )
        })
        .collect()
}

fn is_mutated(p: &Pod) -> bool {
    p.spec.as_ref().unwrap().containers.iter().any(|c| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.name.starts_with("KAFKA_EXPOSE_"))
    })
}

async fn sts(c: &Client, ns: &str) -> StatefulSet {
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get("kafka")
        .await
        .unwrap()
}

/// Samples the prod StatefulSets until stopped; returns the most seen rolling at once.
fn sampler(c: &Client) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let (c, s) = (c.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) {
            let mut n = 0;
            for ns in PROD {
                if let Ok(w) = Api::<StatefulSet>::namespaced(c.clone(), ns)
                    .get("kafka")
                    .await
                    && sts_rolling(&w)
                {
                    n += 1;
                }
            }
            most.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        most.load(Ordering::SeqCst)
    });
    (stop, task)
}

/// Waits until the policy controller has made `n` more whole passes: what "nothing changes"
/// is checked after, rather than a number of seconds.
async fn more_passes(wh: &Webhook, n: u64) {
    // The pass under way when counted may have read the cluster before the change: one more.
    let from = wh.counter("kafka_expose_policy_passes_total") + 1;
    eventually(Duration::from_secs(120), "policy passes", || async {
        let now = wh.counter("kafka_expose_policy_passes_total");
        if now >= from + n {
            Ok(())
        } else {
            Err(format!("{now} of {} passes", from + n))
        }
    })
    .await;
}

fn policy(name: &str, spec: Value) -> KafkaExposePolicy {
    serde_json::from_value(json!({
        "apiVersion": "kafka-expose.io/v1alpha1", "kind": "KafkaExposePolicy",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn prod_spec(mode: &str) -> Value {
    json!({
        "mode": mode,
        "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}},
                  "selector": {"matchLabels": {"app": "kafka"}}, "names": ["kafka*"]},
        "exposure": {"expose": "nodeport", "externalTrafficPolicy": "Local",
                     "portPool": {"from": POOL.0, "to": POOL.1, "blockSize": 10}}
    })
}

async fn status(api: &Api<KafkaExposePolicy>, name: &str) -> KafkaExposePolicyStatus {
    api.get(name).await.unwrap().status.unwrap_or_default()
}

fn condition<'a>(
    s: &'a KafkaExposePolicyStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

async fn events(c: &Client, ns: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// The broker ports a workload's Services route, by Service name.
fn node_ports(svcs: &[Service]) -> BTreeMap<String, i32> {
    svcs.iter()
        .filter_map(|s| {
            Some((
                s.name_any(),
                s.spec.as_ref()?.ports.as_ref()?.first()?.node_port?,
            ))
        })
        .collect()
}

/// Every broker pod of `ns` is mutated and advertises its node and `base + ordinal`, as the
/// broker would really run (the kubelet's `$(VAR)` rules, the image's env mapping).
async fn advertises_block(c: &Client, ns: &str, base: u16) -> Result<(), String> {
    let docs = support::fixture("apache-kafka-kraft.yaml");
    let pods = pods(c, ns).await;
    if pods.len() != 3 {
        return Err(format!("{ns}: {} pods", pods.len()));
    }
    for p in &pods {
        if !is_mutated(p) {
            return Err(format!("{ns}/{} not mutated yet", p.name_any()));
        }
        let i = ordinal_of(&p.name_any());
        let eff = effective_config(
            &docs,
            &serde_json::to_value(p).unwrap(),
            "broker",
            i,
            Image::Apache,
        );
        let adv = listeners(eff.get("advertised.listeners"));
        let want = (
            "EXTERNAL".to_string(),
            node_ip(i),
            (u32::from(base) + i).to_string(),
        );
        if !adv.contains(&want) {
            return Err(format!("{ns}/{}: advertises {adv:?}", p.name_any()));
        }
    }
    Ok(())
}

/// The block a workload was given: its stamped `port-base`.
async fn block_of(c: &Client, ns: &str) -> Option<u16> {
    sts(c, ns)
        .await
        .spec
        .template
        .metadata?
        .annotations?
        .get("kafka-expose.io/port-base")?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_platform_team_audits_enforces_overrides_and_deletes_a_policy() {
    let c = client().await;
    let tag = "policies";
    let api = apply_crd(&c).await;
    // What an earlier, failed run left: its policies' finalizers have no server to remove them.
    for p in api.list(&ListParams::default()).await.unwrap().items {
        if p.name_any().starts_with("e2e-") {
            let _ = api
                .patch(
                    &p.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await;
            let _ = api.delete(&p.name_any(), &DeleteParams::default()).await;
        }
    }
    for ns in ["pol-od", "pol-stall", "pol-stall2"] {
        namespace(&c, ns).await;
    }
    let heartbeat = node_heartbeat(c.clone(), NODE);
    let dir = scratch(tag);
    // Exactly the install's permissions: RBAC too is under test.
    let kubeconfig = install_rbac(&c, &dir).await;
    let wh = Webhook::start(tag, kubeconfig, dir, None);
    wh.register_with(&c, tag, true).await;

    let mut kubelets = Vec::new();
    for ns in PROD {
        labelled_namespace(&c, ns, "prod", tag).await;
    }
    labelled_namespace(&c, DEV, "dev", tag).await;
    for ns in PROD.iter().chain([&DEV]) {
        kubelets.push(fake_kubelet_on(c.clone(), ns, NODE, |p| {
            node_ip(ordinal_of(p))
        }));
        apply_value(&c, &apache(ns)).await;
    }
    for ns in PROD.iter().chain([&DEV]) {
        eventually(Duration::from_secs(120), "three Ready brokers", || async {
            let s = sts(&c, ns).await;
            if sts_rolling(&s) {
                Err(format!("{ns}: {:?}", s.status))
            } else {
                Ok(())
            }
        })
        .await;
    }
    let mut before = BTreeMap::new();
    for ns in PROD.iter().chain([&DEV]) {
        before.insert(
            ns.to_string(),
            (
                pod_identities(&c, ns).await,
                sts(&c, ns).await.spec.template,
            ),
        );
    }

    // 1. Audit: the status lists the three prod workloads with the addresses they would get,
    //    each in its own block, and nothing changes.
    api.create(
        &PostParams::default(),
        &policy("e2e-prod", prod_spec("Audit")),
    )
    .await
    .unwrap();
    let audit = eventually(Duration::from_secs(60), "the Audit status", || async {
        let s = status(&api, "e2e-prod").await;
        if s.workloads_total == 3 && s.workloads.iter().all(|w| !w.brokers.is_empty()) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let listed: Vec<&str> = audit
        .workloads
        .iter()
        .map(|w| w.namespace.as_str())
        .collect();
    assert_eq!(listed, PROD, "the prod workloads, and not the dev one");
    let mut bases = BTreeSet::new();
    for w in &audit.workloads {
        assert_eq!(w.state, WorkloadState::Matched, "{w:?}");
        assert!(
            w.reason.as_deref().unwrap_or_default().contains("env=prod"),
            "{w:?}"
        );
        // EXTERNAL://<node IP of broker n>:<block + n>
        let base: u16 = w.brokers[0].rsplit(':').next().unwrap().parse().unwrap();
        assert!((POOL.0..=POOL.1).contains(&base), "{w:?}");
        for (n, b) in w.brokers.iter().enumerate() {
            assert_eq!(
                b,
                &format!("EXTERNAL://{}:{}", node_ip(n as u32), base + n as u16),
                "{w:?}"
            );
        }
        assert!(bases.insert(base), "distinct blocks: {audit:?}");
    }
    assert!(
        !events(&c, "pol-a", "PolicyAudit").await.is_empty(),
        "an Event on each matched workload"
    );
    more_passes(&wh, 2).await;
    for ns in PROD.iter().chain([&DEV]) {
        let (pods_then, template_then) = &before[*ns];
        assert_eq!(
            &pod_identities(&c, ns).await,
            pods_then,
            "{ns}: pods untouched"
        );
        assert_eq!(&sts(&c, ns).await.spec.template, template_then, "{ns}");
        assert!(managed(&c, ns).await.is_empty(), "{ns}: no Service");
    }

    // 2. Enforce: every prod broker ends up mutated, advertising its own block; one workload
    //    mid-rollout at a time; dev untouched.
    let (stop, sampled) = sampler(&c);
    api.patch(
        "e2e-prod",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"mode": "Enforce"}})),
    )
    .await
    .unwrap();
    let mut blocks = BTreeMap::new();
    for ns in PROD {
        let base = eventually(Duration::from_secs(240), "a block stamped", || async {
            block_of(&c, ns).await.ok_or_else(|| format!("{ns}: none"))
        })
        .await;
        blocks.insert(ns, base);
    }
    for ns in PROD {
        let base = blocks[ns];
        eventually(
            Duration::from_secs(240),
            "brokers advertising their block",
            || advertises_block(&c, ns, base),
        )
        .await;
        let svcs = eventually(Duration::from_secs(60), "the block's Services", || async {
            let s = node_ports(&managed(&c, ns).await);
            let want: BTreeMap<String, i32> = (0..3)
                .map(|i| (format!("kafka-{i}-external"), i32::from(base) + i))
                .chain([("kafka-external-bootstrap".to_string(), i32::from(base) + 9)])
                .collect();
            if s == want {
                Ok(s)
            } else {
                Err(format!("{ns}: {s:?}"))
            }
        })
        .await;
        assert_eq!(svcs.len(), 4);
    }
    let distinct: BTreeSet<u16> = blocks.values().copied().collect();
    assert_eq!(distinct.len(), 3, "distinct blocks: {blocks:?}");
    assert_eq!(distinct, bases, "Enforce gives the blocks Audit showed");
    let enforced = eventually(Duration::from_secs(60), "Ready and up to date", || async {
        let s = status(&api, "e2e-prod").await;
        let ready = condition(&s, "Ready").is_some_and(|c| c.status == "True");
        if ready && s.up_to_date == 3 {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert!(
        enforced
            .workloads
            .iter()
            .all(|w| w.state == WorkloadState::UpToDate && w.bootstrap.is_some()),
        "{enforced:?}"
    );
    stop.store(true, Ordering::SeqCst);
    let most = sampled.await.unwrap();
    assert_eq!(
        most, 1,
        "never more than one workload mid-rollout (and one, at times)"
    );
    let (dev_pods, dev_template) = &before[DEV];
    assert_eq!(&pod_identities(&c, DEV).await, dev_pods, "dev untouched");
    assert_eq!(&sts(&c, DEV).await.spec.template, dev_template);
    assert!(managed(&c, DEV).await.is_empty());

    // 3. The workload's own annotation wins, key by key.
    Api::<StatefulSet>::namespaced(c.clone(), "pol-a")
        .patch(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kafka-expose.io/external-traffic-policy": "Cluster"}}})),
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(90), "the override applied", || async {
        let svcs = managed(&c, "pol-a").await;
        let policies: BTreeSet<String> = svcs
            .iter()
            .filter_map(|s| s.spec.as_ref()?.external_traffic_policy.clone())
            .collect();
        let s = status(&api, "e2e-prod").await;
        let overridden = s
            .workloads
            .iter()
            .find(|w| w.namespace == "pol-a")
            .map(|w| w.overridden.clone())
            .unwrap_or_default();
        if policies == BTreeSet::from(["Cluster".to_string()])
            && overridden == ["external-traffic-policy"]
        {
            Ok(())
        } else {
            Err(format!("{policies:?} {overridden:?}"))
        }
    })
    .await;
    assert_eq!(
        block_of(&c, "pol-a").await,
        Some(blocks["pol-a"]),
        "the block stays"
    );
    let other: BTreeSet<String> = managed(&c, "pol-c")
        .await
        .iter()
        .filter_map(|s| s.spec.as_ref()?.external_traffic_policy.clone())
        .collect();
    assert_eq!(other, BTreeSet::from(["Local".to_string()]));

    // 4. A higher priority wins; an equal one is a Conflict, not a rejection.
    let high = json!({
        "mode": "Enforce", "priority": 10,
        "match": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "pol-b"}}},
        "exposure": {"expose": "nodeport",
                     "portPool": {"from": HIGH_POOL.0, "to": HIGH_POOL.1, "blockSize": 10}}
    });
    // 1.20 has no kubernetes.io/metadata.name label: give pol-b one to select it by.
    Api::<Namespace>::all(c.clone())
        .patch(
            "pol-b",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"kubernetes.io/metadata.name": "pol-b"}}}),
            ),
        )
        .await
        .unwrap();
    api.create(&PostParams::default(), &policy("e2e-high", high.clone()))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(120),
        "pol-b rolled to the higher priority",
        || async {
            let base = block_of(&c, "pol-b").await.unwrap_or_default();
            if (HIGH_POOL.0..=HIGH_POOL.1).contains(&base) {
                advertises_block(&c, "pol-b", base).await
            } else {
                Err(format!("block {base}"))
            }
        },
    )
    .await;
    let s = status(&api, "e2e-prod").await;
    let b = s.workloads.iter().find(|w| w.namespace == "pol-b").unwrap();
    assert_eq!(b.state, WorkloadState::Superseded, "{s:?}");
    api.create(&PostParams::default(), &policy("e2e-tie", high))
        .await
        .unwrap();
    for name in ["e2e-high", "e2e-tie"] {
        eventually(Duration::from_secs(30), "a Conflict", || async {
            let s = status(&api, name).await;
            match condition(&s, "Conflict") {
                Some(cnd) if cnd.status == "True" => Ok(()),
                other => Err(format!("{name}: {other:?} {s:?}")),
            }
        })
        .await;
    }
    let conflict = eventually(Duration::from_secs(30), "a conflict Event", || async {
        let e = events(&c, "pol-b", "PolicyConflict").await;
        e.into_iter().next().ok_or_else(|| "none".to_string())
    })
    .await;
    assert!(
        conflict.contains("e2e-high") && conflict.contains("e2e-tie"),
        "{conflict}"
    );
    let tie = status(&api, "e2e-tie").await;
    assert_eq!(
        tie.workloads.first().map(|w| w.state.as_str()),
        Some("Superseded"),
        "the smallest name applies: {tie:?}"
    );
    for name in ["e2e-tie", "e2e-high"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually(
        Duration::from_secs(120),
        "pol-b back under e2e-prod",
        || async {
            let base = block_of(&c, "pol-b").await.unwrap_or_default();
            let gone = api.get_opt("e2e-high").await.unwrap().is_none()
                && api.get_opt("e2e-tie").await.unwrap().is_none();
            if (POOL.0..=POOL.1).contains(&base) && gone {
                advertises_block(&c, "pol-b", base).await
            } else {
                Err(format!("block {base}, deleted {gone}"))
            }
        },
    )
    .await;

    // 5. OnDelete is stamped and reported, not restarted; a rollout past its deadline stalls.
    labelled_namespace(&c, "pol-od", "prod", tag).await;
    labelled_namespace(&c, "pol-stall", "stall", tag).await;
    labelled_namespace(&c, "pol-stall2", "stall", tag).await;
    kubelets.push(fake_kubelet_on(c.clone(), "pol-od", NODE, |p| {
        node_ip(ordinal_of(p))
    }));
    kubelets.push(fake_kubelet_on(c.clone(), "pol-stall2", NODE, |p| {
        node_ip(ordinal_of(p))
    }));
    let mut od = apache("pol-od");
    od["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    apply_value(&c, &od).await;
    // No kubelet in pol-stall: its brokers never become Ready.
    apply_value(&c, &apache("pol-stall")).await;
    apply_value(&c, &apache("pol-stall2")).await;
    eventually(Duration::from_secs(60), "pol-od's brokers", || async {
        if sts_rolling(&sts(&c, "pol-od").await) {
            Err("not ready".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    let od_pods = pod_identities(&c, "pol-od").await;
    let od_status = eventually(Duration::from_secs(60), "OnDelete reported", || async {
        let s = status(&api, "e2e-prod").await;
        let w = s
            .workloads
            .iter()
            .find(|w| w.namespace == "pol-od")
            .cloned();
        match w {
            Some(w) if w.state == WorkloadState::WaitingForRestart => Ok(w),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        block_of(&c, "pol-od").await.is_some(),
        "{od_status:?}: stamped"
    );
    more_passes(&wh, 2).await;
    assert_eq!(pod_identities(&c, "pol-od").await, od_pods, "not restarted");

    let mut stall = prod_spec("Enforce");
    stall["match"]["namespaceSelector"] = json!({"matchLabels": {"env": "stall"}});
    stall["rollout"] = json!({"maxConcurrent": 1, "progressDeadlineSeconds": 5});
    stall["exposure"]["portPool"] = json!({"from": 32300, "to": 32399, "blockSize": 10});
    api.create(&PostParams::default(), &policy("e2e-stall", stall))
        .await
        .unwrap();
    let stalled = eventually(Duration::from_secs(60), "RolloutStalled", || async {
        let s = status(&api, "e2e-stall").await;
        match condition(&s, "RolloutStalled") {
            Some(cnd) if cnd.status == "True" => Ok(s),
            _ => Err(format!("{s:?}")),
        }
    })
    .await;
    let states: Vec<(&str, &str)> = stalled
        .workloads
        .iter()
        .map(|w| (w.namespace.as_str(), w.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [("pol-stall", "Stalled"), ("pol-stall2", "Pending")],
        "the rollout stops: {stalled:?}"
    );
    assert!(!events(&c, "pol-stall", "RolloutStalled").await.is_empty());
    api.delete("e2e-stall", &DeleteParams::default())
        .await
        .unwrap();

    // 6. Deleting the policy reverts every workload, paced, and removes kafka-expose's Services.
    let (stop, sampled) = sampler(&c);
    api.delete("e2e-prod", &DeleteParams::default())
        .await
        .unwrap();
    for ns in PROD {
        eventually(Duration::from_secs(240), "reverted", || async {
            let p = pods(&c, ns).await;
            let left = managed(&c, ns).await;
            let stamped = sts(&c, ns)
                .await
                .labels()
                .contains_key("kafka-expose.io/policy");
            if p.len() == 3 && p.iter().all(|p| !is_mutated(p)) && left.is_empty() && !stamped {
                Ok(())
            } else {
                Err(format!(
                    "{ns}: {} mutated, {} Services",
                    p.iter().filter(|p| is_mutated(p)).count(),
                    left.len()
                ))
            }
        })
        .await;
    }
    eventually(Duration::from_secs(60), "the policies gone", || async {
        let left = api.list(&ListParams::default()).await.unwrap().items;
        let ours: Vec<String> = left
            .iter()
            .map(|p| p.name_any())
            .filter(|n| n.starts_with("e2e-"))
            .collect();
        if ours.is_empty() {
            Ok(())
        } else {
            Err(format!("{ours:?}"))
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        sampled.await.unwrap(),
        1,
        "the revert, one workload at a time"
    );

    for k in kubelets {
        k.abort();
    }
    heartbeat.abort();
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(c.clone());
    let _ = hooks
        .delete(&format!("kafka-expose-{tag}"), &Default::default())
        .await;
    drop(wh);
}
