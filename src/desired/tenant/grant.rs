//! The operator's own access to a namespace it made (issue 20 §6): a RoleBinding of the shipped
//! ClusterRole `tenant-operator:tenant-namespace` to the operator's ServiceAccount, applied
//! right after the Namespace. Cluster-wide the operator may read its kinds and write
//! Namespaces; every write to a namespaced kind, and every access to a Secret, comes from this
//! binding, so a stolen token of the operator reaches no namespace the operator did not create.
//! The binding carries the tenant's labels like every child: tenants cannot remove it (the
//! namespace policies), and a reconcile restores it.

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};

use super::meta;
use crate::{config::OperatorIdentity, desired::tenant_labels, types::Environment};

/// The grant in `namespace` of tenant `slug` (`env`: none for the account namespace).
pub fn operator_grant(slug: &str, env: Option<Environment>, namespace: &str, operator: &OperatorIdentity) -> RoleBinding {
    RoleBinding {
        metadata: meta(&operator.namespace_role, Some(namespace), tenant_labels(slug, env)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: operator.namespace_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: operator.service_account.clone(),
            namespace: Some(operator.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

/// Whether `kind`/`name` is the grant (the one RoleBinding of a tenant namespace that is the
/// operator's own, not a user's).
pub fn is_grant(kind: crate::desired::ChildKind, name: &str, operator: &OperatorIdentity) -> bool {
    kind == crate::desired::ChildKind::RoleBinding && name == operator.namespace_role
}
