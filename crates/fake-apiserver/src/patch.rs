//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

use serde_json::Value;

use super::errors::{ApiError, ApiResult};
use super::fields;
use super::resources::{ListType, ResourceType};

pub fn merge_patch(target: &Value, patch: &Value) -> ApiResult<Value> {
    if !patch.is_object() {
        return Err(ApiError::bad_request("json: cannot unmarshal into Go value of type map[string]interface {}"));
    }
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// RFC 6902. A malformed patch is 400; one that cannot be applied (failed `test`, missing
/// path) is 422, as on the real server.
pub fn json_patch(target: &Value, patch: &Value) -> ApiResult<Value> {
    let p: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    // Like the Go implementation the real server uses, `test` with a `null` value passes when
    // the path does not exist (kube's finalizer helper relies on this).
    let ops: Vec<json_patch::PatchOperation> =
        p.0.into_iter()
            .filter(|op| match op {
                json_patch::PatchOperation::Test(t) => !(t.value.is_null() && target.pointer(t.path.as_str()).is_none()),
                _ => true,
            })
            .collect();
    let mut out = target.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
    Ok(out)
}

/// Strategic merge patch for built-in kinds: maps merge recursively, `null` deletes, lists with
/// a patch-merge key merge by key (`$patch: delete` removes an item), primitive "set" lists
/// union (`$deleteFromPrimitiveList/<field>` removes), other lists are replaced.
pub fn strategic_merge(rt: &ResourceType, target: &Value, patch: &Value) -> ApiResult<Value> {
    if rt.is_crd() {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let mut out = target.clone();
    smp(rt, &mut Vec::new(), &mut out, patch);
    Ok(out)
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn smp(rt: &ResourceType, path: &mut Vec<String>, target: &mut Value, patch: &Value) {
    let Value::Object(pm) = patch else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    for (k, pv) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) = (target.get_mut(field).and_then(Value::as_array_mut), pv.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let tm = target.as_object_mut().unwrap();
        if pv.is_null() {
            tm.remove(k);
            continue;
        }
        path.push(k.clone());
        match pv {
            Value::Object(_) if tm.get(k).is_some_and(Value::is_object) => smp(rt, path, tm.get_mut(k).unwrap(), pv),
            Value::Array(items) => {
                let lt = rt.list_type(path);
                let existing = tm.get(k).and_then(Value::as_array).cloned();
                let merged = match (lt, existing) {
                    (ListType::Map(keys), Some(mut cur)) => {
                        for it in items {
                            let key = fields::item_key(it, &keys);
                            let pos = cur.iter().position(|c| fields::item_key(c, &keys) == key);
                            let delete = it.get("$patch").and_then(Value::as_str) == Some("delete");
                            match (pos, delete) {
                                (Some(p), true) => {
                                    cur.remove(p);
                                }
                                (None, true) => {}
                                (Some(p), false) => smp(rt, path, &mut cur[p], it),
                                (None, false) => cur.push(strip_directives(it)),
                            }
                        }
                        Value::Array(cur)
                    }
                    (ListType::Set, Some(mut cur)) => {
                        for it in items {
                            if !cur.contains(it) {
                                cur.push(it.clone());
                            }
                        }
                        Value::Array(cur)
                    }
                    _ => strip_directives(pv),
                };
                tm.insert(k.clone(), merged);
            }
            _ => {
                tm.insert(k.clone(), strip_directives(pv));
            }
        }
        path.pop();
    }
}
