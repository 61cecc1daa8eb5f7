//! What `kubectl tenant` shows, as plain data (pure): built from the Tenant, its users, the
//! addresses of its Ingresses, its quotas and its Events, then rendered as a tree or a
//! table ([`super::render`]) or printed as one JSON/YAML document for scripts.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;

use crate::{
    desired::rbac::{cluster_role_for, effective_role},
    gateway::{HTTPRoute, ACCEPTED, RESOLVED_REFS},
    types::{Conditions, DatabaseStatus, Environment, Tenant, TenantUser},
};

/// Everything `kubectl tenant status` shows about one Tenant.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    pub name: String,
    pub display_name: String,
    pub cluster: String,
    pub phase: String,
    pub suspended: bool,
    /// `Ready`, `Reconciling` and `Stalled`, in that order, where present.
    pub conditions: Vec<ConditionView>,
    pub environments: Vec<EnvironmentView>,
    pub account: Option<AccountView>,
    pub events: Vec<EventView>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    pub environment: String,
    pub namespace: String,
    /// `Active`, `Terminating`, `Retained`, or `Missing` when status names none yet.
    pub state: String,
    pub hosts: Vec<HostView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseStatus>,
    pub quota: Vec<QuotaUse>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostView {
    pub application: String,
    pub url: String,
    /// The address the ingress controller published, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Where the host is served by an HTTPRoute (`routing: gateway`): what its gateway
    /// controller said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteView>,
}

/// An HTTPRoute as its gateway controller reported it.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    /// `Accepted=True` and `ResolvedRefs=True` from a Gateway, for the route's generation.
    pub accepted: bool,
    /// The Gateway that accepted it, or why none has.
    pub detail: String,
}

impl RouteView {
    /// What the route's status says: accepted when a parent entry has `Accepted=True` and
    /// `ResolvedRefs=True`, both observed at the route's current generation. (The operator
    /// checks the Gateway its configuration names; the plugin does not read that configuration
    /// and takes any Gateway's word.)
    pub fn of(route: &HTTPRoute) -> RouteView {
        let generation = route.metadata.generation;
        let current = |c: &&Condition| generation.is_none() || c.observed_generation.is_none() || c.observed_generation >= generation;
        let parents = route.status.as_ref().map(|s| s.parents.as_slice()).unwrap_or_default();
        let mut why = None;
        for parent in parents {
            let gateway = match &parent.parent_ref.namespace {
                Some(namespace) => format!("{namespace}/{}", parent.parent_ref.name),
                None => parent.parent_ref.name.clone(),
            };
            let failing = [ACCEPTED, RESOLVED_REFS].into_iter().find_map(|type_| {
                match parent.conditions.iter().filter(current).find(|c| c.type_ == type_) {
                    Some(c) if c.status == "True" => None,
                    Some(c) => Some(format!("{type_}={} ({}) from Gateway {gateway}", c.status, c.reason)),
                    None => Some(format!("no {type_} for this generation from Gateway {gateway}")),
                }
            });
            match failing {
                None => return RouteView { accepted: true, detail: format!("accepted by Gateway {gateway}") },
                Some(reason) => why = why.or(Some(reason)),
            }
        }
        RouteView { accepted: false, detail: why.unwrap_or_else(|| "no gateway controller has reported on it".into()) }
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUse {
    pub resource: String,
    pub used: String,
    pub hard: String,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub namespace: String,
    pub state: String,
    pub users: Vec<UserView>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub name: String,
    pub username: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_role: Option<String>,
    pub custom_roles: Vec<String>,
    pub bound_namespaces: Vec<String>,
    /// Per environment of the tenant: the ClusterRole the user gets there, or why none.
    pub access: BTreeMap<String, String>,
    pub ready: bool,
    /// Why not ready (reason: message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub note: String,
}

/// What the cluster holds besides the Tenant, per environment namespace.
#[derive(Default, Debug, Clone)]
pub struct Observed {
    pub users: Vec<TenantUser>,
    /// (namespace, Ingress name) → published address.
    pub addresses: BTreeMap<(String, String), String>,
    /// (namespace, HTTPRoute name) → what its gateway controller said.
    pub routes: BTreeMap<(String, String), RouteView>,
    /// namespace → quota use.
    pub quotas: BTreeMap<String, Vec<QuotaUse>>,
    /// Newest last.
    pub events: Vec<EventView>,
}

/// How many Events the status shows.
pub const EVENTS_SHOWN: usize = 5;

impl TenantView {
    pub fn build(tenant: &Tenant, observed: &Observed) -> TenantView {
        let status = tenant.status.clone().unwrap_or_default();
        let conditions =
            ["Ready", "Reconciling", "Stalled"].into_iter().filter_map(|type_| status.condition(type_).map(condition_view)).collect();
        let mut environments: Vec<Environment> = tenant.spec.environments.clone();
        for namespace in &status.namespaces {
            if !environments.contains(&namespace.environment) {
                environments.push(namespace.environment);
            }
        }
        environments.sort();
        let environments = environments
            .into_iter()
            .map(|env| {
                let found = status.namespaces.iter().find(|n| n.environment == env);
                let namespace = found.map(|n| n.name.clone()).unwrap_or_else(|| format!("{}-{env}", tenant.name_any()));
                let hosts = status
                    .endpoints
                    .iter()
                    .filter(|e| e.environment == env)
                    .map(|e| HostView {
                        application: e.application.clone(),
                        url: e.url.clone(),
                        address: observed.addresses.get(&(namespace.clone(), e.application.clone())).cloned(),
                        route: observed.routes.get(&(namespace.clone(), e.application.clone())).cloned(),
                    })
                    .collect();
                EnvironmentView {
                    environment: env.to_string(),
                    state: found.map(|n| format!("{:?}", n.state)).unwrap_or_else(|| "Missing".to_string()),
                    hosts,
                    database: status.databases.iter().find(|d| d.environment == env).cloned(),
                    quota: observed.quotas.get(&namespace).cloned().unwrap_or_default(),
                    namespace,
                }
            })
            .collect();
        let account = Some(AccountView {
            namespace: status
                .account_namespace
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_else(|| format!("{}-account", tenant.name_any())),
            state: status.account_namespace.as_ref().map(|a| format!("{:?}", a.state)).unwrap_or_else(|| "Missing".to_string()),
            users: observed.users.iter().map(|u| user_view(u, &tenant.spec.environments)).collect(),
        });
        let skip = observed.events.len().saturating_sub(EVENTS_SHOWN);
        TenantView {
            name: tenant.name_any(),
            display_name: tenant.spec.display_name.clone(),
            cluster: tenant.spec.cluster.clone(),
            phase: status.phase.map(|p| p.as_str().to_string()).unwrap_or_else(|| "Pending".to_string()),
            suspended: tenant.spec.suspend,
            conditions,
            environments,
            account,
            events: observed.events.iter().skip(skip).cloned().collect(),
        }
    }
}

fn condition_view(c: &Condition) -> ConditionView {
    ConditionView { type_: c.type_.clone(), status: c.status.clone(), reason: c.reason.clone(), message: c.message.clone() }
}

/// A user with their effective access in each of the tenant's environments.
pub fn user_view(user: &TenantUser, environments: &[Environment]) -> UserView {
    let status = user.status.clone().unwrap_or_default();
    let role = status.effective_role.or_else(|| effective_role(&user.spec.roles));
    let slug = user.namespace().and_then(|ns| ns.strip_suffix("-account").map(str::to_string)).unwrap_or_default();
    let access = environments
        .iter()
        .map(|env| {
            if !status.bound_namespaces.contains(&format!("{slug}-{env}")) {
                let why = if role.is_some_and(|r| cluster_role_for(r, *env).is_err()) { "prod only" } else { "not bound" };
                return (env.to_string(), format!("— ({why})"));
            }
            let mut granted: Vec<String> = match role.map(|r| cluster_role_for(r, *env)) {
                Some(Ok(cluster_role)) => vec![cluster_role.to_string()],
                Some(Err(_)) => vec!["— (prod only)".to_string()],
                None => Vec::new(),
            };
            granted.extend(user.spec.custom_roles.iter().cloned());
            (env.to_string(), if granted.is_empty() { "—".to_string() } else { granted.join(", ") })
        })
        .collect();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    UserView {
        name: user.name_any(),
        username: user.spec.username.clone(),
        email: user.spec.email.clone(),
        effective_role: role.map(|r| r.as_str().to_string()),
        custom_roles: user.spec.custom_roles.clone(),
        bound_namespaces: status.bound_namespaces.clone(),
        access,
        ready: ready.is_some_and(|c| c.status == "True"),
        problem: ready.filter(|c| c.status != "True").map(|c| format!("{}: {}", c.reason, c.message)),
    }
}

/// One line of `kubectl tenant list`.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    pub name: String,
    pub phase: String,
    pub ready: String,
    pub environments: Vec<String>,
    pub databases_ready: usize,
    pub databases: usize,
    pub users: usize,
    /// Creation time (RFC 3339); rendered as an age.
    pub created: Option<String>,
}

impl ListRow {
    pub fn build(tenant: &Tenant, users: usize) -> ListRow {
        let status = tenant.status.clone().unwrap_or_default();
        ListRow {
            name: tenant.name_any(),
            phase: status.phase.map(|p| p.as_str().to_string()).unwrap_or_else(|| "Pending".to_string()),
            ready: status.condition("Ready").map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".to_string()),
            environments: tenant.spec.environments.iter().map(|e| e.to_string()).collect(),
            databases_ready: status.databases.iter().filter(|d| d.ready).count(),
            databases: status.databases.len(),
            users,
            created: tenant.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        }
    }
}
