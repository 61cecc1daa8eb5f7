//! Which objects are the operator's (SPEC §8): only those it may change or delete.
//!
//! An object is the operator's when it carries the tenant label **and** the operator's field
//! manager wrote it. A label alone proves nothing: anyone who can create a ConfigMap can copy
//! it. Retained data is the operator's too, but only a person deletes it.

use kube::{core::DynamicObject, ResourceExt};

use crate::naming::{ANNOTATION_TENANT_UID, FIELD_MANAGER, LABEL_RETAINED, LABEL_TENANT};

/// Whether the operator's field manager wrote any field of `object`.
pub fn written_by_operator(object: &DynamicObject) -> bool {
    object.metadata.managed_fields.iter().flatten().any(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
}

/// Whether `object` belongs to the tenant `slug` and was made by the operator.
pub fn is_ours(object: &DynamicObject, slug: &str) -> bool {
    object.labels().get(LABEL_TENANT).map(String::as_str) == Some(slug) && written_by_operator(object)
}

/// Whether `object` was kept under `deletionPolicy: Retain` (only a person deletes it).
pub fn is_retained(object: &DynamicObject) -> bool {
    object.labels().get(LABEL_RETAINED).map(String::as_str) == Some("true")
}

pub fn is_terminating(object: &DynamicObject) -> bool {
    object.metadata.deletion_timestamp.is_some()
}

/// The UID of the Tenant that applied `object`, when it is not `current_uid`: the object is
/// left over from an earlier Tenant with the same slug.
pub fn previous_owner(object: &DynamicObject, current_uid: &str) -> Option<String> {
    object.annotations().get(ANNOTATION_TENANT_UID).filter(|uid| uid.as_str() != current_uid).cloned()
}

/// What the operator may do with the object found under a name it wants to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nothing there: create it.
    Free,
    /// The operator's own object for this tenant.
    Ours,
    /// The operator's object, kept under Retain (by this or an earlier Tenant of the slug).
    Retained,
    /// Someone else's object: never changed, never deleted.
    Foreign,
}

pub fn claim(found: Option<&DynamicObject>, slug: &str) -> Claim {
    match found {
        None => Claim::Free,
        Some(object) if !is_ours(object, slug) => Claim::Foreign,
        Some(object) if is_retained(object) => Claim::Retained,
        Some(_) => Claim::Ours,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::api::ObjectMeta;

    use super::*;

    fn object(labels: &[(&str, &str)], manager: Option<&str>) -> DynamicObject {
        let mut object = DynamicObject::new("acme-dev", &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()));
        object.metadata = ObjectMeta {
            name: Some("acme-dev".into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            managed_fields: manager
                .map(|m| vec![ManagedFieldsEntry { manager: Some(m.into()), operation: Some("Apply".into()), ..Default::default() }]),
            ..ObjectMeta::default()
        };
        object
    }

    #[test]
    fn a_copied_label_does_not_make_an_object_ours() {
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "acme")], Some("kubectl"))), "acme"), Claim::Foreign);
        assert_eq!(claim(Some(&object(&[], Some(FIELD_MANAGER))), "acme"), Claim::Foreign);
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "other")], Some(FIELD_MANAGER))), "acme"), Claim::Foreign);
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "acme")], None)), "acme"), Claim::Foreign);
    }

    #[test]
    fn the_operators_objects_are_ours_or_retained() {
        assert_eq!(claim(None, "acme"), Claim::Free);
        assert_eq!(claim(Some(&object(&[(LABEL_TENANT, "acme")], Some(FIELD_MANAGER))), "acme"), Claim::Ours);
        let retained = object(&[(LABEL_TENANT, "acme"), (LABEL_RETAINED, "true")], Some(FIELD_MANAGER));
        assert_eq!(claim(Some(&retained), "acme"), Claim::Retained);
    }

    #[test]
    fn previous_owner_names_an_earlier_tenant() {
        let mut found = object(&[(LABEL_TENANT, "acme")], Some(FIELD_MANAGER));
        assert_eq!(previous_owner(&found, "uid-2"), None);
        found.metadata.annotations = Some([(ANNOTATION_TENANT_UID.to_string(), "uid-1".to_string())].into());
        assert_eq!(previous_owner(&found, "uid-2").as_deref(), Some("uid-1"));
        assert_eq!(previous_owner(&found, "uid-1"), None);
    }
}
