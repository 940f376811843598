//! The reconciler: keeps each exposed workload's external Services equal to the engine's plan.
//!
//! A kube-runtime `Controller` per workload kind (StatefulSets, Deployments) watches the
//! workloads **as metadata only**, in small pages, and the Services kafka-expose manages (label
//! `app.kubernetes.io/managed-by: kafka-expose`). A workload with no kafka-expose key and no
//! managed Service is dropped as it arrives: it is neither stored nor reconciled. The others are
//! stored stripped to kafka-expose's own keys, and read in full only when reconciled, one GET
//! each time, kept nowhere. For each of those, [`reconcile`]:
//! - applies every planned Service with server-side apply, field manager `kafka-expose`, so that
//!   several instances converge on the same objects without fighting;
//! - deletes the managed Services of this workload that are no longer planned (scale-down,
//!   `expose=off`, annotation removed, another mode) and never a Service without the managed-by
//!   label; while a broker pod still carries an earlier configuration, and so may advertise such a
//!   Service's address, they are kept until it has rolled (make before break);
//! - publishes the external bootstrap address in `kafka-expose.io/bootstrap-servers` and an
//!   Event, and a short `kafka-expose.io/status`;
//! - turns each failure (a NodePort taken by another Service, a forbidden call, a LoadBalancer
//!   still without an address) into a Warning Event and the status, applies the other Services all
//!   the same, and retries with backoff. It never crash-loops.
//!
//! Owner references on the Services let the garbage collector remove them with the workload.
//! What follows from a reconciliation (status, Events, requeue) is decided in
//! [`super::status`]; this file does the API calls. The managed Services come from the cache of
//! [`super::caches`], which the Pod webhook shares.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, instrument, warn};

use super::broker_certs;
use super::caches::{self, ServiceCache, ingress, scoped};
use super::context::{Context, Error, Result, selector};
use super::events::Note;
use super::routes;
use super::status::{self, Found, Next, RETRY_AFTER};
use super::unix_now;
use crate::config::{AdvertisedHost, ExposeMode};
use crate::engine::error_chain;
use crate::engine::exposure::{Decision, Exposure, Skip};
use crate::engine::gateway::Acceptance;
use crate::engine::services;
use crate::engine::workload::Workload;
use crate::names::{
    FIELD_MANAGER, PREFIX, bootstrap_service_name, labels, own, shared_service_name,
};

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

/// Keeps of a workload's metadata only what the reconciler reads: its identity and
/// kafka-expose's own labels and annotations. A workload that is not Kafka's then costs a few
/// hundred bytes in the store, whatever its size in the API.
pub fn strip(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    for map in [meta.annotations.as_mut(), meta.labels.as_mut()]
        .into_iter()
        .flatten()
    {
        map.retain(|k, _| k.starts_with(PREFIX));
    }
    if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        meta.annotations = None;
    }
    if meta.labels.as_ref().is_some_and(|l| l.is_empty()) {
        meta.labels = None;
    }
}

/// Whether a workload's (stripped) metadata calls for a full read: it carries a kafka-expose
/// annotation (the user's, or the reconciler's status left to clean up) or the exposed label the
/// workload webhook sets.
pub fn is_candidate(meta: &kube::api::ObjectMeta) -> bool {
    let own = |m: Option<&BTreeMap<String, String>>| {
        m.is_some_and(|m| m.keys().any(|k| k.starts_with(PREFIX)))
    };
    own(meta.annotations.as_ref()) || own(meta.labels.as_ref())
}

/// Reconciles one workload from its metadata: nothing for a workload that is not a candidate and
/// has no managed Service, else a full read and [`reconcile_full`].
#[instrument(skip_all, fields(kind = %K::kind(&()), namespace = meta.namespace().unwrap_or_default(), name = %meta.name_any()))]
pub async fn reconcile<K: Exposable>(
    meta: Arc<PartialObjectMeta<K>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    ctx.metrics.reconciliations.inc();
    let (Some(ns), name) = (meta.namespace(), meta.name_any()) else {
        return Ok(Action::await_change());
    };
    let candidate = is_candidate(&meta.metadata);
    if !candidate && !ctx.services.has_any(&ns, &name) {
        return Ok(Action::await_change());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(obj) = api.get_opt(&name).await.map_err(Error::Kube)? else {
        return Ok(Action::await_change());
    };
    ctx.metrics.full_read(candidate);
    reconcile_full(Arc::new(obj), ctx).await
}

/// Reconciles one workload read in full.
pub async fn reconcile_full<K: Exposable>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let w = obj.workload();
    let Some(ns) = w.namespace.clone() else {
        return Ok(Action::await_change());
    };
    let previous = obj
        .annotations()
        .get(&format!("{PREFIX}{}", own::BOOTSTRAP_SERVERS))
        .cloned();
    let exposure = match w.exposure(&ctx.settings) {
        Ok(Decision::Expose(e)) => Some(e),
        Ok(Decision::Skip(skip)) => {
            if skip != Skip::NotRequested {
                publish(
                    &ctx,
                    obj.as_ref(),
                    EventType::Warning,
                    "NotExposed",
                    &skip.to_string(),
                )
                .await;
            }
            None
        }
        Err(e) => {
            publish(
                &ctx,
                obj.as_ref(),
                EventType::Warning,
                "InvalidConfiguration",
                &e.to_string(),
            )
            .await;
            let v = status::verdict(
                &Found::Invalid,
                &[],
                &[],
                previous.as_deref(),
                ctx.lb_pending_warning,
            );
            annotate(&ctx, obj.as_ref(), &v).await?;
            return Ok(action(v.next));
        }
    };
    // How each broker is reached: the Services' plan, and the Gateway's routes.
    let broker_routes = exposure.as_ref().map(|e| services::routes(&w, e));
    let mut plan = match (&exposure, &broker_routes) {
        (Some(e), Some(reached)) => {
            // The Services others made in the namespace, and kafka-expose's for other workloads:
            // a chart's own per-broker Services are respected, never twinned, and no Service is
            // taken over (a shared `<a>-external` is `<b>-<i>-external` when `a` is `b-<i>`).
            let mut existing = caches::others_services(ctx.client.clone(), &ns)
                .await
                .map_err(Error::Kube)?;
            existing.extend(ctx.services.of_other_workloads(&ns, &w.name));
            services::plan_around(&w, e, reached, &existing)
        }
        _ => services::ServicePlan::default(),
    };
    let mut route_failures = Vec::new();
    // Through a Gateway: what it said of each route goes on the route's backend Service, where
    // the Pod webhook reads it.
    let gateway = exposure
        .as_ref()
        .zip(broker_routes.as_ref())
        .filter(|(e, _)| e.config.mode == ExposeMode::Gateway)
        .and_then(|(e, r)| Some((e, r, e.config.gateway.as_ref()?)));
    let mut route_plan = None;
    match gateway {
        Some((e, broker_routes, gw)) => match routes::read(&ctx.client, &ns, &w, gw).await {
            Ok(seen) => {
                let planned = crate::engine::gateway::plan(
                    &w,
                    e,
                    broker_routes,
                    seen.version.unwrap_or_default(),
                );
                for svc in &mut plan.services {
                    let name = svc.metadata.name.clone().unwrap_or_default();
                    if planned
                        .iter()
                        .any(|r| r["metadata"]["name"] == name.as_str())
                    {
                        let said = seen.said.get(&name).cloned().unwrap_or(Acceptance::Pending);
                        svc.metadata
                            .annotations
                            .get_or_insert_default()
                            .insert(routes::ROUTE_ANNOTATION.into(), said.to_annotation());
                    }
                }
                route_plan = Some((seen, planned, gw));
            }
            Err(f) => route_failures.push(f),
        },
        None if ctx
            .services
            .of_workload(&ns, &w.name)
            .iter()
            .any(|s| routes::is_backend(s)) =>
        {
            // It left the Gateway: its routes go first. Its backend Services, which mark that
            // routes may be left, stay until they are gone: tried again with backoff.
            if let Err(f) = routes::remove_all(&ctx.client, &ns, &w).await {
                publish(&ctx, obj.as_ref(), EventType::Warning, "RouteFailed", &f).await;
                return Err(Error::Services {
                    failed: 1,
                    first: f,
                });
            }
        }
        None => {}
    }
    let (applied, mut failures, kept) = apply(&ctx, &w, &ns, &plan.services).await;
    failures.extend(plan.conflicts.iter().cloned());
    let mut routes_pending = 0;
    let first_route_failure = failures.len();
    if let Some((seen, planned, gw)) = &route_plan {
        let out = routes::apply(&ctx.client, &ns, seen, planned, gw).await;
        routes_pending = out.pending;
        failures.extend(out.failures);
    }
    failures.extend(route_failures);
    let route_failures = first_route_failure..failures.len();
    let certs = match &exposure {
        Some(e) => broker_certs::ensure(&ctx, &w, e, &ns, &applied).await,
        None => broker_certs::Outcome::default(),
    };
    for (secret, signed) in &certs.signed {
        info!(workload = %w.name, namespace = %ns, "{signed}");
        // Related to the Secret: each broker's certificate has an Event series of its own.
        let related = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            name: Some(secret.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        };
        let n = Note {
            type_: EventType::Normal,
            reason: "CertificateSigned",
            note: signed,
            action: "Reconcile",
            secondary: Some(related),
        };
        ctx.events.publish(&obj.object_ref(&()), n).await;
    }
    let cert_failures = certs.failures.len();
    failures.extend(certs.failures);

    let found = match &exposure {
        None => Found::NotExposed,
        Some(e) => {
            let (bootstrap, lb_pending) = bootstrap_address(&ctx, &w, e, &applied, &ns).await?;
            Found::Exposed {
                bootstrap,
                lb_pending,
            }
        }
    };
    // Brokers whose injected step found the listener already in the chart's configuration and
    // kept it: they run, without kafka-expose's listener, and the status says so with the fix.
    let kept_notes = match &exposure {
        Some(_) => caches::kept_notes(&ctx.broker_pods, &ns, &w.selector),
        None => Vec::new(),
    };
    let v = status::verdict(
        &found,
        &failures,
        &kept_notes,
        previous.as_deref(),
        ctx.lb_pending_warning,
    );
    // The restarts of brokers whose address changed (see `restarts`), as that loop recorded them.
    let v = status::with_restart(
        v,
        obj.annotations()
            .get(&format!("{PREFIX}{}", own::RESTART))
            .map(String::as_str),
    );
    let first_cert_failure = failures.len() - cert_failures;
    for (i, f) in failures.iter().enumerate() {
        let reason = match i {
            _ if i >= first_cert_failure => "CertificateFailed",
            _ if route_failures.contains(&i) => "RouteFailed",
            _ => "ServiceFailed",
        };
        publish(&ctx, obj.as_ref(), EventType::Warning, reason, f).await;
    }
    for note in &kept_notes {
        publish(
            &ctx,
            obj.as_ref(),
            EventType::Warning,
            "ChartListenerKept",
            note,
        )
        .await;
    }
    if let Some(since) = v.lb_pending_too_long {
        let waiting = match exposure.as_ref().map(|e| e.config.mode) {
            Some(ExposeMode::SharedLoadBalancer) => shared_service_name(&w.name),
            _ => bootstrap_service_name(&w.name),
        };
        let note = format!(
            "Service {waiting} has had no LoadBalancer address for {}s",
            since.as_secs()
        );
        publish(
            &ctx,
            obj.as_ref(),
            EventType::Warning,
            "LoadBalancerPending",
            &note,
        )
        .await;
    }
    annotate(&ctx, obj.as_ref(), &v).await?;
    if let Some(note) = &v.announce {
        publish(
            &ctx,
            obj.as_ref(),
            EventType::Normal,
            "BootstrapAddress",
            note,
        )
        .await;
        // Said once per new address, not on every resync: clients about to connect need it.
        if let Some(tls) = exposure.as_ref().and_then(|e| e.tls_warning.as_ref()) {
            publish(&ctx, obj.as_ref(), EventType::Warning, "ExternalTLS", tls).await;
        }
    }
    if let Some(first) = failures.first() {
        return Err(Error::Services {
            failed: failures.len(),
            first: first.clone(),
        });
    }
    if kept > 0 || certs.waiting > 0 || routes_pending > 0 {
        // Pods rolling, or being bound to their nodes, and a Gateway's word on a route, do not
        // trigger the workload's watch by themselves: look again soon.
        return Ok(Action::requeue(status::PENDING_RECHECK));
    }
    // Requeued in time for the first certificate due to be signed again.
    let next = match (v.next, certs.next) {
        (Next::After(d), Some(due)) => Next::After(d.min(due)),
        (Next::OnChange, Some(due)) => Next::After(due),
        (next, None) => next,
    };
    Ok(action(next))
}

fn action(next: Next) -> Action {
    match next {
        Next::After(d) => Action::requeue(d),
        Next::OnChange => Action::await_change(),
    }
}

/// Applies every desired Service by server-side apply and deletes this workload's managed
/// Services that are no longer desired, once no broker runs an earlier configuration. Returns
/// the Services as applied, a line per failure, and how many Services it kept for now.
async fn apply(
    ctx: &Context,
    w: &Workload,
    ns: &str,
    desired: &[Service],
) -> (Vec<Service>, Vec<String>, usize) {
    let svc_api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let existing = ctx.services.of_workload(ns, &w.name);
    let wanted: BTreeSet<String> = desired
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    let mut failures = Vec::new();
    let mut applied = Vec::new();
    // The Services are independent: applied at once, not one round trip after another.
    let results = futures::future::join_all(desired.iter().map(|svc| {
        let name = svc.metadata.name.clone().unwrap_or_default();
        // Force only on a Service kafka-expose made: on any other object, a field another
        // manager owns is a conflict to report, not to take over.
        let ours = existing.iter().any(|s| s.name_any() == name);
        let params = if ours {
            PatchParams::apply(FIELD_MANAGER).force()
        } else {
            PatchParams::apply(FIELD_MANAGER)
        };
        let api = svc_api.clone();
        async move {
            let r = api.patch(&name, &params, &Patch::Apply(svc)).await;
            (svc, name, r)
        }
    }))
    .await;
    for (svc, name, result) in results {
        match result {
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
    let stale: Vec<String> = existing
        .iter()
        .map(|s| s.name_any())
        .filter(|name| !wanted.contains(name))
        .collect();
    // Make before break: while a broker still runs an earlier configuration it advertises the
    // address of a Service no longer planned (expose=loadbalancer switched to
    // shared-loadbalancer, or exposure turned off), so those Services stay until every broker
    // has rolled.
    let mut kept = 0;
    if !stale.is_empty() {
        match previous_configuration(ctx, w, ns).await {
            Ok(Some(pod)) => {
                info!(
                    services = ?stale,
                    pod = %pod,
                    "keeping Services no longer planned until every broker runs the new configuration"
                );
                kept = stale.len();
            }
            Ok(None) => {}
            Err(e) => failures.push(format!(
                "reading the brokers' configuration before deleting Services: {}",
                api_message(&e)
            )),
        }
    }
    for name in stale.iter().filter(|_| kept == 0) {
        match svc_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => info!(service = %name, "deleted a Service no longer planned"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => failures.push(format!(
                "Service {name}: delete failed: {}",
                api_message(&e)
            )),
        }
    }
    let managed = ctx.services.store.state().len();
    ctx.metrics.managed_services.set(managed as i64);
    (applied, failures, kept)
}

/// The name of a pod of `w` that carries another configuration than its template (the
/// `kafka-expose.io/config-hash` the workload webhook writes), if there is one: the workload is
/// rolling, or waits for its pods to be deleted (`OnDelete`).
async fn previous_configuration(
    ctx: &Context,
    w: &Workload,
    ns: &str,
) -> kube::Result<Option<String>> {
    let key = format!("{PREFIX}{}", own::CONFIG_HASH);
    let hash = |m: Option<&BTreeMap<String, String>>| m.and_then(|a| a.get(&key)).cloned();
    let want = hash(w.template_annotations());
    let pods: Api<PartialObjectMeta<Pod>> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list_metadata(&ListParams::default().labels(&selector(w)))
        .await?;
    Ok(list
        .items
        .into_iter()
        .find(|p| hash(p.metadata.annotations.as_ref()) != want)
        .map(|p| p.name_any()))
}

/// The message of an API error, or the error itself.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => error_chain(other),
    }
}

/// The external bootstrap address, if known, and how long a LoadBalancer has waited for one.
/// The list itself is [`services::bootstrap_list`], which a policy's preview shares.
async fn bootstrap_address(
    ctx: &Context,
    w: &Workload,
    exposure: &Exposure<'_>,
    applied: &[Service],
    ns: &str,
) -> Result<(Option<String>, Option<Duration>)> {
    let cfg = &exposure.config;
    let named = |name: String| {
        applied
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(&name))
    };
    let pending = |svc: &Service| {
        svc.metadata
            .creation_timestamp
            .as_ref()
            .map(|Time(t)| {
                let now = unix_now();
                Duration::from_secs(now.saturating_sub(t.as_second()).max(0) as u64)
            })
            .unwrap_or_default()
    };
    let no_ips = BTreeMap::new();
    let node_addressed = matches!(cfg.advertised_host, AdvertisedHost::Node(_));
    let facts = |host_ips, lb_address, bootstrap_node_port| services::BootstrapFacts {
        host_ips,
        lb_address,
        bootstrap_node_port,
    };
    match cfg.mode {
        ExposeMode::LoadBalancer | ExposeMode::SharedLoadBalancer => {
            let name = match cfg.mode {
                ExposeMode::SharedLoadBalancer => shared_service_name(&w.name),
                _ => bootstrap_service_name(&w.name),
            };
            let Some(svc) = named(name) else {
                return Ok((None, None));
            };
            match ingress(svc) {
                Some(addr) => Ok((
                    services::bootstrap_list(w, exposure, facts(&no_ips, Some(&addr), None)),
                    None,
                )),
                None => Ok((None, Some(pending(svc)))),
            }
        }
        ExposeMode::NodePort => {
            let Some(port) = named(bootstrap_service_name(&w.name))
                .and_then(|s| s.spec.as_ref()?.ports.as_ref()?.first()?.node_port)
            else {
                return Ok((None, None));
            };
            let ips = ctx.broker_host_ips(w, ns, node_addressed).await?;
            Ok((
                services::bootstrap_list(w, exposure, facts(&ips, None, Some(port))),
                None,
            ))
        }
        // Known from the configuration: the names resolve to the Gateway.
        ExposeMode::Gateway => Ok((
            services::bootstrap_list(w, exposure, facts(&no_ips, None, None)),
            None,
        )),
        ExposeMode::HostPort => {
            let ips = ctx.broker_host_ips(w, ns, node_addressed).await?;
            Ok((
                services::bootstrap_list(w, exposure, facts(&ips, None, None)),
                None,
            ))
        }
    }
}

/// Sets or removes the status and bootstrap annotations, when they differ from the workload's.
async fn annotate<K: Exposable>(ctx: &Context, obj: &K, v: &status::Verdict) -> Result<()> {
    let keys = [
        (format!("{PREFIX}{}", own::STATUS), &v.status),
        (format!("{PREFIX}{}", own::BOOTSTRAP_SERVERS), &v.bootstrap),
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
    // Under kafka-expose's field manager, like every other write it makes: the workload's
    // managedFields then say which annotations are kafka-expose's.
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(&obj.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

async fn publish<K: Exposable>(ctx: &Context, obj: &K, type_: EventType, reason: &str, note: &str) {
    let n = Note {
        type_,
        reason,
        note,
        action: "Reconcile",
        secondary: None,
    };
    ctx.events.publish(&obj.object_ref(&()), n).await;
}

fn error_policy<K: Exposable>(
    obj: Arc<PartialObjectMeta<K>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_error(err.metric_label());
    warn!(name = %obj.name_any(), error = %error_chain(err), "reconciliation failed; retrying");
    Action::requeue(RETRY_AFTER)
}

/// The page size of the workload lists. A page's objects arrive whole (a `kubectl apply`'d
/// Deployment's metadata alone is 10 to 20 KB, its last-applied copy and field managers), and the
/// allocator keeps what a page needed: small pages keep the footprint small in big clusters, at
/// the price of more list requests at start (200 for 10,000 workloads).
pub const WORKLOAD_PAGE_SIZE: u32 = 50;

/// Whether a workload is held in the reconciler's store: it carries a kafka-expose key, or
/// Services kafka-expose made for it are left to remove.
fn held<K: Exposable>(meta: &PartialObjectMeta<K>, services: &ServiceCache) -> bool {
    let m = &meta.metadata;
    is_candidate(m)
        || match (m.namespace.as_deref(), m.name.as_deref()) {
            (Some(ns), Some(name)) => services.has_any(ns, name),
            _ => false,
        }
}

/// A Controller over the workloads of kind `K` as stripped metadata, triggered also by the
/// managed Services they own; and its store. The store holds only the workloads [`held`] calls
/// for: any other is dropped as it arrives (and, if it was held before, removed), so an
/// unrelated workload costs no memory and no reconciliation.
fn controller<K: Exposable>(
    client: &Client,
    namespace: Option<&str>,
    services: ServiceCache,
    lists_synced: prometheus_client::metrics::gauge::Gauge,
) -> (
    Controller<PartialObjectMeta<K>>,
    Store<PartialObjectMeta<K>>,
) {
    let (reader, writer) = reflector::store();
    // `Api<PartialObjectMeta<K>>` lists and watches with metadata-only requests.
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut listed = false;
    let stream = watcher(
        api,
        watcher::Config::default().page_size(WORKLOAD_PAGE_SIZE),
    )
    .default_backoff()
    .modify(|m| strip(&mut m.metadata))
    .filter_map(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) && !listed {
            listed = true;
            lists_synced.inc();
        }
        let event = match event {
            Ok(watcher::Event::InitApply(m)) if !held(&m, &services) => None,
            Ok(watcher::Event::Apply(m)) if !held(&m, &services) => {
                Some(Ok(watcher::Event::Delete(m)))
            }
            other => Some(other),
        };
        std::future::ready(event)
    })
    .reflect(writer)
    .applied_objects();
    let controller = Controller::for_stream(stream, reader.clone()).owns(
        scoped::<Service>(client.clone(), namespace),
        watcher::Config::default().labels(labels::MANAGED_SELECTOR),
    );
    (controller, reader)
}

async fn log_result<T>(r: Result<T, kube::runtime::controller::Error<Error, watcher::Error>>) {
    if let Err(e) = r {
        warn!(error = %e, "controller");
    }
}

/// Runs the workload controllers (StatefulSets and Deployments, in `namespace` or all) until
/// `shutdown`. Which workloads are held depends on which have managed Services, so the
/// managed-Service cache is waited for first.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(shutdown);
    let shutdown = futures::future::FutureExt::shared(shutdown);
    let mut synced = ctx.services.synced.clone();
    tokio::select! {
        _ = synced.wait_for(|s| *s) => {}
        _ = shutdown.clone() => return,
    }
    let ns = namespace.as_deref();
    let client = ctx.client.clone();
    let lists = ctx.metrics.workload_lists_synced.clone();
    let (sts, sts_store) =
        controller::<StatefulSet>(&client, ns, ctx.services.clone(), lists.clone());
    let (dep, dep_store) = controller::<Deployment>(&client, ns, ctx.services.clone(), lists);
    let sts = sts.graceful_shutdown_on(shutdown.clone());
    let dep = dep.graceful_shutdown_on(shutdown.clone());
    info!(namespace = ns.unwrap_or("(all)"), "reconciler started");
    let held = ctx.metrics.workloads_held.clone();
    // Not `Store::wait_until_ready`: the Controller waits on it, and it wakes one waiter only.
    let gauge = async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            held.set((sts_store.len() + dep_store.len()) as i64);
        }
    };
    let gauge = futures::future::FutureExt::fuse(Box::pin(gauge));
    let work = async {
        tokio::join!(
            sts.run(
                reconcile::<StatefulSet>,
                error_policy::<StatefulSet>,
                ctx.clone()
            )
            .for_each(log_result),
            dep.run(reconcile::<Deployment>, error_policy::<Deployment>, ctx)
                .for_each(log_result),
        )
    };
    // The gauge runs as long as the controllers do.
    futures::future::select(Box::pin(work), gauge).await;
    info!("reconciler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_metadata_keeps_only_kafka_expose_keys_and_says_whether_to_read_more() {
        let mut meta: kube::api::ObjectMeta = serde_json::from_value(json!({
            "name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "7",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "web"},
            "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "x"}]
        }))
        .unwrap();
        strip(&mut meta);
        assert_eq!(meta.annotations, None);
        assert_eq!(meta.labels, None);
        assert_eq!(meta.managed_fields, None);
        assert_eq!(meta.owner_references, None);
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(!is_candidate(&meta));

        let mut exposed: kube::api::ObjectMeta = serde_json::from_value(json!({
            "name": "kafka",
            "annotations": {"kafka-expose.io/expose": "nodeport", "team": "data"},
        }))
        .unwrap();
        strip(&mut exposed);
        assert_eq!(exposed.annotations.as_ref().map(BTreeMap::len), Some(1));
        assert!(is_candidate(&exposed));
        let mut labelled: kube::api::ObjectMeta = serde_json::from_value(
            json!({"name": "kafka", "labels": {"kafka-expose.io/exposed": "true"}}),
        )
        .unwrap();
        strip(&mut labelled);
        assert!(is_candidate(&labelled));
    }
}
