//! The policy controller: applies `KafkaExposePolicy` objects to the workloads they select, one
//! paced pass at a time, on the leader only.
//!
//! Each pass decides from the cluster's state (so a new leader resumes where the old one
//! stopped), read from watches, so that an idle pass makes no request:
//! - the policies and the namespaces' labels, from two watches (the namespaces as metadata);
//! - the workloads, from metadata watches started with the first policy ([`candidates`]): those
//!   a live policy selects, and those carrying a policy's stamp or rollout mark (labels
//!   `kafka-expose.io/policy`, `kafka-expose.io/rolling`), are read in full once per
//!   resourceVersion;
//! - the NodePorts in use, from a watch of the Services, started with the first port pool.
//!
//! Then, per workload ([`item::Item`]), [`policy::resolve`] (the precedence the webhook shares)
//! gives the settings in force; [`decide::decide_layers`] decides what each template is to carry
//! and allocates pool blocks; [`rollout::pace`] decides, per policy, which templates change now;
//! and each change is [`workload::plan`] with the policy's stamp (or its removal) sent as a JSON
//! Patch under the field manager `kafka-expose`, guarded by the workload's resourceVersion. The
//! workload's own update strategy then rolls its pods, the Pod webhook mutates them, and the
//! reconciler makes their Services: exactly as for an annotated workload.
//!
//! Every policy carries the finalizer `kafka-expose.io/revert`. A deleted policy's workloads are
//! reverted at its pace, and the finalizer goes once none carries its stamp.
//!
//! Beside this file, all pure but [`candidates`]' reads: [`found`], a workload as read (its
//! strategy and rollout progress); [`item`]; [`decide`]; and [`status`], each policy's status
//! (the workload states and the conditions) and what its workloads are told.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

mod candidates;
mod decide;
mod found;
mod item;
mod status;
#[cfg(test)]
mod tests;

use candidates::{FullObjects, WorkloadMetas};
use found::Found;
use item::Item;

use super::caches::{self, NodePortCache};
use super::context::{Context, Periods};
use super::events::Note;
use super::unix_now;
use crate::api::{KafkaExposePolicy, KafkaExposePolicyStatus, PolicyKind};
use crate::engine::error_chain;
use crate::engine::patch::PatchBuilder;
use crate::engine::policy;
use crate::engine::rollout::{self, Pace, Steps, Strategy, Tracked, WorkloadKey};
use crate::engine::workload::{self, PolicyLayer};
use crate::names::{FIELD_MANAGER, PREFIX, labels, own};
use crate::ptr;

/// The finalizer every policy carries, so that deleting it reverts its workloads first.
pub const FINALIZER: &str = "kafka-expose.io/revert";

/// The policies and the namespaces' labels, as their watches last saw them.
#[derive(Clone)]
pub struct PolicyStores {
    pub policies: Store<KafkaExposePolicy>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Woken on every policy change.
    pub changed: Arc<tokio::sync::Notify>,
}

impl PolicyStores {
    /// The labels of namespace `name`, if seen.
    pub fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&reflector::ObjectRef::new(name))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default()
    }
}

impl policy::PolicyView for PolicyStores {
    fn active(&self) -> bool {
        !self.policies.is_empty()
    }

    fn live(&self) -> Vec<KafkaExposePolicy> {
        self.policies
            .state()
            .iter()
            .filter(|p| policy::is_live(p))
            .map(|p| p.as_ref().clone())
            .collect()
    }

    fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        PolicyStores::namespace_labels(self, namespace)
    }
}

/// Starts the two watches, on every replica (the workload webhook resolves against them), if
/// the API server serves policies; they run until `shutdown`.
pub fn watch(
    client: &Client,
    readiness: Arc<crate::metrics::Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> PolicyStores {
    // The webhook resolves new workloads against these: ready once they hold their first lists,
    // so that no workload is admitted past a policy the cache has not seen yet.
    readiness.require_sync();
    let (policies, pw) = reflector::store();
    let (namespaces, nw) = reflector::store();
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    let policy_stream = watcher(
        Api::<KafkaExposePolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|p| p.metadata.managed_fields = None)
    .reflect(pw)
    .for_each(move |e| {
        match e {
            Ok(_) => notify.notify_one(),
            Err(e) => warn!(error = %e, "policy watch failed (is the CRD installed?); retrying"),
        }
        std::future::ready(())
    });
    let namespace_stream = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    // The labels are what policies select on; nothing else is kept.
    .modify(|n| {
        let labels = n.metadata.labels.take();
        let name = n.metadata.name.take();
        let rv = n.metadata.resource_version.take();
        n.metadata = Default::default();
        n.metadata.labels = labels;
        n.metadata.name = name;
        n.metadata.resource_version = rv;
    })
    .reflect(nw)
    .for_each(|e| {
        if let Err(e) = e {
            warn!(error = %e, "namespace watch failed; retrying");
        }
        std::future::ready(())
    });
    let client = client.clone();
    let (p_ready, n_ready) = (policies.clone(), namespaces.clone());
    tokio::spawn(async move {
        if !served(&client).await {
            readiness.set_synced();
            return;
        }
        let synced = async move {
            let _ = p_ready.wait_until_ready().await;
            let _ = n_ready.wait_until_ready().await;
            readiness.set_synced();
            info!("policy and namespace caches synced");
        };
        let both = futures::future::join3(policy_stream, namespace_stream, synced);
        futures::future::select(Box::pin(both), Box::pin(shutdown)).await;
    });
    PolicyStores {
        policies,
        namespaces,
        changed,
    }
}

/// Whether the API server serves `KafkaExposePolicy`: without the CRD, policies are off and
/// said so once, rather than a watch failing forever.
pub async fn served(client: &Client) -> bool {
    let api: Api<KafkaExposePolicy> = Api::all(client.clone());
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            info!("the KafkaExposePolicy CRD is not installed: policies are off");
            false
        }
        Err(e) => {
            // Forbidden or unreachable: the watch retries and says why.
            warn!(error = %e, "cannot list KafkaExposePolicy objects; watching them anyway");
            true
        }
    }
}

/// What the policy controller keeps between passes on the leader: the caches it started
/// (with the first policy, or the first pool), and the workloads and node IPs it read.
#[derive(Default)]
struct Memory {
    workloads: Option<WorkloadMetas>,
    node_ports: Option<NodePortCache>,
    full: FullObjects,
    /// The brokers' node IPs of a workload at a resourceVersion, for previews.
    host_ips: BTreeMap<WorkloadKey, (String, BTreeMap<String, String>)>,
}

/// Runs passes until `shutdown`: every `periods.policy_active` while a rollout moves, else every
/// `periods.policy_idle` or at a policy's change.
pub async fn run(
    ctx: Arc<Context>,
    stores: PolicyStores,
    scope: Option<String>,
    periods: Periods,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(shutdown);
    let shutdown = futures::future::FutureExt::shared(shutdown);
    let mut memory = Memory::default();
    info!("policy controller started");
    loop {
        let outcome = tokio::select! {
            _ = shutdown.clone() => break,
            r = pass(&ctx, &stores, scope.as_deref(), &mut memory, shutdown.clone()) => r,
        };
        let next = match outcome {
            Ok(true) => periods.policy_active,
            Ok(false) => periods.policy_idle,
            Err(e) => {
                warn!(error = %error_chain(&e), "policy pass failed; retrying");
                periods.policy_active
            }
        };
        tokio::select! {
            _ = shutdown.clone() => break,
            _ = tokio::time::sleep(next) => {}
            _ = stores.changed.notified() => {
                // Let a burst of policy writes settle into one pass.
                tokio::time::sleep(periods.policy_settle).await;
            }
        }
    }
    info!("policy controller stopped");
}

fn kind_name(k: PolicyKind) -> &'static str {
    match k {
        PolicyKind::StatefulSet => "StatefulSet",
        PolicyKind::Deployment => "Deployment",
    }
}

/// One pass over every policy. Returns whether a rollout moves (the next pass is due soon).
async fn pass(
    ctx: &Context,
    stores: &PolicyStores,
    scope: Option<&str>,
    memory: &mut Memory,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static + Clone,
) -> Result<bool, kube::Error> {
    ctx.metrics.policy_passes.inc();
    let all: Vec<KafkaExposePolicy> = stores
        .policies
        .state()
        .iter()
        .map(|p| p.as_ref().clone())
        .collect();
    if all.is_empty() && memory.workloads.is_none() {
        // No policy has been seen: nothing is watched, nothing is read.
        return Ok(false);
    }
    let policy_api: Api<KafkaExposePolicy> = Api::all(ctx.client.clone());
    let live: Vec<KafkaExposePolicy> = all.iter().filter(|p| policy::is_live(p)).cloned().collect();
    for p in &live {
        if !p.finalizers().iter().any(|f| f == FINALIZER) {
            add_finalizer(&policy_api, p).await?;
        }
    }
    let workloads = memory
        .workloads
        .get_or_insert_with(|| WorkloadMetas::watch(&ctx.client, scope, shutdown.clone()))
        .clone();
    workloads.wait_synced().await;
    let metas = workloads.all();
    let wanted = candidates::wanted(&live, |ns| stores.namespace_labels(ns), &metas);
    let found = memory.full.read(&ctx.client, &wanted).await?;
    if all.is_empty() && found.is_empty() {
        return Ok(false);
    }
    let now = unix_now();
    let mut items: Vec<Item> = found
        .into_iter()
        .map(|f| {
            let ns = f.meta().namespace.clone().unwrap_or_default();
            Item::new(f, &live, &stores.namespace_labels(&ns))
        })
        .collect();
    let node_ports = if live.iter().any(|p| p.spec.exposure.port_pool.is_some()) {
        let cache = memory
            .node_ports
            .get_or_insert_with(|| caches::watch_node_ports(&ctx.client, shutdown.clone()))
            .clone();
        cache.wait_synced().await;
        cache.in_use()
    } else {
        BTreeSet::new()
    };
    decide::decide_layers(&ctx.settings, &all, &mut items, &node_ports);

    // Pace each policy, live or being deleted, and carry out its steps.
    let mut steps: BTreeMap<String, Steps> = BTreeMap::new();
    let tracked: Vec<Tracked> = items.iter().map(Item::tracked).collect();
    // Marks of policies that no longer exist are finished by the first policy's pass.
    let names: BTreeSet<String> = all.iter().map(|p| p.name_any()).collect();
    for p in &all {
        let pace = Pace {
            max_concurrent: p.spec.rollout.max_concurrent,
            deadline_secs: p.spec.rollout.progress_deadline_seconds,
        };
        steps.insert(
            p.name_any(),
            rollout::pace(&p.name_any(), pace, &tracked, now),
        );
    }
    let orphan_marks: Vec<WorkloadKey> = tracked
        .iter()
        .filter(|t| t.rolling.as_ref().is_some_and(|(o, _)| !names.contains(o)))
        .map(|t| t.key.clone())
        .collect();
    let mut busy = false;
    for key in &orphan_marks {
        if let Some(item) = items.iter_mut().find(|i| &i.found.key() == key) {
            unmark(ctx, item).await?;
            memory.full.forget(&item.found);
        }
    }
    for (policy, s) in &steps {
        // The pacing counted these as done: until each mark is gone, nothing else starts, so
        // that no two workloads ever carry a policy's mark at once.
        let mut finished = true;
        for key in &s.finish {
            if let Some(item) = items.iter_mut().find(|i| &i.found.key() == key) {
                finished &= unmark(ctx, item).await?;
                memory.full.forget(&item.found);
            }
        }
        if !finished {
            info!(policy = %policy, "a finished rollout's mark did not go (the workload changed): nothing starts until the next pass");
            busy = true;
        }
        for key in s.start.iter().filter(|_| finished) {
            let Some(item) = items.iter_mut().find(|i| &i.found.key() == key) else {
                continue;
            };
            start(ctx, item, policy, now).await?;
            memory.full.forget(&item.found);
            busy = true;
        }
        for (key, secs) in &s.stalled {
            if let Some(item) = items.iter().find(|i| &i.found.key() == key) {
                let note = format!(
                    "policy {policy}: rolling this workload to its settings has taken {secs}s, past rollout.progressDeadlineSeconds; the rollout stopped (no automatic rollback). Fix the workload, or edit or delete the policy."
                );
                publish_once(
                    ctx,
                    &item.found,
                    EventType::Warning,
                    "RolloutStalled",
                    &note,
                )
                .await;
            }
        }
        busy |= !s.rolling.is_empty() || !s.waiting.is_empty() || !s.finish.is_empty();
    }

    // The brokers' node IPs the previews name, read again only when a workload changed.
    read_host_ips(ctx, &all, &mut items, &mut memory.host_ips).await;
    // Events for what each workload is told once, and each policy's status.
    for item in &items {
        for (type_, reason, note) in status::told(&ctx.settings, item) {
            publish_once(ctx, &item.found, type_, reason, &note).await;
        }
    }
    let now_time = Time(k8s_openapi::jiff::Timestamp::now());
    for p in &all {
        let s = steps.get(&p.name_any()).cloned().unwrap_or_default();
        if p.metadata.deletion_timestamp.is_some() {
            let name = p.name_any();
            // Once every revert has started; a mark left behind is removed as an orphan.
            let left = items
                .iter()
                .any(|i| i.current.as_ref().is_some_and(|c| c.policy == name));
            if !left && s.start.is_empty() {
                remove_finalizer(&policy_api, p).await?;
                info!(policy = %name, "policy deleted: its workloads are reverted");
            }
            continue;
        }
        let status = status::status_of(&ctx.settings, p, &items, &s, &now_time);
        write_status(&policy_api, p, status).await?;
    }
    Ok(busy)
}

/// Fills each item's brokers' node IPs where a preview names them: from `memory` while the
/// workload's resourceVersion is the one they were read at, else by one list of its pods.
async fn read_host_ips(
    ctx: &Context,
    all: &[KafkaExposePolicy],
    items: &mut [Item],
    memory: &mut BTreeMap<WorkloadKey, (String, BTreeMap<String, String>)>,
) {
    let mut seen = BTreeSet::new();
    for item in items.iter_mut() {
        if !status::item_needs_host_ips(&ctx.settings, all, item) {
            continue;
        }
        let key = item.found.key();
        let rv = item
            .found
            .meta()
            .resource_version
            .clone()
            .unwrap_or_default();
        seen.insert(key.clone());
        if let Some((at, ips)) = memory.get(&key)
            && *at == rv
        {
            item.host_ips = ips.clone();
            continue;
        }
        let ns = key.namespace.clone();
        // Every pod's node IP, given address or not: a preview is of what a policy would do,
        // before any pod has its address.
        match ctx
            .broker_host_ips(&item.found.workload(), &ns, false)
            .await
        {
            Ok(ips) => {
                memory.insert(key, (rv, ips.clone()));
                item.host_ips = ips;
            }
            // A preview without node IPs names them as unknown; the next pass reads again.
            Err(e) => {
                warn!(workload = %key, error = %error_chain(&e), "cannot list the brokers' pods for a preview")
            }
        }
    }
    memory.retain(|k, _| seen.contains(k));
}

/// Writes a policy's status when it differs from the stored one.
async fn write_status(
    api: &Api<KafkaExposePolicy>,
    p: &KafkaExposePolicy,
    status: KafkaExposePolicyStatus,
) -> Result<(), kube::Error> {
    if p.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let body = json!({"status": status});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&p.name_any(), &params, &Patch::Merge(&body))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Changes a workload's template to what it is to carry, and marks its rollout.
async fn start(ctx: &Context, item: &mut Item, policy: &str, now: i64) -> Result<(), kube::Error> {
    let mut w = item.found.workload();
    w.policy = item.layer.clone();
    let decision = match w.exposure(&ctx.settings) {
        Ok(d) => d,
        Err(e) => {
            warn!(workload = %item.found.key(), error = %e, "not stamped: invalid settings");
            return Ok(());
        }
    };
    let planned = workload::plan(&w, &decision);
    let mut b = PatchBuilder::new();
    let meta = item.found.meta();
    b.test(
        ptr!("metadata", "resourceVersion"),
        json!(meta.resource_version.clone().unwrap_or_default()),
    );
    let rolls = matches!(item.found.strategy(), Strategy::Rolling { .. });
    if rolls {
        b.set_map_entry(
            &ptr!("metadata", "annotations"),
            meta.annotations.as_ref(),
            &format!("{PREFIX}{}", own::ROLLOUT),
            &rollout::mark(policy, now),
        );
    }
    let mut ops = b.into_ops();
    // The plan may add the labels map; the mark's label goes after it.
    ops.extend(planned.patch);
    let mut after = PatchBuilder::new();
    let labels_now = labels_after(&item.found, &ops);
    if rolls {
        after.set_map_entry(
            &ptr!("metadata", "labels"),
            labels_now.as_ref(),
            labels::ROLLING,
            policy,
        );
    }
    ops.extend(after.into_ops());
    let what = match &item.layer {
        PolicyLayer::Set(_) => format!("policy {policy}: rolling this workload to its settings"),
        _ => format!("policy {policy}: reverting what it set on this workload"),
    };
    if !patch_workload(ctx, &item.found, ops).await? {
        return Ok(());
    }
    info!(workload = %item.found.key(), policy, "{what}");
    publish(ctx, &item.found, EventType::Normal, "PolicyRollout", &what).await;
    item.rolling = rolls.then(|| (policy.to_string(), now));
    item.current = item.wanted.clone();
    Ok(())
}

/// The workload's metadata labels once `ops` applied: whether the map exists decides between
/// adding it and adding to it.
fn labels_after(f: &Found, ops: &[json_patch::PatchOperation]) -> Option<BTreeMap<String, String>> {
    let mut v = json!({"metadata": {"labels": f.meta().labels.clone()}});
    if v["metadata"]["labels"].is_null() {
        v["metadata"].as_object_mut().map(|m| m.remove("labels"));
    }
    let label_ops: Vec<json_patch::PatchOperation> = ops
        .iter()
        .filter(|o| o.path().as_str().starts_with("/metadata/labels"))
        .cloned()
        .collect();
    json_patch::patch(&mut v, &label_ops).ok()?;
    serde_json::from_value(v["metadata"]["labels"].clone()).ok()
}

/// Removes a workload's rollout mark; returns whether it was removed.
async fn unmark(ctx: &Context, item: &mut Item) -> Result<bool, kube::Error> {
    let meta = item.found.meta();
    let mut b = PatchBuilder::new();
    b.test(
        ptr!("metadata", "resourceVersion"),
        json!(meta.resource_version.clone().unwrap_or_default()),
    );
    b.remove_map_entry(
        &ptr!("metadata", "annotations"),
        meta.annotations.as_ref(),
        &format!("{PREFIX}{}", own::ROLLOUT),
    );
    b.remove_map_entry(
        &ptr!("metadata", "labels"),
        meta.labels.as_ref(),
        labels::ROLLING,
    );
    let applied = patch_workload(ctx, &item.found, b.into_ops()).await?;
    if applied {
        item.rolling = None;
    }
    Ok(applied)
}

/// Sends `ops` to the workload; returns whether they applied (`false`: it changed since it was
/// read, and the next pass reads it again).
async fn patch_workload(
    ctx: &Context,
    f: &Found,
    ops: Vec<json_patch::PatchOperation>,
) -> Result<bool, kube::Error> {
    let key = f.key();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let p: Patch<()> = Patch::Json(json_patch::Patch(ops));
    let r = match f {
        Found::Sts(_) => Api::<StatefulSet>::namespaced(ctx.client.clone(), &key.namespace)
            .patch(&key.name, &params, &p)
            .await
            .map(|_| ()),
        Found::Dep(_) => Api::<Deployment>::namespaced(ctx.client.clone(), &key.namespace)
            .patch(&key.name, &params, &p)
            .await
            .map(|_| ()),
    };
    match r {
        Ok(()) => Ok(true),
        // The workload changed since it was read: the next pass reads it again.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422 || s.code == 404 => {
            info!(workload = %key, reason = %s.message, "workload changed under the pass; next pass");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

async fn add_finalizer(
    api: &Api<KafkaExposePolicy>,
    p: &KafkaExposePolicy,
) -> Result<(), kube::Error> {
    let mut b = PatchBuilder::new();
    b.test(
        ptr!("metadata", "resourceVersion"),
        json!(p.resource_version().unwrap_or_default()),
    );
    let present = p.metadata.finalizers.is_some();
    b.append_all(
        &ptr!("metadata", "finalizers"),
        present,
        vec![json!(FINALIZER)],
    );
    send_policy_patch(api, p, b).await
}

async fn remove_finalizer(
    api: &Api<KafkaExposePolicy>,
    p: &KafkaExposePolicy,
) -> Result<(), kube::Error> {
    let kept: Vec<&String> = p.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    let mut b = PatchBuilder::new();
    b.test(
        ptr!("metadata", "resourceVersion"),
        json!(p.resource_version().unwrap_or_default()),
    );
    b.replace(ptr!("metadata", "finalizers"), json!(kept));
    send_policy_patch(api, p, b).await
}

async fn send_policy_patch(
    api: &Api<KafkaExposePolicy>,
    p: &KafkaExposePolicy,
    b: PatchBuilder,
) -> Result<(), kube::Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(
            &p.name_any(),
            &params,
            &Patch::<()>::Json(json_patch::Patch(b.into_ops())),
        )
        .await
    {
        Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => Ok(()),
        other => other.map(|_| ()),
    }
}

async fn publish(ctx: &Context, f: &Found, type_: EventType, reason: &str, note: &str) {
    ctx.events
        .publish(&f.object_ref(), note_of(type_, reason, note))
        .await;
}

/// Publishes an Event once per workload, reason and message (within the announcer's memory).
async fn publish_once(ctx: &Context, f: &Found, type_: EventType, reason: &str, note: &str) {
    let uid = f.meta().uid.clone().unwrap_or_default();
    ctx.events
        .publish_once(&uid, &f.object_ref(), note_of(type_, reason, note))
        .await;
}

fn note_of<'a>(type_: EventType, reason: &'a str, note: &'a str) -> Note<'a> {
    Note {
        type_,
        reason,
        note,
        action: "Policy",
        secondary: None,
    }
}
