//! The requests kafka-expose makes to the API server, counted by verb and resource as the API
//! server's audit log names them (`list`, `watch`, `get`, `patch`, …): the metric
//! `kafka_expose_api_requests_total`, and the figures in BENCHMARKS.md.
//!
//! A tower layer on the client's stack counts each request as it leaves; nothing is parsed but
//! the request line.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::ApiRequestLabels;

/// The verb and resource of a request to the API server, from its method, path and query.
///
/// The path is `/api/v1/…` or `/apis/<group>/<version>/…`, then `namespaces/<ns>/` for a
/// namespaced resource, then `<resource>[/<name>[/<subresource>]]`
/// (<https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris>). A GET of a
/// collection is a `list`, or a `watch` with `watch=true`.
pub fn classify(method: &str, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let (resource, name, sub) = (rest.first(), rest.get(1), rest.get(2));
    let resource = match (resource, sub) {
        (Some(r), Some(s)) => format!("{r}/{s}"),
        (Some(r), None) => (*r).to_string(),
        (None, _) => "other".to_string(),
    };
    let watching =
        query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match (method, name.is_some()) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

/// A client for `config` whose every request is counted in `requests`, under `component`.
pub fn counted_client(
    config: kube::Config,
    requests: Family<ApiRequestLabels, Counter>,
    component: &'static str,
) -> kube::Result<kube::Client> {
    // No retry hidden in the client: kube's default retries a 429 up to 15 times with a backoff
    // growing to 1000 s, and a 429 is also the Eviction API's answer when a PodDisruptionBudget
    // refuses (not transient: the restart must see it and say so). Every caller here already
    // retries on its own terms: a reconcile requeues, a watch backs off, admission answers fast.
    let mut config = config;
    config.default_retry = false;
    let layer =
        tower::util::MapRequestLayer::new(move |req: hyper::Request<kube::client::Body>| {
            let (verb, resource) =
                classify(req.method().as_str(), req.uri().path(), req.uri().query());
            requests
                .get_or_create(&ApiRequestLabels {
                    component: component.to_string(),
                    verb: verb.to_string(),
                    resource,
                })
                .inc();
            req
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn counted_requests_are_read_back_by_component_verb_and_resource() {
        let m = Metrics::default();
        for (component, verb, n) in [("serve", "list", 2), ("policies", "get", 1)] {
            for _ in 0..n {
                m.api_requests
                    .get_or_create(&ApiRequestLabels {
                        component: component.into(),
                        verb: verb.into(),
                        resource: "statefulsets".into(),
                    })
                    .inc();
            }
        }
        let got = m.api_requests_so_far();
        let key = |c: &str, v: &str| (c.to_string(), v.to_string(), "statefulsets".to_string());
        assert_eq!(got.get(&key("serve", "list")), Some(&2));
        assert_eq!(got.get(&key("policies", "get")), Some(&1));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn requests_are_named_as_the_audit_log_names_them() {
        let cases = [
            (
                "GET",
                "/apis/apps/v1/statefulsets",
                Some("limit=50"),
                "list",
                "statefulsets",
            ),
            (
                "GET",
                "/apis/apps/v1/namespaces/a/statefulsets",
                Some("labelSelector=x&watch=true&resourceVersion=9"),
                "watch",
                "statefulsets",
            ),
            (
                "GET",
                "/apis/apps/v1/namespaces/a/deployments/kafka",
                None,
                "get",
                "deployments",
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/a/statefulsets/kafka",
                None,
                "patch",
                "statefulsets",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods",
                Some("labelSelector=app%3Dkafka"),
                "list",
                "pods",
            ),
            (
                "GET",
                "/api/v1/namespaces",
                Some("watch=1"),
                "watch",
                "namespaces",
            ),
            ("GET", "/api/v1/namespaces/a", None, "get", "namespaces"),
            (
                "PATCH",
                "/apis/kafka-expose.io/v1alpha1/kafkaexposepolicies/prod/status",
                None,
                "patch",
                "kafkaexposepolicies/status",
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/a/events",
                None,
                "create",
                "events",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/a/services/kafka-0-external",
                None,
                "delete",
                "services",
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/k/leases/kafka-expose",
                None,
                "update",
                "leases",
            ),
            ("GET", "/version", None, "list", "other"),
        ];
        for (method, path, query, verb, resource) in cases {
            assert_eq!(
                classify(method, path, query),
                (verb, resource.to_string()),
                "{method} {path}?{query:?}"
            );
        }
    }
}
