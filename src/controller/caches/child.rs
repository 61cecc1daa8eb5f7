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
//! Ingress's load-balancer address, ready replicas or instances, a binding's `roleRef`).
//! Never a Secret's data.

use std::sync::Arc;

use kube::core::DynamicObject;
use serde_json::{json, Map, Value};

use crate::{
    controller::fingerprint,
    desired::ChildKind,
    naming::{
        ANNOTATION_ADOPTED_FROM, ANNOTATION_APPLIED_HASH, ANNOTATION_DATABASE_PROVIDER, ANNOTATION_TENANT_UID, ANNOTATION_USER,
        FIELD_MANAGER, LABEL_ENVIRONMENT, LABEL_RETAINED, LABEL_TENANT, LABEL_USER,
    },
};

/// Labels and annotations under this prefix are the operator's; no others are kept.
const OWN_PREFIX: &str = "tenancy.platform.dev/";

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
            let mut projected = fingerprint::project(&object.data, fields);
            if let (Some(meta_fields), Some(map)) = (fields.get("f:metadata"), projected.as_object_mut()) {
                let metadata = json!({
                    "labels": meta.labels,
                    "annotations": meta.annotations,
                    "finalizers": meta.finalizers,
                    "ownerReferences": meta.owner_references,
                });
                map.insert("metadata".into(), fingerprint::project(&metadata, meta_fields));
            }
            fingerprint::of_projection(kind, projected)
        });
        let applied_hash =
            meta.annotations.as_ref().and_then(|a| a.get(ANNOTATION_APPLIED_HASH)).and_then(|h| u64::from_str_radix(h, 16).ok());
        if applied_hash.is_some() {
            flags |= HAS_APPLIED_HASH;
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
        for (key, value) in meta.labels.iter().flatten().filter(|(key, _)| keeps_label(kind, key)) {
            push(&mut bytes, LABEL, Some(key), value);
        }
        for (key, value) in meta.annotations.iter().flatten().filter(|(key, _)| keeps_annotation(kind, key)) {
            push(&mut bytes, ANNOTATION, Some(key), value);
        }
        for (index, path) in kept_paths(kind).iter().enumerate() {
            if let Some(value) = object.data.pointer(path) {
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

/// The operator's labels a decision reads; the environment only where one reads it.
fn keeps_label(kind: ChildKind, key: &str) -> bool {
    key.starts_with(OWN_PREFIX) && (key != LABEL_ENVIRONMENT || kind == ChildKind::Namespace)
}

/// The operator's annotations a decision reads; the tenant UID only where adoption reads it
/// (it is inside every fingerprint anyway).
fn keeps_annotation(kind: ChildKind, key: &str) -> bool {
    key.starts_with(OWN_PREFIX) && key != ANNOTATION_APPLIED_HASH && (key != ANNOTATION_TENANT_UID || kind == ChildKind::Namespace)
}

/// Per kind, the fields other than the operator's own that a decision reads.
fn kept_paths(kind: ChildKind) -> &'static [&'static str] {
    match kind {
        ChildKind::Ingress => &["/status/loadBalancer/ingress"],
        ChildKind::StatefulSet => &["/status/readyReplicas"],
        ChildKind::CnpgCluster => &["/status/readyInstances", "/status/phase"],
        ChildKind::RoleBinding => &["/roleRef"],
        _ => &[],
    }
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
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};

    use super::*;

    fn ingress() -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {
                "name": "xconsole", "namespace": "acme-dev", "resourceVersion": "42",
                "labels": {LABEL_TENANT: "acme", LABEL_ENVIRONMENT: "dev", "app.kubernetes.io/managed-by": "tenant-operator", "tenancy.platform.dev/other": "x"},
                "annotations": {ANNOTATION_APPLIED_HASH: "00000000000000ff", ANNOTATION_TENANT_UID: "uid-1", "kubectl.kubernetes.io/last-applied-configuration": "{…}"},
                "managedFields": [{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:ingressClassName": {}}}}]
            },
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "a"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
        }))
        .expect("ingress")
    }

    #[test]
    fn keeps_what_decisions_read() {
        let child = Child::from_object(ChildKind::Ingress, &ingress());
        assert_eq!((child.name(), child.namespace(), child.resource_version()), ("xconsole", Some("acme-dev"), Some("42")));
        assert_eq!(child.label(LABEL_TENANT), Some("acme"));
        assert_eq!(child.label(LABEL_ENVIRONMENT), None, "kept on Namespaces only");
        assert_eq!(Child::from_object(ChildKind::Namespace, &ingress()).label(LABEL_ENVIRONMENT), Some("dev"));
        assert_eq!(child.label("tenancy.platform.dev/other"), Some("x"), "an unknown key of the operator's own");
        assert_eq!(child.label("app.kubernetes.io/managed-by"), None, "not the operator's prefix");
        assert_eq!(child.annotation(ANNOTATION_TENANT_UID), None, "kept on Namespaces only");
        assert_eq!(Child::from_object(ChildKind::Namespace, &ingress()).annotation(ANNOTATION_TENANT_UID), Some("uid-1"));
        assert_eq!(child.annotation("kubectl.kubernetes.io/last-applied-configuration"), None);
        assert_eq!(child.applied_hash(), Some(0xff));
        assert!(child.written_by_operator() && !child.is_terminating());
        assert_eq!(child.data(), json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}));
        let applied = json!({"metadata": {"name": "xconsole"}, "spec": {"ingressClassName": "nginx"}});
        assert_eq!(child.fingerprint(), fingerprint::of_desired(ChildKind::Ingress, &applied));
    }

    #[test]
    fn an_object_the_operator_never_wrote() {
        let mut object = ingress();
        object.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubectl".into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(json!({"f:spec": {}}))),
            ..Default::default()
        }]);
        object.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let child = Child::from_object(ChildKind::Ingress, &object);
        assert!(!child.written_by_operator() && child.is_terminating());
        assert_eq!(child.fingerprint(), 0);
        assert_eq!(child.applied_hash(), Some(0xff));
    }

    #[test]
    fn long_values_and_keys_survive_packing() {
        let mut object = ingress();
        let long = "x".repeat(300);
        object.metadata.annotations =
            Some([(ANNOTATION_USER.to_string(), long.clone()), (format!("{OWN_PREFIX}{long}"), "v".into())].into());
        let child = Child::from_object(ChildKind::Ingress, &object);
        assert_eq!(child.annotation(ANNOTATION_USER), Some(long.as_str()));
        assert_eq!(child.annotation(&format!("{OWN_PREFIX}{long}")), Some("v"));
        assert_eq!(child.name(), "xconsole");
    }
}
