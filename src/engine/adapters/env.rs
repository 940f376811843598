//! The **env** adapter: brokers configured by environment variables.
//!
//! - apache/kafka and confluentinc/cp-kafka turn `KAFKA_<PROPERTY>` variables into broker
//!   properties (`KAFKA_ADVERTISED_LISTENERS` → `advertised.listeners`). When `KAFKA_LISTENERS` is
//!   unset they derive `listeners` from `advertised.listeners`, which would make the broker bind its
//!   advertised NodePort, so this adapter always writes `KAFKA_LISTENERS`.
//! - bitnami/kafka reads `KAFKA_CFG_<PROPERTY>`, and some aliases without `CFG_`.
//!
//! The adapter reads the listener settings from the variables, makes the edit of
//! [`crate::kafka::external`] (the one `patch-properties` makes on a file), and writes each
//! changed setting back into its variable, or a new one. Variables scoped to the client listener
//! (`…LISTENER_NAME_<CLIENT>_*`, such as SASL JAAS configs) are copied to the external listener.

use k8s_openapi::api::core::v1::{Container, EnvVar};

use crate::kafka::external::{External, ScopedKeys, add_external, copy_scoped};
use crate::kafka::listeners::{ClientListener, ListenerSet, SecurityProtocol, parse_listeners};
use crate::kafka::tls::ListenerTls;
use crate::names::envs;

/// Which family of images the variables are meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// bitnami/kafka: `KAFKA_CFG_*` (and aliases without `CFG_`).
    Bitnami,
    /// apache/kafka and confluentinc/cp-*: `KAFKA_*`, deriving `listeners` when unset.
    Apache,
}

/// The broker properties the adapters read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prop {
    Listeners,
    Advertised,
    ProtocolMap,
    InterBroker,
    ControllerNames,
    ProcessRoles,
}

impl Prop {
    fn env_suffix(self) -> &'static str {
        match self {
            Self::Listeners => "LISTENERS",
            Self::Advertised => "ADVERTISED_LISTENERS",
            Self::ProtocolMap => "LISTENER_SECURITY_PROTOCOL_MAP",
            Self::InterBroker => "INTER_BROKER_LISTENER_NAME",
            Self::ControllerNames => "CONTROLLER_LISTENER_NAMES",
            Self::ProcessRoles => "PROCESS_ROLES",
        }
    }
}

impl Flavor {
    /// Bitnami when the container uses `KAFKA_CFG_*` or a Bitnami image.
    pub fn of(c: &Container) -> Self {
        let cfg_vars = c
            .env
            .iter()
            .flatten()
            .any(|e| e.name.starts_with("KAFKA_CFG_"));
        let bitnami_image = c.image.as_deref().is_some_and(|i| i.contains("bitnami/"));
        if cfg_vars || bitnami_image {
            Self::Bitnami
        } else {
            Self::Apache
        }
    }

    /// The prefix of property variables.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Bitnami => "KAFKA_CFG_",
            Self::Apache => "KAFKA_",
        }
    }

    /// The variable names that set `prop`, the preferred one first.
    pub fn names(self, prop: Prop) -> Vec<String> {
        let s = prop.env_suffix();
        match self {
            Self::Bitnami => vec![format!("KAFKA_CFG_{s}"), format!("KAFKA_{s}")],
            Self::Apache => vec![format!("KAFKA_{s}")],
        }
    }

    /// The rank of `var` among [`Flavor::names`] for `prop` (0 preferred), without building
    /// the names: the lookups run for every property of every exposed pod.
    fn rank(self, prop: Prop, var: &str) -> Option<usize> {
        let s = prop.env_suffix();
        let is = |prefix: &str| var.strip_prefix(prefix) == Some(s);
        match self {
            Self::Bitnami if is("KAFKA_CFG_") => Some(0),
            Self::Bitnami if is("KAFKA_") => Some(1),
            Self::Apache if is("KAFKA_") => Some(0),
            _ => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Bitnami => "bitnami KAFKA_CFG_* variables",
            Self::Apache => "apache/cp-kafka KAFKA_* variables",
        }
    }
}

/// A variable of the container's env and its position.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub index: usize,
    pub var: &'a EnvVar,
}

impl<'a> Found<'a> {
    /// The literal value; `None` when it comes from `valueFrom`.
    pub fn literal(&self) -> Option<&'a str> {
        if self.var.value_from.is_some() {
            None
        } else {
            Some(self.var.value.as_deref().unwrap_or(""))
        }
    }
}

/// The first variable among `names` that the container defines (its last definition, which is
/// the one in force).
pub fn find<'a, S: AsRef<str>>(c: &'a Container, names: &[S]) -> Option<Found<'a>> {
    best_ranked(c, |name| names.iter().position(|n| n.as_ref() == name))
}

/// The variable `rank` ranks best (0 best; `None` for any other), at its last definition: one
/// pass over the env, from its end, whatever its length.
fn best_ranked(c: &Container, rank: impl Fn(&str) -> Option<usize>) -> Option<Found<'_>> {
    let env = c.env.as_deref().unwrap_or_default();
    let mut best: Option<(usize, Found<'_>)> = None;
    for (index, var) in env.iter().enumerate().rev() {
        let Some(r) = rank(&var.name) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| r < *b) {
            best = Some((r, Found { index, var }));
            if r == 0 {
                break;
            }
        }
    }
    best.map(|(_, f)| f)
}

/// The variable that sets `prop` in this flavor.
pub fn lookup(c: &Container, flavor: Flavor, prop: Prop) -> Option<Found<'_>> {
    best_ranked(c, |name| flavor.rank(prop, name))
}

/// The literal value of `prop`, if set.
pub fn value(c: &Container, flavor: Flavor, prop: Prop) -> Option<&str> {
    lookup(c, flavor, prop).and_then(|f| f.literal())
}

/// The listener configuration the container's env gives.
pub fn listener_set(c: &Container, flavor: Flavor) -> ListenerSet<'_> {
    ListenerSet {
        listeners: value(c, flavor, Prop::Listeners),
        advertised: value(c, flavor, Prop::Advertised),
        protocol_map: value(c, flavor, Prop::ProtocolMap),
        inter_broker: value(c, flavor, Prop::InterBroker),
        controller_names: value(c, flavor, Prop::ControllerNames),
        process_roles: value(c, flavor, Prop::ProcessRoles),
    }
}

/// The KRaft process roles set in the env, in either spelling.
pub fn process_roles(c: &Container) -> Option<&str> {
    find(c, &["KAFKA_CFG_PROCESS_ROLES", "KAFKA_PROCESS_ROLES"])?.literal()
}

/// Whether the env makes this a KRaft controller that is not also a broker.
pub fn is_controller_only(c: &Container) -> bool {
    ListenerSet {
        process_roles: process_roles(c),
        ..ListenerSet::default()
    }
    .is_controller_only()
}

/// Whether the env configures listeners at all.
pub fn configures_listeners(c: &Container, flavor: Flavor) -> bool {
    [Prop::Listeners, Prop::Advertised, Prop::ProtocolMap]
        .iter()
        .any(|p| lookup(c, flavor, *p).is_some())
}

/// Why the env adapter cannot edit this container, if it cannot.
pub fn unsupported_reason(c: &Container, flavor: Flavor) -> Option<String> {
    for prop in [Prop::Listeners, Prop::Advertised, Prop::ProtocolMap] {
        if let Some(f) = lookup(c, flavor, prop)
            && f.literal().is_none()
        {
            return Some(format!(
                "{} comes from valueFrom (a ConfigMap or Secret), which the webhook cannot append to",
                f.var.name
            ));
        }
    }
    let set = listener_set(c, flavor);
    if set.listeners.is_none() && set.advertised.is_none() {
        return Some(
            "neither the listeners nor the advertised listeners are set in the env; the image's defaults are not known"
                .into(),
        );
    }
    None
}

/// Whether an advertised listener of this name is kafka-expose's own (from an earlier mutation).
pub fn is_own_advertised(advertised: &str, name: &str) -> bool {
    parse_listeners(advertised).iter().any(|l| {
        l.name.eq_ignore_ascii_case(name) && l.host == envs::reference(envs::EXTERNAL_HOST)
    })
}

/// A change to the container's env.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvChange {
    /// Replace the literal value of the variable at `index`.
    SetValue { index: usize, value: String },
    /// Append a new variable at the end of the list.
    Append(Box<EnvVar>),
}

/// What the env adapter changes, and what the user should know.
#[derive(Debug, Clone, Default)]
pub struct EnvPlan {
    pub changes: Vec<EnvChange>,
    pub notes: Vec<String>,
}

/// Plans the env changes that add the external listener `name`, bound on `port`.
pub fn plan(
    c: &Container,
    flavor: Flavor,
    name: &str,
    port: u16,
    protocol: SecurityProtocol,
    client: Option<&ClientListener>,
    tls: Option<&ListenerTls>,
) -> EnvPlan {
    let mut plan = EnvPlan::default();
    let set = listener_set(c, flavor);
    let host = envs::reference(envs::EXTERNAL_HOST);
    let advertised_port = envs::reference(envs::EXTERNAL_PORT);
    let edit = add_external(
        &set,
        &External {
            name,
            bind_port: port,
            advertised_host: &host,
            advertised_port: &advertised_port,
            protocol,
        },
    );
    if edit.derived_listeners {
        plan.notes.push(format!(
            "{} was unset; written explicitly so the broker binds {port} for {name}, not its advertised port",
            flavor.names(Prop::Listeners)[0]
        ));
    }
    if edit.derived_advertised {
        plan.notes.push(format!(
            "{} was unset; written from the listeners, without the controller listener",
            flavor.names(Prop::Advertised)[0]
        ));
    }
    for (prop, value) in [
        (Prop::Listeners, edit.listeners),
        (Prop::Advertised, edit.advertised),
        (Prop::ProtocolMap, edit.protocol_map),
    ] {
        match lookup(c, flavor, prop) {
            Some(f) if f.literal() == Some(value.as_str()) => {}
            Some(f) => plan.changes.push(EnvChange::SetValue {
                index: f.index,
                value,
            }),
            None => plan.changes.push(EnvChange::Append(Box::new(EnvVar {
                name: flavor.names(prop)[0].clone(),
                value: Some(value),
                value_from: None,
            }))),
        }
    }

    if let Some(client) = client {
        let env = c.env.as_deref().unwrap_or_default();
        let entries: Vec<(&str, &EnvVar)> = env.iter().map(|v| (v.name.as_str(), v)).collect();
        let keys = ScopedKeys::Env {
            prefix: flavor.prefix(),
        };
        let mut copies = copy_scoped(&entries, keys, &client.name, name);
        if tls.is_some() {
            let own = keys.prefix(name);
            copies.retain(|(k, _)| !k[own.len()..].starts_with("SSL_"));
        }
        if !copies.is_empty() {
            let names: Vec<&str> = copies.iter().map(|(k, _)| k.as_str()).collect();
            plan.notes.push(format!(
                "copied the {} listener's settings to {name}: {}",
                client.name,
                names.join(", ")
            ));
        }
        for (target, var) in copies {
            plan.changes.push(EnvChange::Append(Box::new(EnvVar {
                name: target,
                value: var.value.clone(),
                value_from: var.value_from.clone(),
            })));
        }
    }
    if let Some(tls) = tls {
        let own = ScopedKeys::Env {
            prefix: flavor.prefix(),
        }
        .prefix(name);
        for (setting, value) in tls.settings() {
            let var = format!("{own}{}", setting.to_ascii_uppercase().replace('.', "_"));
            match find(c, std::slice::from_ref(&var)) {
                Some(f) if f.literal() == Some(value.as_str()) => {}
                Some(f) => plan.changes.push(EnvChange::SetValue {
                    index: f.index,
                    value,
                }),
                None => plan.changes.push(EnvChange::Append(Box::new(EnvVar {
                    name: var,
                    value: Some(value),
                    value_from: None,
                }))),
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(vars: &[(&str, &str)]) -> Container {
        Container {
            name: "kafka".into(),
            env: Some(
                vars.iter()
                    .map(|(n, v)| EnvVar {
                        name: n.to_string(),
                        value: Some(v.to_string()),
                        value_from: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_preferred_spelling_wins_wherever_it_is_and_the_last_definition_is_in_force() {
        let c = container(&[
            ("KAFKA_CFG_LISTENERS", "A://:1"),
            ("KAFKA_LISTENERS", "B://:2"),
            ("KAFKA_CFG_LISTENERS", "C://:3"),
            ("KAFKA_LISTENERS", "D://:4"),
        ]);
        assert_eq!(value(&c, Flavor::Bitnami, Prop::Listeners), Some("C://:3"));
        assert_eq!(value(&c, Flavor::Apache, Prop::Listeners), Some("D://:4"));
        let alias = container(&[("KAFKA_LISTENERS", "B://:2"), ("KAFKA_LISTENERS_X", "no")]);
        assert_eq!(
            value(&alias, Flavor::Bitnami, Prop::Listeners),
            Some("B://:2")
        );
        assert_eq!(value(&alias, Flavor::Bitnami, Prop::Advertised), None);
        assert_eq!(
            find(&c, &["KAFKA_LISTENERS", "KAFKA_CFG_LISTENERS"]).map(|f| f.index),
            Some(3)
        );
    }
}
