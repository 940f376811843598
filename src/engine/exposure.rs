//! The exposure pipeline: parse → detect → check → skip, once, for everything that decides.
//!
//! [`decide`] goes from a workload's (or a pod's) effective annotations and pod spec to either an
//! [`Exposure`] (the validated configuration, the broker container, the adapter and the external
//! listener's ports) or the reason to [`Skip`] it. The workload and Pod decisions, the Service
//! plan, the reconciler and `mutate` all start from it, and none of them detects again.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::PodSpec;

use super::adapters::Adapter;
use super::adapters::adopt::TargetPort;
use super::detect::{self, Broker};
use crate::config::{self, ConfigError, ExposeConfig, Requested, Settings, WorkloadFacts};
use crate::kafka::SecurityProtocol;
use crate::kafka::listeners::ClientListener;

/// Why nothing is exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// No `expose` annotation, or `expose: off`.
    NotRequested,
    /// No container looks like a Kafka broker (for example ZooKeeper).
    NoBroker(String),
    /// A KRaft controller that is not a broker: no external listener.
    ControllerOnly { container: String },
    /// The chart cannot be adapted (its script builds `advertised.listeners` itself, a listener
    /// setting comes from a ConfigMap): allowed, and nothing is created.
    Unsupported(String),
}

impl Skip {
    /// A short, stable label for logs, metrics and Event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotRequested => "not_requested",
            Self::NoBroker(_) => "no_broker",
            Self::ControllerOnly { .. } => "controller_only",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// A few words on the outcome, for a summary line.
    pub fn summary(&self) -> String {
        match self {
            Self::NotRequested => "not exposed".into(),
            Self::NoBroker(_) => "left alone: no Kafka broker container".into(),
            Self::ControllerOnly { .. } => "left alone: KRaft controllers only".into(),
            Self::Unsupported(why) => format!("unsupported, nothing created: {why}"),
        }
    }
}

/// Why, for people.
impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRequested => {
                f.write_str("no kafka-expose.io/expose annotation, or expose=off")
            }
            Self::NoBroker(why) => f.write_str(why),
            Self::ControllerOnly { container } => write!(
                f,
                "container {container} runs a KRaft controller only, and controllers get no external listener"
            ),
            Self::Unsupported(why) => write!(f, "cannot be exposed: {why}"),
        }
    }
}

/// What it takes to expose one broker container.
#[derive(Debug, Clone)]
pub struct Exposure<'a> {
    pub config: ExposeConfig,
    pub broker: Broker<'a>,
    pub adapter: Adapter,
    /// Why this adapter, for people.
    pub reason: String,
    /// What the user should know.
    pub notes: Vec<String>,
    /// The external listener's name (the chart's own, when adopted).
    pub listener_name: String,
    /// The port the broker binds for it.
    pub target: TargetPort,
    /// The advertised port of broker 0 (nodeport, hostport).
    pub port_base: u16,
    /// The protocol of the external listener, where the webhook can know it; the properties
    /// adapter learns it from the file at start.
    pub protocol: Option<SecurityProtocol>,
    /// The client listener whose settings the external one takes.
    pub client: Option<ClientListener>,
    /// What the user must do about host names, when the external listener speaks TLS (also
    /// among the notes); the reconciler publishes it as an Event.
    pub tls_warning: Option<String>,
}

/// The pipeline's answer.
#[derive(Debug, Clone)]
pub enum Decision<'a> {
    Expose(Box<Exposure<'a>>),
    Skip(Skip),
}

/// Runs the pipeline. `annotations` are the effective `kafka-expose.io/*` keys without the
/// prefix; `facts`, where given, are the workload's, which the configuration must fit. An invalid
/// configuration is an error naming every problem.
pub fn decide<'a>(
    annotations: &BTreeMap<String, String>,
    spec: Option<&'a PodSpec>,
    facts: Option<&WorkloadFacts<'_>>,
    settings: &Settings,
) -> Result<Decision<'a>, ConfigError> {
    let cfg = match config::parse(annotations)? {
        Requested::Expose(cfg) => cfg,
        Requested::Nothing | Requested::Off => return Ok(Decision::Skip(Skip::NotRequested)),
    };
    // The broker first: a workload that runs none (an exporter reached by a namespace-wide
    // setting) is left alone whatever its configuration, not refused.
    let decision = match spec {
        Some(spec) => detect::detect(spec, cfg)?,
        None => Decision::Skip(Skip::NoBroker("the pod has no spec".into())),
    };
    if let (Decision::Expose(e), Some(facts)) = (&decision, facts) {
        config::check_against_workload(&e.config, e.port_base, facts, settings)?;
    }
    Ok(decision)
}
