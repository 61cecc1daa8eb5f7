//! Applying desired objects: server-side apply, but only when the observed object differs.
//!
//! A reconcile that finds nothing to change must write nothing (SPEC §3), so every desired
//! object is compared with the cached one first. "Differs" means: a desired field is missing or
//! has another value (drift, or a new spec), or the hash of the desired object changed (a field
//! the operator stopped setting, which a subset comparison cannot notice).

use kube::{
    api::{DeleteParams, Patch, PatchParams},
    core::DynamicObject,
    Api, Client,
};
use serde_json::Value;

use super::Context;
use crate::{
    desired::{ChildKind, DesiredObject},
    naming::{ANNOTATION_APPLIED_HASH, ANNOTATION_TENANT_UID, FIELD_MANAGER},
};

/// FNV-1a over the canonical JSON text: stable across builds and Rust versions, unlike
/// `DefaultHasher`, so an operator upgrade does not re-apply every object.
pub fn desired_hash(object: &Value) -> String {
    let text = object.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// True when every field of `desired` is present in `observed` with an equal value. Lists must
/// match element by element (the operator owns its lists whole).
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Object(want), Value::Object(have)) => want.iter().all(|(key, value)| match have.get(key) {
            Some(found) => is_subset(value, found),
            None => value.is_null(),
        }),
        (Value::Array(want), Value::Array(have)) => want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h)),
        (want, have) => want == have || numeric_eq(want, have),
    }
}

fn numeric_eq(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// The object as it will be applied: desired, plus the hash annotation and the stamp naming
/// the Tenant (by UID) that applied it. The stamp tells a re-created Tenant what it adopts.
pub fn applied_form(desired: &DesiredObject, owner_uid: &str) -> Value {
    let hash = desired_hash(&desired.object);
    let mut object = desired.object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = annotations.as_object_mut() {
            map.insert(ANNOTATION_APPLIED_HASH.to_string(), Value::String(hash));
            map.insert(ANNOTATION_TENANT_UID.to_string(), Value::String(owner_uid.to_string()));
        }
    }
    object
}

/// Whether `desired` must be applied given the `observed` object (if any).
pub fn needs_apply(desired: &DesiredObject, owner_uid: &str, observed: Option<&DynamicObject>) -> bool {
    let Some(observed) = observed else { return true };
    let Ok(observed) = serde_json::to_value(observed) else { return true };
    !is_subset(&applied_form(desired, owner_uid), &observed)
}

pub fn api_for(client: &Client, kind: ChildKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = kind.api_resource();
    match namespace {
        Some(ns) if kind.is_namespaced() => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// Server-side apply under the operator's field manager. `force` because the operator is the
/// authority on these fields of its own objects: a hand edit is drift to be corrected. Objects
/// that are not the operator's never get here (see `ownership`).
pub async fn apply(ctx: &Context, desired: &DesiredObject, owner_uid: &str) -> Result<DynamicObject, kube::Error> {
    let api = api_for(&ctx.client, desired.kind, desired.namespace.as_deref());
    let result =
        api.patch(&desired.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(applied_form(desired, owner_uid))).await;
    ctx.metrics.kube_write("apply", desired.kind.name());
    result
}

/// Delete an object; already gone counts as done.
pub async fn delete(ctx: &Context, kind: ChildKind, namespace: Option<&str>, name: &str) -> Result<bool, kube::Error> {
    let api = api_for(&ctx.client, kind, namespace);
    ctx.metrics.kube_write("delete", kind.name());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Merge-patch metadata (labels, annotations; a `null` value removes one). Used for the
/// `retained` mark, which must not become part of the applied configuration: re-applying
/// would otherwise drop it.
pub async fn patch_metadata(
    ctx: &Context,
    kind: ChildKind,
    namespace: Option<&str>,
    name: &str,
    metadata: Value,
) -> Result<(), kube::Error> {
    let api = api_for(&ctx.client, kind, namespace);
    let patch = serde_json::json!({ "metadata": metadata });
    ctx.metrics.kube_write("patch", kind.name());
    api.patch(name, &PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() }, &Patch::Merge(patch))
        .await
        .map(|_| ())
}

/// Read one object from the API server, for decisions the label-narrowed caches cannot make
/// (an object without the tenant label is not in them).
pub async fn get_uncached(
    ctx: &Context,
    kind: ChildKind,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<DynamicObject>, kube::Error> {
    api_for(&ctx.client, kind, namespace).get_opt(name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_added_fields() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1}});
        let observed = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}}, "spec": {"replicas": 1, "extra": true}, "status": {}});
        assert!(is_subset(&desired, &observed));
    }

    #[test]
    fn subset_notices_drift_and_missing_fields() {
        let desired = json!({"metadata": {"labels": {"x": "1"}}, "spec": {"rules": [{"host": "a"}]}});
        assert!(!is_subset(&desired, &json!({"metadata": {"labels": {"x": "2"}}, "spec": {"rules": [{"host": "a"}]}})));
        assert!(!is_subset(&desired, &json!({"metadata": {"labels": {}}, "spec": {"rules": [{"host": "a"}]}})));
        assert!(!is_subset(&desired, &json!({"metadata": {"labels": {"x": "1"}}, "spec": {"rules": [{"host": "a"}, {"host": "b"}]}})));
        assert!(!is_subset(&desired, &json!({"metadata": {"labels": {"x": "1"}}, "spec": {"rules": [{"host": "b"}]}})));
    }

    #[test]
    fn hash_changes_with_content_and_is_stable() {
        let a = json!({"a": 1, "b": [1, 2]});
        assert_eq!(desired_hash(&a), desired_hash(&a.clone()));
        assert_ne!(desired_hash(&a), desired_hash(&json!({"a": 1, "b": [1]})));
    }
}
