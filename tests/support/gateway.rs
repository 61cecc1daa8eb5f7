//! The Gateway API for the routing scenarios: its upstream CRDs (`tests/data/`, the v1.6.1
//! standard channel, Apache-2.0), a Gateway whose listener admits the tenant namespaces by label
//! (the one `docs/operations.md` shows), and the configuration that routes `uk` through it.
//!
//! CRDs are cluster-wide and the operator reads discovery at start: on the local control plane
//! the scenarios that need the Gateway API hold [`GATEWAY_API`] shared, the one that needs it
//! absent holds it exclusively. On the fake each scenario has its own server.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
use tenant_operator::config::{Config, GatewayRef, Routing};

use super::e2e::{served, wait_established, TestEnv};
use super::fixtures::example_config;

/// The upstream Gateway API CRDs (GatewayClass, Gateway, HTTPRoute, ReferenceGrant).
pub const GATEWAY_API_CRDS: &str = include_str!("../data/gateway-api-v1.6.1-standard.yaml");

/// Held shared while the Gateway API must be installed, exclusively while it must be absent.
pub static GATEWAY_API: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The name of the scenarios' Gateway and its listener.
pub const GATEWAY: &str = "public";
pub const LISTENER: &str = "https";

fn crds() -> Vec<Value> {
    GATEWAY_API_CRDS
        .split("\n---\n")
        .filter(|doc| doc.contains("kind: CustomResourceDefinition"))
        .map(|doc| serde_yaml::from_str(doc).expect("tests/data/gateway-api-v1.6.1-standard.yaml"))
        .collect()
}

/// Install the Gateway API CRDs (before the operator starts: it reads discovery at start).
pub async fn install(env: &TestEnv) {
    match env.fake() {
        Some(fake) => {
            for crd in crds() {
                fake.register_crd(&serde_yaml::to_string(&crd).expect("yaml")).expect("register a Gateway API CRD");
            }
        }
        None => {
            let api: Api<CustomResourceDefinition> = Api::all(env.client());
            let mut names = Vec::new();
            for crd in crds() {
                let name = crd["metadata"]["name"].as_str().expect("CRD name").to_string();
                api.patch(&name, &PatchParams::apply("e2e-gateway-api").force(), &Patch::Apply(&crd))
                    .await
                    .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
                names.push(name);
            }
            for name in names {
                wait_established(&env.client(), &name).await;
            }
        }
    }
}

/// Remove the Gateway API CRDs from a real cluster and wait until discovery no longer serves
/// them (the fake of a scenario never had them).
pub async fn uninstall(env: &TestEnv) {
    if env.fake().is_some() {
        return;
    }
    let client = env.client();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds() {
        let _ = api.delete(crd["metadata"]["name"].as_str().unwrap_or_default(), &DeleteParams::default()).await;
    }
    for _ in 0..600 {
        if !served(&client, "gateway.networking.k8s.io", "HTTPRoute").await
            && !served(&client, "gateway.networking.k8s.io", "Gateway").await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Gateway API CRDs were not removed within a minute");
}

pub fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"), "gateways")
}

pub fn route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"), "httproutes")
}

pub fn routes(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &route_resource())
}

/// The Gateway of the operations guide: an HTTPS listener for the region's domain whose
/// `allowedRoutes` admits routes only from the operator's environment namespaces, by label.
pub fn gateway_manifest(namespace: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY, "namespace": namespace},
        "spec": {
            "gatewayClassName": "stand-in",
            "listeners": [{
                "name": LISTENER,
                "protocol": "HTTPS",
                "port": 443,
                "hostname": "*.uk.cloud.example.com",
                "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "uk-wildcard-tls"}]},
                "allowedRoutes": {
                    "kinds": [{"kind": "HTTPRoute"}],
                    "namespaces": {"from": "Selector", "selector": {
                        "matchLabels": {"app.kubernetes.io/managed-by": "tenant-operator"},
                        "matchExpressions": [{"key": "tenancy.platform.dev/environment", "operator": "Exists"}]
                    }}
                }
            }]
        }
    })
}

/// A namespace of the scenario's own for its Gateway (deleted at cleanup).
pub async fn gateway_namespace(env: &TestEnv) -> String {
    let name = env.unique_slug("gw");
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    env.create(&namespace).await.unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    name
}

/// Create (or replace) the scenario's Gateway in `namespace`.
pub async fn apply_gateway(client: &Client, gateway: &Value) {
    let namespace = gateway["metadata"]["namespace"].as_str().unwrap_or_default();
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &gateway_resource())
        .patch(GATEWAY, &PatchParams::apply("e2e-gateway-admin").force(), &Patch::Apply(gateway))
        .await
        .unwrap_or_else(|e| panic!("apply Gateway {namespace}/{GATEWAY}: {e}"));
}

/// The example configuration with `uk` routed through the Gateway in `namespace`, and
/// `uk-legacy`: the same domain on Ingresses (a region being migrated, where two tenants could
/// claim one hostname through the two kinds).
pub fn gateway_config(namespace: &str) -> Config {
    let mut config = example_config();
    let mut legacy = config.clusters["uk"].clone();
    legacy.gateway = None;
    config.clusters.insert("uk-legacy".to_string(), legacy);
    let uk = config.clusters.get_mut("uk").expect("uk");
    uk.routing = Routing::Gateway;
    uk.gateway = Some(GatewayRef {
        name: GATEWAY.to_string(),
        namespace: namespace.to_string(),
        section_name: Some(LISTENER.to_string()),
        data_plane_namespace: None,
    });
    config
}

/// The same, with `uk` still on Ingresses (its Gateway named, ready for the switch).
pub fn ingress_config(namespace: &str) -> Config {
    let mut config = gateway_config(namespace);
    config.clusters.get_mut("uk").expect("uk").routing = Routing::Ingress;
    config
}

/// The `set` headers of a route's first rule, as (name, value).
pub fn set_headers(route: &DynamicObject) -> Vec<(String, String)> {
    route.data["spec"]["rules"][0]["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["type"] == "RequestHeaderModifier")
        .flat_map(|f| f["requestHeaderModifier"]["set"].as_array().cloned().unwrap_or_default())
        .map(|h| (h["name"].as_str().unwrap_or_default().to_string(), h["value"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Whether the route's entry for the Gateway in `namespace` says Accepted=True.
pub fn accepted(route: &DynamicObject, namespace: &str) -> bool {
    route.data["status"]["parents"].as_array().into_iter().flatten().any(|p| {
        p["parentRef"]["name"] == GATEWAY
            && p["parentRef"]["namespace"] == namespace
            && p["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Accepted" && c["status"] == "True")
    })
}
