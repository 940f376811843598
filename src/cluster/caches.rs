//! The caches the webhook and the reconciler share: reflector stores fed by watches.
//!
//! The managed Services (label `app.kubernetes.io/managed-by: kafka-expose`) are watched on
//! every replica, leading or not. The reconciler reads from the store which Services a workload
//! has; the Pod webhook reads LoadBalancer addresses from it (`advertised-host: loadbalancer`)
//! without an API call per request, through [`ServiceCache`]'s
//! [`LoadBalancerAddresses`].

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::engine::pod::LoadBalancerAddresses;
use crate::engine::services::NamespaceServices;
use crate::metrics::Readiness;
use crate::names::labels;

/// The managed Services, as the watch last saw them.
#[derive(Clone)]
pub struct ServiceCache {
    pub store: Store<Service>,
    /// True once the store holds its first list. Waiters use this rather than
    /// `Store::wait_until_ready`, whose readiness wakes one waiter only.
    pub synced: tokio::sync::watch::Receiver<bool>,
}

impl ServiceCache {
    /// The managed Services of workload `name` in `namespace` (the store holds managed Services
    /// only).
    pub fn of_workload(&self, namespace: &str, name: &str) -> Vec<Arc<Service>> {
        self.store
            .state_filter(|s| Self::belongs(s, namespace, name))
    }

    /// The managed Services in `namespace` of workloads other than `name`.
    pub fn of_other_workloads(&self, namespace: &str, name: &str) -> Vec<Service> {
        self.store
            .state_filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && !Self::belongs(s, namespace, name)
            })
            .into_iter()
            .map(|s| (*s).clone())
            .collect()
    }

    /// Whether workload `name` in `namespace` has a managed Service.
    pub fn has_any(&self, namespace: &str, name: &str) -> bool {
        self.store
            .find(|s| Self::belongs(s, namespace, name))
            .is_some()
    }

    fn belongs(s: &Service, namespace: &str, name: &str) -> bool {
        s.metadata.namespace.as_deref() == Some(namespace)
            && s.labels().get(labels::WORKLOAD).map(String::as_str) == Some(name)
    }
}

/// The Services of `namespace` that kafka-expose did not make: what its plan must respect.
/// kafka-expose's own are left out of the list, since in a namespace of many exposed workloads
/// they would make every list long, and they never conflict with its plan.
pub async fn others_services(client: Client, namespace: &str) -> kube::Result<Vec<Service>> {
    let api: Api<Service> = Api::namespaced(client, namespace);
    let params = kube::api::ListParams::default().labels(labels::OTHERS_SELECTOR);
    Ok(api.list(&params).await?.items)
}

impl LoadBalancerAddresses for ServiceCache {
    fn address(&self, namespace: &str, name: &str) -> Option<String> {
        let svc = self.store.get(&ObjectRef::new(name).within(namespace))?;
        ingress(&svc)
    }

    fn route(&self, namespace: &str, name: &str) -> Option<String> {
        let svc = self.store.get(&ObjectRef::new(name).within(namespace))?;
        svc.annotations()
            .get(crate::engine::gateway::ROUTE_ANNOTATION)
            .cloned()
    }
}

/// The Services of a namespace that kafka-expose did not make, read live from the API server:
/// one list call, made only when an exposed workload is admitted.
pub struct LiveServices(pub Client);

impl NamespaceServices for LiveServices {
    fn list<'a>(
        &'a self,
        namespace: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Service>, String>> + Send + 'a>> {
        Box::pin(async move {
            others_services(self.0.clone(), namespace)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

pub use crate::engine::services::ingress;

/// An API over every namespace, or over one.
pub fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// A reflector over the managed Services, and the stream that feeds it.
pub fn service_store(
    client: Client,
    namespace: Option<&str>,
) -> (
    Store<Service>,
    impl futures::Stream<Item = ()> + Send + use<>,
) {
    let (reader, writer) = reflector::store();
    let api: Api<Service> = scoped(client, namespace);
    let stream = watcher(
        api,
        watcher::Config::default().labels(labels::MANAGED_SELECTOR),
    )
    .default_backoff()
    // Bounded like the workloads: what is read of a managed Service is its name, labels, spec
    // and status, not its field-manager history or a client's last-applied copy.
    .modify(|s| {
        s.metadata.managed_fields = None;
        if let Some(a) = s.metadata.annotations.as_mut() {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    })
    .reflect(writer)
    .applied_objects()
    .filter_map(|r| async move {
        if let Err(e) = r {
            warn!(error = %e, "Service watch failed; retrying");
        }
        None::<()>
    });
    (reader, stream)
}

/// Feeds the managed-Service store until `shutdown`, and turns readiness true once it synced:
/// what the webhook needs of the cluster, on every replica, leading or not.
pub async fn feed_services(
    services: Store<Service>,
    stream: impl futures::Stream<Item = ()> + Send + 'static,
    readiness: Arc<Readiness>,
    synced: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    // The one waiter on the store's readiness (it wakes a single waiter); others watch `synced`.
    let sync = async move {
        let _ = services.wait_until_ready().await;
        readiness.set_synced();
        let _ = synced.send(true);
        info!("Service cache synced");
    };
    tokio::join!(sync, stream.take_until(shutdown).for_each(|()| async {}));
}

/// The exposed broker pods (label `kafka-expose.io/exposed=true`) and every Node's addresses,
/// as their watches last saw them, stripped to what a binding needs: the pods' kafka-expose
/// annotations, owner and node, and the nodes' `status.addresses`. Watched on every replica
/// (the binding webhook reads them); the reconciler's fallback too.
#[derive(Clone)]
pub struct BindingCache {
    pub pods: Store<k8s_openapi::api::core::v1::Pod>,
    pub nodes: Store<k8s_openapi::api::core::v1::Node>,
}

impl crate::engine::binding::BindingFacts for BindingCache {
    fn broker(
        &self,
        namespace: &str,
        pod: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let p = self.pods.get(&ObjectRef::new(pod).within(namespace))?;
        Some(crate::config::own_annotations(
            p.metadata.annotations.as_ref(),
        ))
    }

    fn node_addresses(&self, node: &str) -> Option<Vec<(String, String)>> {
        let n = self.nodes.get(&ObjectRef::new(node))?;
        Some(
            n.status
                .as_ref()
                .and_then(|s| s.addresses.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.type_, a.address))
                .collect(),
        )
    }
}

/// Where a cached broker pod carries the termination message of an injected step that kept the
/// chart's configuration (see [`crate::names::KEPT_MARK`]). Only in the cache: never written.
pub const KEPT_NOTE: &str = "kafka-expose.io/cache.kept";

/// The termination message of a container of `p` that kept the chart's configuration rather
/// than stop the broker: from its current state, or the one before a restart. The properties
/// adapter's init container writes it when it ends; the launch adapter's launcher, in the broker
/// container itself, writes it at the start, and the kubelet reports it once that container ends.
pub fn kept_note(p: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    statuses.into_iter().find_map(|c| {
        [c.state.as_ref(), c.last_state.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|s| s.terminated.as_ref()?.message.as_deref())
            .find(|m| m.starts_with(crate::names::KEPT_MARK))
            .map(|m| m.trim().to_string())
    })
}

/// The kept notes of the cached broker pods in `namespace` whose labels hold `selector`:
/// `pod <name>: <message>`, by pod name.
pub fn kept_notes(
    pods: &Store<k8s_openapi::api::core::v1::Pod>,
    namespace: &str,
    selector: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut notes: Vec<String> = pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| {
            let labels = p.labels();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter_map(|p| {
            let note = p.annotations().get(KEPT_NOTE)?;
            Some(format!("pod {}: {note}", p.name_any()))
        })
        .collect();
    notes.sort();
    notes
}

/// Starts the watches of [`BindingCache`]; they run until `shutdown`.
pub fn watch_bindings(
    client: &Client,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> BindingCache {
    use k8s_openapi::api::core::v1::{Node, Pod};
    let (pods, pw) = reflector::store();
    let (nodes, nw) = reflector::store();
    let pod_stream = watcher(
        scoped::<Pod>(client.clone(), namespace),
        watcher::Config::default().labels(&format!("{}=true", labels::EXPOSED)),
    )
    .default_backoff()
    .modify(strip_broker_pod)
    .reflect(pw)
    .for_each(|e| {
        if let Err(e) = e {
            warn!(error = %e, "broker pod watch failed; retrying");
        }
        std::future::ready(())
    });
    let node_stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|n| {
            let addresses = n.status.as_ref().and_then(|s| s.addresses.clone());
            n.metadata = kube::api::ObjectMeta {
                name: n.metadata.name.take(),
                resource_version: n.metadata.resource_version.take(),
                uid: n.metadata.uid.take(),
                ..Default::default()
            };
            n.spec = None;
            n.status = Some(k8s_openapi::api::core::v1::NodeStatus {
                addresses,
                ..Default::default()
            });
        })
        .reflect(nw)
        .for_each(|e| {
            if let Err(e) = e {
                warn!(error = %e, "node watch failed; retrying");
            }
            std::future::ready(())
        });
    tokio::spawn(async move {
        let both = futures::future::join(pod_stream, node_stream);
        futures::future::select(Box::pin(both), Box::pin(shutdown)).await;
    });
    BindingCache { pods, nodes }
}

/// Strips a watched broker pod to what the binding webhook, the node fallback and the restarts
/// read: its kafka-expose annotations (with the notes its containers left, see [`KEPT_NOTE`],
/// [`LOADED_SERIAL`] and [`TLS_SECRET`]), its owner and node, and its Ready condition.
pub fn strip_broker_pod(p: &mut k8s_openapi::api::core::v1::Pod) {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    let mut notes = Vec::new();
    if let Some(note) = kept_note(p) {
        notes.push((KEPT_NOTE, note));
    }
    if let Some(serial) = loaded_serial(p) {
        notes.push((LOADED_SERIAL, serial));
    }
    if let Some(secret) = tls_secret(p) {
        notes.push((TLS_SECRET, secret));
    }
    p.metadata.managed_fields = None;
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(crate::names::PREFIX) && !k.starts_with(CACHE_PREFIX));
    }
    for (key, value) in notes {
        p.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.into(), value);
    }
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    p.spec = Some(PodSpec {
        node_name: node,
        ..PodSpec::default()
    });
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned());
    p.status = ready.map(|r| PodStatus {
        conditions: Some(vec![r]),
        ..PodStatus::default()
    });
}

/// The StatefulSet that controls a pod, if one does.
pub fn statefulset_of(p: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "StatefulSet")
        .map(|o| o.name.clone())
}

/// The notes the cache adds start so; a pod's own annotations of that form are dropped.
const CACHE_PREFIX: &str = "kafka-expose.io/cache.";

/// Where a cached broker pod carries the serial of the certificate its gate let it start with.
pub const LOADED_SERIAL: &str = "kafka-expose.io/cache.loaded-serial";

/// Where a cached broker pod carries the name of its certificate Secret (its gate's volume).
pub const TLS_SECRET: &str = "kafka-expose.io/cache.tls-secret";

/// The serial of the certificate the pod's gate let the broker start with: the gate's
/// termination message in its current state (the broker runs with what the last run wrote).
pub fn loaded_serial(p: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    let gate = p
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == crate::names::GATE_CONTAINER)?;
    let message = gate
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .message
        .as_deref()?;
    crate::engine::restart::loaded_serial(message).map(str::to_string)
}

/// The Secret the pod's gate reads its certificate from.
fn tls_secret(p: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    p.spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .find(|v| v.name == crate::names::TLS_SECRET_VOLUME)?
        .secret
        .as_ref()?
        .secret_name
        .clone()
}

/// Every NodePort in use in the cluster, from a watch of all Services stripped to their ports'
/// `nodePort`: what a policy's port pool allocates around. Started by the policy controller only
/// once a policy has a pool, so a cluster without one pays nothing for it.
#[derive(Clone)]
pub struct NodePortCache {
    store: Store<Service>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl NodePortCache {
    /// The NodePorts the Services hold, as the watch last saw them.
    pub fn in_use(&self) -> std::collections::BTreeSet<u16> {
        node_ports(self.store.state().iter().map(|s| s.as_ref()))
    }

    /// Waits until it holds its first list.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// The NodePorts of `services`.
pub fn node_ports<'a>(
    services: impl IntoIterator<Item = &'a Service>,
) -> std::collections::BTreeSet<u16> {
    services
        .into_iter()
        .filter_map(|s| s.spec.as_ref()?.ports.as_ref())
        .flatten()
        .filter_map(|p| u16::try_from(p.node_port?).ok())
        .collect()
}

/// Keeps of a Service only its identity and its ports' NodePorts.
fn strip_to_node_ports(s: &mut Service) {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    let ports: Vec<ServicePort> = s
        .spec
        .as_ref()
        .and_then(|sp| sp.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(ServicePort {
                node_port: Some(p.node_port?),
                port: p.port,
                ..Default::default()
            })
        })
        .collect();
    s.metadata = kube::api::ObjectMeta {
        name: s.metadata.name.take(),
        namespace: s.metadata.namespace.take(),
        resource_version: s.metadata.resource_version.take(),
        ..Default::default()
    };
    s.spec = (!ports.is_empty()).then(|| ServiceSpec {
        ports: Some(ports),
        ..Default::default()
    });
    s.status = None;
}

/// Starts the watch of [`NodePortCache`] over every namespace (NodePorts are the cluster's);
/// it runs until `shutdown`.
pub fn watch_node_ports(
    client: &Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> NodePortCache {
    let (store, writer) = reflector::store();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stream = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(strip_to_node_ports)
    .reflect(writer)
    .for_each(move |e| {
        match e {
            Ok(watcher::Event::InitDone) => {
                let _ = tx.send(true);
            }
            Err(e) => warn!(error = %e, "Service NodePort watch failed; retrying"),
            Ok(_) => {}
        }
        std::future::ready(())
    });
    tokio::spawn(async move {
        futures::future::select(Box::pin(stream), Box::pin(shutdown)).await;
    });
    NodePortCache { store, synced: rx }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_kept_configuration_is_read_from_the_init_containers_termination_message() {
        use k8s_openapi::api::core::v1::Pod;
        let note = format!(
            "{}listener EXTERNAL is already in it",
            crate::names::KEPT_MARK
        );
        let pod = |state: serde_json::Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "k-1"},
                "status": {"initContainerStatuses": [
                    {"name": "prepare", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
                     "state": {"terminated": {"exitCode": 0, "message": "done"}}},
                    {"name": "kafka-expose-properties", "ready": true, "restartCount": 1, "image": "i", "imageID": "", "state": state,
                     "lastState": {"terminated": {"exitCode": 0, "message": format!("{note}\n")}}}
                ]}
            }))
            .unwrap()
        };
        // From the state before a restart too, and trimmed.
        assert_eq!(kept_note(&pod(json!({"running": {}}))), Some(note.clone()));
        assert_eq!(
            kept_note(&pod(
                json!({"terminated": {"exitCode": 0, "message": "other"}})
            )),
            Some(note)
        );
        let plain: Pod = serde_json::from_value(json!({"metadata": {"name": "k-0"}})).unwrap();
        assert_eq!(kept_note(&plain), None);
        // The launcher's, in the broker container, once that container has ended.
        let broker: Pod = serde_json::from_value(json!({
            "metadata": {"name": "k-2"},
            "status": {"containerStatuses": [
                {"name": "kafka", "ready": true, "restartCount": 1, "image": "i", "imageID": "",
                 "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "message": note_of_launch()}}}
            ]}
        }))
        .unwrap();
        assert_eq!(kept_note(&broker), Some(note_of_launch()));
    }

    fn note_of_launch() -> String {
        format!(
            "{}reading /cfg/server.properties: permission denied",
            crate::names::KEPT_MARK
        )
    }

    #[test]
    fn a_service_is_kept_as_its_node_ports_alone() {
        let mut s: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "9",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                         "labels": {"app": "web"}},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "admin", "port": 81}
            ]},
            "status": {"loadBalancer": {}}
        }))
        .unwrap();
        strip_to_node_ports(&mut s);
        let mut kept = serde_json::to_value(&s).unwrap();
        kept.as_object_mut()
            .unwrap()
            .retain(|k, _| k != "apiVersion" && k != "kind");
        assert_eq!(
            kept,
            json!({"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "9"},
                   "spec": {"ports": [{"port": 80, "nodePort": 30080}]}})
        );
        assert_eq!(node_ports([&s]), [30080].into());
        let mut cluster_ip: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"ports": [{"port": 5432}]}
        }))
        .unwrap();
        strip_to_node_ports(&mut cluster_ip);
        assert!(cluster_ip.spec.is_none());
        assert!(node_ports([&cluster_ip]).is_empty());
    }
}
