//! A reused slug (SPEC §0a). A Tenant deleted under `deletionPolicy: Retain` leaves its
//! namespaces, credentials, volumes, external databases and users behind, stamped with its UID.
//! A new Tenant of the same name is a new UID and may be another customer: it takes them over
//! only when `spec.adoptRetainedFrom` names that UID. Until then nothing of them is touched.
//! Pure: the namespaces found → the earlier Tenant to adopt from, or the refusal.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    controller::{
        caches::Child,
        ownership::{is_ours, previous_owner},
    },
    naming::{LABEL_RETAINED, LABEL_TENANT},
    types::{Problem, Reason, Tenant},
};

/// The earlier Tenants (by UID) whose namespaces the plan wants, each with those namespaces,
/// sorted. Namespaces the plan does not want are left alone whoever made them.
pub fn earlier_tenants(found: &[Child], wanted: &BTreeSet<&str>, slug: &str, uid: &str) -> BTreeMap<String, Vec<String>> {
    let mut earlier: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for namespace in found.iter().filter(|ns| wanted.contains(ns.name()) && is_ours(ns, slug)) {
        if let Some(previous) = previous_owner(namespace, uid) {
            earlier.entry(previous).or_default().push(namespace.name_any());
        }
    }
    for namespaces in earlier.values_mut() {
        namespaces.sort();
    }
    earlier
}

/// The UID whose data the Tenant consents to adopt (`spec.adoptRetainedFrom`, unless it names
/// the Tenant itself).
pub fn consented(tenant: &Tenant, uid: &str) -> Option<String> {
    tenant.spec.adopt_retained_from.clone().filter(|from| from != uid)
}

/// `Ok` when every earlier Tenant found is the one the Tenant consents to adopt from; the
/// refusal, naming each earlier UID and both ways forward, otherwise.
pub fn check(slug: &str, uid: &str, consent: Option<&str>, earlier: &BTreeMap<String, Vec<String>>) -> Result<(), Problem> {
    let refused: Vec<(&String, &Vec<String>)> = earlier.iter().filter(|(previous, _)| Some(previous.as_str()) != consent).collect();
    let Some((first, _)) = refused.first() else { return Ok(()) };
    let found = refused
        .iter()
        .map(|(previous, namespaces)| format!("namespaces {} of an earlier Tenant {slug} with UID {previous}", namespaces.join(", ")))
        .collect::<Vec<_>>()
        .join(", and ");
    let to_delete = refused.iter().flat_map(|(_, namespaces)| namespaces.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    let wrong_consent = consent.map(|c| format!(" (spec.adoptRetainedFrom names {c}, which left none of them)")).unwrap_or_default();
    Err(Problem::new(
        Reason::RetainedDataFromAnotherTenant,
        format!(
            "found {found}{wrong_consent}. This Tenant (UID {uid}) may belong to another customer, so nothing of the earlier \
             Tenant's is touched and its users get no access. To take its namespaces, data and users over, set \
             `spec.adoptRetainedFrom: {first}`; to start afresh, delete what it left: `kubectl delete namespace {to_delete}` \
             (all of it: `kubectl get namespaces -l {LABEL_TENANT}={slug},{LABEL_RETAINED}=true`) and drop its external \
             databases, if any"
        ),
    ))
}

/// The refusal of one object (a credentials Secret, an external database) stamped by an
/// earlier Tenant the Tenant has not consented to adopt from.
pub fn refuse_object(slug: &str, object: &str, previous: &str) -> Problem {
    Problem::new(
        Reason::RetainedDataFromAnotherTenant,
        format!(
            "{object} was left by an earlier Tenant {slug} with UID {previous}; it is not used or changed. Set \
             `spec.adoptRetainedFrom: {previous}` to take it over, or delete it"
        ),
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use kube::core::DynamicObject;
    use serde_json::json;

    use super::*;
    use crate::{
        desired::ChildKind,
        naming::{ANNOTATION_TENANT_UID, FIELD_MANAGER},
    };

    fn namespace(name: &str, uid: &str, manager: &str) -> Child {
        let mut ns: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {LABEL_TENANT: "acme", LABEL_RETAINED: "true"}, "annotations": {ANNOTATION_TENANT_UID: uid}}
        }))
        .unwrap();
        ns.metadata.managed_fields = Some(vec![ManagedFieldsEntry { manager: Some(manager.into()), ..Default::default() }]);
        Child::from_object(ChildKind::Namespace, &ns)
    }

    fn wanted() -> BTreeSet<&'static str> {
        BTreeSet::from(["acme-account", "acme-dev"])
    }

    #[test]
    fn namespaces_of_an_earlier_uid_that_the_plan_wants_are_found() {
        let found = [
            namespace("acme-dev", "old", FIELD_MANAGER),
            namespace("acme-account", "old", FIELD_MANAGER),
            namespace("acme-prod", "older", FIELD_MANAGER),
        ];
        let earlier = earlier_tenants(&found, &wanted(), "acme", "new");
        assert_eq!(earlier, BTreeMap::from([("old".to_string(), vec!["acme-account".to_string(), "acme-dev".to_string()])]));
        assert!(earlier_tenants(&found, &wanted(), "acme", "old").is_empty(), "the same UID is the same Tenant");
        let someone_elses = [namespace("acme-dev", "old", "kubectl")];
        assert!(earlier_tenants(&someone_elses, &wanted(), "acme", "new").is_empty(), "not the operator's: a NamespaceConflict");
    }

    #[test]
    fn without_consent_the_refusal_names_the_uid_and_both_ways_forward() {
        let earlier = BTreeMap::from([("old".to_string(), vec!["acme-account".to_string(), "acme-dev".to_string()])]);
        for consent in [None, Some("other")] {
            let problem = check("acme", "new", consent, &earlier).unwrap_err();
            assert_eq!(problem.reason, Reason::RetainedDataFromAnotherTenant);
            for part in ["UID old", "`spec.adoptRetainedFrom: old`", "`kubectl delete namespace acme-account acme-dev`", "UID new"] {
                assert!(problem.message.contains(part), "{part}: {}", problem.message);
            }
        }
        assert!(check("acme", "new", Some("old"), &earlier).is_ok());
        assert!(check("acme", "new", None, &BTreeMap::new()).is_ok());
    }

    #[test]
    fn consent_for_one_earlier_tenant_does_not_cover_another() {
        let earlier =
            BTreeMap::from([("a".to_string(), vec!["acme-account".to_string()]), ("b".to_string(), vec!["acme-dev".to_string()])]);
        let problem = check("acme", "new", Some("a"), &earlier).unwrap_err();
        assert!(problem.message.contains("UID b") && !problem.message.contains("UID a "), "{}", problem.message);
        assert!(problem.message.contains("kubectl delete namespace acme-dev`"), "{}", problem.message);
    }
}
