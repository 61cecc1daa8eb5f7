//! Delegated user administration, acting as the people themselves (a token of theirs on the
//! fake, impersonation on a real cluster ≥ 1.30 with `TENANT_OPERATOR_E2E_KUBECONFIG`): Account
//! Admins manage their own tenant's users, users edit their own details but not their
//! identity or roles (the shipped ValidatingAdmissionPolicy), Analysts configure in dev only.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    api::{DeleteParams, Patch, PatchParams, PostParams},
    Api, Client,
};
use serde_json::json;
use support::fixtures::{account, user, users_tenant as tenant};
use support::scenario::Scenario;
use tenant_operator::types::{Conditions, TenantPhase, TenantUser};

fn user_ready(u: &TenantUser) -> bool {
    u.status.as_ref().is_some_and(|s| s.is_true("Ready") && s.observed_generation == u.metadata.generation)
}

fn reason(u: &TenantUser) -> String {
    u.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.reason.clone()).unwrap_or_default()
}

/// The API server's refusal, or a panic naming what was expected.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// Two tenants, dev/staging/prod, ready.
async fn two_tenants(s: &Scenario, prefix: &str) -> (String, String) {
    let (acme, globex) = (s.slug(&format!("{prefix}-acme")), s.slug(&format!("{prefix}-globex")));
    for slug in [&acme, &globex] {
        s.create_tenant(&tenant(slug, &["dev", "staging", "prod"])).await;
    }
    for slug in [&acme, &globex] {
        s.wait_tenant(slug, |t| t.status.as_ref().is_some_and(|st| st.phase == Some(TenantPhase::Ready))).await;
    }
    (acme, globex)
}

/// A user of `slug` with `roles`, created by the administrator and bound; returns a client
/// acting as that person.
async fn person(s: &Scenario, slug: &str, name: &str, roles: &[&str]) -> (String, Client) {
    let email = format!("{name}@{slug}.example");
    s.create_user(&user(name, slug, &email, name, roles, &[])).await;
    s.wait_user(slug, name, user_ready).await;
    let client = s.client_as_person(&email).await;
    (email, client)
}

fn users_in(client: Client, slug: &str) -> Api<TenantUser> {
    Api::namespaced(client, &account(slug))
}

#[tokio::test]
async fn an_account_admin_manages_the_users_of_their_own_tenant_only() {
    let s = Scenario::start().await;
    let (acme, globex) = two_tenants(&s, "adm").await;
    let (_, admin) = person(&s, &acme, "boss", &["AccountAdmin"]).await;

    // Create, update and delete a user of acme.
    let mine = users_in(admin.clone(), &acme);
    let new = user("newbie", &acme, "newbie@acme.example", "newbie", &["Designer"], &[]);
    s.wait_for("the admin's access to be effective", || async { mine.list(&Default::default()).await.is_ok() }).await;
    mine.create(&PostParams::default(), &new).await.expect("an Account Admin creates a user of their tenant");
    s.wait_user(&acme, "newbie", user_ready).await;
    mine.patch("newbie", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": ["Analyst"], "lastName": "Renamed"}})))
        .await
        .expect("an Account Admin changes another user's roles");
    s.wait_user(&acme, "newbie", |u| {
        user_ready(u) && u.status.as_ref().and_then(|st| st.effective_role).map(|r| r.as_str()) == Some("Analyst")
    })
    .await;
    mine.delete("newbie", &DeleteParams::default()).await.expect("an Account Admin removes a user");
    s.wait_gone(users_in(s.client(), &acme), "newbie").await;

    // Not in another tenant, not across the cluster.
    let theirs = users_in(admin.clone(), &globex);
    let status = refusal(
        theirs.create(&PostParams::default(), &user("spy", &globex, "spy@acme.example", "spy", &["AccountAdmin"], &[])).await,
        "create in globex",
    );
    assert_eq!(status.code, 403, "{status:?}");
    let status = refusal(Api::<TenantUser>::all(admin.clone()).list(&Default::default()).await, "list cluster-wide");
    assert_eq!(status.code, 403, "{status:?}");
    s.cleanup().await;
}

#[tokio::test]
async fn a_user_edits_their_own_details_but_not_their_identity_or_roles() {
    let s = Scenario::start().await;
    let (acme, _) = two_tenants(&s, "self").await;
    let (_, designer) = person(&s, &acme, "dee", &["Designer"]).await;
    person(&s, &acme, "colleague", &["Analyst"]).await;
    let me = users_in(designer.clone(), &acme);
    s.wait_for("the self-service Role to be effective", || async { me.get("dee").await.is_ok() }).await;

    me.patch("dee", &PatchParams::default(), &Patch::Merge(json!({"spec": {"lastName": "Newname", "details": {"title": "Lead"}}})))
        .await
        .expect("a user updates their own details");
    let changed = users_in(s.client(), &acme).get("dee").await.expect("get");
    assert_eq!(changed.spec.last_name, "Newname");

    for (field, value) in [("roles", json!(["AccountAdmin"])), ("username", json!("boss")), ("email", json!("boss@x.example"))] {
        let patch = Patch::Merge(json!({ "spec": { field: value } }));
        let status = refusal(me.patch("dee", &PatchParams::default(), &patch).await, field);
        assert_eq!(status.code, 403, "{field}: {status:?}");
        assert!(status.message.contains(&format!("spec.{field}")), "the policy names the field: {}", status.message);
    }
    let status = refusal(me.get("colleague").await, "read another user");
    assert_eq!(status.code, 403, "{status:?}");
    let unchanged = users_in(s.client(), &acme).get("dee").await.expect("get");
    assert_eq!(unchanged.spec.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(), ["Designer"]);
    s.cleanup().await;
}

#[tokio::test]
async fn analysts_configure_in_dev_only() {
    let s = Scenario::start().await;
    let (acme, _) = two_tenants(&s, "ana").await;
    let (_, analyst) = person(&s, &acme, "ann", &["Analyst"]).await;
    let config = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"setting": "on"}})).expect("config map")
    };
    let dev: Api<ConfigMap> = Api::namespaced(analyst.clone(), &format!("{acme}-dev"));
    s.wait_for("the analyst's dev access to be effective", || async { dev.list(&Default::default()).await.is_ok() }).await;
    dev.create(&PostParams::default(), &config("flows")).await.expect("an Analyst configures in dev");
    dev.patch("flows", &PatchParams::default(), &Patch::Merge(json!({"data": {"setting": "off"}}))).await.expect("and changes it");
    for env in ["staging", "prod"] {
        let api: Api<ConfigMap> = Api::namespaced(analyst.clone(), &format!("{acme}-{env}"));
        api.list(&Default::default()).await.unwrap_or_else(|e| panic!("an Analyst reads {env}: {e}"));
        let status = refusal(api.create(&PostParams::default(), &config("flows")).await, env);
        assert_eq!(status.code, 403, "{env}: {status:?}");
    }
    s.cleanup().await;
}

#[tokio::test]
async fn email_notifications_are_for_account_admins() {
    let s = Scenario::start().await;
    let (acme, _) = two_tenants(&s, "mail").await;
    let mut designer = user("dee", &acme, "dee@acme.example", "dee", &["Designer"], &[]);
    designer.spec.receive_email_notifications = Some(true);
    let status = refusal(users_in(s.client(), &acme).create(&PostParams::default(), &designer).await, "Designer with notifications");
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("receiveEmailNotifications"), "{}", status.message);
    let mut admin = user("boss", &acme, "boss@acme.example", "boss@acme.example", &["AccountAdmin"], &[]);
    admin.spec.receive_email_notifications = Some(true);
    s.create_user(&admin).await;
    s.wait_user(&acme, "boss", user_ready).await;
    s.cleanup().await;
}

#[tokio::test]
async fn users_outside_their_tenants_account_namespace_get_no_access() {
    let s = Scenario::start().await;
    let (acme, _) = two_tenants(&s, "out").await;
    // A TenantUser in an environment namespace, and one in a look-alike account namespace that
    // the operator did not make (for a tenant that does not exist).
    let mut stray = user("stray", &acme, "stray@acme.example", "stray", &["AccountAdmin"], &[]);
    stray.metadata.namespace = Some(format!("{acme}-dev"));
    let ghost = s.slug("ghost");
    let fake_account: Namespace =
        serde_json::from_value(json!({"metadata": {"name": account(&ghost), "labels": {"tenancy.platform.dev/tenant": ghost}}}))
            .expect("namespace");
    s.create(&fake_account).await.expect("a person creates a look-alike namespace");
    s.create_user(&stray).await;
    let u = s
        .wait_object(Api::<TenantUser>::namespaced(s.client(), &format!("{acme}-dev")), "stray", |u| reason(u) == "NotInAccountNamespace")
        .await;
    assert!(u.status.as_ref().is_some_and(|st| st.is_true("Stalled")), "{:?}", u.status);
    assert!(u.status.unwrap_or_default().bound_namespaces.is_empty());

    // The look-alike namespace's Tenant appears: its account namespace is someone else's, so
    // the user in it gets nothing and the Tenant says why.
    s.create_user(&user("intruder", &ghost, "intruder@x.example", "intruder", &["AccountAdmin"], &[])).await;
    s.create_tenant(&tenant(&ghost, &["dev"])).await;
    s.wait_tenant(&ghost, |t| t.status.as_ref().and_then(|st| st.condition("Ready")).is_some_and(|c| c.reason == "NamespaceConflict"))
        .await;
    s.wait_user(&ghost, "intruder", |u| reason(u) == "NotInAccountNamespace").await;
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(s.client(), &format!("{ghost}-dev"));
    assert!(bindings.get_opt("tenantuser-intruder").await.ok().flatten().is_none(), "no access through a foreign namespace");
    Api::<TenantUser>::namespaced(s.client(), &format!("{acme}-dev")).delete("stray", &DeleteParams::default()).await.ok();
    s.cleanup().await;
}
