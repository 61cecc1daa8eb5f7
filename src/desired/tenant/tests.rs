use super::*;
use crate::types::{DeletionPolicy, QuotaSpec, TenantSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub(crate) fn example_config() -> Config {
    Config::parse(include_str!("../../../examples/config.yaml"), "examples/config.yaml").expect("example config is valid")
}

pub(crate) fn acme() -> Tenant {
    serde_yaml::from_str(include_str!("../../../examples/tenant-acme.yaml")).expect("example tenant parses")
}

fn object<'a>(plan: &'a TenantPlan, kind: ChildKind, namespace: &str, name: &str) -> &'a serde_json::Value {
    plan.objects()
        .find(|o| o.kind == kind && o.namespace.as_deref() == Some(namespace) && o.name == name)
        .map(|o| &o.object)
        .unwrap_or_else(|| panic!("no {kind:?} {namespace}/{name}"))
}

#[test]
fn one_namespace_per_environment_with_tenant_labels() {
    let plan = TenantPlan::build(&acme(), &example_config()).unwrap();
    let namespaces: Vec<_> = plan.objects().filter(|o| o.kind == ChildKind::Namespace).map(|o| o.name.clone()).collect();
    assert_eq!(namespaces, ["acme-account", "acme-dev", "acme-staging", "acme-prod"]);
    for object in plan.objects() {
        let labels = &object.object["metadata"]["labels"];
        assert_eq!(labels["tenancy.platform.dev/tenant"], "acme", "{}", object.describe());
        let in_account = object.name == "acme-account" || object.namespace.as_deref() == Some("acme-account");
        assert_eq!(labels["tenancy.platform.dev/environment"].is_string(), !in_account, "{}", object.describe());
        assert!(object.object["metadata"]["ownerReferences"].is_null(), "{} has owner references", object.describe());
    }
}

#[test]
fn the_account_namespace_holds_no_workloads() {
    let plan = TenantPlan::build(&acme(), &example_config()).unwrap();
    assert_eq!(plan.account.namespace, "acme-account");
    let kinds: Vec<ChildKind> = plan.account.objects.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [ChildKind::Namespace, ChildKind::RoleBinding, ChildKind::ResourceQuota],
        "the Namespace, the grant, its count quota"
    );
    let labels = &plan.account.objects[0].object["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["app.kubernetes.io/component"], "account");
    let inside: Vec<String> = plan.objects().filter(|o| o.namespace.as_deref() == Some("acme-account")).map(|o| o.describe()).collect();
    assert_eq!(
        inside,
        ["RoleBinding acme-account/tenant-operator:tenant-namespace", "ResourceQuota acme-account/tenant-quota"],
        "nothing else of the Tenant inside it"
    );
}

/// Issue 20 §6: right after each of its namespaces, the operator's grant: the shipped
/// ClusterRole bound to the operator's own ServiceAccount, in that namespace only.
#[test]
fn every_namespace_gets_the_operators_grant_right_after_it() {
    let mut config = example_config();
    config.operator.service_account = "ops".into();
    config.operator.namespace = "platform".into();
    config.operator.namespace_role = "ops-tenant-operator:tenant-namespace".into();
    let plan = TenantPlan::build(&acme(), &config).unwrap();
    let mut lists: Vec<(&str, &[DesiredObject])> = vec![(plan.account.namespace.as_str(), &plan.account.objects)];
    lists.extend(plan.environments.iter().map(|env| (env.namespace.as_str(), env.objects.as_slice())));
    for (namespace, objects) in lists {
        assert_eq!(objects[0].kind, ChildKind::Namespace);
        let grant = &objects[1];
        assert_eq!(
            (grant.kind, grant.name.as_str(), grant.namespace.as_deref()),
            (ChildKind::RoleBinding, "ops-tenant-operator:tenant-namespace", Some(namespace))
        );
        assert_eq!(
            grant.object["roleRef"],
            serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ops-tenant-operator:tenant-namespace"})
        );
        assert_eq!(grant.object["subjects"], serde_json::json!([{"kind": "ServiceAccount", "name": "ops", "namespace": "platform"}]));
        assert_eq!(objects.iter().filter(|o| o.kind == ChildKind::RoleBinding).count(), 1, "users' bindings are the user controller's");
    }
}

#[test]
fn ingress_hosts_per_environment_with_tls_and_class() {
    let plan = TenantPlan::build(&acme(), &example_config()).unwrap();
    let prod = object(&plan, ChildKind::Ingress, "acme-prod", "xconsole");
    assert_eq!(prod["spec"]["rules"][0]["host"], "acme.xconsole.uk.cloud.example.com");
    assert_eq!(prod["spec"]["ingressClassName"], "nginx");
    assert_eq!(prod["spec"]["tls"][0]["secretName"], "xconsole-tls");
    assert_eq!(prod["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt-prod");
    let backend = &prod["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "xconsole");
    assert_eq!(backend["port"]["number"], 80);
    let dev = object(&plan, ChildKind::Ingress, "acme-dev", "u-assist");
    assert_eq!(dev["spec"]["rules"][0]["host"], "acme-dev.u-assist.uk.cloud.example.com");
    assert_eq!(dev["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 8080);
}

#[test]
fn endpoints_list_every_application_in_every_environment() {
    let plan = TenantPlan::build(&acme(), &example_config()).unwrap();
    assert_eq!(plan.endpoints.len(), 6);
    assert!(plan.endpoints.contains(&EndpointStatus {
        application: "xconsole".into(),
        environment: Environment::Prod,
        url: "https://acme.xconsole.uk.cloud.example.com/".into()
    }));
    assert!(plan.endpoints.contains(&EndpointStatus {
        application: "u-assist".into(),
        environment: Environment::Staging,
        url: "https://acme-staging.u-assist.uk.cloud.example.com/".into()
    }));
}

#[test]
fn changing_cluster_moves_every_hostname() {
    let config = example_config();
    let mut tenant = acme();
    tenant.spec.cluster = "eu".into();
    let plan = TenantPlan::build(&tenant, &config).unwrap();
    for endpoint in &plan.endpoints {
        assert!(endpoint.url.ends_with(".eu.cloud.example.com/"), "{}", endpoint.url);
        // eu has no TLS in the example configuration.
        assert!(endpoint.url.starts_with("http://"), "{}", endpoint.url);
    }
    let ingress = object(&plan, ChildKind::Ingress, "acme-prod", "xconsole");
    assert!(ingress["spec"]["tls"].is_null());
    assert!(ingress["metadata"]["annotations"].is_null());
}

#[test]
fn config_map_tells_applications_where_their_tenant_is() {
    let plan = TenantPlan::build(&acme(), &example_config()).unwrap();
    let data = &object(&plan, ChildKind::ConfigMap, "acme-staging", "tenant-config")["data"];
    assert_eq!(data["tenant-id"], "acme");
    assert_eq!(data["display-name"], "Acme Corp");
    assert_eq!(data["cluster"], "uk");
    assert_eq!(data["environment"], "staging");
    assert_eq!(data["database-secret"], "acme-db-credentials");
    assert_eq!(data["url.xconsole"], "https://acme-staging.xconsole.uk.cloud.example.com/");
}

#[test]
fn network_policy_admits_own_namespaces_and_ingress_controller_only() {
    let plan = TenantPlan::build(&acme(), &example_config()).unwrap();
    let policy = object(&plan, ChildKind::NetworkPolicy, "acme-dev", "tenant-isolation");
    assert_eq!(policy["spec"]["podSelector"], serde_json::json!({}));
    let from = &policy["spec"]["ingress"][0]["from"];
    assert_eq!(from[0]["namespaceSelector"]["matchExpressions"][0]["values"], serde_json::json!(["acme-dev", "acme-staging", "acme-prod"]));
    assert_eq!(from[1]["namespaceSelector"]["matchExpressions"][0]["values"], serde_json::json!(["ingress-nginx"]));
}

#[test]
fn every_environment_has_a_quota_with_spec_quota_over_the_defaults() {
    let config = example_config();
    let plan = TenantPlan::build(&acme(), &config).unwrap();
    let hard = &object(&plan, ChildKind::ResourceQuota, "acme-prod", "tenant-quota")["spec"]["hard"];
    assert_eq!(hard["requests.cpu"], "8");
    assert_eq!(hard["requests.memory"], "16Gi");
    assert_eq!(hard["pods"], "50");
    assert_eq!(hard["services.nodeports"], "0", "the configured default where spec.quota says nothing");
    // Without spec.quota (or with an empty one) every environment still has the default quota
    // and the LimitRange that lets pods without resources in.
    let mut tenant = acme();
    for quota in [None, Some(QuotaSpec::default())] {
        tenant.spec.quota = quota;
        let plan = TenantPlan::build(&tenant, &config).unwrap();
        for env in ["acme-dev", "acme-staging", "acme-prod"] {
            let hard = &object(&plan, ChildKind::ResourceQuota, env, "tenant-quota")["spec"]["hard"];
            assert_eq!(hard, &serde_json::to_value(config.namespaces.quota()).unwrap(), "{env}");
            object(&plan, ChildKind::LimitRange, env, "tenant-defaults");
        }
    }
}

#[test]
fn statefulset_database_objects() {
    let plan = TenantPlan::build(&acme(), &example_config()).unwrap();
    let sts = object(&plan, ChildKind::StatefulSet, "acme-prod", "acme-db");
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["serviceName"], "acme-db");
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "postgres:17");
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "1Gi");
    assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"], "Retain");
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"], "256Mi");
    let env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["name"], "acme-db-credentials");
    object(&plan, ChildKind::Service, "acme-prod", "acme-db");
    let connection = plan.environments[2].database.clone().unwrap();
    assert_eq!(connection.host, "acme-db.acme-prod.svc");
    assert_eq!(connection.dbname, "acme_prod");
    assert!(plan.objects().all(|o| o.kind != ChildKind::Secret), "passwords are never generated by builders");
}

/// The database pod passes Pod Security `restricted`, pulls `Always` and fits the default quota
/// (which needs requests and limits of cpu, memory and ephemeral storage, or the LimitRange's).
#[test]
fn the_database_pod_complies_with_the_namespace_profile() {
    let mut config = example_config();
    config.database.statefulset.resources = None;
    let plan = TenantPlan::build(&acme(), &config).unwrap();
    let pod = &object(&plan, ChildKind::StatefulSet, "acme-dev", "acme-db")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["fsGroup"], 999);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["runAsUser"], 999);
    assert!(security["privileged"].is_null() && security["capabilities"]["add"].is_null());
    assert!(pod["hostNetwork"].is_null() && pod["volumes"].is_null(), "only the claim template's volume");
    assert_eq!(container["imagePullPolicy"], "Always");
    for side in ["requests", "limits"] {
        for resource in ["cpu", "memory", "ephemeral-storage"] {
            assert!(container["resources"][side][resource].is_string(), "no {side}.{resource}");
        }
    }
    // Without the pull rule the server's default applies.
    config.namespaces.require_image_pull_always = false;
    let plan = TenantPlan::build(&acme(), &config).unwrap();
    assert!(object(&plan, ChildKind::StatefulSet, "acme-dev", "acme-db")["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"]
        .is_null());
}

#[test]
fn storage_class_and_size_from_spec() {
    let mut tenant = acme();
    tenant.spec.database = Some(crate::types::DatabaseSpec {
        provider: Some(DatabaseProvider::Statefulset),
        storage: Some(Quantity("5Gi".into())),
        storage_class_name: Some("fast".into()),
    });
    let plan = TenantPlan::build(&tenant, &example_config()).unwrap();
    let claim = &object(&plan, ChildKind::StatefulSet, "acme-dev", "acme-db")["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["storageClassName"], "fast");
    assert_eq!(claim["resources"]["requests"]["storage"], "5Gi");
}

#[test]
fn cloudnative_pg_cluster_per_environment() {
    let mut tenant = acme();
    tenant.spec.database = Some(crate::types::DatabaseSpec { provider: Some(DatabaseProvider::CloudnativePg), ..Default::default() });
    let plan = TenantPlan::build(&tenant, &example_config()).unwrap();
    let cluster = object(&plan, ChildKind::CnpgCluster, "acme-staging", "acme-db");
    assert_eq!(cluster["spec"]["imagePullPolicy"], "Always");
    assert!(cluster["spec"]["resources"]["limits"]["ephemeral-storage"].is_string());
    assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
    assert_eq!(cluster["spec"]["instances"], 1);
    assert_eq!(cluster["spec"]["bootstrap"]["initdb"]["database"], "acme_staging");
    assert_eq!(cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"], "acme-db-credentials");
    assert!(plan.objects().all(|o| o.kind != ChildKind::StatefulSet));
    assert_eq!(plan.environments[1].database.as_ref().unwrap().host, "acme-db-rw.acme-staging.svc");
}

#[test]
fn no_database_objects_for_none_and_external() {
    let config = example_config();
    for provider in [DatabaseProvider::None, DatabaseProvider::External] {
        let mut tenant = acme();
        tenant.spec.database = Some(crate::types::DatabaseSpec { provider: Some(provider), ..Default::default() });
        let plan = TenantPlan::build(&tenant, &config).unwrap();
        assert!(plan.objects().all(|o| !matches!(o.kind, ChildKind::StatefulSet | ChildKind::CnpgCluster | ChildKind::Service)));
        assert!(plan.environments.iter().all(|e| e.database.is_none()));
    }
    let mut tenant = acme();
    tenant.spec.database = Some(crate::types::DatabaseSpec { provider: Some(DatabaseProvider::None), ..Default::default() });
    let plan = TenantPlan::build(&tenant, &config).unwrap();
    assert!(object(&plan, ChildKind::ConfigMap, "acme-dev", "tenant-config")["data"]["database-secret"].is_null());
}

#[test]
fn unknown_cluster_and_application_are_typed_errors() {
    let config = example_config();
    let mut tenant = acme();
    tenant.spec.cluster = "mars".into();
    let err = TenantPlan::build(&tenant, &config).unwrap_err();
    assert_eq!(err.reason(), crate::types::Reason::UnknownCluster);
    assert_eq!(err.to_string(), "cluster \"mars\" is not in the operator configuration (known: eu, uk, us)");

    let mut tenant = acme();
    tenant.spec.applications.push("crm".into());
    let err = TenantPlan::build(&tenant, &config).unwrap_err();
    assert_eq!(err.reason(), crate::types::Reason::UnknownApplication);
    assert!(err.to_string().contains("\"crm\""), "{err}");
}

#[test]
fn external_provider_needs_configuration() {
    let mut config = example_config();
    config.database.external = None;
    let mut tenant = acme();
    tenant.spec.database = Some(crate::types::DatabaseSpec { provider: Some(DatabaseProvider::External), ..Default::default() });
    assert_eq!(TenantPlan::build(&tenant, &config).unwrap_err(), SpecError::ExternalDatabaseNotConfigured);
}

#[test]
fn single_environment_tenant() {
    let tenant = Tenant::new(
        "solo",
        TenantSpec {
            display_name: "Solo".into(),
            cluster: "us".into(),
            environments: vec![Environment::Prod],
            applications: vec![],
            database: None,
            quota: None,
            deletion_policy: DeletionPolicy::Delete,
            suspend: false,
            adopt_retained_from: None,
        },
    );
    let plan = TenantPlan::build(&tenant, &example_config()).unwrap();
    assert_eq!(plan.environments.len(), 1);
    assert!(plan.endpoints.is_empty());
    assert_eq!(plan.database_provider, DatabaseProvider::Statefulset);
}
