//! Kafka knowledge, pure and free of Kubernetes types.
//!
//! - [`listeners`]: listener lists, protocol maps, [`SecurityProtocol`], the client listener;
//! - [`external`]: "add the external listener to this broker's configuration", the one edit that
//!   the env adapter (on `KAFKA_*` variables) and `patch-properties` (on a `server.properties`)
//!   both make, and the copy of the client listener's `listener.name.<l>.*` settings;
//! - [`properties`]: the `server.properties` text editor behind `kafka-expose patch-properties`.
//!
//!
//! This layer does no I/O: the Kafka-protocol client behind `kafka-expose check` is
//! `check::client`.

pub mod external;
pub mod listeners;
pub mod properties;

pub use listeners::SecurityProtocol;

/// `host:port`, with an IPv6 host in brackets: how Kafka and Kubernetes write an address.
pub fn host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
