//! Object storage and the write pipeline: resourceVersions, generation, status subresource,
//! managed fields, admission, no-op detection, deletion with finalizers, watch history.
//!
//! Stored objects are shared (`Arc<Value>`): the store, the watch history and the background
//! controllers' queue hold the same allocation, so a write copies an object once (to build the
//! new version), not once per reader. The watch history is kept per resource, as the real
//! server's watch cache is, and each watcher is woken only by changes of its resource.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use kube::core::cel::Validator;
use serde_json::{json, Value};

use super::admission;
use super::builtin;
use super::errors::{ApiError, ApiResult, Cause};
use super::fields;
use super::pods;
use super::rbac::{self, Attributes, UserInfo};
use super::resources::{self, Registry, ResourceType};
use super::selectors::Selectors;
use super::ssa;
use super::vap;

pub type ObjKey = (String, String);
pub type ResKey = (String, String);
/// A stored object (shared by the store, the watch history and the response being written).
pub type Obj = Arc<Value>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept in a bounded per-resource history for watches.
#[derive(Debug)]
pub struct HistEvent {
    pub rv: u64,
    pub namespace: String,
    pub etype: EventType,
    pub object: Obj,
    pub old: Option<Obj>,
    /// The object's JSON, made once by the first watcher that sends it and shared by the
    /// others (they differ only in the event type around it).
    pub json: OnceLock<String>,
}

/// The watch cache of one resource: its recent changes, the newest change it has forgotten
/// (watches from before it get 410 Expired), and the signal its watchers wait on.
pub struct ResHistory {
    pub events: VecDeque<Arc<HistEvent>>,
    pub dropped_rv: u64,
    pub notify: tokio::sync::watch::Sender<u64>,
}

impl Default for ResHistory {
    fn default() -> Self {
        ResHistory { events: VecDeque::new(), dropped_rv: 0, notify: tokio::sync::watch::channel(0).0 }
    }
}

/// What the background controllers (`gc`) need to know about one change.
#[derive(Clone, Debug)]
pub struct Change {
    pub res: ResKey,
    pub key: ObjKey,
    /// UID of the object (before and after are the same: UIDs never change).
    pub uid: Option<String>,
    /// UIDs named by its owner references, before and after the change.
    pub owners: Vec<String>,
}

/// Who writes, and how.
#[derive(Clone, Debug)]
pub struct WriteCtx {
    pub manager: String,
    pub dry_run: bool,
    /// The requester, for the checks the real server makes inside a write (RBAC escalation,
    /// create-on-apply). `None` for the fake's own controllers and test setup.
    pub user: Option<UserInfo>,
}

impl WriteCtx {
    /// A write of the fake itself (its controllers, seeding): no authorization.
    pub fn internal(manager: &str) -> Self {
        WriteCtx { manager: manager.into(), dry_run: false, user: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    /// The requester, for admission (ValidatingAdmissionPolicies on DELETE); `None` for the
    /// fake's own controllers.
    pub user: Option<UserInfo>,
    pub propagation: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Obj>,
    /// The key of the last item, when more items follow.
    pub next: Option<ObjKey>,
    /// How many items follow (only computed for lists without selectors, as the real server).
    pub remaining: Option<usize>,
}

pub struct State {
    pub rv: u64,
    pub registry: Registry,
    pub objects: BTreeMap<ResKey, BTreeMap<ObjKey, Obj>>,
    /// Per resource: recent changes for watches.
    pub history: HashMap<ResKey, ResHistory>,
    /// ResourceVersion of the last explicit compaction (`FakeApiServer::compact`): watches and
    /// continue tokens from before it get 410.
    pub compacted_rv: u64,
    /// Changes each resource's history keeps.
    pub history_window: usize,
    /// Any change at all (wakes the background controllers).
    pub notify: tokio::sync::watch::Sender<u64>,
    pub validator: Validator,
    pub simulate_statefulsets: bool,
    /// Publish an address on Ingresses (see `gc::ingresses`).
    pub simulate_ingress_controller: bool,
    pub ip_counter: u32,
    /// Changes the background controllers have not looked at yet.
    pub bg_queue: Vec<Change>,
    /// Where each UID lives (owner lookups of the garbage collector).
    pub uids: HashMap<String, (ResKey, ObjKey)>,
    /// Owner UID → objects whose owner references name it.
    pub dependents: HashMap<String, BTreeSet<(ResKey, ObjKey)>>,
    /// Bumped on every change of an RBAC object: cached authorizer rules older than this are
    /// stale.
    pub rbac_generation: u64,
    /// Cluster-wide RBAC rules per user (see `rbac::rules_for`), valid for `rbac_generation`.
    pub rbac_cache: RefCell<HashMap<rbac::UserKey, (u64, rbac::ClusterRules)>>,
}

pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn uid() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).get(field).and_then(Value::as_str)
}

pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().unwrap()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta(obj).get("deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// UIDs an object's owner references name.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| refs.iter().filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from)).collect())
        .unwrap_or_default()
}

/// Whether two versions of an object are the same write, ignoring what changes on every
/// write (`resourceVersion`, the times of managedFields entries): no-op detection.
fn same_but_for_write_stamps(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    if a.len() != b.len() {
        return false;
    }
    a.iter().all(|(k, av)| {
        let Some(bv) = b.get(k) else {
            return false;
        };
        if k != "metadata" {
            return av == bv;
        }
        let (Some(am), Some(bm)) = (av.as_object(), bv.as_object()) else {
            return av == bv;
        };
        let keys = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != "resourceVersion").count();
        keys(am) == keys(bm)
            && am.iter().filter(|(k, _)| *k != "resourceVersion").all(|(mk, amv)| match bm.get(mk) {
                None => false,
                Some(bmv) if mk == "managedFields" => managed_fields_equal(amv, bmv),
                Some(bmv) => amv == bmv,
            })
    })
}

fn managed_fields_equal(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x.as_object(), y.as_object()) {
            (Some(x), Some(y)) => {
                let n = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != "time").count();
                n(x) == n(y) && x.iter().filter(|(k, _)| *k != "time").all(|(k, v)| y.get(k) == Some(v))
            }
            _ => x == y,
        })
}

/// Whether the part of an object whose change bumps `metadata.generation` is the same.
fn same_spec(rt: &ResourceType, a: &Value, b: &Value) -> bool {
    let skip = |k: &str| matches!(k, "metadata" | "apiVersion" | "kind") || (rt.status && k == "status");
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    a.iter().filter(|(k, _)| !skip(k)).count() == b.iter().filter(|(k, _)| !skip(k)).count()
        && a.iter().filter(|(k, _)| !skip(k)).all(|(k, v)| b.get(k) == Some(v))
}

/// The stored object as the version `rt` serves, as JSON: written straight from the stored
/// value when it already is in that version (the common case), without a copy.
/// What a request asked for: whole objects, or their metadata alone (`Accept:
/// application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`, what kube's
/// metadata-only API and `metadata_watcher` send).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presentation {
    Whole,
    Metadata,
}

impl Presentation {
    /// From the `Accept` header: the first media type the fake serves decides, as on the real
    /// server (`as=PartialObjectMetadataList` for lists, `as=PartialObjectMetadata` for the rest).
    pub fn from_accept(accept: &str, list: bool) -> Presentation {
        for media in accept.split(',') {
            let mut parts = media.split(';').map(str::trim);
            if !matches!(parts.next(), Some("application/json" | "*/*" | "application/*")) {
                continue;
            }
            let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
            let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            match param("as") {
                None => return Presentation::Whole,
                Some(kind) => {
                    let wanted = if list { "PartialObjectMetadataList" } else { "PartialObjectMetadata" };
                    if kind == wanted && param("g") == Some("meta.k8s.io") && matches!(param("v"), Some("v1" | "v1beta1")) {
                        return Presentation::Metadata;
                    }
                }
            }
        }
        Presentation::Whole
    }

    /// An object as this presentation shows it.
    pub fn json(self, rt: &ResourceType, obj: &Value) -> String {
        match self {
            Presentation::Whole => present_json(rt, obj),
            Presentation::Metadata => {
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj.get("metadata")}).to_string()
            }
        }
    }

    /// `apiVersion` and `kind` of a list of `rt` in this presentation.
    pub fn list_type(self, rt: &ResourceType) -> (String, String) {
        match self {
            Presentation::Whole => (rt.api_version(), format!("{}List", rt.kind)),
            Presentation::Metadata => ("meta.k8s.io/v1".into(), "PartialObjectMetadataList".into()),
        }
    }
}

pub fn present_json(rt: &ResourceType, obj: &Value) -> String {
    let api_version = rt.api_version();
    if obj.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str())
        && obj.get("kind").and_then(Value::as_str) == Some(rt.kind.as_str())
    {
        obj.to_string()
    } else {
        State::present(rt, obj).to_string()
    }
}

impl State {
    pub fn new(notify: tokio::sync::watch::Sender<u64>, history_window: usize) -> Self {
        State {
            rv: 1,
            registry: Registry { types: resources::builtins().into_iter().map(Arc::new).collect() },
            objects: BTreeMap::new(),
            history: HashMap::new(),
            compacted_rv: 0,
            history_window,
            notify,
            validator: Validator::new(),
            simulate_statefulsets: true,
            simulate_ingress_controller: true,
            ip_counter: 10,
            bg_queue: Vec::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            rbac_generation: 0,
            rbac_cache: RefCell::default(),
        }
    }

    pub fn res_key(rt: &ResourceType) -> ResKey {
        (rt.group.clone(), rt.plural.clone())
    }

    pub fn obj_key(rt: &ResourceType, ns: &str, name: &str) -> ObjKey {
        (if rt.namespaced { ns.to_string() } else { String::new() }, name.to_string())
    }

    /// Present an object as the version `rt` serves.
    pub fn present(rt: &ResourceType, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        o
    }

    pub fn lookup(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Obj> {
        self.objects.get(&Self::res_key(rt)).and_then(|m| m.get(&Self::obj_key(rt, ns, name)))
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Obj> {
        self.lookup(rt, ns, name).cloned().ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Objects of a namespace (all of them for a cluster-scoped resource), in key order.
    pub fn in_namespace<'a>(&'a self, res: &ResKey, ns: &'a str) -> impl Iterator<Item = (&'a ObjKey, &'a Obj)> + 'a {
        let from = (ns.to_string(), String::new());
        self.objects.get(res).into_iter().flat_map(move |m| m.range(from.clone()..)).take_while(move |((n, _), _)| n == ns)
    }

    /// Every object of `rt` (in `ns`, if given) that the selectors admit.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>, sel: &Selectors) -> Vec<Obj> {
        self.list_page(rt, ns, sel, None, None).items
    }

    /// Up to `limit` objects after the key `after`, in key order (namespace, name), like the
    /// real server's paginated lists; only the page is touched, not the whole resource.
    pub fn list_page(&self, rt: &ResourceType, ns: Option<&str>, sel: &Selectors, after: Option<&ObjKey>, limit: Option<usize>) -> Page {
        let empty = BTreeMap::new();
        let objects = self.objects.get(&Self::res_key(rt)).unwrap_or(&empty);
        let ns = ns.filter(|_| rt.namespaced);
        let lower = match (after, ns) {
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut matching = objects
            .range((lower, Bound::Unbounded))
            .take_while(|((ons, _), _)| ns.is_none_or(|n| n == ons))
            .filter(|(_, o)| sel.matches(o));
        let mut items = Vec::new();
        let mut last = None;
        for (key, obj) in matching.by_ref() {
            if limit.is_some_and(|l| items.len() >= l) {
                // One more matches: the page is full and the list continues after `last`.
                let remaining = sel.is_empty().then(|| 1 + matching.count());
                return Page { items, next: last, remaining };
            }
            items.push(obj.clone());
            last = Some(key.clone());
        }
        Page { items, next: None, remaining: None }
    }

    /// Store a created/updated object under a fresh resourceVersion and record the event.
    pub fn commit(&mut self, rt: &ResourceType, mut obj: Value, old: Option<Obj>) -> Obj {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let ns = meta_str(&obj, "namespace").unwrap_or_default().to_string();
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let etype = if old.is_some() { EventType::Modified } else { EventType::Added };
        let obj = Arc::new(obj);
        self.store(rt, &ns, &name, obj.clone(), old.as_deref());
        self.record(rt, ns, name, etype, obj.clone(), old, Vec::new());
        obj
    }

    /// Put `obj` under its key, keeping the UID and owner indexes right.
    fn store(&mut self, rt: &ResourceType, ns: &str, name: &str, obj: Obj, old: Option<&Value>) {
        let res = Self::res_key(rt);
        let key = Self::obj_key(rt, ns, name);
        if let Some(uid) = meta_str(&obj, "uid") {
            if old.is_none() {
                self.uids.insert(uid.to_string(), (res.clone(), key.clone()));
            }
        }
        let before = old.map(owner_uids).unwrap_or_default();
        let after = owner_uids(&obj);
        if before != after {
            for owner in &before {
                if let Some(set) = self.dependents.get_mut(owner) {
                    set.remove(&(res.clone(), key.clone()));
                    if set.is_empty() {
                        self.dependents.remove(owner);
                    }
                }
            }
            for owner in after {
                self.dependents.entry(owner).or_default().insert((res.clone(), key.clone()));
            }
        }
        self.objects.entry(res).or_default().insert(key, obj);
    }

    /// Remove an object (the DELETED event carries a fresh resourceVersion).
    pub fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Obj> {
        self.remove_after(rt, ns, name, Vec::new())
    }

    /// Remove an object; `former_owners` are owners it had before the update that led to its
    /// removal (dropped with its last finalizer): a foreground deletion may wait on it too.
    fn remove_after(&mut self, rt: &ResourceType, ns: &str, name: &str, former_owners: Vec<String>) -> Option<Obj> {
        let res = Self::res_key(rt);
        let key = Self::obj_key(rt, ns, name);
        let stored = self.objects.get_mut(&res)?.remove(&key)?;
        if let Some(uid) = meta_str(&stored, "uid") {
            self.uids.remove(uid);
        }
        for owner in owner_uids(&stored) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&(res.clone(), key.clone()));
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
        self.rv += 1;
        let mut obj = Arc::unwrap_or_clone(stored);
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let obj = Arc::new(obj);
        self.record(rt, ns.to_string(), name.to_string(), EventType::Deleted, obj.clone(), None, former_owners);
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            self.drop_crd(&obj);
        }
        Some(obj)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        rt: &ResourceType,
        ns: String,
        name: String,
        etype: EventType,
        object: Obj,
        old: Option<Obj>,
        mut former_owners: Vec<String>,
    ) {
        let res = Self::res_key(rt);
        if rt.group == rbac::RBAC_GROUP {
            self.rbac_generation += 1;
        }
        let mut owners = owner_uids(&object);
        if let Some(old) = &old {
            former_owners.extend(owner_uids(old));
        }
        for owner in former_owners {
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        self.bg_queue.push(Change {
            res: res.clone(),
            key: (if rt.namespaced { ns.clone() } else { String::new() }, name),
            uid: meta_str(&object, "uid").map(String::from),
            owners,
        });
        let window = self.history_window;
        let history = self.history.entry(res).or_default();
        history.events.push_back(Arc::new(HistEvent { rv: self.rv, namespace: ns, etype, object, old, json: OnceLock::new() }));
        while history.events.len() > window {
            if let Some(e) = history.events.pop_front() {
                history.dropped_rv = e.rv;
            }
        }
        history.notify.send_replace(self.rv);
        self.notify.send_replace(self.rv);
    }

    /// The changes of `res` after `rv`, or `Err` with the oldest resourceVersion still known
    /// when some were forgotten (the watch must start over: 410 Expired).
    pub fn events_after(&self, res: &ResKey, rv: u64) -> Result<Vec<Arc<HistEvent>>, u64> {
        let history = self.history.get(res);
        let forgotten = history.map_or(0, |h| h.dropped_rv).max(self.compacted_rv);
        if rv < forgotten {
            return Err(forgotten + 1);
        }
        Ok(history
            .map(|h| {
                let start = h.events.partition_point(|e| e.rv <= rv);
                h.events.range(start..).cloned().collect()
            })
            .unwrap_or_default())
    }

    /// A receiver that changes whenever an object of `res` does.
    pub fn subscribe(&mut self, res: &ResKey) -> tokio::sync::watch::Receiver<u64> {
        self.history.entry(res.clone()).or_default().notify.subscribe()
    }

    /// Forget every resource's history (watches from older resourceVersions get 410).
    pub fn compact(&mut self) {
        for h in self.history.values_mut() {
            h.events.clear();
        }
        self.compacted_rv = self.rv;
    }

    pub fn namespace_state(&self, ns: &str) -> Option<&Obj> {
        self.objects.get(&(String::new(), "namespaces".to_string())).and_then(|m| m.get(&(String::new(), ns.to_string())))
    }

    // ---------------------------------------------------------------- create

    pub fn create(&mut self, rt: &ResourceType, ns: &str, mut body: Value, ctx: &WriteCtx, applied: bool) -> ApiResult<Obj> {
        if !body.is_object() {
            return Err(ApiError::bad_request("the body of the request must be an object"));
        }
        check_type(rt, &body)?;
        body["apiVersion"] = json!(rt.api_version());
        body["kind"] = json!(rt.kind);
        let m = meta_mut(&mut body);
        if rt.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let mut name = m.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if name.is_empty() {
            let gen = m.get("generateName").and_then(Value::as_str).unwrap_or_default().to_string();
            if gen.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    &[Cause::new("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")],
                ));
            }
            const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let suffix: String = (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect();
            name = format!("{gen}{suffix}");
            m.insert("name".into(), json!(name));
        }
        if m.get("resourceVersion").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::new(500, "InternalError", "resourceVersion should not be set on objects to be created"));
        }
        let causes = admission::validate_name(rt, &name, "metadata.name");
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, &causes));
        }
        if rt.namespaced {
            match self.namespace_state(ns) {
                None => return Err(ApiError::namespace_not_found(ns)),
                Some(n) if is_deleting(n) => return Err(ApiError::namespace_terminating(rt, &name, ns)),
                _ => {}
            }
        }
        if self.lookup(rt, ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        let now = now();
        let m = meta_mut(&mut body);
        m.insert("uid".into(), json!(uid()));
        m.insert("creationTimestamp".into(), json!(now));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("generation");
        m.remove("selfLink");
        if rt.generation {
            m.insert("generation".into(), json!(1));
        }
        if !applied {
            m.remove("managedFields");
        }
        if rt.status {
            if let Some(o) = body.as_object_mut() {
                o.remove("status");
            }
        }
        builtin::default_on_create(self, rt, &mut body);
        builtin::default(rt, &mut body, None);
        if rt.group.is_empty() && rt.kind == "Pod" {
            pods::admit(self, ns, &name, &mut body)?;
        }
        if rt.is_crd() {
            admission::admit_custom(&self.validator, rt, &mut body, None).map_err(|c| ApiError::invalid(rt, &name, &c))?;
        }
        let causes = builtin::validate(rt, &body, None);
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, &causes));
        }
        if let Some(user) = &ctx.user {
            rbac::check_escalation(self, rt, &body, None, user)?;
            let req = vap::Request {
                rt,
                operation: "CREATE",
                subresource: "",
                namespace: ns,
                name: &name,
                object: &body,
                old_object: None,
                user,
            };
            vap::admit(self, &req)?;
        }
        if rt.group.is_empty() && rt.kind == "Pod" {
            pods::admit_quota(self, ns, &name, &body)?;
        }
        if rt.namespaced && !ns.is_empty() {
            super::quota::admit_count(self, rt, ns, &name)?;
        }
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            self.install_crd(&mut body)?;
        }
        if !applied {
            fields::record_update(rt, None, &mut body, &ctx.manager, "", &now);
        }
        if ctx.dry_run {
            return Ok(Arc::new(body));
        }
        Ok(self.commit(rt, body, None))
    }

    // ---------------------------------------------------------------- update

    /// The shared tail of update, patch and apply: `new` is the full desired object.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut new: Value,
        sub: &str,
        ctx: &WriteCtx,
        managed_done: bool,
        require_rv: bool,
    ) -> ApiResult<Obj> {
        let old = self.lookup(rt, ns, name).cloned().ok_or_else(|| ApiError::not_found(rt, name))?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the body of the request must be an object"));
        }
        check_type(rt, &new)?;
        if let Some(n) = meta_str(&new, "name") {
            if !n.is_empty() && n != name {
                return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
            }
        }
        match meta_str(&new, "resourceVersion").filter(|s| !s.is_empty()) {
            Some(rv) if Some(rv) != meta_str(&old, "resourceVersion") => return Err(ApiError::conflict(rt, name)),
            None if require_rv && rt.is_crd() => {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[Cause::new("FieldValueInvalid", "metadata.resourceVersion", "Invalid value: 0: must be specified for an update")],
                ))
            }
            _ => {}
        }
        if let Some(u) = meta_str(&new, "uid") {
            if !u.is_empty() && Some(u) != meta_str(&old, "uid") {
                return Err(ApiError::conflict_uid(
                    rt,
                    name,
                    &format!("Precondition failed: UID in precondition: {u}, UID in object meta: {}", meta_str(&old, "uid").unwrap_or("")),
                ));
            }
        }
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);

        // subresource semantics
        match sub {
            "status" => {
                let mut merged = (*old).clone();
                match new.get("status") {
                    Some(s) => merged["status"] = s.clone(),
                    None => {
                        merged.as_object_mut().unwrap().remove("status");
                    }
                }
                if let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
                    meta_mut(&mut merged).insert("managedFields".into(), mf);
                }
                new = merged;
            }
            "finalize" => {
                let mut merged = (*old).clone();
                let fins = new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
                merged["spec"]["finalizers"] = fins;
                new = merged;
            }
            _ => {
                if rt.status {
                    let o = new.as_object_mut().unwrap();
                    match old.get("status") {
                        Some(s) => {
                            o.insert("status".into(), s.clone());
                        }
                        None => {
                            o.remove("status");
                        }
                    }
                }
            }
        }

        // server-managed metadata comes from the stored object
        let no_meta = json!({});
        let old_meta = old.get("metadata").unwrap_or(&no_meta);
        {
            let m = meta_mut(&mut new);
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "generateName",
                "resourceVersion",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.remove("selfLink");
        }
        if is_deleting(&old) {
            let old_f = finalizers(&old);
            let added: Vec<String> = finalizers(&new).into_iter().filter(|f| !old_f.contains(f)).collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &[Cause::new(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                            added.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ")
                        ),
                    )],
                ));
            }
        }
        builtin::default(rt, &mut new, Some(&old));
        if rt.is_crd() {
            admission::admit_custom(&self.validator, rt, &mut new, Some(&old)).map_err(|c| ApiError::invalid(rt, name, &c))?;
        }
        let causes = builtin::validate(rt, &new, Some(&old));
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, name, &causes));
        }
        if let Some(user) = &ctx.user {
            rbac::check_escalation(self, rt, &new, Some(&old), user)?;
            let req =
                vap::Request { rt, operation: "UPDATE", subresource: sub, namespace: ns, name, object: &new, old_object: Some(&old), user };
            vap::admit(self, &req)?;
        }
        if rt.generation && !same_spec(rt, &old, &new) {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        let now = now();
        if !managed_done {
            let sub_name = if sub == "status" { "status" } else { "" };
            fields::record_update(rt, Some(&old), &mut new, &ctx.manager, sub_name, &now);
        }
        if same_but_for_write_stamps(&new, &old) {
            return Ok(old);
        }
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            self.install_crd(&mut new)?;
        }
        if ctx.dry_run {
            return Ok(Arc::new(new));
        }
        if is_deleting(&new) && finalizers(&new).is_empty() && !(rt.kind == "Namespace" && has_spec_finalizers(&new)) {
            self.store(rt, ns, name, Arc::new(new), Some(&old));
            return self.remove_after(rt, ns, name, owner_uids(&old)).ok_or_else(|| ApiError::not_found(rt, name));
        }
        Ok(self.commit(rt, new, Some(old)))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        sub: &str,
        ctx: &WriteCtx,
    ) -> ApiResult<Obj> {
        let current = self.lookup(rt, ns, name).cloned();
        match kind {
            PatchKind::Apply { force } => {
                let mut applied = body.clone();
                if !applied.is_object() {
                    return Err(ApiError::bad_request("error decoding YAML: the applied configuration must be an object"));
                }
                ssa::strip_nulls(&mut applied);
                check_type(rt, &applied)?;
                if applied.pointer("/metadata/managedFields").is_some() {
                    return Err(ApiError::bad_request("metadata.managedFields must be nil"));
                }
                if applied.get("apiVersion").is_none() || applied.get("kind").is_none() {
                    return Err(ApiError::bad_request("invalid object type: apiVersion and kind must be set in an applied configuration"));
                }
                if let Some(n) = meta_str(&applied, "name") {
                    if n != name {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({n}) does not match the name on the URL ({name})"
                        )));
                    }
                }
                // status is owned through the /status subresource only (and vice versa)
                let o = applied.as_object_mut().unwrap();
                if sub == "status" {
                    o.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
                    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "resourceVersion" | "uid"));
                    }
                } else if rt.status {
                    o.remove("status");
                }
                let sub_name = if sub == "status" { "status" } else { "" };
                let now = now();
                match current {
                    None => {
                        if sub == "status" {
                            return Err(ApiError::not_found(rt, name));
                        }
                        // An apply that creates its object is authorized as a create too.
                        if let Some(user) = &ctx.user {
                            let create = Attributes::resource("create", &rt.group, &rt.plural, ns, name);
                            rbac::authorize(self, user, &create)
                                .map_err(|reason| ApiError::forbidden(&rt.group, &rt.plural, name, &reason))?;
                        }
                        let skeleton = json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": name}});
                        let merged = ssa::apply(rt, &skeleton, &applied, &ctx.manager, force, sub_name, &now)?;
                        self.create(rt, ns, merged, ctx, true)
                    }
                    Some(live) => {
                        let merged = ssa::apply(rt, &live, &applied, &ctx.manager, force, sub_name, &now)?;
                        self.write(rt, ns, name, merged, sub, ctx, true, false)
                    }
                }
            }
            other => {
                let live = current.ok_or_else(|| ApiError::not_found(rt, name))?;
                let live = Self::present(rt, &live);
                let patched = match other {
                    PatchKind::Merge => super::patch::merge_patch(&live, body)?,
                    PatchKind::Json => super::patch::json_patch(&live, body)?,
                    PatchKind::Strategic => super::patch::strategic_merge(rt, &live, body)?,
                    PatchKind::Apply { .. } => unreachable!(),
                };
                self.write(rt, ns, name, patched, sub, ctx, false, false)
            }
        }
    }

    // ---------------------------------------------------------------- delete

    /// Delete: immediate when nothing holds the object, otherwise mark it
    /// (`deletionTimestamp`, finalizers for foreground/orphan). Returns (object, gone_now).
    pub fn delete(&mut self, rt: &ResourceType, ns: &str, name: &str, opts: &DeleteOpts) -> ApiResult<(Obj, bool)> {
        let obj = self.lookup(rt, ns, name).cloned().ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(u) = &opts.uid {
            if Some(u.as_str()) != meta_str(&obj, "uid") {
                return Err(ApiError::conflict_uid(
                    rt,
                    name,
                    &format!("Precondition failed: UID in precondition: {u}, UID in object meta: {}", meta_str(&obj, "uid").unwrap_or("")),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if Some(rv.as_str()) != meta_str(&obj, "resourceVersion") {
                return Err(ApiError::conflict_uid(
                    rt,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta_str(&obj, "resourceVersion").unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(user) = &opts.user {
            let req = vap::Request {
                rt,
                operation: "DELETE",
                subresource: "",
                namespace: ns,
                name,
                object: &Value::Null,
                old_object: Some(&obj),
                user,
            };
            vap::admit(self, &req)?;
        }
        if opts.dry_run {
            return Ok((obj, false));
        }
        let mut fins = finalizers(&obj);
        match opts.propagation {
            Some(Propagation::Foreground) if !fins.iter().any(|f| f == "foregroundDeletion") => {
                fins.retain(|f| f != "orphan");
                fins.push("foregroundDeletion".into())
            }
            Some(Propagation::Orphan) if !fins.iter().any(|f| f == "orphan") => {
                fins.retain(|f| f != "foregroundDeletion");
                fins.push("orphan".into())
            }
            _ => {}
        }
        let is_ns = rt.kind == "Namespace" && rt.group.is_empty();
        if is_deleting(&obj) {
            if fins != finalizers(&obj) {
                let mut o = (*obj).clone();
                meta_mut(&mut o).insert("finalizers".into(), json!(fins));
                return Ok((self.commit(rt, o, Some(obj)), false));
            }
            return Ok((obj, false));
        }
        if fins.is_empty() && !(is_ns && has_spec_finalizers(&obj)) {
            let gone = self.remove(rt, ns, name).ok_or_else(|| ApiError::not_found(rt, name))?;
            return Ok((gone, true));
        }
        let mut o = (*obj).clone();
        let m = meta_mut(&mut o);
        m.insert("deletionTimestamp".into(), json!(now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        if !fins.is_empty() {
            m.insert("finalizers".into(), json!(fins));
        }
        if let Some(g) = m.get("generation").and_then(Value::as_i64) {
            m.insert("generation".into(), json!(g + 1));
        }
        if is_ns {
            o["status"]["phase"] = json!("Terminating");
        }
        Ok((self.commit(rt, o, Some(obj)), false))
    }

    // ---------------------------------------------------------------- CRDs

    /// Register the types a CRD object defines and mark it Established.
    pub fn install_crd(&mut self, crd: &mut Value) -> ApiResult<()> {
        let types = resources::from_crd(crd)?;
        let name = meta_str(crd, "name").unwrap_or_default().to_string();
        if let Some(t) = types.first() {
            let expected = format!("{}.{}", t.plural, t.group);
            if name != expected {
                let rt = self.registry.find_any("apiextensions.k8s.io", "customresourcedefinitions").unwrap().clone();
                return Err(ApiError::invalid(
                    &rt,
                    &name,
                    &[Cause::new(
                        "FieldValueInvalid",
                        "metadata.name",
                        format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
                    )],
                ));
            }
        }
        self.registry.remove_crd(&name);
        self.registry.add(types);
        let now = now();
        let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let stored: Vec<String> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
        crd["status"] = json!({
            "acceptedNames": names,
            "storedVersions": stored,
            "conditions": [
                cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ]
        });
        Ok(())
    }

    fn drop_crd(&mut self, crd: &Value) {
        let name = meta_str(crd, "name").unwrap_or_default().to_string();
        let Some(rt) = self.registry.types.iter().find(|t| t.crd.as_deref() == Some(name.as_str())).cloned() else {
            return;
        };
        let keys: Vec<ObjKey> = self.objects.get(&Self::res_key(&rt)).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for (ns, n) in keys {
            self.remove(&rt, &ns, &n);
        }
        self.registry.remove_crd(&name);
    }

    pub fn next_ip(&mut self) -> String {
        self.ip_counter += 1;
        format!("10.96.{}.{}", self.ip_counter / 250, self.ip_counter % 250 + 1)
    }
}

pub fn has_spec_finalizers(obj: &Value) -> bool {
    obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

fn check_type(rt: &ResourceType, body: &Value) -> ApiResult<()> {
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
        if av != rt.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
    }
    if let Some(k) = body.get("kind").and_then(Value::as_str) {
        if k != rt.kind {
            return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({})", rt.kind)));
        }
    }
    Ok(())
}
