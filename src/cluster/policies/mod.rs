//! The policy controller: applies `KafkaExposePolicy` objects to the workloads they select, one
//! paced pass at a time, on the leader only.
//!
//! Each pass reads everything it decides from the cluster (so a new leader resumes where the
//! old one stopped):
//! - the policies and the namespaces' labels, from two watches (the namespaces as metadata);
//! - the workloads a policy may select: listed as metadata, per namespace the policy's
//!   `namespaceSelector` takes and by its `selector` (done by the API server), then read in full
//!   only for those that match; and every workload carrying a policy's stamp or rollout mark
//!   (labels `kafka-expose.io/policy`, `kafka-expose.io/rolling`), whatever matches now.
//!
//! Then, per workload, [`policy::resolve`] (the precedence the webhook shares) gives the settings
//! in force; [`rollout::pace`] decides, per policy, which templates change now; and each change
//! is [`workload::plan`] with the policy's stamp (or its removal) sent as a JSON Patch under
//! the field manager `kafka-expose`, guarded by the workload's resourceVersion. The workload's
//! own update strategy then rolls its pods, the Pod webhook mutates them, and the reconciler
//! makes their Services: exactly as for an annotated workload.
//!
//! Every policy carries the finalizer `kafka-expose.io/revert`. A deleted policy's workloads are
//! reverted at its pace, and the finalizer goes once none carries its stamp.
//!
//! Beside this file: [`found`], a workload as read (its strategy and rollout progress), and
//! [`status`], what each policy's status says and what its workloads are told.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

mod found;
mod status;

use found::Found;
use status::{announce, status_of, write_status};

use super::context::{Context, Periods};
use super::events::Note;
use super::unix_now;
use crate::api::{KafkaExposePolicy, PolicyKind, PolicyMode};
use crate::engine::error_chain;
use crate::engine::patch::PatchBuilder;
use crate::engine::policy::{self, Candidate, Live};
use crate::engine::rollout::{self, Pace, Steps, Strategy, Tracked, WorkloadKey};
use crate::engine::workload::{self, PolicyLayer, Stamp};
use crate::names::{FIELD_MANAGER, PREFIX, keys, labels, own};
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

/// Runs passes until `shutdown`: every `periods.policy_active` while a rollout moves, else every
/// `periods.policy_idle` or at a policy's change.
pub async fn run(
    ctx: Arc<Context>,
    stores: PolicyStores,
    scope: Option<String>,
    periods: Periods,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = Box::pin(shutdown);
    info!("policy controller started");
    loop {
        let next = match pass(&ctx, &stores, scope.as_deref()).await {
            Ok(true) => periods.policy_active,
            Ok(false) => periods.policy_idle,
            Err(e) => {
                warn!(error = %error_chain(&e), "policy pass failed; retrying");
                periods.policy_active
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
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

/// One workload in a pass: what it is, what applies to it, and what it is to carry.
struct Item {
    found: Found,
    resolution: policy::Resolution,
    /// What the template is to carry, and the policy pacing the change.
    layer: PolicyLayer,
    owner: Option<String>,
    /// Why no stamp could be decided (pool exhausted, invalid settings).
    blocked: Option<(String, String)>,
    current: Option<Stamp>,
    wanted: Option<Stamp>,
    rolling: Option<(String, i64)>,
    /// What each matching Audit policy would stamp, with its pool's block, by policy name.
    audit_values: BTreeMap<String, BTreeMap<String, String>>,
    /// The live policies that select it.
    matched_by: BTreeSet<String>,
    /// Its brokers' node IPs, listed once per pass when a preview needs them.
    host_ips: tokio::sync::OnceCell<BTreeMap<String, String>>,
}

impl Item {
    fn change_pending(&self) -> bool {
        self.blocked.is_none()
            && !matches!(self.layer, PolicyLayer::Keep)
            && self.current != self.wanted
    }
}

/// One pass over every policy. Returns whether a rollout moves (the next pass is due soon).
async fn pass(
    ctx: &Context,
    stores: &PolicyStores,
    scope: Option<&str>,
) -> Result<bool, kube::Error> {
    let all: Vec<KafkaExposePolicy> = stores
        .policies
        .state()
        .iter()
        .map(|p| p.as_ref().clone())
        .collect();
    let policy_api: Api<KafkaExposePolicy> = Api::all(ctx.client.clone());
    let live: Vec<KafkaExposePolicy> = all.iter().filter(|p| policy::is_live(p)).cloned().collect();
    for p in &live {
        if !p.finalizers().iter().any(|f| f == FINALIZER) {
            add_finalizer(&policy_api, p).await?;
        }
    }
    let found = candidates(ctx, stores, &live, scope).await?;
    if all.is_empty() && found.is_empty() {
        return Ok(false);
    }
    let now = unix_now();
    let mut items = Vec::new();
    for f in found {
        let ns = f.meta().namespace.clone().unwrap_or_default();
        let ns_labels = stores.namespace_labels(&ns);
        let wl_labels = f.meta().labels.clone().unwrap_or_default();
        let own_ann = crate::config::user_annotations(f.meta().annotations.as_ref());
        let name = f.meta().name.clone().unwrap_or_default();
        let candidate = Candidate {
            kind: f.kind(),
            namespace: &ns,
            namespace_labels: &ns_labels,
            name: &name,
            labels: &wl_labels,
            own: &own_ann,
        };
        let resolution = policy::resolve(&live, &candidate);
        let matched_by = live
            .iter()
            .filter(|p| policy::matches(p, &candidate).is_some())
            .map(|p| p.name_any())
            .collect();
        let w = f.workload();
        let current = w.stamp();
        let rolling = f
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{PREFIX}{}", own::ROLLOUT)))
            .and_then(|v| rollout::read_mark(v));
        items.push(Item {
            found: f,
            resolution,
            layer: PolicyLayer::Keep,
            owner: None,
            blocked: None,
            current,
            wanted: None,
            rolling,
            audit_values: BTreeMap::new(),
            matched_by,
            host_ips: tokio::sync::OnceCell::new(),
        });
    }
    decide_layers(ctx, &all, &mut items).await?;

    // Pace each policy, live or being deleted, and carry out its steps.
    let mut steps: BTreeMap<String, Steps> = BTreeMap::new();
    let tracked: Vec<Tracked> = items
        .iter()
        .map(|i| Tracked {
            key: i.found.key(),
            owner: i.owner.clone(),
            change_pending: i.change_pending(),
            strategy: i.found.strategy(),
            progress: i.found.progress(),
            rolling: i.rolling.clone(),
        })
        .collect();
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
    for (policy, s) in &steps {
        for key in s.finish.iter().chain(&orphan_marks) {
            if let Some(item) = items.iter_mut().find(|i| &i.found.key() == key) {
                unmark(ctx, item).await?;
            }
        }
        for key in &s.start {
            let Some(item) = items.iter_mut().find(|i| &i.found.key() == key) else {
                continue;
            };
            start(ctx, item, policy, now).await?;
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

    // Events for what each workload is told once, and each policy's status.
    for item in &items {
        announce(ctx, item).await;
    }
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
        let status = status_of(ctx, p, &items, &s).await;
        write_status(&policy_api, p, status).await?;
    }
    Ok(busy)
}

/// The workloads any policy may concern, read in full: those the live policies' namespaces and
/// selectors take (listed as metadata first, and read only if they match), and those carrying
/// a stamp or a rollout mark.
async fn candidates(
    ctx: &Context,
    stores: &PolicyStores,
    live: &[KafkaExposePolicy],
    scope: Option<&str>,
) -> Result<Vec<Found>, kube::Error> {
    let mut wanted: BTreeSet<(PolicyKind, String, String)> = BTreeSet::new();
    let namespaces: Vec<(String, BTreeMap<String, String>)> = match scope {
        Some(ns) => vec![(ns.to_string(), stores.namespace_labels(ns))],
        None => stores
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.metadata.labels.clone().unwrap_or_default()))
            .collect(),
    };
    for p in live {
        let selector = p
            .spec
            .selection
            .selector
            .clone()
            .and_then(|s| kube::core::Selector::try_from(s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default();
        let empty = BTreeMap::new();
        for kind in p.spec.selection.kinds() {
            for (ns, ns_labels) in &namespaces {
                // Matched as a workload without labels or name: only the namespace part counts.
                let probe = Candidate {
                    kind,
                    namespace: ns,
                    namespace_labels: ns_labels,
                    name: "",
                    labels: &empty,
                    own: &empty,
                };
                if !namespace_may_match(p, &probe) {
                    continue;
                }
                let params = ListParams::default().labels(&selector);
                for m in list_meta(ctx, kind, Some(ns), &params).await? {
                    let (Some(n), Some(name)) = (m.0, m.1) else {
                        continue;
                    };
                    let names = &p.spec.selection.names;
                    if names.is_empty() || names.iter().any(|g| policy::glob(g, &name)) {
                        wanted.insert((kind, n, name));
                    }
                }
            }
        }
    }
    for kind in [PolicyKind::StatefulSet, PolicyKind::Deployment] {
        for label in [labels::POLICY, labels::ROLLING] {
            for m in list_meta(ctx, kind, scope, &ListParams::default().labels(label)).await? {
                if let (Some(n), Some(name)) = m {
                    wanted.insert((kind, n, name));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (kind, ns, name) in wanted {
        let f = match kind {
            PolicyKind::StatefulSet => Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&name)
                .await?
                .map(|s| Found::Sts(Box::new(s))),
            PolicyKind::Deployment => Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&name)
                .await?
                .map(|d| Found::Dep(Box::new(d))),
        };
        out.extend(f);
    }
    Ok(out)
}

/// Whether policy `p` can select anything in the probe's namespace.
fn namespace_may_match(p: &KafkaExposePolicy, probe: &Candidate<'_>) -> bool {
    if p.spec
        .exclude
        .namespaces
        .iter()
        .any(|n| n == probe.namespace)
    {
        return false;
    }
    match &p.spec.selection.namespace_selector {
        None => true,
        Some(sel) => kube::core::Selector::try_from(sel.clone())
            .is_ok_and(|s| kube::core::SelectorExt::matches(&s, probe.namespace_labels)),
    }
}

/// Namespace and name of the workloads of `kind` the list finds, as metadata only.
async fn list_meta(
    ctx: &Context,
    kind: PolicyKind,
    ns: Option<&str>,
    params: &ListParams,
) -> Result<Vec<(Option<String>, Option<String>)>, kube::Error> {
    fn pairs<K: Resource + Clone>(
        l: kube::core::ObjectList<PartialObjectMeta<K>>,
    ) -> Vec<(Option<String>, Option<String>)> {
        l.items
            .into_iter()
            .map(|m| (m.metadata.namespace, m.metadata.name))
            .collect()
    }
    Ok(match kind {
        PolicyKind::StatefulSet => pairs(
            super::caches::scoped::<StatefulSet>(ctx.client.clone(), ns)
                .list_metadata(params)
                .await?,
        ),
        PolicyKind::Deployment => pairs(
            super::caches::scoped::<Deployment>(ctx.client.clone(), ns)
                .list_metadata(params)
                .await?,
        ),
    })
}

/// Decides each workload's layer (what its template is to carry) and the policy pacing it,
/// allocating pool blocks in the workloads' order.
async fn decide_layers(
    ctx: &Context,
    all: &[KafkaExposePolicy],
    items: &mut [Item],
) -> Result<(), kube::Error> {
    items.sort_by_key(|i| i.found.key());
    let mut in_use: Option<BTreeSet<u16>> = None;
    for idx in 0..items.len() {
        let (layer, owner, blocked) = {
            let item = &items[idx];
            let stamped_by = item.current.as_ref().map(|s| s.policy.clone());
            match &item.resolution.live {
                Live::Policy(a) => {
                    let mut values = a.values.clone();
                    let mut blocked = None;
                    if let Some(pool) = a.pool {
                        let brokers = item.found.workload().replicas;
                        let recorded = item
                            .current
                            .as_ref()
                            .and_then(|s| s.values.get(keys::PORT_BASE)?.parse().ok());
                        if in_use.is_none() && recorded.is_none() {
                            in_use = Some(ports_in_use(ctx, items).await?);
                        }
                        let mut scratch = BTreeSet::new();
                        let taken = in_use.as_mut().unwrap_or(&mut scratch);
                        if let Err(e) =
                            policy::give_block(&mut values, pool, brokers, recorded, taken)
                        {
                            blocked = Some(("PortPoolExhausted".to_string(), e.to_string()));
                        }
                    }
                    (
                        PolicyLayer::Set(Stamp {
                            policy: a.policy.clone(),
                            values,
                        }),
                        Some(a.policy.clone()),
                        blocked,
                    )
                }
                Live::Own | Live::Excluded(_) => match stamped_by {
                    None => (PolicyLayer::Keep, None, None),
                    Some(q) => {
                        let kept = all.iter().any(|p| {
                            p.name_any() == q
                                && policy::is_live(p)
                                && p.spec.mode == PolicyMode::Audit
                        }) && matches!(item.resolution.live, Live::Own);
                        if kept {
                            // Enforce switched to Audit: running brokers stay as they are.
                            (PolicyLayer::Keep, Some(q), None)
                        } else {
                            (PolicyLayer::Clear, Some(q), None)
                        }
                    }
                },
            }
        };
        let item = &mut items[idx];
        let mut w = item.found.workload();
        w.policy = layer.clone();
        let mut blocked = blocked;
        if blocked.is_none()
            && let PolicyLayer::Set(_) = layer
            && let Err(e) = w.exposure(&ctx.settings)
        {
            blocked = Some(("InvalidConfiguration".to_string(), e.to_string()));
        }
        item.wanted = w.wanted_stamp();
        item.layer = layer;
        item.owner = owner;
        item.blocked = blocked;
    }
    // What Audit policies would give, after every Enforce allocation: a preview never takes a
    // block an enforced workload gets.
    for idx in 0..items.len() {
        let brokers = items[idx].found.workload().replicas;
        for a in items[idx].resolution.audits.clone() {
            let mut values = a.values.clone();
            if let Some(pool) = a.pool {
                if in_use.is_none() {
                    in_use = Some(ports_in_use(ctx, items).await?);
                }
                let mut scratch = BTreeSet::new();
                let taken = in_use.as_mut().unwrap_or(&mut scratch);
                // An exhausted pool shows in the preview's own error.
                let _ = policy::give_block(&mut values, pool, brokers, None, taken);
            }
            items[idx].audit_values.insert(a.policy.clone(), values);
        }
    }
    Ok(())
}

/// Every NodePort in use in the cluster, and the blocks stamped on workloads (whose Services
/// may not exist yet).
async fn ports_in_use(ctx: &Context, items: &[Item]) -> Result<BTreeSet<u16>, kube::Error> {
    let svcs = Api::<Service>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let mut set: BTreeSet<u16> = svcs
        .items
        .iter()
        .filter_map(|s| s.spec.as_ref()?.ports.as_ref())
        .flatten()
        .filter_map(|p| u16::try_from(p.node_port?).ok())
        .collect();
    for i in items {
        let Some(stamp) = &i.current else { continue };
        let replicas = i.found.workload().replicas.max(1);
        if let Some(base) = stamp
            .values
            .get(keys::PORT_BASE)
            .and_then(|b| b.parse::<u16>().ok())
        {
            set.extend((0..replicas).filter_map(|n| u16::try_from(u32::from(base) + n).ok()));
        }
        if let Some(b) = stamp
            .values
            .get(keys::BOOTSTRAP_NODE_PORT)
            .and_then(|b| b.parse::<u16>().ok())
        {
            set.insert(b);
        }
    }
    Ok(set)
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
    patch_workload(ctx, &item.found, ops).await?;
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

/// Removes a workload's rollout mark.
async fn unmark(ctx: &Context, item: &mut Item) -> Result<(), kube::Error> {
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
    patch_workload(ctx, &item.found, b.into_ops()).await?;
    item.rolling = None;
    Ok(())
}

async fn patch_workload(
    ctx: &Context,
    f: &Found,
    ops: Vec<json_patch::PatchOperation>,
) -> Result<(), kube::Error> {
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
        // The workload changed since it was read: the next pass reads it again.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 422 || s.code == 404 => {
            info!(workload = %key, reason = %s.message, "workload changed under the pass; next pass");
            Ok(())
        }
        other => other,
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
