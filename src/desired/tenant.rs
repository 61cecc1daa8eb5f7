//! Desired children of a Tenant, per environment (SPEC §3).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::ConfigMap,
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec, IngressTLS,
            NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec, ServiceBackendPort,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
};
use kube::api::ObjectMeta;

use super::{tenant_labels, ChildKind, DesiredObject};

pub mod grant;
pub mod profile;
pub mod route;

use crate::{
    config::{ClusterConfig, Config},
    database,
    naming::{self, NETWORK_POLICY, TENANT_CONFIG_MAP},
    types::{DatabaseProvider, EndpointStatus, Environment, Reason, Tenant},
};
pub use profile::{account_namespace_object, namespace_object};

/// A spec that cannot be built with this operator configuration. Becomes a status reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("cluster {cluster:?} is not in the operator configuration (known: {known})")]
    UnknownCluster { cluster: String, known: String },
    #[error("application {application:?} is not in the operator configuration (known: {known})")]
    UnknownApplication { application: String, known: String },
    #[error("database provider external is not configured: set database.external in the operator configuration")]
    ExternalDatabaseNotConfigured,
    #[error("the Tenant has no name")]
    MissingName,
    #[error("an object built from the spec cannot be serialized: {0}")]
    Unserializable(String),
}

impl From<serde_json::Error> for SpecError {
    fn from(error: serde_json::Error) -> Self {
        SpecError::Unserializable(error.to_string())
    }
}

impl SpecError {
    /// The `reason` of the status condition that reports this error.
    pub fn reason(&self) -> Reason {
        match self {
            SpecError::UnknownCluster { .. } => Reason::UnknownCluster,
            SpecError::UnknownApplication { .. } => Reason::UnknownApplication,
            SpecError::ExternalDatabaseNotConfigured => Reason::DatabaseProviderNotConfigured,
            SpecError::MissingName | SpecError::Unserializable(_) => Reason::InvalidSpec,
        }
    }
}

/// Everything one Tenant should have on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPlan {
    pub slug: String,
    pub database_provider: DatabaseProvider,
    /// The account namespace `<slug>-account`: home of the tenant's TenantUsers, where Account
    /// Admins manage users. No workloads, no Ingress: the Namespace and a count quota.
    pub account: AccountPlan,
    pub environments: Vec<EnvironmentPlan>,
    pub endpoints: Vec<EndpointStatus>,
}

/// The account namespace of a tenant; `objects` are the Namespace, the operator's grant and the
/// count quota.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPlan {
    pub namespace: String,
    pub objects: Vec<DesiredObject>,
}

/// The children of one environment namespace. `objects` starts with the Namespace, then the
/// operator's grant in it (see `grant`).
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentPlan {
    pub environment: Environment,
    pub namespace: String,
    pub objects: Vec<DesiredObject>,
    /// Where the environment's database will be reachable; `None` for provider `none`, and for
    /// `external` (the host comes from the admin Secret, read at reconcile time).
    pub database: Option<database::ConnectionInfo>,
}

impl TenantPlan {
    pub fn build(tenant: &Tenant, config: &Config) -> Result<Self, SpecError> {
        let slug = tenant.metadata.name.clone().ok_or(SpecError::MissingName)?;
        let spec = &tenant.spec;
        let cluster = config.clusters.get(&spec.cluster).ok_or_else(|| SpecError::UnknownCluster {
            cluster: spec.cluster.clone(),
            known: config.clusters.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        for app in &spec.applications {
            if !config.applications.contains_key(app) {
                return Err(SpecError::UnknownApplication {
                    application: app.clone(),
                    known: config.applications.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        let provider = database::provider_of(tenant, config);
        if provider == DatabaseProvider::External && config.database.external.is_none() {
            return Err(SpecError::ExternalDatabaseNotConfigured);
        }

        let mut environments_sorted = spec.environments.clone();
        environments_sorted.sort();
        environments_sorted.dedup();
        let namespaces: Vec<String> = environments_sorted.iter().map(|env| naming::namespace_name(&slug, *env)).collect();

        let mut environments = Vec::new();
        let mut endpoints = Vec::new();
        for &env in &environments_sorted {
            let namespace = naming::namespace_name(&slug, env);
            let urls: BTreeMap<String, String> = spec
                .applications
                .iter()
                .map(|app| (app.clone(), url(cluster, &naming::hostname(&config.hostnames, &slug, env, app, &cluster.domain))))
                .collect();
            endpoints.extend(urls.iter().map(|(app, url)| EndpointStatus { application: app.clone(), environment: env, url: url.clone() }));

            let mut objects = vec![
                DesiredObject::from_typed(ChildKind::Namespace, &profile::namespace_object(&slug, env, config))?,
                DesiredObject::from_typed(ChildKind::RoleBinding, &grant::operator_grant(&slug, Some(env), &namespace, &config.operator))?,
                DesiredObject::from_typed(ChildKind::ConfigMap, &tenant_config_map(tenant, &slug, env, provider, &urls))?,
                DesiredObject::from_typed(ChildKind::NetworkPolicy, &network_policy(&slug, env, &namespaces, cluster, config))?,
                DesiredObject::from_typed(ChildKind::ResourceQuota, &profile::resource_quota(tenant, &slug, env, config))?,
                DesiredObject::from_typed(ChildKind::LimitRange, &profile::limit_range(&slug, env, config))?,
            ];
            for app in &spec.applications {
                // Presence was checked above; a missing key would be a bug, not user input.
                if let Some(app_config) = config.applications.get(app) {
                    let host = naming::hostname(&config.hostnames, &slug, env, app, &cluster.domain);
                    let route = match cluster.routing_gateway() {
                        Some(gateway) => DesiredObject::from_typed(
                            ChildKind::HttpRoute,
                            &route::http_route(&slug, env, app, app_config, gateway, &config.tenant_header, &host),
                        )?,
                        None => DesiredObject::from_typed(ChildKind::Ingress, &ingress(&slug, env, app, app_config, cluster, &host))?,
                    };
                    objects.push(route);
                }
            }
            let db_objects = database::desired(tenant, &slug, env, provider, config)?;
            objects.extend(db_objects.objects);
            environments.push(EnvironmentPlan { environment: env, namespace, objects, database: db_objects.connection });
        }
        let account = AccountPlan {
            namespace: naming::account_namespace_name(&slug),
            objects: vec![
                DesiredObject::from_typed(ChildKind::Namespace, &profile::account_namespace_object(&slug))?,
                DesiredObject::from_typed(
                    ChildKind::RoleBinding,
                    &grant::operator_grant(&slug, None, &naming::account_namespace_name(&slug), &config.operator),
                )?,
                DesiredObject::from_typed(ChildKind::ResourceQuota, &profile::account_quota(&slug, config))?,
            ],
        };
        Ok(Self { slug, database_provider: provider, account, environments, endpoints })
    }

    /// All desired objects: the account namespace, then every environment's, namespaces first
    /// within each environment.
    pub fn objects(&self) -> impl Iterator<Item = &DesiredObject> {
        self.account.objects.iter().chain(self.environments.iter().flat_map(|env| env.objects.iter()))
    }

    /// Every namespace of the plan: the account namespace and the environment namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.account.namespace.as_str()).chain(self.environments.iter().map(|env| env.namespace.as_str()))
    }

    /// Leave out the Ingresses and HTTPRoutes (and endpoints) of `hosts`: another tenant holds
    /// them.
    pub fn without_hosts(&mut self, hosts: &std::collections::BTreeSet<String>) {
        for env in &mut self.environments {
            env.objects.retain(|object| route_host(object).is_none_or(|host| !hosts.contains(host)));
        }
        self.endpoints.retain(|endpoint| !hosts.iter().any(|host| endpoint.url.contains(&format!("://{host}/"))));
    }
}

/// The host an Ingress or HTTPRoute of the operator routes.
pub fn route_host(object: &DesiredObject) -> Option<&str> {
    let pointer = match object.kind {
        ChildKind::Ingress => "/spec/rules/0/host",
        ChildKind::HttpRoute => "/spec/hostnames/0",
        _ => return None,
    };
    object.object.pointer(pointer).and_then(|h| h.as_str())
}

/// Every hostname a Tenant's Ingresses or HTTPRoutes would route, without building its
/// objects: the cross-tenant hostname index computes this for every Tenant, whatever the
/// routing of its region, so two tenants never share a host across the two kinds. Empty for
/// an unknown cluster.
pub fn hostnames(tenant: &Tenant, config: &Config) -> Vec<String> {
    let (Some(slug), Some(cluster)) = (tenant.metadata.name.as_deref(), config.clusters.get(&tenant.spec.cluster)) else {
        return Vec::new();
    };
    let mut hosts: Vec<String> = tenant
        .spec
        .environments
        .iter()
        .flat_map(|env| {
            tenant.spec.applications.iter().map(move |app| naming::hostname(&config.hostnames, slug, *env, app, &cluster.domain))
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Behind a Gateway, TLS is the business of its listeners: the URL says https.
fn url(cluster: &ClusterConfig, host: &str) -> String {
    let scheme = if cluster.tls.is_some() || cluster.routing_gateway().is_some() { "https" } else { "http" };
    format!("{scheme}://{host}/")
}

fn meta(name: &str, namespace: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_string()), namespace: namespace.map(str::to_string), labels: Some(labels), ..ObjectMeta::default() }
}

fn tenant_config_map(
    tenant: &Tenant,
    slug: &str,
    env: Environment,
    provider: DatabaseProvider,
    urls: &BTreeMap<String, String>,
) -> ConfigMap {
    let namespace = naming::namespace_name(slug, env);
    let mut data = BTreeMap::from([
        ("tenant-id".to_string(), slug.to_string()),
        ("display-name".to_string(), tenant.spec.display_name.clone()),
        ("cluster".to_string(), tenant.spec.cluster.clone()),
        ("environment".to_string(), env.as_str().to_string()),
        ("database-provider".to_string(), provider.as_str().to_string()),
        ("applications".to_string(), urls.keys().cloned().collect::<Vec<_>>().join(",")),
    ]);
    if provider != DatabaseProvider::None {
        data.insert("database-secret".to_string(), naming::database_secret_name(slug));
    }
    for (app, url) in urls {
        data.insert(format!("url.{app}"), url.clone());
    }
    ConfigMap {
        metadata: meta(TENANT_CONFIG_MAP, Some(&namespace), tenant_labels(slug, Some(env))),
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn ingress(
    slug: &str,
    env: Environment,
    app: &str,
    app_config: &crate::config::ApplicationConfig,
    cluster: &ClusterConfig,
    host: &str,
) -> Ingress {
    let namespace = naming::namespace_name(slug, env);
    let mut metadata = meta(app, Some(&namespace), tenant_labels(slug, Some(env)));
    let mut annotations = BTreeMap::new();
    let tls = cluster.tls.as_ref().map(|tls| {
        if let Some(issuer) = &tls.cluster_issuer {
            annotations.insert("cert-manager.io/cluster-issuer".to_string(), issuer.clone());
        }
        if let Some(issuer) = &tls.issuer {
            annotations.insert("cert-manager.io/issuer".to_string(), issuer.clone());
        }
        vec![IngressTLS { hosts: Some(vec![host.to_string()]), secret_name: Some(tls.secret_name.replace("{app}", app)) }]
    });
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: cluster.ingress_class_name.clone(),
            tls,
            rules: Some(vec![IngressRule {
                host: Some(host.to_string()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(app_config.path.clone()),
                        path_type: "Prefix".to_string(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: app_config.service_name.clone(),
                                port: Some(ServiceBackendPort { number: Some(i32::from(app_config.service_port)), name: None }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            default_backend: None,
        }),
        ..Ingress::default()
    }
}

/// Admits traffic only from the tenant's own environment namespaces, the ingress controller
/// and, in a region that names a Gateway, the Gateway's data plane. Both routers stay admitted
/// whichever `routing` the region uses, so a switch between them changes no NetworkPolicy and
/// leaves no gap while the old routes still serve. Namespaces are matched by
/// `kubernetes.io/metadata.name`, which the API server sets and nobody can forge, rather than
/// by the tenant label anyone could put on a namespace.
fn network_policy(slug: &str, env: Environment, tenant_namespaces: &[String], cluster: &ClusterConfig, config: &Config) -> NetworkPolicy {
    let namespace = naming::namespace_name(slug, env);
    let by_name = |names: Vec<String>| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_string(),
                operator: "In".to_string(),
                values: Some(names),
            }]),
            match_labels: None,
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: meta(NETWORK_POLICY, Some(&namespace), tenant_labels(slug, Some(env))),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(
                    [
                        Some(by_name(tenant_namespaces.to_vec())),
                        Some(by_name(vec![config.network_policy.ingress_controller_namespace.clone()])),
                        cluster.gateway.as_ref().map(|gateway| by_name(vec![gateway.data_plane_namespace().to_string()])),
                    ]
                    .into_iter()
                    .flatten()
                    .collect(),
                ),
                ports: None,
            }]),
            egress: None,
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests;
