use super::*;

const MINIMAL: &str = "clusters:\n  uk:\n    domain: uk.example.com\n";

fn error(text: &str) -> String {
    Config::parse(text, "test.yaml").unwrap_err().to_string()
}

#[test]
fn example_configuration_is_valid() {
    let config = Config::parse(include_str!("../../examples/config.yaml"), "examples/config.yaml").unwrap();
    assert_eq!(config.clusters.len(), 3);
    assert_eq!(config.applications["u-assist"].service_port, 8080);
    assert_eq!(config.database.default_provider, DatabaseProvider::Statefulset);
}

#[test]
fn default_hostname_templates_are_injective_and_others_are_warned_about() {
    let config = Config::parse(MINIMAL, "c.yaml").unwrap();
    assert_eq!(config.hostname_warnings(), Vec::<String>::new());
    let loose = Config::parse(&format!("{MINIMAL}hostnames:\n  prod: \"{{tenant}}-{{app}}.{{domain}}\"\n"), "c.yaml").unwrap();
    let warnings = loose.hostname_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("hostnames.prod"), "{warnings:?}");
}

#[test]
fn pod_security_levels_are_checked() {
    assert!(error(&format!("{MINIMAL}namespaces:\n  podSecurity:\n    enforce: strict\n")).contains("namespaces.podSecurity.enforce"));
    let config = Config::parse(MINIMAL, "c.yaml").unwrap();
    assert_eq!(config.namespaces.pod_security.enforce, "restricted");
    assert_eq!(config.namespaces.pod_security.warn, "restricted");
    assert_eq!(config.namespaces.pod_security.enforce_in(Environment::Dev), "restricted");
    let dev_baseline =
        Config::parse(&format!("{MINIMAL}namespaces:\n  podSecurity:\n    environments:\n      dev: baseline\n"), "c.yaml").unwrap();
    assert_eq!(dev_baseline.namespaces.pod_security.enforce_in(Environment::Dev), "baseline");
    assert_eq!(dev_baseline.namespaces.pod_security.enforce_in(Environment::Staging), "restricted");
    let bad = error(&format!("{MINIMAL}namespaces:\n  podSecurity:\n    environments:\n      dev: open\n"));
    assert!(bad.contains("namespaces.podSecurity.environments.dev"), "{bad}");
    assert!(error(&format!("{MINIMAL}namespaces:\n  podSecurity:\n    environments:\n      qa: baseline\n"))
        .contains("namespaces.podSecurity.environments"));
}

#[test]
fn the_quota_merges_configured_keys_over_the_defaults() {
    let config = Config::parse(MINIMAL, "c.yaml").unwrap();
    assert_eq!(config.namespaces.quota(), default_quota());
    assert_eq!(config.namespaces.quota()["services.nodeports"].0, "0");
    assert_eq!(config.namespaces.quota()["services.loadbalancers"].0, "0");
    let raised = Config::parse(&format!("{MINIMAL}namespaces:\n  quota:\n    pods: \"200\"\n"), "c.yaml").unwrap();
    let hard = raised.namespaces.quota();
    assert_eq!(hard["pods"].0, "200");
    assert_eq!(hard["limits.cpu"], default_quota()["limits.cpu"]);
    assert!(config.namespaces.account_quota().contains_key("secrets"));
    let bad = error(&format!("{MINIMAL}namespaces:\n  quota:\n    requests.cpu: lots\n"));
    assert!(bad.contains("namespaces.quota.requests.cpu"), "{bad}");
}

#[test]
fn service_types_are_known_and_keep_cluster_ip() {
    let config = Config::parse(MINIMAL, "c.yaml").unwrap();
    assert_eq!(config.namespaces.service_types, ["ClusterIP"]);
    assert!(config.namespaces.require_image_pull_always);
    assert!(error(&format!("{MINIMAL}namespaces:\n  serviceTypes: [ClusterIP, Ingress]\n")).contains("namespaces.serviceTypes"));
    assert!(error(&format!("{MINIMAL}namespaces:\n  serviceTypes: [NodePort]\n")).contains("must contain ClusterIP"));
}

#[test]
fn quantities_are_recognised() {
    for good in ["1", "500m", "16Gi", "0.5", "1e3", "100M", "+1"] {
        assert!(is_quantity(good), "{good}");
    }
    for bad in ["", "lots", "1.", "5 Gi", "1GiB", "Gi"] {
        assert!(!is_quantity(bad), "{bad}");
    }
}

#[test]
fn minimal_configuration_gets_defaults() {
    let config = Config::parse(MINIMAL, "test.yaml").unwrap();
    assert_eq!(config.hostnames, HostnameTemplates::default());
    assert_eq!(config.database.password_length, 32);
    assert_eq!(config.database.statefulset.image, "postgres:17");
    assert_eq!(config.network_policy.ingress_controller_namespace, "ingress-nginx");
}

#[test]
fn unknown_field_is_named_with_its_path_and_file() {
    let err = error("clusters:\n  uk:\n    domain: uk.example.com\n    ingresClass: nginx\n");
    assert!(err.starts_with("configuration file test.yaml: field `clusters.uk.ingresClass`"), "{err}");
    assert!(err.contains("unknown field `ingresClass`"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let err = error("clusters:\n  uk:\n    domain: uk.example.com\napplications:\n  x:\n    serviceName: x\n    servicePort: http\n");
    assert!(err.contains("field `applications.x.servicePort`"), "{err}");
}

#[test]
fn missing_clusters() {
    assert!(error("applications: {}\n").contains("missing field `clusters`"));
    assert!(error("clusters: {}\n").contains("field `clusters`: at least one cluster"));
}

#[test]
fn bad_domain_and_keys() {
    assert!(error("clusters:\n  uk:\n    domain: UK_example\n").contains("field `clusters.uk.domain`"));
    assert!(error("clusters:\n  UK:\n    domain: uk.example.com\n").contains("field `clusters.UK`"));
}

#[test]
fn hostname_templates_must_keep_tenants_and_environments_apart() {
    let base = MINIMAL.to_string();
    let err = error(&(base.clone() + "hostnames:\n  prod: \"{app}.{domain}\"\n"));
    assert!(err.contains("field `hostnames.prod`") && err.contains("{tenant}"), "{err}");
    let err = error(&(base.clone() + "hostnames:\n  nonProd: \"{tenant}.{app}.{domain}\"\n"));
    assert!(err.contains("field `hostnames.nonProd`") && err.contains("{env}"), "{err}");
    let err = error(&(base + "hostnames:\n  prod: \"{tenant}.{app}.{region}\"\n"));
    assert!(err.contains("unknown placeholder"), "{err}");
}

#[test]
fn database_settings_are_checked() {
    let err = error(&(MINIMAL.to_string() + "database:\n  defaultProvider: external\n"));
    assert!(err.contains("field `database.external`"), "{err}");
    let err = error(&(MINIMAL.to_string() + "database:\n  passwordLength: 8\n"));
    assert!(err.contains("field `database.passwordLength`"), "{err}");
    let err = error(&(MINIMAL.to_string() + "database:\n  defaultProvider: mysql\n"));
    assert!(err.contains("field `database.defaultProvider`") && err.contains("unknown variant `mysql`"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let err = Config::load(Path::new("/nonexistent/config.yaml")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/config.yaml"), "{err}");
}

#[test]
fn gateway_routing_needs_a_gateway_and_names_the_bad_field() {
    let gateway = "clusters:\n  uk:\n    domain: uk.example.com\n    routing: gateway\n";
    assert!(error(gateway).contains("field `clusters.uk.gateway`"), "{}", error(gateway));
    let ok = Config::parse(&format!("{gateway}    gateway:\n      name: public\n      namespace: gateway-system\n"), "c.yaml").unwrap();
    let uk = &ok.clusters["uk"];
    assert_eq!(uk.routing, Routing::Gateway);
    assert!(uk.ingress_class_name.is_none() && uk.tls.is_none(), "no ingress class or TLS needed");
    let reference = uk.routing_gateway().unwrap();
    assert_eq!(reference.data_plane_namespace(), "gateway-system", "the data plane defaults to the Gateway's namespace");
    assert_eq!(ok.tenant_header, "X-Tenant-ID");
    let bad_namespace = format!("{gateway}    gateway:\n      name: public\n      namespace: Gateway_System\n");
    assert!(error(&bad_namespace).contains("clusters.uk.gateway.namespace"), "{}", error(&bad_namespace));
    let bad_section = format!("{gateway}    gateway:\n      name: public\n      namespace: gw\n      sectionName: \"no way\"\n");
    assert!(error(&bad_section).contains("clusters.uk.gateway.sectionName"));
    let bad_data_plane = format!("{gateway}    gateway:\n      name: public\n      namespace: gw\n      dataPlaneNamespace: \"-x\"\n");
    assert!(error(&bad_data_plane).contains("clusters.uk.gateway.dataPlaneNamespace"));
    let unknown = format!("{gateway}    gateway:\n      name: public\n      namespace: gw\n      listener: https\n");
    assert!(error(&unknown).contains("clusters.uk.gateway"), "{}", error(&unknown));
    let bad_routing = "clusters:\n  uk:\n    domain: uk.example.com\n    routing: mesh\n";
    assert!(error(bad_routing).contains("clusters.uk.routing"), "{}", error(bad_routing));
    assert!(error(&format!("{MINIMAL}tenantHeader: \"X Tenant\"\n")).contains("field `tenantHeader`"));
    assert!(error(&format!("{MINIMAL}tenantHeader: x-tenant-environment\n")).contains("field `tenantHeader`"));
}

#[test]
fn a_region_may_name_its_gateway_while_still_on_ingresses() {
    let text = "clusters:\n  uk:\n    domain: uk.example.com\n    gateway:\n      name: public\n      namespace: gw\n";
    let config = Config::parse(text, "c.yaml").unwrap();
    assert_eq!(config.clusters["uk"].routing, Routing::Ingress);
    assert!(config.clusters["uk"].routing_gateway().is_none());
}
