//! Database defaults of the configuration: the default provider and each provider's settings.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};

use crate::types::DatabaseProvider;

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default = "default_provider")]
    pub default_provider: DatabaseProvider,
    /// Length of generated database passwords.
    #[serde(default = "default_password_length")]
    pub password_length: usize,
    #[serde(default)]
    pub statefulset: StatefulSetDatabaseConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabaseConfig>,
    #[serde(default)]
    pub cloudnative_pg: CloudNativePgConfig,
}

fn default_provider() -> DatabaseProvider {
    DatabaseProvider::Statefulset
}

fn default_password_length() -> usize {
    32
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            default_provider: default_provider(),
            password_length: default_password_length(),
            statefulset: StatefulSetDatabaseConfig::default(),
            external: None,
            cloudnative_pg: CloudNativePgConfig::default(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulSetDatabaseConfig {
    #[serde(default = "default_image")]
    pub image: String,
    #[serde(default = "default_storage")]
    pub storage: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Requests and limits of the PostgreSQL container; defaults that fit the default quota of a
    /// tenant namespace when absent (what is left out comes from the LimitRange).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

fn default_image() -> String {
    "postgres:17".to_string()
}

fn default_storage() -> Quantity {
    Quantity("1Gi".to_string())
}

impl Default for StatefulSetDatabaseConfig {
    fn default() -> Self {
        Self { image: default_image(), storage: default_storage(), storage_class_name: None, resources: None }
    }
}

/// An existing PostgreSQL server on which the `external` provider creates databases.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalDatabaseConfig {
    /// Secret with the admin connection: keys `host`, `port`, `username`, `password`, and
    /// optionally `dbname` (default `postgres`) and `sslmode` (`disable` or `require`).
    pub admin_secret: SecretRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudNativePgConfig {
    #[serde(default = "default_instances")]
    pub instances: i32,
    #[serde(default = "default_storage")]
    pub storage: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Requests and limits of the PostgreSQL pods (a core/v1 ResourceRequirements); defaults
    /// that fit the default quota of a tenant namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

fn default_instances() -> i32 {
    1
}

impl Default for CloudNativePgConfig {
    fn default() -> Self {
        Self { instances: default_instances(), storage: default_storage(), image_name: None, resources: None }
    }
}
