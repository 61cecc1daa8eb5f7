//! End-to-end scenario: the CRDs are installed, a Tenant is accepted and listed, invalid
//! Tenants/TenantUsers are rejected with 422. Runs unchanged against a real cluster when
//! `TENANT_OPERATOR_E2E_KUBECONFIG` names one, against the fake API server otherwise.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::ResourceExt;
use serde_json::json;
use support::e2e::TestEnv;
use support::fixtures::minimal_tenant_json as tenant;
use tenant_operator::types::{DeletionPolicy, Tenant};

#[tokio::test]
async fn crds_installed_tenant_accepted_invalid_rejected() {
    let env = TestEnv::new().await;
    let client = env.client();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["tenants.tenancy.platform.dev", "tenantusers.tenancy.platform.dev"] {
        let crd = crds.get(name).await.unwrap();
        let established = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(established.iter().any(|c| c.type_ == "Established" && c.status == "True"), "{name} established");
    }

    let slug = env.unique_slug("e2e-crds");
    let created: Tenant = env.create(&serde_json::from_value::<Tenant>(tenant(&slug, json!(["dev", "prod"]))).unwrap()).await.unwrap();
    assert_eq!(created.spec.deletion_policy, DeletionPolicy::Retain, "schema default applied");
    assert!(!created.spec.suspend);

    let tenants: Api<Tenant> = Api::all(client.clone());
    let listed = tenants.list(&ListParams::default().fields(&format!("metadata.name={slug}"))).await.unwrap();
    assert_eq!(listed.items.iter().map(|t| t.name_any()).collect::<Vec<_>>(), vec![slug.clone()]);

    // invalid documents are rejected by the API server (dynamic objects: the typed API
    // could not even hold them)
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "Tenant"));
    let dyn_tenants: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let bad_slug = env.unique_slug("e2e-bad");
    for (doc, field) in [
        (tenant(&bad_slug, json!(["dev", "qa"])), "spec.environments[1]"),
        (tenant(&bad_slug, json!([])), "spec.environments"),
        (tenant(&bad_slug.to_uppercase(), json!(["dev"])), "metadata.name"),
    ] {
        let obj: DynamicObject = serde_json::from_value(doc).unwrap();
        match dyn_tenants.create(&PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{}", s.message);
                assert!(s.message.contains(field), "{field} named in: {}", s.message);
            }
            Ok(accepted) => {
                env.track_dynamic(&accepted, &ar);
                panic!("invalid Tenant accepted: {accepted:?}");
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    // TenantUsers live in an account namespace (no operator runs here: the test makes one).
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": format!("{slug}-account")}})).unwrap();
    env.create(&namespace).await.expect("account namespace");
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "TenantUser"));
    let users: Api<DynamicObject> = Api::namespaced_with(client.clone(), &format!("{slug}-account"), &ar);
    let no_roles: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "TenantUser",
        "metadata": {"name": env.unique_slug("e2e-user")},
        "spec": {"email": "jane@e2e.example", "username": "jane", "firstName": "Jane", "lastName": "Doe"}
    }))
    .unwrap();
    match users.create(&PostParams::default(), &no_roles).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{}", s.message),
        Ok(accepted) => {
            env.track_dynamic(&accepted, &ar);
            panic!("TenantUser without roles accepted");
        }
        Err(other) => panic!("unexpected error {other}"),
    }

    env.cleanup().await;
    assert!(tenants.get_opt(&slug).await.unwrap().is_none(), "cleanup removed the tenant");
}

/// The real-cluster code path (kubeconfig, CRD install by server-side apply, cleanup on drop),
/// exercised against the fake through its kubeconfig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_path_installs_crds_and_cleans_up_on_drop() {
    let fake = fake_apiserver::FakeApiServer::builder().without_repo_crds().start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, fake.kubeconfig_yaml()).unwrap();
    let slug;
    {
        let env = TestEnv::from_kubeconfig(path.clone()).await;
        assert!(env.is_real_cluster() && env.fake().is_none());
        slug = env.unique_slug("a-very-long-prefix-that-will-be-truncated-to-fit");
        assert!(slug.len() <= 40 && !slug.contains("--"), "{slug}");
        let t: Tenant = serde_json::from_value(tenant(&slug, json!(["dev"]))).unwrap();
        env.create(&t).await.unwrap();
        assert!(fake.object("tenancy.platform.dev/v1alpha1", "Tenant", "", &slug).is_some());
    }
    assert!(fake.object("tenancy.platform.dev/v1alpha1", "Tenant", "", &slug).is_none(), "dropped env deleted what it created");
    assert!(fake.object("v1", "Namespace", "", "default").is_some(), "nothing else touched");
}

/// On a real cluster a scenario's operator sees only the scenario's tenants (parallel scenarios
/// share the server, see `support/scope.rs`) and its requests are recorded as the fake records
/// them (`support/requests.rs`): checked against the fake through its kubeconfig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cluster_operator_sees_its_own_tenants_and_its_requests_are_counted_as_the_fake_counts_them() {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{Patch, PatchParams, WatchEvent, WatchParams};
    let fake = fake_apiserver::FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, fake.kubeconfig_yaml()).unwrap();
    let env = TestEnv::from_kubeconfig(path).await;
    let mine = env.unique_slug("mine");
    let theirs = format!("theirs-{mine}");
    for slug in [&mine, &theirs] {
        let t: Tenant = serde_json::from_value(tenant(slug, json!(["dev"]))).unwrap();
        env.create(&t).await.unwrap();
    }
    let operator_user = support::e2e::operator_user();
    let (fake_before, log_before) = (fake.request_counts_of(&operator_user), env.operator_request_log().counts());

    let tenants: Api<Tenant> = Api::all(env.operator_client());
    let listed = tenants.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items.iter().map(|t| t.name_any()).collect::<Vec<_>>(),
        std::slice::from_ref(&mine),
        "only the scenario's tenant is listed"
    );
    let version = listed.metadata.resource_version.unwrap_or_default();
    let mut events = tenants.watch(&WatchParams::default().timeout(10), &version).await.unwrap().boxed();
    let admin: Api<Tenant> = Api::all(env.client());
    for slug in [&theirs, &mine] {
        admin.patch(slug, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}}))).await.unwrap();
    }
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Modified(t)) => assert_eq!(t.name_any(), mine, "the other scenario's change is not seen"),
        other => panic!("expected the scenario's own change first: {other:?}"),
    }
    drop(events);
    tenants.get(&mine).await.unwrap();

    let by_fake = fake.request_counts_of(&operator_user).since(&fake_before);
    let by_log = env.operator_request_log().counts().since(&log_before);
    assert_eq!(by_log, by_fake, "the client-side record matches the fake's");
    assert_eq!((by_log.get("list", "tenancy.platform.dev/tenants"), by_log.get("watch", "tenancy.platform.dev/tenants")), (1, 1));
    env.cleanup().await;
}
