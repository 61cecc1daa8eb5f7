//! End-to-end scenarios of the TenantUser controller (fake API server by default, a real
//! cluster with `TENANT_OPERATOR_E2E_KUBECONFIG`).

mod support;

use std::time::Duration;

use kube::Api;
use serde_json::json;
use support::bindings::{account_bindings, all_bindings, bindings, users_of};
use support::fixtures::{account, user, users_tenant as tenant};
use support::scenario::Scenario;
use tenant_operator::types::{Conditions, SystemRole, Tenant, TenantPhase, TenantUser};

fn tenant_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| s.phase == Some(TenantPhase::Ready))
}

fn user_ready(u: &TenantUser) -> bool {
    u.status.as_ref().is_some_and(|s| s.is_true("Ready") && s.observed_generation == u.metadata.generation)
}

fn reason(u: &TenantUser) -> String {
    u.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.reason.clone()).unwrap_or_default()
}

#[tokio::test]
async fn every_role_gets_the_role_table_binding_in_every_environment() {
    let s = Scenario::start().await;
    let slug = s.slug("roles");
    s.create_tenant(&tenant(&slug, &["dev", "staging", "prod"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    let expected = [
        ("AccountAdmin", ["tenancy:account-admin", "tenancy:viewer", "tenancy:account-admin"]),
        ("FlowAdmin", ["tenancy:editor", "tenancy:viewer", "tenancy:editor"]),
        ("Designer", ["tenancy:editor", "tenancy:viewer", "tenancy:editor"]),
        ("Analyst", ["tenancy:editor", "tenancy:viewer", "tenancy:viewer"]),
    ];
    for (role, want) in expected {
        let name = role.to_lowercase();
        s.create_user(&user(&name, &slug, &format!("{role}@x.example"), &role.to_lowercase(), &[role], &[])).await;
        s.wait_user(&slug, &name, user_ready).await;
        let got: Vec<String> = bindings(&s, &name).await.into_iter().map(|(_, _, role)| role).collect();
        // Sorted by namespace: dev, prod, staging.
        assert_eq!(got, want, "{role}");
        let mut account_roles: Vec<String> = account_bindings(&s, &name).await.into_iter().map(|(_, _, role)| role).collect();
        account_roles.sort();
        let mut want_account = vec![format!("tenantuser-{name}:self")];
        if role == "AccountAdmin" {
            want_account.insert(0, "tenancy:user-admin".to_string());
        }
        assert_eq!(account_roles, want_account, "{role} in the account namespace");
    }
    for role in ["Supervisor", "Agent"] {
        let name = role.to_lowercase();
        s.create_user(&user(&name, &slug, &format!("{role}@x.example"), &role.to_lowercase(), &[role], &[])).await;
        let u = s.wait_user(&slug, &name, user_ready).await;
        let got = bindings(&s, &name).await;
        assert_eq!(
            got,
            [(format!("{slug}-prod"), format!("tenantuser-{}", role.to_lowercase()), format!("tenancy:{}", role.to_lowercase()))]
        );
        let message = u.status.and_then(|s| s.condition("Ready").map(|c| c.message.clone())).unwrap_or_default();
        assert!(message.contains("prod only"), "{message}");
    }
    s.cleanup().await;
}

/// An assignable custom ClusterRole and `bind` on it for the operator's ServiceAccount.
async fn grant_custom_role(s: &Scenario, role: &str) {
    let objects = [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": role, "labels": {"tenancy.platform.dev/assignable": "true"}},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": format!("bind-{role}")},
               "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": [role]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": format!("bind-{role}")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("bind-{role}")},
               "subjects": [{"kind": "ServiceAccount", "name": "tenant-operator", "namespace": "tenant-operator"}]}),
    ];
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let resource = if kind == "ClusterRole" { "clusterroles" } else { "clusterrolebindings" };
        let api: Api<kube::core::DynamicObject> = Api::all_with(
            s.client(),
            &kube::core::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", &kind),
                resource,
            ),
        );
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        api.patch(&name, &kube::api::PatchParams::apply("e2e").force(), &kube::api::Patch::Apply(object)).await.expect("grant custom role");
    }
}

#[tokio::test]
async fn a_custom_role_that_is_not_assignable_is_refused_and_the_system_role_is_still_bound() {
    let s = Scenario::start().await;
    let slug = s.slug("esc");
    s.create_tenant(&tenant(&slug, &["dev", "prod"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    let name = "mallory".to_string();
    s.create_user(&user(&name, &slug, "mallory@x.example", "mallory", &["Designer"], &["cluster-admin"])).await;
    let u = s
        .wait_user(&slug, &name, |u| {
            u.status.as_ref().and_then(|st| st.condition("Ready")).is_some_and(|c| c.status == "False" && c.reason == "CustomRoleRefused")
        })
        .await;
    let message = u.status.as_ref().and_then(|st| st.condition("Ready")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("cluster-admin") && message.contains("assignable"), "names the role and what to do: {message}");
    assert!(u.status.as_ref().is_some_and(|st| st.is_true("Stalled")), "a person must act: {:?}", u.status);
    s.wait_for("the system-role bindings in every environment", || async {
        bindings(&s, &name).await
            == [
                (format!("{slug}-dev"), "tenantuser-mallory".to_string(), "tenancy:editor".to_string()),
                (format!("{slug}-prod"), "tenantuser-mallory".to_string(), "tenancy:viewer".to_string()),
            ]
    })
    .await;
    s.cleanup().await;
}

#[tokio::test]
async fn highest_role_wins_custom_roles_are_added_and_removed_roles_unbind() {
    let s = Scenario::start().await;
    // What a platform admin does for a custom role: the ClusterRole, labelled assignable, and
    // `bind` on it for the operator (which does not hold its permissions itself).
    let role = format!("flow-billing-editor-{}", s.slug("r"));
    grant_custom_role(&s, &role).await;
    let slug = s.slug("mixed");
    s.create_tenant(&tenant(&slug, &["dev", "prod"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    let name = "jdoe".to_string();
    s.create_user(&user(&name, &slug, "jane@x.example", "jdoe", &["Agent", "Designer", "Analyst"], &[&role])).await;
    let u = s.wait_user(&slug, &name, user_ready).await;
    assert_eq!(u.status.as_ref().and_then(|s| s.effective_role), Some(SystemRole::Designer));
    assert_eq!(
        bindings(&s, &name).await,
        [
            (format!("{slug}-dev"), "tenantuser-jdoe".into(), "tenancy:editor".into()),
            (format!("{slug}-dev"), format!("tenantuser-jdoe:{role}"), role.clone()),
            (format!("{slug}-prod"), "tenantuser-jdoe".into(), "tenancy:viewer".into()),
            (format!("{slug}-prod"), format!("tenantuser-jdoe:{role}"), role.clone()),
        ]
    );
    users_of(&s, &slug)
        .patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"roles": ["Analyst"], "customRoles": null}})),
        )
        .await
        .unwrap();
    // Analysts configure in dev (editor) and read elsewhere.
    s.wait_for("custom binding removed and role downgraded", || async {
        bindings(&s, &name).await.iter().map(|(_, _, r)| r.as_str()).collect::<Vec<_>>() == ["tenancy:editor", "tenancy:viewer"]
    })
    .await;
    s.cleanup().await;
}

#[tokio::test]
async fn tenant_gaining_and_losing_prod_moves_the_bindings() {
    let s = Scenario::start().await;
    let slug = s.slug("grow");
    s.create_tenant(&tenant(&slug, &["dev"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    let name = "agent".to_string();
    s.create_user(&user(&name, &slug, "agent@x.example", "agent", &["Agent"], &[])).await;
    let u = s.wait_user(&slug, &name, |u| reason(u) == "RoleRequiresProd").await;
    assert_eq!(u.status.unwrap_or_default().bound_namespaces, [account(&slug)], "only the self-service binding");
    s.patch_spec(&slug, json!({"environments": ["dev", "prod"]})).await;
    s.wait_user(&slug, &name, user_ready).await;
    assert_eq!(bindings(&s, &name).await.len(), 1);
    s.patch_spec(&slug, json!({"environments": ["dev"]})).await;
    s.wait_user(&slug, &name, |u| reason(u) == "RoleRequiresProd").await;
    s.wait_for("the prod binding to go", || async { bindings(&s, &name).await.is_empty() }).await;
    s.cleanup().await;
}

#[tokio::test]
async fn duplicate_email_and_username_are_refused_until_the_older_user_goes() {
    let s = Scenario::start().await;
    let slug = s.slug("dups");
    s.create_tenant(&tenant(&slug, &["dev"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    let first = "user-a".to_string();
    s.create_user(&user(&first, &slug, "Jane.Doe@x.example", "jane", &["Designer"], &[])).await;
    s.wait_user(&slug, &first, user_ready).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creation timestamps have second precision
    let same_email = "user-b".to_string();
    s.create_user(&user(&same_email, &slug, "jane.doe@X.example", "jane2", &["Analyst"], &[])).await;
    let u = s.wait_user(&slug, &same_email, |u| reason(u) == "DuplicateEmail").await;
    let message = u.status.and_then(|s| s.condition("Ready").map(|c| c.message.clone())).unwrap_or_default();
    assert!(message.contains(&first), "{message}");
    let same_name = "user-c".to_string();
    s.create_user(&user(&same_name, &slug, "other@x.example", "jane", &["Analyst"], &[])).await;
    s.wait_user(&slug, &same_name, |u| reason(u) == "DuplicateUsername").await;
    assert!(all_bindings(&s, &same_email).await.is_empty());
    assert!(all_bindings(&s, &same_name).await.is_empty());
    assert_eq!(bindings(&s, &first).await.len(), 1, "the older user keeps its access");
    // Another tenant's user with the same email and username is no duplicate.
    let other = s.slug("dups-other");
    s.create_tenant(&tenant(&other, &["dev"])).await;
    s.wait_tenant(&other, tenant_ready).await;
    s.create_user(&user("user-a2", &other, "jane.doe@x.example", "jane", &["Designer"], &[])).await;
    s.wait_user(&other, "user-a2", user_ready).await;

    users_of(&s, &slug).delete(&first, &Default::default()).await.unwrap();
    s.wait_user(&slug, &same_email, user_ready).await;
    s.wait_for("the removed user's binding to go", || async { bindings(&s, &first).await.is_empty() }).await;
    s.cleanup().await;
}

/// GitOps applies in any order: a TenantUser sent before its account namespace exists is
/// refused by the API server (its namespace is missing) and goes through on the next sync once
/// the Tenant made the namespace; it is then bound at once.
#[tokio::test]
async fn a_user_applied_with_its_tenant_is_bound_as_soon_as_the_account_namespace_exists() {
    let s = Scenario::start().await;
    let slug = s.slug("late");
    let early = user("early", &slug, "early@x.example", "early", &["AccountAdmin"], &[]);
    let refused = users_of(&s, &slug).create(&Default::default(), &early).await;
    assert!(matches!(refused, Err(kube::Error::Api(ref e)) if e.code == 404), "no account namespace yet: {refused:?}");
    s.create_tenant(&tenant(&slug, &["dev", "staging"])).await;
    // What Argo CD / Flux do: retry until it is accepted.
    s.wait_for("the account namespace to accept the user", || async {
        users_of(&s, &slug).create(&Default::default(), &early).await.is_ok()
    })
    .await;
    let u = s.wait_user(&slug, "early", user_ready).await;
    let status = u.status.unwrap_or_default();
    assert_eq!(status.bound_namespaces, [account(&slug), format!("{slug}-dev"), format!("{slug}-staging")]);
    assert_eq!(status.tenant.as_deref(), Some(slug.as_str()));
    let t = s.wait_tenant(&slug, tenant_ready).await;
    let account_status = t.status.and_then(|st| st.account_namespace).expect("status lists the account namespace");
    assert_eq!(account_status.name, account(&slug));
    users_of(&s, &slug).delete("early", &Default::default()).await.unwrap();
    s.cleanup().await;
}

/// Deleting a Tenant under Retain keeps its account namespace and the users in it (without
/// access); the Tenant re-created with the same slug, consenting to adopt the earlier one's
/// data, adopts the namespace and the users are bound again (without consent they are not:
/// tests/e2e_reused_slug.rs).
#[tokio::test]
async fn users_wait_in_a_retained_account_namespace_and_are_bound_again_when_the_tenant_returns() {
    let s = Scenario::start().await;
    let slug = s.slug("back");
    let retained = || tenant_with_policy(&slug, "Retain");
    s.create_tenant(&retained()).await;
    let earlier = s.wait_tenant(&slug, tenant_ready).await.metadata.uid;
    s.create_user(&user("jdoe", &slug, "jane@x.example", "jdoe", &["Designer"], &[])).await;
    s.wait_user(&slug, "jdoe", user_ready).await;
    s.delete_tenant(&slug).await;
    s.wait_tenant_gone(&slug).await;
    let u = s.wait_user(&slug, "jdoe", |u| reason(u) == "TenantNotFound").await;
    assert!(u.status.unwrap_or_default().bound_namespaces.is_empty());
    s.wait_for("the user's access to be revoked", || async { all_bindings(&s, "jdoe").await.is_empty() }).await;

    let mut returning = retained();
    returning.spec.adopt_retained_from = earlier;
    s.create_tenant(&returning).await;
    let u = s.wait_user(&slug, "jdoe", user_ready).await;
    assert_eq!(u.status.unwrap_or_default().bound_namespaces, [account(&slug), format!("{slug}-dev")]);
    s.cleanup().await;
}

fn tenant_with_policy(slug: &str, policy: &str) -> Tenant {
    let mut t = tenant(slug, &["dev"]);
    t.spec.deletion_policy = serde_json::from_value(json!(policy)).expect("deletion policy");
    t
}

#[tokio::test]
async fn an_unchanged_user_resync_writes_nothing() {
    let s = Scenario::start().await;
    let slug = s.slug("calm");
    s.create_tenant(&tenant(&slug, &["dev", "prod"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    for i in 0..3 {
        let name = format!("u{i}");
        s.create_user(&user(&name, &slug, &format!("u{i}@x.example"), &format!("u{i}"), &["Designer"], &[])).await;
        s.wait_user(&slug, &name, user_ready).await;
    }
    let requests = s.requests_of_a_restart().await.unwrap_or_default();
    assert_eq!(requests.writes(), 0, "a no-op resync wrote: {:?}", requests.0);
    s.cleanup().await;
}

#[tokio::test]
async fn two_hundred_users_across_twenty_tenants_converge() {
    let s = Scenario::start().await;
    if matches!(support::e2e::Target::from_env(), support::e2e::Target::Kubeconfig(_)) {
        return support::skipped_on_real_cluster("many users at once", "too heavy for a shared cluster (runs on the local control plane)");
    }
    let slugs: Vec<String> = (0..20).map(|i| s.slug(&format!("many{i}"))).collect();
    for slug in &slugs {
        s.create_tenant(&tenant(slug, &["dev", "prod"])).await;
    }
    for slug in &slugs {
        s.wait_tenant(slug, tenant_ready).await;
    }
    let mut names = Vec::new();
    for slug in &slugs {
        for i in 0..10 {
            let name = format!("u{i}");
            s.create_user(&user(&name, slug, &format!("u{i}@{slug}.example"), &format!("u{i}"), &["Designer"], &[])).await;
            names.push((slug.clone(), name));
        }
    }
    for (slug, name) in &names {
        let u = s.wait_user(slug, name, user_ready).await;
        assert_eq!(u.status.unwrap_or_default().bound_namespaces.len(), 3, "{slug}/{name}");
    }
    s.cleanup().await;
}

/// A deleted user's finalizer revokes its access, also when the operator was down at the time;
/// if a person removes the finalizer by force, the next reconcile of the tenant sweeps what is
/// left.
#[tokio::test]
async fn a_deleted_users_access_is_revoked_even_behind_the_operators_back() {
    let s = Scenario::start().await;
    let slug = s.slug("orphan");
    s.create_tenant(&tenant(&slug, &["dev", "prod"])).await;
    s.wait_tenant(&slug, tenant_ready).await;
    // A name longer than a label value may be: it still maps back to its bindings.
    let long = "a".repeat(80);
    for name in ["late", long.as_str()] {
        s.create_user(&user(name, &slug, &format!("{}@x.example", &name[..4]), &name[..4], &["Designer"], &[])).await;
        s.wait_user(&slug, name, user_ready).await;
        assert_eq!(bindings(&s, name).await.len(), 2);
    }

    s.stop_operator().await;
    users_of(&s, &slug).delete("late", &Default::default()).await.expect("delete");
    users_of(&s, &slug).delete(&long, &Default::default()).await.expect("delete");
    // The second one's finalizer is removed by a person.
    users_of(&s, &slug)
        .patch(&long, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("remove the finalizer");
    s.wait_gone(users_of(&s, &slug), &long).await;
    assert!(users_of(&s, &slug).get_opt("late").await.ok().flatten().is_some(), "the finalizer holds the user until revoked");
    s.start_operator();
    s.wait_gone(users_of(&s, &slug), "late").await;
    for name in ["late", long.as_str()] {
        s.wait_for("the deleted user's bindings to go", || async { all_bindings(&s, name).await.is_empty() }).await;
    }
    s.cleanup().await;
}
