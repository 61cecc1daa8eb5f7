//! The role table of SPEC §3: system roles → ClusterRoles per environment, and the ClusterRoles
//! themselves (defined once here, emitted by `render` and shipped in `deploy/`).

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::{api::ObjectMeta, Resource};

use crate::{
    gateway::GROUP as GATEWAY_GROUP,
    naming::{LABEL_MANAGED_BY, MANAGED_BY},
    types::{Environment, SystemRole, TenantUser},
};

pub const ACCOUNT_ADMIN: &str = "tenancy:account-admin";
pub const EDITOR: &str = "tenancy:editor";
pub const VIEWER: &str = "tenancy:viewer";
pub const SUPERVISOR: &str = "tenancy:supervisor";
pub const AGENT: &str = "tenancy:agent";
/// Bound in the account namespace `<slug>-account` to Account Admins: they manage the
/// TenantUsers of their own tenant.
pub const USER_ADMIN: &str = "tenancy:user-admin";

/// Every ClusterRole the operator binds for system roles; it needs `bind` on exactly these.
pub const SYSTEM_CLUSTER_ROLES: [&str; 6] = [ACCOUNT_ADMIN, EDITOR, VIEWER, SUPERVISOR, AGENT, USER_ADMIN];

/// Verbs a user holds on their own TenantUser (a Role with `resourceNames`) while the shipped
/// ValidatingAdmissionPolicy is verified: it limits what they may change. `patch` is enough
/// for `kubectl edit`/`apply`; `update` is not granted.
pub const SELF_SERVICE_VERBS: [&str; 2] = ["get", "patch"];
/// Verbs a user holds on their own TenantUser while the policy is not verified: read only.
pub const SELF_SERVICE_READ_ONLY_VERBS: [&str; 1] = ["get"];
/// The custom verb the self-service policy asks the authorizer about: who holds it on
/// `tenantusers` in a namespace may change users' `username`, `email`, `roles` and
/// `customRoles` there. Only `tenancy:user-admin` (and `edit`/`admin`, cluster admins) grant it.
pub const MANAGE_USERS_VERB: &str = "manage";

/// The highest of a user's system roles, which decides their access.
pub fn effective_role(roles: &[SystemRole]) -> Option<SystemRole> {
    roles.iter().copied().min()
}

/// Why a role gets no binding in an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBound {
    /// Agent and Supervisor accounts exist only in `prod` (SPEC §1).
    ProdOnlyRole,
}

/// ClusterRole bound for `role` in `env`. `prod` admits no configuration changes, so every
/// configuring role is read-only there; Analysts configure in dev only.
pub fn cluster_role_for(role: SystemRole, env: Environment) -> Result<&'static str, NotBound> {
    let prod = env == Environment::Prod;
    match role {
        SystemRole::AccountAdmin if !prod => Ok(ACCOUNT_ADMIN),
        SystemRole::FlowAdmin | SystemRole::Designer if !prod => Ok(EDITOR),
        SystemRole::Analyst if env == Environment::Dev => Ok(EDITOR),
        SystemRole::AccountAdmin | SystemRole::FlowAdmin | SystemRole::Designer | SystemRole::Analyst => Ok(VIEWER),
        SystemRole::Supervisor if prod => Ok(SUPERVISOR),
        SystemRole::Agent if prod => Ok(AGENT),
        SystemRole::Supervisor | SystemRole::Agent => Err(NotBound::ProdOnlyRole),
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// Workload kinds that tenants run themselves.
fn workload_rules(verbs: &[&str]) -> Vec<PolicyRule> {
    vec![
        rule("", &["pods", "services", "configmaps", "persistentvolumeclaims", "serviceaccounts"], verbs),
        rule("apps", &["deployments", "statefulsets", "replicasets", "daemonsets"], verbs),
        rule("batch", &["jobs", "cronjobs"], verbs),
        rule("autoscaling", &["horizontalpodautoscalers"], verbs),
        rule("policy", &["poddisruptionbudgets"], verbs),
    ]
}

/// Kinds the operator manages inside tenant namespaces: people may look, not change them
/// (a change would be reverted as drift anyway). Never HTTPRoutes of their own: a route
/// attaches to the region's shared Gateway, so it could claim another tenant's hostname or set
/// another tenant's ID. Quotas and LimitRanges are the tenant's
/// limits: never theirs to write.
fn operator_managed_read_rules() -> Vec<PolicyRule> {
    vec![
        rule("networking.k8s.io", &["ingresses"], READ),
        rule(GATEWAY_GROUP, &["httproutes"], READ),
        rule("", &["resourcequotas", "limitranges", "events", "pods/log", "endpoints"], READ),
        rule("events.k8s.io", &["events"], READ),
    ]
}

fn cluster_role(name: &str, description: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())])),
            annotations: Some(BTreeMap::from([("tenancy.platform.dev/description".to_string(), description.to_string())])),
            ..ObjectMeta::default()
        },
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

/// The ClusterRoles of the role table.
pub fn system_cluster_roles() -> Vec<ClusterRole> {
    let mut admin = workload_rules(WRITE);
    admin.push(rule("", &["secrets"], WRITE));
    admin.push(rule("", &["pods/exec", "pods/portforward"], &["create", "get"]));
    admin.push(rule("rbac.authorization.k8s.io", &["roles", "rolebindings"], READ));
    // Their own allowances for their own pods, in dev and staging (the role is bound there
    // only); `tenant-isolation` stays the operator's (the admission policy on its labels).
    admin.push(rule("networking.k8s.io", &["networkpolicies"], WRITE));
    admin.extend(operator_managed_read_rules());

    let mut editor = workload_rules(WRITE);
    editor.push(rule("", &["secrets"], WRITE));
    editor.push(rule("networking.k8s.io", &["networkpolicies"], READ));
    editor.extend(operator_managed_read_rules());

    let mut viewer = workload_rules(READ);
    viewer.push(rule("networking.k8s.io", &["networkpolicies"], READ));
    viewer.extend(operator_managed_read_rules());

    let supervisor = vec![
        rule("", &["pods", "services", "configmaps", "events", "pods/log"], READ),
        rule("apps", &["deployments", "statefulsets"], READ),
        rule("networking.k8s.io", &["ingresses"], READ),
        rule(GATEWAY_GROUP, &["httproutes"], READ),
    ];
    let agent = vec![
        rule("", &["services", "configmaps"], READ),
        rule("networking.k8s.io", &["ingresses"], READ),
        rule(GATEWAY_GROUP, &["httproutes"], READ),
    ];
    let group = TenantUser::group(&());
    let user_admin = vec![
        rule(&group, &[&TenantUser::plural(&())], &["get", "list", "watch", "create", "patch", "delete", MANAGE_USERS_VERB]),
        // The count quota of the account namespace: how many TenantUsers are left.
        rule("", &["resourcequotas"], READ),
        rule("", &["events"], READ),
        rule("events.k8s.io", &["events"], READ),
    ];

    vec![
        cluster_role(ACCOUNT_ADMIN, "Account Admin in dev/staging: manage workloads, secrets and volumes", admin),
        cluster_role(EDITOR, "Flow Admin and Designer in dev/staging, Analyst in dev: edit workloads and configuration", editor),
        cluster_role(VIEWER, "Analyst in staging/prod, and every configuring role in prod: read-only, no secrets", viewer),
        cluster_role(SUPERVISOR, "Supervisor in prod: watch workloads and their logs", supervisor),
        cluster_role(AGENT, "Agent in prod: see the tenant's services", agent),
        cluster_role(USER_ADMIN, "Account Admin in the account namespace: manage the tenant's TenantUsers", user_admin),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::*;
    use SystemRole::*;

    #[test]
    fn role_table_every_role_and_environment() {
        let table = [
            (AccountAdmin, [Ok(ACCOUNT_ADMIN), Ok(ACCOUNT_ADMIN), Ok(VIEWER)]),
            (FlowAdmin, [Ok(EDITOR), Ok(EDITOR), Ok(VIEWER)]),
            (Designer, [Ok(EDITOR), Ok(EDITOR), Ok(VIEWER)]),
            (Analyst, [Ok(EDITOR), Ok(VIEWER), Ok(VIEWER)]),
            (Supervisor, [Err(NotBound::ProdOnlyRole), Err(NotBound::ProdOnlyRole), Ok(SUPERVISOR)]),
            (Agent, [Err(NotBound::ProdOnlyRole), Err(NotBound::ProdOnlyRole), Ok(AGENT)]),
        ];
        for (role, expected) in table {
            for (env, want) in [Dev, Staging, Prod].into_iter().zip(expected) {
                assert_eq!(cluster_role_for(role, env), want, "{role} in {env}");
            }
        }
    }

    #[test]
    fn highest_role_wins() {
        assert_eq!(effective_role(&[Designer, AccountAdmin]), Some(AccountAdmin));
        assert_eq!(effective_role(&[Agent, Analyst, Supervisor]), Some(Analyst));
        assert_eq!(effective_role(&[Agent, Supervisor]), Some(Supervisor));
        assert_eq!(effective_role(&[FlowAdmin, Designer]), Some(FlowAdmin));
        assert_eq!(effective_role(&[]), None);
    }

    #[test]
    fn every_system_cluster_role_is_defined_once() {
        let roles = system_cluster_roles();
        let names: Vec<_> = roles.iter().filter_map(|r| r.metadata.name.as_deref()).collect();
        assert_eq!(names, SYSTEM_CLUSTER_ROLES);
    }

    fn grants(role: &str, group: &str, resource: &str) -> Vec<String> {
        system_cluster_roles()
            .into_iter()
            .filter(|r| r.metadata.name.as_deref() == Some(role))
            .flat_map(|r| r.rules.unwrap_or_default())
            .filter(|rule| rule.api_groups.iter().flatten().any(|g| g == group) && rule.resources.iter().flatten().any(|r| r == resource))
            .flat_map(|rule| rule.verbs)
            .collect()
    }

    #[test]
    fn quotas_and_limit_ranges_are_read_only_for_every_role() {
        for role in SYSTEM_CLUSTER_ROLES {
            for resource in ["resourcequotas", "limitranges"] {
                let verbs = grants(role, "", resource);
                assert!(verbs.iter().all(|v| READ.contains(&v.as_str())), "{role} may {verbs:?} {resource}");
            }
        }
        assert_eq!(grants(ACCOUNT_ADMIN, "", "limitranges"), READ);
        assert_eq!(grants(USER_ADMIN, "", "resourcequotas"), READ);
    }

    #[test]
    fn every_role_that_sees_ingresses_sees_http_routes_and_none_writes_them() {
        for role in SYSTEM_CLUSTER_ROLES {
            let routes = grants(role, GATEWAY_GROUP, "httproutes");
            assert!(routes.iter().all(|v| READ.contains(&v.as_str())), "{role} may {routes:?} httproutes");
            assert_eq!(routes.is_empty(), grants(role, "networking.k8s.io", "ingresses").is_empty(), "{role}");
            let wildcard = system_cluster_roles()
                .into_iter()
                .filter(|r| r.metadata.name.as_deref() == Some(role))
                .flat_map(|r| r.rules.unwrap_or_default())
                .any(|rule| rule.api_groups.iter().flatten().any(|g| g == "*") || rule.resources.iter().flatten().any(|r| r == "*"));
            assert!(!wildcard, "{role} has a wildcard rule, which would reach HTTPRoutes");
        }
    }

    #[test]
    fn only_account_admins_write_network_policies() {
        assert_eq!(grants(ACCOUNT_ADMIN, "networking.k8s.io", "networkpolicies"), WRITE);
        for role in [EDITOR, VIEWER] {
            assert_eq!(grants(role, "networking.k8s.io", "networkpolicies"), READ, "{role}");
        }
        // Account Admins hold `tenancy:account-admin` in dev and staging only.
        assert_eq!(cluster_role_for(AccountAdmin, Prod), Ok(VIEWER));
    }

    #[test]
    fn viewer_and_prod_roles_cannot_read_secrets_or_write() {
        for role in system_cluster_roles()
            .into_iter()
            .filter(|r| ![ACCOUNT_ADMIN, EDITOR, USER_ADMIN].contains(&r.metadata.name.as_deref().unwrap_or_default()))
        {
            for rule in role.rules.unwrap_or_default() {
                let resources = rule.resources.unwrap_or_default();
                assert!(!resources.iter().any(|r| r == "secrets"), "{:?} reads secrets", role.metadata.name);
                assert!(rule.verbs.iter().all(|v| READ.contains(&v.as_str())), "{:?} writes", role.metadata.name);
            }
        }
    }
}
