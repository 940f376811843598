//! A workload as the policy controller reads it: its kind, its update strategy, and how far its
//! own controller has rolled its current template.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;

use super::kind_name;
use crate::api::PolicyKind;
use crate::engine::rollout::{Progress, Strategy, WorkloadKey};
use crate::engine::workload::{Workload, WorkloadKind};

/// A workload read in full.
#[derive(Clone)]
pub(super) enum Found {
    Sts(Box<StatefulSet>),
    Dep(Box<Deployment>),
}

impl Found {
    pub(super) fn meta(&self) -> &kube::api::ObjectMeta {
        match self {
            Self::Sts(s) => &s.metadata,
            Self::Dep(d) => &d.metadata,
        }
    }

    pub(super) fn kind(&self) -> PolicyKind {
        match self {
            Self::Sts(_) => WorkloadKind::StatefulSet,
            Self::Dep(_) => WorkloadKind::Deployment,
        }
        .policy_kind()
    }

    pub(super) fn key(&self) -> WorkloadKey {
        WorkloadKey {
            kind: kind_name(self.kind()),
            namespace: self.meta().namespace.clone().unwrap_or_default(),
            name: self.meta().name.clone().unwrap_or_default(),
        }
    }

    pub(super) fn workload(&self) -> Workload {
        match self {
            Self::Sts(s) => Workload::from_statefulset(s.as_ref().clone()),
            Self::Dep(d) => Workload::from_deployment(d.as_ref().clone()),
        }
    }

    pub(super) fn object_ref(&self) -> ObjectReference {
        match self {
            Self::Sts(s) => s.object_ref(&()),
            Self::Dep(d) => d.object_ref(&()),
        }
    }

    pub(super) fn strategy(&self) -> Strategy {
        match self {
            Self::Sts(s) => {
                let st = s.spec.update_strategy.as_ref();
                if st.and_then(|u| u.type_.as_deref()) == Some("OnDelete") {
                    return Strategy::OnDelete;
                }
                let partition = st
                    .and_then(|u| u.rolling_update.as_ref()?.partition)
                    .unwrap_or(0)
                    .max(0) as u32;
                Strategy::Rolling { partition }
            }
            Self::Dep(d) => {
                if d.spec.paused == Some(true) {
                    Strategy::Paused
                } else {
                    Strategy::Rolling { partition: 0 }
                }
            }
        }
    }

    /// How far the workload's controller has rolled its current template.
    pub(super) fn progress(&self) -> Progress {
        let complete = match self {
            Self::Sts(s) => {
                let want = s.spec.replicas.unwrap_or(1).max(0);
                let partition = match self.strategy() {
                    Strategy::Rolling { partition } => partition as i32,
                    _ => 0,
                };
                let Some(st) = s.status.as_ref() else {
                    return Progress::Updating;
                };
                st.observed_generation >= s.metadata.generation
                    && st.updated_replicas.unwrap_or(0) >= (want - partition).max(0)
                    && st.ready_replicas.unwrap_or(0) >= want
                    && st.replicas >= want
                    && (partition > 0 || st.current_revision == st.update_revision)
            }
            Self::Dep(d) => {
                let want = d.spec.replicas.unwrap_or(1).max(0);
                let Some(st) = d.status.as_ref() else {
                    return Progress::Updating;
                };
                st.observed_generation >= d.metadata.generation
                    && st.updated_replicas.unwrap_or(0) >= want
                    && st.ready_replicas.unwrap_or(0) >= want
                    && st.replicas.unwrap_or(0) == want
            }
        };
        if complete {
            Progress::Complete
        } else {
            Progress::Updating
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(spec: serde_json::Value, status: serde_json::Value) -> Found {
        Found::Sts(Box::new(
            serde_json::from_value(json!({
                "metadata": {"name": "kafka", "namespace": "a", "generation": 2},
                "spec": spec, "status": status
            }))
            .unwrap(),
        ))
    }

    const SPEC: &str = r#"{"replicas": 3, "selector": {}, "serviceName": "k", "template": {}}"#;

    fn spec_with(extra: serde_json::Value) -> serde_json::Value {
        let mut s: serde_json::Value = serde_json::from_str(SPEC).unwrap();
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    }

    #[test]
    fn a_statefulset_is_done_when_every_replica_runs_the_current_revision_and_is_ready() {
        let done = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                          "readyReplicas": 3, "currentRevision": "r2", "updateRevision": "r2"});
        assert_eq!(
            sts(spec_with(json!({})), done.clone()).progress(),
            Progress::Complete
        );
        let mut stale = done.clone();
        stale["observedGeneration"] = json!(1);
        assert_eq!(
            sts(spec_with(json!({})), stale).progress(),
            Progress::Updating
        );
        let mut rolling = done.clone();
        rolling["currentRevision"] = json!("r1");
        rolling["updatedReplicas"] = json!(2);
        assert_eq!(
            sts(spec_with(json!({})), rolling.clone()).progress(),
            Progress::Updating
        );
        let mut not_ready = done;
        not_ready["readyReplicas"] = json!(2);
        assert_eq!(
            sts(spec_with(json!({})), not_ready).progress(),
            Progress::Updating
        );

        // A partition of 2: done once the one broker above it runs the new revision.
        let partitioned = spec_with(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        );
        let f = sts(partitioned, {
            let mut r = rolling;
            r["updatedReplicas"] = json!(1);
            r["readyReplicas"] = json!(3);
            r
        });
        assert_eq!(f.strategy(), Strategy::Rolling { partition: 2 });
        assert_eq!(f.progress(), Progress::Complete);
    }

    #[test]
    fn on_delete_and_paused_workloads_are_told_apart() {
        let od = sts(
            spec_with(json!({"updateStrategy": {"type": "OnDelete"}})),
            json!({}),
        );
        assert_eq!(od.strategy(), Strategy::OnDelete);
        let paused = Found::Dep(Box::new(
            serde_json::from_value(json!({
                "metadata": {"name": "kafka", "namespace": "a"},
                "spec": {"paused": true, "selector": {}, "template": {}}
            }))
            .unwrap(),
        ));
        assert_eq!(paused.strategy(), Strategy::Paused);
    }
}
