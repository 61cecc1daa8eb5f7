//! Desired RoleBindings of a TenantUser in its tenant's environment namespaces (SPEC §3).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::{api::ObjectMeta, Resource};

use super::{
    rbac::{cluster_role_for, effective_role, NotBound},
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
    pub bindings: Vec<DesiredObject>,
    /// Namespaces in which the user gets at least one binding, in environment order.
    pub bound_namespaces: Vec<String>,
    /// Environments in which the effective role is not bound, and why.
    pub not_bound: Vec<(Environment, NotBound)>,
}

/// RBAC subject name of a user: the email, behind the configured prefix.
pub fn subject_name(user: &TenantUser, config: &Config) -> String {
    format!("{}{}", config.users.subject_prefix, user.spec.email)
}

impl UserPlan {
    pub fn build(user: &TenantUser, tenant: &Tenant, config: &Config) -> Result<Self, serde_json::Error> {
        let slug = tenant.metadata.name.clone().unwrap_or_default();
        let role = effective_role(&user.spec.roles);
        let mut environments = tenant.spec.environments.clone();
        environments.sort();
        environments.dedup();

        let mut bindings = Vec::new();
        let mut bound = Vec::new();
        let mut not_bound = Vec::new();
        for env in environments {
            let namespace = naming::namespace_name(&slug, env);
            let mut bound_here = false;
            if let Some(role) = role {
                match cluster_role_for(role, env) {
                    Ok(cluster_role) => {
                        bindings.push(binding(user, config, &slug, env, &naming::user_binding_name(&user.spec.username), cluster_role)?);
                        bound_here = true;
                    }
                    Err(reason) => not_bound.push((env, reason)),
                }
            }
            for custom in &user.spec.custom_roles {
                bindings.push(binding(user, config, &slug, env, &naming::user_custom_binding_name(&user.spec.username, custom), custom)?);
                bound_here = true;
            }
            if bound_here {
                bound.push(namespace);
            }
        }
        Ok(Self { effective_role: role, bindings, bound_namespaces: bound, not_bound })
    }
}

fn binding(
    user: &TenantUser,
    config: &Config,
    slug: &str,
    env: Environment,
    name: &str,
    cluster_role: &str,
) -> Result<DesiredObject, serde_json::Error> {
    let mut labels: BTreeMap<String, String> = tenant_labels(slug, Some(env));
    let user_name = user.metadata.name.clone().unwrap_or_default();
    labels.insert(LABEL_USER.to_string(), naming::user_label_value(&user_name));
    let rb = RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(naming::namespace_name(slug, env)),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(ANNOTATION_USER.to_string(), user_name)])),
            // Lightweight child: collected with the TenantUser if the operator is not around.
            owner_references: user.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "ClusterRole".to_string(),
            name: cluster_role.to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "User".to_string(),
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            name: subject_name(user, config),
            namespace: None,
        }]),
    };
    DesiredObject::from_typed(ChildKind::RoleBinding, &rb)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::desired::{
        rbac::{ACCOUNT_ADMIN, AGENT, EDITOR, VIEWER},
        tenant::tests::{acme, example_config},
    };

    fn users() -> Vec<TenantUser> {
        serde_yaml::Deserializer::from_str(include_str!("../../examples/users.yaml"))
            .map(|doc| TenantUser::deserialize(doc).expect("example user parses"))
            .collect()
    }

    fn role_refs(plan: &UserPlan) -> Vec<(String, String, String)> {
        plan.bindings
            .iter()
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
        let plan = UserPlan::build(&users()[0], &acme(), &example_config()).unwrap();
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
        assert_eq!(plan.bindings[0].object["metadata"]["labels"]["tenancy.platform.dev/user"], "acme-jdoe");
    }

    #[test]
    fn custom_roles_are_extra_bindings_everywhere() {
        let plan = UserPlan::build(&users()[1], &acme(), &example_config()).unwrap();
        let refs = role_refs(&plan);
        assert_eq!(refs.len(), 6);
        assert!(refs.contains(&("acme-dev".into(), "tenantuser-bsmith".into(), EDITOR.into())));
        assert!(refs.contains(&("acme-prod".into(), "tenantuser-bsmith:flow-billing-editor".into(), "flow-billing-editor".into())));
        assert_eq!(plan.bound_namespaces, ["acme-dev", "acme-staging", "acme-prod"]);
    }

    #[test]
    fn agent_only_in_prod() {
        let plan = UserPlan::build(&users()[2], &acme(), &example_config()).unwrap();
        assert_eq!(role_refs(&plan), [("acme-prod".into(), "tenantuser-alee".into(), AGENT.into())]);
        assert_eq!(plan.not_bound, [(Environment::Dev, NotBound::ProdOnlyRole), (Environment::Staging, NotBound::ProdOnlyRole)]);

        let mut no_prod = acme();
        no_prod.spec.environments = vec![Environment::Dev];
        let plan = UserPlan::build(&users()[2], &no_prod, &example_config()).unwrap();
        assert!(plan.bindings.is_empty());
        assert!(plan.bound_namespaces.is_empty());
    }

    #[test]
    fn subject_prefix_is_applied() {
        let mut config = example_config();
        config.users.subject_prefix = "oidc:".into();
        let plan = UserPlan::build(&users()[0], &acme(), &config).unwrap();
        assert_eq!(plan.bindings[0].object["subjects"][0]["name"], "oidc:jane.doe@acme.example");
    }
}
