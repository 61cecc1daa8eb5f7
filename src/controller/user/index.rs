//! TenantUsers by what the user controller looks them up by: their namespace (a tenant's
//! users), their email and username within it (duplicates), and the custom roles they name.
//!
//! An Account Admin may create thousands of users. Without an index, every user reconcile
//! would look through every TenantUser of the cluster for a duplicate, and every user created
//! would re-queue every other user of its tenant: O(N²) for N users. With it, a reconcile
//! reads the few users that share its email or username, and a change re-queues only those
//! (under the old and the new values: a user that gives up an email frees it for a newer
//! one).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, RwLock},
};

use kube::{
    runtime::{reflector::ObjectRef, reflector::Store, watcher},
    Resource,
};

use super::GuardedUser;
use crate::types::TenantUser;

/// The index, shared by the watch that keeps it and the controllers that read it.
#[derive(Clone, Default)]
pub struct UserIndex {
    inner: Arc<RwLock<Inner>>,
}

/// (namespace, name) of a TenantUser.
type UserKey = (Box<str>, Box<str>);

/// What a user is found by: its email or its username, lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Identity {
    Email(Box<str>),
    Username(Box<str>),
}

/// What the index holds of one user, to take it out again and to tell a change that
/// concerns other users from one that does not (a status write).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
struct Indexed {
    identities: Vec<Identity>,
    custom_roles: Vec<Box<str>>,
    generation: Option<i64>,
    deleting: bool,
}

#[derive(Default)]
struct Inner {
    users: HashMap<UserKey, Indexed>,
    by_namespace: HashMap<Box<str>, BTreeSet<Box<str>>>,
    by_identity: HashMap<(Box<str>, Identity), BTreeSet<Box<str>>>,
    by_role: HashMap<Box<str>, BTreeSet<UserKey>>,
    /// While the watch lists again: the users it has delivered so far (the rest are gone).
    relisting: Option<HashSet<UserKey>>,
}

impl Indexed {
    fn of(user: &GuardedUser) -> Self {
        let meta = user.meta();
        let mut indexed = Indexed { generation: meta.generation, deleting: meta.deletion_timestamp.is_some(), ..Indexed::default() };
        if let Ok(user) = &user.0 {
            indexed.identities = identities(user);
            indexed.custom_roles = user.spec.custom_roles.iter().map(|role| role.as_str().into()).collect();
        }
        indexed
    }
}

fn identities(user: &TenantUser) -> Vec<Identity> {
    vec![Identity::Email(user.spec.email.to_lowercase().into()), Identity::Username(user.spec.username.to_lowercase().into())]
}

fn key_of(user: &GuardedUser) -> UserKey {
    let meta = user.meta();
    (meta.namespace.as_deref().unwrap_or_default().into(), meta.name.as_deref().unwrap_or_default().into())
}

fn reference((namespace, name): (&str, &str)) -> ObjectRef<GuardedUser> {
    ObjectRef::new(name).within(namespace)
}

impl UserIndex {
    /// Take one event of the TenantUser watch into the index; returns the other users the
    /// change concerns: those sharing an email or username with the user before or after it
    /// (none for a change of status alone).
    pub fn observe(&self, event: &watcher::Event<GuardedUser>) -> Vec<ObjectRef<GuardedUser>> {
        let mut inner = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            watcher::Event::Init => {
                inner.relisting = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(user) | watcher::Event::Apply(user) => {
                let key = key_of(user);
                if let Some(seen) = inner.relisting.as_mut() {
                    seen.insert(key.clone());
                }
                inner.put(key, Indexed::of(user))
            }
            watcher::Event::Delete(user) => inner.take(&key_of(user)),
            watcher::Event::InitDone => {
                let Some(seen) = inner.relisting.take() else { return Vec::new() };
                let gone: Vec<UserKey> = inner.users.keys().filter(|key| !seen.contains(*key)).cloned().collect();
                gone.iter().flat_map(|key| inner.take(key)).collect()
            }
        }
    }

    /// The users in `namespace` (a tenant's, when it is an account namespace).
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef<GuardedUser>> {
        let inner = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.by_namespace.get(namespace).into_iter().flatten().map(|name| reference((namespace, name))).collect()
    }

    /// The users that name `role` among their custom roles.
    pub fn naming_role(&self, role: &str) -> Vec<ObjectRef<GuardedUser>> {
        let inner = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.by_role.get(role).into_iter().flatten().map(|(namespace, name)| reference((namespace, name))).collect()
    }

    /// The other users of `user`'s namespace with its email or username (case aside), as the
    /// store has them: the only ones that can make it a duplicate.
    pub fn sharing_identity(&self, user: &TenantUser, store: &Store<GuardedUser>) -> Vec<TenantUser> {
        let namespace = user.metadata.namespace.as_deref().unwrap_or_default();
        let me = user.metadata.name.as_deref().unwrap_or_default();
        let names: BTreeSet<Box<str>> = {
            let inner = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            identities(user)
                .into_iter()
                .flat_map(|identity| inner.by_identity.get(&(namespace.into(), identity)).into_iter().flatten().cloned())
                .filter(|name| &**name != me)
                .collect()
        };
        names
            .iter()
            .filter_map(|name| store.get(&reference((namespace, name))))
            .filter_map(|guarded| guarded.0.as_ref().ok().cloned())
            .collect()
    }
}

impl Inner {
    /// Index `user` under `key`; returns the other users concerned (see [`UserIndex::observe`]).
    fn put(&mut self, key: UserKey, new: Indexed) -> Vec<ObjectRef<GuardedUser>> {
        let old = self.users.get(&key).cloned();
        if old.as_ref() == Some(&new) {
            return Vec::new();
        }
        let mut concerned: BTreeSet<Box<str>> = BTreeSet::new();
        for identity in old.iter().flat_map(|old| &old.identities).chain(&new.identities) {
            concerned.extend(self.by_identity.get(&(key.0.clone(), identity.clone())).into_iter().flatten().cloned());
        }
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        self.index(&key, &new);
        self.users.insert(key.clone(), new);
        concerned.remove(&key.1);
        concerned.iter().map(|name| reference((&key.0, name))).collect()
    }

    /// Take `key` out of the index; returns the users that shared an email or username with it.
    fn take(&mut self, key: &UserKey) -> Vec<ObjectRef<GuardedUser>> {
        let Some(old) = self.users.remove(key) else { return Vec::new() };
        self.unindex(key, &old);
        let mut concerned: BTreeSet<&str> = BTreeSet::new();
        for identity in &old.identities {
            concerned.extend(self.by_identity.get(&(key.0.clone(), identity.clone())).into_iter().flatten().map(|name| &**name));
        }
        concerned.into_iter().map(|name| reference((&key.0, name))).collect()
    }

    fn index(&mut self, key: &UserKey, indexed: &Indexed) {
        self.by_namespace.entry(key.0.clone()).or_default().insert(key.1.clone());
        for identity in &indexed.identities {
            self.by_identity.entry((key.0.clone(), identity.clone())).or_default().insert(key.1.clone());
        }
        for role in &indexed.custom_roles {
            self.by_role.entry(role.clone()).or_default().insert(key.clone());
        }
    }

    fn unindex(&mut self, key: &UserKey, indexed: &Indexed) {
        remove_from(&mut self.by_namespace, &key.0, &key.1);
        for identity in &indexed.identities {
            remove_from(&mut self.by_identity, &(key.0.clone(), identity.clone()), &key.1);
        }
        for role in &indexed.custom_roles {
            remove_from(&mut self.by_role, role, key);
        }
    }
}

/// Remove `value` from the set at `slot`, and the set when it is empty.
fn remove_from<K: Eq + std::hash::Hash, V: Ord>(map: &mut HashMap<K, BTreeSet<V>>, slot: &K, value: &V) {
    if let Some(set) = map.get_mut(slot) {
        set.remove(value);
        if set.is_empty() {
            map.remove(slot);
        }
    }
}

#[cfg(test)]
mod tests;
