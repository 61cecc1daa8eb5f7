use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};

use super::*;

fn ingress() -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {
            "name": "xconsole", "namespace": "acme-dev", "resourceVersion": "42",
            "labels": {LABEL_TENANT: "acme", LABEL_ENVIRONMENT: "dev", "app.kubernetes.io/managed-by": "tenant-operator", "tenancy.platform.dev/other": "x"},
            "annotations": {ANNOTATION_APPLIED_HASH: "00000000000000ff", ANNOTATION_TENANT_UID: "uid-1", "kubectl.kubernetes.io/last-applied-configuration": "{…}"},
            "managedFields": [{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {"f:ingressClassName": {}}}}]
        },
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "a"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    }))
    .expect("ingress")
}

#[test]
fn keeps_what_decisions_read() {
    let child = Child::from_object(ChildKind::Ingress, &ingress());
    assert_eq!((child.name(), child.namespace(), child.resource_version()), ("xconsole", Some("acme-dev"), Some("42")));
    assert_eq!(child.label(LABEL_TENANT), Some("acme"));
    assert_eq!(child.label(LABEL_ENVIRONMENT), None, "kept on Namespaces only");
    assert_eq!(Child::from_object(ChildKind::Namespace, &ingress()).label(LABEL_ENVIRONMENT), Some("dev"));
    assert_eq!(child.label("tenancy.platform.dev/other"), None, "a key of the operator's prefix that no decision reads");
    assert_eq!(child.label("app.kubernetes.io/managed-by"), None, "not the operator's prefix");
    assert_eq!(child.annotation(ANNOTATION_TENANT_UID), None, "kept on Namespaces only");
    assert_eq!(Child::from_object(ChildKind::Namespace, &ingress()).annotation(ANNOTATION_TENANT_UID), Some("uid-1"));
    assert_eq!(child.annotation("kubectl.kubernetes.io/last-applied-configuration"), None);
    assert_eq!(child.applied_hash(), Some(0xff));
    assert!(child.written_by_operator() && !child.is_terminating());
    assert!(child.stamped(), "the tenant-UID stamp is kept as a flag on every kind");
    assert_eq!(child.data(), json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}));
    let applied = json!({"metadata": {"name": "xconsole"}, "spec": {"ingressClassName": "nginx"}});
    assert_eq!(child.fingerprint(), fingerprint::of_desired(ChildKind::Ingress, &applied));
}

#[test]
fn an_object_the_operator_never_wrote() {
    let mut object = ingress();
    object.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some("kubectl".into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(json!({"f:spec": {}}))),
        ..Default::default()
    }]);
    object.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    let child = Child::from_object(ChildKind::Ingress, &object);
    assert!(!child.written_by_operator() && child.is_terminating());
    object.metadata.annotations = None;
    assert!(!Child::from_object(ChildKind::Ingress, &object).stamped());
    assert_eq!(child.fingerprint(), 0);
    assert_eq!(child.applied_hash(), Some(0xff));
}

#[test]
fn long_values_survive_packing_up_to_the_cap_and_longer_ones_are_left_out() {
    let mut object = ingress();
    let longest = "x".repeat(MAX_KEPT_VALUE);
    let unknown = "tenancy.platform.dev/note".to_string();
    object.metadata.annotations = Some(
        [
            (ANNOTATION_USER.to_string(), longest.clone()),
            (ANNOTATION_DATABASE_PROVIDER.to_string(), "y".repeat(MAX_KEPT_VALUE + 1)),
            (unknown.clone(), "v".repeat(200_000)),
        ]
        .into(),
    );
    let child = Child::from_object(ChildKind::Ingress, &object);
    assert_eq!(child.annotation(ANNOTATION_USER), Some(longest.as_str()));
    assert_eq!(child.annotation(ANNOTATION_DATABASE_PROVIDER), None, "longer than any value the operator writes");
    assert_eq!(child.annotation(&unknown), None, "a key no decision reads");
    assert_eq!(child.name(), "xconsole");
    assert!(child.bytes.len() < 400, "{} bytes held", child.bytes.len());
}

#[test]
fn a_quota_is_counted_once_its_status_uses_every_resource_it_limits() {
    let quota = |status: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "tenant-quota", "namespace": "acme-account"},
            "spec": {"hard": {"configmaps": "10", "count/tenantusers.tenancy.platform.dev": "500"}},
            "status": status,
        }))
        .expect("quota")
    };
    let counted = |status: Value| Child::from_object(ChildKind::ResourceQuota, &quota(status)).quota_counted();
    assert!(!counted(json!({})), "not counted yet");
    assert!(!counted(json!({"hard": {"configmaps": "10", "count/tenantusers.tenancy.platform.dev": "500"}, "used": {"configmaps": "1"}})));
    assert!(counted(json!({"used": {"configmaps": "1", "count/tenantusers.tenancy.platform.dev": "0"}})));
    assert!(!Child::from_object(ChildKind::Ingress, &ingress()).quota_counted(), "only quotas are counted");
}

#[test]
fn an_http_route_keeps_its_generation_and_what_gateway_controllers_said_in_short() {
    let long = "x".repeat(5000);
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "xconsole", "namespace": "acme-dev", "generation": 3, "labels": {LABEL_TENANT: "acme"}},
        "spec": {"hostnames": ["acme-dev.xconsole.example.com"], "rules": [{"backendRefs": [{"name": "xconsole", "port": 80}]}]},
        "status": {"parents": [{
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gw", "sectionName": "https"},
            "controllerName": "example.com/gateway",
            "conditions": [
                {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": long, "observedGeneration": 3,
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "", "observedGeneration": 2,
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Programmed", "status": "True", "reason": "Programmed", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        }]}
    }))
    .expect("route");
    let child = Child::from_object(ChildKind::HttpRoute, &route);
    let data = child.data();
    assert_eq!(data["metadata"]["generation"], 3);
    let parent = &data["status"]["parents"][0];
    assert_eq!(parent["parentRef"], json!({"name": "public", "namespace": "gw", "sectionName": "https"}));
    let conditions = parent["conditions"].as_array().expect("conditions");
    assert_eq!(conditions.len(), 2, "only Accepted and ResolvedRefs: {conditions:?}");
    assert_eq!((conditions[0]["reason"].as_str(), conditions[0]["observedGeneration"].as_i64()), (Some("NotAllowedByListeners"), Some(3)));
    assert_eq!(conditions[0]["message"].as_str().map(str::len), Some(MAX_KEPT_MESSAGE), "a long message is cut");
    assert_eq!(conditions[1]["observedGeneration"], 2);
    assert!(data.pointer("/spec").is_none(), "the spec is the operator's: its fingerprint covers it");
    assert!(child.stored().len() < 600, "{} bytes", child.stored().len());
}
