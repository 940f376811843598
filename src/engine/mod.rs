//! The decision engine: pure functions from an object and its configuration to a plan.
//!
//! Nothing here takes a client, a clock or a socket. [`workload::mutate_workload`] and
//! [`pod::mutate_pod`] return RFC 6902 patch operations against the object exactly as received,
//! plus warnings for the user; [`crate::services::plan`] returns the Services a workload needs.
//!
//! The adapters that make a broker listen on and advertise the external listener each live in a
//! file of their own ([`env`], [`properties`], [`adopt`]); [`detect`] chooses among them.

pub mod adopt;
pub mod detect;
pub mod env;
pub mod listeners;
pub mod patch;
pub mod pod;
pub mod properties;
pub mod workload;

use crate::config::ConfigError;

/// Names of the environment variables kafka-expose injects.
///
/// They carry a `KAFKA_EXPOSE_` prefix, which no chart uses. apache/kafka and cp-kafka turn
/// every `KAFKA_*` variable into a broker property, so these also appear in their
/// `server.properties` as `expose.*` keys; Kafka knows no such property and only logs them as
/// unused. Bitnami images read `KAFKA_CFG_*` only.
pub mod envs {
    /// The node's IP (`status.hostIP`).
    pub const HOST_IP: &str = "KAFKA_EXPOSE_HOST_IP";
    /// The node's name (`spec.nodeName`).
    pub const NODE_NAME: &str = "KAFKA_EXPOSE_NODE_NAME";
    /// The pod's name (`metadata.name`).
    pub const POD_NAME: &str = "KAFKA_EXPOSE_POD_NAME";
    /// The pod's namespace (`metadata.namespace`).
    pub const NAMESPACE: &str = "KAFKA_EXPOSE_NAMESPACE";
    /// The host this broker advertises on the external listener.
    pub const EXTERNAL_HOST: &str = "KAFKA_EXPOSE_EXTERNAL_HOST";
    /// The port this broker advertises on the external listener.
    pub const EXTERNAL_PORT: &str = "KAFKA_EXPOSE_EXTERNAL_PORT";
    /// Properties adapter: the listener's name.
    pub const LISTENER_NAME: &str = "KAFKA_EXPOSE_LISTENER_NAME";
    /// Properties adapter: the port the broker binds for the listener.
    pub const CONTAINER_PORT: &str = "KAFKA_EXPOSE_CONTAINER_PORT";
    /// Properties adapter: the listener's protocol, when set by annotation.
    pub const SECURITY_PROTOCOL: &str = "KAFKA_EXPOSE_SECURITY_PROTOCOL";
    /// Properties adapter: the file to edit.
    pub const PROPERTIES_FILE: &str = "KAFKA_EXPOSE_PROPERTIES_FILE";

    /// `$(NAME)`: a reference the kubelet expands from variables defined earlier in the list
    /// (<https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/>).
    pub fn reference(name: &str) -> String {
        format!("$({name})")
    }
}

/// Name of the container port kafka-expose adds for the external listener. Port names are at
/// most 15 characters (IANA service name rules).
pub const PORT_NAME: &str = "kx-external";

/// Why the engine could not decide.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is invalid: the object is refused with this message.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The object is not a valid object of its kind.
    #[error("the {kind} cannot be read")]
    Malformed {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl EngineError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Config(_) => "invalid_config",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// An error and its causes, joined by `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
