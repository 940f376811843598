//! `KafkaExposePolicy` (`kafka-expose.io/v1alpha1`, cluster-scoped): which workloads a platform
//! team exposes, with which settings, audited or enforced, and how fast it rolls them.
//!
//! The exposure settings are the annotation settings in camelCase. They are read by the same
//! parser as the annotations ([`crate::config::parse`]); a problem names the policy's field
//! (`spec.exposure.advertisedHost`) instead of the annotation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigError, NodePortRange, Problem, Source};
use crate::names::keys;

/// How many matched workloads a policy's status lists; the total is given beside them.
pub const STATUS_WORKLOADS_CAP: usize = 50;

/// A policy: which workloads (`match`, `exclude`), with which settings (`exposure`), audited or
/// enforced (`mode`), rolled how fast (`rollout`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kafka-expose.io",
    version = "v1alpha1",
    kind = "KafkaExposePolicy",
    plural = "kafkaexposepolicies",
    shortname = "kxp",
    status = "KafkaExposePolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Matched","type":"integer","jsonPath":".status.matched"}"#,
    printcolumn = r#"{"name":"Up-to-date","type":"integer","jsonPath":".status.upToDate"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaExposePolicySpec {
    /// `Audit` reports what would change and changes nothing; `Enforce` exposes.
    pub mode: PolicyMode,
    /// Among Enforce policies matching one workload the highest wins; ties go to the smallest
    /// name, and are reported as a conflict. Settings are never merged across policies.
    #[serde(default)]
    pub priority: i32,
    /// Which workloads the policy selects.
    #[serde(default, rename = "match")]
    pub selection: PolicyMatch,
    /// Workloads the policy never selects.
    #[serde(default)]
    pub exclude: PolicyExclude,
    /// The settings, as if annotated; a workload's own annotations win, key by key.
    pub exposure: PolicyExposure,
    /// How fast an Enforce policy rolls the workloads it changes.
    #[serde(default)]
    pub rollout: Rollout,
}

/// Audit or Enforce.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PolicyMode {
    Audit,
    Enforce,
}

/// Which workloads a policy selects: all of the set fields must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyMatch {
    /// On the labels of the workload's namespace; absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// On the workload's own labels; absent: every workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Globs on the workload's name (`*` any run of characters, `?` one); empty: any name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The kinds selected; absent: StatefulSets only. A Deployment runs one broker and needs
    /// its ordinal annotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<PolicyKind>>,
}

impl PolicyMatch {
    /// The kinds selected, with the default.
    pub fn kinds(&self) -> Vec<PolicyKind> {
        self.kinds
            .clone()
            .unwrap_or_else(|| vec![PolicyKind::StatefulSet])
    }
}

/// A workload kind a policy can select.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum PolicyKind {
    StatefulSet,
    Deployment,
}

/// Workloads a policy never selects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyExclude {
    /// Namespaces, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// The exposure settings: the annotation settings in camelCase (docs/src/annotations.md), and a
/// pool of NodePorts for a policy that matches several workloads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyExposure {
    /// `nodeport`, `loadbalancer`, `shared-loadbalancer`, `hostport` or `gateway` (`off` exposes
    /// nothing).
    pub expose: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    /// One fixed base: only for a policy that matches one workload (NodePorts are cluster-wide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_base: Option<u16>,
    /// A block of NodePorts for each matched workload, allocated once and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_pool: Option<PortPool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_node_port: Option<u16>,
    /// `Cluster` or `Local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// With `shared-loadbalancer`: the most ports (listeners) the load balancer takes (AWS NLB:
    /// 50); a workload with more brokers is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub load_balancer_max_ports: Option<u16>,
    /// Annotations for each per-broker Service, or the shared one; values are templates
    /// (`{ordinal}`, `{pod}`…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,
    /// The broker container's name, where detection needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `auto`, `env`, `properties`, `launch` or `adopt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// The external listener's own certificate: `off`, `ca:<CA Secret>` (kafka-expose signs),
    /// `issuer:<Issuer|ClusterIssuer>/<name>` (cert-manager issues), or `secret:<name template>`
    /// (your own `kubernetes.io/tls` Secret per broker, e.g. `secret:{pod}-external-tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_tls: Option<String>,
    /// With `externalTls`: `none`, `requested` or `required` (Kafka's `ssl.client.auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_tls_client_auth: Option<String>,
    /// With `externalTlsClientAuth` `requested` or `required`: the Secret of the workload's
    /// namespace whose `ca.crt` client certificates are checked against (by default the
    /// certificate Secret's own `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_tls_client_ca: Option<String>,
    /// With `externalTls: ca:…` or `issuer:…`: how long a certificate is valid (`2160h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_tls_duration: Option<String>,
    /// With `externalTls: ca:…` or `issuer:…`: how long before its end it is renewed (a third
    /// of its duration by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_tls_renew_before: Option<String>,
    /// With `expose: gateway`: the Gateway the brokers' TLSRoutes attach to,
    /// `<namespace>/<name>`, or `<namespace>/<name>/<listener sectionName>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// With `expose: gateway`: the DNS name routed to every broker, for clients to bootstrap
    /// from (each broker's certificate names it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_host: Option<String>,
}

/// NodePorts `from..=to`, handed out in blocks of `blockSize`: broker *n* of a workload whose
/// block starts at *b* gets *b + n*.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortPool {
    pub from: u16,
    pub to: u16,
    pub block_size: u16,
}

/// How fast an Enforce policy rolls the workloads it changes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Workloads rolling at once, cluster-wide, for this policy.
    #[serde(default = "one")]
    pub max_concurrent: u32,
    /// How long one workload may take to be updated and Ready before the rollout stops.
    #[serde(default = "twenty_minutes")]
    pub progress_deadline_seconds: u32,
    /// When a running broker's external address (or certificate) changes under it: `restart`
    /// (the default) evicts the stale brokers one at a time, within `maxConcurrent` workloads
    /// and `progressDeadlineSeconds`; `warn` reports them only. A workload's own
    /// `kafka-expose.io/on-address-change` wins. Changing it restarts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "address_change_schema")]
    pub on_address_change: Option<AddressChange>,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_concurrent: one(),
            progress_deadline_seconds: twenty_minutes(),
            on_address_change: None,
        }
    }
}

/// The schema of `rollout.onAddressChange`: a string of the two values. schemars would add
/// `null` to the enum of an `Option`, which a CustomResourceDefinition refuses.
fn address_change_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "When a running broker's external address (or certificate) changes under it: `restart` (the default) evicts the stale brokers one at a time, within `maxConcurrent` workloads and `progressDeadlineSeconds`; `warn` reports them only. A workload's own `kafka-expose.io/on-address-change` wins. Changing it restarts nothing.",
        "type": "string",
        "enum": ["restart", "warn"]
    })
}

/// `rollout.onAddressChange`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddressChange {
    Restart,
    Warn,
}

impl From<AddressChange> for crate::config::OnAddressChange {
    fn from(a: AddressChange) -> Self {
        match a {
            AddressChange::Restart => Self::Restart,
            AddressChange::Warn => Self::Warn,
        }
    }
}

fn one() -> u32 {
    1
}

fn twenty_minutes() -> u32 {
    1200
}

/// What a policy matched and how its rollout stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaExposePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Conflict`, `RolloutProgressing`, `RolloutStalled`, `RestartStalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub matched: u32,
    #[serde(default)]
    pub up_to_date: u32,
    #[serde(default)]
    pub pending: u32,
    #[serde(default)]
    pub workloads_total: u32,
    /// The first matched workloads (at most 50), with `workloadsTotal` beside them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadStatus>,
}

/// One matched workload in a policy's status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    pub namespace: String,
    pub name: String,
    pub kind: String,
    /// `Matched` (an Audit policy: nothing is changed), `Pending`, `Rolling`, `UpToDate`,
    /// `WaitingForRestart`, `Stalled`, `Skipped` (a paused Deployment), `PoolExhausted`,
    /// `Invalid`, `Kept` (enforced earlier, the policy now in Audit), `Reverting`, `Superseded`
    /// (another policy applies), `Excluded`.
    pub state: WorkloadState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// The addresses each broker advertises (or would).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<String>,
    /// The policy keys the workload's own annotations override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a matched workload stands with one policy. Serialized as the variant's name.
// The variants' meanings are in `WorkloadStatus::state`'s description, which the CRD carries; a
// doc comment on each would turn the schema into a `oneOf` the API server does not take.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum WorkloadState {
    // An Audit policy matches: what it would give is previewed, nothing is changed.
    Matched,
    // The template is to change, and waits for a rollout slot (or its first pass).
    Pending,
    // Its template changed, and its controller rolls the brokers.
    Rolling,
    // Its brokers run the policy's settings.
    UpToDate,
    // `OnDelete`: the template carries the settings; each broker takes them when deleted.
    WaitingForRestart,
    // Rolling past the policy's progress deadline.
    Stalled,
    // A paused Deployment: its template is left alone until it is resumed.
    Skipped,
    // The policy's port pool has no block left for it.
    PoolExhausted,
    // The settings it would get do not make a valid configuration.
    Invalid,
    // Enforced earlier; the policy is now in Audit mode, so its brokers keep their settings.
    Kept,
    // No longer selected (or excluded): what the policy set is being removed.
    Reverting,
    // Another policy applies: a higher priority, or a tie the smaller name wins.
    Superseded,
    // Selected, but excluded (by the namespace's label, or the workload's own `expose: off`).
    Excluded,
}

impl WorkloadState {
    /// Every state, in the order the description lists them.
    pub const ALL: [Self; 13] = [
        Self::Matched,
        Self::Pending,
        Self::Rolling,
        Self::UpToDate,
        Self::WaitingForRestart,
        Self::Stalled,
        Self::Skipped,
        Self::PoolExhausted,
        Self::Invalid,
        Self::Kept,
        Self::Reverting,
        Self::Superseded,
        Self::Excluded,
    ];

    /// The name the status carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "Matched",
            Self::Pending => "Pending",
            Self::Rolling => "Rolling",
            Self::UpToDate => "UpToDate",
            Self::WaitingForRestart => "WaitingForRestart",
            Self::Stalled => "Stalled",
            Self::Skipped => "Skipped",
            Self::PoolExhausted => "PoolExhausted",
            Self::Invalid => "Invalid",
            Self::Kept => "Kept",
            Self::Reverting => "Reverting",
            Self::Superseded => "Superseded",
            Self::Excluded => "Excluded",
        }
    }

    /// Whether the policy's settings are in force on its brokers (counted in `upToDate`).
    pub fn is_up_to_date(self) -> bool {
        matches!(self, Self::UpToDate | Self::Kept)
    }

    /// Whether a change is still to reach its brokers (counted in `pending`).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Rolling | Self::Stalled | Self::WaitingForRestart
        )
    }

    /// Whether the policy still counts the workload as matched (all but `Reverting`).
    pub fn is_matched(self) -> bool {
        self != Self::Reverting
    }
}

impl std::fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PolicyExposure {
    /// The settings as annotation values (keys without the prefix), for the annotations' parser.
    /// `portPool` is not an annotation: the allocator turns it into a `port-base` per workload.
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put(keys::EXPOSE, Some(self.expose.clone()));
        put(keys::ADVERTISED_HOST, self.advertised_host.clone());
        put(keys::PORT_BASE, self.port_base.map(|p| p.to_string()));
        put(
            keys::ADVERTISED_PORT,
            self.advertised_port.map(|p| p.to_string()),
        );
        put(
            keys::CONTAINER_PORT,
            self.container_port.map(|p| p.to_string()),
        );
        put(keys::LISTENER_NAME, self.listener_name.clone());
        put(keys::SECURITY_PROTOCOL, self.security_protocol.clone());
        put(keys::EXTERNAL_TLS, self.external_tls.clone());
        put(
            keys::EXTERNAL_TLS_CLIENT_AUTH,
            self.external_tls_client_auth.clone(),
        );
        put(
            keys::EXTERNAL_TLS_CLIENT_CA,
            self.external_tls_client_ca.clone(),
        );
        put(
            keys::EXTERNAL_TLS_DURATION,
            self.external_tls_duration.clone(),
        );
        put(
            keys::EXTERNAL_TLS_RENEW_BEFORE,
            self.external_tls_renew_before.clone(),
        );
        put(
            keys::BOOTSTRAP_NODE_PORT,
            self.bootstrap_node_port.map(|p| p.to_string()),
        );
        put(
            keys::EXTERNAL_TRAFFIC_POLICY,
            self.external_traffic_policy.clone(),
        );
        put(
            keys::LB_SOURCE_RANGES,
            (!self.load_balancer_source_ranges.is_empty())
                .then(|| self.load_balancer_source_ranges.join(",")),
        );
        put(keys::LB_CLASS, self.load_balancer_class.clone());
        put(
            keys::LB_MAX_PORTS,
            self.load_balancer_max_ports.map(|n| n.to_string()),
        );
        put(
            keys::SERVICE_ANNOTATIONS,
            (!self.service_annotations.is_empty())
                .then(|| serde_json::to_string(&self.service_annotations).unwrap_or_default()),
        );
        put(keys::CONTAINER, self.container.clone());
        put(keys::ADAPTER, self.adapter.clone());
        put(keys::GATEWAY, self.gateway.clone());
        put(keys::BOOTSTRAP_HOST, self.bootstrap_host.clone());
        m
    }
}

/// The policy field an annotation key is set by.
pub fn field_of(key: &str) -> String {
    let camel = match key {
        keys::LB_SOURCE_RANGES => "loadBalancerSourceRanges".to_string(),
        keys::LB_CLASS => "loadBalancerClass".to_string(),
        keys::ON_ADDRESS_CHANGE => return "spec.rollout.onAddressChange".into(),
        k => {
            let mut out = String::new();
            let mut upper = false;
            for ch in k.chars() {
                if ch == '-' {
                    upper = true;
                } else if upper {
                    out.push(ch.to_ascii_uppercase());
                    upper = false;
                } else {
                    out.push(ch);
                }
            }
            out
        }
    };
    format!("spec.exposure.{camel}")
}

/// Validates a policy as the webhook does on every write: its selectors, globs and pool (within
/// the cluster's NodePort `range`), and its exposure through the annotations' parser. Every
/// problem names the field.
pub fn validate(spec: &KafkaExposePolicySpec, range: NodePortRange) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut field = |path: &str, value: String, message: String| {
        problems.push(Problem {
            source: Source::Field(path.to_string()),
            value,
            message,
        });
    };
    for (path, sel) in [
        (
            "spec.match.namespaceSelector",
            &spec.selection.namespace_selector,
        ),
        ("spec.match.selector", &spec.selection.selector),
    ] {
        if let Some(sel) = sel
            && let Err(e) = kube::core::Selector::try_from(sel.clone())
        {
            field(
                path,
                serde_json::to_string(sel).unwrap_or_default(),
                format!(
                    "is not a valid label selector ({}); operators are In, NotIn, Exists and DoesNotExist",
                    e.0
                ),
            );
        }
    }
    for (i, glob) in spec.selection.names.iter().enumerate() {
        if glob.is_empty() || glob.len() > 253 {
            field(
                &format!("spec.match.names[{i}]"),
                glob.clone(),
                "must be a non-empty glob of a workload's name, e.g. kafka*".into(),
            );
        }
    }
    if spec.selection.kinds.as_ref().is_some_and(Vec::is_empty) {
        field(
            "spec.match.kinds",
            "[]".into(),
            "selects nothing; leave it out for StatefulSets, or name StatefulSet and Deployment"
                .into(),
        );
    }
    if spec.rollout.max_concurrent == 0 {
        field(
            "spec.rollout.maxConcurrent",
            "0".into(),
            "must be at least 1".into(),
        );
    }
    if spec.rollout.progress_deadline_seconds == 0 {
        field(
            "spec.rollout.progressDeadlineSeconds",
            "0".into(),
            "must be at least 1".into(),
        );
    }
    let e = &spec.exposure;
    if let Some(pool) = e.port_pool {
        let shown = format!(
            "{{from: {}, to: {}, blockSize: {}}}",
            pool.from, pool.to, pool.block_size
        );
        let (lo, hi) = (range.start, range.end);
        if e.port_base.is_some() {
            field(
                "spec.exposure.portPool",
                shown.clone(),
                "cannot be set with spec.exposure.portBase; a pool gives each workload its own base".into(),
            );
        }
        if pool.from < lo || pool.to > hi || pool.from > pool.to {
            field(
                "spec.exposure.portPool",
                shown.clone(),
                format!("must lie within the NodePort range {lo}-{hi}, from <= to"),
            );
        } else if pool.block_size == 0 || pool.block_size > pool.to - pool.from + 1 {
            field(
                "spec.exposure.portPool.blockSize",
                pool.block_size.to_string(),
                format!(
                    "must be from 1 to the pool's size, {}",
                    pool.to - pool.from + 1
                ),
            );
        }
        if !e.expose.trim().eq_ignore_ascii_case("nodeport") {
            field(
                "spec.exposure.portPool",
                shown,
                "applies only with expose: nodeport".into(),
            );
        }
    }
    let ann = e.to_annotations();
    if let Err(err) = config::parse(&ann) {
        for mut p in err.problems {
            if let Source::Annotation(key) = &p.source {
                p.source = Source::Field(field_of(key));
            }
            problems.push(p);
        }
    }
    ConfigError::check(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_NODE_PORT_RANGE;

    fn spec(yaml: &str) -> KafkaExposePolicySpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_policy_reads_with_its_defaults() {
        let s = spec("mode: Audit\nexposure: {expose: nodeport}\n");
        assert_eq!(s.priority, 0);
        assert_eq!(s.selection.kinds(), vec![PolicyKind::StatefulSet]);
        assert_eq!(s.rollout, Rollout::default());
        assert_eq!(s.rollout.max_concurrent, 1);
        assert!(validate(&s, DEFAULT_NODE_PORT_RANGE).is_ok());
    }

    #[test]
    fn problems_name_the_policy_field_with_the_annotation_parser_message() {
        let s = spec(
            "mode: Enforce\nexposure: {expose: nodeport, advertisedHost: 'no such', externalTrafficPolicy: Sometimes}\n",
        );
        let e = validate(&s, DEFAULT_NODE_PORT_RANGE)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.exposure.advertisedHost=\"no such\""),
            "{e}"
        );
        assert!(
            e.contains("spec.exposure.externalTrafficPolicy=\"Sometimes\""),
            "{e}"
        );
        assert!(!e.contains("kafka-expose.io/advertised-host="), "{e}");
    }

    #[test]
    fn a_pool_must_fit_the_node_port_range_and_exclude_a_fixed_base() {
        let s = spec(
            "mode: Enforce\nexposure: {expose: nodeport, portBase: 31000, portPool: {from: 29000, to: 31999, blockSize: 10}}\n",
        );
        let e = validate(&s, DEFAULT_NODE_PORT_RANGE)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot be set with spec.exposure.portBase"),
            "{e}"
        );
        assert!(e.contains("NodePort range 30000-32767"), "{e}");
        let s = spec(
            "mode: Enforce\nexposure: {expose: loadbalancer, portPool: {from: 31000, to: 31009, blockSize: 20}}\n",
        );
        let e = validate(&s, DEFAULT_NODE_PORT_RANGE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.exposure.portPool.blockSize=\"20\""), "{e}");
        assert!(e.contains("applies only with expose: nodeport"), "{e}");
    }

    #[test]
    fn a_bad_selector_and_empty_kinds_are_refused() {
        let s = spec(
            "mode: Audit\nmatch: {selector: {matchExpressions: [{key: a, operator: Near}]}, kinds: []}\nexposure: {expose: nodeport}\n",
        );
        let e = validate(&s, DEFAULT_NODE_PORT_RANGE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.match.selector="), "{e}");
        assert!(e.contains("spec.match.kinds=\"[]\""), "{e}");
    }

    #[test]
    fn a_shared_load_balancer_policy_validates_and_refuses_local_traffic_by_field() {
        let s = spec(
            "mode: Enforce\nexposure: {expose: shared-loadbalancer, portBase: 9100, loadBalancerMaxPorts: 50}\n",
        );
        validate(&s, DEFAULT_NODE_PORT_RANGE).unwrap();
        assert_eq!(
            s.exposure
                .to_annotations()
                .get(keys::LB_MAX_PORTS)
                .map(String::as_str),
            Some("50")
        );
        let e = validate(
            &spec("mode: Enforce\nexposure: {expose: shared-loadbalancer, externalTrafficPolicy: Local}\n"),
            DEFAULT_NODE_PORT_RANGE,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("spec.exposure.externalTrafficPolicy=\"Local\""),
            "{e}"
        );
        assert!(e.contains("per Service, not per port"), "{e}");
    }

    #[test]
    fn every_annotation_key_has_a_policy_field_but_the_per_workload_ordinal() {
        let full = PolicyExposure {
            expose: "loadbalancer".into(),
            advertised_host: Some("h".into()),
            port_base: Some(1),
            advertised_port: Some(1),
            container_port: Some(1),
            listener_name: Some("X".into()),
            security_protocol: Some("SSL".into()),
            bootstrap_node_port: Some(1),
            external_traffic_policy: Some("Local".into()),
            load_balancer_source_ranges: vec!["10.0.0.0/8".into()],
            load_balancer_class: Some("c".into()),
            load_balancer_max_ports: Some(50),
            service_annotations: [("a".to_string(), "b".to_string())].into(),
            container: Some("c".into()),
            adapter: Some("env".into()),
            port_pool: None,
            external_tls: Some("secret:{pod}-tls".into()),
            external_tls_client_auth: Some("required".into()),
            external_tls_client_ca: Some("clients-ca".into()),
            external_tls_duration: Some("60s".into()),
            external_tls_renew_before: Some("30s".into()),
            gateway: Some("infra/public".into()),
            bootstrap_host: Some("kafka.example.com".into()),
        };
        let set: Vec<String> = full.to_annotations().into_keys().collect();
        let want: Vec<String> = keys::ALL
            .iter()
            // The ordinal is per workload; what happens on an address change is the rollout's.
            .filter(|k| **k != keys::ORDINAL && **k != keys::ON_ADDRESS_CHANGE)
            .map(|k| k.to_string())
            .collect();
        let mut want = want;
        want.sort();
        assert_eq!(set, want);
        assert_eq!(
            field_of(keys::LB_SOURCE_RANGES),
            "spec.exposure.loadBalancerSourceRanges"
        );
        assert_eq!(
            field_of(keys::BOOTSTRAP_NODE_PORT),
            "spec.exposure.bootstrapNodePort"
        );
    }

    #[test]
    fn the_policies_guide_example_reads_and_validates() {
        let readme = include_str!("../../docs/src/policies.md");
        let start = readme
            .find("```yaml\napiVersion: kafka-expose.io/v1alpha1")
            .expect("the policies guide has a policy example")
            + "```yaml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let p: KafkaExposePolicy = serde_saphyr::from_str(&readme[start..end]).unwrap();
        assert_eq!(p.spec.mode, PolicyMode::Audit);
        assert_eq!(p.spec.exposure.port_pool.map(|p| p.block_size), Some(10));
        validate(&p.spec, DEFAULT_NODE_PORT_RANGE).unwrap();
    }
}
