//! `expose=gateway`: the TLSRoutes that put every broker behind the cluster's Gateway, a pure
//! function from an exposed workload to complete objects, and the reading of a route's status.
//!
//! - per broker, a TLSRoute `<workload>-<ordinal>-external` whose `hostnames` is the broker's own
//!   DNS name and whose one rule's backend is the ClusterIP Service of the same name, which
//!   selects that pod alone ([`super::services`]);
//! - with `bootstrap-host`, a TLSRoute `<workload>-external-bootstrap` for that name, whose
//!   backend is the bootstrap Service over every broker;
//! - each route's `parentRefs` is the Gateway, with the listener's `sectionName` where one is
//!   given; without one the route attaches to every listener of the Gateway that admits it.
//!
//! The Gateway passes TLS through (its listener's `tls.mode: Passthrough`) and picks the route by
//! the SNI name the client sent, so each broker presents its own certificate, for its own name
//! (`external-tls`, required). The group's served version is found by discovery: `v1` from
//! Gateway API v1.5, else the experimental channel's `v1alpha3` (v1.4) or `v1alpha2`.

use serde_json::{Value, json};

use super::exposure::Exposure;
use super::services::{self, Routes, managed_labels};
use super::workload::Workload;
use crate::config::GatewayRef;
use crate::names::{bootstrap_service_name, labels};

/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The kind kafka-expose makes.
pub const KIND: &str = "TLSRoute";
/// Its plural, for the API path.
pub const PLURAL: &str = "tlsroutes";
/// The versions that serve TLSRoute, newest first: the first one the API server serves is used.
pub const VERSIONS: [&str; 3] = ["v1", "v1alpha3", "v1alpha2"];

/// The annotation the reconciler puts on a broker's backend Service: what the Gateway said of
/// that broker's route (see [`Acceptance::to_annotation`]). The Pod webhook reads it from the
/// Service cache it already holds, and holds the broker until it says `accepted`.
pub const ROUTE_ANNOTATION: &str = "kafka-expose.io/route";

/// The TLSRoutes of workload `w` exposed through a Gateway, as `version` serves them.
pub fn plan(w: &Workload, e: &Exposure<'_>, routes: &Routes, version: &str) -> Vec<Value> {
    let cfg = &e.config;
    let Some(gateway) = cfg.gateway.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<Value> = routes
        .brokers
        .iter()
        .filter_map(|r| {
            let host = services::configured_host(cfg, r, w)?;
            let mut own = managed_labels(w);
            own.insert(labels::ORDINAL.into(), r.ordinal.to_string());
            Some(route(w, gateway, version, &r.service, own, &host, r.port))
        })
        .collect();
    if let Some(host) = cfg.bootstrap_host.as_deref()
        && !routes.brokers.is_empty()
    {
        let mut own = managed_labels(w);
        own.insert(labels::ROLE.into(), "bootstrap".into());
        out.push(route(
            w,
            gateway,
            version,
            &bootstrap_service_name(&w.name),
            own,
            host,
            cfg.advertised_port.into(),
        ));
    }
    out
}

/// One TLSRoute: `host` to port `port` of Service `service` (of the same name).
fn route(
    w: &Workload,
    gateway: &GatewayRef,
    version: &str,
    service: &str,
    own_labels: std::collections::BTreeMap<String, String>,
    host: &str,
    port: u32,
) -> Value {
    let mut parent = json!({
        "group": GROUP,
        "kind": "Gateway",
        "namespace": gateway.namespace,
        "name": gateway.name,
    });
    if let Some(section) = &gateway.section {
        parent["sectionName"] = json!(section);
    }
    let mut metadata = json!({
        "name": service,
        "namespace": w.namespace,
        "labels": own_labels,
    });
    if let Some(owners) = services::owner_references(w) {
        metadata["ownerReferences"] = serde_json::to_value(owners).unwrap_or(Value::Null);
    }
    json!({
        "apiVersion": format!("{GROUP}/{version}"),
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "parentRefs": [parent],
            "hostnames": [host],
            "rules": [{
                // `group` left to its default, the core group: a 1.20 API server reads an
                // empty string in an apply as null, and refuses it.
                "backendRefs": [{
                    "kind": "Service",
                    "name": service,
                    "port": port,
                }],
            }],
        },
    })
}

/// What the Gateway said of a route, from its `status.parents` entry for that Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// `Accepted: True` (and no `ResolvedRefs: False`): the Gateway routes it.
    Accepted,
    /// `Accepted: False`, or `ResolvedRefs: False`: the Gateway's own reason and message.
    Refused { reason: String, message: String },
    /// No word from the Gateway's controller yet (no status for this parent).
    Pending,
}

impl Acceptance {
    /// Whether the broker may start.
    pub fn is_accepted(&self) -> bool {
        *self == Self::Accepted
    }

    /// The value of [`ROUTE_ANNOTATION`]: `accepted`, `pending`, or `refused: <reason>: <message>`.
    pub fn to_annotation(&self) -> String {
        match self {
            Self::Accepted => "accepted".into(),
            Self::Pending => "pending".into(),
            Self::Refused { reason, message } => format!("refused: {reason}: {message}"),
        }
    }

    /// Reads [`ROUTE_ANNOTATION`] back; anything else is [`Acceptance::Pending`].
    pub fn from_annotation(v: &str) -> Self {
        if v == "accepted" {
            return Self::Accepted;
        }
        match v.strip_prefix("refused: ") {
            Some(rest) => {
                let (reason, message) = rest.split_once(": ").unwrap_or((rest, ""));
                Self::Refused {
                    reason: reason.into(),
                    message: message.into(),
                }
            }
            None => Self::Pending,
        }
    }

    /// For people: what holds the broker, or nothing.
    pub fn describe(&self, route: &str, gateway: &GatewayRef) -> String {
        let gw = format!("Gateway {}/{}", gateway.namespace, gateway.name);
        match self {
            Self::Accepted => format!("TLSRoute {route} is Accepted by {gw}"),
            Self::Pending => format!(
                "TLSRoute {route} has no status from {gw} yet: is a Gateway controller running for its class?"
            ),
            Self::Refused { reason, message } => {
                format!("TLSRoute {route} is not accepted by {gw}: {reason}: {message}")
            }
        }
    }
}

/// What the Gateway `gateway` said of `route` (a TLSRoute as the API server returns it).
pub fn acceptance(route: &Value, gateway: &GatewayRef) -> Acceptance {
    let parents = route["status"]["parents"].as_array();
    let ours = parents.into_iter().flatten().find(|p| {
        let r = &p["parentRef"];
        r["name"] == gateway.name.as_str()
            && r["namespace"]
                .as_str()
                .is_none_or(|ns| ns == gateway.namespace)
            && match &gateway.section {
                Some(s) => r["sectionName"].as_str().is_none_or(|x| x == s),
                None => true,
            }
    });
    let Some(ours) = ours else {
        return Acceptance::Pending;
    };
    let conditions = ours["conditions"].as_array().cloned().unwrap_or_default();
    let find = |t: &str| conditions.iter().find(|c| c["type"] == t);
    let refused = |c: &Value| Acceptance::Refused {
        reason: c["reason"].as_str().unwrap_or("Unknown").to_string(),
        message: c["message"].as_str().unwrap_or_default().to_string(),
    };
    match find("Accepted") {
        Some(c) if c["status"] == "True" => match find("ResolvedRefs") {
            Some(r) if r["status"] == "False" => refused(r),
            _ => Acceptance::Accepted,
        },
        Some(c) if c["status"] == "False" => refused(c),
        _ => Acceptance::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::workload::Workload;

    fn gw(section: Option<&str>) -> GatewayRef {
        GatewayRef {
            namespace: "infra".into(),
            name: "public".into(),
            section: section.map(str::to_string),
        }
    }

    fn with_parent(conditions: Value) -> Value {
        json!({"status": {"parents": [
            {"parentRef": {"name": "other", "namespace": "infra"}, "controllerName": "x",
             "conditions": [{"type": "Accepted", "status": "True"}]},
            {"parentRef": {"group": GROUP, "kind": "Gateway", "name": "public", "namespace": "infra",
                           "sectionName": "kafka"},
             "controllerName": "example.com/gateway", "conditions": conditions}
        ]}})
    }

    #[test]
    fn a_route_is_accepted_only_by_its_own_gateways_word() {
        let g = gw(Some("kafka"));
        assert_eq!(acceptance(&json!({}), &g), Acceptance::Pending);
        let ok = with_parent(json!([{"type": "Accepted", "status": "True"},
                                     {"type": "ResolvedRefs", "status": "True"}]));
        assert_eq!(acceptance(&ok, &g), Acceptance::Accepted);
        let no = with_parent(json!([{"type": "Accepted", "status": "False",
            "reason": "NotAllowedByListeners",
            "message": "no listener allows routes from namespace kafka"}]));
        let said = acceptance(&no, &g);
        assert_eq!(
            said,
            Acceptance::Refused {
                reason: "NotAllowedByListeners".into(),
                message: "no listener allows routes from namespace kafka".into()
            }
        );
        assert_eq!(Acceptance::from_annotation(&said.to_annotation()), said);
        let refs = with_parent(json!([{"type": "Accepted", "status": "True"},
            {"type": "ResolvedRefs", "status": "False", "reason": "RefNotPermitted",
             "message": "backend in another namespace without a ReferenceGrant"}]));
        assert!(
            matches!(acceptance(&refs, &g), Acceptance::Refused { reason, .. } if reason == "RefNotPermitted")
        );
        // Another Gateway's acceptance is not this one's.
        let other = GatewayRef {
            name: "internal".into(),
            ..gw(None)
        };
        assert_eq!(acceptance(&ok, &other), Acceptance::Pending);
        assert_eq!(Acceptance::from_annotation("pending"), Acceptance::Pending);
    }

    #[test]
    fn each_broker_gets_a_route_for_its_own_name_to_its_own_service() {
        let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "kafka", "namespace": "streaming", "uid": "u-1",
                "annotations": {
                    "kafka-expose.io/expose": "gateway",
                    "kafka-expose.io/gateway": "infra/public/kafka",
                    "kafka-expose.io/advertised-host": "template:kafka-{ordinal}.example.com",
                    "kafka-expose.io/bootstrap-host": "kafka.example.com",
                    "kafka-expose.io/external-tls": "ca:kafka-ca"}},
            "spec": {"replicas": 2, "serviceName": "kafka-headless",
                     "selector": {"matchLabels": {"app": "kafka"}},
                     "template": {"metadata": {"labels": {"app": "kafka"}},
                                  "spec": {"containers": [{"name": "kafka", "image": "apache/kafka:3.9.0",
                                           "env": [{"name": "KAFKA_LISTENERS", "value": "PLAINTEXT://:9092"},
                                                   {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "PLAINTEXT://kafka:9092"}]}]}}}
        }))
        .unwrap();
        let w = Workload::from_statefulset(sts);
        let settings = crate::config::Settings::default();
        let crate::engine::exposure::Decision::Expose(e) = w.exposure(&settings).unwrap() else {
            panic!("exposed")
        };
        let routes = services::routes(&w, &e);
        let plan = plan(&w, &e, &routes, "v1alpha2");
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0]["apiVersion"], "gateway.networking.k8s.io/v1alpha2");
        assert_eq!(plan[0]["metadata"]["name"], "kafka-0-external");
        assert_eq!(plan[1]["spec"]["hostnames"], json!(["kafka-1.example.com"]));
        assert_eq!(
            plan[1]["spec"]["rules"][0]["backendRefs"][0],
            json!({"kind": "Service", "name": "kafka-1-external", "port": 443})
        );
        assert_eq!(
            plan[0]["spec"]["parentRefs"][0],
            json!({"group": GROUP, "kind": "Gateway", "namespace": "infra", "name": "public",
                   "sectionName": "kafka"})
        );
        assert_eq!(plan[2]["metadata"]["name"], "kafka-external-bootstrap");
        assert_eq!(plan[2]["spec"]["hostnames"], json!(["kafka.example.com"]));
        assert_eq!(
            plan[2]["metadata"]["ownerReferences"][0]["uid"],
            json!("u-1")
        );
    }
}
