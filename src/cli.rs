//! The command line's clap types: every subcommand's flags, and nothing that runs them. Each
//! subcommand runs in a file of its own under [`crate::cmd`].
//!
//! - `kafka-expose serve`: the HTTPS admission webhook and its admin port;
//! - `kafka-expose mutate`: the webhook's and reconciler's decisions on manifests, offline;
//! - `kafka-expose certs`: a CA and serving certificate for a real install;
//! - `kafka-expose patch-properties`: the properties adapter's init-container helper;
//! - `kafka-expose check`: every broker, dialled at the address it advertises.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd;
use crate::config::{DEFAULT_LISTENER_NAME, NodePortRange, Settings, default_patcher_image};
use crate::kafka::SecurityProtocol;
use crate::kafka::tls::ClientAuth;
use crate::names::envs;
use crate::offline;
use crate::telemetry::LogFormat;
use crate::webhook::admission::FailureMode;

/// Makes Kafka brokers deployed by unmodified charts reachable from outside the cluster.
#[derive(Debug, Parser)]
#[command(name = "kafka-expose", version = crate::names::VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS admission webhook, with /livez, /readyz and /metrics on the admin port.
    Serve(Box<ServeArgs>),
    /// Write a CA, a serving certificate and its key for the webhook Service; print the caBundle.
    Certs(CertsArgs),
    /// Print what the webhook and the reconciler would do to manifests, with no cluster.
    Mutate(MutateArgs),
    /// Add the external listener to a server.properties (the properties adapter's init container).
    PatchProperties(PatchPropertiesArgs),
    /// Print the KafkaExposePolicy CRD, generated from the types, as the manifests ship it.
    Crd(CrdArgs),
    /// Wait until a broker's node address is on its pod (the gate init container).
    Gate(GateArgs),
    /// Dial every broker at the address it advertises and say whether it answers there, as
    /// itself; with a kubeconfig, also where a broken path breaks.
    Check(CheckArgs),
}

/// `check`: what to check, how to connect, how long to wait.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Bootstrap servers, `host:port[,host:port...]`. Without it, the exposed workloads of the
    /// namespace are checked through the bootstrap kafka-expose published on each.
    #[arg(short = 'b', long, value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// Without --bootstrap: the namespace (by default the kubeconfig's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Without --bootstrap: only this StatefulSet or Deployment.
    pub workload: Option<String>,
    /// The kubeconfig (by default $KUBECONFIG, ~/.kube/config, or the in-cluster account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (by default its current one).
    #[arg(long)]
    pub context: Option<String>,
    /// How the listener is secured, as in the broker's `listener.security.protocol.map`.
    #[arg(long, value_parser = parse_protocol, default_value = "PLAINTEXT")]
    pub security_protocol: SecurityProtocol,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, default_value = "PLAIN")]
    pub sasl_mechanism: crate::check::client::sasl::Mechanism,
    /// SASL user name.
    #[arg(long, env = "KAFKA_EXPOSE_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password. Prefer the environment variable or --sasl-password-file: a flag is
    /// visible to every user of the machine in the process list.
    #[arg(long, env = "KAFKA_EXPOSE_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<String>,
    /// A file holding the SASL password (a trailing newline is dropped).
    #[arg(long, conflicts_with = "sasl_password")]
    pub sasl_password_file: Option<PathBuf>,
    /// PEM CA certificates to verify brokers with (by default the system's trust store).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Accept any broker certificate: neither its chain nor its names are verified. The report
    /// still says whether the certificate names the host.
    #[arg(long, conflicts_with = "ca_file")]
    pub insecure_skip_tls_verify: bool,
    /// Dial every broker (and the bootstrap) at this address, `host` or `host:port`, instead
    /// of resolving its name, which still goes in the TLS SNI and must be named by its
    /// certificate: for brokers behind a Gateway (`expose: gateway`) whose names do not resolve
    /// where the check runs, e.g. `--connect-to 203.0.113.10`.
    #[arg(long)]
    pub connect_to: Option<String>,
    /// Limit on resolving a name and opening a TCP connection.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Limit on each request's answer, the TLS handshake and each SASL step.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Output: one line per broker for people, or JSON for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: CheckOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    Text,
    Json,
}

/// `gate`: the file the downward API writes the pod's `kafka-expose.io/external-host` to, or the
/// host itself; and with `external-tls`, where the broker's certificate is and where its PEM key
/// store goes.
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    #[arg(long, default_value = "/etc/kafka-expose/external-host")]
    pub file: std::path::PathBuf,
    /// The host the broker advertises, when it is known before the pod starts; the file is then
    /// not read.
    #[arg(long)]
    pub host: Option<String>,
    /// The broker's `kubernetes.io/tls` Secret, mounted (`tls.crt`, `tls.key`, `ca.crt`).
    #[arg(long, requires = "tls_dir")]
    pub tls_secret_dir: Option<std::path::PathBuf>,
    /// Where the PEM key store (key, then chain) and trust store are written for the broker.
    #[arg(long, requires = "tls_secret_dir")]
    pub tls_dir: Option<std::path::PathBuf>,
    /// The listener's `ssl.client.auth`: other than none, the Secret's `ca.crt` is the trust store.
    #[arg(long, value_parser = parse_client_auth, default_value = "none")]
    pub tls_client_auth: ClientAuth,
    /// A Secret mounted whose `ca.crt` is the trust store instead (`external-tls-client-ca`).
    #[arg(long, requires = "tls_secret_dir")]
    pub tls_client_ca_dir: Option<std::path::PathBuf>,
    /// How long to wait before failing, so that the kubelet restarts the gate.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often to read the file.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

/// `crd`: which form to print.
#[derive(Debug, Clone, Args)]
pub struct CrdArgs {
    /// Print the Helm chart's template instead (behind `crds.enabled`, kept on uninstall with
    /// `crds.keep`).
    #[arg(long)]
    pub chart: bool,
}

/// Settings shared by everything that runs the engine.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// The cluster's NodePort range (kube-apiserver --service-node-port-range).
    #[arg(
        long,
        env = "KAFKA_EXPOSE_NODE_PORT_RANGE",
        default_value = "30000-32767"
    )]
    pub node_port_range: NodePortRange,
    /// Image of the init containers put into broker pods (the properties adapter's, the
    /// `node:` gate). By default `serve` uses the image of its own pod (POD_NAME, POD_NAMESPACE),
    /// so that a retagged install injects the new name; elsewhere, and when that pod cannot be
    /// read, kafka-expose's own image at this version.
    #[arg(long, env = "KAFKA_EXPOSE_PATCHER_IMAGE")]
    pub patcher_image: Option<String>,
    /// The most ports (listeners) one load balancer of this cluster's cloud takes (AWS NLB:
    /// 50): a workload with `expose=shared-loadbalancer` and more brokers is refused, unless it
    /// sets kafka-expose.io/load-balancer-max-ports itself.
    #[arg(long, env = "KAFKA_EXPOSE_LOAD_BALANCER_MAX_PORTS", value_parser = clap::value_parser!(u16).range(1..))]
    pub load_balancer_max_ports: Option<u16>,
}

impl EngineArgs {
    pub fn settings(&self) -> Settings {
        let Self {
            node_port_range,
            patcher_image,
            load_balancer_max_ports,
        } = self.clone();
        Settings {
            node_port_range,
            patcher_image: patcher_image.unwrap_or_else(default_patcher_image),
            lb_max_ports: load_balancer_max_ports,
        }
    }
}

/// The webhook Service, whose DNS names the serving certificate carries.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Name of the webhook's Service.
    #[arg(
        long,
        env = "KAFKA_EXPOSE_SERVICE_NAME",
        default_value = "kafka-expose"
    )]
    pub service_name: String,
    /// Namespace of the webhook's Service.
    #[arg(
        long,
        env = "KAFKA_EXPOSE_SERVICE_NAMESPACE",
        default_value = "kafka-expose"
    )]
    pub service_namespace: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook.
    #[arg(long, env = "KAFKA_EXPOSE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain; re-read when it changes.
    #[arg(
        long,
        env = "KAFKA_EXPOSE_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "dev_certs"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; re-read when it changes.
    #[arg(long, env = "KAFKA_EXPOSE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Create a CA and a serving certificate in --cert-dir when missing, and serve with them.
    #[arg(long)]
    pub dev_certs: bool,
    /// Where --dev-certs keeps ca.crt, tls.crt and tls.key.
    #[arg(long, default_value = "certs")]
    pub cert_dir: PathBuf,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Address of the plain-HTTP admin port: /livez, /readyz, /metrics.
    #[arg(
        long,
        env = "KAFKA_EXPOSE_ADMIN_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_listen: SocketAddr,
    /// Log format; the level comes from RUST_LOG.
    #[arg(
        long,
        env = "KAFKA_EXPOSE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// When the engine fails on a pod: allow it unchanged with a warning (open), or deny it.
    #[arg(
        long,
        env = "KAFKA_EXPOSE_FAILURE_MODE",
        value_enum,
        default_value = "open"
    )]
    pub failure_mode: FailureMode,
    /// Reconcile workloads in this namespace only; all namespaces by default.
    #[arg(long, env = "KAFKA_EXPOSE_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Reconcile only while holding a leader Lease, so that one replica of several reconciles.
    #[arg(long, env = "KAFKA_EXPOSE_LEADER_ELECT")]
    pub leader_elect: bool,
    /// How long a LoadBalancer may stay without an address before a Warning Event.
    #[arg(long, env = "KAFKA_EXPOSE_LB_PENDING_WARNING", default_value = "5m", value_parser = parse_duration)]
    pub lb_pending_warning: Duration,
    /// How long a broker restarted for a new address is Ready before the next one restarts.
    #[arg(long, env = "KAFKA_EXPOSE_RESTART_SETTLE", default_value = "30s", value_parser = parse_duration)]
    pub restart_settle: Duration,
    /// How long a restarted broker may take to be Ready again before the restarts stall (a
    /// policy's rollout.progressDeadlineSeconds wins for its workloads).
    #[arg(long, env = "KAFKA_EXPOSE_RESTART_PROGRESS_DEADLINE", default_value = "10m", value_parser = parse_duration)]
    pub restart_progress_deadline: Duration,
    /// How long to keep serving, telling clients to close, after SIGTERM.
    #[arg(long, env = "KAFKA_EXPOSE_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Renew the serving certificate kept in this TLS Secret of the service namespace while
    /// serving (the files of --tls-cert and --tls-key are that Secret, mounted). Needs
    /// --certs-webhook, whose caBundle the roll-over updates.
    #[arg(long, env = "KAFKA_EXPOSE_CERTS_SECRET", requires = "certs_webhook")]
    pub certs_secret: Option<String>,
    /// The MutatingWebhookConfiguration whose caBundle trusts the Secret's CA.
    #[arg(long, env = "KAFKA_EXPOSE_CERTS_WEBHOOK")]
    pub certs_webhook: Option<String>,
    /// How often the Secret's certificate is checked.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub certs_check_every: Duration,
    #[command(flatten)]
    pub registrar: RegistrarArgs,
    #[command(flatten)]
    pub renew: RenewArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The webhooks kafka-expose registers itself, beside the chart's: one per live policy (where
/// the chart's workload webhook carries its key condition, API servers 1.28+), and the bindings
/// webhook while a broker or policy uses `node:` addresses.
#[derive(Debug, Clone, Args)]
pub struct RegistrarArgs {
    /// The chart's MutatingWebhookConfiguration, whose workload webhook the registered ones
    /// copy (server, CA bundle, namespaces). Without it, nothing is registered.
    #[arg(long, env = "KAFKA_EXPOSE_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// The MutatingWebhookConfiguration kafka-expose creates for them (by default the chart's
    /// name with `-registered`).
    #[arg(
        long,
        env = "KAFKA_EXPOSE_REGISTERED_WEBHOOKS",
        requires = "webhook_configuration"
    )]
    pub registered_webhooks: Option<String>,
    /// Register the bindings webhook while it is used (a node's address at binding, before the
    /// broker starts); without it, `node:` brokers always take the reconciler's fallback.
    #[arg(long, env = "KAFKA_EXPOSE_BINDINGS_WEBHOOK")]
    pub bindings_webhook: bool,
    /// The bindings webhook's timeoutSeconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=30))]
    pub bindings_timeout_seconds: i32,
}

impl RegistrarArgs {
    /// The registrar's options, when a chart configuration is named.
    pub fn options(&self) -> Option<crate::cluster::registrar::Options> {
        let base = self.webhook_configuration.clone()?;
        Some(crate::cluster::registrar::Options {
            name: self
                .registered_webhooks
                .clone()
                .unwrap_or_else(|| format!("{base}-registered")),
            base,
            bindings: self.bindings_webhook,
            bindings_timeout_seconds: self.bindings_timeout_seconds,
        })
    }
}

/// When a kept certificate is renewed, and how the CA rolls over.
#[derive(Debug, Clone, Args)]
pub struct RenewArgs {
    /// Re-issue the serving certificate when less than this is left of it.
    #[arg(long, env = "KAFKA_EXPOSE_RENEW_BEFORE", default_value = "30d", value_parser = parse_long_duration)]
    pub renew_before: Duration,
    /// How long a new certificate is valid.
    #[arg(long, default_value = "365d", value_parser = parse_long_duration)]
    pub cert_validity: Duration,
    /// How long the old CA stays trusted beside the new one after a roll-over.
    #[arg(long, default_value = "10m", value_parser = parse_long_duration)]
    pub ca_overlap: Duration,
    /// How long to wait, after the webhook's caBundle trusts a new CA, before serving from it.
    #[arg(long, default_value = "10s", value_parser = parse_long_duration)]
    pub ca_propagation: Duration,
}

impl RenewArgs {
    pub fn policy(&self) -> crate::cluster::certs::RenewPolicy {
        crate::cluster::certs::RenewPolicy {
            renew_before: self.renew_before,
            overlap: self.ca_overlap,
            propagation: self.ca_propagation,
            validity: crate::certs::Validity {
                serving: self.cert_validity,
            },
        }
    }
}

/// Parses `90s`, `10m`, `12h` or `30d` (seconds when no unit), up to ten years.
pub fn parse_long_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m, 12h or 30d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    let secs = n
        .checked_mul(unit)
        .filter(|v| *v <= 10 * 366 * 86_400)
        .ok_or_else(|| format!("{s:?} is out of range (up to ten years)"))?;
    Ok(Duration::from_secs(secs))
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Directory to write ca.crt, tls.crt and tls.key into (default `certs`, unless --secret).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the pair in this TLS Secret of --service-namespace instead: made when missing,
    /// reused when present, and renewed when it nears its end or lacks a name it needs (an
    /// install hook runs this on every upgrade).
    #[arg(long)]
    pub secret: Option<String>,
    /// Set the caBundle of every webhook of this MutatingWebhookConfiguration to the CA. With
    /// --secret, a configuration that does not exist yet (before install) is skipped.
    #[arg(long)]
    pub patch_webhook: Option<String>,
    #[command(flatten)]
    pub renew: RenewArgs,
}

/// Parses `5s`, `500ms`, `2m` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 5s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("{s:?} is out of range (0 to 1h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct MutateArgs {
    /// Manifests to read: multi-document YAML or JSON; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    /// Add the annotation kafka-expose.io/KEY=VALUE to every workload (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<(String, String)>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub output: OutputFormat,
    /// Print a summary for people instead of the objects.
    #[arg(long)]
    pub explain: bool,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    offline::parse_set(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct PatchPropertiesArgs {
    /// The server.properties to edit in place.
    #[arg(long, env = envs::PROPERTIES_FILE)]
    pub file: PathBuf,
    /// Name of the external listener.
    #[arg(long, env = envs::LISTENER_NAME, default_value = DEFAULT_LISTENER_NAME)]
    pub listener_name: String,
    /// Port the broker binds for the listener.
    #[arg(long, env = envs::CONTAINER_PORT)]
    pub container_port: u16,
    /// Host the broker advertises on the listener.
    #[arg(long, env = envs::EXTERNAL_HOST)]
    pub advertised_host: String,
    /// Port the broker advertises on the listener.
    #[arg(long, env = envs::EXTERNAL_PORT)]
    pub advertised_port: u16,
    /// Protocol of the listener; by default the client listener's.
    #[arg(long, env = envs::SECURITY_PROTOCOL, value_parser = parse_protocol)]
    pub security_protocol: Option<SecurityProtocol>,
    /// The directory with the listener's own PEM key and chain (`external-tls`); unset, the
    /// listener has no TLS of its own.
    #[arg(long, env = envs::TLS_DIR)]
    pub tls_dir: Option<String>,
    /// The listener's `ssl.client.auth` when it has TLS of its own.
    #[arg(long, env = envs::TLS_CLIENT_AUTH, value_parser = parse_client_auth, default_value = "none")]
    pub tls_client_auth: ClientAuth,
    /// Where the container's termination message goes when the chart's configuration is kept
    /// (the kubelet's default path).
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_message_path: PathBuf,
}

fn parse_client_auth(s: &str) -> Result<ClientAuth, String> {
    ClientAuth::parse(s).ok_or_else(|| format!("{s:?}: allowed: none, requested, required"))
}

fn parse_protocol(s: &str) -> Result<SecurityProtocol, String> {
    SecurityProtocol::parse(s)
        .ok_or_else(|| format!("{s:?}: allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"))
}

impl Cli {
    pub fn run(self) -> Result<ExitCode> {
        match self.command {
            Command::Serve(args) => cmd::serve::run(*args),
            Command::Certs(args) => cmd::certs::run(args),
            Command::Mutate(args) => cmd::mutate::run(args),
            Command::PatchProperties(args) => cmd::patch_properties::run(args),
            Command::Crd(args) => cmd::crd::run(args),
            Command::Gate(args) => cmd::gate::run(args),
            Command::Check(args) => cmd::check::run(args),
        }
    }
}
