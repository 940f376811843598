//! Reading `mutate`'s input: multi-document YAML or JSON (`List` objects opened), the `--set`
//! annotations, and the default namespace.

use serde_json::{Map, Value};

use super::{MutateError, Options};
use crate::names::{PREFIX, keys};

/// Parses `KEY=VALUE` for `--set`.
pub fn parse_set(s: &str) -> Result<(String, String), MutateError> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| MutateError::BadSet(s.into()))?;
    let k = k.trim().strip_prefix(PREFIX).unwrap_or(k.trim());
    if !keys::ALL.contains(&k) {
        return Err(MutateError::BadSet(s.into()));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Reads multi-document YAML (JSON is YAML too), opening `List` objects.
pub fn read_documents(text: &str) -> Result<Vec<Value>, MutateError> {
    // Kubernetes reads manifests as YAML 1.1, where `0755` (a ConfigMap volume's defaultMode)
    // is octal.
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| MutateError::Yaml(e.to_string()))?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        match doc {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                for item in m
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if !item.is_object() {
                        return Err(MutateError::NotAnObject { index });
                    }
                    out.push(item.clone());
                }
            }
            Value::Object(ref m) if m.get("kind").is_some_and(Value::is_string) => out.push(doc),
            _ => return Err(MutateError::NotAnObject { index }),
        }
    }
    Ok(out)
}

/// Gives the object the default namespace when it has none, and returns its metadata.
pub(super) fn with_namespace<'a>(
    doc: &'a mut Value,
    opts: &Options,
) -> Option<&'a mut Map<String, Value>> {
    let obj = doc.as_object_mut()?;
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let meta = meta.as_object_mut()?;
    if let Some(ns) = &opts.namespace
        && meta.get("namespace").is_none_or(Value::is_null)
    {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    Some(meta)
}

/// Adds the `--set` annotations and the default namespace.
pub(super) fn prepare(doc: &mut Value, opts: &Options) {
    let Some(meta) = with_namespace(doc, opts) else {
        return;
    };
    if opts.set.is_empty() {
        return;
    }
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !ann.is_object() {
        *ann = Value::Object(Map::new());
    }
    if let Some(ann) = ann.as_object_mut() {
        for (k, v) in &opts.set {
            ann.insert(format!("{PREFIX}{k}"), Value::String(v.clone()));
        }
    }
}
