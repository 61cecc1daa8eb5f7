//! The tree and the tables, from the status documents of `tests/data/status/`.

use std::collections::BTreeMap;

use super::*;
use crate::plugin::view::{EventView, Observed, QuotaUse, RouteView};
use crate::types::{Tenant, TenantUser};

fn tenant(json: &str) -> Tenant {
    serde_json::from_str(json).expect("a Tenant status document")
}

fn user(json: &str) -> TenantUser {
    serde_json::from_str(json).expect("a TenantUser status document")
}

const READY: &str = include_str!("../../../tests/data/status/tenant-ready.json");
const STALLED: &str = include_str!("../../../tests/data/status/tenant-failed-stalled.json");
const USER_READY: &str = include_str!("../../../tests/data/status/tenantuser-ready.json");
const USER_DUPLICATE: &str = include_str!("../../../tests/data/status/tenantuser-duplicate-email.json");

fn observed() -> Observed {
    Observed {
        users: vec![user(USER_READY), user(USER_DUPLICATE)],
        addresses: BTreeMap::from([(("acme-dev".to_string(), "xconsole".to_string()), "203.0.113.10".to_string())]),
        routes: BTreeMap::new(),
        quotas: BTreeMap::from([("acme-dev".to_string(), vec![QuotaUse { resource: "pods".into(), used: "3".into(), hard: "50".into() }])]),
        events: vec![EventView {
            time: "2026-05-04T10:00:00Z".into(),
            type_: "Normal".into(),
            reason: "Created".into(),
            note: "Applied 12 objects in acme-dev, acme-prod".into(),
        }],
    }
}

#[test]
fn the_status_tree_of_a_ready_tenant() {
    let view = TenantView::build(&tenant(READY), &observed());
    let text = tree(&view, Style::default());
    println!("{text}");
    assert_eq!(text, include_str!("../../../tests/data/plugin/status-acme.txt"));
}

#[test]
fn colour_only_when_asked() {
    let view = TenantView::build(&tenant(READY), &observed());
    assert!(!tree(&view, Style { color: false }).contains('\x1b'));
    let coloured = tree(&view, Style { color: true });
    assert!(coloured.contains("\x1b[32mReady\x1b[0m"), "{coloured}");
}

#[test]
fn a_stalled_tenant_shows_why_and_what_is_missing() {
    let view = TenantView::build(&tenant(STALLED), &Observed::default());
    let text = tree(&view, Style::default());
    let ready = view.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert!(text.contains(&format!("Ready=False {}: {}", ready.reason, ready.message)), "{text}");
    assert!(text.contains("Stalled=True"), "{text}");
    assert!(text.contains("phase Failed"), "{text}");
}

#[test]
fn rotation_and_its_waiting_reason_are_shown() {
    let mut t = tenant(READY);
    if let Some(status) = t.status.as_mut() {
        status.databases[0].rotation_request = Some("2026-12-06T08:00:00Z".into());
        status.databases[0].credentials_rotated_at = Some("2026-12-06T08:00:03Z".into());
        status.databases[1].rotation_message = Some("rotation request t2 waits: the Tenant is suspended".into());
    }
    let text = tree(&TenantView::build(&t, &Observed::default()), Style::default());
    assert!(text.contains("Last rotation 2026-12-06T08:00:03Z (request 2026-12-06T08:00:00Z)"), "{text}");
    assert!(text.contains("Rotation: rotation request t2 waits: the Tenant is suspended"), "{text}");
}

#[test]
fn the_users_table_gives_each_environments_access() {
    let view = TenantView::build(&tenant(READY), &observed());
    let text = users(&view);
    println!("{text}");
    assert_eq!(text, include_str!("../../../tests/data/plugin/users-acme.txt"));
}

#[test]
fn the_list_has_one_line_per_tenant_with_its_age() {
    let now: Timestamp = "2026-05-06T10:00:00Z".parse().expect("time");
    let rows = [ListRow::build(&tenant(READY), 2), ListRow::build(&tenant(STALLED), 0)];
    let text = list(&rows, now);
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "PHASE", "READY", "ENVIRONMENTS", "DATABASES", "USERS", "AGE"]);
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["acme", "Ready", "True", "dev,prod", "2/2", "2", "2d"]);
}

#[test]
fn ages_read_like_kubectls() {
    let t = |s: i64| Timestamp::from_second(s).expect("time");
    assert_eq!(age(t(0), t(45)), "45s");
    assert_eq!(age(t(0), t(600)), "10m");
    assert_eq!(age(t(0), t(5 * 3600)), "5h");
    assert_eq!(age(t(0), t(3 * 86400)), "3d");
    assert_eq!(age(t(10), t(0)), "0s", "a clock behind the server");
}

#[test]
fn the_json_document_holds_the_same_facts() {
    let view = TenantView::build(&tenant(READY), &observed());
    let doc = serde_json::to_value(&view).expect("json");
    assert_eq!(doc["phase"], "Ready");
    assert_eq!(doc["environments"][0]["namespace"], "acme-dev");
    assert_eq!(doc["environments"][0]["hosts"][0]["address"], "203.0.113.10");
    assert_eq!(doc["environments"][0]["database"]["secretName"], "acme-db-credentials");
    assert_eq!(doc["account"]["users"][0]["access"]["prod"], "tenancy:viewer");
}

fn route(generation: i64, conditions: serde_json::Value) -> crate::gateway::HTTPRoute {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "xconsole", "namespace": "acme-dev", "generation": generation},
        "spec": {},
        "status": {"parents": [{"parentRef": {"name": "public", "namespace": "gateway-system"}, "controllerName": "example.com/gw",
                                "conditions": conditions}]}
    }))
    .expect("route")
}

fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> serde_json::Value {
    serde_json::json!({"type": type_, "status": status, "reason": reason, "message": "", "observedGeneration": generation,
                       "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

/// A host served by an HTTPRoute shows what its gateway controller said, for the route's
/// current generation.
#[test]
fn a_gateway_routed_host_shows_its_route_acceptance() {
    let accepted =
        route(2, serde_json::json!([condition("Accepted", "True", "Accepted", 2), condition("ResolvedRefs", "True", "ResolvedRefs", 2)]));
    let refused = route(
        2,
        serde_json::json!([
            condition("Accepted", "False", "NotAllowedByListeners", 2),
            condition("ResolvedRefs", "True", "ResolvedRefs", 2)
        ]),
    );
    let stale =
        route(3, serde_json::json!([condition("Accepted", "True", "Accepted", 2), condition("ResolvedRefs", "True", "ResolvedRefs", 2)]));
    assert_eq!(RouteView::of(&accepted), RouteView { accepted: true, detail: "accepted by Gateway gateway-system/public".into() });
    assert_eq!(RouteView::of(&refused).detail, "Accepted=False (NotAllowedByListeners) from Gateway gateway-system/public");
    assert!(!RouteView::of(&stale).accepted, "an answer about an older generation");

    let mut observed = observed();
    observed.routes.insert(("acme-dev".into(), "xconsole".into()), RouteView::of(&refused));
    let text = tree(&TenantView::build(&tenant(READY), &observed), Style::default());
    assert!(text.contains("route not accepted: Accepted=False (NotAllowedByListeners) from Gateway gateway-system/public"), "{text}");
}
