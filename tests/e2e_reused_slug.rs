//! Threat: a reused slug. A Tenant deleted under `deletionPolicy: Retain` leaves its
//! namespaces, credentials, volumes and users behind; a new Tenant with the same name is a new
//! UID and may be another customer. It takes the retained data over, and the previous Tenant's
//! users get access again, only with explicit consent (`spec.adoptRetainedFrom: <old UID>`).
//! Fake by default; a real cluster with `TENANT_OPERATOR_E2E_KUBECONFIG`.

mod support;

use std::time::Duration;

use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, Secret},
    rbac::v1::RoleBinding,
};
use kube::{
    api::{ListParams, Patch, PatchParams},
    Api, Client, ResourceExt,
};
use serde_json::json;
use support::{
    e2e::operator_user,
    fixtures::{account, data_tenant, user},
    scenario::Scenario,
};
use tenant_operator::types::{Conditions, Tenant, TenantPhase, TenantUser};

const RETAINED: &str = "tenancy.platform.dev/retained";
const TENANT_UID: &str = "tenancy.platform.dev/tenant-uid";
const ADOPTED_FROM: &str = "tenancy.platform.dev/adopted-from-uid";

fn user_ready(u: &TenantUser) -> bool {
    u.status.as_ref().is_some_and(|s| s.is_true("Ready") && s.observed_generation == u.metadata.generation)
}

fn user_reason(u: &TenantUser) -> String {
    u.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.reason.clone()).unwrap_or_default()
}

/// The Tenant's current generation has been reconciled to an end: ready, or stalled.
fn settled(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.observed_generation == t.metadata.generation && matches!(s.phase, Some(TenantPhase::Ready | TenantPhase::Failed))
    })
}

fn ready_message(t: &Tenant) -> (String, String) {
    let ready = t.status.as_ref().and_then(|s| s.condition("Ready"));
    ready.map(|c| (c.reason.clone(), c.message.clone())).unwrap_or_default()
}

/// Everything RBAC-bound to `user`'s name in the tenant's namespaces.
async fn bindings_of(s: &Scenario, slug: &str, name: &str) -> Vec<String> {
    let api: Api<RoleBinding> = Api::all(s.client());
    let listed = api.list(&ListParams::default().labels("tenancy.platform.dev/user")).await.map(|l| l.items).unwrap_or_default();
    listed
        .into_iter()
        // Other scenarios on a shared cluster have users of the same name.
        .filter(|b| b.labels().get("tenancy.platform.dev/tenant").map(String::as_str) == Some(slug))
        .filter(|b| b.annotations().get("tenancy.platform.dev/user-name").map(String::as_str) == Some(name))
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .map(|b| format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()))
        .collect()
}

/// Whether `person` can read ConfigMaps in `namespace` (the account admin's role can).
async fn can_read_configmaps(person: &Client, namespace: &str) -> bool {
    Api::<ConfigMap>::namespaced(person.clone(), namespace).list(&ListParams::default()).await.is_ok()
}

/// The Tenant once its database exists: ready on the fake (which plays the kubelet), its
/// StatefulSet and credentials Secret in place on a real control plane without a kubelet.
async fn database_started(s: &Scenario, slug: &str) -> Tenant {
    if s.fake().is_some() {
        s.mark_statefulsets_ready(slug).await;
        return s.wait_tenant(slug, |t| settled(t) && t.status.as_ref().is_some_and(|s| s.phase == Some(TenantPhase::Ready))).await;
    }
    let secrets = Api::<Secret>::namespaced(s.client(), &format!("{slug}-dev"));
    let name = format!("{slug}-db-credentials");
    s.wait_for("the credentials Secret", || async { secrets.get_opt(&name).await.is_ok_and(|found| found.is_some()) }).await;
    s.wait_tenant(slug, |t| t.status.as_ref().is_some_and(|st| st.observed_generation == t.metadata.generation)).await
}

/// A tenant of the first customer, with a database and an Account Admin, deleted under Retain:
/// returns the first Tenant's UID, the Account Admin's TenantUser name and a client acting as
/// that person. Afterwards the admin has no access and the data is retained.
async fn a_deleted_customer(s: &Scenario, slug: &str) -> (String, String, Client) {
    let first = data_tenant(slug, json!({"database": {"provider": "statefulset"}, "deletionPolicy": "Retain"}));
    s.create_tenant(&first).await;
    let t = database_started(s, slug).await;
    let old_uid = t.uid().expect("a stored Tenant has a UID");
    let email = format!("boss@{slug}.example");
    s.create_user(&user("boss", slug, &email, "boss", &["AccountAdmin"], &[])).await;
    s.wait_user(slug, "boss", user_ready).await;
    let boss = s.client_as_person(&email).await;
    let dev = format!("{slug}-dev");
    s.wait_for("the Account Admin's access", || async { can_read_configmaps(&boss, &dev).await }).await;

    s.delete_tenant(slug).await;
    s.wait_tenant_gone(slug).await;
    s.wait_user(slug, "boss", |u| user_reason(u) == "TenantNotFound").await;
    s.wait_for("the Account Admin's access to be revoked", || async { bindings_of(s, slug, "boss").await.is_empty() }).await;
    let namespace = Api::<Namespace>::all(s.client()).get(&account(slug)).await.expect("retained account namespace");
    assert_eq!(namespace.labels().get(RETAINED).map(String::as_str), Some("true"));
    (old_uid, "boss".to_string(), boss)
}

/// The operator's writes since `from` (an index into the fake's request log) other than to
/// Tenants, TenantUser status and Events: writes to the tenant's objects.
fn writes_to_objects(s: &Scenario, from: usize) -> Vec<String> {
    let Some(fake) = s.fake() else { return Vec::new() };
    let operator = operator_user();
    let allowed = ["tenants", "tenants/status", "tenantusers/status", "events"];
    fake.requests()
        .into_iter()
        .skip(from)
        .filter(|r| r.user.as_deref() == Some(operator.as_str()))
        .filter(|r| fake_apiserver::WRITE_VERBS.contains(&r.verb.as_str()))
        .filter(|r| !allowed.contains(&r.resource.as_str()))
        .map(|r| format!("{} {} {}/{}", r.verb, r.resource, r.namespace.unwrap_or_default(), r.name.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_reused_slug_without_consent_is_stalled_and_touches_nothing_retained() {
    let s = Scenario::start().await;
    let slug = s.slug("reuse");
    let (old_uid, boss, boss_client) = a_deleted_customer(&s, &slug).await;
    let dev = format!("{slug}-dev");
    let log_start = s.fake().map(|f| f.requests().len()).unwrap_or_default();

    // Another customer gets the same slug.
    let second = data_tenant(&slug, json!({"displayName": "Someone Else", "database": {"provider": "statefulset"}}));
    s.create_tenant(&second).await;
    let t = s.wait_tenant(&slug, settled).await;
    // Give the user controller time to act on the new Tenant.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The old Account Admin must not regain access.
    assert!(
        bindings_of(&s, &slug, &boss).await.is_empty(),
        "the previous Tenant's Account Admin was bound again: {:?}",
        bindings_of(&s, &slug, &boss).await
    );
    assert!(!can_read_configmaps(&boss_client, &dev).await, "the previous Tenant's Account Admin can read {dev}");
    assert!(
        !can_read_configmaps(&boss_client, &account(&slug)).await,
        "the previous Tenant's Account Admin can read the account namespace"
    );

    let (reason, message) = ready_message(&t);
    assert_eq!(reason, "RetainedDataFromAnotherTenant", "{message}");
    assert!(t.status.as_ref().is_some_and(|s| s.is_true("Stalled")), "{:?}", t.status);
    assert!(message.contains(&old_uid), "the message names the previous Tenant's UID: {message}");
    assert!(message.contains(&format!("adoptRetainedFrom: {old_uid}")), "the message says how to adopt: {message}");
    assert!(message.contains(&format!("kubectl delete namespace {}", account(&slug))), "the message says how to delete: {message}");
    let u = s.wait_user(&slug, &boss, |u| user_reason(u) == "RetainedDataFromAnotherTenant").await;
    let message = u.status.as_ref().and_then(|st| st.condition("Ready")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains(&old_uid) && message.contains(&account(&slug)), "the user is told why: {message}");

    // Nothing retained was touched: still marked, still stamped with the previous UID.
    for namespace in [account(&slug), dev.clone()] {
        let ns = Api::<Namespace>::all(s.client()).get(&namespace).await.expect("namespace");
        assert_eq!(ns.labels().get(RETAINED).map(String::as_str), Some("true"), "{namespace} lost its retained mark");
        assert_eq!(ns.annotations().get(TENANT_UID), Some(&old_uid), "{namespace} was re-stamped");
    }
    let secret = Api::<Secret>::namespaced(s.client(), &dev).get(&format!("{slug}-db-credentials")).await.expect("credentials");
    assert_eq!(secret.labels().get(RETAINED).map(String::as_str), Some("true"), "the credentials lost their retained mark");
    assert_eq!(secret.annotations().get(TENANT_UID), Some(&old_uid), "the credentials were re-stamped");
    let writes = writes_to_objects(&s, log_start);
    assert!(writes.is_empty(), "the operator wrote to the tenant's objects: {writes:?}");

    // A UID that is not the previous Tenant's is no consent either.
    let t = Api::<Tenant>::all(s.client())
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"adoptRetainedFrom": "00000000-0000-4000-8000-000000000000"}})),
        )
        .await
        .expect("a UID passes admission");
    let generation = t.metadata.generation;
    let t = s.wait_tenant(&slug, |t| settled(t) && t.status.as_ref().is_some_and(|st| st.observed_generation == generation)).await;
    assert_eq!(ready_message(&t).0, "RetainedDataFromAnotherTenant");
    assert!(bindings_of(&s, &slug, &boss).await.is_empty());
    let writes = writes_to_objects(&s, log_start);
    assert!(writes.is_empty(), "the operator wrote to the tenant's objects: {writes:?}");

    // Deleting the new Tenant, even under Delete, leaves what it never adopted.
    s.patch_spec(&slug, json!({"deletionPolicy": "Delete"})).await;
    s.delete_tenant(&slug).await;
    s.wait_tenant_gone(&slug).await;
    for namespace in [account(&slug), dev.clone()] {
        let ns = Api::<Namespace>::all(s.client()).get(&namespace).await.expect("the earlier Tenant's namespace is still there");
        assert!(ns.metadata.deletion_timestamp.is_none(), "{namespace} is being deleted by a Tenant that never adopted it");
    }
    s.delete_namespaces_of(&slug).await;
    s.cleanup().await;
}

#[tokio::test]
async fn consent_adopts_the_retained_data_and_the_previous_users() {
    let s = Scenario::start().await;
    let slug = s.slug("again");
    let (old_uid, boss, boss_client) = a_deleted_customer(&s, &slug).await;
    let dev = format!("{slug}-dev");
    let secrets = Api::<Secret>::namespaced(s.client(), &dev);
    let password = secrets.get(&format!("{slug}-db-credentials")).await.expect("credentials").data.unwrap_or_default()["password"].clone();

    let back = data_tenant(&slug, json!({"database": {"provider": "statefulset"}, "adoptRetainedFrom": old_uid}));
    s.create_tenant(&back).await;
    database_started(&s, &slug).await;
    let t = s.wait_tenant(&slug, |t| t.status.as_ref().is_some_and(|st| st.adopted_from.is_some())).await;
    let new_uid = t.uid().expect("uid");
    assert_ne!(new_uid, old_uid);
    assert_eq!(t.status.as_ref().and_then(|s| s.adopted_from.as_deref()), Some(old_uid.as_str()), "status shows the adoption");

    // Adopted and recorded: the retained mark is gone, the previous UID is on the namespaces.
    for namespace in [account(&slug), dev.clone()] {
        let ns = Api::<Namespace>::all(s.client()).get(&namespace).await.expect("namespace");
        assert!(!ns.labels().contains_key(RETAINED), "{namespace} is still marked retained");
        assert_eq!(ns.annotations().get(ADOPTED_FROM), Some(&old_uid), "{namespace} records the previous Tenant");
        assert_eq!(ns.annotations().get(TENANT_UID), Some(&new_uid), "{namespace} is now the new Tenant's");
    }
    let adopted = secrets.get(&format!("{slug}-db-credentials")).await.expect("credentials");
    assert_eq!(adopted.data.unwrap_or_default()["password"], password, "the adopted database keeps its password");
    let events = Api::<k8s_openapi::api::events::v1::Event>::all(s.client());
    s.wait_for("an Adopted Event naming the previous Tenant", || async {
        events.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.iter().any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(slug.as_str())
                    && e.reason.as_deref() == Some("Adopted")
                    && e.note.as_deref().is_some_and(|n| n.contains(&old_uid))
            })
        })
    })
    .await;

    // Consent covers the previous Tenant's users: bound again, now under the new UID.
    let u = s.wait_user(&slug, &boss, user_ready).await;
    assert_eq!(u.status.as_ref().and_then(|st| st.tenant_uid.as_deref()), Some(new_uid.as_str()));
    s.wait_for("the Account Admin's access", || async { can_read_configmaps(&boss_client, &dev).await }).await;
    // The mark is status, which neither the user nor an Account Admin can write.
    let own = Api::<TenantUser>::namespaced(boss_client.clone(), &account(&slug));
    let forged = own.patch_status(&boss, &PatchParams::default(), &Patch::Merge(json!({"status": {"tenantUid": null}}))).await;
    assert!(matches!(forged, Err(kube::Error::Api(ref e)) if e.code == 403), "an Account Admin rewrote the mark: {forged:?}");

    // Adopted once: a restart (a re-list of everything) writes nothing.
    if let Some(requests) = s.requests_of_a_restart().await {
        assert_eq!(requests.writes(), 0, "a restart after the adoption wrote: {:?}", requests.0);
    }
    s.delete_namespaces_of(&slug).await;
    s.cleanup().await;
}

/// The earlier Tenant vanished without its finalizer (removed by hand while the operator was
/// down): its namespaces are not even marked retained. A new Tenant of the name under
/// `deletionPolicy: Delete` neither takes them nor deletes them when it is deleted itself.
#[tokio::test]
async fn namespaces_of_a_tenant_removed_by_force_are_neither_taken_nor_deleted_by_the_next() {
    let s = Scenario::start().await;
    let slug = s.slug("forced");
    let dev = format!("{slug}-dev");
    // No application: no Ingress to wait an address for on a control plane without an ingress
    // controller.
    let spec = json!({"applications": [], "database": {"provider": "none"}, "deletionPolicy": "Delete"});
    s.create_tenant(&data_tenant(&slug, spec.clone())).await;
    let old_uid = s.wait_tenant(&slug, settled).await.uid().expect("uid");
    s.stop_operator().await;
    s.delete_tenant(&slug).await;
    let tenants = Api::<Tenant>::all(s.client());
    tenants
        .patch(&slug, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("remove finalizer");
    s.wait_tenant_gone(&slug).await;
    s.start_operator();

    s.create_tenant(&data_tenant(&slug, spec)).await;
    let t = s.wait_tenant(&slug, settled).await;
    let (reason, message) = ready_message(&t);
    assert_eq!(reason, "RetainedDataFromAnotherTenant", "{message}");
    assert!(message.contains(&old_uid), "{message}");
    s.delete_tenant(&slug).await;
    s.wait_tenant_gone(&slug).await;
    for namespace in [account(&slug), dev] {
        let ns = Api::<Namespace>::all(s.client()).get(&namespace).await.expect("the earlier Tenant's namespace is still there");
        assert!(ns.metadata.deletion_timestamp.is_none(), "{namespace} deleted by a Tenant that never adopted it");
        assert_eq!(ns.annotations().get(TENANT_UID), Some(&old_uid), "{namespace} was re-stamped");
    }
    s.delete_namespaces_of(&slug).await;
    s.cleanup().await;
}
