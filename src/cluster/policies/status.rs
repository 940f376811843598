//! What a policy's status says, and what its workloads are told: the status of each matched
//! workload, the conditions, the previews of addresses, and the Events said once.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Item, publish_once};
use crate::api::policy::STATUS_WORKLOADS_CAP;
use crate::api::{KafkaExposePolicy, KafkaExposePolicyStatus, PolicyMode, WorkloadStatus};
use crate::config::{AdvertisedHost, ExposeMode};
use crate::engine::exposure::Decision;
use crate::engine::policy::Live;
use crate::engine::rollout::{self, Progress, Steps, Strategy};
use crate::engine::services;
use crate::engine::workload::{PolicyLayer, Stamp, Workload};
use crate::names::{PREFIX, own};

use crate::cluster::context::Context;

/// The Events a workload is told once per distinct message: what an Audit policy would do, a
/// conflict, an exhausted pool, settings that do not parse, a paused or `OnDelete` workload.
pub(super) async fn announce(ctx: &Context, item: &Item) {
    for a in &item.resolution.audits {
        let mut w = item.found.workload();
        w.policy = PolicyLayer::Set(Stamp {
            policy: a.policy.clone(),
            values: item
                .audit_values
                .get(&a.policy)
                .cloned()
                .unwrap_or_else(|| a.values.clone()),
        });
        let (bootstrap, brokers) = preview(ctx, item, &w).await;
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
        publish_once(ctx, &item.found, EventType::Normal, "PolicyAudit", &note).await;
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
        publish_once(
            ctx,
            &item.found,
            EventType::Warning,
            "PolicyConflict",
            &note,
        )
        .await;
    }
    if let Some((reason, why)) = &item.blocked {
        let note = format!(
            "policy {}: {why}",
            item.owner.as_deref().unwrap_or_default()
        );
        publish_once(ctx, &item.found, EventType::Warning, reason, &note).await;
    }
    let owner = item.owner.as_deref().unwrap_or_default();
    let told = match item.found.strategy() {
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
    if let Some((reason, what)) = told {
        let note = format!("policy {owner}: {what}");
        publish_once(ctx, &item.found, EventType::Normal, reason, &note).await;
    }
}

/// The bootstrap and per-broker addresses a workload gets (or would) with `w`'s settings, and
/// the error when they do not parse.
pub(super) async fn preview(
    ctx: &Context,
    item: &Item,
    w: &Workload,
) -> (Option<String>, Vec<String>) {
    let Ok(Decision::Expose(e)) = w.exposure(&ctx.settings) else {
        return (None, Vec::new());
    };
    let empty = BTreeMap::new();
    let ips = if e.config.advertised_host == AdvertisedHost::HostIp {
        // Listed once per workload and pass, whichever policies preview it.
        item.host_ips
            .get_or_init(|| async {
                let ns = item.found.meta().namespace.clone().unwrap_or_default();
                ctx.broker_host_ips(w, &ns).await.unwrap_or_default()
            })
            .await
    } else {
        &empty
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
                ips.get(&r.pod).map(String::as_str),
            )
        })
        .collect();
    let bootstrap = match (e.config.mode, e.config.bootstrap_node_port) {
        (ExposeMode::NodePort, Some(port)) if !ips.is_empty() => Some(
            ips.values()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|ip| format!("{ip}:{port}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    };
    (bootstrap, brokers)
}

/// A policy's status from this pass.
pub(super) async fn status_of(
    ctx: &Context,
    p: &KafkaExposePolicy,
    items: &[Item],
    steps: &Steps,
) -> KafkaExposePolicyStatus {
    let name = p.name_any();
    let mut entries = Vec::new();
    let mut conflicts = Vec::new();
    for item in items {
        let key = item.found.key();
        let ns = key.namespace.clone();
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
            Live::Policy(a) if a.policy != name => policy_matches(p, item)
                .then(|| format!("policy {} has a higher priority and applies", a.policy)),
            _ => None,
        };
        let (state, reason, overridden) = if let Some(a) = audit {
            ("Matched", a.reason.clone(), a.overridden.clone())
        } else if let Some(a) = enforced {
            if !a.tied_with.is_empty() {
                conflicts.push(format!(
                    "{key}: tied with {} at priority {}",
                    a.tied_with.join(", "),
                    p.spec.priority
                ));
            }
            let state = if let Some((r, _)) = &item.blocked {
                if r == "PortPoolExhausted" {
                    "PoolExhausted"
                } else {
                    "Invalid"
                }
            } else if steps.stalled.iter().any(|(k, _)| k == &key) {
                "Stalled"
            } else if steps.rolling.contains(&key) || steps.start.contains(&key) {
                if item.found.strategy() == Strategy::OnDelete {
                    "WaitingForRestart"
                } else {
                    "Rolling"
                }
            } else if item.found.strategy() == Strategy::Paused && item.change_pending() {
                "Skipped"
            } else if item.change_pending() {
                "Pending"
            } else if item.found.strategy() == Strategy::OnDelete
                && item.found.progress() != Progress::Complete
            {
                "WaitingForRestart"
            } else {
                "UpToDate"
            };
            let mut reason = a.reason.clone();
            if let Some((_, why)) = &item.blocked {
                reason = why.clone();
            }
            if let Strategy::Rolling { partition } = item.found.strategy()
                && partition > 0
            {
                reason.push_str(&format!(
                    "; partition {partition}: brokers below ordinal {partition} keep their configuration"
                ));
            }
            (state, reason, a.overridden.clone())
        } else if stamped {
            match item.layer {
                PolicyLayer::Keep => (
                    "Kept",
                    "enforced earlier; the policy is in Audit mode, so its brokers keep their settings".into(),
                    Vec::new(),
                ),
                _ => ("Reverting", "no longer selected, or excluded".into(), Vec::new()),
            }
        } else if let Some(why) = superseded {
            ("Superseded", why, Vec::new())
        } else if policy_matches(p, item) {
            match &item.resolution.live {
                Live::Excluded(why) => ("Excluded", why.clone(), Vec::new()),
                _ => continue,
            }
        } else {
            continue;
        };
        let mut w = item.found.workload();
        w.policy = match audit {
            Some(a) => PolicyLayer::Set(Stamp {
                policy: name.clone(),
                values: item
                    .audit_values
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| a.values.clone()),
            }),
            None => item.layer.clone(),
        };
        let published = item.found.meta().annotations.as_ref().and_then(|a| {
            a.get(&format!("{PREFIX}{}", own::BOOTSTRAP_SERVERS))
                .cloned()
        });
        let (bootstrap, brokers) = if matches!(state, "Superseded" | "Excluded" | "Reverting") {
            (None, Vec::new())
        } else {
            preview(ctx, item, &w).await
        };
        entries.push(WorkloadStatus {
            namespace: ns,
            name: key.name.clone(),
            kind: key.kind.to_string(),
            state: state.to_string(),
            bootstrap: if state == "UpToDate" {
                published.or(bootstrap)
            } else {
                bootstrap
            },
            brokers,
            overridden,
            reason: Some(reason),
        });
    }
    let tally: BTreeMap<String, u32> = rollout::tally(entries.iter().map(|e| e.state.as_str()))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let count = |s: &str| tally.get(s).copied().unwrap_or(0);
    let matched = entries
        .iter()
        .filter(|e| !matches!(e.state.as_str(), "Reverting"))
        .count() as u32;
    let pending =
        count("Pending") + count("Rolling") + count("Stalled") + count("WaitingForRestart");
    let total = entries.len() as u32;
    let old = p.status.clone().unwrap_or_default();
    let generation = p.metadata.generation;
    let mut conditions = Vec::new();
    let mut cond = |type_: &str, ok: bool, reason: &str, message: String| {
        conditions.push(condition(
            &old.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
        ));
    };
    let audit_mode = p.spec.mode == PolicyMode::Audit;
    let stalled: Vec<String> = steps
        .stalled
        .iter()
        .map(|(k, s)| format!("{k} for {s}s"))
        .collect();
    cond(
        "Ready",
        audit_mode || (pending == 0 && stalled.is_empty()),
        if audit_mode {
            "Audit"
        } else if pending == 0 {
            "UpToDate"
        } else {
            "RollingOut"
        },
        if audit_mode {
            format!("Audit: {matched} workloads matched; nothing is changed")
        } else {
            format!("{} of {matched} workloads up to date", count("UpToDate"))
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
    cond(
        "RolloutStalled",
        !stalled.is_empty(),
        if stalled.is_empty() {
            "InTime"
        } else {
            "ProgressDeadlineExceeded"
        },
        if stalled.is_empty() {
            "every rollout within its deadline".into()
        } else {
            format!(
                "past progressDeadlineSeconds {}: {}",
                p.spec.rollout.progress_deadline_seconds,
                stalled.join(", ")
            )
        },
    );
    entries.truncate(STATUS_WORKLOADS_CAP);
    KafkaExposePolicyStatus {
        observed_generation: generation,
        conditions,
        matched,
        up_to_date: count("UpToDate") + count("Kept"),
        pending,
        workloads_total: total,
        workloads: entries,
    }
}

/// Whether policy `p` selects the item's workload, or once stamped it.
fn policy_matches(p: &KafkaExposePolicy, item: &Item) -> bool {
    let name = p.name_any();
    item.matched_by.contains(&name) || item.current.as_ref().is_some_and(|c| c.policy == name)
}

/// A condition, keeping its last transition time while its status stays.
fn condition(
    old: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

pub(super) async fn write_status(
    api: &Api<KafkaExposePolicy>,
    p: &KafkaExposePolicy,
    status: KafkaExposePolicyStatus,
) -> Result<(), kube::Error> {
    if p.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let body = json!({"status": status});
    match api
        .patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}
