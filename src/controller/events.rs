//! Kubernetes Events (`events.k8s.io/v1`) about Tenants and TenantUsers.
//!
//! An Event that happens again within [`SERIES_WINDOW`] is counted on the first one (its
//! `series`) instead of being written anew, as client-go's recorder does. "Again" means the same
//! type, reason and action about the same object **with the same note**: kube's `Recorder`
//! leaves the note out of that test, so a second summary of a reconcile ("Applied 1 object in
//! acme-prod") only bumped the count of the first ("… in acme-dev") and its story was lost.
//! What is remembered per Event is its name and count (about 100 bytes), not the Event: at
//! fleet scale kube's recorder held every Event of the last six minutes and walked all of them
//! on each publish.
//!
//! Notes longer than the API server accepts ([`MAX_NOTE_BYTES`]) are cut here, whoever
//! publishes: a refused Event would say nothing at all.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
    Api, Client,
};
use serde_json::json;

use crate::hash::Fnv;

/// How long a published Event can still be counted again (client-go and kube use 6 minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often forgotten entries are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Longest `note` the API server accepts: 1 KiB, counted in bytes of UTF-8, not characters
/// (a note of 1000 CJK characters is 3000 bytes and refused).
pub const MAX_NOTE_BYTES: usize = 1024;
/// Marks a note that was cut.
const CUT_MARK: char = '…';

/// `note` cut to at most [`MAX_NOTE_BYTES`] bytes, never inside a character, and marked with
/// `…` when cut.
pub fn fit_note(note: &str) -> Cow<'_, str> {
    if note.len() <= MAX_NOTE_BYTES {
        return Cow::Borrowed(note);
    }
    let budget = MAX_NOTE_BYTES - CUT_MARK.len_utf8();
    // A character is at most 4 bytes long, so a boundary is at most 3 bytes back.
    let cut = (0..=budget).rev().find(|&index| note.is_char_boundary(index)).unwrap_or(0);
    Cow::Owned(format!("{}{CUT_MARK}", &note[..cut]))
}

/// What one Event says, about what.
pub struct EventSpec<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: &'a str,
    pub regarding: &'a ObjectReference,
}

impl EventSpec<'_> {
    /// Identity of "the same Event": the object by kind, namespace, name and UID, not by
    /// resourceVersion (a status write between two identical failures must not split them).
    fn key(&self) -> u64 {
        let mut fnv = Fnv::default();
        let r = self.regarding;
        let type_ = type_name(self.type_);
        for part in [
            type_,
            self.reason,
            self.action,
            self.note,
            r.api_version.as_deref().unwrap_or_default(),
            r.kind.as_deref().unwrap_or_default(),
            r.namespace.as_deref().unwrap_or_default(),
            r.name.as_deref().unwrap_or_default(),
            r.uid.as_deref().unwrap_or_default(),
        ] {
            fnv.write(part.as_bytes());
            fnv.write(&[0xff]);
        }
        fnv.finish()
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// A published Event, as far as counting it again needs.
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

#[derive(Default)]
struct Recent {
    published: HashMap<u64, Published>,
    swept: Option<Instant>,
}

pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

impl EventRecorder {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            recent: Mutex::default(),
        }
    }

    /// Publish the Event, or count it on the same one published less than [`SERIES_WINDOW`]
    /// ago.
    pub async fn publish(&self, event: &EventSpec<'_>) -> Result<(), kube::Error> {
        let note = fit_note(event.note);
        let event = &EventSpec { note: &note, ..*event };
        let key = event.key();
        let now = Instant::now();
        let earlier = self.recent.lock().ok().and_then(|recent| {
            recent
                .published
                .get(&key)
                .filter(|p| now.duration_since(p.last) < SERIES_WINDOW)
                .map(|p| (p.namespace.clone(), p.name.clone(), p.count))
        });
        if let Some((namespace, name, count)) = earlier {
            let count = count.saturating_add(1);
            let series = json!({"series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())}});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&series)).await {
                Ok(_) => {
                    self.remember(key, Published { namespace, name, count, last: now });
                    return Ok(());
                }
                // The API server expired it (an hour by default) or someone deleted it.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let created = self.create(event).await?;
        self.remember(key, Published { namespace: created.0, name: created.1, count: 1, last: now });
        Ok(())
    }

    async fn create(&self, event: &EventSpec<'_>) -> Result<(String, String), kube::Error> {
        let regarding = event.regarding;
        // Events about cluster-scoped objects (Tenants) go to `default`, as kubectl expects.
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_string());
        let now = Timestamp::now();
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.controller), now.as_nanosecond());
        let object = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..ObjectMeta::default() },
            event_time: Some(MicroTime(now)),
            type_: Some(type_name(event.type_).to_string()),
            reason: Some(event.reason.to_string()),
            action: Some(event.action.to_string()),
            note: Some(event.note.to_string()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &object).await?;
        Ok((namespace, name))
    }

    fn remember(&self, key: u64, published: Published) {
        let Ok(mut recent) = self.recent.lock() else { return };
        let now = published.last;
        recent.published.insert(key, published);
        if recent.swept.is_none_or(|swept| now.duration_since(swept) >= SWEEP_EVERY) {
            recent.published.retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
            recent.swept = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(resource_version: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("tenancy.platform.dev/v1alpha1".into()),
            kind: Some("Tenant".into()),
            name: Some("acme".into()),
            uid: Some("u-1".into()),
            resource_version: Some(resource_version.into()),
            ..ObjectReference::default()
        }
    }

    fn spec<'a>(note: &'a str, regarding: &'a ObjectReference) -> EventSpec<'a> {
        EventSpec { type_: EventType::Normal, reason: "Applied", action: "Applied", note, regarding }
    }

    #[test]
    fn another_note_is_another_event() {
        let acme = tenant("1");
        assert_ne!(spec("Applied 1 object in acme-dev", &acme).key(), spec("Applied 1 object in acme-prod", &acme).key());
    }

    #[test]
    fn the_same_event_after_a_status_write_is_counted_on_the_first() {
        let (before, after) = (tenant("1"), tenant("2"));
        assert_eq!(spec("failed", &before).key(), spec("failed", &after).key());
    }

    #[test]
    fn another_object_or_type_is_another_event() {
        let acme = tenant("1");
        let mut globex = tenant("1");
        globex.name = Some("globex".into());
        assert_ne!(spec("x", &acme).key(), spec("x", &globex).key());
        let warning = EventSpec { type_: EventType::Warning, ..spec("x", &acme) };
        assert_ne!(spec("x", &acme).key(), warning.key());
    }

    #[test]
    fn notes_are_cut_to_the_api_limit_in_bytes_on_a_character_boundary() {
        // 3-byte characters: 1000 of them fit a count of characters but not the API's 1 KiB.
        let japanese = "株式会社".repeat(250);
        assert_eq!((japanese.chars().count(), japanese.len()), (1000, 3000));
        let cut = fit_note(&japanese);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{} bytes", cut.len());
        assert_eq!(cut.len(), 1023, "the longest whole-character prefix (340 characters) and the mark");
        assert!(cut.ends_with('…') && japanese.starts_with(cut.trim_end_matches('…')));

        // 4-byte characters, and a cut that would fall inside one from every offset.
        for ascii in 0..4 {
            let text = format!("{}{}", "a".repeat(ascii), "😀".repeat(400));
            let cut = fit_note(&text);
            assert!(cut.len() <= MAX_NOTE_BYTES && cut.len() > MAX_NOTE_BYTES - 7, "{ascii}: {} bytes", cut.len());
            assert!(text.starts_with(cut.trim_end_matches('…')), "{ascii}");
        }

        // At the limit nothing is cut; one byte over, the mark takes the place of the tail.
        let exact = "a".repeat(MAX_NOTE_BYTES);
        assert!(matches!(fit_note(&exact), Cow::Borrowed(note) if note == exact));
        let over = format!("{exact}b");
        assert_eq!(fit_note(&over), format!("{}…", "a".repeat(MAX_NOTE_BYTES - 3)));
        assert_eq!(fit_note("short"), "short");
    }
}
