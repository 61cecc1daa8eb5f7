//! What every tenant namespace gets besides the tenant's own objects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceConfig {
    #[serde(default)]
    pub pod_security: PodSecurityConfig,
    /// Default container requests and limits (a LimitRange) in namespaces with a quota: a quota
    /// on `requests.cpu`/`requests.memory` makes the API server refuse pods that set none.
    #[serde(default)]
    pub default_container_resources: ContainerDefaults,
}

/// Pod Security Admission levels (`privileged`, `baseline`, `restricted`) of tenant namespaces.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSecurityConfig {
    #[serde(default = "default_enforce")]
    pub enforce: String,
    #[serde(default = "default_restricted")]
    pub warn: String,
    #[serde(default = "default_restricted")]
    pub audit: String,
}

fn default_enforce() -> String {
    "baseline".to_string()
}

fn default_restricted() -> String {
    "restricted".to_string()
}

impl Default for PodSecurityConfig {
    fn default() -> Self {
        Self { enforce: default_enforce(), warn: default_restricted(), audit: default_restricted() }
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
    BTreeMap::from([("cpu".to_string(), Quantity("100m".into())), ("memory".to_string(), Quantity("128Mi".into()))])
}

fn default_limits() -> BTreeMap<String, Quantity> {
    BTreeMap::from([("cpu".to_string(), Quantity("1".into())), ("memory".to_string(), Quantity("512Mi".into()))])
}

impl Default for ContainerDefaults {
    fn default() -> Self {
        Self { default_request: default_requests(), default: default_limits() }
    }
}
