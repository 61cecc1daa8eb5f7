//! Desired RBAC of a TenantUser (SPEC §3): RoleBindings in its tenant's environment
//! namespaces from the role table, and in the account namespace `<slug>-account` the user's
//! self-service Role (read and edit their own TenantUser) and, for Account Admins, the binding
//! to `tenancy:user-admin`.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::{api::ObjectMeta, Resource};

use super::{
    rbac::{cluster_role_for, effective_role, NotBound, SELF_SERVICE_READ_ONLY_VERBS, SELF_SERVICE_VERBS, USER_ADMIN},
    tenant_labels, ChildKind, DesiredObject,
};
use crate::{
    config::Config,
    naming::{self, ANNOTATION_USER, LABEL_USER},
    types::{Environment, SystemRole, Tenant, TenantUser},
};

#[derive(Debug, Clone, PartialEq)]
pub struct UserPlan {
    pub effective_role: Option<SystemRole>,
    /// RoleBindings of the system role in the environment namespaces.
    pub bindings: Vec<DesiredObject>,
    /// RoleBindings of the custom roles in the environment namespaces (refused unless the
    /// ClusterRole is assignable).
    pub custom_role_bindings: Vec<DesiredObject>,
    /// The account namespace's objects: the self-service Role and its RoleBinding, and the
    /// `tenancy:user-admin` RoleBinding of an Account Admin. The Role comes first.
    pub account_objects: Vec<DesiredObject>,
    /// The account namespace, where `account_objects` live.
    pub account_namespace: String,
    /// Namespaces in which the user gets at least one binding: the account namespace, then the
    /// environment namespaces in environment order.
    pub bound_namespaces: Vec<String>,
    /// Environments in which the effective role is not bound, and why.
    pub not_bound: Vec<(Environment, NotBound)>,
}

/// RBAC subject name of a user: the email, behind the configured prefix.
pub fn subject_name(user: &TenantUser, config: &Config) -> String {
    format!("{}{}", config.users.subject_prefix, user.spec.email)
}

impl UserPlan {
    /// `self_edit`: whether the user's self-service Role may patch their TenantUser (only while
    /// the self-service admission policy is verified), else it only reads it.
    pub fn build(user: &TenantUser, tenant: &Tenant, config: &Config, self_edit: bool) -> Result<Self, serde_json::Error> {
        let slug = tenant.metadata.name.clone().unwrap_or_default();
        let account_namespace = naming::account_namespace_name(&slug);
        let role = effective_role(&user.spec.roles);
        let mut environments = tenant.spec.environments.clone();
        environments.sort();
        environments.dedup();

        let mut bindings = Vec::new();
        let mut custom_role_bindings = Vec::new();
        let mut bound = vec![account_namespace.clone()];
        let mut not_bound = Vec::new();
        for env in environments {
            let namespace = naming::namespace_name(&slug, env);
            let mut bound_here = false;
            if let Some(role) = role {
                match cluster_role_for(role, env) {
                    Ok(cluster_role) => {
                        let name = naming::user_binding_name(&user.spec.username);
                        bindings.push(binding(user, config, &slug, Some(env), &namespace, &name, "ClusterRole", cluster_role)?);
                        bound_here = true;
                    }
                    Err(reason) => not_bound.push((env, reason)),
                }
            }
            for custom in &user.spec.custom_roles {
                let name = naming::user_custom_binding_name(&user.spec.username, custom);
                custom_role_bindings.push(binding(user, config, &slug, Some(env), &namespace, &name, "ClusterRole", custom)?);
                bound_here = true;
            }
            if bound_here {
                bound.push(namespace);
            }
        }

        let self_service = naming::user_self_service_name(&user.spec.username);
        let mut account_objects = vec![
            DesiredObject::from_typed(ChildKind::Role, &self_service_role(user, &slug, &account_namespace, &self_service, self_edit))?,
            binding(user, config, &slug, None, &account_namespace, &self_service, "Role", &self_service)?,
        ];
        if role == Some(SystemRole::AccountAdmin) {
            let name = naming::user_binding_name(&user.spec.username);
            account_objects.push(binding(user, config, &slug, None, &account_namespace, &name, "ClusterRole", USER_ADMIN)?);
        }
        Ok(Self {
            effective_role: role,
            bindings,
            custom_role_bindings,
            account_objects,
            account_namespace,
            bound_namespaces: bound,
            not_bound,
        })
    }

    /// Every object of the plan: the account namespace's, then the environments' (system
    /// role, then custom roles).
    pub fn objects(&self) -> impl Iterator<Item = &DesiredObject> {
        self.account_objects.iter().chain(self.bindings.iter()).chain(self.custom_role_bindings.iter())
    }

    /// Whether the plan binds anything in the environment namespaces.
    pub fn binds_environments(&self) -> bool {
        !self.bindings.is_empty() || !self.custom_role_bindings.is_empty()
    }
}

/// Metadata of every object made for a user: the tenant's labels, the user's name (label,
/// shortened, and annotation, whole), and in the user's own namespace an owner reference so
/// the garbage collector removes it if the user is ever deleted past the operator. Owner
/// references cannot point into another namespace: environment bindings are removed by the
/// operator (the TenantUser's finalizer).
fn user_meta(user: &TenantUser, slug: &str, env: Option<Environment>, namespace: &str, name: &str) -> ObjectMeta {
    let mut labels: BTreeMap<String, String> = tenant_labels(slug, env);
    let user_name = user.metadata.name.clone().unwrap_or_default();
    labels.insert(LABEL_USER.to_string(), naming::user_label_value(&user_name));
    let same_namespace = user.metadata.namespace.as_deref() == Some(namespace);
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(ANNOTATION_USER.to_string(), user_name)])),
        owner_references: user.controller_owner_ref(&()).filter(|_| same_namespace).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn binding(
    user: &TenantUser,
    config: &Config,
    slug: &str,
    env: Option<Environment>,
    namespace: &str,
    name: &str,
    role_kind: &str,
    role: &str,
) -> Result<DesiredObject, serde_json::Error> {
    let rb = RoleBinding {
        metadata: user_meta(user, slug, env, namespace, name),
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".to_string(), kind: role_kind.to_string(), name: role.to_string() },
        subjects: Some(vec![Subject {
            kind: "User".to_string(),
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            name: subject_name(user, config),
            namespace: None,
        }]),
    };
    DesiredObject::from_typed(ChildKind::RoleBinding, &rb)
}

/// The user's own TenantUser, by name: read, and patch when `self_edit`. Which fields a user
/// may change on themselves is the ValidatingAdmissionPolicy's business (`deploy/admission/`),
/// which is why patching is granted only while the operator has verified it.
fn self_service_role(user: &TenantUser, slug: &str, namespace: &str, name: &str, self_edit: bool) -> Role {
    let verbs: &[&str] = if self_edit { &SELF_SERVICE_VERBS } else { &SELF_SERVICE_READ_ONLY_VERBS };
    Role {
        metadata: user_meta(user, slug, None, namespace, name),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![TenantUser::group(&()).into_owned()]),
            resources: Some(vec![TenantUser::plural(&()).into_owned()]),
            resource_names: Some(vec![user.metadata.name.clone().unwrap_or_default()]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::desired::{
        rbac::{ACCOUNT_ADMIN, AGENT, EDITOR, VIEWER},
        tenant::tests::{acme, example_config},
    };

    /// The example users, as the API server returns them (with a UID).
    fn users() -> Vec<TenantUser> {
        serde_yaml::Deserializer::from_str(include_str!("../../examples/users.yaml"))
            .map(|doc| TenantUser::deserialize(doc).expect("example user parses"))
            .enumerate()
            .map(|(i, mut user)| {
                user.metadata.uid = Some(format!("uid-{i}"));
                user
            })
            .collect()
    }

    fn role_refs(plan: &UserPlan) -> Vec<(String, String, String)> {
        plan.bindings
            .iter()
            .chain(&plan.custom_role_bindings)
            .map(|b| {
                (
                    b.namespace.clone().unwrap_or_default(),
                    b.name.clone(),
                    b.object["roleRef"]["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn account_admin_is_admin_outside_prod_and_viewer_in_prod() {
        let plan = UserPlan::build(&users()[0], &acme(), &example_config(), true).unwrap();
        assert_eq!(plan.effective_role, Some(SystemRole::AccountAdmin));
        assert_eq!(
            role_refs(&plan),
            [
                ("acme-dev".into(), "tenantuser-jdoe".into(), ACCOUNT_ADMIN.into()),
                ("acme-staging".into(), "tenantuser-jdoe".into(), ACCOUNT_ADMIN.into()),
                ("acme-prod".into(), "tenantuser-jdoe".into(), VIEWER.into()),
            ]
        );
        let subject = &plan.bindings[0].object["subjects"][0];
        assert_eq!(subject["kind"], "User");
        assert_eq!(subject["name"], "jane.doe@acme.example");
        assert_eq!(plan.bindings[0].object["metadata"]["labels"]["tenancy.platform.dev/user"], "jdoe");
    }

    #[test]
    fn account_admins_manage_users_and_everyone_edits_themselves() {
        let admin = UserPlan::build(&users()[0], &acme(), &example_config(), true).unwrap();
        let account: Vec<(String, String, String)> = admin
            .account_objects
            .iter()
            .map(|o| (o.kind.name().to_string(), o.name.clone(), o.object["roleRef"]["name"].as_str().unwrap_or_default().to_string()))
            .collect();
        assert_eq!(
            account,
            [
                ("Role".into(), "tenantuser-jdoe:self".into(), String::new()),
                ("RoleBinding".into(), "tenantuser-jdoe:self".into(), "tenantuser-jdoe:self".into()),
                ("RoleBinding".into(), "tenantuser-jdoe".into(), USER_ADMIN.into()),
            ]
        );
        assert!(admin.account_objects.iter().all(|o| o.namespace.as_deref() == Some("acme-account")));
        let rule = &admin.account_objects[0].object["rules"][0];
        assert_eq!(rule["resources"], serde_json::json!(["tenantusers"]));
        assert_eq!(rule["resourceNames"], serde_json::json!(["jdoe"]));
        assert_eq!(rule["verbs"], serde_json::json!(["get", "patch"]), "patch is enough: no update");
        let read_only = UserPlan::build(&users()[0], &acme(), &example_config(), false).unwrap();
        assert_eq!(read_only.account_objects[0].object["rules"][0]["verbs"], serde_json::json!(["get"]), "self-edit withheld");
        assert_eq!(admin.bound_namespaces[0], "acme-account");

        let designer = UserPlan::build(&users()[1], &acme(), &example_config(), true).unwrap();
        assert_eq!(designer.account_objects.len(), 2, "no user-admin binding for a Designer");
        assert_eq!(designer.account_objects[0].object["rules"][0]["resourceNames"], serde_json::json!(["bsmith"]));
    }

    #[test]
    fn owner_references_stay_inside_the_users_namespace() {
        let plan = UserPlan::build(&users()[0], &acme(), &example_config(), true).unwrap();
        for object in &plan.bindings {
            assert!(object.object["metadata"].get("ownerReferences").is_none(), "{}", object.describe());
        }
        for object in &plan.account_objects {
            assert_eq!(object.object["metadata"]["ownerReferences"][0]["name"], "jdoe", "{}", object.describe());
        }
    }

    #[test]
    fn analysts_edit_in_dev_only() {
        let mut analyst = users()[1].clone();
        analyst.spec.roles = vec![SystemRole::Analyst];
        analyst.spec.custom_roles.clear();
        let plan = UserPlan::build(&analyst, &acme(), &example_config(), true).unwrap();
        assert_eq!(
            role_refs(&plan),
            [
                ("acme-dev".into(), "tenantuser-bsmith".into(), EDITOR.into()),
                ("acme-staging".into(), "tenantuser-bsmith".into(), VIEWER.into()),
                ("acme-prod".into(), "tenantuser-bsmith".into(), VIEWER.into()),
            ]
        );
    }

    #[test]
    fn custom_roles_are_extra_bindings_everywhere() {
        let plan = UserPlan::build(&users()[1], &acme(), &example_config(), true).unwrap();
        let refs = role_refs(&plan);
        assert_eq!(refs.len(), 6);
        assert!(refs.contains(&("acme-dev".into(), "tenantuser-bsmith".into(), EDITOR.into())));
        assert!(refs.contains(&("acme-prod".into(), "tenantuser-bsmith:flow-billing-editor".into(), "flow-billing-editor".into())));
        assert_eq!(plan.bound_namespaces, ["acme-account", "acme-dev", "acme-staging", "acme-prod"]);
    }

    #[test]
    fn agent_only_in_prod() {
        let plan = UserPlan::build(&users()[2], &acme(), &example_config(), true).unwrap();
        assert_eq!(role_refs(&plan), [("acme-prod".into(), "tenantuser-alee".into(), AGENT.into())]);
        assert_eq!(plan.not_bound, [(Environment::Dev, NotBound::ProdOnlyRole), (Environment::Staging, NotBound::ProdOnlyRole)]);

        let mut no_prod = acme();
        no_prod.spec.environments = vec![Environment::Dev];
        let plan = UserPlan::build(&users()[2], &no_prod, &example_config(), true).unwrap();
        assert!(!plan.binds_environments());
        assert_eq!(plan.bound_namespaces, ["acme-account"], "only the self-service binding");
    }

    #[test]
    fn subject_prefix_is_applied() {
        let mut config = example_config();
        config.users.subject_prefix = "oidc:".into();
        let plan = UserPlan::build(&users()[0], &acme(), &config, true).unwrap();
        assert_eq!(plan.bindings[0].object["subjects"][0]["name"], "oidc:jane.doe@acme.example");
    }
}
