//! Tests of the fake API server itself: each behaviour the operator relies on, checked through
//! a real `kube::Client` over HTTP. The repository's CRDs (`crds/`) are served by default.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::CustomResource;
use kube::{Client, Discovery, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const CNPG_CLUSTER_CRD: &str = include_str!("../../../tests/data/cnpg-cluster-crd.yaml");

/// The fields of the operator's Tenant these tests read; the fake serves its real CRD.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize)]
#[kube(group = "tenancy.platform.dev", version = "v1alpha1", kind = "Tenant", status = "TenantStatus", schema = "disabled")]
#[serde(rename_all = "camelCase")]
struct TenantSpec {
    display_name: String,
    cluster: String,
    environments: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
}

/// The operator's TenantUser, as far as these tests write it.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize)]
#[kube(group = "tenancy.platform.dev", version = "v1alpha1", kind = "TenantUser", namespaced, schema = "disabled")]
#[serde(rename_all = "camelCase")]
struct TenantUserSpec {
    email: String,
    username: String,
    first_name: String,
    last_name: String,
    roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receive_email_notifications: Option<bool>,
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn cm(name: &str, data: Value) -> ConfigMap {
    obj(json!({"metadata": {"name": name}, "data": data}))
}

fn tenant(name: &str) -> Tenant {
    obj(json!({
        "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"displayName": "Acme Corp", "cluster": "uk", "environments": ["dev", "prod"]}
    }))
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn ns(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(&PostParams::default(), &obj(json!({"metadata": {"name": name}}))).await.unwrap();
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn ssa() -> PatchParams {
    PatchParams::apply("tenant-operator").force()
}

// ------------------------------------------------------------------ discovery

#[tokio::test]
async fn discovery_lists_builtins_and_crds() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            kinds.push((ar.group.clone(), ar.kind.clone(), caps.scope == kube::discovery::Scope::Namespaced));
        }
    }
    for (g, k, namespaced) in [
        ("", "Namespace", false),
        ("", "ConfigMap", true),
        ("", "Secret", true),
        ("", "Service", true),
        ("", "PersistentVolumeClaim", true),
        ("", "ResourceQuota", true),
        ("apps", "StatefulSet", true),
        ("networking.k8s.io", "Ingress", true),
        ("networking.k8s.io", "NetworkPolicy", true),
        ("rbac.authorization.k8s.io", "RoleBinding", true),
        ("rbac.authorization.k8s.io", "ClusterRole", false),
        ("coordination.k8s.io", "Lease", true),
        ("events.k8s.io", "Event", true),
        ("apiextensions.k8s.io", "CustomResourceDefinition", false),
        ("tenancy.platform.dev", "Tenant", false),
        ("tenancy.platform.dev", "TenantUser", true),
    ] {
        assert!(kinds.contains(&(g.to_string(), k.to_string(), namespaced)), "{g}/{k} missing from discovery: {kinds:?}");
    }
    let (_, caps) = discovery.resolve_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "Tenant")).unwrap();
    assert!(caps.subresources.iter().any(|(ar, _)| ar.plural == "status"), "tenants/status subresource advertised");
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn discovery_documents_short_names_and_categories() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let req = axum::http::Request::get("/apis/tenancy.platform.dev/v1alpha1").body(Vec::new()).unwrap();
    let list: Value = client.request(req).await.unwrap();
    let tenants = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "tenants").unwrap();
    assert_eq!(tenants["shortNames"], json!(["tn"]));
    assert_eq!(tenants["categories"], json!(["tenancy"]));
    assert_eq!(tenants["namespaced"], json!(false));
    let req = axum::http::Request::get("/api/v1").body(Vec::new()).unwrap();
    let core: Value = client.request(req).await.unwrap();
    let names: Vec<&str> = core["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"namespaces/status") && names.contains(&"namespaces/finalize"));
}

// ------------------------------------------------------------------ CRUD and errors

#[tokio::test]
async fn crud_round_trip() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let created = api.create(&PostParams::default(), &cm("a", json!({"k": "v"}))).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1 = created.resource_version().unwrap();
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());
    let mut got = api.get("a").await.unwrap();
    got.data.as_mut().unwrap().insert("k".into(), "w".into());
    let replaced = api.replace("a", &PostParams::default(), &got).await.unwrap();
    assert!(replaced.resource_version().unwrap().parse::<u64>().unwrap() > rv1.parse::<u64>().unwrap());
    assert_eq!(replaced.data.unwrap()["k"], "w");
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn not_found_and_already_exists_are_status_objects() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let s = api_err(api.get("missing").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "configmaps \"missing\" not found");
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    let s = api_err(api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    let tenants: Api<Tenant> = Api::all(fake.client());
    let s = api_err(tenants.get("nope").await.unwrap_err());
    assert_eq!(s.message, "tenants.tenancy.platform.dev \"nope\" not found");
    assert_eq!(s.details.unwrap().group, "tenancy.platform.dev");
}

#[tokio::test]
async fn stale_resource_version_is_conflict() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let first = api.create(&PostParams::default(), &cm("a", json!({"n": "1"}))).await.unwrap();
    let mut second = first.clone();
    second.data = Some([("n".to_string(), "2".to_string())].into());
    api.replace("a", &PostParams::default(), &second).await.unwrap();
    let mut stale = first.clone();
    stale.data = Some([("n".to_string(), "3".to_string())].into());
    let s = api_err(api.replace("a", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("the object has been modified"), "{}", s.message);
    // custom resources require a resourceVersion on update
    let tenants: Api<Tenant> = Api::all(fake.client());
    tenants.create(&PostParams::default(), &tenant("acme")).await.unwrap();
    let s = api_err(tenants.replace("acme", &PostParams::default(), &tenant("acme")).await.unwrap_err());
    assert_eq!(s.code, 422);
}

#[tokio::test]
async fn generate_name_and_missing_namespace() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let c = api.create(&PostParams::default(), &obj(json!({"metadata": {"generateName": "x-"}}))).await.unwrap();
    assert!(c.name_any().starts_with("x-") && c.name_any().len() == 7);
    let missing: Api<ConfigMap> = Api::namespaced(fake.client(), "nowhere");
    let s = api_err(missing.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap_err());
    assert_eq!((s.code, s.message.as_str()), (404, "namespaces \"nowhere\" not found"));
    let s = api_err(api.create(&PostParams::default(), &cm("Bad_Name", json!({}))).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(s.message.contains("RFC 1123 subdomain"), "{}", s.message);
}

#[tokio::test]
async fn namespace_names_are_dns_labels_and_get_defaults() {
    let fake = FakeApiServer::start().await;
    let api: Api<Namespace> = Api::all(fake.client());
    let s = api_err(api.create(&PostParams::default(), &obj(json!({"metadata": {"name": "a.b"}}))).await.unwrap_err());
    assert_eq!(s.code, 422);
    assert!(s.message.contains("RFC 1123 label"));
    let n = api.create(&PostParams::default(), &obj(json!({"metadata": {"name": "acme-dev"}}))).await.unwrap();
    assert_eq!(n.labels()["kubernetes.io/metadata.name"], "acme-dev");
    assert_eq!(n.status.unwrap().phase.as_deref(), Some("Active"));
    assert_eq!(n.spec.unwrap().finalizers.unwrap(), vec!["kubernetes".to_string()]);
}

// ------------------------------------------------------------------ server-side apply

#[tokio::test]
async fn ssa_creates_and_records_managed_fields() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let applied = api
        .patch(
            "a",
            &ssa(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"l": "1"}}, "data": {"x": "1"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["x"], "1");
    let mf = applied.metadata.managed_fields.unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("tenant-operator"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    assert_eq!(fields, json!({"f:data": {"f:x": {}}, "f:metadata": {"f:labels": {"f:l": {}}}}));
}

#[tokio::test]
async fn ssa_removes_fields_the_manager_no_longer_applies() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    api.patch(
        "a",
        &ssa(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}})),
    )
    .await
    .unwrap();
    // someone else owns z
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"z": "3"}}))).await.unwrap();
    let after = api
        .patch("a", &ssa(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1"}})))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.get("y"), None, "field dropped from the applied config is removed");
    assert_eq!(data["z"], "3", "field owned by another manager stays");
}

#[tokio::test]
async fn ssa_conflicts_and_force() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let a = PatchParams::apply("alice");
    let b = PatchParams::apply("bob");
    api.patch("c", &a, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}})))
        .await
        .unwrap();
    // same value: shared ownership, no conflict
    api.patch("c", &b, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}})))
        .await
        .unwrap();
    // different value: conflict
    let s = api_err(
        api.patch("c", &b, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "2"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(s.message.contains("conflict with \"alice\""), "{}", s.message);
    let cause = &s.details.unwrap().causes[0];
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("FieldManagerConflict", ".data.k"));
    // force moves ownership
    let forced = api
        .patch(
            "c",
            &b.clone().force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "2");
    let alice = forced.metadata.managed_fields.unwrap().into_iter().find(|m| m.manager.as_deref() == Some("alice"));
    assert!(alice.is_none(), "alice lost her only field");
    // now alice conflicts
    let s = api_err(
        api.patch("c", &a, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 409);
}

#[tokio::test]
async fn ssa_requires_field_manager() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let pp = PatchParams { field_manager: None, ..Default::default() };
    let s = api_err(
        api.patch("a", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}))).await.unwrap_err(),
    );
    assert_eq!(s.code, 422);
    assert!(s.message.contains("fieldManager: Required value"), "{}", s.message);
}

#[tokio::test]
async fn ssa_merges_associative_lists_by_key() {
    let fake = FakeApiServer::start().await;
    let api: Api<StatefulSet> = Api::namespaced(fake.client(), "default");
    let sts = |containers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": containers}}}})
    };
    api.patch("db", &PatchParams::apply("op"), &Patch::Apply(sts(json!([{"name": "pg", "image": "postgres:16"}])))).await.unwrap();
    api.patch("db", &PatchParams::apply("sidecars"), &Patch::Apply(sts(json!([{"name": "exporter", "image": "exp:1"}])))).await.unwrap();
    let got = api.get("db").await.unwrap();
    let names: Vec<String> = got.spec.unwrap().template.spec.unwrap().containers.into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["pg", "exporter"], "containers merged by name across managers");
    // op drops its container: only its item goes
    api.patch("db", &PatchParams::apply("op"), &Patch::Apply(sts(json!([])))).await.unwrap();
    let got = api.get("db").await.unwrap();
    let names: Vec<String> = got.spec.unwrap().template.spec.unwrap().containers.into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["exporter"]);
}

#[tokio::test]
async fn ssa_noop_does_not_bump_resource_version() {
    let fake = FakeApiServer::start().await;
    let api: Api<Tenant> = Api::all(fake.client());
    let t = serde_json::to_value(tenant("acme")).unwrap();
    let first = api.patch("acme", &ssa(), &Patch::Apply(&t)).await.unwrap();
    let snapshot = fake.request_counts();
    let again = api.patch("acme", &ssa(), &Patch::Apply(&t)).await.unwrap();
    assert_eq!(first.resource_version(), again.resource_version());
    assert_eq!(first.metadata.generation, Some(1));
    assert_eq!(fake.writes_since(&snapshot).writes(), 1, "the PATCH was sent (and counted), but changed nothing");
}

// ------------------------------------------------------------------ patches

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    api.create(&PostParams::default(), &cm("a", json!({"x": "1", "y": "2"}))).await.unwrap();
    let p = api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": null, "z": "3"}}))).await.unwrap();
    assert_eq!(p.data.unwrap(), [("y".to_string(), "2".to_string()), ("z".to_string(), "3".to_string())].into());
    let jp: json_patch::Patch =
        obj(json!([{"op": "test", "path": "/data/y", "value": "2"}, {"op": "replace", "path": "/data/y", "value": "9"}]));
    let p = api.patch("a", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(p.data.unwrap()["y"], "9");
    let failing: json_patch::Patch = obj(json!([{"op": "test", "path": "/data/y", "value": "2"}]));
    let s = api_err(api.patch("a", &PatchParams::default(), &Patch::<()>::Json(failing)).await.unwrap_err());
    assert_eq!(s.code, 422, "a failed test op is 422 like the real server");
    let sp = api
        .patch("a", &PatchParams::default(), &Patch::Strategic(json!({"metadata": {"finalizers": ["f/one"]}, "data": {"w": "4"}})))
        .await
        .unwrap();
    assert_eq!(sp.finalizers(), &["f/one".to_string()]);
    let tenants: Api<Tenant> = Api::all(fake.client());
    tenants.create(&PostParams::default(), &tenant("acme")).await.unwrap();
    let s =
        api_err(tenants.patch("acme", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"suspend": true}}))).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (415, "UnsupportedMediaType"));
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let fake = FakeApiServer::start().await;
    let api: Api<StatefulSet> = Api::namespaced(fake.client(), "default");
    api.create(&PostParams::default(), &obj(json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}}))).await.unwrap();
    let p = api
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}})),
        )
        .await
        .unwrap();
    let cs = p.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(cs.iter().map(|c| (c.name.as_str(), c.image.as_deref().unwrap())).collect::<Vec<_>>(), vec![("a", "a:1"), ("b", "b:2")]);
}

// ------------------------------------------------------------------ status, generation, no-op

#[tokio::test]
async fn status_subresource_is_separate_from_the_main_resource() {
    let fake = FakeApiServer::start().await;
    let api: Api<Tenant> = Api::all(fake.client());
    let mut t = tenant("acme");
    t.status = Some(obj(json!({"phase": "Ready"})));
    let created = api.create(&PostParams::default(), &t).await.unwrap();
    assert!(created.status.is_none(), "status is dropped on create");
    let st = api
        .patch_status(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"displayName": "Changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(st.spec.display_name, "Acme Corp", "status writes ignore spec");
    assert_eq!(st.metadata.generation, Some(1), "status writes do not bump generation");
    let main = api
        .patch("acme", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed"}, "spec": {"displayName": "New"}})))
        .await
        .unwrap();
    assert_eq!(main.status.unwrap().phase.as_deref(), Some("Ready"), "main writes ignore status");
    assert_eq!(main.spec.display_name, "New");
    assert_eq!(main.metadata.generation, Some(2));
    let labelled = api.patch("acme", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(2), "metadata changes do not bump generation");
    let mut whole = api.get("acme").await.unwrap();
    whole.status = Some(obj(json!({"phase": "Provisioning"})));
    let replaced = api.replace_status("acme", &PostParams::default(), &whole).await.unwrap();
    assert_eq!(replaced.status.unwrap().phase.as_deref(), Some("Provisioning"));
}

#[tokio::test]
async fn noop_update_keeps_resource_version_and_sends_no_event() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let c = api.create(&PostParams::default(), &cm("a", json!({"x": "1"}))).await.unwrap();
    let rv = fake.resource_version();
    let same = api.replace("a", &PostParams::default(), &c).await.unwrap();
    let merged = api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "1"}}))).await.unwrap();
    assert_eq!(same.resource_version(), c.resource_version());
    assert_eq!(merged.resource_version(), c.resource_version());
    assert_eq!(fake.resource_version(), rv, "no change, no new resourceVersion");
    // a watch from rv sees nothing but the later real change
    let mut stream = api.watch(&WatchParams::default().timeout(2), &rv.to_string()).await.unwrap().boxed();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "2"}}))).await.unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(o) => assert_eq!(o.data.unwrap()["x"], "2"),
        other => panic!("unexpected {other:?}"),
    }
}

// ------------------------------------------------------------------ selectors

#[tokio::test]
async fn label_and_field_selectors() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    for (name, labels) in [
        ("a", json!({"tenancy.platform.dev/tenant": "acme", "env": "dev"})),
        ("b", json!({"tenancy.platform.dev/tenant": "globex", "env": "prod"})),
        ("c", json!({"other": "x"})),
    ] {
        api.create(&PostParams::default(), &obj(json!({"metadata": {"name": name, "labels": labels}}))).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(api.list(&sel("tenancy.platform.dev/tenant")).await.unwrap()), vec!["a", "b"]);
    assert_eq!(names(api.list(&sel("tenancy.platform.dev/tenant=acme")).await.unwrap()), vec!["a"]);
    assert_eq!(names(api.list(&sel("!tenancy.platform.dev/tenant")).await.unwrap()), vec!["c"]);
    assert_eq!(names(api.list(&sel("env in (dev,prod),tenancy.platform.dev/tenant!=acme")).await.unwrap()), vec!["b"]);
    assert_eq!(names(api.list(&sel("env notin (dev)")).await.unwrap()), vec!["b", "c"]);
    assert_eq!(names(api.list(&ListParams::default().fields("metadata.name=b")).await.unwrap()), vec!["b"]);
    assert_eq!(
        names(api.list(&ListParams::default().fields("metadata.namespace=default,metadata.name!=b")).await.unwrap()),
        vec!["a", "c"]
    );
    let s = api_err(api.list(&ListParams::default().fields("spec.foo=x")).await.unwrap_err());
    assert_eq!(s.code, 400);
    let all: Api<ConfigMap> = Api::all(fake.client());
    assert_eq!(all.list(&sel("env")).await.unwrap().items.len(), 2);
}

#[tokio::test]
async fn list_pagination() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({}))).await.unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    let second = api.list(&ListParams::default().limit(10).continue_token(&token)).await.unwrap();
    assert_eq!(second.items.len(), 3);
    assert!(second.metadata.continue_.is_none());
}

#[tokio::test]
async fn list_pages_continue_after_the_last_key_and_count_what_remains() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    for i in [1, 3, 5, 7, 9] {
        let labels = json!({"odd": "yes"});
        api.create(&PostParams::default(), &obj(json!({"metadata": {"name": format!("c{i}"), "labels": labels}}))).await.unwrap();
    }
    let names = |l: &kube::api::ObjectList<ConfigMap>| l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first), ["c1", "c3"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3), "no selector: the real server says how many follow");
    // Created between pages: before the last key it is not seen, after it it is (no snapshot).
    api.create(&PostParams::default(), &cm("c0", json!({}))).await.unwrap();
    api.create(&PostParams::default(), &cm("c4", json!({}))).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let second = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&second), ["c4", "c5"]);
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version, "pages carry the first page's resourceVersion");
    let token = second.metadata.continue_.clone().unwrap();
    let third = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&third), ["c7", "c9"]);
    assert!(third.metadata.continue_.is_none());

    let selected = api.list(&ListParams::default().labels("odd=yes").limit(2)).await.unwrap();
    assert_eq!(names(&selected), ["c1", "c3"]);
    assert_eq!(selected.metadata.remaining_item_count, None, "with a selector the real server does not count");
    let bad = api.list(&ListParams::default().limit(2).continue_token("garbage")).await.unwrap_err();
    assert_eq!(api_err(bad).code, 400);
    fake.compact();
    let stale = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap_err();
    assert_eq!(api_err(stale).code, 410);
}

#[tokio::test]
async fn commit_latency_delays_only_requests_that_store_something() {
    let latency = Duration::from_millis(300);
    let fake = FakeApiServer::builder().commit_latency(latency).start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let apply = PatchParams::apply("test").force();
    let timed = |started: std::time::Instant| started.elapsed();

    let started = std::time::Instant::now();
    api.patch("a", &apply, &Patch::Apply(&cm("a", json!({"k": "v"})))).await.unwrap();
    assert!(timed(started) >= latency, "a create waits for the commit");
    let started = std::time::Instant::now();
    api.patch("a", &apply, &Patch::Apply(&cm("a", json!({"k": "v"})))).await.unwrap();
    api.get("a").await.unwrap();
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap_err();
    assert!(timed(started) < latency, "a no-op apply, a read and a refused create store nothing");

    fake.set_commit_latency(Duration::ZERO);
    let started = std::time::Instant::now();
    api.patch("a", &apply, &Patch::Apply(&cm("a", json!({"k": "w"})))).await.unwrap();
    assert!(timed(started) < latency);
}

#[tokio::test]
async fn inserted_objects_are_stored_as_their_manager_applied_them() {
    let fake = FakeApiServer::start().await;
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "bulk"}, "data": {"k": "v"}}),
    ];
    assert_eq!(fake.insert_objects(&objects, "someone").unwrap(), 2);
    let stored = fake.object("v1", "ConfigMap", "bulk", "c").unwrap();
    let managed = &stored["metadata"]["managedFields"][0];
    assert_eq!((managed["manager"].as_str(), managed["operation"].as_str()), (Some("someone"), Some("Apply")));
    assert_eq!(managed["fieldsV1"]["f:data"]["f:k"], json!({}));
    assert!(fake.request_counts().0.is_empty(), "not requests");
    // Refused as the API would refuse it.
    let orphan = vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "missing"}})];
    assert!(fake.insert_objects(&orphan, "someone").unwrap_err().contains("not found"));
    // Status through the status subresource.
    let status = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}, "status": {"phase": "Active"}})];
    fake.insert_status(&status, "someone").unwrap();
    let ns = fake.object("v1", "Namespace", "", "bulk").unwrap();
    assert!(ns["metadata"]["managedFields"].as_array().unwrap().iter().any(|m| m["subresource"] == "status"));
}

// ------------------------------------------------------------------ watch

#[tokio::test]
async fn watch_streams_changes_after_a_resource_version() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    api.create(&PostParams::default(), &cm("before", json!({}))).await.unwrap();
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default().labels("w=1").timeout(5), &rv).await.unwrap().boxed();
    api.create(&PostParams::default(), &obj(json!({"metadata": {"name": "x", "labels": {"w": "1"}}}))).await.unwrap();
    api.create(&PostParams::default(), &cm("unlabelled", json!({}))).await.unwrap();
    api.patch("x", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await.unwrap();
    api.patch("x", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"w": "2"}}}))).await.unwrap();
    api.patch("x", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"w": "1"}}}))).await.unwrap();
    api.delete("x", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.name_any())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.name_any())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(seen, vec!["ADDED x", "MODIFIED x", "DELETED x", "ADDED x", "DELETED x"], "label transitions become ADDED/DELETED");
}

#[tokio::test]
async fn watch_sends_bookmarks_when_allowed() {
    let fake = FakeApiServer::builder().bookmark_interval(Duration::from_millis(50)).start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let rv = fake.resource_version().to_string();
    let mut stream = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(2), stream.try_next()).await.unwrap().unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    let mut quiet = api.watch(&WatchParams::default().disable_bookmarks().timeout(1), &rv).await.unwrap().boxed();
    assert!(quiet.try_next().await.unwrap().is_none(), "no bookmarks when not allowed; the stream ends at timeoutSeconds");
}

#[tokio::test]
async fn watch_from_compacted_resource_version_gets_410_error_event() {
    let fake = FakeApiServer::builder().history_window(2).start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let rv = fake.resource_version().to_string();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({}))).await.unwrap();
    }
    let mut stream = api.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_list_watch_sends_initial_events_and_end_bookmark() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    let wp = WatchParams::streaming_lists().timeout(5);
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    assert!(matches!(stream.try_next().await.unwrap().unwrap(), WatchEvent::Added(o) if o.name_any() == "a"));
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => {
            assert_eq!(b.metadata.annotations["k8s.io/initial-events-end"], "true")
        }
        other => panic!("expected the initial-events-end bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_watcher_and_reflector_converge() {
    let fake = FakeApiServer::builder().history_window(3).start().await;
    let client = fake.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &obj(json!({"metadata": {"name": "pre", "labels": {"tenancy.platform.dev/tenant": "acme"}}})))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    let cfg = watcher::Config::default().labels("tenancy.platform.dev/tenant=acme");
    let stream = reflector(writer, watcher(api.clone(), cfg)).applied_objects();
    let handle = tokio::spawn(async move {
        let mut s = stream.boxed();
        while s.next().await.is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    for i in 0..10 {
        api.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": format!("c{i}"), "labels": {"tenancy.platform.dev/tenant": "acme"}}})),
        )
        .await
        .unwrap();
    }
    api.create(&PostParams::default(), &cm("other", json!({}))).await.unwrap();
    api.delete("pre", &DeleteParams::default()).await.unwrap();
    eventually("the store to hold c0..c9", || {
        let mut names: Vec<String> = reader.state().iter().map(|c| c.name_any()).collect();
        names.sort();
        names == (0..10).map(|i| format!("c{i}")).collect::<Vec<_>>()
    })
    .await;
    handle.abort();
}

#[tokio::test]
async fn kube_controller_reconciles_against_the_fake() {
    use kube::runtime::controller::{Action, Controller};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants.create(&PostParams::default(), &tenant("acme")).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;
    let c = count.clone();
    let ctrl = Controller::new(tenants.clone(), watcher::Config::default())
        .owns(Api::<ConfigMap>::all(client.clone()), watcher::Config::default())
        .run(
            move |t: Arc<Tenant>, ctx: Arc<(Client, Arc<AtomicUsize>)>| async move {
                ctx.1.fetch_add(1, Ordering::SeqCst);
                let st: Api<Tenant> = Api::all(ctx.0.clone());
                st.patch_status(&t.name_any(), &PatchParams::apply("tenant-operator").force(), &Patch::Apply(json!({
                    "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "status": {"phase": "Ready", "observedGeneration": t.metadata.generation}
                }))).await.map_err(|_| Never)?;
                Ok::<_, Never>(Action::await_change())
            },
            |_t, _e, _ctx| Action::requeue(Duration::from_secs(1)),
            Arc::new((client.clone(), c)),
        );
    let handle = tokio::spawn(ctrl.for_each(|_| async {}));
    eventually("status Ready", || {
        fake.object("tenancy.platform.dev/v1alpha1", "Tenant", "", "acme").is_some_and(|t| t["status"]["phase"] == "Ready")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settled = count.load(Ordering::SeqCst);
    let snapshot = fake.request_counts();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.writes_since(&snapshot).writes(), 0, "a settled controller writes nothing");
    assert!(settled >= 1);
    handle.abort();
}

// ------------------------------------------------------------------ finalizers and deletion

#[tokio::test]
async fn finalizers_hold_the_object_until_removed() {
    let fake = FakeApiServer::start().await;
    let api: Api<Tenant> = Api::all(fake.client());
    let mut t = tenant("acme");
    t.metadata.finalizers = Some(vec!["tenancy.platform.dev/cleanup".into()]);
    let created = api.create(&PostParams::default(), &t).await.unwrap();
    let deleted = api.delete("acme", &DeleteParams::default()).await.unwrap();
    let held = deleted.left().expect("object returned while finalizers remain");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.deletion_grace_period_seconds, Some(0));
    assert_eq!(held.metadata.generation, Some(created.metadata.generation.unwrap() + 1), "generation bumps when deletion starts");
    // deleting again is fine
    api.delete("acme", &DeleteParams::default()).await.unwrap();
    // no new finalizers while deleting
    let s = api_err(
        api.patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["tenancy.platform.dev/cleanup", "x/y"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(s.code, 422);
    assert!(s.message.contains("no new finalizers"), "{}", s.message);
    // the kube finalizer helper style: JSON patch with a test op
    let jp: json_patch::Patch = obj(json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "tenancy.platform.dev/cleanup"},
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]));
    api.patch("acme", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap();
    assert!(api.get_opt("acme").await.unwrap().is_none(), "gone once the last finalizer is removed");
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_works() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{finalizer, Event};
    let fake = FakeApiServer::start().await;
    let api: Api<Tenant> = Api::all(fake.client());
    api.create(&PostParams::default(), &tenant("acme")).await.unwrap();
    let run = |t: Tenant| {
        let api = api.clone();
        async move {
            finalizer(&api, "tenancy.platform.dev/cleanup", std::sync::Arc::new(t), |ev| async move {
                match ev {
                    Event::Apply(_) | Event::Cleanup(_) => Ok::<_, std::convert::Infallible>(Action::await_change()),
                }
            })
            .await
        }
    };
    run(api.get("acme").await.unwrap()).await.unwrap();
    assert_eq!(api.get("acme").await.unwrap().finalizers(), &["tenancy.platform.dev/cleanup".to_string()]);
    api.delete("acme", &DeleteParams::default()).await.unwrap();
    run(api.get("acme").await.unwrap()).await.unwrap();
    assert!(api.get_opt("acme").await.unwrap().is_none());
}

fn owned_cm(name: &str, owner: &ConfigMap, block: bool) -> ConfigMap {
    obj(json!({"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(), "uid": owner.uid().unwrap(), "blockOwnerDeletion": block
    }]}}))
}

#[tokio::test]
async fn garbage_collection_background() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let owner = api.create(&PostParams::default(), &cm("owner", json!({}))).await.unwrap();
    api.create(&PostParams::default(), &owned_cm("child", &owner, false)).await.unwrap();
    api.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("child collected", || fake.object("v1", "ConfigMap", "default", "child").is_none()).await;
    // a dangling owner reference (uid of nothing) is collected as well
    let ghost: ConfigMap = obj(json!({"metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"}}));
    api.create(&PostParams::default(), &owned_cm("orphan", &ghost, false)).await.unwrap();
    eventually("dangling dependent collected", || fake.object("v1", "ConfigMap", "default", "orphan").is_none()).await;
}

#[tokio::test]
async fn an_owner_in_another_namespace_counts_as_absent() {
    let fake = FakeApiServer::start().await;
    let owners: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let owner = owners.create(&PostParams::default(), &cm("owner", json!({}))).await.unwrap();
    fake.apply_manifests("apiVersion: v1\nkind: Namespace\nmetadata: {name: elsewhere}\n").unwrap();
    let elsewhere: Api<ConfigMap> = Api::namespaced(fake.client(), "elsewhere");
    elsewhere.create(&PostParams::default(), &owned_cm("child", &owner, false)).await.unwrap();
    owners.create(&PostParams::default(), &owned_cm("sibling", &owner, false)).await.unwrap();
    eventually("cross-namespace dependent collected", || fake.object("v1", "ConfigMap", "elsewhere", "child").is_none()).await;
    assert!(fake.object("v1", "ConfigMap", "default", "sibling").is_some(), "a same-namespace dependent stays");
}

/// An owner deleted in the foreground, waiting for its blocking dependent `child`, which a
/// finalizer holds (marked for deletion). Returns the ConfigMaps' API.
async fn owner_waiting_for_a_held_child(fake: &FakeApiServer) -> Api<ConfigMap> {
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let owner = api.create(&PostParams::default(), &cm("owner", json!({}))).await.unwrap();
    let mut child = owned_cm("child", &owner, true);
    child.metadata.finalizers = Some(vec!["test/hold".into()]);
    api.create(&PostParams::default(), &child).await.unwrap();
    let r = api.delete("owner", &DeleteParams::foreground()).await.unwrap().left().unwrap();
    assert!(r.finalizers().contains(&"foregroundDeletion".to_string()));
    eventually("child marked for deletion", || {
        fake.object("v1", "ConfigMap", "default", "child").is_some_and(|c| c["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    assert!(fake.object("v1", "ConfigMap", "default", "owner").is_some(), "owner waits for its blocking dependent");
    api
}

#[tokio::test]
async fn garbage_collection_foreground_waits_for_blocking_dependents() {
    let fake = FakeApiServer::start().await;
    let api = owner_waiting_for_a_held_child(&fake).await;
    api.patch("child", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("owner gone", || fake.object("v1", "ConfigMap", "default", "owner").is_none()).await;
}

/// The dependent lets go of its owner and of its last finalizer in one update: it is deleted
/// at once, and the owner waiting for it in the foreground must notice.
#[tokio::test]
async fn garbage_collection_foreground_sees_a_dependent_that_drops_its_owner_as_it_goes() {
    let fake = FakeApiServer::start().await;
    let api = owner_waiting_for_a_held_child(&fake).await;
    let release = json!({"metadata": {"finalizers": null, "ownerReferences": null}});
    api.patch("child", &PatchParams::default(), &Patch::Merge(release)).await.unwrap();
    assert!(fake.object("v1", "ConfigMap", "default", "child").is_none());
    eventually("owner gone", || fake.object("v1", "ConfigMap", "default", "owner").is_none()).await;
}

#[tokio::test]
async fn garbage_collection_orphan_keeps_dependents() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let owner = api.create(&PostParams::default(), &cm("owner", json!({}))).await.unwrap();
    api.create(&PostParams::default(), &owned_cm("child", &owner, true)).await.unwrap();
    api.delete("owner", &DeleteParams::orphan()).await.unwrap();
    eventually("owner gone", || fake.object("v1", "ConfigMap", "default", "owner").is_none()).await;
    let child = api.get("child").await.unwrap();
    assert!(child.owner_references().is_empty(), "orphaned dependents lose the owner reference");
}

/// The NamespaceLifecycle plugin: `default`, `kube-system` and `kube-public` are never deleted,
/// whoever asks (message as a 1.36 API server answers it).
#[tokio::test]
async fn system_namespaces_may_not_be_deleted() {
    let fake = FakeApiServer::start().await;
    let namespaces: Api<Namespace> = Api::all(fake.client());
    for name in ["default", "kube-system", "kube-public"] {
        match namespaces.delete(name, &DeleteParams::default()).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 403);
                assert_eq!(status.message, format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"));
            }
            other => panic!("deleting {name}: {other:?}"),
        }
        assert!(namespaces.get_opt(name).await.expect("get").is_some());
    }
}

#[tokio::test]
async fn namespace_deletion_removes_contents_then_namespace() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    ns(&client, "acme-dev").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "acme-dev");
    cms.create(&PostParams::default(), &cm("plain", json!({}))).await.unwrap();
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    let n = nss.delete("acme-dev", &DeleteParams::default()).await.unwrap().left().unwrap();
    assert_eq!(n.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(n.metadata.deletion_timestamp.is_some());
    eventually("plain deleted", || fake.object("v1", "ConfigMap", "acme-dev", "plain").is_none()).await;
    // creating in a terminating namespace is forbidden
    let s = api_err(cms.create(&PostParams::default(), &cm("late", json!({}))).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(s.details.unwrap().causes[0].reason, "NamespaceTerminating");
    assert!(fake.object("v1", "Namespace", "", "acme-dev").is_some(), "namespace waits for finalizers of its contents");
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("namespace gone", || fake.object("v1", "Namespace", "", "acme-dev").is_none()).await;
}

// ------------------------------------------------------------------ CRD admission

#[tokio::test]
async fn crd_schema_violations_are_422_with_causes() {
    let fake = FakeApiServer::start().await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "Tenant"));
    let api: Api<DynamicObject> = Api::all_with(fake.client(), &ar);
    let bad: DynamicObject = obj(json!({"apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {"displayName": "Acme", "cluster": "uk", "environments": ["dev", "qa"]}}));
    let e = api.create(&PostParams::default(), &bad).await.unwrap_err();
    let s = api_err(e);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let d = s.details.unwrap();
    assert_eq!((d.kind.as_str(), d.group.as_str(), d.name.as_str()), ("Tenant", "tenancy.platform.dev", "acme"));
    assert_eq!(d.causes[0].field, "spec.environments[1]");
    assert_eq!(d.causes[0].message, "Unsupported value: \"qa\": supported values: \"dev\", \"staging\", \"prod\"");
    assert!(
        s.message.starts_with("Tenant.tenancy.platform.dev \"acme\" is invalid: spec.environments[1]: Unsupported value"),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn crd_defaults_and_pruning() {
    let fake = FakeApiServer::start().await;
    let api: Api<DynamicObject> =
        Api::all_with(fake.client(), &ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "Tenant")));
    let t: DynamicObject = obj(json!({"apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {"displayName": "Acme", "cluster": "uk", "environments": ["dev"], "unknownField": 1, "database": {"provider": "none", "bogus": true}},
        "extraTopLevel": "x"}));
    let created = api.create(&PostParams::default(), &t).await.unwrap();
    let spec = &created.data["spec"];
    assert_eq!(spec["deletionPolicy"], "Retain");
    assert_eq!(spec["suspend"], false);
    assert!(spec.get("unknownField").is_none() && spec["database"].get("bogus").is_none(), "unknown fields pruned: {spec}");
    assert!(created.data.get("extraTopLevel").is_none());
}

#[tokio::test]
async fn cel_rules_including_transition_rules() {
    let fake = FakeApiServer::start().await;
    ns(&fake.client(), "acme-account").await;
    let api: Api<TenantUser> = Api::namespaced(fake.client(), "acme-account");
    let user = |roles: Value, notifications: bool| -> TenantUser {
        obj(json!({"apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "TenantUser", "metadata": {"name": "jdoe"},
            "spec": {"email": "jane@acme.example", "username": "jdoe", "firstName": "Jane", "lastName": "Doe", "roles": roles,
                     "receiveEmailNotifications": notifications}}))
    };
    let s = api_err(api.create(&PostParams::default(), &user(json!([]), false)).await.unwrap_err());
    assert_eq!(s.code, 422);
    assert!(s.message.contains("a user needs at least one role or custom role"), "{}", s.message);
    let s = api_err(api.create(&PostParams::default(), &user(json!(["Designer"]), true)).await.unwrap_err());
    assert!(s.message.contains("receiveEmailNotifications: true is for Account Admins"), "{}", s.message);
    api.create(&PostParams::default(), &user(json!(["Designer", "AccountAdmin"]), true)).await.unwrap();

    // A transition rule: the Tenant's database provider is fixed once set.
    let tenants: Api<DynamicObject> =
        Api::all_with(fake.client(), &ApiResource::from_gvk(&GroupVersionKind::gvk("tenancy.platform.dev", "v1alpha1", "Tenant")));
    let t: DynamicObject = obj(json!({"apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {"displayName": "Acme", "cluster": "uk", "environments": ["dev"], "database": {"provider": "none"}}}));
    tenants.create(&PostParams::default(), &t).await.unwrap();
    let moved = Patch::Merge(json!({"spec": {"database": {"provider": "statefulset"}}}));
    let s = api_err(tenants.patch("acme", &PatchParams::default(), &moved).await.unwrap_err());
    assert_eq!(s.code, 422);
    let cause = &s.details.unwrap().causes[0];
    assert_eq!(cause.field, "spec.database.provider");
    assert!(cause.message.contains("cannot be changed once set"), "{}", cause.message);
    // unrelated updates pass the transition rule
    tenants.patch("acme", &PatchParams::default(), &Patch::Merge(json!({"spec": {"displayName": "Acme Corp"}}))).await.unwrap();
}

#[tokio::test]
async fn crds_can_be_installed_through_the_api() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: Value = serde_yaml::from_str(CNPG_CLUSTER_CRD).unwrap();
    crds.patch("clusters.postgresql.cnpg.io", &ssa(), &Patch::Apply(&crd)).await.unwrap();
    let got = crds.get("clusters.postgresql.cnpg.io").await.unwrap();
    let conds = got.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    ns(&client, "acme-dev").await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"));
    let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), "acme-dev", &ar);
    let c: DynamicObject = obj(json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "acme-db"},
        "spec": {"instances": 1, "storage": {"size": "1Gi"}}}));
    let created = clusters.create(&PostParams::default(), &c).await.unwrap();
    assert_eq!(created.data["spec"]["storage"]["size"], "1Gi", "preserve-unknown-fields keeps spec");
    clusters.patch_status("acme-db", &PatchParams::default(), &Patch::Merge(json!({"status": {"readyInstances": 1}}))).await.unwrap();
    // deleting the CRD removes its objects
    crds.delete("clusters.postgresql.cnpg.io", &DeleteParams::default()).await.unwrap();
    assert!(fake.object("postgresql.cnpg.io/v1", "Cluster", "acme-dev", "acme-db").is_none());
}

// ------------------------------------------------------------------ built-ins the operator uses

#[tokio::test]
async fn statefulset_simulation_creates_pvcs_without_owner_references() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    ns(&client, "acme-dev").await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "acme-dev");
    sts.patch("acme-db", &ssa(), &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "acme-db"},
        "spec": {"serviceName": "acme-db", "selector": {"matchLabels": {"app": "acme-db"}},
            "template": {"metadata": {"labels": {"app": "acme-db"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}))).await.unwrap();
    eventually("pvc", || fake.object("v1", "PersistentVolumeClaim", "acme-dev", "data-acme-db-0").is_some()).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "acme-dev");
    let pvc = pvcs.get("data-acme-db-0").await.unwrap();
    assert!(pvc.owner_references().is_empty());
    assert_eq!(pvc.labels()["app"], "acme-db");
    // status is set by tests through the status subresource
    let st = sts
        .patch_status("acme-db", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1}})))
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().ready_replicas, Some(1));
    // volumeClaimTemplates are immutable, as on the real server
    let s = api_err(
        sts.patch("acme-db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"volumeClaimTemplates": []}}))).await.unwrap_err(),
    );
    assert_eq!(s.code, 422);
}

#[tokio::test]
async fn leases_for_leader_election() {
    let fake = FakeApiServer::start().await;
    let api: Api<Lease> = Api::namespaced(fake.client(), "default");
    let l = api
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "tenant-operator"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})),
        )
        .await
        .unwrap();
    let mut mine = l.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    api.replace("tenant-operator", &PostParams::default(), &mine).await.unwrap();
    let mut theirs = l.clone();
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let s = api_err(api.replace("tenant-operator", &PostParams::default(), &theirs).await.unwrap_err());
    assert_eq!(s.code, 409, "only one replica wins the lease");
}

#[tokio::test]
async fn events_recorder_publishes() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let tenants: Api<Tenant> = Api::all(client.clone());
    let t = tenants.create(&PostParams::default(), &tenant("acme")).await.unwrap();
    let recorder = Recorder::new(client.clone(), Reporter { controller: "tenant-operator".into(), instance: None });
    let ev = Event {
        type_: EventType::Normal,
        reason: "Created".into(),
        note: Some("namespace acme-dev".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = t.object_ref(&());
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = fake.objects("events.k8s.io/v1", "Event");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 2, "the second publish patches the series");
    assert_eq!(events[0]["metadata"]["namespace"], "default");
}

#[tokio::test]
async fn secrets_and_services_get_server_defaults() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s =
        secrets.create(&PostParams::default(), &obj(json!({"metadata": {"name": "s"}, "stringData": {"password": "x"}}))).await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let svc = svcs
        .patch(
            "acme-db",
            &ssa(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "acme-db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}})),
        )
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    assert!(spec.cluster_ip.is_some());
    assert_eq!(spec.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
    // re-applying the same config is a no-op despite the defaults
    let again = svcs
        .patch(
            "acme-db",
            &ssa(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "acme-db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}})),
        )
        .await
        .unwrap();
    assert_eq!(again.resource_version(), svc.metadata.resource_version);
}

#[tokio::test]
async fn rolebinding_role_ref_is_immutable() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let fake = FakeApiServer::start().await;
    let api: Api<RoleBinding> = Api::namespaced(fake.client(), "default");
    let rb = |role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "tenantuser-jdoe"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "name": "jane@acme.example"}]})
    };
    let created = api.patch("tenantuser-jdoe", &ssa(), &Patch::Apply(rb("tenancy:editor"))).await.unwrap();
    assert_eq!(created.subjects.unwrap()[0].api_group.as_deref(), Some("rbac.authorization.k8s.io"));
    let s = api_err(api.patch("tenantuser-jdoe", &ssa(), &Patch::Apply(rb("tenancy:viewer"))).await.unwrap_err());
    assert_eq!(s.code, 422);
    assert!(s.message.contains("cannot change roleRef"));
}

// ------------------------------------------------------------------ faults and accounting

#[tokio::test]
async fn injected_failures_have_status_bodies() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    fake.fail_next("create", "configmaps", 500, 1);
    fake.fail_next("get", "configmaps", 429, 1);
    let s = api_err(api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"));
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    // kube 5 clients retry 429/503/504 themselves (honouring Retry-After): the get succeeds
    api.get("a").await.unwrap();
    let codes: Vec<u16> = fake.requests().iter().filter(|r| r.verb == "get").map(|r| r.code).collect();
    assert_eq!(codes, vec![429, 200]);
    // a client without retries sees the Status
    let raw: Api<ConfigMap> = Api::namespaced(fake.client_without_retries(), "default");
    fake.fail_next("get", "configmaps", 429, 1);
    let s = api_err(raw.get("a").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(s.details.unwrap().retry_after_seconds, 1);
    fake.fail_next("patch", "tenancy.platform.dev/tenants/status", 409, 2);
    let tenants: Api<Tenant> = Api::all(fake.client());
    tenants.create(&PostParams::default(), &tenant("acme")).await.unwrap();
    for _ in 0..2 {
        let s = api_err(
            tenants.patch_status("acme", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap_err(),
        );
        assert_eq!(s.code, 409);
    }
    tenants.patch_status("acme", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
    fake.fail_next("*", "*", 503, 1);
    assert_eq!(api_err(raw.get("a").await.unwrap_err()).code, 503);
}

#[tokio::test]
async fn injected_hang_times_out_the_client() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    fake.hang_next("list", "configmaps", Duration::from_secs(5), 1);
    let r = tokio::time::timeout(Duration::from_millis(200), api.list(&ListParams::default())).await;
    assert!(r.is_err(), "the request hangs");
    api.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn request_counts_and_records() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants.create(&PostParams::default(), &tenant("acme")).await.unwrap();
    api.create(&PostParams::default(), &cm("a", json!({}))).await.unwrap();
    api.get("a").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    tenants.patch_status("acme", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
    let c = fake.request_counts();
    assert_eq!(c.get("create", "configmaps"), 1);
    assert_eq!(c.get("get", "configmaps"), 1);
    assert_eq!(c.get("list", "configmaps"), 1);
    assert_eq!(c.get("create", "tenancy.platform.dev/tenants"), 1);
    assert_eq!(c.get("patch", "tenancy.platform.dev/tenants/status"), 1);
    let snap = fake.request_counts();
    api.get("a").await.unwrap();
    assert_eq!(fake.writes_since(&snap).writes(), 0);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(fake.writes_since(&snap).get("delete", "configmaps"), 1);
    let recs = fake.requests();
    let last = recs.last().unwrap();
    assert_eq!(
        (last.verb.as_str(), last.group.as_str(), last.resource.as_str(), last.namespace.as_deref()),
        ("delete", "", "configmaps", Some("default"))
    );
    fake.reset_counts();
    assert_eq!(fake.request_counts().0.len(), 0);
}

#[tokio::test]
async fn kubeconfig_points_at_the_fake() {
    let fake = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, fake.kubeconfig_yaml()).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    let client = Client::try_from(cfg).unwrap();
    let nss: Api<Namespace> = Api::all(client);
    assert!(nss.get("default").await.is_ok());
}

#[tokio::test]
async fn reapplying_a_statefulset_is_a_noop_despite_server_defaults() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    ns(&client, "acme-dev").await;
    let api: Api<StatefulSet> = Api::namespaced(client, "acme-dev");
    let desired = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "acme-db", "labels": {"tenancy.platform.dev/tenant": "acme"}},
        "spec": {"serviceName": "acme-db", "selector": {"matchLabels": {"app": "acme-db"}},
            "template": {"metadata": {"labels": {"app": "acme-db"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16",
                "ports": [{"containerPort": 5432}], "env": [{"name": "PGDATA", "value": "/data/pg"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    let first = api.patch("acme-db", &ssa(), &Patch::Apply(&desired)).await.unwrap();
    let spec = first.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1), "server defaults are filled in");
    assert_eq!(spec.template.spec.as_ref().unwrap().containers[0].termination_message_path.as_deref(), Some("/dev/termination-log"));
    let again = api.patch("acme-db", &ssa(), &Patch::Apply(&desired)).await.unwrap();
    assert_eq!(first.resource_version(), again.resource_version());
    assert_eq!(again.metadata.generation, Some(1));
    // a real change bumps generation
    let mut changed = desired.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("postgres:17");
    let third = api.patch("acme-db", &ssa(), &Patch::Apply(&changed)).await.unwrap();
    assert_eq!(third.metadata.generation, Some(2));
}

#[tokio::test]
async fn ssa_through_the_status_subresource_tracks_its_own_manager_entry() {
    let fake = FakeApiServer::start().await;
    let api: Api<Tenant> = Api::all(fake.client());
    api.patch("acme", &ssa(), &Patch::Apply(serde_json::to_value(tenant("acme")).unwrap())).await.unwrap();
    let status =
        json!({"apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "status": {"phase": "Ready", "observedGeneration": 1}});
    let t = api.patch_status("acme", &ssa(), &Patch::Apply(&status)).await.unwrap();
    assert_eq!(t.status.as_ref().unwrap().observed_generation, Some(1));
    let entries = t.metadata.managed_fields.unwrap();
    assert!(entries.iter().any(|e| e.subresource.as_deref() == Some("status") && e.operation.as_deref() == Some("Apply")));
    assert!(entries.iter().any(|e| e.subresource.is_none() && e.operation.as_deref() == Some("Apply")));
    let rv = t.metadata.resource_version;
    let again = api.patch_status("acme", &ssa(), &Patch::Apply(&status)).await.unwrap();
    assert_eq!(again.metadata.resource_version, rv, "unchanged status: no write");
    // applying without the status field drops it
    let t = api
        .patch_status(
            "acme",
            &ssa(),
            &Patch::Apply(json!({"apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(t.status.unwrap().observed_generation, None);
}
