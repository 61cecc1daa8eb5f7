//! Which objects are the operator's (SPEC §8): only those it may change or delete.
//!
//! An object is the operator's when it carries the tenant label, the operator's field manager
//! wrote it **and** it carries the operator's stamp (the annotation with the UID of the Tenant
//! that applied it, set on every object the operator applies). A label alone proves nothing:
//! anyone who can create a ConfigMap can copy it; neither does a field manager, which any
//! client may name in its requests. Nothing is deleted, overwritten or read as credentials on
//! less. Retained data is the operator's too, but only a person deletes it.
//!
//! The operator's object is a given Tenant's only when that Tenant (by UID) applied it: a
//! Tenant re-created with the same name is a new UID and may be another customer (SPEC §0a), so
//! what an earlier Tenant left is adopted only with consent (`spec.adoptRetainedFrom`). Both
//! controllers decide "ours, for this Tenant" with [`is_ours_for`].

use super::caches::Child;
use crate::naming::{ANNOTATION_TENANT_UID, LABEL_RETAINED, LABEL_TENANT};

/// Whether `object` belongs to the tenant `slug` and was made by the operator (its field
/// manager wrote it, and it carries the operator's Tenant-UID stamp).
pub fn is_ours(object: &Child, slug: &str) -> bool {
    object.label(LABEL_TENANT) == Some(slug) && object.written_by_operator() && object.stamped()
}

/// Whether `object` is the operator's for the Tenant `slug` with UID `uid`: ours, and not
/// applied by an earlier Tenant of that name. The caches keep the UID on Namespaces only, so
/// for other kinds this is [`is_ours`]; an object with no UID recorded counts as this Tenant's
/// (only the operator and cluster administrators write Namespaces).
pub fn is_ours_for(object: &Child, slug: &str, uid: &str) -> bool {
    is_ours(object, slug) && previous_owner(object, uid).is_none()
}

/// Whether `object` was kept under `deletionPolicy: Retain` (only a person deletes it).
pub fn is_retained(object: &Child) -> bool {
    object.label(LABEL_RETAINED) == Some("true")
}

pub fn is_terminating(object: &Child) -> bool {
    object.is_terminating()
}

/// The UID of the Tenant that applied `object`, when it is not `current_uid`: the object is
/// left over from an earlier Tenant with the same slug.
pub fn previous_owner(object: &Child, current_uid: &str) -> Option<String> {
    object.annotation(ANNOTATION_TENANT_UID).filter(|uid| *uid != current_uid).map(str::to_string)
}

/// What the operator may do with the object found under a name it wants to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nothing there: create it.
    Free,
    /// The operator's own object for this Tenant.
    Ours,
    /// This Tenant's object, kept under Retain (an environment removed and added again).
    Retained,
    /// The operator's object for this slug, applied by an earlier Tenant (UID `uid`): adopted
    /// only with consent, untouched otherwise.
    Earlier { uid: String },
    /// Someone else's object: never changed, never deleted.
    Foreign,
}

/// The claim on `found` of the Tenant `slug` with UID `uid`.
pub fn claim(found: Option<&Child>, slug: &str, uid: &str) -> Claim {
    match found {
        None => Claim::Free,
        Some(object) if !is_ours(object, slug) => Claim::Foreign,
        Some(object) => match previous_owner(object, uid) {
            Some(uid) => Claim::Earlier { uid },
            None if is_retained(object) => Claim::Retained,
            None => Claim::Ours,
        },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::{api::ObjectMeta, core::DynamicObject};

    use super::*;
    use crate::{desired::ChildKind, naming::FIELD_MANAGER};

    /// An object as the operator stamps what it applies.
    fn object(labels: &[(&str, &str)], manager: Option<&str>) -> Child {
        Child::from_object(ChildKind::Namespace, &dynamic(labels, manager, &[(ANNOTATION_TENANT_UID, "uid-1")]))
    }

    fn dynamic(labels: &[(&str, &str)], manager: Option<&str>, annotations: &[(&str, &str)]) -> DynamicObject {
        let mut object = DynamicObject::new("acme-dev", &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()));
        object.metadata = ObjectMeta {
            name: Some("acme-dev".into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            managed_fields: manager
                .map(|m| vec![ManagedFieldsEntry { manager: Some(m.into()), operation: Some("Apply".into()), ..Default::default() }]),
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ObjectMeta::default()
        };
        object
    }

    #[test]
    fn a_copied_label_does_not_make_an_object_ours() {
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "acme")], Some("kubectl"))), "acme", "uid-1"), Claim::Foreign);
        assert_eq!(claim(Some(&object(&[], Some(FIELD_MANAGER))), "acme", "uid-1"), Claim::Foreign);
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "other")], Some(FIELD_MANAGER))), "acme", "uid-1"), Claim::Foreign);
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "acme")], None)), "acme", "uid-1"), Claim::Foreign);
    }

    /// Issue 20 §7: any client may send the operator's field manager; without the stamp the
    /// object is someone else's.
    #[test]
    fn a_field_manager_without_the_stamp_does_not_make_an_object_ours() {
        let forged = Child::from_object(ChildKind::Namespace, &dynamic(&[(LABEL_TENANT, "acme")], Some(FIELD_MANAGER), &[]));
        assert_eq!(claim(Some(&forged), "acme", "uid-1"), Claim::Foreign);
        let empty = Child::from_object(
            ChildKind::Namespace,
            &dynamic(&[(LABEL_TENANT, "acme")], Some(FIELD_MANAGER), &[(ANNOTATION_TENANT_UID, "")]),
        );
        assert_eq!(claim(Some(&empty), "acme", "uid-1"), Claim::Foreign);
    }

    #[test]
    fn the_operators_objects_are_ours_or_retained() {
        assert_eq!(claim(None, "acme", "uid-1"), Claim::Free);
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "acme")], Some(FIELD_MANAGER))), "acme", "uid-1"), Claim::Ours);
        let retained = object(&[(LABEL_TENANT, "acme"), (LABEL_RETAINED, "true")], Some(FIELD_MANAGER));
        assert_eq!(claim(Some(&retained), "acme", "uid-1"), Claim::Retained);
    }

    #[test]
    fn what_an_earlier_tenant_of_the_slug_applied_is_not_this_tenants() {
        for labels in [&[(LABEL_TENANT, "acme")][..], &[(LABEL_TENANT, "acme"), (LABEL_RETAINED, "true")]] {
            let earlier =
                Child::from_object(ChildKind::Namespace, &dynamic(labels, Some(FIELD_MANAGER), &[(ANNOTATION_TENANT_UID, "uid-1")]));
            assert_eq!(claim(Some(&earlier), "acme", "uid-2"), Claim::Earlier { uid: "uid-1".into() });
            assert!(!is_ours_for(&earlier, "acme", "uid-2"));
            assert!(is_ours_for(&earlier, "acme", "uid-1"));
        }
        let foreign = Child::from_object(
            ChildKind::Namespace,
            &dynamic(&[(LABEL_TENANT, "acme")], Some("kubectl"), &[(ANNOTATION_TENANT_UID, "uid-2")]),
        );
        assert!(!is_ours_for(&foreign, "acme", "uid-2"), "a copied stamp proves nothing either");
    }

    #[test]
    fn previous_owner_names_an_earlier_tenant() {
        let found = Child::from_object(ChildKind::Namespace, &dynamic(&[(LABEL_TENANT, "acme")], Some(FIELD_MANAGER), &[]));
        assert_eq!(previous_owner(&found, "uid-2"), None);
        let found = Child::from_object(
            ChildKind::Namespace,
            &dynamic(&[(LABEL_TENANT, "acme")], Some(FIELD_MANAGER), &[(ANNOTATION_TENANT_UID, "uid-1")]),
        );
        assert_eq!(previous_owner(&found, "uid-2").as_deref(), Some("uid-1"));
        assert_eq!(previous_owner(&found, "uid-1"), None);
    }
}
