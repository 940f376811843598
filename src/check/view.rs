//! Reads the cluster's side of each exposed workload's path: its published bootstrap, each
//! broker's Service and that Service's Endpoints, the broker pod, and its node. Read-only: `get`
//! and `list` on StatefulSets, Deployments, Services, Endpoints, Pods and Nodes.

use crate::engine::restart;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::client::host_port;
use super::path::{BrokerPath, ServiceHop, WorkloadPath};
use super::report::WorkloadRef;
use crate::cluster::caches::ingress;
use crate::names::{
    PREFIX, keys, labels, own, shared_service_port_name, shared_service_port_ordinal,
};

/// The exposed workloads of `namespace` (or the one named), each with its brokers' paths.
pub async fn workloads(
    client: &Client,
    namespace: &str,
    name: Option<&str>,
) -> Result<Vec<WorkloadPath>, String> {
    let mut found: Vec<(WorkloadRef, BTreeMap<String, String>, u32)> = Vec::new();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    for s in list(&sts, namespace, "StatefulSets").await? {
        let (replicas, template) = (s.spec.replicas, s.spec.template.metadata.as_ref());
        found.push(candidate("StatefulSet", &s, replicas, template));
    }
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for d in list(&deploys, namespace, "Deployments").await? {
        let (replicas, template) = (d.spec.replicas, d.spec.template.metadata.as_ref());
        found.push(candidate("Deployment", &d, replicas, template));
    }
    if let Some(name) = name {
        found.retain(|(w, _, _)| w.name == name);
        match found.as_slice() {
            [] => {
                return Err(format!(
                    "no StatefulSet or Deployment {name} in {namespace}"
                ));
            }
            [(w, facts, _)] if facts.is_empty() => {
                return Err(format!(
                    "{} {namespace}/{name} is not exposed: it has no kafka-expose.io/expose annotation and no policy applies",
                    w.kind
                ));
            }
            _ => {}
        }
    }
    found.retain(|(_, facts, _)| !facts.is_empty());
    let mut out = Vec::new();
    for (w, facts, replicas) in found {
        out.push(workload(client, w, &facts, replicas).await?);
    }
    Ok(out)
}

/// A workload, its exposure facts (none when it is not exposed) and its replica count.
fn candidate<K: kube::Resource>(
    kind: &str,
    w: &K,
    replicas: Option<i32>,
    template: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> (WorkloadRef, BTreeMap<String, String>, u32) {
    let meta = w.meta();
    let labels = template.and_then(|m| m.labels.clone()).unwrap_or_default();
    let template_annotations = template
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let reference = WorkloadRef {
        kind: kind.into(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    };
    let facts = exposure(
        &meta.annotations.clone().unwrap_or_default(),
        &template_annotations,
        &labels,
    );
    (reference, facts, replicas.unwrap_or(1).max(0) as u32)
}

/// The workload's exposure facts (`mode`, `bootstrap`), or nothing when it is not exposed. The
/// mode is the workload's own annotation, else its pod template's (where a policy's settings
/// and the webhook's copies are).
fn exposure(
    annotations: &BTreeMap<String, String>,
    template_annotations: &BTreeMap<String, String>,
    template_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let get = |k: &str| annotations.get(&format!("{PREFIX}{k}")).cloned();
    let mode = get(keys::EXPOSE).or_else(|| {
        template_annotations
            .get(&format!("{PREFIX}{}", keys::EXPOSE))
            .cloned()
    });
    let off = mode
        .as_deref()
        .is_some_and(|m| matches!(crate::config::values::expose(m), Ok(None)));
    let exposed = !off
        && (template_labels.contains_key(labels::EXPOSED)
            || mode.is_some()
            || get(own::BOOTSTRAP_SERVERS).is_some());
    let mut facts = BTreeMap::new();
    if exposed {
        let mode = mode.map(|m| m.to_ascii_lowercase());
        facts.insert("mode".into(), mode.unwrap_or_else(|| "nodeport".into()));
        if let Some(b) = get(own::BOOTSTRAP_SERVERS) {
            facts.insert("bootstrap".into(), b);
        }
    }
    facts
}

async fn workload(
    client: &Client,
    w: WorkloadRef,
    facts: &BTreeMap<String, String>,
    replicas: u32,
) -> Result<WorkloadPath, String> {
    let ns = w.namespace.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let selector = labels::workload_selector(&w.name);
    let mut by_ordinal: BTreeMap<u32, Service> = BTreeMap::new();
    let mut bootstrap: Option<Service> = None;
    // `expose=shared-loadbalancer`: one Service, each broker on its own port of it.
    let mut shared: Option<Service> = None;
    for s in services
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing Services in {ns}: {e}"))?
        .items
    {
        let role = s.labels().get(labels::ROLE).cloned();
        if role.as_deref() == Some("bootstrap") {
            bootstrap = Some(s);
        } else if role.as_deref() == Some(labels::ROLE_SHARED) {
            shared = Some(s);
        } else if let Some(o) = s.labels().get(labels::ORDINAL).and_then(|o| o.parse().ok()) {
            by_ordinal.insert(o, s);
        }
    }
    let shared_ordinals = shared.iter().flat_map(|s| {
        s.spec
            .iter()
            .flat_map(|x| x.ports.iter().flatten())
            .filter_map(|p| shared_service_port_ordinal(p.name.as_deref()?))
            .collect::<Vec<_>>()
    });
    let ordinals: Vec<u32> = (0..replicas)
        .chain(by_ordinal.keys().copied())
        .chain(shared_ordinals)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let nodes: Api<Node> = Api::all(client.clone());
    let mut brokers = Vec::new();
    let mut all_hosts: Vec<String> = Vec::new();
    // Brokers share nodes: each node's addresses are read once.
    let mut node_cache: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for ordinal in ordinals {
        let svc = by_ordinal.get(&ordinal);
        let pod_name = svc
            .and_then(|s| {
                s.spec
                    .as_ref()?
                    .selector
                    .as_ref()?
                    .get(labels::POD_NAME)
                    .cloned()
            })
            .unwrap_or_else(|| format!("{}-{ordinal}", w.name));
        let pod = pods
            .get_opt(&pod_name)
            .await
            .map_err(|e| format!("reading pod {ns}/{pod_name}: {e}"))?;
        let node = pod
            .as_ref()
            .and_then(|p| p.spec.as_ref()?.node_name.clone());
        let mut node_addresses = Vec::new();
        let mut hosts = Vec::new();
        if let Some(n) = &node {
            if !node_cache.contains_key(n) {
                let addresses = match nodes.get_opt(n).await {
                    Ok(Some(found)) => found
                        .status
                        .and_then(|s| s.addresses)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|a| (a.type_, a.address))
                        .collect(),
                    _ => Vec::new(),
                };
                node_cache.insert(n.clone(), addresses);
            }
            for (type_, address) in node_cache.get(n).into_iter().flatten() {
                node_addresses.push(format!("{type_}={address}"));
                hosts.push(address.clone());
            }
        }
        if let Some(ip) = pod
            .as_ref()
            .and_then(|p| p.status.as_ref()?.host_ip.clone())
            .filter(|ip| !hosts.contains(ip))
        {
            hosts.push(ip);
        }
        let service = match (svc, &shared) {
            (Some(s), _) => Some(hop(s, None, &endpoints, &hosts).await?),
            (None, Some(s)) => {
                let port = shared_service_port_name(ordinal);
                Some(hop(s, Some(&port), &endpoints, &hosts).await?)
            }
            (None, None) => None,
        };
        for h in hosts {
            if !all_hosts.contains(&h) {
                all_hosts.push(h);
            }
        }
        let ingress_of = |name: &str| {
            [svc, shared.as_ref()]
                .into_iter()
                .flatten()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .and_then(crate::engine::services::ingress)
        };
        let stale = pod.as_ref().and_then(|p| {
            let addresses = node.as_ref().and_then(|n| node_cache.get(n));
            restart::pod_stale(p, &w.name, addresses.map(Vec::as_slice), ingress_of)
        });
        brokers.push(BrokerPath {
            ordinal,
            stale,
            pod: pod_name,
            pod_ready: pod.as_ref().map(ready),
            deleting: pod
                .as_ref()
                .is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
            node,
            node_addresses,
            service,
        });
    }
    // A shared load balancer is its own bootstrap: every broker's port on one address.
    let bootstrap_service = match bootstrap.as_ref().or(shared.as_ref()) {
        Some(s) => Some(hop(s, None, &endpoints, &all_hosts).await?),
        None => None,
    };
    Ok(WorkloadPath {
        workload: w,
        // An exposed workload whose mode does not parse is diagnosed as the default's.
        mode: facts
            .get("mode")
            .and_then(|m| m.parse().ok())
            .unwrap_or(crate::config::ExposeMode::NodePort),
        bootstrap: facts.get("bootstrap").cloned(),
        bootstrap_service,
        brokers,
    })
}

/// The hop through Service `s`: through its port named `port_name`, or its first port; its
/// endpoints are those of that port.
async fn hop(
    s: &Service,
    port_name: Option<&str>,
    endpoints: &Api<Endpoints>,
    hosts: &[String],
) -> Result<ServiceHop, String> {
    let name = s.name_any();
    let spec = s.spec.clone().unwrap_or_default();
    let port = spec.ports.as_ref().and_then(|ps| match port_name {
        Some(n) => ps.iter().find(|p| p.name.as_deref() == Some(n)),
        None => ps.first(),
    });
    let port = port.cloned();
    let port_label = port.as_ref().and_then(|p| p.name.clone());
    let node_port = port.as_ref().and_then(|p| p.node_port);
    let port = port.map_or(0, |p| p.port);
    let ingress: Vec<String> = ingress(s).into_iter().collect();
    let (mut ready, mut not_ready) = (0, 0);
    if let Some(ep) = endpoints
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading Endpoints {name}: {e}"))?
    {
        for subset in ep.subsets.unwrap_or_default() {
            // Endpoints are resolved per port: a shared Service's port has its broker alone.
            let serves = port_name.is_none()
                || subset
                    .ports
                    .iter()
                    .flatten()
                    .any(|p| p.name.is_some() && p.name == port_label);
            if !serves {
                continue;
            }
            ready += subset.addresses.map_or(0, |a| a.len());
            not_ready += subset.not_ready_addresses.map_or(0, |a| a.len());
        }
    }
    let external = match node_port {
        Some(np) if spec.type_.as_deref() != Some("LoadBalancer") || ingress.is_empty() => {
            hosts.iter().map(|h| host_port(h, np)).collect()
        }
        _ => ingress.iter().map(|h| host_port(h, port)).collect(),
    };
    Ok(ServiceHop {
        name,
        type_: spec.type_.unwrap_or_else(|| "ClusterIP".into()),
        port,
        node_port,
        ingress,
        ready_endpoints: ready,
        not_ready_endpoints: not_ready,
        external,
        route: s
            .annotations()
            .get(crate::engine::gateway::ROUTE_ANNOTATION)
            .cloned(),
    })
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn list<K>(api: &Api<K>, ns: &str, what: &str) -> Result<Vec<K>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing {what} in {ns}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_policys_mode_in_the_template_counts_and_off_is_not_exposed() {
        let by_policy = exposure(
            &map(&[]),
            &map(&[("kafka-expose.io/expose", "LoadBalancer")]),
            &map(&[("kafka-expose.io/exposed", "true")]),
        );
        assert_eq!(
            by_policy.get("mode").map(String::as_str),
            Some("loadbalancer")
        );
        let off = exposure(
            &map(&[("kafka-expose.io/expose", "off")]),
            &map(&[]),
            &map(&[]),
        );
        assert!(off.is_empty());
        let plain = exposure(&map(&[("app", "kafka")]), &map(&[]), &map(&[]));
        assert!(plain.is_empty(), "not exposed");
    }
}
