//! Configuration: the `kafka-expose.io/*` annotations and the server's own settings, read into a
//! typed [`ExposeConfig`] and validated.
//!
//! Annotations come from the workload's `metadata.annotations` and from its pod template; the
//! template wins where both set a key (SPEC §3). Every invalid value becomes a [`Problem`] that
//! names the annotation, the value and what is allowed, and all problems of one object are
//! reported together, so a user fixes them in one round.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::engine::listeners::SecurityProtocol;

/// The prefix of every annotation kafka-expose reads or writes.
pub const PREFIX: &str = "kafka-expose.io/";

/// Label the workload mutation puts on the pod template. The Pod webhook's `objectSelector`
/// matches it, so the API server calls the Pod webhook only for exposed brokers.
pub const EXPOSED_LABEL: &str = "kafka-expose.io/exposed";

/// The label the StatefulSet controller puts on each pod; per-broker Services select on it.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// The pod-index label of Kubernetes ≥ 1.28 StatefulSet pods.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// User-facing annotation keys, without the prefix.
pub mod keys {
    pub const EXPOSE: &str = "expose";
    pub const ADVERTISED_HOST: &str = "advertised-host";
    pub const PORT_BASE: &str = "port-base";
    pub const ADVERTISED_PORT: &str = "advertised-port";
    pub const CONTAINER_PORT: &str = "container-port";
    pub const LISTENER_NAME: &str = "listener-name";
    pub const SECURITY_PROTOCOL: &str = "security-protocol";
    pub const BOOTSTRAP_NODE_PORT: &str = "bootstrap-node-port";
    pub const EXTERNAL_TRAFFIC_POLICY: &str = "external-traffic-policy";
    pub const LB_SOURCE_RANGES: &str = "load-balancer-source-ranges";
    pub const LB_CLASS: &str = "load-balancer-class";
    pub const SERVICE_ANNOTATIONS: &str = "service-annotations";
    pub const CONTAINER: &str = "container";
    pub const ADAPTER: &str = "adapter";
    pub const ORDINAL: &str = "ordinal";

    /// Every key a user may set.
    pub const ALL: [&str; 15] = [
        EXPOSE,
        ADVERTISED_HOST,
        PORT_BASE,
        ADVERTISED_PORT,
        CONTAINER_PORT,
        LISTENER_NAME,
        SECURITY_PROTOCOL,
        BOOTSTRAP_NODE_PORT,
        EXTERNAL_TRAFFIC_POLICY,
        LB_SOURCE_RANGES,
        LB_CLASS,
        SERVICE_ANNOTATIONS,
        CONTAINER,
        ADAPTER,
        ORDINAL,
    ];
}

/// Annotations kafka-expose writes itself; users do not set them.
pub mod own {
    /// Hash of the effective configuration, in the pod template: changing it rolls the brokers.
    pub const CONFIG_HASH: &str = "config-hash";
    /// Which keys of the pod template were copied from the workload's metadata.
    pub const INHERITED: &str = "inherited";
    /// The StatefulSet's `spec.ordinals.start`, carried to the pods, which cannot see it.
    pub const ORDINALS_START: &str = "ordinals-start";
    /// Reconciler status on the workload.
    pub const STATUS: &str = "status";
    /// The external bootstrap address, published on the workload.
    pub const BOOTSTRAP_SERVERS: &str = "bootstrap-servers";

    pub const ALL: [&str; 5] = [
        CONFIG_HASH,
        INHERITED,
        ORDINALS_START,
        STATUS,
        BOOTSTRAP_SERVERS,
    ];
}

/// The default first port of the advertised NodePorts (SPEC §3): broker *i* gets `32400 + i`.
pub const DEFAULT_PORT_BASE: u16 = 32400;
/// The port every broker advertises behind its own LoadBalancer.
pub const DEFAULT_ADVERTISED_PORT: u16 = 9094;
/// The port the broker binds for the external listener, unless that port is taken.
pub const DEFAULT_CONTAINER_PORT: u16 = 9094;
/// The conventional name of the external listener.
pub const DEFAULT_LISTENER_NAME: &str = "EXTERNAL";
/// kube-apiserver's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: NodePortRange = NodePortRange {
    start: 30000,
    end: 32767,
};

/// The longest name a Service may have (a DNS-1035 label).
pub const MAX_SERVICE_NAME: usize = 63;

/// Server-wide settings that are not per workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The cluster's NodePort range (kube-apiserver `--service-node-port-range`).
    pub node_port_range: NodePortRange,
    /// Image of the properties adapter's init container: kafka-expose's own image by default.
    pub patcher_image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            node_port_range: DEFAULT_NODE_PORT_RANGE,
            patcher_image: default_patcher_image(),
        }
    }
}

/// kafka-expose's own image, at the version of this build.
pub fn default_patcher_image() -> String {
    format!("kafka-expose/kafka-expose:{}", env!("CARGO_PKG_VERSION"))
}

/// An inclusive range of ports, as kube-apiserver's `--service-node-port-range` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    pub start: u16,
    pub end: u16,
}

impl NodePortRange {
    pub fn contains(&self, port: u32) -> bool {
        (self.start as u32..=self.end as u32).contains(&port)
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for NodePortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a port range like 30000-32767"))?;
        let start: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a port number"))?;
        let end: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a port number"))?;
        if start == 0 || start > end {
            return Err(format!("{s:?} is not a range of ports from low to high"));
        }
        Ok(Self { start, end })
    }
}

/// How the brokers are exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExposeMode {
    NodePort,
    LoadBalancer,
    HostPort,
}

impl ExposeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodePort => "nodeport",
            Self::LoadBalancer => "loadbalancer",
            Self::HostPort => "hostport",
        }
    }
}

/// A name with `{ordinal}`, `{pod}`, `{statefulset}` and `{namespace}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(Placeholder),
}

/// The placeholders a [`Template`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Ordinal,
    Pod,
    StatefulSet,
    Namespace,
}

impl Placeholder {
    const ALL: [(&'static str, Placeholder); 4] = [
        ("ordinal", Placeholder::Ordinal),
        ("pod", Placeholder::Pod),
        ("statefulset", Placeholder::StatefulSet),
        ("namespace", Placeholder::Namespace),
    ];
}

impl Template {
    /// Parses a template; an unknown or unclosed placeholder is an error naming it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("the placeholder at {:?} is not closed", &rest[open..]))?;
            let name = &after[..close];
            let slot = Placeholder::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder {{{name}}}; allowed: {{ordinal}} {{pod}} {{statefulset}} {{namespace}}"
                    )
                })?;
            parts.push(Part::Slot(slot));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self {
            parts,
            source: s.to_string(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Renders the template, asking `value` for each placeholder.
    pub fn render(&self, value: impl Fn(Placeholder) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Slot(s) => value(*s),
            })
            .collect()
    }

    /// The literal text of the template, without its placeholders.
    fn literal_text(&self) -> String {
        self.render(|_| String::new())
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
}

impl AdvertisedHost {
    /// The annotation value that gives this setting.
    pub fn to_annotation(&self) -> String {
        match self {
            Self::HostIp => "host-ip".into(),
            Self::Template(t) => format!("template:{}", t.as_str()),
            Self::Static(h) => format!("static:{}", h.join(",")),
            Self::LoadBalancer => "loadbalancer".into(),
        }
    }
}

/// Which adapter makes the broker listen on and advertise the external listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterChoice {
    Auto,
    Env,
    Properties,
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
    /// Annotations for each per-broker Service; values are templates.
    pub service_annotations: BTreeMap<String, Template>,
    pub container: Option<String>,
    pub adapter: AdapterChoice,
    pub ordinal: Option<u32>,
}

impl ExposeConfig {
    /// The port base in force: as set, else the default.
    pub fn port_base_or_default(&self) -> u16 {
        self.port_base.unwrap_or(DEFAULT_PORT_BASE)
    }
}

/// What the annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// No `expose` annotation: the object is not touched.
    Nothing,
    /// `expose: off`: nothing is exposed, and what was is removed.
    Off,
    Expose(ExposeConfig),
}

/// One invalid annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The annotation's full key.
    pub annotation: String,
    pub value: String,
    /// What is wrong and what would work.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.annotation, self.value, self.message)
    }
}

/// All the problems of one object's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid kafka-expose configuration: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn one(key: &str, value: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![problem(key, value, message)],
        }
    }
}

fn problem(key: &str, value: &str, message: impl Into<String>) -> Problem {
    Problem {
        annotation: full_key(key),
        value: value.to_string(),
        message: message.into(),
    }
}

/// `kafka-expose.io/<key>`.
pub fn full_key(key: &str) -> String {
    format!("{PREFIX}{key}")
}

/// The `kafka-expose.io/*` entries of an annotation map, keyed without the prefix.
pub fn own_annotations(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v.clone())))
        .collect()
}

/// Collects problems while the annotations are read.
struct Reader<'a> {
    ann: &'a BTreeMap<String, String>,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.ann.get(key).map(|s| s.trim())
    }

    fn fail(&mut self, key: &str, message: impl Into<String>) {
        let value = self.ann.get(key).cloned().unwrap_or_default();
        self.problems.push(problem(key, &value, message));
    }

    fn port(&mut self, key: &str) -> Option<u16> {
        let v = self.get(key)?;
        match v.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.fail(key, "must be a port number from 1 to 65535");
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, key: &str, options: &[(&str, T)]) -> Option<T> {
        let v = self.get(key)?;
        let found = options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(v))
            .map(|(_, t)| *t);
        if found.is_none() {
            let allowed: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            self.fail(key, format!("allowed: {}", allowed.join(", ")));
        }
        found
    }
}

/// Reads and validates the annotations (keys without prefix, as [`own_annotations`] returns).
///
/// Checks that need the workload (replica count, ports in use) are in [`check_against_workload`].
pub fn parse(ann: &BTreeMap<String, String>) -> Result<Requested, ConfigError> {
    let mut r = Reader {
        ann,
        problems: Vec::new(),
    };
    for key in ann.keys() {
        if !keys::ALL.contains(&key.as_str()) && !own::ALL.contains(&key.as_str()) {
            let hint = keys::ALL
                .iter()
                .find(|k| k.replace('-', "") == key.replace(['-', '_'], "").to_lowercase())
                .map(|k| format!("; did you mean {}?", full_key(k)))
                .unwrap_or_default();
            r.fail(
                key,
                format!(
                    "unknown kafka-expose annotation{hint}; known: {}",
                    keys::ALL.join(", ")
                ),
            );
        }
    }
    let mode = match r.get(keys::EXPOSE) {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("off") => {
            return if r.problems.is_empty() {
                Ok(Requested::Off)
            } else {
                Err(ConfigError {
                    problems: r.problems,
                })
            };
        }
        Some(v) => {
            let m = match v.to_ascii_lowercase().as_str() {
                "nodeport" => Some(ExposeMode::NodePort),
                "loadbalancer" => Some(ExposeMode::LoadBalancer),
                "hostport" => Some(ExposeMode::HostPort),
                _ => None,
            };
            if m.is_none() {
                r.fail(
                    keys::EXPOSE,
                    "allowed: nodeport, loadbalancer, hostport, off",
                );
            }
            m
        }
    };
    if r.get(keys::EXPOSE).is_none() && r.problems.is_empty() {
        return Ok(Requested::Nothing);
    }
    let mode = mode.unwrap_or(ExposeMode::NodePort);

    let advertised_host = match r.get(keys::ADVERTISED_HOST) {
        None if mode == ExposeMode::LoadBalancer => AdvertisedHost::LoadBalancer,
        None => AdvertisedHost::HostIp,
        Some(v) => parse_advertised_host(&mut r, v.to_string(), mode),
    };
    let port_base = r.port(keys::PORT_BASE);
    let advertised_port = r
        .port(keys::ADVERTISED_PORT)
        .unwrap_or(DEFAULT_ADVERTISED_PORT);
    let container_port = r.port(keys::CONTAINER_PORT);
    let listener_name = match r.get(keys::LISTENER_NAME) {
        None => DEFAULT_LISTENER_NAME.to_string(),
        Some(v) => {
            let ok = !v.is_empty()
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && SecurityProtocol::parse(v).is_none();
            if !ok {
                r.fail(
                    keys::LISTENER_NAME,
                    "must be letters, digits and underscores, and not a protocol name such as PLAINTEXT",
                );
            }
            v.to_string()
        }
    };
    let security_protocol = match r.get(keys::SECURITY_PROTOCOL) {
        None => None,
        Some(v) => {
            let p = SecurityProtocol::parse(v);
            if p.is_none() {
                r.fail(
                    keys::SECURITY_PROTOCOL,
                    "allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                );
            }
            p
        }
    };
    let bootstrap_node_port = r.port(keys::BOOTSTRAP_NODE_PORT);
    let external_traffic_policy = r
        .choice(
            keys::EXTERNAL_TRAFFIC_POLICY,
            &[
                ("Cluster", TrafficPolicy::Cluster),
                ("Local", TrafficPolicy::Local),
            ],
        )
        .unwrap_or(TrafficPolicy::Cluster);
    let lb_source_ranges = match r.get(keys::LB_SOURCE_RANGES) {
        None => Vec::new(),
        Some(v) => {
            let ranges: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let bad: Vec<&String> = ranges.iter().filter(|c| !is_cidr(c)).collect();
            if !bad.is_empty() || ranges.is_empty() {
                r.fail(
                    keys::LB_SOURCE_RANGES,
                    format!(
                        "must be comma-separated CIDRs such as 203.0.113.0/24,2001:db8::/32; not CIDRs: {bad:?}"
                    ),
                );
            }
            ranges
        }
    };
    let lb_class = match r.get(keys::LB_CLASS) {
        None => None,
        Some(v) => {
            if !is_qualified_name(v) {
                r.fail(
                    keys::LB_CLASS,
                    "must be a label-style name such as example.com/internal-vip",
                );
            }
            Some(v.to_string())
        }
    };
    let service_annotations = match r.get(keys::SERVICE_ANNOTATIONS) {
        None => BTreeMap::new(),
        Some(v) => parse_service_annotations(&mut r, v.to_string()),
    };
    let container = r.get(keys::CONTAINER).map(str::to_string);
    let adapter = r
        .choice(
            keys::ADAPTER,
            &[
                ("auto", AdapterChoice::Auto),
                ("env", AdapterChoice::Env),
                ("properties", AdapterChoice::Properties),
                ("adopt", AdapterChoice::Adopt),
            ],
        )
        .unwrap_or(AdapterChoice::Auto);
    let ordinal = match r.get(keys::ORDINAL) {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(o) => Some(o),
            Err(_) => {
                r.fail(keys::ORDINAL, "must be a whole number from 0");
                None
            }
        },
    };

    if mode != ExposeMode::LoadBalancer {
        for key in [keys::LB_SOURCE_RANGES, keys::LB_CLASS] {
            if r.get(key).is_some() {
                r.fail(key, "applies only with kafka-expose.io/expose=loadbalancer");
            }
        }
    }
    if mode != ExposeMode::NodePort && r.get(keys::BOOTSTRAP_NODE_PORT).is_some() {
        r.fail(
            keys::BOOTSTRAP_NODE_PORT,
            "applies only with kafka-expose.io/expose=nodeport",
        );
    }
    if mode == ExposeMode::LoadBalancer && r.get(keys::PORT_BASE).is_some() {
        r.fail(
            keys::PORT_BASE,
            "does not apply with expose=loadbalancer, where every broker advertises kafka-expose.io/advertised-port",
        );
    }

    if !r.problems.is_empty() {
        return Err(ConfigError {
            problems: r.problems,
        });
    }
    Ok(Requested::Expose(ExposeConfig {
        mode,
        advertised_host,
        port_base,
        advertised_port,
        container_port,
        listener_name,
        security_protocol,
        bootstrap_node_port,
        external_traffic_policy,
        lb_source_ranges,
        lb_class,
        service_annotations,
        container,
        adapter,
        ordinal,
    }))
}

fn parse_advertised_host(r: &mut Reader<'_>, v: String, mode: ExposeMode) -> AdvertisedHost {
    let key = keys::ADVERTISED_HOST;
    let allowed = "allowed: host-ip, template:<name with {ordinal} {pod} {statefulset} {namespace}>, static:<host0>,<host1>,..., loadbalancer";
    if v == "host-ip" {
        return AdvertisedHost::HostIp;
    }
    if v == "loadbalancer" {
        if mode != ExposeMode::LoadBalancer {
            r.fail(
                key,
                "needs kafka-expose.io/expose=loadbalancer, where each broker has a LoadBalancer Service of its own",
            );
        }
        return AdvertisedHost::LoadBalancer;
    }
    if let Some(t) = v.strip_prefix("template:") {
        return match Template::parse(t) {
            Ok(tpl) => {
                let text = tpl.literal_text();
                if t.trim().is_empty() || !text.chars().all(is_host_char) {
                    r.fail(
                        key,
                        "the template must render to a DNS name or IP, e.g. template:kafka-{ordinal}.example.com",
                    );
                } else if !t.contains("{ordinal}") && !t.contains("{pod}") {
                    r.fail(
                        key,
                        "the template must differ per broker: use {ordinal} or {pod}, e.g. template:kafka-{ordinal}.example.com",
                    );
                }
                AdvertisedHost::Template(tpl)
            }
            Err(e) => {
                r.fail(key, e);
                AdvertisedHost::HostIp
            }
        };
    }
    if let Some(list) = v.strip_prefix("static:") {
        let hosts: Vec<String> = list.split(',').map(|h| h.trim().to_string()).collect();
        let bad: Vec<&String> = hosts.iter().filter(|h| !is_host(h)).collect();
        if !bad.is_empty() {
            r.fail(
                key,
                format!("static: needs one DNS name or IP per broker, separated by commas; not hosts: {bad:?}"),
            );
        }
        return AdvertisedHost::Static(hosts);
    }
    r.fail(key, allowed);
    AdvertisedHost::HostIp
}

fn parse_service_annotations(r: &mut Reader<'_>, v: String) -> BTreeMap<String, Template> {
    let key = keys::SERVICE_ANNOTATIONS;
    let parsed: Result<BTreeMap<String, serde_json::Value>, _> = serde_json::from_str(&v);
    let map = match parsed {
        Ok(m) => m,
        Err(e) => {
            r.fail(
                key,
                format!(
                    "must be a JSON object of strings, e.g. {{\"external-dns.alpha.kubernetes.io/hostname\":\"kafka-{{ordinal}}.example.com\"}}: {e}"
                ),
            );
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (k, val) in map {
        let Some(s) = val.as_str() else {
            r.fail(key, format!("the value of {k:?} must be a string"));
            continue;
        };
        if !is_qualified_name(&k) {
            r.fail(key, format!("{k:?} is not a valid annotation key"));
            continue;
        }
        match Template::parse(s) {
            Ok(t) => {
                out.insert(k, t);
            }
            Err(e) => r.fail(key, format!("in {k:?}: {e}")),
        }
    }
    out
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
}

/// A DNS name or an IP address.
pub fn is_host(h: &str) -> bool {
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// A Kubernetes qualified name: an optional DNS prefix and `/`, then a name of up to 63
/// characters.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(|p| is_host(p) && p.parse::<IpAddr>().is_err())
}

/// Facts about the workload that the configuration must fit.
#[derive(Debug, Clone)]
pub struct WorkloadFacts<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub replicas: u32,
}

/// Checks the configuration against the workload it is on: port ranges for the replica count,
/// `static:` host count, Service name lengths, the Deployment rule of one broker per workload.
pub fn check_against_workload(
    cfg: &ExposeConfig,
    facts: &WorkloadFacts<'_>,
    settings: &Settings,
) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut fail = |key: &str, value: String, message: String| {
        problems.push(problem(key, &value, message));
    };
    let range = settings.node_port_range;
    let n = facts.replicas.max(1);
    if cfg.mode == ExposeMode::NodePort {
        let base = cfg.port_base_or_default();
        let last = base as u32 + n - 1;
        if !range.contains(base as u32) {
            fail(
                keys::PORT_BASE,
                base.to_string(),
                format!("is outside the cluster's NodePort range {range}"),
            );
        } else if !range.contains(last) {
            let fit = range.end as u32 + 1 - n;
            fail(
                keys::PORT_BASE,
                base.to_string(),
                format!(
                    "{} replicas need ports {base}-{last}, beyond the NodePort range {range}; a port-base of at most {fit} fits",
                    facts.replicas
                ),
            );
        }
        if let Some(b) = cfg.bootstrap_node_port {
            if !range.contains(b as u32) {
                fail(
                    keys::BOOTSTRAP_NODE_PORT,
                    b.to_string(),
                    format!("is outside the cluster's NodePort range {range}"),
                );
            } else if (base as u32..=last).contains(&(b as u32)) {
                fail(
                    keys::BOOTSTRAP_NODE_PORT,
                    b.to_string(),
                    format!("collides with the per-broker NodePorts {base}-{last}"),
                );
            }
        }
    }
    if cfg.mode == ExposeMode::HostPort {
        let base = cfg.port_base_or_default();
        if base as u32 + n - 1 > u16::MAX as u32 {
            fail(
                keys::PORT_BASE,
                base.to_string(),
                format!("{} replicas need ports beyond 65535", facts.replicas),
            );
        }
    }
    if let AdvertisedHost::Static(hosts) = &cfg.advertised_host
        && (hosts.len() as u32) < n
    {
        fail(
            keys::ADVERTISED_HOST,
            format!("static:{}", hosts.join(",")),
            format!(
                "lists {} hosts for {} replicas; give one host per broker",
                hosts.len(),
                facts.replicas
            ),
        );
    }
    if facts.kind == "Deployment" {
        if cfg.ordinal.is_none() {
            fail(
                keys::ORDINAL,
                String::new(),
                "is required on a Deployment, which runs one broker: set the broker's ordinal, e.g. \"0\"".into(),
            );
        }
        if facts.replicas > 1 {
            fail(
                keys::EXPOSE,
                cfg.mode.as_str().into(),
                format!(
                    "a Deployment runs one broker and must have 1 replica, not {}; use a StatefulSet for several brokers",
                    facts.replicas
                ),
            );
        }
    }
    let longest = format!(
        "{}-{}-external",
        facts.name,
        n - 1 + cfg.ordinal.unwrap_or(0)
    );
    if longest.len() > MAX_SERVICE_NAME {
        fail(
            keys::EXPOSE,
            cfg.mode.as_str().into(),
            format!(
                "the Service name {longest:?} would be longer than {MAX_SERVICE_NAME} characters; shorten the workload's name"
            ),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
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
        match parse(&ann(pairs)).unwrap() {
            Requested::Expose(c) => c,
            other => panic!("expected an exposure, got {other:?}"),
        }
    }

    fn errors(pairs: &[(&str, &str)]) -> ConfigError {
        parse(&ann(pairs)).unwrap_err()
    }

    fn facts(replicas: u32) -> WorkloadFacts<'static> {
        WorkloadFacts {
            kind: "StatefulSet",
            name: "kafka",
            replicas,
        }
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
        assert!(e.contains("nodeport, loadbalancer, hostport, off"), "{e}");
    }

    #[test]
    fn a_port_base_outside_the_node_port_range_is_refused() {
        let c = expose(&[("expose", "nodeport"), ("port-base", "40000")]);
        let e = check_against_workload(&c, &facts(3), &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka-expose.io/port-base=\"40000\""), "{e}");
        assert!(e.contains("30000-32767"), "{e}");
    }

    #[test]
    fn a_port_base_whose_last_broker_leaves_the_range_is_refused_with_a_fit() {
        let c = expose(&[("expose", "nodeport"), ("port-base", "32766")]);
        let e = check_against_workload(&c, &facts(3), &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("32766-32768"), "{e}");
        assert!(e.contains("at most 32765 fits"), "{e}");
    }

    #[test]
    fn the_node_port_range_is_a_parameter() {
        let c = expose(&[("expose", "nodeport"), ("port-base", "20000")]);
        let settings = Settings {
            node_port_range: "20000-22767".parse().unwrap(),
            ..Settings::default()
        };
        check_against_workload(&c, &facts(3), &settings).unwrap();
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
    fn a_static_list_shorter_than_replicas_is_refused() {
        let c = expose(&[
            ("expose", "nodeport"),
            ("advertised-host", "static:a.example,b.example"),
        ]);
        let e = check_against_workload(&c, &facts(3), &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("lists 2 hosts for 3 replicas"), "{e}");
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
    fn a_bootstrap_port_among_the_broker_ports_is_refused() {
        let c = expose(&[("expose", "nodeport"), ("bootstrap-node-port", "32401")]);
        let e = check_against_workload(&c, &facts(3), &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("collides with the per-broker NodePorts 32400-32402"),
            "{e}"
        );
    }

    #[test]
    fn a_deployment_needs_an_ordinal_and_one_replica() {
        let c = expose(&[("expose", "nodeport")]);
        let f = WorkloadFacts {
            kind: "Deployment",
            name: "broker-a",
            replicas: 2,
        };
        let e = check_against_workload(&c, &f, &Settings::default()).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
    }

    #[test]
    fn templates_render_each_placeholder() {
        let t = Template::parse("{pod}.{namespace}.{statefulset}-{ordinal}").unwrap();
        let s = t.render(|p| match p {
            Placeholder::Pod => "kafka-1".into(),
            Placeholder::Namespace => "ns".into(),
            Placeholder::StatefulSet => "kafka".into(),
            Placeholder::Ordinal => "1".into(),
        });
        assert_eq!(s, "kafka-1.ns.kafka-1");
        assert!(Template::parse("x{ordinal").is_err());
    }

    #[test]
    fn node_port_ranges_parse_like_the_apiserver_flag() {
        assert_eq!(
            "30000-32767".parse::<NodePortRange>().unwrap(),
            DEFAULT_NODE_PORT_RANGE
        );
        assert!("32767-30000".parse::<NodePortRange>().is_err());
        assert!("abc".parse::<NodePortRange>().is_err());
    }
}
