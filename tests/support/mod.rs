//! Test support shared by the integration test binaries (`mod support;`).
//!
//! - [`fake`]: an in-process fake Kubernetes API server.
//! - [`e2e`]: a test environment that uses a real cluster when
//!   `TENANT_OPERATOR_E2E_KUBECONFIG` names a kubeconfig, and the fake otherwise.
#![allow(dead_code, unused_imports)]

pub mod e2e;
pub mod fake;
pub mod scenario;

pub use e2e::TestEnv;
pub use fake::{FakeApiServer, RequestCounts, RequestRecord};
