//! What the caches hold: the compact objects, indexed by tenant, the operator's writes the
//! watches have not delivered yet, and what the API server's copy proved about an object.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::Instant,
};

use super::{
    child::{Child, Stored},
    key::{KeyRef, Keyed, OwnedKey},
};
use crate::{desired::ChildKind, hash::hash_str, naming::LABEL_TENANT};

#[derive(Default)]
pub(super) struct State {
    pub(super) objects: HashSet<Stored>,
    /// Objects by (the hash of) their tenant label.
    pub(super) by_tenant: HashMap<u64, Vec<Stored>>,
    /// The operator's writes the watch has not delivered yet.
    pub(super) written: HashMap<OwnedKey, Written>,
    /// Objects whose fingerprint differs from the desired one they were nonetheless found to
    /// satisfy on the API server (a value stored in another form), by resourceVersion.
    pub(super) verified: HashMap<OwnedKey, Verified>,
    /// Per kind being listed again: what the list has delivered so far (the rest is gone).
    pub(super) relisting: HashMap<u8, HashSet<usize>>,
    pub(super) synced: BTreeSet<ChildKind>,
    /// Per kind code: objects held and the bytes of their compact forms.
    pub(super) held: HashMap<u8, Held>,
    /// Objects of kinds no watch covers (Secrets), as the operator last read or wrote them by
    /// name (`None`: not there).
    pub(super) fetched: HashMap<OwnedKey, Fetched>,
}

/// An object of an unwatched kind as last read or written, and when.
pub(super) struct Fetched {
    pub(super) child: Option<Child>,
    pub(super) at: Instant,
}

/// A write of the operator: the object as the API server returned it (`None`: deleted), and
/// the resourceVersion the cache showed when it was made. While the cache still shows that
/// version, the write is what the object is.
pub(super) struct Written {
    pub(super) before: Option<Box<str>>,
    pub(super) after: Option<Child>,
    pub(super) at: Instant,
}

pub(super) struct Verified {
    pub(super) version: Box<str>,
    pub(super) wanted: u64,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Held {
    pub(super) objects: i64,
    pub(super) bytes: i64,
}

impl State {
    /// Store `child`; returns what is stored now, and whether a reconcile must see it: not
    /// when it is the state the cache already had (a re-list), nor the operator's own write
    /// coming back.
    pub(super) fn upsert(&mut self, child: &Child) -> (Stored, bool) {
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

    /// Whether a namespaced object of `tenant` may be held: its namespace is one the operator
    /// made for that tenant (as cached, or as the operator just wrote it). Anything else with
    /// the tenant label is someone's copy, in a namespace whose contents the operator never
    /// touches; holding it would let anyone with a namespace fill the operator's memory and
    /// queue reconciles of any tenant.
    pub(super) fn namespace_admits(&self, namespace: &str, tenant: Option<&str>) -> bool {
        let key = KeyRef::new(ChildKind::Namespace, None, namespace);
        let cached = self.objects.get(&key as &dyn Keyed);
        let owned_by = |label: Option<&str>, by_operator: bool| by_operator && label.is_some() && label == tenant;
        match self.written.get(&key as &dyn Keyed) {
            Some(written) if written.before.as_deref() == cached.and_then(Stored::resource_version) => {
                written.after.as_ref().is_some_and(|ns| owned_by(ns.label(LABEL_TENANT), ns.written_by_operator()))
            }
            _ => cached.is_some_and(|ns| owned_by(ns.label(LABEL_TENANT), ns.written_by_operator())),
        }
    }

    /// The watch delivered a state of an object the operator wrote: the memory of the write
    /// is no longer needed. Returns whether it is the write itself.
    pub(super) fn settle_written(&mut self, stored: &Stored) -> bool {
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

    pub(super) fn remove(&mut self, key: &KeyRef<'_>) -> Option<Stored> {
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
