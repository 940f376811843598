//! The webhook registered in a real kube-apiserver, mutating the pods a real StatefulSet
//! controller creates.
//!
//! `kafka-expose serve` runs as a process on loopback with its own certificate, under the
//! ServiceAccount and ClusterRole of `deploy/manifests` (a token bound to the ServiceAccount). It
//! is registered through the MutatingWebhookConfiguration of `deploy/manifests/webhook.yaml`,
//! with `clientConfig.url` pointing at it, the CA as `caBundle`, and a namespace label added to
//! its selectors so that each test sees only its own namespaces.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kafka_expose::certs;
use kafka_expose::cluster::caches;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::cluster::{
    ca_secret, client, env, eventually, fake_kubelet_gated, fake_kubelet_on, fake_kubelet_with,
    managed, node_with_addresses, wait_event, wait_event_within, wait_signed, wait_status,
};
use support::serve::{
    TAG, Webhook, apply_fixture, apply_value, deploy_docs, grant_signing, install_rbac, pods_of,
    scratch, tagged_namespace,
};
use support::{Image, effective_config, listeners, node_ip};

/// The labels of a StatefulSet's pod template.
fn template_labels(sts: StatefulSet) -> std::collections::BTreeMap<String, String> {
    sts.spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default()
}

fn ordinal_of(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn kubelet(c: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    fake_kubelet_with(c.clone(), ns, |pod| node_ip(ordinal_of(pod)))
}

fn is_mutated(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers.iter().any(|c| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.name.starts_with("KAFKA_EXPOSE_"))
    }) || spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == "kafka-expose-properties")
        || spec.containers.iter().any(|c| {
            c.ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref() == Some("kx-external"))
        })
}

struct Chart {
    file: &'static str,
    sts: &'static str,
    container: &'static str,
    image: Image,
    listener: &'static str,
    base: u32,
    annotations: Value,
    /// The chart makes the per-broker Services (and advertises the listener) itself.
    chart_services: bool,
}

fn charts() -> Vec<Chart> {
    // Bases 10 apart: brokers at base..base+2, the bootstrap pinned at base+5.
    let np = |base: u32| json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": base.to_string(), "kafka-expose.io/bootstrap-node-port": (base + 5).to_string()});
    vec![
        Chart {
            file: "apache-kafka-kraft.yaml",
            sts: "kafka",
            container: "broker",
            image: Image::Apache,
            listener: "EXTERNAL",
            base: 31000,
            annotations: np(31000),
            chart_services: false,
        },
        Chart {
            file: "bitnami-23.0.7.yaml",
            sts: "my-kafka",
            container: "kafka",
            image: Image::BitnamiEnv,
            listener: "EXTERNAL",
            base: 31010,
            annotations: np(31010),
            chart_services: false,
        },
        Chart {
            file: "bitnami-26.11.4.yaml",
            sts: "my-kafka-controller",
            container: "kafka",
            image: Image::BitnamiFile,
            listener: "EXTERNAL",
            base: 31020,
            annotations: np(31020),
            chart_services: false,
        },
        Chart {
            file: "bitnami-32.4.4.yaml",
            sts: "my-kafka-controller",
            container: "kafka",
            image: Image::BitnamiFile,
            listener: "EXTERNAL",
            base: 31030,
            annotations: np(31030),
            chart_services: false,
        },
        Chart {
            file: "bitnami-32.4.4-split.yaml",
            sts: "my-kafka-broker",
            container: "kafka",
            image: Image::BitnamiFile,
            listener: "EXTERNAL",
            base: 31040,
            annotations: np(31040),
            chart_services: false,
        },
        Chart {
            file: "bitnami-32.4.4-ssl.yaml",
            sts: "my-kafka-controller",
            container: "kafka",
            image: Image::BitnamiFile,
            listener: "EXTERNAL",
            base: 31050,
            annotations: np(31050),
            chart_services: false,
        },
        Chart {
            file: "bitnami-26.11.4-externalaccess.yaml",
            sts: "my-kafka-controller",
            container: "kafka",
            image: Image::BitnamiFile,
            listener: "EXTERNAL",
            base: 31190,
            annotations: json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/bootstrap-node-port": "31195"}),
            chart_services: true,
        },
        Chart {
            file: "cp-helm-charts-cp-kafka.yaml",
            sts: "my-cp-cp-kafka",
            container: "cp-kafka-broker",
            image: Image::Apache,
            listener: "EXTERNAL",
            base: 31090,
            // The chart fixes the brokers' NodePorts; the bootstrap is pinned too, since one the
            // API server picks at random can land on another chart's fixed port in this test.
            annotations: json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/bootstrap-node-port": "31098"}),
            chart_services: false,
        },
        // The chart's own script writes the file and runs kafka-server-start.sh on it: the
        // launch adapter; the oracle runs the real launcher on the stored pods.
        Chart {
            file: "cloudpirates-kafka-0.1.4.yaml",
            sts: "my-kafka",
            container: "kafka",
            image: Image::Launch,
            listener: "EXTERNAL",
            base: 31060,
            annotations: np(31060),
            chart_services: false,
        },
        Chart {
            file: "yolean-kubernetes-kafka.yaml",
            sts: "kafka",
            container: "broker",
            image: Image::Yolean,
            listener: "OUTSIDE",
            base: 32400,
            annotations: json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/adapter": "adopt", "kafka-expose.io/bootstrap-node-port": "32450",
                                "kafka-expose.io/listener-name": "OUTSIDE", "kafka-expose.io/container-port": "9094"}),
            chart_services: false,
        },
    ]
}

/// A server for one test: its reconciler watches `ns`, its webhook configuration selects
/// namespaces tagged `tag`, and `ns` is made and tagged.
async fn webhook_for(c: &Client, tag: &str, ns: &str) -> Webhook {
    let wh = Webhook::start(
        tag,
        PathBuf::from(env()["KUBECONFIG"].clone()),
        scratch(tag),
        Some(ns),
    );
    wh.register(c, tag).await;
    tagged_namespace(c, ns, tag).await;
    wh
}

#[tokio::test]
async fn real_charts_applied_as_a_user_would_get_mutated_brokers_advertising_their_node_ports() {
    let _ports = CP_HELM_NODE_PORTS.lock().await;
    let c = client().await;
    let dir = scratch("charts");
    let kubeconfig = install_rbac(&c, &dir).await;
    let wh = Webhook::start("charts", kubeconfig, dir, None);
    wh.register(&c, "charts").await;
    // Every port this test pins must be free, or a chart fails at random later: name the holder
    // now (a leftover of an earlier suite whose workload a cluster-wide reconciler exposes again).
    let pinned: Vec<i32> = charts()
        .iter()
        .flat_map(|ch| {
            let bootstrap = ch.annotations["kafka-expose.io/bootstrap-node-port"]
                .as_str()
                .and_then(|p| p.parse().ok());
            (0..3).map(|i| (ch.base + i) as i32).chain(bootstrap)
        })
        .collect();
    let held: Vec<String> = Api::<k8s_openapi::api::core::v1::Service>::all(c.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|s| {
            let ports = s.spec.iter().flat_map(|x| x.ports.iter().flatten());
            ports
                .filter_map(|p| p.node_port)
                .filter(|p| pinned.contains(p))
                .map(|p| {
                    format!(
                        "{p} by {}/{}",
                        s.namespace().unwrap_or_default(),
                        s.name_any()
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(held.is_empty(), "the charts' NodePorts are taken: {held:?}");
    let mut kubelets = Vec::new();
    let mut applied = Vec::new();
    for (i, chart) in charts().into_iter().enumerate() {
        let ns = format!("e2e-chart-{i}");
        tagged_namespace(&c, &ns, "charts").await;
        kubelets.push(kubelet(&c, &ns));
        let docs = apply_fixture(&c, &ns, chart.file, &chart.annotations).await;
        applied.push((ns, chart, docs));
    }
    for (ns, chart, docs) in &applied {
        let replicas = docs
            .iter()
            .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == chart.sts)
            .and_then(|d| d["spec"]["replicas"].as_u64())
            .unwrap_or(1) as usize;
        let pods = eventually(
            Duration::from_secs(120),
            &format!("{} brokers of {}", replicas, chart.file),
            || async {
                let pods = pods_of(&c, ns, chart.sts).await;
                let running = pods
                    .iter()
                    .filter(|p| p.status.as_ref().and_then(|s| s.host_ip.as_ref()).is_some())
                    .count();
                if pods.len() == replicas && running == replicas {
                    Ok(pods)
                } else {
                    Err(format!("{} pods, {running} running", pods.len()))
                }
            },
        )
        .await;
        let svcs = eventually(
            Duration::from_secs(60),
            &format!("Services of {}", chart.file),
            || async {
                let s = managed(&c, ns).await;
                let want = if chart.chart_services {
                    1
                } else {
                    replicas + 1
                };
                if s.len() == want {
                    Ok(s)
                } else {
                    Err(format!("{:?}", support::cluster::names(&s)))
                }
            },
        )
        .await;
        for pod in &pods {
            let name = pod.name_any();
            let i = ordinal_of(&name);
            assert!(
                pod.annotations()
                    .contains_key("kafka-expose.io/config-hash"),
                "{}: {name} carries its configuration from the mutated template",
                chart.file
            );
            // Yolean's and Bitnami's externalAccess listeners bind one fixed port: adopting them
            // changes nothing in the pod.
            if chart.image != Image::Yolean && !chart.chart_services {
                assert!(is_mutated(pod), "{}: {name} is stored mutated", chart.file);
            }
            let pod_json = serde_json::to_value(pod).unwrap();
            let eff = effective_config(docs, &pod_json, chart.container, i, chart.image);
            let adv = listeners(eff.get("advertised.listeners"));
            let want = (
                chart.listener.to_string(),
                node_ip(i),
                (chart.base + i).to_string(),
            );
            assert!(
                adv.iter().any(|(n, h, p)| n.eq_ignore_ascii_case(&want.0)
                    && *h == want.1
                    && *p == want.2),
                "{}: {name} advertises {}://{}:{}; got {adv:?}",
                chart.file,
                want.0,
                want.1,
                want.2
            );
            let all: Vec<k8s_openapi::api::core::v1::Service> = Api::namespaced(c.clone(), ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items;
            let svc = svcs
                .iter()
                .find(|s| s.name_any() == format!("{}-{i}-external", chart.sts))
                .or_else(|| {
                    // The chart's own, which kafka-expose leaves to it.
                    all.iter().find(|s| {
                        chart.chart_services
                            && s.spec
                                .as_ref()
                                .and_then(|x| x.selector.as_ref())
                                .and_then(|x| x.get("statefulset.kubernetes.io/pod-name"))
                                == Some(&name)
                            && s.labels()
                                .get("app.kubernetes.io/managed-by")
                                .map(String::as_str)
                                != Some("kafka-expose")
                    })
                })
                .unwrap_or_else(|| panic!("{}: no Service for {name}", chart.file));
            assert_eq!(
                support::cluster::node_port(svc),
                Some((chart.base + i) as i32)
            );
        }
    }
    // The split chart's controller-only StatefulSet is left alone.
    let split = applied
        .iter()
        .find(|(_, c, _)| c.file == "bitnami-32.4.4-split.yaml")
        .unwrap();
    let ctl = eventually(
        Duration::from_secs(60),
        "the split chart's controllers",
        || async {
            let p = pods_of(&c, &split.0, "my-kafka-controller").await;
            if p.len() == 3 {
                Ok(p)
            } else {
                Err(format!("{}", p.len()))
            }
        },
    )
    .await;
    assert!(
        ctl.iter().all(|p| !is_mutated(p)),
        "controllers get no external listener"
    );
    for k in kubelets {
        k.abort();
    }
    // Free 31090-31092 for the cp-helm nodeport chart's own Services.
    let cp = applied
        .iter()
        .find(|(_, c, _)| c.file == "cp-helm-charts-cp-kafka.yaml")
        .unwrap();
    release_cp_helm_node_ports(&c, &cp.0, "my-cp-cp-kafka").await;
}

/// cp-helm-charts puts broker *n* on NodePort 31090 + n, with or without `nodeport.enabled`:
/// the tests applying either chart hold this while their NodePorts are in use.
static CP_HELM_NODE_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Deletes the cp-helm StatefulSet and the Services on 31090-31092 in `ns`, and waits until
/// none is left.
async fn release_cp_helm_node_ports(c: &Client, ns: &str, sts: &str) {
    let _ = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .delete(sts, &kube::api::DeleteParams::background())
        .await;
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(c.clone(), ns);
    eventually(
        Duration::from_secs(60),
        "NodePorts 31090-31092 freed",
        || async {
            let held: Vec<String> = svcs
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|s| {
                    support::cluster::node_port(s).is_some_and(|p| (31090..=31092).contains(&p))
                })
                .map(|s| s.name_any())
                .collect();
            for name in &held {
                let _ = svcs.delete(name, &kube::api::DeleteParams::default()).await;
            }
            if held.is_empty() {
                Ok(())
            } else {
                Err(format!("{held:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_chart_with_its_own_node_port_services_keeps_them_and_gets_a_bootstrap() {
    let _ports = CP_HELM_NODE_PORTS.lock().await;
    let c = client().await;
    let ns = "e2e-cp-nodeport";
    let _wh = webhook_for(&c, "cpnp", ns).await;
    let k = kubelet(&c, ns);
    // The release runs first; then the user annotates it.
    let docs = apply_fixture(&c, ns, "cp-helm-charts-cp-kafka-nodeport.yaml", &json!({})).await;
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(c.clone(), ns);
    let chart_services = |svcs: Api<k8s_openapi::api::core::v1::Service>| async move {
        let mut out = Vec::new();
        for i in 0..3 {
            let m = svcs
                .get(&format!("my-cp-cp-kafka-{i}-nodeport"))
                .await
                .unwrap()
                .metadata;
            let managers: Vec<Option<String>> = m
                .managed_fields
                .iter()
                .flatten()
                .map(|f| f.manager.clone())
                .collect();
            out.push((m.resource_version, managers));
        }
        out
    };
    let before = chart_services(svcs.clone()).await;
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    sts.patch(
        "my-cp-cp-kafka",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"kafka-expose.io/expose": "nodeport", "kafka-expose.io/bootstrap-node-port": "31096"}}})),
    )
    .await
    .unwrap();
    let pods = eventually(Duration::from_secs(180), "3 running brokers", || async {
        let pods = pods_of(&c, ns, "my-cp-cp-kafka").await;
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.host_ip.as_ref()).is_some())
            .count();
        if pods.len() == 3 && running == 3 && pods.iter().all(is_mutated) {
            Ok(pods)
        } else {
            Err(format!("{} pods, {running} running", pods.len()))
        }
    })
    .await;
    let mine = eventually(Duration::from_secs(60), "the bootstrap Service", || async {
        let s = managed(&c, ns).await;
        if s.is_empty() {
            Err("none".to_string())
        } else {
            Ok(s)
        }
    })
    .await;
    assert_eq!(
        support::cluster::names(&mine),
        ["my-cp-cp-kafka-external-bootstrap"],
        "only the bootstrap is kafka-expose's"
    );
    let target = mine[0].spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .target_port
        .clone();
    for pod in &pods {
        let name = pod.name_any();
        let i = ordinal_of(&name);
        let pod_json = serde_json::to_value(pod).unwrap();
        let eff = effective_config(&docs, &pod_json, "cp-kafka-broker", i, Image::Apache);
        let adv = listeners(eff.get("advertised.listeners"));
        let externals: Vec<_> = adv.iter().filter(|(n, _, _)| n == "EXTERNAL").collect();
        assert_eq!(
            externals,
            [&("EXTERNAL".to_string(), node_ip(i), (31090 + i).to_string())],
            "{name}: one EXTERNAL listener, the chart's"
        );
        // The bootstrap's target is a port every broker declares.
        let declared = pod.spec.as_ref().unwrap().containers.iter().any(|ct| {
            ct.ports.iter().flatten().any(|p| {
                Some(
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                        p.name.clone().unwrap_or_default(),
                    ),
                ) == target
            })
        });
        assert!(
            declared,
            "{name} declares the bootstrap's target {target:?}"
        );
        let chart_svc = svcs
            .get(&format!("my-cp-cp-kafka-{i}-nodeport"))
            .await
            .unwrap();
        let managers: Vec<String> = chart_svc
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert!(
            !managers.iter().any(|m| m == "kafka-expose"),
            "{managers:?}: the chart's Service is not taken over"
        );
    }
    assert_eq!(
        chart_services(svcs.clone()).await,
        before,
        "the chart's Services are exactly as they were: same resourceVersion, same managers"
    );
    k.abort();
    release_cp_helm_node_ports(&c, ns, "my-cp-cp-kafka").await;
}

#[tokio::test]
async fn annotating_a_running_release_rolls_it_and_removing_the_annotation_rolls_it_back() {
    let c = client().await;
    let _wh = webhook_for(&c, "roll", "e2e-roll").await;
    let ns = "e2e-roll";
    let k = kubelet(&c, ns);
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["spec"]["replicas"] = json!(1);
    apply_value(&c, &sts).await;
    let pod = eventually(Duration::from_secs(60), "the first broker", || async {
        pods_of(&c, ns, "kafka")
            .await
            .into_iter()
            .next()
            .ok_or_else(|| "none".to_string())
    })
    .await;
    assert!(!is_mutated(&pod), "not exposed yet");
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let before = api
        .get("kafka")
        .await
        .unwrap()
        .status
        .and_then(|s| s.update_revision);
    api.patch("kafka", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31300", "kafka-expose.io/bootstrap-node-port": "31350"}}})))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(90),
        "a mutated broker after the roll",
        || async {
            let pods = pods_of(&c, ns, "kafka").await;
            match pods.first() {
                Some(p) if is_mutated(p) => Ok(()),
                _ => Err("not yet".to_string()),
            }
        },
    )
    .await;
    let after = api
        .get("kafka")
        .await
        .unwrap()
        .status
        .and_then(|s| s.update_revision);
    assert_ne!(before, after, "a new controller revision");
    api.patch("kafka", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"kafka-expose.io/expose": null, "kafka-expose.io/port-base": null, "kafka-expose.io/bootstrap-node-port": null}}})))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(90),
        "an unmutated broker after removal",
        || async {
            let pods = pods_of(&c, ns, "kafka").await;
            match pods.first() {
                Some(p) if !is_mutated(p) => Ok(()),
                _ => Err("still mutated".to_string()),
            }
        },
    )
    .await;
    k.abort();
}

#[tokio::test]
async fn a_server_side_dry_run_is_answered_and_leaves_no_trace() {
    let c = client().await;
    let wh = webhook_for(&c, "dry", "e2e-dry").await;
    let ns = "e2e-dry";
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31400", "kafka-expose.io/bootstrap-node-port": "31450"});
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    // The workload webhook fails open (Ignore): until the API server has picked up the new
    // configuration, or while a loaded machine makes it time out, a dry run comes back
    // unmutated. A dry run leaves nothing, so it is simply sent again.
    let sts: StatefulSet = serde_json::from_value(sts).unwrap();
    eventually(
        Duration::from_secs(30),
        "the webhook answers the dry run",
        || {
            let (api, pp, sts) = (api.clone(), pp.clone(), sts.clone());
            async move {
                let answered = api.create(&pp, &sts).await.map_err(|e| e.to_string())?;
                let labels = template_labels(answered);
                match labels.get("kafka-expose.io/exposed").map(String::as_str) {
                    Some("true") => Ok(()),
                    other => Err(format!("the template's exposed label is {other:?}")),
                }
            }
        },
    )
    .await;
    // A dry run stores nothing, and so nothing can follow from it: no wait is needed.
    assert!(
        api.get_opt("kafka").await.unwrap().is_none(),
        "nothing stored"
    );
    assert!(managed(&c, ns).await.is_empty(), "no Service");
    assert!(
        wh.log().contains("\"dry_run\":true"),
        "the dry run reached the webhook"
    );
}

#[tokio::test]
async fn while_the_webhook_is_down_other_pods_are_created_and_brokers_wait() {
    let c = client().await;
    let mut wh = webhook_for(&c, "down", "e2e-down").await;
    let ns = "e2e-down";
    let k = kubelet(&c, ns);
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["spec"]["replicas"] = json!(1);
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31500", "kafka-expose.io/bootstrap-node-port": "31550"});
    apply_value(&c, &sts).await;
    eventually(Duration::from_secs(60), "the first broker", || async {
        pods_of(&c, ns, "kafka")
            .await
            .into_iter()
            .find(is_mutated)
            .map(|_| ())
            .ok_or_else(|| "none".to_string())
    })
    .await;
    wh.stop();
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &plain)
        .await
        .expect("a pod outside exposed workloads is created");
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .patch(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    // The StatefulSet controller tried broker 1, and the API server refused it: the webhook
    // is down and its failurePolicy is Fail.
    wait_event(&c, ns, "FailedCreate", "kafka-1").await;
    assert_eq!(
        pods_of(&c, ns, "kafka").await.len(),
        1,
        "failurePolicy Fail: broker 1 waits"
    );
    wh.spawn();
    eventually(
        Duration::from_secs(90),
        "broker 1 once the webhook is back",
        || async {
            let p = pods_of(&c, ns, "kafka").await;
            if p.len() == 2 && p.iter().all(is_mutated) {
                Ok(())
            } else {
                Err(format!("{}", p.len()))
            }
        },
    )
    .await;
    k.abort();
}

#[tokio::test]
async fn kube_system_and_the_webhooks_own_namespace_are_never_sent_to_it() {
    let c = client().await;
    let wh = webhook_for(&c, "excluded", "e2e-included").await;
    let nss: Api<Namespace> = Api::all(c.clone());
    for d in deploy_docs("namespace.yaml") {
        apply_value(&c, &d).await;
    }
    // Clusters before 1.21 do not label namespaces with their name: kube-system gets the opt-out
    // label the install documents for them.
    for ns in ["kube-system", "kafka-expose"] {
        nss.patch(ns, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {TAG: "excluded", "kafka-expose.io/webhook": "disabled"}}})))
            .await
            .unwrap();
    }
    for (ns, base) in [("kube-system", 31800), ("kafka-expose", 31810)] {
        let mut sts = support::statefulset("apache-kafka-kraft.yaml");
        sts["metadata"]["namespace"] = json!(ns);
        sts["metadata"]["name"] = json!("excluded-broker");
        sts["spec"]["replicas"] = json!(0);
        sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport",
            "kafka-expose.io/port-base": base.to_string(), "kafka-expose.io/bootstrap-node-port": (base + 5).to_string()});
        apply_value(&c, &sts).await;
        let stored = Api::<StatefulSet>::namespaced(c.clone(), ns)
            .get("excluded-broker")
            .await
            .unwrap();
        let labels = template_labels(stored);
        assert!(
            !labels.contains_key("kafka-expose.io/exposed"),
            "{ns} is not mutated"
        );
    }
    let admissions_in = |ns: &str| {
        wh.log()
            .lines()
            .filter(|l| {
                l.contains("\"message\":\"admission\"")
                    && l.contains(&format!("\"namespace\":\"{ns}\""))
            })
            .count()
    };
    assert_eq!(
        admissions_in("kube-system"),
        0,
        "no review from kube-system reached the server"
    );
    assert_eq!(
        admissions_in("kafka-expose"),
        0,
        "no review from its own namespace reached the server"
    );
    // The same StatefulSet in a tagged namespace does reach it.
    let ns = "e2e-included";
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["metadata"]["name"] = json!("excluded-broker");
    sts["spec"]["replicas"] = json!(0);
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31600", "kafka-expose.io/bootstrap-node-port": "31650"});
    apply_value(&c, &sts).await;
    assert!(
        admissions_in("e2e-included") > 0,
        "the same object elsewhere is reviewed"
    );
}

/// A second mutating webhook that adds one env var to exposed brokers, when it is missing.
async fn second_webhook(dir: &std::path::Path) -> (u16, String, tokio::task::JoinHandle<()>) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let bundle = certs::generate(&["localhost".to_string()]).unwrap();
    let sub = dir.join("second");
    certs::write(&sub, &bundle).unwrap();
    let store =
        kafka_expose::webhook::tls::CertStore::load(&sub.join("tls.crt"), &sub.join("tls.key"))
            .unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(kafka_expose::webhook::tls::server_config(store).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let review: Value = serde_json::from_slice(&body).unwrap();
                        let uid = review["request"]["uid"].clone();
                        let env = &review["request"]["object"]["spec"]["containers"][0]["env"];
                        let present = env
                            .as_array()
                            .is_some_and(|e| e.iter().any(|v| v["name"] == "SECOND_WEBHOOK"));
                        let mut response = json!({"uid": uid, "allowed": true});
                        if !present {
                            let op = if env.is_array() {
                                json!([{"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "SECOND_WEBHOOK", "value": "1"}}])
                            } else {
                                json!([{"op": "add", "path": "/spec/containers/0/env", "value": [{"name": "SECOND_WEBHOOK", "value": "1"}]}])
                            };
                            use base64::Engine as _;
                            response["patchType"] = json!("JSONPatch");
                            response["patch"] = json!(
                                base64::engine::general_purpose::STANDARD.encode(op.to_string())
                            );
                        }
                        let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(out.to_string()),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    (port, bundle.ca_bundle(), task)
}

#[tokio::test]
async fn with_a_second_webhook_and_reinvocation_every_injected_item_appears_once() {
    let c = client().await;
    let wh = webhook_for(&c, "reinvoke", "e2e-reinvoke").await;
    let dir = wh.dir.clone();
    let (port, ca, task) = second_webhook(&dir).await;
    // Sorted after kafka-expose's, so kafka-expose sees the other's change only by reinvocation.
    let second: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-second-reinvoke"},
        "webhooks": [{
            "name": "second.example.com",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/"), "caBundle": ca},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "objectSelector": {"matchLabels": {"kafka-expose.io/exposed": "true"}},
            "namespaceSelector": {"matchLabels": {TAG: "reinvoke"}},
            "sideEffects": "None", "timeoutSeconds": 5, "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded"
        }]
    }))
    .unwrap();
    Api::<MutatingWebhookConfiguration>::all(c.clone())
        .patch(
            "zz-second-reinvoke",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&second),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ns = "e2e-reinvoke";
    let k = kubelet(&c, ns);
    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["spec"]["replicas"] = json!(1);
    sts["metadata"]["annotations"] = json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "31700", "kafka-expose.io/bootstrap-node-port": "31750"});
    apply_value(&c, &sts).await;
    let pod = eventually(Duration::from_secs(60), "the broker", || async {
        pods_of(&c, ns, "kafka")
            .await
            .into_iter()
            .next()
            .ok_or_else(|| "none".to_string())
    })
    .await;
    let broker = &pod.spec.as_ref().unwrap().containers[0];
    let names: Vec<String> = broker
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "no duplicate variable: {names:?}"
    );
    assert!(names.contains(&"SECOND_WEBHOOK".to_string()));
    assert!(names.contains(&"KAFKA_EXPOSE_EXTERNAL_HOST".to_string()));
    let adv = broker
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "KAFKA_ADVERTISED_LISTENERS")
        .unwrap();
    assert_eq!(
        adv.value.as_deref().unwrap().matches("EXTERNAL://").count(),
        1,
        "one listener"
    );
    let ports: Vec<_> = broker
        .ports
        .iter()
        .flatten()
        .filter(|p| p.name.as_deref() == Some("kx-external"))
        .collect();
    assert_eq!(ports.len(), 1, "one port");
    let calls: Vec<String> = wh
        .log()
        .lines()
        .filter(|l| l.contains("\"kind\":\"Pod\"") && l.contains("\"namespace\":\"e2e-reinvoke\""))
        .map(str::to_string)
        .collect();
    assert!(calls.len() >= 2, "kafka-expose was reinvoked: {calls:?}");
    assert!(
        calls.last().unwrap().contains("\"result\":\"allowed\""),
        "and added nothing: {calls:?}"
    );
    Api::<MutatingWebhookConfiguration>::all(c.clone())
        .delete("zz-second-reinvoke", &Default::default())
        .await
        .unwrap();
    task.abort();
    k.abort();
}

/// `kubectl` from the test tools, for what only a user's client shows: admission warnings.
fn kubectl() -> std::process::Command {
    let dir = std::env::var("KAFKA_EXPOSE_TOOLS").unwrap_or_else(|_| {
        panic!("this test needs kubectl: run ./tests/run.sh, or set KAFKA_EXPOSE_TOOLS to `tests/e2e/control-plane.sh tools`")
    });
    let mut cmd = std::process::Command::new(PathBuf::from(dir).join("kubectl"));
    cmd.arg("--kubeconfig").arg(&env()["KUBECONFIG"]);
    cmd
}

#[tokio::test]
async fn a_service_another_owner_holds_is_a_warning_where_the_workload_is_applied_and_stays_as_it_was()
 {
    let c = client().await;
    let ns = "e2e-conflict";
    let _wh = webhook_for(&c, "conflict", ns).await;
    // Someone's Service already holds the name kafka-expose would give broker 0's.
    let theirs = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kafka-0-external", "namespace": ns},
        "spec": {"selector": {"app": "something-else"},
                 "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}
    });
    apply_value(&c, &theirs).await;
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(c.clone(), ns);
    let before = svcs.get("kafka-0-external").await.unwrap().metadata;

    let mut sts = support::statefulset("apache-kafka-kraft.yaml");
    sts["metadata"]["namespace"] = json!(ns);
    sts["spec"]["replicas"] = json!(1);
    sts["metadata"]["annotations"] = json!({
        "kafka-expose.io/expose": "nodeport",
        "kafka-expose.io/port-base": "32100",
        "kafka-expose.io/bootstrap-node-port": "32105",
    });
    let file = scratch("conflict").join("kafka.json");
    std::fs::write(&file, serde_json::to_vec(&sts).unwrap()).unwrap();
    let out = kubectl()
        .args(["apply", "-n", ns, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: kafka-expose: Service kafka-0-external: it exists, made by")
            && stderr.contains("does not take it over"),
        "the user who applies the workload is told: {stderr}"
    );

    // The reconciler makes the bootstrap and leaves the other owner's Service exactly as it was.
    eventually(Duration::from_secs(60), "the bootstrap Service", || async {
        let names = support::cluster::names(&managed(&c, ns).await);
        if names == ["kafka-external-bootstrap"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    let after = svcs.get("kafka-0-external").await.unwrap().metadata;
    assert_eq!(after.resource_version, before.resource_version);
    let managers = |m: &kube::api::ObjectMeta| -> Vec<Option<String>> {
        m.managed_fields
            .iter()
            .flatten()
            .map(|f| f.manager.clone())
            .collect()
    };
    assert_eq!(managers(&after), managers(&before));
}

/// 1.20 has no CEL: the policy webhook of the install's configuration refuses an invalid policy
/// where it is applied, naming the field, and lets a valid one be stored, under the CRD the
/// install ships.
#[tokio::test]
async fn an_invalid_policy_is_refused_where_it_is_applied_naming_the_field() {
    use kafka_expose::api::KafkaExposePolicy;
    let c = client().await;
    let api: Api<KafkaExposePolicy> = support::serve::apply_crd(&c).await;
    let tag = "policy";
    let wh = Webhook::start(
        tag,
        PathBuf::from(env()["KUBECONFIG"].clone()),
        scratch(tag),
        Some("e2e-policy"),
    );
    wh.register_with(&c, tag, true).await;

    let policy = |name: &str, exposure: Value| -> KafkaExposePolicy {
        serde_json::from_value(json!({
            "apiVersion": "kafka-expose.io/v1alpha1", "kind": "KafkaExposePolicy",
            "metadata": {"name": name},
            "spec": {"mode": "Audit", "exposure": exposure}
        }))
        .unwrap()
    };
    let bad = policy(
        "e2e-bad",
        json!({"expose": "nodeport", "advertisedHost": "no such", "portPool": {"from": 31000, "to": 31999, "blockSize": 10}, "portBase": 31000}),
    );
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("an invalid policy is refused");
    let msg = err.to_string();
    assert!(
        msg.contains("spec.exposure.advertisedHost=\"no such\"")
            && msg.contains("cannot be set with spec.exposure.portBase"),
        "{msg}"
    );
    assert!(api.get_opt("e2e-bad").await.unwrap().is_none());

    let good = policy(
        "e2e-good",
        json!({"expose": "nodeport", "portPool": {"from": 31000, "to": 31999, "blockSize": 10}}),
    );
    let stored = api.create(&PostParams::default(), &good).await.unwrap();
    assert_eq!(stored.spec.exposure.port_pool, good.spec.exposure.port_pool);
    api.delete("e2e-good", &Default::default()).await.unwrap();

    // No other test's server answers policy writes: leave none registered.
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(c.clone());
    hooks
        .delete(&format!("kafka-expose-{tag}"), &Default::default())
        .await
        .unwrap();
    drop(wh);
}

/// The pods of `ns` that belong to StatefulSet `sts`, once there are `n`, bound.
async fn bound_pods(c: &Client, ns: &str, sts: &str, n: usize) -> Vec<Pod> {
    eventually(Duration::from_secs(60), "bound broker pods", || async {
        let pods = pods_of(c, ns, sts).await;
        let bound = pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        if pods.len() == n && bound == n {
            Ok(pods)
        } else {
            Err(format!("{} pods, {bound} bound", pods.len()))
        }
    })
    .await
}

fn external_host(p: &Pod) -> Option<String> {
    p.annotations()
        .get("kafka-expose.io/external-host")
        .cloned()
}

/// Whether the reconciler's fallback (field manager `kafka-expose`) wrote the pod's address,
/// rather than the binding that bound it.
fn set_by_fallback(p: &Pod) -> bool {
    p.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some("kafka-expose")
            && m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.to_string().contains("kafka-expose.io/external-host"))
    })
}

/// `advertised-host: node:ExternalDNS,ExternalIP` on a cloud-like node: the binding carries the
/// node's DNS name onto the pod as it is bound, the broker advertises it, and a binding of any
/// other pod is left as it was.
#[tokio::test]
async fn a_broker_is_bound_with_its_nodes_external_address_and_advertises_it() {
    let c = client().await;
    let node = "e2e-addr-node";
    node_with_addresses(
        &c,
        node,
        &[
            ("InternalIP", "10.1.0.7"),
            ("ExternalIP", "203.0.113.7"),
            ("ExternalDNS", "node-7.example.net"),
        ],
    )
    .await;
    let ns = "e2e-addr";
    let _wh = webhook_for(&c, "addr", ns).await;
    let k = fake_kubelet_on(c.clone(), ns, node, |_| "10.1.0.7".into());
    let docs = apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30010",
                "kafka-expose.io/bootstrap-node-port": "30015",
                "kafka-expose.io/advertised-host": "node:ExternalDNS,ExternalIP"}),
    )
    .await;
    let pods = bound_pods(&c, ns, "kafka", 3).await;
    for p in &pods {
        let i = ordinal_of(&p.name_any());
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some(node),
            "{}",
            p.name_any()
        );
        assert_eq!(
            external_host(p).as_deref(),
            Some("node-7.example.net"),
            "{}: stored with the node's DNS name, set in the same update as nodeName",
            p.name_any()
        );
        assert!(
            !set_by_fallback(p),
            "{}: the binding carried it, not the fallback",
            p.name_any()
        );
        let inits = p.spec.as_ref().unwrap().init_containers.clone().unwrap();
        assert_eq!(inits[0].name, "kafka-expose-gate", "the gate runs first");
        let eff = effective_config(
            &docs,
            &serde_json::to_value(p).unwrap(),
            "broker",
            i,
            Image::Apache,
        );
        let adv = listeners(eff.get("advertised.listeners"));
        assert!(
            adv.contains(&(
                "EXTERNAL".to_string(),
                "node-7.example.net".to_string(),
                (30010 + i).to_string()
            )),
            "{}: advertises {adv:?}",
            p.name_any()
        );
    }

    // A pod that is no broker: its binding is allowed as it was.
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &plain)
        .await
        .unwrap();
    let bound = eventually(Duration::from_secs(30), "the plain pod bound", || async {
        let p = Api::<Pod>::namespaced(c.clone(), ns)
            .get("plain")
            .await
            .map_err(|e| e.to_string())?;
        match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            Some(_) => Ok(p),
            None => Err("not bound".into()),
        }
    })
    .await;
    assert_eq!(bound.metadata.annotations, None, "untouched");
    k.abort();
}

/// The bindings webhook on demand, under the install's own RBAC and names (`kafka-expose`, and
/// `kafka-expose-registered` for what the server registers): with brokers that advertise a
/// template name, nothing is registered; once brokers ask for their node's address, the server
/// registers the bindings webhook (copied from its own configuration, which owns it), and the
/// brokers bound after that get the address through their bindings, not the fallback; when the
/// last of them goes, the registration goes too. A configuration of that name that another
/// owner made is left as it is.
#[tokio::test]
async fn the_bindings_webhook_is_registered_only_while_a_broker_uses_node_addresses() {
    let c = client().await;
    let node = "e2e-ondemand-node";
    node_with_addresses(
        &c,
        node,
        &[("InternalIP", "10.3.0.1"), ("ExternalIP", "198.51.100.31")],
    )
    .await;
    let (tag, ns) = ("ondemand", "e2e-ondemand");
    let _wh = support::serve::installed_webhook_as(
        &c,
        tag,
        ns,
        &[
            "--webhook-configuration=kafka-expose",
            "--registered-webhooks=kafka-expose-registered",
            "--bindings-webhook",
        ],
        "kafka-expose",
        &["policies.kafka-expose.io", "bindings.kafka-expose.io"],
    )
    .await;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(c.clone());
    let registered = || async {
        configs
            .get_opt("kafka-expose-registered")
            .await
            .map_err(|e| e.to_string())
    };
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    let gone = |what: &'static str| {
        let (sts, pods) = (sts.clone(), pods.clone());
        async move {
            sts.delete("kafka", &Default::default()).await.unwrap();
            // Unbound pods go at once; bound ones have no kubelet to confirm: forced.
            let _ = pods
                .delete_collection(
                    &kube::api::DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                    &ListParams::default(),
                )
                .await;
            eventually(Duration::from_secs(60), what, || async {
                let left = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                left.items
                    .is_empty()
                    .then_some(())
                    .ok_or_else(|| format!("{} pods left", left.items.len()))
            })
            .await;
        }
    };

    // The apache-kafka-kraft brokers exposed with `advertised-host: host`, once their first pod
    // exists.
    let brokers = |host: &'static str| {
        let c = c.clone();
        async move {
            apply_fixture(
                &c,
                ns,
                "apache-kafka-kraft.yaml",
                &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30040",
                        "kafka-expose.io/bootstrap-node-port": "30045",
                        "kafka-expose.io/advertised-host": host}),
            )
            .await;
            eventually(Duration::from_secs(60), "the brokers' pods", || async {
                let n = pods_of(&c, ns, "kafka").await.len();
                (n > 0).then_some(()).ok_or(format!("{n} pods"))
            })
            .await;
        }
    };

    // Brokers with a template name: no node address wanted, nothing registered. (Negative, so
    // watched over a window: a registration would come within a second of the pods.)
    brokers("template:kafka-{ordinal}.example.com").await;
    for _ in 0..6 {
        assert_eq!(
            registered().await.unwrap(),
            None,
            "no node: user, nothing registered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    gone("the template brokers gone").await;

    // Brokers that want their node's address: registered, owned by the install's configuration,
    // the workload webhook's server and namespaces copied.
    brokers("node:ExternalIP").await;
    let reg = eventually(
        Duration::from_secs(30),
        "the bindings webhook registered",
        || async { registered().await?.ok_or_else(|| "not yet".to_string()) },
    )
    .await;
    let base = configs.get("kafka-expose").await.unwrap();
    let hooks = reg.webhooks.clone().unwrap_or_default();
    assert_eq!(
        hooks.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["bindings.kafka-expose.io"]
    );
    let owner = &reg.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        (
            "MutatingWebhookConfiguration",
            base.metadata.uid.as_deref().unwrap()
        )
    );
    let workloads = &base.webhooks.as_ref().unwrap()[0];
    assert_eq!(hooks[0].client_config, workloads.client_config);
    assert_eq!(hooks[0].namespace_selector, workloads.namespace_selector);
    assert_eq!(hooks[0].failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(
        reg.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("kafka-expose")
    );
    // The API server picks the new configuration up from its informer (as in `register`); then
    // the brokers are bound, and each binding carries its node's address.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let k = fake_kubelet_on(c.clone(), ns, node, |_| "10.3.0.1".into());
    let bound = bound_pods(&c, ns, "kafka", 3).await;
    for p in &bound {
        assert_eq!(
            external_host(p).as_deref(),
            Some("198.51.100.31"),
            "{}",
            p.name_any()
        );
        assert!(
            !set_by_fallback(p),
            "{}: the binding carried it, not the fallback",
            p.name_any()
        );
    }
    k.abort();

    // The last node: broker gone: the registration goes.
    gone("the node brokers gone").await;
    eventually(
        Duration::from_secs(30),
        "the registration removed",
        || async {
            match registered().await? {
                None => Ok(()),
                Some(_) => Err("still registered".to_string()),
            }
        },
    )
    .await;

    // A configuration of that name that kafka-expose did not make (no managed-by label) is
    // never taken over: with node: brokers back, it stays exactly as its owner wrote it.
    let foreign: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "kafka-expose-registered"},
        "webhooks": [{"name": "someone-else.example.com", "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": "https://127.0.0.1:1/none"}, "sideEffects": "None",
            "failurePolicy": "Ignore",
            "rules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"],
                       "operations": ["CREATE"], "resources": ["nothings"]}]}]
    }))
    .unwrap();
    let made = configs
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    brokers("node:ExternalIP").await;
    for _ in 0..6 {
        let now = registered()
            .await
            .unwrap()
            .expect("the foreign configuration");
        assert_eq!(
            now.metadata.resource_version, made.metadata.resource_version,
            "another owner's configuration is left alone: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    gone("the node brokers gone again").await;
    let _ = configs
        .delete("kafka-expose-registered", &Default::default())
        .await;
    let _ = configs.delete("kafka-expose", &Default::default()).await;
}

/// With the binding webhook not registered, the reconciler sets the address on bound brokers
/// within seconds (under the install's own RBAC); a node without the wanted types is reported by
/// an Event naming the node and the types, and the pod never gets an empty host.
#[tokio::test]
async fn without_the_binding_webhook_the_reconciler_fills_the_address_in() {
    let c = client().await;
    node_with_addresses(
        &c,
        "e2e-fallback-public",
        &[("InternalIP", "10.2.0.1"), ("ExternalIP", "198.51.100.21")],
    )
    .await;
    node_with_addresses(&c, "e2e-fallback-private", &[("InternalIP", "10.2.0.2")]).await;
    let tag = "fallback";
    let dir = scratch(tag);
    let kubeconfig = install_rbac(&c, &dir).await;
    let ns = "e2e-fallback";
    let wh = Webhook::start(tag, kubeconfig, dir, Some(ns));
    wh.register_without(
        &c,
        tag,
        &["policies.kafka-expose.io", "bindings.kafka-expose.io"],
    )
    .await;
    tagged_namespace(&c, ns, tag).await;
    let k = fake_kubelet_on(c.clone(), ns, "e2e-fallback-public", |_| "10.2.0.1".into());
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30020",
                "kafka-expose.io/bootstrap-node-port": "30025",
                "kafka-expose.io/advertised-host": "node:ExternalIP"}),
    )
    .await;
    let pods = bound_pods(&c, ns, "kafka", 3).await;
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "the reconciler's annotation",
        || async {
            let pods = pods_of(&c, ns, "kafka").await;
            let hosts: Vec<Option<String>> = pods.iter().map(external_host).collect();
            if hosts.iter().all(|h| h.as_deref() == Some("198.51.100.21"))
                && pods.iter().all(set_by_fallback)
            {
                Ok(())
            } else {
                Err(format!("{hosts:?}"))
            }
        },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(pods.len(), 3);
    k.abort();

    // A node with no ExternalIP: reported, and the pod is never given an empty host.
    let api: Api<StatefulSet> = Api::namespaced(c.clone(), ns);
    api.delete("kafka", &Default::default()).await.unwrap();
    let pods_api: Api<Pod> = Api::namespaced(c.clone(), ns);
    for p in pods_api.list(&ListParams::default()).await.unwrap().items {
        let _ = pods_api
            .delete(
                &p.name_any(),
                &kube::api::DeleteParams::default().grace_period(0),
            )
            .await;
    }
    eventually(Duration::from_secs(30), "the old pods gone", || async {
        let n = pods_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        if n == 0 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
    let k = fake_kubelet_on(c.clone(), ns, "e2e-fallback-private", |_| "10.2.0.2".into());
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30020",
                "kafka-expose.io/bootstrap-node-port": "30025",
                "kafka-expose.io/advertised-host": "node:ExternalIP"}),
    )
    .await;
    bound_pods(&c, ns, "kafka", 3).await;
    let note = eventually(
        Duration::from_secs(30),
        "a NodeAddressMissing Event",
        || async {
            let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), ns);
            events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("NodeAddressMissing"))
                .and_then(|e| e.note)
                .ok_or_else(|| "none yet".to_string())
        },
    )
    .await;
    assert!(
        note.contains("node e2e-fallback-private has no address of the types ExternalIP"),
        "{note}"
    );
    for p in pods_of(&c, ns, "kafka").await {
        assert_eq!(external_host(&p), None, "never an empty host");
    }
    k.abort();
    drop(wh);
}

/// Without --patcher-image the server injects the image its own pod runs, read from that pod:
/// a retagged install (here a mirror's name) puts the new name into broker pods.
#[tokio::test]
async fn the_injected_init_container_runs_the_image_of_the_servers_own_pod() {
    let c = client().await;
    let ns = "e2e-own-image";
    let tag = "own-image";
    support::cluster::namespace(&c, ns).await;
    let mirror = "registry.example/mirror/kafka-expose:v9";
    let own: Pod = serde_json::from_value(json!({
        "metadata": {"name": "kx-server", "namespace": ns},
        "spec": {"automountServiceAccountToken": false, "containers": [
            {"name": "sidecar", "image": "busybox"},
            {"name": "kafka-expose", "image": mirror}
        ]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &own)
        .await
        .unwrap();
    let wh = Webhook::start_with(
        tag,
        PathBuf::from(env()["KUBECONFIG"].clone()),
        scratch(tag),
        Some(ns),
        support::serve::Extra {
            env: vec![
                ("POD_NAME".into(), "kx-server".into()),
                ("POD_NAMESPACE".into(), ns.into()),
            ],
            ..Default::default()
        },
    );
    wh.register(&c, tag).await;
    tagged_namespace(&c, ns, tag).await;
    assert!(
        wh.log().contains(mirror),
        "the server says which image it injects: {}",
        wh.log()
    );
    let node = "e2e-own-image-node";
    node_with_addresses(&c, node, &[("InternalIP", "10.1.0.9")]).await;
    let k = fake_kubelet_on(c.clone(), ns, node, |_| "10.1.0.9".into());
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30040",
                "kafka-expose.io/bootstrap-node-port": "30045",
                "kafka-expose.io/advertised-host": "node:InternalIP"}),
    )
    .await;
    for p in bound_pods(&c, ns, "kafka", 3).await {
        let inits = p.spec.as_ref().unwrap().init_containers.clone().unwrap();
        let gate = inits
            .iter()
            .find(|i| i.name == "kafka-expose-gate")
            .unwrap();
        assert_eq!(gate.image.as_deref(), Some(mirror), "{}", p.name_any());
    }
    k.abort();
}

/// `external-tls: ca:` with `node:ExternalIP`: the binding webhook puts each broker's node
/// address on it, and kafka-expose signs it a certificate for exactly that address, which the
/// gate in the broker's pod accepts for that host and no other.
#[tokio::test]
async fn with_a_ca_each_broker_gets_a_certificate_for_its_nodes_external_ip() {
    let c = client().await;
    let node = "e2e-tls-node";
    node_with_addresses(
        &c,
        node,
        &[("InternalIP", "10.1.0.8"), ("ExternalIP", "203.0.113.8")],
    )
    .await;
    // Under the install's own RBAC, which reads no Secret until the signing role is granted.
    let tag = "tlsnode";
    let dir = scratch(tag);
    let kubeconfig = install_rbac(&c, &dir).await;
    let ns = "e2e-tls-node";
    let wh = Webhook::start(tag, kubeconfig, dir, Some(ns));
    wh.register(&c, tag).await;
    tagged_namespace(&c, ns, tag).await;
    let ca = ca_secret(&c, ns).await;
    let k = fake_kubelet_on(c.clone(), ns, node, |_| "10.1.0.8".into());
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32040",
                "kafka-expose.io/bootstrap-node-port": "32043",
                "kafka-expose.io/advertised-host": "node:ExternalIP",
                "kafka-expose.io/external-tls": "ca:kafka-ca"}),
    )
    .await;
    let pods = bound_pods(&c, ns, "kafka", 3).await;
    // The install's own RBAC reads no Secret: the status says so until the signing role is
    // granted, here for this namespace alone.
    wait_status(&c, ns, "kafka", Duration::from_secs(60), |s| {
        s.contains("CA Secret") && s.contains("forbidden")
    })
    .await;
    grant_signing(&c, ns).await;
    for p in &pods {
        let i = ordinal_of(&p.name_any());
        let spec = p.spec.as_ref().unwrap();
        let gate = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(gate.name, "kafka-expose-gate");
        assert!(
            gate.args
                .as_ref()
                .unwrap()
                .contains(&"--tls-secret-dir".to_string())
        );
        let secret_volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "kafka-expose-tls-secret")
            .and_then(|v| v.secret.as_ref())
            .expect("the certificate's Secret is mounted for the gate");
        assert_eq!(
            secret_volume.secret_name.as_deref(),
            Some(format!("kafka-{i}-external-tls").as_str())
        );

        let s = wait_signed(&c, ns, i, &["203.0.113.8"], &ca).await;
        // The gate's own check, on the Secret as the kubelet would mount it.
        let dir = std::env::temp_dir().join(format!("kx-e2e-tls-{}-{i}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (k, v) in s.data.unwrap() {
            std::fs::write(dir.join(k), v.0).unwrap();
        }
        use kafka_expose::cmd::gate::{Wanted, certificate_for};
        use kafka_expose::kafka::tls::ClientAuth;
        let wanted = |host, client_auth| Wanted {
            secret: &dir,
            client_ca: None,
            host,
            client_auth,
        };
        certificate_for(&wanted("203.0.113.8", ClientAuth::Required)).expect("the gate accepts it");
        let e = certificate_for(&wanted("10.1.0.8", ClientAuth::None)).unwrap_err();
        assert!(e.contains("names 203.0.113.8, and not 10.1.0.8"), "{e}");
    }
    // No key in the open: not in the server's log (at its default level, info), not in any Event.
    let keys: Vec<String> = {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), ns);
        let mut keys = Vec::new();
        for name in [
            "kafka-ca",
            "kafka-0-external-tls",
            "kafka-1-external-tls",
            "kafka-2-external-tls",
        ] {
            let s = secrets.get(name).await.unwrap();
            let pem = String::from_utf8(s.data.unwrap()["tls.key"].0.clone()).unwrap();
            // Every line of the key's body: any of them in a log would be a leak.
            keys.extend(
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(str::to_string),
            );
        }
        keys
    };
    assert!(!keys.is_empty());
    let log = wh.log();
    assert!(
        log.contains("CertificateSigned") || log.contains("a certificate for 203.0.113.8"),
        "the log says what was signed"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(c.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let notes: String = events
        .items
        .iter()
        .filter_map(|e| e.note.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(notes.contains("a certificate for 203.0.113.8"), "{notes}");
    for text in [&log, &notes] {
        assert!(!text.contains("PRIVATE KEY"));
        for line in &keys {
            assert!(!text.contains(line.as_str()), "a key line in the open");
        }
    }
    k.abort();
}

/// `external-tls: issuer:` under cert-manager's real CRDs (tests/data/crds): kafka-expose writes
/// a `Certificate` per broker for exactly the host it advertises; the test plays cert-manager,
/// signing each into the Secret the Certificate names; that Secret is the one mounted for the
/// broker's gate, which accepts it for that host.
#[tokio::test]
async fn with_a_cert_manager_issuer_each_broker_gets_a_certificate_request_and_its_secret_is_mounted()
 {
    let c = client().await;
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/crds/cert-manager-v1.x-crds.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut crd = kafka_expose::offline::read_documents(&text)
        .unwrap()
        .into_iter()
        .find(|d| d["metadata"]["name"] == "certificates.cert-manager.io")
        .unwrap();
    support::crd_for_1_20(&mut crd);
    apply_value(&c, &crd).await;
    let certificates = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    );
    let ns = "e2e-tls-issuer";
    let _wh = webhook_for(&c, "tlsissuer", ns).await;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(c.clone(), ns, &certificates);
    support::serve::wait_served(&api, "the Certificate API").await;
    let k = fake_kubelet_on(c.clone(), ns, "e2e-tls-issuer-node", |_| "10.1.0.9".into());
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "32050",
                "kafka-expose.io/bootstrap-node-port": "32053",
                "kafka-expose.io/advertised-host": "template:kafka-{ordinal}.tls.example.com",
                "kafka-expose.io/external-tls": "issuer:ClusterIssuer/kafka-ca",
                "kafka-expose.io/external-tls-duration": "720h"}),
    )
    .await;
    // cert-manager's part: a CA that signs what each Certificate asks.
    let (ca_pem, ca_key) = {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let pods = bound_pods(&c, ns, "kafka", 3).await;
    for p in &pods {
        let i = ordinal_of(&p.name_any());
        let host = format!("kafka-{i}.tls.example.com");
        let name = format!("kafka-{i}-external-tls");
        let cert = eventually(
            Duration::from_secs(30),
            &format!("Certificate {name}"),
            || async {
                api.get_opt(&name)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("not there".to_string())
            },
        )
        .await;
        let spec = &cert.data["spec"];
        assert_eq!(spec["dnsNames"], json!([host]), "{spec}");
        assert_eq!(spec["secretName"], name);
        assert_eq!(
            spec["issuerRef"],
            json!({"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "kafka-ca"})
        );
        assert_eq!(
            spec["privateKey"]["encoding"], "PKCS8",
            "the only key Kafka's PEM store reads"
        );
        assert_eq!(spec["duration"], "2592000s");
        assert_eq!(
            cert.metadata.owner_references.as_ref().unwrap()[0].kind,
            "StatefulSet"
        );
        // The Secret cert-manager would write, for the names the Certificate asks.
        let (crt, key) = kafka_expose::certs::sign_broker(
            &ca_pem,
            &ca_key,
            std::slice::from_ref(&host),
            Duration::from_secs(3600),
        )
        .unwrap();
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": spec["secretName"], "namespace": ns},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": crt, "tls.key": key, "ca.crt": ca_pem}
        }))
        .unwrap();
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        // It is the Secret mounted for this broker's gate, which takes it for this host.
        let mounted = p
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "kafka-expose-tls-secret")
            .and_then(|v| v.secret.as_ref()?.secret_name.clone());
        assert_eq!(mounted.as_deref(), Some(name.as_str()));
        use kafka_expose::cmd::gate::stores_for;
        use kafka_expose::kafka::tls::ClientAuth;
        stores_for(&crt, &key, Some(&ca_pem), &host, ClientAuth::Required)
            .expect("the gate takes it");
    }
    k.abort();
}

/// The pods of `sts` that are present, not being deleted and Ready, by name.
async fn up(c: &Client, ns: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return Vec::new();
    };
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

/// `kafka-expose check -o json` on a workload, as a user with cluster credentials runs it: its
/// JSON text. Nothing listens at the test's addresses, so the brokers fail to answer; what is read
/// here is the cluster view.
async fn check_json(ns: &str, name: &str) -> String {
    let out = tokio::process::Command::new(support::serve::BIN)
        .args(["check", "-n", ns, name, "-o", "json"])
        .args(["--connect-timeout", "300ms", "--request-timeout", "300ms"])
        .env("KUBECONFIG", env()["KUBECONFIG"].clone())
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn uids(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.uid().unwrap_or_default()).collect()
}

/// Issue 28 on the real API server and StatefulSet controller, as a user would meet it: a node's
/// ExternalIP changes under three running brokers.
/// - `on-address-change: warn` only reports the stale broker, in the status and an Event;
/// - with `restart`, a PodDisruptionBudget of `maxUnavailable: 0` refuses the eviction, and the
///   status says so;
/// - without it, the brokers are evicted one at a time, the highest ordinal first: a sampler of
///   the pods never sees two missing, and each comes back advertising the new address.
///
/// The server runs under the install's own RBAC (the Eviction API is granted there).
#[tokio::test]
async fn a_nodes_new_address_restarts_its_brokers_one_at_a_time_warn_reports_and_a_pdb_holds() {
    let c = client().await;
    let node = "e2e-restart-node";
    node_with_addresses(
        &c,
        node,
        &[("InternalIP", "10.3.0.1"), ("ExternalIP", "198.51.100.21")],
    )
    .await;
    let ns = "e2e-restart";
    let wh =
        support::serve::installed_webhook(&c, "restart", ns, &["--restart-settle", "2s"]).await;
    let k = fake_kubelet_on(c.clone(), ns, node, |_| "10.3.0.1".into());
    let docs = apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30660",
                "kafka-expose.io/bootstrap-node-port": "30665",
                "kafka-expose.io/advertised-host": "node:ExternalIP",
                "kafka-expose.io/on-address-change": "warn"}),
    )
    .await;
    bound_pods(&c, ns, "kafka", 3).await;
    let all = ["kafka-0", "kafka-1", "kafka-2"].map(String::from).to_vec();
    eventually(Duration::from_secs(30), "three brokers Ready", || async {
        let u = up(&c, ns).await;
        if u == all {
            Ok(())
        } else {
            Err(format!("{u:?}"))
        }
    })
    .await;
    let before = pods_of(&c, ns, "kafka").await;
    for p in &before {
        let i = ordinal_of(&p.name_any());
        assert_eq!(external_host(p).as_deref(), Some("198.51.100.21"));
        assert_eq!(
            p.annotations()
                .get("kafka-expose.io/advertised")
                .map(String::as_str),
            Some(format!("$(KAFKA_EXPOSE_EXTERNAL_HOST):{}", 30660 + i).as_str()),
            "admission records what it advertises"
        );
    }
    wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| s == "ok").await;

    // The node's ExternalIP changes. With warn: reported, and nothing restarts.
    node_with_addresses(
        &c,
        node,
        &[("InternalIP", "10.3.0.1"), ("ExternalIP", "198.51.100.77")],
    )
    .await;
    let status = wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| {
        s.starts_with("restart: stale kafka-2")
    })
    .await;
    assert!(
        status
            .contains("advertises 198.51.100.21:30662; its node's ExternalIP is now 198.51.100.77")
            && status.contains("(2 more stale)")
            && status.contains("on-address-change is warn"),
        "{status}"
    );
    wait_event(
        &c,
        ns,
        "BrokerAddressStale",
        "kubectl delete pod -n e2e-restart kafka-2",
    )
    .await;
    let report = check_json(ns, "kafka").await;
    for i in 0..3 {
        assert!(
            report.contains(&format!(
                "broker pod kafka-{i} advertises 198.51.100.21:3066{i}; its node's ExternalIP is now 198.51.100.77"
            )),
            "check names each stale broker: {report}"
        );
    }
    assert!(report.contains("\"stale-address\""), "{report}");
    assert_eq!(
        uids(&pods_of(&c, ns, "kafka").await),
        uids(&before),
        "warn deletes no pod"
    );

    // restart, under a PodDisruptionBudget that allows no disruption: blocked, and said.
    let pdb_api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        c.clone(),
        ns,
        &kube::api::ApiResource {
            group: "policy".into(),
            version: "v1beta1".into(),
            api_version: "policy/v1beta1".into(),
            kind: "PodDisruptionBudget".into(),
            plural: "poddisruptionbudgets".into(),
        },
    );
    let sts: StatefulSet = Api::namespaced(c.clone(), ns).get("kafka").await.unwrap();
    let pdb: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "kafka", "namespace": ns},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": template_labels(sts)}}
    }))
    .unwrap();
    pdb_api.create(&PostParams::default(), &pdb).await.unwrap();
    Api::<StatefulSet>::namespaced(c.clone(), ns)
        .patch(
            "kafka",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kafka-expose.io/on-address-change": "restart"}}})),
        )
        .await
        .unwrap();
    let status = wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| {
        s.starts_with("restart: blocked kafka-2")
    })
    .await;
    assert!(status.contains("disruption budget"), "{status}");
    wait_event(&c, ns, "RestartBlocked", "kafka-2").await;
    assert_eq!(
        uids(&pods_of(&c, ns, "kafka").await),
        uids(&before),
        "the budget holds every broker"
    );

    // The budget removed: one broker at a time, each back on the new address.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
    let sampler = {
        let (c, seen) = (c.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let u = up(&c, "e2e-restart").await;
                seen.lock().unwrap().push(u);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    pdb_api.delete("kafka", &Default::default()).await.unwrap();
    let after = eventually(
        Duration::from_secs(120),
        "every broker back on the new address",
        || async {
            let pods = pods_of(&c, ns, "kafka").await;
            let hosts: Vec<Option<String>> = pods.iter().map(external_host).collect();
            let u = up(&c, ns).await;
            let sts: StatefulSet = Api::namespaced(c.clone(), ns)
                .get("kafka")
                .await
                .map_err(|e| e.to_string())?;
            let record = sts.annotations().get("kafka-expose.io/restart").cloned();
            if pods.len() == 3
                && hosts.iter().all(|h| h.as_deref() == Some("198.51.100.77"))
                && u == all
                && record.is_none()
            {
                Ok(pods)
            } else {
                Err(format!("{hosts:?}, up {u:?}, record {record:?}"))
            }
        },
    )
    .await;
    sampler.abort();
    let seen = seen.lock().unwrap().clone();
    let fewest = seen.iter().map(Vec::len).min().unwrap_or(0);
    assert!(
        fewest >= 2,
        "never two brokers missing; the sampler saw {:?}",
        seen.iter().find(|u| u.len() < 2)
    );
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old.uid(), new.uid(), "{} was restarted", new.name_any());
    }
    // The highest ordinal first, as the StatefulSet itself rolls.
    let first_missing = seen
        .iter()
        .find(|u| u.len() < 3)
        .and_then(|u| all.iter().find(|n| !u.contains(n)))
        .cloned();
    assert_eq!(first_missing.as_deref(), Some("kafka-2"));
    for p in &after {
        let i = ordinal_of(&p.name_any());
        let eff = effective_config(
            &docs,
            &serde_json::to_value(p).unwrap(),
            "broker",
            i,
            Image::Apache,
        );
        let adv = listeners(eff.get("advertised.listeners"));
        assert!(
            adv.contains(&(
                "EXTERNAL".to_string(),
                "198.51.100.77".to_string(),
                (30660 + i).to_string()
            )),
            "{}: advertises {adv:?}",
            p.name_any()
        );
    }
    wait_event(&c, ns, "BrokerRestarted", "evicted broker pod kafka-0").await;
    wait_status(&c, ns, "kafka", Duration::from_secs(30), |s| s == "ok").await;
    let report = check_json(ns, "kafka").await;
    assert!(
        !report.contains("stale") && report.contains("\"kafka-2\""),
        "after the restarts check finds no stale broker: {report}"
    );
    k.abort();
    drop(wh);
}

/// Issues 27 and 28 together, on the real API server: `external-tls: ca:` with 60-second
/// certificates. kafka-expose signs each broker's certificate again before it ends; a broker
/// keeps the key store it started with, so the restarts find its serial behind its Secret's and
/// evict it (one at a time, as for an address change); the gate of the pod that replaces it
/// starts it with the new certificate. The stand-in kubelet runs the gate's own check on the
/// Secret as it would be mounted, and reports the serial the gate would write.
#[tokio::test]
async fn a_renewed_certificate_restarts_its_broker_which_starts_with_the_new_one() {
    let c = client().await;
    let node = "e2e-renew-node";
    node_with_addresses(
        &c,
        node,
        &[("InternalIP", "10.4.0.1"), ("ExternalIP", "203.0.113.44")],
    )
    .await;
    let ns = "e2e-renew-restart";
    let wh = support::serve::installed_webhook(&c, "renewrestart", ns, &["--restart-settle", "2s"])
        .await;
    grant_signing(&c, ns).await;
    let ca = ca_secret(&c, ns).await;
    let k = fake_kubelet_gated(c.clone(), ns, node, |_| "10.4.0.1".into());
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30670",
                "kafka-expose.io/bootstrap-node-port": "30675",
                "kafka-expose.io/advertised-host": "node:ExternalIP",
                "kafka-expose.io/external-tls": "ca:kafka-ca",
                "kafka-expose.io/external-tls-duration": "60s",
                "kafka-expose.io/external-tls-renew-before": "30s"}),
    )
    .await;
    // Each broker starts once its gate finds a certificate for its node's ExternalIP.
    let first = started_through_gates(&c, ns).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), ns);
    let serial_of = |s: &k8s_openapi::api::core::v1::Secret| {
        let pem = String::from_utf8(s.data.as_ref().unwrap()["tls.crt"].0.clone()).unwrap();
        certs::inspect(&pem).unwrap()[0].serial.clone()
    };
    for (pod, _, serial) in &first {
        let s = wait_signed(&c, ns, ordinal_of(pod), &["203.0.113.44"], &ca).await;
        let now = serial_of(&s);
        // Signed again already (a slow start) is fine: the gate read it earlier.
        assert!(!serial.is_empty() && !now.is_empty(), "{pod}");
    }
    // Renewed 30 s before its end, then restarted (the first whose renewal is seen goes first).
    let note = wait_event_within(
        &c,
        ns,
        "BrokerRestarted",
        "started with certificate serial",
        Duration::from_secs(150),
    )
    .await;
    let pod = note
        .strip_prefix("evicted broker pod ")
        .and_then(|r| r.split(',').next())
        .unwrap_or_else(|| panic!("{note}"))
        .to_string();
    let (_, uid, serial) = first.iter().find(|(p, _, _)| *p == pod).unwrap().clone();
    assert!(
        note.contains(&format!(
            "started with certificate serial {serial}; Secret {pod}-external-tls now holds serial"
        )),
        "{note}"
    );
    let again = restarted_with(&c, ns, &pod, &uid).await;
    assert_ne!(again, serial, "{pod} starts with the renewed certificate");
    // Whose Secret holds a current certificate.
    let s = secrets.get(&format!("{pod}-external-tls")).await.unwrap();
    let end = certs::inspect(&String::from_utf8(s.data.unwrap()["tls.crt"].0.clone()).unwrap())
        .unwrap()[0]
        .not_after;
    assert!(
        end > kafka_expose::cluster::unix_now(),
        "the Secret's certificate is current"
    );
    k.abort();
    drop(wh);
}

/// A renewal the broker could not start with is not restarted for. With `external-tls:
/// secret:`, the user's Secret for one broker is rotated to a certificate that does not name
/// the broker's address: kafka-expose says so in a `CertificateUnusable` Warning naming what it
/// lacks, and evicts nothing (a restarted broker would wait in its gate). Once the Secret holds a
/// certificate that names the address, that broker alone is restarted, and starts with it.
#[tokio::test]
async fn a_renewal_that_does_not_name_the_broker_is_reported_and_not_restarted_for() {
    let c = client().await;
    let node = "e2e-unusable-node";
    node_with_addresses(
        &c,
        node,
        &[("InternalIP", "10.4.0.2"), ("ExternalIP", "203.0.113.55")],
    )
    .await;
    let ns = "e2e-renew-unusable";
    let wh =
        support::serve::installed_webhook(&c, "renewunusable", ns, &["--restart-settle", "2s"])
            .await;
    // Reading the Secrets' serials is the opt-in signing role's grant.
    grant_signing(&c, ns).await;
    let (ca_pem, ca_key) = {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), ns);
    // The user's own Secret for broker `i`, naming `host`: created, or replaced.
    let user_secret = |i: u32, host: &str| {
        let (crt, key) = certs::sign_broker(
            &ca_pem,
            &ca_key,
            &[host.to_string()],
            Duration::from_secs(3600),
        )
        .unwrap();
        let serial = certs::inspect(&crt).unwrap()[0].serial.clone();
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("kafka-{i}-user-tls"), "namespace": ns},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": crt, "tls.key": key, "ca.crt": ca_pem}
        }))
        .unwrap();
        let secrets = secrets.clone();
        async move {
            let params = PatchParams::apply("e2e-user").force();
            secrets
                .patch(
                    secret.metadata.name.as_deref().unwrap(),
                    &params,
                    &Patch::Apply(&secret),
                )
                .await
                .unwrap();
            serial
        }
    };
    for i in 0..3 {
        user_secret(i, "203.0.113.55").await;
    }
    let k = fake_kubelet_gated(c.clone(), ns, node, |_| "10.4.0.2".into());
    apply_fixture(
        &c,
        ns,
        "apache-kafka-kraft.yaml",
        &json!({"kafka-expose.io/expose": "nodeport", "kafka-expose.io/port-base": "30680",
                "kafka-expose.io/bootstrap-node-port": "30685",
                "kafka-expose.io/advertised-host": "node:ExternalIP",
                "kafka-expose.io/external-tls": "secret:{pod}-user-tls"}),
    )
    .await;
    let first = started_through_gates(&c, ns).await;
    let before = pods_of(&c, ns, "kafka").await;

    // Rotated to the wrong name: reported, naming what it lacks, and nothing restarts.
    let wrong = user_secret(2, "203.0.113.99").await;
    let note = wait_event_within(
        &c,
        ns,
        "CertificateUnusable",
        &format!("now holds certificate serial {wrong}"),
        Duration::from_secs(120),
    )
    .await;
    assert!(
        note.starts_with("broker pod kafka-2: Secret kafka-2-user-tls")
            && note.contains("which does not name 203.0.113.55 (it names 203.0.113.99)"),
        "{note}"
    );
    // A few of the loop's passes (every 5 s) later, every broker still runs as it started.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        uids(&pods_of(&c, ns, "kafka").await),
        uids(&before),
        "no broker is restarted for a certificate it could not start with"
    );
    let sts: StatefulSet = Api::namespaced(c.clone(), ns).get("kafka").await.unwrap();
    assert_eq!(
        sts.annotations().get("kafka-expose.io/restart"),
        None,
        "no restart on record"
    );

    // Put right: kafka-2 alone restarts, and starts with the certificate that names it.
    let right = user_secret(2, "203.0.113.55").await;
    let note = wait_event_within(
        &c,
        ns,
        "BrokerRestarted",
        &format!("now holds serial {right}"),
        // The Secret is read again at most once a minute, then a pass (5 s) restarts it.
        Duration::from_secs(90),
    )
    .await;
    assert!(note.starts_with("evicted broker pod kafka-2"), "{note}");
    let (_, uid, _) = first
        .iter()
        .find(|(p, _, _)| p == "kafka-2")
        .unwrap()
        .clone();
    let loaded = restarted_with(&c, ns, "kafka-2", &uid).await;
    assert_eq!(loaded, right);
    let now = pods_of(&c, ns, "kafka").await;
    for (old, new) in before.iter().zip(&now).take(2) {
        assert_eq!(old.uid(), new.uid(), "{} kept running", new.name_any());
    }
    k.abort();
    drop(wh);
}

/// The three brokers of StatefulSet `kafka` in `ns`, once each has started through its gate and
/// is Ready: (pod, uid, the serial its gate started it with).
async fn started_through_gates(c: &Client, ns: &str) -> Vec<(String, String, String)> {
    let all = ["kafka-0", "kafka-1", "kafka-2"].map(String::from).to_vec();
    eventually(
        Duration::from_secs(60),
        "three brokers started through their gates",
        || async {
            let pods = pods_of(c, ns, "kafka").await;
            let started: Vec<(String, String, String)> = pods
                .iter()
                .filter_map(|p| Some((p.name_any(), p.uid()?, caches::loaded_serial(p)?)))
                .collect();
            if started.len() == 3 && up(c, ns).await == all {
                Ok(started)
            } else {
                Err(format!("{started:?}"))
            }
        },
    )
    .await
}

/// Waits for broker `pod` of `ns` to be made again (another uid than `uid`), started through its
/// gate and Ready; gives the serial it started with.
async fn restarted_with(c: &Client, ns: &str, pod: &str, uid: &str) -> String {
    eventually(
        Duration::from_secs(60),
        &format!("{pod} back through its gate"),
        || async {
            let pods = pods_of(c, ns, "kafka").await;
            let p = pods
                .iter()
                .find(|p| p.name_any() == pod)
                .ok_or("not re-created yet")?;
            let loaded = caches::loaded_serial(p).ok_or("not started")?;
            if p.uid().as_deref() != Some(uid) && up(c, ns).await.iter().any(|u| u == pod) {
                Ok(loaded)
            } else {
                Err(format!("{loaded} {:?}", p.uid()))
            }
        },
    )
    .await
}
