//! The command line: a thin shell over the engine.
//!
//! - `kafka-expose serve`: the HTTPS admission webhook and its admin port;
//! - `kafka-expose mutate`: the webhook's and reconciler's decisions on manifests, offline;
//! - `kafka-expose certs`: a CA and serving certificate for a real install;
//! - `kafka-expose patch-properties`: the properties adapter's init-container helper.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::certs;
use crate::config::{NodePortRange, Settings, default_patcher_image};
use crate::engine::envs;
use crate::engine::listeners::SecurityProtocol;
use crate::leader;
use crate::mutate;
use crate::properties_file;
use crate::reconciler;
use crate::telemetry::{self, LogFormat};
use crate::webhook::admission::FailureMode;
use crate::webhook::server::{self, ServeConfig};
use crate::webhook::{AppState, tls};

/// Makes Kafka brokers deployed by unmodified charts reachable from outside the cluster.
#[derive(Debug, Parser)]
#[command(name = "kafka-expose", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS admission webhook, with /livez, /readyz and /metrics on the admin port.
    Serve(ServeArgs),
    /// Write a CA, a serving certificate and its key for the webhook Service; print the caBundle.
    Certs(CertsArgs),
    /// Print what the webhook and the reconciler would do to manifests, with no cluster.
    Mutate(MutateArgs),
    /// Add the external listener to a server.properties (the properties adapter's init container).
    PatchProperties(PatchPropertiesArgs),
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
    /// Image of the properties adapter's init container.
    #[arg(long, env = "KAFKA_EXPOSE_PATCHER_IMAGE", default_value_t = default_patcher_image())]
    pub patcher_image: String,
}

impl EngineArgs {
    pub fn settings(&self) -> Settings {
        let Self {
            node_port_range,
            patcher_image,
        } = self.clone();
        Settings {
            node_port_range,
            patcher_image,
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
    /// How long to keep serving, telling clients to close, after SIGTERM.
    #[arg(long, env = "KAFKA_EXPOSE_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Directory to write ca.crt, tls.crt and tls.key into (default `certs`, unless --secret).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the pair in this TLS Secret of --service-namespace instead: made when missing,
    /// reused when present (an install hook runs this on every upgrade).
    #[arg(long)]
    pub secret: Option<String>,
    /// Set the caBundle of every webhook of this MutatingWebhookConfiguration to the CA.
    #[arg(long)]
    pub patch_webhook: Option<String>,
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
    mutate::parse_set(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct PatchPropertiesArgs {
    /// The server.properties to edit in place.
    #[arg(long, env = envs::PROPERTIES_FILE)]
    pub file: PathBuf,
    /// Name of the external listener.
    #[arg(long, env = envs::LISTENER_NAME, default_value = crate::config::DEFAULT_LISTENER_NAME)]
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
}

fn parse_protocol(s: &str) -> Result<SecurityProtocol, String> {
    SecurityProtocol::parse(s)
        .ok_or_else(|| format!("{s:?}: allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"))
}

impl Cli {
    pub fn run(self) -> Result<ExitCode> {
        match self.command {
            Command::Serve(args) => run_serve(args),
            Command::Certs(args) => run_certs(args),
            Command::Mutate(args) => run_mutate(args),
            Command::PatchProperties(args) => run_patch_properties(args),
        }
    }
}

fn run_serve(args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        listen,
        tls_cert,
        tls_key,
        dev_certs,
        cert_dir,
        service,
        admin_listen,
        log_format,
        failure_mode,
        watch_namespace,
        leader_elect,
        lb_pending_warning,
        shutdown_grace,
        engine,
    } = args;
    telemetry::init(log_format);
    let (cert_file, key_file) = match (tls_cert, tls_key) {
        (Some(c), Some(k)) => (c, k),
        _ if dev_certs => {
            let dns = certs::dns_names(&service.service_name, &service.service_namespace);
            if certs::ensure_dev(&cert_dir, &dns)? {
                tracing::info!(dir = %cert_dir.display(), "created dev certificates");
            }
            (
                cert_dir.join(certs::TLS_CERT),
                cert_dir.join(certs::TLS_KEY),
            )
        }
        _ => anyhow::bail!("give --tls-cert and --tls-key, or --dev-certs"),
    };
    let mut state = AppState::standalone(engine.settings(), failure_mode);
    let cfg = ServeConfig {
        listen,
        admin_listen,
        cert_file,
        key_file,
        shutdown_grace,
        reload_interval: tls::RELOAD_INTERVAL,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            server::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let reconciler = match cluster_client().await {
            Ok(client) => {
                let election =
                    leader_election(leader_elect, &service.service_namespace, watch_namespace.as_deref());
                match &election {
                    Some(e) => tracing::info!(lease = %e.name, namespace = %e.namespace, "cluster credentials found: reconciling while holding the leader Lease"),
                    None => tracing::info!("cluster credentials found: running the reconciler"),
                }
                let (store, task) = reconciler::spawn(
                    client,
                    state.settings.clone(),
                    state.metrics.clone(),
                    state.readiness.clone(),
                    reconciler::Options {
                        namespace: watch_namespace.clone(),
                        lb_pending_warning,
                    },
                    election,
                    stopped(stop_rx.clone()),
                );
                state.lb_addresses = Arc::new(move |ns: &str, name: &str| {
                    reconciler::lb_address(&store, ns, name)
                });
                Some(task)
            }
            Err(why) => {
                tracing::info!(%why, "no cluster credentials: serving the webhook alone, without the reconciler");
                None
            }
        };
        server::serve(cfg, state, stopped(stop_rx), |_| {}).await?;
        if let Some(r) = reconciler {
            let _ = r.await;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The leader Lease, when asked for: in the pod's namespace (`POD_NAMESPACE`, else the webhook
/// Service's), named for what the reconciler watches, held under the pod's name.
fn leader_election(
    enabled: bool,
    service_namespace: &str,
    watch: Option<&str>,
) -> Option<leader::Election> {
    if !enabled {
        return None;
    }
    let namespace =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| service_namespace.to_string());
    let name = match watch {
        Some(ns) => format!("kafka-expose-reconciler-{ns}"),
        None => "kafka-expose-reconciler".to_string(),
    };
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    Some(leader::Election::new(&namespace, &name, &identity))
}

/// A client from the in-cluster service account or a kubeconfig, if there is one.
async fn cluster_client() -> Result<kube::Client, String> {
    let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

fn run_certs(args: CertsArgs) -> Result<ExitCode> {
    let CertsArgs {
        service,
        out,
        secret,
        patch_webhook,
    } = args;
    let dns = certs::dns_names(&service.service_name, &service.service_namespace);
    let bundle = if secret.is_none() && patch_webhook.is_none() {
        let out = out.unwrap_or_else(|| PathBuf::from("certs"));
        let bundle = certs::generate(&dns)?;
        certs::write(&out, &bundle)?;
        eprintln!(
            "wrote {}, {} and {} to {} for {}",
            certs::CA_CERT,
            certs::TLS_CERT,
            certs::TLS_KEY,
            out.display(),
            dns.join(", ")
        );
        bundle
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let ns = service.service_namespace.clone();
        let bundle = runtime.block_on(async {
            let client = cluster_client().await.map_err(anyhow::Error::msg)?;
            let bundle = match &secret {
                Some(name) => certs::ensure_secret(&client, &ns, name, &dns).await?,
                None => certs::generate(&dns)?,
            };
            if let Some(cfg) = &patch_webhook {
                certs::patch_ca_bundle(&client, cfg, &bundle.ca_bundle()).await?;
                eprintln!("set the caBundle of MutatingWebhookConfiguration {cfg}");
            }
            anyhow::Ok(bundle)
        })?;
        if let Some(out) = out {
            certs::write(&out, &bundle)?;
        }
        bundle
    };
    println!("{}", bundle.ca_bundle());
    Ok(ExitCode::SUCCESS)
}

fn run_mutate(args: MutateArgs) -> Result<ExitCode> {
    let MutateArgs {
        file,
        set,
        output,
        explain,
        namespace,
        engine,
    } = args;
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
    };
    let docs = mutate::read_documents(&text)?;
    let opts = mutate::Options {
        set,
        namespace,
        settings: engine.settings(),
    };
    let out = mutate::run(docs, &opts)?;
    let rendered = if explain {
        mutate::explain(&out)
    } else {
        match output {
            OutputFormat::Yaml => mutate::to_yaml(&out.objects).map_err(anyhow::Error::msg)?,
            OutputFormat::Json => mutate::to_json(&out.objects) + "\n",
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(rendered.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn run_patch_properties(args: PatchPropertiesArgs) -> Result<ExitCode> {
    let PatchPropertiesArgs {
        file,
        listener_name,
        container_port,
        advertised_host,
        advertised_port,
        security_protocol,
    } = args;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let req = properties_file::Request {
        listener_name,
        container_port,
        advertised_host,
        advertised_port,
        security_protocol,
    };
    let edit = properties_file::patch(&text, &req)
        .with_context(|| format!("patching {}", file.display()))?;
    if edit.changed {
        write_replacing(&file, &edit.text)?;
    }
    for note in &edit.notes {
        println!("kafka-expose patch-properties: {}: {note}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path` through a temporary file and a rename, keeping the file's mode; where
/// the rename is impossible (the file is itself a mount point), writes in place.
fn write_replacing(path: &Path, text: &str) -> Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server.properties".into());
    let tmp = dir.join(format!(".{name}.kafka-expose.tmp"));
    let perms = std::fs::metadata(&target).map(|m| m.permissions()).ok();
    let renamed = std::fs::write(&tmp, text)
        .and_then(|()| match &perms {
            Some(p) => std::fs::set_permissions(&tmp, p.clone()),
            None => Ok(()),
        })
        .and_then(|()| std::fs::rename(&tmp, &target));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}
