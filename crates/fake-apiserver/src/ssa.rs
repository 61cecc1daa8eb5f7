//! Server-side apply: merge an applied configuration into the live object with per-manager
//! field ownership (`metadata.managedFields`), conflicts and `force`.

use serde_json::{json, Value};

use super::errors::{ApiError, ApiResult};
use super::fields::{self, FieldSet, ManagedEntry, Path};
use super::resources::{ListType, ResourceType};

/// Drop `null`s from an applied configuration (they carry no ownership here).
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Merge `applied` into `live` following the list semantics of `rt`.
pub fn merge(rt: &ResourceType, path: &mut Vec<String>, live: &Value, applied: &Value) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            let mut out = l.clone();
            for (k, av) in a {
                let nv = match l.get(k) {
                    Some(lv) => {
                        path.push(k.clone());
                        let r = merge(rt, path, lv, av);
                        path.pop();
                        r
                    }
                    None => av.clone(),
                };
                out.insert(k.clone(), nv);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match rt.list_type(path) {
            ListType::Map(keys) => {
                let mut out = l.clone();
                for ai in a {
                    let key = fields::item_key(ai, &keys);
                    match out.iter().position(|li| fields::item_key(li, &keys) == key) {
                        Some(pos) => out[pos] = merge(rt, path, &out[pos].clone(), ai),
                        None => out.push(ai.clone()),
                    }
                }
                Value::Array(out)
            }
            ListType::Set => {
                let mut out = l.clone();
                for ai in a {
                    if !out.contains(ai) {
                        out.push(ai.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Atomic => applied.clone(),
        },
        _ => applied.clone(),
    }
}

/// Result of applying: the new object (managedFields updated).
pub fn apply(
    rt: &ResourceType,
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: &str,
    now: &str,
) -> ApiResult<Value> {
    let name = live.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let applied_set = fields::field_set(rt, applied);
    let mut entries = fields::read_managed(live);

    // conflicts with other managers' fields that the applier sets to a different value
    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.manager == manager {
            continue;
        }
        for p in e.fields.intersection(&applied_set) {
            if fields::is_member(p) {
                continue;
            }
            if fields::get(rt, live, p) != fields::get(rt, applied, p) {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            let list: Vec<(String, String)> = conflicts
                .iter()
                .map(|(i, p)| {
                    let e = &entries[*i];
                    let who = if e.subresource.is_empty() {
                        format!("\"{}\" using {}", e.manager, e.api_version)
                    } else {
                        format!("\"{}\" with subresource \"{}\" using {}", e.manager, e.subresource, e.api_version)
                    };
                    (who, fields::display(p))
                })
                .collect();
            return Err(apply_conflict(rt, &name, &list));
        }
        for (i, p) in &conflicts {
            entries[*i].fields.remove(p);
        }
    }

    let mut path = Vec::new();
    let mut merged = merge(rt, &mut path, live, applied);

    let slot = entries.iter().position(|e| e.same_slot(manager, "Apply", subresource));
    let old_apply: FieldSet = slot.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let others: FieldSet =
        entries.iter().enumerate().filter(|(i, _)| Some(*i) != slot).flat_map(|(_, e)| e.fields.iter().cloned()).collect();
    let mut to_remove: Vec<Path> = old_apply.iter().filter(|p| !applied_set.contains(*p) && !others.contains(*p)).cloned().collect();
    // shallow first: removing a list item takes its fields along; key fields of an item
    // that survives (still used by someone) are never removed on their own
    to_remove.sort_by_key(|p| p.len());
    for p in to_remove {
        let still_used = applied_set.iter().chain(others.iter()).any(|q| q.len() > p.len() && q.starts_with(&p));
        if still_used || is_key_field(rt, &p) {
            continue;
        }
        fields::remove(rt, &mut merged, &p);
    }

    // ownership: the applier owns exactly what it applied
    for e in entries.iter_mut() {
        if e.manager == manager && e.operation == "Update" && e.subresource == subresource {
            e.fields.retain(|p| !applied_set.contains(p));
        }
    }
    match slot {
        Some(i) => {
            if entries[i].fields != applied_set {
                entries[i].time = now.to_string();
            }
            entries[i].fields = applied_set;
            entries[i].api_version = rt.api_version();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: rt.api_version(),
            time: now.to_string(),
            subresource: subresource.to_string(),
            fields: applied_set,
        }),
    }
    fields::write_managed(&mut merged, &entries);
    Ok(merged)
}

fn apply_conflict(rt: &ResourceType, name: &str, conflicts: &[(String, String)]) -> ApiError {
    let n = conflicts.len();
    let word = if n == 1 { "conflict" } else { "conflicts" };
    let lines: Vec<String> = conflicts.iter().map(|(who, f)| format!("conflict with {who}: {f}")).collect();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(who, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {who}"), "field": f}))
        .collect();
    let mut e = ApiError::new(409, "Conflict", format!("Apply failed with {n} {word}: {}", lines.join("\n")));
    let mut d = json!({"name": name, "kind": rt.plural, "causes": causes});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    e.details = Some(d);
    e
}

/// Whether `path` names a key field of an associative-list item (`...k:{..}/f:name`).
fn is_key_field(rt: &ResourceType, path: &[String]) -> bool {
    let n = path.len();
    if n < 2 || !path[n - 2].starts_with("k:") {
        return false;
    }
    let Some(field) = path[n - 1].strip_prefix("f:") else {
        return false;
    };
    match rt.list_type(&fields::schema_path(&path[..n - 2])) {
        ListType::Map(keys) => keys.iter().any(|k| k == field),
        _ => false,
    }
}
