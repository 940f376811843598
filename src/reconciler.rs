//! The reconciler: keeps each exposed workload's external Services equal to the engine's plan.
//!
//! A kube-runtime `Controller` per workload kind (StatefulSets, Deployments) watches the
//! workloads and the Services kafka-expose manages (label `app.kubernetes.io/managed-by:
//! kafka-expose`). For each workload, [`reconcile`]:
//! - applies every planned Service with server-side apply, field manager `kafka-expose`, so that
//!   several instances converge on the same objects without fighting;
//! - deletes the managed Services of this workload that are no longer planned (scale-down,
//!   `expose=off`, annotation removed) and never a Service without the managed-by label;
//! - publishes the external bootstrap address in `kafka-expose.io/bootstrap-servers` and an
//!   Event, and a short `kafka-expose.io/status`;
//! - turns each failure (a NodePort taken by another Service, a forbidden call, a LoadBalancer
//!   still without an address) into a Warning Event and the status, applies the other Services all
//!   the same, and retries with backoff. It never crash-loops.
//!
//! Owner references on the Services let the garbage collector remove them with the workload. The
//! managed Services are also kept in a reflector store, from which the Pod webhook reads
//! LoadBalancer addresses (`advertised-host: loadbalancer`) without an API call per request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::config::{ExposeConfig, ExposeMode, PREFIX, Settings, own};
use crate::engine::EngineError;
use crate::engine::workload::Workload;
use crate::leader;
use crate::metrics::{Metrics, Readiness};
use crate::services::{self, MANAGER, WORKLOAD_LABEL};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kafka-expose";
/// Selects the Services kafka-expose manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kafka-expose";
/// How soon a failed reconciliation is retried.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How soon a workload whose LoadBalancer has no address yet is looked at again.
pub const PENDING_RECHECK: Duration = Duration::from_secs(5);
/// How often a settled workload is reconciled anyway, to catch what no watch event shows.
pub const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    #[error("{failed} of the workload's Services could not be applied: {first}")]
    Services { failed: usize, first: String },
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "api",
            Self::Services { .. } => "service_apply",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// The managed Services, as the watch last saw them.
    pub services: Store<Service>,
    /// How long a LoadBalancer may stay without an address before a Warning Event.
    pub lb_pending_warning: Duration,
}

/// The workload kinds the reconciler serves.
pub trait Exposable:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn workload(&self) -> Workload;
}

impl Exposable for StatefulSet {
    fn workload(&self) -> Workload {
        Workload::from_statefulset(self.clone())
    }
}

impl Exposable for Deployment {
    fn workload(&self) -> Workload {
        Workload::from_deployment(self.clone())
    }
}

/// The ingress address of a managed Service, from the store.
pub fn lb_address(store: &Store<Service>, namespace: &str, name: &str) -> Option<String> {
    let svc = store.get(&ObjectRef::new(name).within(namespace))?;
    ingress(&svc)
}

fn ingress(svc: &Service) -> Option<String> {
    let i = svc
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .clone();
    i.ip.or(i.hostname).filter(|s| !s.is_empty())
}

/// What the reconciliation found, for the workload's annotations.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    status: Option<String>,
    bootstrap: Option<String>,
}

/// Reconciles one workload.
#[instrument(skip_all, fields(kind = %K::kind(&()), namespace = obj.namespace().unwrap_or_default(), name = %obj.name_any()))]
pub async fn reconcile<K: Exposable>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.inc();
    let w = obj.workload();
    let Some(ns) = w.namespace.clone() else {
        return Ok(Action::await_change());
    };
    let svc_api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let existing: Vec<Arc<Service>> = ctx.services.state_filter(|s| {
        s.namespace().as_deref() == Some(ns.as_str())
            && s.labels().get(WORKLOAD_LABEL) == Some(&w.name)
            && s.labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some(MANAGER)
    });

    let plan = services::plan_for_workload(&w, &ctx.settings);
    let (desired, exposed) = match plan {
        Ok(Ok(p)) => (p.services, Some((p.config, p.routes))),
        Ok(Err(services::NoServices::NotExposed)) => (Vec::new(), None),
        Ok(Err(why)) => {
            let note = format!("{why:?}");
            publish(&ctx, obj.as_ref(), EventType::Warning, "NotExposed", &note).await;
            (Vec::new(), None)
        }
        Err(EngineError::Config(e)) => {
            publish(
                &ctx,
                obj.as_ref(),
                EventType::Warning,
                "InvalidConfiguration",
                &e.to_string(),
            )
            .await;
            annotate(
                &ctx,
                obj.as_ref(),
                &Outcome {
                    status: Some("invalid-configuration".into()),
                    bootstrap: None,
                },
            )
            .await?;
            return Ok(Action::await_change());
        }
        Err(e) => {
            warn!(error = %crate::engine::error_chain(&e), "cannot read the workload");
            return Ok(Action::await_change());
        }
    };

    let wanted: BTreeSet<String> = desired
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    let mut failures = Vec::new();
    let mut applied = Vec::new();
    for svc in &desired {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match svc_api.patch(&name, &params, &Patch::Apply(svc)).await {
            Ok(s) => applied.push(s),
            Err(e) => {
                let port = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.ports.as_ref()?.first()?.node_port)
                    .map(|p| format!(" (NodePort {p})"))
                    .unwrap_or_default();
                let why = api_message(&e);
                failures.push(format!("Service {name}{port}: {why}"));
            }
        }
    }
    for old in &existing {
        let name = old.name_any();
        if wanted.contains(&name) {
            continue;
        }
        match svc_api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => info!(service = %name, "deleted a Service no longer planned"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => failures.push(format!(
                "Service {name}: delete failed: {}",
                api_message(&e)
            )),
        }
    }
    let managed = ctx.services.state().len();
    ctx.metrics.managed_services.set(managed as i64);

    for f in &failures {
        publish(&ctx, obj.as_ref(), EventType::Warning, "ServiceFailed", f).await;
    }
    let mut outcome = Outcome::default();
    let mut action = Action::requeue(RESYNC);
    if let Some((cfg, routes)) = &exposed {
        let (bootstrap, pending) = bootstrap_address(&ctx, &w, cfg, routes, &applied, &ns).await?;
        if let Some(since) = pending {
            action = Action::requeue(PENDING_RECHECK);
            if since >= ctx.lb_pending_warning {
                publish(
                    &ctx,
                    obj.as_ref(),
                    EventType::Warning,
                    "LoadBalancerPending",
                    &format!(
                        "Service {} has had no LoadBalancer address for {}s",
                        services::bootstrap_service_name(&w.name),
                        since.as_secs()
                    ),
                )
                .await;
            }
        }
        outcome.bootstrap = bootstrap;
        outcome.status = Some(match (&failures.first(), pending) {
            (Some(f), _) => format!("error: {f}"),
            (None, Some(_)) => "pending: loadbalancer address".into(),
            (None, None) if outcome.bootstrap.is_none() => "pending: broker addresses".into(),
            (None, None) => "ok".into(),
        });
        if outcome.bootstrap.is_none() && pending.is_none() {
            action = Action::requeue(PENDING_RECHECK);
        }
    }
    let previous = current_bootstrap(obj.as_ref());
    annotate(&ctx, obj.as_ref(), &outcome).await?;
    if let Some(b) = &outcome.bootstrap
        && previous.as_ref() != Some(b)
    {
        publish(
            &ctx,
            obj.as_ref(),
            EventType::Normal,
            "BootstrapAddress",
            &format!("external bootstrap servers: {b}"),
        )
        .await;
    }
    if let Some(first) = failures.first() {
        return Err(Error::Services {
            failed: failures.len(),
            first: first.clone(),
        });
    }
    Ok(action)
}

/// The message of an API error, or the error itself.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => crate::engine::error_chain(other),
    }
}

fn current_bootstrap<K: Exposable>(obj: &K) -> Option<String> {
    obj.annotations()
        .get(&format!("{PREFIX}{}", own::BOOTSTRAP_SERVERS))
        .cloned()
}

/// The external bootstrap address, if known, and how long a LoadBalancer has waited for one.
async fn bootstrap_address(
    ctx: &Context,
    w: &Workload,
    cfg: &ExposeConfig,
    routes: &services::Routes,
    applied: &[Service],
    ns: &str,
) -> Result<(Option<String>, Option<Duration>)> {
    let bootstrap_name = services::bootstrap_service_name(&w.name);
    let bootstrap = applied
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(&bootstrap_name));
    match cfg.mode {
        ExposeMode::LoadBalancer => {
            let Some(svc) = bootstrap else {
                return Ok((None, None));
            };
            match ingress(svc) {
                Some(addr) => Ok((Some(format!("{addr}:{}", cfg.advertised_port)), None)),
                None => {
                    let age = svc
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|Time(t)| {
                            let now = unix_now();
                            Duration::from_secs(now.saturating_sub(t.as_second()).max(0) as u64)
                        })
                        .unwrap_or_default();
                    Ok((None, Some(age)))
                }
            }
        }
        ExposeMode::NodePort => {
            let Some(port) =
                bootstrap.and_then(|s| s.spec.as_ref()?.ports.as_ref()?.first()?.node_port)
            else {
                return Ok((None, None));
            };
            let ips = broker_host_ips(ctx, w, ns).await?;
            if ips.is_empty() {
                return Ok((None, None));
            }
            let list: Vec<String> = ips
                .values()
                .map(|ip| format!("{ip}:{port}"))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            Ok((Some(list.join(",")), None))
        }
        ExposeMode::HostPort => {
            let ips = broker_host_ips(ctx, w, ns).await?;
            let list: Vec<String> = routes
                .brokers
                .iter()
                .filter_map(|r| Some(format!("{}:{}", ips.get(&r.pod)?, r.port)))
                .collect();
            Ok(((!list.is_empty()).then(|| list.join(",")), None))
        }
    }
}

/// Seconds since the epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The node IPs of the workload's running broker pods, by pod name.
async fn broker_host_ips(
    ctx: &Context,
    w: &Workload,
    ns: &str,
) -> Result<BTreeMap<String, String>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = w
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::Kube)?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| {
            let ip = p
                .status
                .as_ref()?
                .host_ip
                .clone()
                .filter(|ip| !ip.is_empty())?;
            Some((p.name_any(), ip))
        })
        .collect())
}

/// Sets or removes the status and bootstrap annotations, when they differ from the workload's.
async fn annotate<K: Exposable>(ctx: &Context, obj: &K, outcome: &Outcome) -> Result<()> {
    let keys = [
        (format!("{PREFIX}{}", own::STATUS), &outcome.status),
        (
            format!("{PREFIX}{}", own::BOOTSTRAP_SERVERS),
            &outcome.bootstrap,
        ),
    ];
    let current = obj.annotations();
    let mut changes = serde_json::Map::new();
    for (key, want) in keys {
        if current.get(&key) != want.as_ref() {
            changes.insert(
                key,
                want.clone()
                    .map_or(serde_json::Value::Null, serde_json::Value::String),
            );
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": changes}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

async fn publish<K: Exposable>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish an Event");
    }
}

fn error_policy<K: Exposable>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(err.metric_label());
    warn!(name = %obj.name_any(), error = %crate::engine::error_chain(err), "reconciliation failed; retrying");
    Action::requeue(RETRY_AFTER)
}

/// A reflector over the managed Services, and the stream that feeds it.
pub fn service_store(
    client: Client,
    namespace: Option<&str>,
) -> (
    Store<Service>,
    impl futures::Stream<Item = ()> + Send + use<>,
) {
    let (reader, writer) = reflector::store();
    let api: Api<Service> = scoped(client, namespace);
    let stream = watcher(api, watcher::Config::default().labels(MANAGED_SELECTOR))
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .filter_map(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "Service watch failed; retrying");
            }
            None::<()>
        });
    (reader, stream)
}

/// An API over every namespace, or over one.
fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

fn controller<K: Exposable>(client: &Client, namespace: Option<&str>) -> Controller<K> {
    Controller::new(
        scoped::<K>(client.clone(), namespace),
        watcher::Config::default(),
    )
    .owns(
        scoped::<Service>(client.clone(), namespace),
        watcher::Config::default().labels(MANAGED_SELECTOR),
    )
}

/// What [`run`] needs besides the client.
#[derive(Debug, Clone)]
pub struct Options {
    /// Watch one namespace only; all by default.
    pub namespace: Option<String>,
    pub lb_pending_warning: Duration,
}

async fn log_result<T>(r: Result<T, kube::runtime::controller::Error<Error, watcher::Error>>) {
    if let Err(e) = r {
        warn!(error = %e, "controller");
    }
}

/// Starts the reconciler's part of `serve`: the managed-Service cache on every replica (readiness
/// waits for it to sync; the webhook reads LoadBalancer addresses from it), and reconciliation,
/// only while holding the leader Lease when `election` is given. Everything stops when `shutdown`
/// resolves. Returns the cache and the reconciliation's task.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    client: Client,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    options: Options,
    election: Option<leader::Election>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Store<Service>, tokio::task::JoinHandle<()>) {
    let shutdown: leader::Stop = Box::pin(shutdown);
    let shutdown = futures::future::FutureExt::shared(shutdown);
    readiness.require_sync();
    let (store, stream) = service_store(client.clone(), options.namespace.as_deref());
    tokio::spawn(feed_services(
        store.clone(),
        stream,
        readiness,
        shutdown.clone(),
    ));
    let (lead_client, services) = (client.clone(), store.clone());
    let lead = move |stop: leader::Stop| {
        run(
            lead_client.clone(),
            settings.clone(),
            metrics.clone(),
            options.clone(),
            services.clone(),
            stop,
        )
    };
    let task = match election {
        Some(e) => tokio::spawn(leader::run(client, e, shutdown, lead)),
        None => tokio::spawn(lead(Box::pin(shutdown))),
    };
    (store, task)
}

/// Runs the reconciler until `shutdown` resolves. `services` is the managed-Service store, fed
/// by [`feed_services`].
async fn run(
    client: Client,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    options: Options,
    services: Store<Service>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        metrics,
        recorder: Recorder::new(client.clone(), reporter),
        services,
        lb_pending_warning: options.lb_pending_warning,
    });
    let ns = options.namespace.as_deref();
    let shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(shutdown);
    let shutdown = futures::future::FutureExt::shared(shutdown);
    let sts = controller::<StatefulSet>(&client, ns).graceful_shutdown_on(shutdown.clone());
    let dep = controller::<Deployment>(&client, ns).graceful_shutdown_on(shutdown.clone());
    info!(namespace = ns.unwrap_or("(all)"), "reconciler started");
    tokio::join!(
        sts.run(
            reconcile::<StatefulSet>,
            error_policy::<StatefulSet>,
            ctx.clone()
        )
        .for_each(log_result),
        dep.run(reconcile::<Deployment>, error_policy::<Deployment>, ctx)
            .for_each(log_result),
    );
    info!("reconciler stopped");
}

/// Feeds the managed-Service store until `shutdown`, and turns readiness true once it synced:
/// what the webhook needs of the cluster, on every replica, leading or not.
async fn feed_services(
    services: Store<Service>,
    stream: impl futures::Stream<Item = ()> + Send + 'static,
    readiness: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let sync = async move {
        let _ = services.wait_until_ready().await;
        readiness.set_synced();
        info!("Service cache synced");
    };
    tokio::join!(sync, stream.take_until(shutdown).for_each(|()| async {}));
}
