//! One environment for end-to-end scenarios: a real cluster when
//! `TENANT_OPERATOR_E2E_KUBECONFIG` names a kubeconfig file, the local real control plane
//! ([`super::control_plane`], with its stand-ins) when `TENANT_OPERATOR_E2E_SERVER=real`, the
//! in-process fake otherwise.
//!
//! The operator's own manifests — `deploy/namespace.yaml`, `deploy/serviceaccount.yaml` and every
//! `deploy/rbac/*.yaml`, the files users install — are loaded first, and
//! [`TestEnv::operator_client`] acts as its ServiceAccount (a token on the fake, impersonation on
//! a real cluster), so the scenarios go through the RBAC users get. [`TestEnv::client`] is the
//! administrator's, for the tests' own setup and checks.
//!
//! On a real cluster the CRDs in `crds/*.yaml` are installed (server-side apply) and awaited,
//! every object a test creates through [`TestEnv::create`] (or registers with
//! [`TestEnv::track`]) is deleted by [`TestEnv::cleanup`] (or on drop), and nothing else is
//! touched. Names from [`TestEnv::unique_slug`] keep parallel runs on a shared cluster apart.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use fake_apiserver::FakeApiServer;

use super::faults::ClientFaults;
use super::requests::RequestLog;
use super::scope::TenantScope;

pub const KUBECONFIG_ENV: &str = "TENANT_OPERATOR_E2E_KUBECONFIG";
/// `real`: run the scenarios on the local control plane of `TENANT_OPERATOR_K8S_BINARIES`.
pub const SERVER_ENV: &str = "TENANT_OPERATOR_E2E_SERVER";

/// Where the scenarios of this run go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Fake,
    /// The local control plane, with the stand-ins for kubelet and ingress controller.
    LocalControlPlane,
    /// Any cluster, by kubeconfig (it brings its own kubelet and ingress controller).
    Kubeconfig(PathBuf),
}

impl Target {
    pub fn from_env() -> Self {
        if let Some(path) = std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty()) {
            return Target::Kubeconfig(PathBuf::from(path));
        }
        match std::env::var(SERVER_ENV).as_deref() {
            Ok("real") => Target::LocalControlPlane,
            Ok("") | Ok("fake") | Err(_) => Target::Fake,
            Ok(other) => panic!("{SERVER_ENV}={other:?}: expected `real` or `fake`"),
        }
    }

    pub fn is_real(&self) -> bool {
        *self != Target::Fake
    }
}
const FIELD_MANAGER: &str = "tenant-operator-e2e";
/// Where `deploy/` installs the operator and its ServiceAccount.
pub const OPERATOR_NAMESPACE: &str = "tenant-operator";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "tenant-operator";

/// The user name the API server gives the operator's ServiceAccount.
pub fn operator_user() -> String {
    format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}")
}

/// The files of `deploy/` that give the operator its identity and permissions and people their
/// limits, as installed: `(path, content)` of `namespace.yaml`, `serviceaccount.yaml`,
/// `rbac/*.yaml` and `admission/*.yaml` (the TenantUser self-service policy).
pub fn deploy_manifests() -> Vec<(String, String)> {
    let mut paths = vec!["deploy/namespace.yaml".to_string(), "deploy/serviceaccount.yaml".to_string()];
    for dir in ["rbac", "admission"] {
        let mut files: Vec<String> = std::fs::read_dir(super::repo_path(&format!("deploy/{dir}")))
            .unwrap_or_else(|e| panic!("deploy/{dir}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter_map(|p| p.file_name().map(|n| format!("deploy/{dir}/{}", n.to_string_lossy())))
            .collect();
        files.sort();
        paths.extend(files);
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(super::repo_path(&p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
            (p, text)
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Tracked {
    ar: ApiResource,
    namespace: Option<String>,
    name: String,
}

pub struct TestEnv {
    client: Client,
    operator: Client,
    fake: Option<FakeApiServer>,
    kubeconfig: Option<PathBuf>,
    /// The kubelet and ingress controller are the stand-ins (the local control plane), which a
    /// scenario can tell to leave its Ingresses alone.
    stand_ins: bool,
    /// The tenants of this environment's scenario: on a real cluster the operator's client sees
    /// no others (see [`super::scope`]).
    scope: TenantScope,
    /// What the operator's client asked on a real cluster (the fake records it itself).
    operator_requests: RequestLog,
    /// The API errors the operator's client answers itself on a real cluster (the fake injects
    /// them server-side).
    operator_faults: ClientFaults,
    created: Mutex<Vec<Tracked>>,
}

async fn client_from_kubeconfig(path: &PathBuf) -> Client {
    let kc = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: cannot read kubeconfig: {e}", path.display()));
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: bad kubeconfig: {e}", path.display()));
    Client::try_from(cfg).expect("client from kubeconfig")
}

impl TestEnv {
    /// The environment [`Target::from_env`] names (on a real cluster with the CRDs installed
    /// and established).
    pub async fn new() -> Self {
        match Target::from_env() {
            Target::Kubeconfig(path) => Self::from_kubeconfig(path).await,
            Target::LocalControlPlane => Self::local_control_plane().await,
            Target::Fake => Self::with_fake(FakeApiServer::start().await),
        }
    }

    /// The local control plane of this test binary (started on first use), as
    /// [`Self::from_kubeconfig`] with the stand-ins running.
    pub async fn local_control_plane() -> Self {
        let plane = super::control_plane::shared().unwrap_or_else(|e| panic!("{SERVER_ENV}=real: no control plane: {e}"));
        let mut env = Self::from_kubeconfig(plane.kubeconfig.clone()).await;
        env.stand_ins = true;
        env
    }

    /// The fake, started by the caller (e.g. with extra CRDs registered through its builder),
    /// with the operator's manifests of `deploy/` loaded.
    pub fn with_fake(fake: FakeApiServer) -> Self {
        let manifests: Vec<String> = deploy_manifests().into_iter().map(|(_, text)| text).collect();
        Self::with_fake_and_manifests(fake, &manifests)
    }

    /// The fake with these manifests in place of `deploy/`'s (e.g. its RBAC with a rule
    /// removed, to see the operator fail without it).
    pub fn with_fake_and_manifests(fake: FakeApiServer, manifests: &[String]) -> Self {
        for yaml in manifests {
            fake.apply_manifests(yaml).unwrap_or_else(|e| panic!("loading manifests into the fake: {e}"));
        }
        let operator = fake.client_as_service_account(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT);
        TestEnv {
            client: fake.client(),
            operator,
            fake: Some(fake),
            kubeconfig: None,
            stand_ins: false,
            scope: TenantScope::default(),
            operator_requests: RequestLog::default(),
            operator_faults: ClientFaults::default(),
            created: Mutex::new(Vec::new()),
        }
    }

    /// Use the cluster a kubeconfig names (what `new` does when the variable is set): the CRDs
    /// and `deploy/`'s identity and RBAC are server-side applied, the operator impersonates its
    /// ServiceAccount (the kubeconfig's user needs `impersonate` on it, as cluster admins have).
    pub async fn from_kubeconfig(path: PathBuf) -> Self {
        let client = client_from_kubeconfig(&path).await;
        install_crds(&client).await;
        for (file, yaml) in deploy_manifests() {
            apply_manifests(&client, &yaml).await.unwrap_or_else(|e| panic!("installing {file}: {e}"));
        }
        let scope = TenantScope::default();
        let operator_requests = RequestLog::for_user(&operator_user());
        let operator_faults = ClientFaults::default();
        let operator = impersonating_client_in_scope(&path, &operator_user(), Some((&scope, &operator_requests, &operator_faults))).await;
        TestEnv {
            client,
            operator,
            fake: None,
            kubeconfig: Some(path),
            stand_ins: false,
            scope,
            operator_requests,
            operator_faults,
            created: Mutex::new(Vec::new()),
        }
    }

    /// The administrator's client, for the test's own setup and checks.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client acting as the operator's ServiceAccount, for the operator under test.
    pub fn operator_client(&self) -> Client {
        self.operator.clone()
    }

    /// A client acting as the person `user` (an RBAC `User` subject, e.g. an email address):
    /// a token of that user on the fake, impersonation on a real cluster (the kubeconfig's user
    /// needs `impersonate` on users, as cluster admins have).
    pub async fn client_as_person(&self, user: &str) -> Client {
        match (&self.fake, &self.kubeconfig) {
            (Some(fake), _) => fake.client_as(user),
            (None, Some(path)) => impersonating_client_in_scope(path, user, None).await,
            (None, None) => unreachable!("a test environment is the fake or a kubeconfig"),
        }
    }

    /// The fake, when not running against a real cluster. Tests of fake-only features
    /// (fault injection, request counts) should return early when this is `None`.
    pub fn fake(&self) -> Option<&FakeApiServer> {
        self.fake.as_ref()
    }

    pub fn is_real_cluster(&self) -> bool {
        self.fake.is_none()
    }

    /// The requests of the operator's client on a real cluster, as the fake would record them
    /// (empty on the fake: ask the fake).
    pub fn operator_request_log(&self) -> &RequestLog {
        &self.operator_requests
    }

    /// Fail the operator's next `count` requests of `verb` on `resource` with `status`: the
    /// fake answers them so (for every client, as [`FakeApiServer::fail_next`]); on a real
    /// cluster the operator's own client does (see [`super::faults`]).
    pub fn fail_operator_requests(&self, verb: &str, resource: &str, status: u16, count: usize) {
        match &self.fake {
            Some(fake) => fake.fail_next(verb, resource, status, count),
            None => self.operator_faults.fail_next(verb, resource, status, count),
        }
    }

    /// Whether the kubelet and ingress controller are the stand-ins of the test support.
    pub fn has_stand_ins(&self) -> bool {
        self.stand_ins
    }

    /// Count `slug` as a tenant of this environment's scenario (its operator sees no others on a
    /// real cluster): before the tenant is created.
    pub fn own_slug(&self, slug: &str) {
        self.scope.own(slug);
    }

    /// `<prefix>-<random>`: a DNS-1123 label of at most 40 characters (a valid tenant slug),
    /// counted as one of this environment's tenants.
    pub fn unique_slug(&self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let suffix: String = (0..6).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect();
        let mut p: String = prefix.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        p.truncate(40 - suffix.len() - 1);
        let p = p.trim_matches('-');
        let slug = if p.is_empty() { format!("t{suffix}") } else { format!("{p}-{suffix}") };
        self.own_slug(&slug);
        slug
    }

    /// Remember an object this test created, so that cleanup deletes it.
    pub fn track<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        self.created.lock().unwrap().push(Tracked {
            ar: ApiResource::erase::<K>(&()),
            namespace: obj.meta().namespace.clone(),
            name: obj.meta().name.clone().expect("tracked objects have a name"),
        });
    }

    /// Remember a dynamic object this test created, so that cleanup deletes it.
    pub fn track_dynamic(&self, obj: &DynamicObject, ar: &ApiResource) {
        self.created.lock().unwrap().push(Tracked {
            ar: ar.clone(),
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone().expect("tracked objects have a name"),
        });
    }

    /// Create an object (namespaced when its `metadata.namespace` is set) and track it for
    /// cleanup.
    pub async fn create<K>(&self, obj: &K) -> Result<K, kube::Error>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Serialize,
    {
        let ar = ApiResource::erase::<K>(&());
        let api: Api<DynamicObject> = match obj.meta().namespace.as_deref() {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let mut value = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
        value["apiVersion"] = Value::String(ar.api_version.clone());
        value["kind"] = Value::String(ar.kind.clone());
        let dynamic: DynamicObject = serde_json::from_value(value).map_err(kube::Error::SerdeError)?;
        let created = api.create(&PostParams::default(), &dynamic).await?;
        self.track_dynamic(&created, &ar);
        let typed = serde_json::to_value(&created).and_then(serde_json::from_value).map_err(kube::Error::SerdeError)?;
        Ok(typed)
    }

    /// Delete every tracked object (newest first) and wait a little for them to go.
    pub async fn cleanup(&self) {
        let tracked: Vec<Tracked> = std::mem::take(&mut *self.created.lock().unwrap());
        cleanup_with(&self.client, tracked).await;
    }
}

async fn cleanup_with(client: &Client, tracked: Vec<Tracked>) {
    for t in tracked.iter().rev() {
        let api: Api<DynamicObject> = match &t.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &t.ar),
            None => Api::all_with(client.clone(), &t.ar),
        };
        let _ = api.delete(&t.name, &DeleteParams::background()).await;
    }
    for t in tracked.iter().rev() {
        let api: Api<DynamicObject> = match &t.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &t.ar),
            None => Api::all_with(client.clone(), &t.ar),
        };
        let mut gone = false;
        for _ in 0..100 {
            if matches!(api.get_opt(&t.name).await, Ok(None)) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !gone {
            eprintln!("cleanup: {} {} still present (finalizers?); left in place", t.ar.kind, t.name);
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let tracked: Vec<Tracked> = std::mem::take(&mut *self.created.lock().unwrap());
        let Some(path) = self.kubeconfig.clone() else {
            return;
        };
        if tracked.is_empty() {
            return;
        }
        // async cleanup from Drop (also when a test panicked): a fresh runtime on another thread
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = client_from_kubeconfig(&path).await;
                cleanup_with(&client, tracked).await;
            });
        })
        .join();
    }
}

/// A client of the kubeconfig's user impersonating `user` (its groups added by the API server),
/// seeing only the tenants of `scope` and recording its requests in the log when they are given.
async fn impersonating_client_in_scope(path: &PathBuf, user: &str, scope: Option<(&TenantScope, &RequestLog, &ClientFaults)>) -> Client {
    let kc = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: cannot read kubeconfig: {e}", path.display()));
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{KUBECONFIG_ENV}={}: bad kubeconfig: {e}", path.display()));
    cfg.auth_info.impersonate = Some(user.to_string());
    let builder = kube::client::ClientBuilder::try_from(cfg).expect("impersonating client from kubeconfig");
    match scope {
        Some((scope, log, faults)) => builder.with_layer(&scope.layer(log, faults)).build(),
        None => builder.build(),
    }
}

/// Server-side apply every object of a multi-document YAML of namespaces, ServiceAccounts and
/// RBAC objects (the kinds `deploy/` gives the operator its identity with).
pub async fn apply_manifests(client: &Client, yaml: &str) -> Result<(), String> {
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let obj: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
        if obj.is_null() {
            continue;
        }
        let api_version = obj["apiVersion"].as_str().ok_or("an object without apiVersion")?;
        let kind = obj["kind"].as_str().ok_or("an object without kind")?;
        let name = obj["metadata"]["name"].as_str().ok_or("an object without metadata.name")?;
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let lower = kind.to_lowercase();
        let plural = match lower.strip_suffix('y') {
            Some(stem) => format!("{stem}ies"),
            None => format!("{lower}s"),
        };
        let ar = ApiResource::from_gvk_with_plural(&gvk, &plural);
        let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj))
            .await
            .map_err(|e| format!("{kind} {name}: {e}"))?;
    }
    Ok(())
}

/// Server-side apply `crds/*.yaml` and wait until each CRD is Established.
pub async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("crds/ directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let yaml = std::fs::read_to_string(&f).unwrap();
        let crd: Value = serde_yaml::from_str(&yaml).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("installing {}: {e}", f.display()));
        names.push(name);
    }
    for name in names {
        wait_established(client, &name).await;
    }
}

/// Wait until the CRD `name` is Established and its group is in the API discovery (which
/// the operator reads at start).
pub async fn wait_established(client: &Client, name: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for _ in 0..600 {
        if let Ok(c) = crds.get(name).await {
            let established =
                c.status.and_then(|s| s.conditions).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established && served(client, &c.spec.group, &c.spec.names.kind).await {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("CRD {name} did not become Established and served within a minute");
}

/// Whether API discovery lists `kind` in `group`.
pub async fn served(client: &Client, group: &str, kind: &str) -> bool {
    kube::discovery::Discovery::new(client.clone())
        .filter(&[group])
        .run()
        .await
        .is_ok_and(|d| d.groups().any(|g| g.recommended_resources().iter().any(|(ar, _)| ar.kind == kind)))
}

/// Convenience for scenario code: the object's name (panics on unnamed objects).
pub fn name_of<K: ResourceExt>(k: &K) -> String {
    k.name_any()
}
