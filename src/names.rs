//! Every name kafka-expose reads or writes in the cluster, in one place: annotation keys, labels,
//! the field manager, the variables and ports it injects, and the names of the objects it
//! creates. Nothing else in the crate spells one of these out.

/// The prefix of every annotation kafka-expose reads or writes.
pub const PREFIX: &str = "kafka-expose.io/";

/// `kafka-expose.io/<key>`.
pub fn full_key(key: &str) -> String {
    format!("{PREFIX}{key}")
}

/// User-facing annotation keys, without the prefix.
pub mod keys {
    pub const EXPOSE: &str = "expose";
    pub const ADVERTISED_HOST: &str = "advertised-host";
    pub const PORT_BASE: &str = "port-base";
    pub const ADVERTISED_PORT: &str = "advertised-port";
    pub const CONTAINER_PORT: &str = "container-port";
    pub const LISTENER_NAME: &str = "listener-name";
    pub const SECURITY_PROTOCOL: &str = "security-protocol";
    pub const BOOTSTRAP_NODE_PORT: &str = "bootstrap-node-port";
    pub const EXTERNAL_TRAFFIC_POLICY: &str = "external-traffic-policy";
    pub const LB_SOURCE_RANGES: &str = "load-balancer-source-ranges";
    pub const LB_CLASS: &str = "load-balancer-class";
    pub const SERVICE_ANNOTATIONS: &str = "service-annotations";
    pub const CONTAINER: &str = "container";
    pub const ADAPTER: &str = "adapter";
    pub const ORDINAL: &str = "ordinal";
    pub const LB_MAX_PORTS: &str = "load-balancer-max-ports";
    pub const EXTERNAL_TLS: &str = "external-tls";
    pub const EXTERNAL_TLS_CLIENT_AUTH: &str = "external-tls-client-auth";
    pub const EXTERNAL_TLS_CLIENT_CA: &str = "external-tls-client-ca";
    pub const EXTERNAL_TLS_DURATION: &str = "external-tls-duration";
    pub const EXTERNAL_TLS_RENEW_BEFORE: &str = "external-tls-renew-before";
    /// What to do when a running broker's external address changes: `restart` or `warn`. Read
    /// from the workload when it happens; not part of the brokers' configuration (changing it
    /// restarts nothing).
    pub const ON_ADDRESS_CHANGE: &str = "on-address-change";
    /// `expose=gateway`: the Gateway (`<namespace>/<name>[/<listener>]`) the brokers' TLSRoutes
    /// attach to.
    pub const GATEWAY: &str = "gateway";
    /// `expose=gateway`: the DNS name a TLSRoute routes to every broker, for bootstrapping.
    pub const BOOTSTRAP_HOST: &str = "bootstrap-host";

    /// Every key a user may set.
    pub const ALL: [&str; 24] = [
        EXPOSE,
        ADVERTISED_HOST,
        PORT_BASE,
        ADVERTISED_PORT,
        CONTAINER_PORT,
        LISTENER_NAME,
        SECURITY_PROTOCOL,
        BOOTSTRAP_NODE_PORT,
        EXTERNAL_TRAFFIC_POLICY,
        LB_SOURCE_RANGES,
        LB_CLASS,
        SERVICE_ANNOTATIONS,
        CONTAINER,
        ADAPTER,
        ORDINAL,
        LB_MAX_PORTS,
        EXTERNAL_TLS,
        EXTERNAL_TLS_CLIENT_AUTH,
        EXTERNAL_TLS_CLIENT_CA,
        EXTERNAL_TLS_DURATION,
        EXTERNAL_TLS_RENEW_BEFORE,
        ON_ADDRESS_CHANGE,
        GATEWAY,
        BOOTSTRAP_HOST,
    ];
}

/// Annotation keys kafka-expose writes itself (without the prefix); users do not set them.
pub mod own {
    /// Hash of the effective configuration, in the pod template: changing it rolls the brokers.
    pub const CONFIG_HASH: &str = "config-hash";
    /// Which keys of the pod template were copied from the workload's metadata.
    pub const INHERITED: &str = "inherited";
    /// The StatefulSet's `spec.ordinals.start`, carried to the pods, which cannot see it.
    pub const ORDINALS_START: &str = "ordinals-start";
    /// Reconciler status on the workload.
    pub const STATUS: &str = "status";
    /// The external bootstrap address, published on the workload.
    pub const BOOTSTRAP_SERVERS: &str = "bootstrap-servers";
    /// In the pod template: the Enforce policy whose settings it carries.
    pub const POLICY: &str = "policy";
    /// In the pod template: which of its keys came from that policy.
    pub const POLICY_KEYS: &str = "policy-keys";
    /// On the workload: `<policy>/<unix seconds>` while a policy's change rolls it. Rollout
    /// state lives in the cluster, so a new leader resumes where the old one stopped.
    pub const ROLLOUT: &str = "rollout";
    /// On a broker pod with `advertised-host: node:…`: the address of its node, set when it is
    /// bound (the Binding's annotations are copied onto the pod), read by the downward API.
    pub const EXTERNAL_HOST: &str = "external-host";
    /// On a broker pod, set at admission: what it advertises, `<host>:<port>` as the kubelet
    /// resolves it, e.g. `203.0.113.7:9094` or `$(KAFKA_EXPOSE_EXTERNAL_HOST):32400` (the node's
    /// address, given at binding in `external-host`). What a later address is compared with.
    pub const ADVERTISED: &str = "advertised";
    /// On the workload: the restart of brokers whose address changed, as it stands
    /// ([`crate::engine::restart::Record`]). Kept in the cluster, so a new leader resumes it.
    pub const RESTART: &str = "restart";

    pub const ALL: [&str; 11] = [
        CONFIG_HASH,
        INHERITED,
        ORDINALS_START,
        STATUS,
        BOOTSTRAP_SERVERS,
        POLICY,
        POLICY_KEYS,
        ROLLOUT,
        EXTERNAL_HOST,
        ADVERTISED,
        RESTART,
    ];
}

/// Labels kafka-expose sets, and the ones of Kubernetes' it reads.
pub mod labels {
    /// Put on the pod template of an exposed workload. The Pod webhook's `objectSelector`
    /// matches it, so the API server calls the Pod webhook only for exposed brokers.
    pub const EXPOSED: &str = "kafka-expose.io/exposed";
    /// The label the StatefulSet controller puts on each pod; per-broker Services select on it.
    pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
    /// The pod-index label of Kubernetes ≥ 1.28 StatefulSet pods.
    pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
    /// The recommended label naming the tool that manages an object.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// [`MANAGED_BY`]'s value on every Service kafka-expose manages.
    pub const MANAGER: &str = "kafka-expose";
    /// Selects the Services kafka-expose manages.
    pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kafka-expose";
    /// Selects every Service kafka-expose does not manage (those without the label too).
    pub const OTHERS_SELECTOR: &str = "app.kubernetes.io/managed-by!=kafka-expose";
    /// The selector of what kafka-expose made for workload `name`.
    pub fn workload_selector(name: &str) -> String {
        format!("{MANAGED_BY}={MANAGER},{WORKLOAD}={name}")
    }
    /// Names the workload a managed Service belongs to.
    pub const WORKLOAD: &str = "kafka-expose.io/workload";
    /// The broker ordinal of a per-broker Service.
    pub const ORDINAL: &str = "kafka-expose.io/ordinal";
    /// Marks the bootstrap Service (`bootstrap`) and the shared load balancer ([`ROLE_SHARED`]).
    pub const ROLE: &str = "kafka-expose.io/role";
    /// [`ROLE`]'s value on the one Service of `expose=shared-loadbalancer`.
    pub const ROLE_SHARED: &str = "shared-loadbalancer";
    /// On a workload whose template carries an Enforce policy's settings: the policy's name.
    /// The policy controller finds the workloads to revert by it.
    pub const POLICY: &str = "kafka-expose.io/policy";
    /// On a workload a policy is rolling: the policy's name (the time is in the annotation
    /// `kafka-expose.io/rollout`). The policy controller finds rollouts in flight by it.
    pub const ROLLING: &str = "kafka-expose.io/rolling";
}

/// The field manager of every server-side apply, and the Event reporter.
pub const FIELD_MANAGER: &str = "kafka-expose";

/// The reconciler's leader Lease, in the install's namespace. A reconciler scoped to one
/// namespace holds `<LEASE>-<namespace>`, so scoped and cluster-wide installs never share one.
pub const LEASE: &str = "kafka-expose-reconciler";

/// Name of the container port kafka-expose adds for the external listener. Port names are at
/// most 15 characters (IANA service name rules).
pub const PORT_NAME: &str = "kx-external";

/// The name of the port on every Service kafka-expose plans.
pub const SERVICE_PORT_NAME: &str = "kafka-external";

/// Name of the init container that holds a `node:` broker until its node's address is on the pod.
pub const GATE_CONTAINER: &str = "kafka-expose-gate";

/// The downward-API volume the gate reads the address from, and where it is mounted.
pub const GATE_VOLUME: &str = "kafka-expose-node";
pub const GATE_MOUNT: &str = "/etc/kafka-expose";

/// `external-tls`: the broker's own certificate Secret, mounted in the gate only, and where.
pub const TLS_SECRET_VOLUME: &str = "kafka-expose-tls-secret";
pub const TLS_SECRET_MOUNT: &str = "/kafka-expose-tls-secret";
/// `external-tls-client-ca`: the Secret whose `ca.crt` checks client certificates, mounted in
/// the gate only, and where.
pub const TLS_CLIENT_CA_VOLUME: &str = "kafka-expose-tls-client-ca";
pub const TLS_CLIENT_CA_MOUNT: &str = "/kafka-expose-tls-client-ca";
/// `external-tls`: the in-memory `emptyDir` the gate writes the broker's PEM stores to, mounted
/// read-only in the broker, and where.
pub const TLS_VOLUME: &str = "kafka-expose-tls";
pub const TLS_MOUNT: &str = "/kafka-expose-tls";

/// Name of the init container the properties adapter appends.
pub const INIT_CONTAINER: &str = "kafka-expose-properties";

pub use kafka_expose_kafka::KEPT_MARK;

/// How the gate's termination message starts when it let the broker start with a certificate;
/// the serial follows, in hex.
pub const LOADED_CERT_MARK: &str = "kafka-expose gate: the broker starts with certificate serial ";

/// Launch adapter: the init container that copies the launcher from kafka-expose's image.
pub const INSTALL_CONTAINER: &str = "kafka-expose-launch-install";
/// Launch adapter: the init container, on the broker's image, that saves the image's own start
/// script beside the launcher.
pub const SAVE_CONTAINER: &str = "kafka-expose-launch-save";
/// Launch adapter: the `emptyDir` that holds the launcher, the saved script and the edited file.
pub const LAUNCH_VOLUME: &str = "kafka-expose-launch";
/// Where the launch adapter's containers and the broker mount [`LAUNCH_VOLUME`].
pub const LAUNCH_MOUNT: &str = "/kafka-expose-launch";

/// The one LoadBalancer Service of `expose=shared-loadbalancer`.
pub fn shared_service_name(workload: &str) -> String {
    format!("{workload}-external")
}

/// The named container port broker `ordinal` carries with `expose=shared-loadbalancer`: the
/// shared Service's port for that broker targets it, and no other broker has it, so that port's
/// endpoints are that one broker. At most 15 characters (IANA service name rules): `kx-b` and up
/// to 10 digits.
pub fn broker_port_name(ordinal: u32) -> String {
    format!("kx-b{ordinal}")
}

/// Whether a container port of this name is kafka-expose's own: [`PORT_NAME`] or a
/// [`broker_port_name`].
pub fn is_own_port_name(name: &str) -> bool {
    name == PORT_NAME
        || name
            .strip_prefix("kx-b")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The shared Service's port for broker `ordinal`.
pub fn shared_service_port_name(ordinal: u32) -> String {
    format!("{SHARED_PORT_PREFIX}{ordinal}")
}

/// The broker a shared Service's port is for: the inverse of [`shared_service_port_name`].
pub fn shared_service_port_ordinal(name: &str) -> Option<u32> {
    name.strip_prefix(SHARED_PORT_PREFIX)?.parse().ok()
}

const SHARED_PORT_PREFIX: &str = "broker-";

/// The per-broker Service's name.
pub fn broker_service_name(workload: &str, ordinal: u32) -> String {
    format!("{workload}-{ordinal}-external")
}

/// The bootstrap Service's name.
pub fn bootstrap_service_name(workload: &str) -> String {
    format!("{workload}-external-bootstrap")
}

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
    // What the injected steps read: the listener, its host and ports, the file.
    pub use kafka_expose_kafka::envs::*;

    /// `$(NAME)`: a reference the kubelet expands from variables defined earlier in the list
    /// (<https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/>).
    pub fn reference(name: &str) -> String {
        format!("$({name})")
    }
}

/// Where the release workflow publishes the image; its tag is the crate's version.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/kafka-expose/kafka-expose";

/// `kafka-expose --version`: the crate's version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KAFKA_EXPOSE_COMMIT"),
    ")"
);

/// The file name under which kubectl runs the CLI as `kubectl kafka-expose`.
pub const KUBECTL_PLUGIN: &str = "kubectl-kafka_expose";
