//! What the Tenant cache keeps of each Tenant: everything but most of its status.
//!
//! A Tenant's status (six conditions with their messages, every endpoint, namespace and
//! database) is most of what a Tenant weighs in memory, and a reconcile reads only a little
//! of it: the conditions' types, statuses and transition times (to keep the time of a
//! condition that did not change), the phase (metrics) and the database providers (pins).
//! The store keeps those; the rest is reduced to a digest, which tells whether a status a
//! reconcile computed is the one already stored. A reconcile that must keep the details of
//! the stored status (suspended, refused, failed, terminating) reads it from the API server.
//!
//! A status the operator writes is summarised the same way at once, for the version of the
//! Tenant it was computed from: a reconcile that runs before the watch delivers the write
//! sees it, and does not write it again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{runtime::watcher, Resource, ResourceExt};

use super::GuardedTenant;
use crate::{
    controller::fingerprint,
    types::{DatabaseStatus, Tenant, TenantStatus},
};

/// Shared between the Tenant watch (which fills it as Tenants arrive) and the reconciles.
#[derive(Clone, Default)]
pub struct TenantCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// By the hash of the Tenant's name (the version tells two Tenants apart: no two objects
    /// share a resourceVersion).
    statuses: HashMap<u64, Summary>,
    /// The number of the current (re-)list: summaries not seen by it are of Tenants gone.
    epoch: u32,
}

/// A stored status in short.
struct Summary {
    digest: u64,
    epoch: u32,
    /// The Tenant's resourceVersion the summary belongs to, the reduced status (phase,
    /// observed generation, database providers) as JSON, and the type, status and transition
    /// time of each condition: one allocation (see [`pack`]).
    packed: Box<[u8]>,
}

/// What [`Summary::packed`] holds.
struct Unpacked<'a> {
    version: Option<&'a str>,
    reduced: Option<TenantStatus>,
    marks: &'a [u8],
}

impl Summary {
    fn unpack(&self) -> Option<Unpacked<'_>> {
        let (&version_len, rest) = self.packed.split_first()?;
        let (version, rest) = match version_len {
            u8::MAX => (None, rest),
            len => {
                let (version, rest) = rest.split_at_checked(usize::from(len))?;
                (Some(std::str::from_utf8(version).ok()?), rest)
            }
        };
        let (reduced_len, rest) = rest.split_at_checked(2)?;
        let reduced_len = u16::from_le_bytes(reduced_len.try_into().ok()?);
        let (reduced, marks) = rest.split_at_checked(usize::from(reduced_len))?;
        Some(Unpacked { version, reduced: serde_json::from_slice(reduced).ok()?, marks })
    }

    fn is_for(&self, tenant: &Tenant) -> bool {
        self.unpack().is_some_and(|unpacked| unpacked.version == tenant.meta().resource_version.as_deref())
    }
}

/// Version (a length byte, `u8::MAX` for none or one too long to matter), the reduced status
/// (two length bytes and JSON), then the condition marks.
fn pack(version: Option<&str>, reduced: &Option<TenantStatus>, marks: &[u8]) -> Box<[u8]> {
    let mut packed = Vec::new();
    match version.filter(|v| v.len() < usize::from(u8::MAX)) {
        Some(version) => {
            packed.push(version.len() as u8);
            packed.extend_from_slice(version.as_bytes());
        }
        None => packed.push(u8::MAX),
    }
    let json = serde_json::to_vec(reduced).unwrap_or_default();
    let json = if json.len() <= usize::from(u16::MAX) { json } else { b"null".to_vec() };
    packed.extend_from_slice(&(json.len() as u16).to_le_bytes());
    packed.extend_from_slice(&json);
    packed.extend_from_slice(marks);
    packed.into_boxed_slice()
}

fn key(name: &str) -> u64 {
    crate::hash::hash_str(name)
}

impl TenantCache {
    /// Reduce the Tenants of a watch event before they are stored.
    pub fn observe(&self, event: &mut watcher::Event<GuardedTenant>) {
        let Ok(mut inner) = self.inner.lock() else { return };
        match event {
            watcher::Event::Init => inner.epoch = inner.epoch.wrapping_add(1),
            watcher::Event::InitApply(guarded) | watcher::Event::Apply(guarded) => {
                let epoch = inner.epoch;
                if let Ok(tenant) = &mut guarded.0 {
                    let summary = reduce(tenant, epoch);
                    inner.statuses.insert(key(&tenant.name_any()), summary);
                }
            }
            watcher::Event::Delete(guarded) => {
                inner.statuses.remove(&key(guarded.meta().name.as_deref().unwrap_or_default()));
            }
            watcher::Event::InitDone => {
                let epoch = inner.epoch;
                inner.statuses.retain(|_, summary| summary.epoch == epoch);
            }
        }
    }

    /// The stored status of `tenant` as far as a status computation reads it: phase,
    /// observed generation, database providers, and the conditions' types, statuses and
    /// transition times (no reasons, messages or other details). `None` when this version of
    /// the Tenant is not known.
    pub fn reduced_status(&self, tenant: &Tenant) -> Option<TenantStatus> {
        let inner = self.inner.lock().ok()?;
        let unpacked = inner.statuses.get(&key(tenant.meta().name.as_deref()?))?.unpack()?;
        if unpacked.version != tenant.meta().resource_version.as_deref() {
            return None;
        }
        let mut status = unpacked.reduced.unwrap_or_default();
        status.conditions = decode_marks(unpacked.marks)?;
        Some(status)
    }

    /// Whether `status` is exactly the stored status of this version of `tenant`.
    pub fn is_stored(&self, tenant: &Tenant, status: &TenantStatus) -> bool {
        let Ok(inner) = self.inner.lock() else { return false };
        let Some(summary) = tenant.meta().name.as_deref().and_then(|name| inner.statuses.get(&key(name))) else { return false };
        summary.is_for(tenant) && summary.digest == digest(Some(status))
    }
}

impl TenantCache {
    /// The operator wrote `status` for this version of `tenant`: until the watch delivers the
    /// write, it is what the status of this version is.
    pub fn wrote(&self, tenant: &Tenant, status: &TenantStatus) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let epoch = inner.epoch;
        let summary = summarise(tenant.meta().resource_version.as_deref(), Some(status.clone()), epoch).0;
        inner.statuses.insert(key(&tenant.name_any()), summary);
    }
}

fn digest(status: Option<&TenantStatus>) -> u64 {
    fingerprint::of_value(&serde_json::to_value(status).unwrap_or_default())
}

/// Leave in `tenant` only what the store keeps of its status; return the summary.
fn reduce(tenant: &mut Tenant, epoch: u32) -> Summary {
    let full = tenant.status.take();
    let (summary, reduced) = summarise(tenant.meta().resource_version.as_deref(), full, epoch);
    tenant.status = reduced;
    summary
}

/// The summary of a full status, and the status reduced to what the store keeps.
fn summarise(version: Option<&str>, full: Option<TenantStatus>, epoch: u32) -> (Summary, Option<TenantStatus>) {
    let digest = digest(full.as_ref());
    let conditions = encode_marks(full.iter().flat_map(|status| &status.conditions));
    let reduced = full.map(|status| TenantStatus {
        observed_generation: status.observed_generation,
        phase: status.phase,
        databases: status
            .databases
            .into_iter()
            .map(|db| DatabaseStatus { host: None, secret_name: None, message: None, rotation_message: None, ..db })
            .collect(),
        ..TenantStatus::default()
    });
    (Summary { digest, epoch, packed: pack(version, &reduced, &conditions) }, reduced)
}

/// Per condition: type and status (each a length byte and the text, cut at 255 bytes: the
/// known ones are short), then the transition time (seconds, nanoseconds).
fn encode_marks<'a>(conditions: impl Iterator<Item = &'a Condition>) -> Box<[u8]> {
    let mut bytes = Vec::new();
    let text = |bytes: &mut Vec<u8>, text: &str| {
        let cut = &text.as_bytes()[..text.len().min(255)];
        bytes.push(cut.len() as u8);
        bytes.extend_from_slice(cut);
    };
    for condition in conditions {
        text(&mut bytes, &condition.type_);
        text(&mut bytes, &condition.status);
        let time = condition.last_transition_time.0;
        bytes.extend_from_slice(&time.as_second().to_le_bytes());
        bytes.extend_from_slice(&time.subsec_nanosecond().to_le_bytes());
    }
    bytes.into_boxed_slice()
}

/// The conditions of [`encode_marks`], with empty reasons and messages.
fn decode_marks(mut bytes: &[u8]) -> Option<Vec<Condition>> {
    fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        let (taken, rest) = bytes.split_at_checked(len)?;
        *bytes = rest;
        Some(taken)
    }
    fn text(bytes: &mut &[u8]) -> Option<String> {
        let len = *take(bytes, 1)?.first()?;
        String::from_utf8(take(bytes, usize::from(len))?.to_vec()).ok()
    }
    let mut conditions = Vec::new();
    while !bytes.is_empty() {
        let type_ = text(&mut bytes)?;
        let status = text(&mut bytes)?;
        let seconds = i64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let nanos = i32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?);
        let last_transition_time = Time(Timestamp::new(seconds, nanos).ok()?);
        conditions.push(Condition {
            type_,
            status,
            last_transition_time,
            reason: String::new(),
            message: String::new(),
            observed_generation: None,
        });
    }
    Some(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Environment, TenantPhase, TenantSpec};

    fn tenant(version: &str, message: &str) -> GuardedTenant {
        let spec: TenantSpec =
            serde_json::from_value(serde_json::json!({"displayName": "A", "cluster": "uk", "environments": ["dev"]})).expect("spec");
        let mut tenant = Tenant::new("acme", spec);
        tenant.metadata.resource_version = Some(version.into());
        let time = Time(Timestamp::from_second(1_000).expect("time"));
        tenant.status = Some(TenantStatus {
            observed_generation: Some(2),
            phase: Some(TenantPhase::Provisioning),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "WaitingForAddress".into(),
                message: message.into(),
                observed_generation: Some(2),
                last_transition_time: time,
            }],
            databases: vec![DatabaseStatus {
                environment: Environment::Dev,
                provider: crate::types::DatabaseProvider::Statefulset,
                host: Some("acme-db.acme-dev.svc".into()),
                secret_name: Some("acme-db-credentials".into()),
                ready: false,
                message: Some("waiting".into()),
                rotation_request: None,
                credentials_rotated_at: None,
                rotation_message: None,
            }],
            ..TenantStatus::default()
        });
        kube::core::DeserializeGuard(Ok(tenant))
    }

    #[test]
    fn the_store_keeps_what_reconciles_read_and_a_digest_of_the_rest() {
        let cache = TenantCache::default();
        let original = tenant("7", "Ingress acme-dev/xconsole has no address yet");
        let full = original.0.as_ref().ok().and_then(|t| t.status.clone()).expect("status");
        let mut event = watcher::Event::Apply(original);
        cache.observe(&mut event);
        let watcher::Event::Apply(stored) = event else { panic!("event kind") };
        let stored = stored.0.expect("tenant");
        let kept = stored.status.clone().expect("status");
        assert_eq!((kept.phase, kept.observed_generation), (Some(TenantPhase::Provisioning), Some(2)));
        assert!(kept.conditions.is_empty());
        assert_eq!(kept.databases[0].provider, crate::types::DatabaseProvider::Statefulset, "the pin");
        assert_eq!(kept.databases[0].host, None);

        let reduced = cache.reduced_status(&stored).expect("known version");
        assert_eq!(reduced.conditions[0].type_, "Ready");
        assert_eq!(reduced.conditions[0].last_transition_time, full.conditions[0].last_transition_time);
        assert!(reduced.conditions[0].message.is_empty());

        assert!(cache.is_stored(&stored, &full));
        let mut other = full.clone();
        other.conditions[0].message = "something else".into();
        assert!(!cache.is_stored(&stored, &other));

        let mut newer = stored.clone();
        newer.metadata.resource_version = Some("8".into());
        assert!(cache.reduced_status(&newer).is_none(), "another version of the Tenant");
        assert!(!cache.is_stored(&newer, &full));
    }

    #[test]
    fn a_written_status_counts_until_the_watch_delivers_the_next_version() {
        let cache = TenantCache::default();
        let mut event = watcher::Event::Apply(tenant("7", "old"));
        cache.observe(&mut event);
        let watcher::Event::Apply(stored) = event else { panic!("event kind") };
        let stored = stored.0.expect("tenant");
        let mut written = cache.reduced_status(&stored).expect("known");
        written.phase = Some(TenantPhase::Ready);
        written.conditions[0].status = "True".into();
        written.conditions[0].message = "all good".into();
        cache.wrote(&stored, &written);
        assert!(cache.is_stored(&stored, &written), "no second write of the same status");
        let reduced = cache.reduced_status(&stored).expect("known");
        assert_eq!((reduced.phase, reduced.conditions[0].status.as_str()), (Some(TenantPhase::Ready), "True"));
        let mut next = tenant("8", "all good");
        cache.observe(&mut watcher::Event::Apply(next.clone()));
        if let Ok(t) = &mut next.0 {
            assert!(cache.reduced_status(t).is_some(), "the watch's own version");
        }
    }

    #[test]
    fn a_relist_forgets_tenants_that_are_gone() {
        let cache = TenantCache::default();
        let mut gone = tenant("1", "x");
        if let Ok(t) = &mut gone.0 {
            t.metadata.name = Some("gone".into());
        }
        cache.observe(&mut watcher::Event::Init);
        cache.observe(&mut watcher::Event::InitApply(gone));
        cache.observe(&mut watcher::Event::InitApply(tenant("1", "x")));
        cache.observe(&mut watcher::Event::InitDone);
        cache.observe(&mut watcher::Event::Init);
        cache.observe(&mut watcher::Event::InitApply(tenant("2", "x")));
        cache.observe(&mut watcher::Event::InitDone);
        let keys: Vec<u64> = cache.inner.lock().expect("lock").statuses.keys().copied().collect();
        assert_eq!(keys, [key("acme")]);
    }

    #[test]
    fn condition_marks_survive_their_encoding() {
        let condition = Condition {
            type_: "Reconciling".into(),
            status: "True".into(),
            reason: "DatabaseNotReady".into(),
            message: "waiting".into(),
            observed_generation: Some(4),
            last_transition_time: Time(Timestamp::new(1_700_000_000, 123_456_789).expect("time")),
        };
        let decoded = decode_marks(&encode_marks([&condition].into_iter())).expect("decoded");
        assert_eq!(decoded.len(), 1);
        assert_eq!((decoded[0].type_.as_str(), decoded[0].status.as_str()), ("Reconciling", "True"));
        assert_eq!(decoded[0].last_transition_time, condition.last_transition_time);
        assert!(decode_marks(&[3, b'a']).is_none(), "a cut record is refused, not misread");
    }
}
