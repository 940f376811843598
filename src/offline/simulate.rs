//! What the controllers would do offline: the pods a StatefulSet or Deployment creates from its
//! (mutated) template, named and labelled as their controllers name them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::engine::workload::{Workload, WorkloadKind};
use crate::names::labels;

/// FNV-1a, 32 bits: the hash the controllers use for revision and template hashes.
fn fnv32a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Renders a hash as the controllers do (`rand.SafeEncodeString`): no vowels, no look-alikes.
fn safe_encode(n: u32) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    n.to_string()
        .bytes()
        .map(|b| ALPHANUMS[(b as usize) % ALPHANUMS.len()] as char)
        .collect()
}

/// The pods the workload's controller would create: named `<sts>-<ordinal>` with the
/// StatefulSet controller's labels, hostname and subdomain, or with a ReplicaSet's
/// `generateName` for a Deployment. The hashes are computed as the controllers do in spirit, not
/// bit for bit.
pub fn controller_pods(w: &Workload, obj: &Value) -> Vec<Value> {
    let template = obj
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let hash = safe_encode(fnv32a(template.to_string().as_bytes()));
    let meta = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut pods = Vec::new();
    let owner = |kind: &str, name: &str| {
        let mut o = json!({
            "apiVersion": "apps/v1",
            "kind": kind,
            "name": name,
            "controller": true,
            "blockOwnerDeletion": true,
        });
        if let Some(uid) = &w.uid {
            o["uid"] = Value::String(uid.clone());
        }
        o
    };
    match w.kind {
        WorkloadKind::StatefulSet => {
            for index in 0..w.replicas {
                let ordinal = w.ordinals_start + index;
                let name = format!("{}-{ordinal}", w.name);
                let mut m = meta.clone();
                let labels: BTreeMap<String, String> = [
                    (
                        "controller-revision-hash".to_string(),
                        format!("{}-{hash}", w.name),
                    ),
                    (labels::POD_NAME.to_string(), name.clone()),
                    (labels::POD_INDEX.to_string(), ordinal.to_string()),
                ]
                .into();
                set_meta(&mut m, &name, None, w.namespace.as_deref(), labels);
                m["ownerReferences"] = json!([owner("StatefulSet", &w.name)]);
                let mut s = spec.clone();
                if let Some(obj) = s.as_object_mut() {
                    obj.insert("hostname".into(), Value::String(name.clone()));
                    if let Some(svc) = &w.service_name {
                        obj.insert("subdomain".into(), Value::String(svc.clone()));
                    }
                }
                pods.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": s}));
            }
        }
        WorkloadKind::Deployment => {
            let rs = format!("{}-{hash}", w.name);
            for _ in 0..w.replicas {
                let mut m = meta.clone();
                let labels = BTreeMap::from([("pod-template-hash".to_string(), hash.clone())]);
                set_meta(
                    &mut m,
                    "",
                    Some(&format!("{rs}-")),
                    w.namespace.as_deref(),
                    labels,
                );
                m["ownerReferences"] = json!([owner("ReplicaSet", &rs)]);
                pods.push(
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec.clone()}),
                );
            }
        }
    }
    pods
}

fn set_meta(
    m: &mut Value,
    name: &str,
    generate_name: Option<&str>,
    namespace: Option<&str>,
    extra_labels: BTreeMap<String, String>,
) {
    if !m.is_object() {
        *m = json!({});
    }
    let Some(obj) = m.as_object_mut() else { return };
    if let Some(g) = generate_name {
        obj.insert("generateName".into(), Value::String(g.into()));
    } else {
        obj.insert("name".into(), Value::String(name.into()));
    }
    if let Some(ns) = namespace {
        obj.insert("namespace".into(), Value::String(ns.into()));
    }
    let labels = obj.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(l) = labels.as_object_mut() {
        for (k, v) in extra_labels {
            l.insert(k, Value::String(v));
        }
    }
    if obj.get("annotations").is_some_and(Value::is_null) {
        obj.remove("annotations");
    }
}
