//! Metadata-only requests (`Accept: application/json;as=PartialObjectMetadata[List];
//! g=meta.k8s.io;v=v1`): what kube's `Api<PartialObjectMeta<K>>` and metadata watches send.
//! The real server answers with the objects' metadata alone (managedFields included), as
//! `meta.k8s.io/v1` `PartialObjectMetadata(List)`.

use std::time::Duration;

use axum::http::Request;
use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    api::{Api, Patch, PatchParams, PostParams},
    core::PartialObjectMeta,
    runtime::{watcher, WatchStreamExt},
    Client,
};
use serde_json::{json, Value};

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"team": "a"}, "annotations": {"note": "n"}},
        "data": {"blob": "x".repeat(10_000)}
    }))
    .expect("config map")
}

async fn raw(client: &Client, path: &str, accept: &str) -> Value {
    let request = Request::get(path).header("accept", accept).body(Vec::new()).expect("request");
    let text = client.request_text(request).await.expect("response");
    serde_json::from_str(&text).expect("json")
}

#[tokio::test]
async fn list_get_and_watch_answer_metadata_alone_when_asked() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.patch("a", &PatchParams::apply("someone").force(), &Patch::Apply(&config_map("a"))).await.expect("apply");

    let list =
        raw(&client, "/api/v1/namespaces/default/configmaps", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").await;
    assert_eq!((list["apiVersion"].as_str(), list["kind"].as_str()), (Some("meta.k8s.io/v1"), Some("PartialObjectMetadataList")));
    let item = &list["items"][0];
    assert_eq!((item["apiVersion"].as_str(), item["kind"].as_str()), (Some("meta.k8s.io/v1"), Some("PartialObjectMetadata")));
    assert_eq!(item["metadata"]["annotations"]["note"], "n");
    assert_eq!(item["metadata"]["managedFields"][0]["manager"], "someone", "managedFields are metadata");
    assert!(item.get("data").is_none(), "no body: {item}");
    assert!(list["metadata"]["resourceVersion"].is_string());

    let one = raw(&client, "/api/v1/namespaces/default/configmaps/a", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1").await;
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert!(one.get("data").is_none());
    // A list asked for as single objects' metadata is not served that way: whole objects.
    let whole = raw(&client, "/api/v1/namespaces/default/configmaps", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1").await;
    assert_eq!(whole["kind"], "ConfigMapList");
    assert!(whole["items"][0]["data"]["blob"].is_string());
    assert_eq!(raw(&client, "/api/v1/namespaces/default/configmaps", "application/json").await["kind"], "ConfigMapList");

    // kube's metadata API, list and watch.
    let meta: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");
    let listed = meta.list(&Default::default()).await.expect("list metadata");
    assert_eq!(listed.items.len(), 1);
    let mut events = watcher(meta, watcher::Config::default()).applied_objects().boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.expect("event").expect("ok").expect("object");
    assert_eq!(first.metadata.name.as_deref(), Some("a"));
    api.create(&PostParams::default(), &config_map("b")).await.expect("create");
    let second = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.expect("event").expect("ok").expect("object");
    assert_eq!(second.metadata.name.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_metadata_watch_line_carries_no_body() {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &config_map("a")).await.expect("create");
    let request = Request::get("/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1")
        .header("accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(request).await.expect("watch");
    let event: Value = serde_json::from_str(text.lines().next().expect("an event")).expect("json");
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["kind"], "PartialObjectMetadata");
    assert!(event["object"].get("data").is_none());
}
