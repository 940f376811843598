//! `expose=shared-loadbalancer` on the real control plane: one LoadBalancer Service for every
//! broker, a port per broker, and the real controller-manager's Endpoints and EndpointSlices
//! routing each port to exactly one broker.
//!
//! `kafka-expose serve` runs as a process with the install's RBAC, registered with the API server,
//! so the StatefulSet controller's pods are mutated by the real Pod webhook. The stand-in kubelet
//! gives each pod its own pod IP (`support::cluster::pod_ip`). The suite runs alone in its binary:
//! a LoadBalancer Service takes NodePorts at random on 1.20, which could land on another suite's
//! fixed ones.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

use support::cluster::{client, env, eventually, fake_kubelet_with, pod_ip, wait_status};
use support::kafka::{self, Behaviour};
use support::serve::{Webhook, apply_fixture, pods_of};
use support::{Image, effective_config, listeners, node_ip};

const CHART: &str = "bitnami-32.4.4.yaml";
const STS: &str = "my-kafka-controller";
const SHARED: &str = "my-kafka-controller-external";
const BASE: u32 = 9100;
/// The address the test gives the load balancer, as a cloud controller would: loopback, where
/// stand-in brokers answer `kafka-expose check` on each broker's port.
const INGRESS: &str = "127.0.0.1";

fn ordinal_of(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Port name → the IPs it routes to, as the Endpoints object holds them (ready addresses).
async fn endpoints_routes(c: &Client, ns: &str) -> BTreeMap<String, BTreeSet<String>> {
    let api: Api<Endpoints> = Api::namespaced(c.clone(), ns);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Ok(Some(ep)) = api.get_opt(SHARED).await else {
        return out;
    };
    for subset in ep.subsets.unwrap_or_default() {
        let ips: Vec<String> = subset
            .addresses
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.ip)
            .collect();
        for p in subset.ports.unwrap_or_default() {
            out.entry(p.name.unwrap_or_default())
                .or_default()
                .extend(ips.iter().cloned());
        }
    }
    out
}

/// Port name → the IPs it routes to, across the Service's EndpointSlices (discovery.k8s.io
/// v1beta1 on 1.20; ready endpoints).
async fn slice_routes(c: &Client, ns: &str) -> BTreeMap<String, BTreeSet<String>> {
    let gvk = GroupVersionKind::gvk("discovery.k8s.io", "v1beta1", "EndpointSlice");
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), ns, &ApiResource::from_gvk(&gvk));
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={SHARED}"));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Ok(list) = api.list(&params).await else {
        return out;
    };
    for slice in list.items {
        let ips: Vec<String> = slice.data["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["conditions"]["ready"] != json!(false))
            .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        for p in slice.data["ports"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            out.entry(name).or_default().extend(ips.iter().cloned());
        }
    }
    out
}

/// What the Endpoints and the EndpointSlices must both hold for brokers `0..n`: port
/// `broker-i` routing to pod `i`'s IP alone.
fn wanted(n: u32) -> BTreeMap<String, BTreeSet<String>> {
    (0..n)
        .map(|i| {
            (
                format!("broker-{i}"),
                BTreeSet::from([pod_ip(&format!("{STS}-{i}"))]),
            )
        })
        .collect()
}

/// Waits until the shared Service has exactly the ports of brokers `0..n`, and both the
/// Endpoints and the EndpointSlices route each to its own broker alone.
async fn wait_routed(c: &Client, ns: &str, n: u32) -> Service {
    let svcs: Api<Service> = Api::namespaced(c.clone(), ns);
    eventually(
        Duration::from_secs(120),
        &format!("{n} ports, each routed to its own broker"),
        || async {
            let svc = svcs.get(SHARED).await.map_err(|e| e.to_string())?;
            let ports: Vec<(String, i32, String)> = svc
                .spec
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .map(|p| {
                    let target = match &p.target_port {
                        Some(
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s),
                        ) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (p.name.clone().unwrap_or_default(), p.port, target)
                })
                .collect();
            let want_ports: Vec<(String, i32, String)> = (0..n)
                .map(|i| (format!("broker-{i}"), (BASE + i) as i32, format!("kx-b{i}")))
                .collect();
            let (ep, slices) = (endpoints_routes(c, ns).await, slice_routes(c, ns).await);
            if ports == want_ports && ep == wanted(n) && slices == wanted(n) {
                Ok(svc)
            } else {
                Err(format!(
                    "ports {ports:?}\nEndpoints {ep:?}\nEndpointSlices {slices:?}"
                ))
            }
        },
    )
    .await
}

async fn running_brokers(c: &Client, ns: &str, sts: &str, n: usize) -> Vec<Pod> {
    eventually(
        Duration::from_secs(120),
        &format!("{n} running brokers"),
        || async {
            let pods = pods_of(c, ns, sts).await;
            let running = pods
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
                .count();
            if pods.len() == n && running == n {
                Ok(pods)
            } else {
                Err(format!("{} pods, {running} running", pods.len()))
            }
        },
    )
    .await
}

async fn scale(c: &Client, ns: &str, replicas: i32) -> Result<(), String> {
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .patch(
            STS,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Scales as `kubectl scale` does: through the scale subresource, which no workload webhook sees.
async fn kubectl_scale(sts: &Api<StatefulSet>, replicas: i32) {
    sts.patch_scale(
        STS,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .unwrap();
}

async fn bootstrap(c: &Client, ns: &str) -> Option<String> {
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get(STS)
        .await
        .ok()?
        .annotations()
        .get("kafka-expose.io/bootstrap-servers")
        .cloned()
}

/// Waits until the workload publishes every broker's port of `0..n` on the shared address.
async fn wait_bootstrap(c: &Client, ns: &str, n: u32) {
    let want = (0..n)
        .map(|i| format!("{INGRESS}:{}", BASE + i))
        .collect::<Vec<_>>()
        .join(",");
    eventually(
        Duration::from_secs(60),
        &format!("the bootstrap of {n}"),
        || async {
            match bootstrap(c, ns).await {
                Some(b) if b == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

/// Stops the server and deletes the namespace's workloads and Services. LoadBalancer Services
/// take NodePorts at random, which a later suite on the same control plane may have pinned (a
/// bootstrap on 31095): none is left holding one. The workloads go too, or a later suite's
/// cluster-wide reconciler would make their Services again, at new random NodePorts (the flake
/// hunt found e2e_webhook's pinned ports taken that way).
/// Deletes every `K` in `ns` (in the background: the garbage collector takes what they own) and
/// waits until none is left.
async fn delete_all<K>(c: &Client, ns: &str, what: &str)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(c.clone(), ns);
    for o in api.list(&ListParams::default()).await.unwrap().items {
        let _ = api
            .delete(&o.name_any(), &kube::api::DeleteParams::background())
            .await;
    }
    eventually(Duration::from_secs(30), &format!("{what} gone"), || async {
        let left = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                left.iter().map(|o| o.name_any()).collect::<Vec<_>>()
            ))
        }
    })
    .await;
}

async fn release_node_ports(c: &Client, ns: &str, mut wh: Webhook) {
    wh.stop();
    delete_all::<StatefulSet>(c, ns, "the workloads").await;
    delete_all::<Service>(c, ns, "the Services").await;
}

async fn webhook(c: &Client, tag: &str, ns: &str) -> Webhook {
    support::serve::installed_webhook(c, tag, ns, &[]).await
}

#[tokio::test]
async fn one_load_balancer_routes_each_port_to_its_own_broker_through_scaling() {
    let c = client().await;
    let ns = "e2e-shared-lb";
    let wh = webhook(&c, "shared", ns).await;
    let kubelet = fake_kubelet_with(c.clone(), ns, |pod| node_ip(ordinal_of(pod)));
    let annotations = json!({
        "kafka-expose.io/expose": "shared-loadbalancer",
        "kafka-expose.io/port-base": BASE.to_string(),
    });
    let docs = apply_fixture(&c, ns, CHART, &annotations).await;

    // Until the Service has an address the Pod webhook holds every broker, and the StatefulSet
    // controller says why.
    let svcs: Api<Service> = Api::namespaced(c.clone(), ns);
    eventually(Duration::from_secs(60), "the shared Service", || async {
        svcs.get(SHARED)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), ns);
    let held = eventually(Duration::from_secs(60), "a held broker", || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .filter_map(|e| e.message)
            .find(|m| m.contains(&format!("waits for LoadBalancer Service {ns}/{SHARED}")))
            .ok_or_else(|| "no FailedCreate Event yet".to_string())
    })
    .await;
    assert!(held.contains("to get an address"), "{held}");
    assert!(
        pods_of(&c, ns, STS).await.is_empty(),
        "no broker before the address"
    );

    // A cloud controller would give the Service its address; the test does.
    svcs.patch_status(
        SHARED,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": INGRESS}]}}})),
    )
    .await
    .unwrap();

    let pods = running_brokers(&c, ns, STS, 3).await;
    let svc = wait_routed(&c, ns, 3).await;
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let managed = support::cluster::managed(&c, ns).await;
    assert_eq!(
        support::cluster::names(&managed),
        [SHARED],
        "one Service: no per-broker Services, no bootstrap Service"
    );

    // Each broker advertises the shared address on its own port, as it would really run.
    for pod in &pods {
        let i = ordinal_of(&pod.name_any());
        let pod_json = serde_json::to_value(pod).unwrap();
        let eff = effective_config(&docs, &pod_json, "kafka", i, Image::BitnamiFile);
        let adv = listeners(eff.get("advertised.listeners"));
        let want = (
            "EXTERNAL".to_string(),
            INGRESS.to_string(),
            (BASE + i).to_string(),
        );
        assert!(
            adv.contains(&want),
            "{} advertises {want:?}; got {adv:?}",
            pod.name_any()
        );
    }
    wait_bootstrap(&c, ns, 3).await;

    // Scaling up adds ports 3 and 4, routed to pods 3 and 4; the bootstrap follows.
    scale(&c, ns, 5).await.unwrap();
    running_brokers(&c, ns, STS, 5).await;
    wait_routed(&c, ns, 5).await;
    wait_bootstrap(&c, ns, 5).await;

    // Scaling down removes them again.
    scale(&c, ns, 3).await.unwrap();
    running_brokers(&c, ns, STS, 3).await;
    wait_routed(&c, ns, 3).await;

    // `kafka-expose check`, as a user runs it, joins each broker to its port of the one Service
    // and that port's endpoints: the broker's own pod alone.
    let adv = std::sync::Arc::new(std::sync::Mutex::new(
        (0..3)
            .map(|i| (i as i32, INGRESS.to_string(), (BASE + i) as u16))
            .collect::<Vec<_>>(),
    ));
    let mut brokers = Vec::new();
    for i in 0..3 {
        let port = (BASE + i) as u16;
        let listener = tokio::net::TcpListener::bind((INGRESS, port))
            .await
            .unwrap_or_else(|e| panic!("loopback port {port}: {e}"));
        brokers.push(kafka::start_on(
            listener,
            Behaviour::new(i as i32, adv.clone()),
        ));
    }
    let out = tokio::process::Command::new(support::serve::BIN)
        .args(["check", "-n", ns, STS, "-o", "json"])
        .env("KUBECONFIG", env()["KUBECONFIG"].clone())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // The shared Service is the bootstrap's too: every broker ready behind it.
    let boot = &report["targets"][0]["bootstrap"]["service"];
    assert_eq!(boot["name"], SHARED, "{report}");
    assert_eq!(boot["ready_endpoints"], 3, "{report}");
    let rows = report["targets"][0]["brokers"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report}");
    for (i, b) in rows.iter().enumerate() {
        let svc = &b["cluster"]["service"];
        assert_eq!(b["ok"], true, "{b}");
        assert_eq!(b["cluster"]["pod"], format!("{STS}-{i}"));
        assert_eq!(svc["name"], SHARED);
        assert_eq!(svc["port"], BASE as i64 + i as i64);
        assert_eq!(svc["ready_endpoints"], 1, "{b}");
        assert_eq!(svc["not_ready_endpoints"], 0, "{b}");
    }

    // The same, for people.
    let out = tokio::process::Command::new(support::serve::BIN)
        .args(["check", "-n", ns, STS])
        .env("KUBECONFIG", env()["KUBECONFIG"].clone())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("kafka-expose check -n {ns} {STS}\n{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
    for i in 0..3 {
        let row = format!(
            "Service {SHARED} LoadBalancer {INGRESS}:{}, 1 ready endpoint(s), 0 not ready; pod {STS}-{i} (Ready)",
            BASE + i
        );
        assert!(text.contains(&row), "{row}\n{text}");
    }

    // Bad settings are refused where they are applied, with their reasons.
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let local = sts
        .patch(
            STS,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"kafka-expose.io/external-traffic-policy": "Local"}}}),
            ),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        local.contains("health check is per Service, not per port"),
        "{local}"
    );
    sts.patch(
        STS,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"kafka-expose.io/load-balancer-max-ports": "4"}}}),
        ),
    )
    .await
    .unwrap();
    let over = scale(&c, ns, 5).await.unwrap_err();
    assert!(over.contains("5 brokers need 5 ports"), "{over}");
    assert!(over.contains("over its limit of 4"), "{over}");
    assert_eq!(
        sts.get(STS).await.unwrap().spec.replicas,
        Some(3),
        "the refused change is not stored"
    );

    // `kubectl scale` goes through the scale subresource, which no workload webhook sees: the
    // reconciler says so on the workload, and the Service keeps the ports it had.
    kubectl_scale(&sts, 5).await;
    let note = eventually(
        Duration::from_secs(60),
        "the reconciler's refusal",
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("InvalidConfiguration"))
                .filter_map(|e| e.message)
                .find(|m| m.contains("over its limit of 4"))
                .ok_or_else(|| "no InvalidConfiguration Event yet".to_string())
        },
    )
    .await;
    assert!(note.contains("5 brokers need 5 ports"), "{note}");
    let ports = svcs.get(SHARED).await.unwrap().spec.unwrap().ports.unwrap();
    assert_eq!(ports.len(), 3, "the Service keeps the ports it had");
    wait_status(&c, ns, STS, Duration::from_secs(30), |s| {
        s == "invalid-configuration"
    })
    .await;
    kubectl_scale(&sts, 3).await;

    kubelet.abort();
    let log = wh.log();
    assert!(!log.contains("panicked"), "{log}");
    release_node_ports(&c, ns, wh).await;
}

/// The names of the managed Services of `ns`.
async fn managed_names(c: &Client, ns: &str) -> Vec<String> {
    support::cluster::names(&support::cluster::managed(c, ns).await)
}

/// Waits until the managed Services of `ns` are exactly `want`, by name.
async fn wait_managed<S: AsRef<str>>(c: &Client, ns: &str, want: &[S]) {
    let want: Vec<String> = want.iter().map(|s| s.as_ref().to_string()).collect();
    eventually(
        Duration::from_secs(60),
        &format!("the managed Services {want:?}"),
        || async {
            let names = managed_names(c, ns).await;
            if names == want {
                Ok(())
            } else {
                Err(format!("{names:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn switching_from_a_load_balancer_per_broker_keeps_the_old_ones_until_every_broker_has_rolled()
 {
    let c = client().await;
    let ns = "e2e-shared-switch";
    let wh = webhook(&c, "switch", ns).await;
    let kubelet = fake_kubelet_with(c.clone(), ns, |pod| node_ip(ordinal_of(pod)));
    let per_broker = json!({
        "kafka-expose.io/expose": "loadbalancer",
        "kafka-expose.io/advertised-host": "template:kafka-{ordinal}.example.com",
    });
    apply_fixture(&c, ns, "apache-kafka-kraft.yaml", &per_broker).await;
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    // Brokers roll when their pods are deleted, so the test decides when each one has rolled.
    sts.patch(
        "kafka",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}),
        ),
    )
    .await
    .unwrap();
    let old = [
        "kafka-0-external",
        "kafka-1-external",
        "kafka-2-external",
        "kafka-external-bootstrap",
    ];
    wait_managed(&c, ns, &old).await;
    running_brokers(&c, ns, "kafka", 3).await;

    sts.patch(
        "kafka",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
            "kafka-expose.io/expose": "shared-loadbalancer",
            "kafka-expose.io/advertised-host": "static:kafka.example.com",
        }}})),
    )
    .await
    .unwrap();
    // The shared Service comes at once; the per-broker ones stay while any broker still
    // advertises one of them.
    let mut both: Vec<String> = old.iter().map(|s| s.to_string()).collect();
    both.insert(3, "kafka-external".into());
    wait_managed(&c, ns, &both).await;
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), ns);
    for i in 0..3 {
        // The reconciler looks again while it keeps Services: once it has, they must still be
        // there.
        more_reconciliations(&wh, 1).await;
        assert_eq!(
            managed_names(&c, ns).await,
            both,
            "the old Services stay while broker {i} and later run the old configuration"
        );
        pod_api
            .delete(&format!("kafka-{i}"), &Default::default())
            .await
            .unwrap();
        eventually(Duration::from_secs(60), "the broker back", || async {
            let p = pod_api
                .get(&format!("kafka-{i}"))
                .await
                .map_err(|e| e.to_string())?;
            let ports: Vec<String> = p
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| p.name.clone())
                .collect();
            if ports.contains(&format!("kx-b{i}")) {
                Ok(())
            } else {
                Err(format!("{ports:?}"))
            }
        })
        .await;
    }
    wait_managed(&c, ns, &["kafka-external"]).await;
    kubelet.abort();
    let log = wh.log();
    assert!(!log.contains("panicked"), "{log}");
    release_node_ports(&c, ns, wh).await;
}

#[tokio::test]
async fn a_shared_service_whose_name_another_workloads_broker_service_holds_is_a_conflict_not_a_takeover()
 {
    let c = client().await;
    let ns = "e2e-shared-names";
    let wh = webhook(&c, "names", ns).await;
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let make = |name: &str, expose: &str| {
        let mut doc = support::statefulset("apache-kafka-kraft.yaml");
        doc["metadata"]["name"] = json!(name);
        doc["metadata"]["namespace"] = json!(ns);
        doc["metadata"]["annotations"] = json!({"kafka-expose.io/expose": expose});
        doc["spec"]["replicas"] = json!(1);
        serde_json::from_value::<StatefulSet>(doc).unwrap()
    };
    // Workload kafka's broker 0 gets kafka-0-external ...
    sts.create(&Default::default(), &make("kafka", "loadbalancer"))
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "kafka-0-external", || async {
        let names = managed_names(&c, ns).await;
        if names.contains(&"kafka-0-external".to_string()) {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    // ... which is the shared Service's name of a workload named kafka-0.
    sts.create(&Default::default(), &make("kafka-0", "shared-loadbalancer"))
        .await
        .unwrap();
    let status = wait_status(&c, ns, "kafka-0", Duration::from_secs(60), |s| {
        s.starts_with("error:")
    })
    .await;
    assert!(
        status.contains("made by kafka-expose for workload kafka"),
        "{status}"
    );
    let svc: Service = Api::namespaced(c.clone(), ns)
        .get("kafka-0-external")
        .await
        .unwrap();
    assert_eq!(
        svc.labels()
            .get("kafka-expose.io/workload")
            .map(String::as_str),
        Some("kafka"),
        "left to the workload that made it"
    );
    assert_eq!(
        svc.spec
            .unwrap()
            .selector
            .unwrap()
            .get("statefulset.kubernetes.io/pod-name"),
        Some(&"kafka-0".to_string())
    );
    release_node_ports(&c, ns, wh).await;
}

/// Waits until the server has started `n` more reconciliations than now, and one more, so that
/// a reconciliation under way when counted has finished.
async fn more_reconciliations(wh: &Webhook, n: u64) {
    let want = wh.counter("kafka_expose_reconciliations_total") + n + 1;
    eventually(Duration::from_secs(60), "more reconciliations", || async {
        let now = wh.counter("kafka_expose_reconciliations_total");
        if now >= want {
            Ok(())
        } else {
            Err(format!("{now} of {want} reconciliations"))
        }
    })
    .await;
}

/// `kafka-expose check -o json -n ns name` with cluster credentials: its exit code and report.
async fn check_report(ns: &str, name: &str) -> (Option<i32>, serde_json::Value) {
    let out = tokio::process::Command::new(support::serve::BIN)
        .args(["check", "-n", ns, name, "-o", "json"])
        .env("KUBECONFIG", env()["KUBECONFIG"].clone())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (out.status.code(), report)
}

/// Issue 28 with a LoadBalancer per broker, as a user meets it: a new ingress address on one
/// broker's Service (a cloud's load balancer re-created). The load balancers' addresses are
/// loopback ones, where stand-in brokers answer `kafka-expose check` as the pods advertise.
/// - with `on-address-change: warn`, `check` fails that broker, naming what it advertises and
///   the new address, and nothing restarts;
/// - with `restart`, that broker alone is evicted and comes back advertising the new address;
///   the others keep running, and `check` passes.
#[tokio::test]
async fn a_new_ingress_address_on_one_brokers_load_balancer_restarts_that_broker() {
    let c = client().await;
    let ns = "e2e-lb-restart";
    let wh =
        support::serve::installed_webhook(&c, "lb-restart", ns, &["--restart-settle", "2s"]).await;
    let kubelet = fake_kubelet_with(c.clone(), ns, |pod| node_ip(ordinal_of(pod)));
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "loadbalancer",
                "kafka-expose.io/advertised-host": "loadbalancer",
                "kafka-expose.io/on-address-change": "warn"}),
    )
    .await;
    let services = [
        "kafka-0-external",
        "kafka-1-external",
        "kafka-2-external",
        "kafka-external-bootstrap",
    ];
    wait_managed(&c, ns, &services).await;
    // A cloud controller would set the ingress; the test does.
    let svc_api: Api<Service> = Api::namespaced(c.clone(), ns);
    let set_ingress = |name: &'static str, ip: &'static str| {
        let api = svc_api.clone();
        async move {
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
            )
            .await
            .unwrap();
        }
    };
    let ips = ["127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.20"];
    for (name, ip) in services.iter().zip(ips) {
        set_ingress(name, ip).await;
    }
    let before = running_brokers(&c, ns, "kafka", 3).await;
    for p in &before {
        let i = ordinal_of(&p.name_any());
        assert_eq!(
            p.annotations()
                .get("kafka-expose.io/advertised")
                .map(String::as_str),
            Some(format!("127.0.0.1{i}:9094").as_str()),
            "admission records the load balancer's address"
        );
    }
    wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| s == "ok").await;

    // Stand-in brokers where the load balancers are, advertising what the pods advertise.
    let adv = std::sync::Arc::new(std::sync::Mutex::new(
        (0..3)
            .map(|i| (i, format!("127.0.0.1{i}"), 9094u16))
            .collect::<Vec<_>>(),
    ));
    let mut stand_ins = Vec::new();
    let listen = |ip: String,
                  id: i32,
                  adv: std::sync::Arc<std::sync::Mutex<Vec<kafka::Advertised>>>| async move {
        let l = tokio::net::TcpListener::bind((ip.as_str(), 9094))
            .await
            .unwrap_or_else(|e| panic!("{ip}:9094: {e}"));
        kafka::start_on(l, Behaviour::new(id, adv))
    };
    for i in 0..3 {
        stand_ins.push(listen(format!("127.0.0.1{i}"), i, adv.clone()).await);
    }
    stand_ins.push(listen("127.0.0.20".into(), 0, adv.clone()).await);
    let (code, report) = check_report(ns, "kafka").await;
    assert_eq!(code, Some(0), "every broker answers as itself: {report}");

    // Broker 1's load balancer gets a new address: check names the stale broker, warn restarts
    // nothing.
    set_ingress("kafka-1-external", "127.0.0.99").await;
    let status = wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| {
        s.starts_with("restart: stale kafka-1")
    })
    .await;
    let want = "advertises 127.0.0.11:9094; the ingress of its LoadBalancer Service kafka-1-external is now 127.0.0.99";
    assert!(status.contains(want), "{status}");
    let (code, report) = check_report(ns, "kafka").await;
    assert_eq!(code, Some(1), "{report}");
    let rows = report["targets"][0]["brokers"].as_array().unwrap();
    let stale: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|b| b["diagnosis"]["kind"] == "stale-address")
        .collect();
    assert_eq!(stale.len(), 1, "{report}");
    assert_eq!(stale[0]["cluster"]["pod"], "kafka-1", "{report}");
    let message = stale[0]["diagnosis"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("broker pod kafka-1 {want}")),
        "{message}"
    );
    assert_eq!(
        pods_of(&c, ns, "kafka").await[1].uid(),
        before[1].uid(),
        "warn restarts nothing"
    );

    // restart: broker 1 alone is evicted, and comes back advertising the new address.
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .patch(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kafka-expose.io/on-address-change": "restart"}}})),
        )
        .await
        .unwrap();
    let pod_api: Api<Pod> = Api::namespaced(c.clone(), ns);
    let back = eventually(
        Duration::from_secs(90),
        "broker 1 back on its new address",
        || async {
            let p = pod_api.get("kafka-1").await.map_err(|e| e.to_string())?;
            let adv = p.annotations().get("kafka-expose.io/advertised").cloned();
            let running = p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some();
            if adv.as_deref() == Some("127.0.0.99:9094") && running {
                Ok(p)
            } else {
                Err(format!("{adv:?}, running {running}"))
            }
        },
    )
    .await;
    assert_ne!(back.uid(), before[1].uid(), "broker 1 was restarted");
    let note = support::cluster::wait_event(&c, ns, "BrokerRestarted", "kafka-1").await;
    assert!(note.contains(want), "{note}");
    wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| s == "ok").await;
    let after = pods_of(&c, ns, "kafka").await;
    for i in [0, 2] {
        assert_eq!(after[i].uid(), before[i].uid(), "broker {i} kept running");
    }
    // The restarted broker advertises its new address, where it answers: check passes.
    adv.lock().unwrap()[1].1 = "127.0.0.99".into();
    stand_ins.push(listen("127.0.0.99".into(), 1, adv.clone()).await);
    let (code, report) = check_report(ns, "kafka").await;
    assert_eq!(code, Some(0), "clean after the restart: {report}");
    drop(stand_ins);
    kubelet.abort();
    let log = wh.log();
    assert!(!log.contains("panicked"), "{log}");
    release_node_ports(&c, ns, wh).await;
}
