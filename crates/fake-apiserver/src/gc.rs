//! Background controllers of the fake: owner-reference garbage collection (background,
//! foreground, orphan), namespace deletion, a simulated ingress controller, and a minimal
//! StatefulSet controller that makes the PersistentVolumeClaims of `volumeClaimTemplates` and
//! the pods `<sts>-<ordinal>` (through pod admission: a refused pod is a `FailedCreate` Event
//! on the StatefulSet).
//!
//! Like the real controllers, they work from change notifications, not from rescans of the
//! store: a pass looks only at the objects changed since the previous pass (the store queues
//! them, see `State::bg_queue`), at the dependents and owners of those objects (through the
//! store's UID and owner-reference indexes), and at the namespaces they live in. A pass after
//! one write costs a few lookups however many objects are stored.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

use super::resources::ResourceType;
use super::store::{
    finalizers, has_spec_finalizers, is_deleting, meta_mut, meta_str, Change, DeleteOpts, Obj, ObjKey, Propagation, ResKey, State, WriteCtx,
};

struct Entry {
    rt: std::sync::Arc<ResourceType>,
    ns: String,
    name: String,
    obj: Obj,
}

/// What changed since the previous pass.
struct Changed {
    /// The changed objects.
    objects: BTreeSet<(ResKey, ObjKey)>,
    /// Namespaces in which something changed (and namespaces that changed themselves).
    namespaces: BTreeSet<String>,
    /// UIDs of changed objects: their dependents may have lost (or found) an owner.
    uids: HashSet<String>,
    /// UIDs the changed objects' owner references name(d): those owners may be waiting for
    /// their dependents to go.
    owners: HashSet<String>,
}

impl Changed {
    fn from(changes: Vec<Change>) -> Self {
        let mut out = Changed { objects: BTreeSet::new(), namespaces: BTreeSet::new(), uids: HashSet::new(), owners: HashSet::new() };
        for c in changes {
            if c.res.0.is_empty() && c.res.1 == "namespaces" {
                out.namespaces.insert(c.key.1.clone());
            } else if !c.key.0.is_empty() {
                out.namespaces.insert(c.key.0.clone());
            }
            out.uids.extend(c.uid);
            out.owners.extend(c.owners);
            out.objects.insert((c.res, c.key));
        }
        out
    }
}

fn entry(state: &State, res: &ResKey, key: &ObjKey) -> Option<Entry> {
    let rt = state.registry.find_any(&res.0, &res.1)?.clone();
    let obj = state.objects.get(res)?.get(key)?.clone();
    Some(Entry { rt, ns: key.0.clone(), name: key.1.clone(), obj })
}

fn entry_by_uid(state: &State, uid: &str) -> Option<Entry> {
    let (res, key) = state.uids.get(uid)?;
    entry(state, res, key)
}

/// The stored objects whose owner references name `uid`.
fn dependents_of(state: &State, uid: &str) -> Vec<Entry> {
    state.dependents.get(uid).into_iter().flatten().filter_map(|(res, key)| entry(state, res, key)).collect()
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
    let mut o = (*cur).clone();
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
    let mut o = (*cur).clone();
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

/// One pass of every controller over the changes queued since the previous pass; true when
/// it changed something (which queues the next pass's work).
pub fn run_pass(state: &mut State) -> bool {
    let queued = std::mem::take(&mut state.bg_queue);
    if queued.is_empty() {
        return false;
    }
    let changed = Changed::from(queued);
    namespaces(state, &changed)
        | garbage_collect(state, &changed)
        | (state.simulate_statefulsets && statefulsets(state, &changed))
        | (state.simulate_ingress_controller && ingresses(state, &changed))
        | super::quota::refresh(state, &changed.namespaces)
}

/// Address the simulated ingress controller publishes (TEST-NET-1, RFC 5737).
pub const INGRESS_ADDRESS: &str = "192.0.2.10";

/// An ingress controller: every Ingress without an address gets one in
/// `status.loadBalancer.ingress`, as ingress-nginx publishes its Service's address. (A real
/// controller serves only its own class; the fake serves every class.)
fn ingresses(state: &mut State, changed: &Changed) -> bool {
    let unrouted: Vec<Entry> = changed
        .objects
        .iter()
        .filter(|(res, _)| res.0 == "networking.k8s.io" && res.1 == "ingresses")
        .filter_map(|(res, key)| entry(state, res, key))
        .filter(|e| !is_deleting(&e.obj) && e.obj.pointer("/status/loadBalancer/ingress/0").is_none())
        .collect();
    for ingress in &unrouted {
        let mut routed = (*ingress.obj).clone();
        routed["status"] = json!({"loadBalancer": {"ingress": [{"ip": INGRESS_ADDRESS}]}});
        state.commit(&ingress.rt, routed, Some(ingress.obj.clone()));
    }
    !unrouted.is_empty()
}

/// The namespace controller: a deleting namespace is emptied, then finalized.
fn namespaces(state: &mut State, changed: &Changed) -> bool {
    let mut did = false;
    let Some(ns_rt) = state.registry.find("", "v1", "namespaces").cloned() else {
        return false;
    };
    let deleting: Vec<Entry> = changed
        .namespaces
        .iter()
        .filter_map(|ns| {
            state.lookup(&ns_rt, "", ns).map(|obj| Entry { rt: ns_rt.clone(), ns: String::new(), name: ns.clone(), obj: obj.clone() })
        })
        .filter(|e| is_deleting(&e.obj))
        .collect();
    for ns in &deleting {
        let namespaced: Vec<std::sync::Arc<ResourceType>> = {
            let mut seen = HashSet::new();
            state.registry.types.iter().filter(|rt| rt.namespaced && seen.insert((rt.group.clone(), rt.plural.clone()))).cloned().collect()
        };
        let contents: Vec<Entry> = namespaced
            .iter()
            .flat_map(|rt| {
                let res = State::res_key(rt);
                state
                    .in_namespace(&res, &ns.name)
                    .map(|((n, name), obj)| Entry { rt: rt.clone(), ns: n.clone(), name: name.clone(), obj: obj.clone() })
                    .collect::<Vec<_>>()
            })
            .collect();
        for e in &contents {
            if !is_deleting(&e.obj) {
                delete(state, e, Propagation::Background);
                did = true;
            }
        }
        if contents.is_empty() && has_spec_finalizers(&ns.obj) {
            let mut o = (*ns.obj).clone();
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
            did = true;
        }
    }
    did
}

fn garbage_collect(state: &mut State, changed: &Changed) -> bool {
    let mut did = false;

    // dependents' side: changed objects with owner references, and the dependents of changed
    // (possibly deleted) owners
    let mut seen = BTreeSet::new();
    let mut candidates: Vec<Entry> = Vec::new();
    for (res, key) in &changed.objects {
        if let Some(e) = entry(state, res, key) {
            if !owner_refs(&e.obj).is_empty() && seen.insert((res.clone(), key.clone())) {
                candidates.push(e);
            }
        }
    }
    for uid in &changed.uids {
        for e in dependents_of(state, uid) {
            if seen.insert((State::res_key(&e.rt), (e.ns.clone(), e.name.clone()))) {
                candidates.push(e);
            }
        }
    }
    for d in &candidates {
        // an earlier step of this pass may have changed it
        let Some(obj) = state.lookup(&d.rt, &d.ns, &d.name).cloned() else {
            continue;
        };
        let d = Entry { rt: d.rt.clone(), ns: d.ns.clone(), name: d.name.clone(), obj };
        let refs = owner_refs(&d.obj);
        if refs.is_empty() {
            continue;
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), Vec::new());
        for r in &refs {
            // A namespaced owner counts only in the dependent's own namespace: the real
            // collector treats a reference into another namespace as absent and deletes the
            // dependent (event OwnerRefInvalidNamespace).
            match entry_by_uid(state, &uid_of(r)).filter(|owner| !owner.rt.namespaced || owner.ns == d.ns) {
                None => dangling.push(uid_of(r)),
                Some(owner) => {
                    let f = finalizers(&owner.obj);
                    if is_deleting(&owner.obj) && f.iter().any(|x| x == "foregroundDeletion") {
                        waiting.push(uid_of(r));
                    } else {
                        // an orphaning owner is handled from the owner's side
                        solid += 1;
                    }
                }
            }
        }
        if solid > 0 {
            if !dangling.is_empty() || !waiting.is_empty() {
                let keep: Vec<Value> =
                    refs.iter().filter(|r| !dangling.contains(&uid_of(r)) && !waiting.contains(&uid_of(r))).cloned().collect();
                set_owner_refs(state, &d, keep);
                did = true;
            }
        } else if !is_deleting(&d.obj) {
            let p = if waiting.is_empty() { Propagation::Background } else { Propagation::Foreground };
            delete(state, &d, p);
            did = true;
        }
    }

    // owners' side: changed objects that are being deleted, and owners of changed dependents
    let mut owners: Vec<Entry> = Vec::new();
    let mut seen = HashSet::new();
    for (res, key) in &changed.objects {
        if let Some(e) = entry(state, res, key) {
            if let Some(uid) = meta_str(&e.obj, "uid").map(String::from) {
                if is_deleting(&e.obj) && seen.insert(uid) {
                    owners.push(e);
                }
            }
        }
    }
    for uid in &changed.owners {
        if let Some(e) = entry_by_uid(state, uid) {
            if is_deleting(&e.obj) && seen.insert(uid.clone()) {
                owners.push(e);
            }
        }
    }
    for owner in &owners {
        let Some(obj) = state.lookup(&owner.rt, &owner.ns, &owner.name).cloned() else {
            continue;
        };
        let owner = Entry { rt: owner.rt.clone(), ns: owner.ns.clone(), name: owner.name.clone(), obj };
        let uid = meta_str(&owner.obj, "uid").unwrap_or_default().to_string();
        let fins = finalizers(&owner.obj);
        let dependents = dependents_of(state, &uid);
        if fins.iter().any(|f| f == "orphan") {
            for d in &dependents {
                let keep: Vec<Value> = owner_refs(&d.obj).into_iter().filter(|r| uid_of(r) != uid).collect();
                set_owner_refs(state, d, keep);
            }
            set_finalizers(state, &owner, fins.iter().filter(|f| *f != "orphan").cloned().collect());
            did = true;
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            let blocking = dependents.iter().any(|d| {
                owner_refs(&d.obj).iter().any(|r| uid_of(r) == uid && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true))
            });
            if !blocking {
                set_finalizers(state, &owner, fins.iter().filter(|f| *f != "foregroundDeletion").cloned().collect());
                did = true;
            }
        }
    }
    did
}

/// The StatefulSet controller for the StatefulSets of namespaces where something changed (a
/// pod refused by quota is tried again when the quota, a LimitRange or a pod there changes).
fn statefulsets(state: &mut State, changed: &Changed) -> bool {
    let mut did = false;
    let Some(pvc_rt) = state.registry.find("", "v1", "persistentvolumeclaims").cloned() else {
        return false;
    };
    let Some(pod_rt) = state.registry.find("", "v1", "pods").cloned() else {
        return false;
    };
    let Some(sts_rt) = state.registry.find_any("apps", "statefulsets").cloned() else {
        return false;
    };
    let sts_res = State::res_key(&sts_rt);
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
    let missing_pods = |ns: &str, obj: &Value| {
        let replicas = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        (0..replicas).any(|i| state.lookup(&pod_rt, ns, &format!("{name}-{i}")).is_none())
    };
    let all: Vec<Entry> = changed
        .namespaces
        .iter()
        .flat_map(|ns| state.in_namespace(&sts_res, ns))
        .filter(|((ns, _), obj)| !is_deleting(obj) && (missing_claims(ns, obj) || missing_pods(ns, obj)))
        .map(|((ns, name), obj)| Entry { rt: sts_rt.clone(), ns: ns.clone(), name: name.clone(), obj: obj.clone() })
        .collect();
    for sts in &all {
        if state.namespace_state(&sts.ns).is_none_or(|n| is_deleting(n)) {
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
                    did = true;
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
                Ok(_) => did = true,
                Err(e) => {
                    let message = format!("create Pod {name} in StatefulSet {} failed error: {}", sts.name, e.message);
                    did |= record_failed_create(state, sts, &message);
                }
            }
        }
    }
    did
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
    let seen = state.in_namespace(&State::res_key(&event_rt), &sts.ns).any(|(_, e)| {
        e.pointer("/involvedObject/uid").and_then(Value::as_str) == meta_str(&sts.obj, "uid")
            && e.get("reason").and_then(Value::as_str) == Some("FailedCreate")
            && e.get("message").and_then(Value::as_str) == Some(message)
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
