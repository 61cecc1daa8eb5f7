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
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1, description = "Reason of the Ready condition"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message", priority = 1, description = "Message of the Ready condition"),
    annotation("helm.sh/resource-policy", "keep"),
    annotation("argocd.argoproj.io/sync-options", "Prune=false,Delete=false"),
    annotation("kustomize.toolkit.fluxcd.io/prune", "disabled"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name (the tenant slug) must be at most 40 characters"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name (the tenant slug) must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"),
    validation = Rule::new("!(self.metadata.name in ['kube', 'default', 'openshift'])").message("metadata.name: kube, default and openshift are reserved: their namespaces would mix with the cluster's own"),
    validation = Rule::new("!self.metadata.name.endsWith('-dev') && !self.metadata.name.endsWith('-staging') && !self.metadata.name.endsWith('-prod')").message("metadata.name must not end in -dev, -staging or -prod: another tenant's environment namespaces and hostnames end that way")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// The customer's account name ("Account Name"), shown to people; 1 to 128 characters.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,

    /// Region key the tenant is served from; must name a cluster of the operator configuration
    /// (otherwise the Tenant is `Stalled` with reason `UnknownCluster` and nothing is deleted).
    /// Changing it moves every application hostname.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub cluster: String,

    /// Environments to provision (`dev`, `staging`, `prod`), each becoming the namespace
    /// `<slug>-<env>`. A set: the API server rejects a repeated item. Removing an environment
    /// removes its namespace, or detaches it under `deletionPolicy: Retain`.
    #[schemars(length(min = 1, max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub environments: Vec<Environment>,

    /// Keys of the operator's application catalogue that this tenant may use; each gets an
    /// Ingress in every environment namespace. A key missing from the configuration makes the
    /// Tenant `Stalled` with reason `UnknownApplication`. A set: the API server rejects a
    /// repeated item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub applications: Vec<String>,

    /// The tenant's own database, one instance per environment; absent fields take the
    /// defaults of the operator configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,

    /// Overrides of the quota every environment namespace has (the ResourceQuota
    /// `tenant-quota`); what is left out keeps the operator configuration's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSpec>,

    /// What happens to namespaces, volumes, credentials and databases when the Tenant (or one
    /// of its environments) is removed: `Retain` (default) keeps them, labelled
    /// `tenancy.platform.dev/retained=true`, for a re-created Tenant to adopt; `Delete` removes
    /// them, external databases included.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Stop reconciling: nothing is created, changed or deleted until this is false again; the
    /// phase is `Suspended` meanwhile. Status is still written.
    #[serde(default)]
    pub suspend: bool,

    /// Consent to take over what an earlier Tenant of the same name left behind: that Tenant's
    /// UID (its `metadata.uid`, named in the `RetainedDataFromAnotherTenant` condition). A
    /// Tenant re-created with the same name is a new UID and may be another customer: without
    /// this field it touches none of the earlier Tenant's namespaces, credentials, volumes or
    /// external databases and is `Stalled` until they are adopted or deleted. With it, they
    /// become this Tenant's, and the earlier Tenant's TenantUsers get their access again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 36, max = 36), regex(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"))]
    pub adopt_retained_from: Option<String>,
}

/// A deployment stage of a tenant: `dev` (development and early testing), `staging`
/// (simulates prod, fixes prod defects) or `prod` (no configuration changes).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development and early testing.
    Dev,
    /// Simulates prod; where prod defects are fixed.
    Staging,
    /// Production: no configuration changes are made here.
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

/// The tenant's per-environment database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Where the database lives; the operator configuration names the default. The CRD shows
    /// the description of [`DatabaseProvider`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.database.provider cannot be changed once set: each environment's database stays with the provider it was created with (to migrate, remove the environment or the Tenant and add it again)"))]
    pub provider: Option<DatabaseProvider>,
    /// Volume size for `statefulset` and `cloudnative-pg`, a Kubernetes quantity such as
    /// `1Gi`; the configuration's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub storage: Option<Quantity>,
    /// Storage class of the database volume; the cluster's default storage class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

/// Where a tenant's database lives: `statefulset` (a PostgreSQL StatefulSet in each
/// environment namespace), `external` (a database and role on an existing PostgreSQL server),
/// `cloudnative-pg` (a CloudNativePG `Cluster` per environment) or `none`. A Tenant that names
/// none gets the operator configuration's default. The provider of an environment is pinned
/// when its database is created: a later change is refused (`Stalled`, reason
/// `ProviderChangeRefused`) and never deletes a database.
// Option<enum> fields take this description into the CRD, not the field's own.
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

/// Limits per environment namespace, enforced by the ResourceQuota `tenant-quota`. Every
/// environment namespace has that quota: fields left out keep the operator configuration's
/// defaults (`namespaces.quota`), including the counts not listed here
/// (`services.nodeports` and `services.loadbalancers`, 0 by default).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// Upper bound of the CPU requests summed over the namespace's pods (`requests.cpu`), a
    /// Kubernetes quantity such as `"8"` or `8000m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub cpu: Option<Quantity>,
    /// Upper bound of the memory requests summed over the namespace's pods
    /// (`requests.memory`), a Kubernetes quantity such as `16Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub memory: Option<Quantity>,
    /// Upper bound of the CPU limits summed over the namespace's pods (`limits.cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub limits_cpu: Option<Quantity>,
    /// Upper bound of the memory limits summed over the namespace's pods (`limits.memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub limits_memory: Option<Quantity>,
    /// Upper bound of the local ephemeral storage requests (`requests.ephemeral-storage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub ephemeral_storage: Option<Quantity>,
    /// Upper bound of the local ephemeral storage limits (`limits.ephemeral-storage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(string(self))").message("must be a Kubernetes quantity, e.g. 500m, 8, 16Gi"))]
    pub limits_ephemeral_storage: Option<Quantity>,
    /// Maximum number of pods in the namespace (0 to 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub pods: Option<i32>,
    /// Maximum number of Services (0 to 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub services: Option<i32>,
    /// Maximum number of ConfigMaps (0 to 100000); `tenant-config` and `kube-root-ca.crt` count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub config_maps: Option<i32>,
    /// Maximum number of Secrets (0 to 100000); the database credentials Secret counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub secrets: Option<i32>,
    /// Maximum number of PersistentVolumeClaims (0 to 100000); the database volume counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub persistent_volume_claims: Option<i32>,
}

impl QuotaSpec {
    /// The ResourceQuota entries this spec sets, as `(spec.hard key, quantity)`.
    pub fn hard(&self) -> Vec<(&'static str, Quantity)> {
        let quantities = [
            ("requests.cpu", &self.cpu),
            ("requests.memory", &self.memory),
            ("limits.cpu", &self.limits_cpu),
            ("limits.memory", &self.limits_memory),
            ("requests.ephemeral-storage", &self.ephemeral_storage),
            ("limits.ephemeral-storage", &self.limits_ephemeral_storage),
        ];
        let counts = [
            ("pods", self.pods),
            ("services", self.services),
            ("configmaps", self.config_maps),
            ("secrets", self.secrets),
            ("persistentvolumeclaims", self.persistent_volume_claims),
        ];
        quantities
            .into_iter()
            .filter_map(|(key, value)| Some((key, value.clone()?)))
            .chain(counts.into_iter().filter_map(|(key, count)| Some((key, Quantity(count?.to_string())))))
            .collect()
    }
}

/// What removing a Tenant or one of its environments does to its data: `Retain` or `Delete`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Keep namespaces, volumes, credentials and external databases (labelled retained).
    #[default]
    Retain,
    /// Remove everything, external databases included.
    Delete,
}

/// What the operator observed when it last reconciled the Tenant. Follows kstatus: the
/// Tenant is current when `observedGeneration` equals `metadata.generation`, `Ready` is True
/// and neither `Reconciling` nor `Stalled` is True.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` of the spec this status describes. While it is lower than
    /// `metadata.generation` the operator has not yet acted on the latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary for people; the CRD shows the description of [`TenantPhase`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TenantPhase>,
    /// Standard conditions, one per type: `Ready` (True when everything exists and matches the
    /// spec; False with the reason after any failed reconcile), `Reconciling` (True while work is
    /// in progress; the reason names the step, e.g. `Provisioning`, `DatabaseNotReady`,
    /// `Terminating`), `Stalled` (True when the operator cannot progress without a change by a
    /// person; reasons such as `UnknownCluster`, `UnknownApplication`, `NamespaceConflict`,
    /// `SecretConflict`, `DatabaseConflict`, `HostnameConflict`, `ProviderChangeRefused`,
    /// `ApplyFailed`), and `NamespacesReady`, `IngressReady`, `DatabaseReady` for the parts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The tenant's account namespace `<slug>-account`, where its TenantUsers live and its
    /// Account Admins manage them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_namespace: Option<AccountNamespaceStatus>,
    /// The tenant's namespaces, one per environment, including retained ones that are no
    /// longer reconciled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceStatus>,
    /// The URL of every application in every environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointStatus>,
    /// The database of every environment: provider, host, credentials Secret and readiness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseStatus>,
    /// The UID of the earlier Tenant of the same name whose retained data this Tenant adopted
    /// (with `spec.adoptRetainedFrom`), as recorded on its namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_from: Option<String>,
}

/// One-word summary of the Tenant's state for people: `Provisioning` (work in progress, or a
/// retry after an error), `Ready` (everything exists and matches the spec), `Failed` (the
/// operator cannot progress without a change by a person; the `Ready` and `Stalled` conditions
/// say why),
/// `Suspended` (`spec.suspend` is true) or `Terminating` (being deleted under its
/// `deletionPolicy`). Tools should read the conditions rather than the phase.
// Option<enum> fields take this description into the CRD, not the field's own.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum TenantPhase {
    /// Work is in progress (`Reconciling=True`), including a retry after a failed reconcile
    /// (`Ready=False`, reason `ReconcileFailed`).
    Provisioning,
    /// Everything exists and matches the spec (`Ready=True`).
    Ready,
    /// The operator cannot progress without a change by a person (`Stalled=True`); the `Ready`
    /// condition's reason and message say why and what to do.
    Failed,
    /// `spec.suspend` is true: nothing is written but status.
    Suspended,
    /// The Tenant is being deleted; its `deletionPolicy` is being carried out.
    Terminating,
}

impl TenantPhase {
    pub const ALL: [TenantPhase; 5] =
        [TenantPhase::Provisioning, TenantPhase::Ready, TenantPhase::Failed, TenantPhase::Suspended, TenantPhase::Terminating];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantPhase::Provisioning => "Provisioning",
            TenantPhase::Ready => "Ready",
            TenantPhase::Failed => "Failed",
            TenantPhase::Suspended => "Suspended",
            TenantPhase::Terminating => "Terminating",
        }
    }
}

/// One namespace of the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// The environment the namespace serves.
    pub environment: Environment,
    /// The namespace's name, `<slug>-<env>`.
    pub name: String,
    /// `Active` (reconciled), `Terminating` (being deleted) or `Retained` (removed from the
    /// spec and kept under `deletionPolicy: Retain`; no longer reconciled).
    pub state: NamespaceState,
}

/// The account namespace of the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountNamespaceStatus {
    /// The namespace's name, `<slug>-account`.
    pub name: String,
    /// `Active` (reconciled), `Terminating` (being deleted) or `Retained` (kept under
    /// `deletionPolicy: Retain` after the Tenant was deleted).
    pub state: NamespaceState,
}

/// Whether a tenant namespace is reconciled, being deleted or retained.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum NamespaceState {
    /// Reconciled by the operator.
    Active,
    /// Being deleted.
    Terminating,
    /// Removed from the spec but kept because of `deletionPolicy: Retain`; no longer reconciled.
    Retained,
}

/// Where one application of the tenant is reached in one environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// The application's catalogue key.
    pub application: String,
    /// The environment.
    pub environment: Environment,
    /// The application's URL for this tenant and environment, e.g.
    /// `https://acme.xconsole.uk.cloud.example.com/`.
    pub url: String,
}

/// The database of one environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// The environment the database serves.
    pub environment: Environment,
    /// The provider the database was created with (pinned: later spec changes do not move it).
    pub provider: DatabaseProvider,
    /// Host name applications connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Name of the Secret in the environment namespace with the keys `username`, `password`,
    /// `host`, `port`, `dbname`, `uri` and `jdbc-uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// True when the database accepts connections.
    pub ready: bool,
    /// What the database is waiting for or why it failed, when it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The request token of the last credential rotation the operator completed for this
    /// environment (the value of the Tenant's annotation
    /// `tenancy.platform.dev/rotate-credentials.<env>`): the new password is in the Secret
    /// and the database accepts it (and, for `external`, no longer the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_request: Option<String>,
    /// When that rotation completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_rotated_at: Option<String>,
    /// Why the newest rotation request is not completed yet (in progress, waiting while the
    /// Tenant is suspended or stalled, or refused for this provider); absent when none is
    /// outstanding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_message: Option<String>,
}
