//! Gateway API routing (`routing: gateway`): an HTTPRoute per application and environment,
//! attached to the region's Gateway, that sets the tenant's ID on every request; honest status
//! from the gateway controller's report; a switch between Ingresses and HTTPRoutes without a
//! moment in which a hostname is not routed; one hostname index for both kinds; deletion as for
//! Ingresses; and the reasons a person reads when the Gateway API or the Gateway is missing.
//!
//! On the fake and on the local control plane alike, with the upstream v1.6.1 CRDs
//! (`tests/data/`) and the gateway controller stand-in (`support/stand_ins.rs`).

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::e2e::TestEnv;
use support::fixtures::{ready, tenant};
use support::gateway::{self, accepted, apply_gateway, gateway_config, gateway_manifest, ingress_config, routes, set_headers, GATEWAY_API};
use support::scenario::Scenario;
use support::stand_ins::GatewayControllerStandIn;
use tenant_operator::config::Config;
use tenant_operator::types::{Conditions, NamespaceState, Tenant};

/// A scenario with the Gateway API installed, a namespace for its Gateway, and the stand-in
/// gateway controller serving it (switched on).
struct Routed {
    s: Scenario,
    gateway_namespace: String,
    stand_in: GatewayControllerStandIn,
    _installed: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl Routed {
    /// `config` gets the Gateway's namespace; `with_gateway`: the Gateway exists from the start.
    async fn start(config: impl Fn(&str) -> Config, with_gateway: bool) -> Self {
        let installed = GATEWAY_API.read().await;
        let env = TestEnv::new().await;
        gateway::install(&env).await;
        let gateway_namespace = gateway::gateway_namespace(&env).await;
        if with_gateway {
            apply_gateway(&env.client(), &gateway_manifest(&gateway_namespace)).await;
        }
        let stand_in = GatewayControllerStandIn::start(env.client(), &gateway_namespace, gateway::GATEWAY);
        let s = Scenario::start_on(env, config(&gateway_namespace)).await;
        Self { s, gateway_namespace, stand_in, _installed: installed }
    }

    /// A tenant slug of the scenario, served by the stand-in.
    fn slug(&self, prefix: &str) -> String {
        let slug = self.s.slug(prefix);
        self.stand_in.serve(&slug);
        slug
    }
}

fn spec(cluster: &str, environments: &[&str], policy: &str) -> serde_json::Value {
    json!({"displayName": "Routed", "cluster": cluster, "environments": environments, "applications": ["xconsole", "u-assist"],
           "database": {"provider": "none"}, "deletionPolicy": policy})
}

fn condition(t: &Tenant, type_: &str) -> Option<(String, String, String)> {
    t.status.as_ref().and_then(|s| s.condition(type_)).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn current(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| s.observed_generation == t.metadata.generation)
}

fn stalled(reason: &'static str) -> impl Fn(&Tenant) -> bool {
    move |t| current(t) && condition(t, "Stalled").is_some_and(|(status, r, _)| status == "True" && r == reason)
}

/// Reconciling, and `IngressReady` says why with a message containing `needle`.
fn reconciling_on_routes(needle: String) -> impl Fn(&Tenant) -> bool {
    move |t| {
        current(t)
            && condition(t, "Reconciling").is_some_and(|(status, _, _)| status == "True")
            && condition(t, "IngressReady")
                .is_some_and(|(status, reason, message)| status == "False" && reason == "WaitingForRoute" && message.contains(&needle))
    }
}

/// The hosts of the tenant that something routes now: an Ingress with an address, or an
/// HTTPRoute the Gateway in `gateway_namespace` accepted.
async fn routed_hosts(client: &Client, slug: &str, gateway_namespace: &str) -> BTreeSet<String> {
    let labels = ListParams::default().labels(&format!("tenancy.platform.dev/tenant={slug}"));
    let mut hosts = BTreeSet::new();
    for ingress in Api::<Ingress>::all(client.clone()).list(&labels).await.map(|l| l.items).unwrap_or_default() {
        let addressed = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|i| !i.is_empty());
        if addressed && ingress.metadata.deletion_timestamp.is_none() {
            hosts.extend(ingress.spec.iter().flat_map(|s| s.rules.iter().flatten()).filter_map(|r| r.host.clone()));
        }
    }
    let all_routes: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &gateway::route_resource());
    for route in all_routes.list(&labels).await.map(|l| l.items).unwrap_or_default() {
        if accepted(&route, gateway_namespace) && route.metadata.deletion_timestamp.is_none() {
            hosts.extend(route.data["spec"]["hostnames"].as_array().into_iter().flatten().filter_map(|h| h.as_str().map(str::to_string)));
        }
    }
    hosts
}

/// Samples the routed hosts until stopped; every sample that lacks one of `hosts` is a gap.
struct GapWatch {
    stop: Arc<AtomicBool>,
    gaps: Arc<Mutex<Vec<BTreeSet<String>>>>,
    task: tokio::task::JoinHandle<usize>,
}

impl GapWatch {
    fn start(client: Client, slug: String, gateway_namespace: String, hosts: BTreeSet<String>) -> Self {
        let (stop, gaps) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (stopping, found) = (stop.clone(), gaps.clone());
        let task = tokio::spawn(async move {
            let mut samples = 0;
            while !stopping.load(Ordering::SeqCst) {
                let routed = routed_hosts(&client, &slug, &gateway_namespace).await;
                if !hosts.is_subset(&routed) {
                    found.lock().unwrap().push(routed);
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        });
        Self { stop, gaps, task }
    }

    async fn assert_no_gap(self, what: &str) {
        self.stop.store(true, Ordering::SeqCst);
        let samples = self.task.await.expect("gap watch");
        let gaps = self.gaps.lock().unwrap().clone();
        assert!(samples > 5, "{what}: too few samples ({samples})");
        assert!(gaps.is_empty(), "{what}: a hostname was not routed in {} of {samples} samples, e.g. {:?}", gaps.len(), gaps.first());
    }
}

#[tokio::test]
async fn a_gateway_tenant_gets_routes_that_set_its_id_and_no_ingress() {
    let r = Routed::start(gateway_config, true).await;
    let slug = r.slug("gwy");
    r.s.create_tenant(&tenant(&slug, spec("uk", &["dev", "prod"], "Delete"))).await;
    let t = r.s.wait_tenant(&slug, ready).await;
    let (status, _, message) = condition(&t, "IngressReady").expect("IngressReady");
    assert_eq!(status, "True", "{message}");

    for env in ["dev", "prod"] {
        let namespace = format!("{slug}-{env}");
        let listed = routes(&r.s.client(), &namespace).list(&ListParams::default()).await.expect("list routes").items;
        let names: BTreeSet<String> = listed.iter().map(|route| route.name_any()).collect();
        assert_eq!(names, BTreeSet::from(["u-assist".to_string(), "xconsole".to_string()]), "one route per application in {namespace}");
        for route in &listed {
            let host = if env == "prod" {
                format!("{slug}.{}.uk.cloud.example.com", route.name_any())
            } else {
                format!("{slug}-dev.{}.uk.cloud.example.com", route.name_any())
            };
            assert_eq!(route.data["spec"]["hostnames"], json!([host]));
            assert_eq!(
                set_headers(route),
                vec![("X-Tenant-ID".to_string(), slug.clone()), ("X-Tenant-Environment".to_string(), env.to_string())],
                "the header value is the tenant's slug, set (replacing a client's) by the Gateway"
            );
            let parent = &route.data["spec"]["parentRefs"][0];
            assert_eq!(
                (parent["name"].as_str(), parent["namespace"].as_str()),
                (Some(gateway::GATEWAY), Some(r.gateway_namespace.as_str()))
            );
            assert_eq!(parent["sectionName"], gateway::LISTENER);
            assert!(accepted(route, &r.gateway_namespace), "Ready only once accepted: {:?}", route.data["status"]);
        }
        let ingresses = Api::<Ingress>::namespaced(r.s.client(), &namespace).list(&ListParams::default()).await.expect("ingresses");
        assert!(
            ingresses.items.is_empty(),
            "no Ingress in a gateway region: {:?}",
            ingresses.items.iter().map(|i| i.name_any()).collect::<Vec<_>>()
        );
    }
    let endpoints = t.status.map(|s| s.endpoints).unwrap_or_default();
    assert!(endpoints.iter().all(|e| e.url.starts_with("https://")), "{endpoints:?}");

    // Drift: an administrator removes the header filter; the operator puts it back.
    let dev_routes = routes(&r.s.client(), &format!("{slug}-dev"));
    let mut route = dev_routes.get("xconsole").await.expect("route");
    let rules =
        json!([{"matches": route.data["spec"]["rules"][0]["matches"], "backendRefs": route.data["spec"]["rules"][0]["backendRefs"]}]);
    dev_routes
        .patch("xconsole", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(json!({"spec": {"rules": rules}})))
        .await
        .expect("remove the filter");
    route = dev_routes.get("xconsole").await.expect("route");
    assert!(set_headers(&route).is_empty(), "the filter was removed");
    r.s.wait_object(Api::<tenant_operator::gateway::HTTPRoute>::namespaced(r.s.client(), &format!("{slug}-dev")), "xconsole", |route| {
        route.spec.rules.first().is_some_and(|rule| !rule.filters.is_empty())
    })
    .await;
    r.s.wait_tenant(&slug, ready).await;

    // `kubectl tenant status` shows each host's route as its gateway controller reported it.
    let cli = <tenant_operator::plugin::Cli as clap::Parser>::try_parse_from(["kubectl-tenant", "status", slug.as_str()]).expect("args");
    let mut tree = Vec::new();
    tenant_operator::plugin::commands::run(cli, r.s.client(), &mut tree, Default::default()).await.expect("kubectl tenant status");
    let tree = String::from_utf8(tree).expect("utf-8");
    let gateway = format!("accepted by Gateway {}/public", r.gateway_namespace);
    assert!(tree.contains(&format!("https://{slug}-dev.xconsole.uk.cloud.example.com/ — route {gateway}")), "{tree}");

    // Nothing to do: a restarted operator writes nothing.
    let requests = r.s.requests_of_a_restart().await.unwrap_or_default();
    assert_eq!(requests.writes(), 0, "a no-op resync wrote: {:?}", requests.0);
    r.s.cleanup().await;
}

#[tokio::test]
async fn the_tenant_is_ready_only_once_the_gateway_accepts_its_routes() {
    let r = Routed::start(gateway_config, true).await;
    let slug = r.slug("honest");
    r.stand_in.switch(false);
    r.s.create_tenant(&tenant(&slug, spec("uk", &["dev"], "Delete"))).await;
    let t = r.s.wait_tenant(&slug, reconciling_on_routes("no gateway controller has reported on it".into())).await;
    let (_, _, message) = condition(&t, "IngressReady").unwrap_or_default();
    assert!(message.contains(&format!("HTTPRoute {slug}-dev/xconsole")), "names the route: {message}");

    // The controller runs, but the listener admits routes of its own namespace only.
    let mut closed = gateway_manifest(&r.gateway_namespace);
    closed["spec"]["listeners"][0]["allowedRoutes"]["namespaces"] = json!({"from": "Same"});
    apply_gateway(&r.s.client(), &closed).await;
    r.stand_in.switch(true);
    let t = r.s.wait_tenant(&slug, reconciling_on_routes("Accepted=False (NotAllowedByListeners".into())).await;
    assert!(!ready(&t));

    // The Gateway admits the tenant namespaces again: Ready.
    apply_gateway(&r.s.client(), &gateway_manifest(&r.gateway_namespace)).await;
    r.s.wait_tenant(&slug, ready).await;

    // Deleted again: the watch sees it go.
    Api::<kube::api::DynamicObject>::namespaced_with(r.s.client(), &r.gateway_namespace, &gateway::gateway_resource())
        .delete(gateway::GATEWAY, &Default::default())
        .await
        .expect("delete the Gateway");
    r.s.wait_tenant(&slug, stalled("GatewayNotFound")).await;
    r.s.cleanup().await;
}

/// The ResourceVersions of what the routing switch must leave alone.
async fn others(client: &Client, namespace: &str) -> Vec<String> {
    let version = |meta: &kube::api::ObjectMeta| meta.resource_version.clone().unwrap_or_default();
    vec![
        version(&Api::<Namespace>::all(client.clone()).get(namespace).await.expect("namespace").metadata),
        version(&Api::<ConfigMap>::namespaced(client.clone(), namespace).get("tenant-config").await.expect("configmap").metadata),
        version(&Api::<NetworkPolicy>::namespaced(client.clone(), namespace).get("tenant-isolation").await.expect("policy").metadata),
        version(&Api::<ResourceQuota>::namespaced(client.clone(), namespace).get("tenant-quota").await.expect("quota").metadata),
        version(&Api::<LimitRange>::namespaced(client.clone(), namespace).get("tenant-defaults").await.expect("limits").metadata),
    ]
}

#[tokio::test]
async fn switching_routing_moves_every_route_without_a_gap_and_changes_nothing_else() {
    let r = Routed::start(ingress_config, true).await;
    let slug = r.slug("switch");
    let client = r.s.client();
    r.s.create_tenant(&tenant(&slug, spec("uk", &["dev", "prod"], "Delete"))).await;
    let t = r.s.wait_tenant(&slug, ready).await;
    let hosts: BTreeSet<String> = t
        .status
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| e.url.trim_start_matches("https://").trim_end_matches('/').to_string())
        .collect();
    assert_eq!(hosts.len(), 4);
    assert_eq!(routed_hosts(&client, &slug, &r.gateway_namespace).await, hosts, "routed by Ingresses");
    let before = others(&client, &format!("{slug}-dev")).await;

    // The region switches to the Gateway while its controller is down: the routes are created,
    // the Ingresses keep routing every host until they are accepted.
    r.stand_in.switch(false);
    let watch = GapWatch::start(client.clone(), slug.clone(), r.gateway_namespace.clone(), hosts.clone());
    r.s.restart_operator_with(gateway_config(&r.gateway_namespace)).await;
    let dev_routes = routes(&client, &format!("{slug}-dev"));
    r.s.wait_for("the HTTPRoutes", || async { dev_routes.list(&ListParams::default()).await.is_ok_and(|l| l.items.len() == 2) }).await;
    r.s.wait_tenant(&slug, reconciling_on_routes("no gateway controller has reported".into())).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dev_ingresses = Api::<Ingress>::namespaced(client.clone(), &format!("{slug}-dev"));
    assert_eq!(
        dev_ingresses.list(&ListParams::default()).await.expect("ingresses").items.len(),
        2,
        "old routes stay until the new ones work"
    );
    r.stand_in.switch(true);
    r.s.wait_tenant(&slug, ready).await;
    r.s.wait_for("the Ingresses to go", || async {
        Api::<Ingress>::all(client.clone())
            .list(&ListParams::default().labels(&format!("tenancy.platform.dev/tenant={slug}")))
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await;
    watch.assert_no_gap("ingress → gateway").await;
    assert_eq!(others(&client, &format!("{slug}-dev")).await, before, "the switch changed another object of the environment");

    // The Tenant moves to a region of the same domain on Ingresses: back the other way.
    let watch = GapWatch::start(client.clone(), slug.clone(), r.gateway_namespace.clone(), hosts.clone());
    r.s.patch_spec(&slug, json!({"cluster": "uk-legacy"})).await;
    r.s.wait_tenant(&slug, ready).await;
    r.s.wait_for("the HTTPRoutes to go", || async { dev_routes.list(&ListParams::default()).await.is_ok_and(|l| l.items.is_empty()) })
        .await;
    watch.assert_no_gap("gateway → ingress").await;
    assert_eq!(routed_hosts(&client, &slug, &r.gateway_namespace).await, hosts);
    r.s.cleanup().await;
}

/// A template that does not keep tenant and application apart ("<tenant>-<app>"), and an
/// application `assist` beside `u-assist`: `<older>` with u-assist and `<older>-u` with assist
/// claim the same prod host.
fn colliding(gateway_namespace: &str) -> Config {
    let mut config = gateway_config(gateway_namespace);
    config.hostnames.prod = "{tenant}-{app}.{domain}".to_string();
    config.applications.insert("assist".to_string(), config.applications["u-assist"].clone());
    config
}

#[tokio::test]
async fn two_tenants_never_share_a_hostname_across_ingresses_and_routes() {
    let r = Routed::start(colliding, true).await;
    // One on Ingresses (uk-legacy), the other on the Gateway (uk), same domain; both orders.
    for (older_cluster, newer_cluster) in [("uk-legacy", "uk"), ("uk", "uk-legacy")] {
        let older = r.slug("share");
        let newer = format!("{older}-u");
        r.stand_in.serve(&newer);
        let spec = |cluster: &str, apps: &[&str]| {
            json!({"displayName": "Sharing", "cluster": cluster, "environments": ["prod"], "applications": apps,
                   "database": {"provider": "none"}, "deletionPolicy": "Delete"})
        };
        r.s.create_tenant(&tenant(&older, spec(older_cluster, &["u-assist"]))).await;
        r.s.wait_tenant(&older, ready).await;
        r.s.create_tenant(&tenant(&newer, spec(newer_cluster, &["assist", "xconsole"]))).await;
        let t = r.s.wait_tenant(&newer, stalled("HostnameConflict")).await;
        let (_, _, message) = condition(&t, "Stalled").unwrap_or_default();
        assert!(message.contains(&older), "names the Tenant that holds the host: {message}");
        let host = format!("{older}-u-assist.uk.cloud.example.com");
        let prod = format!("{newer}-prod");
        let exists = |name: &'static str| {
            let (route_api, ingress_api) = (routes(&r.s.client(), &prod), Api::<Ingress>::namespaced(r.s.client(), &prod));
            async move { route_api.get_opt(name).await.is_ok_and(|o| o.is_some()) || ingress_api.get_opt(name).await.is_ok_and(|o| o.is_some()) }
        };
        r.s.wait_for("the uncontested route", || exists("xconsole")).await;
        assert!(!exists("assist").await, "{older_cluster} → {newer_cluster}: neither an Ingress nor an HTTPRoute for {host}");
        assert!(routed_hosts(&r.s.client(), &older, &r.gateway_namespace).await.contains(&host), "the older Tenant keeps {host}");

        // Once the older Tenant lets the host go, the newer one gets it, by its own kind.
        r.s.patch_spec(&older, json!({"applications": ["xconsole"]})).await;
        r.s.wait_tenant(&newer, ready).await;
        assert!(routed_hosts(&r.s.client(), &newer, &r.gateway_namespace).await.contains(&host));
    }
    r.s.cleanup().await;
}

#[tokio::test]
async fn deleting_a_gateway_tenant_keeps_or_removes_its_routes_as_for_ingresses() {
    let r = Routed::start(gateway_config, true).await;
    let (kept, dropped) = (r.slug("retain"), r.slug("delete"));
    r.s.create_tenant(&tenant(&kept, spec("uk", &["dev"], "Retain"))).await;
    r.s.create_tenant(&tenant(&dropped, spec("uk", &["dev"], "Delete"))).await;
    r.s.wait_tenant(&kept, ready).await;
    r.s.wait_tenant(&dropped, ready).await;

    // Retain: the tenant goes, its namespace is kept (retained) with the routes inside.
    r.s.delete_tenant(&kept).await;
    r.s.wait_tenant_gone(&kept).await;
    let namespace = Api::<Namespace>::all(r.s.client()).get(&format!("{kept}-dev")).await.expect("retained namespace");
    assert_eq!(namespace.labels().get("tenancy.platform.dev/retained").map(String::as_str), Some("true"));
    let kept_routes = routes(&r.s.client(), &format!("{kept}-dev")).list(&ListParams::default()).await.expect("routes").items;
    assert_eq!(kept_routes.len(), 2, "the routes stay in the retained namespace, as Ingresses do");

    // Delete: the namespace goes, and the routes with it.
    r.s.delete_tenant(&dropped).await;
    r.s.wait_tenant_gone(&dropped).await;
    r.s.wait_gone(Api::<Namespace>::all(r.s.client()), &format!("{dropped}-dev")).await;
    let left = routes(&r.s.client(), &format!("{dropped}-dev")).list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0);
    assert_eq!(left, 0);

    // An application removed: its route goes at once.
    let app = r.slug("app");
    r.s.create_tenant(&tenant(&app, spec("uk", &["dev"], "Delete"))).await;
    r.s.wait_tenant(&app, ready).await;
    r.s.patch_spec(&app, json!({"applications": ["xconsole"]})).await;
    let app_routes = routes(&r.s.client(), &format!("{app}-dev"));
    r.s.wait_for("the removed application's route to go", || async { matches!(app_routes.get_opt("u-assist").await, Ok(None)) }).await;
    r.s.wait_tenant(&app, ready).await;
    r.s.delete_namespaces_of(&kept).await;
    r.s.cleanup().await;
}

#[tokio::test]
async fn a_missing_gateway_stalls_the_tenant_until_it_is_created() {
    let r = Routed::start(gateway_config, false).await;
    let slug = r.slug("nogw");
    r.s.create_tenant(&tenant(&slug, spec("uk", &["dev"], "Delete"))).await;
    let t = r.s.wait_tenant(&slug, stalled("GatewayNotFound")).await;
    let (_, _, message) = condition(&t, "Stalled").unwrap_or_default();
    assert!(message.contains(&format!("Gateway {}/{} does not exist", r.gateway_namespace, gateway::GATEWAY)), "{message}");
    assert_eq!(t.status.as_ref().map(|s| s.namespaces.iter().filter(|n| n.state == NamespaceState::Active).count()), Some(1));
    let dev_routes = routes(&r.s.client(), &format!("{slug}-dev"));
    r.s.wait_for("the routes, waiting for their Gateway", || async {
        dev_routes.list(&ListParams::default()).await.is_ok_and(|l| l.items.len() == 2)
    })
    .await;

    apply_gateway(&r.s.client(), &gateway_manifest(&r.gateway_namespace)).await;
    r.s.wait_tenant(&slug, ready).await;
    r.s.cleanup().await;
}

#[tokio::test]
async fn without_the_gateway_api_a_gateway_tenant_is_stalled_with_a_clear_reason() {
    // The CRDs are cluster-wide: on the local control plane no other scenario of this binary runs meanwhile.
    let _absent = GATEWAY_API.write().await;
    let env = TestEnv::new().await;
    gateway::uninstall(&env).await;
    let s = Scenario::start_on(env, gateway_config("gateway-system")).await;
    let slug = s.slug("nogwapi");
    s.create_tenant(&tenant(&slug, spec("uk", &["dev"], "Delete"))).await;
    // Everything else of the tenant gets there (the account quota counted, too); only routing
    // waits.
    let is_stalled = stalled("GatewayApiNotInstalled");
    let t = s.wait_tenant(&slug, |t| is_stalled(t) && condition(t, "NamespacesReady").is_some_and(|(status, _, _)| status == "True")).await;
    let (_, _, message) = condition(&t, "Stalled").unwrap_or_default();
    assert!(message.contains("Gateway API") && message.contains("not installed"), "{message}");
    assert_eq!(t.status.as_ref().map(|s| s.namespaces.len()), Some(1));
    s.cleanup().await;
}
