//! The identity of a cached object, and lookups by a borrowed key in sets whose elements
//! carry their key inside (a stored object has it in its bytes): no key is stored twice.

use std::{
    borrow::Borrow,
    hash::{Hash, Hasher},
};

use super::child::Stored;
use crate::desired::ChildKind;

/// The identity of a cached object: the code of its kind, its namespace (empty for
/// cluster-scoped kinds) and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct KeyRef<'a> {
    pub(super) kind: u8,
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
}

impl<'a> KeyRef<'a> {
    pub(super) fn new(kind: ChildKind, namespace: Option<&'a str>, name: &'a str) -> Self {
        Self { kind: kind as u8, namespace: namespace.filter(|_| kind.is_namespaced()).unwrap_or_default(), name }
    }

    pub(super) fn to_owned(self) -> OwnedKey {
        OwnedKey { kind: self.kind, namespace: self.namespace.into(), name: self.name.into() }
    }
}

impl Stored {
    pub(super) fn key(&self) -> KeyRef<'_> {
        KeyRef { kind: self.kind_code(), namespace: self.namespace().unwrap_or_default(), name: self.name() }
    }
}

#[derive(Debug)]
pub(super) struct OwnedKey {
    pub(super) kind: u8,
    namespace: Box<str>,
    name: Box<str>,
}

/// Lookups by a borrowed [`KeyRef`] in sets whose elements carry their key inside.
pub(super) trait Keyed {
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
