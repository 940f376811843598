//! What each workload's template is to carry: keep, set or clear a policy's stamp, with a block
//! of the policy's port pool where it has one. Pure: the NodePorts in use come in as a set (from
//! the Service cache), never from a call made inside the decision.

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::item::{Blocked, Item};
use crate::api::{KafkaExposePolicy, PolicyMode};
use crate::config::Settings;
use crate::engine::policy::{self, Live};
use crate::engine::workload::{PolicyLayer, Stamp};
use crate::names::keys;

/// Decides each item's layer (what its template is to carry), the policy pacing it, and why it
/// is blocked, if it is. Pool blocks are allocated in the workloads' order, from the ports no
/// Service uses (`node_ports`) and no stamp has claimed; Audit previews are decided after every
/// Enforce allocation, so a preview never takes a block an enforced workload gets.
pub(crate) fn decide_layers(
    settings: &Settings,
    all: &[KafkaExposePolicy],
    items: &mut [Item],
    node_ports: &BTreeSet<u16>,
) {
    items.sort_by_key(|i| i.found.key());
    let mut in_use = node_ports.clone();
    in_use.extend(stamped_blocks(items));
    for item in items.iter_mut() {
        let stamped_by = item.current.as_ref().map(|s| s.policy.clone());
        let (layer, owner, mut blocked) = match &item.resolution.live {
            Live::Policy(a) => {
                let mut values = a.values.clone();
                let mut blocked = None;
                if let Some(pool) = a.pool {
                    let brokers = item.found.workload().replicas;
                    let recorded = item
                        .current
                        .as_ref()
                        .and_then(|s| s.values.get(keys::PORT_BASE)?.parse().ok());
                    if let Err(e) =
                        policy::give_block(&mut values, pool, brokers, recorded, &mut in_use)
                    {
                        blocked = Some(Blocked::PoolExhausted(e.to_string()));
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
                        p.name_any() == q && policy::is_live(p) && p.spec.mode == PolicyMode::Audit
                    }) && matches!(item.resolution.live, Live::Own);
                    if kept {
                        // Enforce switched to Audit: running brokers stay as they are.
                        (PolicyLayer::Keep, Some(q), None)
                    } else {
                        (PolicyLayer::Clear, Some(q), None)
                    }
                }
            },
        };
        let mut w = item.found.workload();
        w.policy = layer.clone();
        if blocked.is_none()
            && let PolicyLayer::Set(_) = layer
            && let Err(e) = w.exposure(settings)
        {
            blocked = Some(Blocked::Invalid(e.to_string()));
        }
        item.wanted = w.wanted_stamp();
        item.layer = layer;
        item.owner = owner;
        item.blocked = blocked;
    }
    for item in items.iter_mut() {
        let brokers = item.found.workload().replicas;
        for a in item.resolution.audits.clone() {
            let mut values = a.values.clone();
            if let Some(pool) = a.pool {
                // An exhausted pool shows in the preview's own error.
                let _ = policy::give_block(&mut values, pool, brokers, None, &mut in_use);
            }
            item.audit_values.insert(a.policy.clone(), values);
        }
    }
}

/// The NodePorts stamped on workloads, whose Services may not exist yet: each block's brokers'
/// ports, and its bootstrap NodePort.
fn stamped_blocks(items: &[Item]) -> BTreeSet<u16> {
    let mut set = BTreeSet::new();
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
    set
}
