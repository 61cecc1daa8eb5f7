//! Test support shared by the integration test binaries (`mod support;`). See `tests/README.md`.
//!
//! - the fake API server is the `fake-apiserver` workspace crate (`crates/fake-apiserver`);
//! - [`e2e`]: a test environment that uses a real cluster when
//!   `TENANT_OPERATOR_E2E_KUBECONFIG` names a kubeconfig, and the fake otherwise;
//! - [`scenario`]: the real controllers, in-process, as the operator's ServiceAccount;
//! - [`fixtures`]: Tenants, TenantUsers and the example configuration;
//! - [`hostile_db`]: a hostile tenant's traps on the external provider's PostgreSQL server.
// Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod e2e;
pub mod fixtures;
pub mod hostile_db;
pub mod scenario;

use std::path::{Path, PathBuf};

/// The CloudNativePG `Cluster` CRD used by tests (`tests/data/cnpg-cluster-crd.yaml`).
pub const CNPG_CLUSTER_CRD: &str = include_str!("../data/cnpg-cluster-crd.yaml");

/// A path inside the repository (for tests that read its files).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Say loudly that a scenario checks nothing here: on a real cluster some scenarios cannot
/// run (fault injection, request counting, a shared cluster's limits), and a silent early
/// return would pass while checking nothing.
pub fn skipped_on_real_cluster(test: &str, why: &str) {
    eprintln!("SKIPPED on a real cluster: {test}: {why}");
}
