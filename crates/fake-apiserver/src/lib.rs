//! An in-process fake Kubernetes API server for tenant-operator's tests: real `kube::Client`s
//! talk to it over HTTP. What it implements, and where it is simpler than the real server, is
//! in this crate's `README.md`.

mod admission;
mod builtin;
mod cel_authorizer;
mod errors;
mod faults;
mod fields;
mod gc;
mod patch;
mod pod_security;
mod pods;
mod quota;
mod rbac;
mod resources;
mod selectors;
mod ssa;
mod store;
mod vap;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

pub use faults::{Fault, FaultAction, RequestCounts, RequestRecord, WRITE_VERBS};
pub use rbac::UserInfo;

use errors::{ApiError, ApiResult};
use rbac::Attributes;
use resources::ResourceType;
use selectors::{FieldSelector, LabelSelector, Selectors};
use store::Propagation;
use store::{DeleteOpts, PatchKind, State, WriteCtx};

pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) rv_rx: tokio::sync::watch::Receiver<u64>,
    pub(crate) bookmark_interval: Duration,
    faults: Mutex<Vec<Fault>>,
    records: Mutex<Vec<RequestRecord>>,
    addr: Mutex<String>,
    /// Bearer token → who it authenticates as.
    tokens: Mutex<HashMap<String, UserInfo>>,
    /// Simulated etcd commit latency of writes, in microseconds (0: none).
    commit_latency_us: AtomicU64,
}

/// Namespaces the NamespaceLifecycle admission plugin never lets anyone delete.
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// The token of the administrator identity every [`FakeApiServer::client`] uses.
const ADMIN_TOKEN: &str = "fake-admin-token";
/// The administrator: in `system:masters`, so authorization and escalation checks pass, as for
/// a cluster's admin kubeconfig.
pub const ADMIN_USER: &str = "fake-admin";

/// Options for [`FakeApiServer`].
pub struct Builder {
    history_window: usize,
    bookmark_interval: Duration,
    simulate_statefulsets: bool,
    simulate_ingress_controller: bool,
    repo_crds: bool,
    crds: Vec<String>,
    commit_latency: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            history_window: 10_000,
            bookmark_interval: Duration::from_secs(1),
            simulate_statefulsets: true,
            simulate_ingress_controller: true,
            repo_crds: true,
            crds: Vec::new(),
            commit_latency: Duration::ZERO,
        }
    }
}

impl Builder {
    /// How many change events watches can resume from (older resourceVersions get 410 Expired).
    pub fn history_window(mut self, events: usize) -> Self {
        self.history_window = events.max(1);
        self
    }

    /// Interval of periodic BOOKMARK events on watches that allow them (default 1s).
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }

    /// Create the PVCs of StatefulSets' `volumeClaimTemplates` (default on).
    pub fn simulate_statefulsets(mut self, on: bool) -> Self {
        self.simulate_statefulsets = on;
        self
    }

    /// Publish a load-balancer address on every Ingress, as an ingress controller does once
    /// it serves one (default on).
    pub fn simulate_ingress_controller(mut self, on: bool) -> Self {
        self.simulate_ingress_controller = on;
        self
    }

    /// Do not load the repository's `crds/*.yaml` at start.
    pub fn without_repo_crds(mut self) -> Self {
        self.repo_crds = false;
        self
    }

    /// Register an extra CRD (YAML) at start.
    pub fn crd(mut self, yaml: &str) -> Self {
        self.crds.push(yaml.to_string());
        self
    }

    /// Answer every request that stored something only after `latency` (default none): the
    /// time a real API server waits for etcd to commit a write (raft round trip and fsync).
    /// See [`FakeApiServer::set_commit_latency`].
    pub fn commit_latency(mut self, latency: Duration) -> Self {
        self.commit_latency = latency;
        self
    }

    pub async fn start(self) -> FakeApiServer {
        let (tx, rx) = tokio::sync::watch::channel(0u64);
        let mut state = State::new(tx, self.history_window);
        state.simulate_statefulsets = self.simulate_statefulsets;
        state.simulate_ingress_controller = self.simulate_ingress_controller;
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            rv_rx: rx,
            bookmark_interval: self.bookmark_interval,
            faults: Mutex::new(Vec::new()),
            records: Mutex::new(Vec::new()),
            addr: Mutex::new(String::new()),
            tokens: Mutex::new(HashMap::from([(ADMIN_TOKEN.to_string(), UserInfo::user(ADMIN_USER, &[rbac::PRIVILEGED_GROUP]))])),
            commit_latency_us: AtomicU64::new(self.commit_latency.as_micros().try_into().unwrap_or(u64::MAX)),
        });
        let server = FakeApiServer { inner: inner.clone(), addr: "127.0.0.1:0".parse().unwrap(), tasks: Vec::new() };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            server.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        for obj in rbac::bootstrap_policy() {
            server.seed(obj);
        }
        if self.repo_crds {
            for yaml in repo_crds() {
                server.register_crd(&yaml).expect("repository CRD must load");
            }
        }
        for yaml in &self.crds {
            server.register_crd(yaml).expect("CRD must load");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        *inner.addr.lock().unwrap() = addr.to_string();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let http = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let gc_inner = inner.clone();
        let gc = tokio::spawn(async move {
            let mut rx = gc_inner.rv_rx.clone();
            loop {
                if rx.changed().await.is_err() {
                    return;
                }
                // Like the real controllers, act a moment after changes rather than after each
                // one: a burst of writes costs one pass, not one pass per write.
                tokio::time::sleep(Duration::from_millis(5)).await;
                for _ in 0..100 {
                    let changed = gc::run_pass(&mut gc_inner.state.lock().unwrap());
                    if !changed {
                        break;
                    }
                }
                rx.borrow_and_update();
            }
        });
        FakeApiServer { inner, addr, tasks: vec![http, gc] }
    }
}

/// The workspace's `crds/*.yaml`: the CRDs the operator ships, which nearly every test needs.
fn repo_crds() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect()
}

/// The fake API server. Dropping it stops it.
pub struct FakeApiServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The answer the fake gives to a request failed by [`FakeApiServer::fail_next`]: the status
/// code with the real server's `Status` body for it (and `Retry-After` for 429). For clients that
/// inject the same faults in front of a real server.
pub fn injected_error(code: u16) -> Response {
    ApiError::injected(code).into_response()
}

impl FakeApiServer {
    /// Start with defaults (repository CRDs loaded, StatefulSet simulation on).
    pub async fn start() -> Self {
        Builder::default().start().await
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().expect("the fake's URL parses"))
    }

    fn client_from(config: kube::Config) -> kube::Client {
        kube::Client::try_from(config).expect("client for the fake API server")
    }

    fn config_with_token(&self, token: &str) -> kube::Config {
        let mut config = self.config();
        config.auth_info.token = Some(token.to_string().into());
        config
    }

    /// A client of the administrator ([`ADMIN_USER`], group `system:masters`: never refused by
    /// RBAC), default namespace `default`. For test setup and checks.
    pub fn client(&self) -> kube::Client {
        Self::client_from(self.config_with_token(ADMIN_TOKEN))
    }

    /// [`FakeApiServer::client`] with kube's automatic retries of 429/503/504 turned off, to
    /// observe injected failures directly.
    pub fn client_without_retries(&self) -> kube::Client {
        let mut config = self.config_with_token(ADMIN_TOKEN);
        config.default_retry = false;
        Self::client_from(config)
    }

    /// A new bearer token that authenticates as `user`.
    pub fn token_for(&self, user: UserInfo) -> String {
        let mut tokens = self.inner.tokens.lock().unwrap();
        let token = format!("fake-token-{}", tokens.len());
        tokens.insert(token.clone(), user);
        token
    }

    /// A client authenticated as `user`; its requests are authorized by the RBAC objects
    /// stored in the fake, and recorded with [`RequestRecord::user`] set to its name.
    pub fn client_for(&self, user: UserInfo) -> kube::Client {
        let token = self.token_for(user);
        Self::client_from(self.config_with_token(&token))
    }

    /// A client of the plain user `name` in `groups` (and `system:authenticated`).
    pub fn client_as_user(&self, name: &str, groups: &[&str]) -> kube::Client {
        self.client_for(UserInfo::user(name, groups))
    }

    /// A client of user `name` without groups (but `system:authenticated`): tells the requests
    /// of several clients apart and, without RBAC objects naming it, is refused everything but
    /// discovery.
    pub fn client_as(&self, name: &str) -> kube::Client {
        self.client_as_user(name, &[])
    }

    /// A client with the token of ServiceAccount `namespace/name`: user
    /// `system:serviceaccount:<namespace>:<name>`, groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<namespace>`, `system:authenticated`.
    pub fn client_as_service_account(&self, namespace: &str, name: &str) -> kube::Client {
        self.client_for(UserInfo::service_account(namespace, name))
    }

    /// The administrator's client impersonating `user` (and `groups`) with the
    /// `Impersonate-User`/`Impersonate-Group` headers, as on a real cluster. For a
    /// ServiceAccount's user name without groups, its groups are added as the real server does.
    pub fn client_impersonating(&self, user: &str, groups: &[&str]) -> kube::Client {
        let mut config = self.config_with_token(ADMIN_TOKEN);
        config.auth_info.impersonate = Some(user.to_string());
        if !groups.is_empty() {
            config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        }
        Self::client_from(config)
    }

    /// Whether `user` may `verb` the `resource` (`plural` or `plural/subresource`) of API
    /// `group` in `namespace` (empty: cluster scope) named `name` (empty: any), by the RBAC
    /// objects stored now — a SubjectAccessReview without a request.
    pub fn allows(&self, user: &UserInfo, verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> bool {
        let st = self.inner.state.lock().unwrap();
        rbac::authorize(&st, user, &Attributes::resource(verb, group, resource, namespace, name)).is_ok()
    }

    /// Store every object of a multi-document YAML as the administrator would with a
    /// server-side apply (field manager `fake-setup`): e.g. a repository's RBAC manifests.
    pub fn apply_manifests(&self, yaml: &str) -> Result<(), String> {
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let obj: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
            if obj.is_null() {
                continue;
            }
            let api_version = obj.get("apiVersion").and_then(Value::as_str).ok_or("an object without apiVersion")?;
            let kind = obj.get("kind").and_then(Value::as_str).ok_or("an object without kind")?;
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).ok_or("an object without metadata.name")?;
            let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
            let mut st = self.inner.state.lock().unwrap();
            let rt = st.registry.find_kind(api_version, kind).cloned().ok_or_else(|| format!("{api_version} {kind} is not served"))?;
            let ctx = WriteCtx::internal("fake-setup");
            st.patch(&rt, ns, name, PatchKind::Apply { force: true }, &obj, "", &ctx).map_err(|e| e.message)?;
        }
        Ok(())
    }

    /// A kubeconfig naming the fake (for code that loads kubeconfig files), with the
    /// administrator's token.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_with_token(ADMIN_TOKEN)
    }

    /// A kubeconfig naming the fake with a bearer token of [`FakeApiServer::token_for`]: e.g.
    /// to run a program (the operator's binary) as a ServiceAccount.
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
            self.url()
        )
    }

    /// Store objects as if `manager` had server-side applied each one (with `force`), without
    /// HTTP requests, authorization or request records: to start a benchmark from a populated
    /// cluster. Each object goes through the same write path as an apply request (defaults,
    /// validation, managedFields, watch events, background controllers), so what is stored is
    /// what the API would have stored. Returns how many objects were stored; stops at the
    /// first object the API would have refused.
    pub fn insert_objects(&self, objects: &[Value], manager: &str) -> Result<usize, String> {
        self.insert(objects, manager, "")
    }

    /// [`FakeApiServer::insert_objects`] through the `status` subresource: the status of
    /// stored objects, as if `manager` had server-side applied it there.
    pub fn insert_status(&self, objects: &[Value], manager: &str) -> Result<usize, String> {
        self.insert(objects, manager, "status")
    }

    fn insert(&self, objects: &[Value], manager: &str, subresource: &str) -> Result<usize, String> {
        let ctx = WriteCtx::internal(manager);
        // A chunk at a time, so that watches and the background controllers keep up.
        for chunk in objects.chunks(500) {
            let mut st = self.inner.state.lock().unwrap();
            for obj in chunk {
                let api_version = obj.get("apiVersion").and_then(Value::as_str).ok_or("an object without apiVersion")?;
                let kind = obj.get("kind").and_then(Value::as_str).ok_or("an object without kind")?;
                let name = obj.pointer("/metadata/name").and_then(Value::as_str).ok_or("an object without metadata.name")?;
                let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
                let rt = st.registry.find_kind(api_version, kind).cloned().ok_or_else(|| format!("{api_version} {kind} is not served"))?;
                st.patch(&rt, ns, name, PatchKind::Apply { force: true }, obj, subresource, &ctx)
                    .map_err(|e| format!("{kind} {ns}/{name}: {}", e.message))?;
            }
        }
        Ok(objects.len())
    }

    /// Make every request that stores something wait `latency` before it is answered, outside
    /// the fake's lock (0: answer at once, the default). Models the etcd commit a real API
    /// server waits for (raft round trip and fsync, milliseconds): concurrent writers overlap
    /// these waits, a sequential client cannot. Requests that change nothing (no-op applies,
    /// dry runs, reads, refusals) are not delayed, as etcd is not written for them.
    pub fn set_commit_latency(&self, latency: Duration) {
        self.inner.commit_latency_us.store(latency.as_micros().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn seed(&self, obj: Value) {
        let mut st = self.inner.state.lock().unwrap();
        let rt = st.registry.find_kind(obj["apiVersion"].as_str().unwrap(), obj["kind"].as_str().unwrap()).unwrap().clone();
        let ctx = WriteCtx::internal("fake-setup");
        st.create(&rt, "", obj, &ctx, false).unwrap();
    }

    /// Install (or update) a CRD given as YAML; its resources are served at once.
    pub fn register_crd(&self, yaml: &str) -> Result<(), String> {
        let crd: Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        let name = crd.pointer("/metadata/name").and_then(Value::as_str).ok_or("CRD without metadata.name")?.to_string();
        let mut st = self.inner.state.lock().unwrap();
        let rt = st.registry.find("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap().clone();
        let ctx = WriteCtx::internal("fake-setup");
        if st.lookup(&rt, "", &name).is_some() {
            st.patch(&rt, "", &name, PatchKind::Apply { force: true }, &crd, "", &ctx).map_err(|e| e.message)?;
        } else {
            st.create(&rt, "", crd, &ctx, false).map_err(|e| e.message)?;
        }
        Ok(())
    }

    /// Make the next `count` requests matching `verb` (`get`, `list`, `watch`, `create`,
    /// `update`, `patch`, `delete`, or `*`) and `resource` (`tenants`,
    /// `tenancy.platform.dev/tenants`, `tenants/status`, `configmaps`, or `*`) fail with
    /// `status` (429 carries `Retry-After: 1`).
    pub fn fail_next(&self, verb: &str, resource: &str, status: u16, count: usize) {
        self.add_fault(verb, resource, FaultAction::Status(status), count);
    }

    /// Make the next `count` matching requests hang for `duration` (then answer 504).
    pub fn hang_next(&self, verb: &str, resource: &str, duration: Duration, count: usize) {
        self.add_fault(verb, resource, FaultAction::Hang(duration), count);
    }

    /// [`FakeApiServer::fail_next`] for the requests of one [`FakeApiServer::client_as`] user only.
    pub fn fail_next_as(&self, user: &str, verb: &str, resource: &str, status: u16, count: usize) {
        self.push_fault(Some(user), verb, resource, FaultAction::Status(status), count);
    }

    /// [`FakeApiServer::hang_next`] for the requests of one [`FakeApiServer::client_as`] user only.
    pub fn hang_next_as(&self, user: &str, verb: &str, resource: &str, duration: Duration, count: usize) {
        self.push_fault(Some(user), verb, resource, FaultAction::Hang(duration), count);
    }

    fn add_fault(&self, verb: &str, resource: &str, action: FaultAction, count: usize) {
        self.push_fault(None, verb, resource, action, count);
    }

    fn push_fault(&self, user: Option<&str>, verb: &str, resource: &str, action: FaultAction, count: usize) {
        let fault = Fault { verb: verb.into(), resource: resource.into(), action, remaining: count, user: user.map(String::from) };
        self.inner.faults.lock().unwrap().push(fault);
    }

    pub fn clear_faults(&self) {
        self.inner.faults.lock().unwrap().clear();
    }

    /// Counts per (verb, `group/resource[/subresource]`) since start or the last reset.
    pub fn request_counts(&self) -> RequestCounts {
        let mut c = RequestCounts::default();
        for r in self.inner.records.lock().unwrap().iter() {
            *c.0.entry((r.verb.clone(), r.gr())).or_default() += 1;
        }
        c
    }

    /// [`FakeApiServer::request_counts`] of the requests of one user (the authenticated, or
    /// impersonated, user name; e.g. a ServiceAccount's `system:serviceaccount:<ns>:<name>`).
    pub fn request_counts_of(&self, user: &str) -> RequestCounts {
        let mut c = RequestCounts::default();
        for r in self.inner.records.lock().unwrap().iter().filter(|r| r.user.as_deref() == Some(user)) {
            *c.0.entry((r.verb.clone(), r.gr())).or_default() += 1;
        }
        c
    }

    /// Write requests (create/update/patch/delete) made since `snapshot` was taken.
    pub fn writes_since(&self, snapshot: &RequestCounts) -> RequestCounts {
        let now = self.request_counts().since(snapshot);
        RequestCounts(now.0.into_iter().filter(|((v, _), _)| faults::WRITE_VERBS.contains(&v.as_str())).collect())
    }

    pub fn reset_counts(&self) {
        self.inner.records.lock().unwrap().clear();
    }

    /// Every resource request since start or the last reset, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.records.lock().unwrap().clone()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.state.lock().unwrap().rv
    }

    /// Forget the watch history: watches from any older resourceVersion get 410 Expired.
    pub fn compact(&self) {
        self.inner.state.lock().unwrap().compact();
    }

    /// Read an object directly (not counted as a request).
    pub fn object(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let st = self.inner.state.lock().unwrap();
        let rt = st.registry.find_kind(api_version, kind)?.clone();
        st.lookup(&rt, namespace, name).map(|o| State::present(&rt, o))
    }

    /// All objects of a kind (all namespaces), not counted as a request.
    pub fn objects(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let st = self.inner.state.lock().unwrap();
        let Some(rt) = st.registry.find_kind(api_version, kind).cloned() else {
            return vec![];
        };
        st.list(&rt, None, &Selectors::default()).iter().map(|o| State::present(&rt, o)).collect()
    }

    /// How many objects of a kind (all namespaces) `matches` accepts, without copying them
    /// (not counted as a request): for polling a large store.
    pub fn count_objects(&self, api_version: &str, kind: &str, matches: impl Fn(&Value) -> bool) -> usize {
        let st = self.inner.state.lock().unwrap();
        let Some(rt) = st.registry.find_kind(api_version, kind).cloned() else {
            return 0;
        };
        st.objects.get(&State::res_key(&rt)).map_or(0, |m| m.values().filter(|o| matches(o)).count())
    }

    /// Run the background controllers (GC, namespaces, StatefulSets) until nothing changes.
    pub fn settle(&self) {
        let mut st = self.inner.state.lock().unwrap();
        for _ in 0..100 {
            if !gc::run_pass(&mut st) {
                break;
            }
        }
    }
}

// ------------------------------------------------------------------------------------ HTTP

fn json_response(code: StatusCode, v: &Value) -> Response {
    text_response(code, v.to_string())
}

fn text_response(code: StatusCode, body: String) -> Response {
    (code, [("content-type", "application/json")], body).into_response()
}

/// A stored object as the response to a request for it.
fn object_response(code: StatusCode, rt: &ResourceType, obj: &Value) -> Response {
    text_response(code, store::present_json(rt, obj))
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(st: &State, path: &str) -> Option<(String, String, Vec<String>)> {
    let segs: Vec<String> = path.trim_matches('/').split('/').map(String::from).collect();
    match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 2 => Some((String::new(), segs[1].clone(), segs[2..].to_vec())),
        Some("apis") if segs.len() >= 3 => Some((segs[1].clone(), segs[2].clone(), segs[3..].to_vec())),
        _ => {
            let _ = st;
            None
        }
    }
}

fn resolve(st: &State, group: &str, version: &str, rest: &[String]) -> Option<Target> {
    if rest.is_empty() {
        return None;
    }
    if rest.len() >= 3 && rest[0] == "namespaces" {
        if let Some(rt) = st.registry.find(group, version, &rest[2]).filter(|t| t.namespaced) {
            if rest.len() > 5 {
                return None;
            }
            return Some(Target {
                rt: rt.clone(),
                namespace: Some(rest[1].clone()),
                name: rest.get(3).cloned(),
                sub: rest.get(4).cloned(),
            });
        }
    }
    if rest.len() > 3 {
        return None;
    }
    let rt = st.registry.find(group, version, &rest[0])?;
    Some(Target { rt: rt.clone(), namespace: None, name: rest.get(1).cloned(), sub: rest.get(2).cloned() })
}

fn version_doc() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "fake", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
    })
}

fn manager_from(q: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn parse_body(body: &Bytes, yaml: bool) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    // Apply patches are YAML, but clients (kube, kubectl) send JSON, which is YAML too and
    // much faster to read as JSON.
    if yaml && (body[0] == b'{' || body[0] == b'[') {
        if let Ok(v) = serde_json::from_slice(body) {
            return Ok(v);
        }
    }
    if yaml {
        serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))
    }
}

/// Who sent the request: the bearer token's user, or anonymous without one (401 for a token
/// the fake did not issue).
fn authenticate(inner: &Inner, headers: &HeaderMap) -> ApiResult<UserInfo> {
    let Some(value) = headers.get("authorization") else {
        return Ok(UserInfo::anonymous());
    };
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).ok_or_else(ApiError::unauthorized)?;
    inner.tokens.lock().unwrap().get(token).cloned().ok_or_else(ApiError::unauthorized)
}

/// The `Impersonate-User`/`Impersonate-Group` headers, authorized by the `impersonate` verb on
/// `users`, `serviceaccounts` and `groups` as the real server's impersonation filter does.
fn impersonate(inner: &Inner, caller: UserInfo, headers: &HeaderMap) -> ApiResult<UserInfo> {
    let groups: Vec<String> = headers.get_all("impersonate-group").iter().filter_map(|v| v.to_str().ok().map(String::from)).collect();
    let Some(name) = headers.get("impersonate-user").and_then(|v| v.to_str().ok()).map(String::from) else {
        if groups.is_empty() {
            return Ok(caller);
        }
        return Err(ApiError::new(500, "InternalError", "Internal error occurred: requested impersonation of groups without a user"));
    };
    let st = inner.state.lock().unwrap();
    let st = &*st;
    let target = UserInfo { name: name.clone(), groups: Vec::new() };
    let mut checks = Vec::new();
    match target.as_service_account() {
        Some((ns, sa)) => checks.push(Attributes::resource("impersonate", "", "serviceaccounts", ns, sa)),
        None => checks.push(Attributes::resource("impersonate", "", "users", "", &name)),
    }
    checks.extend(groups.iter().map(|g| Attributes::resource("impersonate", "", "groups", "", g)));
    for check in &checks {
        if let Err(reason) = rbac::authorize(st, &caller, check) {
            return Err(rbac::forbidden(&caller, check, &reason));
        }
    }
    let mut effective = match target.as_service_account() {
        Some((ns, sa)) if groups.is_empty() => UserInfo::service_account(ns, sa),
        _ => UserInfo { name, groups },
    };
    if effective.name != rbac::ANONYMOUS_USER && !effective.groups.iter().any(|g| g == rbac::AUTHENTICATED_GROUP) {
        effective.groups.push(rbac::AUTHENTICATED_GROUP.into());
    }
    Ok(effective)
}

async fn handle(AxState(inner): AxState<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let addr = inner.addr.lock().unwrap().clone();
    let user = match authenticate(&inner, &headers).and_then(|caller| impersonate(&inner, caller, &headers)) {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    // discovery and misc
    if method == Method::GET {
        let st = inner.state.lock().unwrap();
        let non_resource = Attributes::non_resource("get", &path);
        let is_discovery = matches!(path.trim_end_matches('/'), "/version" | "/api" | "/apis" | "/healthz" | "/readyz" | "/livez")
            || path.starts_with("/api/") && path.trim_matches('/').split('/').count() == 2
            || path.starts_with("/apis/") && path.trim_matches('/').split('/').count() <= 3;
        if is_discovery {
            if let Err(reason) = rbac::authorize(&st, &user, &non_resource) {
                return rbac::forbidden(&user, &non_resource, &reason).into_response();
            }
        }
        let doc = match path.trim_end_matches('/') {
            "/version" => Some(version_doc()),
            "/api" => Some(st.registry.api_versions(&addr)),
            "/apis" => Some(st.registry.api_group_list()),
            "/healthz" | "/readyz" | "/livez" => return (StatusCode::OK, "ok").into_response(),
            p => {
                let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
                match segs.as_slice() {
                    ["api", v] => st.registry.resource_list("", v),
                    ["apis", g] => st.registry.api_group(g),
                    ["apis", g, v] => st.registry.resource_list(g, v),
                    _ => None,
                }
            }
        };
        if let Some(doc) = doc {
            return json_response(StatusCode::OK, &doc);
        }
    }
    let q = query(&uri);
    let target = {
        let st = inner.state.lock().unwrap();
        parse_target(&st, &path).and_then(|(g, v, rest)| resolve(&st, &g, &v, &rest))
    };
    let Some(t) = target else {
        return ApiError::path_not_found().into_response();
    };
    let is_watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, t.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if is_watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return ApiError::method_not_allowed("the server does not allow this method on the requested resource").into_response(),
    };
    let mut rec = RequestRecord {
        verb: verb.into(),
        group: t.rt.group.clone(),
        version: t.rt.version.clone(),
        resource: match &t.sub {
            Some(s) => format!("{}/{}", t.rt.plural, s),
            None => t.rt.plural.clone(),
        },
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        code: 0,
        user: Some(user.name.clone()),
    };
    // As the real server's request info: a request for namespace `x` is also "in" namespace `x`.
    let is_namespace = t.rt.group.is_empty() && t.rt.plural == "namespaces";
    let namespace = if is_namespace { t.name.as_deref() } else { t.namespace.as_deref() };
    let attributes =
        Attributes::resource(verb, &t.rt.group, &rec.resource, namespace.unwrap_or_default(), t.name.as_deref().unwrap_or_default());
    let denied = rbac::authorize(&inner.state.lock().unwrap(), &user, &attributes).err();
    if let Some(reason) = denied {
        let resp = rbac::forbidden(&user, &attributes, &reason).into_response();
        rec.code = resp.status().as_u16();
        inner.records.lock().unwrap().push(rec);
        return resp;
    }
    // fault injection
    let fault = {
        let mut faults = inner.faults.lock().unwrap();
        let f = faults.iter_mut().find(|f| f.matches(&rec)).map(|f| {
            f.remaining -= 1;
            f.action.clone()
        });
        faults.retain(|f| f.remaining > 0);
        f
    };
    let resp = match fault {
        Some(FaultAction::Status(code)) => ApiError::injected(code).into_response(),
        Some(FaultAction::Hang(d)) => {
            tokio::time::sleep(d).await;
            ApiError::injected(504).into_response()
        }
        None => match serve(&inner, &t, verb, &q, &headers, &body, &user) {
            Ok((r, committed)) => {
                let latency = inner.commit_latency_us.load(Ordering::Relaxed);
                if committed && latency > 0 {
                    // A thread's sleep, not tokio's: tokio's timer ticks in milliseconds and
                    // rounds up, which turns a 2 ms wait into more than 3 ms.
                    let wait = Duration::from_micros(latency);
                    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(wait)).await;
                }
                r
            }
            Err(e) => e.into_response(),
        },
    };
    rec.code = if verb == "watch" && resp.status() == StatusCode::OK { 0 } else { resp.status().as_u16() };
    inner.records.lock().unwrap().push(rec);
    resp
}

fn serve(
    inner: &Arc<Inner>,
    t: &Target,
    verb: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    user: &UserInfo,
) -> ApiResult<(Response, bool)> {
    let rt = &t.rt;
    let ns = t.namespace.clone().unwrap_or_default();
    if rt.namespaced && t.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::path_not_found());
    }
    if let Some(sub) = &t.sub {
        let ok = (sub == "status" && rt.status) || rt.extra_subresources.contains(sub);
        if !ok {
            return Err(ApiError::path_not_found());
        }
        if !matches!(verb, "get" | "update" | "patch") {
            return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
        }
    }
    let dry_run = q.get("dryRun").is_some_and(|d| d == "All");
    let ctx = WriteCtx { manager: manager_from(q, headers), dry_run, user: Some(user.clone()) };
    if let Some(fv) = q.get("fieldValidation") {
        if !matches!(fv.as_str(), "Ignore" | "Warn" | "Strict" | "") {
            return Err(ApiError::bad_request(format!("fieldValidation: Unsupported value: {fv:?}")));
        }
    }
    let name = t.name.clone().unwrap_or_default();
    let selectors = || -> ApiResult<Selectors> {
        Ok(Selectors {
            labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
            fields: FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""), &rt.kind)?,
        })
    };
    // `true` with a response when the request stored something (for the commit latency).
    let read = |r: Response| Ok((r, false));
    let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
    let presentation = store::Presentation::from_accept(accept, verb == "list");
    match verb {
        "get" if presentation == store::Presentation::Metadata => {
            let st = inner.state.lock().unwrap();
            let obj = st.get(rt, &ns, &name)?;
            drop(st);
            read(text_response(StatusCode::OK, presentation.json(rt, &obj)))
        }
        "get" => {
            let st = inner.state.lock().unwrap();
            let obj = st.get(rt, &ns, &name)?;
            drop(st);
            read(object_response(StatusCode::OK, rt, &obj))
        }
        "list" => {
            let sel = selectors()?;
            let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
            let st = inner.state.lock().unwrap();
            if q.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
                let rv = q.get("resourceVersion").cloned().unwrap_or_default();
                if rv != st.rv.to_string() {
                    return Err(ApiError::gone(format!("too old resource version: {rv} ({})", st.rv)));
                }
            }
            // Continue token: "<rv of the first page>:<namespace>/<name of the last item>".
            // Pages go on after that key in the store's order, so each page costs its own
            // size, not the size of the list so far.
            let mut list_rv = st.rv.to_string();
            let after = match q.get("continue").filter(|c| !c.is_empty()) {
                Some(c) => {
                    let invalid = || ApiError::bad_request("continue key is not valid");
                    let (rv, key) = c.split_once(':').ok_or_else(invalid)?;
                    let rvn: u64 = rv.parse().map_err(|_| invalid())?;
                    let (key_ns, key_name) = key.split_once('/').ok_or_else(invalid)?;
                    if rvn < st.compacted_rv {
                        return Err(ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
                    }
                    list_rv = rv.to_string();
                    Some((key_ns.to_string(), key_name.to_string()))
                }
                None => None,
            };
            let page = st.list_page(rt, t.namespace.as_deref(), &sel, after.as_ref(), limit);
            drop(st);
            let mut meta = json!({"resourceVersion": list_rv});
            if let Some((key_ns, key_name)) = &page.next {
                meta["continue"] = json!(format!("{list_rv}:{key_ns}/{key_name}"));
                if let Some(remaining) = page.remaining {
                    meta["remainingItemCount"] = json!(remaining);
                }
            }
            // The items are written straight from the store, not copied into a list value.
            let (list_version, list_kind) = presentation.list_type(rt);
            let mut out =
                format!("{{\"apiVersion\":{},\"kind\":{},\"metadata\":{},\"items\":[", json!(list_version), json!(list_kind), meta);
            for (i, item) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&presentation.json(rt, item));
            }
            out.push_str("]}");
            read(text_response(StatusCode::OK, out))
        }
        "watch" => {
            let sel = selectors()?;
            let timeout = q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1800);
            let req = watch::WatchRequest {
                rt: rt.clone(),
                namespace: t.namespace.clone(),
                selectors: sel,
                resource_version: q.get("resourceVersion").cloned(),
                send_initial_events: q.get("sendInitialEvents").is_some_and(|v| v == "true"),
                bookmarks: q.get("allowWatchBookmarks").is_some_and(|v| v == "true"),
                presentation: store::Presentation::from_accept(accept, false),
                timeout: Duration::from_secs(timeout),
            };
            if req.send_initial_events && q.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            let body = watch::start(inner.clone(), req)?;
            read(Response::builder().status(200).header("content-type", "application/json").body(body).unwrap())
        }
        "create" => {
            let obj = parse_body(body, false)?;
            let mut st = inner.state.lock().unwrap();
            let before = st.rv;
            let created = st.create(rt, &ns, obj, &ctx, false)?;
            let committed = st.rv != before;
            drop(st);
            Ok((object_response(StatusCode::CREATED, rt, &created), committed))
        }
        "update" => {
            let obj = parse_body(body, false)?;
            let sub = t.sub.clone().unwrap_or_default();
            let mut st = inner.state.lock().unwrap();
            let before = st.rv;
            let updated = st.write(rt, &ns, &name, obj, &sub, &ctx, false, true)?;
            let committed = st.rv != before;
            drop(st);
            Ok((object_response(StatusCode::OK, rt, &updated), committed))
        }
        "patch" => {
            let ct =
                headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
            let force = q.get("force").is_some_and(|f| f == "true");
            let kind = match ct.as_str() {
                "application/apply-patch+yaml" => {
                    if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
                        return Err(ApiError::new(
                            422,
                            "Invalid",
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                        ));
                    }
                    PatchKind::Apply { force }
                }
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                    )))
                }
            };
            if force && !matches!(kind, PatchKind::Apply { .. }) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
                ));
            }
            let is_apply = matches!(kind, PatchKind::Apply { .. });
            let patch = parse_body(body, is_apply)?;
            let sub = t.sub.clone().unwrap_or_default();
            let mut st = inner.state.lock().unwrap();
            let before = st.rv;
            let existed = st.lookup(rt, &ns, &name).is_some();
            let out = st.patch(rt, &ns, &name, kind, &patch, &sub, &ctx)?;
            let committed = st.rv != before;
            drop(st);
            let code = if is_apply && !existed { StatusCode::CREATED } else { StatusCode::OK };
            Ok((object_response(code, rt, &out), committed))
        }
        "delete" => {
            // The NamespaceLifecycle admission plugin keeps the system namespaces, for anyone.
            if rt.group.is_empty() && rt.plural == "namespaces" && IMMORTAL_NAMESPACES.contains(&name.as_str()) {
                return Err(ApiError::forbidden("", "namespaces", &name, "this namespace may not be deleted"));
            }
            let opts_body = parse_body(body, false).unwrap_or(Value::Null);
            let pp = q
                .get("propagationPolicy")
                .cloned()
                .or_else(|| opts_body.get("propagationPolicy").and_then(Value::as_str).map(String::from));
            let propagation = match pp.as_deref() {
                None | Some("") => None,
                Some("Background") => Some(Propagation::Background),
                Some("Foreground") => Some(Propagation::Foreground),
                Some("Orphan") => Some(Propagation::Orphan),
                Some(other) => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
                    ))
                }
            };
            let opts = DeleteOpts {
                user: ctx.user.clone(),
                propagation,
                uid: opts_body.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from),
                resource_version: opts_body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from),
                dry_run: dry_run || opts_body.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|d| d == "All")),
            };
            let mut st = inner.state.lock().unwrap();
            let before = st.rv;
            let (obj, gone) = st.delete(rt, &ns, &name, &opts)?;
            let committed = st.rv != before;
            drop(st);
            Ok((object_response(if gone { StatusCode::OK } else { StatusCode::ACCEPTED }, rt, &obj), committed))
        }
        _ => Err(ApiError::method_not_allowed("deletecollection is not supported by the fake API server")),
    }
}
