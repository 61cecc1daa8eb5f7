//! The compact form in which the caches hold an object: what the operator's decisions read of
//! it and nothing else. A fleet of 5,000 tenants has ~90,000 children; whole objects
//! (`managedFields`, every annotation, spec and status) cost kilobytes each, this a few
//! hundred bytes.
//!
//! What is kept: name, namespace and resourceVersion; the operator's own labels and
//! annotations (`tenancy.platform.dev/…`: tenant, environment, retained, user, tenant UID,
//! adopted-from, database provider); whether the operator's field manager wrote it and
//! whether it is being deleted; the fingerprint of the fields the operator last applied (see
//! `fingerprint`) and its applied-hash; and, per kind, the few fields readiness reads (an
//! Ingress's load-balancer address, ready replicas or instances, a binding's `roleRef`, an
//! HTTPRoute's generation and what gateway controllers said of it).
//! Never a Secret's data.

use std::sync::Arc;

use kube::core::DynamicObject;
use serde_json::{json, Map, Value};

use crate::{
    controller::fingerprint,
    database::rotation,
    desired::ChildKind,
    naming::{
        ANNOTATION_ADOPTED_FROM, ANNOTATION_APPLIED_HASH, ANNOTATION_DATABASE_PROVIDER, ANNOTATION_TENANT_UID, ANNOTATION_USER,
        FIELD_MANAGER, LABEL_ENVIRONMENT, LABEL_RETAINED, LABEL_TENANT, LABEL_USER,
    },
};

/// Keys stored as one byte instead of their text.
const KNOWN_KEYS: [&str; 8] = [
    LABEL_TENANT,
    LABEL_ENVIRONMENT,
    LABEL_RETAINED,
    LABEL_USER,
    ANNOTATION_TENANT_UID,
    ANNOTATION_ADOPTED_FROM,
    ANNOTATION_DATABASE_PROVIDER,
    ANNOTATION_USER,
];

const NAME: u8 = 0;
const NAMESPACE: u8 = 1;
const VERSION: u8 = 2;
const LABEL: u8 = 3;
const ANNOTATION: u8 = 4;
/// `KEPT + i`: the value at the `i`th of the kind's [`kept_paths`], as JSON.
const KEPT: u8 = 16;

const WRITTEN_BY_OPERATOR: u8 = 1;
const TERMINATING: u8 = 2;
const HAS_APPLIED_HASH: u8 = 4;
/// The operator's stamp, the tenant-UID annotation, is on the object (see `ownership`).
const STAMPED: u8 = 8;
/// A ResourceQuota whose `status.used` has every resource of its `spec.hard`: the cluster's
/// quota controller has counted it (until then the API server refuses what it counts by name).
const COUNTED: u8 = 16;

/// The kind, flags, the fingerprint and the applied-hash come first in the bytes; the
/// fields follow.
const KIND_AT: usize = 0;
const FLAGS_AT: usize = 1;
const FINGERPRINT_AT: usize = 2;
const APPLIED_HASH_AT: usize = 10;
const FIELDS_AT: usize = 18;

/// One cached object: its kind, and everything about it in one shared allocation.
#[derive(Clone, Debug)]
pub struct Child {
    kind: ChildKind,
    bytes: Arc<[u8]>,
}

/// A [`Child`] as the caches store it: the shared bytes alone (the kind is their first byte).
#[derive(Clone, Debug)]
pub(super) struct Stored(Arc<[u8]>);

impl Child {
    /// The compact form of `object`, an object of `kind`.
    pub fn from_object(kind: ChildKind, object: &DynamicObject) -> Child {
        let meta = &object.metadata;
        let mut flags = 0;
        let mut applied_fields = None;
        for entry in meta.managed_fields.iter().flatten().filter(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER)) {
            flags |= WRITTEN_BY_OPERATOR;
            if entry.operation.as_deref() == Some("Apply") && entry.subresource.as_deref().unwrap_or_default().is_empty() {
                applied_fields = entry.fields_v1.as_ref().map(|fields| &fields.0);
            }
        }
        if meta.deletion_timestamp.is_some() {
            flags |= TERMINATING;
        }
        let fingerprint = applied_fields.map_or(0, |fields| {
            let metadata = json!({
                "labels": meta.labels,
                "annotations": meta.annotations,
                "finalizers": meta.finalizers,
                "ownerReferences": meta.owner_references,
            });
            fingerprint::of_applied_fields(kind, &object.data, &metadata, fields)
        });
        let applied_hash =
            meta.annotations.as_ref().and_then(|a| a.get(ANNOTATION_APPLIED_HASH)).and_then(|h| u64::from_str_radix(h, 16).ok());
        if applied_hash.is_some() {
            flags |= HAS_APPLIED_HASH;
        }
        if meta.annotations.as_ref().and_then(|a| a.get(ANNOTATION_TENANT_UID)).is_some_and(|uid| !uid.is_empty()) {
            flags |= STAMPED;
        }
        if kind == ChildKind::ResourceQuota && quota_is_counted(&object.data) {
            flags |= COUNTED;
        }

        let mut bytes = Vec::with_capacity(128);
        bytes.push(kind as u8);
        bytes.push(flags);
        bytes.extend_from_slice(&fingerprint.to_le_bytes());
        bytes.extend_from_slice(&applied_hash.unwrap_or_default().to_le_bytes());
        push(&mut bytes, NAME, None, meta.name.as_deref().unwrap_or_default());
        if let Some(namespace) = meta.namespace.as_deref().filter(|_| kind.is_namespaced()) {
            push(&mut bytes, NAMESPACE, None, namespace);
        }
        if let Some(version) = &meta.resource_version {
            push(&mut bytes, VERSION, None, version);
        }
        for (key, value) in meta.labels.iter().flatten().filter(|(key, value)| keeps_label(kind, key, value)) {
            push(&mut bytes, LABEL, Some(key), value);
        }
        for (key, value) in meta.annotations.iter().flatten().filter(|(key, value)| keeps_annotation(kind, key, value)) {
            push(&mut bytes, ANNOTATION, Some(key), value);
        }
        let derived = derived_fields(kind, object);
        let source = derived.as_ref().unwrap_or(&object.data);
        for (index, path) in kept_paths(kind).iter().enumerate() {
            if let Some(value) = source.pointer(path) {
                push(&mut bytes, KEPT + index as u8, None, &value.to_string());
            }
        }
        Child { kind, bytes: bytes.into() }
    }

    pub fn kind(&self) -> ChildKind {
        self.kind
    }

    pub fn name(&self) -> &str {
        field(&self.bytes, NAME, None).unwrap_or_default()
    }

    /// The name, owned (as `kube::ResourceExt::name_any`).
    pub fn name_any(&self) -> String {
        self.name().to_string()
    }

    pub fn namespace(&self) -> Option<&str> {
        field(&self.bytes, NAMESPACE, None)
    }

    pub fn resource_version(&self) -> Option<&str> {
        field(&self.bytes, VERSION, None)
    }

    /// One of the operator's own labels (`tenancy.platform.dev/…`; the environment on
    /// Namespaces only, where removing an environment reads it); other labels are not kept.
    pub fn label(&self, key: &str) -> Option<&str> {
        field(&self.bytes, LABEL, Some(key))
    }

    /// One of the operator's own annotations (`tenancy.platform.dev/…`; not the
    /// applied-hash, see [`Child::applied_hash`], and the tenant UID on Namespaces only, where
    /// adoption reads it); other annotations are not kept.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        field(&self.bytes, ANNOTATION, Some(key))
    }

    /// Whether the operator's field manager wrote any field of the object.
    pub fn written_by_operator(&self) -> bool {
        self.flags() & WRITTEN_BY_OPERATOR != 0
    }

    pub fn is_terminating(&self) -> bool {
        self.flags() & TERMINATING != 0
    }

    /// Whether the object carries the operator's stamp: the annotation naming the UID of the
    /// Tenant that applied it (kept as this flag on every kind; the UID itself on Namespaces).
    pub fn stamped(&self) -> bool {
        self.flags() & STAMPED != 0
    }

    /// For a ResourceQuota: whether the cluster's quota controller has counted every resource it
    /// limits (see [`COUNTED`]).
    pub fn quota_counted(&self) -> bool {
        self.flags() & COUNTED != 0
    }

    /// Fingerprint of the fields the operator's last server-side apply set; 0 when it applied
    /// none.
    pub fn fingerprint(&self) -> u64 {
        word(&self.bytes, FINGERPRINT_AT)
    }

    /// The applied-hash annotation: the hash of the desired object last applied.
    pub fn applied_hash(&self) -> Option<u64> {
        (self.flags() & HAS_APPLIED_HASH != 0).then(|| word(&self.bytes, APPLIED_HASH_AT))
    }

    /// The fields readiness reads (e.g. `/status/readyReplicas`, `/roleRef`), as an object;
    /// empty for kinds that have none.
    pub fn data(&self) -> Value {
        let mut kept = Map::new();
        for (index, path) in kept_paths(self.kind).iter().enumerate() {
            let value = field(&self.bytes, KEPT + index as u8, None).and_then(|json| serde_json::from_str(json).ok());
            if let Some(value) = value {
                let segments: Vec<&str> = path.split('/').skip(1).collect();
                insert_at(&mut kept, &segments, value);
            }
        }
        Value::Object(kept)
    }

    pub(super) fn stored(&self) -> Stored {
        Stored(self.bytes.clone())
    }

    fn flags(&self) -> u8 {
        self.bytes.get(FLAGS_AT).copied().unwrap_or_default()
    }
}

impl Stored {
    /// The kind's code: `kind as u8` of the kind it was made for.
    pub(super) fn kind_code(&self) -> u8 {
        self.0.get(KIND_AT).copied().unwrap_or_default()
    }

    pub(super) fn name(&self) -> &str {
        field(&self.0, NAME, None).unwrap_or_default()
    }

    pub(super) fn namespace(&self) -> Option<&str> {
        field(&self.0, NAMESPACE, None)
    }

    pub(super) fn resource_version(&self) -> Option<&str> {
        field(&self.0, VERSION, None)
    }

    pub(super) fn label(&self, key: &str) -> Option<&str> {
        field(&self.0, LABEL, Some(key))
    }

    /// Whether the operator's field manager wrote any field of the object.
    pub(super) fn written_by_operator(&self) -> bool {
        self.0.get(FLAGS_AT).copied().unwrap_or_default() & WRITTEN_BY_OPERATOR != 0
    }

    /// The size of the compact form in bytes.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `other` is this very stored state (not merely an equal one).
    pub(super) fn same(&self, other: &Stored) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The address of the shared bytes: an identity for this stored state.
    pub(super) fn address(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The child again, given the kind its code stands for.
    pub(super) fn child(&self, kind: ChildKind) -> Child {
        Child { kind, bytes: self.0.clone() }
    }
}

fn word(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|word| word.try_into().ok()).map(u64::from_le_bytes).unwrap_or_default()
}

fn field<'a>(bytes: &'a [u8], tag: u8, key: Option<&str>) -> Option<&'a str> {
    let fields = Fields { bytes: bytes.get(FIELDS_AT..).unwrap_or_default() };
    fields.into_iter().find(|(t, k, _)| *t == tag && *k == key).map(|(_, _, value)| value)
}

/// The longest label or annotation value kept. No value the operator writes or reads is
/// longer (names and UIDs); a longer one is someone else's, and is left out whole rather than
/// cut (a cut value could name another object).
const MAX_KEPT_VALUE: usize = 253;

/// The operator's labels a decision reads; the environment only where one reads it.
fn keeps_label(kind: ChildKind, key: &str, value: &str) -> bool {
    let read = matches!(key, LABEL_TENANT | LABEL_RETAINED | LABEL_USER) || (key == LABEL_ENVIRONMENT && kind == ChildKind::Namespace);
    read && value.len() <= MAX_KEPT_VALUE
}

/// The operator's annotations a decision reads; the tenant UID only where adoption reads it
/// (it is inside every fingerprint anyway). Not the applied-hash: see [`Child::applied_hash`].
fn keeps_annotation(kind: ChildKind, key: &str, value: &str) -> bool {
    let read = matches!(key, ANNOTATION_ADOPTED_FROM | ANNOTATION_DATABASE_PROVIDER | ANNOTATION_USER)
        || (key == ANNOTATION_TENANT_UID && kind == ChildKind::Namespace)
        || (kind == ChildKind::Secret && rotation::SECRET_ANNOTATIONS.contains(&key));
    read && value.len() <= MAX_KEPT_VALUE
}

/// Per kind, the fields other than the operator's own that a decision reads.
/// Whether a ResourceQuota's `status.used` names every resource of its `spec.hard`.
fn quota_is_counted(quota: &Value) -> bool {
    let used = quota.pointer("/status/used").and_then(Value::as_object);
    quota
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .is_none_or(|hard| hard.keys().all(|resource| used.is_some_and(|used| used.contains_key(resource))))
}

fn kept_paths(kind: ChildKind) -> &'static [&'static str] {
    match kind {
        ChildKind::Ingress => &["/status/loadBalancer/ingress"],
        ChildKind::StatefulSet => &["/status/readyReplicas"],
        ChildKind::CnpgCluster => &["/status/readyInstances", "/status/phase", "/status/managedRolesStatus/passwordStatus"],
        ChildKind::RoleBinding => &["/roleRef"],
        ChildKind::HttpRoute => &["/metadata/generation", "/status/parents"],
        _ => &[],
    }
}

/// The longest condition message kept of a route's parent status: enough to tell a person
/// what the gateway controller said.
const MAX_KEPT_MESSAGE: usize = 200;

/// For kinds whose kept fields are not the object's own as they are: an HTTPRoute's
/// generation (in its metadata, which `data` lacks) and its parent statuses reduced to what
/// routing readiness reads (the parent, and the `Accepted` and `ResolvedRefs` conditions with
/// their reason, a shortened message and the generation they were observed at).
fn derived_fields(kind: ChildKind, object: &DynamicObject) -> Option<Value> {
    if kind != ChildKind::HttpRoute {
        return None;
    }
    let parents: Vec<Value> = object
        .data
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|parent| {
            let conditions: Vec<Value> = parent["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| matches!(c["type"].as_str(), Some(crate::gateway::ACCEPTED | crate::gateway::RESOLVED_REFS)))
                .map(|c| {
                    let message: String = c["message"].as_str().unwrap_or_default().chars().take(MAX_KEPT_MESSAGE).collect();
                    json!({"type": c["type"], "status": c["status"], "reason": c["reason"], "message": message,
                           "observedGeneration": c["observedGeneration"]})
                })
                .collect();
            let reference = &parent["parentRef"];
            json!({"parentRef": {"name": reference["name"], "namespace": reference["namespace"], "sectionName": reference["sectionName"]},
                   "conditions": conditions})
        })
        .collect();
    Some(json!({"metadata": {"generation": object.metadata.generation}, "status": {"parents": parents}}))
}

fn insert_at(node: &mut Map<String, Value>, segments: &[&str], value: Value) {
    match segments {
        [] => {}
        [last] => {
            node.insert(last.to_string(), value);
        }
        [first, rest @ ..] => {
            if let Some(next) = node.entry(first.to_string()).or_insert_with(|| Value::Object(Map::new())).as_object_mut() {
                insert_at(next, rest, value);
            }
        }
    }
}

/// Append one field: its tag, for labels and annotations the key (one byte when it is a
/// known key, else its text), then the value.
fn push(text: &mut Vec<u8>, tag: u8, key: Option<&str>, value: &str) {
    text.push(tag);
    if let Some(key) = key {
        match KNOWN_KEYS.iter().position(|known| *known == key) {
            Some(index) => text.push(index as u8 + 1),
            None => {
                text.push(0);
                push_bytes(text, key.as_bytes());
            }
        }
    }
    push_bytes(text, value.as_bytes());
}

fn push_bytes(text: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            text.push(low);
            break;
        }
        text.push(low | 0x80);
    }
    text.extend_from_slice(bytes);
}

/// The packed fields: (tag, key, value).
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self) -> Option<&'a str> {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            len |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let (value, rest) = self.bytes.split_at_checked(len)?;
        self.bytes = rest;
        std::str::from_utf8(value).ok()
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u8, Option<&'a str>, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        let key = if tag == LABEL || tag == ANNOTATION {
            let (&code, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            match code {
                0 => Some(self.take()?),
                known => Some(*KNOWN_KEYS.get(usize::from(known) - 1)?),
            }
        } else {
            None
        };
        Some((tag, key, self.take()?))
    }
}

#[cfg(test)]
mod tests;
