//! Pod admission as the real server chains it: defaulting (requests from limits), the
//! LimitRanger plugin (default requests/limits of the namespace's LimitRanges), PodSecurity
//! (`pod_security.rs`) and, after the ValidatingAdmissionPolicies, the ResourceQuota plugin
//! (`must specify ...` constraints, `exceeded quota`, pod counts).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::errors::ApiError;
use super::store::State;

/// A quantity in thousandths of its unit (`500m` → 500, `1Gi` → 1073741824000).
pub fn parse_quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some((n * factor * 1000.0).round() as i128)
}

/// A canonical form of a quantity of thousandths: whole numbers plain (with the largest
/// binary suffix that divides them), else milli.
pub(crate) fn format_quantity(milli: i128) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut n = milli / 1000;
    if n == 0 {
        return "0".into();
    }
    for suffix in ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if n % 1024 != 0 || suffix == "Ei" {
            return format!("{n}{suffix}");
        }
        n /= 1024;
    }
    unreachable!("the loop returns at Ei")
}

pub(crate) fn quantities(v: Option<&Value>) -> BTreeMap<String, i128> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, q)| Some((k.clone(), parse_quantity(q.as_str()?)?))).collect())
        .unwrap_or_default()
}

fn containers_mut(pod: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        for (k, v) in spec.iter_mut() {
            if k == "containers" || k == "initContainers" {
                out.extend(v.as_array_mut().into_iter().flatten());
            }
        }
    }
    out
}

/// Pod defaulting: a container with a limit but no request for a resource requests its limit.
pub fn default_pod(pod: &mut Value) {
    for c in containers_mut(pod) {
        let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else {
            continue;
        };
        let requests = c["resources"].as_object_mut().map(|r| r.entry("requests").or_insert_with(|| json!({})));
        if let Some(requests) = requests.and_then(Value::as_object_mut) {
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// `SetDefaults_LimitRangeItem`: for Container items, `default` from `max`, `defaultRequest`
/// from `default`, then from `min`.
pub fn default_limit_range(lr: &mut Value) {
    let Some(items) = lr.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else {
        return;
    };
    for item in items.iter_mut().filter(|i| i.get("type").and_then(Value::as_str) == Some("Container")) {
        for (from, to) in [("max", "default"), ("default", "defaultRequest"), ("min", "defaultRequest")] {
            let Some(source) = item.get(from).and_then(Value::as_object).cloned() else {
                continue;
            };
            let target = item.as_object_mut().map(|m| m.entry(to).or_insert_with(|| json!({})));
            if let Some(target) = target.and_then(Value::as_object_mut) {
                for (k, v) in source {
                    target.entry(k).or_insert(v);
                }
            }
        }
    }
}

pub(crate) fn namespace_objects<'a>(state: &'a State, plural: &str, ns: &str) -> impl Iterator<Item = &'a Value> {
    let from = (ns.to_string(), String::new());
    let ns = ns.to_string();
    state
        .objects
        .get(&(String::new(), plural.to_string()))
        .into_iter()
        .flat_map(move |m| m.range(from.clone()..))
        .take_while(move |((n, _), _)| *n == ns)
        .map(|(_, v)| &**v)
}

/// LimitRanger: containers without requests/limits get the namespace's defaults.
fn limit_ranger(state: &State, ns: &str, pod: &mut Value) {
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    for lr in namespace_objects(state, "limitranges", ns) {
        for item in lr.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten() {
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                continue;
            }
            for (source, into) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
                if let Some(m) = item.get(source).and_then(Value::as_object) {
                    into.extend(m.clone());
                }
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    for c in containers_mut(pod) {
        if !c.get("resources").is_some_and(Value::is_object) {
            c["resources"] = json!({});
        }
        for (key, defaults) in [("limits", &limits), ("requests", &requests)] {
            if defaults.is_empty() {
                continue;
            }
            let set = c["resources"].as_object_mut().map(|r| r.entry(key).or_insert_with(|| json!({})));
            if let Some(set) = set.and_then(Value::as_object_mut) {
                for (k, v) in defaults {
                    set.entry(k.clone()).or_insert(v.clone());
                }
            }
        }
    }
}

/// What a pod counts against a quota: `pods`, `requests.*` (also as `cpu`/`memory`) and
/// `limits.*`; containers add up, an init container counts when it asks for more.
pub(crate) fn pod_usage(pod: &Value) -> BTreeMap<String, i128> {
    let per_container = |c: &Value| {
        let mut u = BTreeMap::new();
        for (k, q) in quantities(c.pointer("/resources/requests")) {
            if k == "cpu" || k == "memory" {
                u.insert(k.clone(), q);
            }
            u.insert(format!("requests.{k}"), q);
        }
        for (k, q) in quantities(c.pointer("/resources/limits")) {
            u.insert(format!("limits.{k}"), q);
        }
        u
    };
    let mut total: BTreeMap<String, i128> = BTreeMap::new();
    for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        for (k, q) in per_container(c) {
            *total.entry(k).or_default() += q;
        }
    }
    for c in pod.pointer("/spec/initContainers").and_then(Value::as_array).into_iter().flatten() {
        for (k, q) in per_container(c) {
            let t = total.entry(k).or_default();
            *t = (*t).max(q);
        }
    }
    total.insert("pods".into(), 1000);
    total.insert("count/pods".into(), 1000);
    total
}

const CONSTRAINED: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

/// The pod evaluator's `Constraints`: with cpu/memory quota'd, every container must say it.
fn constraints(hard: &BTreeMap<String, i128>, pod: &Value) -> Result<(), String> {
    let required: BTreeSet<&str> = CONSTRAINED.iter().copied().filter(|r| hard.contains_key(*r)).collect();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["/spec/containers", "/spec/initContainers"] {
        for c in pod.pointer(list).and_then(Value::as_array).into_iter().flatten() {
            let mut has: BTreeSet<String> = BTreeSet::new();
            for k in quantities(c.pointer("/resources/requests")).into_keys() {
                has.insert(format!("requests.{k}"));
                has.insert(k);
            }
            for k in quantities(c.pointer("/resources/limits")).into_keys() {
                has.insert(format!("limits.{k}"));
            }
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            for r in &required {
                if !has.contains(*r) {
                    missing.entry(r).or_default().insert(name.clone());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> =
        missing.iter().map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(","))).collect();
    Err(format!("must specify {}", parts.join("; ")))
}

fn pretty(m: &BTreeMap<String, i128>) -> String {
    m.iter().map(|(k, v)| format!("{k}={}", format_quantity(*v))).collect::<Vec<_>>().join(",")
}

/// ResourceQuota admission of a new pod in `ns`. The quota's `status.hard` is taken as its
/// `spec.hard` (the fake has no quota controller lagging behind) and usage is counted from
/// the pods stored now.
fn resource_quota(state: &State, ns: &str, pod: &Value, name: &str) -> Result<(), ApiError> {
    let requested = pod_usage(pod);
    for quota in namespace_objects(state, "resourcequotas", ns) {
        let quota_name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let hard = quantities(quota.pointer("/spec/hard"));
        if hard.is_empty() {
            continue;
        }
        constraints(&hard, pod).map_err(|e| ApiError::forbidden("", "pods", name, &format!("failed quota: {quota_name}: {e}")))?;
        let mut used: BTreeMap<String, i128> = hard.keys().map(|k| (k.clone(), 0)).collect();
        for existing in namespace_objects(state, "pods", ns) {
            for (k, q) in pod_usage(existing) {
                if let Some(u) = used.get_mut(&k) {
                    *u += q;
                }
            }
        }
        let exceeded: Vec<&String> = hard
            .iter()
            .filter(|(k, h)| requested.get(*k).is_some_and(|r| used.get(*k).copied().unwrap_or(0) + r > **h))
            .map(|(k, _)| k)
            .collect();
        if !exceeded.is_empty() {
            let mask = |m: &BTreeMap<String, i128>| -> BTreeMap<String, i128> {
                m.iter().filter(|(k, _)| exceeded.contains(k)).map(|(k, v)| (k.clone(), *v)).collect()
            };
            return Err(ApiError::forbidden(
                "",
                "pods",
                name,
                &format!(
                    "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                    pretty(&mask(&requested)),
                    pretty(&mask(&used)),
                    pretty(&mask(&hard))
                ),
            ));
        }
    }
    Ok(())
}

/// The admission chain for a pod being created in `ns` up to the validating policies:
/// defaults, LimitRanger, PodSecurity. [`admit_quota`] comes last, as on the real server.
pub fn admit(state: &State, ns: &str, name: &str, pod: &mut Value) -> Result<(), ApiError> {
    default_pod(pod);
    limit_ranger(state, ns, pod);
    default_pod(pod);
    let namespace_labels = state.namespace_state(ns).and_then(|n| n.pointer("/metadata/labels"));
    super::pod_security::admit(namespace_labels, name, pod)
}

/// ResourceQuota admission, the last validating plugin (after ValidatingAdmissionPolicies).
pub fn admit_quota(state: &State, ns: &str, name: &str, pod: &Value) -> Result<(), ApiError> {
    resource_quota(state, ns, pod, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_and_print_like_kubernetes() {
        assert_eq!(parse_quantity("500m"), Some(500));
        assert_eq!(parse_quantity("2"), Some(2000));
        assert_eq!(parse_quantity("0.5"), Some(500));
        assert_eq!(parse_quantity("1Gi"), Some(1024 * 1024 * 1024 * 1000));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_quantity("1e3"), Some(1_000_000));
        assert_eq!(parse_quantity("x"), None);
        assert_eq!(format_quantity(500), "500m");
        assert_eq!(format_quantity(2000), "2");
        assert_eq!(format_quantity(256 * 1024 * 1024 * 1000), "256Mi");
    }

    #[test]
    fn constraints_name_each_missing_resource_and_its_containers() {
        let hard = quantities(Some(&json!({"requests.cpu": "1", "requests.memory": "1Gi", "pods": "5"})));
        let pod = json!({"spec": {"containers": [
            {"name": "b", "resources": {"requests": {"memory": "1Mi"}}},
            {"name": "a"},
        ]}});
        assert_eq!(constraints(&hard, &pod), Err("must specify requests.cpu for: a,b; requests.memory for: a".into()));
    }
}
