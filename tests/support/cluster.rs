//! Shared by the e2e suites: the control plane's client, namespaces, a stand-in kubelet, polling.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Binding, Namespace, Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The host IP the stand-in kubelet reports.
pub const HOST_IP: &str = "192.0.2.10";

pub fn env() -> BTreeMap<String, String> {
    let path = std::env::var("KAFKA_EXPOSE_E2E_ENV").unwrap_or_else(|_| {
        panic!(
            "the e2e tests need the control plane: run ./tests/run.sh, or start tests/e2e/control-plane.sh \
             and set KAFKA_EXPOSE_E2E_ENV to its env file"
        )
    });
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn client() -> Client {
    let env = env();
    let kc = Kubeconfig::read_from(&env["KUBECONFIG"]).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

/// A client, and namespace `name` made anew for one test.
pub async fn fresh_namespace(name: &str) -> Client {
    let c = client().await;
    namespace(&c, name).await;
    c
}

pub async fn namespace(c: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(c.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match api
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 && Instant::now() < deadline => {
                // A namespace from an earlier run is terminating: no kubelet finishes its pods.
                let pods: Api<Pod> = Api::namespaced(c.clone(), name);
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for p in list.items {
                        let _ = pods
                            .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("namespace {name}: {e}"),
        }
    }
}

/// Plays the scheduler and the kubelet for the pods of `ns`.
pub fn fake_kubelet(c: Client, ns: &str) -> tokio::task::JoinHandle<()> {
    fake_kubelet_with(c, ns, |_| HOST_IP.to_string())
}

/// Plays the scheduler and the kubelet, giving each pod the host IP `host_ip(pod name)`.
pub fn fake_kubelet_with(
    c: Client,
    ns: &str,
    host_ip: impl Fn(&str) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    fake_kubelet_on(c, ns, "e2e-node", host_ip)
}

/// Keeps Node `node` (made if absent) Ready, as a kubelet's heartbeat does. Without it, a test
/// longer than the node monitor's grace period (40 s) sees the node lifecycle controller mark
/// the node Unknown and every pod on it NotReady, and StatefulSets stop rolling.
pub fn node_heartbeat(c: Client, node: &str) -> tokio::task::JoinHandle<()> {
    let node = node.to_string();
    tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(c.clone());
        ensure_node(&c, &node).await;
        loop {
            beat(&nodes, &node).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

/// Makes Node `name` unless it exists.
pub async fn ensure_node(c: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(c.clone());
    let _ = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await;
}

/// Makes Node `name` Ready with these `status.addresses` (type, address), as a cloud's node
/// controller would report them.
pub async fn node_with_addresses(c: &Client, name: &str, addresses: &[(&str, &str)]) {
    let nodes: Api<Node> = Api::all(c.clone());
    ensure_node(c, name).await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let addresses: Vec<Value> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    let status = json!({"status": {
        "addresses": addresses,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "stand-in", "lastHeartbeatTime": now, "lastTransitionTime": now}]
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// One heartbeat: Node `node`'s Ready condition, fresh.
async fn beat(nodes: &Api<Node>, node: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "the test's stand-in kubelet", "lastHeartbeatTime": now, "lastTransitionTime": now
    }]}});
    let _ = nodes
        .patch_status(node, &PatchParams::default(), &Patch::Strategic(&status))
        .await;
}

/// [`fake_kubelet_with`], binding the pods to Node `node`. Like a kubelet it keeps its Node's
/// heartbeat fresh (else, past the node monitor's grace period, the node lifecycle controller
/// marks the node Unknown and its pods NotReady, and StatefulSets stop rolling), and reports a
/// running pod Ready again if something marked it otherwise.
pub fn fake_kubelet_on(
    c: Client,
    ns: &str,
    node: &str,
    host_ip: impl Fn(&str) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    fake_kubelet_ready(c, ns, node, host_ip, |_| true)
}

/// [`fake_kubelet_on`], reporting a running pod Ready only when `ready(pod name)` says so (a
/// broker whose readiness probe fails).
pub fn fake_kubelet_ready(
    c: Client,
    ns: &str,
    node: &str,
    host_ip: impl Fn(&str) -> String + Send + 'static,
    ready: impl Fn(&str) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    stand_in_kubelet(c, ns, node, host_ip, ready, false)
}

/// [`fake_kubelet_on`], running each pod's kafka-expose gate as the kubelet would start it: the
/// gate's own check ([`kafka_expose::cmd::gate::certificate_for`]) on its certificate Secret as
/// the kubelet mounts it, for the host the pod was given. The pod stays Pending while the gate
/// would wait, and once it passes, the gate's status carries the termination message the gate
/// writes (the serial it started with), which is what the restarts read.
pub fn fake_kubelet_gated(
    c: Client,
    ns: &str,
    node: &str,
    host_ip: impl Fn(&str) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    stand_in_kubelet(c, ns, node, host_ip, |_| true, true)
}

/// The gate's termination message for pod `p`, if it has a gate with a certificate Secret and
/// that Secret holds a certificate for its host; `None` while the gate would wait.
async fn run_gate(c: &Client, ns: &str, p: &Pod) -> Option<Value> {
    use kafka_expose::cmd::gate::{Wanted, certificate_for};
    let spec = p.spec.as_ref()?;
    let gate = spec
        .init_containers
        .iter()
        .flatten()
        .find(|i| i.name == kafka_expose::names::GATE_CONTAINER)?;
    let status = |message: String| {
        json!([{
            "name": gate.name, "ready": true, "restartCount": 0,
            "image": gate.image.clone().unwrap_or_default(), "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}}
        }])
    };
    let Some(secret) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == kafka_expose::names::TLS_SECRET_VOLUME)
        .and_then(|v| v.secret.as_ref()?.secret_name.clone())
    else {
        // No certificate to wait for.
        return Some(status(String::new()));
    };
    let host = p
        .annotations()
        .get("kafka-expose.io/external-host")?
        .clone();
    let s = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.clone(), ns)
        .get_opt(&secret)
        .await
        .ok()??;
    let dir = std::env::temp_dir().join(format!(
        "kx-e2e-gate-{}-{}",
        std::process::id(),
        p.uid().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).ok()?;
    for (k, v) in s.data.unwrap_or_default() {
        std::fs::write(dir.join(k), v.0).ok()?;
    }
    let checked = certificate_for(&Wanted {
        secret: &dir,
        client_ca: None,
        host: &host,
        client_auth: kafka_expose::kafka::tls::ClientAuth::None,
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (_, _, facts) = checked.ok()?;
    Some(status(kafka_expose::engine::restart::loaded_message(
        &facts.serial,
    )))
}

fn stand_in_kubelet(
    c: Client,
    ns: &str,
    node: &str,
    host_ip: impl Fn(&str) -> String + Send + 'static,
    ready: impl Fn(&str) -> bool + Send + 'static,
    gated: bool,
) -> tokio::task::JoinHandle<()> {
    let ns = ns.to_string();
    let node = node.to_string();
    tokio::spawn(async move {
        ensure_node(&c, &node).await;
        let nodes: Api<Node> = Api::all(c.clone());
        let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
        let mut last_beat: Option<Instant> = None;
        loop {
            if last_beat.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                beat(&nodes, &node).await;
                last_beat = Some(Instant::now());
            }
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items {
                    let name = p.name_any();
                    // No kubelet confirms deletions: finish them as it would.
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = pods
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                        continue;
                    }
                    let spec = p.spec.clone().unwrap_or_default();
                    if spec.node_name.is_none() {
                        let binding: Binding = serde_json::from_value(json!({
                            "apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": name, "namespace": ns},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": node}
                        }))
                        .unwrap();
                        let _ = pods
                            .create_subresource::<Binding, Value>(
                                "binding",
                                &name,
                                &PostParams::default(),
                                &binding,
                            )
                            .await;
                    }
                    let status = p.status.as_ref();
                    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
                    let is_ready = status
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    let want = ready(&name);
                    if !running || is_ready != want {
                        // A bound pod whose gate would wait stays Pending, as a kubelet keeps it.
                        let has_gate = spec
                            .init_containers
                            .iter()
                            .flatten()
                            .any(|i| i.name == kafka_expose::names::GATE_CONTAINER);
                        let gate = if gated && has_gate && !running {
                            // Bound in this very pass: its gate runs in the next.
                            if spec.node_name.is_none() {
                                continue;
                            }
                            match run_gate(&c, &ns, &p).await {
                                Some(g) => Some(g),
                                None => continue,
                            }
                        } else {
                            None
                        };
                        let want = if want { "True" } else { "False" };
                        let mut status = json!({"status": {
                            "phase": "Running", "hostIP": host_ip(&name), "podIP": pod_ip(&name),
                            "conditions": [{"type": "Ready", "status": want}, {"type": "ContainersReady", "status": want}]
                        }});
                        if let Some(g) = gate {
                            status["status"]["initContainerStatuses"] = g;
                        }
                        let _ = pods
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// The pod IP the stand-in kubelet gives a pod: distinct per ordinal (`10.244.1.<10 + n>` for a
/// name ending in `-<n>`), so that Endpoints tell brokers apart.
pub fn pod_ip(pod: &str) -> String {
    match pod.rsplit('-').next().and_then(|n| n.parse::<u32>().ok()) {
        Some(n) if n < 240 => format!("10.244.1.{}", 10 + n),
        _ => "10.244.0.5".into(),
    }
}

pub async fn managed(c: &Client, ns: &str) -> Vec<Service> {
    let api: Api<Service> = Api::namespaced(c.clone(), ns);
    let mut items = api
        .list(&ListParams::default().labels(kafka_expose::names::labels::MANAGED_SELECTOR))
        .await
        .unwrap()
        .items;
    items.sort_by_key(|s| s.name_any());
    items
}

pub fn names(svcs: &[Service]) -> Vec<String> {
    svcs.iter().map(|s| s.name_any()).collect()
}

pub fn node_port(s: &Service) -> Option<i32> {
    s.spec.as_ref()?.ports.as_ref()?.first()?.node_port
}

/// Waits until StatefulSet `name`'s `kafka-expose.io/status` is one `accept` takes, and returns
/// it. The reconciler writes it in its own request, after its Events.
pub async fn wait_status(
    c: &Client,
    ns: &str,
    name: &str,
    limit: Duration,
    accept: impl Fn(&str) -> bool,
) -> String {
    let api: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(c.clone(), ns);
    eventually(limit, &format!("the status of {name}"), || async {
        let status = api
            .get(name)
            .await
            .map_err(|e| e.to_string())?
            .annotations()
            .get("kafka-expose.io/status")
            .cloned();
        match status {
            Some(s) if accept(&s) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Polls `check` until it returns `Some`, or fails after `limit` with the last state.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match check().await {
            Ok(t) => return t,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what} did not happen within {limit:?}; last: {last}");
}

/// Waits for an Event of `reason` in `ns` whose message contains `text`, and returns the message.
pub async fn wait_event(c: &Client, ns: &str, reason: &str, text: &str) -> String {
    wait_event_within(c, ns, reason, text, Duration::from_secs(60)).await
}

/// [`wait_event`], up to `limit`.
pub async fn wait_event_within(
    c: &Client,
    ns: &str,
    reason: &str,
    text: &str,
    limit: Duration,
) -> String {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), ns);
    eventually(
        limit,
        &format!("a {reason} Event naming {text}"),
        || async {
            events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .filter_map(|e| e.message)
                .find(|m| m.contains(text))
                .ok_or_else(|| format!("no {reason} Event yet"))
        },
    )
    .await
}

/// Whether a StatefulSet is mid-rollout, by what its controller reports.
pub fn sts_rolling(s: &k8s_openapi::api::apps::v1::StatefulSet) -> bool {
    let want = s.spec.replicas.unwrap_or(1);
    let Some(st) = &s.status else { return true };
    st.observed_generation < s.metadata.generation
        || st.updated_replicas.unwrap_or(0) < want
        || st.ready_replicas.unwrap_or(0) < want
        || st.current_revision != st.update_revision
}

/// A CA key pair as a user keeps it: a `kubernetes.io/tls` Secret `kafka-ca` in `ns`.
pub async fn ca_secret(c: &Client, ns: &str) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    p.distinguished_name
        .push(DnType::CommonName, "e2e Kafka CA");
    let cert = p.self_signed(&key).unwrap().pem();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "kafka-ca", "namespace": ns},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": key.serialize_pem()}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    cert
}

/// Waits for broker `i`'s signed Secret to hold a certificate naming exactly `hosts`, signed by
/// `ca`, and returns it.
pub async fn wait_signed(
    c: &Client,
    ns: &str,
    i: u32,
    hosts: &[&str],
    ca: &str,
) -> k8s_openapi::api::core::v1::Secret {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.clone(), ns);
    let name = format!("kafka-{i}-external-tls");
    eventually(
        Duration::from_secs(30),
        &format!("Secret {name} for {hosts:?}"),
        || async {
            let s = api
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("not there")?;
            let data = s.data.clone().unwrap_or_default();
            let text = |k: &str| {
                String::from_utf8(data.get(k).map(|b| b.0.clone()).unwrap_or_default()).unwrap()
            };
            let facts =
                kafka_expose::certs::inspect(&text("tls.crt")).map_err(|e| e.to_string())?;
            let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
            if !kafka_expose::certs::same_names(&facts[0].names, &hosts) {
                return Err(format!("names {:?}", facts[0].names));
            }
            if text("ca.crt").trim() != ca.trim() || !text("tls.key").contains("PRIVATE KEY") {
                return Err("not signed by the CA, or no key".into());
            }
            Ok(s)
        },
    )
    .await
}
