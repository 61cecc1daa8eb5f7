//! The tenant namespace profile (SPEC §0a): what makes a namespace the operator gives a tenant
//! hold against a hostile user of it.
//!
//! - Pod Security labels: `restricted` by default, per environment from the configuration
//!   (`namespaces.podSecurity`); account namespaces are always `restricted`.
//! - A ResourceQuota `tenant-quota` in every environment namespace, always: the configured
//!   defaults (`namespaces.quota`) with the Tenant's `spec.quota` over them; and a LimitRange
//!   `tenant-defaults` so that pods that set no resources are still admitted.
//! - A count quota in the account namespace (TenantUsers, ConfigMaps, Secrets).
//! - The labels through which the shipped admission policies read the configuration: allowed
//!   Service types, and whether containers must pull `Always`.
//!
//! Every rule is listed with its configuration key in `docs/reference.md`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec};

use super::meta;
use crate::{
    config::Config,
    desired::tenant_labels,
    naming::{self, LABEL_IMAGE_PULL_POLICY, LABEL_SERVICE_TYPES, LIMIT_RANGE, RESOURCE_QUOTA},
    types::{Environment, Tenant},
};

const POD_SECURITY_MODES: [&str; 3] = ["enforce", "warn", "audit"];

/// The label value that lists the allowed Service types: label values admit no `,`, so they
/// are joined by `.` (the admission policy splits them again).
pub fn service_types_label(types: &[String]) -> String {
    types.join(".")
}

/// An environment namespace: Pod Security levels, and the admission policies' settings.
pub fn namespace_object(slug: &str, env: Environment, config: &Config) -> Namespace {
    let profile = &config.namespaces;
    let mut labels = tenant_labels(slug, Some(env));
    let pod_security = &profile.pod_security;
    for (mode, level) in POD_SECURITY_MODES.into_iter().zip([pod_security.enforce_in(env), &pod_security.warn, &pod_security.audit]) {
        labels.insert(format!("pod-security.kubernetes.io/{mode}"), level.to_string());
    }
    labels.insert(LABEL_SERVICE_TYPES.to_string(), service_types_label(&profile.service_types));
    if profile.require_image_pull_always {
        labels.insert(LABEL_IMAGE_PULL_POLICY.to_string(), "Always".to_string());
    }
    Namespace { metadata: meta(&naming::namespace_name(slug, env), None, labels), ..Namespace::default() }
}

/// The account namespace holds TenantUsers and RBAC only: Pod Security `restricted` everywhere,
/// whatever the environments use.
pub fn account_namespace_object(slug: &str) -> Namespace {
    let mut labels = tenant_labels(slug, None);
    labels.insert(naming::LABEL_COMPONENT.to_string(), "account".to_string());
    for mode in POD_SECURITY_MODES {
        labels.insert(format!("pod-security.kubernetes.io/{mode}"), "restricted".to_string());
    }
    Namespace { metadata: meta(&naming::account_namespace_name(slug), None, labels), ..Namespace::default() }
}

/// The quota of an environment namespace: the configured defaults, `spec.quota` over them.
pub fn resource_quota(tenant: &Tenant, slug: &str, env: Environment, config: &Config) -> ResourceQuota {
    let mut hard = config.namespaces.quota();
    if let Some(quota) = &tenant.spec.quota {
        hard.extend(quota.hard().into_iter().map(|(key, value)| (key.to_string(), value)));
    }
    let namespace = naming::namespace_name(slug, env);
    quota_object(meta(RESOURCE_QUOTA, Some(&namespace), tenant_labels(slug, Some(env))), hard)
}

/// The count quota of the account namespace: TenantUsers an Account Admin may create, and
/// ConfigMaps and Secrets.
pub fn account_quota(slug: &str, config: &Config) -> ResourceQuota {
    let namespace = naming::account_namespace_name(slug);
    quota_object(meta(RESOURCE_QUOTA, Some(&namespace), tenant_labels(slug, None)), config.namespaces.account_quota())
}

fn quota_object(
    metadata: kube::api::ObjectMeta,
    hard: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> ResourceQuota {
    ResourceQuota {
        metadata,
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..ResourceQuotaSpec::default() }),
        ..ResourceQuota::default()
    }
}

/// Default container requests and limits: the quota covers requests and limits of cpu, memory
/// and ephemeral storage, so the API server refuses pods that leave one out, unless this
/// fills it in. The tenant's own database pod relies on it too.
pub fn limit_range(slug: &str, env: Environment, config: &Config) -> LimitRange {
    let defaults = &config.namespaces.default_container_resources;
    let namespace = naming::namespace_name(slug, env);
    LimitRange {
        metadata: meta(LIMIT_RANGE, Some(&namespace), tenant_labels(slug, Some(env))),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_string(),
                default: Some(defaults.default.clone()),
                default_request: Some(defaults.default_request.clone()),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::tenant::tests::example_config, types::QuotaSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn tenant(quota: Option<QuotaSpec>) -> Tenant {
        let mut tenant = crate::desired::tenant::tests::acme();
        tenant.spec.quota = quota;
        tenant
    }

    #[test]
    fn every_environment_namespace_is_restricted_unless_configured_otherwise() {
        let mut config = example_config();
        let labels = |config: &Config, env| namespace_object("acme", env, config).metadata.labels.unwrap_or_default();
        for env in Environment::ALL {
            assert_eq!(labels(&config, env)["pod-security.kubernetes.io/enforce"], "restricted", "{env}");
        }
        config.namespaces.pod_security.environments.insert(Environment::Dev, "baseline".into());
        assert_eq!(labels(&config, Environment::Dev)["pod-security.kubernetes.io/enforce"], "baseline");
        assert_eq!(labels(&config, Environment::Dev)["pod-security.kubernetes.io/warn"], "restricted");
        assert_eq!(labels(&config, Environment::Staging)["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(
            account_namespace_object("acme").metadata.labels.unwrap_or_default()["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
    }

    #[test]
    fn namespaces_carry_the_admission_policies_settings() {
        let mut config = example_config();
        let labels = namespace_object("acme", Environment::Dev, &config).metadata.labels.unwrap_or_default();
        assert_eq!(labels[LABEL_SERVICE_TYPES], "ClusterIP");
        assert_eq!(labels[LABEL_IMAGE_PULL_POLICY], "Always");
        config.namespaces.service_types = vec!["ClusterIP".into(), "LoadBalancer".into()];
        config.namespaces.require_image_pull_always = false;
        let labels = namespace_object("acme", Environment::Dev, &config).metadata.labels.unwrap_or_default();
        assert_eq!(labels[LABEL_SERVICE_TYPES], "ClusterIP.LoadBalancer");
        assert!(!labels.contains_key(LABEL_IMAGE_PULL_POLICY));
    }

    #[test]
    fn the_quota_is_the_configured_default_with_spec_quota_over_it() {
        let config = example_config();
        let hard = |quota| resource_quota(&tenant(quota), "acme", Environment::Dev, &config).spec.and_then(|s| s.hard).unwrap_or_default();
        assert_eq!(hard(None), config.namespaces.quota());
        let overridden = hard(Some(QuotaSpec {
            cpu: Some(Quantity("3".into())),
            limits_ephemeral_storage: Some(Quantity("5Gi".into())),
            secrets: Some(7),
            ..QuotaSpec::default()
        }));
        assert_eq!(overridden["requests.cpu"].0, "3");
        assert_eq!(overridden["limits.ephemeral-storage"].0, "5Gi");
        assert_eq!(overridden["secrets"].0, "7");
        assert_eq!(overridden["services.nodeports"].0, "0");
        assert_eq!(overridden.len(), config.namespaces.quota().len());
    }

    #[test]
    fn the_limit_range_defaults_every_resource_the_quota_limits() {
        let config = example_config();
        let limits = limit_range("acme", Environment::Dev, &config).spec.map(|s| s.limits).unwrap_or_default();
        let quota = config.namespaces.quota();
        for (key, field) in [("requests.", &limits[0].default_request), ("limits.", &limits[0].default)] {
            let defaults = field.clone().unwrap_or_default();
            for resource in quota.keys().filter_map(|k| k.strip_prefix(key)) {
                assert!(defaults.contains_key(resource), "no default for {key}{resource}");
            }
        }
    }

    #[test]
    fn the_account_namespace_counts_configmaps_and_secrets() {
        let quota = account_quota("acme", &example_config());
        assert_eq!(quota.metadata.namespace.as_deref(), Some("acme-account"));
        let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
        assert!(hard.contains_key("configmaps") && hard.contains_key("secrets"));
    }
}
