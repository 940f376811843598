//! The TLSRoutes of `expose=gateway` (see [`crate::engine::gateway`]), made and removed for the
//! reconciler, and what the Gateway said of each.
//!
//! Per reconcile of a workload exposed through a Gateway:
//! - the served TLSRoute version is found by discovery (`v1`, else `v1alpha3`, else `v1alpha2`);
//! - one list of the namespace's TLSRoutes tells kafka-expose's own from others': a planned name
//!   another owner holds is a conflict, reported, and never taken over;
//! - what the Gateway said of each of its routes (`status.parents`) goes on the broker's backend
//!   Service as [`ROUTE_ANNOTATION`], where the Pod webhook reads it from the Service cache it
//!   already holds: a broker is held until its route is `Accepted`;
//! - the planned routes are applied with server-side apply, and its own routes that are no longer
//!   planned are deleted.
//!
//! A workload that leaves the Gateway (another mode, `expose: off`) has its routes removed when
//! one of its Services still carries [`ROUTE_ANNOTATION`]: no TLSRoute call is made for a
//! workload that never used a Gateway.

use std::collections::BTreeMap;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::config::GatewayRef;
pub use crate::engine::gateway::ROUTE_ANNOTATION;
use crate::engine::gateway::{self, Acceptance, GROUP, KIND, PLURAL, VERSIONS};
use crate::engine::services::is_managed;
use crate::engine::workload::Workload;
use crate::names::{FIELD_MANAGER, labels};

/// The TLSRoute version the API server serves, newest first; `None` when it serves none.
pub async fn served_version(client: &Client) -> kube::Result<Option<&'static str>> {
    for v in VERSIONS {
        match client
            .list_api_group_resources(&format!("{GROUP}/{v}"))
            .await
        {
            Ok(list) if list.resources.iter().any(|r| r.name == PLURAL) => return Ok(Some(v)),
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, version, KIND), PLURAL)
}

/// What the reconciler learns of a workload's routes before it applies its Services.
#[derive(Debug, Default)]
pub struct Seen {
    /// The served version, once found.
    pub version: Option<&'static str>,
    /// What the Gateway said of each of the workload's routes, by route (and Service) name.
    pub said: BTreeMap<String, Acceptance>,
    /// Route names in the namespace that are not this workload's: others' and other workloads'.
    pub foreign: BTreeMap<String, String>,
    /// This workload's routes.
    pub own: Vec<String>,
}

/// Who made a route, for people.
fn maker(o: &DynamicObject) -> String {
    let l = o.labels();
    if l.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER) {
        return format!(
            "{} for workload {}",
            labels::MANAGER,
            l.get(labels::WORKLOAD).cloned().unwrap_or_default()
        );
    }
    l.get(labels::MANAGED_BY)
        .cloned()
        .or_else(|| o.metadata.managed_fields.as_ref()?.first()?.manager.clone())
        .unwrap_or_else(|| "someone else".into())
}

/// Reads the namespace's TLSRoutes: one discovery and one list. `Err` says what is wrong for
/// people (no TLSRoute API, a forbidden list).
pub async fn read(
    client: &Client,
    ns: &str,
    w: &Workload,
    gateway: &GatewayRef,
) -> Result<Seen, String> {
    let version = served_version(client)
        .await
        .map_err(|e| format!("discovering the TLSRoute API: {e}"))?
        .ok_or_else(|| {
            format!(
                "the API server serves no TLSRoute ({GROUP} {}): install Gateway API's TLSRoute CRD (standard channel from v1.5, experimental before)",
                VERSIONS.join(", ")
            )
        })?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource(version));
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing TLSRoutes: {}", message(&e)))?;
    let mut seen = Seen {
        version: Some(version),
        ..Seen::default()
    };
    for o in list.items {
        let name = o.name_any();
        let mine = o.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER)
            && o.labels().get(labels::WORKLOAD) == Some(&w.name);
        if mine {
            let value = serde_json::to_value(&o).unwrap_or(Value::Null);
            seen.said
                .insert(name.clone(), gateway::acceptance(&value, gateway));
            seen.own.push(name);
        } else {
            seen.foreign.insert(name, maker(&o));
        }
    }
    Ok(seen)
}

/// What applying the routes came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Conflicts, failed calls, and routes the Gateway refused (with its reason), for people.
    pub failures: Vec<String>,
    /// Routes with no word from the Gateway yet: look again soon.
    pub pending: usize,
}

/// Applies the planned routes (`planned`, complete objects) and deletes this workload's routes
/// that are no longer planned. A planned name another owner holds is reported and left alone.
pub async fn apply(
    client: &Client,
    ns: &str,
    seen: &Seen,
    planned: &[Value],
    gateway: &GatewayRef,
) -> Outcome {
    let mut out = Outcome::default();
    let Some(version) = seen.version else {
        return out;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource(version));
    let mut wanted = Vec::new();
    for route in planned {
        let name = route["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(who) = seen.foreign.get(&name) {
            out.failures.push(format!(
                "TLSRoute {name}: it exists, made by {who}; kafka-expose does not take it over"
            ));
            continue;
        }
        wanted.push(name.clone());
        let params = if seen.own.contains(&name) {
            PatchParams::apply(FIELD_MANAGER).force()
        } else {
            PatchParams::apply(FIELD_MANAGER)
        };
        if let Err(e) = api.patch(&name, &params, &Patch::Apply(route)).await {
            out.failures
                .push(format!("TLSRoute {name}: {}", message(&e)));
            continue;
        }
        match seen.said.get(&name).cloned().unwrap_or(Acceptance::Pending) {
            Acceptance::Accepted => {}
            Acceptance::Pending => out.pending += 1,
            // The Gateway's own reason and message: the user's to fix.
            refused => out.failures.push(refused.describe(&name, gateway)),
        }
    }
    for name in seen.own.iter().filter(|n| !wanted.contains(n)) {
        if let Err(e) = api.delete(name, &DeleteParams::default()).await
            && !matches!(&e, kube::Error::Api(a) if a.code == 404)
        {
            out.failures
                .push(format!("deleting TLSRoute {name}: {}", message(&e)));
        }
    }
    out
}

/// Removes every TLSRoute kafka-expose made for workload `w`: it left the Gateway. `Ok` when none
/// is left (or the API is gone, and with it the routes).
pub async fn remove_all(client: &Client, ns: &str, w: &Workload) -> Result<(), String> {
    let Some(version) = served_version(client)
        .await
        .map_err(|e| format!("discovering the TLSRoute API: {e}"))?
    else {
        return Ok(());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource(version));
    let selector = labels::workload_selector(&w.name);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing TLSRoutes: {}", message(&e)))?;
    for o in list.items {
        let name = o.name_any();
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await
            && !matches!(&e, kube::Error::Api(a) if a.code == 404)
        {
            return Err(format!("deleting TLSRoute {name}: {}", message(&e)));
        }
    }
    Ok(())
}

/// What the API server said, without the response's dump.
fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(a) => a.message.clone(),
        other => other.to_string(),
    }
}

/// Whether Service `s` of a workload is a Gateway backend: its route state is on it.
pub fn is_backend(s: &k8s_openapi::api::core::v1::Service) -> bool {
    is_managed(s) && s.annotations().contains_key(ROUTE_ANNOTATION)
}
