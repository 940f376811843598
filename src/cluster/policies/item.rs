//! One workload in a policy pass: what it is, which policies select it, what applies, and what
//! its template is to carry. Built from what the caches hold, without I/O.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::found::Found;
use crate::api::{KafkaExposePolicy, WorkloadState};
use crate::engine::policy::{self, Candidate};
use crate::engine::restart::Record;
use crate::engine::rollout::{self, Tracked};
use crate::engine::workload::{PolicyLayer, Stamp};
use crate::names::{PREFIX, own};

/// Why no stamp could be decided for a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// The policy's port pool has no block for it.
    PoolExhausted(String),
    /// The settings it would get do not make a valid configuration.
    Invalid(String),
}

impl Blocked {
    /// The Event's reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::PoolExhausted(_) => "PortPoolExhausted",
            Self::Invalid(_) => "InvalidConfiguration",
        }
    }

    pub(crate) fn why(&self) -> &str {
        match self {
            Self::PoolExhausted(w) | Self::Invalid(w) => w,
        }
    }

    pub(crate) fn state(&self) -> WorkloadState {
        match self {
            Self::PoolExhausted(_) => WorkloadState::PoolExhausted,
            Self::Invalid(_) => WorkloadState::Invalid,
        }
    }
}

/// One workload in a pass.
pub(crate) struct Item {
    pub(crate) found: Found,
    pub(crate) resolution: policy::Resolution,
    /// What the template is to carry, and the policy pacing the change.
    pub(crate) layer: PolicyLayer,
    pub(crate) owner: Option<String>,
    pub(crate) blocked: Option<Blocked>,
    pub(crate) current: Option<Stamp>,
    pub(crate) wanted: Option<Stamp>,
    pub(crate) rolling: Option<(String, i64)>,
    /// Its broker restart for a new address, as the restarts record it on the workload.
    pub(crate) restart: Option<Record>,
    /// What each matching Audit policy would stamp, with its pool's block, by policy name.
    pub(crate) audit_values: BTreeMap<String, BTreeMap<String, String>>,
    /// The live policies that select it.
    pub(crate) matched_by: BTreeSet<String>,
    /// Its brokers' node IPs by pod name, where a preview needs them (read before the status is
    /// decided).
    pub(crate) host_ips: BTreeMap<String, String>,
}

impl Item {
    /// The workload `found` under the `live` policies, in a namespace with these labels.
    pub(crate) fn new(
        found: Found,
        live: &[KafkaExposePolicy],
        namespace_labels: &BTreeMap<String, String>,
    ) -> Self {
        let meta = found.meta();
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let own_ann = crate::config::user_annotations(meta.annotations.as_ref());
        let candidate = Candidate {
            kind: found.kind(),
            namespace: &ns,
            namespace_labels,
            name: &name,
            labels: &labels,
            own: &own_ann,
        };
        let resolution = policy::resolve(live, &candidate);
        let matched_by = live
            .iter()
            .filter(|p| policy::matches(p, &candidate).is_some())
            .map(|p| p.name_any())
            .collect();
        let rolling = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{PREFIX}{}", own::ROLLOUT)))
            .and_then(|v| rollout::read_mark(v));
        let restart = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{PREFIX}{}", own::RESTART)))
            .and_then(|v| Record::parse(v));
        let current = found.workload().stamp();
        Self {
            found,
            resolution,
            layer: PolicyLayer::Keep,
            owner: None,
            blocked: None,
            current,
            wanted: None,
            rolling,
            restart,
            audit_values: BTreeMap::new(),
            matched_by,
            host_ips: BTreeMap::new(),
        }
    }

    /// Whether its template is to change, and can.
    pub(crate) fn change_pending(&self) -> bool {
        self.blocked.is_none()
            && !matches!(self.layer, PolicyLayer::Keep)
            && self.current != self.wanted
    }

    /// What the rollout's pacing knows of it.
    pub(crate) fn tracked(&self) -> Tracked {
        Tracked {
            key: self.found.key(),
            owner: self.owner.clone(),
            change_pending: self.change_pending(),
            strategy: self.found.strategy(),
            progress: self.found.progress(),
            rolling: self.rolling.clone(),
            restarting: self
                .restart_under()
                .filter(|(_, r)| r.in_flight().is_some())
                .map(|(policy, _)| policy.to_string()),
        }
    }

    /// Its broker restart's record, with the policy whose settings it runs (the one whose slots
    /// the restart counts against).
    pub(crate) fn restart_under(&self) -> Option<(&str, &Record)> {
        Some((
            self.current.as_ref()?.policy.as_str(),
            self.restart.as_ref()?,
        ))
    }

    /// Whether policy `name` selects it, or once stamped it.
    pub(crate) fn concerns(&self, name: &str) -> bool {
        self.matched_by.contains(name) || self.current.as_ref().is_some_and(|c| c.policy == name)
    }
}
