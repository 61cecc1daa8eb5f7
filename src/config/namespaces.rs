//! The tenant namespace profile of the configuration: what every tenant namespace gets besides
//! the tenant's own objects (Pod Security levels, quota, container defaults) and which rules
//! the shipped admission policies apply there (Service types, image pull policy). The objects
//! are built in `desired::tenant::profile`; `docs/reference.md` lists every rule with its key.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};

use crate::types::Environment;

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceConfig {
    #[serde(default)]
    pub pod_security: PodSecurityConfig,
    /// Default container requests and limits (the LimitRange `tenant-defaults`): the quota
    /// covers requests and limits, so the API server refuses pods that set none without it.
    #[serde(default)]
    pub default_container_resources: ContainerDefaults,
    /// The ResourceQuota `tenant-quota` of every environment namespace, as `spec.hard`; keys
    /// given here replace the built-in defaults ([`default_quota`]) one by one, and a Tenant's
    /// `spec.quota` replaces them again.
    #[serde(default)]
    pub quota: BTreeMap<String, Quantity>,
    /// The ResourceQuota `tenant-quota` of the account namespace (TenantUsers, ConfigMaps,
    /// Secrets), merged with [`default_account_quota`] the same way.
    #[serde(default)]
    pub account_quota: BTreeMap<String, Quantity>,
    /// Service types tenants may create (`ClusterIP`, `NodePort`, `LoadBalancer`,
    /// `ExternalName`); the policy `tenancy-service-types` refuses the others. The operator
    /// writes the list on each environment namespace (label `tenancy.platform.dev/service-types`).
    #[serde(default = "default_service_types")]
    pub service_types: Vec<String>,
    /// Containers must say `imagePullPolicy: Always` (the policy `tenancy-image-pull-policy`),
    /// so that a node's image cache never runs another tenant's private image for them. The
    /// operator labels each environment namespace `tenancy.platform.dev/image-pull-policy=Always`.
    #[serde(default = "default_true")]
    pub require_image_pull_always: bool,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            pod_security: PodSecurityConfig::default(),
            default_container_resources: ContainerDefaults::default(),
            quota: BTreeMap::new(),
            account_quota: BTreeMap::new(),
            service_types: default_service_types(),
            require_image_pull_always: true,
        }
    }
}

/// Every Service type Kubernetes knows; the configuration may allow any of them.
pub const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];

fn default_service_types() -> Vec<String> {
    vec!["ClusterIP".to_string()]
}

fn default_true() -> bool {
    true
}

fn quantities(entries: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    entries.iter().map(|(key, value)| (key.to_string(), Quantity(value.to_string()))).collect()
}

/// The quota of an environment namespace when the configuration says nothing: compute
/// requests and limits, and counts of the objects a tenant can create. No NodePorts and no
/// load balancers: they would open the tenant to the outside past the ingress controller.
pub fn default_quota() -> BTreeMap<String, Quantity> {
    quantities(&[
        ("requests.cpu", "4"),
        ("limits.cpu", "8"),
        ("requests.memory", "8Gi"),
        ("limits.memory", "16Gi"),
        ("requests.ephemeral-storage", "10Gi"),
        ("limits.ephemeral-storage", "20Gi"),
        ("pods", "50"),
        ("services", "20"),
        ("services.nodeports", "0"),
        ("services.loadbalancers", "0"),
        ("configmaps", "100"),
        ("secrets", "100"),
        ("persistentvolumeclaims", "10"),
        ("replicationcontrollers", "0"),
        ("resourcequotas", "1"),
    ])
}

/// The quota of an account namespace when the configuration says nothing: TenantUsers,
/// ConfigMaps and Secrets, the objects an Account Admin can create there. `kube-root-ca.crt` (a
/// ConfigMap the cluster puts in every namespace) counts against `configmaps`.
pub fn default_account_quota() -> BTreeMap<String, Quantity> {
    quantities(&[(ACCOUNT_USERS_QUOTA, "500"), ("configmaps", "10"), ("secrets", "10")])
}

/// The quota key that counts TenantUsers.
pub const ACCOUNT_USERS_QUOTA: &str = "count/tenantusers.tenancy.platform.dev";

impl NamespaceConfig {
    /// `spec.hard` of an environment namespace's quota before a Tenant's own `spec.quota`.
    pub fn quota(&self) -> BTreeMap<String, Quantity> {
        let mut hard = default_quota();
        hard.extend(self.quota.clone());
        hard
    }

    /// `spec.hard` of an account namespace's quota.
    pub fn account_quota(&self) -> BTreeMap<String, Quantity> {
        let mut hard = default_account_quota();
        hard.extend(self.account_quota.clone());
        hard
    }
}

/// Pod Security Admission levels (`privileged`, `baseline`, `restricted`) of environment
/// namespaces. Account namespaces are `restricted`, whatever this says.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSecurityConfig {
    #[serde(default = "default_restricted")]
    pub enforce: String,
    #[serde(default = "default_restricted")]
    pub warn: String,
    #[serde(default = "default_restricted")]
    pub audit: String,
    /// The enforced level of single environments, e.g. `dev: baseline`; others use `enforce`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<Environment, String>,
}

fn default_restricted() -> String {
    "restricted".to_string()
}

impl Default for PodSecurityConfig {
    fn default() -> Self {
        Self { enforce: default_restricted(), warn: default_restricted(), audit: default_restricted(), environments: BTreeMap::new() }
    }
}

impl PodSecurityConfig {
    /// The level enforced in the namespace of `env`.
    pub fn enforce_in(&self, env: Environment) -> &str {
        self.environments.get(&env).unwrap_or(&self.enforce)
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDefaults {
    #[serde(default = "default_requests")]
    pub default_request: BTreeMap<String, Quantity>,
    #[serde(default = "default_limits")]
    pub default: BTreeMap<String, Quantity>,
}

fn default_requests() -> BTreeMap<String, Quantity> {
    quantities(&[("cpu", "100m"), ("memory", "128Mi"), ("ephemeral-storage", "64Mi")])
}

fn default_limits() -> BTreeMap<String, Quantity> {
    quantities(&[("cpu", "1"), ("memory", "512Mi"), ("ephemeral-storage", "1Gi")])
}

impl Default for ContainerDefaults {
    fn default() -> Self {
        Self { default_request: default_requests(), default: default_limits() }
    }
}

/// A Kubernetes quantity: a decimal number with an optional suffix (`500m`, `16Gi`, `1e3`).
pub fn is_quantity(value: &str) -> bool {
    let split = value.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let number_ok = number.trim_start_matches(['+', '-']).parse::<f64>().is_ok() && !number.ends_with('.');
    let suffix_ok = matches!(suffix, "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei")
        || suffix.strip_prefix(['e', 'E']).is_some_and(|exp| exp.trim_start_matches(['+', '-']).parse::<u32>().is_ok());
    number_ok && suffix_ok
}

/// Checks of the profile that the YAML shape cannot express; the bad field's path and why.
pub(super) fn check(config: &NamespaceConfig) -> Result<(), (String, String)> {
    let levels = ["privileged", "baseline", "restricted"];
    let pod_security = &config.pod_security;
    let fields = [
        ("enforce".to_string(), &pod_security.enforce),
        ("warn".to_string(), &pod_security.warn),
        ("audit".to_string(), &pod_security.audit),
    ]
    .into_iter()
    .chain(pod_security.environments.iter().map(|(env, level)| (format!("environments.{env}"), level)));
    for (field, level) in fields {
        if !levels.contains(&level.as_str()) {
            return Err((format!("namespaces.podSecurity.{field}"), format!("{level:?} is not one of {}", levels.join(", "))));
        }
    }
    let resources = &config.default_container_resources;
    for (field, map) in [
        ("namespaces.quota", &config.quota),
        ("namespaces.accountQuota", &config.account_quota),
        ("namespaces.defaultContainerResources.defaultRequest", &resources.default_request),
        ("namespaces.defaultContainerResources.default", &resources.default),
    ] {
        if let Some((key, value)) = map.iter().find(|(_, value)| !is_quantity(&value.0)) {
            return Err((format!("{field}.{key}"), format!("{:?} is not a Kubernetes quantity (e.g. 500m, 8, 16Gi)", value.0)));
        }
    }
    if let Some(unknown) = config.service_types.iter().find(|t| !SERVICE_TYPES.contains(&t.as_str())) {
        return Err(("namespaces.serviceTypes".into(), format!("{unknown:?} is not one of {}", SERVICE_TYPES.join(", "))));
    }
    if !config.service_types.iter().any(|t| t == "ClusterIP") {
        return Err((
            "namespaces.serviceTypes".into(),
            "must contain ClusterIP (the database Service and every application need it)".into(),
        ));
    }
    Ok(())
}
