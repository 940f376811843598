//! What the leader's controllers share (the workload reconciler, the policy controller and the
//! node-address fallback): the client, the settings, the caches, the Event announcer; and the
//! cluster layer's one error type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::caches::ServiceCache;
use super::events::Announcer;
use crate::config::Settings;
use crate::engine::workload::Workload;
use crate::metrics::Metrics;
use crate::names::{PREFIX, own};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    #[error("{failed} of the workload's Services and certificates could not be applied: {first}")]
    Services { failed: usize, first: String },
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "api",
            Self::Services { .. } => "service_apply",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How often the leader's loops look again. The defaults suit a cluster; the tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// Policy passes while a rollout moves: the next workload starts within this of the last
    /// one's end.
    pub policy_active: Duration,
    /// Policy passes otherwise (a policy's change wakes the loop at once).
    pub policy_idle: Duration,
    /// How long a burst of policy writes settles before the pass it wakes.
    pub policy_settle: Duration,
    /// How often the cached broker pods are checked for a missing node address.
    pub node_fallback: Duration,
    /// How the brokers whose address changed are restarted.
    pub restarts: RestartSettings,
}

impl Default for Periods {
    fn default() -> Self {
        Self {
            policy_active: Duration::from_secs(3),
            policy_idle: Duration::from_secs(30),
            policy_settle: Duration::from_millis(200),
            node_fallback: Duration::from_secs(2),
            restarts: RestartSettings::default(),
        }
    }
}

/// How the restarts are paced where no policy says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartSettings {
    /// How often the cached brokers are compared.
    pub every: Duration,
    /// How long a restarted broker is Ready before the next one goes.
    pub settle: Duration,
    /// How long a restarted broker may take to be Ready again (a policy's
    /// `rollout.progressDeadlineSeconds` wins).
    pub progress_deadline: Duration,
}

impl Default for RestartSettings {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(5),
            settle: Duration::from_secs(30),
            progress_deadline: Duration::from_secs(600),
        }
    }
}

/// What every controller on the leader shares.
pub struct Context {
    pub client: Client,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub events: Announcer,
    /// The managed Services, as the watch last saw them.
    pub services: ServiceCache,
    /// How long a LoadBalancer may stay without an address before a Warning Event.
    pub lb_pending_warning: Duration,
    /// The exposed broker pods, as the binding cache holds them (with the notes of steps that
    /// kept the chart's configuration).
    pub broker_pods: kube::runtime::reflector::Store<Pod>,
}

impl Context {
    /// The host each of the workload's broker pods is reached at on its node, by pod name (see
    /// [`broker_host`]; `node_addressed` under `advertised-host: node:…`).
    pub async fn broker_host_ips(
        &self,
        w: &Workload,
        ns: &str,
        node_addressed: bool,
    ) -> Result<BTreeMap<String, String>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let list = pods
            .list(&ListParams::default().labels(&selector(w)))
            .await
            .map_err(Error::Kube)?;
        Ok(list
            .items
            .iter()
            .filter_map(|p| Some((p.name_any(), broker_host(p, node_addressed)?)))
            .collect())
    }
}

/// The host a broker pod is reached at on its node, as it advertises it: under
/// `advertised-host: node:<types>` (`node_addressed`), the node address it was given
/// (`external-host`, which can be the node's ExternalIP), else its node's IP (`status.hostIP`,
/// the InternalIP). `None` while the pod has neither. A bootstrap list made of these is what the
/// brokers advertise. Under `node:`, a pod without a given address is left out rather than put
/// at its node's IP: it is one of an older revision during a roll (or not bound yet), and its
/// node's IP is not the address type the brokers advertise.
pub fn broker_host(p: &Pod, node_addressed: bool) -> Option<String> {
    let given = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{PREFIX}{}", own::EXTERNAL_HOST)))
        .map(|h| h.trim())
        .filter(|h| !h.is_empty());
    let host_ip = p
        .status
        .as_ref()
        .and_then(|s| s.host_ip.as_deref())
        .filter(|ip| !ip.is_empty());
    given
        .or(host_ip.filter(|_| !node_addressed))
        .map(str::to_string)
}

/// The workload's label selector, as a list call takes it.
pub fn selector(w: &Workload) -> String {
    w.selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(annotations: serde_json::Value, host_ip: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "kafka-0", "annotations": annotations},
            "status": {"hostIP": host_ip},
        }))
        .unwrap()
    }

    #[test]
    fn a_broker_is_reached_at_the_node_address_it_was_given_else_at_its_node_ip() {
        let given = json!({"kafka-expose.io/external-host": "203.0.113.7"});
        for node_addressed in [false, true] {
            assert_eq!(
                broker_host(&pod(given.clone(), Some("10.0.0.5")), node_addressed).as_deref(),
                Some("203.0.113.7")
            );
            assert_eq!(
                broker_host(&pod(given.clone(), None), node_addressed).as_deref(),
                Some("203.0.113.7")
            );
            assert_eq!(broker_host(&pod(json!({}), Some("")), node_addressed), None);
        }
        assert_eq!(
            broker_host(&pod(json!({}), Some("10.0.0.5")), false).as_deref(),
            Some("10.0.0.5")
        );
        let blank = json!({"kafka-expose.io/external-host": " "});
        assert_eq!(
            broker_host(&pod(blank.clone(), Some("10.0.0.5")), false).as_deref(),
            Some("10.0.0.5")
        );
    }

    #[test]
    fn under_node_addresses_a_pod_without_its_given_address_is_left_out_of_the_bootstrap() {
        // An older revision's pod mid-roll, or one not bound yet: its node's IP (the InternalIP)
        // is not the address type the brokers advertise.
        assert_eq!(broker_host(&pod(json!({}), Some("10.0.0.5")), true), None);
        let blank = json!({"kafka-expose.io/external-host": " "});
        assert_eq!(broker_host(&pod(blank, Some("10.0.0.5")), true), None);
    }
}
