//! The resource quota controller (it writes `status.hard` and `status.used`) and the object-count
//! part of ResourceQuota admission. Pods are admitted against quotas in `pods.rs`.
//!
//! As on the real server, admission reads the quota's status: a quota the controller has not
//! counted yet (no `status.hard`) restricts nothing, and one whose `status.used` lacks a
//! resource that `status.hard` names refuses that resource with "status unknown for quota".
//! Simpler than the real controller: usage is counted in the background pass right after a
//! change in the namespace (no resync period), scopes are ignored, and a resource is counted only
//! when the fake serves it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::errors::ApiError;
use crate::pods::{format_quantity, pod_usage, quantities};
use crate::resources::ResourceType;
use crate::store::State;

/// Core kinds counted under their plural alone (`configmaps`), besides `count/<plural>`.
const STANDARD_COUNTS: &[&str] =
    &["services", "configmaps", "secrets", "persistentvolumeclaims", "replicationcontrollers", "resourcequotas"];

const RESOURCE_QUOTAS: (&str, &str) = ("", "resourcequotas");

fn objects_in<'a>(state: &'a State, group: &str, plural: &str, ns: &str) -> impl Iterator<Item = &'a Value> {
    let from = (ns.to_string(), String::new());
    let ns = ns.to_string();
    state
        .objects
        .get(&(group.to_string(), plural.to_string()))
        .into_iter()
        .flat_map(move |m| m.range(from.clone()..))
        .take_while(move |((n, _), _)| *n == ns)
        .map(|(_, v)| &**v)
}

/// The `(group, plural)` whose objects a quota key counts (`configmaps`, `count/configmaps`,
/// `count/tenantusers.tenancy.platform.dev`).
fn counted_resource(key: &str) -> Option<(String, String)> {
    if let Some(rest) = key.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    STANDARD_COUNTS.contains(&key).then(|| (String::new(), key.to_string()))
}

fn is_pod_resource(key: &str) -> bool {
    key == "pods"
        || key == "count/pods"
        || ["cpu", "memory", "ephemeral-storage"].contains(&key)
        || (key.starts_with("requests.") && key != "requests.storage")
        || key.starts_with("limits.")
}

fn service_type(service: &Value) -> &str {
    service.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP")
}

/// What the namespace uses of `key`, in thousandths (as `pods::parse_quantity`); `None` for a
/// resource the fake does not count (the real controller has no evaluator for it either).
fn used(state: &State, ns: &str, key: &str) -> Option<i128> {
    if is_pod_resource(key) {
        let running = objects_in(state, "", "pods", ns)
            .filter(|p| !matches!(p.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")));
        return Some(running.map(|pod| pod_usage(pod).get(key).copied().unwrap_or(0)).sum());
    }
    match key {
        "services.nodeports" => Some(
            objects_in(state, "", "services", ns)
                .filter(|s| matches!(service_type(s), "NodePort" | "LoadBalancer"))
                .map(|s| s.pointer("/spec/ports").and_then(Value::as_array).map_or(0, |p| p.len() as i128) * 1000)
                .sum(),
        ),
        "services.loadbalancers" => {
            Some(objects_in(state, "", "services", ns).filter(|s| service_type(s) == "LoadBalancer").count() as i128 * 1000)
        }
        "requests.storage" => Some(
            objects_in(state, "", "persistentvolumeclaims", ns)
                .map(|pvc| quantities(pvc.pointer("/spec/resources/requests")).get("storage").copied().unwrap_or(0))
                .sum(),
        ),
        _ => {
            let (group, plural) = counted_resource(key)?;
            state.registry.find_any(&group, &plural)?;
            Some(objects_in(state, &group, &plural, ns).count() as i128 * 1000)
        }
    }
}

/// The status the quota controller writes for `quota`.
fn counted(state: &State, ns: &str, quota: &Value) -> Value {
    let hard = quota.pointer("/spec/hard").cloned().unwrap_or(json!({}));
    let used: Map<String, Value> = hard
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| Some((key.clone(), json!(format_quantity(used(state, ns, key)?)))))
        .collect();
    json!({"hard": hard, "used": used})
}

/// The quota controller: the quotas of the namespaces where something changed get their usage
/// counted anew. Returns whether it wrote.
pub fn refresh(state: &mut State, namespaces: &BTreeSet<String>) -> bool {
    let Some(rt) = state.registry.find_any(RESOURCE_QUOTAS.0, RESOURCE_QUOTAS.1).cloned() else {
        return false;
    };
    let mut did = false;
    for ns in namespaces {
        let stale: Vec<(Value, crate::store::Obj)> = state
            .objects
            .get(&(RESOURCE_QUOTAS.0.to_string(), RESOURCE_QUOTAS.1.to_string()))
            .into_iter()
            .flat_map(|m| m.range((ns.clone(), String::new())..))
            .take_while(|((n, _), _)| n == ns)
            .filter(|(_, quota)| quota.pointer("/metadata/deletionTimestamp").is_none())
            .filter_map(|(_, quota)| {
                let status = counted(state, ns, quota);
                (quota.get("status") != Some(&status)).then(|| (status, quota.clone()))
            })
            .collect();
        for (status, old) in stale {
            let mut quota = (*old).clone();
            quota["status"] = status;
            state.commit(&rt, quota, Some(old));
            did = true;
        }
    }
    did
}

/// ResourceQuota admission of a new object of `rt` in `ns` against the object counts of the
/// namespace's quotas (pods: see `pods::admit_quota`).
pub fn admit_count(state: &State, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
    if rt.group.is_empty() && rt.plural == "pods" {
        return Ok(());
    }
    let is_this = |key: &str| counted_resource(key).is_some_and(|(group, plural)| group == rt.group && plural == rt.plural);
    for quota in objects_in(state, RESOURCE_QUOTAS.0, RESOURCE_QUOTAS.1, ns) {
        let quota_name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let hard = quantities(quota.pointer("/status/hard"));
        let keys: Vec<&String> = hard.keys().filter(|key| is_this(key)).collect();
        if keys.is_empty() {
            continue;
        }
        let used = quantities(quota.pointer("/status/used"));
        let unknown: Vec<&str> = keys.iter().filter(|key| !used.contains_key(key.as_str())).map(|k| k.as_str()).collect();
        if !unknown.is_empty() {
            let err = format!("status unknown for quota: {quota_name}, resources: {}", unknown.join(","));
            return Err(ApiError::forbidden(&rt.group, &rt.plural, name, &err));
        }
        let exceeded: BTreeMap<&str, (i128, i128)> = keys
            .iter()
            .filter_map(|key| {
                let (limit, now) = (hard[key.as_str()], used[key.as_str()]);
                (now + 1000 > limit).then_some((key.as_str(), (now, limit)))
            })
            .collect();
        if !exceeded.is_empty() {
            let list = |value: &dyn Fn(&(i128, i128)) -> i128| {
                exceeded.iter().map(|(k, v)| format!("{k}={}", format_quantity(value(v)))).collect::<Vec<_>>().join(",")
            };
            let err = format!(
                "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                exceeded.keys().map(|k| format!("{k}=1")).collect::<Vec<_>>().join(","),
                list(&|(now, _)| *now),
                list(&|(_, limit)| *limit),
            );
            return Err(ApiError::forbidden(&rt.group, &rt.plural, name, &err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_keys_name_the_resources_they_count() {
        assert_eq!(counted_resource("configmaps"), Some((String::new(), "configmaps".into())));
        assert_eq!(counted_resource("count/secrets"), Some((String::new(), "secrets".into())));
        assert_eq!(counted_resource("count/tenantusers.tenancy.platform.dev"), Some(("tenancy.platform.dev".into(), "tenantusers".into())));
        assert_eq!(counted_resource("requests.cpu"), None);
        assert!(is_pod_resource("limits.ephemeral-storage") && !is_pod_resource("requests.storage"));
    }
}
