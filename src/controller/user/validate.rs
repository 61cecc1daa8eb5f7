//! Step 1 for a TenantUser: it lives in the account namespace the operator made for its
//! tenant, the tenant exists and is not going away, and no older user of the tenant has its
//! email or username. Otherwise the user is refused and gets no access.
//!
//! The namespace decides the tenant: RBAC on `<slug>-account` is what lets Account Admins
//! manage users, so only a namespace the operator created for that Tenant (by UID) is trusted —
//! a TenantUser in a look-alike namespace someone else made would grant access to a tenant
//! nobody delegated, and one in a namespace an earlier Tenant of the same name left would give
//! the previous customer's users access to the new one.
//!
//! A user keeps the UID of the Tenant it was first given access under (in status, which only
//! the operator writes): a Tenant re-created with the same name binds it again only when it
//! adopted the earlier Tenant's data (`spec.adoptRetainedFrom`); consent covers the users.

use kube::ResourceExt;

use crate::{
    config::Config,
    controller::{
        caches::Child,
        ownership::{is_ours, is_ours_for, is_retained, is_terminating, previous_owner},
    },
    desired::user::UserPlan,
    naming,
    types::{Problem, Reason, Tenant, TenantUser},
};

#[derive(Debug)]
pub struct ValidatedUser {
    pub tenant: Tenant,
    /// The Tenant's UID: what the user is bound under.
    pub tenant_uid: String,
    pub plan: UserPlan,
}

/// What the reconcile found around the user.
pub struct Surroundings<'a> {
    /// The Tenant named by the user's namespace, if it exists.
    pub tenant: Option<Tenant>,
    /// The user's namespace as the operator's cache has it (only namespaces with the tenant
    /// label are cached).
    pub namespace: Option<&'a Child>,
    /// The other users that may share its email or username (at least those of its namespace
    /// that do).
    pub others: &'a [TenantUser],
    /// Whether users may edit their own TenantUser (the self-service policy is verified).
    pub self_edit: bool,
    /// The UID of the Tenant the user was given access under, from its status.
    pub bound_under: Option<&'a str>,
}

/// The slug whose account namespace holds `user`, by the namespace's name.
pub fn slug_of(user: &TenantUser) -> Option<String> {
    user.namespace().as_deref().and_then(naming::slug_of_account_namespace).map(str::to_string)
}

pub fn validate(user: &TenantUser, around: Surroundings<'_>, config: &Config) -> Result<ValidatedUser, Problem> {
    let namespace = user.namespace().unwrap_or_default();
    let slug = slug_of(user).ok_or_else(|| {
        Problem::new(
            Reason::NotInAccountNamespace,
            format!(
                "TenantUsers live in their tenant's account namespace <slug>-account; namespace {namespace} is not one. \
                 Create the user in the account namespace of its tenant"
            ),
        )
    })?;
    let tenant = around.tenant.ok_or_else(|| {
        Problem::new(Reason::TenantNotFound, format!("tenant {slug} does not exist (yet); access is granted when it appears"))
    })?;
    if tenant.metadata.deletion_timestamp.is_some() {
        return Err(Problem::new(Reason::TenantTerminating, format!("tenant {slug} is being deleted")));
    }
    let tenant_uid = tenant.uid().ok_or_else(|| Problem::new(Reason::TenantNotFound, format!("tenant {slug} has no UID yet")))?;
    let consent = tenant.spec.adopt_retained_from.as_deref();
    match around.namespace {
        Some(ns) if is_ours_for(ns, &slug, &tenant_uid) => {
            if is_retained(ns) || is_terminating(ns) {
                return Err(Problem::new(
                    Reason::WaitingForNamespaces,
                    format!("namespace {namespace} is retained from an earlier Tenant {slug} or being deleted; waiting for the Tenant"),
                ));
            }
        }
        Some(ns) if is_ours(ns, &slug) => {
            let previous = previous_owner(ns, &tenant_uid).unwrap_or_default();
            if consent == Some(previous.as_str()) {
                return Err(Problem::new(
                    Reason::WaitingForNamespaces,
                    format!("namespace {namespace} of the earlier Tenant {previous} is being adopted by Tenant {slug}"),
                ));
            }
            return Err(Problem::new(
                Reason::RetainedDataFromAnotherTenant,
                format!(
                    "namespace {namespace} was left by an earlier Tenant {slug} with UID {previous}; Tenant {slug} (UID {tenant_uid}) \
                     has not adopted it, so users in it get no access. Set `spec.adoptRetainedFrom: {previous}` on Tenant {slug} \
                     to let them back in, or delete the namespace"
                ),
            ));
        }
        _ => {
            return Err(Problem::new(
                Reason::NotInAccountNamespace,
                format!(
                    "namespace {namespace} was not created by the operator for tenant {slug} (the Tenant reports NamespaceConflict); \
                     users in it get no access"
                ),
            ))
        }
    }
    if let Some(previous) = around.bound_under.filter(|uid| *uid != tenant_uid && Some(*uid) != consent) {
        return Err(Problem::new(
            Reason::UserOfAnotherTenant,
            format!(
                "TenantUser {} was given access by an earlier Tenant {slug} with UID {previous}; Tenant {slug} is now UID \
                 {tenant_uid} and has not adopted that Tenant's data, so the user gets no access. Set \
                 `spec.adoptRetainedFrom: {previous}` on Tenant {slug} to let the earlier Tenant's users back in, or delete this \
                 TenantUser and create it again",
                user.name_any()
            ),
        ));
    }
    if let Some(problem) = duplicate_of(user, around.others) {
        return Err(problem);
    }
    let plan = UserPlan::build(user, &tenant, config, around.self_edit)
        .map_err(|error| Problem::new(Reason::InvalidSpec, format!("the user's RBAC objects cannot be built: {error}")))?;
    Ok(ValidatedUser { tenant, tenant_uid, plan })
}

/// Why a user is refused, if another user of the same tenant (its namespace) already has its
/// email or username. The older user (creation time, then name) keeps access.
fn duplicate_of(user: &TenantUser, others: &[TenantUser]) -> Option<Problem> {
    let key = |u: &TenantUser| (u.metadata.creation_timestamp.clone().map(|t| t.0), u.name_any());
    let me = key(user);
    let email = user.spec.email.to_lowercase();
    let namespace = user.namespace();
    let mut older: Vec<&TenantUser> = others
        .iter()
        .filter(|other| {
            other.namespace() == namespace && other.name_any() != user.name_any() && other.metadata.deletion_timestamp.is_none()
        })
        .filter(|other| key(other) < me)
        .collect();
    older.sort_by_key(|u| key(u));
    let tenant = slug_of(user).unwrap_or_default();
    if let Some(other) = older.iter().find(|o| o.spec.email.to_lowercase() == email) {
        return Some(Problem::new(
            Reason::DuplicateEmail,
            format!("email {} is already used by TenantUser {} of tenant {tenant}", user.spec.email, other.name_any()),
        ));
    }
    if let Some(other) = older.iter().find(|o| o.spec.username == user.spec.username) {
        return Some(Problem::new(
            Reason::DuplicateUsername,
            format!("username {} is already used by TenantUser {} of tenant {tenant}", user.spec.username, other.name_any()),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use serde_json::json;

    use kube::core::DynamicObject;

    use super::*;
    use crate::{
        desired::ChildKind,
        types::{TenantSpec, TenantUserSpec},
    };

    fn config() -> Config {
        crate::desired::tenant::tests::example_config()
    }

    fn tenant() -> Tenant {
        let spec: TenantSpec = serde_json::from_value(json!({"displayName": "Acme", "cluster": "uk", "environments": ["dev"]})).unwrap();
        let mut tenant = Tenant::new("acme", spec);
        tenant.metadata.uid = Some("uid-2".into());
        tenant
    }

    /// The Tenant `uid-2`, consenting to adopt from `from`.
    fn adopting(from: &str) -> Tenant {
        let mut tenant = tenant();
        tenant.spec.adopt_retained_from = Some(from.into());
        tenant
    }

    fn user_in(namespace: &str, name: &str, email: &str, username: &str, created: i64) -> TenantUser {
        let spec: TenantUserSpec = serde_json::from_value(json!({
            "email": email, "username": username, "firstName": "A", "lastName": "B", "roles": ["Designer"]
        }))
        .unwrap();
        let mut user = TenantUser::new(name, spec);
        user.metadata.namespace = Some(namespace.to_string());
        user.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        user
    }

    fn user(name: &str, email: &str, username: &str, created: i64) -> TenantUser {
        user_in("acme-account", name, email, username, created)
    }

    /// A namespace as the cache holds it; `manager` is who wrote it.
    fn namespace(name: &str, slug: &str, manager: &str, labels: serde_json::Value) -> Child {
        let mut ns: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}
        }))
        .unwrap();
        ns.labels_mut().insert(naming::LABEL_TENANT.into(), slug.into());
        // The operator's stamp, as on every namespace it applies.
        ns.annotations_mut().insert(naming::ANNOTATION_TENANT_UID.into(), "uid-2".into());
        ns.metadata.managed_fields = Some(vec![ManagedFieldsEntry { manager: Some(manager.into()), ..Default::default() }]);
        Child::from_object(ChildKind::Namespace, &ns)
    }

    fn ours() -> Child {
        namespace("acme-account", "acme", naming::FIELD_MANAGER, json!({}))
    }

    /// The account namespace as the earlier Tenant `uid-1` of the slug left it.
    fn earlier(labels: serde_json::Value) -> Child {
        let mut ns: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "acme-account", "labels": labels, "annotations": {naming::ANNOTATION_TENANT_UID: "uid-1"}}
        }))
        .unwrap();
        ns.labels_mut().insert(naming::LABEL_TENANT.into(), "acme".into());
        ns.metadata.managed_fields = Some(vec![ManagedFieldsEntry { manager: Some(naming::FIELD_MANAGER.into()), ..Default::default() }]);
        Child::from_object(ChildKind::Namespace, &ns)
    }

    fn check(user: &TenantUser, tenant: Option<Tenant>, ns: Option<&Child>, others: &[TenantUser]) -> Result<ValidatedUser, Problem> {
        validate(user, Surroundings { tenant, namespace: ns, others, self_edit: true, bound_under: None }, &config())
    }

    #[test]
    fn a_missing_or_terminating_tenant_refuses() {
        let u = user("a", "a@acme.example", "a", 1);
        assert_eq!(check(&u, None, Some(&ours()), &[]).unwrap_err().reason, Reason::TenantNotFound);
        let mut going = tenant();
        going.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        assert_eq!(check(&u, Some(going), Some(&ours()), &[]).unwrap_err().reason, Reason::TenantTerminating);
    }

    #[test]
    fn only_the_operators_account_namespace_grants_access() {
        let elsewhere = user_in("acme-dev", "a", "a@acme.example", "a", 1);
        let problem = check(&elsewhere, Some(tenant()), Some(&ours()), &[]).unwrap_err();
        assert_eq!(problem.reason, Reason::NotInAccountNamespace);
        assert!(problem.message.contains("acme-dev"), "{}", problem.message);

        let u = user("a", "a@acme.example", "a", 1);
        let foreign = namespace("acme-account", "acme", "kubectl-client-side-apply", json!({}));
        assert_eq!(check(&u, Some(tenant()), Some(&foreign), &[]).unwrap_err().reason, Reason::NotInAccountNamespace);
        assert_eq!(check(&u, Some(tenant()), None, &[]).unwrap_err().reason, Reason::NotInAccountNamespace);

        let retained = namespace("acme-account", "acme", naming::FIELD_MANAGER, json!({naming::LABEL_RETAINED: "true"}));
        assert_eq!(check(&u, Some(tenant()), Some(&retained), &[]).unwrap_err().reason, Reason::WaitingForNamespaces);
        assert!(check(&u, Some(tenant()), Some(&ours()), &[]).is_ok());
    }

    #[test]
    fn the_older_user_keeps_a_duplicate_email_or_username() {
        let older = user("a", "Jane@acme.example", "jane", 1);
        let newer = user("b", "jane@ACME.example", "jane2", 2);
        let problem = check(&newer, Some(tenant()), Some(&ours()), &[older.clone(), newer.clone()]).unwrap_err();
        assert_eq!(problem.reason, Reason::DuplicateEmail);
        assert!(problem.message.contains("TenantUser a "), "{}", problem.message);
        assert!(check(&older, Some(tenant()), Some(&ours()), &[older.clone(), newer.clone()]).is_ok());
        let same_name = user("c", "c@acme.example", "jane", 3);
        assert_eq!(
            check(&same_name, Some(tenant()), Some(&ours()), &[older.clone(), same_name.clone()]).unwrap_err().reason,
            Reason::DuplicateUsername
        );
        // Another tenant's user with the same email is no duplicate.
        let globex = user_in("globex-account", "a", "jane@acme.example", "jane", 0);
        assert!(check(&newer, Some(tenant()), Some(&ours()), &[globex, newer.clone()]).is_ok());
    }

    #[test]
    fn an_account_namespace_an_earlier_tenant_left_grants_nothing_without_consent() {
        let u = user("a", "a@acme.example", "a", 1);
        for labels in [json!({naming::LABEL_RETAINED: "true"}), json!({})] {
            let problem = check(&u, Some(tenant()), Some(&earlier(labels.clone())), &[]).unwrap_err();
            assert_eq!(problem.reason, Reason::RetainedDataFromAnotherTenant, "{labels}");
            assert!(problem.message.contains("UID uid-1") && problem.message.contains("adoptRetainedFrom: uid-1"), "{}", problem.message);
            // With consent the user waits for the Tenant to adopt the namespace.
            let problem = check(&u, Some(adopting("uid-1")), Some(&earlier(labels)), &[]).unwrap_err();
            assert_eq!(problem.reason, Reason::WaitingForNamespaces);
        }
    }

    #[test]
    fn a_user_of_an_earlier_tenant_is_bound_again_only_with_consent() {
        let u = user("a", "a@acme.example", "a", 1);
        let ns = ours();
        let around =
            |tenant, bound_under| Surroundings { tenant: Some(tenant), namespace: Some(&ns), others: &[], self_edit: true, bound_under };
        let problem = validate(&u, around(tenant(), Some("uid-1")), &config()).unwrap_err();
        assert_eq!(problem.reason, Reason::UserOfAnotherTenant);
        assert!(problem.message.contains("UID uid-1") && problem.message.contains("uid-2"), "{}", problem.message);
        assert!(validate(&u, around(adopting("uid-1"), Some("uid-1")), &config()).is_ok(), "consent covers the users");
        assert!(validate(&u, around(adopting("uid-0"), Some("uid-1")), &config()).is_err(), "consent to another UID does not");
        assert!(validate(&u, around(tenant(), Some("uid-2")), &config()).is_ok(), "bound under this Tenant");
        assert!(validate(&u, around(tenant(), None), &config()).is_ok(), "never bound yet");
    }
}
