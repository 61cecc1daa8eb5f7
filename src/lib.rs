//! tenant-operator: Tenants and TenantUsers in, namespaces, ingress, databases and RBAC out.

pub mod types;
pub mod config;
pub mod naming;
pub mod desired;
pub mod render;
pub mod controller;
pub mod operator;
