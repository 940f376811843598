//! The cluster runtime of `serve`: what runs beside the webhook once there are cluster
//! credentials.
//!
//! On every replica: the caches the webhook reads ([`Caches`]: the managed Services, the
//! policies and namespace labels, the broker pods and nodes). On the leader only (the holder of
//! the reconciler's Lease, when elections are on): the workload [`reconciler`], the
//! [`policies`] controller and the [`nodes`] fallback, sharing one [`Context`]. Beside them,
//! under a Lease of its own, the certificates' renewal ([`certs::Renewer`]).
//!
//! `cmd/serve.rs` turns flags into a [`Config`] and calls [`start`]; the e2e tests call
//! [`spawn`] with shortened [`Periods`].

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tracing::info;

use super::caches::{self, BindingCache, ServiceCache};
use super::certs::{self, Renewer};
use super::context::Context;
pub use super::context::{Periods, RestartSettings};
use super::events::Announcer;
use super::policies::{self, PolicyStores};
use super::{leader, nodes, own_image, reconciler, restarts};
use crate::config::{Settings, default_patcher_image};
use crate::metrics::{Metrics, Readiness};
use crate::names::{FIELD_MANAGER, LEASE};

/// What the leader's controllers need besides the client.
#[derive(Clone, Default)]
pub struct Options {
    /// Watch one namespace only; all by default.
    pub namespace: Option<String>,
    pub lb_pending_warning: Duration,
    pub periods: Periods,
    /// A client of its own for the policy controller, so that its requests are counted apart
    /// (the request figures in BENCHMARKS.md); the runtime's client otherwise.
    pub policy_client: Option<Client>,
    /// The webhooks kafka-expose registers itself (none without).
    pub registrar: Option<super::registrar::Options>,
}

/// The caches every replica keeps: the webhook reads them, and the leader reconciles from them.
#[derive(Clone)]
pub struct Caches {
    pub services: ServiceCache,
    pub policies: PolicyStores,
    pub bindings: BindingCache,
}

/// What [`spawn`] starts: the caches every replica keeps, and the leader's task.
pub struct Spawned {
    pub caches: Caches,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the caches on this replica (readiness waits for them to sync), and the leader's
/// controllers, only while holding the Lease when `election` is given. Everything stops when
/// `shutdown` resolves.
pub fn spawn(
    client: Client,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    options: Options,
    election: Option<leader::Election>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Spawned {
    let shutdown: leader::Stop = Box::pin(shutdown);
    let shutdown = futures::future::FutureExt::shared(shutdown);
    readiness.require_sync();
    let policies = policies::watch(&client, readiness.clone(), shutdown.clone());
    let bindings = caches::watch_bindings(&client, options.namespace.as_deref(), shutdown.clone());
    let (store, stream) = caches::service_store(client.clone(), options.namespace.as_deref());
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(caches::feed_services(
        store.clone(),
        stream,
        readiness,
        synced_tx,
        shutdown.clone(),
    ));
    let caches = Caches {
        services: ServiceCache {
            store,
            synced: synced_rx,
        },
        policies,
        bindings,
    };
    let (lead_client, shared) = (client.clone(), caches.clone());
    let lead = move |stop: leader::Stop| {
        lead(
            lead_client.clone(),
            settings.clone(),
            metrics.clone(),
            options.clone(),
            shared.clone(),
            stop,
        )
    };
    let task = match election {
        Some(e) => tokio::spawn(leader::run(client, e, shutdown, lead)),
        None => tokio::spawn(lead(Box::pin(shutdown))),
    };
    Spawned { caches, task }
}

/// One term of leadership: the workload reconciler, the policy controller and the node-address
/// fallback, sharing one [`Context`], until `shutdown`.
async fn lead(
    client: Client,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    options: Options,
    caches: Caches,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let Caches {
        services,
        policies: stores,
        bindings,
    } = caches;
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        metrics,
        events: Announcer::new(Recorder::new(client.clone(), reporter.clone())),
        services,
        lb_pending_warning: options.lb_pending_warning,
        broker_pods: bindings.pods.clone(),
    });
    let shutdown: leader::Stop = Box::pin(shutdown);
    let shutdown = futures::future::FutureExt::shared(shutdown);
    let periods = options.periods;
    let scope = options.namespace.clone();
    let policy_ctx = match &options.policy_client {
        Some(own) => Arc::new(Context {
            client: own.clone(),
            settings: ctx.settings.clone(),
            metrics: ctx.metrics.clone(),
            events: Announcer::new(Recorder::new(own.clone(), reporter.clone())),
            services: ctx.services.clone(),
            lb_pending_warning: ctx.lb_pending_warning,
            broker_pods: ctx.broker_pods.clone(),
        }),
        None => ctx.clone(),
    };
    let restarts = restarts::run(
        ctx.clone(),
        bindings.clone(),
        stores.policies.clone(),
        periods.restarts,
        shutdown.clone(),
    );
    let registrar = {
        let (client, pods, policies) = (
            ctx.client.clone(),
            bindings.pods.clone(),
            stores.policies.clone(),
        );
        let (options, stop) = (options.registrar.clone(), shutdown.clone());
        async move {
            if let Some(o) = options {
                super::registrar::run(client, o, pods, policies, stop).await;
            }
        }
    };
    let policy_stop = shutdown.clone();
    let policies = async move {
        if policies::served(&policy_ctx.client).await {
            policies::run(policy_ctx, stores, scope, periods, policy_stop).await;
        }
    };
    tokio::join!(
        nodes::run(
            ctx.clone(),
            bindings,
            periods.node_fallback,
            shutdown.clone()
        ),
        reconciler::run(ctx, options.namespace, shutdown),
        policies,
        restarts,
        registrar,
    );
}

/// What `serve` asks of the cluster runtime.
pub struct Config {
    pub options: Options,
    /// Hold a Lease, so that one replica at a time leads.
    pub leader_elect: bool,
    /// The webhook's Service, whose namespace holds the Leases when not in a pod.
    pub service_name: String,
    pub service_namespace: String,
    /// The certificates' Secret and the webhook configuration whose caBundle it feeds: renewed
    /// when both are given.
    pub certs: Option<(String, String)>,
    pub renew: certs::RenewPolicy,
    pub certs_check_every: Duration,
    /// Whether `--patcher-image` was given: if not, the image this pod runs as is injected.
    pub patcher_image_set: bool,
}

/// What [`start`] started.
pub struct Started {
    pub caches: Caches,
    /// The settings with the injected image resolved.
    pub settings: Arc<Settings>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts everything `serve` runs against the cluster: the injected image read from this pod,
/// the certificates' renewal under its Lease, and [`spawn`] under the reconciler's Lease.
pub async fn start(
    client: Client,
    cfg: Config,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Started {
    let Config {
        options,
        leader_elect,
        service_name,
        service_namespace,
        certs: certs_targets,
        renew,
        certs_check_every,
        patcher_image_set,
    } = cfg;
    let shutdown: leader::Stop = Box::pin(shutdown);
    let shutdown = futures::future::FutureExt::shared(shutdown);
    let election = leader_election(
        leader_elect,
        &service_namespace,
        options.namespace.as_deref(),
    );
    match &election {
        Some(e) => {
            info!(lease = %e.name, namespace = %e.namespace, "cluster credentials found: reconciling while holding the leader Lease")
        }
        None => info!("cluster credentials found: running the reconciler"),
    }
    let settings = if patcher_image_set {
        settings
    } else {
        Arc::new(Settings {
            patcher_image: injected_image(&client).await,
            ..(*settings).clone()
        })
    };
    if let Some((secret, webhook)) = certs_targets {
        let renewer = Renewer {
            client: client.clone(),
            namespace: service_namespace.clone(),
            secret,
            webhook,
            dns: crate::certs::dns_names(&service_name, &service_namespace),
            policy: renew,
            every: certs_check_every,
        };
        let election = leader_election(leader_elect, &service_namespace, None)
            .map(|e| leader::Election::new(&e.namespace, certs::LEASE, &e.identity));
        tokio::spawn(renewer.run(election, shutdown.clone()));
    }
    let Spawned { caches, task } = spawn(
        client,
        settings.clone(),
        metrics,
        readiness,
        options,
        election,
        shutdown,
    );
    Started {
        caches,
        settings,
        task,
    }
}

/// The image of this server's own pod, for the init containers it injects; the build's default
/// image, with the reason logged, when the pod cannot be read.
async fn injected_image(client: &Client) -> String {
    let (Ok(ns), Ok(name)) = (std::env::var("POD_NAMESPACE"), std::env::var("POD_NAME")) else {
        let image = default_patcher_image();
        info!(%image, "not in a pod (no POD_NAME, POD_NAMESPACE): injecting the default image");
        return image;
    };
    match own_image::read(client, &ns, &name).await {
        Ok(image) => {
            info!(%image, pod = %name, "injecting the image this server runs as");
            image
        }
        Err(why) => {
            let image = default_patcher_image();
            tracing::warn!(%why, %image, "cannot read this server's own image: injecting the default; set --patcher-image to choose");
            image
        }
    }
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
        Some(ns) => format!("{LEASE}-{ns}"),
        None => LEASE.to_string(),
    };
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    Some(leader::Election::new(&namespace, &name, &identity))
}
