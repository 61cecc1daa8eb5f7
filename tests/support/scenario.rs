//! Operator scenarios: the real controllers, in-process, as the operator's ServiceAccount
//! (`deploy/` RBAC), against the test environment (the fake
//! API server, or a real cluster when `TENANT_OPERATOR_E2E_KUBECONFIG` is set).

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Namespace, Pod},
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    Api, Client, Resource, ResourceExt,
};
use rand::distr::{Alphanumeric, SampleString};
use serde::de::DeserializeOwned;
use serde_json::json;
use tenant_operator::{
    config::Config,
    operator::{run_controllers, ControllerOptions},
    types::{Tenant, TenantUser},
};
use tokio::{sync::oneshot, task::JoinHandle};

use super::{e2e::TestEnv, fixtures::example_config, stand_ins::KubeletStandIn};
use fake_apiserver::FakeApiServer;

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

pub struct Scenario {
    env: TestEnv,
    config: Mutex<Arc<Config>>,
    operator: Mutex<Option<Running>>,
    tenants: Mutex<Vec<String>>,
    /// (namespace, name) of the TenantUsers the scenario created.
    users: Mutex<Vec<(String, String)>>,
    timeout: Duration,
    metrics: tenant_operator::metrics::Metrics,
}

impl Scenario {
    /// Test environment plus a running operator.
    pub async fn start() -> Self {
        Self::start_with(example_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_on(TestEnv::new().await, config).await
    }

    /// Run on a given environment (e.g. a fake with extra CRDs).
    pub async fn start_on(env: TestEnv, config: Config) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let timeout = if env.fake().is_some() { Duration::from_secs(30) } else { Duration::from_secs(180) };
        let scenario = Self {
            env,
            config: Mutex::new(Arc::new(config)),
            operator: Mutex::new(None),
            tenants: Mutex::default(),
            users: Mutex::default(),
            timeout,
            metrics: tenant_operator::metrics::Metrics::new(),
        };
        scenario.start_operator();
        scenario
    }

    /// A client acting as the operator's ServiceAccount (what the operator under test uses):
    /// for asking what that identity may do.
    pub fn operator_client(&self) -> Client {
        self.env.operator_client()
    }

    /// The administrator's client (the operator runs as its ServiceAccount).
    pub fn client(&self) -> Client {
        self.env.client()
    }

    /// The operator's metrics registry (what `/metrics` serves).
    pub fn metrics(&self) -> &tenant_operator::metrics::Metrics {
        &self.metrics
    }

    /// Fail the operator's next `count` requests of `verb` on `resource` with `status`, on the
    /// fake and on a real cluster (see [`TestEnv::fail_operator_requests`]).
    pub fn fail_operator_requests(&self, verb: &str, resource: &str, status: u16, count: usize) {
        self.env.fail_operator_requests(verb, resource, status, count);
    }

    pub fn fake(&self) -> Option<&FakeApiServer> {
        self.env.fake()
    }

    /// A slug no other run uses (≤ 40 characters), counted as one of this scenario's tenants
    /// (on a real cluster its operator sees no others).
    pub fn slug(&self, prefix: &str) -> String {
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 5).to_lowercase();
        let prefix: String = prefix.chars().take(33).collect();
        let slug = format!("{prefix}-{suffix}");
        self.env.own_slug(&slug);
        slug
    }

    pub fn start_operator(&self) {
        let (stop, stopped) = oneshot::channel();
        let options = ControllerOptions { concurrency: 16, metrics: self.metrics.clone(), ..ControllerOptions::default() };
        let config = self.config.lock().map(|c| c.clone()).unwrap_or_else(|e| e.into_inner().clone());
        let task = tokio::spawn(run_controllers(self.env.operator_client(), config, options, async move {
            let _ = stopped.await;
        }));
        if let Ok(mut operator) = self.operator.lock() {
            *operator = Some(Running { stop, task });
        }
    }

    /// Stop the operator and start it again with another configuration.
    pub async fn restart_operator_with(&self, config: Config) {
        self.stop_operator().await;
        if let Ok(mut current) = self.config.lock() {
            *current = Arc::new(config);
        }
        self.start_operator();
    }

    /// Stop the operator, letting in-flight reconciles finish.
    pub async fn stop_operator(&self) {
        let running = self.operator.lock().ok().and_then(|mut o| o.take());
        if let Some(running) = running {
            let _ = running.stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), running.task).await;
        }
    }

    /// Restart the operator once the watches have settled and return the requests it made in
    /// the following seconds: a full resync (the fake's records, or on a real cluster those of
    /// the operator's client).
    pub async fn requests_of_a_restart(&self) -> Option<fake_apiserver::RequestCounts> {
        let counts = || match self.fake() {
            Some(fake) => fake.request_counts(),
            None => self.env.operator_request_log().counts(),
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop_operator().await;
        let before = counts();
        self.start_operator();
        tokio::time::sleep(Duration::from_secs(3)).await;
        Some(counts().since(&before))
    }

    /// Every request recorded so far, oldest first: the fake's (of everyone), or on a real
    /// cluster those of the operator's client.
    pub fn requests(&self) -> Vec<fake_apiserver::RequestRecord> {
        match self.fake() {
            Some(fake) => fake.requests(),
            None => self.env.operator_request_log().records(),
        }
    }

    pub async fn create_tenant(&self, tenant: &Tenant) {
        self.create_tenant_ref(tenant.clone()).await;
    }

    pub async fn create_tenant_ref(&self, tenant: Tenant) {
        let name = tenant.name_any();
        // Also a name the scenario derived from one of its slugs.
        self.env.own_slug(&name);
        Api::<Tenant>::all(self.client())
            .create(&PostParams::default(), &tenant)
            .await
            .unwrap_or_else(|e| panic!("create Tenant {name}: {e}"));
        self.tenants.lock().unwrap().push(name);
    }

    /// Create a TenantUser in its namespace (as the administrator). The account namespace's
    /// quota counts TenantUsers; on a real cluster the API server refuses them ("status unknown
    /// for quota") until the quota controller has counted a new quota, so that is retried, as
    /// GitOps tools do.
    pub async fn create_user(&self, user: &TenantUser) {
        let (namespace, name) = (user.namespace().unwrap_or_default(), user.name_any());
        let api = Api::<TenantUser>::namespaced(self.client(), &namespace);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match api.create(&PostParams::default(), user).await {
                Ok(_) => break,
                Err(kube::Error::Api(status))
                    if status.message.contains("status unknown for quota") && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("create TenantUser {namespace}/{name}: {e}"),
            }
        }
        self.users.lock().unwrap().push((namespace, name));
    }

    /// Create any object (as the administrator) and have it deleted at cleanup on a real
    /// cluster.
    pub async fn create<K>(&self, obj: &K) -> Result<K, kube::Error>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + serde::Serialize,
    {
        self.env.create(obj).await
    }

    /// A client acting as the person `user` (RBAC user name, e.g. an email address).
    pub async fn client_as_person(&self, user: &str) -> Client {
        self.env.client_as_person(user).await
    }

    /// Merge-patch a Tenant's spec.
    pub async fn patch_spec(&self, slug: &str, spec: serde_json::Value) {
        Api::<Tenant>::all(self.client())
            .patch(slug, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec })))
            .await
            .unwrap_or_else(|e| panic!("patch Tenant {slug}: {e}"));
    }

    pub async fn delete_tenant(&self, slug: &str) {
        Api::<Tenant>::all(self.client())
            .delete(slug, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete Tenant {slug}: {e}"));
    }

    /// Poll until `check` holds, or fail the test with `what`.
    pub async fn wait_for<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while !check().await {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the Tenant satisfies `check`; returns it.
    pub async fn wait_tenant(&self, slug: &str, check: impl Fn(&Tenant) -> bool) -> Tenant {
        self.wait_object(Api::<Tenant>::all(self.client()), slug, check).await
    }

    /// Wait until the TenantUser `name` of tenant `slug` (in its account namespace) satisfies
    /// `check`; returns it.
    pub async fn wait_user(&self, slug: &str, name: &str, check: impl Fn(&TenantUser) -> bool) -> TenantUser {
        self.wait_object(Api::<TenantUser>::namespaced(self.client(), &super::fixtures::account(slug)), name, check).await
    }

    pub async fn wait_object<K>(&self, api: Api<K>, name: &str, check: impl Fn(&K) -> bool) -> K
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut last = None;
        loop {
            if let Ok(Some(object)) = api.get_opt(name).await {
                if check(&object) {
                    return object;
                }
                last = Some(object);
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {} {name}; last seen: {last:#?}", K::kind(&()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_tenant_gone(&self, slug: &str) {
        self.wait_gone(Api::<Tenant>::all(self.client()), slug).await;
    }

    pub async fn wait_gone<K>(&self, api: Api<K>, name: &str)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.wait_for(&format!("{} {name} to be gone", K::kind(&())), || async { matches!(api.get_opt(name).await, Ok(None)) }).await;
    }

    /// Wait until every database StatefulSet of the tenant has its pod (a pod refused by quota
    /// admission is a `FailedCreate` Event and this times out) and is ready. On the fake, which
    /// has no kubelet, the helper plays it: it reports the pod running and the StatefulSet
    /// ready. On the local control plane the kubelet stand-in starts the pod and the real
    /// StatefulSet controller reports it; on another cluster it waits for its kubelet.
    pub async fn mark_statefulsets_ready(&self, slug: &str) {
        let list = ListParams::default().labels(&format!("tenancy.platform.dev/tenant={slug}"));
        let api: Api<StatefulSet> = Api::all(self.client());
        let environments = Api::<Tenant>::all(self.client()).get(slug).await.map(|t| t.spec.environments.len()).unwrap_or(1);
        self.wait_for("the database StatefulSets", || async { api.list(&list).await.is_ok_and(|l| l.items.len() >= environments) }).await;
        for sts in api.list(&list).await.map(|l| l.items).unwrap_or_default() {
            let ns = sts.namespace().unwrap_or_default();
            let name = sts.name_any();
            let pod = format!("{name}-0");
            let pods: Api<Pod> = Api::namespaced(self.client(), &ns);
            self.wait_for(&format!("pod {ns}/{pod} (refused? see the FailedCreate Events of its StatefulSet)"), || async {
                pods.get_opt(&pod).await.is_ok_and(|p| p.is_some())
            })
            .await;
            let statefulsets = Api::<StatefulSet>::namespaced(self.client(), &ns);
            if self.env.has_stand_ins() {
                KubeletStandIn::start_pods_in(&self.client(), &ns).await;
            } else if self.fake().is_some() {
                let running = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
                pods.patch_status(&pod, &PatchParams::default(), &Patch::Merge(running))
                    .await
                    .unwrap_or_else(|e| panic!("mark pod {ns}/{pod} running: {e}"));
                let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
                statefulsets
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .unwrap_or_else(|e| panic!("mark StatefulSet {ns}/{name} ready: {e}"));
            }
            self.wait_for(&format!("StatefulSet {ns}/{name} to be ready"), || async {
                statefulsets.get(&name).await.is_ok_and(|s| s.status.and_then(|st| st.ready_replicas).unwrap_or(0) >= 1)
            })
            .await;
        }
    }

    /// Delete the namespaces labelled with a tenant (retained data included).
    pub async fn delete_namespaces_of(&self, slug: &str) {
        let api: Api<Namespace> = Api::all(self.client());
        let list = ListParams::default().labels(&format!("tenancy.platform.dev/tenant={slug}"));
        for ns in api.list(&list).await.map(|l| l.items).unwrap_or_default() {
            let _ = api.delete(&ns.name_any(), &DeleteParams::default()).await;
        }
    }

    /// Let a Tenant go without its operator: stop the operator, delete the Tenant and remove its
    /// finalizers as an administrator. Only for a Tenant whose finalizer cannot finish and that
    /// left nothing behind outside the cluster (e.g. its database server was never reachable).
    pub async fn abandon_tenant(&self, slug: &str) {
        self.stop_operator().await;
        let api = Api::<Tenant>::all(self.client());
        let _ = api.delete(slug, &DeleteParams::default()).await;
        let _ = api.patch(slug, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
        self.wait_gone(api, slug).await;
    }

    /// Remove what the scenario created: users, then tenants with `deletionPolicy: Delete` so
    /// their namespaces go too, then stop the operator.
    pub async fn cleanup(&self) {
        let users: Vec<(String, String)> = self.users.lock().map(|u| u.clone()).unwrap_or_default();
        for (namespace, user) in users {
            let _ = Api::<TenantUser>::namespaced(self.client(), &namespace).delete(&user, &DeleteParams::default()).await;
        }
        let tenants: Vec<String> = self.tenants.lock().map(|t| t.clone()).unwrap_or_default();
        let api = Api::<Tenant>::all(self.client());
        for slug in &tenants {
            let _ = api
                .patch(slug, &PatchParams::default(), &Patch::Merge(json!({"spec": {"deletionPolicy": "Delete", "suspend": false}})))
                .await;
            let _ = api.delete(slug, &DeleteParams::default()).await;
        }
        if self.fake().is_none() {
            for slug in &tenants {
                self.wait_gone(Api::<Tenant>::all(self.client()), slug).await;
                self.delete_namespaces_of(slug).await;
            }
        }
        self.stop_operator().await;
    }
}
