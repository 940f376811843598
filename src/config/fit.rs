//! The range fit: a configuration checked against the workload it is on. The broker with
//! ordinal *n* is on `base + n` (the broker-id convention of every chart and guide), so the
//! NodePorts of the ordinals in use must lie in the cluster's range (and the bootstrap port
//! outside them), a `static:` list needs a host per broker, a Deployment runs one broker, and
//! every Service name must fit a DNS label.

use super::{AdvertisedHost, ConfigError, ExposeConfig, ExposeMode, Problem, Settings};
use crate::names::{full_key, keys};

/// The AWS annotation that picks a Network Load Balancer for a LoadBalancer Service, and its
/// values that do (the in-tree provider's `nlb`, the AWS Load Balancer Controller's `external`
/// and `nlb-ip`).
const AWS_LB_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
const AWS_NLB_TYPES: [&str; 3] = ["nlb", "external", "nlb-ip"];
/// The AWS Load Balancer Controller's class for Network Load Balancers.
const AWS_NLB_CLASS: &str = "service.k8s.aws/nlb";
/// Listeners per AWS Network Load Balancer (a default quota, raised on request).
pub const AWS_NLB_LISTENERS: u16 = 50;

/// The most ports the shared load balancer takes, and where that limit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerCap {
    pub max: u16,
    /// The key and value to name in an error.
    pub key: &'static str,
    pub value: String,
    /// Where the limit comes from, for people.
    pub source: String,
}

/// The listener cap in force for `expose=shared-loadbalancer`: `load-balancer-max-ports` as
/// set, else the server's `--load-balancer-max-ports`, else 50 when the Service asks AWS for a
/// Network Load Balancer; none otherwise.
pub fn listener_cap(cfg: &ExposeConfig, settings: &Settings) -> Option<ListenerCap> {
    if let Some(max) = cfg.lb_max_ports {
        return Some(ListenerCap {
            max,
            key: keys::LB_MAX_PORTS,
            value: max.to_string(),
            source: full_key(keys::LB_MAX_PORTS),
        });
    }
    if let Some(max) = settings.lb_max_ports {
        return Some(ListenerCap {
            max,
            key: keys::EXPOSE,
            value: cfg.mode.as_str().into(),
            source: "the server's --load-balancer-max-ports".into(),
        });
    }
    let nlb_type = cfg
        .service_annotations
        .get(AWS_LB_TYPE)
        .map(|t| t.as_str().trim().to_ascii_lowercase())
        .filter(|t| AWS_NLB_TYPES.contains(&t.as_str()));
    let nlb_class = cfg.lb_class.as_deref() == Some(AWS_NLB_CLASS);
    if nlb_type.is_some() || nlb_class {
        let why = match nlb_type {
            Some(t) => format!("{AWS_LB_TYPE}: {t}"),
            None => format!("loadBalancerClass {AWS_NLB_CLASS}"),
        };
        return Some(ListenerCap {
            max: AWS_NLB_LISTENERS,
            key: keys::EXPOSE,
            value: cfg.mode.as_str().into(),
            source: format!(
                "an AWS Network Load Balancer ({why}) takes {AWS_NLB_LISTENERS} listeners; set {} if your quota is raised",
                full_key(keys::LB_MAX_PORTS)
            ),
        });
    }
    None
}

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
    let shared = cfg.mode == ExposeMode::SharedLoadBalancer;
    if (cfg.mode == ExposeMode::HostPort || shared) && hi > u16::MAX as u32 {
        fail(
            keys::PORT_BASE,
            port_base.to_string(),
            format!("{} replicas need ports beyond 65535", facts.replicas),
        );
    }
    if shared
        && let Some(cap) = listener_cap(cfg, settings)
        && n > cap.max as u32
    {
        fail(
            cap.key,
            cap.value.clone(),
            format!(
                "{n} brokers need {n} ports on the shared load balancer, over its limit of {} ({}); run at most {} brokers per workload, raise the cloud's quota and the limit, or use expose=loadbalancer",
                cap.max, cap.source, cap.max
            ),
        );
    }
    // Every broker needs a host (behind one shared load balancer, one name may serve all).
    if let AdvertisedHost::Static(hosts) = &cfg.advertised_host
        && cfg.static_host(hosts, n - 1).is_none()
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
    let longest = cfg.broker_service(facts.name, last);
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
    use super::*;

    fn expose(pairs: &[(&str, &str)]) -> ExposeConfig {
        crate::config::exposure_of(pairs)
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

    fn shared(pairs: &[(&str, &str)]) -> ExposeConfig {
        let mut all = vec![("expose", "shared-loadbalancer")];
        all.extend_from_slice(pairs);
        expose(&all)
    }

    fn check(c: &ExposeConfig, replicas: u32, settings: &Settings) -> Result<(), String> {
        check_against_workload(c, c.port_base_or_default(), &facts(replicas), settings)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_shared_load_balancer_over_its_listener_cap_is_refused_with_the_numbers() {
        let s = Settings::default();
        let c = shared(&[("load-balancer-max-ports", "5")]);
        check(&c, 5, &s).unwrap();
        let e = check(&c, 6, &s).unwrap_err();
        assert!(
            e.contains("kafka-expose.io/load-balancer-max-ports=\"5\""),
            "{e}"
        );
        assert!(e.contains("6 brokers need 6 ports"), "{e}");
        assert!(e.contains("over its limit of 5"), "{e}");

        // The server's setting, for workloads that set none.
        let capped = Settings {
            lb_max_ports: Some(3),
            ..Settings::default()
        };
        let e = check(&shared(&[]), 4, &capped).unwrap_err();
        assert!(e.contains("the server's --load-balancer-max-ports"), "{e}");
        check(&shared(&[("load-balancer-max-ports", "4")]), 4, &capped).unwrap();
        // No cap known: any count that fits the port numbers.
        check(&shared(&[]), 200, &s).unwrap();
    }

    #[test]
    fn an_aws_network_load_balancer_is_capped_at_its_50_listeners() {
        let s = Settings::default();
        for c in [
            shared(&[(
                "service-annotations",
                r#"{"service.beta.kubernetes.io/aws-load-balancer-type":"nlb"}"#,
            )]),
            shared(&[(
                "service-annotations",
                r#"{"service.beta.kubernetes.io/aws-load-balancer-type":"external"}"#,
            )]),
            shared(&[("load-balancer-class", "service.k8s.aws/nlb")]),
        ] {
            check(&c, 50, &s).unwrap();
            let e = check(&c, 51, &s).unwrap_err();
            assert!(e.contains("over its limit of 50"), "{e}");
            assert!(e.contains("AWS Network Load Balancer"), "{e}");
        }
    }

    #[test]
    fn a_shared_load_balancers_ports_must_be_port_numbers_and_one_name_serves_all() {
        let s = Settings::default();
        let e = check(&shared(&[("port-base", "65534")]), 3, &s).unwrap_err();
        assert!(e.contains("beyond 65535"), "{e}");
        check(
            &shared(&[("advertised-host", "static:kafka.example.com")]),
            3,
            &s,
        )
        .unwrap();
        let e = check(
            &shared(&[("advertised-host", "static:a.example.com,b.example.com")]),
            3,
            &s,
        )
        .unwrap_err();
        assert!(e.contains("lists 2 hosts for 3 replicas"), "{e}");
    }
}
