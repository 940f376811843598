//! What a policy's status says: each matched workload's [`state`], the previews of addresses,
//! and the [`conditions`]. Pure: the clock comes in as `now`, the brokers' node IPs on each
//! [`Item`], read before.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::item::Item;
use crate::api::policy::STATUS_WORKLOADS_CAP;
use crate::api::{
    KafkaExposePolicy, KafkaExposePolicyStatus, PolicyMode, WorkloadState, WorkloadStatus,
};
use crate::config::{AdvertisedHost, ExposeMode, Settings};
use crate::engine::exposure::Decision;
use crate::engine::policy::Live;
use crate::engine::restart::State as RestartState;
use crate::engine::rollout::{Progress, Steps, Strategy};
use crate::engine::services::{self, BootstrapFacts};
use crate::engine::workload::{PolicyLayer, Stamp, Workload};
use crate::names::{PREFIX, own};

/// What one policy says of one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) state: WorkloadState,
    pub(crate) reason: String,
    /// The policy keys the workload's own annotations override.
    pub(crate) overridden: Vec<String>,
    /// What it adds to the policy's `Conflict` condition.
    pub(crate) conflicts: Vec<String>,
}

/// Where `item` stands with policy `p`, given `p`'s steps in this pass; `None` when `p` does not
/// concern it (neither selects it nor stamped it).
pub(crate) fn state(p: &KafkaExposePolicy, item: &Item, steps: &Steps) -> Option<Entry> {
    let name = p.name_any();
    let key = item.found.key();
    let mut conflicts = Vec::new();
    let audit = item.resolution.audits.iter().find(|a| a.policy == name);
    let enforced = match &item.resolution.live {
        Live::Policy(a) if a.policy == name => Some(a),
        _ => None,
    };
    let stamped = item.current.as_ref().is_some_and(|s| s.policy == name);
    let superseded = match &item.resolution.live {
        Live::Policy(a) if a.policy != name && a.tied_with.contains(&name) => {
            conflicts.push(format!(
                "{key}: tied with {} at priority {}, which applies (the smallest name)",
                a.policy, p.spec.priority
            ));
            Some(format!(
                "tied with policy {}, which applies (the smallest name)",
                a.policy
            ))
        }
        Live::Policy(a) if a.policy != name => item
            .concerns(&name)
            .then(|| format!("policy {} has a higher priority and applies", a.policy)),
        _ => None,
    };
    let entry = |state, reason, overridden, conflicts| {
        Some(Entry {
            state,
            reason,
            overridden,
            conflicts,
        })
    };
    // Enforce switched to Audit: the brokers keep what it stamped, whether or not its preview
    // still matches.
    if stamped && item.layer == PolicyLayer::Keep {
        return entry(
            WorkloadState::Kept,
            "enforced earlier; the policy is in Audit mode, so its brokers keep their settings"
                .into(),
            audit.map(|a| a.overridden.clone()).unwrap_or_default(),
            conflicts,
        );
    }
    if let Some(a) = audit {
        return entry(
            WorkloadState::Matched,
            a.reason.clone(),
            a.overridden.clone(),
            conflicts,
        );
    }
    if let Some(a) = enforced {
        if !a.tied_with.is_empty() {
            conflicts.push(format!(
                "{key}: tied with {} at priority {}",
                a.tied_with.join(", "),
                p.spec.priority
            ));
        }
        let strategy = item.found.strategy();
        let state = if let Some(b) = &item.blocked {
            b.state()
        } else if steps.stalled.iter().any(|(k, _)| k == &key) {
            WorkloadState::Stalled
        } else if steps.rolling.contains(&key) || steps.start.contains(&key) {
            if strategy == Strategy::OnDelete {
                WorkloadState::WaitingForRestart
            } else {
                WorkloadState::Rolling
            }
        } else if strategy == Strategy::Paused && item.change_pending() {
            WorkloadState::Skipped
        } else if item.change_pending() {
            WorkloadState::Pending
        } else if strategy == Strategy::OnDelete && item.found.progress() != Progress::Complete {
            WorkloadState::WaitingForRestart
        } else {
            WorkloadState::UpToDate
        };
        let mut reason = match &item.blocked {
            Some(b) => b.why().to_string(),
            None => a.reason.clone(),
        };
        if let Strategy::Rolling { partition } = strategy
            && partition > 0
        {
            reason.push_str(&format!(
                "; partition {partition}: brokers below ordinal {partition} keep their configuration"
            ));
        }
        return entry(state, reason, a.overridden.clone(), conflicts);
    }
    if stamped {
        return entry(
            WorkloadState::Reverting,
            "no longer selected, or excluded".into(),
            Vec::new(),
            conflicts,
        );
    }
    if let Some(why) = superseded {
        return entry(WorkloadState::Superseded, why, Vec::new(), conflicts);
    }
    match &item.resolution.live {
        Live::Excluded(why) if item.concerns(&name) => {
            entry(WorkloadState::Excluded, why.clone(), Vec::new(), conflicts)
        }
        _ => None,
    }
}

/// The workload as policy `name` would leave it: its Audit preview's stamp, else the layer the
/// pass decided.
fn as_policy_leaves_it(item: &Item, name: &str) -> Workload {
    let mut w = item.found.workload();
    w.policy = match item.resolution.audits.iter().find(|a| a.policy == name) {
        Some(a) => PolicyLayer::Set(Stamp {
            policy: name.to_string(),
            values: item
                .audit_values
                .get(name)
                .cloned()
                .unwrap_or_else(|| a.values.clone()),
        }),
        None => item.layer.clone(),
    };
    w
}

/// Whether a preview of `w` names its brokers' node IPs: its brokers advertise them, or its
/// bootstrap is a list of them.
pub(crate) fn needs_host_ips(settings: &Settings, w: &Workload) -> bool {
    let Ok(Decision::Expose(e)) = w.exposure(settings) else {
        return false;
    };
    e.config.advertised_host == AdvertisedHost::HostIp
        || matches!(e.config.mode, ExposeMode::NodePort | ExposeMode::HostPort)
}

/// Whether any policy's preview of `item` names its brokers' nodes.
pub(crate) fn item_needs_host_ips(
    settings: &Settings,
    all: &[KafkaExposePolicy],
    item: &Item,
) -> bool {
    all.iter()
        .any(|p| needs_host_ips(settings, &as_policy_leaves_it(item, &p.name_any())))
}

/// The bootstrap and per-broker addresses `w` gets (or would), from the brokers' node IPs the
/// item carries. The bootstrap is [`services::bootstrap_list`], as the reconciler publishes it;
/// a LoadBalancer's address is not known before its Service exists, so none is previewed.
pub(crate) fn preview(
    settings: &Settings,
    item: &Item,
    w: &Workload,
) -> (Option<String>, Vec<String>) {
    let Ok(Decision::Expose(e)) = w.exposure(settings) else {
        return (None, Vec::new());
    };
    let ips = &item.host_ips;
    // A node's IP is what a broker advertises only with `host-ip`; a `node:` type may name
    // another of the node's addresses.
    let advertised_ips = if e.config.advertised_host == AdvertisedHost::HostIp {
        ips
    } else {
        &BTreeMap::new()
    };
    let routes = services::routes(w, &e);
    let brokers: Vec<String> = routes
        .brokers
        .iter()
        .map(|r| {
            services::describe_advertised(
                &e.config,
                &e.adapter,
                r,
                w,
                advertised_ips.get(&r.pod).map(String::as_str),
            )
        })
        .collect();
    let facts = BootstrapFacts {
        host_ips: ips,
        lb_address: None,
        bootstrap_node_port: e.config.bootstrap_node_port.map(i32::from),
    };
    (services::bootstrap_list(w, &e, facts), brokers)
}

/// A policy's status from this pass, at `now`.
pub(crate) fn status_of(
    settings: &Settings,
    p: &KafkaExposePolicy,
    items: &[Item],
    steps: &Steps,
    now: &Time,
) -> KafkaExposePolicyStatus {
    let name = p.name_any();
    let mut entries = Vec::new();
    let mut conflicts = Vec::new();
    let mut restarts_stalled = Vec::new();
    for item in items {
        let Some(mut e) = state(p, item, steps) else {
            continue;
        };
        conflicts.append(&mut e.conflicts);
        // A broker restart for a new address, under this policy's settings (issue 28).
        if let Some((_, r)) = item.restart_under().filter(|(p, _)| *p == name) {
            if r.state == RestartState::Stalled {
                restarts_stalled.push(format!("{}: {r}", item.found.key()));
            }
            e.reason = format!("{}; broker restart: {r}", e.reason);
        }
        let key = item.found.key();
        let published = item.found.meta().annotations.as_ref().and_then(|a| {
            a.get(&format!("{PREFIX}{}", own::BOOTSTRAP_SERVERS))
                .cloned()
        });
        let (bootstrap, brokers) = match e.state {
            WorkloadState::Superseded | WorkloadState::Excluded | WorkloadState::Reverting => {
                (None, Vec::new())
            }
            _ => preview(settings, item, &as_policy_leaves_it(item, &name)),
        };
        entries.push(WorkloadStatus {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            kind: key.kind.to_string(),
            state: e.state,
            bootstrap: match e.state {
                WorkloadState::UpToDate => published.or(bootstrap),
                _ => bootstrap,
            },
            brokers,
            overridden: e.overridden,
            reason: Some(e.reason),
        });
    }
    let states: Vec<WorkloadState> = entries.iter().map(|e| e.state).collect();
    let tally = Tally::of(&states);
    let old = p.status.clone().unwrap_or_default();
    let conditions = conditions(
        p,
        &old.conditions,
        &tally,
        steps,
        &conflicts,
        &restarts_stalled,
        now,
    );
    entries.truncate(STATUS_WORKLOADS_CAP);
    KafkaExposePolicyStatus {
        observed_generation: p.metadata.generation,
        conditions,
        matched: tally.matched,
        up_to_date: tally.up_to_date,
        pending: tally.pending,
        workloads_total: states.len() as u32,
        workloads: entries,
    }
}

/// The counts a policy's status and conditions give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) by_state: BTreeMap<WorkloadState, u32>,
    pub(crate) matched: u32,
    pub(crate) up_to_date: u32,
    pub(crate) pending: u32,
}

impl Tally {
    pub(crate) fn of(states: &[WorkloadState]) -> Self {
        let mut t = Self::default();
        for s in states {
            *t.by_state.entry(*s).or_default() += 1;
            t.matched += u32::from(s.is_matched());
            t.up_to_date += u32::from(s.is_up_to_date());
            t.pending += u32::from(s.is_pending());
        }
        t
    }

    fn count(&self, s: WorkloadState) -> u32 {
        self.by_state.get(&s).copied().unwrap_or(0)
    }
}

/// The policy's five conditions (`Ready`, `Conflict`, `RolloutProgressing`, `RolloutStalled`,
/// `RestartStalled`), each keeping its `lastTransitionTime` from `old` while its status stays,
/// else `now`. `restarts_stalled` names the workloads whose broker restart for a new address is
/// past its progress deadline, with their restart records.
pub(crate) fn conditions(
    p: &KafkaExposePolicy,
    old: &[Condition],
    tally: &Tally,
    steps: &Steps,
    conflicts: &[String],
    restarts_stalled: &[String],
    now: &Time,
) -> Vec<Condition> {
    let generation = p.metadata.generation;
    let mut out = Vec::new();
    let mut cond = |type_: &str, ok: bool, reason: &str, message: String| {
        out.push(condition(old, type_, ok, reason, message, generation, now));
    };
    let audit_mode = p.spec.mode == PolicyMode::Audit;
    let stalled: Vec<String> = steps
        .stalled
        .iter()
        .map(|(k, s)| format!("{k} for {s}s"))
        .collect();
    cond(
        "Ready",
        audit_mode || (tally.pending == 0 && stalled.is_empty() && restarts_stalled.is_empty()),
        if audit_mode {
            "Audit"
        } else if !restarts_stalled.is_empty() && tally.pending == 0 {
            "RestartStalled"
        } else if tally.pending == 0 {
            "UpToDate"
        } else {
            "RollingOut"
        },
        if audit_mode {
            format!(
                "Audit: {} workloads matched; nothing is changed",
                tally.matched
            )
        } else {
            format!(
                "{} of {} workloads up to date",
                tally.count(WorkloadState::UpToDate),
                tally.matched
            )
        },
    );
    cond(
        "Conflict",
        !conflicts.is_empty(),
        if conflicts.is_empty() {
            "NoConflict"
        } else {
            "EqualPriority"
        },
        if conflicts.is_empty() {
            "no other Enforce policy of the same priority matches its workloads".into()
        } else {
            conflicts.join("; ")
        },
    );
    cond(
        "RolloutProgressing",
        !steps.rolling.is_empty() || !steps.start.is_empty() || !steps.waiting.is_empty(),
        "Pacing",
        format!(
            "{} rolling, {} waiting (maxConcurrent {})",
            steps.rolling.len() + steps.start.len(),
            steps.waiting.len(),
            p.spec.rollout.max_concurrent
        ),
    );
    // Two deadlines, one shape: what passed it, or that nothing did.
    let deadline = p.spec.rollout.progress_deadline_seconds;
    for (type_, late, in_time, past, sep) in [
        (
            "RolloutStalled",
            &stalled[..],
            "every rollout within its deadline",
            "past progressDeadlineSeconds",
            ", ",
        ),
        (
            "RestartStalled",
            restarts_stalled,
            "every broker restart for a new address within its deadline",
            "a restarted broker is not Ready again within progressDeadlineSeconds",
            "; ",
        ),
    ] {
        let (reason, message) = if late.is_empty() {
            ("InTime", in_time.to_string())
        } else {
            (
                "ProgressDeadlineExceeded",
                format!("{past} {deadline}: {}", late.join(sep)),
            )
        };
        cond(type_, !late.is_empty(), reason, message);
    }
    out
}

/// A condition, keeping its last transition time while its status stays.
fn condition(
    old: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// What a workload is told, once per distinct message, as `(type, reason, note)`: what an Audit
/// policy would do, a tie between Enforce policies, why no stamp could be decided, a paused or
/// `OnDelete` workload.
pub(crate) fn told(settings: &Settings, item: &Item) -> Vec<(EventType, &'static str, String)> {
    let mut out = Vec::new();
    for a in &item.resolution.audits {
        let (bootstrap, brokers) = preview(settings, item, &as_policy_leaves_it(item, &a.policy));
        let mut note = format!(
            "policy {} (Audit) would expose this workload: brokers {}",
            a.policy,
            brokers.join(", ")
        );
        if let Some(b) = bootstrap {
            note.push_str(&format!("; bootstrap {b}"));
        }
        if !a.overridden.is_empty() {
            note.push_str(&format!(
                "; its own annotations override {}",
                a.overridden.join(", ")
            ));
        }
        out.push((EventType::Normal, "PolicyAudit", note));
    }
    if let Live::Policy(a) = &item.resolution.live
        && !a.tied_with.is_empty()
    {
        let note = format!(
            "Enforce policies {} and {} match with the same priority; {} applies (the smallest name). Give one a higher priority.",
            a.policy,
            a.tied_with.join(", "),
            a.policy
        );
        out.push((EventType::Warning, "PolicyConflict", note));
    }
    let owner = item.owner.as_deref().unwrap_or_default();
    if let Some(b) = &item.blocked {
        out.push((
            EventType::Warning,
            b.reason(),
            format!("policy {owner}: {}", b.why()),
        ));
    }
    let restart = match item.found.strategy() {
        Strategy::Paused if item.change_pending() => Some((
            "PolicySkipped",
            "this Deployment is paused; its template is left alone until it is resumed",
        )),
        Strategy::OnDelete
            if item.owner.is_some() && item.found.progress() != Progress::Complete =>
        {
            Some((
                "WaitingForRestart",
                "updateStrategy OnDelete: the template carries the new settings, and each broker takes them when its pod is deleted",
            ))
        }
        _ => None,
    };
    if let Some((reason, what)) = restart {
        out.push((EventType::Normal, reason, format!("policy {owner}: {what}")));
    }
    out
}
