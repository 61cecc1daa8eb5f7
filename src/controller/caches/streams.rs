//! The watches that fill the caches: one per kind, cluster-wide, narrowed by label; what each
//! asks the API server for (metadata only where no decision reads the body; small pages for
//! kinds tenants can write), the order in which they list, and how an event changes the
//! caches.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures::{stream::BoxStream, StreamExt};
use kube::{
    core::{DynamicObject, PartialObjectMeta},
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::{
    child::Stored,
    key::{KeyRef, Keyed},
    CacheStream, Caches, Child, Shared,
};
use crate::{
    desired::ChildKind,
    metrics::Metrics,
    naming::{LABEL_ASSIGNABLE_TRUE, LABEL_TENANT},
};

/// Kinds whose body no decision reads: their caches watch metadata only (`managedFields`
/// included), so a ConfigMap holding a megabyte of a tenant's data costs the operator its
/// metadata alone. Their fingerprints cover the operator's field set instead of the body's
/// values (see `fingerprint`), which is enough where the applied-hash annotation changes with
/// every value the operator applies. Not Secrets: their applied-hash is left out of the
/// fingerprint (it hashes the password), so the fingerprint needs the values (host, URIs);
/// their pages are the smallest instead. Not Services: their fingerprint reads the ports,
/// and their bodies are bounded by their schema.
pub const METADATA_ONLY: [ChildKind; 2] = [ChildKind::ConfigMap, ChildKind::PersistentVolumeClaim];

/// Whether the cache of `kind` watches metadata only.
pub fn watches_metadata_only(kind: ChildKind) -> bool {
    METADATA_ONLY.contains(&kind)
}

/// Objects per list page for kinds a tenant can create in its namespaces: each page is held
/// whole while it is decoded, and a tenant decides how large its objects are (annotations up
/// to 256 KiB; bodies up to the API server's object limit of about 1.5 MB). 25 rather than 50:
/// the noisy-tenant bench's peak (VmHWM) came to 67 MiB with 50 and 59.7 MiB with 25
/// (BENCHMARKS.md), for twice the list requests on a restart.
const TENANT_WRITABLE_PAGE: u32 = 25;

/// Objects per list page for Secrets, whose body (data) is watched and may be a tenant's
/// megabyte.
const SECRET_PAGE: u32 = 10;

/// Objects per list page for kinds only the operator (or the cluster's administrators)
/// write: kube's default.
const OPERATOR_ONLY_PAGE: u32 = 500;

fn page_size(kind: ChildKind) -> u32 {
    match kind {
        ChildKind::Namespace | ChildKind::ResourceQuota | ChildKind::LimitRange | ChildKind::ClusterRole => OPERATOR_ONLY_PAGE,
        ChildKind::Secret => SECRET_PAGE,
        _ => TENANT_WRITABLE_PAGE,
    }
}

type Events = BoxStream<'static, Result<watcher::Event<DynamicObject>, watcher::Error>>;

/// The watch of one kind, as events of whole objects (metadata-only watches deliver objects
/// without a body).
fn events(client: &Client, kind: ChildKind) -> Events {
    let resource = kind.api_resource();
    // ClusterRoles are not a tenant's: the cache holds those a TenantUser may name.
    let selector = if kind == ChildKind::ClusterRole { LABEL_ASSIGNABLE_TRUE } else { LABEL_TENANT };
    let config = watcher::Config::default().labels(selector).page_size(page_size(kind));
    if watches_metadata_only(kind) {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &resource);
        watcher(api, config).default_backoff().map(|event| event.map(without_body)).boxed()
    } else {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        watcher(api, config).default_backoff().boxed()
    }
}

/// A metadata-only event as an event of an object without a body.
fn without_body(event: watcher::Event<PartialObjectMeta<DynamicObject>>) -> watcher::Event<DynamicObject> {
    let object =
        |meta: PartialObjectMeta<DynamicObject>| DynamicObject { types: None, metadata: meta.metadata, data: serde_json::Value::Null };
    match event {
        watcher::Event::Apply(meta) => watcher::Event::Apply(object(meta)),
        watcher::Event::InitApply(meta) => watcher::Event::InitApply(object(meta)),
        watcher::Event::Delete(meta) => watcher::Event::Delete(object(meta)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

impl Caches {
    /// Start a cache for each kind; returns the caches and the stream that drives each. What
    /// the caches hold is reported in `metrics`.
    pub fn start(client: &Client, kinds: &[ChildKind], metrics: &Metrics) -> (Self, HashMap<ChildKind, CacheStream>) {
        let caches = Self::with_kinds_and_metrics(kinds.to_vec(), Some(metrics.clone()));
        let mut streams = HashMap::new();
        // One (re-)list at a time: each page of objects is held whole while it is decoded,
        // and the peak of that, not the caches, would decide the operator's memory.
        let listing = Arc::new(Semaphore::new(1));
        for &kind in kinds {
            let shared = caches.shared.clone();
            // Namespaced kinds list once the Namespaces are known: an object is held only in
            // a namespace the operator made (see `State::namespace_admits`).
            let after = (kind.is_namespaced() && caches.shared.filters_namespaces()).then(|| caches.shared.namespaces_listed.subscribe());
            let stream = one_list_at_a_time(events(client, kind), listing.clone(), after)
                .filter_map(move |event| {
                    let touched = match event {
                        Ok(event) => Some(futures::stream::iter(shared.handle(kind, event))),
                        Err(error) if is_not_served(&error) => {
                            tracing::warn!(kind = kind.name(), %error, "the API server does not serve this kind (CRD removed?); retrying");
                            Some(futures::stream::iter(shared.not_served(kind)))
                        }
                        Err(error) => {
                            tracing::warn!(kind = kind.name(), %error, "watch of children failed; retrying");
                            None
                        }
                    };
                    futures::future::ready(touched)
                })
                .flatten()
                .boxed();
            streams.insert(kind, stream);
        }
        (caches, streams)
    }
}

/// `events` with its (re-)lists taking turns on `listing`: the watcher lists only when polled
/// after its `Init` event, so holding that event back until a permit is free holds the list
/// back; the permit goes with `InitDone` (or a failure, after which the watcher lists anew).
/// With `after`, the first list also waits until it turns true.
pub(super) fn one_list_at_a_time<S>(
    events: S,
    listing: Arc<Semaphore>,
    after: Option<watch::Receiver<bool>>,
) -> impl futures::Stream<Item = S::Item> + Send
where
    S: futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send + Unpin,
{
    futures::stream::unfold((events, None::<OwnedSemaphorePermit>, after), move |(mut events, mut permit, mut after)| {
        let listing = listing.clone();
        async move {
            let event = events.next().await?;
            match &event {
                Ok(watcher::Event::Init) if permit.is_none() => {
                    if let Some(mut ready) = after.take() {
                        let _ = ready.wait_for(|ready| *ready).await;
                    }
                    permit = listing.acquire_owned().await.ok();
                }
                Ok(watcher::Event::InitDone) | Err(_) => permit = None,
                _ => {}
            }
            Some((event, (events, permit, after)))
        }
    })
}

/// A list or watch answered 404: the server does not serve the kind (its CRD is gone).
pub(super) fn is_not_served(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => {
            status.code == 404
        }
        _ => false,
    }
}

impl Shared {
    /// The kind is not served (its CRD was removed, e.g. after the operator found it at start):
    /// none of its objects exist, which is what the cache says now, and it counts as listed so
    /// that reconciles do not wait for it (one that needs such an object is told by the API
    /// server when it applies it). The watcher keeps retrying and fills the cache if the kind
    /// comes back. Returns the objects that went.
    pub(super) fn not_served(&self, kind: ChildKind) -> Vec<Child> {
        let code = kind as u8;
        let mut state = self.write();
        state.relisting.remove(&code);
        let gone: Vec<Stored> = state.objects.iter().filter(|s| s.kind_code() == code).cloned().collect();
        for stored in &gone {
            state.remove(&stored.key());
        }
        state.synced.insert(kind);
        if self.kinds.iter().all(|kind| state.synced.contains(kind)) {
            self.synced.send_replace(true);
        }
        gone.iter().map(|stored| stored.child(kind)).collect()
    }

    /// Apply one watch event; returns the objects whose change a reconcile must see.
    pub(super) fn handle(&self, kind: ChildKind, event: watcher::Event<DynamicObject>) -> Vec<Child> {
        let touched = self.apply_event(kind, event);
        if let Some(metrics) = &self.metrics {
            let held = self.read().held.get(&(kind as u8)).copied().unwrap_or_default();
            metrics.set_cached(kind.name(), held.objects, held.bytes);
        }
        touched
    }

    /// Whether objects are held only in the operator's namespaces (when Namespaces are
    /// cached at all).
    fn filters_namespaces(&self) -> bool {
        self.kinds.contains(&ChildKind::Namespace)
    }

    fn apply_event(&self, kind: ChildKind, event: watcher::Event<DynamicObject>) -> Vec<Child> {
        let code = kind as u8;
        match event {
            watcher::Event::Init => {
                let mut state = self.write();
                // A first list starts from nothing; a later one must find what went away.
                if state.synced.contains(&kind) {
                    state.relisting.insert(code, HashSet::new());
                }
                Vec::new()
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let child = Child::from_object(kind, &object);
                drop(object);
                let mut state = self.write();
                let admitted = match child.namespace() {
                    Some(namespace) if self.filters_namespaces() => state.namespace_admits(namespace, child.label(LABEL_TENANT)),
                    _ => true,
                };
                if !admitted {
                    if let Some(metrics) = &self.metrics {
                        metrics.cache_dropped(kind.name(), "namespace-not-the-operators");
                    }
                    // Held before (its tenant label changed): gone now, for the tenant it had.
                    let key = KeyRef::new(kind, child.namespace(), child.name());
                    return state.remove(&key).map(|stored| stored.child(kind)).into_iter().collect();
                }
                let (kept, touched) = state.upsert(&child);
                if let Some(seen) = state.relisting.get_mut(&code) {
                    seen.insert(kept.address());
                }
                touched.then_some(child).into_iter().collect()
            }
            watcher::Event::Delete(object) => {
                let child = Child::from_object(kind, &object);
                let stored = child.stored();
                let mut state = self.write();
                let written = state.written.contains_key(&stored.key() as &dyn Keyed);
                state.settle_written(&stored);
                // An object the caches never held (one they did not admit) concerns no one.
                let held = state.remove(&stored.key()).is_some();
                (held || written).then_some(child).into_iter().collect()
            }
            watcher::Event::InitDone => {
                let mut state = self.write();
                let gone: Vec<Stored> = match state.relisting.remove(&code) {
                    Some(seen) => state.objects.iter().filter(|s| s.kind_code() == code && !seen.contains(&s.address())).cloned().collect(),
                    None => Vec::new(),
                };
                for stored in &gone {
                    state.remove(&stored.key());
                }
                state.synced.insert(kind);
                if kind == ChildKind::Namespace {
                    self.namespaces_listed.send_replace(true);
                }
                if self.kinds.iter().all(|kind| state.synced.contains(kind)) {
                    self.synced.send_replace(true);
                }
                gone.iter().map(|stored| stored.child(kind)).collect()
            }
        }
    }
}
