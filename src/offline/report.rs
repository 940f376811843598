//! What `mutate` prints: the objects as YAML or a JSON `List`, or, with `--explain`, a summary
//! for people of each workload, its adapter, its brokers' addresses and routes.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Output;
use crate::config::{ExposeConfig, ExposeMode};
use crate::engine::services::BrokerRoute;
use crate::names::{broker_port_name, shared_service_port_name};

/// One broker of an exposed workload, for `--explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerReport {
    pub pod: String,
    /// The address it advertises, for people.
    pub advertised: String,
    pub service: String,
    pub route: String,
    /// With `external-tls`: its certificate's Secret and what the certificate must name.
    pub certificate: Option<String>,
}

/// One workload, for `--explain`.
#[derive(Debug, Clone, Default)]
pub struct WorkloadReport {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    /// One line on the outcome.
    pub outcome: String,
    /// Container: adapter and why.
    pub adapter: Option<String>,
    pub brokers: Vec<BrokerReport>,
    pub bootstrap: Option<String>,
    /// Where the advertised host comes from, when it is not known until the pod runs.
    pub host_source: Option<String>,
    pub warnings: Vec<String>,
}

pub(super) fn describe_route(cfg: &ExposeConfig, r: &BrokerRoute) -> String {
    match cfg.mode {
        ExposeMode::NodePort => format!(
            "Service {} NodePort {} -> pod {} port {}",
            r.service, r.port, r.pod, r.target
        ),
        ExposeMode::LoadBalancer => format!(
            "Service {} LoadBalancer port {} -> pod {} port {}",
            r.service, r.port, r.pod, r.target
        ),
        ExposeMode::HostPort => format!(
            "hostPort {} on its node -> pod {} port {}",
            r.port, r.pod, r.target
        ),
        ExposeMode::Gateway => format!(
            "TLSRoute {} on Gateway {} port {} (SNI) -> Service {} (ClusterIP) -> pod {} port {}",
            r.service,
            cfg.gateway
                .as_ref()
                .map(|g| g.to_annotation())
                .unwrap_or_default(),
            r.port,
            r.service,
            r.pod,
            r.target
        ),
        ExposeMode::SharedLoadBalancer => format!(
            "Service {} LoadBalancer port {} ({}) -> pod {} port {} ({}), which only this broker carries",
            r.service,
            r.port,
            shared_service_port_name(r.ordinal),
            r.pod,
            broker_port_name(r.ordinal),
            r.target
        ),
    }
}

/// YAML documents separated by `---`.
pub fn to_yaml(objects: &[Value]) -> Result<String, String> {
    let mut s = String::new();
    for o in objects {
        s.push_str("---\n");
        s.push_str(&serde_saphyr::to_string(o).map_err(|e| e.to_string())?);
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    Ok(s)
}

/// One `v1` `List`.
pub fn to_json(objects: &[Value]) -> String {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    serde_json::to_string_pretty(&list).unwrap_or_default()
}

/// The human summary of `--explain`.
pub fn explain(out: &Output) -> String {
    let mut s = String::new();
    if out.workloads.is_empty() {
        s.push_str("no StatefulSet or Deployment in the input\n");
    }
    for w in &out.workloads {
        let ns = w
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        let _ = writeln!(s, "{} {ns}{}: {}", w.kind, w.name, w.outcome);
        if let Some(a) = &w.adapter {
            let _ = writeln!(s, "  {a}");
        }
        for b in &w.brokers {
            let _ = writeln!(s, "  broker {}: advertises {}", b.pod, b.advertised);
            let _ = writeln!(s, "    via {}", b.route);
            if let Some(c) = &b.certificate {
                let _ = writeln!(s, "    certificate: {c}");
            }
        }
        if let Some(h) = &w.host_source {
            let _ = writeln!(s, "  host: {h}");
        }
        if let Some(b) = &w.bootstrap {
            let _ = writeln!(s, "  bootstrap: {b}");
        }
        for warning in &w.warnings {
            let _ = writeln!(
                s,
                "  warning: {}",
                warning.trim_start_matches("kafka-expose: ")
            );
        }
    }
    s
}
