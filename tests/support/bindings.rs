//! What RBAC the operator gave a TenantUser, read back as the administrator.

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::{api::ListParams, Api};
use tenant_operator::types::TenantUser;

use super::{fixtures::account, scenario::Scenario};

/// (namespace, binding name, role) of all of a user's RoleBindings, found by the user-name
/// annotation (a label value holds at most 63 characters).
pub async fn all_bindings(s: &Scenario, user: &str) -> Vec<(String, String, String)> {
    let api: Api<RoleBinding> = Api::all(s.client());
    let mut out: Vec<_> = api
        .list(&ListParams::default().labels("tenancy.platform.dev/user"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.metadata.annotations.as_ref().and_then(|a| a.get("tenancy.platform.dev/user-name")).map(String::as_str) == Some(user))
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .map(|b| (b.metadata.namespace.unwrap_or_default(), b.metadata.name.unwrap_or_default(), b.role_ref.name))
        .collect();
    out.sort();
    out
}

/// (namespace, binding name, ClusterRole) of a user's RoleBindings in the environment
/// namespaces.
pub async fn bindings(s: &Scenario, user: &str) -> Vec<(String, String, String)> {
    all_bindings(s, user).await.into_iter().filter(|(ns, _, _)| !ns.ends_with("-account")).collect()
}

/// The user's RoleBindings in the account namespace: its self-service binding and, for Account
/// Admins, `tenancy:user-admin`.
pub async fn account_bindings(s: &Scenario, user: &str) -> Vec<(String, String, String)> {
    all_bindings(s, user).await.into_iter().filter(|(ns, _, _)| ns.ends_with("-account")).collect()
}

/// The TenantUsers of a tenant: its account namespace.
pub fn users_of(s: &Scenario, slug: &str) -> Api<TenantUser> {
    Api::namespaced(s.client(), &account(slug))
}
