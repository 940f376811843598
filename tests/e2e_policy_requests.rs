//! What the policy controller asks of the API server, counted on the client as each request
//! leaves (`kafka_expose_api_requests_total`): three policies over a namespace of workloads,
//! until every rollout is done, then idle.
//!
//! An idle pass must make no request: the policies, namespaces, workloads and NodePorts come from
//! watches, a workload is read again only when its resourceVersion moved, and a status is written
//! only when it changed. The whole leader is counted (reconciler, policy controller, node
//! fallback), so a periodic request anywhere fails this.
//!
//! Sized for the test run (12 workloads, 10 idle passes); `benches/requests.sh` runs it with
//! 50 workloads and 60 idle passes and prints the figures BENCHMARKS.md reports. Policies are
//! cluster-scoped, so this suite is a binary of its own.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use kafka_expose::api::{KafkaExposePolicy, WorkloadState};
use kafka_expose::cluster::{requests, runtime};
use kafka_expose::config::Settings;
use kafka_expose::metrics::{Metrics, Readiness};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::cluster::{client, env, eventually, fake_kubelet_on, namespace, node_heartbeat};
use support::serve::{apply_crd, remove_policy};

const NS: &str = "e2e-requests";
const NODE: &str = "e2e-requests-node";

fn sized(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The workload groups, by the `tier` label each policy selects.
fn tier(i: u32) -> &'static str {
    ["enforce", "audit", "other", "none"][(i % 4) as usize]
}

fn workload(i: u32) -> StatefulSet {
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    let name = format!("kafka-{i:02}");
    sts["metadata"]["name"] = json!(name);
    sts["metadata"]["namespace"] = json!(NS);
    sts["metadata"]["labels"] = json!({"app": name, "tier": tier(i)});
    sts["spec"]["replicas"] = json!(1);
    sts["spec"]["selector"] = json!({"matchLabels": {"app": name}});
    sts["spec"]["template"]["metadata"]["labels"] = json!({"app": name});
    serde_json::from_value(sts).unwrap()
}

fn policy(name: &str, mode: &str, tier: &str, pool: u16, extra: Value) -> KafkaExposePolicy {
    let mut exposure = json!({"expose": "nodeport",
        "portPool": {"from": pool, "to": pool + 99, "blockSize": 2}});
    if let (Some(e), Some(x)) = (exposure.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "kafka-expose.io/v1alpha1", "kind": "KafkaExposePolicy",
        "metadata": {"name": name},
        "spec": {"mode": mode,
                 "match": {"namespaceSelector": {"matchLabels": {"e2e-requests": "yes"}},
                           "selector": {"matchLabels": {"tier": tier}}},
                 "exposure": exposure,
                 "rollout": {"maxConcurrent": 4}}
    }))
    .unwrap()
}

/// A client whose requests are counted in `metrics` under `component`, as `serve`'s are.
async fn counted(metrics: &Metrics, component: &'static str) -> Client {
    let kc = Kubeconfig::read_from(&env()["KUBECONFIG"]).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    requests::counted_client(cfg, metrics.api_requests.clone(), component).unwrap()
}

type Counts = BTreeMap<(String, String, String), u64>;

/// `after - before`, without watches (a watch is one long request, not a poll).
fn made(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .filter(|((_, verb, _), _)| verb != "watch")
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn table(c: &Counts) -> String {
    if c.is_empty() {
        return "  (none)".into();
    }
    c.iter()
        .map(|((component, verb, resource), n)| {
            format!("  {component:<9} {verb:<7} {resource:<27} {n}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn an_idle_policy_pass_makes_no_request_and_a_rollout_step_costs_a_few() {
    let workloads = sized("KAFKA_EXPOSE_REQUESTS_WORKLOADS", 12);
    let idle_passes = u64::from(sized("KAFKA_EXPOSE_REQUESTS_IDLE_PASSES", 10));
    let c = client().await;
    namespace(&c, NS).await;
    Api::<Namespace>::all(c.clone())
        .patch(
            NS,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e-requests": "yes"}}})),
        )
        .await
        .unwrap();
    let heartbeat = node_heartbeat(c.clone(), NODE);
    let kubelet = fake_kubelet_on(c.clone(), NS, NODE, |_| "192.0.2.30".to_string());
    let policies = apply_crd(&c).await;
    let sts_api: Api<StatefulSet> = Api::namespaced(c.clone(), NS);
    for i in 0..workloads {
        sts_api
            .create(&PostParams::default(), &workload(i))
            .await
            .unwrap();
    }
    let all = [
        policy("e2e-req-enforce", "Enforce", "enforce", 31700, json!({})),
        policy(
            "e2e-req-audit",
            "Audit",
            "audit",
            31800,
            json!({"advertisedHost": "host-ip"}),
        ),
        policy("e2e-req-other", "Enforce", "other", 31900, json!({})),
    ];
    for p in &all {
        remove_policy(&policies, &p.name_any()).await;
        policies.create(&PostParams::default(), p).await.unwrap();
    }

    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    readiness.set_listening();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let began = Instant::now();
    let start = metrics.api_requests_so_far();
    let spawned = runtime::spawn(
        counted(&metrics, "serve").await,
        Arc::new(Settings::default()),
        metrics.clone(),
        readiness,
        runtime::Options {
            namespace: Some(NS.into()),
            lb_pending_warning: Duration::from_secs(300),
            periods: runtime::Periods {
                policy_active: Duration::from_secs(1),
                policy_idle: Duration::from_secs(1),
                ..runtime::Periods::default()
            },
            policy_client: Some(counted(&metrics, "policies").await),
            registrar: None,
        },
        None,
        async move {
            let _ = rx.await;
        },
    );

    // Every rollout done: each Enforce policy's workloads up to date with a published
    // bootstrap, and the Audit policy's previews written.
    let per_tier = |t: &str| (0..workloads).filter(|i| tier(*i) == t).count();
    let rolled = per_tier("enforce") + per_tier("other");
    let limit = Duration::from_secs(60 + 6 * u64::from(workloads));
    eventually(limit, "every rollout done", || async {
        for (p, t, want) in [
            ("e2e-req-enforce", "enforce", WorkloadState::UpToDate),
            ("e2e-req-other", "other", WorkloadState::UpToDate),
            ("e2e-req-audit", "audit", WorkloadState::Matched),
        ] {
            let s = policies
                .get(p)
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let ok = s.workloads.iter().filter(|w| w.state == want).count();
            if ok != per_tier(t) || s.workloads.len() != per_tier(t) {
                return Err(format!("{p}: {ok} of {} {want}", per_tier(t)));
            }
        }
        for i in (0..workloads).filter(|i| matches!(tier(*i), "enforce" | "other")) {
            let s = sts_api
                .get(&format!("kafka-{i:02}"))
                .await
                .map_err(|e| e.to_string())?;
            if !s
                .annotations()
                .contains_key("kafka-expose.io/bootstrap-servers")
            {
                return Err(format!("kafka-{i:02} has no bootstrap yet"));
            }
        }
        Ok(())
    })
    .await;
    // And every StatefulSet settled (its controller's last status write done), so that the
    // idle window below starts on a cluster where nothing changes.
    let settled = || async {
        let list = sts_api
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        for s in &list.items {
            let want = s.spec.replicas.unwrap_or(1);
            let st = s.status.clone().unwrap_or_default();
            let done = st.observed_generation == s.metadata.generation
                && st.ready_replicas.unwrap_or(0) == want
                && st.updated_replicas.unwrap_or(0) == want
                && st.current_revision == st.update_revision;
            if !done {
                return Err(format!("{} is not settled: {st:?}", s.name_any()));
            }
            // And its reconciler done: an exposed workload says ok, with its bootstrap.
            let exposed = s
                .labels()
                .get("tier")
                .is_some_and(|t| matches!(t.as_str(), "enforce" | "other"));
            let a = s.annotations();
            if exposed
                && (a.get("kafka-expose.io/status").map(String::as_str) != Some("ok")
                    || !a.contains_key("kafka-expose.io/bootstrap-servers"))
            {
                return Err(format!(
                    "{} is not reconciled: status {:?}",
                    s.name_any(),
                    a.get("kafka-expose.io/status")
                ));
            }
        }
        Ok(list
            .items
            .iter()
            .map(|s| (s.name_any(), s.resource_version().unwrap_or_default()))
            .collect::<BTreeMap<_, _>>())
    };
    eventually(limit, "every StatefulSet settled", settled).await;
    let converged = metrics.api_requests_so_far();
    let rollout = made(&start, &converged);
    let took = began.elapsed();

    // The controller has seen that last state: two whole passes after it (the one under way
    // when counted may have read the cluster before).
    let caught_up = metrics.policy_passes.get() + 2;
    eventually(
        Duration::from_secs(30),
        "two passes over the settled state",
        || async {
            let n = metrics.policy_passes.get();
            if n > caught_up {
                Ok(())
            } else {
                Err(format!("{n} of {caught_up} passes"))
            }
        },
    )
    .await;
    let statuses = || async {
        let mut out = BTreeMap::new();
        for p in &all {
            let got = policies.get(&p.name_any()).await.unwrap();
            out.insert(
                p.name_any(),
                serde_json::to_string(&got.status).unwrap_or_default(),
            );
        }
        out
    };
    let statuses_before = statuses().await;
    // The idle window starts here: what the catch-up passes wrote (a finished rollout's mark,
    // the reconciler's last status) is theirs.
    let versions = eventually(
        Duration::from_secs(30),
        "every StatefulSet settled",
        settled,
    )
    .await;

    // Idle: no workload, Service, pod or policy changes. Counted over passes, not seconds.
    let passes = metrics.policy_passes.get();
    let idle_from = metrics.api_requests_so_far();
    let idle_began = Instant::now();
    eventually(
        Duration::from_secs(30 + 3 * idle_passes),
        "idle passes",
        || async {
            let n = metrics.policy_passes.get() - passes;
            if n >= idle_passes {
                Ok(())
            } else {
                Err(format!("{n} of {idle_passes} passes"))
            }
        },
    )
    .await;
    let idle = made(&idle_from, &metrics.api_requests_so_far());
    let after = settled().await;
    if after.as_ref() != Ok(&versions) {
        // Who wrote: each changed StatefulSet's field managers, with their times and fields.
        let mut writers = Vec::new();
        for (name, was) in &versions {
            let Ok(s) = sts_api.get(name).await else {
                continue;
            };
            if s.resource_version().as_deref() == Some(was.as_str()) {
                continue;
            }
            for m in s.managed_fields() {
                writers.push(format!(
                    "{name} (was {was}, now {}): {} {} at {:?}: {}",
                    s.resource_version().unwrap_or_default(),
                    m.manager.as_deref().unwrap_or("?"),
                    m.operation.as_deref().unwrap_or("?"),
                    m.time.as_ref().map(|t| t.0.to_string()),
                    m.fields_v1
                        .as_ref()
                        .map(|f| f.0.to_string())
                        .unwrap_or_default()
                ));
            }
        }
        panic!(
            "a workload changed during the idle window (else it is read again, rightly): \
             {after:?} != {versions:?}\nits writers:\n{}\nthe leader's requests meanwhile:\n{}",
            writers.join("\n"),
            table(&idle)
        );
    }
    let of = |component: &str| -> Counts {
        rollout
            .iter()
            .filter(|((c, _, _), _)| c == component)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    };
    let (by_policies, others) = (of("policies"), of("serve"));
    let sum = |c: &Counts| c.values().sum::<u64>();
    println!(
        "policy requests: {workloads} workloads, 3 policies, {rolled} rolled in {:.1}s\n\
         the policy controller, from start until every rollout is done ({} requests, {:.1} per rolled workload):\n{}\n\
         the rest of the leader (reconciler, node fallback) meanwhile ({} requests):\n{}\n\
         idle, {idle_passes} passes in {:.1}s:\n{}",
        took.as_secs_f64(),
        sum(&by_policies),
        sum(&by_policies) as f64 / rolled.max(1) as f64,
        table(&by_policies),
        sum(&others),
        table(&others),
        idle_began.elapsed().as_secs_f64(),
        table(&idle)
    );
    let statuses_after = statuses().await;
    let changed: Vec<String> = statuses_after
        .iter()
        .filter(|(name, st)| statuses_before.get(*name) != Some(*st))
        .map(|(name, st)| format!("{name}: {} -> {st}", statuses_before[name]))
        .collect();
    assert!(
        idle.is_empty(),
        "an idle leader makes no request but watches:\n{}\nstatuses changed: {changed:#?}",
        table(&idle)
    );
    let lists: u64 = by_policies
        .iter()
        .filter(|((_, verb, resource), _)| {
            verb == "list" && matches!(resource.as_str(), "statefulsets" | "deployments")
        })
        .map(|(_, n)| n)
        .sum();
    assert!(
        lists <= 2,
        "the policy controller lists the workloads once, for their watches:\n{}",
        table(&by_policies)
    );

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), spawned.task).await;
    for p in &all {
        remove_policy(&policies, &p.name_any()).await;
    }
    kubelet.abort();
    heartbeat.abort();
}
