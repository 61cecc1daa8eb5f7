//! Field paths and field sets in the `fieldsV1` vocabulary (`f:name`, `k:{"name":"x"}`,
//! `v:"value"`), used for `metadata.managedFields` and server-side apply.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::resources::{ListType, ResourceType};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata fields that are never owned by a field manager.
const UNOWNED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// Schema path (field names only) of a field path, for list-type lookups.
pub fn schema_path(path: &[String]) -> Vec<String> {
    path.iter().filter_map(|e| e.strip_prefix("f:").map(String::from)).collect()
}

/// The key of an associative-list item, canonical JSON (sorted keys). A missing
/// `protocol` key counts as `TCP`, the default the real server fills in first.
pub fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = BTreeMap::new();
    for k in keys {
        let v = match item.get(k) {
            Some(v) => v.clone(),
            None if k == "protocol" => Value::String("TCP".into()),
            None => continue,
        };
        m.insert(k.clone(), v);
    }
    format!("k:{}", serde_json::to_string(&m).unwrap())
}

pub fn value_key(item: &Value) -> String {
    format!("v:{}", serde_json::to_string(item).unwrap())
}

/// The field set an object (or applied configuration) specifies.
pub fn field_set(rt: &ResourceType, obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Some(meta) = v.as_object() {
                        for (mk, mv) in meta {
                            if UNOWNED_META.contains(&mk.as_str()) {
                                continue;
                            }
                            collect(rt, mv, vec!["f:metadata".into(), format!("f:{mk}")], &mut out);
                        }
                    }
                }
                _ => collect(rt, v, vec![format!("f:{k}")], &mut out),
            }
        }
    }
    out
}

fn collect(rt: &ResourceType, v: &Value, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                collect(rt, child, p, out);
            }
        }
        Value::Array(items) => match rt.list_type(&schema_path(&path)) {
            ListType::Map(keys) => {
                for item in items {
                    let mut p = path.clone();
                    p.push(item_key(item, &keys));
                    out.insert(p.clone());
                    if let Some(m) = item.as_object() {
                        for (k, child) in m {
                            let mut cp = p.clone();
                            cp.push(format!("f:{k}"));
                            collect(rt, child, cp, out);
                        }
                    }
                }
            }
            ListType::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(value_key(item));
                    out.insert(p);
                }
            }
            ListType::Atomic => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// Whether a path element selects a list member (`k:` or `v:`).
pub fn is_member(path: &[String]) -> bool {
    path.last().is_some_and(|e| e.starts_with("k:") || e.starts_with("v:"))
}

/// The value at `path`, if present.
pub fn get<'a>(rt: &ResourceType, obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for (i, el) in path.iter().enumerate() {
        if let Some(name) = el.strip_prefix("f:") {
            cur = cur.as_object()?.get(name)?;
        } else if el.starts_with("k:") {
            let keys = match rt.list_type(&schema_path(&path[..i])) {
                ListType::Map(keys) => keys,
                _ => return None,
            };
            cur = cur.as_array()?.iter().find(|it| item_key(it, &keys) == *el)?;
        } else if el.starts_with("v:") {
            cur = cur.as_array()?.iter().find(|it| value_key(it) == *el)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Remove the value at `path`; returns whether something was removed.
pub fn remove(rt: &ResourceType, obj: &mut Value, path: &[String]) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let Some(parent) = get_mut(rt, obj, parent_path) else {
        return false;
    };
    if let Some(name) = last.strip_prefix("f:") {
        return parent.as_object_mut().and_then(|m| m.remove(name)).is_some();
    }
    let Some(arr) = parent.as_array_mut() else {
        return false;
    };
    let before = arr.len();
    if last.starts_with("k:") {
        if let ListType::Map(keys) = rt.list_type(&schema_path(parent_path)) {
            arr.retain(|it| item_key(it, &keys) != *last);
        }
    } else if last.starts_with("v:") {
        arr.retain(|it| value_key(it) != *last);
    }
    arr.len() != before
}

fn get_mut<'a>(rt: &ResourceType, obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for (i, el) in path.iter().enumerate() {
        if let Some(name) = el.strip_prefix("f:") {
            cur = cur.as_object_mut()?.get_mut(name)?;
        } else if el.starts_with("k:") {
            let keys = match rt.list_type(&schema_path(&path[..i])) {
                ListType::Map(keys) => keys,
                _ => return None,
            };
            cur = cur.as_array_mut()?.iter_mut().find(|it| item_key(it, &keys) == *el)?;
        } else if el.starts_with("v:") {
            cur = cur.as_array_mut()?.iter_mut().find(|it| value_key(it) == *el)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Encode a field set as `fieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for el in path {
            let entry = node.entry(el.clone()).or_insert_with(|| Value::Object(Map::new()));
            node = entry.as_object_mut().unwrap();
        }
    }
    // mark members that also have children with "."
    fn mark(node: &mut Map<String, Value>, prefix: &mut Path, set: &FieldSet) {
        for (k, v) in node.iter_mut() {
            prefix.push(k.clone());
            let m = v.as_object_mut().unwrap();
            if !m.is_empty() {
                if set.contains(prefix) {
                    m.insert(".".into(), Value::Object(Map::new()));
                }
                mark(m, prefix, set);
            }
            prefix.pop();
        }
    }
    let mut prefix = Vec::new();
    mark(&mut root, &mut prefix, set);
    Value::Object(root)
}

/// Decode `fieldsV1`.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, prefix: &mut Path, out: &mut FieldSet) {
        for (k, v) in node {
            if k == "." {
                out.insert(prefix.clone());
                continue;
            }
            prefix.push(k.clone());
            match v.as_object() {
                Some(m) if !m.is_empty() => walk(m, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        walk(m, &mut Vec::new(), &mut out);
    }
    out
}

/// Human form of a path for conflict messages: `.spec.replicas`, `.spec.containers[name="x"].image`.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(n) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(n);
        } else if let Some(k) = el.strip_prefix("k:") {
            let m: BTreeMap<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl ManagedEntry {
    pub fn same_slot(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    let Some(arr) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return vec![];
    };
    arr.iter()
        .map(|e| ManagedEntry {
            manager: e.get("manager").and_then(Value::as_str).unwrap_or_default().to_string(),
            operation: e.get("operation").and_then(Value::as_str).unwrap_or_default().to_string(),
            api_version: e.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string(),
            time: e.get("time").and_then(Value::as_str).unwrap_or_default().to_string(),
            subresource: e.get("subresource").and_then(Value::as_str).unwrap_or_default().to_string(),
            fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let arr: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = serde_json::json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = Value::String(e.subresource.clone());
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

/// Record an `Update` by `manager`: it takes ownership of every field it changed; fields that
/// disappeared lose their owners.
pub fn record_update(rt: &ResourceType, old: Option<&Value>, new: &mut Value, manager: &str, subresource: &str, now: &str) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let new_set = field_set(rt, new);
    let old_set = old.map(|o| field_set(rt, o)).unwrap_or_default();
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| match old {
            None => true,
            Some(o) => {
                if is_member(p) {
                    get(rt, o, p).is_none()
                } else {
                    get(rt, o, p) != get(rt, new, p)
                }
            }
        })
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for e in entries.iter_mut() {
        e.fields.retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.same_slot(manager, "Update", subresource)) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = rt.api_version();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: rt.api_version(),
                time: now.to_string(),
                subresource: subresource.to_string(),
                fields: changed,
            }),
        }
    }
    // drop paths that no longer exist in the object
    for e in entries.iter_mut() {
        e.fields.retain(|p| new_set.contains(p));
    }
    write_managed(new, &entries);
}
