//! kafka-expose makes Kafka brokers deployed by existing, unmodified charts reachable from
//! outside a Kubernetes cluster.
//!
//! The data flows one way: the CLI (or, later, the HTTP webhook) hands objects to the pure
//! [`engine`], which returns patches and warnings; [`services`] plans the Services a workload
//! needs. Only the network-facing layers do I/O.

pub mod cli;
pub mod config;
pub mod engine;
pub mod mutate;
pub mod properties_file;
pub mod services;
