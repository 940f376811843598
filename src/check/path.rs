//! The cluster's side of each broker's path, and where a broken path breaks.
//!
//! From the outside a broker is only reachable or not. With the cluster's objects beside it
//! ([`view`](super::view) reads them) the report can say which hop is missing: the broker has no
//! Service, the Service has no ready endpoint, the broker advertises an address the Service does
//! not publish, or everything in the cluster is in place and the network between here and the
//! address drops or refuses the connection. [`join`] and [`diagnose`] are pure.

use std::net::IpAddr;

use serde::Serialize;

use super::report::{BrokerReport, Problem, ProblemKind, Target, WorkloadRef};
use crate::config::ExposeMode;

/// One exposed workload as the API server shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadPath {
    pub workload: WorkloadRef,
    /// How the brokers are exposed.
    pub mode: ExposeMode,
    /// `kafka-expose.io/bootstrap-servers`, as published.
    pub bootstrap: Option<String>,
    /// The bootstrap Service, which selects every broker.
    pub bootstrap_service: Option<ServiceHop>,
    pub brokers: Vec<BrokerPath>,
}

/// One broker's hops inside the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerPath {
    pub ordinal: u32,
    pub pod: String,
    /// None when the pod does not exist.
    pub pod_ready: Option<bool>,
    /// The pod has a deletionTimestamp: it is going, whatever its Ready condition still says,
    /// and no Service routes to it any more.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's addresses, `Type=address`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceHop>,
    /// Why the broker advertises what it would no longer be given (its node's or
    /// LoadBalancer's address changed under it): it needs a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
}

/// The broker's own Service and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceHop {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
    /// The LoadBalancer's ingress IPs and host names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<String>,
    pub ready_endpoints: usize,
    pub not_ready_endpoints: usize,
    /// Where the outside reaches this broker through the Service: `<node address>:<NodePort>` for
    /// the broker's node, or `<ingress>:<port>`.
    pub external: Vec<String>,
    /// `expose=gateway`: what the Gateway said of the TLSRoute of the same name, as the
    /// reconciler last read it (`kafka-expose.io/route` on the Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

impl ServiceHop {
    /// `Service <name> <type> <where>, <n> ready endpoint(s), <m> not ready`.
    pub fn summary(&self) -> String {
        let at = if self.type_ == "LoadBalancer" {
            let host = if self.ingress.is_empty() {
                "(no address yet)".to_string()
            } else {
                self.ingress.join(",")
            };
            format!("{host}:{}", self.port)
        } else {
            self.node_port
                .map_or_else(|| self.port.to_string(), |np| np.to_string())
        };
        let route = match &self.route {
            Some(said) => format!("; TLSRoute {}: {said}", self.name),
            None => String::new(),
        };
        format!(
            "Service {} {} {at}, {} ready endpoint(s), {} not ready{route}",
            self.name, self.type_, self.ready_endpoints, self.not_ready_endpoints
        )
    }
}

impl BrokerPath {
    /// One line for people.
    pub fn summary(&self) -> String {
        let pod = match self.pod_ready {
            None => format!("pod {} does not exist", self.pod),
            Some(ready) => format!(
                "pod {} ({}){}",
                self.pod,
                match (self.deleting, ready) {
                    (true, _) => "being deleted",
                    (false, true) => "Ready",
                    (false, false) => "not Ready",
                },
                self.node
                    .as_ref()
                    .map(|n| format!(" on node {n}"))
                    .unwrap_or_default()
            ),
        };
        match &self.service {
            None => format!("no Service; {pod}"),
            Some(s) => format!("{}; {pod}", s.summary()),
        }
    }

    /// Whether the Service publishes `advertised`: exactly, or (for a DNS name kafka-expose
    /// cannot resolve on the cluster's behalf) by port alone.
    fn publishes(&self, advertised: &str) -> Option<bool> {
        let s = self.service.as_ref()?;
        if s.external.iter().any(|e| e == advertised) {
            return Some(true);
        }
        let (host, port) = advertised.rsplit_once(':')?;
        let port: i32 = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let wanted = self.external_port()?;
        Some(port == wanted && host.parse::<IpAddr>().is_err() && !s.external.is_empty())
    }

    /// The Service port the outside would use: its port on the LoadBalancer's address, else its
    /// NodePort.
    fn external_port(&self) -> Option<i32> {
        let s = self.service.as_ref()?;
        if s.type_ == "LoadBalancer" && !s.ingress.is_empty() {
            return Some(s.port);
        }
        Some(s.node_port.unwrap_or(s.port))
    }
}

/// Puts the cluster view beside the outside view: each advertised broker gets the path whose
/// Service publishes its address (or its port), a broker the cluster knows but the bootstrap did
/// not advertise gets a row of its own, and every broken row gets its diagnosis.
pub fn join(target: &mut Target, wp: &WorkloadPath) {
    let mut unmatched: Vec<&BrokerPath> = wp.brokers.iter().collect();
    for report in &mut target.brokers {
        let Some(adv) = report.advertised.clone() else {
            continue;
        };
        let exact = unmatched
            .iter()
            .position(|p| p.publishes(&adv) == Some(true));
        let by_port = || {
            let port: i32 = adv.rsplit_once(':')?.1.parse().ok()?;
            unmatched
                .iter()
                .position(|p| p.external_port() == Some(port))
        };
        if let Some(i) = exact.or_else(by_port) {
            report.cluster = Some(unmatched.remove(i).clone());
        }
    }
    let bootstrap_answered = target.bootstrap.answered_by.is_some();
    for p in unmatched {
        let problem = if bootstrap_answered {
            Problem::new(
                ProblemKind::NotAdvertised,
                "the cluster's metadata does not list this broker: it is not running, or not registered with the cluster",
            )
        } else {
            Problem::new(
                ProblemKind::BootstrapUnanswered,
                "not probed: the bootstrap gave no broker list",
            )
        };
        target.brokers.push(BrokerReport {
            problem: Some(problem),
            cluster: Some(p.clone()),
            ..BrokerReport::default()
        });
    }
    for r in &mut target.brokers {
        // A broker that advertises an address it would no longer be given is not ok, even where
        // the old address still answers: clients that learn it from the metadata may not reach it.
        if r.cluster.as_ref().is_some_and(|c| c.stale.is_some()) {
            r.ok = false;
        }
        if !r.ok {
            r.diagnosis = diagnose(r, wp.mode);
        }
    }
    if let Some(p) = &target.bootstrap.problem {
        target.bootstrap.diagnosis = diagnose_bootstrap(p, wp);
    }
    target.bootstrap.service = wp.bootstrap_service.clone();
    target.ok = target.ok && target.brokers.iter().all(|b| b.ok);
}

/// Where the path to the bootstrap breaks, when no bootstrap address answered.
pub fn diagnose_bootstrap(problem: &Problem, wp: &WorkloadPath) -> Option<Problem> {
    if matches!(
        problem.kind,
        ProblemKind::NoBootstrap | ProblemKind::BadBootstrap
    ) {
        return None;
    }
    let Some(svc) = &wp.bootstrap_service else {
        if wp.mode == ExposeMode::HostPort {
            return None;
        }
        return Some(Problem::new(
            ProblemKind::NoService,
            "the workload has no bootstrap Service: the reconciler has not made it (read the workload's kafka-expose.io/status and its Events)",
        ));
    };
    if svc.ready_endpoints == 0 {
        let why = if svc.not_ready_endpoints > 0 {
            "no broker is Ready"
        } else {
            "it selects no pod, so the brokers lack its labels (kafka-expose.io/exposed comes from the workload webhook: was the pod template mutated?)"
        };
        return Some(Problem::new(
            ProblemKind::NoReadyEndpoint,
            format!(
                "the bootstrap Service {} has no ready endpoint: {why}",
                svc.name
            ),
        ));
    }
    let outside = problem.kind.is_connection() || problem.kind == ProblemKind::BootstrapUnreachable;
    outside.then(|| {
        Problem::new(
            ProblemKind::BlockedOutsideTheCluster,
            format!(
                "in the cluster the bootstrap Service {} has {} ready endpoint(s): a firewall, security group or network between here and {} stops it",
                svc.name,
                svc.ready_endpoints,
                wp.bootstrap.as_deref().unwrap_or("the address")
            ),
        )
    })
}

/// Where a broken broker's path breaks, as far as the cluster's objects tell.
pub fn diagnose(r: &BrokerReport, mode: ExposeMode) -> Option<Problem> {
    let kind = r.problem.as_ref().map(|p| p.kind);
    let adv = r.advertised.as_deref().or(r.probed_at.as_deref());
    let Some(path) = &r.cluster else {
        return adv.map(|a| {
            Problem::new(
                ProblemKind::NoService,
                format!(
                    "no Service of the workload publishes {a}: the broker advertises an address kafka-expose did not give it (another listener, or an override)"
                ),
            )
        });
    };
    if let Some(stale) = &path.stale {
        return Some(Problem::new(
            ProblemKind::StaleAddress,
            format!(
                "broker pod {} {stale}: Kafka reads its listeners only at start, so it needs a restart (kafka-expose restarts it with on-address-change: restart, the default; the workload's kafka-expose.io/restart says where that stands)",
                path.pod
            ),
        ));
    }
    if path.pod_ready.is_none() {
        return Some(Problem::new(
            ProblemKind::NoPod,
            format!("pod {} does not exist", path.pod),
        ));
    }
    // A pod that is going is the break, whichever hop shows it first: its endpoints leave the
    // Service as soon as its deletion starts, while its Ready condition may still say True.
    if path.deleting {
        return Some(Problem::new(
            ProblemKind::PodDeleting,
            format!(
                "pod {} is being deleted: nothing routes to broker {} until the workload's controller makes it again and it is Ready",
                path.pod, path.ordinal
            ),
        ));
    }
    let Some(svc) = &path.service else {
        if mode == ExposeMode::HostPort {
            return (path.pod_ready == Some(false)).then(|| {
                Problem::new(
                    ProblemKind::PodNotReady,
                    format!("pod {} is not Ready", path.pod),
                )
            });
        }
        return Some(Problem::new(
            ProblemKind::NoService,
            format!(
                "broker {} has no Service: the reconciler has not made it (read the workload's kafka-expose.io/status and its Events)",
                path.ordinal
            ),
        ));
    };
    if svc.ready_endpoints == 0 {
        let why = match path.pod_ready {
            Some(false) => format!("pod {} is not Ready", path.pod),
            // A shared load balancer's port reaches a broker by its named container port.
            _ if mode == ExposeMode::SharedLoadBalancer => format!(
                "pod {} lacks the container port {} that this port targets (made before the workload was exposed, or while the Pod webhook was away: delete the pod to have it made again)",
                path.pod,
                crate::names::broker_port_name(path.ordinal)
            ),
            _ => format!("the Service does not select pod {}", path.pod),
        };
        return Some(Problem::new(
            ProblemKind::NoReadyEndpoint,
            format!(
                "Service {} has no ready endpoint: {why}. Nothing answers behind it until it has one",
                svc.name
            ),
        ));
    }
    if svc.type_ == "LoadBalancer" && svc.ingress.is_empty() {
        return Some(Problem::new(
            ProblemKind::NoLoadBalancerAddress,
            format!(
                "Service {} has no load balancer address yet: the cloud has not provisioned it (its Events say why)",
                svc.name
            ),
        ));
    }
    if let Some(a) = adv
        && path.publishes(a) == Some(false)
    {
        return Some(Problem::new(
            ProblemKind::AddressMismatch,
            format!(
                "the broker advertises {a}, but Service {} is reached at {}",
                svc.name,
                svc.external.join(", ")
            ),
        ));
    }
    match kind {
        Some(ProblemKind::WrongNode) => Some(Problem::new(
            ProblemKind::WrongRoute,
            format!(
                "Service {} publishes this address for pod {}, yet another broker answers there: something in front of the Service (a proxy, a port forward, a second Service on the port) routes it elsewhere",
                svc.name, path.pod
            ),
        )),
        Some(k) if k.is_connection() => Some(Problem::new(
            ProblemKind::BlockedOutsideTheCluster,
            format!(
                "in the cluster the path is complete (Service {} has a ready endpoint and publishes {}): a firewall, security group or network between here and the address stops it",
                svc.name,
                adv.unwrap_or("the address")
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(ready: usize, external: &str) -> BrokerPath {
        BrokerPath {
            ordinal: 1,
            pod: "kafka-1".into(),
            pod_ready: Some(ready > 0),
            deleting: false,
            node: Some("n1".into()),
            node_addresses: vec!["InternalIP=10.0.0.1".into()],
            service: Some(ServiceHop {
                name: "kafka-1-external".into(),
                type_: "NodePort".into(),
                port: 9094,
                node_port: Some(31091),
                ingress: vec![],
                ready_endpoints: ready,
                not_ready_endpoints: 1 - ready,
                external: vec![external.into()],
                route: None,
            }),
            stale: None,
        }
    }

    fn failed(kind: ProblemKind, adv: &str, p: BrokerPath) -> BrokerReport {
        BrokerReport {
            node_id: Some(1),
            advertised: Some(adv.into()),
            problem: Some(Problem::new(kind, "x")),
            cluster: Some(p),
            ..BrokerReport::default()
        }
    }

    #[test]
    fn behind_a_gateway_each_row_says_what_the_gateway_said_of_its_route() {
        let mut p = path(1, "kafka-1.gw.example.com:443");
        let hop = p.service.as_mut().unwrap();
        hop.type_ = "ClusterIP".into();
        hop.node_port = None;
        hop.route = Some("refused: NotAllowedByListeners: no listener allows routes".into());
        assert_eq!(
            hop.summary(),
            "Service kafka-1-external ClusterIP 9094, 1 ready endpoint(s), 0 not ready; TLSRoute kafka-1-external: refused: NotAllowedByListeners: no listener allows routes"
        );
    }

    #[test]
    fn a_service_without_a_ready_endpoint_is_where_the_path_breaks() {
        let r = failed(
            ProblemKind::ConnectionRefused,
            "10.0.0.1:31091",
            path(0, "10.0.0.1:31091"),
        );
        let d = diagnose(&r, ExposeMode::NodePort).unwrap();
        assert_eq!(d.kind, ProblemKind::NoReadyEndpoint);
        assert!(d.message.contains("kafka-1 is not Ready"), "{}", d.message);
    }

    #[test]
    fn a_pod_being_deleted_is_named_as_the_break_even_while_it_still_says_ready() {
        let mut p = path(0, "10.0.0.1:31091");
        p.pod_ready = Some(true);
        p.deleting = true;
        if let Some(svc) = p.service.as_mut() {
            svc.not_ready_endpoints = 0;
        }
        assert!(
            p.summary()
                .contains("pod kafka-1 (being deleted) on node n1"),
            "{}",
            p.summary()
        );
        let r = failed(ProblemKind::ConnectionRefused, "10.0.0.1:31091", p);
        let d = diagnose(&r, ExposeMode::NodePort).unwrap();
        assert_eq!(d.kind, ProblemKind::PodDeleting);
        assert!(
            d.message.contains("pod kafka-1 is being deleted"),
            "{}",
            d.message
        );
    }

    #[test]
    fn a_shared_load_balancers_port_without_its_broker_names_the_missing_container_port() {
        let mut p = path(0, "203.0.113.7:32401");
        p.pod_ready = Some(true);
        if let Some(svc) = p.service.as_mut() {
            svc.name = "kafka-external".into();
            svc.type_ = "LoadBalancer".into();
            svc.ingress = vec!["203.0.113.7".into()];
            svc.not_ready_endpoints = 0;
        }
        let r = failed(ProblemKind::ConnectionRefused, "203.0.113.7:32401", p);
        let d = diagnose(&r, ExposeMode::SharedLoadBalancer).unwrap();
        assert_eq!(d.kind, ProblemKind::NoReadyEndpoint);
        assert!(
            d.message.contains("lacks the container port kx-b1"),
            "{}",
            d.message
        );
    }

    #[test]
    fn an_address_the_service_does_not_publish_is_named_with_the_one_it_does() {
        let r = failed(
            ProblemKind::ConnectTimeout,
            "10.0.0.9:31091",
            path(1, "10.0.0.1:31091"),
        );
        let d = diagnose(&r, ExposeMode::NodePort).unwrap();
        assert_eq!(d.kind, ProblemKind::AddressMismatch);
        assert!(d.message.contains("10.0.0.1:31091"));
    }

    #[test]
    fn a_complete_path_that_times_out_blames_the_network_outside() {
        let r = failed(
            ProblemKind::ConnectTimeout,
            "10.0.0.1:31091",
            path(1, "10.0.0.1:31091"),
        );
        assert_eq!(
            diagnose(&r, ExposeMode::NodePort).unwrap().kind,
            ProblemKind::BlockedOutsideTheCluster
        );
    }

    fn load_balancer(ingress: &[&str]) -> BrokerPath {
        let mut p = path(1, "unused:1");
        let svc = p.service.as_mut().unwrap();
        svc.type_ = "LoadBalancer".into();
        svc.node_port = Some(31091);
        svc.ingress = ingress.iter().map(|i| i.to_string()).collect();
        svc.external = ingress.iter().map(|i| format!("{i}:9094")).collect();
        p
    }

    #[test]
    fn a_load_balancer_publishes_its_ingress_on_the_service_port() {
        let p = load_balancer(&["203.0.113.7"]);
        assert_eq!(p.publishes("203.0.113.7:9094"), Some(true));
        assert_eq!(p.publishes("10.0.0.1:31091"), Some(false));
        assert!(
            p.summary()
                .starts_with("Service kafka-1-external LoadBalancer 203.0.113.7:9094"),
            "{}",
            p.summary()
        );
        let r = failed(ProblemKind::ConnectTimeout, "10.0.0.1:31091", p);
        assert_eq!(
            diagnose(&r, ExposeMode::LoadBalancer).unwrap().kind,
            ProblemKind::AddressMismatch
        );
    }

    #[test]
    fn a_load_balancer_without_an_address_is_where_the_path_breaks() {
        let r = failed(
            ProblemKind::ConnectTimeout,
            "203.0.113.7:9094",
            load_balancer(&[]),
        );
        let d = diagnose(&r, ExposeMode::LoadBalancer).unwrap();
        assert_eq!(d.kind, ProblemKind::NoLoadBalancerAddress);
    }

    #[test]
    fn join_pairs_each_broker_with_the_service_publishing_its_address_and_adds_unlisted_ones() {
        let wp = WorkloadPath {
            workload: WorkloadRef {
                kind: "StatefulSet".into(),
                namespace: "ns".into(),
                name: "kafka".into(),
            },
            mode: ExposeMode::NodePort,
            bootstrap: Some("10.0.0.1:31100".into()),
            bootstrap_service: None,
            brokers: vec![
                BrokerPath {
                    ordinal: 0,
                    ..path(1, "10.0.0.1:31090")
                },
                path(1, "10.0.0.1:31091"),
            ],
        };
        // Only broker 1 is in the metadata, advertising what its Service publishes.
        let mut target = Target {
            workload: None,
            bootstrap: super::super::report::Bootstrap {
                answered_by: Some("10.0.0.1:31100".into()),
                ..Default::default()
            },
            brokers: vec![BrokerReport {
                node_id: Some(1),
                advertised: Some("10.0.0.1:31091".into()),
                ok: true,
                ..BrokerReport::default()
            }],
            ok: true,
        };
        join(&mut target, &wp);
        assert_eq!(target.brokers[0].cluster.as_ref().unwrap().ordinal, 1);
        assert_eq!(target.brokers.len(), 2);
        let extra = &target.brokers[1];
        assert_eq!(extra.cluster.as_ref().unwrap().ordinal, 0);
        assert_eq!(
            extra.problem.as_ref().unwrap().kind,
            ProblemKind::NotAdvertised
        );
        assert!(
            !target.ok,
            "a broker the metadata leaves out fails the check"
        );
    }

    #[test]
    fn a_broker_advertising_an_address_it_would_no_longer_be_given_fails_and_is_named() {
        let stale = "advertises 198.51.100.21:31091; its node's ExternalIP is now 198.51.100.77";
        let wp = WorkloadPath {
            workload: WorkloadRef {
                kind: "StatefulSet".into(),
                namespace: "ns".into(),
                name: "kafka".into(),
            },
            mode: ExposeMode::NodePort,
            bootstrap: Some("198.51.100.77:31100".into()),
            bootstrap_service: None,
            brokers: vec![BrokerPath {
                stale: Some(stale.into()),
                ..path(1, "198.51.100.77:31091")
            }],
        };
        // It still answers at the old address: the check fails all the same.
        let mut target = Target {
            workload: None,
            bootstrap: super::super::report::Bootstrap {
                answered_by: Some("198.51.100.77:31100".into()),
                ..Default::default()
            },
            brokers: vec![BrokerReport {
                node_id: Some(1),
                advertised: Some("198.51.100.21:31091".into()),
                ok: true,
                ..BrokerReport::default()
            }],
            ok: true,
        };
        join(&mut target, &wp);
        let r = &target.brokers[0];
        let d = r.diagnosis.as_ref().unwrap();
        assert_eq!(d.kind, ProblemKind::StaleAddress);
        assert!(
            d.message.contains(&format!("broker pod kafka-1 {stale}")),
            "{}",
            d.message
        );
        assert!(!r.ok && !target.ok);
    }

    #[test]
    fn a_dns_name_is_matched_by_its_port() {
        let p = path(1, "10.0.0.1:31091");
        assert_eq!(p.publishes("kafka-1.example.com:31091"), Some(true));
        assert_eq!(p.publishes("10.0.0.2:31091"), Some(false));
        assert_eq!(p.publishes("kafka-1.example.com:31092"), Some(false));
    }
}
