//! Parsing and editing of Kafka listener lists and listener security protocol maps.
//!
//! Kafka's `listeners` and `advertised.listeners` are comma-separated `NAME://host:port` entries
//! (<https://kafka.apache.org/documentation/#brokerconfigs_listeners>), and
//! `listener.security.protocol.map` is a comma-separated list of `NAME:PROTOCOL` pairs
//! (<https://kafka.apache.org/documentation/#brokerconfigs_listener.security.protocol.map>).
//! Listener names are case-insensitive in Kafka; this module compares them case-insensitively and
//! writes them as given.
//!
//! Every edit here is idempotent: adding a listener whose name is already present returns the
//! input unchanged, so a mutation applied to its own output changes nothing.

use std::fmt;

/// The protocol names Kafka knows without a map entry. Kafka's default
/// `listener.security.protocol.map` maps each of them to itself.
pub const DEFAULT_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// Kafka's default `listeners` when neither `listeners` nor `advertised.listeners` is set.
pub const DEFAULT_LISTENERS: &str = "PLAINTEXT://:9092";

/// A Kafka security protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl SecurityProtocol {
    /// Parses a protocol name as Kafka spells it (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether clients speak TLS to a listener of this protocol, and so verify its host name.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// How much the protocol protects: encryption counts more than authentication.
    /// `SASL_SSL` > `SSL` > `SASL_PLAINTEXT` > `PLAINTEXT`.
    pub fn strength(self) -> u8 {
        match self {
            Self::Plaintext => 0,
            Self::SaslPlaintext => 1,
            Self::Ssl => 2,
            Self::SaslSsl => 3,
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `NAME://host:port` entry of a listener list, kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    /// Everything between `://` and the last `:`; may be empty, a `$(VAR)` or `${VAR}` reference.
    pub host: String,
    /// Everything after the last `:`; usually a number, but may be a shell or `$(VAR)` expression.
    pub port: String,
}

impl Listener {
    /// The port as a number, when it is one.
    pub fn port_number(&self) -> Option<u16> {
        self.port.trim().parse().ok()
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.name, self.host, self.port)
    }
}

/// Splits a listener list into entries. Entries that do not have the `NAME://host:port` shape are
/// skipped; Kafka would refuse them at start, so they are not ours to repair.
pub fn parse_listeners(value: &str) -> Vec<Listener> {
    items(value)
        .filter_map(|entry| {
            let (name, rest) = entry.split_once("://")?;
            let (host, port) = split_host_port(rest)?;
            Some(Listener {
                name: name.trim().to_string(),
                host: host.to_string(),
                port: port.to_string(),
            })
        })
        .collect()
}

/// Splits `host:port` at the port's colon. The host may be an IPv6 literal in brackets, and the
/// port may be a shell arithmetic expression such as `$((31090 + ${KAFKA_BROKER_ID}))` that holds
/// no colon of its own.
fn split_host_port(rest: &str) -> Option<(&str, &str)> {
    if let Some(stripped) = rest.strip_prefix('[') {
        let close = stripped.find(']')?;
        let after = &stripped[close + 1..];
        let port = after.strip_prefix(':')?;
        return Some((&rest[..close + 2], port));
    }
    // A port expression like `$((a + b))` or `$(VAR)` holds no colon, a host may hold `$(VAR)`.
    let idx = rest.rfind(':')?;
    Some((&rest[..idx], &rest[idx + 1..]))
}

/// Whether a listener list names `name` (case-insensitive).
pub fn has_listener(value: &str, name: &str) -> bool {
    parse_listeners(value)
        .iter()
        .any(|l| l.name.eq_ignore_ascii_case(name))
}

/// Appends `entry` to a comma-separated list unless a listener of the same name is present.
pub fn append_listener(value: &str, entry: &Listener) -> String {
    if has_listener(value, &entry.name) {
        return value.to_string();
    }
    append_item(value, &entry.to_string())
}

fn append_item(value: &str, item: &str) -> String {
    let trimmed = value.trim_end().trim_end_matches(',');
    if trimmed.trim().is_empty() {
        item.to_string()
    } else {
        format!("{trimmed},{item}")
    }
}

/// Parses `listener.security.protocol.map` into `(name, protocol)` pairs, as written.
pub fn parse_protocol_map(value: &str) -> Vec<(String, String)> {
    items(value)
        .filter_map(|pair| {
            let (name, proto) = pair.split_once(':')?;
            Some((name.trim().to_string(), proto.trim().to_string()))
        })
        .collect()
}

/// The protocol a listener name maps to: its map entry, or the name itself when the name is one
/// of Kafka's protocol names and the map is Kafka's default (absent).
pub fn protocol_of(map: Option<&str>, name: &str) -> Option<SecurityProtocol> {
    match map {
        Some(map) => parse_protocol_map(map)
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, p)| SecurityProtocol::parse(&p)),
        None => SecurityProtocol::parse(name),
    }
}

/// Adds `name:protocol` to a protocol map unless `name` is mapped already.
pub fn append_protocol(map: &str, name: &str, protocol: SecurityProtocol) -> String {
    let present = parse_protocol_map(map)
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name));
    if present {
        return map.to_string();
    }
    append_item(map, &format!("{name}:{protocol}"))
}

/// The whole protocol map to write where none is set: Kafka's default entries, an identity entry
/// for each other listener named like a protocol, and the external listener. Kafka's default map
/// only knows the four protocol names, so a new listener name must be added explicitly.
pub fn full_protocol_map(
    listener_names: &[&str],
    name: &str,
    protocol: SecurityProtocol,
) -> String {
    let mut map = DEFAULT_PROTOCOLS
        .iter()
        .map(|p| format!("{p}:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    for l in listener_names {
        if let Some(p) = SecurityProtocol::parse(l) {
            map = append_protocol(&map, l, p);
        }
    }
    append_protocol(&map, name, protocol)
}

/// Splits a comma-separated list of listener names (`controller.listener.names`).
pub fn parse_names(value: &str) -> Vec<String> {
    items(value).map(str::to_string).collect()
}

/// The non-empty items of a comma-separated Kafka list, trimmed.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A broker's listener settings, as read from wherever its chart puts them (variables or a
/// properties file); `None` where unset.
#[derive(Debug, Clone, Default)]
pub struct ListenerSet<'a> {
    pub listeners: Option<&'a str>,
    pub advertised: Option<&'a str>,
    pub protocol_map: Option<&'a str>,
    pub inter_broker: Option<&'a str>,
    pub controller_names: Option<&'a str>,
    pub process_roles: Option<&'a str>,
}

/// The listener that outside clients should get the same treatment as: the broker's client
/// listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientListener {
    pub name: String,
    pub protocol: SecurityProtocol,
}

impl ListenerSet<'_> {
    /// Listener names that serve the KRaft controller quorum.
    pub fn controller_names(&self) -> Vec<String> {
        self.controller_names.map(parse_names).unwrap_or_default()
    }

    /// Whether `process.roles` makes this a KRaft controller that is not also a broker: it gets
    /// no external listener.
    pub fn is_controller_only(&self) -> bool {
        self.process_roles.is_some_and(|roles| {
            let roles = parse_names(roles.trim_matches('"'));
            let has = |r: &str| roles.iter().any(|x| x.eq_ignore_ascii_case(r));
            has("controller") && !has("broker")
        })
    }

    pub fn is_controller(&self, name: &str) -> bool {
        self.controller_names()
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    /// The listeners the broker binds, as Kafka derives them: `listeners`, else one bind entry
    /// (no host) per advertised listener, else Kafka's default [`DEFAULT_LISTENERS`].
    pub fn bound(&self) -> Vec<Listener> {
        match (self.listeners, self.advertised) {
            (Some(l), _) => parse_listeners(l),
            (None, Some(a)) => parse_listeners(a)
                .into_iter()
                .map(|l| Listener {
                    host: String::new(),
                    ..l
                })
                .collect(),
            (None, None) => parse_listeners(DEFAULT_LISTENERS),
        }
    }

    /// The client listener, among the advertised listeners (else the bound ones): a
    /// non-controller, non-inter-broker listener (one named `CLIENT`
    /// first), else the inter-broker listener, else the first non-controller one.
    pub fn client_listener(&self) -> Option<ClientListener> {
        // What the broker advertises, else what it binds (Kafka's default when nothing is set).
        let mut candidates: Vec<Listener> = match self.advertised {
            Some(a) => parse_listeners(a),
            None => self.bound(),
        };
        candidates.retain(|l| !self.is_controller(&l.name));
        let inter = self.inter_broker.map(str::trim).filter(|s| !s.is_empty());
        let is_inter = |l: &Listener| inter.is_some_and(|i| l.name.eq_ignore_ascii_case(i));
        let pick = candidates
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case("CLIENT"))
            .or_else(|| candidates.iter().find(|l| !is_inter(l)))
            .or_else(|| candidates.first())?;
        let protocol = protocol_of(self.protocol_map, &pick.name)?;
        Some(ClientListener {
            name: pick.name.clone(),
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_with_variables_and_expressions_parse() {
        let l = parse_listeners(
            "PLAINTEXT://${POD_NAME}.svc:9092,EXTERNAL://${HOST_IP}:$((31090 + ${KAFKA_BROKER_ID}))",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].host, "${POD_NAME}.svc");
        assert_eq!(l[0].port_number(), Some(9092));
        assert_eq!(l[1].name, "EXTERNAL");
        assert_eq!(l[1].host, "${HOST_IP}");
        assert_eq!(l[1].port, "$((31090 + ${KAFKA_BROKER_ID}))");
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        let l = parse_listeners("PLAINTEXT://[::1]:9092");
        assert_eq!(l[0].host, "[::1]");
        assert_eq!(l[0].port, "9092");
    }

    #[test]
    fn appending_a_present_listener_changes_nothing() {
        let value = "CLIENT://:9092,external://:9095";
        let entry = Listener {
            name: "EXTERNAL".into(),
            host: String::new(),
            port: "9095".into(),
        };
        assert_eq!(append_listener(value, &entry), value);
        assert_eq!(
            append_listener("CLIENT://:9092,", &entry),
            "CLIENT://:9092,EXTERNAL://:9095"
        );
    }

    #[test]
    fn protocol_map_appends_once() {
        let m = append_protocol("CLIENT:SASL_SSL", "EXTERNAL", SecurityProtocol::SaslSsl);
        assert_eq!(m, "CLIENT:SASL_SSL,EXTERNAL:SASL_SSL");
        assert_eq!(
            append_protocol(&m, "external", SecurityProtocol::Plaintext),
            m
        );
    }

    #[test]
    fn a_missing_protocol_map_is_written_whole() {
        let m = full_protocol_map(&["PLAINTEXT"], "EXTERNAL", SecurityProtocol::Plaintext);
        assert_eq!(
            m,
            "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,EXTERNAL:PLAINTEXT"
        );
    }

    #[test]
    fn client_listener_prefers_client_then_non_inter_broker() {
        let set = ListenerSet {
            listeners: Some("INTERNAL://:9094,CLIENT://:9092,CONTROLLER://:9093"),
            advertised: None,
            protocol_map: Some("INTERNAL:PLAINTEXT,CLIENT:SASL_SSL,CONTROLLER:PLAINTEXT"),
            inter_broker: Some("INTERNAL"),
            controller_names: Some("CONTROLLER"),
            process_roles: None,
        };
        assert_eq!(
            set.client_listener(),
            Some(ClientListener {
                name: "CLIENT".into(),
                protocol: SecurityProtocol::SaslSsl
            })
        );
        let set = ListenerSet {
            listeners: Some("PLAINTEXT://:9092,CONTROLLER://:9093"),
            protocol_map: Some("CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
            inter_broker: Some("PLAINTEXT"),
            controller_names: Some("CONTROLLER"),
            ..Default::default()
        };
        assert_eq!(set.client_listener().unwrap().name, "PLAINTEXT");
    }

    #[test]
    fn protocol_of_uses_the_name_only_without_a_map() {
        assert_eq!(protocol_of(None, "SSL"), Some(SecurityProtocol::Ssl));
        assert_eq!(protocol_of(None, "CLIENT"), None);
        assert_eq!(
            protocol_of(Some("CLIENT:SSL"), "client"),
            Some(SecurityProtocol::Ssl)
        );
    }
}
