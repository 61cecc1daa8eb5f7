use kube::runtime::{reflector, watcher::Event};
use serde_json::json;

use super::*;
use crate::types::TenantUserSpec;

fn user(namespace: &str, name: &str, email: &str, username: &str, generation: i64) -> GuardedUser {
    let spec: TenantUserSpec = serde_json::from_value(json!({
        "email": email, "username": username, "firstName": "A", "lastName": "B", "roles": ["Designer"], "customRoles": ["billing"]
    }))
    .expect("spec");
    let mut user = TenantUser::new(name, spec);
    user.metadata.namespace = Some(namespace.into());
    user.metadata.generation = Some(generation);
    kube::core::DeserializeGuard(Ok(user))
}

/// An index and a store holding `count` users of `acme-account` (`u<i>`, emails and
/// usernames of their own), and one of `globex-account`.
fn populated(count: usize) -> (UserIndex, reflector::Store<GuardedUser>, reflector::store::Writer<GuardedUser>) {
    let index = UserIndex::default();
    let (store, mut writer) = reflector::store();
    let mut events = vec![Event::Init];
    events.extend(
        (0..count).map(|i| Event::InitApply(user("acme-account", &format!("u{i}"), &format!("u{i}@acme.example"), &format!("u{i}"), 1))),
    );
    events.push(Event::InitApply(user("globex-account", "g", "u1@acme.example", "u1", 1)));
    events.push(Event::InitDone);
    for event in &events {
        index.observe(event);
        writer.apply_watcher_event(event);
    }
    (index, store, writer)
}

fn names(refs: Vec<ObjectRef<GuardedUser>>) -> Vec<String> {
    let mut names: Vec<String> = refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect();
    names.sort();
    names
}

#[test]
fn a_reconcile_reads_only_the_users_sharing_its_email_or_username() {
    let (index, store, _writer) = populated(1000);
    let newcomer = user("acme-account", "new", "U7@Acme.Example", "u9", 1);
    let Ok(newcomer) = &newcomer.0 else { unreachable!() };
    let mut found: Vec<String> =
        index.sharing_identity(newcomer, &store).iter().map(|u| u.metadata.name.clone().unwrap_or_default()).collect();
    found.sort();
    assert_eq!(found, ["u7", "u9"], "the email's owner (case aside) and the username's, not the other 998 nor globex's");
}

#[test]
fn a_change_re_queues_only_the_users_it_concerns() {
    let (index, _store, _writer) = populated(1000);
    // A new user with u5's email concerns u5 only.
    assert_eq!(names(index.observe(&Event::Apply(user("acme-account", "dup", "u5@acme.example", "dup", 1)))), ["acme-account/u5"]);
    // A status write (same generation) concerns no one.
    assert!(index.observe(&Event::Apply(user("acme-account", "dup", "u5@acme.example", "dup", 1))).is_empty());
    // It gives up u5's email for u6's: both owners are concerned (u5's duplicate is gone).
    assert_eq!(
        names(index.observe(&Event::Apply(user("acme-account", "dup", "u6@acme.example", "dup", 2)))),
        ["acme-account/u5", "acme-account/u6"]
    );
    // Deleted: the user whose email it shared.
    assert_eq!(names(index.observe(&Event::Delete(user("acme-account", "dup", "u6@acme.example", "dup", 2)))), ["acme-account/u6"]);
    assert_eq!(index.in_namespace("acme-account").len(), 1000);
    assert_eq!(names(index.in_namespace("globex-account")), ["globex-account/g"]);
    assert_eq!(index.naming_role("billing").len(), 1001);
    assert!(index.naming_role("other").is_empty());
}

#[test]
fn a_relist_forgets_the_users_that_went_away() {
    let (index, _store, _writer) = populated(3);
    index.observe(&Event::Init);
    index.observe(&Event::InitApply(user("acme-account", "u0", "u0@acme.example", "u0", 1)));
    index.observe(&Event::InitApply(user("acme-account", "u2", "u1@acme.example", "u2", 2)));
    // u1 is gone, u2 took its email: u2 is concerned by both.
    let concerned = names(index.observe(&Event::InitDone));
    assert_eq!(concerned, ["acme-account/u2"]);
    assert_eq!(names(index.in_namespace("acme-account")), ["acme-account/u0", "acme-account/u2"]);
}
