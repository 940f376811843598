//! The adapters that make a broker listen on and advertise the external listener, one file each,
//! behind the [`Adapter`] enum that [`super::detect`] chooses:
//! - [`env`](mod@env): listeners configured by `KAFKA_*` / `KAFKA_CFG_*` variables, edited in the pod;
//! - [`properties`]: a `server.properties` rendered at start, edited by an appended init container
//!   running `kafka-expose patch-properties`;
//! - [`launch`]: the chart's own script writes the whole file and starts the broker on it; the
//!   image's `kafka-server-start.sh` is shadowed by a launcher that makes the edit at that launch;
//! - [`adopt`]: the chart already advertises an external listener; only its Services are added.
//!
//! The Kafka edit itself (listeners, protocol map, `listener.name.*` settings) is
//! [`crate::kafka::external`]'s, shared by `env`, `patch-properties` and the launcher.

pub mod adopt;
pub mod env;
pub mod launch;
pub mod properties;

/// The adapter chosen for a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    Env(env::Flavor),
    Properties(properties::Target),
    Launch(launch::Target),
    Adopt(adopt::AdoptPlan),
}

impl Adapter {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Env(_) => "env",
            Self::Properties(_) => "properties",
            Self::Launch(_) => "launch",
            Self::Adopt(_) => "adopt",
        }
    }
}
