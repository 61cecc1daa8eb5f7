//! Wiring: caches, the two controllers and their shared context, run until shutdown.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use futures::{future::Shared, FutureExt, StreamExt};
use kube::{
    api::Api,
    discovery::Discovery,
    runtime::{controller, reflector, reflector::ObjectRef, watcher, Controller, WatchStreamExt},
    Client, Resource, ResourceExt,
};

use tokio::sync::{mpsc, watch};

use crate::{
    config::Config,
    controller::{
        gateways::Gateways,
        tenant::{self, GuardedTenant, TenantCache},
        user::{self, GuardedUser, SelfService, UserIndex},
        Caches, Child, Context, ContextParts,
    },
    desired::ChildKind,
    http::Readiness,
    leader::LeaderElection,
    metrics::Metrics,
    naming::{self, LABEL_TENANT},
    types::TenantPhase,
};

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Reconciles running at once, per controller.
    pub concurrency: u16,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self { concurrency: 16, metrics: Metrics::new(), readiness: Readiness::new() }
    }
}

/// Whether the CloudNativePG `Cluster` kind is served; without it the `cloudnative-pg`
/// provider reports a clear reason instead of failing every reconcile.
async fn cnpg_installed(client: &Client) -> bool {
    match Discovery::new(client.clone()).filter(&["postgresql.cnpg.io"]).run().await {
        Ok(discovery) => discovery.groups().any(|group| group.recommended_resources().iter().any(|(ar, _)| ar.kind == "Cluster")),
        Err(error) => {
            tracing::warn!(%error, "API discovery failed; assuming CloudNativePG is not installed");
            false
        }
    }
}

/// Whether the Gateway API's `HTTPRoute` and `Gateway` kinds are served (its CRDs installed);
/// without them a `routing: gateway` region reports a clear reason instead of failing every
/// reconcile. Read at start, as for CloudNativePG: installing the CRDs later needs a restart.
async fn gateway_api_installed(client: &Client) -> bool {
    match Discovery::new(client.clone()).filter(&[crate::gateway::GROUP]).run().await {
        Ok(discovery) => {
            let kinds: HashSet<String> =
                discovery.groups().flat_map(|group| group.versioned_resources("v1")).map(|(resource, _)| resource.kind).collect();
            kinds.contains("HTTPRoute") && kinds.contains("Gateway")
        }
        Err(error) => {
            tracing::warn!(%error, "API discovery failed; assuming the Gateway API is not installed");
            false
        }
    }
}

fn tenant_of(object: &Child) -> Option<ObjectRef<GuardedTenant>> {
    object.label(LABEL_TENANT).map(ObjectRef::new)
}

/// What the Tenant and TenantUser caches leave out: who wrote which field (`managedFields`
/// is often larger than the rest of the object) and kubectl's copy of the last applied
/// manifest. Nothing the controllers read.
fn strip_bookkeeping<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The parts of a Tenant whose change needs a reconcile: its spec (generation), deletion and
/// finalizers, its identity and its credential rotation requests. A change of status alone (the operator's own status writes,
/// above all) does not.
fn tenant_change(tenant: &GuardedTenant) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let meta = tenant.meta();
    let mut hasher = DefaultHasher::new();
    (&meta.uid, meta.generation, meta.deletion_timestamp.is_some(), &meta.finalizers, tenant.0.is_ok()).hash(&mut hasher);
    // A credential rotation is requested by annotation, which does not change the generation.
    for (key, value) in meta.annotations.iter().flatten().filter(|(key, _)| key.starts_with(crate::database::rotation::REQUEST_PREFIX)) {
        (key, value).hash(&mut hasher);
    }
    hasher.finish()
}

/// The Tenants of a watch whose change needs a reconcile (see [`tenant_change`]). What each
/// Tenant looked like is remembered as one number per Tenant.
fn tenants_to_reconcile(
    events: impl futures::Stream<Item = Result<watcher::Event<GuardedTenant>, watcher::Error>> + Send + 'static,
) -> impl futures::Stream<Item = Result<GuardedTenant, watcher::Error>> + Send + 'static {
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let mut listed: Option<HashSet<u64>> = None;
    events.filter_map(move |event| {
        let key = |tenant: &GuardedTenant| crate::hash::hash_str(tenant.meta().name.as_deref().unwrap_or_default());
        let changed = match event {
            Ok(watcher::Event::Apply(tenant) | watcher::Event::InitApply(tenant)) => {
                let slot = key(&tenant);
                if let Some(listed) = listed.as_mut() {
                    listed.insert(slot);
                }
                let change = tenant_change(&tenant);
                (seen.insert(slot, change) != Some(change)).then_some(Ok(tenant))
            }
            Ok(watcher::Event::Delete(tenant)) => {
                seen.remove(&key(&tenant));
                None
            }
            Ok(watcher::Event::Init) => {
                listed = Some(HashSet::new());
                None
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(listed) = listed.take() {
                    seen.retain(|slot, _| listed.contains(slot));
                }
                None
            }
            Err(error) => Some(Err(error)),
        };
        futures::future::ready(changed)
    })
}

/// Run the Tenant and TenantUser controllers until `shutdown` completes; in-flight reconciles
/// finish first.
pub async fn run_controllers(
    client: Client,
    config: Arc<Config>,
    options: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown: Shared<_> = shutdown.boxed().shared();
    // Not Secrets: the operator may not list or watch Secrets (its Secret access is `get`,
    // `create` and `patch` in the namespaces it owns); it reads the credentials Secret by name
    // (see `Caches::fetched`).
    let mut kinds: Vec<ChildKind> = ChildKind::TENANT_CHILDREN
        .into_iter()
        .filter(|k| !matches!(k, ChildKind::CnpgCluster | ChildKind::HttpRoute | ChildKind::Secret))
        .collect();
    if cnpg_installed(&client).await {
        kinds.push(ChildKind::CnpgCluster);
    }
    let gateway_api = gateway_api_installed(&client).await;
    if gateway_api {
        kinds.push(ChildKind::HttpRoute);
    } else if config.clusters.values().any(|cluster| cluster.routing_gateway().is_some()) {
        tracing::warn!("a region routes through a Gateway, but the Gateway API (gateway.networking.k8s.io/v1) is not installed");
    }
    let (gateways, gateway_changes) = Gateways::start(&client, &config, gateway_api);
    kinds.push(ChildKind::Role);
    kinds.push(ChildKind::RoleBinding);
    kinds.push(ChildKind::ClusterRole);
    let (caches, mut streams) = Caches::start(&client, &kinds, &options.metrics);
    let controller_config = controller::Config::default().concurrency(options.concurrency).debounce(Duration::from_millis(200));

    let (tenant_trigger, triggered) = mpsc::unbounded_channel();
    let (tenant_store, tenant_writer) = reflector::store();
    let tenant_cache = TenantCache::default();
    let observing = tenant_cache.clone();
    let tenant_changes = watcher(Api::<GuardedTenant>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(strip_bookkeeping)
        .map(move |mut event| {
            if let Ok(event) = &mut event {
                observing.observe(event);
            }
            event
        })
        .reflect(tenant_writer);
    let mut tenants = Controller::for_stream(tenants_to_reconcile(tenant_changes), tenant_store)
        .with_config(controller_config.clone())
        .reconcile_on(futures::stream::unfold(triggered, |mut rx| async move { rx.recv().await.map(|tenant| (tenant, rx)) }));
    for kind in kinds.iter().copied().filter(|k| !matches!(k, ChildKind::Role | ChildKind::RoleBinding | ChildKind::ClusterRole)) {
        if let Some(stream) = streams.remove(&kind) {
            tenants = tenants.reconcile_on(stream.filter_map(|child| futures::future::ready(tenant_of(&child))));
        }
    }
    // A Gateway created or deleted re-reconciles the Tenants of the regions routed through it.
    let (store_for_gateways, config_for_gateways) = (tenants.store(), config.clone());
    tenants = tenants.reconcile_on(gateway_changes.flat_map(move |(namespace, name)| {
        let regions: HashSet<&String> = config_for_gateways
            .clusters
            .iter()
            .filter(|(_, cluster)| cluster.routing_gateway().is_some_and(|g| g.namespace == namespace && g.name == name))
            .map(|(region, _)| region)
            .collect();
        let concerned: Vec<ObjectRef<GuardedTenant>> = store_for_gateways
            .state()
            .iter()
            .filter_map(|guarded| guarded.0.as_ref().ok())
            .filter(|tenant| regions.contains(&tenant.spec.cluster))
            .map(|tenant| ObjectRef::new(&tenant.name_any()))
            .collect();
        futures::stream::iter(concerned)
    }));

    let (user_store, user_writer) = reflector::store();
    // The index is kept by the same watch as the store; a user's change re-queues the users
    // it concerns (a shared email or username), not its whole tenant.
    let user_index = UserIndex::default();
    let (user_trigger, user_triggered) = mpsc::unbounded_channel();
    let indexing = user_index.clone();
    let user_changes = watcher(Api::<GuardedUser>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(strip_bookkeeping)
        .map(move |event| {
            if let Ok(event) = &event {
                for concerned in indexing.observe(event) {
                    let _ = user_trigger.send(concerned);
                }
            }
            event
        })
        .reflect(user_writer)
        .applied_objects();
    let users_controller = Controller::for_stream(user_changes, user_store.clone()).with_config(controller_config);
    let (index_for_tenants, index_for_roles) = (user_index.clone(), user_index.clone());
    let mut users = users_controller
        // A tenant created, changed (environments) or deleted re-reconciles its users.
        .watches(Api::<GuardedTenant>::all(client.clone()), watcher::Config::default(), move |tenant| {
            index_for_tenants.in_namespace(&naming::account_namespace_name(&tenant.name_any()))
        })
        .reconcile_on(futures::stream::unfold(user_triggered, |mut rx| async move { rx.recv().await.map(|user| (user, rx)) }));
    for kind in [ChildKind::Role, ChildKind::RoleBinding] {
        if let Some(stream) = streams.remove(&kind) {
            // A RoleBinding of no user is the operator's own grant in a tenant namespace: its
            // Tenant restores it. (Users wait for a new grant; the Tenant's status written after
            // it re-reconciles them.)
            let grants = tenant_trigger.clone();
            users = users.reconcile_on(stream.filter_map(move |object| {
                let user = user::user_of_binding(&object);
                if user.is_none() && kind == ChildKind::RoleBinding {
                    if let Some(tenant) = tenant_of(&object) {
                        let _ = grants.send(tenant);
                    }
                }
                futures::future::ready(user)
            }));
        }
    }
    // The self-service policy verified or lost re-reconciles every user: their self-service
    // Roles follow at once.
    let (verdict, self_service) = watch::channel(SelfService::Unknown);
    let store_for_policy = user_store.clone();
    let policy_changes = futures::stream::unfold(self_service.clone(), |mut changes| async move {
        changes.changed().await.ok()?;
        Some(((), changes))
    })
    .flat_map(move |()| futures::stream::iter(user::all_users(&store_for_policy)));
    users = users.reconcile_on(policy_changes);
    let policy_watch = user::self_service::watch_policy(client.clone(), verdict, options.metrics.clone());
    // A ClusterRole becoming assignable (or ceasing to be) re-reconciles the users naming it.
    if let Some(stream) = streams.remove(&ChildKind::ClusterRole) {
        users = users.reconcile_on(stream.flat_map(move |role| futures::stream::iter(index_for_roles.naming_role(role.name()))));
    }
    let ctx = Arc::new(Context::new(ContextParts {
        client: client.clone(),
        config,
        caches,
        tenants: tenants.store(),
        users: user_store,
        user_index,
        tenant_cache,
        self_service,
        gateways,
        tenant_trigger,
        metrics: options.metrics.clone(),
    }));
    let gauges = report_gauges(ctx.clone(), options.readiness.clone());
    let sweeps = user::sweep_periodically(ctx.clone());
    let policies = crate::admission::report_policies(client.clone(), ctx.config.clone(), options.metrics.clone());

    let tenant_run = tenants.graceful_shutdown_on(shutdown.clone()).run(tenant::reconcile, tenant::error_policy, ctx.clone()).for_each(
        |result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "tenant reconcile did not complete");
            }
        },
    );
    let user_run =
        users.graceful_shutdown_on(shutdown).run(user::reconcile, user::error_policy, ctx.clone()).for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "tenant user reconcile did not complete");
            }
        });
    options.readiness.set_controllers_running(true);
    futures::select! {
        _ = futures::future::join(tenant_run, user_run).fuse() => {},
        _ = gauges.fuse() => {},
        _ = policy_watch.fuse() => {},
        _ = sweeps.fuse() => {},
        _ = policies.fuse() => {},
    }
    options.readiness.set_controllers_running(false);
}

/// Marks the caches synced once they are, then keeps the tenants-by-phase and
/// users-by-role gauges current.
async fn report_gauges(ctx: Arc<Context>, readiness: Readiness) {
    ctx.caches_ready().await;
    readiness.set_caches_synced(true);
    loop {
        let mut phases = BTreeMap::new();
        for tenant in ctx.tenants.state().iter().filter_map(|g| g.0.as_ref().ok()) {
            // Not reconciled yet counts as work in progress.
            let phase = tenant.status.as_ref().and_then(|s| s.phase).unwrap_or(TenantPhase::Provisioning);
            *phases.entry(phase.as_str().to_string()).or_insert(0) += 1;
        }
        ctx.metrics.set_tenants_by_phase(&phases);
        let mut roles = BTreeMap::new();
        for user in ctx.users.state().iter().filter_map(|g| g.0.as_ref().ok()) {
            let role = user.status.as_ref().and_then(|s| s.effective_role).map(|r| r.as_str()).unwrap_or("None");
            *roles.entry(role.to_string()).or_insert(0) += 1;
        }
        ctx.metrics.set_tenant_users_by_role(&roles);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stop_requested(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Run the controllers only while this replica holds the leader Lease, until `stop` turns
/// true; then release the Lease so a standby takes over at once. Losing the Lease aborts the
/// controllers immediately (another replica may already be writing) and waits to lead again.
pub async fn run_with_leader_election(
    client: Client,
    config: Arc<Config>,
    options: ControllerOptions,
    election: LeaderElection,
    stop: watch::Receiver<bool>,
) {
    let stopped = || stop_requested(stop.clone());
    let mut leader = election.subscribe();
    // A standby holds no caches and is ready as soon as it runs.
    options.readiness.set_caches_synced(true);
    loop {
        tokio::select! {
            _ = leader.wait_for(|is_leader| *is_leader) => {},
            _ = stopped() => break,
        }
        tracing::info!(identity = election.identity(), "leading: starting controllers");
        options.readiness.set_leader(true);
        options.readiness.set_caches_synced(false);
        options.metrics.set_leader(true);
        let mut lost = leader.clone();
        let controllers = tokio::spawn(run_controllers(client.clone(), config.clone(), options.clone(), stopped()));
        let abort = controllers.abort_handle();
        let finished = tokio::select! {
            _ = controllers => true,
            _ = lost.wait_for(|is_leader| !*is_leader) => {
                abort.abort();
                tracing::warn!("leadership lost: controllers stopped");
                false
            }
        };
        options.readiness.set_leader(false);
        options.readiness.set_controllers_running(false);
        options.readiness.set_caches_synced(true);
        options.metrics.set_leader(false);
        if finished || *stop.borrow() {
            break;
        }
    }
    if let Err(error) = election.release().await {
        tracing::warn!(%error, "could not release the leader Lease; a standby takes over when it expires");
    }
}
