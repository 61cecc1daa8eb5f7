//! Applying desired objects: server-side apply, but only when the observed object differs.
//!
//! A reconcile that finds nothing to change must write nothing (SPEC §3), so every desired
//! object is compared with the cached one first. "Differs" means: a desired field is missing or
//! has another value (drift, or a new spec), or a field the operator set last time is no longer
//! desired. The caches hold a fingerprint of the operator's fields instead of the object (see
//! `fingerprint`): equal fingerprints settle it at once; otherwise, when the desired object is
//! the one last applied (same applied-hash), the API server's copy decides ("desired ⊆
//! observed"), since a server may store a value in another form than the one applied.

use kube::{
    api::{DeleteParams, Patch, PatchParams},
    core::DynamicObject,
    Api, Client,
};
use serde_json::Value;

use super::{
    caches::{Caches, Child},
    fingerprint, Context,
};
use crate::{
    desired::{ChildKind, DesiredObject},
    naming::FIELD_MANAGER,
};

pub use crate::desired::applied::{applied_form, desired_hash, is_subset};

/// What the cache can tell about `observed` against `desired` without asking the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// The operator's fields are exactly those of `desired`.
    Current,
    /// `desired` is not what the operator applied last: it must be applied.
    Changed,
    /// Same desired object, but the fields differ: drift, or a value the server stores in
    /// another form. Only the object itself can tell.
    Unsure,
}

pub fn compare_cached(caches: &Caches, desired: &DesiredObject, applied: &Value, observed: &Child) -> Cached {
    if caches.satisfies(observed, fingerprint::of_desired(desired.kind, applied)) {
        return Cached::Current;
    }
    let unchanged = u64::from_str_radix(&desired_hash(&desired.object), 16).ok() == observed.applied_hash();
    if unchanged {
        Cached::Unsure
    } else {
        Cached::Changed
    }
}

/// Whether `desired` must be applied given the `observed` object (if any): from the cache
/// when it can tell, else from the API server's copy (a read, never a write). What the
/// server's copy proved is remembered on the cached object until it changes.
pub async fn needs_apply(ctx: &Context, desired: &DesiredObject, owner_uid: &str, observed: Option<&Child>) -> Result<bool, kube::Error> {
    let Some(observed) = observed else { return Ok(true) };
    let applied = applied_form(desired, owner_uid);
    match compare_cached(&ctx.caches, desired, &applied, observed) {
        Cached::Current => Ok(false),
        Cached::Changed => Ok(true),
        Cached::Unsure => {
            let Some(current) = get_uncached(ctx, desired.kind, desired.namespace.as_deref(), &desired.name).await? else {
                return Ok(true);
            };
            Ok(!confirm(&ctx.caches, desired.kind, &applied, &current, observed))
        }
    }
}

/// Whether `current` (the API server's copy) holds every field of `applied`; when it does and
/// is the state `observed` (the cached one) describes, the caches remember it.
pub fn confirm(caches: &Caches, kind: ChildKind, applied: &Value, current: &DynamicObject, observed: &Child) -> bool {
    let Ok(whole) = serde_json::to_value(current) else { return false };
    let fits = is_subset(applied, &whole);
    if fits && current.metadata.resource_version.as_deref() == observed.resource_version() {
        caches.mark_verified(observed, fingerprint::of_desired(kind, applied));
    }
    fits
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
/// that are not the operator's never get here (see `ownership`). The result is remembered
/// until the cache has it (see `Caches::wrote`).
pub async fn apply(ctx: &Context, desired: &DesiredObject, owner_uid: &str) -> Result<DynamicObject, kube::Error> {
    let (kind, namespace) = (desired.kind, desired.namespace.as_deref());
    let api = api_for(&ctx.client, kind, namespace);
    let applied = applied_form(desired, owner_uid);
    let before = ctx.caches.cached_version(kind, namespace, &desired.name);
    let result = api.patch(&desired.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&applied)).await;
    ctx.metrics.kube_write("apply", kind.name());
    let object = result?;
    let written = Child::from_object(kind, &object);
    let wanted = fingerprint::of_desired(kind, &applied);
    if written.fingerprint() != wanted {
        // The server has just applied exactly this: whatever form it stores the values in,
        // the object as returned satisfies the desired one.
        ctx.caches.mark_verified(&written, wanted);
    }
    ctx.caches.wrote(kind, namespace, &desired.name, before, Some(written));
    Ok(object)
}

/// Delete an object; already gone counts as done.
pub async fn delete(ctx: &Context, kind: ChildKind, namespace: Option<&str>, name: &str) -> Result<bool, kube::Error> {
    let api = api_for(&ctx.client, kind, namespace);
    let before = ctx.caches.cached_version(kind, namespace, name);
    ctx.metrics.kube_write("delete", kind.name());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(either) => {
            // Deleted at once, or marked for deletion (finalizers): either way not to be
            // deleted again.
            let marked = either.left().map(|object| Child::from_object(kind, &object));
            ctx.caches.wrote(kind, namespace, name, before, marked);
            Ok(true)
        }
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
    let before = ctx.caches.cached_version(kind, namespace, name);
    ctx.metrics.kube_write("patch", kind.name());
    let object = api
        .patch(name, &PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() }, &Patch::Merge(patch))
        .await?;
    ctx.caches.wrote(kind, namespace, name, before, Some(Child::from_object(kind, &object)));
    Ok(())
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

    fn config_map(data: &str) -> DesiredObject {
        DesiredObject {
            kind: ChildKind::ConfigMap,
            namespace: Some("acme-dev".into()),
            name: "tenant-config".into(),
            object: json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "tenant-config", "namespace": "acme-dev", "labels": {"tenancy.platform.dev/tenant": "acme"}},
                "data": {"cluster": data}}),
        }
    }

    /// The object as the server holds it after the operator applied `applied`, with `cluster`
    /// as the value now stored, and the operator's fields as `fieldsV1` says.
    fn stored(applied: &Value, cluster: &str, fields: Value) -> Child {
        let mut object = applied.clone();
        object["data"]["cluster"] = json!(cluster);
        object["metadata"]["resourceVersion"] = json!("5");
        object["metadata"]["managedFields"] =
            json!([{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}]);
        Child::from_object(ChildKind::ConfigMap, &serde_json::from_value(object).expect("object"))
    }

    fn all_fields() -> Value {
        json!({"f:metadata": {"f:labels": {"f:tenancy.platform.dev/tenant": {}},
                              "f:annotations": {"f:tenancy.platform.dev/applied-hash": {}, "f:tenancy.platform.dev/tenant-uid": {}}},
               "f:data": {"f:cluster": {}}})
    }

    #[test]
    fn the_cache_settles_what_it_can_and_says_when_it_cannot() {
        let caches = Caches::default();
        let desired = config_map("uk");
        let applied = applied_form(&desired, "uid-1");
        assert_eq!(compare_cached(&caches, &desired, &applied, &stored(&applied, "uk", all_fields())), Cached::Current);

        let changed = config_map("us");
        assert_eq!(
            compare_cached(&caches, &changed, &applied_form(&changed, "uid-1"), &stored(&applied, "uk", all_fields())),
            Cached::Changed,
            "a new desired object"
        );

        // Someone changed the value: the field is theirs now, the operator's set lacks it.
        let mut theirs = all_fields();
        theirs["f:data"] = json!({});
        let drifted = stored(&applied, "hacked", theirs);
        assert_eq!(compare_cached(&caches, &desired, &applied, &drifted), Cached::Unsure, "only the server's copy can tell");

        // The server's copy satisfies the desired object after all (a value in another form):
        // remembered for this version of the object.
        let equivalent = stored(&applied, "uk", all_fields());
        let wanted = fingerprint::of_desired(ChildKind::ConfigMap, &applied);
        caches.mark_verified(&drifted, wanted);
        assert_eq!(compare_cached(&caches, &desired, &applied, &drifted), Cached::Current);
        assert_eq!(compare_cached(&caches, &desired, &applied, &equivalent), Cached::Current);
    }
}
