//! The admission decision: one `AdmissionRequest` in, one `AdmissionResponse` out.
//!
//! One small function per kind: StatefulSets and Deployments go to the workload decision, Pods
//! at CREATE to the Pod decision. Everything else (other kinds, subresources, `DELETE`,
//! `CONNECT`) is allowed untouched. Dry-run requests get the same answer; nothing here has side
//! effects.

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, Resource};

use crate::api::{self, KafkaExposePolicy};
use crate::config::{self, Settings};
use crate::engine::binding::{self, BindingFacts, BindingOutcome};
use crate::engine::exposure::{Decision as Exposed, Skip};
use crate::engine::patch::PatchBuilder;
use crate::engine::pod::{LoadBalancerAddresses, PodContext, PodOutcome, decide_pod as engine_pod};
use crate::engine::policy::{self, PolicyView};
use crate::engine::services;
use crate::engine::workload::{Workload, WorkloadOutcome, decide_workload as engine_workload};
use crate::engine::{EngineError, error_chain};
use crate::names::own;

/// What to do when the engine itself fails on a pod (a malformed object or a configuration that
/// got past workload validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailureMode {
    /// Allow the pod unchanged, with a warning.
    Open,
    /// Deny the pod.
    Closed,
}

/// The admission decision and what to record about it.
#[derive(Debug)]
pub struct Decision {
    pub response: AdmissionResponse,
    /// `allowed`, `patched`, `denied` or `error`.
    pub outcome: &'static str,
    pub adapter: &'static str,
}

impl Decision {
    /// Whether the workload or pod is exposed (by some adapter).
    pub fn exposes(&self) -> bool {
        !matches!(self.adapter, "" | "unsupported")
    }
}

/// The conflicts between the Services an exposed workload needs and those another owner already
/// holds in its namespace (`existing`), as admission warnings. kafka-expose leaves those
/// Services alone; the warning says so where the user applies the workload.
pub fn service_conflicts(w: &Workload, settings: &Settings, existing: &[Service]) -> Vec<String> {
    let Ok(Exposed::Expose(e)) = w.exposure(settings) else {
        return Vec::new();
    };
    let routes = services::routes(w, &e);
    services::plan_around(w, &e, &routes, existing)
        .conflicts
        .into_iter()
        .map(|c| format!("kafka-expose: {c}"))
        .collect()
}

/// Whether a request is one kafka-expose never changes: a subresource, `DELETE` or `CONNECT`.
pub fn passes_through(sub_resource: Option<&str>, operation: &Operation) -> bool {
    sub_resource.is_some_and(|s| !s.is_empty())
        || matches!(operation, Operation::Delete | Operation::Connect)
}

/// Allows a request untouched.
pub fn allow<T: Resource>(req: &AdmissionRequest<T>) -> Decision {
    Decision {
        response: AdmissionResponse::from(req),
        outcome: "allowed",
        adapter: "",
    }
}

/// Decides a Pod request: at CREATE the Pod decision, otherwise allowed.
pub fn decide_pod(
    req: &AdmissionRequest<Pod>,
    settings: &Settings,
    failure: FailureMode,
    lb: &dyn LoadBalancerAddresses,
) -> Decision {
    if passes_through(req.sub_resource.as_deref(), &req.operation)
        || req.operation != Operation::Create
    {
        return allow(req);
    }
    let Some(pod) = req.object.as_ref() else {
        return allow(req);
    };
    let namespace = req.namespace.clone().unwrap_or_default();
    let lookup = |svc: &str| lb.address(&namespace, svc);
    let route = |svc: &str| lb.route(&namespace, svc);
    let ctx = PodContext {
        settings,
        namespace: req.namespace.as_deref(),
        lb_address: &lookup,
        route: &route,
    };
    match engine_pod(pod, true, &ctx) {
        Ok(d) => {
            if let PodOutcome::WaitForAddress { message, .. } = &d.outcome {
                return Decision {
                    response: AdmissionResponse::from(req).deny(message),
                    outcome: "denied",
                    adapter: "",
                };
            }
            let adapter = match &d.outcome {
                PodOutcome::Mutated { adapter, .. } => adapter,
                PodOutcome::Skipped(Skip::Unsupported(_)) => "unsupported",
                _ => "",
            };
            let mut dec = patched(req, d.patch, d.warnings);
            dec.adapter = adapter;
            dec
        }
        Err(e) => engine_error(req, e, failure, true),
    }
}

/// Validates a KafkaExposePolicy at CREATE and UPDATE (1.20 has no CEL): a policy that does not
/// decode, or whose settings the annotations' parser refuses, is denied with every problem,
/// each naming its field. An accepted policy is told that this version does not act on it yet.
pub fn decide_policy(req: &AdmissionRequest<DynamicObject>, settings: &Settings) -> Decision {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return allow(req);
    }
    let Some(obj) = req.object.as_ref() else {
        return allow(req);
    };
    let denied = |message: String| Decision {
        response: AdmissionResponse::from(req).deny(message),
        outcome: "denied",
        adapter: "",
    };
    let policy: KafkaExposePolicy = match serde_json::to_value(obj).and_then(serde_json::from_value)
    {
        Ok(p) => p,
        Err(e) => return denied(format!("kafka-expose: invalid KafkaExposePolicy: {e}")),
    };
    if let Err(e) = api::policy::validate(&policy.spec, settings.node_port_range) {
        return denied(format!(
            "kafka-expose: invalid KafkaExposePolicy {}: {e}",
            req.name
        ));
    }
    let name = policy.metadata.name.clone().unwrap_or_default();
    if name.len() > 63 {
        return denied(format!(
            "kafka-expose: invalid KafkaExposePolicy: metadata.name: {} characters, at most 63: it is written as a label value on the workloads the policy stamps",
            name.len()
        ));
    }
    let spec = &policy.spec;
    let what = match spec.mode {
        api::PolicyMode::Audit => format!(
            "kafka-expose: policy {name} is in Audit mode: it changes nothing; `kubectl get kafkaexposepolicy {name} -o yaml` lists the workloads it matches and the addresses they would get, and each gets a PolicyAudit Event"
        ),
        api::PolicyMode::Enforce => format!(
            "kafka-expose: policy {name} is enforced: the workloads it matches are rolled to its settings, {} at a time cluster-wide, each given {}s to be updated and Ready; follow with `kubectl get kafkaexposepolicy {name} -o yaml`",
            spec.rollout.max_concurrent, spec.rollout.progress_deadline_seconds
        ),
    };
    let mut response = AdmissionResponse::from(req);
    response.warnings = Some(vec![what]);
    Decision {
        response,
        outcome: "allowed",
        adapter: "",
    }
}

/// Decides a pod's Binding: for an exposed broker with `advertised-host: node:…`, the node's
/// address goes into the Binding's annotations, which the API server copies onto the pod as it
/// binds it. Everything else is allowed unchanged, from the caches alone. Never denied: a
/// scheduling must not fail for kafka-expose (the reconciler fills in what is missed).
pub fn decide_binding(
    req: &AdmissionRequest<k8s_openapi::api::core::v1::Binding>,
    facts: Option<&dyn BindingFacts>,
) -> Decision {
    let (Some(facts), Some(b)) = (facts, req.object.as_ref()) else {
        return allow(req);
    };
    let namespace = req
        .namespace
        .as_deref()
        .or(b.metadata.namespace.as_deref())
        .unwrap_or_default();
    let pod = b.metadata.name.as_deref().unwrap_or(&req.name);
    let outcome = binding::decide(
        facts,
        namespace,
        pod,
        &b.target.name.clone().unwrap_or_default(),
    );
    match outcome {
        BindingOutcome::Unrelated => allow(req),
        BindingOutcome::Address(address) => {
            let mut p = PatchBuilder::new();
            let key = format!("{}{}", crate::names::PREFIX, own::EXTERNAL_HOST);
            p.set_map_entry(
                &crate::ptr!("metadata", "annotations"),
                b.metadata.annotations.as_ref(),
                &key,
                &address,
            );
            let mut d = patched(req, p.into_ops(), Vec::new());
            d.adapter = "binding";
            d
        }
        other => {
            let mut response = AdmissionResponse::from(req);
            response.warnings = other.explain().map(|w| vec![format!("kafka-expose: {w}")]);
            Decision {
                response,
                outcome: "allowed",
                adapter: "binding",
            }
        }
    }
}

/// Decides a StatefulSet or Deployment request: the workload decision at CREATE and UPDATE.
///
/// With `policies`, an Enforce policy that selects the workload applies as if annotated, by
/// [`policy::admission_layer`]: on a CREATE, or an UPDATE that changes the pod template.
pub fn decide_workload<T: Resource + Clone>(
    req: &AdmissionRequest<T>,
    read: impl Fn(T) -> Workload,
    settings: &Settings,
    policies: Option<&dyn PolicyView>,
) -> Decision {
    if passes_through(req.sub_resource.as_deref(), &req.operation) {
        return allow(req);
    }
    let Some(obj) = req.object.clone() else {
        return allow(req);
    };
    let mut w = read(obj);
    let mut policy_warnings = Vec::new();
    if let Some(view) = policies.filter(|v| v.active()) {
        let namespace = req
            .namespace
            .clone()
            .or_else(|| w.namespace.clone())
            .unwrap_or_default();
        let own = config::user_annotations(w.annotations.as_ref());
        let labels = w.labels.clone().unwrap_or_default();
        let r = view.resolve(w.kind.policy_kind(), &namespace, &w.name, &labels, &own);
        let fresh = match (&req.operation, req.old_object.clone()) {
            (Operation::Create, _) => true,
            (Operation::Update, Some(old)) => read(old).template != w.template,
            _ => false,
        };
        let (layer, warnings) = policy::admission_layer(&r, w.stamp().as_ref(), w.replicas, fresh);
        w.policy = layer;
        policy_warnings = warnings;
    }
    match engine_workload(&w, settings) {
        Ok(mut d) => {
            let adapter = match d.outcome {
                WorkloadOutcome::Exposed { adapter, .. } => adapter,
                WorkloadOutcome::Skipped(Skip::Unsupported(_)) => "unsupported",
                _ => "",
            };
            d.warnings.extend(policy_warnings);
            let mut dec = patched(req, d.patch, d.warnings);
            dec.adapter = adapter;
            dec
        }
        // An invalid configuration is refused where the user applies it, unless the workload
        // is stored so already (scaled through the scale subresource, which this webhook does
        // not see, or from before kafka-expose): then an update that leaves it as it was (the
        // reconciler's status, a label) is not blocked.
        Err(e @ EngineError::Config(_)) => {
            let message = e.to_string();
            let already = matches!(req.operation, Operation::Update)
                && req.old_object.clone().is_some_and(|old| {
                    let mut old = read(old);
                    old.policy = w.policy.clone();
                    engine_workload(&old, settings).is_err_and(|o| o.to_string() == message)
                });
            if already {
                let mut response = AdmissionResponse::from(req);
                response.warnings = Some(vec![format!(
                    "{message}; the workload was stored so already and this update leaves it so: allowed unchanged"
                )]);
                return Decision {
                    response,
                    outcome: "allowed",
                    adapter: "",
                };
            }
            Decision {
                response: AdmissionResponse::from(req).deny(message),
                outcome: "denied",
                adapter: "",
            }
        }
        Err(e) => engine_error(req, e, FailureMode::Open, false),
    }
}

fn patched<T: Resource>(
    req: &AdmissionRequest<T>,
    ops: Vec<json_patch::PatchOperation>,
    warnings: Vec<String>,
) -> Decision {
    let mut response = AdmissionResponse::from(req);
    let mut outcome = "allowed";
    if !ops.is_empty() {
        match response.with_patch(Patch(ops)) {
            Ok(r) => {
                response = r;
                outcome = "patched";
            }
            Err(e) => {
                return Decision {
                    response: AdmissionResponse::from(req)
                        .deny(format!("kafka-expose could not encode its patch: {e}")),
                    outcome: "error",
                    adapter: "",
                };
            }
        }
    }
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    Decision {
        response,
        outcome,
        adapter: "",
    }
}

/// Answers an engine error by the failure mode: allow unchanged with a warning, or deny.
fn engine_error<T: Resource>(
    req: &AdmissionRequest<T>,
    e: EngineError,
    failure: FailureMode,
    is_pod: bool,
) -> Decision {
    let message = format!("kafka-expose: {}", error_chain(&e));
    match failure {
        FailureMode::Open => {
            let mut response = AdmissionResponse::from(req);
            response.warnings = Some(vec![format!(
                "{message}; {} allowed unchanged",
                if is_pod { "pod" } else { "object" }
            )]);
            Decision {
                response,
                outcome: "error",
                adapter: "",
            }
        }
        FailureMode::Closed => Decision {
            response: AdmissionResponse::from(req).deny(message),
            outcome: "error",
            adapter: "",
        },
    }
}
