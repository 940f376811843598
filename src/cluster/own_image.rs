//! The image kafka-expose itself runs as, read from its own pod, for the init containers it puts
//! into broker pods (the properties adapter's and the `node:` gate).
//!
//! Reading it from the pod follows every way an install is retagged: `kustomize edit set
//! image`, an image updater, a registry mirror that rewrites pod images at admission. A copy of
//! the image name in a flag or variable would not follow them, and brokers would keep pulling the
//! old name. An explicit `--patcher-image` (or `KAFKA_EXPOSE_PATCHER_IMAGE`) still wins.

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};

/// The name of the server's container in the install's pod template.
pub const CONTAINER: &str = "kafka-expose";

/// The image of the container named [`CONTAINER`], else of the pod's only container.
pub fn image_of(pod: &Pod) -> Option<String> {
    let containers = &pod.spec.as_ref()?.containers;
    let own = containers
        .iter()
        .find(|c| c.name == CONTAINER)
        .or(match containers.as_slice() {
            [only] => Some(only),
            _ => None,
        })?;
    own.image.clone().filter(|i| !i.is_empty())
}

/// Reads pod `name` of `namespace` (by a list with a field selector, which the install's `list`
/// on pods already allows) and returns its image.
pub async fn read(client: &Client, namespace: &str, name: &str) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .map_err(|e| format!("reading pod {namespace}/{name}: {e}"))?;
    let pod = list
        .items
        .first()
        .ok_or_else(|| format!("no pod {namespace}/{name}"))?;
    image_of(pod).ok_or_else(|| {
        format!("pod {namespace}/{name} has no container {CONTAINER} (and not exactly one)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )
        .unwrap()
    }

    #[test]
    fn the_servers_own_container_gives_the_image_even_beside_a_sidecar() {
        let p = pod(json!([
            {"name": "istio-proxy", "image": "istio/proxyv2:1.20"},
            {"name": "kafka-expose", "image": "registry.example/kx@sha256:ab"}
        ]));
        assert_eq!(
            image_of(&p).as_deref(),
            Some("registry.example/kx@sha256:ab")
        );
    }

    #[test]
    fn a_lone_container_of_another_name_is_taken_and_two_unknown_ones_are_not() {
        let one = pod(json!([{"name": "server", "image": "mirror.example/kx:1"}]));
        assert_eq!(image_of(&one).as_deref(), Some("mirror.example/kx:1"));
        let two = pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
        assert_eq!(image_of(&two), None);
    }
}
