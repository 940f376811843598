//! `kafka-expose mutate`: what the webhook and the reconciler would do to a set of manifests,
//! offline.
//!
//! [`read`] takes multi-document YAML (such as `helm template` output) or JSON, opening
//! `kind: List` objects. For each exposed workload, [`run`] decides the exposure once, then
//! produces the mutated workload, the pods its controller would create ([`simulate`]) with the
//! Pod mutation applied, and the planned Services. Everything else passes through unchanged, keys
//! in their order. [`report`] renders the result.

pub mod read;
pub mod report;
pub mod simulate;

use k8s_openapi::api::core::v1::Service;
use serde_json::Value;

use crate::config::{ExposeMode, Settings};
use crate::engine::EngineError;
use crate::engine::exposure::Decision;
use crate::engine::pod::{PodContext, PodOutcome, mutate_pod};
use crate::engine::workload::{self, Workload, WorkloadKind, WorkloadOutcome};
use crate::engine::{error_chain, services};
use crate::names::{bootstrap_service_name, keys, shared_service_name};

pub use read::{parse_set, read_documents};
use read::{prepare, with_namespace};
pub use report::{BrokerReport, WorkloadReport, explain, to_json, to_yaml};
pub use simulate::controller_pods;

/// Why `mutate` failed.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    #[error("the input is not valid YAML: {0}")]
    Yaml(String),
    #[error("document {index} is not a Kubernetes object (a mapping with kind)")]
    NotAnObject { index: usize },
    #[error("--set {0}: expected KEY=VALUE with KEY one of: {known}", known = keys::ALL.join(", "))]
    BadSet(String),
    #[error("{kind} {name}")]
    Invalid {
        kind: String,
        name: String,
        #[source]
        source: EngineError,
    },
    #[error("{}", .0.iter().map(|e| error_chain(e)).collect::<Vec<_>>().join("\n"))]
    Many(Vec<MutateError>),
    #[error(
        "{kind} {name} is {api_version:?}, which API servers no longer serve (apps/v1 replaced it in Kubernetes 1.9, and 1.16 removed the others); convert it to apps/v1 first, e.g. with kubectl convert or the chart's newer version, whose selector and defaults differ"
    )]
    OldApiVersion {
        kind: String,
        name: String,
        api_version: String,
    },
    #[error("a patch did not apply to {0}: {1}")]
    Patch(String, String),
    #[error(
        "NodePorts {first} and {second} overlap at {port}; give one of them another kafka-expose.io/port-base"
    )]
    PortClash {
        first: String,
        second: String,
        port: u32,
    },
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Annotations to add to every workload: `(key without prefix, value)`.
    pub set: Vec<(String, String)>,
    /// The namespace of objects that name none.
    pub namespace: Option<String>,
    pub settings: Settings,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub objects: Vec<Value>,
    pub workloads: Vec<WorkloadReport>,
}

/// With `external-tls`: broker `r`'s certificate Secret and what its certificate must name.
/// The pod is named here, so the Secret's name always renders (the pod decision, which ran
/// first, refuses what does not).
fn certificate_plan(
    cfg: &crate::config::ExposeConfig,
    w: &Workload,
    r: &services::BrokerRoute,
) -> Option<String> {
    let namespace = w.namespace.as_deref().unwrap_or("default");
    let secret = crate::engine::tls::secret_name(cfg, &w.name, namespace, r.ordinal, Some(&r.pod))
        .ok()
        .flatten();
    secret.map(|s| {
        let host = services::configured_host(cfg, r, w);
        let who = match &cfg.external_tls {
            crate::config::ExternalTls::Ca(ca) => format!(
                "signed by kafka-expose with the CA in Secret {ca}, owned by the workload"
            ),
            crate::config::ExternalTls::Issuer { kind, name } => format!(
                "issued by cert-manager for {kind} {name} from the Certificate kafka-expose writes"
            ),
            _ => "made by you".into(),
        };
        format!(
            "Secret {s} (kubernetes.io/tls, {who}), whose certificate must name {}; the gate holds the broker until it does",
            crate::engine::tls::must_name(cfg, host.as_deref())
        )
    })
}

/// Runs the engine over `docs`.
pub fn run(docs: Vec<Value>, opts: &Options) -> Result<Output, MutateError> {
    let mut out = Output::default();
    let mut errors = Vec::new();
    let mut claims: Vec<(String, u32, u32)> = Vec::new();
    // The input's own Services (a chart's per-broker Services among them): kafka-expose plans
    // around them, as the reconciler does around those in the cluster.
    let existing: Vec<Service> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter_map(|d| {
            let mut d = d.clone();
            with_namespace(&mut d, opts);
            serde_json::from_value(d).ok()
        })
        .collect();
    for mut doc in docs {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(wkind) = WorkloadKind::from_kind(&kind) else {
            out.objects.push(doc);
            continue;
        };
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if api_version != "apps/v1" {
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            errors.push(MutateError::OldApiVersion {
                kind: kind.clone(),
                name: name.to_string(),
                api_version: api_version.to_string(),
            });
            continue;
        }
        prepare(&mut doc, opts);
        match workload(&doc, wkind, opts, &existing) {
            Ok((objects, report, claim)) => {
                if let Some((lo, hi)) = claim {
                    let me = format!("{kind} {}", report.name);
                    for (other, olo, ohi) in &claims {
                        if lo <= *ohi && *olo <= hi {
                            errors.push(MutateError::PortClash {
                                first: other.clone(),
                                second: me.clone(),
                                port: lo.max(*olo),
                            });
                        }
                    }
                    claims.push((me, lo, hi));
                }
                out.objects.extend(objects);
                out.workloads.push(report);
            }
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(MutateError::Many(errors)),
    }
}

type WorkloadResult = (Vec<Value>, WorkloadReport, Option<(u32, u32)>);

fn workload(
    doc: &Value,
    kind: WorkloadKind,
    opts: &Options,
    existing: &[Service],
) -> Result<WorkloadResult, MutateError> {
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string();
    let invalid = |source: EngineError| MutateError::Invalid {
        kind: kind.as_str().into(),
        name: name.clone(),
        source,
    };
    let w = Workload::from_value(kind, doc).map_err(invalid)?;
    let exposure = w.exposure(&opts.settings).map_err(|e| invalid(e.into()))?;
    let decision = workload::plan(&w, &exposure);
    let mut mutated = doc.clone();
    json_patch::patch(&mut mutated, &decision.patch)
        .map_err(|e| MutateError::Patch(name.clone(), e.to_string()))?;
    let mut report = WorkloadReport {
        kind: kind.as_str().into(),
        name: name.clone(),
        namespace: w.namespace.clone(),
        warnings: decision.notes().to_vec(),
        ..WorkloadReport::default()
    };
    let mut objects = vec![mutated.clone()];
    let (Decision::Expose(d), WorkloadOutcome::Exposed { .. }) = (&exposure, &decision.outcome)
    else {
        if let WorkloadOutcome::Skipped(skip) = &decision.outcome {
            report.outcome = skip.summary();
        }
        return Ok((objects, report, None));
    };
    let cfg = &d.config;
    report.outcome = format!("exposed by {}", cfg.mode.as_str());
    report.adapter = Some(format!(
        "container {}: {} adapter: {}",
        d.broker.container.name,
        d.adapter.name(),
        d.reason
    ));

    let no_lb = |_: &str| None;
    // Offline, each route is taken as the Gateway will accept it; the report says that a broker
    // is held until it is.
    let accepted = |_: &str| Some(crate::engine::gateway::Acceptance::Accepted.to_annotation());
    let ctx = PodContext {
        settings: &opts.settings,
        namespace: w.namespace.as_deref(),
        lb_address: &no_lb,
        route: &accepted,
    };
    let routes = services::routes(&w, d);
    let plan = services::plan_around(&w, d, &routes, existing);
    for (i, pod) in controller_pods(&w, &mutated).into_iter().enumerate() {
        let pod_decision = mutate_pod(&pod, &ctx).map_err(invalid)?;
        let mut pod_out = pod.clone();
        json_patch::patch(&mut pod_out, &pod_decision.patch)
            .map_err(|e| MutateError::Patch(format!("pod of {name}"), e.to_string()))?;
        // Each pod's summary line is what the broker lines say; its other notes once each.
        for note in pod_decision.notes() {
            if !report.warnings.contains(note) {
                report.warnings.push(note.clone());
            }
        }
        if let PodOutcome::WaitForAddress { message, .. } = &pod_decision.outcome {
            report.warnings.push(message.clone());
        }
        objects.push(pod_out);
        if let Some(r) = routes.brokers.get(i) {
            let others = plan.served_by_others.iter().find(|(o, _)| *o == r.ordinal);
            let route = match others {
                Some((_, svc)) => format!(
                    "{} (Service {svc}, not kafka-expose's, already routes it)",
                    report::describe_route(cfg, r).replacen(&r.service, svc, 1)
                ),
                None => report::describe_route(cfg, r),
            };
            report.brokers.push(BrokerReport {
                pod: r.pod.clone(),
                advertised: crate::engine::services::describe_advertised(
                    cfg, &d.adapter, r, &w, None,
                ),
                service: others.map_or_else(|| r.service.clone(), |(_, s)| s.clone()),
                route,
                certificate: certificate_plan(cfg, &w, r),
            });
        }
    }
    for s in &plan.services {
        objects.push(serde_json::to_value(s).unwrap_or(Value::Null));
    }
    // The routes as Gateway API v1.5 serves them (`v1`); in a cluster the served version.
    objects.extend(crate::engine::gateway::plan(
        &w,
        d,
        &routes,
        crate::engine::gateway::VERSIONS[0],
    ));
    report
        .warnings
        .extend(plan.conflicts.iter().map(|c| format!("kafka-expose: {c}")));
    if let crate::config::AdvertisedHost::Node(types) = &cfg.advertised_host {
        report.host_source = Some(format!(
            "the {} of each broker's node (first type it has), put on the pod as {}{} when the pod is bound: by kafka-expose's binding webhook, else its reconciler within seconds; the init container {} holds the broker until it is there",
            crate::engine::pod::type_list(types),
            crate::names::PREFIX,
            crate::names::own::EXTERNAL_HOST,
            crate::names::GATE_CONTAINER
        ));
    }
    let owners = if w.uid.is_none() {
        "; owner references are set once the workload has a uid"
    } else {
        ""
    };
    let ports = || routes.brokers.iter().map(|r| r.port);
    report.bootstrap = Some(match cfg.mode {
        ExposeMode::SharedLoadBalancer => {
            let shared = shared_service_name(&w.name);
            let range = match (ports().min(), ports().max()) {
                (Some(lo), Some(hi)) if lo != hi => format!("ports {lo}-{hi}"),
                (Some(p), _) => format!("port {p}"),
                _ => "no ports".into(),
            };
            let wait = if cfg.advertised_host == crate::config::AdvertisedHost::LoadBalancer {
                "; each broker is held until it has an address, and advertises it"
            } else {
                ""
            };
            report.host_source = Some(format!(
                "one LoadBalancer Service {shared} for {} broker(s), {range}, each port routed to one broker by its named container port{wait}",
                routes.brokers.len()
            ));
            let list = services::shared_bootstrap(&w, cfg, &routes, "<address>");
            let whose = if list.contains("<address>") {
                format!(", where <address> is LoadBalancer {shared}'s")
            } else {
                String::new()
            };
            format!(
                "{list}{whose} (every broker's port on the one load balancer; no bootstrap Service of its own){owners}"
            )
        }
        ExposeMode::Gateway => {
            let gateway = cfg
                .gateway
                .as_ref()
                .map(|g| g.to_annotation())
                .unwrap_or_default();
            report.host_source = Some(format!(
                "each broker's name routed by a TLSRoute on Gateway {gateway} (TLS passed through, chosen by SNI); each broker is held until the Gateway accepts its route (status.parents Accepted), and the names must resolve to the Gateway's address (external-dns watches TLSRoute v1 from v0.22)"
            ));
            match &cfg.bootstrap_host {
                Some(h) => format!(
                    "{h}:{} via TLSRoute {b} -> Service {b} (ClusterIP, every broker){owners}",
                    cfg.advertised_port,
                    b = bootstrap_service_name(&w.name)
                ),
                None => format!(
                    "every broker's name on port {} (no bootstrap-host: no bootstrap route){owners}",
                    cfg.advertised_port
                ),
            }
        }
        mode => format!(
            "Service {} ({}){owners}",
            bootstrap_service_name(&w.name),
            match (mode, cfg.bootstrap_node_port) {
                (ExposeMode::NodePort, Some(p)) => format!("NodePort {p}"),
                (ExposeMode::NodePort, None) => "NodePort allocated by Kubernetes".into(),
                (ExposeMode::HostPort, _) =>
                    "ClusterIP; brokers are reached on their nodes' hostPorts".into(),
                _ => format!("LoadBalancer port {}", cfg.advertised_port),
            },
        ),
    });
    let claim = match cfg.mode {
        ExposeMode::NodePort => ports().min().zip(ports().max()),
        _ => None,
    };
    Ok((objects, report, claim))
}
