//! kafka-expose makes Kafka brokers deployed by existing, unmodified charts reachable from
//! outside a Kubernetes cluster.
//!
//! The layers, each depending only on those below it:
//! - [`cmd`] (one file per subcommand) over [`cli`] (the clap types): the binary's shell;
//! - [`cluster`] (everything that talks to the API server: reconciler, leader Lease, caches, the
//!   certificates' Secret), [`webhook`] (HTTP/TLS and the admission dispatch), [`offline`]
//!   (`mutate`: read, simulate, report) and [`check`] (the Kafka-protocol view from outside,
//!   beside the cluster's): the runtimes;
//! - [`engine`]: pure decisions, starting from one exposure pipeline;
//! - [`config`]: the typed, validated configuration;
//! - [`kafka`] and [`names`]: pure Kafka knowledge, and every name kafka-expose uses in a cluster.
//!
//! [`certs`], [`metrics`] and [`telemetry`] serve the runtimes. The policy CRD is in [`api`]
//! (its types and their generator). The Kafka-protocol client does I/O, so it lives with its one
//! user, as [`check::client`].

pub mod api;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod engine;
pub use kafka_expose_kafka as kafka;
pub mod metrics;
pub mod names;
pub mod offline;
pub mod telemetry;
pub mod webhook;
