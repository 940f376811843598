//! Configuration: the exposure settings of one workload, read into a typed [`ExposeConfig`] and
//! validated, and the server's own [`Settings`].
//!
//! - [`parse`] reads the `kafka-expose.io/*` annotations (the template's win over the
//!   workload's, SPEC §3; the engine merges them) key by key through the small parsers of
//!   [`values`], collecting every [`Problem`] with its [`Source`], so that a user fixes them all
//!   in one round;
//! - [`fit`] checks a configuration against the workload it is on (the NodePort range for the
//!   replica count, host lists, Service name lengths);
//! - [`settings`] holds what is not per workload; [`template`] the placeholder templates.
//!
//! Annotation keys live in [`crate::names`]. Nothing here knows Kubernetes objects.

pub mod fit;
pub mod problem;
pub mod settings;
pub mod template;
pub mod values;

use std::collections::BTreeMap;

use crate::kafka::SecurityProtocol;
use crate::kafka::tls::ClientAuth;
use crate::names::{PREFIX, broker_service_name, full_key, keys, own, shared_service_name};

pub use fit::{WorkloadFacts, check_against_workload};
pub use problem::{ConfigError, Problem, Source};
pub use settings::{DEFAULT_NODE_PORT_RANGE, NodePortRange, Settings, default_patcher_image};
pub use template::{Placeholder, Template};

/// The default first port of the advertised NodePorts (SPEC §3): broker *i* gets `32400 + i`.
pub const DEFAULT_PORT_BASE: u16 = 32400;
/// The port every broker advertises behind its own LoadBalancer.
pub const DEFAULT_ADVERTISED_PORT: u16 = 9094;
/// The port every broker advertises behind the cluster's Gateway (`expose=gateway`).
pub const DEFAULT_GATEWAY_PORT: u16 = 443;
/// The port the broker binds for the external listener, unless that port is taken.
pub const DEFAULT_CONTAINER_PORT: u16 = 9094;
/// The conventional name of the external listener.
pub const DEFAULT_LISTENER_NAME: &str = "EXTERNAL";

/// How the brokers are exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExposeMode {
    NodePort,
    /// A LoadBalancer Service per broker.
    LoadBalancer,
    HostPort,
    /// One LoadBalancer Service for every broker of the workload, a port per broker: broker *n*
    /// on `base + n`, routed by the named container port `kx-b<n>` that only broker *n* carries.
    SharedLoadBalancer,
    /// Through the cluster's Gateway (Gateway API): a TLSRoute per broker that passes TLS through
    /// to it by SNI, each broker a DNS name of its own, every broker on one address and port.
    Gateway,
}

impl ExposeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodePort => "nodeport",
            Self::LoadBalancer => "loadbalancer",
            Self::HostPort => "hostport",
            Self::SharedLoadBalancer => "shared-loadbalancer",
            Self::Gateway => "gateway",
        }
    }

    /// Whether the brokers are reached through a cloud load balancer (their own or a shared
    /// one).
    pub fn is_load_balancer(self) -> bool {
        matches!(self, Self::LoadBalancer | Self::SharedLoadBalancer)
    }
}

impl std::str::FromStr for ExposeMode {
    type Err = String;

    /// The `expose` annotation's values, but `off`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        values::expose(s)?.ok_or_else(|| "off is no exposure mode".to_string())
    }
}

impl serde::Serialize for ExposeMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The Gateway the TLSRoutes of `expose=gateway` attach to: `<namespace>/<name>[/<listener>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRef {
    pub namespace: String,
    pub name: String,
    /// The Gateway listener's `sectionName`, when the routes attach to one listener only.
    pub section: Option<String>,
}

impl GatewayRef {
    /// The setting as written.
    pub fn to_annotation(&self) -> String {
        match &self.section {
            Some(l) => format!("{}/{}/{l}", self.namespace, self.name),
            None => format!("{}/{}", self.namespace, self.name),
        }
    }
}

/// Where each broker's external host comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvertisedHost {
    /// The node's IP, from the downward API field `status.hostIP`.
    HostIp,
    /// A name per broker, rendered from a template.
    Template(Template),
    /// One host per ordinal.
    Static(Vec<String>),
    /// The ingress IP or hostname of the broker's own LoadBalancer Service.
    LoadBalancer,
    /// The first address of these types the broker's node has (`status.addresses`), set on the
    /// pod as `kafka-expose.io/external-host` when it is bound to the node.
    Node(Vec<NodeAddressType>),
}

/// A Node address type (`status.addresses[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAddressType {
    ExternalDNS,
    ExternalIP,
    InternalDNS,
    InternalIP,
    Hostname,
}

impl NodeAddressType {
    pub const ALL: [Self; 5] = [
        Self::ExternalDNS,
        Self::ExternalIP,
        Self::InternalDNS,
        Self::InternalIP,
        Self::Hostname,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExternalDNS => "ExternalDNS",
            Self::ExternalIP => "ExternalIP",
            Self::InternalDNS => "InternalDNS",
            Self::InternalIP => "InternalIP",
            Self::Hostname => "Hostname",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl AdvertisedHost {
    /// The annotation value that gives this setting.
    pub fn to_annotation(&self) -> String {
        match self {
            Self::HostIp => "host-ip".into(),
            Self::Template(t) => format!("template:{}", t.as_str()),
            Self::Static(h) => format!("static:{}", h.join(",")),
            Self::LoadBalancer => "loadbalancer".into(),
            Self::Node(types) => format!(
                "node:{}",
                types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// Where each broker's certificate for the external listener comes from (`external-tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalTls {
    /// The external listener has no TLS of its own (it may inherit the chart's).
    Off,
    /// The user's own certificates: a `kubernetes.io/tls` Secret per broker, named by the
    /// template (one name for all, such as a wildcard certificate, is allowed).
    Secret(Template),
    /// kafka-expose signs each broker's certificate with the CA key pair in this
    /// `kubernetes.io/tls` Secret of the workload's namespace, into a Secret
    /// `<statefulset>-<ordinal>-external-tls` (the pod's name) that the workload owns.
    Ca(String),
    /// cert-manager issues each broker's certificate: kafka-expose writes a `Certificate` per
    /// broker for that issuer (`kind` is `Issuer` or `ClusterIssuer`) into the same Secret name.
    Issuer { kind: String, name: String },
}

/// How long a certificate kafka-expose signs is valid, by default: 90 days.
pub const DEFAULT_TLS_DURATION: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

/// The Secret name template of certificates kafka-expose signs (`ca:`).
pub const CA_SECRET_TEMPLATE: &str = "{statefulset}-{ordinal}-external-tls";

impl ExternalTls {
    pub fn is_on(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// The setting as written.
    pub fn to_annotation(&self) -> String {
        match self {
            Self::Off => "off".into(),
            Self::Secret(t) => format!("secret:{}", t.as_str()),
            Self::Ca(s) => format!("ca:{s}"),
            Self::Issuer { kind, name } => format!("issuer:{kind}/{name}"),
        }
    }

    /// The template that names each broker's certificate Secret, when there is one.
    pub fn secret_template(&self) -> Option<Template> {
        match self {
            Self::Off => None,
            Self::Secret(t) => Some(t.clone()),
            Self::Ca(_) | Self::Issuer { .. } => Template::parse(CA_SECRET_TEMPLATE).ok(),
        }
    }
}

/// Which adapter makes the broker listen on and advertise the external listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterChoice {
    Auto,
    Env,
    Properties,
    Launch,
    Adopt,
}

/// `externalTrafficPolicy` of the external Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficPolicy {
    Cluster,
    Local,
}

impl TrafficPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "Cluster",
            Self::Local => "Local",
        }
    }
}

/// `on-address-change`: what kafka-expose does when a running broker's external address (or its
/// certificate) is no longer what it should advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnAddressChange {
    /// Evict the stale brokers one at a time (the default).
    #[default]
    Restart,
    /// Report them only.
    Warn,
}

impl OnAddressChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Warn => "warn",
        }
    }

    pub fn parse(v: &str) -> Option<Self> {
        match v.trim() {
            "restart" => Some(Self::Restart),
            "warn" => Some(Self::Warn),
            _ => None,
        }
    }
}

/// The validated exposure settings of one workload (or one pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposeConfig {
    pub mode: ExposeMode,
    pub advertised_host: AdvertisedHost,
    /// `port-base` as set; `None` means the default (or, for adopt, the chart's own scheme).
    pub port_base: Option<u16>,
    pub advertised_port: u16,
    /// `container-port` as set; `None` means the default, moved off any port the broker uses.
    pub container_port: Option<u16>,
    pub listener_name: String,
    pub security_protocol: Option<SecurityProtocol>,
    pub bootstrap_node_port: Option<u16>,
    pub external_traffic_policy: TrafficPolicy,
    pub lb_source_ranges: Vec<String>,
    pub lb_class: Option<String>,
    /// Annotations for each per-broker Service (or the shared one); values are templates.
    pub service_annotations: BTreeMap<String, Template>,
    /// `load-balancer-max-ports`: the most ports (listeners) the shared load balancer takes.
    pub lb_max_ports: Option<u16>,
    pub container: Option<String>,
    pub adapter: AdapterChoice,
    pub ordinal: Option<u32>,
    /// `external-tls`: the external listener's own certificate.
    pub external_tls: ExternalTls,
    /// `external-tls-client-auth`: its `ssl.client.auth`.
    pub tls_client_auth: ClientAuth,
    /// `external-tls-client-ca`: the Secret whose `ca.crt` client certificates are checked
    /// against, instead of the certificate Secret's own `ca.crt`.
    pub tls_client_ca: Option<String>,
    /// `external-tls-duration`: how long a certificate kafka-expose signs (`ca:`) is valid.
    pub tls_duration: std::time::Duration,
    /// `external-tls-renew-before`: how long before its end it is signed again; by default a
    /// third of its duration.
    pub tls_renew_before: Option<std::time::Duration>,
    /// `on-address-change`.
    pub on_address_change: OnAddressChange,
    /// `gateway`: with `expose=gateway`, the Gateway the routes attach to.
    pub gateway: Option<GatewayRef>,
    /// `bootstrap-host`: with `expose=gateway`, the name routed to every broker.
    pub bootstrap_host: Option<String>,
}

impl ExposeConfig {
    /// How long before a signed certificate's end it is signed again.
    pub fn tls_renew_before(&self) -> std::time::Duration {
        self.tls_renew_before.unwrap_or(self.tls_duration / 3)
    }
}

impl ExposeConfig {
    /// The port base in force: as set, else the default.
    pub fn port_base_or_default(&self) -> u16 {
        self.port_base.unwrap_or(DEFAULT_PORT_BASE)
    }

    /// The port broker `ordinal` advertises, with `port_base` the base in force: `advertised-port`
    /// behind a load balancer of its own or the Gateway, else `port_base + ordinal`.
    pub fn broker_port(&self, port_base: u16, ordinal: u32) -> u32 {
        match self.mode {
            ExposeMode::LoadBalancer | ExposeMode::Gateway => self.advertised_port as u32,
            _ => port_base as u32 + ordinal,
        }
    }

    /// The Service that reaches broker `ordinal` of `workload`: its own, or the one shared load
    /// balancer.
    pub fn broker_service(&self, workload: &str, ordinal: u32) -> String {
        match self.mode {
            ExposeMode::SharedLoadBalancer => shared_service_name(workload),
            _ => broker_service_name(workload, ordinal),
        }
    }

    /// The host of broker `index` in a `static:` list: its own, or behind a shared load balancer
    /// the one name every broker may advertise.
    pub fn static_host<'a>(&self, hosts: &'a [String], index: u32) -> Option<&'a str> {
        match hosts {
            [one] if self.mode == ExposeMode::SharedLoadBalancer => Some(one),
            _ => hosts.get(index as usize).map(String::as_str),
        }
    }
}

/// What the annotations ask for.
// Read once per decision and taken apart at once: boxing the configuration would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// No `expose` annotation: the object is not touched.
    Nothing,
    /// `expose: off`: nothing is exposed, and what was is removed.
    Off,
    Expose(ExposeConfig),
}

/// The settings a user set in an annotation map: its `kafka-expose.io/*` entries whose keys are
/// user keys ([`keys::ALL`]), keyed without the prefix; kafka-expose's bookkeeping left out.
pub fn user_annotations(
    annotations: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    own_annotations(annotations)
        .into_iter()
        .filter(|(k, _)| keys::ALL.contains(&k.as_str()))
        .collect()
}

/// The `kafka-expose.io/*` entries of an annotation map, keyed without the prefix.
pub fn own_annotations(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v.clone())))
        .collect()
}

/// Reads values key by key, collecting the problems.
struct Reader<'a> {
    values: &'a BTreeMap<String, String>,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.values.get(key).map(|s| s.trim())
    }

    fn fail(&mut self, key: &str, message: impl Into<String>) {
        let value = self.values.get(key).cloned().unwrap_or_default();
        self.problems
            .push(Problem::annotation(key, &value, message));
    }

    /// The value of `key` through its parser; `None` when absent or invalid.
    fn read<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match parse(self.get(key)?) {
            Ok(t) => Some(t),
            Err(message) => {
                self.fail(key, message);
                None
            }
        }
    }

    /// Refuses keys under the prefix that kafka-expose does not know, suggesting a near one.
    fn unknown_keys(&mut self) {
        let values = self.values;
        for key in values.keys() {
            if keys::ALL.contains(&key.as_str()) || own::ALL.contains(&key.as_str()) {
                continue;
            }
            let hint = keys::ALL
                .iter()
                .find(|k| k.replace('-', "") == key.replace(['-', '_'], "").to_lowercase())
                .map(|k| format!("; did you mean {}?", full_key(k)))
                .unwrap_or_default();
            self.fail(
                key,
                format!(
                    "unknown kafka-expose annotation{hint}; known: {}",
                    keys::ALL.join(", ")
                ),
            );
        }
    }

    /// Refuses `key` when it is set: it does not apply under the chosen mode.
    fn not_with(&mut self, key: &str, why: &str) {
        if self.get(key).is_some() {
            self.fail(key, why);
        }
    }
}

/// Reads and validates the annotations (keys without prefix, as [`own_annotations`] returns).
///
/// Checks that need the workload (replica count, ports in use) are in [`check_against_workload`].
pub fn parse(ann: &BTreeMap<String, String>) -> Result<Requested, ConfigError> {
    let mut r = Reader {
        values: ann,
        problems: Vec::new(),
    };
    r.unknown_keys();
    let mode = match r.read(keys::EXPOSE, values::expose) {
        Some(None) => {
            ConfigError::check(r.problems)?;
            return Ok(Requested::Off);
        }
        Some(Some(mode)) => mode,
        None if r.get(keys::EXPOSE).is_none() && r.problems.is_empty() => {
            return Ok(Requested::Nothing);
        }
        // Invalid or missing with other problems: read the rest, to report everything at once.
        None => ExposeMode::NodePort,
    };

    let advertised_host = r
        .read(keys::ADVERTISED_HOST, |v| values::advertised_host(v, mode))
        .unwrap_or(if mode.is_load_balancer() {
            AdvertisedHost::LoadBalancer
        } else {
            AdvertisedHost::HostIp
        });
    let config = ExposeConfig {
        mode,
        advertised_host,
        port_base: r.read(keys::PORT_BASE, values::port),
        advertised_port: r.read(keys::ADVERTISED_PORT, values::port).unwrap_or(
            if mode == ExposeMode::Gateway {
                DEFAULT_GATEWAY_PORT
            } else {
                DEFAULT_ADVERTISED_PORT
            },
        ),
        container_port: r.read(keys::CONTAINER_PORT, values::port),
        listener_name: r
            .read(keys::LISTENER_NAME, values::listener_name)
            .unwrap_or_else(|| DEFAULT_LISTENER_NAME.to_string()),
        security_protocol: r.read(keys::SECURITY_PROTOCOL, values::security_protocol),
        bootstrap_node_port: r.read(keys::BOOTSTRAP_NODE_PORT, values::port),
        external_traffic_policy: r
            .read(keys::EXTERNAL_TRAFFIC_POLICY, values::traffic_policy)
            .unwrap_or(TrafficPolicy::Cluster),
        lb_source_ranges: r
            .read(keys::LB_SOURCE_RANGES, values::source_ranges)
            .unwrap_or_default(),
        lb_class: r.read(keys::LB_CLASS, values::lb_class),
        service_annotations: r
            .read(keys::SERVICE_ANNOTATIONS, values::service_annotations)
            .unwrap_or_default(),
        lb_max_ports: r.read(keys::LB_MAX_PORTS, values::max_ports),
        container: r.get(keys::CONTAINER).map(str::to_string),
        adapter: r
            .read(keys::ADAPTER, values::adapter)
            .unwrap_or(AdapterChoice::Auto),
        ordinal: r.read(keys::ORDINAL, values::ordinal),
        external_tls: r
            .read(keys::EXTERNAL_TLS, values::external_tls)
            .unwrap_or(ExternalTls::Off),
        tls_client_auth: r
            .read(keys::EXTERNAL_TLS_CLIENT_AUTH, values::client_auth)
            .unwrap_or_default(),
        tls_client_ca: r.read(keys::EXTERNAL_TLS_CLIENT_CA, values::secret_name),
        tls_duration: r
            .read(keys::EXTERNAL_TLS_DURATION, values::lifetime)
            .unwrap_or(DEFAULT_TLS_DURATION),
        tls_renew_before: r.read(keys::EXTERNAL_TLS_RENEW_BEFORE, values::renew_before),
        on_address_change: r
            .read(keys::ON_ADDRESS_CHANGE, values::on_address_change)
            .unwrap_or_default(),
        gateway: r.read(keys::GATEWAY, values::gateway),
        bootstrap_host: r.read(keys::BOOTSTRAP_HOST, values::bootstrap_host),
    };

    if !matches!(
        config.external_tls,
        ExternalTls::Ca(_) | ExternalTls::Issuer { .. }
    ) {
        for key in [keys::EXTERNAL_TLS_DURATION, keys::EXTERNAL_TLS_RENEW_BEFORE] {
            r.not_with(
                key,
                "applies only with kafka-expose.io/external-tls=ca:<Secret> or issuer:<kind>/<name>, where the certificates are signed for kafka-expose",
            );
        }
    }
    if config.tls_renew_before() >= config.tls_duration {
        r.fail(
            keys::EXTERNAL_TLS_RENEW_BEFORE,
            "must be shorter than kafka-expose.io/external-tls-duration, or every certificate is signed again at once",
        );
    }

    if !config.external_tls.is_on() {
        r.not_with(
            keys::EXTERNAL_TLS_CLIENT_AUTH,
            "applies only with kafka-expose.io/external-tls, where the external listener has a certificate of its own",
        );
    }
    if config.tls_client_auth == ClientAuth::None {
        r.not_with(
            keys::EXTERNAL_TLS_CLIENT_CA,
            "applies only with kafka-expose.io/external-tls-client-auth=requested or required, where clients present certificates",
        );
    }
    if config.external_tls.is_on() && config.adapter == AdapterChoice::Adopt {
        r.fail(
            keys::EXTERNAL_TLS,
            "does not apply with kafka-expose.io/adapter=adopt: an adopted listener is the chart's own and keeps the chart's TLS",
        );
    }

    if !mode.is_load_balancer() {
        for key in [keys::LB_SOURCE_RANGES, keys::LB_CLASS] {
            r.not_with(
                key,
                "applies only with kafka-expose.io/expose=loadbalancer or shared-loadbalancer",
            );
        }
    }
    if mode != ExposeMode::SharedLoadBalancer {
        r.not_with(
            keys::LB_MAX_PORTS,
            "applies only with kafka-expose.io/expose=shared-loadbalancer, where the brokers share one load balancer's ports",
        );
    }
    if mode != ExposeMode::NodePort {
        r.not_with(
            keys::BOOTSTRAP_NODE_PORT,
            "applies only with kafka-expose.io/expose=nodeport",
        );
    }
    if mode == ExposeMode::LoadBalancer {
        r.not_with(
            keys::PORT_BASE,
            "does not apply with expose=loadbalancer, where every broker advertises kafka-expose.io/advertised-port",
        );
    }
    if mode == ExposeMode::SharedLoadBalancer {
        r.not_with(
            keys::ADVERTISED_PORT,
            "does not apply with expose=shared-loadbalancer, where broker n advertises kafka-expose.io/port-base + n on the shared address",
        );
        if config.external_traffic_policy != TrafficPolicy::Cluster {
            r.fail(
                keys::EXTERNAL_TRAFFIC_POLICY,
                "must be Cluster with expose=shared-loadbalancer: the cloud's health check is per Service, not per port, so with Local a node running any broker passes it and receives every broker's port, and traffic for a broker that is not on that node is dropped",
            );
        }
        for (key, t) in &config.service_annotations {
            if t.uses(Placeholder::Ordinal) || t.uses(Placeholder::Pod) {
                r.fail(
                    keys::SERVICE_ANNOTATIONS,
                    format!(
                        "the value of {key:?} uses {{ordinal}} or {{pod}}, but with expose=shared-loadbalancer the brokers share one Service; use {{statefulset}} and {{namespace}} only"
                    ),
                );
            }
        }
    }
    if mode == ExposeMode::Gateway {
        gateway_rules(&mut r, &config);
    } else {
        for key in [keys::GATEWAY, keys::BOOTSTRAP_HOST] {
            r.not_with(
                key,
                "applies only with kafka-expose.io/expose=gateway, where the brokers are routed through the cluster's Gateway",
            );
        }
    }
    ConfigError::check(r.problems)?;
    Ok(Requested::Expose(config))
}

/// What `expose=gateway` needs: a Gateway, a DNS name per broker (the Gateway tells the brokers
/// apart by SNI alone), and a certificate per broker (TLS is passed through to the broker, which
/// must present a certificate for the name the client dialled).
fn gateway_rules(r: &mut Reader<'_>, config: &ExposeConfig) {
    if config.gateway.is_none() && r.get(keys::GATEWAY).is_none() {
        r.problems.push(Problem::annotation(
            keys::GATEWAY,
            "",
            "is required with expose=gateway: the Gateway the brokers' TLSRoutes attach to, as <namespace>/<name> or <namespace>/<name>/<listener sectionName>",
        ));
    }
    match &config.advertised_host {
        AdvertisedHost::Template(_) => {}
        _ if r.get(keys::ADVERTISED_HOST).is_none() => r.problems.push(Problem::annotation(
            keys::ADVERTISED_HOST,
            "",
            "is required with expose=gateway: template:<a DNS name with {ordinal}>, e.g. template:kafka-{ordinal}.example.com, that resolves to the Gateway; the Gateway routes each broker by that name (SNI)",
        )),
        _ => r.fail(
            keys::ADVERTISED_HOST,
            "must be template:<a DNS name with {ordinal}> with expose=gateway: the Gateway tells the brokers apart by the name the client dials (SNI), so each broker needs a DNS name of its own",
        ),
    }
    if !config.external_tls.is_on() {
        let value = r.get(keys::EXTERNAL_TLS).unwrap_or_default().to_string();
        r.problems.push(Problem::annotation(
            keys::EXTERNAL_TLS,
            &value,
            "must be on with expose=gateway (ca:<Secret>, issuer:<kind>/<name> or secret:<template>): the Gateway passes TLS through by SNI, so each broker presents its own certificate for its name",
        ));
    }
    if config.adapter == AdapterChoice::Adopt {
        r.fail(
            keys::ADAPTER,
            "adopt does not apply with expose=gateway: an adopted listener keeps the chart's addresses and TLS, and the Gateway needs a DNS name and certificate per broker",
        );
    }
    for key in [keys::PORT_BASE, keys::EXTERNAL_TRAFFIC_POLICY] {
        r.not_with(
            key,
            "does not apply with expose=gateway: every broker is reached on the Gateway's port (kafka-expose.io/advertised-port, 443 by default) through a ClusterIP Service",
        );
    }
}

/// For tests: the exposure that annotations (keys without the prefix) request.
#[cfg(test)]
pub(crate) fn exposure_of(pairs: &[(&str, &str)]) -> ExposeConfig {
    let ann: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match parse(&ann).unwrap() {
        Requested::Expose(c) => c,
        other => panic!("expected an exposure, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expose(pairs: &[(&str, &str)]) -> ExposeConfig {
        exposure_of(pairs)
    }

    fn errors(pairs: &[(&str, &str)]) -> ConfigError {
        parse(&ann(pairs)).unwrap_err()
    }

    #[test]
    fn no_expose_annotation_requests_nothing() {
        assert_eq!(parse(&ann(&[])).unwrap(), Requested::Nothing);
        assert_eq!(
            parse(&ann(&[("expose", "off"), ("port-base", "1")])).unwrap(),
            Requested::Off
        );
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = expose(&[("expose", "nodeport")]);
        assert_eq!(c.advertised_host, AdvertisedHost::HostIp);
        assert_eq!(c.port_base_or_default(), 32400);
        assert_eq!(c.listener_name, "EXTERNAL");
        assert_eq!(c.external_traffic_policy, TrafficPolicy::Cluster);
        let c = expose(&[("expose", "loadbalancer")]);
        assert_eq!(c.advertised_host, AdvertisedHost::LoadBalancer);
        assert_eq!(c.advertised_port, 9094);
    }

    #[test]
    fn an_unknown_mode_names_the_annotation_and_the_choices() {
        let e = errors(&[("expose", "ingress")]).to_string();
        assert!(e.contains("kafka-expose.io/expose=\"ingress\""), "{e}");
        assert!(
            e.contains("nodeport, loadbalancer, shared-loadbalancer, hostport, gateway, off"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_placeholder_is_refused() {
        let e = errors(&[
            ("expose", "nodeport"),
            ("advertised-host", "template:k-{index}.x"),
        ])
        .to_string();
        assert!(e.contains("kafka-expose.io/advertised-host"), "{e}");
        assert!(e.contains("unknown placeholder {index}"), "{e}");
    }

    #[test]
    fn loadbalancer_host_needs_loadbalancer_mode() {
        let e = errors(&[("expose", "nodeport"), ("advertised-host", "loadbalancer")]).to_string();
        assert!(
            e.contains("needs kafka-expose.io/expose=loadbalancer"),
            "{e}"
        );
    }

    #[test]
    fn misspelt_keys_are_refused_with_a_suggestion() {
        let e = errors(&[("expose", "nodeport"), ("port_base", "31000")]).to_string();
        assert!(e.contains("did you mean kafka-expose.io/port-base?"), "{e}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let e = errors(&[
            ("expose", "nodeport"),
            ("container-port", "70000"),
            ("security-protocol", "TLS"),
            ("external-traffic-policy", "Nearest"),
            ("service-annotations", "[1]"),
            ("ordinal", "-1"),
            ("adapter", "magic"),
            ("listener-name", "EXT-1"),
        ]);
        assert_eq!(e.problems.len(), 7, "{e}");
    }

    #[test]
    fn loadbalancer_only_settings_are_refused_elsewhere() {
        let e = errors(&[
            ("expose", "nodeport"),
            ("load-balancer-source-ranges", "10.0.0.0/8"),
        ])
        .to_string();
        assert!(
            e.contains("only with kafka-expose.io/expose=loadbalancer"),
            "{e}"
        );
        let e = errors(&[
            ("expose", "loadbalancer"),
            ("load-balancer-source-ranges", "10.0.0.0/33"),
        ])
        .to_string();
        assert!(e.contains("10.0.0.0/33"), "{e}");
    }

    #[test]
    fn a_shared_load_balancer_advertises_its_address_on_a_port_per_broker() {
        let c = expose(&[("expose", "shared-loadbalancer")]);
        assert_eq!(c.mode, ExposeMode::SharedLoadBalancer);
        assert_eq!(c.advertised_host, AdvertisedHost::LoadBalancer);
        assert_eq!(c.port_base_or_default(), DEFAULT_PORT_BASE);
        // One DNS name for the shared address: no {ordinal} needed.
        let c = expose(&[
            ("expose", "shared-loadbalancer"),
            ("advertised-host", "template:kafka.{namespace}.example.com"),
            ("port-base", "9100"),
            ("load-balancer-class", "example.com/vip"),
            ("load-balancer-max-ports", "10"),
        ]);
        assert_eq!(c.port_base, Some(9100));
        assert_eq!(c.lb_max_ports, Some(10));
    }

    #[test]
    fn a_shared_load_balancer_refuses_local_traffic_and_per_broker_settings_with_reasons() {
        let e = errors(&[
            ("expose", "shared-loadbalancer"),
            ("external-traffic-policy", "Local"),
        ])
        .to_string();
        assert!(
            e.contains("kafka-expose.io/external-traffic-policy=\"Local\""),
            "{e}"
        );
        assert!(
            e.contains("health check is per Service, not per port"),
            "{e}"
        );
        let e = errors(&[
            ("expose", "shared-loadbalancer"),
            ("advertised-port", "9094"),
            ("advertised-host", "host-ip"),
            (
                "service-annotations",
                r#"{"a.example/x":"kafka-{ordinal}"}"#,
            ),
            ("bootstrap-node-port", "31000"),
        ]);
        assert_eq!(e.problems.len(), 4, "{e}");
        let e = e.to_string();
        assert!(e.contains("broker n advertises"), "{e}");
        assert!(e.contains("the load balancer's address"), "{e}");
        assert!(e.contains("share one Service"), "{e}");
        let e = errors(&[
            ("expose", "loadbalancer"),
            ("load-balancer-max-ports", "50"),
        ])
        .to_string();
        assert!(
            e.contains("only with kafka-expose.io/expose=shared-loadbalancer"),
            "{e}"
        );
        let e = errors(&[
            ("expose", "shared-loadbalancer"),
            ("load-balancer-max-ports", "0"),
        ])
        .to_string();
        assert!(e.contains("AWS NLB: 50"), "{e}");
    }

    #[test]
    fn gateway_needs_a_gateway_a_name_per_broker_and_a_certificate_per_broker() {
        let c = expose(&[
            ("expose", "gateway"),
            ("gateway", "infra/public/kafka-tls"),
            ("advertised-host", "template:kafka-{ordinal}.example.com"),
            ("bootstrap-host", "Kafka.example.com"),
            ("external-tls", "ca:kafka-ca"),
        ]);
        assert_eq!(c.mode, ExposeMode::Gateway);
        assert_eq!(c.advertised_port, DEFAULT_GATEWAY_PORT);
        assert_eq!(c.broker_port(0, 3), 443);
        assert_eq!(
            c.gateway,
            Some(GatewayRef {
                namespace: "infra".into(),
                name: "public".into(),
                section: Some("kafka-tls".into())
            })
        );
        assert_eq!(c.bootstrap_host.as_deref(), Some("kafka.example.com"));

        let e = errors(&[("expose", "gateway")]).to_string();
        for needed in [
            "kafka-expose.io/gateway",
            "kafka-expose.io/advertised-host",
            "kafka-expose.io/external-tls",
        ] {
            assert!(e.contains(needed), "{needed}: {e}");
        }
        let e = errors(&[
            ("expose", "gateway"),
            ("gateway", "public"),
            ("advertised-host", "static:a.example.com,b.example.com"),
            ("external-tls", "ca:kafka-ca"),
            ("bootstrap-host", "203.0.113.9"),
            ("port-base", "32400"),
        ])
        .to_string();
        for said in [
            "<namespace>/<name>",
            "must be template:",
            "cannot be an IP",
            "kafka-expose.io/port-base",
        ] {
            assert!(e.contains(said), "{said}: {e}");
        }
        let e = errors(&[
            ("expose", "nodeport"),
            ("gateway", "infra/public"),
            ("bootstrap-host", "kafka.example.com"),
        ])
        .to_string();
        assert!(
            e.contains("applies only with kafka-expose.io/expose=gateway"),
            "{e}"
        );
    }
}
