//! Label-narrowed caches of the operator's children.
//!
//! Every child kind is watched once, cluster-wide but only with the tenant label, so unrelated
//! objects of the cluster are never held in memory. The stores answer "what is there now"
//! without an API call, which is what lets a no-op reconcile issue no request at all.

use std::{collections::HashMap, sync::Arc};

use futures::{stream::BoxStream, StreamExt, TryStreamExt};
use kube::{
    core::DynamicObject,
    runtime::{
        reflector::{store::Writer, ObjectRef, Store},
        watcher, WatchStreamExt,
    },
    Api, Client, ResourceExt,
};

use crate::{
    desired::ChildKind,
    naming::{LABEL_ASSIGNABLE_TRUE, LABEL_TENANT},
};

/// Read access to the caches, shared by the controllers.
#[derive(Clone, Default)]
pub struct Caches {
    stores: HashMap<ChildKind, Store<DynamicObject>>,
}

/// The watch stream of one cache: every object it touches. It must be polled (by a
/// controller, as a trigger) for the cache to fill.
pub type CacheStream = BoxStream<'static, Result<DynamicObject, watcher::Error>>;

impl Caches {
    /// Start a cache for each kind; returns the caches and the stream that drives each.
    pub fn start(client: &Client, kinds: &[ChildKind]) -> (Self, HashMap<ChildKind, CacheStream>) {
        let mut stores = HashMap::new();
        let mut streams = HashMap::new();
        for &kind in kinds {
            let resource = kind.api_resource();
            let writer: Writer<DynamicObject> = Writer::new(resource.clone());
            let store = writer.as_reader();
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            // ClusterRoles are not a tenant's: the cache holds those a TenantUser may name.
            let selector = if kind == ChildKind::ClusterRole { LABEL_ASSIGNABLE_TRUE } else { LABEL_TENANT };
            let config = watcher::Config::default().labels(selector);
            let stream = watcher(api, config)
                .default_backoff()
                .reflect(writer)
                .touched_objects()
                .inspect_err(move |error| tracing::warn!(kind = kind.name(), %error, "watch of children failed; retrying"))
                .boxed();
            stores.insert(kind, store);
            streams.insert(kind, stream);
        }
        (Self { stores }, streams)
    }

    /// Wait until every cache has its initial list.
    pub async fn wait_until_ready(&self) {
        for store in self.stores.values() {
            let _ = store.wait_until_ready().await;
        }
    }

    pub fn has(&self, kind: ChildKind) -> bool {
        self.stores.contains_key(&kind)
    }

    pub fn get(&self, kind: ChildKind, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        let store = self.stores.get(&kind)?;
        let mut key = ObjectRef::new_with(name, kind.api_resource());
        if let Some(ns) = namespace.filter(|_| kind.is_namespaced()) {
            key = key.within(ns);
        }
        store.get(&key)
    }

    /// Cached objects of `kind` labelled with the tenant `slug`.
    pub fn of_tenant(&self, kind: ChildKind, slug: &str) -> Vec<Arc<DynamicObject>> {
        self.stores
            .get(&kind)
            .map(|store| store.state().into_iter().filter(|o| o.labels().get(LABEL_TENANT).map(String::as_str) == Some(slug)).collect())
            .unwrap_or_default()
    }
}
