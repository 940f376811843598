//! The workloads a policy pass reads, from watches rather than a LIST per pass.
//!
//! - [`WorkloadMetas`]: every StatefulSet and Deployment (in the scope) as metadata, stripped to
//!   its name, namespace, labels (what a selector reads) and resourceVersion. Started with the
//!   first policy, so a cluster without one pays nothing.
//! - [`wanted`] (pure) picks the workloads any live policy selects, and those that carry a
//!   policy's stamp or rollout mark.
//! - [`FullObjects`] holds those read in full, each with the resourceVersion it was read at: a
//!   workload is read again (one GET) only when the watch shows it changed. An idle pass makes
//!   no request.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::warn;

use super::found::Found;
use crate::api::{KafkaExposePolicy, PolicyKind};
use crate::cluster::caches::scoped;
use crate::engine::policy::{self, Candidate};
use crate::names::labels;

/// A workload, by kind, namespace and name.
pub(crate) type Key = (PolicyKind, String, String);

/// One workload's metadata, as the watch keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) kind: PolicyKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) resource_version: String,
}

impl Meta {
    pub(crate) fn key(&self) -> Key {
        (self.kind, self.namespace.clone(), self.name.clone())
    }
}

/// The workloads as metadata, from two watches.
#[derive(Clone)]
pub(crate) struct WorkloadMetas {
    sts: Store<PartialObjectMeta<StatefulSet>>,
    dep: Store<PartialObjectMeta<Deployment>>,
}

impl WorkloadMetas {
    /// Starts the watches (in `scope`, or every namespace); they run until `shutdown`.
    pub(crate) fn watch(
        client: &Client,
        scope: Option<&str>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        let (sts, sw) = reflector::store();
        let (dep, dw) = reflector::store();
        let sts_stream = stream::<StatefulSet>(client, scope, sw);
        let dep_stream = stream::<Deployment>(client, scope, dw);
        tokio::spawn(async move {
            let both = futures::future::join(sts_stream, dep_stream);
            futures::future::select(Box::pin(both), Box::pin(shutdown)).await;
        });
        Self { sts, dep }
    }

    /// Waits until both watches hold their first list.
    pub(crate) async fn wait_synced(&self) {
        let _ =
            futures::future::join(self.sts.wait_until_ready(), self.dep.wait_until_ready()).await;
    }

    /// Every workload the watches hold.
    pub(crate) fn all(&self) -> Vec<Meta> {
        fn metas<K: kube::Resource<DynamicType = ()> + Clone>(
            kind: PolicyKind,
            store: &Store<PartialObjectMeta<K>>,
        ) -> Vec<Meta> {
            store
                .state()
                .iter()
                .map(|m| Meta {
                    kind,
                    namespace: m.metadata.namespace.clone().unwrap_or_default(),
                    name: m.metadata.name.clone().unwrap_or_default(),
                    labels: m.metadata.labels.clone().unwrap_or_default(),
                    resource_version: m.metadata.resource_version.clone().unwrap_or_default(),
                })
                .collect()
        }
        let mut out = metas(PolicyKind::StatefulSet, &self.sts);
        out.extend(metas(PolicyKind::Deployment, &self.dep));
        out
    }
}

/// A metadata watch of kind `K`, stripped to what [`Meta`] keeps.
fn stream<K>(
    client: &Client,
    scope: Option<&str>,
    writer: reflector::store::Writer<PartialObjectMeta<K>>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = scoped(client.clone(), scope);
    watcher(api, watcher::Config::default().page_size(50))
        .default_backoff()
        .modify(|m| {
            let meta = std::mem::take(&mut m.metadata);
            m.metadata = kube::api::ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                labels: meta.labels,
                resource_version: meta.resource_version,
                ..Default::default()
            };
        })
        .reflect(writer)
        .for_each(|e| {
            if let Err(e) = e {
                warn!(error = %e, "workload metadata watch failed; retrying");
            }
            std::future::ready(())
        })
}

/// The workloads any policy may concern: those a live policy selects (by kind, namespace,
/// selector and name), and those carrying a policy's stamp or rollout mark, whatever selects
/// them now.
pub(crate) fn wanted<'a>(
    live: &[KafkaExposePolicy],
    namespace_labels: impl Fn(&str) -> BTreeMap<String, String>,
    metas: &'a [Meta],
) -> Vec<&'a Meta> {
    let mut labels_of: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let none = BTreeMap::new();
    metas
        .iter()
        .filter(|m| {
            if m.labels.contains_key(labels::POLICY) || m.labels.contains_key(labels::ROLLING) {
                return true;
            }
            if live.is_empty() {
                return false;
            }
            let ns_labels = labels_of
                .entry(m.namespace.as_str())
                .or_insert_with(|| namespace_labels(&m.namespace));
            let c = Candidate {
                kind: m.kind,
                namespace: &m.namespace,
                namespace_labels: ns_labels,
                name: &m.name,
                labels: &m.labels,
                own: &none,
            };
            live.iter().any(|p| policy::matches(p, &c).is_some())
        })
        .collect()
}

/// The wanted workloads read in full, each with the resourceVersion it was read at.
#[derive(Default)]
pub(crate) struct FullObjects {
    read: BTreeMap<Key, (String, Found)>,
}

impl FullObjects {
    /// The `wanted` workloads in full: as read before where the resourceVersion is the same,
    /// else read now. Those no longer wanted are forgotten.
    pub(crate) async fn read(
        &mut self,
        client: &Client,
        wanted: &[&Meta],
    ) -> Result<Vec<Found>, kube::Error> {
        let keys: BTreeSet<Key> = wanted.iter().map(|m| m.key()).collect();
        self.read.retain(|k, _| keys.contains(k));
        let mut out = Vec::with_capacity(wanted.len());
        for m in wanted {
            let key = m.key();
            if let Some((rv, f)) = self.read.get(&key)
                && *rv == m.resource_version
            {
                out.push(f.clone());
                continue;
            }
            let found = match m.kind {
                PolicyKind::StatefulSet => {
                    Api::<StatefulSet>::namespaced(client.clone(), &m.namespace)
                        .get_opt(&m.name)
                        .await?
                        .map(|s| Found::Sts(Box::new(s)))
                }
                PolicyKind::Deployment => {
                    Api::<Deployment>::namespaced(client.clone(), &m.namespace)
                        .get_opt(&m.name)
                        .await?
                        .map(|d| Found::Dep(Box::new(d)))
                }
            };
            match found {
                Some(mut f) => {
                    strip(&mut f);
                    let rv = f.meta().resource_version.clone().unwrap_or_default();
                    self.read.insert(key, (rv, f.clone()));
                    out.push(f);
                }
                None => {
                    self.read.remove(&key);
                }
            }
        }
        Ok(out)
    }

    /// Forgets workload `key`, so that the next pass reads it again (after a write of ours).
    pub(crate) fn forget(&mut self, f: &Found) {
        let meta = f.meta();
        self.read.remove(&(
            f.kind(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        ));
    }
}

/// What a pass never reads of a workload: its field managers' history.
fn strip(f: &mut Found) {
    match f {
        Found::Sts(s) => s.metadata.managed_fields = None,
        Found::Dep(d) => d.metadata.managed_fields = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::KafkaExposePolicySpec;

    fn policy(name: &str, yaml: &str) -> KafkaExposePolicy {
        let spec: KafkaExposePolicySpec = serde_saphyr::from_str(yaml).unwrap();
        KafkaExposePolicy::new(name, spec)
    }

    fn meta(kind: PolicyKind, ns: &str, name: &str, labels: &[(&str, &str)]) -> Meta {
        Meta {
            kind,
            namespace: ns.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            resource_version: "1".into(),
        }
    }

    #[test]
    fn a_pass_wants_what_a_live_policy_selects_and_what_carries_a_stamp_or_a_mark() {
        let p = policy(
            "prod",
            "mode: Enforce\nmatch: {namespaceSelector: {matchLabels: {env: prod}}, selector: {matchLabels: {app: kafka}}}\nexposure: {expose: nodeport}\n",
        );
        let metas = vec![
            meta(PolicyKind::StatefulSet, "a", "kafka", &[("app", "kafka")]),
            meta(PolicyKind::StatefulSet, "b", "kafka", &[("app", "kafka")]),
            meta(PolicyKind::Deployment, "a", "kafka", &[("app", "kafka")]),
            meta(PolicyKind::StatefulSet, "a", "web", &[("app", "web")]),
            meta(
                PolicyKind::Deployment,
                "b",
                "old",
                &[(labels::POLICY, "gone")],
            ),
            meta(
                PolicyKind::StatefulSet,
                "b",
                "rolling",
                &[(labels::ROLLING, "prod")],
            ),
        ];
        let ns = |n: &str| -> BTreeMap<String, String> {
            match n {
                "a" => [("env".to_string(), "prod".to_string())].into(),
                _ => BTreeMap::new(),
            }
        };
        let got: Vec<(String, String)> = wanted(std::slice::from_ref(&p), ns, &metas)
            .iter()
            .map(|m| (m.namespace.clone(), m.name.clone()))
            .collect();
        assert_eq!(
            got,
            [("a", "kafka"), ("b", "old"), ("b", "rolling")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // Without a policy, only the stamped and marked ones.
        assert_eq!(wanted(&[], ns, &metas).len(), 2);
    }
}
