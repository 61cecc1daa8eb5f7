//! The admission policies shipped with the operator (`deploy/admission/tenant-namespace-policies.yaml`)
//! that hold tenant namespaces against their own users: the operator's objects, Service types,
//! image pull policy; and the operator-scope policy (`deploy/admission/operator-scope-policy.yaml`)
//! that holds the operator's own ServiceAccount to the namespaces it created. They are installed with the operator, not by it; an administrator may
//! remove them. The operator checks every minute that each policy and its binding exist and
//! reports it in `tenant_operator_admission_policy_installed{policy}` (and a warning in its
//! log), since without them a tenant can delete its database or forge the operator's objects.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use kube::{Api, Client};

use crate::{config::Config, metrics::Metrics};

/// Refuses writes to objects labelled `tenancy.platform.dev/*` by anyone but the operator.
pub const OPERATOR_OBJECTS: &str = "tenancy-operator-objects.tenancy.platform.dev";
/// Refuses Service types the configuration does not allow (`namespaces.serviceTypes`).
pub const SERVICE_TYPES: &str = "tenancy-service-types.tenancy.platform.dev";
/// Refuses containers that do not pull `Always` (`namespaces.requireImagePullAlways`).
pub const IMAGE_PULL_POLICY: &str = "tenancy-image-pull-policy.tenancy.platform.dev";

/// Refuses the operator's own ServiceAccount changing or deleting a namespace it did not
/// create, and writing RoleBindings outside its namespaces (`deploy/admission/operator-scope-policy.yaml`):
/// what RBAC cannot narrow of the operator's rights.
pub const OPERATOR_SCOPE: &str = "tenant-operator-scope.tenancy.platform.dev";

/// How often the policies are checked.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The policies this configuration relies on; each binding has its policy's name.
pub fn required_policies(config: &Config) -> Vec<&'static str> {
    let mut policies = vec![OPERATOR_OBJECTS, SERVICE_TYPES, OPERATOR_SCOPE];
    if config.namespaces.require_image_pull_always {
        policies.push(IMAGE_PULL_POLICY);
    }
    policies
}

/// Whether a policy and its binding both exist.
async fn installed(client: &Client, name: &str) -> Result<bool, kube::Error> {
    let policy = Api::<ValidatingAdmissionPolicy>::all(client.clone()).get_opt(name).await?;
    let binding = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()).get_opt(name).await?;
    Ok(policy.is_some() && binding.is_some())
}

/// Checks the required policies now and then every minute, for as long as it is polled.
pub async fn report_policies(client: Client, config: std::sync::Arc<Config>, metrics: Metrics) {
    loop {
        for policy in required_policies(&config) {
            match installed(&client, policy).await {
                Ok(true) => metrics.set_admission_policy(policy, Some(true)),
                Ok(false) => {
                    metrics.set_admission_policy(policy, Some(false));
                    tracing::warn!(
                        policy,
                        "the ValidatingAdmissionPolicy or its binding is missing: tenants can change or delete the operator's \
                         objects in their namespaces, or escape the namespace profile (see docs/operations.md); reinstall deploy/admission"
                    );
                }
                Err(error) => {
                    metrics.set_admission_policy(policy, None);
                    tracing::warn!(policy, %error, "cannot check the admission policy");
                }
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
