//! The Pod decision, at CREATE: make one broker listen on and advertise its external listener.
//!
//! The pod carries its configuration in the annotations the workload mutation copied into the
//! template. From them and the pod itself this computes:
//! - the broker's ordinal: the pod-index label, else the StatefulSet name suffix (less
//!   `spec.ordinals.start`, which the workload mutation records in the template), else the
//!   `kafka-expose.io/ordinal` annotation;
//! - the `statefulset.kubernetes.io/pod-name` label, when missing;
//! - the downward-API variables and the external host and port, inserted at the head of the env,
//!   before anything that references them: the kubelet expands `$(VAR)` only from variables
//!   defined earlier in the list
//!   (<https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/>);
//! - the adapter's changes.
//!
//! Every step compares with what the pod already has, so the decision applied to its own output
//! gives an empty patch: re-invocation never duplicates a variable, listener, port, label or init
//! container.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec, VolumeMount,
};
use serde_json::{Value, json};

use super::adapters::Adapter;
use super::adapters::adopt::TargetPort;
use super::adapters::env::{self, EnvChange};
use super::adapters::{launch, properties};
use super::exposure::{self, Decision, Exposure, Skip};
use super::gateway::Acceptance;
use super::patch::PatchBuilder;
use super::{Decided, EngineError, Result, Summarized};
use crate::config::{
    self, AdvertisedHost, ConfigError, ExposeConfig, ExposeMode, NodeAddressType, Placeholder,
    Settings,
};
use crate::kafka::SecurityProtocol;
use crate::kafka::tls::ClientAuth;
use crate::kafka::tls::ListenerTls;
use crate::names::{
    GATE_CONTAINER, GATE_MOUNT, GATE_VOLUME, INIT_CONTAINER, INSTALL_CONTAINER, LAUNCH_MOUNT,
    LAUNCH_VOLUME, PORT_NAME, PREFIX, SAVE_CONTAINER, TLS_CLIENT_CA_MOUNT, TLS_CLIENT_CA_VOLUME,
    TLS_MOUNT, TLS_SECRET_MOUNT, TLS_SECRET_VOLUME, TLS_VOLUME, broker_port_name, envs, keys,
    labels, own,
};
use crate::ptr;

/// Where the LoadBalancer addresses of Services are known: the reconciler's Service cache in a
/// cluster, nothing offline.
pub trait LoadBalancerAddresses: Send + Sync {
    /// The ingress IP or hostname of Service `name` in `namespace`, once it has one.
    fn address(&self, namespace: &str, name: &str) -> Option<String>;

    /// What the Gateway said of the TLSRoute to Service `name` in `namespace`
    /// ([`super::gateway::ROUTE_ANNOTATION`] on that Service), once the reconciler wrote it.
    fn route(&self, _namespace: &str, _name: &str) -> Option<String> {
        None
    }
}

/// No addresses known: `mutate`, and `serve` without a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAddresses;

impl LoadBalancerAddresses for NoAddresses {
    fn address(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

/// What the Pod decision needs besides the pod.
#[derive(Clone, Copy)]
pub struct PodContext<'a> {
    pub settings: &'a Settings,
    /// The namespace of the admission request; the object itself may not carry it at CREATE.
    pub namespace: Option<&'a str>,
    /// The ingress address of a Service in the pod's namespace, by name, where known.
    pub lb_address: &'a dyn Fn(&str) -> Option<String>,
    /// What the Gateway said of the route to a Service in the pod's namespace, by the Service's
    /// name ([`super::gateway::ROUTE_ANNOTATION`]), where known.
    pub route: &'a dyn Fn(&str) -> Option<String>,
}

/// The Pod decision.
pub type PodDecision = Decided<PodOutcome>;

/// What happened to the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOutcome {
    /// Left as it is, and why.
    Skipped(Skip),
    /// `advertised-host: loadbalancer` and the broker's Service has no address yet: the pod must
    /// be refused, and the StatefulSet controller retries.
    WaitForAddress { service: String, message: String },
    Mutated {
        ordinal: u32,
        adapter: &'static str,
        /// `host:port` the broker advertises, as the webhook writes it (`$(VAR)` unexpanded).
        advertised: String,
    },
}

impl Summarized for PodOutcome {
    fn has_summary(&self) -> bool {
        matches!(self, Self::Mutated { .. })
    }
}

/// Where the broker's ordinal came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordinal {
    /// The ordinal in the pod's name.
    pub ordinal: u32,
    /// Its position from the first broker: `ordinal - spec.ordinals.start`.
    pub index: u32,
    /// The workload's name.
    pub workload: String,
}

/// Decides the mutation of a pod, given as the API server sent it.
pub fn mutate_pod(obj: &Value, ctx: &PodContext<'_>) -> Result<PodDecision> {
    let pod: Pod =
        serde_json::from_value(obj.clone()).map_err(|source| EngineError::Malformed {
            kind: "Pod",
            source,
        })?;
    let has_metadata = obj.get("metadata").is_some_and(|m| !m.is_null());
    decide_pod(&pod, has_metadata, ctx)
}

/// Decides the mutation of a pod already read into its type. `has_metadata` says whether the
/// object as sent holds `metadata` at all (the API server always sends it).
pub fn decide_pod(pod: &Pod, has_metadata: bool, ctx: &PodContext<'_>) -> Result<PodDecision> {
    let ann = config::own_annotations(pod.metadata.annotations.as_ref());
    let settings = ctx.settings;
    let detection = match exposure::decide(&ann, pod.spec.as_ref(), None, settings)? {
        Decision::Expose(e) => e,
        Decision::Skip(Skip::NotRequested) => {
            return Ok(PodDecision::without_patch(
                PodOutcome::Skipped(Skip::NotRequested),
                vec![],
            ));
        }
        Decision::Skip(skip) => {
            let warning = format!("kafka-expose: {skip}; nothing changed");
            return Ok(PodDecision::without_patch(
                PodOutcome::Skipped(skip),
                vec![warning],
            ));
        }
    };
    let cfg = &detection.config;
    let spec = detection.broker.spec;
    let ordinal = ordinal(pod, cfg, &ann)?;
    let mut warnings = Vec::new();

    let port = cfg.broker_port(detection.port_base, ordinal.ordinal);
    let namespace = pod
        .metadata
        .namespace
        .as_deref()
        .or(ctx.namespace)
        .unwrap_or_default();
    let mut node_types = None;
    let host = match external_host(cfg, &ordinal, ctx)? {
        ExternalHost::Known(h) => h,
        ExternalHost::FromNode(types) => {
            let text = format!("<{} of its node>", type_list(&types));
            node_types = Some(types);
            text
        }
        ExternalHost::Waiting(service) => {
            let message = format!(
                "kafka-expose: broker {} waits for LoadBalancer Service {namespace}/{service} to get an address; the StatefulSet controller retries",
                ordinal.ordinal
            );
            return Ok(PodDecision::without_patch(
                PodOutcome::WaitForAddress { service, message },
                vec![],
            ));
        }
    };

    if let (ExposeMode::Gateway, Some(gateway)) = (cfg.mode, cfg.gateway.as_ref()) {
        let service = cfg.broker_service(&ordinal.workload, ordinal.ordinal);
        let said = (ctx.route)(&service)
            .map(|v| Acceptance::from_annotation(&v))
            .unwrap_or(Acceptance::Pending);
        if !said.is_accepted() {
            let message = format!(
                "kafka-expose: broker {} waits for its route: {}; the StatefulSet controller retries",
                ordinal.ordinal,
                said.describe(&service, gateway)
            );
            return Ok(PodDecision::without_patch(
                PodOutcome::WaitForAddress { service, message },
                vec![],
            ));
        }
    }

    let mut b = PatchBuilder::new();
    if !has_metadata {
        b.add(ptr!("metadata"), Value::Object(Default::default()));
    }
    if let Some(name) = pod.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        let present = pod.metadata.labels.as_ref();
        if present.is_none_or(|l| !l.contains_key(labels::POD_NAME)) {
            b.set_map_entry(&ptr!("metadata", "labels"), present, labels::POD_NAME, name);
        }
    }

    let host_var = match node_types {
        Some(_) => field_var(envs::EXTERNAL_HOST, &external_host_field()),
        None => value_var(envs::EXTERNAL_HOST, &host),
    };
    let base_env = base_env(host_var, port);
    let tls = super::tls::secret_name(
        cfg,
        &ordinal.workload,
        namespace,
        ordinal.ordinal,
        pod.metadata.name.as_deref(),
    )?;
    let listener_tls = tls.as_ref().map(|_| ListenerTls {
        dir: TLS_MOUNT.to_string(),
        client_auth: cfg.tls_client_auth,
    });
    let bi = detection.broker.index;
    let c = detection.broker.container;
    let gated = node_types.is_some() || tls.is_some();
    if gated {
        let gate = Gate {
            node: node_types.is_some(),
            env: &base_env,
            tls: tls.as_deref().map(|secret| GateTls {
                secret,
                client_auth: cfg.tls_client_auth,
                client_ca: cfg.tls_client_ca.as_deref(),
            }),
        };
        gate_ops(&mut b, spec, &ctx.settings.patcher_image, &gate);
    }
    if tls.is_some() {
        tls_mount_op(&mut b, bi, c);
    }
    let tls_env = |env: &mut Vec<EnvVar>| {
        if let Some(t) = &listener_tls {
            env.push(value_var(envs::TLS_DIR, &t.dir));
            env.push(value_var(envs::TLS_CLIENT_AUTH, t.client_auth.as_str()));
        }
    };
    let bind_port = detection.target.for_ordinal(ordinal.ordinal);
    let advertised = format!("{host}:{port}");
    // What it advertises as the kubelet resolves it: a node's address is given at binding.
    let record = match node_types {
        Some(_) => format!("{}:{port}", envs::reference(envs::EXTERNAL_HOST)),
        None => advertised.clone(),
    };
    b.set_map_entry(
        &ptr!("metadata", "annotations"),
        pod.metadata.annotations.as_ref(),
        &format!("{PREFIX}{}", own::ADVERTISED),
        &record,
    );
    // Behind a shared load balancer the port's name routes: only this broker carries it.
    let (port_name, named) = match cfg.mode {
        ExposeMode::SharedLoadBalancer => (broker_port_name(ordinal.ordinal), true),
        _ => (PORT_NAME.to_string(), false),
    };
    match &detection.adapter {
        Adapter::Env(flavor) => {
            let protocol = detection.protocol.unwrap_or(SecurityProtocol::Plaintext);
            let bind = u16::try_from(bind_port).unwrap_or(u16::MAX);
            let plan = env::plan(
                c,
                *flavor,
                &detection.listener_name,
                bind,
                protocol,
                detection.client.as_ref(),
                listener_tls.as_ref(),
            );
            env_ops(&mut b, bi, c, &base_env, &plan.changes);
            warnings.extend(plan.notes.into_iter().map(|n| format!("kafka-expose: {n}")));
            let host_port = hostport(cfg, port);
            container_port_op(&mut b, bi, c, &port_name, bind_port, host_port, named);
        }
        Adapter::Properties(target) => {
            let mut env = base_env.clone();
            env.extend([
                value_var(envs::PROPERTIES_FILE, &target.file),
                value_var(envs::LISTENER_NAME, &detection.listener_name),
                value_var(envs::CONTAINER_PORT, &bind_port.to_string()),
            ]);
            if let Some(p) = cfg.security_protocol {
                env.push(value_var(envs::SECURITY_PROTOCOL, p.as_str()));
            }
            tls_env(&mut env);
            init_container_op(&mut b, spec, c, target, &ctx.settings.patcher_image, env);
            let host_port = hostport(cfg, port);
            container_port_op(&mut b, bi, c, &port_name, bind_port, host_port, named);
        }
        Adapter::Launch(target) => {
            let mut env = base_env.clone();
            env.extend([
                value_var(envs::LISTENER_NAME, &detection.listener_name),
                value_var(envs::CONTAINER_PORT, &bind_port.to_string()),
                value_var(envs::LAUNCH_DIR, LAUNCH_MOUNT),
                value_var(envs::LAUNCH_SCRIPT, &target.script),
            ]);
            if let Some(p) = cfg.security_protocol {
                env.push(value_var(envs::SECURITY_PROTOCOL, p.as_str()));
            }
            tls_env(&mut env);
            if let Some(path) = c
                .termination_message_path
                .as_deref()
                .filter(|p| *p != "/dev/termination-log")
            {
                env.push(value_var(envs::TERMINATION_MESSAGE_PATH, path));
            }
            env_ops(&mut b, bi, c, &env, &[]);
            launch_ops(
                &mut b,
                spec,
                bi,
                c,
                target,
                &ctx.settings.patcher_image,
                gated,
            );
            let host_port = hostport(cfg, port);
            container_port_op(&mut b, bi, c, &port_name, bind_port, host_port, named);
        }
        Adapter::Adopt(plan) => {
            // The chart advertises its own listener; a named port lets the bootstrap Service
            // reach brokers that each bind a different port.
            // The chart may declare that number under its own names (cp-helm-charts'
            // nodeport-<i> on every broker), which differ per broker: the bootstrap Service needs
            // one name that every broker carries.
            if matches!(plan.target, TargetPort::PerOrdinal(_)) {
                container_port_op(&mut b, bi, c, PORT_NAME, bind_port, None, true);
            }
        }
    }

    warnings.insert(0, summary(&detection, &ordinal, &advertised));
    warnings.extend(detection.notes.iter().map(|n| format!("kafka-expose: {n}")));
    Ok(PodDecision {
        patch: b.into_ops(),
        warnings,
        outcome: PodOutcome::Mutated {
            ordinal: ordinal.ordinal,
            adapter: detection.adapter.name(),
            advertised,
        },
    })
}

fn summary(d: &Exposure<'_>, o: &Ordinal, advertised: &str) -> String {
    match &d.adapter {
        Adapter::Adopt(plan) => format!(
            "kafka-expose: broker {} keeps the chart's own listener {} ({}); only its Service is added",
            o.ordinal, plan.listener_name, plan.source
        ),
        a => format!(
            "kafka-expose: broker {} ({}) uses the {} adapter and advertises {} at {advertised}",
            o.ordinal,
            d.broker.container.name,
            a.name(),
            d.listener_name
        ),
    }
}

fn hostport(cfg: &ExposeConfig, port: u32) -> Option<u32> {
    (cfg.mode == ExposeMode::HostPort).then_some(port)
}

/// The broker's ordinal, from the pod-index label, the StatefulSet name suffix, or the
/// `ordinal` annotation.
pub fn ordinal(
    pod: &Pod,
    cfg: &ExposeConfig,
    ann: &BTreeMap<String, String>,
) -> Result<Ordinal, ConfigError> {
    let start: u32 = ann
        .get(own::ORDINALS_START)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) || o.kind == "StatefulSet");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let sts = owner
        .filter(|o| o.kind == "StatefulSet")
        .map(|o| o.name.as_str());
    let from_label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::POD_INDEX))
        .and_then(|v| v.parse::<u32>().ok());
    let from_name = sts
        .and_then(|s| name.strip_prefix(s)?.strip_prefix('-'))
        .and_then(|n| n.parse::<u32>().ok());
    let workload = match owner {
        Some(o) if o.kind == "StatefulSet" => o.name.clone(),
        Some(o) if o.kind == "ReplicaSet" => {
            let hash = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            match hash {
                Some(h) => o
                    .name
                    .strip_suffix(&format!("-{h}"))
                    .unwrap_or(&o.name)
                    .to_string(),
                None => o.name.clone(),
            }
        }
        Some(o) => o.name.clone(),
        None => name.to_string(),
    };
    let ordinal = from_label.or(from_name).or(cfg.ordinal).ok_or_else(|| {
        ConfigError::one(
            keys::ORDINAL,
            "",
            "the broker's ordinal is unknown: the pod is not part of a StatefulSet; set it, e.g. \"0\"",
        )
    })?;
    let index = ordinal.checked_sub(start).ok_or_else(|| {
        ConfigError::one(
            keys::ORDINAL,
            &ordinal.to_string(),
            format!("is below the StatefulSet's spec.ordinals.start {start}"),
        )
    })?;
    Ok(Ordinal {
        ordinal,
        index,
        workload,
    })
}

/// The broker's external host, as far as the webhook can know it.
enum ExternalHost {
    /// The value of `KAFKA_EXPOSE_EXTERNAL_HOST`: a `$(VAR)` reference or a rendered name.
    Known(String),
    /// The LoadBalancer Service whose address is not known yet.
    Waiting(String),
    /// The node's address of these types, from the pod's annotation set at binding.
    FromNode(Vec<NodeAddressType>),
}

fn external_host(
    cfg: &ExposeConfig,
    o: &Ordinal,
    ctx: &PodContext<'_>,
) -> Result<ExternalHost, ConfigError> {
    Ok(ExternalHost::Known(match &cfg.advertised_host {
        AdvertisedHost::HostIp => envs::reference(envs::HOST_IP),
        AdvertisedHost::Template(t) => t.render(|p| match p {
            Placeholder::Ordinal => o.ordinal.to_string(),
            Placeholder::Pod => envs::reference(envs::POD_NAME),
            Placeholder::Namespace => envs::reference(envs::NAMESPACE),
            Placeholder::StatefulSet => o.workload.clone(),
        }),
        AdvertisedHost::Static(hosts) => match cfg.static_host(hosts, o.index) {
            Some(h) => h.to_string(),
            None => {
                return Err(ConfigError::one(
                    keys::ADVERTISED_HOST,
                    &cfg.advertised_host.to_annotation(),
                    format!("has no host for broker {} (index {})", o.ordinal, o.index),
                ));
            }
        },
        AdvertisedHost::Node(types) => return Ok(ExternalHost::FromNode(types.clone())),
        AdvertisedHost::LoadBalancer => {
            let service = cfg.broker_service(&o.workload, o.ordinal);
            match (ctx.lb_address)(&service) {
                Some(addr) => addr,
                None => return Ok(ExternalHost::Waiting(service)),
            }
        }
    }))
}

fn field_var(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                // The API server defaults it to v1; set it so a re-invocation compares equal.
                api_version: Some("v1".into()),
                field_path: path.to_string(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn value_var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// The downward-API fields and the external host and port, in dependency order.
pub fn base_env(external_host: EnvVar, port: u32) -> Vec<EnvVar> {
    vec![
        field_var(envs::HOST_IP, "status.hostIP"),
        field_var(envs::NODE_NAME, "spec.nodeName"),
        field_var(envs::POD_NAME, "metadata.name"),
        field_var(envs::NAMESPACE, "metadata.namespace"),
        external_host,
        value_var(envs::EXTERNAL_PORT, &port.to_string()),
    ]
}

/// The downward-API path of the node address annotation.
pub fn external_host_field() -> String {
    format!("metadata.annotations['{PREFIX}{}']", own::EXTERNAL_HOST)
}

/// `ExternalDNS or ExternalIP`.
pub fn type_list(types: &[NodeAddressType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The file the gate reads, inside its mount.
pub const GATE_FILE: &str = "external-host";

/// How long the gate waits for the node's address before it fails (and the kubelet retries).
pub const GATE_TIMEOUT_SECS: u32 = 120;

/// What the gate waits for: the node's address on the pod (`node`), and with `external-tls` the
/// broker's certificate Secret and its client authentication.
struct Gate<'a> {
    node: bool,
    /// The broker's downward-API fields and external host, so that `--host` expands as the
    /// broker's own variable does.
    env: &'a [EnvVar],
    tls: Option<GateTls<'a>>,
}

/// With `external-tls`: the broker's certificate Secret, its `ssl.client.auth`, and the Secret
/// whose `ca.crt` checks client certificates when it is not the certificate Secret.
struct GateTls<'a> {
    secret: &'a str,
    client_auth: ClientAuth,
    client_ca: Option<&'a str>,
}

/// The gate: a first init container. For a `node:` broker it reads the node address annotation
/// through a downward-API volume, so the broker never advertises an empty host; with
/// `external-tls` it waits for the broker's certificate Secret (mounted `optional`, so the pod
/// starts before it exists) to name that host, and writes the broker's PEM stores to an in-memory
/// volume. Once each.
fn gate_ops(b: &mut PatchBuilder, spec: &PodSpec, image: &str, gate: &Gate<'_>) {
    let inits = spec.init_containers.as_deref();
    if inits.is_some_and(|i| i.iter().any(|c| c.name == GATE_CONTAINER)) {
        return;
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut args = vec!["gate".to_string()];
    if gate.node {
        volumes.push(json!({
            "name": GATE_VOLUME,
            "downwardAPI": {"items": [{
                "path": GATE_FILE,
                "fieldRef": {"apiVersion": "v1", "fieldPath": external_host_field()}
            }]}
        }));
        mounts.push(VolumeMount {
            name: GATE_VOLUME.to_string(),
            mount_path: GATE_MOUNT.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        args.extend(["--file".into(), format!("{GATE_MOUNT}/{GATE_FILE}")]);
    } else {
        args.extend(["--host".into(), envs::reference(envs::EXTERNAL_HOST)]);
    }
    if let Some(GateTls {
        secret,
        client_auth,
        client_ca,
    }) = &gate.tls
    {
        volumes.push(json!({
            "name": TLS_SECRET_VOLUME,
            "secret": {"secretName": secret, "optional": true, "defaultMode": 0o444}
        }));
        volumes.push(json!({"name": TLS_VOLUME, "emptyDir": {"medium": "Memory"}}));
        mounts.push(VolumeMount {
            name: TLS_SECRET_VOLUME.to_string(),
            mount_path: TLS_SECRET_MOUNT.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        mounts.push(VolumeMount {
            name: TLS_VOLUME.to_string(),
            mount_path: TLS_MOUNT.to_string(),
            ..VolumeMount::default()
        });
        args.extend([
            "--tls-secret-dir".into(),
            TLS_SECRET_MOUNT.into(),
            "--tls-dir".into(),
            TLS_MOUNT.into(),
            "--tls-client-auth".into(),
            client_auth.as_str().into(),
        ]);
        if let Some(ca) = client_ca {
            volumes.push(json!({
                "name": TLS_CLIENT_CA_VOLUME,
                "secret": {"secretName": ca, "optional": true, "defaultMode": 0o444,
                           "items": [{"key": crate::certs::CA_CERT, "path": crate::certs::CA_CERT}]}
            }));
            mounts.push(VolumeMount {
                name: TLS_CLIENT_CA_VOLUME.to_string(),
                mount_path: TLS_CLIENT_CA_MOUNT.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            args.extend(["--tls-client-ca-dir".into(), TLS_CLIENT_CA_MOUNT.into()]);
        }
    }
    args.extend(["--timeout".into(), format!("{GATE_TIMEOUT_SECS}s")]);
    let present = spec.volumes.as_deref();
    let volumes: Vec<Value> = volumes
        .into_iter()
        .filter(|v| {
            !present.is_some_and(|p| {
                p.iter()
                    .any(|x| Some(x.name.as_str()) == v["name"].as_str())
            })
        })
        .collect();
    b.append_all(&ptr!("spec", "volumes"), present.is_some(), volumes);
    let gate = to_value(&properties::restricted(Container {
        name: GATE_CONTAINER.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        env: (!gate.node).then(|| gate.env.to_vec()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }));
    match inits {
        // First: every other init container may read the variable it guards.
        Some(_) => b.add(ptr!("spec", "initContainers", 0), gate),
        None => b.add(ptr!("spec", "initContainers"), Value::Array(vec![gate])),
    }
}

/// The broker's read-only mount of the PEM stores the gate wrote. Once.
fn tls_mount_op(b: &mut PatchBuilder, bi: usize, broker: &Container) {
    let mounts = broker.volume_mounts.as_deref();
    if mounts.is_some_and(|ms| ms.iter().any(|m| m.mount_path == TLS_MOUNT)) {
        return;
    }
    let m = VolumeMount {
        name: TLS_VOLUME.to_string(),
        mount_path: TLS_MOUNT.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    b.append_all(
        &ptr!("spec", "containers", bi, "volumeMounts"),
        mounts.is_some(),
        vec![to_value(&m)],
    );
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The env operations on container `ci`: value edits at their original positions first, then the
/// injected variables at the head of the list, then new variables at the end.
fn env_ops(
    b: &mut PatchBuilder,
    ci: usize,
    c: &Container,
    inject: &[EnvVar],
    changes: &[EnvChange],
) {
    let env_path = ptr!("spec", "containers", ci, "env");
    let existing = c.env.as_deref();
    let mut prepend = Vec::new();
    for var in inject {
        match existing.and_then(|e| e.iter().position(|v| v.name == var.name)) {
            Some(j) if existing.is_some_and(|e| e[j] == *var) => {}
            Some(j) => b.replace(ptr!("spec", "containers", ci, "env", j), to_value(var)),
            None => prepend.push(var),
        }
    }
    let mut append = Vec::new();
    for change in changes {
        match change {
            // `add`, not `replace`: a variable written `{name: X}` has no `value` member to
            // replace (found by the decisions fuzz target).
            EnvChange::SetValue { index, value } => b.add(
                ptr!("spec", "containers", ci, "env", *index, "value"),
                Value::String(value.clone()),
            ),
            EnvChange::Append(var) => append.push(to_value(var.as_ref())),
        }
    }
    match existing {
        None => {
            let all: Vec<Value> = prepend.iter().map(|v| to_value(*v)).chain(append).collect();
            b.append_all(&env_path, false, all);
        }
        Some(_) => {
            for (k, var) in prepend.iter().enumerate() {
                b.add(ptr!("spec", "containers", ci, "env", k), to_value(*var));
            }
            b.append_all(&env_path, true, append);
        }
    }
}

/// Declares the external listener's container port as `name` (with its hostPort for
/// `expose=hostport`). With `named`, the port gets that name even when the chart declares its
/// number.
fn container_port_op(
    b: &mut PatchBuilder,
    ci: usize,
    c: &Container,
    name: &str,
    port: u32,
    host_port: Option<u32>,
    named: bool,
) {
    let Ok(port) = i32::try_from(port) else {
        return;
    };
    let want = ContainerPort {
        name: Some(name.into()),
        container_port: port,
        host_port: host_port.and_then(|p| i32::try_from(p).ok()),
        protocol: Some("TCP".into()),
        host_ip: None,
    };
    let ports = c.ports.as_deref();
    let path = ptr!("spec", "containers", ci, "ports");
    match ports {
        None => b.append_all(&path, false, vec![to_value(&want)]),
        Some(ps) => {
            if let Some(j) = ps.iter().position(|p| p.name.as_deref() == Some(name)) {
                if ps[j] != want {
                    b.replace(ptr!("spec", "containers", ci, "ports", j), to_value(&want));
                }
            } else if !named
                && ps.iter().any(|p| {
                    p.container_port == port
                        && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                        && host_port.is_none()
                })
            {
                // The chart declares this port already.
            } else {
                b.append_all(&path, true, vec![to_value(&want)]);
            }
        }
    }
}

/// The launch adapter's volume, its two init containers after the chart's own, and the broker's
/// two mounts of the volume (the directory, and the launcher over the image's script). Each once.
/// `gated`: the gate's operations, before these, made the init container list.
fn launch_ops(
    b: &mut PatchBuilder,
    spec: &PodSpec,
    bi: usize,
    broker: &Container,
    target: &launch::Target,
    image: &str,
    gated: bool,
) {
    let volumes = spec.volumes.as_deref();
    if !volumes.is_some_and(|v| v.iter().any(|v| v.name == LAUNCH_VOLUME)) {
        let volume = json!({"name": LAUNCH_VOLUME, "emptyDir": {}});
        b.append_all(&ptr!("spec", "volumes"), volumes.is_some(), vec![volume]);
    }
    let inits = spec.init_containers.as_deref();
    let has = |name: &str| inits.is_some_and(|i| i.iter().any(|c| c.name == name));
    let mut add = Vec::new();
    if !has(INSTALL_CONTAINER) {
        add.push(to_value(&launch::install_container(image)));
    }
    if !has(SAVE_CONTAINER) {
        add.push(to_value(&launch::save_container(broker, target)));
    }
    // The gate, when there is one, made the list already.
    b.append_all(
        &ptr!("spec", "initContainers"),
        inits.is_some() || gated,
        add,
    );
    let mounts = broker.volume_mounts.as_deref();
    let mut add = Vec::new();
    for m in [launch::mount(), launch::shadow(target)] {
        if !mounts.is_some_and(|ms| ms.iter().any(|x| x.mount_path == m.mount_path)) {
            add.push(to_value(&m));
        }
    }
    b.append_all(
        &ptr!("spec", "containers", bi, "volumeMounts"),
        mounts.is_some(),
        add,
    );
}

fn init_container_op(
    b: &mut PatchBuilder,
    spec: &PodSpec,
    broker: &Container,
    target: &properties::Target,
    image: &str,
    env: Vec<EnvVar>,
) {
    let inits = spec.init_containers.as_deref();
    if inits.is_some_and(|i| i.iter().any(|c| c.name == INIT_CONTAINER)) {
        return;
    }
    let c = properties::init_container(spec, broker, target, image, env);
    b.append_all(
        &ptr!("spec", "initContainers"),
        inits.is_some(),
        vec![to_value(&c)],
    );
}
