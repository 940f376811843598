//! `kafka-expose mutate`: what the webhook and the reconciler would do to a set of manifests,
//! offline.
//!
//! The input is multi-document YAML (such as `helm template` output) or JSON, and `kind: List`
//! objects are opened. For each exposed workload the output holds the mutated workload, then the
//! pods its controller would create with the Pod mutation applied, then the planned Services.
//! Everything else passes through unchanged, keys in their order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::config::{self, AdvertisedHost, ExposeConfig, ExposeMode, PREFIX, Settings, keys};
use crate::engine::EngineError;
use crate::engine::detect::{self, Adapter, Outcome};
use crate::engine::pod::{PodContext, PodOutcome, mutate_pod};
use crate::engine::workload::{Workload, WorkloadKind, WorkloadOutcome, mutate_workload};
use crate::services;

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
    #[error("{}", .0.iter().map(|e| crate::engine::error_chain(e)).collect::<Vec<_>>().join("\n"))]
    Many(Vec<MutateError>),
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

/// Parses `KEY=VALUE` for `--set`.
pub fn parse_set(s: &str) -> Result<(String, String), MutateError> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| MutateError::BadSet(s.into()))?;
    let k = k.trim().strip_prefix(PREFIX).unwrap_or(k.trim());
    if !keys::ALL.contains(&k) {
        return Err(MutateError::BadSet(s.into()));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Reads multi-document YAML (JSON is YAML too), opening `List` objects.
pub fn read_documents(text: &str) -> Result<Vec<Value>, MutateError> {
    // Kubernetes reads manifests as YAML 1.1, where `0755` (a ConfigMap volume's defaultMode)
    // is octal.
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| MutateError::Yaml(e.to_string()))?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        match doc {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                for item in m
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if !item.is_object() {
                        return Err(MutateError::NotAnObject { index });
                    }
                    out.push(item.clone());
                }
            }
            Value::Object(ref m) if m.get("kind").is_some_and(Value::is_string) => out.push(doc),
            _ => return Err(MutateError::NotAnObject { index }),
        }
    }
    Ok(out)
}

/// One broker of an exposed workload, for `--explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerReport {
    pub pod: String,
    /// The address it advertises, for people.
    pub advertised: String,
    pub service: String,
    pub route: String,
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
    pub warnings: Vec<String>,
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub objects: Vec<Value>,
    pub workloads: Vec<WorkloadReport>,
}

/// Runs the engine over `docs`.
pub fn run(docs: Vec<Value>, opts: &Options) -> Result<Output, MutateError> {
    let mut out = Output::default();
    let mut errors = Vec::new();
    let mut claims: Vec<(String, u32, u32)> = Vec::new();
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
        prepare(&mut doc, opts);
        match workload(&doc, wkind, opts) {
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

/// Adds the `--set` annotations and the default namespace.
fn prepare(doc: &mut Value, opts: &Options) {
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if let Some(ns) = &opts.namespace
        && meta.get("namespace").is_none_or(Value::is_null)
    {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    if opts.set.is_empty() {
        return;
    }
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !ann.is_object() {
        *ann = Value::Object(Map::new());
    }
    if let Some(ann) = ann.as_object_mut() {
        for (k, v) in &opts.set {
            ann.insert(format!("{PREFIX}{k}"), Value::String(v.clone()));
        }
    }
}

type WorkloadResult = (Vec<Value>, WorkloadReport, Option<(u32, u32)>);

fn workload(
    doc: &Value,
    kind: WorkloadKind,
    opts: &Options,
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
    let decision = mutate_workload(doc, kind, &opts.settings).map_err(invalid)?;
    let mut mutated = doc.clone();
    json_patch::patch(&mut mutated, &decision.patch)
        .map_err(|e| MutateError::Patch(name.clone(), e.to_string()))?;
    let w = Workload::from_value(kind, &mutated).map_err(invalid)?;
    let mut report = WorkloadReport {
        kind: kind.as_str().into(),
        name: name.clone(),
        namespace: w.namespace.clone(),
        warnings: decision.warnings.clone(),
        ..WorkloadReport::default()
    };
    let mut objects = vec![mutated.clone()];
    report.outcome = match &decision.outcome {
        WorkloadOutcome::NotExposed => "not exposed".into(),
        WorkloadOutcome::NoBroker => "left alone: no Kafka broker container".into(),
        WorkloadOutcome::ControllerOnly => "left alone: KRaft controllers only".into(),
        WorkloadOutcome::Unsupported(why) => format!("unsupported, nothing created: {why}"),
        WorkloadOutcome::Exposed { .. } => String::new(),
    };
    let WorkloadOutcome::Exposed { .. } = decision.outcome else {
        return Ok((objects, report, None));
    };
    let cfg = w
        .exposure(&opts.settings)
        .map_err(invalid)?
        .ok_or_else(|| {
            invalid(EngineError::Config(config::ConfigError::one(
                keys::EXPOSE,
                "",
                "not exposed after mutation",
            )))
        })?;
    let spec = w.template.spec.clone().unwrap_or_default();
    let Outcome::Found(d) = detect::detect(&spec, &cfg).map_err(|e| invalid(e.into()))? else {
        return Ok((objects, report, None));
    };
    report.outcome = format!("exposed by {}", cfg.mode.as_str());
    report.adapter = Some(format!(
        "container {}: {} adapter: {}",
        d.broker.container.name,
        d.adapter.name(),
        d.reason
    ));

    let namespace = w.namespace.clone();
    let no_lb = |_: &str| None;
    let ctx = PodContext {
        settings: &opts.settings,
        namespace: namespace.as_deref(),
        lb_address: &no_lb,
    };
    let routes = services::routes(&w, &cfg, &d);
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
            report.brokers.push(BrokerReport {
                pod: r.pod.clone(),
                advertised: describe_advertised(&cfg, &d.adapter, r, &w),
                service: r.service.clone(),
                route: describe_route(&cfg, r),
            });
        }
    }
    for s in services::plan(&w, &cfg, &d) {
        objects.push(serde_json::to_value(&s).unwrap_or(Value::Null));
    }
    report.bootstrap = Some(format!(
        "Service {} ({}){}",
        services::bootstrap_service_name(&w.name),
        match (cfg.mode, cfg.bootstrap_node_port) {
            (ExposeMode::NodePort, Some(p)) => format!("NodePort {p}"),
            (ExposeMode::NodePort, None) => "NodePort allocated by Kubernetes".into(),
            (ExposeMode::LoadBalancer, _) => format!("LoadBalancer port {}", cfg.advertised_port),
            (ExposeMode::HostPort, _) =>
                "ClusterIP; brokers are reached on their nodes' hostPorts".into(),
        },
        if w.uid.is_none() {
            "; owner references are set once the workload has a uid"
        } else {
            ""
        }
    ));
    let claim = match cfg.mode {
        ExposeMode::NodePort => routes
            .brokers
            .iter()
            .map(|r| r.port)
            .min()
            .zip(routes.brokers.iter().map(|r| r.port).max()),
        _ => None,
    };
    Ok((objects, report, claim))
}

fn describe_advertised(
    cfg: &ExposeConfig,
    adapter: &Adapter,
    r: &services::BrokerRoute,
    w: &Workload,
) -> String {
    let host = match (&cfg.advertised_host, adapter) {
        (_, Adapter::Adopt(plan)) => plan.host.clone(),
        (AdvertisedHost::HostIp, _) => "<its node's IP>".into(),
        (AdvertisedHost::Template(t), _) => t.render(|p| match p {
            config::Placeholder::Ordinal => r.ordinal.to_string(),
            config::Placeholder::Pod => r.pod.clone(),
            config::Placeholder::StatefulSet => w.name.clone(),
            config::Placeholder::Namespace => w.namespace.clone().unwrap_or_default(),
        }),
        (AdvertisedHost::Static(h), _) => h.get(r.index as usize).cloned().unwrap_or_default(),
        (AdvertisedHost::LoadBalancer, _) => format!("<the address of LoadBalancer {}>", r.service),
    };
    let name = match adapter {
        Adapter::Adopt(plan) => plan.listener_name.clone(),
        _ => cfg.listener_name.clone(),
    };
    format!("{name}://{host}:{}", r.port)
}

fn describe_route(cfg: &ExposeConfig, r: &services::BrokerRoute) -> String {
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
    }
}

/// FNV-1a, 32 bits: the hash the controllers use for revision and template hashes.
fn fnv32a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Renders a hash as the controllers do (`rand.SafeEncodeString`): no vowels, no look-alikes.
fn safe_encode(n: u32) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    n.to_string()
        .bytes()
        .map(|b| ALPHANUMS[(b as usize) % ALPHANUMS.len()] as char)
        .collect()
}

/// The pods the workload's controller would create: named `<sts>-<ordinal>` with the
/// StatefulSet controller's labels, hostname and subdomain, or with a ReplicaSet's
/// `generateName` for a Deployment. The hashes are computed as the controllers do in spirit, not
/// bit for bit.
pub fn controller_pods(w: &Workload, obj: &Value) -> Vec<Value> {
    let template = obj
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let hash = safe_encode(fnv32a(template.to_string().as_bytes()));
    let meta = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut pods = Vec::new();
    let owner = |kind: &str, name: &str| {
        let mut o = json!({
            "apiVersion": "apps/v1",
            "kind": kind,
            "name": name,
            "controller": true,
            "blockOwnerDeletion": true,
        });
        if let Some(uid) = &w.uid {
            o["uid"] = Value::String(uid.clone());
        }
        o
    };
    match w.kind {
        WorkloadKind::StatefulSet => {
            for index in 0..w.replicas {
                let ordinal = w.ordinals_start + index;
                let name = format!("{}-{ordinal}", w.name);
                let mut m = meta.clone();
                let labels: BTreeMap<String, String> = [
                    (
                        "controller-revision-hash".to_string(),
                        format!("{}-{hash}", w.name),
                    ),
                    (config::POD_NAME_LABEL.to_string(), name.clone()),
                    (config::POD_INDEX_LABEL.to_string(), ordinal.to_string()),
                ]
                .into();
                set_meta(&mut m, &name, None, w.namespace.as_deref(), labels);
                m["ownerReferences"] = json!([owner("StatefulSet", &w.name)]);
                let mut s = spec.clone();
                if let Some(obj) = s.as_object_mut() {
                    obj.insert("hostname".into(), Value::String(name.clone()));
                    if let Some(svc) = &w.service_name {
                        obj.insert("subdomain".into(), Value::String(svc.clone()));
                    }
                }
                pods.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": s}));
            }
        }
        WorkloadKind::Deployment => {
            let rs = format!("{}-{hash}", w.name);
            for _ in 0..w.replicas {
                let mut m = meta.clone();
                let labels = BTreeMap::from([("pod-template-hash".to_string(), hash.clone())]);
                set_meta(
                    &mut m,
                    "",
                    Some(&format!("{rs}-")),
                    w.namespace.as_deref(),
                    labels,
                );
                m["ownerReferences"] = json!([owner("ReplicaSet", &rs)]);
                pods.push(
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec.clone()}),
                );
            }
        }
    }
    pods
}

fn set_meta(
    m: &mut Value,
    name: &str,
    generate_name: Option<&str>,
    namespace: Option<&str>,
    extra_labels: BTreeMap<String, String>,
) {
    if !m.is_object() {
        *m = json!({});
    }
    let Some(obj) = m.as_object_mut() else { return };
    if let Some(g) = generate_name {
        obj.insert("generateName".into(), Value::String(g.into()));
    } else {
        obj.insert("name".into(), Value::String(name.into()));
    }
    if let Some(ns) = namespace {
        obj.insert("namespace".into(), Value::String(ns.into()));
    }
    let labels = obj.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(l) = labels.as_object_mut() {
        for (k, v) in extra_labels {
            l.insert(k, Value::String(v));
        }
    }
    if obj.get("annotations").is_some_and(Value::is_null) {
        obj.remove("annotations");
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
        }
        if let Some(b) = &w.bootstrap {
            let _ = writeln!(s, "  bootstrap: {b}");
        }
        let headline = format!("kafka-expose: {} {} is exposed by", w.kind, w.name);
        for warning in w.warnings.iter().filter(|x| !x.starts_with(&headline)) {
            let _ = writeln!(
                s,
                "  warning: {}",
                warning.trim_start_matches("kafka-expose: ")
            );
        }
    }
    s
}
