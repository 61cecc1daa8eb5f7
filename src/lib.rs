//! tenant-operator: Tenants and TenantUsers in, namespaces, ingress, databases and RBAC out.

pub mod types;
pub mod config;
pub mod naming;
pub mod desired;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod telemetry;
