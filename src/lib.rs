//! tenant-operator: Tenants and TenantUsers in, namespaces, ingress, databases and RBAC out.
//!
//! What the binary, the tests and the benchmark use is public: the resource types, the
//! configuration, the pure desired-state builders and `render`, the database providers, the
//! operator's wiring and its HTTP/metrics/leader-election parts. The controllers themselves
//! are reached only through [`operator`].

pub mod admission;
pub mod allocator;
pub mod config;
pub(crate) mod controller;
pub mod database;
pub mod desired;
pub mod gateway;
mod hash;
pub mod http;
pub mod kube_version;
pub mod leader;
pub mod metrics;
mod naming;
pub mod operator;
pub mod plugin;
pub mod render;
pub mod telemetry;
pub mod types;
