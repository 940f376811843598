//! "Add the external listener to this broker's configuration": the one edit of Kafka settings
//! that kafka-expose makes, whether the settings live in `KAFKA_*` variables (the env adapter) or
//! in a `server.properties` (`patch-properties`, the properties adapter's init container).
//!
//! Given a broker's listener settings ([`ListenerSet`]) and the external listener
//! ([`External`]), [`add_external`] returns the new `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map`:
//! - `listeners` gets `NAME://:<bind port>`; when unset, Kafka would derive it from the
//!   advertised listeners (binding the advertised NodePort), so it is written out whole;
//! - `advertised.listeners` gets `NAME://<host>:<port>`; when unset, Kafka advertises
//!   `listeners`, so those are written out first, without the controller listeners;
//! - the protocol map gets `NAME:<protocol>`; when unset it is written whole, since Kafka's
//!   default map knows only the four protocol names
//!   (<https://kafka.apache.org/documentation/#brokerconfigs_listener.security.protocol.map>).
//!
//! [`choose_protocol`] picks the listener's protocol, and [`copy_scoped`] copies the client
//! listener's `listener.name.<client>.*` settings (SASL JAAS configs and the like) to it. Every
//! step is idempotent: applied to its own output it changes nothing.

use super::listeners::{
    ClientListener, Listener, ListenerSet, SecurityProtocol, append_listener, append_protocol,
    full_protocol_map,
};

/// The external listener to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External<'a> {
    pub name: &'a str,
    /// The container port the broker binds for it.
    pub bind_port: u16,
    /// The host it advertises: an address, or a reference such as `$(KAFKA_EXPOSE_EXTERNAL_HOST)`.
    pub advertised_host: &'a str,
    /// The port it advertises: a number, or a reference.
    pub advertised_port: &'a str,
    pub protocol: SecurityProtocol,
}

impl External<'_> {
    /// The `listeners` entry: `NAME://:port`.
    pub fn bind_entry(&self) -> Listener {
        Listener {
            name: self.name.to_string(),
            host: String::new(),
            port: self.bind_port.to_string(),
        }
    }

    /// The `advertised.listeners` entry: `NAME://host:port`.
    pub fn advertised_entry(&self) -> Listener {
        Listener {
            name: self.name.to_string(),
            host: self.advertised_host.to_string(),
            port: self.advertised_port.to_string(),
        }
    }
}

/// The three settings after the edit. Each equals its input when nothing had to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEdit {
    pub listeners: String,
    pub advertised: String,
    pub protocol_map: String,
    /// `listeners` was unset and is written out, so the broker binds the bind port.
    pub derived_listeners: bool,
    /// `advertised.listeners` was unset and is written out from the listeners.
    pub derived_advertised: bool,
}

fn join(listeners: &[Listener]) -> String {
    listeners
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Adds the external listener to a broker's listener settings.
pub fn add_external(set: &ListenerSet<'_>, ext: &External<'_>) -> ListenerEdit {
    let others = |l: &Listener| !l.name.eq_ignore_ascii_case(ext.name);
    let bound = set.bound();

    let listeners = match set.listeners {
        Some(l) => append_listener(l, &ext.bind_entry()),
        None => {
            let derived: Vec<Listener> = bound.iter().filter(|l| others(l)).cloned().collect();
            append_listener(&join(&derived), &ext.bind_entry())
        }
    };

    let advertised = match set.advertised {
        Some(a) => append_listener(a, &ext.advertised_entry()),
        None => {
            let derived: Vec<Listener> = bound
                .iter()
                .filter(|l| others(l) && !set.is_controller(&l.name))
                .cloned()
                .collect();
            append_listener(&join(&derived), &ext.advertised_entry())
        }
    };

    let protocol_map = match set.protocol_map {
        Some(m) => append_protocol(m, ext.name, ext.protocol),
        None => {
            let names: Vec<&str> = bound.iter().map(|l| l.name.as_str()).collect();
            full_protocol_map(&names, ext.name, ext.protocol)
        }
    };

    ListenerEdit {
        listeners,
        advertised,
        protocol_map,
        derived_listeners: set.listeners.is_none(),
        derived_advertised: set.advertised.is_none(),
    }
}

/// Where the external listener's protocol came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolSource {
    /// Set explicitly, at least as strong as the client listener's.
    Requested,
    /// Set explicitly, and weaker than the client listener's.
    RequestedWeaker(ClientListener),
    /// Taken from the client listener.
    Client(ClientListener),
    /// No client listener found: PLAINTEXT.
    Default,
}

/// The external listener's protocol and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolChoice {
    pub protocol: SecurityProtocol,
    pub source: ProtocolSource,
}

impl ProtocolChoice {
    /// What a user should be told about the choice, if anything.
    pub fn warning(&self) -> Option<String> {
        match &self.source {
            ProtocolSource::RequestedWeaker(c) => Some(format!(
                "the external listener uses {}, weaker than the client listener {} ({})",
                self.protocol, c.name, c.protocol
            )),
            ProtocolSource::Default => {
                Some("no client listener found; the external listener uses PLAINTEXT".into())
            }
            ProtocolSource::Requested | ProtocolSource::Client(_) => None,
        }
    }
}

/// The external listener's protocol: as requested, else the client listener's, else PLAINTEXT.
pub fn choose_protocol(
    requested: Option<SecurityProtocol>,
    client: Option<&ClientListener>,
) -> ProtocolChoice {
    let (protocol, source) = match (requested, client) {
        (Some(p), Some(c)) if p.strength() < c.protocol.strength() => {
            (p, ProtocolSource::RequestedWeaker(c.clone()))
        }
        (Some(p), _) => (p, ProtocolSource::Requested),
        (None, Some(c)) => (c.protocol, ProtocolSource::Client(c.clone())),
        (None, None) => (SecurityProtocol::Plaintext, ProtocolSource::Default),
    };
    ProtocolChoice { protocol, source }
}

/// What a user must know when the external listener speaks TLS: clients verify the broker's
/// certificate against the host they dial (`ssl.endpoint.identification.algorithm=https`, the
/// default since Kafka 2.0), and a chart's certificates name in-cluster hosts only. `hosts` says
/// what the brokers advertise; `protocol` is `None` where it is only learnt at start.
pub fn tls_warning(protocol: Option<SecurityProtocol>, hosts: &str) -> String {
    let uses = match protocol {
        Some(p) => format!("the external listener uses {p}"),
        None => "the broker is set up for TLS, and if the external listener inherits SSL or SASL_SSL from the client listener".into(),
    };
    format!(
        "{uses}: clients check the broker's certificate against the host they connect to, and chart-made certificates name only in-cluster hosts. The brokers advertise {hosts}: issue certificates whose subject alternative names include those hosts (IP SANs for addresses), or set ssl.endpoint.identification.algorithm= (empty) on the clients, which keeps encryption but gives up verifying whom they talk to"
    )
}

/// How a configuration spells the settings scoped to one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopedKeys<'a> {
    /// `listener.name.<listener, lower case>.<setting>` in a properties file.
    Properties,
    /// `<prefix>LISTENER_NAME_<LISTENER>_<SETTING>` in the environment (`KAFKA_`, `KAFKA_CFG_`).
    Env { prefix: &'a str },
}

impl ScopedKeys<'_> {
    /// The prefix of every key scoped to `listener`.
    pub fn prefix(self, listener: &str) -> String {
        match self {
            Self::Properties => format!("listener.name.{}.", listener.to_ascii_lowercase()),
            Self::Env { prefix } => {
                format!("{prefix}LISTENER_NAME_{}_", listener.to_ascii_uppercase())
            }
        }
    }
}

/// The settings scoped to the `client` listener that the `external` one lacks, renamed for it,
/// in their order: `(new key, value)`. `entries` are the configuration's keys and values.
pub fn copy_scoped<V: Clone>(
    entries: &[(&str, V)],
    keys: ScopedKeys<'_>,
    client: &str,
    external: &str,
) -> Vec<(String, V)> {
    let from = keys.prefix(client);
    let to = keys.prefix(external);
    let mut copies: Vec<(String, V)> = Vec::new();
    for (key, value) in entries {
        let Some(rest) = key.strip_prefix(&from) else {
            continue;
        };
        let target = format!("{to}{rest}");
        let present =
            entries.iter().any(|(k, _)| *k == target) || copies.iter().any(|(k, _)| *k == target);
        if !present {
            copies.push((target, value.clone()));
        }
    }
    copies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(port: u16) -> External<'static> {
        External {
            name: "EXTERNAL",
            bind_port: port,
            advertised_host: "10.0.0.5",
            advertised_port: "32401",
            protocol: SecurityProtocol::SaslPlaintext,
        }
    }

    #[test]
    fn unset_listeners_are_written_from_the_advertised_ones_without_their_hosts() {
        let set = ListenerSet {
            advertised: Some("CLIENT://k-0.h:9092,CONTROLLER://k-0.h:9093"),
            protocol_map: Some("CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"),
            controller_names: Some("CONTROLLER"),
            ..Default::default()
        };
        let e = add_external(&set, &ext(9095));
        assert_eq!(
            e.listeners,
            "CLIENT://:9092,CONTROLLER://:9093,EXTERNAL://:9095"
        );
        assert!(e.derived_listeners && !e.derived_advertised);
        assert_eq!(
            e.advertised,
            "CLIENT://k-0.h:9092,CONTROLLER://k-0.h:9093,EXTERNAL://10.0.0.5:32401"
        );
    }

    #[test]
    fn unset_advertised_listeners_leave_out_the_controller() {
        let set = ListenerSet {
            listeners: Some("PLAINTEXT://:9092,CONTROLLER://:9093"),
            controller_names: Some("CONTROLLER"),
            ..Default::default()
        };
        let e = add_external(&set, &ext(9095));
        assert_eq!(e.advertised, "PLAINTEXT://:9092,EXTERNAL://10.0.0.5:32401");
        assert_eq!(
            e.protocol_map,
            "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,EXTERNAL:SASL_PLAINTEXT"
        );
    }

    #[test]
    fn nothing_set_means_kafkas_default_listener() {
        let e = add_external(&ListenerSet::default(), &ext(9095));
        assert_eq!(e.listeners, "PLAINTEXT://:9092,EXTERNAL://:9095");
    }

    #[test]
    fn the_edit_applied_to_its_own_output_changes_nothing() {
        let set = ListenerSet {
            listeners: Some("CLIENT://:9092"),
            advertised: Some("CLIENT://h:9092"),
            protocol_map: Some("CLIENT:SSL"),
            ..Default::default()
        };
        let once = add_external(&set, &ext(9095));
        let again = ListenerSet {
            listeners: Some(&once.listeners),
            advertised: Some(&once.advertised),
            protocol_map: Some(&once.protocol_map),
            ..Default::default()
        };
        let twice = add_external(&again, &ext(9095));
        assert_eq!(
            (twice.listeners, twice.advertised, twice.protocol_map),
            (once.listeners, once.advertised, once.protocol_map)
        );
    }

    #[test]
    fn the_protocol_is_requested_else_the_clients_else_plaintext() {
        let client = ClientListener {
            name: "CLIENT".into(),
            protocol: SecurityProtocol::SaslSsl,
        };
        let weaker = choose_protocol(Some(SecurityProtocol::Ssl), Some(&client));
        assert_eq!(weaker.protocol, SecurityProtocol::Ssl);
        assert!(
            weaker
                .warning()
                .unwrap()
                .contains("weaker than the client listener CLIENT")
        );
        let inherited = choose_protocol(None, Some(&client));
        assert_eq!(inherited.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(inherited.warning(), None);
        let none = choose_protocol(None, None);
        assert_eq!(none.protocol, SecurityProtocol::Plaintext);
        assert!(none.warning().is_some());
    }

    #[test]
    fn scoped_settings_are_copied_once_in_either_spelling() {
        let props = [
            ("listener.name.client.plain.sasl.jaas.config", "x"),
            ("listener.name.external.ssl.key", "k"),
            ("listener.name.client.ssl.key", "other"),
            ("log.dir", "/d"),
        ];
        assert_eq!(
            copy_scoped(&props, ScopedKeys::Properties, "CLIENT", "EXTERNAL"),
            vec![(
                "listener.name.external.plain.sasl.jaas.config".to_string(),
                "x"
            )]
        );
        let env = [("KAFKA_CFG_LISTENER_NAME_CLIENT_SASL_ENABLED_MECHANISMS", 1)];
        let keys = ScopedKeys::Env {
            prefix: "KAFKA_CFG_",
        };
        assert_eq!(
            copy_scoped(&env, keys, "client", "external"),
            vec![(
                "KAFKA_CFG_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS".to_string(),
                1
            )]
        );
    }

    #[test]
    fn only_a_pure_controller_is_controller_only() {
        let roles = |r| ListenerSet {
            process_roles: Some(r),
            ..Default::default()
        };
        assert!(roles("controller").is_controller_only());
        assert!(roles("\"controller\"").is_controller_only());
        assert!(!roles("broker,controller").is_controller_only());
        assert!(!roles("broker").is_controller_only());
        assert!(!ListenerSet::default().is_controller_only());
    }
}
