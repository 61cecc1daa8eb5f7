//! The controllers: Tenant → namespaces, configuration, ingress, isolation and databases
//! ([`tenant`]); TenantUser → RoleBindings ([`user`]). Both share one [`Context`].
//!
//! Each reconcile is a sequence of steps, one module each: `validate` (spec + configuration →
//! a plan, or a refusal a person must act on), build (pure, in `crate::desired`), `apply`
//! (diff against the caches, server-side apply only what differs), `status` (pure:
//! observations → status) and, for Tenants, `cleanup` (the finalizer).

mod apply;
mod caches;
mod changes;
mod error;
mod events;
mod fingerprint;
pub mod gateways;
mod ownership;
mod summary;
pub mod tenant;
pub mod user;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{
    future::{BoxFuture, Shared},
    FutureExt,
};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    api::{Patch, PatchParams},
    core::{ApiResource, DynamicObject},
    runtime::{
        controller::Action,
        events::EventType,
        reflector::{ObjectRef, Store},
    },
    Api, Client, Resource,
};
use rand::RngExt;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc, watch};

pub use caches::{Caches, Child};
pub use changes::Changes;
pub use error::{Error, ErrorKind};
use events::{EventRecorder, EventSpec};
use gateways::Gateways;

use crate::{config::Config, desired::tenant::hostnames, metrics::Metrics, naming::FIELD_MANAGER, types::Reason};
use tenant::{GuardedTenant, HostIndex, TenantCache};
use user::{GuardedUser, SelfService, UserIndex};

/// Requeue interval of a healthy object: a periodic resync that corrects drift the watches
/// might have missed. It makes no writes when nothing changed.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Requeue interval while waiting for something outside the operator (a database to start).
pub const POLL: Duration = Duration::from_secs(15);
/// The `reportingController` of the operator's Events.
const REPORTING_CONTROLLER: &str = "tenant-operator";
/// While work is in progress, its details (which Ingress still waits for an address, which
/// database is not ready yet) are written at most this often; a change of phase, generation
/// or readiness is written at once.
pub const PROGRESS_REFRESH: Duration = Duration::from_secs(10);
/// How long a status write is remembered at most when the watch never shows it.
const WRITTEN_STATUS_TTL: Duration = Duration::from_secs(60);

/// The two controllers, as named in metrics and back-off keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerKind {
    Tenant,
    TenantUser,
}

impl ControllerKind {
    pub const ALL: [ControllerKind; 2] = [ControllerKind::Tenant, ControllerKind::TenantUser];

    pub fn as_str(self) -> &'static str {
        match self {
            ControllerKind::Tenant => "tenant",
            ControllerKind::TenantUser => "tenantuser",
        }
    }
}

/// What the controllers share: the client, configuration, caches and event recorder.
pub struct Context {
    pub client: Client,
    pub config: Arc<Config>,
    pub caches: Caches,
    /// The Tenant and TenantUser controllers' own caches.
    pub tenants: Store<GuardedTenant>,
    pub users: Store<GuardedUser>,
    /// The TenantUsers by namespace, email, username and custom role.
    pub user_index: UserIndex,
    /// What the Tenant cache keeps of the Tenants' statuses besides the store.
    pub tenant_cache: TenantCache,
    /// Whether users may edit their own TenantUser (the self-service admission policy is
    /// verified); see `user::self_service`.
    pub self_service: watch::Receiver<SelfService>,
    /// Whether the Gateways of `routing: gateway` regions exist.
    pub gateways: Gateways,
    /// Resolves once every cache holds its initial list (and the hostname index is filled).
    /// One shared future for all reconciles: awaiting a Store's readiness from many tasks at
    /// once left some of them unwoken.
    caches_ready: Shared<BoxFuture<'static, ()>>,
    hosts: Arc<Mutex<HostIndex>>,
    /// Tenants to reconcile now (a newer Tenant that must give up a hostname).
    tenant_trigger: mpsc::UnboundedSender<ObjectRef<GuardedTenant>>,
    recorder: Arc<EventRecorder>,
    pub metrics: Metrics,
    failures: Mutex<HashMap<String, u32>>,
    /// Status writes the object caches have not shown yet, by object.
    statuses: Mutex<HashMap<String, WrittenStatus>>,
    /// When the progress details of a Tenant still being provisioned were last written.
    progress: Mutex<HashMap<String, Instant>>,
}

/// A status the operator wrote, and the resourceVersion of the object it was computed from:
/// while the cache still shows that version, the written status is the current one.
struct WrittenStatus {
    before: Option<String>,
    status: serde_json::Value,
    at: Instant,
}

/// Everything [`Context::new`] needs.
pub struct ContextParts {
    pub client: Client,
    pub config: Arc<Config>,
    pub caches: Caches,
    pub tenants: Store<GuardedTenant>,
    pub users: Store<GuardedUser>,
    pub user_index: UserIndex,
    pub tenant_cache: TenantCache,
    pub self_service: watch::Receiver<SelfService>,
    pub gateways: Gateways,
    pub tenant_trigger: mpsc::UnboundedSender<ObjectRef<GuardedTenant>>,
    pub metrics: Metrics,
}

impl Context {
    pub fn new(parts: ContextParts) -> Self {
        let ContextParts {
            client,
            config,
            caches,
            tenants,
            users,
            user_index,
            tenant_cache,
            self_service,
            gateways,
            tenant_trigger,
            metrics,
        } = parts;
        let recorder = Arc::new(EventRecorder::new(client.clone(), REPORTING_CONTROLLER, std::env::var("POD_NAME").ok()));
        let hosts = Arc::new(Mutex::new(HostIndex::default()));
        let caches_ready = {
            let (caches, tenants, users, hosts, config) = (caches.clone(), tenants.clone(), users.clone(), hosts.clone(), config.clone());
            let mut verdict = self_service.clone();
            let gateways = gateways.clone();
            async move {
                caches.wait_until_ready().await;
                gateways.wait_until_listed().await;
                let _ = tenants.wait_until_ready().await;
                let _ = users.wait_until_ready().await;
                // Users' self-service Roles depend on it: deciding before it is known would
                // rewrite them on every start.
                let _ = verdict.wait_for(|v| *v != SelfService::Unknown).await;
                // Every Tenant's hosts are known before the first reconcile, so that after a
                // restart the older Tenant keeps a contested host whatever the order.
                if let Ok(mut index) = hosts.lock() {
                    for tenant in tenants.state().iter().filter_map(|g| g.0.as_ref().ok()) {
                        index.register(tenant::seniority(tenant), &hostnames(tenant, &config));
                    }
                }
            }
            .boxed()
            .shared()
        };
        Self {
            client,
            config,
            caches,
            tenants,
            users,
            user_index,
            tenant_cache,
            self_service,
            gateways,
            caches_ready,
            hosts,
            tenant_trigger,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
            statuses: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
        }
    }

    /// Register the hosts a Tenant wants; returns those an older Tenant holds (host → that
    /// Tenant). Newer Tenants that claimed them are reconciled to let them go.
    pub fn claim_hosts(&self, tenant: tenant::Seniority, hosts: Vec<String>) -> BTreeMap<String, String> {
        let candidates = {
            let Ok(mut index) = self.hosts.lock() else { return BTreeMap::new() };
            for displaced in index.register(tenant.clone(), &hosts) {
                let _ = self.tenant_trigger.send(ObjectRef::new(&displaced));
            }
            index.contested(&tenant, &hosts)
        };
        // The index knows hosts by hash: a host is contested only if the older Tenant really
        // routes it.
        candidates
            .into_iter()
            .filter(|(host, older)| {
                let older = self.tenants.get(&ObjectRef::new(older));
                older.is_some_and(|guarded| guarded.0.as_ref().is_ok_and(|t| hostnames(t, &self.config).contains(host)))
            })
            .collect()
    }

    pub fn forget_hosts(&self, tenant: &str) {
        if let Ok(mut index) = self.hosts.lock() {
            index.unregister(tenant);
        }
    }

    /// Wait until the caches hold their initial lists. Decisions are made against them:
    /// before that, a missing object would look deleted and be applied again.
    pub async fn caches_ready(&self) {
        self.caches_ready.clone().await;
    }

    /// Record a Kubernetes Event about `regarding`. Recording happens in the background: a
    /// reconcile does not wait for it, and a failure to record is logged, never fatal.
    pub fn event(&self, regarding: &ObjectReference, type_: EventType, reason: Reason, note: &str) {
        // The recorder cuts it to what the API server accepts.
        let note = note.to_owned();
        let recorder = self.recorder.clone();
        let regarding = regarding.clone();
        tokio::spawn(async move {
            let event = EventSpec { type_, reason: reason.as_str(), action: reason.as_str(), note: &note, regarding: &regarding };
            if let Err(error) = recorder.publish(&event).await {
                tracing::warn!(%error, reason = %reason, "could not record event");
            }
        });
    }

    /// One Event summarising what a reconcile changed, if it changed anything.
    pub fn changes_event(&self, regarding: &ObjectReference, changes: &Changes) {
        if let Some((reason, note)) = changes.summary() {
            self.event(regarding, EventType::Normal, reason, &note);
        }
    }

    /// A reconcile completed: the back-off of the object starts again from the beginning.
    pub fn succeeded(&self, controller: ControllerKind, name: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&format!("{}/{name}", controller.as_str()));
        }
    }

    /// The error policy of both controllers: the metric, a Warning Event on the object and the
    /// next attempt (exponential back-off with jitter per object: 1 s, 2 s, 4 s … 5 minutes).
    pub fn failed<K>(&self, controller: ControllerKind, object: &K, error: &Error) -> Action
    where
        K: Resource<DynamicType = ()>,
    {
        if error.kind() == ErrorKind::Waiting {
            return Action::requeue(Duration::from_secs(2));
        }
        let key = format!("{}/{}", controller.as_str(), object.meta().name.as_deref().unwrap_or_default());
        tracing::warn!(object = %key, %error, "reconcile failed");
        self.metrics.reconcile_failed(controller.as_str(), error.kind().as_str());
        self.event(&object.object_ref(&()), EventType::Warning, Reason::ReconcileFailed, &error.to_string());
        let attempt = match self.failures.lock() {
            Ok(mut failures) => {
                let count = failures.entry(key).or_insert(0);
                *count = count.saturating_add(1);
                *count
            }
            Err(_) => 1,
        };
        let base = Duration::from_secs(1).saturating_mul(1u32 << attempt.saturating_sub(1).min(9)).min(Duration::from_secs(300));
        let jitter = rand::rng().random_range(0.8..1.2);
        Action::requeue(base.mul_f64(jitter))
    }

    /// The status of `object` as the operator knows it: the one it last wrote, while the
    /// object's cache (`object` itself) predates that write; else `stored`.
    pub fn current_status<K, S>(&self, object: &K, stored: Option<&S>) -> Option<S>
    where
        K: Resource<DynamicType = ()>,
        S: DeserializeOwned + Clone,
    {
        self.written_status(object).and_then(|status| serde_json::from_value(status).ok()).or_else(|| stored.cloned())
    }

    fn written_status<K: Resource<DynamicType = ()>>(&self, object: &K) -> Option<serde_json::Value> {
        let key = status_key(object);
        let mut statuses = self.statuses.lock().ok()?;
        match statuses.get(&key) {
            Some(written) if written.before == object.meta().resource_version => Some(written.status.clone()),
            Some(_) => {
                // The cache has caught up (or moved on): it is the truth again.
                statuses.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Write `status` of `object` when it differs from what is stored (or from what the
    /// operator wrote last, when the cache has not caught up yet); returns whether it wrote.
    pub async fn write_status<K, S>(&self, object: &K, old: Option<&S>, new: &S) -> Result<bool, Error>
    where
        K: Resource<DynamicType = ()>,
        S: Serialize + PartialEq,
    {
        let new_value = serde_json::to_value(new)?;
        match self.written_status(object) {
            Some(written) if written == new_value => return Ok(false),
            Some(_) => {}
            None if old == Some(new) => return Ok(false),
            None => {}
        }
        self.patch_status(object, new).await?;
        if let Ok(mut statuses) = self.statuses.lock() {
            let now = Instant::now();
            statuses.retain(|_, written| now.duration_since(written.at) < WRITTEN_STATUS_TTL);
            statuses
                .insert(status_key(object), WrittenStatus { before: object.meta().resource_version.clone(), status: new_value, at: now });
        }
        Ok(true)
    }

    /// Server-side apply `status` to the status subresource of `object`.
    pub async fn patch_status<K, S>(&self, object: &K, status: &S) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()>,
        S: Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let api: Api<DynamicObject> = match object.meta().namespace.as_deref() {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let patch = serde_json::json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
        let name = object.meta().name.clone().ok_or(Error::MissingName)?;
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
        self.metrics.kube_write("apply", &format!("{}/status", K::kind(&())));
        Ok(())
    }

    /// How long a progress-only status update of `tenant` must wait (see [`PROGRESS_REFRESH`]);
    /// `None` when it may be written now.
    pub fn progress_wait(&self, tenant: &str) -> Option<Duration> {
        let progress = self.progress.lock().ok()?;
        let elapsed = progress.get(tenant)?.elapsed();
        (elapsed < PROGRESS_REFRESH).then(|| PROGRESS_REFRESH - elapsed)
    }

    /// A status of `tenant` was written; `progressing`: it says work is in progress.
    pub fn status_written(&self, tenant: &str, progressing: bool) {
        if let Ok(mut progress) = self.progress.lock() {
            if progressing {
                progress.insert(tenant.to_string(), Instant::now());
            } else {
                progress.remove(tenant);
            }
        }
    }
}

fn status_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!("{}/{}/{}", K::kind(&()), meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

/// The Tenant and TenantUser watches deliver objects the types cannot read as errors
/// instead of failing the whole list; such an object waits until someone fixes it.
fn readable<K: Clone + Debug>(guarded: &kube::core::DeserializeGuard<K>) -> Option<K> {
    match &guarded.0 {
        Ok(object) => Some(object.clone()),
        Err(invalid) => {
            tracing::warn!(name = ?invalid.metadata.name, error = %invalid.error, "object cannot be read; waiting for it to be fixed");
            None
        }
    }
}
