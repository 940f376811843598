//! The fallback for node addresses (`advertised-host: node:…`): a bound broker pod whose binding
//! did not carry its node's address (the binding webhook was down, turned off, or had not seen
//! the pod yet) gets the annotation patched in, and its gate lets the broker start. Runs on the
//! leader, from the caches the binding webhook reads ([`super::caches::BindingCache`]).
//!
//! A node without any address of the wanted types is a Warning Event on the broker's workload.
//! A node whose chosen address changed under a running broker of a StatefulSet is
//! [`super::restarts`]' to act on; for any other broker it is a Warning Event saying to restart it
//! (Kafka cannot change `advertised.listeners` without a restart).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::caches::BindingCache;
use super::context::Context;
use super::events::Note;
use crate::engine::binding::{BindingFacts, BindingOutcome, for_broker};
use crate::names::{FIELD_MANAGER, PREFIX, own};

/// What to do about one broker pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bound, and its annotation is what its node has: nothing.
    Nothing,
    /// Bound without its address: set it.
    Annotate(String),
    /// Bound to a node without the wanted types (or not known yet).
    Missing(BindingOutcome),
    /// Its node's chosen address is no longer the one it advertises.
    Changed { advertised: String, now: String },
}

/// Decides the step for a cached broker pod: a pure function of the pod and the node cache.
pub fn step(facts: &dyn BindingFacts, pod: &Pod) -> Step {
    let own = crate::config::own_annotations(pod.metadata.annotations.as_ref());
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Step::Nothing;
    };
    let current = own
        .get(own::EXTERNAL_HOST)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    match (current, for_broker(facts, &own, &node)) {
        (_, BindingOutcome::Unrelated) => Step::Nothing,
        (None, BindingOutcome::Address(a)) => Step::Annotate(a),
        (None, missing) => Step::Missing(missing),
        (Some(c), BindingOutcome::Address(a)) if c != a => Step::Changed {
            advertised: c,
            now: a,
        },
        _ => Step::Nothing,
    }
}

/// Runs until `shutdown`.
/// Checks the cached broker pods every `every`, until `shutdown`.
pub async fn run(
    ctx: std::sync::Arc<Context>,
    cache: BindingCache,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut shutdown = Box::pin(shutdown);
    loop {
        for pod in cache.pods.state() {
            handle(&ctx, &cache, &pod).await;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn handle(ctx: &Context, cache: &BindingCache, pod: &Pod) {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    match step(cache, pod) {
        Step::Nothing => {}
        Step::Annotate(address) => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let patch = json!({"metadata": {"annotations": {
                format!("{PREFIX}{}", own::EXTERNAL_HOST): address
            }}});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match api.patch(&name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => {
                    info!(pod = %name, namespace = %ns, %address, "set the node address the binding did not carry")
                }
                Err(e) => warn!(pod = %name, error = %e, "could not set the node address"),
            }
        }
        Step::Missing(outcome) => {
            if let Some(why) = outcome.explain() {
                let note = format!("broker pod {name}: {why}");
                publish_once(ctx, pod, EventType::Warning, "NodeAddressMissing", &note).await;
            }
        }
        // A StatefulSet's broker is restarted, or reported, by the restarts loop.
        Step::Changed { .. } if super::caches::statefulset_of(pod).is_some() => {}
        Step::Changed { advertised, now } => {
            let note = format!(
                "broker pod {name} advertises {advertised}, but its node's address is now {now}. Kafka cannot change advertised.listeners without a restart: delete the pod (kubectl delete pod -n {ns} {name}) when it suits, and it comes back advertising {now}"
            );
            publish_once(ctx, pod, EventType::Warning, "NodeAddressChanged", &note).await;
        }
    }
}

/// The pod's controller (its StatefulSet), else the pod.
fn workload_ref(pod: &Pod) -> ObjectReference {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match owner {
        Some(o) => ObjectReference {
            api_version: Some(o.api_version.clone()),
            kind: Some(o.kind.clone()),
            name: Some(o.name.clone()),
            namespace: pod.metadata.namespace.clone(),
            uid: Some(o.uid.clone()),
            ..Default::default()
        },
        None => pod.object_ref(&()),
    }
}

/// Says `note` once per pod, on the pod's workload (with the pod as the Event's second object).
async fn publish_once(ctx: &Context, pod: &Pod, type_: EventType, reason: &str, note: &str) {
    let n = Note {
        type_,
        reason,
        note,
        action: "Bind",
        secondary: Some(pod.object_ref(&())),
    };
    let uid = pod.uid().unwrap_or_default();
    if ctx.events.publish_once(&uid, &workload_ref(pod), n).await {
        warn!(pod = %pod.name_any(), reason, "{note}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Facts(BTreeMap<String, Vec<(String, String)>>);

    impl BindingFacts for Facts {
        fn broker(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
            None
        }
        fn node_addresses(&self, node: &str) -> Option<Vec<(String, String)>> {
            self.0.get(node).cloned()
        }
    }

    fn pod(node: Option<&str>, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "kafka-0", "namespace": "k", "annotations": annotations},
            "spec": {"containers": [], "nodeName": node}
        }))
        .unwrap()
    }

    #[test]
    fn bound_brokers_without_their_address_get_it_and_changes_are_reported() {
        let facts = Facts(BTreeMap::from([
            (
                "n1".to_string(),
                vec![
                    ("InternalIP".to_string(), "10.0.0.1".to_string()),
                    ("ExternalIP".to_string(), "203.0.113.1".to_string()),
                ],
            ),
            (
                "private".to_string(),
                vec![("InternalIP".to_string(), "10.0.0.2".to_string())],
            ),
        ]));
        let node = json!({"kafka-expose.io/advertised-host": "node:ExternalIP"});
        assert_eq!(
            step(&facts, &pod(None, node.clone())),
            Step::Nothing,
            "not bound yet"
        );
        assert_eq!(
            step(&facts, &pod(Some("n1"), node.clone())),
            Step::Annotate("203.0.113.1".into())
        );
        let Step::Missing(m) = step(&facts, &pod(Some("private"), node.clone())) else {
            panic!()
        };
        let why = m.explain().unwrap();
        assert!(
            why.contains("node private has no address of the types ExternalIP"),
            "{why}"
        );
        let mut stale = node.clone();
        stale["kafka-expose.io/external-host"] = json!("198.51.100.1");
        assert_eq!(
            step(&facts, &pod(Some("n1"), stale)),
            Step::Changed {
                advertised: "198.51.100.1".into(),
                now: "203.0.113.1".into()
            }
        );
        assert_eq!(
            step(
                &facts,
                &pod(
                    Some("n1"),
                    json!({"kafka-expose.io/advertised-host": "host-ip"})
                )
            ),
            Step::Nothing
        );
    }
}
