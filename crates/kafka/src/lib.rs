//! Kafka knowledge, free of Kubernetes types, in a crate of its own with no C code under it, so
//! that the launcher built from it ([`launch`], the `kafka-expose-launch` binary) links
//! statically for musl and runs inside any broker image, whatever its libc.
//!
//! - [`listeners`]: listener lists, protocol maps, [`SecurityProtocol`], the client listener;
//! - [`external`]: "add the external listener to this broker's configuration", the one edit that
//!   the env adapter (on `KAFKA_*` variables) and `patch-properties` (on a `server.properties`)
//!   both make, and the copy of the client listener's `listener.name.<l>.*` settings;
//! - [`properties`]: the `server.properties` text editor behind `kafka-expose patch-properties`;
//! - [`tls`]: the external listener's own PEM key and chain (`external-tls`);
//! - [`launch`]: the launch adapter's step, run in the broker's container in place of the image's
//!   `kafka-server-start.sh`: the same edit on the file that script is given.
//!
//! Only [`launch`] and the binary do I/O: the Kafka-protocol client behind `kafka-expose check` is
//! `check::client` in the main crate.

pub mod external;
pub mod launch;
pub mod listeners;
pub mod properties;
pub mod tls;

/// How an injected step's termination message starts when it kept the chart's configuration
/// rather than stop the broker: what the reconciler looks for in the pods' container statuses.
pub const KEPT_MARK: &str = "kafka-expose kept the chart's configuration: ";

/// The variables the injected steps read (the rest of kafka-expose's are in the main crate's
/// `names::envs`).
pub mod envs {
    /// The host this broker advertises on the external listener.
    pub const EXTERNAL_HOST: &str = "KAFKA_EXPOSE_EXTERNAL_HOST";
    /// The port this broker advertises on the external listener.
    pub const EXTERNAL_PORT: &str = "KAFKA_EXPOSE_EXTERNAL_PORT";
    /// The listener's name.
    pub const LISTENER_NAME: &str = "KAFKA_EXPOSE_LISTENER_NAME";
    /// The port the broker binds for the listener.
    pub const CONTAINER_PORT: &str = "KAFKA_EXPOSE_CONTAINER_PORT";
    /// The listener's protocol, when set by annotation.
    pub const SECURITY_PROTOCOL: &str = "KAFKA_EXPOSE_SECURITY_PROTOCOL";
    /// Properties adapter: the file to edit.
    pub const PROPERTIES_FILE: &str = "KAFKA_EXPOSE_PROPERTIES_FILE";
    /// Launch adapter: the directory (an `emptyDir`) that holds the launcher, the image's own
    /// start script beside it, and the edited file.
    pub const LAUNCH_DIR: &str = "KAFKA_EXPOSE_LAUNCH_DIR";
    /// Launch adapter: the path of the image's start script that the launcher stands in for.
    pub const LAUNCH_SCRIPT: &str = "KAFKA_EXPOSE_LAUNCH_SCRIPT";
    /// Launch adapter: where the broker container's termination message goes, when the chart
    /// sets one other than the kubelet's default `/dev/termination-log`.
    pub const TERMINATION_MESSAGE_PATH: &str = "KAFKA_EXPOSE_TERMINATION_MESSAGE_PATH";
    /// `external-tls`: the directory in the broker container with the listener's PEM files;
    /// unset when the listener has no TLS of its own.
    pub const TLS_DIR: &str = "KAFKA_EXPOSE_TLS_DIR";
    /// `external-tls-client-auth`: the listener's `ssl.client.auth`.
    pub const TLS_CLIENT_AUTH: &str = "KAFKA_EXPOSE_TLS_CLIENT_AUTH";
}

pub use listeners::SecurityProtocol;

/// `host:port`, with an IPv6 host in brackets: how Kafka and Kubernetes write an address.
pub fn host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
