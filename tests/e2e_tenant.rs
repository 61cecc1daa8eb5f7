//! End-to-end scenarios of the Tenant controller. They run against the in-process fake API
//! server by default and against a real cluster when `TENANT_OPERATOR_E2E_KUBECONFIG` is set
//! (fake-only steps — fault injection, request counting — are skipped there).

mod support;

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, Namespace, Secret},
    networking::v1::{Ingress, NetworkPolicy},
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams},
    Api, ResourceExt,
};
use serde_json::json;
use support::fixtures::{acme_tenant as tenant, ready};
use support::scenario::Scenario;
use tenant_operator::{
    desired::tenant::TenantPlan,
    types::{Conditions, DatabaseProvider, NamespaceState, Tenant, TenantPhase},
};

#[tokio::test]
async fn tenant_becomes_ready_with_namespaces_config_ingress_isolation_and_quota() {
    let s = Scenario::start().await;
    let slug = s.slug("acme");
    s.create_tenant(&tenant(&slug, json!({}))).await;
    let t = s.wait_tenant(&slug, ready).await;
    let status = t.status.clone().unwrap_or_default();
    assert_eq!(status.namespaces.len(), 3);
    assert!(status.namespaces.iter().all(|n| n.state == NamespaceState::Active));
    assert_eq!(status.endpoints.len(), 6);
    assert!(status.endpoints.iter().any(|e| e.url == format!("https://{slug}.xconsole.uk.cloud.example.com/")));
    for c in ["Ready", "NamespacesReady", "IngressReady", "DatabaseReady"] {
        assert!(status.is_true(c), "{c} is not True: {:?}", status.conditions);
    }
    for env in ["dev", "staging", "prod"] {
        let ns = format!("{slug}-{env}");
        let namespace = Api::<Namespace>::all(s.client()).get(&ns).await.unwrap();
        assert_eq!(namespace.labels().get("tenancy.platform.dev/tenant"), Some(&slug));
        assert!(namespace.owner_references().is_empty(), "namespaces never carry owner references");
        let cm = Api::<ConfigMap>::namespaced(s.client(), &ns).get("tenant-config").await.unwrap();
        assert_eq!(cm.data.unwrap_or_default().get("environment").map(String::as_str), Some(env));
        let ingress = Api::<Ingress>::namespaced(s.client(), &ns).get("xconsole").await.unwrap();
        let host = ingress.spec.and_then(|s| s.rules).and_then(|r| r.first().and_then(|r| r.host.clone())).unwrap_or_default();
        let expected = if env == "prod" {
            format!("{slug}.xconsole.uk.cloud.example.com")
        } else {
            format!("{slug}-{env}.xconsole.uk.cloud.example.com")
        };
        assert_eq!(host, expected);
        Api::<NetworkPolicy>::namespaced(s.client(), &ns).get("tenant-isolation").await.unwrap();
        Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(s.client(), &ns).get("tenant-quota").await.unwrap();
    }
    // What /metrics serves moved with the reconciles (the phase gauge is refreshed every 10 s).
    let metrics = s.metrics().encode();
    let reconciles = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tenant_operator_reconciles_total{controller=\"tenant\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_default();
    assert!(reconciles >= 1.0, "{metrics}");
    assert!(metrics.contains("tenant_operator_reconcile_duration_seconds_count{controller=\"tenant\"}"), "{metrics}");
    s.cleanup().await;
}

#[tokio::test]
async fn environments_and_applications_follow_the_spec() {
    let s = Scenario::start().await;
    let slug = s.slug("envs");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev"], "deletionPolicy": "Delete"}))).await;
    s.wait_tenant(&slug, ready).await;

    s.patch_spec(&slug, json!({"environments": ["dev", "prod"], "applications": ["xconsole"]})).await;
    let t = s.wait_tenant(&slug, |t| ready(t) && t.status.as_ref().is_some_and(|st| st.namespaces.len() == 2)).await;
    assert_eq!(t.status.unwrap_or_default().endpoints.len(), 2);
    s.wait_gone(Api::<Ingress>::namespaced(s.client(), &format!("{slug}-dev")), "u-assist").await;

    // Delete policy: a removed environment's namespace goes.
    s.patch_spec(&slug, json!({"environments": ["prod"]})).await;
    s.wait_gone(Api::<Namespace>::all(s.client()), &format!("{slug}-dev")).await;
    s.wait_tenant(&slug, |t| ready(t) && t.status.as_ref().is_some_and(|st| st.namespaces.len() == 1)).await;
    s.cleanup().await;
}

#[tokio::test]
async fn removed_environment_is_retained_under_retain_and_adopted_when_it_returns() {
    let s = Scenario::start().await;
    let slug = s.slug("keep");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev", "staging"]}))).await;
    s.wait_tenant(&slug, ready).await;
    s.patch_spec(&slug, json!({"environments": ["dev"]})).await;
    let t = s
        .wait_tenant(&slug, |t| t.status.as_ref().is_some_and(|st| st.namespaces.iter().any(|n| n.state == NamespaceState::Retained)))
        .await;
    assert!(ready(&t));
    let staging = Api::<Namespace>::all(s.client()).get(&format!("{slug}-staging")).await.unwrap();
    assert_eq!(staging.labels().get("tenancy.platform.dev/retained").map(String::as_str), Some("true"));
    assert!(staging.metadata.deletion_timestamp.is_none());

    s.patch_spec(&slug, json!({"environments": ["dev", "staging"]})).await;
    s.wait_tenant(&slug, |t| {
        ready(t)
            && t.status
                .as_ref()
                .is_some_and(|st| st.namespaces.iter().all(|n| n.state == NamespaceState::Active) && st.namespaces.len() == 2)
    })
    .await;
    let staging = Api::<Namespace>::all(s.client()).get(&format!("{slug}-staging")).await.unwrap();
    assert!(staging.labels().get("tenancy.platform.dev/retained").is_none(), "adopted namespace keeps the retained mark");
    s.cleanup().await;
}

#[tokio::test]
async fn changing_cluster_moves_hostnames_and_unknown_cluster_deletes_nothing() {
    let s = Scenario::start().await;
    let slug = s.slug("move");
    s.create_tenant(&tenant(&slug, json!({"environments": ["prod"]}))).await;
    s.wait_tenant(&slug, ready).await;

    s.patch_spec(&slug, json!({"cluster": "us"})).await;
    let t = s
        .wait_tenant(&slug, |t| {
            ready(t) && t.status.as_ref().is_some_and(|st| st.endpoints.iter().all(|e| e.url.contains(".us.cloud.example.com")))
        })
        .await;
    assert_eq!(t.status.unwrap_or_default().endpoints.len(), 2);
    let ingress = Api::<Ingress>::namespaced(s.client(), &format!("{slug}-prod")).get("xconsole").await.unwrap();
    assert_eq!(
        ingress.spec.and_then(|s| s.rules).and_then(|r| r[0].host.clone()).unwrap_or_default(),
        format!("{slug}.xconsole.us.cloud.example.com")
    );

    s.patch_spec(&slug, json!({"cluster": "mars"})).await;
    let t = s.wait_tenant(&slug, |t| t.status.as_ref().is_some_and(|st| st.phase == Some(TenantPhase::Failed))).await;
    let status = t.status.unwrap_or_default();
    let ready_condition = status.condition("Ready").cloned().unwrap();
    assert_eq!(ready_condition.status, "False");
    assert_eq!(ready_condition.reason, "UnknownCluster");
    assert!(ready_condition.message.contains("\"mars\""), "{}", ready_condition.message);
    // Nothing was deleted.
    Api::<Namespace>::all(s.client()).get(&format!("{slug}-prod")).await.unwrap();
    Api::<Ingress>::namespaced(s.client(), &format!("{slug}-prod")).get("xconsole").await.unwrap();

    s.patch_spec(&slug, json!({"applications": ["xconsole", "nope"], "cluster": "uk"})).await;
    let t = s
        .wait_tenant(&slug, |t| t.status.as_ref().and_then(|st| st.condition("Ready")).is_some_and(|c| c.reason == "UnknownApplication"))
        .await;
    assert_eq!(t.status.and_then(|s| s.phase), Some(TenantPhase::Failed));
    s.cleanup().await;
}

#[tokio::test]
async fn hand_deleted_and_hand_edited_children_are_put_back() {
    let s = Scenario::start().await;
    let slug = s.slug("drift");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev"]}))).await;
    s.wait_tenant(&slug, ready).await;
    let ns = format!("{slug}-dev");
    let ingresses = Api::<Ingress>::namespaced(s.client(), &ns);
    ingresses.delete("xconsole", &DeleteParams::default()).await.unwrap();
    s.wait_for("the Ingress to come back", || async {
        ingresses.get_opt("xconsole").await.ok().flatten().is_some_and(|i| i.metadata.deletion_timestamp.is_none())
    })
    .await;

    let config_maps = Api::<ConfigMap>::namespaced(s.client(), &ns);
    config_maps
        .patch(
            "tenant-config",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tenancy.platform.dev/environment": "prod"}}, "data": {"cluster": "hacked"}})),
        )
        .await
        .unwrap();
    s.wait_for("the ConfigMap to be corrected", || async {
        config_maps.get("tenant-config").await.ok().is_some_and(|cm| {
            cm.labels().get("tenancy.platform.dev/environment").map(String::as_str) == Some("dev")
                && cm.data.unwrap_or_default().get("cluster").map(String::as_str) == Some("uk")
        })
    })
    .await;
    s.cleanup().await;
}

/// Two corrections of the same Tenant, minutes apart or not, are two stories: the second Event
/// must say what the second reconcile did, not count the first one again.
#[tokio::test]
async fn every_correction_is_told_by_its_own_event() {
    let s = Scenario::start().await;
    let slug = s.slug("told");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev", "prod"]}))).await;
    s.wait_tenant(&slug, ready).await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(s.client());
    for env in ["dev", "prod"] {
        let ns = format!("{slug}-{env}");
        Api::<ConfigMap>::namespaced(s.client(), &ns).delete("tenant-config", &DeleteParams::default()).await.unwrap();
        let expected = format!("Applied 1 object in {ns}");
        s.wait_for(&format!("an Event saying {expected:?}"), || async {
            events.list(&Default::default()).await.is_ok_and(|l| {
                l.items.iter().any(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(slug.as_str())
                        && e.reason.as_deref() == Some("Applied")
                        && e.note.as_deref() == Some(expected.as_str())
                })
            })
        })
        .await;
    }
    // The same correction again is the same story: counted on its Event, not a new one.
    let ns = format!("{slug}-dev");
    Api::<ConfigMap>::namespaced(s.client(), &ns).delete("tenant-config", &DeleteParams::default()).await.unwrap();
    let expected = format!("Applied 1 object in {ns}");
    s.wait_for("the first Event counted twice", || async {
        events.list(&Default::default()).await.is_ok_and(|l| {
            let told: Vec<_> = l
                .items
                .iter()
                .filter(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(slug.as_str())
                        && e.note.as_deref() == Some(expected.as_str())
                })
                .collect();
            told.len() == 1 && told[0].series.as_ref().is_some_and(|series| series.count == 2)
        })
    })
    .await;
    s.cleanup().await;
}

#[tokio::test]
async fn a_full_resync_of_unchanged_tenants_writes_nothing() {
    let s = Scenario::start().await;
    let slugs: Vec<String> = (0..3).map(|i| s.slug(&format!("quiet{i}"))).collect();
    for slug in &slugs {
        s.create_tenant(&tenant(slug, json!({"database": {"provider": "statefulset"}}))).await;
    }
    for slug in &slugs {
        s.mark_statefulsets_ready(slug).await;
        s.wait_tenant(slug, ready).await;
    }
    // A restart lists and reconciles every tenant, which must not write anything.
    let requests = s.requests_of_a_restart().await.unwrap_or_default();
    assert_eq!(requests.writes(), 0, "a no-op resync wrote: {:?}", requests.0);
    assert!(requests.verb("list") > 0, "the restarted operator did not even list: {:?}", requests.0);
    // The operator may not list or watch Secrets (issue 20 §6): a restart reads each
    // credentials Secret once, by name, and no other.
    let count = |verb: &str| requests.0.get(&(verb.to_string(), "secrets".to_string())).copied().unwrap_or_default();
    let mut credentials = 0;
    for slug in &slugs {
        let lp = ListParams::default().labels(&format!("tenancy.platform.dev/tenant={slug}"));
        credentials += Api::<Secret>::all(s.client()).list(&lp).await.expect("list Secrets").items.len();
    }
    assert!(credentials >= slugs.len(), "every tenant has its credentials Secret");
    assert!(count("get") <= credentials, "{} reads of {credentials} credentials Secrets: {:?}", count("get"), requests.0);
    assert_eq!(count("list") + count("watch"), 0, "Secrets listed or watched: {:?}", requests.0);
    s.cleanup().await;
}

/// Secrets are not watched (issue 20 §6), so a credentials Secret deleted while the operator
/// is down is found by its next read: here the restart's.
#[tokio::test]
async fn a_credentials_secret_deleted_while_the_operator_was_down_is_restored() {
    let s = Scenario::start().await;
    let slug = s.slug("lostsecret");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev"], "database": {"provider": "statefulset"}}))).await;
    s.mark_statefulsets_ready(&slug).await;
    s.wait_tenant(&slug, ready).await;
    s.stop_operator().await;
    let secrets = Api::<Secret>::namespaced(s.client(), &format!("{slug}-dev"));
    let name = format!("{slug}-db-credentials");
    secrets.delete(&name, &DeleteParams::default()).await.expect("delete the credentials Secret");
    s.start_operator();
    s.wait_object(secrets, &name, |secret| secret.data.as_ref().is_some_and(|d| d.contains_key("password"))).await;
    s.wait_tenant(&slug, ready).await;
    s.cleanup().await;
}

/// Creating a tenant costs at most the minimum of writes (each object of its plan and each
/// credentials Secret once, the finalizer, one status) + 2, Events included: reconciles that
/// run before the caches show the operator's own writes repeat none of them, and the details
/// of the progress on the way to Ready are not a status write each.
#[tokio::test]
async fn creating_tenants_costs_at_most_the_minimum_writes_plus_two_each() {
    let s = Scenario::start().await;
    let config = support::fixtures::example_config();
    let mut tenants: Vec<Tenant> = (0..4).map(|i| tenant(&s.slug(&format!("budget{i}")), json!({}))).collect();
    tenants.extend(
        (0..2).map(|i| support::fixtures::data_tenant(&s.slug(&format!("budgetdb{i}")), json!({"database": {"provider": "statefulset"}}))),
    );
    let minimum: usize = tenants
        .iter()
        .map(|t| {
            let plan = TenantPlan::build(t, &config).expect("plan");
            let secrets = if plan.database_provider == DatabaseProvider::None { 0 } else { plan.environments.len() };
            plan.objects().count() + secrets + 2
        })
        .sum();
    let seen = s.requests().len();
    futures::future::join_all(tenants.iter().map(|t| s.create_tenant(t))).await;
    for t in tenants.iter().filter(|t| t.spec.database.as_ref().and_then(|d| d.provider) == Some(DatabaseProvider::Statefulset)) {
        s.mark_statefulsets_ready(&t.name_any()).await;
    }
    for t in &tenants {
        s.wait_tenant(&t.name_any(), ready).await;
    }
    // Whatever the operator writes once everything is Ready counts too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let operator = support::e2e::operator_user();
    let writes: Vec<String> = s
        .requests()
        .into_iter()
        .skip(seen)
        .filter(|r| r.user.as_deref() == Some(operator.as_str()) && fake_apiserver::WRITE_VERBS.contains(&r.verb.as_str()))
        .map(|r| format!("{} {} {}/{}", r.verb, r.resource, r.namespace.unwrap_or_default(), r.name.unwrap_or_default()))
        .collect();
    let events = writes.iter().filter(|w| w.contains(" events ")).count();
    assert_eq!(events, tenants.len(), "one summary Event per tenant: {writes:#?}");
    assert!(writes.len() >= minimum, "fewer writes ({}) than objects, finalizers and statuses ({minimum})", writes.len());
    assert!(
        writes.len() <= minimum + 2 * tenants.len(),
        "{} writes for {} tenants, minimum {minimum}: {writes:#?}",
        writes.len(),
        tenants.len()
    );
    s.cleanup().await;
}

#[tokio::test]
async fn statefulset_database_credentials_are_generated_once_and_readiness_is_honest() {
    let s = Scenario::start().await;
    let slug = s.slug("db");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev"], "database": {"provider": "statefulset", "storage": "2Gi"}}))).await;
    let ns = format!("{slug}-dev");
    let t = s.wait_tenant(&slug, |t| t.status.as_ref().is_some_and(|st| !st.databases.is_empty())).await;
    let status = t.status.unwrap_or_default();
    if s.fake().is_some() {
        assert!(!status.databases[0].ready, "a database without ready pods is not ready");
        assert_eq!(status.phase, Some(TenantPhase::Provisioning));
        assert_eq!(status.condition("DatabaseReady").map(|c| c.reason.as_str()), Some("DatabaseNotReady"));
    }
    let secrets = Api::<Secret>::namespaced(s.client(), &ns);
    let secret = secrets.get(&format!("{slug}-db-credentials")).await.unwrap();
    let data = secret.data.clone().unwrap_or_default();
    for key in ["username", "password", "host", "port", "dbname", "uri", "jdbc-uri"] {
        assert!(data.contains_key(key), "secret lacks {key}");
    }
    let password = data["password"].0.clone();
    assert_eq!(password.len(), 32);
    assert!(secret.owner_references().is_empty());
    let sts = Api::<StatefulSet>::namespaced(s.client(), &ns).get(&format!("{slug}-db")).await.unwrap();
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(1));

    s.mark_statefulsets_ready(&slug).await;
    let t = s.wait_tenant(&slug, ready).await;
    assert!(t.status.unwrap_or_default().databases[0].ready);
    // A spec change reconciles everything again; the password stays.
    s.patch_spec(&slug, json!({"displayName": "Acme Renamed"})).await;
    s.wait_tenant(&slug, ready).await;
    let again = secrets.get(&format!("{slug}-db-credentials")).await.unwrap();
    assert_eq!(again.data.unwrap_or_default()["password"].0, password);
    s.cleanup().await;
}

#[tokio::test]
async fn deleting_with_retain_keeps_data_and_recreating_adopts_it() {
    let s = Scenario::start().await;
    let slug = s.slug("retain");
    let spec = tenant(&slug, json!({"environments": ["dev"], "database": {"provider": "statefulset"}}));
    s.create_tenant(&spec).await;
    s.mark_statefulsets_ready(&slug).await;
    s.wait_tenant(&slug, ready).await;
    let ns = format!("{slug}-dev");
    let secrets = Api::<Secret>::namespaced(s.client(), &ns);
    let password = secrets.get(&format!("{slug}-db-credentials")).await.unwrap().data.unwrap_or_default()["password"].0.clone();

    let old_uid = Api::<Tenant>::all(s.client()).get(&slug).await.unwrap().metadata.uid.unwrap();
    s.delete_tenant(&slug).await;
    s.wait_tenant_gone(&slug).await;
    let namespace = Api::<Namespace>::all(s.client()).get(&ns).await.unwrap();
    assert_eq!(namespace.labels().get("tenancy.platform.dev/retained").map(String::as_str), Some("true"));
    assert!(namespace.metadata.deletion_timestamp.is_none());
    let secret = secrets.get(&format!("{slug}-db-credentials")).await.unwrap();
    assert_eq!(secret.labels().get("tenancy.platform.dev/retained").map(String::as_str), Some("true"));

    // A new Tenant of the name (a new UID) adopts with consent (tests/e2e_reused_slug.rs: and
    // only with it).
    let mut spec = spec.clone();
    spec.spec.adopt_retained_from = Some(old_uid);
    s.create_tenant(&spec).await;
    s.mark_statefulsets_ready(&slug).await;
    s.wait_tenant(&slug, ready).await;
    let namespace = Api::<Namespace>::all(s.client()).get(&ns).await.unwrap();
    assert!(namespace.labels().get("tenancy.platform.dev/retained").is_none());
    let adopted = secrets.get(&format!("{slug}-db-credentials")).await.unwrap();
    assert_eq!(adopted.data.unwrap_or_default()["password"].0, password, "a re-created tenant reuses its credentials");
    s.delete_namespaces_of(&slug).await;
    s.cleanup().await;
}

#[tokio::test]
async fn deleting_with_delete_removes_everything_even_when_the_operator_was_down() {
    let s = Scenario::start().await;
    let slug = s.slug("gone");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev", "prod"], "deletionPolicy": "Delete"}))).await;
    s.wait_tenant(&slug, ready).await;
    s.stop_operator().await;
    s.delete_tenant(&slug).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The finalizer holds the Tenant while nobody handles it.
    let held = Api::<Tenant>::all(s.client()).get(&slug).await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    s.start_operator();
    s.wait_tenant_gone(&slug).await;
    for env in ["dev", "prod"] {
        s.wait_gone(Api::<Namespace>::all(s.client()), &format!("{slug}-{env}")).await;
    }
    s.cleanup().await;
}

#[tokio::test]
async fn injected_api_errors_are_retried_until_the_tenant_converges() {
    let s = Scenario::start().await;
    s.fail_operator_requests("patch", "configmaps", 500, 2);
    s.fail_operator_requests("patch", "ingresses", 429, 2);
    s.fail_operator_requests("patch", "tenants/status", 409, 1);
    s.fail_operator_requests("patch", "namespaces", 503, 1);
    let slug = s.slug("flaky");
    s.create_tenant(&tenant(&slug, json!({}))).await;
    s.wait_tenant(&slug, ready).await;
    // The failures were reported on the Tenant, not only logged.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(s.client());
    s.wait_for("a ReconcileFailed event", || async {
        events.list(&Default::default()).await.is_ok_and(|l| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some("ReconcileFailed")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(slug.as_str())
            })
        })
    })
    .await;
    s.cleanup().await;
}

#[tokio::test]
async fn fifty_tenants_created_at_once_all_become_ready() {
    let s = Scenario::start().await;
    if matches!(support::e2e::Target::from_env(), support::e2e::Target::Kubeconfig(_)) {
        return support::skipped_on_real_cluster(
            "fifty tenants at once",
            "too heavy for a shared cluster (runs on the local control plane)",
        );
    }
    let slugs: Vec<String> = (0..50).map(|i| s.slug(&format!("bulk{i}"))).collect();
    futures::future::join_all(slugs.iter().map(|slug| s.create_tenant_ref(tenant(slug, json!({}))))).await;
    for slug in &slugs {
        s.wait_tenant(slug, ready).await;
    }
    s.cleanup().await;
}

#[tokio::test]
async fn a_suspended_tenant_is_left_alone_until_resumed() {
    let s = Scenario::start().await;
    let slug = s.slug("pause");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev"]}))).await;
    s.wait_tenant(&slug, ready).await;
    s.patch_spec(&slug, json!({"suspend": true})).await;
    let t = s
        .wait_tenant(&slug, |t| {
            t.status.as_ref().is_some_and(|st| st.phase == Some(TenantPhase::Suspended) && st.observed_generation == t.metadata.generation)
        })
        .await;
    assert_eq!(t.status.and_then(|st| st.condition("Ready").map(|c| c.reason.clone())).as_deref(), Some("Suspended"));

    // Neither drift nor spec changes are acted on while suspended.
    let ingresses = Api::<Ingress>::namespaced(s.client(), &format!("{slug}-dev"));
    ingresses.delete("xconsole", &DeleteParams::default()).await.unwrap();
    s.patch_spec(&slug, json!({"applications": ["xconsole"]})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(ingresses.get_opt("xconsole").await.unwrap().is_none(), "a suspended tenant was reconciled");
    assert!(ingresses.get_opt("u-assist").await.unwrap().is_some(), "a suspended tenant lost an Ingress");

    s.patch_spec(&slug, json!({"suspend": false})).await;
    s.wait_tenant(&slug, ready).await;
    s.wait_gone(ingresses.clone(), "u-assist").await;
    assert!(ingresses.get_opt("xconsole").await.unwrap().is_some());
    s.cleanup().await;
}

#[tokio::test]
async fn a_malformed_tenant_in_the_watch_does_not_stop_the_controller() {
    let s = Scenario::start().await;
    if matches!(support::e2e::Target::from_env(), support::e2e::Target::Kubeconfig(_)) {
        return support::skipped_on_real_cluster("malformed Tenant", "loosening a CRD schema is not done to a shared cluster");
    }
    // Store a Tenant the Rust types cannot read, as an older CRD version could have left
    // behind: loosen the schema, create it, restore the schema. (On the local control plane,
    // which is this test binary's own.)
    let strict = include_str!("../crds/tenants.yaml");
    let mut loose: serde_json::Value = serde_yaml::from_str(strict).unwrap();
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
    let broken = s.slug("broken");
    let api: Api<kube::core::DynamicObject> = Api::all_with(s.client(), &kube::core::ApiResource::erase::<Tenant>(&()));
    let object: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": broken},
        "spec": {"displayName": 42, "environments": "everything"},
    }))
    .unwrap();
    set_tenant_crd_schema(&s, &loose).await;
    // The real server takes the new schema a moment after the CRD changed.
    s.wait_for("the loosened schema to admit the malformed Tenant", || async {
        api.create(&kube::api::PostParams::default(), &object).await.is_ok()
    })
    .await;
    set_tenant_crd_schema(&s, &serde_yaml::from_str(strict).unwrap()).await;
    let probe = {
        let mut probe = object.clone();
        probe.metadata.name = Some(format!("{broken}-probe"));
        probe
    };
    let dry_run = kube::api::PostParams { dry_run: true, ..Default::default() };
    s.wait_for("the strict schema to refuse malformed Tenants again", || async {
        matches!(api.create(&dry_run, &probe).await, Err(kube::Error::Api(e)) if e.code == 422)
    })
    .await;

    let slug = s.slug("healthy");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev"]}))).await;
    s.wait_tenant(&slug, ready).await;
    let untouched = api.get(&broken).await.unwrap();
    assert!(untouched.metadata.finalizers.is_none(), "the operator wrote to an object it cannot read");
    api.delete(&broken, &DeleteParams::default()).await.unwrap();
    s.cleanup().await;
}

/// Replace the Tenant CRD's schema: on the fake by registering the CRD again, on the local
/// control plane by an update of the CustomResourceDefinition (an apply would merge the two
/// schemas).
async fn set_tenant_crd_schema(s: &Scenario, crd: &serde_json::Value) {
    if let Some(fake) = s.fake() {
        fake.register_crd(&serde_yaml::to_string(crd).unwrap()).unwrap();
        return;
    }
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(s.client());
    let wanted: CustomResourceDefinition = serde_json::from_value(crd.clone()).unwrap();
    // The server writes the CRD's status meanwhile: a conflict is tried again.
    for _ in 0..10 {
        let mut current = crds.get("tenants.tenancy.platform.dev").await.unwrap();
        current.spec = wanted.spec.clone();
        match crds.replace("tenants.tenancy.platform.dev", &kube::api::PostParams::default(), &current).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("replacing the Tenant CRD: {e}"),
        }
    }
    panic!("replacing the Tenant CRD: conflicts every time");
}

/// Phase and the kstatus conditions (type, status, reason) of a status document.
fn summary(status: &serde_json::Value) -> (String, Vec<(String, String, String)>) {
    let phase = status.pointer("/phase").and_then(|p| p.as_str()).unwrap_or_default().to_string();
    let mut conditions: Vec<(String, String, String)> = status
        .pointer("/conditions")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .filter(|c| matches!(c["type"].as_str(), Some("Ready" | "Reconciling" | "Stalled")))
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (field("type"), field("status"), field("reason"))
        })
        .collect();
    conditions.sort();
    (phase, conditions)
}

/// The status documents the Argo CD health checks and the kstatus rules are tested against
/// (`tests/data/status/`, `tests/gitops_health.rs`) are what the operator really writes.
#[tokio::test]
async fn status_documents_match_what_the_gitops_health_checks_are_tested_against() {
    let s = Scenario::start().await;
    let fixture = |name: &str| {
        let path = format!("{}/tests/data/status/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let document: serde_json::Value = serde_json::from_str(&text).expect("fixture");
        summary(&document["status"])
    };
    let observed = |t: &Tenant| summary(&serde_json::to_value(t.status.clone().unwrap_or_default()).expect("status"));
    let tenants: Api<Tenant> = Api::all(s.client());

    // Provisioning: a database that is not ready yet.
    let slug = s.slug("kstatus");
    s.create_tenant(&support::fixtures::data_tenant(&slug, json!({"database": {"provider": "statefulset"}}))).await;
    let want = fixture("tenant-provisioning");
    s.wait_tenant(&slug, |t| observed(t) == want).await;

    // Ready.
    s.mark_statefulsets_ready(&slug).await;
    let want = fixture("tenant-ready");
    s.wait_tenant(&slug, |t| ready(t) && observed(t) == want).await;

    // Suspended.
    s.patch_spec(&slug, json!({"suspend": true})).await;
    let want = fixture("tenant-suspended");
    s.wait_tenant(&slug, |t| observed(t) == want).await;
    s.patch_spec(&slug, json!({"suspend": false})).await;
    s.wait_tenant(&slug, ready).await;

    // Terminating: a second finalizer keeps the Tenant around once the operator is done.
    tenants
        .patch(
            &slug,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["tenancy.platform.dev/cleanup", "e2e/hold"]}})),
        )
        .await
        .expect("hold finalizer");
    s.delete_tenant(&slug).await;
    let want = fixture("tenant-terminating");
    s.wait_tenant(&slug, |t| observed(t) == want).await;
    tenants.patch(&slug, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.expect("release");

    // Stalled: an unknown cluster.
    let stalled = s.slug("kstatus");
    s.create_tenant(&support::fixtures::data_tenant(&stalled, json!({"cluster": "mars", "database": {"provider": "none"}}))).await;
    let want = fixture("tenant-failed-stalled");
    s.wait_tenant(&stalled, |t| observed(t) == want).await;
    s.cleanup().await;
}

/// A quota on requests makes the API server refuse pods without requests; the LimitRange the
/// operator adds gives the tenant's own database pod its defaults, so the quota admits it.
#[tokio::test]
async fn with_a_quota_the_database_pod_is_admitted_thanks_to_the_limit_range() {
    let s = Scenario::start().await;
    let slug = s.slug("quota");
    let dev = format!("{slug}-dev");
    s.create_tenant(&support::fixtures::data_tenant(
        &slug,
        json!({"database": {"provider": "statefulset"}, "quota": {"cpu": "4", "memory": "8Gi", "pods": 20}}),
    ))
    .await;
    let limits = Api::<k8s_openapi::api::core::v1::LimitRange>::namespaced(s.client(), &dev);
    s.wait_for("the LimitRange", || async { limits.get_opt("tenant-defaults").await.is_ok_and(|l| l.is_some()) }).await;
    // On the fake, this waits for the pod the StatefulSet controller creates through quota
    // admission; a refusal would show as a FailedCreate Event and time out here.
    s.mark_statefulsets_ready(&slug).await;
    s.wait_tenant(&slug, ready).await;

    // spec.quota removed: the quota goes back to the configured default (every tenant
    // namespace has one), and the LimitRange stays.
    s.patch_spec(&slug, json!({"quota": null})).await;
    let default_pods = support::fixtures::example_config().namespaces.quota()["pods"].0.clone();
    let quotas = Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(s.client(), &dev);
    s.wait_object(quotas, "tenant-quota", |q| {
        q.spec.as_ref().and_then(|s| s.hard.as_ref()).and_then(|h| h.get("pods")).is_some_and(|p| p.0 == default_pods)
    })
    .await;
    limits.get("tenant-defaults").await.expect("the LimitRange stays");
    s.cleanup().await;
}

/// `IngressReady` says whether traffic can reach the applications: an Ingress counts only once
/// an ingress controller has published an address for it.
#[tokio::test]
async fn ingress_ready_waits_for_an_address_from_the_ingress_controller() {
    use support::e2e::Target;
    // A cluster whose ingress controller is not running (for this tenant).
    let s = match Target::from_env() {
        Target::Kubeconfig(_) => {
            return support::skipped_on_real_cluster("ingress address", "the cluster's own ingress controller cannot be switched off")
        }
        Target::LocalControlPlane => Scenario::start().await,
        Target::Fake => {
            let fake = fake_apiserver::FakeApiServer::builder().simulate_ingress_controller(false).start().await;
            Scenario::start_on(support::e2e::TestEnv::with_fake(fake), support::fixtures::example_config()).await
        }
    };
    let slug = s.slug("noaddr");
    support::stand_ins::IngressControllerStandIn::leave_alone(&slug);
    s.create_tenant(&support::fixtures::small_tenant(&slug, json!({}))).await;
    let t = s
        .wait_tenant(&slug, |t| {
            t.status.as_ref().and_then(|st| st.condition("IngressReady")).is_some_and(|c| c.reason == "WaitingForAddress")
        })
        .await;
    let status = t.status.unwrap_or_default();
    assert_eq!(status.phase, Some(TenantPhase::Provisioning), "applied is not routed");
    assert!(status.is_true("Reconciling") && !status.is_true("Ready"), "{:?}", status.conditions);

    // The controller comes up and publishes an address: the Tenant becomes Ready.
    let ingresses = Api::<Ingress>::namespaced(s.client(), &format!("{slug}-dev"));
    ingresses
        .patch_status(
            "xconsole",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}]}}})),
        )
        .await
        .expect("publish an address");
    s.wait_tenant(&slug, ready).await;
    s.cleanup().await;
}
