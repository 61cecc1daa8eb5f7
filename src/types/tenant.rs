use std::fmt;

use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A customer account of the platform: per-environment namespaces, ingress hostnames for its
/// applications, its own databases and its users' access.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tenancy.platform.dev",
    version = "v1alpha1",
    kind = "Tenant",
    plural = "tenants",
    singular = "tenant",
    shortname = "tn",
    category = "tenancy",
    status = "TenantStatus",
    doc = "A customer account: per-environment namespaces, ingress, databases and user access.",
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Environments", type_ = "string", json_path = ".spec.environments"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name (the tenant slug) must be at most 40 characters"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name (the tenant slug) must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// The customer's account name, shown to people.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,

    /// Region key the tenant is served from; must name a cluster of the operator configuration.
    /// Changing it moves every application hostname.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub cluster: String,

    /// Environments to provision, each becoming the namespace `<slug>-<env>`.
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(f, f == e))").message("environments must not repeat"))]
    pub environments: Vec<Environment>,

    /// Keys of the operator's application catalogue that this tenant may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("applications must not repeat"))]
    pub applications: Vec<String>,

    /// Per-environment database; defaults come from the operator configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,

    /// Resource quota applied to every environment namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSpec>,

    /// What happens to namespaces, volumes and databases when the Tenant (or one of its
    /// environments) is removed. `Retain` keeps them for a later re-creation to adopt.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Stop reconciling: nothing is created, changed or deleted until this is false again.
    #[serde(default)]
    pub suspend: bool,
}

/// A deployment stage of a tenant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Staging,
    Prod,
}

impl Environment {
    pub const ALL: [Environment; 3] = [Environment::Dev, Environment::Staging, Environment::Prod];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|env| env.as_str() == value)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Where the database lives; the operator configuration names the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<DatabaseProvider>,
    /// Volume size for `statefulset` and `cloudnative-pg`, e.g. `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub storage: Option<Quantity>,
    /// Storage class for the volume; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseProvider {
    /// A PostgreSQL StatefulSet in each environment namespace.
    Statefulset,
    /// A database and role on an existing PostgreSQL server.
    External,
    /// A CloudNativePG `Cluster` in each environment namespace.
    CloudnativePg,
    /// No database.
    None,
}

impl DatabaseProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseProvider::Statefulset => "statefulset",
            DatabaseProvider::External => "external",
            DatabaseProvider::CloudnativePg => "cloudnative-pg",
            DatabaseProvider::None => "none",
        }
    }
}

impl fmt::Display for DatabaseProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// CPU requests summed over the namespace's pods, e.g. `"8"` or `8000m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub cpu: Option<Quantity>,
    /// Memory requests summed over the namespace's pods, e.g. `16Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub memory: Option<Quantity>,
    /// Maximum number of pods in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub pods: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Keep namespaces, volumes, credentials and external databases (labelled retained).
    #[default]
    Retain,
    /// Remove everything, external databases included.
    Delete,
}

/// What the operator observed when it last reconciled the Tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TenantPhase>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseStatus>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum TenantPhase {
    Pending,
    Provisioning,
    Ready,
    Failed,
    Suspended,
    Terminating,
}

impl TenantPhase {
    pub const ALL: [TenantPhase; 6] = [
        TenantPhase::Pending,
        TenantPhase::Provisioning,
        TenantPhase::Ready,
        TenantPhase::Failed,
        TenantPhase::Suspended,
        TenantPhase::Terminating,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantPhase::Pending => "Pending",
            TenantPhase::Provisioning => "Provisioning",
            TenantPhase::Ready => "Ready",
            TenantPhase::Failed => "Failed",
            TenantPhase::Suspended => "Suspended",
            TenantPhase::Terminating => "Terminating",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    pub environment: Environment,
    pub name: String,
    pub state: NamespaceState,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum NamespaceState {
    /// Reconciled by the operator.
    Active,
    /// Being deleted.
    Terminating,
    /// Removed from the spec but kept because of `deletionPolicy: Retain`; no longer reconciled.
    Retained,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub application: String,
    pub environment: Environment,
    pub url: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    pub environment: Environment,
    pub provider: DatabaseProvider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
