//! Per-tenant databases (SPEC §4), one module per provider:
//!
//! - [`statefulset`]: a PostgreSQL StatefulSet in each environment namespace;
//! - [`cloudnative_pg`]: a CloudNativePG `Cluster` in each environment namespace;
//! - [`external`]: a database on a shared PostgreSQL server outside the cluster;
//! - `none`: nothing.
//!
//! Every provider answers the same questions: which objects it wants ([`desired`]), whether
//! what it observes is ready ([`readiness`]), and where applications connect
//! ([`ConnectionInfo`], written into the credentials Secret by [`credentials`]).

pub mod cloudnative_pg;
pub mod credentials;
pub mod external;
pub mod rotation;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::ResourceRequirements, apimachinery::pkg::api::resource::Quantity};
use kube::api::ObjectMeta;

pub use credentials::{credentials_secret, generate_password, ConnectionInfo};

use crate::{
    config::Config,
    desired::{tenant_labels, ChildKind, DesiredObject},
    naming,
    types::{DatabaseProvider, Environment, Problem, Tenant},
};

pub const POSTGRES_PORT: u16 = 5432;
/// Volume claim template of the database StatefulSet; PVCs are `data-<slug>-db-0`.
pub const DATA_VOLUME: &str = "data";

/// The provider a Tenant uses: its own choice, else the configured default.
pub fn provider_of(tenant: &Tenant, config: &Config) -> DatabaseProvider {
    tenant.spec.database.as_ref().and_then(|db| db.provider).unwrap_or(config.database.default_provider)
}

/// What a provider wants in one environment namespace, and where it will be reachable.
pub struct ProviderObjects {
    pub objects: Vec<DesiredObject>,
    pub connection: Option<ConnectionInfo>,
}

/// Objects of the database of one environment, except the credentials Secret (which needs the
/// password) and anything living outside the cluster (the `external` provider).
pub fn desired(
    tenant: &Tenant,
    slug: &str,
    env: Environment,
    provider: DatabaseProvider,
    config: &Config,
) -> Result<ProviderObjects, serde_json::Error> {
    match provider {
        DatabaseProvider::Statefulset => statefulset::desired(tenant, slug, env, config),
        DatabaseProvider::CloudnativePg => cloudnative_pg::desired(tenant, slug, env, config),
        DatabaseProvider::None | DatabaseProvider::External => Ok(ProviderObjects { objects: Vec::new(), connection: None }),
    }
}

/// Where applications reach a database served inside the cluster at `host`.
pub(crate) fn in_cluster_connection(slug: &str, env: Environment, host: String) -> ConnectionInfo {
    ConnectionInfo {
        host,
        port: POSTGRES_PORT,
        dbname: naming::sql_database_name(slug, env),
        username: naming::sql_user_name(slug),
        require_tls: false,
    }
}

/// The provider a name (as in the CRD and the configuration) stands for.
pub fn provider_named(name: &str) -> Option<DatabaseProvider> {
    [DatabaseProvider::Statefulset, DatabaseProvider::External, DatabaseProvider::CloudnativePg, DatabaseProvider::None]
        .into_iter()
        .find(|provider| provider.as_str() == name)
}

/// The object whose status tells whether an in-cluster provider's database is ready.
pub fn readiness_source(provider: DatabaseProvider) -> Option<ChildKind> {
    match provider {
        DatabaseProvider::Statefulset => Some(ChildKind::StatefulSet),
        DatabaseProvider::CloudnativePg => Some(ChildKind::CnpgCluster),
        DatabaseProvider::External | DatabaseProvider::None => None,
    }
}

/// Readiness of an in-cluster provider from the object [`readiness_source`] names (the fields
/// of it the operator's cache keeps, e.g. `status.readyReplicas`). The `external` provider
/// checks readiness by logging in (see [`external`]).
pub fn readiness(provider: DatabaseProvider, observed: Option<&serde_json::Value>) -> Result<(), Problem> {
    match provider {
        DatabaseProvider::Statefulset => statefulset::readiness(observed),
        DatabaseProvider::CloudnativePg => cloudnative_pg::readiness(observed),
        DatabaseProvider::External | DatabaseProvider::None => Ok(()),
    }
}

/// Requests and limits of a database container when the configuration names none: they fit
/// the default quota of a tenant namespace, which covers cpu, memory and ephemeral storage.
pub(crate) fn default_resources() -> ResourceRequirements {
    let quantities = |entries: [(&str, &str); 3]| -> BTreeMap<String, Quantity> {
        entries.into_iter().map(|(key, value)| (key.to_string(), Quantity(value.to_string()))).collect()
    };
    ResourceRequirements {
        requests: Some(quantities([("cpu", "100m"), ("memory", "256Mi"), ("ephemeral-storage", "64Mi")])),
        limits: Some(quantities([("cpu", "1"), ("memory", "1Gi"), ("ephemeral-storage", "1Gi")])),
        ..ResourceRequirements::default()
    }
}

pub(crate) fn storage(tenant: &Tenant, default: &Quantity) -> Quantity {
    tenant.spec.database.as_ref().and_then(|db| db.storage.clone()).unwrap_or_else(|| default.clone())
}

pub(crate) fn storage_class(tenant: &Tenant, default: &Option<String>) -> Option<String> {
    tenant.spec.database.as_ref().and_then(|db| db.storage_class_name.clone()).or_else(|| default.clone())
}

pub(crate) fn selector_labels(slug: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "postgresql".to_string()),
        ("app.kubernetes.io/instance".to_string(), naming::database_name(slug)),
    ])
}

pub(crate) fn db_labels(slug: &str, env: Environment) -> BTreeMap<String, String> {
    let mut labels = tenant_labels(slug, Some(env));
    labels.extend(selector_labels(slug));
    labels.insert(naming::LABEL_COMPONENT.to_string(), "database".to_string());
    labels
}

/// Metadata of a database object in an environment namespace.
pub(crate) fn db_meta(name: String, slug: &str, env: Environment) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(naming::namespace_name(slug, env)),
        labels: Some(db_labels(slug, env)),
        ..ObjectMeta::default()
    }
}
