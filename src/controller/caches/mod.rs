//! Label-narrowed caches of the operator's children, in compact form.
//!
//! Every child kind is watched once, cluster-wide but only with the tenant label, so unrelated
//! objects of the cluster are never held in memory. The caches answer "what is there now"
//! without an API call, which is what lets a no-op reconcile issue no request at all.
//!
//! Memory is what decides how many tenants one operator can serve: an object is held as a
//! [`Child`] (a few hundred bytes, see there), keyed by kind, namespace and name without a
//! separate key allocation, and indexed by tenant so that a reconcile looks at its own
//! tenant's objects only. The watches list in pages (kube's watcher: 500 objects a page), and
//! each object is reduced as it arrives; a re-list marks what it sees instead of building a
//! second copy of the cache.
//!
//! The operator's own writes are remembered until the watch delivers them ("written"): a
//! reconcile that runs before the cache has caught up reads the object as the operator wrote
//! it instead of applying it again, and the watch event of the write itself (same
//! resourceVersion) does not trigger another reconcile.

mod child;

use std::{
    borrow::Borrow,
    collections::{BTreeSet, HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use futures::{stream::BoxStream, StreamExt};
use kube::{
    core::DynamicObject,
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

pub use child::Child;

use crate::{
    desired::ChildKind,
    hash::hash_str,
    metrics::Metrics,
    naming::{LABEL_ASSIGNABLE_TRUE, LABEL_TENANT},
};
use child::Stored;

/// How long a write is remembered at most when its watch event never comes (a watch that
/// restarted lists the object again, which also settles it).
const WRITTEN_TTL: Duration = Duration::from_secs(60);

/// Read access to the caches, shared by the controllers.
#[derive(Clone)]
pub struct Caches {
    shared: Arc<Shared>,
}

/// The stream of one cache: every object whose change may concern a reconcile (not the
/// operator's own writes coming back). It must be polled (by a controller, as a trigger) for
/// the cache to fill.
pub type CacheStream = BoxStream<'static, Child>;

struct Shared {
    kinds: Vec<ChildKind>,
    metrics: Option<Metrics>,
    state: RwLock<State>,
    synced: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    objects: HashSet<Stored>,
    /// Objects by (the hash of) their tenant label.
    by_tenant: HashMap<u64, Vec<Stored>>,
    /// The operator's writes the watch has not delivered yet.
    written: HashMap<OwnedKey, Written>,
    /// Objects whose fingerprint differs from the desired one they were nonetheless found to
    /// satisfy on the API server (a value stored in another form), by resourceVersion.
    verified: HashMap<OwnedKey, Verified>,
    /// Per kind being listed again: what the list has delivered so far (the rest is gone).
    relisting: HashMap<u8, HashSet<usize>>,
    synced: BTreeSet<ChildKind>,
    /// Per kind code: objects held and the bytes of their compact forms.
    held: HashMap<u8, Held>,
}

#[derive(Default, Clone, Copy)]
struct Held {
    objects: i64,
    bytes: i64,
}

/// A write of the operator: the object as the API server returned it (`None`: deleted), and
/// the resourceVersion the cache showed when it was made. While the cache still shows that
/// version, the write is what the object is.
struct Written {
    before: Option<Box<str>>,
    after: Option<Child>,
    at: Instant,
}

struct Verified {
    version: Box<str>,
    wanted: u64,
}

impl Default for Caches {
    /// No caches at all (ready at once).
    fn default() -> Self {
        Self::with_kinds(Vec::new())
    }
}

impl Caches {
    fn with_kinds(kinds: Vec<ChildKind>) -> Self {
        Self::with_kinds_and_metrics(kinds, None)
    }

    fn with_kinds_and_metrics(kinds: Vec<ChildKind>, metrics: Option<Metrics>) -> Self {
        let (synced, _) = watch::channel(kinds.is_empty());
        Self { shared: Arc::new(Shared { kinds, metrics, state: RwLock::new(State::default()), synced }) }
    }

    /// Start a cache for each kind; returns the caches and the stream that drives each. What
    /// the caches hold is reported in `metrics`.
    pub fn start(client: &Client, kinds: &[ChildKind], metrics: &Metrics) -> (Self, HashMap<ChildKind, CacheStream>) {
        let caches = Self::with_kinds_and_metrics(kinds.to_vec(), Some(metrics.clone()));
        let mut streams = HashMap::new();
        // One (re-)list at a time: each page of objects is held whole while it is decoded,
        // and the peak of that, not the caches, would decide the operator's memory.
        let listing = Arc::new(Semaphore::new(1));
        for &kind in kinds {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
            // ClusterRoles are not a tenant's: the cache holds those a TenantUser may name.
            let selector = if kind == ChildKind::ClusterRole { LABEL_ASSIGNABLE_TRUE } else { LABEL_TENANT };
            let shared = caches.shared.clone();
            let events = watcher(api, watcher::Config::default().labels(selector)).default_backoff().boxed();
            let stream = one_list_at_a_time(events, listing.clone())
                .filter_map(move |event| {
                    let touched = match event {
                        Ok(event) => Some(futures::stream::iter(shared.handle(kind, event))),
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

    /// Wait until every cache has its initial list.
    pub async fn wait_until_ready(&self) {
        let mut synced = self.shared.synced.subscribe();
        let _ = synced.wait_for(|synced| *synced).await;
    }

    pub fn has(&self, kind: ChildKind) -> bool {
        self.shared.kinds.contains(&kind)
    }

    /// The object as the operator knows it: from the cache, or as the operator last wrote it
    /// when the cache has not caught up with that write yet.
    pub fn get(&self, kind: ChildKind, namespace: Option<&str>, name: &str) -> Option<Child> {
        let key = KeyRef::new(kind, namespace, name);
        let state = self.shared.read();
        let cached = state.objects.get(&key as &dyn Keyed);
        match state.written.get(&key as &dyn Keyed) {
            Some(written) if written.before.as_deref() == cached.and_then(Stored::resource_version) => written.after.clone(),
            _ => cached.map(|stored| stored.child(kind)),
        }
    }

    /// The resourceVersion the cache itself holds for an object (before a write: see
    /// [`Caches::wrote`]).
    pub fn cached_version(&self, kind: ChildKind, namespace: Option<&str>, name: &str) -> Option<String> {
        let key = KeyRef::new(kind, namespace, name);
        let state = self.shared.read();
        state.objects.get(&key as &dyn Keyed).and_then(|stored| stored.resource_version().map(str::to_string))
    }

    /// Objects of `kind` labelled with the tenant `slug` (as [`Caches::get`] sees each).
    pub fn of_tenant(&self, kind: ChildKind, slug: &str) -> Vec<Child> {
        let state = self.shared.read();
        let code = kind as u8;
        let mine = |child: &Child| child.kind() == kind && child.label(LABEL_TENANT) == Some(slug);
        let mut found = Vec::new();
        let stored = state.by_tenant.get(&hash_str(slug)).into_iter().flatten();
        for stored in stored.filter(|s| s.kind_code() == code && s.label(LABEL_TENANT) == Some(slug)) {
            match state.written.get(&stored.key() as &dyn Keyed) {
                Some(written) if written.before.as_deref() == stored.resource_version() => {
                    found.extend(written.after.iter().filter(|after| mine(after)).cloned());
                }
                _ => found.push(stored.child(kind)),
            }
        }
        // Objects the operator created that the cache has not seen yet.
        for (key, written) in &state.written {
            if key.kind == code && written.before.is_none() && !state.objects.contains(key as &dyn Keyed) {
                found.extend(written.after.iter().filter(|after| mine(after)).cloned());
            }
        }
        found
    }

    /// Whether the operator's fields of `child` are those of the desired object with
    /// fingerprint `wanted`: the fingerprints are equal, or this state of the object was found
    /// to satisfy it on the API server (see [`Caches::mark_verified`]).
    pub fn satisfies(&self, child: &Child, wanted: u64) -> bool {
        if child.fingerprint() == wanted {
            return true;
        }
        let state = self.shared.read();
        state
            .verified
            .get(&child.stored().key() as &dyn Keyed)
            .is_some_and(|verified| verified.wanted == wanted && Some(&*verified.version) == child.resource_version())
    }

    /// Remember that this state of `child` (its resourceVersion) satisfies the desired object
    /// with fingerprint `wanted`, until the object changes.
    pub fn mark_verified(&self, child: &Child, wanted: u64) {
        let Some(version) = child.resource_version() else { return };
        let stored = child.stored();
        let mut state = self.shared.write();
        state.verified.insert(stored.key().to_owned(), Verified { version: version.into(), wanted });
    }

    /// Remember a write of the operator: `before` is what [`Caches::cached_version`] said
    /// before it was sent, `after` the object the API server returned (`None` for a delete).
    pub fn wrote(&self, kind: ChildKind, namespace: Option<&str>, name: &str, before: Option<String>, after: Option<Child>) {
        let key = KeyRef::new(kind, namespace, name);
        let mut state = self.shared.write();
        let now = Instant::now();
        state.written.retain(|_, written| now.duration_since(written.at) < WRITTEN_TTL);
        let cached_version = state.objects.get(&key as &dyn Keyed).and_then(Stored::resource_version);
        if cached_version.is_some() && cached_version == after.as_ref().and_then(Child::resource_version) {
            // The watch was faster than the response.
            return;
        }
        if cached_version != before.as_deref() {
            // The cache has moved on since the decision: it knows better than this write.
            state.written.remove(&key as &dyn Keyed);
            return;
        }
        state.written.insert(key.to_owned(), Written { before: before.map(String::into_boxed_str), after, at: now });
    }
}

/// `events` with its (re-)lists taking turns on `listing`: the watcher lists only when polled
/// after its `Init` event, so holding that event back until a permit is free holds the list
/// back; the permit goes with `InitDone` (or a failure, after which the watcher lists anew).
fn one_list_at_a_time<S>(events: S, listing: Arc<Semaphore>) -> impl futures::Stream<Item = S::Item> + Send
where
    S: futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send + Unpin,
{
    futures::stream::unfold((events, None::<OwnedSemaphorePermit>), move |(mut events, mut permit)| {
        let listing = listing.clone();
        async move {
            let event = events.next().await?;
            match &event {
                Ok(watcher::Event::Init) if permit.is_none() => permit = listing.acquire_owned().await.ok(),
                Ok(watcher::Event::InitDone) | Err(_) => permit = None,
                _ => {}
            }
            Some((event, (events, permit)))
        }
    })
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Apply one watch event; returns the objects whose change a reconcile must see.
    fn handle(&self, kind: ChildKind, event: watcher::Event<DynamicObject>) -> Vec<Child> {
        let touched = self.apply_event(kind, event);
        if let Some(metrics) = &self.metrics {
            let held = self.read().held.get(&(kind as u8)).copied().unwrap_or_default();
            metrics.set_cached(kind.name(), held.objects, held.bytes);
        }
        touched
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
                let (kept, touched) = state.upsert(&child);
                if let Some(seen) = state.relisting.get_mut(&code) {
                    seen.insert(kept.address());
                }
                touched.then_some(child).into_iter().collect()
            }
            watcher::Event::Delete(object) => {
                let child = Child::from_object(kind, &object);
                let mut state = self.write();
                state.settle_written(&child.stored());
                state.remove(&child.stored().key());
                vec![child]
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
                if self.kinds.iter().all(|kind| state.synced.contains(kind)) {
                    self.synced.send_replace(true);
                }
                gone.iter().map(|stored| stored.child(kind)).collect()
            }
        }
    }
}

impl State {
    /// Store `child`; returns what is stored now, and whether a reconcile must see it: not
    /// when it is the state the cache already had (a re-list), nor the operator's own write
    /// coming back.
    fn upsert(&mut self, child: &Child) -> (Stored, bool) {
        let new = child.stored();
        let echo = self.settle_written(&new);
        if let Some(known) = self.objects.get(&new.key() as &dyn Keyed) {
            if known.resource_version().is_some() && known.resource_version() == new.resource_version() {
                return (known.clone(), false);
            }
        }
        if let Some(old) = self.objects.replace(new.clone()) {
            self.unindex(&old);
            self.count(&old, -1);
        }
        self.count(&new, 1);
        self.forget_verified(&new);
        if let Some(tenant) = new.label(LABEL_TENANT) {
            let children = self.by_tenant.entry(hash_str(tenant)).or_default();
            // A tenant has a few dozen objects: no room to spare for more.
            children.reserve_exact(1);
            children.push(new.clone());
        }
        (new, !echo)
    }

    /// The watch delivered a state of an object the operator wrote: the memory of the write
    /// is no longer needed. Returns whether it is the write itself.
    fn settle_written(&mut self, stored: &Stored) -> bool {
        let key = stored.key();
        let Some(written) = self.written.get(&key as &dyn Keyed) else { return false };
        match &written.after {
            Some(after) if after.resource_version() == stored.resource_version() => {
                self.written.remove(&key as &dyn Keyed);
                true
            }
            _ if written.before.as_deref() != stored.resource_version() => {
                self.written.remove(&key as &dyn Keyed);
                false
            }
            _ => false,
        }
    }

    fn remove(&mut self, key: &KeyRef<'_>) -> Option<Stored> {
        self.verified.remove(key as &dyn Keyed);
        let stored = self.objects.take(key as &dyn Keyed)?;
        self.unindex(&stored);
        self.count(&stored, -1);
        Some(stored)
    }

    fn count(&mut self, stored: &Stored, sign: i64) {
        let held = self.held.entry(stored.kind_code()).or_default();
        held.objects += sign;
        held.bytes += sign * stored.len() as i64;
    }

    /// A verification holds for the state it was made on only.
    fn forget_verified(&mut self, stored: &Stored) {
        let key = stored.key();
        if self.verified.get(&key as &dyn Keyed).is_some_and(|verified| Some(&*verified.version) != stored.resource_version()) {
            self.verified.remove(&key as &dyn Keyed);
        }
    }

    fn unindex(&mut self, stored: &Stored) {
        let Some(tenant) = stored.label(LABEL_TENANT) else { return };
        let slot = hash_str(tenant);
        if let Some(children) = self.by_tenant.get_mut(&slot) {
            children.retain(|other| !other.same(stored));
            if children.is_empty() {
                self.by_tenant.remove(&slot);
            }
        }
    }
}

/// The identity of a cached object: the code of its kind, its namespace (empty for
/// cluster-scoped kinds) and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct KeyRef<'a> {
    kind: u8,
    namespace: &'a str,
    name: &'a str,
}

impl<'a> KeyRef<'a> {
    fn new(kind: ChildKind, namespace: Option<&'a str>, name: &'a str) -> Self {
        Self { kind: kind as u8, namespace: namespace.filter(|_| kind.is_namespaced()).unwrap_or_default(), name }
    }

    fn to_owned(self) -> OwnedKey {
        OwnedKey { kind: self.kind, namespace: self.namespace.into(), name: self.name.into() }
    }
}

impl Stored {
    fn key(&self) -> KeyRef<'_> {
        KeyRef { kind: self.kind_code(), namespace: self.namespace().unwrap_or_default(), name: self.name() }
    }
}

#[derive(Debug)]
struct OwnedKey {
    kind: u8,
    namespace: Box<str>,
    name: Box<str>,
}

/// Lookups by a borrowed [`KeyRef`] in sets whose elements carry their key inside (a
/// [`Stored`] object has it in its bytes): no key is stored twice.
trait Keyed {
    fn key(&self) -> KeyRef<'_>;
}

impl Keyed for KeyRef<'_> {
    fn key(&self) -> KeyRef<'_> {
        *self
    }
}

impl Keyed for Stored {
    fn key(&self) -> KeyRef<'_> {
        Stored::key(self)
    }
}

impl Keyed for OwnedKey {
    fn key(&self) -> KeyRef<'_> {
        KeyRef { kind: self.kind, namespace: &self.namespace, name: &self.name }
    }
}

impl Hash for dyn Keyed + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for dyn Keyed + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn Keyed + '_ {}

macro_rules! keyed_by_key {
    ($type:ty) => {
        impl Hash for $type {
            fn hash<H: Hasher>(&self, state: &mut H) {
                Keyed::key(self).hash(state);
            }
        }
        impl PartialEq for $type {
            fn eq(&self, other: &Self) -> bool {
                Keyed::key(self) == Keyed::key(other)
            }
        }
        impl Eq for $type {}
        impl<'a> Borrow<dyn Keyed + 'a> for $type {
            fn borrow(&self) -> &(dyn Keyed + 'a) {
                self
            }
        }
    };
}

keyed_by_key!(Stored);
keyed_by_key!(OwnedKey);

#[cfg(test)]
mod tests;
