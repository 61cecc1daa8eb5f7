//! TenantUser reconciler: the user's RBAC (RoleBindings per environment from the role table;
//! in the account namespace a self-service Role and, for Account Admins, `tenancy:user-admin`),
//! uniqueness of email and username inside a tenant, and honest status. Steps: validate →
//! build (in `crate::desired::user`) → apply → status. A finalizer revokes the user's access
//! when it is deleted: owner references cannot reach from the account namespace into the
//! environment namespaces, so the garbage collector cannot do it.

mod apply;
mod index;
pub mod self_service;
mod status;
mod sweep;
mod validate;

pub use index::UserIndex;
pub use self_service::SelfService;
pub use sweep::{sweep_orphans, sweep_periodically};

use std::{collections::BTreeSet, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    runtime::{
        controller::Action,
        events::EventType,
        finalizer::{finalizer, Event as FinalizerEvent},
        reflector::ObjectRef,
    },
    Api, Resource, ResourceExt,
};

use super::{caches::Child, readable, Changes, Context, ControllerKind, Error, ErrorKind, POLL, RESYNC};
use crate::{
    desired::ChildKind,
    naming::{self, ANNOTATION_USER, FINALIZER},
    types::{Reason, TenantUser},
};

pub type GuardedUser = kube::core::DeserializeGuard<TenantUser>;

pub async fn reconcile(guarded: Arc<GuardedUser>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(user) = readable(&guarded) else { return Ok(Action::await_change()) };
    ctx.caches_ready().await;
    let _timer = ctx.metrics.reconcile_started(ControllerKind::TenantUser.as_str());
    let api: Api<TenantUser> = Api::namespaced(ctx.client.clone(), &user.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, Arc::new(user.clone()), |event| async {
        match event {
            FinalizerEvent::Apply(user) => reconcile_user(&user, &ctx).await,
            FinalizerEvent::Cleanup(user) => revoke_all(&user, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match &result {
        Ok(_) => ctx.succeeded(ControllerKind::TenantUser, &user.name_any()),
        Err(error) if error.kind() != ErrorKind::Waiting && user.metadata.deletion_timestamp.is_none() => {
            // A failed reconcile never leaves a stale condition behind.
            let old = ctx.current_status(&user, user.status.as_ref()).unwrap_or_default();
            let new = status::failed(&old, &error.to_string(), user.metadata.generation, &Time(Timestamp::now()));
            if let Err(write_error) = ctx.write_status(&user, user.status.as_ref(), &new).await {
                tracing::debug!(user = %user.name_any(), %write_error, "could not record the failure in status");
            }
        }
        Err(_) => {}
    }
    result
}

pub fn error_policy(guarded: Arc<GuardedUser>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.failed(ControllerKind::TenantUser, guarded.as_ref(), error)
}

/// The user is being deleted: every Role and RoleBinding made for it goes first.
async fn revoke_all(user: &TenantUser, ctx: &Context) -> Result<Action, Error> {
    let mut changes = Changes::default();
    apply::revoke(user, &BTreeSet::new(), ctx, &mut changes).await?;
    ctx.changes_event(&user.object_ref(&()), &changes);
    Ok(Action::await_change())
}

async fn reconcile_user(user: &TenantUser, ctx: &Context) -> Result<Action, Error> {
    let generation = user.metadata.generation;
    let now = Time(Timestamp::now());
    let old = ctx.current_status(user, user.status.as_ref()).unwrap_or_default();
    let slug = validate::slug_of(user);
    let tenant = slug.as_ref().and_then(|slug| ctx.tenants.get(&ObjectRef::new(slug))).and_then(|guarded| guarded.0.as_ref().ok().cloned());
    let namespace = ctx.caches.get(ChildKind::Namespace, None, &user.namespace().unwrap_or_default());
    // Only the users that share its email or username can make it a duplicate.
    let others = ctx.user_index.sharing_identity(user, &ctx.users);
    let mut changes = Changes::default();
    let self_service = ctx.self_service.borrow().clone();
    let around = validate::Surroundings {
        tenant,
        namespace: namespace.as_ref(),
        others: &others,
        self_edit: self_service.allows_self_edit(),
        bound_under: old.tenant_uid.as_deref(),
    };
    let valid = match validate::validate(user, around, &ctx.config) {
        Ok(valid) => valid,
        Err(problem) => {
            apply::revoke(user, &BTreeSet::new(), ctx, &mut changes).await?;
            ctx.changes_event(&user.object_ref(&()), &changes);
            let new = status::refused(&old, &problem, slug, generation, &now);
            if ctx.write_status(user, user.status.as_ref(), &new).await? && problem.reason != Reason::TenantNotFound {
                ctx.event(&user.object_ref(&()), EventType::Warning, problem.reason, &problem.message);
            }
            // A missing tenant triggers a reconcile when it appears (the Tenant watch), and a
            // duplicate one when the older user changes or goes (the TenantUser watch).
            return Ok(Action::await_change());
        }
    };
    let observed = apply::apply_bindings(user, &valid, ctx, &mut changes).await?;
    ctx.changes_event(&user.object_ref(&()), &changes);
    let refused = observed.refused.clone();
    let mut new = status::bound(&old, &valid.plan, (&valid.tenant.name_any(), &valid.tenant_uid), observed, generation, &now);
    status::self_service(&mut new, &self_service, generation, &now);
    if ctx.write_status(user, user.status.as_ref(), &new).await? {
        for problem in &refused {
            ctx.event(&user.object_ref(&()), EventType::Warning, problem.reason, &problem.message);
        }
    }
    let ready = new.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
    Ok(Action::requeue(if ready { RESYNC } else { POLL }))
}

/// The TenantUser a Role or RoleBinding of the operator is for, as a reference: the user
/// lives in its tenant's account namespace, and its full name is the operator's stamp, an
/// annotation (a label value is shortened beyond 63 characters, and selects only). Without
/// the stamp a binding is no user's: nothing decides on the label alone.
pub fn user_of_binding(binding: &Child) -> Option<ObjectRef<GuardedUser>> {
    let name = binding.annotation(ANNOTATION_USER)?;
    let slug = binding.label(naming::LABEL_TENANT)?;
    Some(ObjectRef::new(name).within(&naming::account_namespace_name(slug)))
}

/// Every TenantUser, from the controller's cache (a change of the self-service policy's
/// verdict concerns them all).
pub fn all_users(users: &kube::runtime::reflector::Store<GuardedUser>) -> Vec<ObjectRef<GuardedUser>> {
    users.state().iter().map(|g| ObjectRef::from_obj(g.as_ref())).collect()
}
