//! The adapters that make a broker listen on and advertise the external listener, one file each,
//! behind the [`Adapter`] enum that [`super::detect`] chooses:
//! - [`env`](mod@env): listeners configured by `KAFKA_*` / `KAFKA_CFG_*` variables, edited in the pod;
//! - [`properties`]: a `server.properties` rendered at start, edited by an appended init container
//!   running `kafka-expose patch-properties`;
//! - [`adopt`]: the chart already advertises an external listener; only its Services are added.
//!
//! The Kafka edit itself (listeners, protocol map, `listener.name.*` settings) is
//! [`crate::kafka::external`]'s, shared by `env` and `patch-properties`.

pub mod adopt;
pub mod env;
pub mod properties;

/// The adapter chosen for a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    Env(env::Flavor),
    Properties(properties::Target),
    Adopt(adopt::AdoptPlan),
}

impl Adapter {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Env(_) => "env",
            Self::Properties(_) => "properties",
            Self::Adopt(_) => "adopt",
        }
    }
}
