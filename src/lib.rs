//! kafka-expose makes Kafka brokers deployed by existing, unmodified charts reachable from
//! outside a Kubernetes cluster.
//!
//! The data flows one way: the CLI or the HTTPS webhook ([`webhook`]) hands objects to the pure
//! [`engine`], which returns patches and warnings; [`services`] plans the Services a workload
//! needs. Only the network-facing layers do I/O.

pub mod certs;
pub mod cli;
pub mod config;
pub mod engine;
pub mod leader;
pub mod metrics;
pub mod mutate;
pub mod properties_file;
pub mod reconciler;
pub mod services;
pub mod telemetry;
pub mod webhook;
