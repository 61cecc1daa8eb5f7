use futures::StreamExt;
use kube::runtime::watcher;
use kube::{core::DynamicObject, runtime::watcher::Event};
use serde_json::json;
use tokio::sync::watch;

use super::*;
use crate::naming::FIELD_MANAGER;

fn config_map(namespace: &str, name: &str, tenant: &str, version: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name, "namespace": namespace, "resourceVersion": version,
            "labels": {LABEL_TENANT: tenant},
            "managedFields": [{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:data": {"f:k": {}}}}]
        },
        "data": {"k": version}
    }))
    .expect("config map")
}

fn namespace(name: &str, tenant: &str, manager: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "resourceVersion": "1", "labels": {LABEL_TENANT: tenant}, "managedFields": [{"manager": manager, "operation": "Apply"}]}
    }))
    .expect("namespace")
}

/// Caches of ConfigMaps and Namespaces, holding the operator's namespaces `acme-dev`,
/// `acme-prod` (tenant `acme`) and `other-dev` (tenant `other`).
fn caches() -> Caches {
    let caches = Caches::with_kinds(vec![ChildKind::ConfigMap, ChildKind::Namespace]);
    for (name, tenant) in [("acme-dev", "acme"), ("acme-prod", "acme"), ("other-dev", "other")] {
        caches.shared.handle(ChildKind::Namespace, Event::Apply(namespace(name, tenant, FIELD_MANAGER)));
    }
    caches
}

fn touched(caches: &Caches, event: Event<DynamicObject>) -> Vec<String> {
    caches
        .shared
        .handle(ChildKind::ConfigMap, event)
        .iter()
        .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name()))
        .collect()
}

/// The operator wrote ConfigMap `acme-dev/<name>` and the server answered at `version`; the
/// cache showed `before` when it wrote.
fn wrote_config_map(caches: &Caches, name: &str, before: Option<String>, version: &str) {
    let written = Child::from_object(ChildKind::ConfigMap, &config_map("acme-dev", name, "acme", version));
    caches.wrote(ChildKind::ConfigMap, Some("acme-dev"), name, before, Some(written));
}

fn version(child: Option<Child>) -> Option<String> {
    child.and_then(|c| c.resource_version().map(str::to_string))
}

#[test]
fn objects_are_found_by_name_and_by_tenant_until_deleted() {
    let caches = caches();
    assert_eq!(touched(&caches, Event::Apply(config_map("acme-dev", "a", "acme", "1"))), ["acme-dev/a"]);
    touched(&caches, Event::Apply(config_map("acme-prod", "a", "acme", "2")));
    touched(&caches, Event::Apply(config_map("other-dev", "a", "other", "3")));
    assert_eq!(version(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a")).as_deref(), Some("1"));
    assert!(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "b").is_none());
    assert!(caches.get(ChildKind::Secret, Some("acme-dev"), "a").is_none(), "another kind");
    let mut acme: Vec<_> =
        caches.of_tenant(ChildKind::ConfigMap, "acme").iter().map(|c| c.namespace().unwrap_or_default().to_string()).collect();
    acme.sort();
    assert_eq!(acme, ["acme-dev", "acme-prod"]);
    assert_eq!(caches.of_tenant(ChildKind::Namespace, "acme").len(), 2, "acme-dev and acme-prod");

    // Relabelled for another tenant in acme's namespace: no longer held, a change for acme.
    assert_eq!(touched(&caches, Event::Apply(config_map("acme-prod", "a", "other", "4"))), ["acme-prod/a"]);
    assert_eq!(caches.of_tenant(ChildKind::ConfigMap, "acme").len(), 1);
    assert_eq!(caches.of_tenant(ChildKind::ConfigMap, "other").len(), 1);

    assert_eq!(touched(&caches, Event::Delete(config_map("acme-dev", "a", "acme", "5"))), ["acme-dev/a"]);
    assert!(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a").is_none());
    assert!(caches.of_tenant(ChildKind::ConfigMap, "acme").is_empty());
}

#[tokio::test]
async fn a_relist_drops_what_it_did_not_see_and_reports_only_changes() {
    let caches = caches();
    let ready = caches.clone();
    let waiting = tokio::spawn(async move { ready.wait_until_ready().await });
    touched(&caches, Event::Init);
    touched(&caches, Event::InitApply(config_map("acme-dev", "a", "acme", "1")));
    touched(&caches, Event::InitApply(config_map("acme-dev", "b", "acme", "2")));
    touched(&caches, Event::InitDone);
    assert!(!waiting.is_finished(), "the Namespace cache has not listed yet");
    caches.shared.handle(ChildKind::Namespace, Event::Init);
    caches.shared.handle(ChildKind::Namespace, Event::InitDone);
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("ready").expect("task");

    let a = caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a").expect("a");
    caches.mark_verified(&a, 7);
    touched(&caches, Event::Init);
    assert!(touched(&caches, Event::InitApply(config_map("acme-dev", "a", "acme", "1"))).is_empty(), "unchanged");
    assert_eq!(touched(&caches, Event::InitApply(config_map("acme-dev", "c", "acme", "3"))), ["acme-dev/c"]);
    assert_eq!(touched(&caches, Event::InitDone), ["acme-dev/b"], "gone while the watch was down");
    assert!(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "b").is_none());
    let a = caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a").expect("a");
    assert!(caches.satisfies(&a, 7), "what was verified stays");
    touched(&caches, Event::Apply(config_map("acme-dev", "a", "acme", "9")));
    let a = caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a").expect("a");
    assert!(!caches.satisfies(&a, 7), "until the object changes");
    assert!(caches.shared.read().verified.is_empty());
}

#[test]
fn the_operators_write_is_seen_before_the_watch_delivers_it_and_does_not_come_back_as_a_change() {
    let caches = caches();
    touched(&caches, Event::Apply(config_map("acme-dev", "a", "acme", "1")));
    // Updated by the operator: the response is at version 2, the cache still at 1.
    let before = caches.cached_version(ChildKind::ConfigMap, Some("acme-dev"), "a");
    wrote_config_map(&caches, "a", before, "2");
    assert_eq!(version(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a")).as_deref(), Some("2"));
    assert_eq!(version(caches.of_tenant(ChildKind::ConfigMap, "acme").pop()).as_deref(), Some("2"));
    assert!(touched(&caches, Event::Apply(config_map("acme-dev", "a", "acme", "2"))).is_empty(), "its own write");
    assert!(caches.shared.read().written.is_empty(), "settled");

    // Created by the operator: visible at once, to `get` and to `of_tenant`.
    wrote_config_map(&caches, "new", None, "3");
    assert_eq!(version(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "new")).as_deref(), Some("3"));
    assert_eq!(caches.of_tenant(ChildKind::ConfigMap, "acme").len(), 2);
    // Someone else changed it right after: their version is what counts, and it is a change.
    assert_eq!(touched(&caches, Event::Apply(config_map("acme-dev", "new", "acme", "4"))), ["acme-dev/new"]);
    assert_eq!(version(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "new")).as_deref(), Some("4"));

    // Deleted by the operator: gone at once.
    let before = caches.cached_version(ChildKind::ConfigMap, Some("acme-dev"), "a");
    caches.wrote(ChildKind::ConfigMap, Some("acme-dev"), "a", before, None);
    assert!(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a").is_none());
    assert_eq!(caches.of_tenant(ChildKind::ConfigMap, "acme").len(), 1);
}

#[test]
fn a_write_the_watch_already_delivered_is_not_remembered() {
    let caches = caches();
    touched(&caches, Event::Apply(config_map("acme-dev", "a", "acme", "2")));
    let written = Child::from_object(ChildKind::ConfigMap, &config_map("acme-dev", "a", "acme", "2"));
    caches.mark_verified(&written, 9);
    caches.wrote(ChildKind::ConfigMap, Some("acme-dev"), "a", Some("1".into()), Some(written));
    assert!(caches.shared.read().written.is_empty());
    let cached = caches.get(ChildKind::ConfigMap, Some("acme-dev"), "a").expect("a");
    assert!(caches.satisfies(&cached, 9), "what the write proved holds for the same version");
}

#[test]
fn objects_outside_the_operators_namespaces_are_not_held() {
    let caches = caches();
    let held = |caches: &Caches| caches.shared.read().held.get(&(ChildKind::ConfigMap as u8)).map_or(0, |held| held.objects);
    // A namespace labelled for acme that someone else made, and a ConfigMap in it.
    caches.shared.handle(ChildKind::Namespace, Event::Apply(namespace("acme-lookalike", "acme", "kubectl")));
    assert!(touched(&caches, Event::Apply(config_map("acme-lookalike", "a", "acme", "2"))).is_empty(), "no reconcile for it");
    assert!(caches.get(ChildKind::ConfigMap, Some("acme-lookalike"), "a").is_none());
    // A namespace not cached at all (no tenant label), and another tenant's namespace.
    assert!(touched(&caches, Event::Apply(config_map("kube-system", "b", "acme", "3"))).is_empty());
    assert!(touched(&caches, Event::Apply(config_map("other-dev", "c", "acme", "4"))).is_empty(), "labelled for acme in other's");
    assert!(caches.of_tenant(ChildKind::ConfigMap, "acme").is_empty());
    assert_eq!(held(&caches), 0);
    // Its deletion concerns no one either.
    assert!(touched(&caches, Event::Delete(config_map("acme-lookalike", "a", "acme", "5"))).is_empty());

    // A namespace the operator has just created is the operator's before its watch says so.
    let created = Child::from_object(ChildKind::Namespace, &namespace("acme-staging", "acme", FIELD_MANAGER));
    caches.wrote(ChildKind::Namespace, None, "acme-staging", None, Some(created));
    assert_eq!(touched(&caches, Event::Apply(config_map("acme-staging", "d", "acme", "6"))), ["acme-staging/d"]);
    assert_eq!(held(&caches), 1);
}

#[tokio::test]
async fn namespaced_kinds_list_after_the_namespaces() {
    let (listed, ready) = watch::channel(false);
    let events = futures::stream::iter([Ok::<_, kube::runtime::watcher::Error>(Event::<DynamicObject>::Init), Ok(Event::InitDone)]).boxed();
    let mut gated = Box::pin(streams::one_list_at_a_time(events, Arc::new(tokio::sync::Semaphore::new(1)), Some(ready)));
    let first = tokio::time::timeout(Duration::from_millis(100), gated.next()).await;
    assert!(first.is_err(), "the list waits");
    listed.send_replace(true);
    let first = tokio::time::timeout(Duration::from_secs(5), gated.next()).await.expect("listed").expect("an event");
    assert!(matches!(first, Ok(Event::Init)));
}

/// A kind whose CRD went away after the operator found it at start: its list answers 404. The
/// cache says none exist and counts as listed, so reconciles do not wait for it forever.
#[tokio::test]
async fn a_kind_the_server_stopped_serving_counts_as_listed_and_empty() {
    let caches = Caches::with_kinds(vec![ChildKind::ConfigMap, ChildKind::Namespace]);
    caches.shared.handle(ChildKind::Namespace, Event::Apply(namespace("acme-dev", "acme", FIELD_MANAGER)));
    caches.shared.handle(ChildKind::Namespace, Event::InitDone);
    caches.shared.handle(ChildKind::ConfigMap, Event::Apply(config_map("acme-dev", "stale", "acme", "1")));
    let mut synced = caches.shared.synced.subscribe();
    assert!(!*synced.borrow_and_update(), "ConfigMaps are not listed yet");
    let gone: Vec<String> = caches.shared.not_served(ChildKind::ConfigMap).iter().map(|c| c.name_any()).collect();
    assert_eq!(gone, ["stale"], "what the cache held is gone, and its tenant is told");
    assert!(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "stale").is_none());
    assert!(*synced.borrow_and_update(), "every kind counts as listed");
    let not_found =
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(kube::core::Status::failure("not found", "NotFound").with_code(404))));
    assert!(streams::is_not_served(&not_found));
    let refused =
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(kube::core::Status::failure("forbidden", "Forbidden").with_code(403))));
    assert!(!streams::is_not_served(&refused));
}

/// Secrets are not watched (the operator may not list them): what was read or written of one
/// by name stands for it until `FETCHED_TTL` has passed, then only a new read tells.
#[test]
fn an_unwatched_kind_is_known_from_its_last_read_for_a_while() {
    let caches = caches();
    assert!(!caches.has(ChildKind::Secret));
    let secret = |version: &str| {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "acme-db-credentials", "namespace": "acme-dev", "resourceVersion": version, "labels": {LABEL_TENANT: "acme"}}
        }))
        .expect("secret");
        Child::from_object(ChildKind::Secret, &object)
    };
    assert!(caches.get(ChildKind::Secret, Some("acme-dev"), "acme-db-credentials").is_none(), "never read");
    caches.fetched(ChildKind::Secret, Some("acme-dev"), "acme-db-credentials", Some(secret("1")));
    assert_eq!(version(caches.get(ChildKind::Secret, Some("acme-dev"), "acme-db-credentials")).as_deref(), Some("1"));
    // A write is what the object is now (no watch will say otherwise).
    caches.wrote(ChildKind::Secret, Some("acme-dev"), "acme-db-credentials", Some("1".into()), Some(secret("2")));
    assert_eq!(version(caches.get(ChildKind::Secret, Some("acme-dev"), "acme-db-credentials")).as_deref(), Some("2"));
    assert!(caches.of_tenant(ChildKind::Secret, "acme").is_empty(), "no list of what is not watched");
    // Past its time the read vouches for nothing: the next reconcile reads again.
    {
        let mut state = caches.shared.write();
        for fetched in state.fetched.values_mut() {
            fetched.at = Instant::now().checked_sub(FETCHED_TTL + Duration::from_secs(1)).expect("a past instant");
        }
    }
    assert!(caches.get(ChildKind::Secret, Some("acme-dev"), "acme-db-credentials").is_none(), "an old read is not trusted");
    // A watched kind never takes a read's word.
    caches.fetched(
        ChildKind::ConfigMap,
        Some("acme-dev"),
        "x",
        Some(Child::from_object(ChildKind::ConfigMap, &config_map("acme-dev", "x", "acme", "9"))),
    );
    assert!(caches.get(ChildKind::ConfigMap, Some("acme-dev"), "x").is_none());
}
