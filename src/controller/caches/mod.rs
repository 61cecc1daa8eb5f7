//! Label-narrowed caches of the operator's children, in compact form.
//!
//! Every child kind is watched once, cluster-wide but only with the tenant label, so unrelated
//! objects of the cluster are never held in memory. The caches answer "what is there now"
//! without an API call, which is what lets a no-op reconcile issue no request at all.
//!
//! Memory is what decides how many tenants one operator can serve, and a tenant must not be
//! able to decide it: an object is held as a [`Child`] (a few hundred bytes, see there: only
//! the keys the operator reads, values capped), only in a namespace the operator made for the
//! tenant it is labelled with (`state`), keyed by kind, namespace and name without a
//! separate key allocation (`key`), and indexed by tenant so that a reconcile looks at its own
//! tenant's objects only. The watches (`streams`) ask for metadata only where no decision
//! reads the body, list in pages (small ones for kinds tenants can write), one kind at a
//! time, Namespaces first; each object is reduced as it arrives, and a re-list marks what it
//! sees instead of building a second copy of the cache.
//!
//! Secrets are not watched: the operator may read only those in the namespaces it owns, by
//! name. What it read or wrote of one is remembered for a while ("fetched", see
//! [`FETCHED_TTL`]).
//!
//! The operator's own writes are remembered until the watch delivers them ("written"): a
//! reconcile that runs before the cache has caught up reads the object as the operator wrote
//! it instead of applying it again, and the watch event of the write itself (same
//! resourceVersion) does not trigger another reconcile.

mod child;
mod key;
mod state;
mod streams;

use std::{
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use futures::stream::BoxStream;
use tokio::sync::watch;

pub use child::Child;
pub use streams::watches_metadata_only;

use crate::{desired::ChildKind, hash::hash_str, metrics::Metrics, naming::LABEL_TENANT};
use child::Stored;
use key::{KeyRef, Keyed};
use state::{Fetched, State, Verified, Written};

/// How long a write is remembered at most when its watch event never comes (a watch that
/// restarted lists the object again, which also settles it).
const WRITTEN_TTL: Duration = Duration::from_secs(60);

/// How long a read (or write) by name of a kind no watch covers vouches for the object. The
/// operator may not watch Secrets (its RBAC ends at the namespaces it owns), so the
/// credentials Secret is read by name: this is shorter than the resync of a Ready Tenant
/// (`controller::RESYNC`), so every resync reads it again and a deleted or changed Secret is
/// corrected within one resync, while the reconciles in between (other children changing)
/// read nothing.
pub const FETCHED_TTL: Duration = Duration::from_secs(240);

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
    /// Turns true once the Namespaces are listed: the other kinds list after that.
    namespaces_listed: watch::Sender<bool>,
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
        let (namespaces_listed, _) = watch::channel(false);
        Self { shared: Arc::new(Shared { kinds, metrics, state: RwLock::new(State::default()), synced, namespaces_listed }) }
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
        if !self.has(kind) {
            let fetched = state.fetched.get(&key as &dyn Keyed).filter(|f| f.at.elapsed() < FETCHED_TTL);
            return fetched.and_then(|f| f.child.clone());
        }
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

    /// Remember an object of a kind no watch covers as the API server just answered it by
    /// name (`None`: it does not exist); [`Caches::get`] returns it for [`FETCHED_TTL`].
    pub fn fetched(&self, kind: ChildKind, namespace: Option<&str>, name: &str, child: Option<Child>) {
        if self.has(kind) {
            return;
        }
        let key = KeyRef::new(kind, namespace, name);
        let mut state = self.shared.write();
        let now = Instant::now();
        state.fetched.retain(|_, fetched| now.duration_since(fetched.at) < FETCHED_TTL);
        state.fetched.insert(key.to_owned(), Fetched { child, at: now });
    }

    /// Remember a write of the operator: `before` is what [`Caches::cached_version`] said
    /// before it was sent, `after` the object the API server returned (`None` for a delete).
    pub fn wrote(&self, kind: ChildKind, namespace: Option<&str>, name: &str, before: Option<String>, after: Option<Child>) {
        if !self.has(kind) {
            // No watch will deliver it: the answer is what the object is now.
            return self.fetched(kind, namespace, name, after);
        }
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

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests;
