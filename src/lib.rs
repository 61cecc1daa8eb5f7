//! tenant-operator: Tenants and TenantUsers in, namespaces, ingress, databases and RBAC out.

pub mod config;
pub mod controller;
pub mod database;
pub mod desired;
pub mod http;
pub mod kube_version;
pub mod leader;
pub mod metrics;
pub mod naming;
pub mod operator;
pub mod render;
pub mod telemetry;
pub mod types;
