//! Tenant reconciler: the `finalizer` helper dispatching to [`apply`] and [`cleanup`].

use std::{collections::BTreeSet, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    api::{ListParams, Patch, PatchParams},
    core::DynamicObject,
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{finalizer, Event as FinalizerEvent},
    },
    Api, Resource, ResourceExt,
};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use super::{apply, Context, Error, POLL, RESYNC};
use crate::{
    desired::{
        child_reference,
        database::{credentials_secret, ConnectionInfo},
        tenant::{EnvironmentPlan, TenantPlan},
        ChildKind, DesiredObject,
    },
    naming::{self, FIELD_MANAGER, FINALIZER, LABEL_ENVIRONMENT, LABEL_RETAINED},
    types::{
        condition, set_condition, DatabaseProvider, DatabaseStatus, DeletionPolicy, Environment, NamespaceState, NamespaceStatus, Tenant,
        TenantPhase, TenantStatus,
    },
};

/// A Tenant as the controller receives it: a malformed object in the watch must not stop the
/// controller, so deserialization errors arrive here instead of failing the whole list.
pub type GuardedTenant = kube::core::DeserializeGuard<Tenant>;

pub async fn reconcile(guarded: Arc<GuardedTenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let tenant = match &guarded.0 {
        Ok(tenant) => Arc::new(tenant.clone()),
        Err(invalid) => {
            tracing::warn!(name = ?invalid.metadata.name, error = %invalid.error, "Tenant cannot be read; waiting for it to be fixed");
            return Ok(Action::await_change());
        }
    };
    // Before the caches hold their initial lists, a missing object would look deleted and be
    // applied again (after a restart, thousands of writes).
    ctx.caches_ready().await;
    let _timer = ctx.metrics.reconcile_started("tenant");
    let key = format!("tenant/{}", tenant.name_any());
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            FinalizerEvent::Apply(tenant) => apply_tenant(&tenant, &ctx).await,
            FinalizerEvent::Cleanup(tenant) => cleanup(&tenant, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.reset_failures(&key);
    }
    result
}

pub fn error_policy(guarded: Arc<GuardedTenant>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = guarded.meta().name.clone().unwrap_or_default();
    tracing::warn!(tenant = %name, %error, "reconcile failed");
    if error.kind() != "waiting" {
        ctx.metrics.reconcile_failed("tenant", error.kind());
    }
    ctx.failure_event(guarded.object_ref(&()), error);
    ctx.backoff(&format!("tenant/{name}"), error)
}

/// What one reconcile found, turned into status at the end.
#[derive(Default)]
struct Observed {
    namespaces: Vec<NamespaceStatus>,
    databases: Vec<DatabaseStatus>,
    namespace_problems: Vec<(String, String)>,
    apply_failures: Vec<String>,
    database_problems: Vec<(String, String)>,
}

async fn apply_tenant(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let now = Time(Timestamp::now());
    let generation = tenant.metadata.generation;
    let old_status = tenant.status.clone().unwrap_or_default();

    if tenant.spec.suspend {
        let mut status = old_status.clone();
        status.phase = Some(TenantPhase::Suspended);
        status.observed_generation = generation;
        set_condition(
            &mut status.conditions,
            condition("Ready", false, "Suspended", "spec.suspend is true: nothing is created, changed or deleted", generation, &now),
        );
        write_status(ctx, tenant, &old_status, status).await?;
        return Ok(Action::await_change());
    }

    let plan = match TenantPlan::build(tenant, &ctx.config) {
        Ok(plan) => plan,
        Err(spec_error) => {
            // Nothing is deleted for a spec the operator cannot build: an unknown cluster must
            // not take a tenant's namespaces with it.
            let mut status = old_status.clone();
            status.phase = Some(TenantPhase::Failed);
            status.observed_generation = generation;
            let message = format!("{spec_error}; nothing was changed");
            set_condition(&mut status.conditions, condition("Ready", false, spec_error.reason(), message.clone(), generation, &now));
            let changed = write_status(ctx, tenant, &old_status, status).await?;
            if changed {
                ctx.event(&tenant.object_ref(&()), EventType::Warning, spec_error.reason(), message);
            }
            return Ok(Action::await_change());
        }
    };

    let mut observed = Observed::default();
    for env in &plan.environments {
        reconcile_environment(tenant, &plan, env, ctx, &mut observed).await?;
    }
    remove_unwanted(tenant, &plan, ctx, &mut observed).await?;

    let status = tenant_status(&plan, &old_status, observed, generation, &now);
    let ready = status.phase == Some(TenantPhase::Ready);
    write_status(ctx, tenant, &old_status, status).await?;
    Ok(Action::requeue(if ready { RESYNC } else { POLL }))
}

fn is_terminating(object: &DynamicObject) -> bool {
    object.metadata.deletion_timestamp.is_some()
}

fn is_retained(object: &DynamicObject) -> bool {
    object.labels().get(LABEL_RETAINED).map(String::as_str) == Some("true")
}

async fn reconcile_environment(
    tenant: &Tenant,
    plan: &TenantPlan,
    env: &EnvironmentPlan,
    ctx: &Context,
    observed: &mut Observed,
) -> Result<(), Error> {
    let reference = tenant.object_ref(&());
    let namespace = ctx.caches.get(ChildKind::Namespace, None, &env.namespace);
    if let Some(ns) = &namespace {
        if is_terminating(ns) {
            observed.namespaces.push(NamespaceStatus {
                environment: env.environment,
                name: env.namespace.clone(),
                state: NamespaceState::Terminating,
            });
            observed.namespace_problems.push((
                "NamespaceTerminating".into(),
                format!("namespace {} is being deleted; it is re-created once it is gone", env.namespace),
            ));
            return Ok(());
        }
        if is_retained(ns) {
            adopt(tenant, plan, env, ctx).await?;
        }
    }

    // The namespace first (everything else lives in it), then the rest of the environment's
    // objects at once: they do not depend on each other.
    let (namespace_objects, contents): (Vec<&DesiredObject>, Vec<&DesiredObject>) =
        env.objects.iter().partition(|o| o.kind == ChildKind::Namespace);
    for batch in [namespace_objects, contents] {
        let mut pending = Vec::new();
        for desired in batch {
            if desired.kind == ChildKind::CnpgCluster && !ctx.caches.has(ChildKind::CnpgCluster) {
                observed.database_problems.push((
                    "CloudNativePgNotInstalled".into(),
                    "the CloudNativePG operator (CRD clusters.postgresql.cnpg.io) is not installed on this cluster".into(),
                ));
                continue;
            }
            let cached = ctx.caches.get(desired.kind, desired.namespace.as_deref(), &desired.name);
            if cached.as_deref().is_some_and(is_terminating) || !apply::needs_apply(desired, cached.as_deref()) {
                continue;
            }
            pending.push(async move { (desired, cached.is_none(), apply::apply(&ctx.client, desired).await) });
        }
        for (desired, created, result) in futures::future::join_all(pending).await {
            match result {
                Ok(_) if created => ctx.child_event(&reference, "Created", format!("Created {}", desired.describe()), desired.reference()),
                Ok(_) => tracing::info!(tenant = %plan.slug, object = %desired.describe(), "corrected"),
                Err(kube::Error::Api(status)) if status.code == 422 || status.code == 403 || status.code == 404 => {
                    // The server refused this object (e.g. a value it cannot accept, or a
                    // namespace that is going away): report it and go on with the others.
                    let message = format!("{}: {}", desired.describe(), status.message);
                    ctx.event(&reference, EventType::Warning, "ApplyFailed", message.clone());
                    observed.apply_failures.push(message);
                    if desired.kind == ChildKind::Namespace {
                        return Ok(());
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
    observed.namespaces.push(NamespaceStatus { environment: env.environment, name: env.namespace.clone(), state: NamespaceState::Active });

    let database = match (&env.database, plan.database_provider) {
        (_, DatabaseProvider::None) => None,
        (Some(connection), provider) => {
            ensure_credentials(tenant, env, connection, ctx).await?;
            let (ready, message) = database_readiness(provider, env, &plan.slug, ctx);
            Some(DatabaseStatus {
                environment: env.environment,
                provider,
                host: Some(connection.host.clone()),
                secret_name: Some(naming::database_secret_name(&plan.slug)),
                ready,
                message,
            })
        }
        (None, DatabaseProvider::External) => Some(super::tenant_external::reconcile(tenant, env, ctx).await?),
        (None, provider) => {
            Some(DatabaseStatus { environment: env.environment, provider, host: None, secret_name: None, ready: false, message: None })
        }
    };
    if let Some(database) = database {
        if !database.ready {
            // Provider errors lead their message with a CamelCase reason ("ServerUnreachable: …").
            let reason = database
                .message
                .as_deref()
                .and_then(|m| m.split_once(": "))
                .map(|(reason, _)| reason)
                .filter(|r| r.starts_with(|c: char| c.is_ascii_uppercase()) && r.chars().all(|c| c.is_ascii_alphanumeric()))
                .unwrap_or("DatabaseNotReady");
            observed
                .database_problems
                .push((reason.into(), format!("{}: {}", env.namespace, database.message.clone().unwrap_or_else(|| "starting".into()))));
        }
        observed.databases.push(database);
    }
    Ok(())
}

/// A retained namespace of this slug is taken back: the `retained` mark is removed from it and
/// from the data it holds, which the rest of the reconcile then manages again.
async fn adopt(tenant: &Tenant, plan: &TenantPlan, env: &EnvironmentPlan, ctx: &Context) -> Result<(), Error> {
    let unmark = json!({ LABEL_RETAINED: null });
    for kind in [ChildKind::PersistentVolumeClaim, ChildKind::Secret] {
        for object in ctx.caches.of_tenant(kind, &plan.slug) {
            if object.namespace().as_deref() == Some(env.namespace.as_str()) && is_retained(&object) {
                apply::patch_labels(&ctx.client, kind, Some(&env.namespace), &object.name_any(), unmark.clone()).await?;
            }
        }
    }
    apply::patch_labels(&ctx.client, ChildKind::Namespace, None, &env.namespace, unmark).await?;
    let note = format!("Adopted retained namespace {}", env.namespace);
    ctx.child_event(&tenant.object_ref(&()), "Adopted", note, child_reference(ChildKind::Namespace, None, &env.namespace));
    Ok(())
}

/// Make sure the environment's credentials Secret exists. The password is read from the
/// existing Secret and generated only when there is none: never replaced by a reconcile.
pub(super) async fn ensure_credentials(
    tenant: &Tenant,
    env: &EnvironmentPlan,
    connection: &ConnectionInfo,
    ctx: &Context,
) -> Result<String, Error> {
    let slug = tenant.name_any();
    let name = naming::database_secret_name(&slug);
    let existing = match ctx.caches.get(ChildKind::Secret, Some(&env.namespace), &name) {
        Some(cached) => Some((*cached).clone()),
        // The cache may simply not have seen a Secret created moments ago; ask the server
        // before generating, so a password can never be generated twice.
        None => apply::api_for(&ctx.client, ChildKind::Secret, Some(&env.namespace)).get_opt(&name).await?,
    };
    let existing_password = existing
        .as_ref()
        .and_then(|object| object.clone().try_parse::<Secret>().ok())
        .and_then(|secret| secret.data?.get("password").map(|p| String::from_utf8_lossy(&p.0).into_owned()))
        .filter(|password| !password.is_empty());
    let (password, generated) = match existing_password {
        Some(password) => (password, false),
        None => (generate_password(ctx.config.database.password_length), true),
    };
    let desired = DesiredObject::from_typed(ChildKind::Secret, &credentials_secret(&slug, env.environment, connection, &password));
    if apply::needs_apply(&desired, existing.as_ref()) {
        apply::apply(&ctx.client, &desired).await?;
        if generated {
            let note = format!("Created {} with a generated password", desired.describe());
            ctx.child_event(&tenant.object_ref(&()), "Created", note, desired.reference());
        }
    }
    Ok(password)
}

/// A password from the thread-local CSPRNG (ChaCha, seeded by the OS).
pub fn generate_password(length: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), length)
}

fn database_readiness(provider: DatabaseProvider, env: &EnvironmentPlan, slug: &str, ctx: &Context) -> (bool, Option<String>) {
    let name = naming::database_name(slug);
    match provider {
        DatabaseProvider::Statefulset => match ctx.caches.get(ChildKind::StatefulSet, Some(&env.namespace), &name) {
            None => (false, Some("StatefulSet not created yet".into())),
            Some(sts) => {
                let ready = sts.data.pointer("/status/readyReplicas").and_then(|v| v.as_i64()).unwrap_or(0);
                if ready >= 1 {
                    (true, None)
                } else {
                    (false, Some("waiting for the PostgreSQL pod to become ready".into()))
                }
            }
        },
        DatabaseProvider::CloudnativePg => match ctx.caches.get(ChildKind::CnpgCluster, Some(&env.namespace), &name) {
            None => (false, Some("CloudNativePG Cluster not created yet".into())),
            Some(cluster) => {
                let ready = cluster.data.pointer("/status/readyInstances").and_then(|v| v.as_i64()).unwrap_or(0);
                let phase = cluster.data.pointer("/status/phase").and_then(|v| v.as_str()).unwrap_or("").to_string();
                if ready >= 1 {
                    (true, None)
                } else {
                    (false, Some(if phase.is_empty() { "waiting for CloudNativePG".into() } else { format!("CloudNativePG: {phase}") }))
                }
            }
        },
        DatabaseProvider::External | DatabaseProvider::None => (true, None),
    }
}

/// Children that are no longer desired: removed environments (deleted or retained under the
/// deletion policy) and objects of removed applications, quota or database provider.
async fn remove_unwanted(tenant: &Tenant, plan: &TenantPlan, ctx: &Context, observed: &mut Observed) -> Result<(), Error> {
    let reference = tenant.object_ref(&());
    let wanted_namespaces: BTreeSet<&str> = plan.environments.iter().map(|e| e.namespace.as_str()).collect();
    for ns in ctx.caches.of_tenant(ChildKind::Namespace, &plan.slug) {
        let name = ns.name_any();
        if wanted_namespaces.contains(name.as_str()) {
            continue;
        }
        let environment = ns
            .labels()
            .get(LABEL_ENVIRONMENT)
            .and_then(|e| Environment::parse(e))
            .or_else(|| naming::environment_of_namespace(&plan.slug, &name));
        let Some(environment) = environment else { continue };
        if is_terminating(&ns) {
            observed.namespaces.push(NamespaceStatus { environment, name, state: NamespaceState::Terminating });
            continue;
        }
        match tenant.spec.deletion_policy {
            DeletionPolicy::Retain => {
                if !is_retained(&ns) {
                    mark_retained(ctx, &plan.slug, &name).await?;
                    let note = format!(
                        "Environment {environment} removed: namespace {name} kept and no longer reconciled (deletionPolicy Retain)"
                    );
                    ctx.child_event(&reference, "Retained", note, child_reference(ChildKind::Namespace, None, &name));
                }
                observed.namespaces.push(NamespaceStatus { environment, name, state: NamespaceState::Retained });
            }
            DeletionPolicy::Delete => {
                apply::delete(&ctx.client, ChildKind::Namespace, None, &name).await?;
                let note = format!("Deleted Namespace {name} (environment {environment} removed)");
                ctx.child_event(&reference, "Deleted", note, child_reference(ChildKind::Namespace, None, &name));
                observed.namespaces.push(NamespaceStatus { environment, name, state: NamespaceState::Terminating });
            }
        }
    }

    let desired: BTreeSet<(ChildKind, Option<&str>, &str)> =
        plan.objects().map(|o| (o.kind, o.namespace.as_deref(), o.name.as_str())).collect();
    // Data holders (Secrets, PVCs) are never deleted here: they go only with their namespace.
    let removable = [
        ChildKind::ConfigMap,
        ChildKind::Ingress,
        ChildKind::NetworkPolicy,
        ChildKind::ResourceQuota,
        ChildKind::StatefulSet,
        ChildKind::Service,
        ChildKind::CnpgCluster,
    ];
    for kind in removable {
        for object in ctx.caches.of_tenant(kind, &plan.slug) {
            let namespace = object.namespace();
            let Some(ns) = namespace.as_deref() else { continue };
            if !wanted_namespaces.contains(ns) || is_terminating(&object) {
                continue;
            }
            let name = object.name_any();
            if desired.contains(&(kind, Some(ns), name.as_str())) {
                continue;
            }
            if apply::delete(&ctx.client, kind, Some(ns), &name).await? {
                let note = format!("Deleted {} {ns}/{name} (no longer in the spec)", kind.name());
                ctx.child_event(&reference, "Deleted", note, child_reference(kind, Some(ns), &name));
            }
        }
    }
    Ok(())
}

/// Label a namespace and the data in it as retained.
async fn mark_retained(ctx: &Context, slug: &str, namespace: &str) -> Result<(), Error> {
    let mark = json!({ LABEL_RETAINED: "true" });
    for kind in [ChildKind::PersistentVolumeClaim, ChildKind::Secret] {
        for object in ctx.caches.of_tenant(kind, slug) {
            if object.namespace().as_deref() == Some(namespace) && !is_retained(&object) {
                apply::patch_labels(&ctx.client, kind, Some(namespace), &object.name_any(), mark.clone()).await?;
            }
        }
    }
    apply::patch_labels(&ctx.client, ChildKind::Namespace, None, namespace, mark).await?;
    Ok(())
}

fn tenant_status(plan: &TenantPlan, old: &TenantStatus, observed: Observed, generation: Option<i64>, now: &Time) -> TenantStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    status.endpoints = plan.endpoints.clone();
    let mut namespaces = observed.namespaces;
    namespaces.sort_by(|a, b| a.environment.cmp(&b.environment).then(a.name.cmp(&b.name)));
    status.namespaces = namespaces;
    status.databases = observed.databases;

    let namespaces_ready = observed.namespace_problems.is_empty() && observed.apply_failures.is_empty();
    let ns_condition = match observed.namespace_problems.first() {
        Some((reason, message)) => condition("NamespacesReady", false, reason, message.clone(), generation, now),
        None if !observed.apply_failures.is_empty() => {
            condition("NamespacesReady", false, "ApplyFailed", observed.apply_failures.join("; "), generation, now)
        }
        None => condition(
            "NamespacesReady",
            true,
            "Applied",
            format!("{} environment namespace(s) reconciled", plan.environments.len()),
            generation,
            now,
        ),
    };
    let ingress_condition = condition(
        "IngressReady",
        namespaces_ready,
        if namespaces_ready { "Applied" } else { "NamespacesNotReady" },
        if namespaces_ready {
            format!("{} endpoint(s) routed", plan.endpoints.len())
        } else {
            "waiting for the environment namespaces".to_string()
        },
        generation,
        now,
    );
    let db_condition = match observed.database_problems.first() {
        Some((reason, _)) => condition(
            "DatabaseReady",
            false,
            reason,
            observed.database_problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; "),
            generation,
            now,
        ),
        None if plan.database_provider == DatabaseProvider::None => {
            condition("DatabaseReady", true, "NoDatabase", "database provider is none", generation, now)
        }
        None => condition(
            "DatabaseReady",
            true,
            "Ready",
            format!("{} database(s) ready ({})", status.databases.len(), plan.database_provider),
            generation,
            now,
        ),
    };
    let all: [&Condition; 3] = [&ns_condition, &ingress_condition, &db_condition];
    let ready = all.iter().all(|c| c.status == "True");
    let ready_condition = match all.iter().find(|c| c.status != "True") {
        None => condition("Ready", true, "Ready", "all environments, endpoints and databases are ready", generation, now),
        Some(first) => condition("Ready", false, &first.reason, first.message.clone(), generation, now),
    };
    for c in [ready_condition, ns_condition, ingress_condition, db_condition] {
        set_condition(&mut status.conditions, c);
    }
    let failed = !observed.apply_failures.is_empty();
    status.phase = Some(if ready {
        TenantPhase::Ready
    } else if failed {
        TenantPhase::Failed
    } else {
        TenantPhase::Provisioning
    });
    status
}

/// Write the status when it differs from what is stored; returns whether it wrote.
async fn write_status(ctx: &Context, tenant: &Tenant, old: &TenantStatus, new: TenantStatus) -> Result<bool, Error> {
    if tenant.status.is_some() && *old == new {
        return Ok(false);
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({ "apiVersion": Tenant::api_version(&()), "kind": Tenant::kind(&()), "status": new });
    api.patch_status(&tenant.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(true)
}

/// Deletion under the tenant's deletion policy; the finalizer is released when this returns Ok.
async fn cleanup(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let slug = tenant.metadata.name.clone().ok_or(Error::MissingName)?;
    let reference = tenant.object_ref(&());
    let old_status = tenant.status.clone().unwrap_or_default();
    if old_status.phase != Some(TenantPhase::Terminating) {
        let mut status = old_status.clone();
        status.phase = Some(TenantPhase::Terminating);
        let now = Time(Timestamp::now());
        let message = match tenant.spec.deletion_policy {
            DeletionPolicy::Retain => "deletionPolicy Retain: namespaces, volumes, credentials and databases are kept",
            DeletionPolicy::Delete => "deletionPolicy Delete: removing namespaces and databases",
        };
        set_condition(&mut status.conditions, condition("Ready", false, "Terminating", message, tenant.metadata.generation, &now));
        write_status(ctx, tenant, &old_status, status).await?;
    }

    // The cache can lag behind; the decision to release the finalizer is made on a fresh list.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    let listed = namespaces.list(&ListParams::default().labels(&format!("{}={slug}", naming::LABEL_TENANT))).await?;
    match tenant.spec.deletion_policy {
        DeletionPolicy::Retain => {
            super::tenant_external::retain_all(tenant, ctx).await?;
            for ns in &listed.items {
                let name = ns.name_any();
                if ns.labels().get(LABEL_RETAINED).map(String::as_str) != Some("true") && ns.metadata.deletion_timestamp.is_none() {
                    mark_retained(ctx, &slug, &name).await?;
                    let note = format!("Tenant deleted: namespace {name} and its data kept (deletionPolicy Retain)");
                    ctx.child_event(&reference, "Retained", note, child_reference(ChildKind::Namespace, None, &name));
                }
            }
            Ok(Action::await_change())
        }
        DeletionPolicy::Delete => {
            super::tenant_external::drop_all(tenant, ctx).await?;
            let mut remaining = Vec::new();
            for ns in &listed.items {
                let name = ns.name_any();
                if ns.metadata.deletion_timestamp.is_none() {
                    apply::delete(&ctx.client, ChildKind::Namespace, None, &name).await?;
                    let note = format!("Deleted Namespace {name} (tenant deleted)");
                    ctx.child_event(&reference, "Deleted", note, child_reference(ChildKind::Namespace, None, &name));
                }
                remaining.push(name);
            }
            if remaining.is_empty() {
                Ok(Action::await_change())
            } else {
                Err(Error::WaitingForDeletion(format!("namespaces {}", remaining.join(", "))))
            }
        }
    }
}
