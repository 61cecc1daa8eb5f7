//! What the Tenant cache keeps of each Tenant: everything but most of its status.
//!
//! A Tenant's status (six conditions with their messages, every endpoint, namespace and
//! database) is most of what a Tenant weighs in memory, and a reconcile reads only a little
//! of it: the conditions' types, statuses and transition times (to keep the time of a
//! condition that did not change), the phase (metrics) and the database providers (pins).
//! The store keeps those; the rest is reduced to a digest, which tells whether a status a
//! reconcile computed is the one already stored. A reconcile that must keep the details of
//! the stored status (suspended, refused, failed, terminating) reads it from the API server.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{runtime::watcher, Resource, ResourceExt};

use super::GuardedTenant;
use crate::{
    controller::fingerprint,
    types::{DatabaseStatus, Tenant, TenantStatus},
};

/// Shared between the Tenant watch (which fills it as Tenants arrive) and the reconciles.
#[derive(Clone, Default)]
pub struct TenantCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    statuses: HashMap<String, Summary>,
    /// The number of the current (re-)list: summaries not seen by it are of Tenants gone.
    epoch: u32,
}

/// What is left of a stored status besides the reduced one in the store.
struct Summary {
    /// The Tenant's resourceVersion the summary belongs to.
    version: Option<Box<str>>,
    digest: u64,
    /// `[type, status, lastTransitionTime]` of each condition, as JSON.
    conditions: Box<str>,
    epoch: u32,
}

type Mark = (String, String, Time);

impl TenantCache {
    /// Reduce the Tenants of a watch event before they are stored.
    pub fn observe(&self, event: &mut watcher::Event<GuardedTenant>) {
        let Ok(mut inner) = self.inner.lock() else { return };
        match event {
            watcher::Event::Init => inner.epoch = inner.epoch.wrapping_add(1),
            watcher::Event::InitApply(guarded) | watcher::Event::Apply(guarded) => {
                let epoch = inner.epoch;
                if let Ok(tenant) = &mut guarded.0 {
                    let summary = reduce(tenant, epoch);
                    inner.statuses.insert(tenant.name_any(), summary);
                }
            }
            watcher::Event::Delete(guarded) => {
                inner.statuses.remove(guarded.meta().name.as_deref().unwrap_or_default());
            }
            watcher::Event::InitDone => {
                let epoch = inner.epoch;
                inner.statuses.retain(|_, summary| summary.epoch == epoch);
            }
        }
    }

    /// The stored status of `tenant` as far as a status computation reads it: phase,
    /// observed generation, database providers, and the conditions' types, statuses and
    /// transition times (no reasons, messages or other details). `None` when this version of
    /// the Tenant is not known.
    pub fn reduced_status(&self, tenant: &Tenant) -> Option<TenantStatus> {
        let inner = self.inner.lock().ok()?;
        let summary = inner.statuses.get(tenant.meta().name.as_deref()?)?;
        if summary.version.as_deref() != tenant.meta().resource_version.as_deref() {
            return None;
        }
        let marks: Vec<Mark> = serde_json::from_str(&summary.conditions).ok()?;
        let mut status = tenant.status.clone().unwrap_or_default();
        status.conditions = marks
            .into_iter()
            .map(|(type_, status, last_transition_time)| Condition {
                type_,
                status,
                last_transition_time,
                reason: String::new(),
                message: String::new(),
                observed_generation: None,
            })
            .collect();
        Some(status)
    }

    /// Whether `status` is exactly the stored status of this version of `tenant`.
    pub fn is_stored(&self, tenant: &Tenant, status: &TenantStatus) -> bool {
        let Ok(inner) = self.inner.lock() else { return false };
        let Some(summary) = tenant.meta().name.as_deref().and_then(|name| inner.statuses.get(name)) else { return false };
        summary.version.as_deref() == tenant.meta().resource_version.as_deref() && summary.digest == digest(Some(status))
    }
}

fn digest(status: Option<&TenantStatus>) -> u64 {
    fingerprint::of_value(&serde_json::to_value(status).unwrap_or_default())
}

/// Leave in `tenant` only what the store keeps of its status; return the rest's summary.
fn reduce(tenant: &mut Tenant, epoch: u32) -> Summary {
    let full = tenant.status.take();
    let marks: Vec<Mark> = full
        .iter()
        .flat_map(|status| &status.conditions)
        .map(|c| (c.type_.clone(), c.status.clone(), c.last_transition_time.clone()))
        .collect();
    let summary = Summary {
        version: tenant.meta().resource_version.as_deref().map(Box::from),
        digest: digest(full.as_ref()),
        conditions: serde_json::to_string(&marks).unwrap_or_default().into_boxed_str(),
        epoch,
    };
    tenant.status = full.map(|status| TenantStatus {
        observed_generation: status.observed_generation,
        phase: status.phase,
        databases: status.databases.into_iter().map(|db| DatabaseStatus { host: None, secret_name: None, message: None, ..db }).collect(),
        ..TenantStatus::default()
    });
    summary
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::types::{Environment, TenantPhase, TenantSpec};

    fn tenant(version: &str, message: &str) -> GuardedTenant {
        let spec: TenantSpec =
            serde_json::from_value(serde_json::json!({"displayName": "A", "cluster": "uk", "environments": ["dev"]})).expect("spec");
        let mut tenant = Tenant::new("acme", spec);
        tenant.metadata.resource_version = Some(version.into());
        let time = Time(Timestamp::from_second(1_000).expect("time"));
        tenant.status = Some(TenantStatus {
            observed_generation: Some(2),
            phase: Some(TenantPhase::Provisioning),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "WaitingForAddress".into(),
                message: message.into(),
                observed_generation: Some(2),
                last_transition_time: time,
            }],
            databases: vec![DatabaseStatus {
                environment: Environment::Dev,
                provider: crate::types::DatabaseProvider::Statefulset,
                host: Some("acme-db.acme-dev.svc".into()),
                secret_name: Some("acme-db-credentials".into()),
                ready: false,
                message: Some("waiting".into()),
            }],
            ..TenantStatus::default()
        });
        kube::core::DeserializeGuard(Ok(tenant))
    }

    #[test]
    fn the_store_keeps_what_reconciles_read_and_a_digest_of_the_rest() {
        let cache = TenantCache::default();
        let original = tenant("7", "Ingress acme-dev/xconsole has no address yet");
        let full = original.0.as_ref().ok().and_then(|t| t.status.clone()).expect("status");
        let mut event = watcher::Event::Apply(original);
        cache.observe(&mut event);
        let watcher::Event::Apply(stored) = event else { panic!("event kind") };
        let stored = stored.0.expect("tenant");
        let kept = stored.status.clone().expect("status");
        assert_eq!((kept.phase, kept.observed_generation), (Some(TenantPhase::Provisioning), Some(2)));
        assert!(kept.conditions.is_empty());
        assert_eq!(kept.databases[0].provider, crate::types::DatabaseProvider::Statefulset, "the pin");
        assert_eq!(kept.databases[0].host, None);

        let reduced = cache.reduced_status(&stored).expect("known version");
        assert_eq!(reduced.conditions[0].type_, "Ready");
        assert_eq!(reduced.conditions[0].last_transition_time, full.conditions[0].last_transition_time);
        assert!(reduced.conditions[0].message.is_empty());

        assert!(cache.is_stored(&stored, &full));
        let mut other = full.clone();
        other.conditions[0].message = "something else".into();
        assert!(!cache.is_stored(&stored, &other));

        let mut newer = stored.clone();
        newer.metadata.resource_version = Some("8".into());
        assert!(cache.reduced_status(&newer).is_none(), "another version of the Tenant");
        assert!(!cache.is_stored(&newer, &full));
    }

    #[test]
    fn a_relist_forgets_tenants_that_are_gone() {
        let cache = TenantCache::default();
        let mut gone = tenant("1", "x");
        if let Ok(t) = &mut gone.0 {
            t.metadata.name = Some("gone".into());
        }
        cache.observe(&mut watcher::Event::Init);
        cache.observe(&mut watcher::Event::InitApply(gone));
        cache.observe(&mut watcher::Event::InitApply(tenant("1", "x")));
        cache.observe(&mut watcher::Event::InitDone);
        cache.observe(&mut watcher::Event::Init);
        cache.observe(&mut watcher::Event::InitApply(tenant("2", "x")));
        cache.observe(&mut watcher::Event::InitDone);
        let names: Vec<String> = cache.inner.lock().expect("lock").statuses.keys().cloned().collect();
        assert_eq!(names, ["acme"]);
    }
}
