//! The form in which the operator server-side applies a desired object, and the comparison it
//! makes with what a server returned. Public so that tools outside the controllers (the scale
//! benchmark, which fills a store as the operator leaves it) use the same bytes.

use serde_json::Value;

use super::DesiredObject;
use crate::naming::{ANNOTATION_APPLIED_HASH, ANNOTATION_TENANT_UID};

/// FNV-1a over the canonical JSON text: stable across builds and Rust versions, unlike
/// `DefaultHasher`, so an operator upgrade does not re-apply every object.
pub fn desired_hash(object: &Value) -> String {
    format!("{:016x}", crate::hash::hash_str(&object.to_string()))
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
