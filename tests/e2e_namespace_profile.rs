//! The tenant namespace profile against a hostile tenant, acting as the tenant's own people (a
//! token of theirs on the fake, impersonation on a real cluster with
//! `TENANT_OPERATOR_E2E_KUBECONFIG`): an Account Admin and a Designer, the highest roles of dev
//! and staging (`tenancy:account-admin`, `tenancy:editor`).
//!
//! - They cannot delete, change or forge the operator's objects (the shipped admission policy
//!   `tenancy-operator-objects`, and RBAC where the role grants nothing).
//! - They cannot run pods outside Pod Security `restricted`, nor with a pull policy other than
//!   `Always` (`tenancy-image-pull-policy`).
//! - They cannot open NodePort, LoadBalancer or ExternalName Services (`tenancy-service-types`).
//! - They cannot create or change quotas and LimitRanges.
//! - Their ordinary work still succeeds: a restricted pod with resources, a ClusterIP Service,
//!   an Account Admin's own NetworkPolicy.
//! - A Tenant without `spec.quota` has the configured default quota.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, Pod, ResourceQuota, Service},
    networking::v1::NetworkPolicy,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    Api,
};
use serde_json::{json, Value};
use support::fixtures::{ready, tenant};
use support::scenario::Scenario;
use tenant_operator::types::TenantUser;

#[path = "namespace_profile/common.rs"]
mod common;

use common::{
    dynamic, hostile_tenant, merged, refusal, restricted_pod, OBJECTS_POLICY, PRIVILEGED, PULL_POLICY, RESTRICTED, SERVICES_POLICY,
};

#[tokio::test]
async fn tenants_cannot_delete_change_or_forge_the_operators_objects() {
    let s = Scenario::start().await;
    let (slug, people) = hostile_tenant(&s, "objects").await;
    // (apiVersion, kind, plural, name, the policy that refuses, or None where RBAC already does)
    let objects = [
        ("apps/v1", "StatefulSet", "statefulsets", format!("{slug}-db"), Some(OBJECTS_POLICY)),
        ("v1", "PersistentVolumeClaim", "persistentvolumeclaims", format!("data-{slug}-db-0"), Some(OBJECTS_POLICY)),
        ("v1", "Pod", "pods", format!("{slug}-db-0"), Some(OBJECTS_POLICY)),
        ("v1", "Service", "services", format!("{slug}-db"), Some(OBJECTS_POLICY)),
        ("v1", "Secret", "secrets", format!("{slug}-db-credentials"), Some(OBJECTS_POLICY)),
        ("v1", "ConfigMap", "configmaps", "tenant-config".to_string(), Some(OBJECTS_POLICY)),
        ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", "tenant-isolation".to_string(), None),
        ("v1", "ResourceQuota", "resourcequotas", "tenant-quota".to_string(), None),
        ("v1", "LimitRange", "limitranges", "tenant-defaults".to_string(), None),
        ("networking.k8s.io/v1", "Ingress", "ingresses", "xconsole".to_string(), None),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", "tenantuser-admin".to_string(), None),
    ];
    for env in ["dev", "staging"] {
        let ns = format!("{slug}-{env}");
        for (person, client) in &people {
            for (api_version, kind, plural, name, policy) in &objects {
                let api = dynamic(client, api_version, kind, plural, &ns);
                let what = format!("{person} in {env}: {kind} {name}");
                let patch = Patch::Merge(json!({"metadata": {"labels": {"tampered": "yes"}}}));
                let message = refusal(api.patch(name, &PatchParams::default(), &patch).await, &format!("patch {what}"));
                let rule_named = match policy {
                    Some(policy) => message.contains(policy),
                    // The NetworkPolicy is the Account Admin's to write (their own), but not this one.
                    None if *kind == "NetworkPolicy" && *person == "admin" => message.contains(OBJECTS_POLICY),
                    None => message.contains("cannot patch resource"),
                };
                assert!(rule_named, "patch {what}: the refusal names no rule: {message}");
                let message = refusal(api.delete(name, &DeleteParams::default()).await, &format!("delete {what}"));
                assert!(message.contains(OBJECTS_POLICY) || message.contains("cannot delete resource"), "delete {what}: {message}");
            }
            // Forging: an object that looks like the operator's.
            let forged = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("forged-{person}"), "labels": {"tenancy.platform.dev/tenant": slug}}, "data": {"a": "b"}});
            let api = dynamic(client, "v1", "ConfigMap", "configmaps", &ns);
            let forged: DynamicObject = serde_json::from_value(forged).expect("forged ConfigMap");
            let message = refusal(api.create(&PostParams::default(), &forged).await, &format!("{person} forges a ConfigMap in {env}"));
            assert!(message.contains(OBJECTS_POLICY), "{message}");
            // Nor through a workload's pod template (the StatefulSet controller would stamp the labels).
            let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": format!("forger-{person}")},
                "spec": {"serviceName": "x", "selector": {"matchLabels": {"app": "x"}},
                         "template": {"metadata": {"labels": {"app": "x", "tenancy.platform.dev/tenant": slug}},
                                      "spec": restricted_pod("x")["spec"].clone()}}});
            let sts: DynamicObject = serde_json::from_value(sts).expect("forging StatefulSet");
            let api = dynamic(client, "apps/v1", "StatefulSet", "statefulsets", &ns);
            let message = refusal(api.create(&PostParams::default(), &sts).await, &format!("{person} forges pod labels in {env}"));
            assert!(message.contains(OBJECTS_POLICY), "{message}");
        }
    }
    // Everything is still there, unchanged.
    let admin = s.client();
    for env in ["dev", "staging"] {
        let ns = format!("{slug}-{env}");
        for (api_version, kind, plural, name, _) in &objects {
            let object = dynamic(&admin, api_version, kind, plural, &ns).get(name).await.unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            assert!(!object.metadata.labels.unwrap_or_default().contains_key("tampered"), "{kind} {name} was changed");
        }
    }
    s.cleanup().await;
}

#[tokio::test]
async fn tenants_cannot_run_pods_outside_restricted_or_from_a_nodes_image_cache() {
    let s = Scenario::start().await;
    let (slug, people) = hostile_tenant(&s, "pods").await;
    let restricted: &[&str] = &[RESTRICTED];
    let pull: &[&str] = &[PULL_POLICY];
    let attacks: Vec<(&str, Value, &[&str])> = vec![
        (
            "added capabilities",
            json!({"spec": {"containers": [{"name": "app", "securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]}}),
            restricted,
        ),
        ("run as root", json!({"spec": {"securityContext": {"runAsNonRoot": false, "runAsUser": 0}}}), restricted),
        (
            "privilege escalation",
            json!({"spec": {"containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": true}}]}}),
            restricted,
        ),
        // (privileged needs allowPrivilegeEscalation: the API server refuses the pair privileged and no escalation)
        (
            "privileged",
            json!({"spec": {"containers": [{"name": "app", "securityContext": {"privileged": true, "allowPrivilegeEscalation": true}}]}}),
            &PRIVILEGED,
        ),
        ("host network", json!({"spec": {"hostNetwork": true}}), restricted),
        ("host PID", json!({"spec": {"hostPID": true}}), restricted),
        ("host IPC", json!({"spec": {"hostIPC": true}}), restricted),
        ("hostPath volume", json!({"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}), restricted),
        ("imagePullPolicy Never", json!({"spec": {"containers": [{"name": "app", "imagePullPolicy": "Never"}]}}), pull),
        ("imagePullPolicy IfNotPresent", json!({"spec": {"containers": [{"name": "app", "imagePullPolicy": "IfNotPresent"}]}}), pull),
    ];
    for env in ["dev", "staging"] {
        let ns = format!("{slug}-{env}");
        for (person, client) in &people {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            for (attack, change, rule) in &attacks {
                // A merge patch replaces the containers list: keep the container whole.
                let mut pod = merged(restricted_pod("attack"), change);
                if let Some(containers) = change.pointer("/spec/containers/0") {
                    pod["spec"]["containers"][0] = merged(restricted_pod("attack")["spec"]["containers"][0].clone(), containers);
                }
                let pod: Pod = serde_json::from_value(pod).expect("attack pod");
                let message = refusal(pods.create(&PostParams::default(), &pod).await, &format!("{person} in {env}: {attack}"));
                assert!(
                    rule.iter().any(|r| message.contains(r)),
                    "{person} in {env}: {attack}: the refusal does not name {rule:?}: {message}"
                );
            }
            // An init container from the cache is refused too.
            let mut pod = restricted_pod("init-attack");
            let mut init = pod["spec"]["containers"][0].clone();
            init["name"] = json!("init");
            init["imagePullPolicy"] = json!("IfNotPresent");
            pod["spec"]["initContainers"] = json!([init]);
            let pod: Pod = serde_json::from_value(pod).expect("init pod");
            let message = refusal(pods.create(&PostParams::default(), &pod).await, &format!("{person} in {env}: init container"));
            assert!(message.contains(PULL_POLICY), "{message}");
        }
    }
    s.cleanup().await;
}

#[tokio::test]
async fn tenants_cannot_open_services_to_the_outside_nor_proxy_to_other_tenants() {
    let s = Scenario::start().await;
    let (slug, people) = hostile_tenant(&s, "svc").await;
    let services = [
        json!({"type": "NodePort", "ports": [{"port": 80}]}),
        json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
        // Under the application's name: the shared ingress controller would proxy to it.
        json!({"type": "ExternalName", "externalName": "victim-db.other-dev.svc.cluster.local"}),
    ];
    for env in ["dev", "staging"] {
        let ns = format!("{slug}-{env}");
        for (person, client) in &people {
            let api: Api<Service> = Api::namespaced(client.clone(), &ns);
            for spec in &services {
                let service: Service =
                    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "xconsole"}, "spec": spec}))
                        .expect("service");
                let what = format!("{person} in {env}: a {} Service", spec["type"]);
                let message = refusal(api.create(&PostParams::default(), &service).await, &what);
                assert!(message.contains(SERVICES_POLICY), "{what}: {message}");
            }
        }
    }
    s.cleanup().await;
}

#[tokio::test]
async fn tenants_cannot_create_or_change_quotas_and_limit_ranges() {
    let s = Scenario::start().await;
    let (slug, people) = hostile_tenant(&s, "quota").await;
    for env in ["dev", "staging"] {
        let ns = format!("{slug}-{env}");
        for (person, client) in &people {
            let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
            let mine: ResourceQuota =
                serde_json::from_value(json!({"metadata": {"name": "mine"}, "spec": {"hard": {"pods": "1000"}}})).expect("quota");
            let message = refusal(quotas.create(&PostParams::default(), &mine).await, &format!("{person} creates a quota in {env}"));
            assert!(message.contains("cannot create resource \"resourcequotas\""), "{message}");
            let raise = Patch::Merge(json!({"spec": {"hard": {"pods": "1000"}}}));
            let message =
                refusal(quotas.patch("tenant-quota", &PatchParams::default(), &raise).await, &format!("{person} raises the quota"));
            assert!(message.contains("cannot patch resource \"resourcequotas\""), "{message}");
            // They can read them.
            quotas.get("tenant-quota").await.unwrap_or_else(|e| panic!("{person} reads the quota in {env}: {e}"));

            let limits: Api<LimitRange> = Api::namespaced(client.clone(), &ns);
            let mine: LimitRange = serde_json::from_value(
                json!({"metadata": {"name": "mine"}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "64"}}]}}),
            )
            .expect("limit range");
            let message = refusal(limits.create(&PostParams::default(), &mine).await, &format!("{person} creates a LimitRange in {env}"));
            assert!(message.contains("cannot create resource \"limitranges\""), "{message}");
            let message =
                refusal(limits.delete("tenant-defaults", &DeleteParams::default()).await, &format!("{person} deletes the LimitRange"));
            assert!(message.contains("cannot delete resource \"limitranges\""), "{message}");
            limits.get("tenant-defaults").await.unwrap_or_else(|e| panic!("{person} reads the LimitRange in {env}: {e}"));
        }
    }
    s.cleanup().await;
}

#[tokio::test]
async fn ordinary_work_still_succeeds() {
    let s = Scenario::start().await;
    let (slug, people) = hostile_tenant(&s, "work").await;
    for env in ["dev", "staging"] {
        let ns = format!("{slug}-{env}");
        for (person, client) in &people {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let pod: Pod = serde_json::from_value(restricted_pod(&format!("app-{person}"))).expect("pod");
            pods.create(&PostParams::default(), &pod).await.unwrap_or_else(|e| panic!("{person} runs a restricted pod in {env}: {e}"));
            // Without resources: the LimitRange gives the defaults the quota requires.
            let mut bare = restricted_pod(&format!("bare-{person}"));
            bare["spec"]["containers"][0].as_object_mut().map(|c| c.remove("resources"));
            let bare: Pod = serde_json::from_value(bare).expect("pod");
            pods.create(&PostParams::default(), &bare)
                .await
                .unwrap_or_else(|e| panic!("{person} runs a pod without resources in {env}: {e}"));

            let services: Api<Service> = Api::namespaced(client.clone(), &ns);
            let service: Service = serde_json::from_value(
                json!({"metadata": {"name": format!("app-{person}")}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 8080}]}}),
            )
            .expect("service");
            services
                .create(&PostParams::default(), &service)
                .await
                .unwrap_or_else(|e| panic!("{person} opens a ClusterIP Service in {env}: {e}"));
        }
        // The Account Admin's own NetworkPolicy: created, changed, deleted.
        let (_, admin) = &people[0];
        let policies: Api<NetworkPolicy> = Api::namespaced(admin.clone(), &ns);
        let own: NetworkPolicy = serde_json::from_value(json!({"metadata": {"name": "allow-monitoring"}, "spec": {
            "podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]}}))
        .expect("network policy");
        policies
            .create(&PostParams::default(), &own)
            .await
            .unwrap_or_else(|e| panic!("the Account Admin adds a NetworkPolicy in {env}: {e}"));
        policies
            .patch("allow-monitoring", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "ops"}}})))
            .await
            .unwrap_or_else(|e| panic!("the Account Admin changes their NetworkPolicy in {env}: {e}"));
        policies.delete("allow-monitoring", &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete own NetworkPolicy: {e}"));
    }
    s.cleanup().await;
}

/// The quota the configuration gives every environment namespace when `spec.quota` is absent,
/// `spec.quota` overriding single entries; the account namespace's count quota; Pod Security.
#[tokio::test]
async fn a_tenant_without_spec_quota_has_the_configured_default_quota() {
    let s = Scenario::start().await;
    // The configuration's default quota, as the shipped example states it.
    let config: Value = serde_yaml::from_str(include_str!("../examples/config.yaml")).expect("examples/config.yaml");
    let slug = s.slug("defaults");
    s.create_tenant(&tenant(
        &slug,
        json!({"displayName": "Plain", "cluster": "uk", "environments": ["dev", "prod"], "database": {"provider": "none"}, "deletionPolicy": "Delete"}),
    ))
    .await;
    s.wait_tenant(&slug, ready).await;
    let want: BTreeMap<String, String> = config
        .pointer("/namespaces/quota")
        .and_then(Value::as_object)
        .map(|q| q.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect())
        .unwrap_or_default();
    for key in [
        "requests.cpu",
        "limits.cpu",
        "requests.memory",
        "limits.memory",
        "requests.ephemeral-storage",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "services.nodeports",
        "services.loadbalancers",
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "resourcequotas",
    ] {
        assert!(want.contains_key(key), "the default quota lacks {key}");
    }
    assert_eq!(want["services.nodeports"], "0");
    assert_eq!(want["services.loadbalancers"], "0");
    for env in ["dev", "prod"] {
        let ns = format!("{slug}-{env}");
        let quota = Api::<ResourceQuota>::namespaced(s.client(), &ns).get("tenant-quota").await.expect("the default quota");
        let hard: BTreeMap<String, String> =
            quota.spec.and_then(|s| s.hard).unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        assert_eq!(hard, want, "{ns}");
        Api::<LimitRange>::namespaced(s.client(), &ns).get("tenant-defaults").await.expect("the LimitRange");
        let namespace = Api::<Namespace>::all(s.client()).get(&ns).await.expect("namespace");
        let labels = namespace.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str), Some("restricted"), "{ns}");
    }
    let account =
        Api::<ResourceQuota>::namespaced(s.client(), &format!("{slug}-account")).get("tenant-quota").await.expect("account quota");
    let hard = account.spec.and_then(|s| s.hard).unwrap_or_default();
    for key in ["configmaps", "secrets"] {
        assert!(hard.contains_key(key), "the account quota lacks {key}: {hard:?}");
    }

    // spec.quota overrides what it names; the rest stays the default.
    s.patch_spec(&slug, json!({"quota": {"cpu": "3", "pods": 7}})).await;
    let quotas = Api::<ResourceQuota>::namespaced(s.client(), &format!("{slug}-dev"));
    let quota = s
        .wait_object(quotas, "tenant-quota", |q| {
            q.spec.as_ref().and_then(|s| s.hard.as_ref()).is_some_and(|h| h.get("pods").map(|p| p.0.as_str()) == Some("7"))
        })
        .await;
    let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
    assert_eq!(hard.get("requests.cpu").map(|q| q.0.as_str()), Some("3"));
    assert_eq!(hard.get("services.nodeports").map(|q| q.0.as_str()), Some("0"));
    assert_eq!(hard.get("limits.memory").map(|q| q.0.as_str()), Some(want["limits.memory"].as_str()));
    s.cleanup().await;
}

/// Without the shipped policies a tenant could delete its database: the operator says so in
/// `tenant_operator_admission_policy_installed` (0 for each missing policy, 1 once installed).
/// Fake only: on a shared real cluster, removing the policies would open every tenant.
#[tokio::test]
async fn the_operator_reports_missing_admission_policies() {
    if std::env::var_os(support::e2e::KUBECONFIG_ENV).is_some_and(|v| !v.is_empty()) {
        support::skipped_on_real_cluster("the_operator_reports_missing_admission_policies", "it removes cluster-wide policies");
        return;
    }
    let manifests: Vec<String> = support::e2e::deploy_manifests()
        .into_iter()
        .filter(|(path, _)| !path.ends_with("tenant-namespace-policies.yaml"))
        .map(|(_, text)| text)
        .collect();
    let fake = fake_apiserver::FakeApiServer::start().await;
    let env = support::e2e::TestEnv::with_fake_and_manifests(fake, &manifests);
    let s = Scenario::start_on(env, support::fixtures::example_config()).await;
    let gauge = |policy: &str| format!("tenant_operator_admission_policy_installed{{policy=\"{policy}\"}}");
    for policy in [OBJECTS_POLICY, SERVICES_POLICY, PULL_POLICY] {
        s.wait_for(&format!("{policy} reported missing"), || async { s.metrics().encode().contains(&format!("{} 0", gauge(policy))) })
            .await;
    }
    s.cleanup().await;

    // With deploy/'s policies (what every other scenario runs with) they are reported installed.
    let s = Scenario::start().await;
    for policy in [OBJECTS_POLICY, SERVICES_POLICY, PULL_POLICY] {
        s.wait_for(&format!("{policy} reported installed"), || async { s.metrics().encode().contains(&format!("{} 1", gauge(policy))) })
            .await;
    }
    s.cleanup().await;
}

/// A tenant provisioned under a looser profile (baseline, no pull rule, a smaller quota)
/// converges to the stricter one when the configuration changes: namespaces relabelled, the
/// quota replaced, the database pod template hardened; its volume and password are kept.
#[tokio::test]
async fn an_existing_tenant_converges_to_a_stricter_profile_without_losing_data() {
    use k8s_openapi::api::{
        apps::v1::StatefulSet,
        core::v1::{PersistentVolumeClaim, Secret},
    };
    let mut loose = support::fixtures::example_config();
    loose.namespaces.pod_security.enforce = "baseline".into();
    loose.namespaces.require_image_pull_always = false;
    loose.namespaces.quota.insert("pods".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("5".into()));
    let s = Scenario::start_with(loose).await;
    let slug = s.slug("converge");
    s.create_tenant(&tenant(
        &slug,
        json!({"displayName": "Old Corp", "cluster": "uk", "environments": ["dev"], "database": {"provider": "statefulset"}, "deletionPolicy": "Delete"}),
    ))
    .await;
    let ns = format!("{slug}-dev");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(s.client(), &ns);
    let claim = format!("data-{slug}-db-0");
    // The operator applies the Secret and the StatefulSet together; the StatefulSet controller
    // may make the volume before the Secret is written.
    s.wait_for("the database volume and credentials", || async {
        claims.get_opt(&claim).await.is_ok_and(|c| c.is_some())
            && secrets.get_opt(&format!("{slug}-db-credentials")).await.is_ok_and(|c| c.is_some())
    })
    .await;
    let volume_uid = claims.get(&claim).await.expect("claim").metadata.uid;
    let password = secrets.get(&format!("{slug}-db-credentials")).await.expect("credentials").data.and_then(|d| d.get("password").cloned());
    let namespaces: Api<Namespace> = Api::all(s.client());
    let enforced = |n: &Namespace| n.metadata.labels.as_ref().and_then(|l| l.get("pod-security.kubernetes.io/enforce").cloned());
    assert_eq!(enforced(&namespaces.get(&ns).await.expect("namespace")).as_deref(), Some("baseline"));

    s.restart_operator_with(support::fixtures::example_config()).await;
    s.wait_object(namespaces, &ns, |n| enforced(n).as_deref() == Some("restricted")).await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(s.client(), &ns);
    s.wait_object(statefulsets, &format!("{slug}-db"), |sts| {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|p| p.containers[0].image_pull_policy.as_deref() == Some("Always"))
    })
    .await;
    let quotas: Api<ResourceQuota> = Api::namespaced(s.client(), &ns);
    s.wait_object(quotas, "tenant-quota", |q| {
        q.spec.as_ref().and_then(|s| s.hard.as_ref()).and_then(|h| h.get("pods")).is_some_and(|p| p.0 == "50")
    })
    .await;
    assert_eq!(claims.get(&claim).await.expect("the volume is kept").metadata.uid, volume_uid, "the same volume");
    let kept = secrets.get(&format!("{slug}-db-credentials")).await.expect("credentials").data.and_then(|d| d.get("password").cloned());
    assert_eq!(kept, password, "the password is kept");
    s.cleanup().await;
}

/// An Account Admin creates TenantUsers by plain RBAC: the account namespace's quota stops
/// them at the configured count (`namespaces.accountQuota`), so one tenant cannot fill etcd,
/// nor the operator's work queue, with users.
#[tokio::test]
async fn an_account_admin_cannot_create_users_past_the_account_quota() {
    let mut config = support::fixtures::example_config();
    config.namespaces.account_quota.insert("count/tenantusers.tenancy.platform.dev".into(), Quantity("3".into()));
    let s = Scenario::start_with(config).await;
    let (slug, people) = hostile_tenant(&s, "crowd").await;
    let (_, admin) = people.iter().find(|(person, _)| *person == "admin").expect("the Account Admin");
    let users: Api<TenantUser> = Api::namespaced(admin.clone(), &format!("{slug}-account"));
    let third = support::fixtures::user("third", &slug, &format!("third@{slug}.example"), "third", &["Analyst"], &[]);
    users.create(&PostParams::default(), &third).await.expect("the third user fits the quota");
    let fourth = support::fixtures::user("fourth", &slug, &format!("fourth@{slug}.example"), "fourth", &["Analyst"], &[]);
    // The quota controller counts the third user a moment after it was created.
    let quota: Api<ResourceQuota> = Api::namespaced(s.client(), &format!("{slug}-account"));
    s.wait_for("the third user counted", || async {
        quota.get("tenant-quota").await.is_ok_and(|q| {
            q.status.and_then(|st| st.used).and_then(|u| u.get("count/tenantusers.tenancy.platform.dev").cloned())
                == Some(Quantity("3".into()))
        })
    })
    .await;
    let message = refusal(users.create(&PostParams::default(), &fourth).await, "the Account Admin creates a fourth user");
    assert!(
        message.contains("exceeded quota: tenant-quota, requested: count/tenantusers.tenancy.platform.dev=1, used: count/tenantusers.tenancy.platform.dev=3, limited: count/tenantusers.tenancy.platform.dev=3"),
        "{message}"
    );
    let _ = users.delete("third", &DeleteParams::default()).await;
    s.cleanup().await;
}
