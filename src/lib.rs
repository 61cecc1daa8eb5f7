//! tenant-operator: Tenants and TenantUsers in, namespaces, ingress, databases and RBAC out.

pub mod config;
pub mod database;
pub mod types;
