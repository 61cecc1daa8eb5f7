//! Background controllers of the fake: owner-reference garbage collection (background,
//! foreground, orphan), namespace deletion, and a minimal StatefulSet controller that makes
//! the PersistentVolumeClaims of `volumeClaimTemplates` and the pods `<sts>-<ordinal>` (through
//! pod admission: a refused pod is a `FailedCreate` Event on the StatefulSet).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::resources::ResourceType;
use super::store::{finalizers, has_spec_finalizers, is_deleting, meta_mut, meta_str, DeleteOpts, Propagation, State, WriteCtx};

struct Entry {
    rt: ResourceType,
    ns: String,
    name: String,
    obj: Value,
}

/// Copies of the stored objects of the kinds `kinds` admits that `keep` selects. The
/// controllers run under the store's lock, so they copy only what they act on.
fn snapshot_where(state: &State, kinds: impl Fn(&ResourceType) -> bool, keep: impl Fn(&ResourceType, &str, &Value) -> bool) -> Vec<Entry> {
    let mut out = Vec::new();
    for (res, objs) in &state.objects {
        let Some(rt) = state.registry.find_any(&res.0, &res.1) else {
            continue;
        };
        if !kinds(rt) {
            continue;
        }
        for ((ns, name), obj) in objs {
            if keep(rt, ns, obj) {
                out.push(Entry { rt: rt.clone(), ns: ns.clone(), name: name.clone(), obj: obj.clone() });
            }
        }
    }
    out
}

/// What the garbage collector needs to know about a possible owner.
struct Owner {
    deleting: bool,
    finalizers: Vec<String>,
    /// Empty for a cluster-scoped owner.
    namespace: String,
}

fn owners_by_uid(state: &State) -> HashMap<String, Owner> {
    let mut out = HashMap::new();
    for objs in state.objects.values() {
        for ((ns, _), obj) in objs {
            if let Some(uid) = meta_str(obj, "uid") {
                out.insert(uid.to_string(), Owner { deleting: is_deleting(obj), finalizers: finalizers(obj), namespace: ns.clone() });
            }
        }
    }
    out
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.kind == "Namespace" && rt.group.is_empty()
}

fn has_owner_refs(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).is_some_and(|refs| !refs.is_empty())
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn uid_of(v: &Value) -> String {
    v.get("uid").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn set_finalizers(state: &mut State, e: &Entry, fins: Vec<String>) {
    let Some(cur) = state.lookup(&e.rt, &e.ns, &e.name).cloned() else {
        return;
    };
    let mut o = cur.clone();
    meta_mut(&mut o).insert("finalizers".into(), json!(fins));
    if fins.is_empty() {
        meta_mut(&mut o).remove("finalizers");
    }
    if is_deleting(&o) && fins.is_empty() && !has_spec_finalizers(&o) {
        state.remove(&e.rt, &e.ns, &e.name);
    } else {
        state.commit(&e.rt, o, Some(cur));
    }
}

fn set_owner_refs(state: &mut State, e: &Entry, refs: Vec<Value>) {
    let Some(cur) = state.lookup(&e.rt, &e.ns, &e.name).cloned() else {
        return;
    };
    let mut o = cur.clone();
    if refs.is_empty() {
        meta_mut(&mut o).remove("ownerReferences");
    } else {
        meta_mut(&mut o).insert("ownerReferences".into(), Value::Array(refs));
    }
    state.commit(&e.rt, o, Some(cur));
}

fn delete(state: &mut State, e: &Entry, p: Propagation) {
    let _ = state.delete(&e.rt, &e.ns, &e.name, &DeleteOpts { propagation: Some(p), ..Default::default() });
}

/// One pass of every controller; true when something changed.
pub fn run_pass(state: &mut State) -> bool {
    namespaces(state)
        | garbage_collect(state)
        | (state.simulate_statefulsets && statefulsets(state))
        | (state.simulate_ingress_controller && ingresses(state))
}

/// Address the simulated ingress controller publishes (TEST-NET-1, RFC 5737).
pub const INGRESS_ADDRESS: &str = "192.0.2.10";

/// An ingress controller: every Ingress without an address gets one in
/// `status.loadBalancer.ingress`, as ingress-nginx publishes its Service's address. (A real
/// controller serves only its own class; the fake serves every class.)
fn ingresses(state: &mut State) -> bool {
    let unrouted = snapshot_where(
        state,
        |rt| rt.kind == "Ingress" && rt.group == "networking.k8s.io",
        |_, _, obj| !is_deleting(obj) && obj.pointer("/status/loadBalancer/ingress/0").is_none(),
    );
    for ingress in &unrouted {
        let mut routed = ingress.obj.clone();
        routed["status"] = json!({"loadBalancer": {"ingress": [{"ip": INGRESS_ADDRESS}]}});
        state.commit(&ingress.rt, routed, Some(ingress.obj.clone()));
    }
    !unrouted.is_empty()
}

fn namespaces(state: &mut State) -> bool {
    let mut changed = false;
    let deleting = snapshot_where(state, is_namespace, |_, _, obj| is_deleting(obj));
    if deleting.is_empty() {
        return false;
    }
    let all = snapshot_where(state, |rt| rt.namespaced, |_, ns, _| deleting.iter().any(|d| d.name == ns));
    for ns in &deleting {
        let contents: Vec<&Entry> = all.iter().filter(|e| e.ns == ns.name).collect();
        for e in &contents {
            if !is_deleting(&e.obj) {
                delete(state, e, Propagation::Background);
                changed = true;
            }
        }
        if contents.is_empty() && has_spec_finalizers(&ns.obj) {
            let mut o = ns.obj.clone();
            let fins: Vec<Value> = o
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter(|f| f.as_str() != Some("kubernetes")).cloned().collect())
                .unwrap_or_default();
            o["spec"]["finalizers"] = Value::Array(fins);
            if !has_spec_finalizers(&o) && finalizers(&o).is_empty() {
                state.remove(&ns.rt, "", &ns.name);
            } else {
                state.commit(&ns.rt, o, Some(ns.obj.clone()));
            }
            changed = true;
        }
    }
    changed
}

fn garbage_collect(state: &mut State) -> bool {
    let mut changed = false;
    let dependents_all = snapshot_where(state, |_| true, |_, _, obj| has_owner_refs(obj));
    let by_uid = if dependents_all.is_empty() { HashMap::new() } else { owners_by_uid(state) };

    // dependents' side
    for d in &dependents_all {
        let refs = owner_refs(&d.obj);
        if refs.is_empty() {
            continue;
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), Vec::new());
        for r in &refs {
            // A namespaced owner counts only in the dependent's own namespace: the real
            // collector treats a reference into another namespace as absent and deletes the
            // dependent (event OwnerRefInvalidNamespace).
            match by_uid.get(&uid_of(r)).filter(|owner| owner.namespace.is_empty() || owner.namespace == d.ns) {
                None => dangling.push(uid_of(r)),
                Some(owner) => {
                    let f = &owner.finalizers;
                    if owner.deleting && f.iter().any(|x| x == "foregroundDeletion") {
                        waiting.push(uid_of(r));
                    } else if owner.deleting && f.iter().any(|x| x == "orphan") {
                        // handled from the owner's side
                        solid += 1;
                    } else {
                        solid += 1;
                    }
                }
            }
        }
        if solid > 0 {
            if !dangling.is_empty() || !waiting.is_empty() {
                let keep: Vec<Value> =
                    refs.iter().filter(|r| !dangling.contains(&uid_of(r)) && !waiting.contains(&uid_of(r))).cloned().collect();
                set_owner_refs(state, d, keep);
                changed = true;
            }
        } else if !is_deleting(&d.obj) {
            let p = if waiting.is_empty() { Propagation::Background } else { Propagation::Foreground };
            delete(state, d, p);
            changed = true;
        }
    }

    // owners' side
    let deleting = snapshot_where(state, |_| true, |_, _, obj| is_deleting(obj));
    if deleting.is_empty() {
        return changed;
    }
    let dependents_all = snapshot_where(state, |_| true, |_, _, obj| has_owner_refs(obj));
    for owner in &deleting {
        let uid = meta_str(&owner.obj, "uid").unwrap_or_default().to_string();
        let fins = finalizers(&owner.obj);
        let dependents: Vec<&Entry> = dependents_all.iter().filter(|d| owner_refs(&d.obj).iter().any(|r| uid_of(r) == uid)).collect();
        if fins.iter().any(|f| f == "orphan") {
            for d in &dependents {
                let keep: Vec<Value> = owner_refs(&d.obj).into_iter().filter(|r| uid_of(r) != uid).collect();
                set_owner_refs(state, d, keep);
            }
            set_finalizers(state, owner, fins.iter().filter(|f| *f != "orphan").cloned().collect());
            changed = true;
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            let blocking = dependents.iter().any(|d| {
                owner_refs(&d.obj).iter().any(|r| uid_of(r) == uid && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true))
            });
            if !blocking {
                set_finalizers(state, owner, fins.iter().filter(|f| *f != "foregroundDeletion").cloned().collect());
                changed = true;
            }
        }
    }
    changed
}

fn statefulsets(state: &mut State) -> bool {
    let mut changed = false;
    let Some(pvc_rt) = state.registry.find("", "v1", "persistentvolumeclaims").cloned() else {
        return false;
    };
    // Only StatefulSets that still miss a claim are copied: a pass after an unrelated write
    // then costs a few lookups, not a copy of every StatefulSet.
    let missing_claims = |ns: &str, obj: &Value| {
        let replicas = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        obj.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array).is_some_and(|templates| {
            templates
                .iter()
                .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str))
                .any(|template| (0..replicas).any(|i| state.lookup(&pvc_rt, ns, &format!("{template}-{name}-{i}")).is_none()))
        })
    };
    let Some(pod_rt) = state.registry.find("", "v1", "pods").cloned() else {
        return false;
    };
    let missing_pods = |ns: &str, obj: &Value| {
        let replicas = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        (0..replicas).any(|i| state.lookup(&pod_rt, ns, &format!("{name}-{i}")).is_none())
    };
    let all = snapshot_where(
        state,
        |rt| rt.kind == "StatefulSet" && rt.group == "apps",
        |_, ns, obj| !is_deleting(obj) && (missing_claims(ns, obj) || missing_pods(ns, obj)),
    );
    for sts in &all {
        if state.namespace_state(&sts.ns).is_none_or(is_deleting) {
            continue;
        }
        let replicas = sts.obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let templates = sts.obj.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array).cloned().unwrap_or_default();
        let selector = sts.obj.pointer("/spec/selector/matchLabels").cloned().unwrap_or(json!({}));
        for t in templates {
            let Some(tname) = t.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            for i in 0..replicas {
                let name = format!("{tname}-{}-{i}", sts.name);
                if state.lookup(&pvc_rt, &sts.ns, &name).is_some() {
                    continue;
                }
                let mut labels = t.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
                if let (Some(l), Some(s)) = (labels.as_object_mut(), selector.as_object()) {
                    for (k, v) in s {
                        l.insert(k.clone(), v.clone());
                    }
                }
                let mut spec = t.get("spec").cloned().unwrap_or(json!({}));
                if let Some(m) = spec.as_object_mut() {
                    m.remove("status");
                }
                let body = json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "namespace": sts.ns, "labels": labels},
                    "spec": spec,
                });
                let ctx = WriteCtx::internal("kube-controller-manager");
                if state.create(&pvc_rt, &sts.ns, body, &ctx, false).is_ok() {
                    changed = true;
                }
            }
        }
        let claims: Vec<String> = sts
            .obj
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str).map(String::from))
            .collect();
        for i in 0..replicas {
            let name = format!("{}-{i}", sts.name);
            if state.lookup(&pod_rt, &sts.ns, &name).is_some() {
                continue;
            }
            let pod = pod_of(sts, i, &claims);
            let ctx = WriteCtx::internal("kube-controller-manager");
            match state.create(&pod_rt, &sts.ns, pod, &ctx, false) {
                Ok(_) => changed = true,
                Err(e) => {
                    let message = format!("create Pod {name} in StatefulSet {} failed error: {}", sts.name, e.message);
                    changed |= record_failed_create(state, sts, &message);
                }
            }
        }
    }
    changed
}

/// Pod `<sts>-<ordinal>` from the StatefulSet's template, as its controller makes it.
fn pod_of(sts: &Entry, ordinal: i64, claims: &[String]) -> Value {
    let name = format!("{}-{ordinal}", sts.name);
    let mut labels = sts.obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
    labels["statefulset.kubernetes.io/pod-name"] = json!(name);
    labels["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
    let mut spec = sts.obj.pointer("/spec/template/spec").cloned().unwrap_or(json!({}));
    spec["hostname"] = json!(name);
    if let Some(service) = sts.obj.pointer("/spec/serviceName") {
        spec["subdomain"] = service.clone();
    }
    let mut volumes = spec.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    for claim in claims {
        volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(claim));
        volumes.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": format!("{claim}-{}-{ordinal}", sts.name)}}));
    }
    if !volumes.is_empty() {
        spec["volumes"] = Value::Array(volumes);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": sts.ns,
            "labels": labels,
            "annotations": sts.obj.pointer("/spec/template/metadata/annotations").cloned().unwrap_or(json!({})),
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts.name,
                "uid": meta_str(&sts.obj, "uid").unwrap_or_default(), "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    })
}

/// A `FailedCreate` Warning Event on the StatefulSet, once per distinct message (the real
/// controller's recorder aggregates repeats into a count; here a repeat changes nothing, so a
/// refused pod does not wake the controllers forever).
fn record_failed_create(state: &mut State, sts: &Entry, message: &str) -> bool {
    let Some(event_rt) = state.registry.find("", "v1", "events").cloned() else {
        return false;
    };
    let seen = state.objects.get(&State::res_key(&event_rt)).is_some_and(|events| {
        events.values().any(|e| {
            e.pointer("/involvedObject/uid").and_then(Value::as_str) == meta_str(&sts.obj, "uid")
                && e.get("reason").and_then(Value::as_str) == Some("FailedCreate")
                && e.get("message").and_then(Value::as_str) == Some(message)
        })
    });
    if seen {
        return false;
    }
    let now = super::store::now();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{:016x}", sts.name, rand::random::<u64>()), "namespace": sts.ns},
        "involvedObject": {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts.name, "namespace": sts.ns,
            "uid": meta_str(&sts.obj, "uid").unwrap_or_default(),
            "resourceVersion": meta_str(&sts.obj, "resourceVersion").unwrap_or_default(),
        },
        "reason": "FailedCreate",
        "message": message,
        "type": "Warning",
        "source": {"component": "statefulset-controller"},
        "reportingComponent": "statefulset-controller",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    state.create(&event_rt, &sts.ns, event, &WriteCtx::internal("kube-controller-manager"), false).is_ok()
}
