//! Hostile tenant users (issue 20 §5 and §7), on the fake or a real cluster: names chosen to
//! collide with another user's, a user removing the operator's finalizer from their own
//! TenantUser, and objects forged with the operator's field manager and labels.

mod support;

use std::time::Duration;

use k8s_openapi::api::{core::v1::Secret, rbac::v1::RoleBinding};
use kube::{
    api::{Patch, PatchParams},
    Api,
};
use serde_json::json;
use support::bindings::{account_bindings, all_bindings, bindings, users_of};
use support::fixtures::{account, data_tenant, example_config, user, users_tenant as tenant};
use support::scenario::Scenario;
use tenant_operator::types::{Conditions, Tenant, TenantPhase, TenantUser};

fn tenant_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| s.phase == Some(TenantPhase::Ready))
}

fn user_ready(u: &TenantUser) -> bool {
    u.status.as_ref().is_some_and(|s| s.is_true("Ready") && s.observed_generation == u.metadata.generation)
}

/// Issue 20 §5: a 250-character username is shortened; a 242-character one chosen to equal the
/// old 40-bit shortened name is not. Each user gets their own bindings and, once converged,
/// the operator writes nothing (before, one binding flipped between the two for ever).
#[tokio::test]
async fn usernames_chosen_to_collide_get_their_own_bindings_and_nothing_flips() {
    let s = Scenario::start().await;
    let slug = s.slug("collide");
    s.create_tenant(&tenant(&slug, &["dev"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    let long = "a".repeat(250);
    let lookalike = format!("{}-20c089d837", "a".repeat(231));
    s.create_user(&user("long", &slug, "long@x.example", &long, &["Designer"], &[])).await;
    s.wait_user(&slug, "long", user_ready).await;
    s.create_user(&user("lookalike", &slug, "look@x.example", &lookalike, &["Analyst"], &[])).await;
    s.wait_user(&slug, "lookalike", user_ready).await;

    let (mine, theirs) = (bindings(&s, "long").await, bindings(&s, "lookalike").await);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(theirs, [(format!("{slug}-dev"), format!("tenantuser-{lookalike}"), "tenancy:editor".to_string())]);
    assert_ne!(mine[0].1, theirs[0].1, "one binding for two users");
    assert_eq!(mine[0].2, "tenancy:editor");
    assert!(mine[0].1.len() <= 253);
    let (mine_account, theirs_account) = (account_bindings(&s, "long").await, account_bindings(&s, "lookalike").await);
    assert!(mine_account.iter().all(|b| !theirs_account.contains(b)), "{mine_account:?} {theirs_account:?}");

    if let Some(fake) = s.fake() {
        // Converged: over a few seconds, nothing is written (no binding changes hands).
        let before = fake.request_counts();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let writes = fake.writes_since(&before);
        assert_eq!(writes.writes(), 0, "the operator keeps rewriting: {:?}", writes.0);
    }
    for name in ["long", "lookalike"] {
        let u = users_of(&s, &slug).get(name).await.expect("get");
        assert!(user_ready(&u), "{name}: {:?}", u.status);
    }
    s.cleanup().await;
}

/// The name the operator gave a long user's binding before names were hashed with SHA-256:
/// a prefix and 40 bits of FNV-1a.
fn name_of_the_old_scheme(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let prefix: String = name.chars().take(253 - 11).collect();
    format!("{}-{:010x}", prefix.trim_end_matches(['-', '.', '@', ':']), hash & 0xff_ffff_ffff)
}

/// A long user's binding made under the old naming scheme (the operator's, stamped for the same
/// user) is replaced by the new one, and no orphan is left.
#[tokio::test]
async fn a_binding_named_by_the_old_scheme_is_replaced_cleanly() {
    let s = Scenario::start().await;
    let slug = s.slug("migrate");
    s.create_tenant(&tenant(&slug, &["dev"])).await;
    let t = s.wait_tenant(&slug, tenant_ready).await;
    let long = "a".repeat(250);
    let old_name = name_of_the_old_scheme(&format!("tenantuser-{long}"));
    assert_eq!(old_name, format!("tenantuser-{}-20c089d837", "a".repeat(231)), "the collision of issue 20");
    // What the old operator left: applied under its field manager, stamped for the user.
    let legacy: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": old_name, "namespace": format!("{slug}-dev"),
            "labels": {"tenancy.platform.dev/tenant": slug, "tenancy.platform.dev/environment": "dev", "tenancy.platform.dev/user": "long"},
            "annotations": {"tenancy.platform.dev/user-name": "long", "tenancy.platform.dev/tenant-uid": t.metadata.uid.clone().unwrap_or_default()}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tenancy:editor"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "long@x.example"}]
    }))
    .expect("binding");
    let dev: Api<RoleBinding> = Api::namespaced(s.client(), &format!("{slug}-dev"));
    dev.patch(&old_name, &PatchParams::apply("tenant-operator").force(), &Patch::Apply(&legacy)).await.expect("the old operator's binding");
    s.create_user(&user("long", &slug, "long@x.example", &long, &["Designer"], &[])).await;
    s.wait_user(&slug, "long", user_ready).await;
    s.wait_for("the old binding to go", || async { dev.get_opt(&old_name).await.ok().flatten().is_none() }).await;
    let now = bindings(&s, "long").await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].1, old_name);
    s.cleanup().await;
}

/// Issue 20 §7: a user removes the operator's finalizer from their own TenantUser and is then
/// deleted; the periodic sweep revokes their access without the finalizer and without any
/// Tenant reconcile. A RoleBinding forged with the operator's field manager and labels (but
/// not its stamp) for a user that does not exist is not deleted.
#[tokio::test]
async fn access_is_revoked_without_the_finalizer_and_forged_bindings_are_left_alone() {
    let mut config = example_config();
    config.users.orphan_sweep_seconds = 2;
    let s = Scenario::start_with(config).await;
    let slug = s.slug("nofinal");
    s.create_tenant(&tenant(&slug, &["dev", "prod"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    let email = format!("fin@{slug}.example");
    s.create_user(&user("fin", &slug, &email, "fin", &["Designer"], &[])).await;
    s.wait_user(&slug, "fin", user_ready).await;
    assert_eq!(bindings(&s, "fin").await.len(), 2);

    // Any client may name the operator's field manager: a binding for a user "ghost", labelled
    // as the operator labels, without the operator's stamp.
    let forged: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "tenantuser-ghost", "namespace": format!("{slug}-dev"),
            "labels": {"tenancy.platform.dev/tenant": slug, "tenancy.platform.dev/user": "ghost"},
            "annotations": {"tenancy.platform.dev/user-name": "ghost"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tenancy:viewer"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "ghost@x.example"}]
    }))
    .expect("binding");
    let dev: Api<RoleBinding> = Api::namespaced(s.client(), &format!("{slug}-dev"));
    dev.patch("tenantuser-ghost", &PatchParams::apply("tenant-operator").force(), &Patch::Apply(&forged)).await.expect("forge");

    // The user removes the finalizer from their own TenantUser; an administrator deletes the
    // user before the operator puts it back (a precondition on that very version).
    let me: Api<TenantUser> = Api::namespaced(s.client_as_person(&email).await, &account(&slug));
    s.wait_for("the user's self-edit to be effective", || async { me.get("fin").await.is_ok() }).await;
    let mut deleted = false;
    for _ in 0..50 {
        let without = me
            .patch("fin", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
            .await
            .expect("a user removes the finalizer from their own TenantUser");
        let precondition = kube::api::Preconditions { resource_version: without.metadata.resource_version.clone(), uid: None };
        let params = kube::api::DeleteParams { preconditions: Some(precondition), ..Default::default() };
        match users_of(&s, &slug).delete("fin", &params).await {
            Ok(_) => {
                deleted = true;
                break;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(other) => panic!("delete: {other}"),
        }
    }
    assert!(deleted, "the operator always put the finalizer back first");
    s.wait_gone(users_of(&s, &slug), "fin").await;
    s.wait_for("the deleted user's bindings to be revoked by the sweep", || async { all_bindings(&s, "fin").await.is_empty() }).await;

    // A Tenant reconcile sweeps too: it leaves the forged binding alone as well.
    s.patch_spec(&slug, json!({"environments": ["dev", "staging", "prod"]})).await;
    s.wait_tenant(&slug, |t| tenant_ready(t) && t.status.as_ref().and_then(|st| st.observed_generation) == t.metadata.generation).await;
    let forged_now = dev.get_opt("tenantuser-ghost").await.expect("get");
    assert!(forged_now.is_some(), "a binding the operator did not stamp was deleted");
    s.cleanup().await;
}

/// Issue 20 §7: the database credentials Secret replaced by a forged one, sent with the
/// operator's field manager and labels. A tenant's editor is stopped by the shipped namespace
/// policy first; the forgery is then made as an administrator (who is exempt from it), i.e.
/// as anyone could where the policy is missing. The operator neither adopts nor reads it: the
/// Tenant reports `SecretConflict` and the forged Secret stays as it was written.
#[tokio::test]
async fn a_credentials_secret_forged_with_the_operators_field_manager_is_not_read() {
    let s = Scenario::start().await;
    let slug = s.slug("forged");
    s.create_tenant(&data_tenant(&slug, json!({"database": {"provider": "statefulset"}}))).await;
    let name = format!("{slug}-db-credentials");
    let secrets: Api<Secret> = Api::namespaced(s.client(), &format!("{slug}-dev"));
    s.wait_object(secrets.clone(), &name, |_| true).await;
    let email = format!("dev@{slug}.example");
    s.create_user(&user("dev", &slug, &email, "dev", &["Designer"], &[])).await;
    s.wait_user(&slug, "dev", user_ready).await;

    let theirs: Api<Secret> = Api::namespaced(s.client_as_person(&email).await, &format!("{slug}-dev"));
    s.wait_for("the designer's access to be effective", || async { theirs.list(&Default::default()).await.is_ok() }).await;
    let refused = theirs.delete(&name, &Default::default()).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("only the operator")),
        "the namespace policy keeps an editor from deleting the operator's Secret: {refused:?}"
    );
    let forged: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"tenancy.platform.dev/tenant": slug, "tenancy.platform.dev/environment": "dev"}},
        "stringData": {"password": "chosen-by-the-tenant", "username": "postgres"}
    }))
    .expect("secret");
    // Delete and create with the operator's field manager. The operator does not watch
    // Secrets (issue 20 §6: it may not list them): it finds the forgery at its next read by
    // name, at the latest a resync later; a restart reads at once. Stopped meanwhile, it
    // cannot put its own Secret back in between either.
    s.stop_operator().await;
    let as_operator = kube::api::PostParams { field_manager: Some("tenant-operator".into()), ..Default::default() };
    let mut created = false;
    for _ in 0..20 {
        let _ = secrets.delete(&name, &Default::default()).await;
        if secrets.create(&as_operator, &forged).await.is_ok() {
            created = true;
            break;
        }
    }
    assert!(created, "the forged Secret could not be created");
    s.start_operator();

    let conflict = |t: &Tenant| t.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.reason == "SecretConflict"));
    s.wait_tenant(&slug, conflict).await;
    let now = secrets.get(&name).await.expect("get");
    let annotations = now.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key("tenancy.platform.dev/tenant-uid"), "the operator adopted the forged Secret: {annotations:?}");
    let password = now.data.as_ref().and_then(|d| d.get("password")).map(|p| String::from_utf8_lossy(&p.0).into_owned());
    assert_eq!(password.as_deref(), Some("chosen-by-the-tenant"));
    s.cleanup().await;
}
