//! Stand-ins for what a bare control plane lacks, acting through the API as an administrator
//! would (never by writing storage): a **kubelet** that reports the Pods of StatefulSets
//! running and ready, an **ingress controller** that publishes an address for every Ingress,
//! the status a **CloudNativePG** operator would write on its `Cluster`s, and a **gateway
//! controller** that accepts (or refuses) HTTPRoutes as their Gateway's listeners say.
//!
//! The kubelet and ingress controller stand-ins run for the life of the test binary next to the
//! local control plane ([`super::control_plane`]); a scenario that needs Ingresses without an
//! address says so with [`IngressControllerStandIn::leave_alone`]. On the fake, its own
//! simulations play these parts.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Pod, networking::v1::Ingress};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

/// The label that links a tenant's objects to it.
const TENANT_LABEL: &str = "tenancy.platform.dev/tenant";
/// The address the ingress controller stand-in publishes (TEST-NET-1, RFC 5737).
pub const INGRESS_ADDRESS: &str = "192.0.2.10";

/// Run the kubelet and ingress controller stand-ins against the cluster of `kubeconfig` until
/// the process ends (on the calling thread, which this blocks).
pub fn run_forever(kubeconfig: &Path) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return eprintln!("stand-ins: no runtime: {e}"),
    };
    runtime.block_on(async {
        let client = match admin_client(kubeconfig).await {
            Ok(client) => client,
            Err(e) => return eprintln!("stand-ins: {e}"),
        };
        futures::join!(KubeletStandIn::run(client.clone()), IngressControllerStandIn::run(client));
    });
}

async fn admin_client(kubeconfig: &Path) -> Result<Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.map_err(|e| e.to_string())?;
    Client::try_from(cfg).map_err(|e| e.to_string())
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Warn about a status write that failed for another reason than the object going away.
fn report(what: &str, result: Result<impl Sized, kube::Error>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(e) => tracing::warn!("{what}: {e}"),
    }
}

/// A kubelet that "starts" the Pods of StatefulSets: phase `Running`, condition `Ready`; the
/// real StatefulSet controller then counts them in `readyReplicas`. Like the fake, it starts
/// them only when told, so that a scenario sees its database not ready first: in the namespaces
/// given to [`Self::start_pods_in`] (from then on), or everywhere after [`Self::start_every_pod`].
pub struct KubeletStandIn;

static STARTING_IN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static STARTING_EVERYWHERE: AtomicBool = AtomicBool::new(false);

impl KubeletStandIn {
    /// Start the Pods of StatefulSets in `namespace`, now and whenever one is created.
    pub async fn start_pods_in(client: &Client, namespace: &str) {
        if let Ok(mut namespaces) = STARTING_IN.lock() {
            namespaces.insert(namespace.to_string());
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        for pod in pods.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            if Self::should_start(&pod) {
                report(
                    "kubelet stand-in",
                    pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(Self::running(&pod))).await,
                );
            }
        }
    }

    /// Start every Pod of a StatefulSet from now on, as a cluster's kubelets do.
    pub fn start_every_pod() {
        STARTING_EVERYWHERE.store(true, Ordering::SeqCst);
    }

    async fn run(client: Client) {
        let pods: Api<Pod> = Api::all(client.clone());
        let mut events = watcher(pods, watcher::Config::default()).default_backoff().applied_objects().boxed();
        loop {
            match events.try_next().await {
                Ok(Some(pod)) if Self::should_start(&pod) => {
                    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                    report(
                        "kubelet stand-in",
                        api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(Self::running(&pod))).await,
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => tracing::debug!("kubelet stand-in watch: {e}"),
            }
        }
    }

    fn should_start(pod: &Pod) -> bool {
        let told = STARTING_EVERYWHERE.load(Ordering::SeqCst)
            || pod.namespace().is_some_and(|ns| STARTING_IN.lock().is_ok_and(|namespaces| namespaces.contains(&ns)));
        let of_statefulset = pod.owner_references().iter().any(|o| o.kind == "StatefulSet");
        let ready = pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running") && s.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
        });
        told && of_statefulset && !ready && pod.metadata.deletion_timestamp.is_none()
    }

    /// The status a kubelet writes once every container of the Pod runs and is ready.
    fn running(pod: &Pod) -> Value {
        let now = now();
        let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
        let containers: Vec<Value> = pod
            .spec
            .iter()
            .flat_map(|spec| &spec.containers)
            .map(|c| {
                json!({"name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": now}}})
            })
            .collect();
        json!({"status": {
            "phase": "Running",
            "startTime": now,
            "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
            "containerStatuses": containers,
        }})
    }
}

/// An ingress controller that publishes [`INGRESS_ADDRESS`] for every Ingress, except those of
/// the tenants a scenario asked it to leave alone.
pub struct IngressControllerStandIn;

static LEFT_ALONE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

impl IngressControllerStandIn {
    /// Publish no address for the Ingresses of tenant `slug` (as a cluster whose ingress
    /// controller is down): call it before creating the tenant.
    pub fn leave_alone(slug: &str) {
        if let Ok(mut left) = LEFT_ALONE.lock() {
            left.insert(slug.to_string());
        }
    }

    async fn run(client: Client) {
        let ingresses: Api<Ingress> = Api::all(client.clone());
        let mut events = watcher(ingresses, watcher::Config::default()).default_backoff().applied_objects().boxed();
        loop {
            match events.try_next().await {
                Ok(Some(ingress)) if Self::should_publish(&ingress) => {
                    let api: Api<Ingress> = Api::namespaced(client.clone(), &ingress.namespace().unwrap_or_default());
                    let address = json!({"status": {"loadBalancer": {"ingress": [{"ip": INGRESS_ADDRESS}]}}});
                    report(
                        "ingress controller stand-in",
                        api.patch_status(&ingress.name_any(), &PatchParams::default(), &Patch::Merge(address)).await,
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => tracing::debug!("ingress controller stand-in watch: {e}"),
            }
        }
    }

    fn should_publish(ingress: &Ingress) -> bool {
        let published = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|i| !i.is_empty());
        let left_alone = ingress.labels().get(TENANT_LABEL).is_some_and(|slug| LEFT_ALONE.lock().is_ok_and(|left| left.contains(slug)));
        !published && !left_alone && ingress.metadata.deletion_timestamp.is_none()
    }
}

/// What the CloudNativePG operator would do for the scenarios: its `Cluster` CRD (the minimal one
/// of `tests/data`) and the status it writes once a cluster's instances run.
pub struct CloudNativePgStandIn;

/// Scenarios that depend on whether the CloudNativePG CRD is installed hold this for their whole
/// run on a shared cluster: whether a CRD exists is cluster-wide, and the operator reads it at start.
/// So do the other scenarios of a binary that changes it ([`CloudNativePgStandIn::hold_crd_steady`]):
/// an operator that found the CRD at start waits for a cache of `Cluster`s before its first
/// reconcile, and never gets one if the CRD is removed in between (seen: a Tenant without status
/// for three minutes).
pub static CNPG_CRD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CNPG_CRD_NAME: &str = "clusters.postgresql.cnpg.io";

impl CloudNativePgStandIn {
    pub fn cluster_resource() -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"), "clusters")
    }

    /// Install the CRD (server-side apply) and wait until it is served.
    pub async fn install_crd(client: &Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd: Value = serde_yaml::from_str(super::CNPG_CLUSTER_CRD).expect("tests/data/cnpg-cluster-crd.yaml");
        crds.patch(CNPG_CRD_NAME, &PatchParams::apply("e2e-cnpg-stand-in").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("installing the CloudNativePG CRD: {e}"));
        super::e2e::wait_established(client, CNPG_CRD_NAME).await;
    }

    /// Remove the CRD (and with it every `Cluster`) and wait until it is gone.
    pub async fn remove_crd(client: &Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let _ = crds.delete(CNPG_CRD_NAME, &DeleteParams::default()).await;
        for _ in 0..600 {
            let gone = matches!(crds.get_opt(CNPG_CRD_NAME).await, Ok(None));
            if gone && !super::e2e::served(client, "postgresql.cnpg.io", "Cluster").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the CloudNativePG CRD was not deleted within a minute");
    }

    /// On the local control plane, keep the CRD as it is (present or absent) while the guard
    /// lives; `None` elsewhere (nothing changes it there).
    pub async fn hold_crd_steady() -> Option<tokio::sync::MutexGuard<'static, ()>> {
        match super::e2e::Target::from_env() {
            super::e2e::Target::LocalControlPlane => Some(CNPG_CRD_LOCK.lock().await),
            _ => None,
        }
    }

    /// Report the password of the managed role `role` applied from the current version of its
    /// `passwordSecret`, as CloudNativePG does once it has run `ALTER ROLE` with it.
    pub async fn report_password_applied(client: &Client, namespace: &str, name: &str, role: &str) {
        let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &Self::cluster_resource());
        let cluster = clusters.get(name).await.unwrap_or_else(|e| panic!("CloudNativePG stand-in: read {namespace}/{name}: {e}"));
        let secret_name = cluster.data["spec"]["managed"]["roles"]
            .as_array()
            .and_then(|roles| roles.iter().find(|r| r["name"] == role))
            .and_then(|r| r["passwordSecret"]["name"].as_str())
            .unwrap_or_else(|| panic!("CloudNativePG stand-in: {namespace}/{name} manages no role {role} with a passwordSecret"))
            .to_string();
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
        let version = secrets.get(&secret_name).await.ok().and_then(|s| s.metadata.resource_version).unwrap_or_default();
        let status =
            json!({"status": {"managedRolesStatus": {"passwordStatus": {role: {"transactionID": 1, "resourceVersion": version}}}}});
        clusters
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap_or_else(|e| panic!("CloudNativePG stand-in: report {namespace}/{name}'s password applied: {e}"));
    }

    /// Report the `Cluster` healthy, as CloudNativePG does once its instances run.
    pub async fn report_ready(client: &Client, namespace: &str, name: &str) {
        let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &Self::cluster_resource());
        let instances = clusters.get(name).await.ok().and_then(|c| c.data["spec"]["instances"].as_i64()).unwrap_or(1);
        let status = json!({"status": {"instances": instances, "readyInstances": instances, "phase": "Cluster in healthy state"}});
        clusters
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap_or_else(|e| panic!("CloudNativePG stand-in: report {namespace}/{name} ready: {e}"));
    }
}

/// A gateway controller for one Gateway, on the fake and on the local control plane alike (a
/// Gateway API implementation is not part of either): it writes the `status.parents` entry of
/// every HTTPRoute of the tenants it serves that is attached to its Gateway, as a conformant
/// controller does — `Accepted=False` (`NoMatchingParent`) when the Gateway or the listener
/// does not exist, `Accepted=False` (`NotAllowedByListeners`) when the listener's
/// `allowedRoutes` does not admit the route's namespace, else `Accepted=True`; `ResolvedRefs`
/// is always True (the applications' Services are the platform's, not the scenarios'); both
/// at the route's generation. It polls (every 200 ms) rather than watches, so that switching it
/// on also settles the routes created while it was off. Dropped, it stops.
pub struct GatewayControllerStandIn {
    on: std::sync::Arc<AtomicBool>,
    serving: std::sync::Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The `controllerName` the stand-in reports.
pub const GATEWAY_CONTROLLER: &str = "tenancy.platform.dev/gateway-stand-in";

impl GatewayControllerStandIn {
    /// Serve the Gateway `namespace/name`, switched on.
    pub fn start(client: Client, namespace: &str, name: &str) -> Self {
        let on = std::sync::Arc::new(AtomicBool::new(true));
        let serving = std::sync::Arc::new(Mutex::new(BTreeSet::new()));
        let (flag, slugs, gateway) = (on.clone(), serving.clone(), (namespace.to_string(), name.to_string()));
        let task = tokio::spawn(async move {
            loop {
                if flag.load(Ordering::SeqCst) {
                    let slugs = slugs.lock().map(|s| s.clone()).unwrap_or_default();
                    Self::settle(&client, &gateway, &slugs).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { on, serving, task }
    }

    /// Report on the routes of tenant `slug` (on a shared cluster other scenarios' routes are
    /// not this stand-in's).
    pub fn serve(&self, slug: &str) {
        if let Ok(mut serving) = self.serving.lock() {
            serving.insert(slug.to_string());
        }
    }

    /// Switch it off (a gateway controller that is down: routes keep the status they have) or on.
    pub fn switch(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    pub fn resource() -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"), "httproutes")
    }

    async fn settle(client: &Client, gateway: &(String, String), slugs: &BTreeSet<String>) {
        let routes: Api<DynamicObject> = Api::all_with(client.clone(), &Self::resource());
        let Ok(list) = routes.list(&kube::api::ListParams::default().labels(TENANT_LABEL)).await else { return };
        let gateways: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &gateway.0,
            &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"), "gateways"),
        );
        let the_gateway = gateways.get_opt(&gateway.1).await.ok().flatten();
        for route in list.items {
            let slug = route.labels().get(TENANT_LABEL).cloned().unwrap_or_default();
            if !slugs.contains(&slug) || route.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let namespace = route.namespace().unwrap_or_default();
            let labels = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                .get_opt(&namespace)
                .await
                .ok()
                .flatten()
                .map(|ns| ns.labels().clone())
                .unwrap_or_default();
            let generation = route.metadata.generation.unwrap_or_default();
            let mut parents = Vec::new();
            for parent in route.data["spec"]["parentRefs"].as_array().into_iter().flatten() {
                let parent_namespace = parent["namespace"].as_str().unwrap_or(&namespace);
                if parent["name"].as_str() != Some(gateway.1.as_str()) || parent_namespace != gateway.0 {
                    continue;
                }
                let (accepted, reason) = Self::verdict(the_gateway.as_ref(), parent["sectionName"].as_str(), &labels);
                let condition = |type_: &str, status: bool, reason: &str, message: &str| {
                    json!({"type": type_, "status": if status { "True" } else { "False" }, "reason": reason, "message": message,
                           "observedGeneration": generation, "lastTransitionTime": now()})
                };
                parents.push(json!({"parentRef": parent, "controllerName": GATEWAY_CONTROLLER, "conditions": [
                    condition("Accepted", accepted, reason, if accepted { "accepted by the stand-in" } else { "refused by the stand-in" }),
                    condition("ResolvedRefs", true, "ResolvedRefs", "every backend resolved"),
                ]}));
            }
            let current = &route.data["status"]["parents"];
            let same = |a: &Value, b: &Value| {
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    for p in v.as_array_mut().into_iter().flatten() {
                        for c in p["conditions"].as_array_mut().into_iter().flatten() {
                            c["lastTransitionTime"] = Value::Null;
                        }
                    }
                    v
                };
                strip(a) == strip(b)
            };
            if same(current, &Value::Array(parents.clone())) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &Self::resource());
            let status = json!({"status": {"parents": parents}});
            report(
                "gateway controller stand-in",
                api.patch_status(&route.name_any(), &PatchParams::default(), &Patch::Merge(status)).await,
            );
        }
    }

    /// Whether the Gateway's listener (`section`, or any) admits a route from a namespace with
    /// these labels: `allowedRoutes.namespaces.from` All, Same (never, for a tenant namespace) or
    /// Selector (`matchLabels` and `matchExpressions` with Exists/In).
    fn verdict(
        gateway: Option<&DynamicObject>,
        section: Option<&str>,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> (bool, &'static str) {
        let Some(gateway) = gateway else { return (false, "NoMatchingParent") };
        let listeners = gateway.data["spec"]["listeners"].as_array().cloned().unwrap_or_default();
        let candidates: Vec<&Value> = listeners.iter().filter(|l| section.is_none_or(|s| l["name"].as_str() == Some(s))).collect();
        if candidates.is_empty() {
            return (false, "NoMatchingParent");
        }
        let admits = |listener: &Value| {
            let namespaces = &listener["allowedRoutes"]["namespaces"];
            match namespaces["from"].as_str().unwrap_or("Same") {
                "All" => true,
                "Selector" => {
                    let selector = &namespaces["selector"];
                    let by_labels = selector["matchLabels"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
                    let by_expressions = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
                        let key = e["key"].as_str().unwrap_or_default();
                        match e["operator"].as_str() {
                            Some("Exists") => labels.contains_key(key),
                            Some("In") => {
                                labels.get(key).is_some_and(|v| e["values"].as_array().into_iter().flatten().any(|x| x.as_str() == Some(v)))
                            }
                            _ => false,
                        }
                    });
                    by_labels && by_expressions
                }
                _ => false,
            }
        };
        if candidates.into_iter().any(admits) {
            (true, "Accepted")
        } else {
            (false, "NotAllowedByListeners")
        }
    }
}

impl Drop for GatewayControllerStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}
