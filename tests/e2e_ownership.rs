//! Ownership and data safety (the product's "What the operator deletes, and when"): the
//! operator changes or deletes only what it created, and deletes data only on an explicit
//! Delete. Fake by default; a real cluster with `TENANT_OPERATOR_E2E_KUBECONFIG`.

mod support;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Namespace, Secret},
    networking::v1::Ingress,
};
use kube::{
    api::{DeleteParams, Patch, PatchParams, PostParams},
    Api, ResourceExt,
};
use serde_json::json;
use support::{
    fixtures::{example_config, ready, small_tenant as tenant},
    scenario::Scenario,
};
use tenant_operator::types::{Conditions, DatabaseProvider, NamespaceState, Tenant};

/// The Tenant is stalled for `reason` at its current generation.
fn stalled(reason: &'static str) -> impl Fn(&Tenant) -> bool {
    move |t| {
        t.status.as_ref().is_some_and(|s| {
            s.observed_generation == t.metadata.generation
                && s.is_true("Stalled")
                && s.condition("Stalled").is_some_and(|c| c.reason == reason)
                && s.condition("Ready").is_some_and(|c| c.status == "False" && c.reason == reason)
        })
    }
}

fn namespace_state(t: &Tenant, name: &str) -> Option<NamespaceState> {
    t.status.as_ref()?.namespaces.iter().find(|n| n.name == name).map(|n| n.state)
}

/// A ConfigMap a person creates in a tenant namespace, with a copy of the tenant's label.
async fn user_configmap(s: &Scenario, namespace: &str, slug: &str) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "team-notes", "namespace": namespace, "labels": {"tenancy.platform.dev/tenant": slug}},
        "data": {"owner": "a person"},
    }))
    .expect("configmap");
    Api::<ConfigMap>::namespaced(s.client(), namespace).create(&PostParams::default(), &cm).await.expect("create user ConfigMap");
}

/// Delete the Tenant (under `deletionPolicy: Delete`) and check that `namespace` outlives it;
/// then the test removes the namespace itself, as only a person may.
async fn deleting_the_tenant_leaves(s: &Scenario, slug: &str, namespace: &str) {
    s.delete_tenant(slug).await;
    s.wait_tenant_gone(slug).await;
    let namespaces = Api::<Namespace>::all(s.client());
    let ns = namespaces.get(namespace).await.unwrap_or_else(|e| panic!("namespace {namespace} must outlive the Tenant: {e}"));
    assert!(ns.metadata.deletion_timestamp.is_none(), "namespace {namespace} must not be deleted with the Tenant");
    let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
}

async fn configmap_exists(s: &Scenario, namespace: &str, name: &str) -> bool {
    Api::<ConfigMap>::namespaced(s.client(), namespace).get_opt(name).await.ok().flatten().is_some()
}

#[tokio::test]
async fn a_policy_flip_never_deletes_a_retained_namespace() {
    let s = Scenario::start().await;
    let slug = s.slug("flap");
    let staging = format!("{slug}-staging");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev", "staging"], "deletionPolicy": "Retain"}))).await;
    s.wait_tenant(&slug, ready).await;
    user_configmap(&s, &staging, &slug).await;

    s.patch_spec(&slug, json!({"environments": ["dev"]})).await;
    s.wait_tenant(&slug, |t| ready(t) && namespace_state(t, &staging) == Some(NamespaceState::Retained)).await;

    // The flip that used to delete the retained namespace at once.
    s.patch_spec(&slug, json!({"deletionPolicy": "Delete"})).await;
    let t = s.wait_tenant(&slug, ready).await;
    assert_eq!(namespace_state(&t, &staging), Some(NamespaceState::Retained), "still reported as retained");
    let ns = Api::<Namespace>::all(s.client()).get(&staging).await.expect("retained namespace still there");
    assert!(ns.metadata.deletion_timestamp.is_none(), "retained namespace must not be deleted by a policy change");
    assert!(configmap_exists(&s, &staging, "team-notes").await, "the data in it stays");

    // Nor by the Tenant's deletion under Delete: retained data is deleted only by a person.
    deleting_the_tenant_leaves(&s, &slug, &staging).await;
    s.cleanup().await;
}

#[tokio::test]
async fn a_namespace_the_operator_did_not_create_is_never_adopted() {
    let s = Scenario::start().await;
    let slug = s.slug("squat");
    let dev = format!("{slug}-dev");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": dev, "labels": {"team": "someone-else"}}})).expect("ns");
    Api::<Namespace>::all(s.client()).create(&PostParams::default(), &ns).await.expect("create foreign namespace");

    s.create_tenant(&tenant(&slug, json!({"deletionPolicy": "Delete"}))).await;
    let t = s.wait_tenant(&slug, stalled("NamespaceConflict")).await;
    let message = t.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains(&dev), "the message names the namespace: {message}");
    let ns = Api::<Namespace>::all(s.client()).get(&dev).await.expect("namespace");
    assert!(!ns.labels().contains_key("tenancy.platform.dev/tenant"), "no label was forced onto it");
    assert!(!configmap_exists(&s, &dev, "tenant-config").await, "nothing was created in it");

    // Deleting the Tenant under Delete leaves the namespace alone.
    deleting_the_tenant_leaves(&s, &slug, &dev).await;
    s.cleanup().await;
}

#[tokio::test]
async fn a_persons_objects_survive_and_only_an_environment_delete_removes_them() {
    let s = Scenario::start().await;
    let slug = s.slug("mixed");
    let dev = format!("{slug}-dev");
    let staging = format!("{slug}-staging");
    s.create_tenant(&tenant(
        &slug,
        json!({"environments": ["dev", "staging"], "applications": ["xconsole", "u-assist"], "deletionPolicy": "Delete"}),
    ))
    .await;
    s.wait_tenant(&slug, ready).await;
    user_configmap(&s, &dev, &slug).await;
    user_configmap(&s, &staging, &slug).await;

    // An application removed: its Ingress goes, the person's ConfigMap stays.
    s.patch_spec(&slug, json!({"applications": ["xconsole"]})).await;
    s.wait_gone(Api::<Ingress>::namespaced(s.client(), &dev), "u-assist").await;
    s.wait_tenant(&slug, ready).await;
    assert!(configmap_exists(&s, &dev, "team-notes").await);

    // A hand edit of the person's ConfigMap is not "drift" of the operator's.
    assert!(configmap_exists(&s, &dev, "tenant-config").await);

    // An environment removed under Delete: the only path that removes what is in it.
    s.patch_spec(&slug, json!({"environments": ["dev"]})).await;
    s.wait_gone(Api::<Namespace>::all(s.client()), &staging).await;
    s.wait_tenant(&slug, ready).await;
    assert!(configmap_exists(&s, &dev, "team-notes").await);
    s.cleanup().await;
}

#[tokio::test]
async fn a_secret_the_operator_did_not_create_is_never_read_for_a_password() {
    // Without a database first (default provider none), so that a person can put a Secret
    // under the credentials name before the operator wants one.
    let mut no_database = example_config();
    no_database.database.default_provider = DatabaseProvider::None;
    let s = Scenario::start_with(no_database).await;
    let slug = s.slug("seed");
    let dev = format!("{slug}-dev");
    let mut t = tenant(&slug, json!({}));
    t.spec.database = None;
    s.create_tenant(&t).await;
    s.wait_tenant(&slug, ready).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{slug}-db-credentials"), "namespace": dev, "labels": {"tenancy.platform.dev/tenant": slug}},
        "stringData": {"password": "chosen-by-someone-else"},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(s.client(), &dev).create(&PostParams::default(), &secret).await.expect("pre-seed secret");

    // The platform turns databases on: the operator wants the Secret and finds someone else's.
    s.restart_operator_with(example_config()).await;
    s.wait_tenant(&slug, stalled("SecretConflict")).await;
    let kept = Api::<Secret>::namespaced(s.client(), &dev).get(&format!("{slug}-db-credentials")).await.expect("secret");
    let password = kept.data.unwrap_or_default().get("password").map(|p| String::from_utf8_lossy(&p.0).into_owned());
    assert_eq!(password.as_deref(), Some("chosen-by-someone-else"), "the Secret is left as it is");
    let statefulsets = Api::<StatefulSet>::namespaced(s.client(), &dev);
    assert!(statefulsets.get_opt(&format!("{slug}-db")).await.expect("get").is_none(), "no database on someone else's password");
    s.cleanup().await;
}

#[tokio::test]
async fn a_provider_change_is_refused_by_the_api_server_and_by_the_operator() {
    let s = Scenario::start().await;
    let tenants = Api::<Tenant>::all(s.client());
    let change = |provider: &str| Patch::Merge(json!({"spec": {"database": {"provider": provider}}}));

    // A provider once set is immutable (CEL): statefulset -> none, cloudnative-pg -> external.
    for (from, to) in [("statefulset", "none"), ("cloudnative-pg", "external")] {
        let slug = s.slug("cel");
        s.create_tenant(&tenant(&slug, json!({"database": {"provider": from}}))).await;
        match tenants.patch(&slug, &PatchParams::default(), &change(to)).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(status.message.contains("cannot be changed once set"), "{}", status.message);
            }
            other => panic!("{from} -> {to} must be refused at admission: {other:?}"),
        }
    }

    // Without a provider of its own the Tenant follows the default (statefulset); naming
    // another one later passes admission but the operator refuses it, deleting nothing.
    let slug = s.slug("pin");
    let dev = format!("{slug}-dev");
    let mut t = tenant(&slug, json!({}));
    t.spec.database = None;
    s.create_tenant(&t).await;
    s.mark_statefulsets_ready(&slug).await;
    s.wait_tenant(&slug, ready).await;
    s.patch_spec(&slug, json!({"database": {"provider": "none"}})).await;
    let t = s.wait_tenant(&slug, stalled("ProviderChangeRefused")).await;
    let message = t.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("statefulset") && message.contains("migrate"), "the message says how to migrate: {message}");
    let statefulsets = Api::<StatefulSet>::namespaced(s.client(), &dev);
    assert!(statefulsets.get_opt(&format!("{slug}-db")).await.expect("get").is_some(), "the database is still there");
    assert!(Api::<Secret>::namespaced(s.client(), &dev).get_opt(&format!("{slug}-db-credentials")).await.expect("get").is_some());

    // Unsetting it again is all it takes.
    tenants.patch(&slug, &PatchParams::default(), &Patch::Merge(json!({"spec": {"database": null}}))).await.expect("unset provider");
    s.wait_tenant(&slug, ready).await;
    s.cleanup().await;
}

#[tokio::test]
async fn a_default_provider_change_in_the_configuration_moves_no_tenant() {
    let s = Scenario::start().await;
    let slug = s.slug("dflt");
    let dev = format!("{slug}-dev");
    // No provider of its own: the configured default (statefulset) applies.
    let mut t = tenant(&slug, json!({}));
    t.spec.database = None;
    s.create_tenant(&t).await;
    s.mark_statefulsets_ready(&slug).await;
    s.wait_tenant(&slug, ready).await;

    let mut config = example_config();
    config.database.default_provider = DatabaseProvider::None;
    s.restart_operator_with(config).await;
    s.wait_tenant(&slug, stalled("ProviderChangeRefused")).await;
    let statefulsets = Api::<StatefulSet>::namespaced(s.client(), &dev);
    assert!(statefulsets.get_opt(&format!("{slug}-db")).await.expect("get").is_some(), "the database is still there");
    s.restart_operator_with(example_config()).await;
    s.wait_tenant(&slug, ready).await;
    s.cleanup().await;
}

#[tokio::test]
async fn no_two_tenants_share_a_hostname() {
    // A template that does not keep tenant and application apart: "<tenant>-<app>".
    let mut config = example_config();
    config.hostnames.prod = "{tenant}-{app}.{domain}".to_string();
    config.applications.insert("assist".to_string(), config.applications["u-assist"].clone());
    let s = Scenario::start_with(config).await;
    let older = s.slug("flip");
    let newer = format!("{older}-u");
    s.create_tenant(&tenant(&older, json!({"environments": ["prod"], "applications": ["u-assist"]}))).await;
    s.wait_tenant(&older, ready).await;
    s.create_tenant(&tenant(&newer, json!({"environments": ["prod"], "applications": ["assist", "xconsole"]}))).await;
    let t = s.wait_tenant(&newer, stalled("HostnameConflict")).await;
    let message = t.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains(&older), "names the Tenant that holds the host: {message}");

    // The newer Tenant gets its other Ingress but none for the contested host.
    let newer_prod = Api::<Ingress>::namespaced(s.client(), &format!("{newer}-prod"));
    s.wait_for("the uncontested Ingress", || async { newer_prod.get_opt("xconsole").await.is_ok_and(|i| i.is_some()) }).await;
    assert!(newer_prod.get_opt("assist").await.expect("get").is_none(), "no Ingress for the contested host");
    let older_prod = Api::<Ingress>::namespaced(s.client(), &format!("{older}-prod"));
    assert!(older_prod.get_opt("u-assist").await.expect("get").is_some(), "the older Tenant keeps it");

    // Once the older Tenant lets the host go, the newer one gets it.
    s.patch_spec(&older, json!({"applications": ["xconsole"]})).await;
    s.wait_tenant(&newer, ready).await;
    assert!(newer_prod.get_opt("assist").await.expect("get").is_some());
    s.cleanup().await;
}

#[tokio::test]
async fn a_long_multibyte_display_name_is_handled_without_a_panic() {
    let s = Scenario::start().await;
    let slug = s.slug("kanji");
    // The longest name the CRD admits, three bytes a character, with an unknown cluster so the
    // refusal goes into a condition and a Warning Event.
    let name: String = "株式会社テナント".chars().cycle().take(128).collect();
    s.create_tenant(&tenant(&slug, json!({"displayName": name, "cluster": "mars"}))).await;
    s.wait_tenant(&slug, stalled("UnknownCluster")).await;
    // Longer names are refused by the API server, not by a crash.
    let too_long: String = "株".repeat(2000);
    let refused =
        Api::<Tenant>::all(s.client()).create(&PostParams::default(), &tenant(&s.slug("kanji"), json!({"displayName": too_long}))).await;
    assert!(matches!(refused, Err(kube::Error::Api(ref e)) if e.code == 422), "{refused:?}");
    s.patch_spec(&slug, json!({"cluster": "uk"})).await;
    s.wait_tenant(&slug, ready).await;
    s.cleanup().await;
}

/// A namespace under a tenant's environment name that the operator did not create for that
/// Tenant (labelled for it by someone else, or labelled for another tenant) gets no user
/// bindings: the user controller applies the Tenant's rule of what is "ours" and reports the
/// conflict on the user.
#[tokio::test]
async fn users_are_never_bound_in_a_namespace_the_operator_did_not_create_for_their_tenant() {
    let s = Scenario::start().await;
    let slug = s.slug("wall");
    let (staging, prod) = (format!("{slug}-staging"), format!("{slug}-prod"));
    let namespaces = Api::<Namespace>::all(s.client());
    for (name, labelled_for) in [(&prod, slug.clone()), (&staging, "another-tenant".to_string())] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tenancy.platform.dev/tenant": labelled_for}}}))
                .expect("ns");
        namespaces.create(&PostParams::default(), &ns).await.expect("create a look-alike namespace");
    }
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev", "staging", "prod"], "deletionPolicy": "Delete"}))).await;
    s.wait_tenant(&slug, stalled("NamespaceConflict")).await;

    s.create_user(&support::fixtures::user("jdoe", &slug, "jdoe@x.example", "jdoe", &["Designer"], &[])).await;
    let u = s
        .wait_user(&slug, "jdoe", |u| {
            u.status.as_ref().is_some_and(|st| st.observed_generation == u.metadata.generation && !st.bound_namespaces.is_empty())
        })
        .await;
    let bindings = Api::<k8s_openapi::api::rbac::v1::RoleBinding>::all(s.client());
    let listed = bindings.list(&kube::api::ListParams::default().labels("tenancy.platform.dev/user=jdoe")).await.expect("list");
    let bound: Vec<String> = listed.items.iter().filter_map(|b| b.namespace()).collect();
    assert!(!bound.contains(&prod) && !bound.contains(&staging), "bound in a namespace that is not the tenant's: {bound:?}");
    assert!(bound.contains(&format!("{slug}-dev")), "bound in the tenant's own namespace: {bound:?}");
    let status = u.status.unwrap_or_default();
    assert_eq!(status.bound_namespaces, [format!("{slug}-account"), format!("{slug}-dev")]);
    let ready = status.condition("Ready").cloned().expect("a Ready condition");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "NamespaceConflict"), "{}", ready.message);
    assert!(ready.message.contains(&prod) && ready.message.contains(&staging), "names the namespaces: {}", ready.message);

    // The look-alikes are not the operator's to delete.
    for name in [&staging, &prod] {
        let _ = namespaces.delete(name, &DeleteParams::default()).await;
    }
    s.cleanup().await;
}
