//! Building RFC 6902 patch operations directly, one per change.
//!
//! Paths are built from tokens, so `/` and `~` in keys such as
//! `statefulset.kubernetes.io/pod-name` are escaped as JSON Pointer requires (`~1`, `~0`,
//! RFC 6901). Parents are created before children: a patch that adds a label to a pod without
//! `metadata.labels` first adds the empty map. The operations are built from what changes, not by
//! diffing whole documents, so their cost grows with the change, not with the object.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

/// A JSON Pointer from path segments: strings (escaped as RFC 6901 requires) and integers,
/// written into one string.
#[macro_export]
macro_rules! ptr {
    ($($t:expr),* $(,)?) => {{
        let mut s = ::std::string::String::with_capacity(48);
        $( $crate::engine::patch::Segment::write_to(&$t, &mut s); )*
        $crate::engine::patch::pointer(s)
    }};
}

/// One segment of a JSON Pointer, written with its leading `/`.
pub trait Segment {
    fn write_to(&self, out: &mut String);
}

impl Segment for str {
    fn write_to(&self, out: &mut String) {
        out.push('/');
        if self.contains(['~', '/']) {
            out.push_str(&self.replace('~', "~0").replace('/', "~1"));
        } else {
            out.push_str(self);
        }
    }
}

impl Segment for &str {
    fn write_to(&self, out: &mut String) {
        (**self).write_to(out);
    }
}

impl Segment for String {
    fn write_to(&self, out: &mut String) {
        self.as_str().write_to(out);
    }
}

impl Segment for usize {
    fn write_to(&self, out: &mut String) {
        out.push('/');
        out.push_str(itoa::Buffer::new().format(*self));
    }
}

/// The pointer whose escaped text `s` is, as [`ptr!`] writes it. A text that is not a pointer
/// (which [`Segment`] never writes) is parsed token by token instead of refused.
pub fn pointer(s: String) -> PointerBuf {
    match PointerBuf::parse(s) {
        Ok(p) => p,
        Err(e) => PointerBuf::from_tokens(e.subject().split('/').skip(1)),
    }
}

/// Collects patch operations.
#[derive(Debug, Default, Clone)]
pub struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    pub fn replace(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Replace(ReplaceOperation { path, value }));
    }

    /// A `test` operation: the patch applies only if the value at `path` is `value` (a
    /// resourceVersion, for an update that must not overwrite a concurrent one).
    pub fn test(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Test(json_patch::TestOperation {
                path,
                value,
            }));
    }

    pub fn remove(&mut self, path: PointerBuf) {
        self.ops
            .push(PatchOperation::Remove(RemoveOperation { path }));
    }

    /// Sets `key` in the string map at `map_path` to `value`, creating the map when it is absent
    /// (`present` is `None`), and doing nothing when the value is already there.
    pub fn set_map_entry(
        &mut self,
        map_path: &PointerBuf,
        present: Option<&BTreeMap<String, String>>,
        key: &str,
        value: &str,
    ) {
        match present {
            None => {
                let mut m = serde_json::Map::new();
                m.insert(key.to_string(), Value::String(value.to_string()));
                self.add(map_path.clone(), Value::Object(m));
            }
            Some(m) if m.get(key).map(String::as_str) == Some(value) => {}
            Some(m) => {
                let mut path = map_path.clone();
                path.push_back(key);
                if m.contains_key(key) {
                    self.replace(path, Value::String(value.to_string()));
                } else {
                    self.add(path, Value::String(value.to_string()));
                }
            }
        }
    }

    /// Removes `key` from the string map at `map_path` when it is there.
    pub fn remove_map_entry(
        &mut self,
        map_path: &PointerBuf,
        present: Option<&BTreeMap<String, String>>,
        key: &str,
    ) {
        if present.is_some_and(|m| m.contains_key(key)) {
            let mut path = map_path.clone();
            path.push_back(key);
            self.remove(path);
        }
    }

    /// Appends `items` to the array at `path`, creating it when absent.
    pub fn append_all(&mut self, path: &PointerBuf, exists: bool, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if !exists {
            self.add(path.clone(), Value::Array(items));
            return;
        }
        for item in items {
            let mut p = path.clone();
            p.push_back("-");
            self.add(p, item);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn into_ops(self) -> Vec<PatchOperation> {
        self.ops
    }

    pub fn extend(&mut self, other: PatchBuilder) {
        self.ops.extend(other.ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(mut doc: Value, b: PatchBuilder) -> Value {
        json_patch::patch(&mut doc, &b.into_ops()).unwrap();
        doc
    }

    #[test]
    fn a_label_with_a_slash_is_escaped_and_its_map_created() {
        let mut b = PatchBuilder::new();
        b.set_map_entry(
            &ptr!("metadata", "labels"),
            None,
            "statefulset.kubernetes.io/pod-name",
            "kafka-0",
        );
        let out = apply(json!({"metadata": {}}), b);
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"statefulset.kubernetes.io/pod-name": "kafka-0"}}})
        );
    }

    #[test]
    fn escaped_paths_use_rfc6901_tokens() {
        let p = ptr!("metadata", "labels", "a/b~c");
        assert_eq!(p.as_str(), "/metadata/labels/a~1b~0c");
    }

    #[test]
    fn an_existing_value_gives_no_operation() {
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "v".to_string());
        let mut b = PatchBuilder::new();
        b.set_map_entry(&ptr!("m"), Some(&m), "k", "v");
        assert!(b.is_empty());
        b.set_map_entry(&ptr!("m"), Some(&m), "k", "w");
        let out = apply(json!({"m": {"k": "v"}}), b);
        assert_eq!(out, json!({"m": {"k": "w"}}));
    }

    #[test]
    fn appending_to_an_absent_array_creates_it_once() {
        let mut b = PatchBuilder::new();
        b.append_all(&ptr!("a"), false, vec![json!(1), json!(2)]);
        assert_eq!(b.len(), 1);
        assert_eq!(apply(json!({}), b), json!({"a": [1, 2]}));
        let mut b = PatchBuilder::new();
        b.append_all(&ptr!("a"), true, vec![json!(3)]);
        assert_eq!(apply(json!({"a": [1]}), b), json!({"a": [1, 3]}));
    }
}
