//! The Service plan: a pure function from an exposed workload to the complete Services the
//! reconciler applies.
//!
//! - `<workload>-<ordinal>-external` per broker: NodePort `base + index` (or a LoadBalancer of
//!   its own), targeting the port the broker binds for the external listener and selecting that
//!   one pod by its `statefulset.kubernetes.io/pod-name` label;
//! - `<workload>-external-bootstrap` over all brokers of the workload.
//!
//! Every port carries `protocol: TCP`: server-side apply keys a Service's ports by port and
//! protocol, and a 1.20 API server does not default the protocol before merging.
//!
//! `expose=gateway` plans the same Services as ClusterIP: the backends of the brokers' TLSRoutes
//! ([`super::gateway`]), reached from the Gateway inside the cluster.
//!
//! `expose=hostport` needs no per-broker Service: each broker binds its node's port `base + i`.
//! Only the bootstrap Service is planned there.
//!
//! `expose=shared-loadbalancer` plans one LoadBalancer Service, `<workload>-external`, over every
//! broker, with a port per broker: `base + n`, targeting the named container port `kx-b<n>`. A
//! Service's endpoints are resolved per port, and a pod without a port of the target's name is
//! left out of that port's endpoints (the Endpoints and EndpointSlice controllers' `FindPort`),
//! so each port reaches exactly the one broker the Pod webhook gave that name. The bootstrap is
//! the same address with every broker's port: no second load balancer.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::adapters::Adapter;
use super::adapters::adopt::TargetPort;
use super::exposure::Exposure;
use super::workload::{Workload, WorkloadKind};
use crate::config::{AdvertisedHost, ExposeConfig, ExposeMode, ExternalTls, Placeholder, Template};
use crate::names::{
    PORT_NAME, SERVICE_PORT_NAME, bootstrap_service_name, broker_port_name, labels,
    shared_service_name, shared_service_port_name,
};

/// The ports of one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRoute {
    pub ordinal: u32,
    pub index: u32,
    pub pod: String,
    pub service: String,
    /// The advertised port: the NodePort, the hostPort, or the LoadBalancer port.
    pub port: u32,
    /// The container port the broker binds.
    pub target: u32,
}

/// How the brokers of a workload are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub brokers: Vec<BrokerRoute>,
    /// The target of the bootstrap Service: one number, or the named port on each broker.
    pub bootstrap_target: IntOrString,
}

/// The routes to each broker of `w`.
pub fn routes(w: &Workload, d: &Exposure<'_>) -> Routes {
    let cfg = &d.config;
    let brokers = (0..w.replicas)
        .map(|index| {
            let ordinal = match w.kind {
                WorkloadKind::StatefulSet => w.ordinals_start + index,
                WorkloadKind::Deployment => cfg.ordinal.unwrap_or(0),
            };
            BrokerRoute {
                ordinal,
                index,
                pod: format!("{}-{ordinal}", w.name),
                service: cfg.broker_service(&w.name, ordinal),
                port: cfg.broker_port(d.port_base, ordinal),
                target: d.target.for_ordinal(ordinal),
            }
        })
        .collect();
    let bootstrap_target = match d.target {
        TargetPort::Fixed(p) => IntOrString::Int(p as i32),
        TargetPort::PerOrdinal(_) => IntOrString::String(PORT_NAME.into()),
    };
    Routes {
        brokers,
        bootstrap_target,
    }
}

/// The address broker `r` advertises on the external listener, for people: its node's IP or
/// address (`host_ip`, when known), its LoadBalancer's address, or its rendered name.
pub fn describe_advertised(
    cfg: &ExposeConfig,
    adapter: &Adapter,
    r: &BrokerRoute,
    w: &Workload,
    host_ip: Option<&str>,
) -> String {
    let host = match (&cfg.advertised_host, adapter) {
        (_, Adapter::Adopt(plan)) => plan.host.clone(),
        (AdvertisedHost::HostIp, _) => host_ip.unwrap_or("<its node's IP>").into(),
        (AdvertisedHost::Template(t), _) => render(t, w, Some(r)),
        (AdvertisedHost::Static(h), _) => cfg.static_host(h, r.index).unwrap_or_default().into(),
        (AdvertisedHost::LoadBalancer, _) => format!("<the address of LoadBalancer {}>", r.service),
        (AdvertisedHost::Node(types), _) => host_ip.map(str::to_string).unwrap_or_else(|| {
            format!("<{} of the node it lands on>", super::pod::type_list(types))
        }),
    };
    let name = match adapter {
        Adapter::Adopt(plan) => plan.listener_name.clone(),
        _ => cfg.listener_name.clone(),
    };
    format!("{name}://{host}:{}", r.port)
}

/// The host broker `r` advertises where it is known from the configuration alone (a template or
/// a static list), as its certificate must name it.
pub fn configured_host(cfg: &ExposeConfig, r: &BrokerRoute, w: &Workload) -> Option<String> {
    match &cfg.advertised_host {
        AdvertisedHost::Template(t) => Some(render(t, w, Some(r))),
        AdvertisedHost::Static(h) => cfg.static_host(h, r.index).map(str::to_string),
        _ => None,
    }
}

/// What is known of the cluster when a bootstrap list is made.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapFacts<'a> {
    /// The node IPs of the brokers' running pods, by pod name.
    pub host_ips: &'a BTreeMap<String, String>,
    /// The LoadBalancer address of the bootstrap Service (or the shared one), once it has one.
    pub lb_address: Option<&'a str>,
    /// The bootstrap Service's NodePort.
    pub bootstrap_node_port: Option<i32>,
}

/// The external bootstrap list of workload `w` exposed as `e`, from what is known of the
/// cluster; `None` while a part of it is not known. The one answer for the address the
/// reconciler publishes and the one a policy's status previews.
pub fn bootstrap_list(w: &Workload, e: &Exposure<'_>, facts: BootstrapFacts<'_>) -> Option<String> {
    let cfg = &e.config;
    let list = match cfg.mode {
        ExposeMode::LoadBalancer => format!("{}:{}", facts.lb_address?, cfg.advertised_port),
        ExposeMode::SharedLoadBalancer => {
            shared_bootstrap(w, cfg, &routes(w, e), facts.lb_address?)
        }
        ExposeMode::NodePort => {
            let port = facts.bootstrap_node_port?;
            facts
                .host_ips
                .values()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|ip| format!("{ip}:{port}"))
                .collect::<Vec<_>>()
                .join(",")
        }
        // Every broker's name resolves to the Gateway: the bootstrap name, else every broker's.
        ExposeMode::Gateway => match &cfg.bootstrap_host {
            Some(h) => crate::kafka::host_port(h, cfg.advertised_port as u32),
            None => routes(w, e)
                .brokers
                .iter()
                .filter_map(|r| {
                    Some(crate::kafka::host_port(
                        &configured_host(cfg, r, w)?,
                        r.port,
                    ))
                })
                .collect::<Vec<_>>()
                .join(","),
        },
        ExposeMode::HostPort => routes(w, e)
            .brokers
            .iter()
            .filter_map(|r| Some(format!("{}:{}", facts.host_ips.get(&r.pod)?, r.port)))
            .collect::<Vec<_>>()
            .join(","),
    };
    (!list.is_empty()).then_some(list)
}

/// The external bootstrap of a shared load balancer whose address is `ingress`: every broker's
/// advertised address, `<host>:<base + n>`. The host is the load balancer's address, or the
/// names a `template:` or `static:` gives it.
pub fn shared_bootstrap(
    w: &Workload,
    cfg: &ExposeConfig,
    routes: &Routes,
    ingress: &str,
) -> String {
    routes
        .brokers
        .iter()
        .map(|r| {
            let host = match &cfg.advertised_host {
                AdvertisedHost::Template(t) => render(t, w, Some(r)),
                AdvertisedHost::Static(h) => cfg.static_host(h, r.index).unwrap_or_default().into(),
                _ => ingress.to_string(),
            };
            crate::kafka::host_port(&host, r.port)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Renders `t` for workload `w` and, where there is one, broker `r` (without one, `{ordinal}` and
/// `{pod}` render empty).
fn render(t: &Template, w: &Workload, r: Option<&BrokerRoute>) -> String {
    t.render(|p| match (p, r) {
        (Placeholder::Ordinal, Some(r)) => r.ordinal.to_string(),
        (Placeholder::Pod, Some(r)) => r.pod.clone(),
        (Placeholder::Ordinal | Placeholder::Pod, None) => String::new(),
        (Placeholder::StatefulSet, _) => w.name.clone(),
        (Placeholder::Namespace, _) => w.namespace.clone().unwrap_or_default(),
    })
}

/// The complete Services for an exposed workload.
pub fn plan(w: &Workload, d: &Exposure<'_>) -> Vec<Service> {
    plan_routes(w, d, &routes(w, d))
}

/// The complete Services for an exposed workload whose routes are known.
fn plan_routes(w: &Workload, d: &Exposure<'_>, routes: &Routes) -> Vec<Service> {
    let cfg = &d.config;
    if cfg.mode == ExposeMode::SharedLoadBalancer {
        return vec![shared(w, cfg, routes)];
    }
    let mut out = Vec::new();
    if cfg.mode != ExposeMode::HostPort {
        for r in &routes.brokers {
            let selector = match w.kind {
                WorkloadKind::StatefulSet => {
                    BTreeMap::from([(labels::POD_NAME.to_string(), r.pod.clone())])
                }
                // One broker per Deployment; its pods are named by the ReplicaSet.
                WorkloadKind::Deployment => pod_selector(w),
            };
            let annotations: BTreeMap<String, String> = cfg
                .service_annotations
                .iter()
                .map(|(k, t)| (k.clone(), render(t, w, Some(r))))
                .collect();
            let mut own_labels = managed_labels(w);
            own_labels.insert(labels::ORDINAL.into(), r.ordinal.to_string());
            out.push(service(
                w,
                cfg,
                &r.service,
                own_labels,
                annotations,
                selector,
                ServicePort {
                    name: Some(SERVICE_PORT_NAME.into()),
                    protocol: Some("TCP".into()),
                    port: r.port as i32,
                    target_port: Some(IntOrString::Int(r.target as i32)),
                    node_port: (cfg.mode == ExposeMode::NodePort).then_some(r.port as i32),
                    ..ServicePort::default()
                },
            ));
        }
    }
    let mut own_labels = managed_labels(w);
    own_labels.insert(labels::ROLE.into(), "bootstrap".into());
    let mut bootstrap = service(
        w,
        cfg,
        &bootstrap_service_name(&w.name),
        own_labels,
        BTreeMap::new(),
        pod_selector(w),
        ServicePort {
            name: Some(SERVICE_PORT_NAME.into()),
            protocol: Some("TCP".into()),
            port: cfg.advertised_port as i32,
            target_port: Some(routes.bootstrap_target.clone()),
            node_port: cfg.bootstrap_node_port.map(i32::from),
            ..ServicePort::default()
        },
    );
    if cfg.mode == ExposeMode::NodePort
        && cfg.external_tls != ExternalTls::Off
        && let Some(spec) = bootstrap.spec.as_mut()
    {
        // Any node's bootstrap port could hand a connection to a broker on another node, whose
        // certificate names that node's address, not the one dialled: with `Local`, a node's
        // bootstrap port reaches only the brokers on it. The bootstrap list names exactly the
        // brokers' nodes.
        spec.external_traffic_policy = Some("Local".into());
    }
    if matches!(cfg.mode, ExposeMode::HostPort | ExposeMode::Gateway)
        && let Some(spec) = bootstrap.spec.as_mut()
    {
        // Reached on each node's hostPort; the bootstrap Service serves in-cluster discovery.
        spec.type_ = Some("ClusterIP".into());
        spec.external_traffic_policy = None;
    }
    out.push(bootstrap);
    out
}

/// The one LoadBalancer Service of `expose=shared-loadbalancer`: every broker selected, a port
/// per broker targeting the container port only that broker carries.
fn shared(w: &Workload, cfg: &ExposeConfig, routes: &Routes) -> Service {
    let annotations: BTreeMap<String, String> = cfg
        .service_annotations
        .iter()
        .map(|(k, t)| {
            // {ordinal} and {pod} are refused with a shared Service.
            (k.clone(), render(t, w, None))
        })
        .collect();
    let mut own_labels = managed_labels(w);
    own_labels.insert(labels::ROLE.into(), labels::ROLE_SHARED.into());
    let mut svc = service(
        w,
        cfg,
        &shared_service_name(&w.name),
        own_labels,
        annotations,
        pod_selector(w),
        ServicePort::default(),
    );
    if let Some(spec) = svc.spec.as_mut() {
        spec.ports = Some(
            routes
                .brokers
                .iter()
                .map(|r| ServicePort {
                    name: Some(shared_service_port_name(r.ordinal)),
                    protocol: Some("TCP".into()),
                    port: r.port as i32,
                    target_port: Some(IntOrString::String(broker_port_name(r.ordinal))),
                    ..ServicePort::default()
                })
                .collect(),
        );
    }
    svc
}

/// The labels every broker pod of `w` carries: the workload's selector and the exposed label.
fn pod_selector(w: &Workload) -> BTreeMap<String, String> {
    let mut s = w.selector.clone();
    s.insert(labels::EXPOSED.into(), "true".into());
    s
}

/// The labels of everything kafka-expose makes for a workload.
pub fn managed_labels(w: &Workload) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::WORKLOAD.to_string(), w.name.clone()),
    ])
}

/// The owner references of what kafka-expose makes for a workload: the workload, once it has a
/// uid.
pub fn owner_references(w: &Workload) -> Option<Vec<OwnerReference>> {
    let uid = w.uid.clone()?;
    Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: w.kind.as_str().into(),
        name: w.name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }])
}

fn service(
    w: &Workload,
    cfg: &ExposeConfig,
    name: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    port: ServicePort,
) -> Service {
    let lb = cfg.mode.is_load_balancer();
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: w.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: owner_references(w),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(
                match cfg.mode {
                    // Reached through the Gateway, which routes to it inside the cluster.
                    ExposeMode::Gateway => "ClusterIP",
                    _ if lb => "LoadBalancer",
                    _ => "NodePort",
                }
                .into(),
            ),
            selector: Some(selector),
            ports: Some(vec![port]),
            external_traffic_policy: (cfg.mode != ExposeMode::Gateway)
                .then(|| cfg.external_traffic_policy.as_str().into()),
            load_balancer_source_ranges: (lb && !cfg.lb_source_ranges.is_empty())
                .then(|| cfg.lb_source_ranges.clone()),
            load_balancer_class: cfg.lb_class.clone().filter(|_| lb),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The Services of a namespace, as the cluster holds them now: read when an exposed workload is
/// admitted, so that a conflict with another owner's Service is a warning where the user applies
/// the workload, not only an Event later.
pub trait NamespaceServices: Send + Sync {
    fn list<'a>(
        &'a self,
        namespace: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<Service>, String>> + Send + 'a>>;
}

/// The Service plan once the Services that others made are respected.
#[derive(Debug, Clone, Default)]
pub struct ServicePlan {
    /// What kafka-expose applies.
    pub services: Vec<Service>,
    /// Brokers another Service already routes to: `(ordinal, that Service's name)`.
    pub served_by_others: Vec<(u32, String)>,
    /// Planned Services left out because another owner holds their name or NodePort.
    pub conflicts: Vec<String>,
}

/// Whether kafka-expose manages a Service.
pub fn is_managed(s: &Service) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .map(String::as_str)
        == Some(labels::MANAGER)
}

/// Whether `s` is one of the Services kafka-expose manages for workload `w`.
fn is_own(s: &Service, w: &Workload) -> bool {
    is_managed(s)
        && s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::WORKLOAD))
            .is_some_and(|name| *name == w.name)
}

/// Who made a Service, for people: kafka-expose and the workload it made it for, else its
/// managed-by label, else its first field manager.
fn maker(s: &Service) -> String {
    let own = s.metadata.labels.as_ref();
    if is_managed(s)
        && let Some(owner) = own.and_then(|l| l.get(labels::WORKLOAD))
    {
        return format!("{} for workload {owner}", labels::MANAGER);
    }
    let label = own.and_then(|l| l.get(labels::MANAGED_BY)).cloned();
    let manager = || s.metadata.managed_fields.as_ref()?.first()?.manager.clone();
    label
        .or_else(manager)
        .unwrap_or_else(|| "someone else".into())
}

/// Whether `s` selects pod `pod` (ordinal `ordinal`) alone: by its pod-name or pod-index label.
fn selects_only(s: &Service, pod: &str, ordinal: u32) -> bool {
    let Some(sel) = s.spec.as_ref().and_then(|x| x.selector.as_ref()) else {
        return false;
    };
    sel.get(labels::POD_NAME).is_some_and(|p| p == pod)
        || sel
            .get(labels::POD_INDEX)
            .is_some_and(|i| *i == ordinal.to_string())
}

fn node_ports(s: &Service) -> impl Iterator<Item = u32> + '_ {
    s.spec
        .iter()
        .flat_map(|x| x.ports.iter().flatten())
        .filter_map(|p| u32::try_from(p.node_port?).ok())
}

/// The Services an exposed workload needs, given the Services already in its namespace
/// (`existing`: others' and kafka-expose's for other workloads; the workload's own are ignored
/// there). A broker that another NodePort or LoadBalancer Service already routes to, on the port
/// it advertises, gets no Service of kafka-expose's; a planned Service whose name or NodePort
/// another owner (or another workload) holds is left out and reported, never taken over.
pub fn plan_around(
    w: &Workload,
    d: &Exposure<'_>,
    routes: &Routes,
    existing: &[Service],
) -> ServicePlan {
    let foreign: Vec<&Service> = existing
        .iter()
        .filter(|s| !is_own(s, w) && s.metadata.namespace == w.namespace)
        .collect();
    let mode = d.config.mode;
    let mut out = ServicePlan::default();
    for svc in plan_routes(w, d, routes) {
        let name = svc.metadata.name.clone().unwrap_or_default();
        // A shared load balancer replaces per-broker Services, whoever made them.
        let broker = routes
            .brokers
            .iter()
            .find(|r| r.service == name)
            .filter(|_| mode != ExposeMode::SharedLoadBalancer);
        if let Some(r) = broker {
            let serves = foreign.iter().find(|s| {
                let kind = s.spec.as_ref().and_then(|x| x.type_.as_deref());
                let on_port = match mode {
                    ExposeMode::NodePort => node_ports(s).any(|p| p == r.port),
                    ExposeMode::LoadBalancer => {
                        kind == Some("LoadBalancer")
                            && s.spec
                                .iter()
                                .flat_map(|x| x.ports.iter().flatten())
                                .any(|p| p.port as u32 == r.port)
                    }
                    ExposeMode::HostPort | ExposeMode::SharedLoadBalancer | ExposeMode::Gateway => {
                        false
                    }
                };
                matches!(kind, Some("NodePort" | "LoadBalancer"))
                    && on_port
                    && selects_only(s, &r.pod, r.ordinal)
            });
            if let Some(s) = serves {
                let other = s.metadata.name.clone().unwrap_or_default();
                out.served_by_others.push((r.ordinal, other));
                continue;
            }
        }
        let wanted: Vec<u32> = node_ports(&svc).collect();
        let clash = foreign.iter().find_map(|s| {
            let other = s.metadata.name.clone().unwrap_or_default();
            if other == name {
                return Some(format!(
                    "Service {name}: it exists, made by {}; kafka-expose does not take it over",
                    maker(s)
                ));
            }
            let port = node_ports(s).find(|p| wanted.contains(p))?;
            Some(format!(
                "Service {name} (NodePort {port}): the port is held by Service {other}, made by {}; kafka-expose does not take it over",
                maker(s)
            ))
        });
        match clash {
            Some(c) => out.conflicts.push(c),
            None => out.services.push(svc),
        }
    }
    out
}

/// The first ingress IP or hostname of a LoadBalancer Service.
pub fn ingress(svc: &Service) -> Option<String> {
    let i = svc
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .clone();
    i.ip.or(i.hostname).filter(|s| !s.is_empty())
}
