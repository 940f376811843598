//! The range fit: a configuration checked against the workload it is on. The broker with
//! ordinal *n* is on `base + n` (the broker-id convention of every chart and guide), so the
//! NodePorts of the ordinals in use must lie in the cluster's range (and the bootstrap port
//! outside them), a `static:` list needs a host per broker, a Deployment runs one broker, and
//! every Service name must fit a DNS label.

use super::{AdvertisedHost, ConfigError, ExposeConfig, ExposeMode, Problem, Settings};
use crate::names::{broker_service_name, keys};

/// The longest name a Service may have (a DNS-1035 label).
pub const MAX_SERVICE_NAME: usize = 63;

/// Facts about the workload that the configuration must fit.
#[derive(Debug, Clone)]
pub struct WorkloadFacts<'a> {
    /// The first ordinal of a StatefulSet (`spec.ordinals.start`); a Deployment's broker has
    /// its `ordinal` instead.
    pub ordinals_start: u32,
    pub kind: &'a str,
    pub name: &'a str,
    pub replicas: u32,
}

impl WorkloadFacts<'_> {
    /// The first and last broker ordinal in use: a StatefulSet's from `spec.ordinals.start`, a
    /// Deployment's one broker's from its `ordinal`.
    pub fn ordinals(&self, cfg: &ExposeConfig) -> (u32, u32) {
        let first = if self.kind == "Deployment" {
            cfg.ordinal.unwrap_or(0)
        } else {
            self.ordinals_start
        };
        (first, first.saturating_add(self.replicas.max(1) - 1))
    }
}

/// Checks the configuration against the workload it is on: the ports of the ordinals in use
/// (broker *n* on `port_base + n`), the `static:` host count, Service name lengths, the
/// Deployment rule of one broker per workload. `port_base` is the base in force: the
/// configuration's, or an adopted chart's own.
pub fn check_against_workload(
    cfg: &ExposeConfig,
    port_base: u16,
    facts: &WorkloadFacts<'_>,
    settings: &Settings,
) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut fail = |key: &str, value: String, message: String| {
        problems.push(Problem::annotation(key, &value, message));
    };
    let range = settings.node_port_range;
    let n = facts.replicas.max(1);
    let (first, last) = facts.ordinals(cfg);
    let base = port_base as u32;
    let (lo, hi) = (base + first, base + last);
    if cfg.mode == ExposeMode::NodePort {
        if !range.contains(lo) {
            let message = if first == 0 {
                format!("is outside the cluster's NodePort range {range}")
            } else {
                format!("puts broker {first} on {lo}, outside the cluster's NodePort range {range}")
            };
            fail(keys::PORT_BASE, port_base.to_string(), message);
        } else if !range.contains(hi) {
            let fit = (range.end as u32).saturating_sub(last);
            fail(
                keys::PORT_BASE,
                port_base.to_string(),
                format!(
                    "{} replicas need ports {lo}-{hi}, beyond the NodePort range {range}; a port-base of at most {fit} fits",
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
            } else if (lo..=hi).contains(&(b as u32)) {
                fail(
                    keys::BOOTSTRAP_NODE_PORT,
                    b.to_string(),
                    format!("collides with the per-broker NodePorts {lo}-{hi}"),
                );
            }
        }
    }
    if cfg.mode == ExposeMode::HostPort && hi > u16::MAX as u32 {
        fail(
            keys::PORT_BASE,
            port_base.to_string(),
            format!("{} replicas need ports beyond 65535", facts.replicas),
        );
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
    let longest = broker_service_name(facts.name, last);
    if longest.len() > MAX_SERVICE_NAME {
        fail(
            keys::EXPOSE,
            cfg.mode.as_str().into(),
            format!(
                "the Service name {longest:?} would be longer than {MAX_SERVICE_NAME} characters; shorten the workload's name"
            ),
        );
    }
    ConfigError::check(problems)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{Requested, parse};

    fn expose(pairs: &[(&str, &str)]) -> ExposeConfig {
        let ann: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(&ann).unwrap() {
            Requested::Expose(c) => c,
            other => panic!("expected an exposure, got {other:?}"),
        }
    }

    fn facts(replicas: u32) -> WorkloadFacts<'static> {
        WorkloadFacts {
            ordinals_start: 0,
            kind: "StatefulSet",
            name: "kafka",
            replicas,
        }
    }

    #[test]
    fn a_port_base_outside_the_node_port_range_is_refused() {
        let c = expose(&[("expose", "nodeport"), ("port-base", "40000")]);
        let e = check_against_workload(
            &c,
            c.port_base_or_default(),
            &facts(3),
            &Settings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kafka-expose.io/port-base=\"40000\""), "{e}");
        assert!(e.contains("NodePort range 30000-32767"), "{e}");
    }

    #[test]
    fn a_port_base_whose_last_broker_leaves_the_range_is_refused_with_a_fit() {
        let c = expose(&[("expose", "nodeport"), ("port-base", "32766")]);
        let e = check_against_workload(
            &c,
            c.port_base_or_default(),
            &facts(3),
            &Settings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ports 32766-32768"), "{e}");
        assert!(e.contains("at most 32765 fits"), "{e}");
    }

    #[test]
    fn the_node_port_range_is_a_parameter() {
        let c = expose(&[("expose", "nodeport"), ("port-base", "20000")]);
        let settings = Settings {
            node_port_range: "20000-22767".parse().unwrap(),
            ..Settings::default()
        };
        check_against_workload(&c, c.port_base_or_default(), &facts(3), &settings).unwrap();
    }

    #[test]
    fn a_static_list_shorter_than_replicas_is_refused() {
        let c = expose(&[
            ("expose", "nodeport"),
            ("advertised-host", "static:a.example,b.example"),
        ]);
        let e = check_against_workload(
            &c,
            c.port_base_or_default(),
            &facts(3),
            &Settings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("lists 2 hosts for 3 replicas"), "{e}");
    }

    #[test]
    fn a_bootstrap_port_among_the_broker_ports_is_refused() {
        let c = expose(&[("expose", "nodeport"), ("bootstrap-node-port", "32401")]);
        let e = check_against_workload(
            &c,
            c.port_base_or_default(),
            &facts(3),
            &Settings::default(),
        )
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
            ordinals_start: 0,
            kind: "Deployment",
            name: "broker-a",
            replicas: 2,
        };
        let e = check_against_workload(&c, c.port_base_or_default(), &f, &Settings::default())
            .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        let e = e.to_string();
        assert!(e.contains("kafka-expose.io/ordinal"), "{e}");
        assert!(e.contains("must have 1 replica, not 2"), "{e}");
    }
}
