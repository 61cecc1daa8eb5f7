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
use support::e2e::TestEnv;
use support::fixtures::{account, example_config, user, users_tenant as tenant};
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
    let _policy = self_service::POLICY_IN_PLACE.read().await;
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

    for (field, value) in [("roles", json!(["AccountAdmin"])), ("username", json!("boss")), ("customRoles", json!(["flow-billing-editor"]))]
    {
        let patch = Patch::Merge(json!({ "spec": { field: value } }));
        let status = refusal(me.patch("dee", &PatchParams::default(), &patch).await, field);
        assert_eq!(status.code, 403, "{field}: {status:?}");
        assert!(status.message.contains(&format!("spec.{field}")), "the policy names the field: {}", status.message);
    }
    // The email is the user's identity: immutable for everyone (CRD rule).
    let status =
        refusal(me.patch("dee", &PatchParams::default(), &Patch::Merge(json!({"spec": {"email": "boss@x.example"}}))).await, "email");
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains("spec.email"), "{}", status.message);
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

/// Issue 20 §2: self-service fails closed. In every state of the self-service admission policy
/// an Agent patching their own TenantUser to `AccountAdmin` changes nothing they can do.
mod self_service {
    use k8s_openapi::api::{authorization::v1::SubjectAccessReview, rbac::v1::RoleBinding};
    use kube::api::ListParams;
    use tenant_operator::config::Config;

    use super::*;

    /// Scenarios that remove the cluster-wide policy take it for writing; those that rely on
    /// it for reading (they share a real cluster).
    pub static POLICY_IN_PLACE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

    const NAME: &str = "tenantuser-self-service.tenancy.platform.dev";

    fn admission_api(client: Client, kind: &str) -> Api<kube::core::DynamicObject> {
        let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind));
        Api::all_with(client, &ar)
    }

    /// Remove the policy's binding, or (`and_policy`) both, as an administrator would.
    async fn remove_policy(client: &Client, and_policy: bool) {
        let mut kinds = vec!["ValidatingAdmissionPolicyBinding"];
        if and_policy {
            kinds.push("ValidatingAdmissionPolicy");
        }
        for kind in kinds {
            match admission_api(client.clone(), kind).delete(NAME, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(other) => panic!("delete {kind}: {other}"),
            }
        }
    }

    /// Put the shipped policy back (a real cluster is shared).
    async fn restore_policy(s: &Scenario) {
        for (file, yaml) in support::e2e::deploy_manifests().into_iter().filter(|(f, _)| f.contains("admission/")) {
            match s.fake() {
                Some(fake) => fake.apply_manifests(&yaml),
                None => support::e2e::apply_manifests(&s.client(), &yaml).await,
            }
            .unwrap_or_else(|e| panic!("restoring {file}: {e}"));
        }
    }

    /// The authorizer's answer for `user` (a SubjectAccessReview on a real cluster).
    async fn can(s: &Scenario, user: &str, verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> bool {
        if let Some(fake) = s.fake() {
            return fake.allows(&fake_apiserver::UserInfo::user(user, &[]), verb, group, resource, namespace, name);
        }
        let review: SubjectAccessReview = serde_json::from_value(json!({"spec": {
            "user": user, "groups": ["system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace, "name": name}
        }}))
        .expect("review");
        let answer =
            Api::<SubjectAccessReview>::all(s.client()).create(&PostParams::default(), &review).await.expect("SubjectAccessReview");
        answer.status.is_some_and(|st| st.allowed)
    }

    /// The user's RoleBindings: (namespace, name, role).
    async fn bindings_of(s: &Scenario, slug: &str, name: &str) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for namespace in [account(slug), format!("{slug}-dev"), format!("{slug}-staging"), format!("{slug}-prod")] {
            let api: Api<RoleBinding> = Api::namespaced(s.client(), &namespace);
            let list = api.list(&ListParams::default().labels(&format!("tenancy.platform.dev/user={name}"))).await.expect("list");
            found.extend(list.items.into_iter().map(|b| (namespace.clone(), b.metadata.name.unwrap_or_default(), b.role_ref.name)));
        }
        found.sort();
        found
    }

    /// Poll for up to `seconds` until `check` holds; whether it did (no panic: the caller
    /// asserts what matters afterwards).
    async fn eventually<F, Fut>(seconds: u64, check: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        false
    }

    /// The attack: Agent `agnes` (RBAC subject `<prefix><email>`) patches her own TenantUser
    /// to AccountAdmin. `withheld`: the policy is not in place, so the operator must first
    /// take her self-edit away. Afterwards — once the operator has reconciled her again — she
    /// can do nothing more than before and her RoleBindings are unchanged.
    async fn agent_cannot_raise_their_own_role(s: &Scenario, slug: &str, prefix: &str, withheld: bool) {
        let email = format!("agnes@{slug}.example");
        let subject = format!("{prefix}{email}");
        s.create_user(&user("agnes", slug, &email, "agnes", &["Agent"], &[])).await;
        s.wait_user(slug, "agnes", user_ready).await;
        let before = bindings_of(s, slug, "agnes").await;
        assert!(before.iter().any(|(ns, _, role)| *ns == format!("{slug}-prod") && role == "tenancy:agent"), "{before:?}");
        if withheld {
            // The operator sees the policy go; her Role loses `patch` (asserted below).
            eventually(15, || async { !can(s, &subject, "patch", "tenancy.platform.dev", "tenantusers", &account(slug), "agnes").await })
                .await;
        }

        let me = users_in(s.client_as_person(&subject).await, slug);
        let attack = me.patch("agnes", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": ["AccountAdmin"]}}))).await;
        // An administrator touches the user; once that generation is reconciled, the operator
        // has acted on whatever the attack left.
        let admin = users_in(s.client(), slug);
        admin.patch("agnes", &PatchParams::default(), &Patch::Merge(json!({"spec": {"lastName": "Checked"}}))).await.expect("admin");
        let after = s.wait_user(slug, "agnes", |u| user_ready(u) && u.spec.last_name == "Checked").await;

        let roles: Vec<&str> = after.spec.roles.iter().map(|r| r.as_str()).collect();
        assert_eq!(roles, ["Agent"], "the attack changed her roles (answer: {attack:?})");
        assert!(attack.is_err(), "the attack was accepted: {attack:?}");
        for (verb, group, resource, namespace) in [
            ("create", "tenancy.platform.dev", "tenantusers", account(slug)),
            ("get", "", "secrets", format!("{slug}-dev")),
            ("list", "", "configmaps", format!("{slug}-dev")),
        ] {
            assert!(!can(s, &subject, verb, group, resource, &namespace, "").await, "she may {verb} {resource} in {namespace}");
        }
        assert_eq!(bindings_of(s, slug, "agnes").await, before, "her RoleBindings changed");
        let status = after.status.unwrap_or_default();
        let condition = status.condition("SelfService").cloned().unwrap_or_else(|| panic!("no SelfService condition: {status:?}"));
        if withheld {
            assert!(!can(s, &subject, "patch", "tenancy.platform.dev", "tenantusers", &account(slug), "agnes").await, "self-edit kept");
            assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "SelfServiceUnavailable"), "{condition:?}");
            assert!(condition.message.contains(NAME), "the condition names what is missing: {}", condition.message);
        } else {
            assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "SelfServiceVerified"), "{condition:?}");
        }
    }

    async fn one_tenant(s: &Scenario, prefix: &str) -> String {
        let slug = s.slug(prefix);
        s.create_tenant(&tenant(&slug, &["dev", "prod"])).await;
        s.wait_tenant(&slug, |t| t.status.as_ref().is_some_and(|st| st.phase == Some(TenantPhase::Ready))).await;
        slug
    }

    #[tokio::test]
    async fn the_policy_binding_deleted() {
        let _policy = POLICY_IN_PLACE.write().await;
        let s = Scenario::start().await;
        let slug = one_tenant(&s, "unbound").await;
        remove_policy(&s.client(), false).await;
        agent_cannot_raise_their_own_role(&s, &slug, "", true).await;
        // Put back, self-edit returns.
        restore_policy(&s).await;
        s.wait_user(&slug, "agnes", |u| u.status.as_ref().and_then(|st| st.condition("SelfService")).is_some_and(|c| c.status == "True"))
            .await;
        let email = format!("agnes@{slug}.example");
        assert!(can(&s, &email, "patch", "tenancy.platform.dev", "tenantusers", &account(&slug), "agnes").await, "self-edit is back");
        s.cleanup().await;
    }

    /// The operator binds `oidc:<email>` while the admission manifests were made without a
    /// prefix: the old policy's parameter and the configuration disagreed (a hand-edited
    /// parameter, or the chart's `existingConfigMap` with another prefix than
    /// `config.users.subjectPrefix`). The policy has no parameter now.
    #[tokio::test]
    async fn the_subject_prefix_differs_from_the_admission_manifests() {
        let _policy = POLICY_IN_PLACE.read().await;
        let mut config: Config = example_config();
        config.users.subject_prefix = "oidc:".into();
        let s = Scenario::start_with(config).await;
        let slug = one_tenant(&s, "prefix").await;
        agent_cannot_raise_their_own_role(&s, &slug, "oidc:", false).await;
        s.cleanup().await;
    }

    /// `selfServicePolicy.enabled: false` (or deploy/ without `admission/`): the operator
    /// starts without the policy and never grants self-edit.
    #[tokio::test]
    async fn the_policy_not_installed() {
        let _policy = POLICY_IN_PLACE.write().await;
        let env = match std::env::var_os(support::e2e::KUBECONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(_) => TestEnv::new().await,
            None => {
                let manifests: Vec<String> = support::e2e::deploy_manifests()
                    .into_iter()
                    .filter(|(file, _)| !file.contains("admission/"))
                    .map(|(_, yaml)| yaml)
                    .collect();
                TestEnv::with_fake_and_manifests(fake_apiserver::FakeApiServer::start().await, &manifests)
            }
        };
        remove_policy(&env.client(), true).await;
        let s = Scenario::start_on(env, example_config()).await;
        let slug = one_tenant(&s, "nopolicy").await;
        agent_cannot_raise_their_own_role(&s, &slug, "", true).await;
        restore_policy(&s).await;
        s.cleanup().await;
    }

    /// Nobody creates a TenantUser whose email is their own identity (an Account Admin making
    /// a second, more powerful self), and an Account Admin does not change their own roles.
    #[tokio::test]
    async fn nobody_grants_themselves_access_through_a_tenantuser() {
        let _policy = POLICY_IN_PLACE.read().await;
        let s = Scenario::start().await;
        let slug = one_tenant(&s, "selfgrant").await;
        let (email, boss) = person(&s, &slug, "boss", &["AccountAdmin"]).await;
        let mine = users_in(boss, &slug);
        s.wait_for("the admin's access to be effective", || async { mine.list(&Default::default()).await.is_ok() }).await;
        let twin = user("twin", &slug, &email.to_uppercase(), "twin", &["AccountAdmin"], &["flow-billing-editor"]);
        let status = refusal(mine.create(&PostParams::default(), &twin).await, "a TenantUser with the requester's own email");
        assert_eq!(status.code, 403, "{status:?}");
        assert!(status.message.contains("spec.email"), "{}", status.message);
        let status = refusal(
            mine.patch("boss", &PatchParams::default(), &Patch::Merge(json!({"spec": {"customRoles": ["flow-billing-editor"]}}))).await,
            "an Account Admin adds a custom role to themselves",
        );
        assert_eq!(status.code, 403, "{status:?}");
        // Managing others still works.
        mine.create(&PostParams::default(), &user("other", &slug, &format!("other@{slug}.example"), "other", &["Designer"], &[]))
            .await
            .expect("an Account Admin creates another user");
        mine.patch("other", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": ["Analyst"]}})))
            .await
            .expect("and changes their roles");
        s.cleanup().await;
    }
}
