//! Limits the real API server enforces on every object (label syntax, annotation size) and on
//! pods (LimitRange defaults, ResourceQuota admission), and the StatefulSet controller's pods.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, LimitRange, Namespace, Pod, ResourceQuota};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn api_err<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> kube::core::Status {
    match r {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn fake_with_namespace(ns: &str) -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    Api::<Namespace>::all(fake.client()).create(&PostParams::default(), &obj(json!({"metadata": {"name": ns}}))).await.unwrap();
    fake
}

#[tokio::test]
async fn labels_follow_the_real_syntax_and_length_limits() {
    let fake = fake_with_namespace("a").await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "a");
    let with_labels = |labels: Value| -> ConfigMap { obj(json!({"metadata": {"name": "cm", "labels": labels}})) };
    let long = "u".repeat(64);
    let s = api_err(api.create(&PostParams::default(), &with_labels(json!({"tenancy.platform.dev/user": long}))).await);
    assert_eq!(s.code, 422);
    assert_eq!(
        s.message,
        format!("ConfigMap \"cm\" is invalid: metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters")
    );
    assert_eq!(s.details.unwrap().causes[0].field, "metadata.labels");

    let s = api_err(api.create(&PostParams::default(), &with_labels(json!({"a": "jane@acme.example"}))).await);
    assert_eq!(
        s.message,
        "ConfigMap \"cm\" is invalid: metadata.labels: Invalid value: \"jane@acme.example\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
    );
    let s = api_err(api.create(&PostParams::default(), &with_labels(json!({"Bad.Prefix/x": "v"}))).await);
    assert!(s.message.contains("Invalid value: \"Bad.Prefix/x\": prefix part a lowercase RFC 1123 subdomain"), "{}", s.message);
    let s = api_err(api.create(&PostParams::default(), &with_labels(json!({"a/b/c": "v"}))).await);
    assert!(s.message.contains("a qualified name must consist of"), "{}", s.message);
    let name = "n".repeat(64);
    let s = api_err(api.create(&PostParams::default(), &with_labels(json!({ name.clone(): "v" }))).await);
    assert!(s.message.contains(&format!("Invalid value: \"{name}\": name part must be no more than 63 characters")), "{}", s.message);

    // Valid: a prefixed key, an empty value, 63 characters.
    api.create(&PostParams::default(), &with_labels(json!({"example.com/My_Name.x": "", "k": "v".repeat(63)}))).await.unwrap();
    // Updates are checked too.
    let mut cm = api.get("cm").await.unwrap();
    cm.metadata.labels.get_or_insert_default().insert("k".into(), "v".repeat(64));
    assert_eq!(api_err(api.replace("cm", &PostParams::default(), &cm).await).code, 422);
    // Annotations: at most 256 KiB together.
    let big: ConfigMap = obj(json!({"metadata": {"name": "big", "annotations": {"a": "x".repeat(256 * 1024)}}}));
    let s = api_err(api.create(&PostParams::default(), &big).await);
    assert_eq!(s.message, "ConfigMap \"big\" is invalid: metadata.annotations: Too long: must have at most 262144 bytes");
}

fn statefulset(resources: Value) -> StatefulSet {
    obj(json!({
        "metadata": {"name": "db", "namespace": "a"},
        "spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "postgres", "image": "postgres:16", "resources": resources}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        }
    }))
}

fn quota(hard: Value) -> ResourceQuota {
    obj(json!({"metadata": {"name": "tenant-quota", "namespace": "a"}, "spec": {"hard": hard}}))
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn statefulset_pods_go_through_quota_admission_and_refusals_are_events() {
    let fake = fake_with_namespace("a").await;
    let client = fake.client();
    Api::<ResourceQuota>::namespaced(client.clone(), "a")
        .create(&PostParams::default(), &quota(json!({"requests.cpu": "2", "requests.memory": "4Gi", "pods": "10"})))
        .await
        .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), "a").create(&PostParams::default(), &statefulset(json!({}))).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "a");
    let message = "create Pod db-0 in StatefulSet db failed error: pods \"db-0\" is forbidden: failed quota: tenant-quota: must specify requests.cpu for: postgres; requests.memory for: postgres";
    eventually("the FailedCreate Event", || fake.objects("v1", "Event").iter().any(|e| e["message"] == message)).await;
    let list = events.list(&ListParams::default()).await.unwrap().items;
    let e = list.iter().find(|e| e.reason.as_deref() == Some("FailedCreate")).unwrap();
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!((e.involved_object.kind.as_deref(), e.involved_object.name.as_deref()), (Some("StatefulSet"), Some("db")));
    fake.settle();
    assert_eq!(fake.objects("v1", "Event").len(), 1, "a repeated refusal is not a new Event");
    assert!(fake.object("v1", "Pod", "a", "db-0").is_none());
    let sts = Api::<StatefulSet>::namespaced(client.clone(), "a").get("db").await.unwrap();
    assert!(sts.status.and_then(|s| s.ready_replicas).unwrap_or(0) == 0);

    // A LimitRange with defaults (its `default` also becomes `defaultRequest`) lets it in.
    let lr: LimitRange = obj(json!({"metadata": {"name": "defaults", "namespace": "a"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"}}]}}));
    let stored = Api::<LimitRange>::namespaced(client.clone(), "a").create(&PostParams::default(), &lr).await.unwrap();
    let item = &stored.spec.unwrap().limits[0];
    assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "500m");
    eventually("the pod", || fake.object("v1", "Pod", "a", "db-0").is_some()).await;
    let pod: Pod = Api::namespaced(client.clone(), "a").get("db-0").await.unwrap();
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "512Mi");
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"], "db-0");
    assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].kind, "StatefulSet");
    let vols = pod.spec.as_ref().unwrap().volumes.clone().unwrap();
    assert_eq!(vols[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-db-0");
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[tokio::test]
async fn pods_created_through_the_api_are_counted_against_the_quota() {
    let fake = fake_with_namespace("a").await;
    let client = fake.client();
    Api::<ResourceQuota>::namespaced(client.clone(), "a")
        .create(&PostParams::default(), &quota(json!({"requests.cpu": "1", "pods": "2"})))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "a");
    let pod = |name: &str, cpu: &str| -> Pod {
        obj(
            json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": cpu}}}]}}),
        )
    };
    // Requests default to the limits, so this one passes the constraint.
    let p = pods.create(&PostParams::default(), &pod("p1", "600m")).await.unwrap();
    assert_eq!(p.spec.unwrap().containers[0].resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0, "600m");
    let s = api_err(pods.create(&PostParams::default(), &pod("p2", "500m")).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(s.message, "pods \"p2\" is forbidden: exceeded quota: tenant-quota, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1");
    pods.create(&PostParams::default(), &pod("p2", "400m")).await.unwrap();
    let s = api_err(pods.create(&PostParams::default(), &pod("p3", "0")).await);
    assert!(s.message.contains("exceeded quota: tenant-quota, requested: pods=1, used: pods=2, limited: pods=2"), "{}", s.message);
}

#[tokio::test]
async fn event_notes_are_limited_to_1024_bytes_of_utf8() {
    use k8s_openapi::api::events::v1::Event as EventV1;
    let fake = fake_with_namespace("a").await;
    let api: Api<EventV1> = Api::namespaced(fake.client(), "a");
    let event = |name: &str, note: &str| -> EventV1 {
        obj(json!({
            "metadata": {"name": name},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "x/y", "reportingInstance": "i",
            "action": "A", "reason": "R", "type": "Normal", "note": note,
            "regarding": {"apiVersion": "v1", "kind": "Namespace", "name": "a"},
        }))
    };
    api.create(&PostParams::default(), &event("exact", &"a".repeat(1024))).await.unwrap();
    // As measured on a real 1.36 API server: 1025 bytes, or 400 three-byte characters, are refused.
    for (name, note) in [("over", "a".repeat(1025)), ("cjk", "株".repeat(400))] {
        let s = api_err(api.create(&PostParams::default(), &event(name, &note)).await);
        assert_eq!(s.code, 422, "{name}");
        // The real server names the kind `Event` without its group here; the fake is generic.
        let expected = format!("\"{name}\" is invalid: message: Invalid value: \"\": can have at most 1024 characters");
        assert!(s.message.ends_with(&expected), "{}", s.message);
        assert_eq!(s.details.unwrap().causes[0].field, "message");
    }
}

/// The quota controller counts objects into `status.used`, and admission refuses the object one
/// past a count (messages as a real 1.36 server words them). A custom resource is counted by
/// `count/<plural>.<group>`.
#[tokio::test]
async fn object_counts_are_counted_into_the_quota_status_and_enforced() {
    let fake = fake_with_namespace("a").await;
    let client = fake.client();
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "a");
    quotas.create(&PostParams::default(), &quota(json!({"configmaps": "2", "count/tenantusers.tenancy.platform.dev": "1"}))).await.unwrap();
    let counted = |want: Value| {
        let quotas = quotas.clone();
        async move {
            for _ in 0..200 {
                let status = serde_json::to_value(quotas.get("tenant-quota").await.unwrap().status).unwrap();
                if status["used"] == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("quota status never became {want}");
        }
    };
    counted(json!({"configmaps": "0", "count/tenantusers.tenancy.platform.dev": "0"})).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    for name in ["one", "two"] {
        maps.create(&PostParams::default(), &obj(json!({"metadata": {"name": name}}))).await.unwrap();
        // Admission reads the counted status, as on the real server.
        counted(json!({"configmaps": if name == "one" { "1" } else { "2" }, "count/tenantusers.tenancy.platform.dev": "0"})).await;
    }
    let s = api_err(maps.create(&PostParams::default(), &obj(json!({"metadata": {"name": "three"}}))).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(s.message, "configmaps \"three\" is forbidden: exceeded quota: tenant-quota, requested: configmaps=1, used: configmaps=2, limited: configmaps=2");

    let users: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "a",
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "TenantUser"),
            "tenantusers",
        ),
    );
    let user = |name: &str, email: &str| -> kube::core::DynamicObject {
        obj(json!({"apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "TenantUser", "metadata": {"name": name},
            "spec": {"tenant": "a", "email": email, "username": name, "firstName": "A", "lastName": "B", "roles": ["Analyst"]}}))
    };
    users.create(&PostParams::default(), &user("u1", "u1@example.com")).await.unwrap();
    counted(json!({"configmaps": "2", "count/tenantusers.tenancy.platform.dev": "1"})).await;
    let s = api_err(users.create(&PostParams::default(), &user("u2", "u2@example.com")).await);
    assert!(
        s.message.ends_with("is forbidden: exceeded quota: tenant-quota, requested: count/tenantusers.tenancy.platform.dev=1, used: count/tenantusers.tenancy.platform.dev=1, limited: count/tenantusers.tenancy.platform.dev=1"),
        "{}",
        s.message
    );
}
