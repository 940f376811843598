//! The node address a broker with `advertised-host: node:<types>` advertises, and what the
//! binding webhook and the reconciler's fallback do with it.
//!
//! The address is known the moment the pod is bound to a node. The API server copies a
//! Binding's annotations onto the pod in the same update that sets `spec.nodeName`, so the
//! kubelet only ever sees the pod bound *and* annotated; the broker's
//! `KAFKA_EXPOSE_EXTERNAL_HOST` is read from that annotation by the downward API.

use std::collections::BTreeMap;

use crate::config::NodeAddressType;
use crate::names::{PREFIX, keys};

/// What the binding webhook knows of the cluster: the exposed broker pods and the nodes, as
/// their watches last saw them.
pub trait BindingFacts: Send + Sync {
    /// The `kafka-expose.io/*` annotations of an exposed broker pod (keys without the prefix),
    /// or `None` for any other pod.
    fn broker(&self, namespace: &str, pod: &str) -> Option<BTreeMap<String, String>>;
    /// A node's `status.addresses`, as (type, address), or `None` when the node is unknown.
    fn node_addresses(&self, node: &str) -> Option<Vec<(String, String)>>;
}

/// The address types a broker's `advertised-host` asks for, if it is `node:…`.
pub fn wanted_types(own: &BTreeMap<String, String>) -> Option<Vec<NodeAddressType>> {
    let list = own
        .get(keys::ADVERTISED_HOST)?
        .trim()
        .strip_prefix("node:")?;
    let types: Vec<NodeAddressType> = list
        .split(',')
        .filter_map(|t| NodeAddressType::parse(t.trim()))
        .collect();
    (!types.is_empty()).then_some(types)
}

/// The node's first address of the wanted types, in their order. Among several addresses of
/// one type, the smallest (as text): the choice depends on the set, never on its order.
pub fn choose(addresses: &[(String, String)], types: &[NodeAddressType]) -> Option<String> {
    choose_typed(addresses, types).map(|(_, a)| a)
}

/// [`choose`], with the type it chose.
pub fn choose_typed(
    addresses: &[(String, String)],
    types: &[NodeAddressType],
) -> Option<(NodeAddressType, String)> {
    types.iter().find_map(|t| {
        addresses
            .iter()
            .filter(|(ty, a)| ty == t.as_str() && !a.trim().is_empty())
            .map(|(_, a)| a.trim().to_string())
            .min()
            .map(|a| (*t, a))
    })
}

/// What a binding means for the pod it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingOutcome {
    /// Not an exposed broker with `node:` (or not known to be): left alone.
    Unrelated,
    /// Annotate the pod with this address.
    Address(String),
    /// The node is unknown, or has none of the wanted types: the pod is not annotated (the
    /// gate holds the broker), and the reconciler reports it.
    NoAddress {
        node: String,
        types: Vec<NodeAddressType>,
        known: bool,
    },
}

/// Decides a binding of pod `namespace/pod` to `node`.
pub fn decide(facts: &dyn BindingFacts, namespace: &str, pod: &str, node: &str) -> BindingOutcome {
    match facts.broker(namespace, pod) {
        Some(own) => for_broker(facts, &own, node),
        None => BindingOutcome::Unrelated,
    }
}

/// What a broker with these `kafka-expose.io/*` annotations (keys without the prefix) gets on
/// `node`: the binding webhook's and the reconciler's fallback's one answer.
pub fn for_broker(
    facts: &dyn BindingFacts,
    own: &BTreeMap<String, String>,
    node: &str,
) -> BindingOutcome {
    let Some(types) = wanted_types(own) else {
        return BindingOutcome::Unrelated;
    };
    let addresses = facts.node_addresses(node);
    match addresses.as_deref().and_then(|a| choose(a, &types)) {
        Some(a) => BindingOutcome::Address(a),
        None => BindingOutcome::NoAddress {
            node: node.to_string(),
            types,
            known: addresses.is_some(),
        },
    }
}

impl BindingOutcome {
    /// Why a broker has no address, for Events and warnings.
    pub fn explain(&self) -> Option<String> {
        let Self::NoAddress { node, types, known } = self else {
            return None;
        };
        let wanted = types
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Some(if *known {
            format!(
                "node {node} has no address of the types {wanted} (status.addresses); the broker waits in its gate init container. Choose types the nodes have in {PREFIX}{}, e.g. node:ExternalIP,InternalIP",
                keys::ADVERTISED_HOST
            )
        } else {
            format!(
                "node {node} is not known to kafka-expose yet; the reconciler fills the address in once it is"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(t, a)| (t.to_string(), a.to_string()))
            .collect()
    }

    #[test]
    fn the_first_wanted_type_the_node_has_wins_and_ties_are_deterministic() {
        let node = addrs(&[
            ("InternalIP", "10.0.0.5"),
            ("ExternalIP", "203.0.113.9"),
            ("ExternalIP", "203.0.113.7"),
            ("Hostname", "ip-10-0-0-5"),
        ]);
        let t = |s: &str| wanted_types(&[("advertised-host".to_string(), s.to_string())].into());
        assert_eq!(
            choose(&node, &t("node:ExternalDNS,ExternalIP").unwrap()),
            Some("203.0.113.7".into())
        );
        let mut reversed = node.clone();
        reversed.reverse();
        assert_eq!(
            choose(&reversed, &t("node:ExternalIP").unwrap()),
            Some("203.0.113.7".into()),
            "the same address whatever the order"
        );
        assert_eq!(
            choose(&node, &t("node:ExternalDNS").unwrap()),
            None,
            "no ExternalDNS: nothing, never an empty host"
        );
        assert_eq!(t("host-ip"), None);
    }
}
