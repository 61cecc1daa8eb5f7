//! What one reconcile changed, summarised into a single Event: a fleet of tenants must not
//! cost one Event write per child, and a person reading `kubectl describe` wants the gist.

use std::collections::BTreeSet;

use crate::{desired::DesiredObject, types::Reason};

/// Changes made by one reconcile, in the order they happened.
#[derive(Debug, Default)]
pub struct Changes {
    applied: usize,
    applied_in: BTreeSet<String>,
    /// Things worth naming one by one: deletions, retained and adopted data, credentials.
    notable: Vec<(Reason, String)>,
}

impl Changes {
    /// A desired object was created or corrected.
    pub fn applied(&mut self, object: &DesiredObject) {
        self.applied += 1;
        self.applied_in.insert(object.namespace.clone().unwrap_or_else(|| object.name.clone()));
    }

    pub fn note(&mut self, reason: Reason, what: impl Into<String>) {
        self.notable.push((reason, what.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.applied == 0 && self.notable.is_empty()
    }

    /// The Event of this reconcile: its reason is that of the weightiest change (deleting
    /// beats retaining beats adopting beats applying), its note lists them all.
    pub fn summary(&self) -> Option<(Reason, String)> {
        if self.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if self.applied > 0 {
            let places = self.applied_in.iter().cloned().collect::<Vec<_>>().join(", ");
            let noun = if self.applied == 1 { "object" } else { "objects" };
            parts.push(format!("Applied {} {noun} in {places}", self.applied));
        }
        parts.extend(self.notable.iter().map(|(_, what)| what.clone()));
        let weight = |reason: Reason| match reason {
            Reason::Deleted => 3,
            Reason::Retained => 2,
            Reason::Adopted | Reason::CredentialsRotated => 1,
            _ => 0,
        };
        let reason = self.notable.iter().map(|(reason, _)| *reason).max_by_key(|r| weight(*r)).filter(|r| weight(*r) > 0);
        Some((reason.unwrap_or(Reason::Applied), parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::ChildKind;

    fn object(namespace: &str, name: &str) -> DesiredObject {
        DesiredObject { kind: ChildKind::ConfigMap, namespace: Some(namespace.into()), name: name.into(), object: serde_json::json!({}) }
    }

    #[test]
    fn nothing_changed_means_no_event() {
        assert_eq!(Changes::default().summary(), None);
    }

    #[test]
    fn applies_are_counted_per_namespace() {
        let mut changes = Changes::default();
        for ns in ["acme-dev", "acme-prod", "acme-dev"] {
            changes.applied(&object(ns, "a"));
        }
        assert_eq!(changes.summary(), Some((Reason::Applied, "Applied 3 objects in acme-dev, acme-prod".to_string())));
    }

    #[test]
    fn the_weightiest_change_gives_the_reason() {
        let mut changes = Changes::default();
        changes.applied(&object("acme-dev", "a"));
        changes.note(Reason::Adopted, "adopted retained namespace acme-dev");
        changes.note(Reason::Deleted, "deleted Ingress acme-dev/x");
        let (reason, note) = changes.summary().unwrap();
        assert_eq!(reason, Reason::Deleted);
        assert_eq!(note, "Applied 1 object in acme-dev; adopted retained namespace acme-dev; deleted Ingress acme-dev/x");
    }
}
