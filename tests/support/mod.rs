//! Test support shared by the integration test binaries (`mod support;`). See `tests/README.md`.
//!
//! - the fake API server is the `fake-apiserver` workspace crate (`crates/fake-apiserver`);
//! - [`e2e`]: a test environment that uses a real cluster when
//!   `TENANT_OPERATOR_E2E_KUBECONFIG` names a kubeconfig, the local control plane when
//!   `TENANT_OPERATOR_E2E_SERVER=real`, and the fake otherwise;
//! - [`control_plane`]: etcd, kube-apiserver and kube-controller-manager, started once per
//!   test binary from `TENANT_OPERATOR_K8S_BINARIES`;
//! - [`stand_ins`]: kubelet, ingress controller and CloudNativePG stand-ins for it;
//! - [`scope`]: on a shared cluster, a scenario's operator sees only its own tenants;
//! - [`requests`]: on a real cluster, the operator's requests as the fake would record them;
//! - [`bindings`]: the RoleBindings the operator gave a TenantUser;
//! - [`scenario`]: the real controllers, in-process, as the operator's ServiceAccount;
//! - [`fixtures`]: Tenants, TenantUsers and the example configuration;
//! - [`hostile_db`]: a hostile tenant's traps on the external provider's PostgreSQL server.
// Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod bindings;
pub mod control_plane;
pub mod e2e;
pub mod faults;
pub mod fixtures;
pub mod gateway;
pub mod hostile_db;
pub mod requests;
pub mod scenario;
pub mod scope;
pub mod stand_ins;

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
///
/// Written to the process's stderr directly, not through the test harness's capture, so that it
/// shows in the log of a passing run.
pub fn skipped_on_real_cluster(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED on a real cluster: {test}: {why}");
}
