//! The workload decision (StatefulSet, or a Deployment that runs one broker).
//!
//! Mutation happens at the Pod level; at the workload level only:
//! - the configuration is validated, so a bad one is refused where the user applies it;
//! - the `kafka-expose.io/*` annotations of the workload's metadata are copied into the pod
//!   template (which wins where both set a key), so that pods carry their configuration;
//! - a hash of the effective configuration goes into the template, so that a change rolls the
//!   brokers through the workload's own update strategy;
//! - the label the Pod webhook's `objectSelector` matches goes into the template.
//!
//! Keys copied from the metadata are listed in `kafka-expose.io/inherited`, so a later change or
//! removal in the metadata is followed, while keys the user set in the template stay theirs.

use std::collections::BTreeMap;

use json_patch::PatchOperation;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::exposure::{self, Decision, Skip};
use super::patch::PatchBuilder;
use super::{Decided, EngineError, Result, Summarized};
use crate::config::{self, ConfigError, Settings, WorkloadFacts};
use crate::names::{PREFIX, keys, labels, own};
use crate::ptr;

/// The kinds of workload kafka-expose exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    StatefulSet,
    Deployment,
}

impl WorkloadKind {
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "StatefulSet" => Some(Self::StatefulSet),
            "Deployment" => Some(Self::Deployment),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StatefulSet => "StatefulSet",
            Self::Deployment => "Deployment",
        }
    }

    /// The kind as a policy's `match.kinds` names it.
    pub fn policy_kind(self) -> crate::api::PolicyKind {
        match self {
            Self::StatefulSet => crate::api::PolicyKind::StatefulSet,
            Self::Deployment => crate::api::PolicyKind::Deployment,
        }
    }
}

/// What kafka-expose reads of a workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
    /// Whether the object as sent holds `metadata` at all (the API server always sends it).
    pub has_metadata: bool,
    /// `spec.replicas`, defaulted to 1 as the API server does.
    pub replicas: u32,
    /// `spec.ordinals.start` (StatefulSet, Kubernetes ≥ 1.26).
    pub ordinals_start: u32,
    /// `spec.selector.matchLabels`.
    pub selector: BTreeMap<String, String>,
    /// `spec.serviceName` (StatefulSet).
    pub service_name: Option<String>,
    pub template: PodTemplateSpec,
    /// Which Enforce policy's settings the template is to carry.
    pub policy: PolicyLayer,
}

/// Which Enforce policy's settings a pod template is to carry, beneath the workload's own
/// annotations (key by key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PolicyLayer {
    /// What the template carries now: a workload write the policy controller did not schedule
    /// keeps its stamp, so it never rolls brokers to a policy's change outside the pacing.
    #[default]
    Keep,
    /// This policy's settings (annotation values, keys without the prefix).
    Set(Stamp),
    /// None: what a policy stamped is removed.
    Clear,
}

/// A policy's settings as stamped into a pod template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub policy: String,
    pub values: BTreeMap<String, String>,
}

impl Workload {
    /// Reads a workload from its JSON form.
    pub fn from_value(kind: WorkloadKind, obj: &Value) -> Result<Self> {
        let malformed = |source| EngineError::Malformed {
            kind: kind.as_str(),
            source,
        };
        let mut w = match kind {
            WorkloadKind::StatefulSet => {
                Self::from_statefulset(serde_json::from_value(obj.clone()).map_err(malformed)?)
            }
            WorkloadKind::Deployment => {
                Self::from_deployment(serde_json::from_value(obj.clone()).map_err(malformed)?)
            }
        };
        w.has_metadata = obj.get("metadata").is_some_and(|m| !m.is_null());
        Ok(w)
    }

    pub fn from_statefulset(s: StatefulSet) -> Self {
        let spec = s.spec;
        Self {
            kind: WorkloadKind::StatefulSet,
            name: s.metadata.name.unwrap_or_default(),
            namespace: s.metadata.namespace,
            uid: s.metadata.uid,
            annotations: s.metadata.annotations,
            labels: s.metadata.labels,
            has_metadata: true,
            replicas: count(spec.replicas, 1),
            ordinals_start: count(spec.ordinals.and_then(|o| o.start), 0),
            selector: spec.selector.match_labels.unwrap_or_default(),
            service_name: spec.service_name,
            template: spec.template,
            policy: PolicyLayer::Keep,
        }
    }

    pub fn from_deployment(d: Deployment) -> Self {
        let spec = d.spec;
        Self {
            kind: WorkloadKind::Deployment,
            name: d.metadata.name.unwrap_or_default(),
            namespace: d.metadata.namespace,
            uid: d.metadata.uid,
            annotations: d.metadata.annotations,
            labels: d.metadata.labels,
            has_metadata: true,
            replicas: count(spec.replicas, 1),
            ordinals_start: 0,
            selector: spec.selector.match_labels.unwrap_or_default(),
            service_name: None,
            template: spec.template,
            policy: PolicyLayer::Keep,
        }
    }

    pub fn template_annotations(&self) -> Option<&BTreeMap<String, String>> {
        self.template.metadata.as_ref()?.annotations.as_ref()
    }

    /// The effective `kafka-expose.io/*` user keys (without prefix): the policy's (see
    /// [`PolicyLayer`]), overridden by the metadata's, overridden by the template's own (those
    /// not copied or stamped there by kafka-expose).
    pub fn effective_annotations(&self) -> BTreeMap<String, String> {
        let meta = config::own_annotations(self.annotations.as_ref());
        let tpl = config::own_annotations(self.template_annotations());
        let mut out = self.policy_values(&tpl).unwrap_or_default();
        out.extend(
            meta.into_iter()
                .filter(|(k, _)| !own::ALL.contains(&k.as_str())),
        );
        out.extend(user_keys(&tpl));
        out
    }

    /// The policy values beneath the workload's own, by [`Self::policy`].
    fn policy_values(&self, tpl: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
        match &self.policy {
            PolicyLayer::Keep => stamp_of(tpl).map(|s| s.values),
            PolicyLayer::Set(s) => Some(s.values.clone()),
            PolicyLayer::Clear => None,
        }
    }

    /// The policy stamp the template carries now.
    pub fn stamp(&self) -> Option<Stamp> {
        stamp_of(&config::own_annotations(self.template_annotations()))
    }

    /// The stamp the template is to carry under [`Self::policy`]: the policy's values less the
    /// keys the workload's own annotations set, which win.
    pub fn wanted_stamp(&self) -> Option<Stamp> {
        let tpl = config::own_annotations(self.template_annotations());
        let meta = config::own_annotations(self.annotations.as_ref());
        let user = user_keys(&tpl);
        let policy = match &self.policy {
            PolicyLayer::Keep => stamp_of(&tpl)?.policy,
            PolicyLayer::Set(s) => s.policy.clone(),
            PolicyLayer::Clear => return None,
        };
        let values = self
            .policy_values(&tpl)?
            .into_iter()
            .filter(|(k, _)| {
                let own_wins = keys::ALL.contains(&k.as_str()) && meta.contains_key(k);
                !user.contains_key(k) && !own_wins
            })
            .collect();
        Some(Stamp { policy, values })
    }

    /// The exposure pipeline on this workload: its effective annotations, its pod template,
    /// and the checks against its replica count.
    pub fn exposure(&self, settings: &Settings) -> Result<Decision<'_>, ConfigError> {
        exposure::decide(
            &self.effective_annotations(),
            self.template.spec.as_ref(),
            Some(&self.facts()),
            settings,
        )
    }

    pub fn facts(&self) -> WorkloadFacts<'_> {
        WorkloadFacts {
            ordinals_start: self.ordinals_start,
            kind: self.kind.as_str(),
            name: &self.name,
            replicas: self.replicas,
        }
    }
}

/// A count from the API, defaulted as the API server defaults it, never negative.
fn count(n: Option<i32>, default: u32) -> u32 {
    n.map_or(default, |n| n.max(0) as u32)
}

fn inherited_keys(tpl: &BTreeMap<String, String>) -> Vec<String> {
    listed(tpl, own::INHERITED)
}

/// The template's keys the user set there: neither kafka-expose's own, nor copied from the
/// metadata, nor stamped from a policy.
fn user_keys(tpl: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let inherited = inherited_keys(tpl);
    let stamped = listed(tpl, own::POLICY_KEYS);
    tpl.iter()
        .filter(|(k, _)| {
            !own::ALL.contains(&k.as_str()) && !inherited.contains(k) && !stamped.contains(k)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The policy stamp of a template's own annotations (keys without the prefix).
fn stamp_of(tpl: &BTreeMap<String, String>) -> Option<Stamp> {
    let policy = tpl.get(own::POLICY)?.trim().to_string();
    let values = listed(tpl, own::POLICY_KEYS)
        .into_iter()
        .filter(|k| keys::ALL.contains(&k.as_str()))
        .filter_map(|k| Some((tpl.get(&k)?.clone(), k)))
        .map(|(v, k)| (k, v))
        .collect();
    Some(Stamp { policy, values })
}

/// The comma-separated keys of an own annotation.
fn listed(tpl: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    tpl.get(key)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What happened to the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadOutcome {
    /// Not exposed: with [`Skip::NotRequested`] what kafka-expose had added is removed; the
    /// other reasons are reported and the workload left alone.
    Skipped(Skip),
    Exposed {
        adapter: &'static str,
        hash: String,
    },
}

/// The workload decision.
pub type WorkloadDecision = Decided<WorkloadOutcome>;

impl Summarized for WorkloadOutcome {
    fn has_summary(&self) -> bool {
        matches!(self, Self::Exposed { .. })
    }
}

/// A short hash of the effective configuration.
pub fn config_hash(effective: &BTreeMap<String, String>, ordinals_start: u32) -> String {
    let mut h = Sha256::new();
    // What happens on a later address change is no part of the brokers' configuration: changing
    // it must not restart them.
    for (k, v) in effective
        .iter()
        .filter(|(k, _)| *k != keys::ON_ADDRESS_CHANGE)
    {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.update(ordinals_start.to_string().as_bytes());
    if ordinals_start > 0 {
        // Ports follow the broker ordinal (`base + n`), no longer the index from the first
        // broker: such workloads roll once to advertise their new ports.
        h.update(b"ports-by-ordinal");
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Decides the mutation of a workload, given as the API server sent it. An invalid configuration
/// is an error whose message the admission answer carries.
pub fn mutate_workload(
    obj: &Value,
    kind: WorkloadKind,
    settings: &Settings,
) -> Result<WorkloadDecision> {
    decide_workload(&Workload::from_value(kind, obj)?, settings)
}

/// Decides the mutation of a workload already read.
pub fn decide_workload(w: &Workload, settings: &Settings) -> Result<WorkloadDecision> {
    Ok(plan(w, &w.exposure(settings)?))
}

/// The mutation of a workload whose exposure is decided.
pub fn plan(w: &Workload, decision: &Decision<'_>) -> WorkloadDecision {
    let kind = w.kind;
    let exposure = match decision {
        Decision::Expose(e) => e,
        Decision::Skip(Skip::NotRequested) => {
            return WorkloadDecision {
                patch: cleanup(w),
                warnings: vec![],
                outcome: WorkloadOutcome::Skipped(Skip::NotRequested),
            };
        }
        Decision::Skip(skip) => {
            let warning = format!(
                "kafka-expose: {} {}: {skip}; left alone",
                kind.as_str(),
                w.name
            );
            return WorkloadDecision::without_patch(
                WorkloadOutcome::Skipped(skip.clone()),
                vec![warning],
            );
        }
    };
    let effective = w.effective_annotations();
    let hash = config_hash(&effective, w.ordinals_start);
    let meta = config::own_annotations(w.annotations.as_ref());
    let tpl = config::own_annotations(w.template_annotations());
    let user = user_keys(&tpl);
    let copied: Vec<(&String, &String)> = meta
        .iter()
        // What happens on an address change is read from the workload itself: in the template it
        // would roll the brokers.
        .filter(|(k, _)| {
            keys::ALL.contains(&k.as_str())
                && !user.contains_key(*k)
                && *k != keys::ON_ADDRESS_CHANGE
        })
        .collect();
    let stamp = w.wanted_stamp();

    let mut set: Vec<(String, String)> = copied
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).clone()))
        .collect();
    let inherited_list: Vec<&str> = copied.iter().map(|(k, _)| k.as_str()).collect();
    let mut remove = Vec::new();
    let mut list_or_remove = |key: &str, list: &[&str], set: &mut Vec<(String, String)>| {
        if list.is_empty() {
            remove.push(format!("{PREFIX}{key}"));
        } else {
            set.push((format!("{PREFIX}{key}"), list.join(",")));
        }
    };
    list_or_remove(own::INHERITED, &inherited_list, &mut set);
    let stamped: Vec<&str> = stamp
        .iter()
        .flat_map(|s| s.values.keys().map(String::as_str))
        .collect();
    list_or_remove(own::POLICY_KEYS, &stamped, &mut set);
    match &stamp {
        Some(s) => {
            set.extend(
                s.values
                    .iter()
                    .map(|(k, v)| (format!("{PREFIX}{k}"), v.clone())),
            );
            set.push((format!("{PREFIX}{}", own::POLICY), s.policy.clone()));
        }
        None => remove.push(format!("{PREFIX}{}", own::POLICY)),
    }
    set.push((format!("{PREFIX}{}", own::CONFIG_HASH), hash.clone()));
    if w.ordinals_start > 0 {
        set.push((
            format!("{PREFIX}{}", own::ORDINALS_START),
            w.ordinals_start.to_string(),
        ));
    } else {
        remove.push(format!("{PREFIX}{}", own::ORDINALS_START));
    }
    // Keys copied or stamped earlier whose source is gone from the metadata or the policy.
    for k in inherited_keys(&tpl)
        .into_iter()
        .chain(listed(&tpl, own::POLICY_KEYS))
    {
        if !inherited_list.contains(&k.as_str())
            && !stamped.contains(&k.as_str())
            && !user.contains_key(&k)
        {
            remove.push(format!("{PREFIX}{k}"));
        }
    }
    let mut workload_labels = vec![(labels::EXPOSED.to_string(), "true".to_string())];
    let mut workload_labels_gone = Vec::new();
    match &stamp {
        Some(s) => workload_labels.push((labels::POLICY.to_string(), s.policy.clone())),
        None => workload_labels_gone.push(labels::POLICY.to_string()),
    }

    let mut b = PatchBuilder::new();
    let tmeta = w.template.metadata.as_ref();
    if tmeta.is_none() {
        b.add(
            ptr!("spec", "template", "metadata"),
            Value::Object(Default::default()),
        );
    }
    sync_map(
        &mut b,
        &ptr!("spec", "template", "metadata", "annotations"),
        tmeta.and_then(|m| m.annotations.as_ref()),
        &set,
        &remove,
    );
    sync_map(
        &mut b,
        &ptr!("spec", "template", "metadata", "labels"),
        tmeta.and_then(|m| m.labels.as_ref()),
        &[(labels::EXPOSED.to_string(), "true".to_string())],
        &[],
    );
    // The same label on the workload itself: the reconciler watches workloads as metadata only,
    // and reads in full those that carry a kafka-expose key there, which a workload exposed by
    // its template's annotations alone would not otherwise show.
    if !w.has_metadata {
        b.add(ptr!("metadata"), Value::Object(Default::default()));
    }
    sync_map(
        &mut b,
        &ptr!("metadata", "labels"),
        w.labels.as_ref(),
        &workload_labels,
        &workload_labels_gone,
    );
    let mut warnings = vec![format!(
        "kafka-expose: {} {} is exposed by {} ({}): {}",
        kind.as_str(),
        w.name,
        exposure.config.mode.as_str(),
        exposure.adapter.name(),
        exposure.reason
    )];
    warnings.extend(exposure.notes.iter().map(|n| format!("kafka-expose: {n}")));
    WorkloadDecision {
        patch: b.into_ops(),
        warnings,
        outcome: WorkloadOutcome::Exposed {
            adapter: exposure.adapter.name(),
            hash,
        },
    }
}

/// Sets and removes entries of a string map, creating it when absent.
fn sync_map(
    b: &mut PatchBuilder,
    path: &json_patch::jsonptr::PointerBuf,
    present: Option<&BTreeMap<String, String>>,
    set: &[(String, String)],
    remove: &[String],
) {
    match present {
        None => {
            if set.is_empty() {
                return;
            }
            let m: serde_json::Map<String, Value> = set
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            b.add(path.clone(), Value::Object(m));
        }
        Some(map) => {
            for (k, v) in set {
                b.set_map_entry(path, Some(map), k, v);
            }
            // Once per key: `inherited` is user-editable and may name a key twice.
            let unique: std::collections::BTreeSet<&String> = remove.iter().collect();
            for k in unique {
                b.remove_map_entry(path, Some(map), k);
            }
        }
    }
}

/// Removes what kafka-expose added to a workload that is no longer exposed: the copied keys, its
/// own bookkeeping and the exposed label, on the workload and its template. Keys the user set in the template stay.
fn cleanup(w: &Workload) -> Vec<PatchOperation> {
    let mut b = PatchBuilder::new();
    for label in [labels::EXPOSED, labels::POLICY] {
        b.remove_map_entry(&ptr!("metadata", "labels"), w.labels.as_ref(), label);
    }
    let Some(tmeta) = w.template.metadata.as_ref() else {
        return b.into_ops();
    };
    let tpl = config::own_annotations(tmeta.annotations.as_ref());
    let mut remove: Vec<String> = inherited_keys(&tpl)
        .into_iter()
        .chain(listed(&tpl, own::POLICY_KEYS))
        .map(|k| format!("{PREFIX}{k}"))
        .collect();
    for k in [
        own::INHERITED,
        own::CONFIG_HASH,
        own::ORDINALS_START,
        own::POLICY,
        own::POLICY_KEYS,
    ] {
        remove.push(format!("{PREFIX}{k}"));
    }
    sync_map(
        &mut b,
        &ptr!("spec", "template", "metadata", "annotations"),
        tmeta.annotations.as_ref(),
        &[],
        &remove,
    );
    b.remove_map_entry(
        &ptr!("spec", "template", "metadata", "labels"),
        tmeta.labels.as_ref(),
        labels::EXPOSED,
    );
    b.into_ops()
}
