//! An application's `HTTPRoute` in a `routing: gateway` region: the Ingress's hostname, path
//! and backend, attached to the region's shared Gateway, with the tenant's identity set on
//! every request by the Gateway itself.
//!
//! The filter **sets** the headers: a value a client sent is replaced, so behind the Gateway an
//! application can trust `X-Tenant-ID` (the configured `tenantHeader`) to name the tenant whose
//! hostname the request came in on. Nothing stops a client that reaches the Service without the
//! Gateway from sending any value; the NetworkPolicy admits only the tenant's own namespaces,
//! the ingress controller and the Gateway's data plane.

use super::meta;
use crate::{
    config::{ApplicationConfig, GatewayRef},
    desired::tenant_labels,
    gateway::{
        self, HTTPBackendRef, HTTPHeader, HTTPHeaderFilter, HTTPPathMatch, HTTPRoute, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule,
        HTTPRouteSpec, ParentReference,
    },
    naming,
    types::Environment,
};

/// The header that names the environment beside the tenant header.
pub const ENVIRONMENT_HEADER: &str = "X-Tenant-Environment";

/// The route of application `app` in the environment `env` of tenant `slug`, named like its
/// Ingress (the application key).
pub fn http_route(
    slug: &str,
    env: Environment,
    app: &str,
    app_config: &ApplicationConfig,
    gateway_ref: &GatewayRef,
    tenant_header: &str,
    host: &str,
) -> HTTPRoute {
    let namespace = naming::namespace_name(slug, env);
    let headers = vec![
        HTTPHeader { name: tenant_header.to_string(), value: slug.to_string() },
        HTTPHeader { name: ENVIRONMENT_HEADER.to_string(), value: env.as_str().to_string() },
    ];
    HTTPRoute {
        metadata: meta(app, Some(&namespace), tenant_labels(slug, Some(env))),
        spec: HTTPRouteSpec {
            parent_refs: vec![parent_ref(gateway_ref)],
            hostnames: vec![host.to_string()],
            rules: vec![HTTPRouteRule {
                matches: vec![HTTPRouteMatch {
                    path: Some(HTTPPathMatch { type_: "PathPrefix".to_string(), value: app_config.path.clone() }),
                }],
                filters: vec![HTTPRouteFilter {
                    type_: "RequestHeaderModifier".to_string(),
                    request_header_modifier: Some(HTTPHeaderFilter { set: headers, remove: Vec::new() }),
                }],
                backend_refs: vec![HTTPBackendRef {
                    name: app_config.service_name.clone(),
                    port: Some(i32::from(app_config.service_port)),
                }],
            }],
        },
        status: None,
    }
}

/// The reference to the region's Gateway, as the route's `parentRefs` carry it and as a gateway
/// controller repeats it in the route's status.
pub fn parent_ref(gateway_ref: &GatewayRef) -> ParentReference {
    ParentReference {
        group: Some(gateway::GROUP.to_string()),
        kind: Some("Gateway".to_string()),
        name: gateway_ref.name.clone(),
        namespace: Some(gateway_ref.namespace.clone()),
        section_name: gateway_ref.section_name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        config::{Config, GatewayRef, Routing},
        desired::{
            tenant::{
                hostnames,
                tests::{acme, example_config},
                TenantPlan,
            },
            ChildKind,
        },
    };
    use std::collections::BTreeSet;

    /// The example configuration with `uk` routed through the Gateway `gateway-system/public`.
    fn gateway_config(section: Option<&str>) -> Config {
        let mut config = example_config();
        let uk = config.clusters.get_mut("uk").unwrap();
        uk.routing = Routing::Gateway;
        uk.gateway = Some(GatewayRef {
            name: "public".into(),
            namespace: "gateway-system".into(),
            section_name: section.map(str::to_string),
            data_plane_namespace: Some("envoy-gateway-system".into()),
        });
        config
    }

    fn route<'a>(plan: &'a TenantPlan, namespace: &str, name: &str) -> &'a serde_json::Value {
        plan.objects()
            .find(|o| o.kind == ChildKind::HttpRoute && o.namespace.as_deref() == Some(namespace) && o.name == name)
            .map(|o| &o.object)
            .unwrap_or_else(|| panic!("no HTTPRoute {namespace}/{name}"))
    }

    #[test]
    fn a_gateway_region_gets_one_route_per_application_and_environment_and_no_ingress() {
        let plan = TenantPlan::build(&acme(), &gateway_config(Some("https"))).unwrap();
        assert!(plan.objects().all(|o| o.kind != ChildKind::Ingress), "no Ingress in a gateway region");
        let routes: Vec<String> = plan.objects().filter(|o| o.kind == ChildKind::HttpRoute).map(|o| o.describe()).collect();
        assert_eq!(routes.len(), 6, "{routes:?}");
        let prod = route(&plan, "acme-prod", "xconsole");
        assert_eq!(prod["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(prod["kind"], "HTTPRoute");
        assert_eq!(prod["metadata"]["labels"]["tenancy.platform.dev/tenant"], "acme");
        assert_eq!(prod["spec"]["hostnames"], serde_json::json!(["acme.xconsole.uk.cloud.example.com"]));
        assert_eq!(
            prod["spec"]["parentRefs"],
            serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
                                "namespace": "gateway-system", "sectionName": "https"}])
        );
        let rule = &prod["spec"]["rules"][0];
        assert_eq!(rule["matches"], serde_json::json!([{"path": {"type": "PathPrefix", "value": "/"}}]));
        assert_eq!(rule["backendRefs"], serde_json::json!([{"name": "xconsole", "port": 80}]));
        assert!(prod["status"].is_null(), "the operator never writes a route's status");
        let dev = route(&plan, "acme-dev", "u-assist");
        assert_eq!(dev["spec"]["hostnames"][0], "acme-dev.u-assist.uk.cloud.example.com");
        assert_eq!(dev["spec"]["rules"][0]["backendRefs"][0]["port"], 8080);
    }

    #[test]
    fn the_gateway_sets_the_tenant_and_environment_headers_replacing_what_a_client_sent() {
        let plan = TenantPlan::build(&acme(), &gateway_config(None)).unwrap();
        let staging = route(&plan, "acme-staging", "xconsole");
        let filters = &staging["spec"]["rules"][0]["filters"];
        assert_eq!(
            filters,
            &serde_json::json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [
                {"name": "X-Tenant-ID", "value": "acme"}, {"name": "X-Tenant-Environment", "value": "staging"}]}}]),
            "`set`, never `add`: a client's own X-Tenant-ID is replaced"
        );
        assert!(staging["spec"]["parentRefs"][0].get("sectionName").is_none(), "no listener named: not sent");
        let mut renamed = gateway_config(None);
        renamed.tenant_header = "X-Org".into();
        let plan = TenantPlan::build(&acme(), &renamed).unwrap();
        assert_eq!(
            route(&plan, "acme-dev", "xconsole")["spec"]["rules"][0]["filters"][0]["requestHeaderModifier"]["set"][0]["name"],
            "X-Org"
        );
    }

    #[test]
    fn routes_claim_the_same_hostnames_as_ingresses_and_give_them_up_alike() {
        let (ingress, gateway) = (example_config(), gateway_config(None));
        assert_eq!(hostnames(&acme(), &ingress), hostnames(&acme(), &gateway), "one index for both kinds");
        let mut plan = TenantPlan::build(&acme(), &gateway).unwrap();
        let contested = BTreeSet::from(["acme-dev.xconsole.uk.cloud.example.com".to_string()]);
        plan.without_hosts(&contested);
        assert!(plan
            .objects()
            .all(|o| !(o.kind == ChildKind::HttpRoute && o.namespace.as_deref() == Some("acme-dev") && o.name == "xconsole")));
        assert_eq!(plan.objects().filter(|o| o.kind == ChildKind::HttpRoute).count(), 5);
        assert!(plan.endpoints.iter().all(|e| !e.url.contains("acme-dev.xconsole")));
    }

    #[test]
    fn switching_routing_changes_the_routes_and_nothing_else() {
        // The region names its Gateway in both states: the NetworkPolicy admits both routers.
        let mut ingress = gateway_config(None);
        ingress.clusters.get_mut("uk").unwrap().routing = Routing::Ingress;
        let (before, after) = (TenantPlan::build(&acme(), &ingress).unwrap(), TenantPlan::build(&acme(), &gateway_config(None)).unwrap());
        let others = |plan: &TenantPlan| plan.objects().filter(|o| !o.kind.is_route()).cloned().collect::<Vec<_>>();
        assert_eq!(others(&before), others(&after));
        assert_eq!(before.endpoints, after.endpoints);
        let policy = &after.objects().find(|o| o.kind == ChildKind::NetworkPolicy).unwrap().object;
        let peers = policy["spec"]["ingress"][0]["from"].to_string();
        assert!(peers.contains("ingress-nginx") && peers.contains("envoy-gateway-system"), "{peers}");
    }
}
