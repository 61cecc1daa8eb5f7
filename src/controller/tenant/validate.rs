//! Step 1: the spec and the configuration → a [`ValidatedTenant`] the other steps work from,
//! or the [`Problem`] that refuses it. A refused Tenant changes nothing on the cluster: an
//! unknown cluster, a provider change or an earlier Tenant's data it did not consent to adopt
//! must not take namespaces or data with it.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::predecessor;
use crate::{
    config::Config,
    controller::caches::Child,
    desired::tenant::TenantPlan,
    types::{DatabaseProvider, Environment, Problem, Reason, Tenant},
};

/// A Tenant the operator can reconcile.
#[derive(Debug)]
pub struct ValidatedTenant {
    pub slug: String,
    /// The Tenant's UID, stamped on what it applies.
    pub uid: String,
    pub plan: TenantPlan,
    /// Hosts an older Tenant routes (host → that Tenant): their Ingresses are left out.
    pub contested_hosts: BTreeMap<String, String>,
    /// The earlier Tenant of the slug (by UID) whose retained data, credentials, databases and
    /// users this one consents to adopt (`spec.adoptRetainedFrom`).
    pub adopt_from: Option<String>,
}

/// `pinned`: the provider each environment's existing database was created with.
/// `contested_hosts`: hosts of this Tenant that an older Tenant holds.
/// `namespaces`: the operator's namespaces labelled for the slug, as cached.
pub fn validate(
    tenant: &Tenant,
    config: &Config,
    pinned: &BTreeMap<Environment, DatabaseProvider>,
    contested_hosts: BTreeMap<String, String>,
    namespaces: &[Child],
) -> Result<ValidatedTenant, Problem> {
    let uid = tenant.uid().ok_or_else(|| Problem::new(Reason::InvalidSpec, "the Tenant has no UID yet"))?;
    let mut plan =
        TenantPlan::build(tenant, config).map_err(|error| Problem::new(error.reason(), format!("{error}; nothing was changed")))?;
    // Before the pins: an earlier Tenant's databases pin nothing for this one.
    let adopt_from = predecessor::consented(tenant, &uid);
    let wanted: BTreeSet<&str> = plan.namespaces().collect();
    predecessor::check(&plan.slug, &uid, adopt_from.as_deref(), &predecessor::earlier_tenants(namespaces, &wanted, &plan.slug, &uid))?;
    for env in &plan.environments {
        if let Some(&was) = pinned.get(&env.environment) {
            if was != plan.database_provider {
                return Err(provider_change_refused(&plan.slug, env.environment, was, plan.database_provider, tenant));
            }
        }
    }
    if !contested_hosts.is_empty() {
        plan.without_hosts(&contested_hosts.keys().cloned().collect());
    }
    Ok(ValidatedTenant { slug: plan.slug.clone(), uid, plan, contested_hosts, adopt_from })
}

fn provider_change_refused(slug: &str, env: Environment, was: DatabaseProvider, now: DatabaseProvider, tenant: &Tenant) -> Problem {
    let source = if tenant.spec.database.as_ref().and_then(|db| db.provider).is_some() {
        "spec.database.provider"
    } else {
        "the operator's default provider"
    };
    Problem::new(
        Reason::ProviderChangeRefused,
        format!(
            "the {env} database of tenant {slug} was created with provider {was} and {source} now says {now}; \
             a provider change would abandon or delete its data, so nothing was changed. Set the provider back to {was}, \
             or migrate: copy the data out, remove the environment (deletionPolicy Retain keeps its data) or delete the \
             Tenant, then add it again with the new provider"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TenantSpec;

    fn config() -> Config {
        crate::desired::tenant::tests::example_config()
    }

    fn tenant(provider: Option<&str>) -> Tenant {
        let mut spec =
            serde_json::json!({"displayName": "Acme", "cluster": "uk", "environments": ["dev", "prod"], "applications": ["xconsole"]});
        if let Some(provider) = provider {
            spec["database"] = serde_json::json!({ "provider": provider });
        }
        let spec: TenantSpec = serde_json::from_value(spec).unwrap();
        let mut tenant = Tenant::new("acme", spec);
        tenant.metadata.uid = Some("uid-1".into());
        tenant
    }

    #[test]
    fn unknown_cluster_is_refused_with_its_reason() {
        let mut t = tenant(None);
        t.spec.cluster = "mars".into();
        let problem = validate(&t, &config(), &BTreeMap::new(), BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(problem.reason, Reason::UnknownCluster);
        assert!(problem.message.contains("nothing was changed"), "{}", problem.message);
    }

    #[test]
    fn a_pinned_provider_cannot_change() {
        let pinned = BTreeMap::from([(Environment::Dev, DatabaseProvider::Statefulset)]);
        let problem = validate(&tenant(Some("none")), &config(), &pinned, BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(problem.reason, Reason::ProviderChangeRefused);
        assert!(problem.message.contains("created with provider statefulset"), "{}", problem.message);
        assert!(validate(&tenant(Some("statefulset")), &config(), &pinned, BTreeMap::new(), &[]).is_ok());
    }

    #[test]
    fn contested_hosts_lose_their_ingresses() {
        let validated = validate(&tenant(None), &config(), &BTreeMap::new(), BTreeMap::new(), &[]).unwrap();
        let host = "acme-dev.xconsole.uk.cloud.example.com".to_string();
        assert!(validated.plan.objects().any(|o| o.object.pointer("/spec/rules/0/host").and_then(|h| h.as_str()) == Some(host.as_str())));
        let contested = BTreeMap::from([(host.clone(), "older".to_string())]);
        let validated = validate(&tenant(None), &config(), &BTreeMap::new(), contested, &[]).unwrap();
        assert!(!validated.plan.objects().any(|o| o.object.pointer("/spec/rules/0/host").and_then(|h| h.as_str()) == Some(host.as_str())));
        assert!(validated.plan.endpoints.iter().all(|e| !e.url.contains(&host)));
        assert_eq!(validated.plan.endpoints.len(), 1, "prod keeps its endpoint");
    }
}
