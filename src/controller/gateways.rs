//! Whether the Gateways that `routing: gateway` regions name exist. A route attached to a
//! Gateway that does not exist routes nothing, and the person who can fix that is the one who
//! creates the Gateway (or corrects the configuration): the Tenant is `Stalled` until then.
//!
//! Like the child caches, this answers a reconcile without an API call: one metadata-only
//! watch per configured Gateway, narrowed to it by namespace and name, so the operator holds
//! nothing of the cluster's other Gateways. A change (created, deleted) re-reconciles the
//! Tenants of the regions that use it.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, RwLock},
};

use futures::{stream::BoxStream, StreamExt};
use kube::{
    core::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta},
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use tokio::sync::watch;

use crate::{config::Config, gateway::GROUP};

/// A Gateway by namespace and name.
pub type GatewayKey = (String, String);

/// The configured Gateways and whether each exists, as the watches last saw.
#[derive(Clone)]
pub struct Gateways {
    known: Arc<RwLock<BTreeMap<GatewayKey, Presence>>>,
    listed: watch::Sender<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    /// Not listed yet.
    Unknown,
    Exists,
    Missing,
}

impl Default for Gateways {
    /// Watching no Gateway (listed at once).
    fn default() -> Self {
        Self { known: Arc::default(), listed: watch::channel(true).0 }
    }
}

fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", "Gateway"), "gateways")
}

impl Gateways {
    /// The Gateways the configuration routes through (none when the Gateway API is not served,
    /// `installed` false: there is nothing to watch, and routes report that instead).
    pub fn start(client: &Client, config: &Config, installed: bool) -> (Self, BoxStream<'static, GatewayKey>) {
        let keys: BTreeSet<GatewayKey> = if installed {
            config.clusters.values().filter_map(|c| c.routing_gateway()).map(|g| (g.namespace.clone(), g.name.clone())).collect()
        } else {
            BTreeSet::new()
        };
        let known: BTreeMap<GatewayKey, Presence> = keys.iter().map(|key| (key.clone(), Presence::Unknown)).collect();
        let gateways = Self { known: Arc::new(RwLock::new(known)), listed: watch::channel(keys.is_empty()).0 };
        let streams = keys.into_iter().map(|key| gateways.watch(client, key).boxed());
        (gateways.clone(), futures::stream::select_all(streams).boxed())
    }

    /// Wait until every configured Gateway was listed once.
    pub async fn wait_until_listed(&self) {
        let _ = self.listed.subscribe().wait_for(|listed| *listed).await;
    }

    /// Whether the Gateway exists; `None` when it is not watched (or not listed yet).
    pub fn exists(&self, namespace: &str, name: &str) -> Option<bool> {
        let known = self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match known.get(&(namespace.to_string(), name.to_string())) {
            Some(Presence::Exists) => Some(true),
            Some(Presence::Missing) => Some(false),
            Some(Presence::Unknown) | None => None,
        }
    }

    /// The watch of one Gateway; yields its key whenever it appears or goes.
    fn watch(&self, client: &Client, key: GatewayKey) -> impl futures::Stream<Item = GatewayKey> + Send + 'static {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::namespaced_with(client.clone(), &key.0, &gateway_resource());
        let config = watcher::Config::default().fields(&format!("metadata.name={}", key.1));
        let this = self.clone();
        let mut seen = false;
        watcher(api, config).default_backoff().filter_map(move |event| {
            let presence = match event {
                Ok(watcher::Event::Init) => {
                    seen = false;
                    None
                }
                Ok(watcher::Event::InitApply(_)) => {
                    seen = true;
                    None
                }
                Ok(watcher::Event::InitDone) => Some(if seen { Presence::Exists } else { Presence::Missing }),
                Ok(watcher::Event::Apply(_)) => Some(Presence::Exists),
                Ok(watcher::Event::Delete(_)) => Some(Presence::Missing),
                Err(error) => {
                    tracing::warn!(gateway = %format!("{}/{}", key.0, key.1), %error, "watch of the Gateway failed; retrying");
                    None
                }
            };
            let changed = presence.and_then(|presence| this.set(&key, presence).then(|| key.clone()));
            futures::future::ready(changed)
        })
    }

    /// Record what a watch saw; returns whether it changed.
    fn set(&self, key: &GatewayKey, presence: Presence) -> bool {
        let mut known = self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = known.insert(key.clone(), presence);
        if known.values().all(|p| *p != Presence::Unknown) {
            self.listed.send_replace(true);
        }
        before != Some(presence)
    }
}
