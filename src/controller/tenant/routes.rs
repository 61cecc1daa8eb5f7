//! Whether an application's route works (condition `IngressReady`, which covers both kinds of
//! route): an Ingress once an ingress controller published an address for it, an HTTPRoute
//! once the gateway controller of the region's Gateway accepted it and resolved its backend,
//! for the route's current generation. Until then the message says which route waits and,
//! for an HTTPRoute, what the gateway controller said.
//!
//! Also the order of a switch between the two kinds (a region's `routing`, or a Tenant moved
//! to a region with the other routing): the route of the old kind is removed only once its
//! replacement works, so a hostname is never left without a route.

use serde_json::Value;

use crate::{
    config::{ClusterConfig, GatewayRef},
    controller::{caches::Child, Context},
    desired::{tenant::EnvironmentPlan, ChildKind, DesiredObject},
    gateway::{ACCEPTED, RESOLVED_REFS},
    types::{Problem, Reason},
};

/// What keeps the region's Gateway from routing anything, for a plan with HTTPRoutes: the
/// Gateway API is not installed, or the Gateway does not exist. Both need a person.
pub fn gateway_problem(ctx: &Context, cluster: &ClusterConfig, has_routes: bool) -> Option<Problem> {
    let gateway = cluster.routing_gateway().filter(|_| has_routes)?;
    if !ctx.caches.has(ChildKind::HttpRoute) {
        return Some(Problem::new(
            Reason::GatewayApiNotInstalled,
            format!(
                "the region routes through Gateway {} but the Gateway API (HTTPRoute, Gateway of gateway.networking.k8s.io/v1) \
                 is not installed on this cluster: install its CRDs and restart the operator, or set the region's routing to ingress",
                gateway.describe()
            ),
        ));
    }
    (ctx.gateways.exists(&gateway.namespace, &gateway.name) == Some(false)).then(|| {
        Problem::new(
            Reason::GatewayNotFound,
            format!(
                "Gateway {} does not exist: the tenant's HTTPRoutes are attached to it and route nothing until it is created \
                 (or the operator configuration names the right one)",
                gateway.describe()
            ),
        )
    })
}

/// The routes of the environment that do not route yet, each with why.
pub fn unrouted(env: &EnvironmentPlan, ctx: &Context, cluster: &ClusterConfig) -> Vec<Problem> {
    env.objects
        .iter()
        .filter(|desired| desired.kind.is_route())
        .filter_map(|desired| {
            let observed = ctx.caches.get(desired.kind, desired.namespace.as_deref(), &desired.name);
            match desired.kind {
                ChildKind::HttpRoute if !ctx.caches.has(ChildKind::HttpRoute) => None,
                ChildKind::HttpRoute => {
                    let gateway = cluster.routing_gateway()?;
                    route_not_accepted(desired, observed.as_ref(), gateway)
                }
                _ => ingress_without_address(desired, observed.as_ref()),
            }
        })
        .collect()
}

/// Whether the route `desired` routes now (see the module).
pub fn is_routed(desired: &DesiredObject, ctx: &Context, cluster: &ClusterConfig) -> bool {
    let observed = ctx.caches.get(desired.kind, desired.namespace.as_deref(), &desired.name);
    match desired.kind {
        ChildKind::HttpRoute => {
            ctx.caches.has(ChildKind::HttpRoute)
                && cluster.routing_gateway().is_some_and(|gateway| route_not_accepted(desired, observed.as_ref(), gateway).is_none())
        }
        _ => ingress_without_address(desired, observed.as_ref()).is_none(),
    }
}

fn ingress_without_address(desired: &DesiredObject, observed: Option<&Child>) -> Option<Problem> {
    if observed.is_some_and(|ingress| ingress.data().pointer("/status/loadBalancer/ingress/0").is_some()) {
        return None;
    }
    let class = desired.object.pointer("/spec/ingressClassName").and_then(|c| c.as_str()).unwrap_or("default");
    Some(Problem::new(
        Reason::WaitingForAddress,
        format!("{} has no address yet: the ingress controller of class {class} has not admitted it (is one running?)", desired.describe()),
    ))
}

/// Why the HTTPRoute is not routed by `gateway`, from what the cache keeps of it (its
/// generation and its parent statuses): `None` when the entry for the Gateway (and listener)
/// has `Accepted=True` and `ResolvedRefs=True`, both observed at the route's generation.
pub fn route_not_accepted(desired: &DesiredObject, observed: Option<&Child>, gateway: &GatewayRef) -> Option<Problem> {
    let waiting = |what: String| Some(Problem::new(Reason::WaitingForRoute, format!("{} {what}", desired.describe())));
    let Some(observed) = observed else { return waiting("is not created yet".into()) };
    let data = observed.data();
    let generation = data.pointer("/metadata/generation").and_then(Value::as_i64);
    let route_namespace = desired.namespace.as_deref().unwrap_or_default();
    let parents = data.pointer("/status/parents").and_then(Value::as_array).cloned().unwrap_or_default();
    let entry = parents.iter().find(|parent| {
        let reference = &parent["parentRef"];
        reference["name"].as_str() == Some(gateway.name.as_str())
            && reference["namespace"].as_str().unwrap_or(route_namespace) == gateway.namespace
            && reference["sectionName"].as_str() == gateway.section_name.as_deref()
    });
    let Some(entry) = entry else {
        return waiting(format!(
            "is not accepted yet: no gateway controller has reported on it for Gateway {} (is one running for the Gateway's class?)",
            gateway.describe()
        ));
    };
    for type_ in [ACCEPTED, RESOLVED_REFS] {
        let condition = entry["conditions"].as_array().into_iter().flatten().find(|c| c["type"].as_str() == Some(type_));
        let Some(condition) = condition else {
            return waiting(format!("is not accepted yet: the controller of Gateway {} has not set {type_}", gateway.describe()));
        };
        let observed_generation = condition["observedGeneration"].as_i64();
        if generation.is_some() && observed_generation.is_some() && observed_generation < generation {
            return waiting(format!(
                "is not accepted yet: the controller of Gateway {} reported {type_} for generation {} of the route, which is at {}",
                gateway.describe(),
                observed_generation.unwrap_or_default(),
                generation.unwrap_or_default()
            ));
        }
        if condition["status"].as_str() != Some("True") {
            let reason = condition["reason"].as_str().unwrap_or("no reason");
            let message = condition["message"].as_str().filter(|m| !m.is_empty()).map(|m| format!(": {m}")).unwrap_or_default();
            return waiting(format!(
                "is not routed by Gateway {}: {type_}={} ({reason}{message})",
                gateway.describe(),
                condition["status"].as_str().unwrap_or("Unknown")
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DynamicObject;
    use serde_json::json;

    fn gateway(section: Option<&str>) -> GatewayRef {
        GatewayRef {
            name: "public".into(),
            namespace: "gateway-system".into(),
            section_name: section.map(str::to_string),
            data_plane_namespace: None,
        }
    }

    fn desired() -> DesiredObject {
        DesiredObject { kind: ChildKind::HttpRoute, namespace: Some("acme-dev".into()), name: "xconsole".into(), object: json!({}) }
    }

    fn route(generation: i64, parents: Value) -> Child {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "xconsole", "namespace": "acme-dev", "generation": generation},
            "spec": {}, "status": {"parents": parents}
        }))
        .unwrap();
        Child::from_object(ChildKind::HttpRoute, &object)
    }

    fn parent(section: Option<&str>, accepted: (&str, &str, i64), resolved: (&str, &str, i64)) -> Value {
        let condition = |type_: &str, (status, reason, generation): (&str, &str, i64)| {
            json!({"type": type_, "status": status, "reason": reason, "message": "said so", "observedGeneration": generation,
                   "lastTransitionTime": "2026-01-01T00:00:00Z"})
        };
        json!({"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateway-system",
                             "sectionName": section},
               "controllerName": "example.com/gateway",
               "conditions": [condition("Accepted", accepted), condition("ResolvedRefs", resolved),
                              {"type": "Programmed", "status": "False", "reason": "Pending", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    }

    fn message(observed: Option<&Child>, gateway: &GatewayRef) -> Option<String> {
        route_not_accepted(&desired(), observed, gateway).map(|p| {
            assert_eq!(p.reason, Reason::WaitingForRoute);
            assert!(!p.reason.needs_a_person(), "waiting for the gateway controller is Reconciling");
            p.message
        })
    }

    #[test]
    fn routed_only_when_accepted_and_resolved_for_the_current_generation() {
        let gw = gateway(None);
        let ok = ("True", "Accepted", 2);
        let resolved = ("True", "ResolvedRefs", 2);
        assert_eq!(message(Some(&route(2, json!([parent(None, ok, resolved)]))), &gw), None);
        let none = message(None, &gw).unwrap();
        assert!(none.contains("HTTPRoute acme-dev/xconsole is not created yet"), "{none}");
        let silent = message(Some(&route(2, json!([]))), &gw).unwrap();
        assert!(silent.contains("no gateway controller has reported on it for Gateway gateway-system/public"), "{silent}");
        let refused = message(Some(&route(2, json!([parent(None, ("False", "NotAllowedByListeners", 2), resolved)]))), &gw).unwrap();
        assert!(
            refused.contains("HTTPRoute acme-dev/xconsole") && refused.contains("Accepted=False (NotAllowedByListeners: said so)"),
            "{refused}"
        );
        let backend = message(Some(&route(2, json!([parent(None, ok, ("False", "BackendNotFound", 2))]))), &gw).unwrap();
        assert!(backend.contains("ResolvedRefs=False (BackendNotFound"), "{backend}");
        let stale = message(Some(&route(3, json!([parent(None, ok, resolved)]))), &gw).unwrap();
        assert!(stale.contains("generation 2 of the route, which is at 3"), "{stale}");
    }

    #[test]
    fn only_the_entry_of_the_configured_gateway_and_listener_counts() {
        let accepted = json!([parent(Some("http"), ("True", "Accepted", 1), ("True", "ResolvedRefs", 1))]);
        assert!(message(Some(&route(1, accepted.clone())), &gateway(Some("https"))).is_some(), "another listener");
        assert!(message(Some(&route(1, accepted.clone())), &gateway(None)).is_some(), "a listener, not the whole Gateway");
        assert_eq!(message(Some(&route(1, accepted)), &gateway(Some("http"))), None);
        let mut elsewhere = parent(None, ("True", "Accepted", 1), ("True", "ResolvedRefs", 1));
        elsewhere["parentRef"]["namespace"] = json!("other");
        assert!(message(Some(&route(1, json!([elsewhere]))), &gateway(None)).is_some(), "a Gateway of the same name elsewhere");
    }
}
