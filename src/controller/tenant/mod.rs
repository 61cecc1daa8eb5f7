//! Tenant reconciler: the finalizer dispatches to the apply path (validate → build → apply →
//! status) and to [`cleanup`] when the Tenant is deleted.

mod apply;
mod cache;
mod cleanup;
mod database;
mod grants;
mod hosts;
mod predecessor;
mod rotation;
mod routes;
mod status;
mod validate;

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{finalizer, Event as FinalizerEvent},
    },
    Api, Resource, ResourceExt,
};

pub use cache::TenantCache;
pub use hosts::{HostIndex, Seniority};

use super::{readable, Changes, Context, ControllerKind, Error, ErrorKind, POLL, RESYNC};
use crate::{
    desired::{tenant::hostnames, ChildKind},
    naming::FINALIZER,
    types::{Tenant, TenantPhase, TenantStatus},
};

/// A Tenant as the controller receives it: a malformed object in the watch must not stop the
/// controller, so deserialization errors arrive here instead of failing the whole list.
pub type GuardedTenant = kube::core::DeserializeGuard<Tenant>;

pub async fn reconcile(guarded: Arc<GuardedTenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(tenant) = readable(&guarded) else { return Ok(Action::await_change()) };
    // Before the caches hold their initial lists, a missing object would look deleted and be
    // applied again (after a restart, thousands of writes).
    ctx.caches_ready().await;
    let _timer = ctx.metrics.reconcile_started(ControllerKind::Tenant.as_str());
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let result = finalizer(&api, FINALIZER, Arc::new(tenant.clone()), |event| async {
        match event {
            FinalizerEvent::Apply(tenant) => reconcile_tenant(&tenant, &ctx).await,
            FinalizerEvent::Cleanup(tenant) => cleanup::cleanup(&tenant, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match &result {
        Ok(_) => ctx.succeeded(ControllerKind::Tenant, &tenant.name_any()),
        Err(error) => report_failure(&tenant, error, &ctx).await,
    }
    result
}

pub fn error_policy(guarded: Arc<GuardedTenant>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.failed(ControllerKind::Tenant, guarded.as_ref(), error)
}

/// A failed reconcile never leaves `Ready=True` behind: the status says it failed and why.
async fn report_failure(tenant: &Tenant, error: &Error, ctx: &Context) {
    if error.kind() == ErrorKind::Waiting || tenant.metadata.deletion_timestamp.is_some() {
        return;
    }
    let result = async {
        let stored = stored_status(tenant, ctx, Details::Kept).await?;
        let new = status::failed(stored.status(), &error.to_string(), tenant.metadata.generation, &Time(Timestamp::now()));
        write_status(tenant, &stored, &new, ctx).await
    };
    if let Err(write_error) = result.await {
        tracing::debug!(tenant = %tenant.name_any(), %write_error, "could not record the failure in status");
    }
}

/// The stored status a new one is computed from.
pub(super) enum Stored {
    /// Complete, as read from the API server.
    Full(TenantStatus),
    /// As the Tenant cache keeps it, the operator's own last write included (see [`cache`]):
    /// enough to compute a reconciled status, which rewrites every detail, not to keep the
    /// details of the stored one.
    Reduced(TenantStatus),
}

impl Stored {
    pub(super) fn status(&self) -> &TenantStatus {
        match self {
            Stored::Full(status) | Stored::Reduced(status) => status,
        }
    }
}

/// Whether the new status keeps details (namespaces, endpoints, databases, messages) of the
/// stored one.
#[derive(PartialEq)]
pub(super) enum Details {
    Rewritten,
    Kept,
}

pub(super) async fn stored_status(tenant: &Tenant, ctx: &Context, details: Details) -> Result<Stored, Error> {
    if details == Details::Rewritten {
        if let Some(reduced) = ctx.tenant_cache.reduced_status(tenant) {
            return Ok(Stored::Reduced(reduced));
        }
    }
    let name = tenant.meta().name.as_deref().ok_or(Error::MissingName)?;
    let fresh = Api::<Tenant>::all(ctx.client.clone()).get(name).await?;
    Ok(Stored::Full(fresh.status.unwrap_or_default()))
}

/// Write `new` unless it is what is stored; returns whether it wrote.
pub(super) async fn write_status(tenant: &Tenant, stored: &Stored, new: &TenantStatus, ctx: &Context) -> Result<bool, Error> {
    let unchanged = match stored {
        Stored::Full(old) => old == new,
        Stored::Reduced(_) => ctx.tenant_cache.is_stored(tenant, new),
    };
    if unchanged {
        return Ok(false);
    }
    ctx.patch_status(tenant, new).await?;
    ctx.tenant_cache.wrote(tenant, new);
    Ok(true)
}

/// The seniority of a Tenant in the hostname index.
pub fn seniority(tenant: &Tenant) -> Seniority {
    Seniority { created: tenant.metadata.creation_timestamp.as_ref().map(|t| t.0), name: tenant.name_any() }
}

async fn reconcile_tenant(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let now = Time(Timestamp::now());
    let generation = tenant.metadata.generation;
    let name = tenant.name_any();
    if tenant.spec.suspend {
        let stored = stored_status(tenant, ctx, Details::Kept).await?;
        let mut new = status::suspended(stored.status(), generation, &now);
        rotation::waiting(tenant, "the Tenant is suspended (spec.suspend); it runs once the Tenant is resumed", &mut new.databases);
        if write_status(tenant, &stored, &new, ctx).await? {
            ctx.status_written(&name, false);
        }
        return Ok(Action::await_change());
    }

    let contested = ctx.claim_hosts(seniority(tenant), hostnames(tenant, &ctx.config));
    let pinned = database::pinned_providers(tenant, ctx);
    let namespaces = ctx.caches.of_tenant(ChildKind::Namespace, &name);
    let valid = match validate::validate(tenant, &ctx.config, &pinned, contested, &namespaces) {
        Ok(valid) => valid,
        Err(problem) => {
            let stored = stored_status(tenant, ctx, Details::Kept).await?;
            let mut new = status::refused(stored.status(), &problem, generation, &now);
            rotation::waiting(
                tenant,
                &format!("the Tenant is stalled ({}); it runs once that is resolved", problem.reason),
                &mut new.databases,
            );
            if write_status(tenant, &stored, &new, ctx).await? {
                ctx.status_written(&name, false);
                ctx.event(&tenant.object_ref(&()), EventType::Warning, problem.reason, &problem.message);
            }
            return Ok(Action::await_change());
        }
    };

    let mut changes = Changes::default();
    let observed = apply::apply_tenant(tenant, &valid, ctx, &mut changes).await?;
    ctx.changes_event(&tenant.object_ref(&()), &changes);
    let stored = stored_status(tenant, ctx, Details::Rewritten).await?;
    let old = stored.status();
    let (new, stalled) = status::reconciled(old, &valid.plan, observed, generation, &now);
    let ready = new.phase == Some(TenantPhase::Ready);
    let contested = !valid.contested_hosts.is_empty();
    // Progress details are coalesced: the next write of them comes when it is due.
    if status::progress_only(old, &new) {
        if let Some(wait) = ctx.progress_wait(&name) {
            return Ok(Action::requeue(wait.min(POLL)));
        }
    }
    if write_status(tenant, &stored, &new, ctx).await? {
        ctx.status_written(&name, new.phase == Some(TenantPhase::Provisioning));
        if let Some(problem) = stalled {
            ctx.event(&tenant.object_ref(&()), EventType::Warning, problem.reason, &problem.message);
        }
    }
    // A contested host is polled: it becomes free when the older Tenant lets it go.
    Ok(Action::requeue(if ready && !contested { RESYNC } else { POLL }))
}
